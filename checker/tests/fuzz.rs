//! Fuzz-style robustness: mutated reference histories (bytes flipped, cut, duplicated, junk
//! and non-UTF-8 inserted), deep nesting and huge numbers, in every format. Whatever the
//! input, the checker answers — a verdict, or one short error line — and never panics or
//! overflows its stack. Deterministic (fixed seed) and a few seconds in CI.

use checker::{check_file_with, CheckOptions, Format, Settings};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// xorshift64*: a fixed, dependency-free stream of mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const JUNK: &[&[u8]] = &[
    b"[",
    b"]",
    b"{",
    b"}",
    b"(",
    b"#{",
    b"\"",
    b"\\",
    b";",
    b"\n",
    b"\t",
    b" ",
    b"\0",
    b"\xff\xfe",
    b"\xe2\x82",
    b":nemesis",
    b":info",
    b":txn",
    b"nil",
    b"[[:r :x nil]]",
    b"99999999999999999999999999",
    b"-9223372036854775808",
    b"1e999",
    b"[1 [2 3]]",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let end = (at + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(200)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            3 => out.truncate(at),
            _ => {
                let junk = JUNK[rng.below(JUNK.len())];
                out.splice(at..at, junk.iter().copied());
            }
        }
    }
    out
}

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(file)
}

fn judge(path: &Path, format: Option<Format>, what: &str) {
    let opts = CheckOptions {
        timeout: Some(Duration::from_millis(300)),
        ..CheckOptions::default()
    };
    let result = std::panic::catch_unwind(|| {
        check_file_with(path, format, None, &opts, &Settings::default())
    });
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{what}: error spans lines: {line}");
            assert!(
                line.len() < 400,
                "{what}: error line of {} bytes",
                line.len()
            );
        }
        Err(_) => panic!(
            "{what}: the checker panicked (input kept at {})",
            path.display()
        ),
    }
}

#[test]
fn mutated_reference_histories_never_crash_the_checker() {
    let dir = std::env::temp_dir().join(format!("checker-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        "porcupine/etcd/etcd_000.log",
        "porcupine/etcd/etcd_002.log",
        "porcupine/etcd/etcd_007.log",
        "porcupine/kv/c01-ok.txt",
        "porcupine/kv/c01-bad.txt",
        "knossos/good/cas-register-bug.edn",
        "knossos/good/memstress3-0.edn",
        "knossos/bad/cas-failure.edn",
        "knossos/bad/rethink-fail-minimal.edn",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut runs = 0;
    for file in files {
        let original = std::fs::read(data(file)).unwrap();
        for i in 0..40 {
            let mutated = mutate(&mut rng, &original);
            let path = dir.join(format!("m{i}-{}", file.replace('/', "_")));
            std::fs::write(&path, &mutated).unwrap();
            judge(&path, None, file);
            // Forced into every format, too.
            let format = [
                Format::Jsonl,
                Format::Edn,
                Format::PorcupineKv,
                Format::EtcdLog,
                Format::JepsenTxt,
            ][rng.below(5)];
            judge(&path, Some(format), file);
            let _ = std::fs::remove_file(&path);
            runs += 2;
        }
    }
    assert_eq!(runs, 720);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deep_nesting_huge_numbers_and_binary_in_every_format() {
    let dir = std::env::temp_dir().join(format!("checker-fuzz-x-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let deep =
        |open: &str, close: &str| format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
    let inputs: Vec<Vec<u8>> = vec![
        deep("[", "]").into_bytes(),
        deep("(", ")").into_bytes(),
        deep("{", "}").into_bytes(),
        deep("#{", "}").into_bytes(),
        format!("[{{:process 0 :type :invoke :f :write :value {}}}]", deep("[", "]")).into_bytes(),
        format!("0\t:invoke\t:write\t{}\n", deep("[", "]")).into_bytes(),
        format!("INFO  jepsen.util - 0\t:invoke\t:cas\t{}\n", deep("[", "]")).into_bytes(),
        format!("{{\"type\":\"invoke\",\"process\":0,\"f\":\"write\",\"value\":{},\"time\":1}}\n", deep("[", "]")).into_bytes(),
        format!("{{\"type\":\"invoke\",\"process\":0,\"f\":\"write\",\"value\":{},\"time\":1}}\n", "{\"a\":".repeat(100_000)).into_bytes(),
        b"{\"type\":\"invoke\",\"process\":0,\"f\":\"write\",\"value\":123456789012345678901234567890,\"time\":1}\n".to_vec(),
        b"{\"type\":\"invoke\",\"process\":18446744073709551616,\"f\":\"write\",\"value\":1,\"time\":1}\n".to_vec(),
        b"[{:process 99999999999999999999999, :type :invoke, :f :write, :value 1}]".to_vec(),
        b"0\t:invoke\t:write\t99999999999999999999999N\n".to_vec(),
        vec![0u8; 1 << 20],
        vec![0xffu8; 1 << 16],
        (0..=255u8).cycle().take(1 << 16).collect(),
    ];
    for (i, input) in inputs.iter().enumerate() {
        let path = dir.join(format!("x{i}"));
        std::fs::write(&path, input).unwrap();
        judge(&path, None, &format!("input {i}"));
        for format in [
            Format::Jsonl,
            Format::Edn,
            Format::PorcupineKv,
            Format::EtcdLog,
            Format::JepsenTxt,
        ] {
            judge(&path, Some(format), &format!("input {i} as {format:?}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
