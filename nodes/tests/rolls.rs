//! The non-deterministic operation (`POST /kv/{key}/roll`) in each mode, judged by the
//! replicas' own states (`GET /admin/state`): passive replication ships the leader's
//! result, so the replicas converge; active replication executes every roll on every
//! replica, so they diverge — unless `--deterministic-roll` orders a pre-drawn value with
//! the request.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use nodes::{Mode, NodeArgs};
use serde_json::{json, Value};

fn deterministic(a: &mut NodeArgs) {
    a.deterministic_roll = true;
}

async fn state(addr: &str) -> Value {
    let (code, v) = request("GET", format!("http://{addr}/admin/state?dump=1"), None).await;
    assert_eq!(code, 200, "{v}");
    v
}

/// Every replica's `/admin/state`, once all have applied the same index.
async fn settled_states(addrs: &[String]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut states = Vec::new();
        for a in addrs {
            states.push(state(a).await);
        }
        let idx: Vec<&Value> = states.iter().map(|s| &s["applied_index"]).collect();
        if idx.iter().all(|i| *i == idx[0]) {
            return states;
        }
        assert!(
            Instant::now() < deadline,
            "replicas never reached one index: {idx:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rolls 5 keys 4 times each through every node in turn; returns what each key's last
/// roll answered.
async fn roll_keys(addrs: &[String]) -> BTreeMap<String, Value> {
    let mut last = BTreeMap::new();
    for round in 0..4 {
        for k in 0..5 {
            let key = format!("r{k}");
            let at = &addrs[(round + k) % addrs.len()];
            let (code, v) = retry_definite(Duration::from_secs(5), || {
                request("POST", format!("http://{at}/kv/{key}/roll"), None)
            })
            .await;
            assert_eq!(code, 200, "roll {key} at {at}: {v}");
            assert_eq!(v["ok"], json!(true), "{v}");
            assert!(v["value"].is_i64(), "{v}");
            last.insert(key, v["value"].clone());
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_replicas_converge_on_the_leaders_rolls() {
    let cluster = Cluster::start("rolls-passive", 3, Mode::Passive, &[]);
    cluster.leader().await;
    let addrs = cluster.addrs();
    let last = roll_keys(&addrs).await;
    let states = settled_states(&addrs).await;
    for s in &states {
        assert_eq!(s["digest"], states[0]["digest"], "{states:?}");
        assert_eq!(s["keys"], json!(5));
        // Each replica holds exactly what the clients were told.
        for (key, v) in &last {
            assert_eq!(&s["state"][key], v, "{key} at {}", s["id"]);
        }
    }
    // Without `dump` the state is left out.
    let (_, brief) = request("GET", format!("http://{}/admin/state", addrs[0]), None).await;
    assert!(brief.get("state").is_none(), "{brief}");
    assert_eq!(brief["mode"], json!("passive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_replicas_diverge_on_rolls_unless_deterministic() {
    // Each replica draws its own value for every roll.
    let cluster = Cluster::start("rolls-active", 3, Mode::Active, &[]);
    cluster.leader().await;
    let addrs = cluster.addrs();
    let last = roll_keys(&addrs).await;
    let states = settled_states(&addrs).await;
    let digests: Vec<&Value> = states.iter().map(|s| &s["digest"]).collect();
    assert!(
        digests[0] != digests[1] && digests[1] != digests[2] && digests[0] != digests[2],
        "{digests:?}"
    );
    for (key, v) in &last {
        let values: Vec<&Value> = states.iter().map(|s| &s["state"][key]).collect();
        assert!(
            values[0] != values[1] || values[1] != values[2],
            "{key}: {values:?}"
        );
        // The client was told the value of the replica that answered it.
        assert!(
            values.contains(&v),
            "{key}: told {v}, replicas hold {values:?}"
        );
    }
    drop(cluster);

    // The cure: the value is drawn once, by the node the client reached, and ordered
    // with the request.
    let cluster = Cluster::start_with("rolls-active-det", 3, Mode::Active, &[], deterministic);
    cluster.leader().await;
    let addrs = cluster.addrs();
    let last = roll_keys(&addrs).await;
    let states = settled_states(&addrs).await;
    for s in &states {
        assert_eq!(s["digest"], states[0]["digest"], "{states:?}");
        for (key, v) in &last {
            assert_eq!(&s["state"][key], v, "{key} at {}", s["id"]);
        }
    }
}
