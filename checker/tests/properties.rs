//! Property tests: simulated histories are always valid, and on small random histories
//! (with info ops and equal times) the checker agrees with a brute-force search that tries
//! every order.

use checker::history::{Action, History, Op, Outcome, Value};
use checker::model::{Model, Step};
use checker::models::{Keyed, Kv, KvString, Register};
use checker::scheduler::Algorithm;
use checker::simulate::{Simulation, Workload};
use checker::{check_history, check_history_with, CheckOptions, ModelKind, Settings, Verdict};
use proptest::prelude::*;

/// Tries every order of the ops that respects real time (a before b iff a.ret < b.call) and
/// the model; info ops may be placed anywhere after their call, or left out.
fn brute_force<M: Model>(model: &M, ops: &[Op]) -> bool {
    fn go<M: Model>(model: &M, ops: &[Op], done: &mut Vec<bool>, state: &M::State) -> bool {
        let remaining_definite = ops
            .iter()
            .zip(done.iter())
            .filter(|(o, d)| !**d && o.ret.is_some())
            .count();
        if remaining_definite == 0 {
            return true;
        }
        for i in 0..ops.len() {
            if done[i] {
                continue;
            }
            // Some remaining op returned before this one was called: it must go first.
            let blocked = ops
                .iter()
                .zip(done.iter())
                .any(|(o, d)| !*d && o.ret.is_some_and(|r| r < ops[i].call));
            if blocked {
                continue;
            }
            let next = match model.step(state, &ops[i]) {
                Step::Illegal => continue,
                Step::Same => state.clone(),
                Step::Next(s) => s,
            };
            done[i] = true;
            let ok = go(model, ops, done, &next);
            done[i] = false;
            if ok {
                return true;
            }
        }
        false
    }
    go(model, ops, &mut vec![false; ops.len()], &model.init())
}

/// Porcupine's kv model as plainly as it can be written — one `String` per key, a get
/// compares, an append pushes its text — the reference the checker's `Kv` (whose states
/// keep unobserved appends as an unordered multiset) is checked against.
#[derive(Debug, Clone, Copy)]
struct StringKv;

fn kv_text(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => s.to_string(),
    }
}

impl Model for StringKv {
    type State = std::collections::BTreeMap<Option<u32>, String>;

    fn name(&self) -> &'static str {
        "string-kv"
    }

    fn init(&self) -> Self::State {
        Default::default()
    }

    fn step(&self, state: &Self::State, op: &Op) -> Step<Self::State> {
        let now = state.get(&op.key).map_or("", String::as_str);
        match (&op.action, &op.outcome) {
            (Action::Get, Outcome::Read(v)) if kv_text(v) == now => Step::Same,
            (Action::Get, Outcome::Read(_)) => Step::Illegal,
            (Action::Get, _) => Step::Same,
            (Action::Put(v), _) => {
                let mut next = state.clone();
                next.insert(op.key, kv_text(v));
                Step::Next(next)
            }
            (Action::Append(v), _) => {
                let mut next = state.clone();
                next.entry(op.key).or_default().push_str(&kv_text(v));
                Step::Next(next)
            }
            _ => Step::Illegal,
        }
    }

    fn hash(&self, state: &Self::State) -> u64 {
        checker::model::fx_hash(state)
    }

    fn describe(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }

    fn supports(&self, action: &Action) -> bool {
        matches!(action, Action::Get | Action::Put(_) | Action::Append(_))
    }
}

/// For an invalid report: its longest linearizable prefix, as the report shows it, is a
/// real one — legal step by step for the plain string model, in real-time order, each
/// shown state the string the plain model holds for that key.
fn assert_report_prefix_is_concrete(h: &History, report: &checker::CheckReport) {
    for part in &report.invalid {
        let mut state = StringKv.init();
        for (i, step) in part.linearization.iter().enumerate() {
            let op = &h.ops[step.op.id];
            state = match StringKv.step(&state, op) {
                Step::Illegal => panic!("report prefix step {i} illegal: {}", report.to_text()),
                Step::Same => state,
                Step::Next(s) => s,
            };
            for later in &part.linearization[i + 1..] {
                assert!(
                    later.op.ret.is_none_or(|r| r >= op.call),
                    "report prefix out of real-time order: {}",
                    report.to_text()
                );
            }
            let now = format!("{:?}", state.get(&op.key).cloned().unwrap_or_default());
            // `Kv` shows `"ab"`, `Keyed<Kv>` every key: `{k0: "ab", k1: ""}`.
            let name = op.key.map_or("", |k| h.keys[k as usize].as_str());
            let shown = if step.state.starts_with('{') {
                step.state.contains(&format!("{name}: {now}"))
            } else {
                step.state == now
            };
            assert!(
                shown,
                "step {i} shows {} but the string is {now:?}: {}",
                step.state,
                report.to_text()
            );
        }
    }
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Nil), (0i64..3).prop_map(Value::Int)]
}

