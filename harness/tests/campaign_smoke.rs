//! A small real campaign end to end: `faultline campaign` starts real `faultline run`
//! children (sandbox, real nodes), and its exit code, summary.json, junit.xml and
//! index.html (every link resolving to a file) are checked. `.ci/run` runs the larger
//! campaigns/smoke.toml the same way.

mod common;

use std::path::Path;

use common::{describe, faultline, lock};

const CAMPAIGN: &str = r#"
name = "mini"
[defaults]
time_limit = 5
extra_args = ["--nemesis-interval", "1"]
[[matrix]]
name = "validity"
modes = ["passive"]
nemeses = ["partition"]
seeds = [1]
[[matrix]]
name = "snap-marker-after-send"
workloads = ["bank"]
bugs = ["marker-after-send"]
nemeses = ["none"]
seeds = [1]
concurrency = 9
extra_args = ["--snapshot-interval", "0.5", "--snapshot-timeout", "2"]
"#;

/// Every `href` of the page, resolved against its folder.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().replace("&amp;", "&"))
        .collect()
}

#[test]
fn a_real_campaign_writes_what_it_says() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mini.toml");
    std::fs::write(&file, CAMPAIGN).unwrap();
    let out = dir.path().join("out");
    let o = faultline()
        .args(["campaign", file.to_str().unwrap(), "--jobs", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        stderr.matches("] expected").count(),
        2,
        "one line per cell: {stderr}"
    );

    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["exit_code"], 0);
    assert_eq!(s["counts"]["expected"], 2, "{:#}", s["counts"]);
    let cells = s["cells"].as_array().unwrap();
    let valid = &cells[0];
    assert_eq!(
        (valid["verdict"].as_str(), valid["exit_code"].as_i64()),
        (Some("valid"), Some(0))
    );
    assert!(
        valid["ops"]["attempted"].as_u64().unwrap() > 100,
        "{valid:#}"
    );
    assert!(
        valid["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{valid:#}"
    );
    assert!(valid["availability"].as_f64().unwrap() > 0.0);
    let bank = &cells[1];
    assert_eq!(
        (bank["verdict"].as_str(), bank["expect"].as_str()),
        (Some("invalid"), Some("invalid"))
    );
    assert!(
        bank["snapshots"]["inconsistent"].as_u64().unwrap() > 0,
        "{bank:#}"
    );
    assert!(
        bank["explanation"].as_str().is_some_and(|e| !e.is_empty()),
        "{bank:#}"
    );
    for c in cells {
        let results = out
            .join(c["results_dir"].as_str().unwrap())
            .join("results.json");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
        assert_eq!(
            r["verdict"],
            c["verdict"],
            "summary agrees with {}",
            results.display()
        );
        assert_eq!(r["run"]["seed"], 1);
    }

    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml parses");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2);
    assert!(
        !xml.contains("<failure") && !xml.contains("<error"),
        "{xml}"
    );
    let suites: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(suites, ["passive/bank", "passive/kv"]);

    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let hrefs = links(&html);
    assert_eq!(hrefs.len(), 2, "one link per cell: {hrefs:?}");
    for h in hrefs {
        assert!(h.ends_with("report.html"), "{h}");
        assert!(
            Path::new(&out).join(&h).is_file(),
            "index.html links {h}, which does not exist"
        );
    }
    assert!(html.contains("PASS"), "headline");
}
