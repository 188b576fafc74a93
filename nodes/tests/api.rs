//! The HTTP surface: malformed requests get a 4xx with a message, unknown routes 404,
//! status and metrics carry what the harness reads, and down peers never hang a request.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nodes::Mode;
use serde_json::json;

async fn raw(method: &str, url: String, body: &str) -> (u16, serde_json::Value) {
    let c = reqwest::Client::new();
    let rb = match method {
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        _ => c.post(url),
    };
    let r = rb
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_rejected_with_a_message() {
    let cluster = Cluster::start("api", 3, Mode::Passive, &[]);
    cluster.leader().await;
    let a = cluster.addr(0);
    let kv = format!("http://{a}/kv/k");
    let cases: &[(&str, String, &str, u16)] = &[
        ("PUT", kv.clone(), "{\"value\": ", 400),
        ("PUT", kv.clone(), "{\"value\": 1.5}", 400),
        ("PUT", kv.clone(), "{\"value\": true}", 400),
        ("PUT", kv.clone(), "{\"value\": {\"a\": 1}}", 400),
        ("PUT", kv.clone(), "{}", 400),
        ("PUT", kv.clone(), "{\"value\": 1, \"extra\": 2}", 400),
        ("PUT", kv.clone(), "{\"value\": 1, \"seq\": -1}", 400),
        ("PUT", kv.clone(), "{\"value\": 18446744073709551615}", 400),
        ("POST", format!("{kv}/cas"), "{\"from\": 1}", 400),
        ("POST", format!("{kv}/cas"), "[1, 2]", 400),
        ("PUT", kv.clone(), &"x".repeat(10_000), 413),
        ("PUT", format!("http://{a}/kv/{}", "k".repeat(300)), "{\"value\": 1}", 400),
        ("POST", format!("http://{a}/admin/isolate"), "{\"peers\": [\"n9\"]}", 400),
        ("POST", format!("http://{a}/admin/isolate"), "{\"peer\": \"n2\"}", 400),
        ("POST", format!("http://{a}/peer/message"), "{\"from\": \"n2\", \"msg\": 7}", 400),
        ("POST", format!("http://{a}/peer/message"), "{\"from\": \"zz\", \"msg\": {\"type\": \"Vote\", \"term\": 9, \"last_index\": 0, \"last_term\": 0}}", 403),
        ("POST", format!("http://{a}/nope"), "", 404),
        ("DELETE", kv.clone(), "", 405),
    ];
    for (method, url, body, want) in cases {
        let (code, resp) = raw(method, url.clone(), body).await;
        assert_eq!(code, *want, "{method} {url} {body:.40}: {resp}");
        if *want != 405 {
            let msg = resp["error"].as_str().or(resp.as_str()).unwrap_or("");
            assert!(!msg.is_empty(), "{method} {url}: no message in {resp}");
        }
    }
    // Still serving after all that.
    let (code, _) = put(&a, "k", json!(1)).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_report_what_the_harness_reads() {
    let cluster = Cluster::start("stat", 3, Mode::Passive, &[]);
    let l = cluster.leader().await;
    let addrs = cluster.addrs();
    put_until_ok(&addrs, "m", json!(1), Duration::from_secs(5)).await;
    get(&addrs[(l + 1) % 3], "m").await;
    // A follower serves its own reads (follower ReadIndex), so read at the leader too for
    // a client outcome there.
    get(&addrs[l], "m").await;
    let s = status(&addrs[l]).await;
    for field in [
        "id",
        "mode",
        "role",
        "term",
        "leader",
        "commit_index",
        "applied_index",
        "reachable_peers",
    ] {
        assert!(s.get(field).is_some(), "status lacks {field}: {s}");
    }
    assert_eq!(s["leader"], json!(cluster.id(l)));
    assert_eq!(s["reachable_peers"].as_array().unwrap().len(), 2, "{s}");
    let text = reqwest::get(format!("http://{}/metrics", addrs[l]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("faultline_peer_messages_total{node=\"n"),
        "{text}"
    );
    assert!(
        text.contains("type=\"append\",direction=\"sent\""),
        "{text}"
    );
    assert!(text.contains("direction=\"received\""), "{text}");
    assert!(text.contains("faultline_client_requests_total{"), "{text}");
    assert!(text.contains("outcome=\"ok\""), "{text}");
    // Isolation shows up in status.
    isolate(&addrs[l], &[cluster.id((l + 1) % 3)]).await;
    let s = status(&addrs[l]).await;
    assert_eq!(s["isolated_peers"], json!([cluster.id((l + 1) % 3)]));
    heal(&addrs[l]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_peers_give_prompt_definite_errors() {
    for mode in [Mode::Passive, Mode::Active] {
        let mut cluster = Cluster::start(&format!("down-{mode:?}"), 3, mode, &[]);
        let l = cluster.leader().await;
        put_until_ok(&cluster.addrs(), "d", json!(1), Duration::from_secs(5)).await;
        for i in (0..3).filter(|&i| i != l) {
            cluster.kill(i);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let a = cluster.addr(l);
        let t = Instant::now();
        let (code, body) = put(&a, "d", json!(2)).await;
        assert_eq!(
            (code, &body["definite"]),
            (503, &json!(true)),
            "{mode:?}: {body}"
        );
        let (code, _) = get(&a, "d").await;
        assert_eq!(code, 503);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{mode:?}: {:?}",
            t.elapsed()
        );
        assert_eq!(status(&a).await["id"], json!(cluster.id(l)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_cluster_serves() {
    for mode in [Mode::Passive, Mode::Active] {
        let cluster = Cluster::start(&format!("one-{mode:?}"), 1, mode, &[]);
        let a = cluster.addr(0);
        put_until_ok(
            std::slice::from_ref(&a),
            "s",
            json!("v"),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(get(&a, "s").await.1["value"], json!("v"));
    }
}