/// One random op: (action, read value, call, duration, info?, key).
fn op_strategy(keys: u32) -> impl Strategy<Value = Op> {
    let action = prop_oneof![
        Just(Action::Read),
        value().prop_map(Action::Write),
        (value(), value()).prop_map(|(from, to)| Action::Cas { from, to }),
    ];
    (
        action,
        value(),
        0u64..12,
        0u64..6,
        prop::bool::weighted(0.2),
        0..keys,
    )
        .prop_map(|(action, read, call, duration, info, key)| {
            let outcome = match (&action, info) {
                (_, true) => Outcome::Unknown,
                (Action::Read, false) => Outcome::Read(read),
                _ => Outcome::Ok,
            };
            Op {
                process: 0,
                key: Some(key),
                action,
                outcome,
                call,
                ret: (!info).then_some(call + duration),
                call_line: 0,
                ret_line: None,
            }
        })
}

/// One random kv op on short strings, so gets often match some order of puts and appends.
fn kv_op_strategy() -> impl Strategy<Value = Op> {
    kv_op_strategy_keys(1)
}

/// [`kv_op_strategy`] over `keys` keys.
fn kv_op_strategy_keys(keys: u32) -> impl Strategy<Value = Op> {
    let text = prop_oneof![Just("a"), Just("b"), Just("ab")].prop_map(|t| Value::Str(t.into()));
    let read = prop_oneof![
        Just(""),
        Just("a"),
        Just("b"),
        Just("ab"),
        Just("ba"),
        Just("aab"),
        Just("abb")
    ]
    .prop_map(|t| Value::Str(t.into()));
    let action = prop_oneof![
        Just(Action::Get),
        text.clone().prop_map(Action::Put),
        text.prop_map(Action::Append),
    ];
    (
        action,
        read,
        0u64..12,
        0u64..6,
        prop::bool::weighted(0.2),
        0..keys,
    )
        .prop_map(|(action, read, call, duration, info, key)| Op {
            process: 0,
            key: Some(key),
            outcome: match (&action, info) {
                (_, true) => Outcome::Unknown,
                (Action::Get, false) => Outcome::Read(read),
                _ => Outcome::Ok,
            },
            action,
            call,
            ret: (!info).then_some(call + duration),
            call_line: 0,
            ret_line: None,
        })
}

fn history(mut ops: Vec<Op>, keys: u32) -> History {
    ops.sort_by_key(|o| o.call);
    for (i, op) in ops.iter_mut().enumerate() {
        op.process = i as u64;
        op.call_line = i + 1;
    }
    History {
        ops,
        keys: (0..keys).map(|k| format!("k{k}")).collect(),
        ..History::default()
    }
}

/// The checker's verdict for a history an oracle found linearizable (or not).
fn verdict(linearizable: bool) -> Verdict {
    if linearizable {
        Verdict::Valid
    } else {
        Verdict::Invalid
    }
}

/// How many of a test's histories were linearizable, and how many not: a mix is what
/// makes agreement mean something.
#[derive(Default)]
struct Tally {
    valid: usize,
    invalid: usize,
}

impl Tally {
    fn count(&mut self, linearizable: bool) {
        if linearizable {
            self.valid += 1;
        } else {
            self.invalid += 1;
        }
    }
}

