//! Both protocols on in-process 3- and 5-node clusters: replication, linearizable reads,
//! failover after a crash, recovery from the data directory, a minority partition, and
//! retried writes applied once.

mod common;

use std::time::Duration;

use common::*;
use nodes::Mode;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(8);

async fn writes_replicate_and_reads_see_latest(name: &str, n: usize, mode: Mode) {
    let cluster = Cluster::start(name, n, mode, &[]);
    cluster.leader().await;
    let addrs = cluster.addrs();
    put_until_ok(&addrs, "warmup", json!(0), WITHIN).await;
    for v in 1..=20i64 {
        let (code, body) = put(&addrs[v as usize % n], "x", json!(v)).await;
        assert_eq!(code, 200, "put {v}: {body}");
        // A read through any other node sees the write that just completed.
        let (code, body) = get(&addrs[(v as usize + 1) % n], "x").await;
        assert_eq!((code, &body["value"]), (200, &json!(v)), "{body}");
    }
    let (code, body) = put(&addrs[0], "s", json!("text")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(&addrs[n - 1], "s").await.1["value"], json!("text"));
    // Every replica applies every write.
    let target = status(&addrs[cluster.leader().await]).await["commit_index"]
        .as_u64()
        .unwrap();
    for a in &addrs {
        let deadline = std::time::Instant::now() + WITHIN;
        loop {
            let s = status(a).await;
            if s["applied_index"].as_u64().unwrap() >= target {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{a} stuck: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_3_nodes_replicate() {
    writes_replicate_and_reads_see_latest("p3rep", 3, Mode::Passive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_5_nodes_replicate() {
    writes_replicate_and_reads_see_latest("p5rep", 5, Mode::Passive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_3_nodes_replicate() {
    writes_replicate_and_reads_see_latest("a3rep", 3, Mode::Active).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_5_nodes_replicate() {
    writes_replicate_and_reads_see_latest("a5rep", 5, Mode::Active).await;
}

async fn minority_partition_leaves_majority_available(name: &str, mode: Mode) {
    let cluster = Cluster::start(name, 5, mode, &[]);
    let addrs = cluster.addrs();
    let old = cluster.leader().await;
    put_until_ok(&addrs, "k", json!(1), WITHIN).await;
    let minority = vec![old, (old + 1) % 5];
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    cluster.partition(&minority, &majority).await;

    let maj_addrs: Vec<String> = majority.iter().map(|&i| addrs[i].clone()).collect();
    put_until_ok(&maj_addrs, "k", json!(2), WITHIN).await;
    let new = cluster.leader_among(&majority).await;
    assert!(majority.contains(&new));
    for &i in &majority {
        assert_eq!(get_until_ok(&addrs[i], "k", WITHIN).await, json!(2));
    }
    // The minority side can neither write nor serve a (necessarily stale) read.
    for &i in &minority {
        let (code, body) = put(&addrs[i], "k", json!(99)).await;
        assert_ne!(code, 200, "minority write accepted: {body}");
        let (code, body) = get(&addrs[i], "k").await;
        assert_ne!(code, 200, "minority read served: {body}");
    }
    cluster.heal().await;
    for &i in &minority {
        assert_eq!(get_until_ok(&addrs[i], "k", WITHIN).await, json!(2));
    }
    // No minority write survived.
    assert_eq!(get_until_ok(&addrs[new], "k", WITHIN).await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_minority_partition() {
    minority_partition_leaves_majority_available("ppart", Mode::Passive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_minority_partition() {
    minority_partition_leaves_majority_available("apart", Mode::Active).await;
}

async fn leader_crash_failover_and_rejoin(name: &str, mode: Mode) {
    let mut cluster = Cluster::start(name, 3, mode, &[]);
    let addrs = cluster.addrs();
    put_until_ok(&addrs, "a", json!(1), WITHIN).await;
    let old = cluster.leader().await;
    cluster.kill(old);
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != old)
        .map(|i| addrs[i].clone())
        .collect();
    put_until_ok(&survivors, "a", json!(2), WITHIN).await;
    let new = cluster
        .leader_among(&(0..3).filter(|&i| i != old).collect::<Vec<_>>())
        .await;
    assert_ne!(new, old);
    cluster.restart(old);
    assert_eq!(get_until_ok(&addrs[old], "a", WITHIN).await, json!(2));
    put_until_ok(&[addrs[old].clone()], "a", json!(3), WITHIN).await;
    for a in &addrs {
        assert_eq!(get_until_ok(a, "a", WITHIN).await, json!(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_leader_crash_failover() {
    leader_crash_failover_and_rejoin("pfail", Mode::Passive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_primary_crash_failover() {
    leader_crash_failover_and_rejoin("afail", Mode::Active).await;
}

async fn full_restart_recovers(name: &str, mode: Mode) {
    let mut cluster = Cluster::start(name, 3, mode, &[]);
    let addrs = cluster.addrs();
    for k in 0..10 {
        put_until_ok(&addrs, &format!("k{k}"), json!(k * 10), WITHIN).await;
    }
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    for k in 0..10 {
        let v = get_until_ok(&addrs[k % 3], &format!("k{k}"), WITHIN).await;
        assert_eq!(v, json!(k * 10), "k{k} after restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_full_restart_recovers_from_disk() {
    full_restart_recovers("prest", Mode::Passive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_full_restart_recovers_from_disk() {
    full_restart_recovers("arest", Mode::Active).await;
}

async fn retried_writes_apply_once(name: &str, mode: Mode) {
    let cluster = Cluster::start(name, 3, mode, &[]);
    let addrs = cluster.addrs();
    put_until_ok(&addrs, "r", json!(1), WITHIN).await;
    let body = json!({"from": 1, "to": 2, "client": "c1", "seq": 1});
    let (code, first) = retry_definite(WITHIN, || cas(&addrs[1], "r", body.clone())).await;
    assert_eq!(code, 200, "{first}");
    // The retry (through another node) would mismatch if applied again; it gets the
    // first attempt's answer instead.
    let (code, again) = retry_definite(WITHIN, || cas(&addrs[2], "r", body.clone())).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(get_until_ok(&addrs[0], "r", WITHIN).await, json!(2));
    let (code, _) = retry_definite(WITHIN, || {
        put_body(
            &addrs[0],
            "r",
            json!({"value": 7, "client": "c1", "seq": 2}),
        )
    })
    .await;
    assert_eq!(code, 200);
    let (code, stale) = retry_definite(WITHIN, || {
        put_body(
            &addrs[0],
            "r",
            json!({"value": 8, "client": "c1", "seq": 1}),
        )
    })
    .await;
    assert_eq!(code, 422, "{stale}");
    assert_eq!(stale["definite"], json!(false));
    assert_eq!(get_until_ok(&addrs[2], "r", WITHIN).await, json!(7));
    // Without a session, a repeated cas is a new request and fails definitely.
    let (code, miss) =
        retry_definite(WITHIN, || cas(&addrs[0], "r", json!({"from": 1, "to": 2}))).await;
    assert_eq!(
        (code, &miss["definite"], &miss["current"]),
        (409, &json!(true), &json!(7))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_retried_writes_apply_once() {
    retried_writes_apply_once("pdedup", Mode::Passive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_retried_writes_apply_once() {
    retried_writes_apply_once("adedup", Mode::Active).await;
}
