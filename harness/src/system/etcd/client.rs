//! The etcd client: read, write and cas over etcd's v3 JSON gateway (grpc-gateway in
//! front of the KV service), as a `workloads::Client`, plus the member status, leader and
//! metrics calls the harness makes off the op path.
//!
//! | op    | request (POST, keys and values base64, integers as decimal strings)            |
//! |-------|---------------------------------------------------------------------------------|
//! | read  | `/v3/kv/range {key[, serializable: true]}`; no `kvs` = the key is absent        |
//! | write | `/v3/kv/put {key, value}`                                                      |
//! | cas   | `/v3/kv/txn`: compare VALUE EQUAL `from`; success put `to`; failure range key   |
//!
//! The gateway leaves out fields holding their zero value, so a txn whose compare failed
//! has no `succeeded` at all. Values are the workload's integers as decimal text.
//!
//! ## What each outcome proves
//!
//! | what came back                                              | write / cas | read |
//! |-------------------------------------------------------------|-------------|------|
//! | 200 with etcd's response header                             | ok          | ok   |
//! | 200 txn without `succeeded` (the compare failed)            | fail (cas)  | —    |
//! | gRPC code 3 InvalidArgument in the error body               | fail        | fail |
//! | gRPC code 8 ResourceExhausted (`too many requests`, `database space exceeded`) | fail | fail |
//! | `raft proposal dropped`                                     | fail        | fail |
//! | a non-JSON 4xx (the gateway's router: no such route/method) | fail        | fail |
//! | connection refused / not established                        | fail        | fail |
//! | timeout, reset, any other error (`request timed out`, `leader changed`, `server stopped`, `context deadline exceeded`, ...) | info | fail |
//!
//! Why these are definite, from etcd's server (etcdserver/v3_server.go,
//! `processInternalRaftRequestOnce`, and etcdserver/api/v3rpc): `too many requests` is
//! returned when the applied index lags the committed one by more than 5000, before the
//! request is proposed; InvalidArgument errors are the gateway's decoding errors and the
//! v3rpc request checks (empty key, too large, duplicate key in a txn), all made before
//! the proposal, or an apply-time rejection every member makes alike; `database space
//! exceeded` is the quota check before the proposal (and the same rejection at apply);
//! raft returns `ErrProposalDropped` when it neither appended nor forwarded the proposal
//! (no known leader, or a leadership transfer in progress). Everything after
//! `Propose` — a timeout waiting for the apply (`request timed out`, `... due to leader
//! failure`, `... due to connection lost`), `server stopped`, the gateway's own context
//! deadline — may have been committed, so it is `info`. A read that did not complete is
//! `fail`: a read changes nothing, so dropping it loses nothing (as in `crate::client`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;
use workloads::{Client, Completion, Op, OpFn};

use super::ReadConsistency;
use crate::client::{json_request, ExchangeError, HttpClient, Response};

/// What one member says about itself (`/v3/maintenance/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    /// This member's id.
    pub member_id: u64,
    /// The member it believes leads, or `None` (etcd says `0`).
    pub leader: Option<u64>,
    /// Its raft term: of two leader claims, the higher term is the newer.
    pub raft_term: u64,
}

/// A client for an etcd cluster whose members are named `names` (`n1`, ...) and serve
/// their client URLs at `addrs`, in node-index order.
pub struct EtcdClient {
    http: HttpClient,
    addrs: Vec<SocketAddr>,
    names: Vec<String>,
    consistency: ReadConsistency,
    /// Member id → node index, learnt from the members' status and member list.
    members: Mutex<HashMap<u64, usize>>,
}

impl EtcdClient {
    pub fn new(names: &[String], addrs: &[SocketAddr], consistency: ReadConsistency) -> Self {
        assert_eq!(names.len(), addrs.len(), "one name per address");
        Self {
            http: HttpClient::new(addrs),
            addrs: addrs.to_vec(),
            names: names.to_vec(),
            consistency,
            members: Mutex::new(HashMap::new()),
        }
    }

    pub fn consistency(&self) -> ReadConsistency {
        self.consistency
    }