fn brute_verdict(h: &History) -> Verdict {
    let model = Keyed {
        inner: Register::cas(Value::Nil),
        keys: h.keys.clone(),
    };
    // Reads with no value constrain nothing; the checker drops them, so may we.
    verdict(brute_force(&model, &h.ops))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn agrees_with_brute_force_on_one_register(ops in prop::collection::vec(op_strategy(1), 1..=8)) {
        let h = history(ops, 1);
        let expected = brute_verdict(&h);
        for (partition, single_search) in [(true, false), (false, false), (false, true)] {
            let opts = CheckOptions { partition, ..CheckOptions::default() };
            let settings = Settings { single_search, ..Settings::default() };
            let got = check_history_with(&h, ModelKind::MultiRegister, &opts, &settings).unwrap();
            prop_assert_eq!(got.verdict, expected, "partition={} history={:#?}", partition, h.ops);
        }
        let single = History { keys: Vec::new(), ops: h.ops.iter().cloned().map(|mut o| { o.key = None; o }).collect(), ..h.clone() };
        let got = check_history(&single, ModelKind::CasRegister, &CheckOptions::default()).unwrap();
        prop_assert_eq!(got.verdict, expected);
    }

    #[test]
    fn agrees_with_brute_force_on_kv(ops in prop::collection::vec(kv_op_strategy(), 1..=8)) {
        let h = history(ops, 1);
        let expected = if brute_force(&StringKv, &h.ops) { Verdict::Valid } else { Verdict::Invalid };
        for (partition, single_search) in [(true, false), (false, false), (false, true)] {
            let opts = CheckOptions { partition, ..CheckOptions::default() };
            let settings = Settings { single_search, ..Settings::default() };
            let got = check_history_with(&h, ModelKind::Kv, &opts, &settings).unwrap();
            prop_assert_eq!(got.verdict, expected, "partition={} history={:#?}", partition, h.ops);
            assert_report_prefix_is_concrete(&h, &got);
        }
        // These texts repeat, so the checker picks the string model; the symbolic one must
        // agree too (identical and prefixing texts are its hard cases).
        prop_assert_eq!(search_verdict(&Kv, &h.ops), expected == Verdict::Valid, "history={:#?}", h.ops);
        prop_assert_eq!(search_verdict(&KvString, &h.ops), expected == Verdict::Valid, "history={:#?}", h.ops);
    }

    /// Two keys through every mode and both searches: `--single-search` runs `Keyed<Kv>`
    /// over interleaved keys, whose report prefix needs the topological reordering.
    #[test]
    fn agrees_with_brute_force_on_kv_with_two_keys(ops in prop::collection::vec(kv_op_strategy_keys(2), 1..=8)) {
        let h = history(ops, 2);
        let expected = if brute_force(&StringKv, &h.ops) { Verdict::Valid } else { Verdict::Invalid };
        for (partition, single_search) in [(true, false), (false, false), (false, true)] {
            for search in [Algorithm::Wgl, Algorithm::Frontier] {
                let opts = CheckOptions { partition, ..CheckOptions::default() };
                let settings = Settings { single_search, search: Some(search), ..Settings::default() };
                let got = check_history_with(&h, ModelKind::Kv, &opts, &settings).unwrap();
                prop_assert_eq!(got.verdict, expected, "partition={} {:?} history={:#?}", partition, search, h.ops);
                assert_report_prefix_is_concrete(&h, &got);
            }
        }
        let keyed = Keyed { inner: Kv, keys: h.keys.clone() };
        prop_assert_eq!(search_verdict(&keyed, &h.ops), expected == Verdict::Valid, "history={:#?}", h.ops);
        prop_assert_eq!(frontier_verdict(&keyed, &h.ops), expected == Verdict::Valid, "history={:#?}", h.ops);
    }

    #[test]
    fn agrees_with_brute_force_on_two_keys(ops in prop::collection::vec(op_strategy(2), 1..=8)) {
        let h = history(ops, 2);
        let expected = brute_verdict(&h);
        for (partition, single_search) in [(true, false), (false, false), (false, true)] {
            let opts = CheckOptions { partition, ..CheckOptions::default() };
            let settings = Settings { single_search, ..Settings::default() };
            let got = check_history_with(&h, ModelKind::MultiRegister, &opts, &settings).unwrap();
            prop_assert_eq!(got.verdict, expected, "partition={}", partition);
        }
    }

    #[test]
    fn simulated_register_histories_are_valid(seed in any::<u64>(), processes in 1usize..12, info in 0.0f64..0.3, cas in any::<bool>()) {
        let sim = Simulation {
            workload: if cas { Workload::CasRegister } else { Workload::Register },
            processes,
            keys: 0,
            ops: 120,
            info_rate: info,
            values: 4,
            max_duration: 40,
            seed,
        };
        let h = checker::formats::jsonl::history_from_events(&sim.events()).unwrap();
        let model = if cas { ModelKind::CasRegister } else { ModelKind::Register };
        let got = check_history(&h, model, &CheckOptions::default()).unwrap();
        prop_assert_eq!(got.verdict, Verdict::Valid, "{}", got.to_text());
    }

    #[test]
    fn simulated_multi_key_histories_are_valid(seed in any::<u64>(), processes in 1usize..20, keys in 1usize..6, info in 0.0f64..0.2, partition in any::<bool>()) {
        let sim = Simulation {
            workload: Workload::CasRegister,
            processes,
            keys,
            ops: 150,
            info_rate: info,
            values: 3,
            max_duration: 30,
            seed,
        };
        let h = checker::formats::jsonl::history_from_events(&sim.events()).unwrap();
        let opts = CheckOptions { partition, ..CheckOptions::default() };
        let got = check_history(&h, ModelKind::MultiRegister, &opts).unwrap();
        prop_assert_eq!(got.verdict, Verdict::Valid, "{}", got.to_text());
    }

}

