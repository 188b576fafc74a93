//! The HTTP client for faultline's own nodes (the client API in the guide), as a
//! `workloads::Client`. It decides what each response proves:
//!
//! | what came back                           | write / cas | read |
//! |------------------------------------------|-------------|------|
//! | 200                                      | ok          | ok   |
//! | 409 on cas (value was not `from`)        | fail        | —    |
//! | an error body with `"definite": true`    | fail        | fail |
//! | connection refused / not established     | fail        | fail |
//! | timeout, reset, any other error response | info        | fail |
//!
//! The nodes mark each error response `"definite": true` when the request was certainly
//! not applied (nodes/src/api.rs); anything not so marked stays `info`.
//!
//! A read that did not complete can be recorded as `fail` because a read never changes
//! state, so dropping it from the history loses nothing (Jepsen does the same).

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use workloads::{Client, Completion, Op, OpFn};

pub struct HttpClient {
    http: reqwest::Client,
    /// `http://ADDR` per node.
    bases: Vec<String>,
}

#[derive(Deserialize)]
struct ValueBody {
    value: serde_json::Value,
}

impl HttpClient {
    pub fn new(addrs: &[std::net::SocketAddr]) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("a plain-HTTP reqwest client always builds");
        Self {
            http,
            bases: addrs.iter().map(|a| format!("http://{a}")).collect(),
        }
    }

    /// `GET /status` of node `node`, or `None` if it does not answer within `timeout`.
    pub async fn status(&self, node: usize, timeout: Duration) -> Option<serde_json::Value> {
        let resp = self
            .http
            .get(format!("{}/status", self.bases[node]))
            .timeout(timeout)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }
}

impl Client for HttpClient {
    async fn invoke(&self, node: usize, op: &Op, deadline: Duration) -> Completion {
        let url = format!("{}/kv/{}", self.bases[node], op.wire_key());
        let request = match op.f {
            OpFn::Read => self.http.get(url),
            OpFn::Write(v) => self.http.put(url).json(&serde_json::json!({ "value": v })),
            OpFn::Cas(from, to) => self
                .http
                .post(format!("{url}/cas"))
                .json(&serde_json::json!({ "from": from, "to": to })),
        };
        let is_read = op.f == OpFn::Read;
        let response = match request.timeout(deadline).send().await {
            Ok(r) => r,
            Err(e) => return classify_error(&e, is_read),
        };
        let status = response.status();
        match (op.f, status) {
            (OpFn::Read, StatusCode::OK) => match response.json::<ValueBody>().await {
                Ok(ValueBody {
                    value: serde_json::Value::Null,
                }) => Completion::Ok { read: None },
                Ok(ValueBody { value }) => match value.as_i64() {
                    Some(v) => Completion::Ok { read: Some(v) },
                    None => Completion::Fail {
                        error: format!("read returned a non-integer value {value}"),
                    },
                },
                Err(e) => Completion::Fail {
                    error: format!("read body: {e}"),
                },
            },
            (_, StatusCode::OK) => Completion::Ok { read: None },
            (OpFn::Cas(..), StatusCode::CONFLICT) => Completion::Fail {
                error: "cas mismatch".into(),
            },
            _ => {
                let body = response.text().await.unwrap_or_default();
                let definite = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("definite").and_then(|d| d.as_bool()))
                    .unwrap_or(false);
                let error = format!("HTTP {}: {}", status.as_u16(), body.trim());
                if is_read || definite {
                    Completion::Fail { error }
                } else {
                    Completion::Info { error }
                }
            }
        }
    }
}

/// A transport error: `fail` if the request provably never left (no connection), `info`
/// if it may have been sent.
fn classify_error(e: &reqwest::Error, is_read: bool) -> Completion {
    let error = if e.is_timeout() {
        "timeout".to_string()
    } else {
        root_cause(e)
    };
    if e.is_connect() || is_read {
        Completion::Fail { error }
    } else {
        Completion::Info { error }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
