//! Each named bug, next to the correct protocol under the same fault: the behaviour
//! differs in the way the bug's description says.

mod common;

use std::time::Duration;

use common::*;
use nodes::{Bug, Mode};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(8);

/// Cuts the current leader off from everyone; returns (leader, the others).
async fn isolate_leader(cluster: &Cluster) -> (usize, Vec<usize>) {
    let l = cluster.leader().await;
    let others: Vec<usize> = (0..cluster.len()).filter(|&i| i != l).collect();
    cluster.partition(&[l], &others).await;
    (l, others)
}

/// stale-read: a partitioned leader answers a read with a value the majority has
/// already overwritten. Fault: partition the leader away, write through the majority.
async fn stale_read_scenario(bugs: &[Bug]) -> (u16, Value) {
    let cluster = Cluster::start(&format!("stale{}", bugs.len()), 3, Mode::Passive, bugs);
    put_until_ok(&cluster.addrs(), "k", json!(1), WITHIN).await;
    let (old, others) = isolate_leader(&cluster).await;
    let maj: Vec<String> = others.iter().map(|&i| cluster.addr(i)).collect();
    put_until_ok(&maj, "k", json!(2), WITHIN).await;
    get(&cluster.addr(old), "k").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_read_serves_overwritten_value_from_deposed_leader() {
    let (code, body) = stale_read_scenario(&[]).await;
    assert_ne!(
        code, 200,
        "correct mode served a read without a quorum: {body}"
    );
    let (code, body) = stale_read_scenario(&[Bug::StaleRead]).await;
    assert_eq!((code, &body["value"]), (200, &json!(1)), "{body}");
}

/// ack-before-commit: a partitioned leader acknowledges a write no majority has, and the
/// write is then lost. Fault: partition the leader, write to it, heal.
async fn ack_before_commit_scenario(bugs: &[Bug]) -> (u16, Value) {
    let cluster = Cluster::start(&format!("abc{}", bugs.len()), 3, Mode::Passive, bugs);
    put_until_ok(&cluster.addrs(), "k", json!(1), WITHIN).await;
    let (old, others) = isolate_leader(&cluster).await;
    let acked = put(&cluster.addr(old), "k", json!(99)).await.0;
    cluster.leader_among(&others).await;
    cluster.heal().await;
    let v = get_until_ok(&cluster.addr(others[0]), "k", WITHIN).await;
    (acked, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_before_commit_acknowledges_a_write_that_is_lost() {
    let (code, after) = ack_before_commit_scenario(&[]).await;
    assert_ne!(code, 200);
    assert_eq!(after, json!(1));
    let (code, after) = ack_before_commit_scenario(&[Bug::AckBeforeCommit]).await;
    assert_eq!(code, 200, "buggy leader should acknowledge at once");
    assert_ne!(after, json!(99), "the acknowledged write 99 is gone");
}

/// no-fencing: a deposed leader's write (appended while partitioned) gets accepted by a
/// follower of the newer term after the partition heals, and acknowledged; and the
/// deposed leader never steps down, so two leaders serve side by side. Fault: partition
/// the leader, write to it, let the majority elect and write, heal.
/// Returns the status of the deposed leader's write and the roles of (old, new) leader
/// a second after the heal.
async fn no_fencing_scenario(bugs: &[Bug]) -> (u16, (String, String)) {
    let cluster = Cluster::start(&format!("fence{}", bugs.len()), 3, Mode::Passive, bugs);
    put_until_ok(&cluster.addrs(), "k", json!(1), WITHIN).await;
    let (old, others) = isolate_leader(&cluster).await;
    let old_addr = cluster.addr(old);
    let stale_write = tokio::spawn(async move { put(&old_addr, "f", json!("deposed")).await.0 });
    let maj: Vec<String> = others.iter().map(|&i| cluster.addr(i)).collect();
    put_until_ok(&maj, "k", json!(2), WITHIN).await;
    let new = cluster.leader_among(&others).await;
    let term = status(&cluster.addr(new)).await["term"].as_u64().unwrap();
    let old_term = status(&cluster.addr(old)).await["term"].as_u64().unwrap();
    assert!(term > old_term, "majority must be in a newer term");
    cluster.heal().await;
    let code = stale_write.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let role = |s: Value| s["role"].as_str().unwrap_or("?").to_string();
    let roles = (
        role(status(&cluster.addr(old)).await),
        role(status(&cluster.addr(new)).await),
    );
    (code, roles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fencing_accepts_a_deposed_leaders_write() {
    let (code, (old, new)) = no_fencing_scenario(&[]).await;
    assert_ne!(code, 200);
    assert_eq!((old.as_str(), new.as_str()), ("follower", "leader"));
    let (code, (old, new)) = no_fencing_scenario(&[Bug::NoFencing]).await;
    assert_eq!(code, 200);
    assert_eq!(
        (old.as_str(), new.as_str()),
        ("leader", "leader"),
        "the deposed leader keeps leading next to the new one"
    );
}

/// forget-vote: after a restart the node's term (and vote) are gone, so it could vote
/// again in a term it already voted in (unit test `forget_vote_bug_votes_twice...`).
/// Fault: crash and restart. Here: restart one node alone and read its term.
async fn forget_vote_scenario(bugs: &[Bug]) -> (u64, u64, u64) {
    let mut cluster = Cluster::start(&format!("forget{}", bugs.len()), 3, Mode::Passive, bugs);
    put_until_ok(&cluster.addrs(), "k", json!(1), WITHIN).await;
    let l = cluster.leader().await;
    let term = status(&cluster.addr(l)).await["term"].as_u64().unwrap();
    let f = (l + 1) % 3;
    for i in 0..3 {
        cluster.kill(i);
    }
    cluster.restart(f);
    let deadline = std::time::Instant::now() + WITHIN;
    let s = loop {
        if let Some(s) = try_status(&cluster.addr(f)).await {
            break s;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    (
        term,
        s["term"].as_u64().unwrap(),
        s["last_index"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_vote_loses_term_across_restart() {
    let (term, after, log) = forget_vote_scenario(&[]).await;
    assert!(
        after >= term && log > 0,
        "correct: term {term} -> {after}, log {log}"
    );
    let (term, after, log) = forget_vote_scenario(&[Bug::ForgetVote]).await;
    assert!(term >= 1);
    // The log survives; the term does not (it restarts from 0, bumped only by its own
    // election attempts).
    assert!(
        after < term || (term > 1 && after <= 1),
        "bug: term {term} -> {after}"
    );
    assert!(log > 0);
}

/// deliver-unagreed: an isolated primary executes and acknowledges a request no
/// majority agreed to; the majority's order never contains it. Fault: partition the
/// primary, send it a write, heal.
async fn deliver_unagreed_scenario(bugs: &[Bug]) -> (u16, Value) {
    let cluster = Cluster::start(&format!("unagreed{}", bugs.len()), 3, Mode::Active, bugs);
    put_until_ok(&cluster.addrs(), "k", json!(1), WITHIN).await;
    let (old, others) = isolate_leader(&cluster).await;
    let acked = put(&cluster.addr(old), "k", json!(99)).await.0;
    let maj: Vec<String> = others.iter().map(|&i| cluster.addr(i)).collect();
    put_until_ok(&maj, "other", json!(1), WITHIN).await;
    cluster.heal().await;
    (
        acked,
        get_until_ok(&cluster.addr(others[0]), "k", WITHIN).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_unagreed_acknowledges_a_request_outside_the_order() {
    let (code, after) = deliver_unagreed_scenario(&[]).await;
    assert_ne!(code, 200);
    assert_eq!(after, json!(1));
    let (code, after) = deliver_unagreed_scenario(&[Bug::DeliverUnagreed]).await;
    assert_eq!(code, 200);
    // Replicas that executed unagreed ops may hold other wrong values too; what matters
    // is that the acknowledged write is not what the majority has.
    assert_ne!(
        after,
        json!(99),
        "the acknowledged write 99 is not in the agreed order"
    );
}