/// Ops over two values with many identical pending ones (info writes of the same value,
/// info rolls), ok rolls that return their value, and reads: the multiset treatment of
/// identical pending ops and the unknown value an info roll writes must agree with trying
/// every order.
fn pending_op_strategy() -> impl Strategy<Value = Op> {
    let v = || (1i64..3).prop_map(Value::Int);
    let action = prop_oneof![
        2 => Just(Action::Read),
        3 => v().prop_map(Action::Write),
        2 => Just(Action::Roll),
        1 => (v(), v()).prop_map(|(from, to)| Action::Cas { from, to }),
    ];
    (action, v(), 0u64..10, 0u64..5, prop::bool::weighted(0.45)).prop_map(
        |(action, read, call, duration, info)| {
            let info = info && action != Action::Read;
            let outcome = match (&action, info) {
                (_, true) => Outcome::Unknown,
                (Action::Read | Action::Roll, false) => Outcome::Read(read),
                _ => Outcome::Ok,
            };
            Op {
                process: 0,
                key: Some(0),
                action,
                outcome,
                call,
                ret: (!info).then_some(call + duration),
                call_line: 0,
                ret_line: None,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]

    #[test]
    fn agrees_with_brute_force_with_identical_pending_ops_and_rolls(ops in prop::collection::vec(pending_op_strategy(), 1..=8)) {
        let h = history(ops, 1);
        let expected = brute_verdict(&h);
        for (partition, single_search) in [(true, false), (false, false), (false, true)] {
            let opts = CheckOptions { partition, ..CheckOptions::default() };
            let settings = Settings { single_search, ..Settings::default() };
            let got = check_history_with(&h, ModelKind::MultiRegister, &opts, &settings).unwrap();
            prop_assert_eq!(got.verdict, expected, "partition={} history={:#?}", partition, h.ops);
        }
    }
}

proptest! {
    // Pending appends that never took effect are the kv model's hard case (each one is a
    // distinct state the search must rule out), so these histories are kept small for CI.
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn simulated_kv_histories_are_valid(seed in any::<u64>(), processes in 1usize..8, keys in 1usize..4, info in 0.0f64..0.06) {
        let sim = Simulation {
            workload: Workload::Kv,
            processes,
            keys,
            ops: 60,
            info_rate: info,
            values: 3,
            max_duration: 20,
            seed,
        };
        let h = checker::formats::jsonl::history_from_events(&sim.events()).unwrap();
        let got = check_history(&h, ModelKind::Kv, &CheckOptions::default()).unwrap();
        prop_assert_eq!(got.verdict, Verdict::Valid, "{}", got.to_text());
    }
}

/// Brute force and the checker also agree on the kv model (small random histories built by
/// corrupting one get of a simulated history).
#[test]
fn kv_brute_force_agrees_on_corrupted_simulations() {
    for seed in 0..300u64 {
        let sim = Simulation {
            workload: Workload::Kv,
            processes: 3,
            keys: 0,
            ops: 7,
            info_rate: 0.2,
            values: 2,
            max_duration: 10,
            seed,
        };
        let mut h = checker::formats::jsonl::history_from_events(&sim.events()).unwrap();
        if seed % 2 == 0 {
            if let Some(op) = h
                .ops
                .iter_mut()
                .find(|o| matches!(o.outcome, Outcome::Read(_)))
            {
                op.outcome = Outcome::Read(Value::Str("x-bogus".into()));
            }
        }
        let expected = verdict(brute_force(&StringKv, &h.ops));
        let got = check_history(&h, ModelKind::Kv, &CheckOptions::default()).unwrap();
        assert_eq!(got.verdict, expected, "seed {seed}: {:#?}", h.ops);
        assert_report_prefix_is_concrete(&h, &got);
    }
}

/// On kv histories too large for brute force — many clients appending to one key at once,
/// the symbolic states' case — the checker agrees with the depth-first search run over the
/// plain string model, and its report prefix is a real one.
#[test]
fn kv_agrees_with_the_plain_string_model_on_concurrent_appends() {
    let mut tally = Tally::default();
    for seed in 0..200u64 {
        let sim = Simulation {
            workload: Workload::Kv,
            processes: 6,
            keys: 0,
            ops: 26,
            info_rate: 0.05,
            values: 3,
            max_duration: 30,
            seed,
        };
        let mut h = checker::formats::jsonl::history_from_events(&sim.events()).unwrap();
        h.ops
            .retain(|o| !(o.action.is_read_only() && o.outcome == Outcome::Unknown));
        // Corrupt one get in three ways: a swapped pair of appends, a dropped one, junk.
        let gets: Vec<usize> = (0..h.ops.len())
            .filter(|&i| matches!(&h.ops[i].outcome, Outcome::Read(Value::Str(s)) if s.len() > 4))
            .collect();
        if let (Some(&g), true) = (gets.get(seed as usize % gets.len().max(1)), seed % 4 != 0) {
            let Outcome::Read(Value::Str(s)) = &h.ops[g].outcome else {
                unreachable!()
            };
            let t: String = match seed % 4 {
                1 => s.chars().rev().collect(),
                2 => s.chars().skip(2).collect(),
                _ => format!("{s}z"),
            };
            h.ops[g].outcome = Outcome::Read(Value::Str(t.as_str().into()));
        }
        let expected = search_verdict(&StringKv, &h.ops);
        for partition in [true, false] {
            let opts = CheckOptions {
                partition,
                ..CheckOptions::default()
            };
            let got = check_history_with(&h, ModelKind::Kv, &opts, &Settings::default()).unwrap();
            let want = verdict(expected);
            assert_eq!(got.verdict, want, "seed {seed}: {}", got.to_text());
            assert_report_prefix_is_concrete(&h, &got);
        }
        tally.count(expected);
    }
    assert!(
        tally.valid >= 40 && tally.invalid >= 40,
        "valid {}, invalid {}",
        tally.valid,
        tally.invalid
    );
}

/// The random small histories above are a real mix, so agreement means something: many
/// are valid, many invalid, many have info ops and equal times.
#[test]
fn random_small_histories_are_a_mix_of_valid_and_invalid() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(op_strategy(1), 1..=8);
    let mut tally = Tally::default();
    let (mut with_info, mut ties) = (0, 0);
    for _ in 0..400 {
        let h = history(strategy.new_tree(&mut runner).unwrap().current(), 1);
        with_info += usize::from(h.ops.iter().any(|o| o.ret.is_none()));
        ties += usize::from(
            h.ops
                .iter()
                .any(|a| h.ops.iter().any(|b| a.ret == Some(b.call))),
        );
        tally.count(brute_verdict(&h) == Verdict::Valid);
    }
    assert!(
        tally.valid > 50 && tally.invalid > 50,
        "valid {}, invalid {}",
        tally.valid,
        tally.invalid
    );
    assert!(
        with_info > 50 && ties > 50,
        "info {with_info}, equal times {ties}"
    );
}

/// Register/cas ops over few values, rich in info writes and info cas (about half of the
/// ops that change the state), so the lazy (just-in-time) linearization of info ops has
/// chains (an info cas that needs another's value) and many violations to rule out.
fn info_rich_op_strategy() -> impl Strategy<Value = Op> {
    let v = || (0i64..3).prop_map(Value::Int);
    let action = prop_oneof![
        3 => Just(Action::Read),
        2 => v().prop_map(Action::Write),
        3 => (v(), v()).prop_map(|(from, to)| Action::Cas { from, to }),
    ];
    (action, v(), 0u64..10, 0u64..5, prop::bool::weighted(0.5)).prop_map(
        |(action, read, call, duration, info)| {
            let info = info && action != Action::Read;
            let outcome = match (&action, info) {
                (_, true) => Outcome::Unknown,
                (Action::Read, false) => Outcome::Read(read),
                _ => Outcome::Ok,
            };
            Op {
                process: 0,
                key: Some(0),
                action,
                outcome,
                call,
                ret: (!info).then_some(call + duration),
                call_line: 0,
                ret_line: None,
            }
        },
    )
}

/// A cas register that never claims its ops overwrite or observe: the eager search, to
/// compare the lazy one with on histories too large for brute force.
struct Eager(Register);

impl Model for Eager {
    type State = <Register as Model>::State;
    fn name(&self) -> &'static str {
        "eager-cas-register"
    }
    fn init(&self) -> Self::State {
        self.0.init()
    }
    fn step(&self, state: &Self::State, op: &Op) -> Step<Self::State> {
        self.0.step(state, op)
    }
    fn hash(&self, state: &Self::State) -> u64 {
        self.0.hash(state)
    }
    fn describe(&self, state: &Self::State) -> String {
        self.0.describe(state)
    }
    fn supports(&self, action: &Action) -> bool {
        self.0.supports(action)
    }
}