    /// One POST with a JSON body to node `node`, within `timeout`.
    async fn post(
        &self,
        node: usize,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<Response, ExchangeError> {
        let request = json_request("POST", path, &self.addrs[node], body);
        match tokio::time::timeout(timeout, self.http.exchange(node, &request)).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeError::MaybeSent("timeout".into())),
        }
    }

    /// A JSON answer with status 200 from `path`, or why there was none.
    async fn post_json(
        &self,
        node: usize,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let response = self
            .post(node, path, body, timeout)
            .await
            .map_err(|e| match e {
                ExchangeError::NotSent(e) | ExchangeError::MaybeSent(e) => e,
            })?;
        let text = String::from_utf8_lossy(&response.body);
        if response.status != 200 {
            return Err(format!("{path}: HTTP {}: {}", response.status, text.trim()));
        }
        serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON ({e}): {}", text.trim()))
    }

    /// Node `node`'s own status, or `None` if it does not answer within `timeout`.
    pub async fn status(&self, node: usize, timeout: Duration) -> Option<MemberStatus> {
        let v = self
            .post_json(node, "/v3/maintenance/status", "{}", timeout)
            .await
            .ok()?;
        let status = parse_status(&v)?;
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(status.member_id, node);
        Some(status)
    }

    /// Learns every member's id from node `node`'s member list (names are node ids).
    async fn learn_members(&self, node: usize, timeout: Duration) -> Result<(), String> {
        let v = self
            .post_json(node, "/v3/cluster/member/list", "{}", timeout)
            .await?;
        let members = v
            .get("members")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("member list without members: {v}"))?;
        let mut map = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for m in members {
            let id = m.get("ID").and_then(decimal);
            let name = m.get("name").and_then(Value::as_str);
            if let (Some(id), Some(name)) = (id, name) {
                if let Some(index) = self.names.iter().position(|n| n == name) {
                    map.insert(id, index);
                }
            }
        }
        Ok(())
    }

    /// The node index of member `id`, if known (asking the member list once if not).
    async fn node_of(&self, id: u64, ask: usize) -> Option<usize> {
        let known = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied();
        if known.is_some() {
            return known;
        }
        self.learn_members(ask, Duration::from_millis(500))
            .await
            .ok()?;
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    }

    /// The node the cluster says leads: every answering member's claim, the one made in
    /// the highest raft term winning (a deposed leader cut off from the others still names
    /// itself, in an older term). `None` when no member names a leader.
    pub async fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, u64, usize)> = None; // (term, leader id, asked node)
        for node in 0..self.addrs.len() {
            let Some(status) = self.status(node, Duration::from_millis(300)).await else {
                continue;
            };
            if let Some(leader) = status.leader {
                if best.is_none_or(|(term, _, _)| status.raft_term > term) {
                    best = Some((status.raft_term, leader, node));
                }
            }
        }
        let (_, leader, asked) = best?;
        self.node_of(leader, asked).await
    }

    /// Node `node`'s `/metrics` (Prometheus text).
    pub async fn metrics(&self, node: usize, timeout: Duration) -> Result<String, String> {
        let request = format!(
            "GET /metrics HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\n\r\n",
            self.addrs[node]
        );
        let response =
            match tokio::time::timeout(timeout, self.http.exchange(node, request.as_bytes())).await
            {
                Ok(Ok(r)) => r,
                Ok(Err(ExchangeError::NotSent(e) | ExchangeError::MaybeSent(e))) => return Err(e),
                Err(_) => return Err("timeout".into()),
            };
        let text = String::from_utf8_lossy(&response.body).into_owned();
        if response.status == 200 {
            Ok(text)
        } else {
            Err(format!(
                "GET /metrics: HTTP {}: {}",
                response.status,
                text.trim()
            ))
        }
    }
}

impl Client for EtcdClient {
    async fn invoke(&self, node: usize, op: &Op, deadline: Duration) -> Completion {
        let (path, body) = request(op, self.consistency);
        match self.post(node, path, &body, deadline).await {
            Ok(response) => classify(op, &response),
            Err(ExchangeError::NotSent(error)) => Completion::Fail { error },
            Err(ExchangeError::MaybeSent(error)) => unknown(op, error),
        }
    }
}

/// The gateway path and JSON body for `op`.
fn request(op: &Op, consistency: ReadConsistency) -> (&'static str, String) {
    let key = B64.encode(op.wire_key());
    let value = |v: i64| B64.encode(v.to_string());
    match op.f {
        OpFn::Read => {
            let serializable = match consistency {
                ReadConsistency::Linearizable => "",
                ReadConsistency::Serializable => ",\"serializable\":true",
            };
            ("/v3/kv/range", format!("{{\"key\":\"{key}\"{serializable}}}"))
        }
        OpFn::Write(v) => (
            "/v3/kv/put",
            format!("{{\"key\":\"{key}\",\"value\":\"{}\"}}", value(v)),
        ),
        OpFn::Cas(from, to) => (
            "/v3/kv/txn",
            format!(
                "{{\"compare\":[{{\"key\":\"{key}\",\"target\":\"VALUE\",\"result\":\"EQUAL\",\"value\":\"{}\"}}],\
                 \"success\":[{{\"request_put\":{{\"key\":\"{key}\",\"value\":\"{}\"}}}}],\
                 \"failure\":[{{\"request_range\":{{\"key\":\"{key}\"}}}}]}}",
                value(from),
                value(to)
            ),
        ),
    }
}

