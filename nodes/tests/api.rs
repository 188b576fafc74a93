//! The HTTP surface: malformed requests get a 4xx with a message, unknown routes 404,
//! status and metrics carry what the harness reads, and down peers never hang a request.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nodes::{Bug, Mode, NodeArgs};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(method: &str, url: String, body: &str) -> (u16, serde_json::Value) {
    let c = reqwest::Client::new();
    let rb = match method {
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        "GET" => c.get(url),
        _ => c.post(url),
    };
    let r = rb
        .header("content-type", "application/json")
        .header("x-faultline-secret", SECRET)
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
        ("PUT", format!("http://{a}/kv/%FF"), "{\"value\": 1}", 400),
        ("POST", format!("http://{a}/kv/k/roll"), "{\"client\": \"c\", \"x\": 1}", 400),
        ("POST", format!("http://{a}/bank/transfer"), "{\"to\": \"n2\", \"amount\": 1, \"extra\": 1}", 400),
        ("POST", format!("http://{a}/admin/clock"), &format!("{{\"offset_ms\": {}}}", i64::MIN), 400),
        ("POST", format!("http://{a}/admin/clock"), "{\"offset_ms\": 86400001}", 400),
        ("GET", format!("http://{a}/admin/state?dump=maybe"), "", 400),
        ("GET", format!("http://{a}/kv/{}", "k".repeat(9000)), "", 414),
    ];
    for (method, url, body, want) in cases {
        let (code, resp) = raw(method, url.clone(), body).await;
        assert_eq!(code, *want, "{method} {url} {body:.40}: {resp}");
        // Every error is JSON with a message and `definite`, 405 included.
        let msg = resp["error"].as_str().unwrap_or("");
        assert!(!msg.is_empty(), "{method} {url}: no JSON message in {resp}");
        assert_eq!(resp["definite"], json!(true), "{method} {url}: {resp}");
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

/// Sends raw bytes on a fresh connection and returns what comes back until the server
/// closes it or `wait` passes.
async fn raw_tcp(addr: &str, bytes: &[u8], wait: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_dot_keys_get_json_errors() {
    let cluster = Cluster::start("heads", 1, Mode::Passive, &[]);
    let a = cluster.addr(0);
    put_until_ok(
        std::slice::from_ref(&a),
        "h",
        json!(1),
        Duration::from_secs(5),
    )
    .await;
    let mut many = String::from("GET /status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for i in 0..120 {
        many.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let cases = [
        (many, "431"),
        // Dot segments cannot be addressed in a URL (clients normalise them away), so the
        // keys "." and ".." are refused on every path, not read as a route.
        ("GET /kv/.. HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_string(), "400"),
        ("PUT /kv/. HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 11\r\n\r\n{\"value\":1}".to_string(), "400"),
    ];
    for (req, code) in cases {
        let resp = raw_tcp(&a, req.as_bytes(), Duration::from_secs(3)).await;
        assert!(resp.starts_with(&format!("HTTP/1.1 {code}")), "{resp}");
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"));
        assert_eq!(v["definite"], json!(true), "{resp}");
    }
}

fn short_idle(a: &mut NodeArgs) {
    a.idle_timeout_ms = 400;
}

/// Connections that never finish their request head — silent ones, and ones that send
/// part of a head and stall — are closed after the idle timeout, so they cannot pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_are_closed() {
    let cluster = Cluster::start_with("slow", 1, Mode::Passive, &[], short_idle);
    let a = cluster.addr(0);
    put_until_ok(
        std::slice::from_ref(&a),
        "s",
        json!(1),
        Duration::from_secs(5),
    )
    .await;
    let mut conns = Vec::new();
    for i in 0..60 {
        let mut s = tokio::net::TcpStream::connect(&a).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
                .unwrap();
        }
        conns.push(s);
    }
    let t = Instant::now();
    let mut closed = 0;
    for mut s in conns {
        let mut buf = [0u8; 256];
        let left = Duration::from_secs(5).saturating_sub(t.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(_)) => closed += 1, // an error answer, then the close
            Err(_) => {}
        }
    }
    assert_eq!(closed, 60, "after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Still serving.
    assert_eq!(get(&a, "s").await.1["value"], json!(1));
}

fn no_secret(a: &mut NodeArgs) {
    a.cluster_secret = None;
}

/// With a cluster secret, a forged peer message (a fake append from the leader at a
/// higher term, which would overwrite a committed value) and admin calls without the
/// secret are refused with 401 and change nothing; without a secret the routes are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_and_admin_routes_need_the_cluster_secret() {
    let cluster = Cluster::start("secret", 3, Mode::Passive, &[]);
    let l = cluster.leader().await;
    let addrs = cluster.addrs();
    put_until_ok(&addrs, "k", json!(1), Duration::from_secs(5)).await;
    let f = (l + 1) % 3;
    let term = status(&addrs[f]).await["term"].as_u64().unwrap();
    let forged = json!({
        "from": cluster.id(l),
        "msg": {"type": "Append", "term": term + 5, "prev_index": 0, "prev_term": 0,
                "entries": [{"term": term + 5, "req": null}], "commit": 1, "round": 0},
    });
    let plain = reqwest::Client::new();
    let send = |method: reqwest::Method,
                url: String,
                body: Option<serde_json::Value>,
                secret: Option<&str>| {
        let mut rb = plain.request(method, url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        if let Some(s) = secret {
            rb = rb.header("x-faultline-secret", s);
        }
        async move {
            let r = rb.send().await.unwrap();
            let code = r.status().as_u16();
            (
                code,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    use reqwest::Method;
    let af = &addrs[f];
    for secret in [None, Some("wrong"), Some("")] {
        let calls = [
            (
                Method::POST,
                format!("http://{af}/peer/message"),
                Some(forged.clone()),
            ),
            (Method::POST, format!("http://{af}/peer/stream"), None),
            (
                Method::POST,
                format!("http://{af}/admin/isolate"),
                Some(json!({"peers": [cluster.id(l)]})),
            ),
            (Method::POST, format!("http://{af}/admin/heal"), None),
            (Method::GET, format!("http://{af}/admin/state"), None),
            (
                Method::POST,
                format!("http://{af}/admin/clock"),
                Some(json!({"offset_ms": 5})),
            ),
            (
                Method::POST,
                format!("http://{af}/bank/peer"),
                Some(json!({"from": cluster.id(l), "msg": {"frames": []}})),
            ),
        ];
        for (m, url, body) in calls {
            let (code, v) = send(m.clone(), url.clone(), body, secret).await;
            assert_eq!(code, 401, "{m} {url} with {secret:?}: {v}");
            assert_eq!(v["definite"], json!(true), "{v}");
            assert!(
                v["error"].as_str().unwrap().contains("x-faultline-secret"),
                "{v}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for a in &addrs {
        let s = status(a).await;
        assert_eq!(s["isolated_peers"], json!([]), "{s}");
        assert!(
            s["term"].as_u64().unwrap() < term + 5,
            "forged term reached {a}: {s}"
        );
        assert_eq!(get_until_ok(a, "k", Duration::from_secs(3)).await, json!(1));
    }
    // With the secret, the same admin route works (the test client sends it).
    let (code, v) = request("GET", format!("http://{af}/admin/state"), None).await;
    assert_eq!(code, 200, "{v}");
    // The client API and status stay open.
    let (code, _) = send(Method::GET, format!("http://{af}/kv/k"), None, None).await;
    assert_eq!(code, 200);

    // A cluster without a secret keeps its peer and admin routes open.
    let open = Cluster::start_with("nosecret", 1, Mode::Passive, &[], no_secret);
    let (code, v) = send(
        Method::GET,
        format!("http://{}/admin/state", open.addr(0)),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
}

/// Keys with characters that mean something in a URL reach exactly that key on every
/// path: at the leader, batched from a follower, forwarded over HTTP by a follower (the
/// stale-read / ack-before-commit bugs use that path), and in active mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_url_characters_reach_exactly_that_key() {
    let keys = [
        "x?y",
        "a/b",
        "100%",
        "%2F",
        "../status",
        "a..b",
        "#frag",
        "sp ace",
        "ключ✓",
    ];
    let url = |addr: &str, key: &str, suffix: Option<&str>| {
        let mut u = reqwest::Url::parse(&format!("http://{addr}/")).unwrap();
        u.path_segments_mut()
            .unwrap()
            .pop_if_empty()
            .push("kv")
            .push(key)
            .extend(suffix);
        u.to_string()
    };
    let setups: [(&str, Mode, &[Bug]); 3] = [
        ("keys-passive", Mode::Passive, &[]),
        (
            "keys-http-fwd",
            Mode::Passive,
            &[Bug::StaleRead, Bug::AckBeforeCommit],
        ),
        ("keys-active", Mode::Active, &[]),
    ];
    for (name, mode, bugs) in setups {
        let cluster = Cluster::start(name, 3, mode, bugs);
        let l = cluster.leader().await;
        let addrs = cluster.addrs();
        put_until_ok(&addrs, "x", json!("plain"), Duration::from_secs(5)).await;
        for (k, key) in keys.iter().enumerate() {
            // Writes through each node in turn: leader and followers.
            let at = &addrs[(l + k) % 3];
            let (code, v) = retry_definite(Duration::from_secs(5), || {
                request("PUT", url(at, key, None), Some(json!({"value": k})))
            })
            .await;
            assert_eq!(code, 200, "{name} put {key:?} at {at}: {v}");
            let (code, v) = request(
                "POST",
                url(at, key, Some("cas")),
                Some(json!({"from": k, "to": k + 100})),
            )
            .await;
            assert_eq!(code, 200, "{name} cas {key:?} at {at}: {v}");
        }
        for a in &addrs {
            for (k, key) in keys.iter().enumerate() {
                let (code, v) = retry_definite(Duration::from_secs(5), || {
                    request("GET", url(a, key, None), None)
                })
                .await;
                assert_eq!(
                    (code, &v["value"]),
                    (200, &json!(k + 100)),
                    "{name} get {key:?} at {a}: {v}"
                );
            }
            let (code, v) = request("GET", url(a, "x", None), None).await;
            assert_eq!(
                (code, &v["value"]),
                (200, &json!("plain")),
                "{name}: x was overwritten: {v}"
            );
        }
        // A roll on such a key through a follower sets that key.
        let f = &addrs[(l + 1) % 3];
        let (code, v) = retry_definite(Duration::from_secs(5), || {
            request("POST", url(f, "r?/%", Some("roll")), None)
        })
        .await;
        assert_eq!(code, 200, "{name}: {v}");
        let (_, got) = request("GET", url(f, "r?/%", None), None).await;
        assert_eq!(got["value"], v["value"], "{name}");
        let (_, r) = request("GET", url(f, "r", None), None).await;
        assert_eq!(r["value"], json!(null), "{name}: {r}");
    }
}