fn search_verdict<M: Model>(model: &M, ops: &[Op]) -> bool {
    use checker::search::{Limits, Progress, Search, SearchOutcome};
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let (cancel, bytes) = (AtomicBool::new(false), AtomicUsize::new(0));
    let limits = Limits {
        deadline: None,
        cancel: &cancel,
        memo_bytes: &bytes,
        memo_budget: usize::MAX,
    };
    let mut search = Search::new(model, ops.iter().collect());
    match search.run(u64::MAX, &limits) {
        Progress::Finished(SearchOutcome::Linearizable) => true,
        Progress::Finished(SearchOutcome::NotLinearizable(_)) => false,
        other => panic!("no answer: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// The lazy search (on for cas registers: every op overwrites or observes) agrees with
    /// trying every order, on one key and through the keyed store.
    #[test]
    fn lazy_info_ops_agree_with_brute_force(ops in prop::collection::vec(info_rich_op_strategy(), 1..=9)) {
        let h = history(ops, 1);
        let model = Register::cas(Value::Nil);
        prop_assert!(h.ops.iter().all(|o| model.overwrites_or_observes(o)));
        let expected = brute_force(&model, &h.ops);
        prop_assert_eq!(search_verdict(&model, &h.ops), expected, "history={:#?}", h.ops);
        let want = if expected { Verdict::Valid } else { Verdict::Invalid };
        for (partition, single_search) in [(true, false), (false, true)] {
            let opts = CheckOptions { partition, ..CheckOptions::default() };
            let settings = Settings { single_search, ..Settings::default() };
            let got = check_history_with(&h, ModelKind::MultiRegister, &opts, &settings).unwrap();
            prop_assert_eq!(got.verdict, want, "partition={} history={:#?}", partition, h.ops);
        }
    }

    /// On larger histories (too many orders for brute force) the lazy search agrees with
    /// the eager one.
    #[test]
    fn lazy_info_ops_agree_with_eager_search(ops in prop::collection::vec(info_rich_op_strategy(), 10..=16)) {
        let h = history(ops, 1);
        let lazy = search_verdict(&Register::cas(Value::Nil), &h.ops);
        let eager = search_verdict(&Eager(Register::cas(Value::Nil)), &h.ops);
        prop_assert_eq!(lazy, eager, "history={:#?}", h.ops);
    }
}

/// The info-rich histories above are a real mix: valid and invalid, with info cas chains.
#[test]
fn info_rich_histories_are_a_mix_of_valid_and_invalid() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(info_rich_op_strategy(), 1..=9);
    let mut tally = Tally::default();
    let mut many_info = 0;
    let model = Register::cas(Value::Nil);
    for _ in 0..400 {
        let h = history(strategy.new_tree(&mut runner).unwrap().current(), 1);
        many_info += usize::from(h.ops.iter().filter(|o| o.ret.is_none()).count() >= 3);
        tally.count(brute_force(&model, &h.ops));
    }
    assert!(
        tally.valid > 50 && tally.invalid > 50,
        "valid {}, invalid {}",
        tally.valid,
        tally.invalid
    );
    assert!(many_info > 50, "histories with 3+ info ops: {many_info}");
}

/// The frontier (configuration-set) search alone, with no limits: valid or not. Its
/// counterexample's prefix must be a legal sequence that respects real time and ends
/// before the blocking op could be placed.
fn frontier_verdict<M: Model>(model: &M, ops: &[Op]) -> bool {
    let exact = frontier_run(model, ops, false).expect("the exact frontier answers");
    // The relaxation answers the same, or nothing.
    if let Some(relaxed) = frontier_run(model, ops, true) {
        assert_eq!(relaxed, exact, "relaxation disagrees");
    }
    exact
}

fn frontier_run<M: Model>(model: &M, ops: &[Op], relaxed: bool) -> Option<bool> {
    use checker::frontier::Frontier;
    use checker::search::{Limits, Progress, SearchOutcome};
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let (cancel, bytes) = (AtomicBool::new(false), AtomicUsize::new(0));
    let limits = Limits {
        deadline: None,
        cancel: &cancel,
        memo_bytes: &bytes,
        memo_budget: usize::MAX,
    };
    let mut frontier = if relaxed {
        Frontier::relaxed(model, ops.iter().collect())
    } else {
        Frontier::new(model, ops.iter().collect())
    };
    let outcome = frontier.run(u64::MAX, &limits);
    assert_eq!(
        bytes.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "memory released"
    );
    if frontier.inconclusive() {
        return None;
    }
    Some(match outcome {
        Progress::Finished(SearchOutcome::Linearizable) => true,
        Progress::Finished(SearchOutcome::NotLinearizable(cx)) => {
            let mut state = model.init();
            for (i, &op) in cx.prefix.iter().enumerate() {
                state = match model.step(&state, &ops[op as usize]) {
                    Step::Illegal => panic!("prefix step {i} illegal: {cx:?}"),
                    Step::Same => state,
                    Step::Next(s) => s,
                };
                // Real time: nothing placed after it returned before it was called.
                for &later in &cx.prefix[i + 1..] {
                    assert!(
                        ops[later as usize]
                            .ret
                            .is_none_or(|r| r >= ops[op as usize].call),
                        "prefix out of real-time order: {cx:?}"
                    );
                }
            }
            assert!(!cx.prefix.contains(&cx.blocker), "{cx:?}");
            false
        }
        other => panic!("no answer: {other:?}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The frontier search agrees with trying every order: registers with cas and nil
    /// (one and two keys), identical pending ops and rolls (an info roll leaves the value
    /// unknown, so reads are not forced), info-rich cas chains, and kv.
    #[test]
    fn frontier_agrees_with_brute_force(
        one in prop::collection::vec(op_strategy(1), 1..=8),
        two in prop::collection::vec(op_strategy(2), 1..=8),
        pending in prop::collection::vec(pending_op_strategy(), 1..=8),
        rich in prop::collection::vec(info_rich_op_strategy(), 1..=9),
        kv in prop::collection::vec(kv_op_strategy(), 1..=8),
    ) {
        let model = Register::cas(Value::Nil);
        for ops in [one, pending, rich] {
            let h = history(ops, 1);
            let expected = brute_force(&model, &h.ops);
            prop_assert_eq!(frontier_verdict(&model, &h.ops), expected, "history={:#?}", h.ops);
            // Through the checker too (the report replays the counterexample).
            let settings = Settings { search: Some(Algorithm::Frontier), ..Settings::default() };
            let got = check_history_with(&h, ModelKind::MultiRegister, &CheckOptions::default(), &settings).unwrap();
            prop_assert_eq!(got.verdict, if expected { Verdict::Valid } else { Verdict::Invalid });
        }
        let h = history(two, 2);
        let keyed = Keyed { inner: Register::cas(Value::Nil), keys: h.keys.clone() };
        prop_assert_eq!(frontier_verdict(&keyed, &h.ops), brute_force(&keyed, &h.ops), "history={:#?}", h.ops);
        let h = history(kv, 1);
        prop_assert_eq!(frontier_verdict(&Kv, &h.ops), brute_force(&StringKv, &h.ops), "history={:#?}", h.ops);
    }

    /// On histories too large for brute force the frontier and depth-first searches agree.
    #[test]
    fn frontier_agrees_with_depth_first_search(ops in prop::collection::vec(info_rich_op_strategy(), 10..=18)) {
        let h = history(ops, 1);
        let model = Register::cas(Value::Nil);
        prop_assert_eq!(frontier_verdict(&model, &h.ops), search_verdict(&model, &h.ops), "history={:#?}", h.ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Simulated runs of a store serving stale reads (a deposed leader's) and of a correct
    /// one: both searches agree, and a correct store is always valid.
    #[test]
    fn frontier_and_depth_first_agree_on_stale_read_simulations(seed in any::<u64>(), processes in 2usize..8, rate in 0.0f64..0.05, info in 0.0f64..0.1) {
        use checker::simulate::Fault;
        let sim = Simulation {
            workload: Workload::CasRegister,
            processes,
            keys: 0,
            ops: 150,
            info_rate: info,
            values: 4,
            max_duration: 30,
            seed,
        };
        let model = Register::cas(Value::Nil);
        for fault in [Fault::None, Fault::StaleReads { rate, lag: 120 }] {
            let h = checker::formats::jsonl::history_from_events(&sim.events_with(fault)).unwrap();
            let ops: Vec<Op> = h.ops.into_iter().filter(|o| !(o.action.is_read_only() && o.outcome == Outcome::Unknown)).collect();
            let frontier = frontier_verdict(&model, &ops);
            prop_assert_eq!(frontier, search_verdict(&model, &ops));
            if fault == Fault::None {
                prop_assert!(frontier);
            }
        }
    }
}

/// Many clients appending the *same* text at once (Jepsen-style small values): the
/// checker picks the string model there (the symbolic states tell such appends apart), and
/// its verdicts agree with both models' searches, valid as generated and invalid with one
/// get's length changed.
#[test]
fn identical_concurrent_appends_get_the_string_models_verdict() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut tally = Tally::default();
    for case in 0..12u64 {
        // (linearization point, op): 6 clients append "x", then 6 others get, per round.
        let mut ops: Vec<(u64, Op)> = Vec::new();
        for round in 0..3u64 {
            let base = round * 1000;
            for p in 0..12u64 {
                let get = p >= 6;
                let call = base + if get { 100 + next(550) } else { next(50) };
                let ret = call
                    + if get {
                        100 + next(200)
                    } else {
                        300 + next(300)
                    };
                let action = if get {
                    Action::Get
                } else {
                    Action::Append(Value::Str("x".into()))
                };
                let op = Op {
                    process: p,
                    key: None,
                    action,
                    outcome: Outcome::Ok,
                    call,
                    ret: Some(ret),
                    call_line: 0,
                    ret_line: None,
                };
                ops.push((call + 1 + next(ret - call - 1), op));
            }
        }
        ops.sort_by_key(|(point, _)| *point);
        let mut len = 0usize;
        let mut ops: Vec<Op> = ops
            .into_iter()
            .map(|(_, mut op)| {
                if op.action == Action::Get {
                    op.outcome = Outcome::Read(Value::Str("x".repeat(len).as_str().into()));
                } else {
                    len += 1;
                }
                op
            })
            .collect();
        if case % 2 == 1 {
            let gets: Vec<usize> = (0..ops.len())
                .filter(|&i| ops[i].action == Action::Get)
                .collect();
            let g = gets[(case as usize * 5) % gets.len()];
            let Outcome::Read(Value::Str(s)) = &ops[g].outcome else {
                unreachable!()
            };
            let n = (s.len() as i64 + [-4i64, 6][(case as usize / 2) % 2]).max(0) as usize;
            ops[g].outcome = Outcome::Read(Value::Str("x".repeat(n).as_str().into()));
        }
        let h = history(ops, 0);
        let expected = search_verdict(&KvString, &h.ops);
        assert_eq!(search_verdict(&Kv, &h.ops), expected, "case {case}");
        let got = check_history(&h, ModelKind::Kv, &CheckOptions::default()).unwrap();
        let want = verdict(expected);
        assert_eq!(got.verdict, want, "case {case}: {}", got.to_text());
        assert_report_prefix_is_concrete(&h, &got);
        tally.count(expected);
    }
    assert!(
        tally.valid >= 6 && tally.invalid >= 2,
        "valid {}, invalid {}",
        tally.valid,
        tally.invalid
    );
}