/// An integer etcd sends as a decimal string (or, leniently, as a number).
fn decimal(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn parse_status(v: &Value) -> Option<MemberStatus> {
    let member_id = v.get("header")?.get("member_id").and_then(decimal)?;
    // Zero-valued fields are left out: no `leader` means none, no `raftTerm` means 0.
    let leader = v.get("leader").and_then(decimal).filter(|&id| id != 0);
    let raft_term = v.get("raftTerm").and_then(decimal).unwrap_or(0);
    Some(MemberStatus {
        member_id,
        leader,
        raft_term,
    })
}

/// The value of the first kv in a range response: `Ok(None)` when there is none.
fn range_value(v: &Value) -> Result<Option<i64>, String> {
    let Some(kv) = v
        .get("kvs")
        .and_then(Value::as_array)
        .and_then(|kvs| kvs.first())
    else {
        return Ok(None);
    };
    // An empty value is left out like any zero value.
    let encoded = kv.get("value").and_then(Value::as_str).unwrap_or("");
    let bytes = B64
        .decode(encoded)
        .map_err(|e| format!("value {encoded:?} is not base64: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| format!("read returned a non-integer value {text:?}"))
}

/// Whether an error response proves the request had no effect (see the table at the top).
pub fn error_is_definite(status: u16, body: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        // Not the gateway's JSON error: its router refused the request (404, 405) or the
        // HTTP server did (400), before any handler ran.
        return (400..500).contains(&status);
    };
    let code = v.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = v
        .get("message")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("");
    const INVALID_ARGUMENT: i64 = 3;
    const RESOURCE_EXHAUSTED: i64 = 8;
    code == INVALID_ARGUMENT || code == RESOURCE_EXHAUSTED || message == "raft proposal dropped"
}

/// Turns a complete response into an outcome (see the table at the top).
fn classify(op: &Op, response: &Response) -> Completion {
    let body = String::from_utf8_lossy(&response.body);
    if response.status != 200 {
        let error = format!("HTTP {}: {}", response.status, body.trim());
        return if error_is_definite(response.status, &body) {
            Completion::Fail { error }
        } else {
            unknown(op, error)
        };
    }
    let parsed = serde_json::from_str::<Value>(&body)
        .ok()
        .filter(|v| v.get("header").is_some());
    let Some(v) = parsed else {
        return unknown(
            op,
            format!("HTTP 200 without etcd's response header: {}", body.trim()),
        );
    };
    match op.f {
        OpFn::Read => match range_value(&v) {
            Ok(read) => Completion::Ok { read },
            Err(error) => Completion::Fail { error },
        },
        OpFn::Write(_) => Completion::Ok { read: None },
        OpFn::Cas(..) => {
            if v.get("succeeded").and_then(Value::as_bool) == Some(true) {
                return Completion::Ok { read: None };
            }
            let current = v
                .get("responses")
                .and_then(|r| r.get(0))
                .and_then(|r| r.get("response_range"))
                .map(range_value);
            let error = match current {
                Some(Ok(Some(value))) => format!("cas mismatch (value was {value})"),
                Some(Ok(None)) => "cas mismatch (key absent)".to_string(),
                _ => "cas mismatch".to_string(),
            };
            Completion::Fail { error }
        }
    }
}

/// An op whose fate is unknown: `info`, except a read, which changes nothing (`fail`).
fn unknown(op: &Op, error: String) -> Completion {
    if op.f == OpFn::Read {
        Completion::Fail { error }
    } else {
        Completion::Info { error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(f: OpFn) -> Op {
        Op {
            key: Some("k1".into()),
            f,
        }
    }

    fn resp(status: u16, body: &str) -> Response {
        crate::client::test_response(status, body)
    }

    const HEADER: &str =
        r#""header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"2"}"#;

    #[test]
    fn requests_encode_keys_and_values_in_base64() {
        let (path, body) = request(&op(OpFn::Cas(4, 6)), ReadConsistency::Linearizable);
        assert_eq!(path, "/v3/kv/txn");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["compare"][0]["key"], "azE=");
        assert_eq!(v["compare"][0]["target"], "VALUE");
        assert_eq!(v["compare"][0]["result"], "EQUAL");
        assert_eq!(v["compare"][0]["value"], "NA=="); // "4"
        assert_eq!(v["success"][0]["request_put"]["value"], "Ng=="); // "6"
        assert_eq!(v["failure"][0]["request_range"]["key"], "azE=");
        let (_, lin) = request(&op(OpFn::Read), ReadConsistency::Linearizable);
        let (_, ser) = request(&op(OpFn::Read), ReadConsistency::Serializable);
        assert_eq!(
            serde_json::from_str::<Value>(&lin)
                .unwrap()
                .get("serializable"),
            None
        );
        assert_eq!(
            serde_json::from_str::<Value>(&ser).unwrap()["serializable"],
            true
        );
        let (path, body) = request(&op(OpFn::Write(-12)), ReadConsistency::Linearizable);
        assert_eq!(path, "/v3/kv/put");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["value"],
            "LTEy"
        );
    }

    #[test]
    fn outcomes_follow_the_table() {
        let ok = |body: &str| resp(200, &format!("{{{HEADER}{body}}}"));
        assert_eq!(
            classify(
                &op(OpFn::Read),
                &ok(r#","kvs":[{"key":"azE=","value":"NQ=="}],"count":"1""#)
            ),
            Completion::Ok { read: Some(5) }
        );
        assert_eq!(
            classify(&op(OpFn::Read), &ok("")),
            Completion::Ok { read: None }
        );
        assert!(matches!(
            classify(
                &op(OpFn::Read),
                &ok(r#","kvs":[{"key":"azE=","value":"eA=="}]"#)
            ),
            Completion::Fail { .. }
        ));
        assert_eq!(
            classify(&op(OpFn::Write(1)), &ok("")),
            Completion::Ok { read: None }
        );
        assert_eq!(
            classify(
                &op(OpFn::Cas(1, 2)),
                &ok(r#","succeeded":true,"responses":[]"#)
            ),
            Completion::Ok { read: None }
        );
        // The gateway leaves `succeeded` out when the compare failed.
        let mismatch = classify(
            &op(OpFn::Cas(1, 2)),
            &ok(r#","responses":[{"response_range":{"kvs":[{"key":"azE=","value":"Nw=="}]}}]"#),
        );
        assert_eq!(
            mismatch,
            Completion::Fail {
                error: "cas mismatch (value was 7)".into()
            }
        );
        // 200 that is not etcd's answer: a write may have happened, a read is dropped.
        assert!(matches!(
            classify(&op(OpFn::Write(1)), &resp(200, "{}")),
            Completion::Info { .. }
        ));
        assert!(matches!(
            classify(&op(OpFn::Read), &resp(200, "garbage")),
            Completion::Fail { .. }
        ));

        let err = |code: i64, msg: &str| {
            format!(r#"{{"error":"{msg}","message":"{msg}","code":{code}}}"#)
        };
        for (status, body, definite) in [
            (503, err(14, "etcdserver: request timed out"), false),
            (
                503,
                err(
                    14,
                    "etcdserver: request timed out, possibly due to previous leader failure",
                ),
                false,
            ),
            (503, err(14, "etcdserver: leader changed"), false),
            (503, err(14, "etcdserver: server stopped"), false),
            (504, err(4, "context deadline exceeded"), false),
            (500, err(2, "some unknown error"), false),
            (500, "plain text".to_string(), false),
            (429, err(8, "etcdserver: too many requests"), true),
            (
                429,
                err(8, "etcdserver: mvcc: database space exceeded"),
                true,
            ),
            (400, err(3, "etcdserver: request is too large"), true),
            (400, err(3, "illegal base64 data at input byte 0"), true),
            (500, err(2, "raft proposal dropped"), true),
            (404, "Not Found".to_string(), true),
            (405, "Method Not Allowed".to_string(), true),
        ] {
            let write = classify(&op(OpFn::Write(1)), &resp(status, &body));
            let cas = classify(&op(OpFn::Cas(1, 2)), &resp(status, &body));
            let read = classify(&op(OpFn::Read), &resp(status, &body));
            assert!(matches!(read, Completion::Fail { .. }), "{body}: {read:?}");
            for outcome in [write, cas] {
                if definite {
                    assert!(
                        matches!(outcome, Completion::Fail { .. }),
                        "{body}: {outcome:?}"
                    );
                } else {
                    assert!(
                        matches!(outcome, Completion::Info { .. }),
                        "{body}: {outcome:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn status_reads_decimal_ids_and_missing_zero_fields() {
        let v: Value = serde_json::from_str(
            r#"{"header":{"member_id":"1381540707029590151"},"leader":"1381540707029590151","raftTerm":"2"}"#,
        )
        .unwrap();
        assert_eq!(
            parse_status(&v),
            Some(MemberStatus {
                member_id: 1381540707029590151,
                leader: Some(1381540707029590151),
                raft_term: 2
            })
        );
        let v: Value =
            serde_json::from_str(r#"{"header":{"member_id":"9"},"leader":"0"}"#).unwrap();
        assert_eq!(
            parse_status(&v),
            Some(MemberStatus {
                member_id: 9,
                leader: None,
                raft_term: 0
            })
        );
        assert_eq!(parse_status(&serde_json::json!({"error": "x"})), None);
    }
}
