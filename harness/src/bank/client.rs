//! The bank and admin routes of faultline's nodes, as calls on `HttpClient`, and what each
//! transfer response proves:
//!
//! | what came back                           | transfer |
//! |------------------------------------------|----------|
//! | 200 `{"seq","balance"}`                  | ok       |
//! | 409 (insufficient funds), 400 (bad body) | fail     |
//! | an error body with `"definite": true`    | fail     |
//! | connection refused / not established     | fail     |
//! | timeout, reset, any other error response | info     |
//!
//! Transfers are the hot path and go over the raw keep-alive pool (`HttpClient::exchange`);
//! status, transfer logs, snapshots and clock offsets are rare and use `call_json`.

use std::collections::BTreeMap;
use std::time::Duration;

use checker::snapshot::{Snapshot, Transfer};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use workloads::Completion;

use crate::client::{json_request, ExchangeError, HttpClient, RequestError, Response};

/// How one transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Debited and queued as message `seq` on the sender's channel to the receiver.
    Ok {
        seq: Option<u64>,
        balance: Option<i64>,
    },
    /// Certainly not applied.
    Fail { error: String },
    /// May have been applied.
    Info { error: String },
}

impl TransferOutcome {
    pub fn completion(&self) -> Completion {
        match self {
            Self::Ok { .. } => Completion::Ok { read: None },
            Self::Fail { error } => Completion::Fail {
                error: error.clone(),
            },
            Self::Info { error } => Completion::Info {
                error: error.clone(),
            },
        }
    }
}

/// `GET /bank/status`, the fields the harness uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BankStatus {
    pub node: String,
    pub balance: i64,
    /// Per outgoing channel: frames sent but not yet acknowledged by the receiver.
    #[serde(default)]
    pub unacked: BTreeMap<String, u64>,
}

impl BankStatus {
    pub fn unacked_total(&self) -> u64 {
        self.unacked.values().sum()
    }
}

/// Why `POST /bank/snapshot` gave no snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// 409: a snapshot is still running on that initiator; nothing was started.
    Refused(String),
    /// No answer (unreachable, timeout, error status): nothing to judge.
    Failed(String),
    /// A 200 whose body is not a snapshot: the initiator answered wrongly.
    Malformed(String),
}

/// The request for one transfer. The body is built by hand: ids are plain names and the
/// amount an integer, and this is the hot path.
fn transfer_request(addr: &std::net::SocketAddr, to: &str, amount: i64) -> Vec<u8> {
    let body = format!(
        "{{\"to\":{},\"amount\":{amount}}}",
        serde_json::Value::from(to)
    );
    json_request("POST", "/bank/transfer", addr, &body)
}

fn classify_transfer(response: &Response) -> TransferOutcome {
    let body = String::from_utf8_lossy(&response.body);
    let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    match response.status {
        200 => TransferOutcome::Ok {
            seq: json.as_ref().and_then(|v| v["seq"].as_u64()),
            balance: json.as_ref().and_then(|v| v["balance"].as_i64()),
        },
        status => {
            let definite = json
                .as_ref()
                .and_then(|v| v["definite"].as_bool())
                .unwrap_or(false);
            let message = json
                .as_ref()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.trim().to_string());
            let error = format!("HTTP {status}: {message}");
            if status == 409 || status == 400 || definite {
                TransferOutcome::Fail { error }
            } else {
                TransferOutcome::Info { error }
            }
        }
    }
}

impl HttpClient {
    /// `POST /bank/transfer` on node `node`: send `amount` to the node named `to`.
    pub async fn transfer(
        &self,
        node: usize,
        to: &str,
        amount: i64,
        deadline: Duration,
    ) -> TransferOutcome {
        let request = transfer_request(&self.addr(node), to, amount);
        match tokio::time::timeout(deadline, self.exchange(node, &request)).await {
            Ok(Ok(response)) => classify_transfer(&response),
            Ok(Err(ExchangeError::NotSent(error))) => TransferOutcome::Fail { error },
            Ok(Err(ExchangeError::MaybeSent(error))) => TransferOutcome::Info { error },
            Err(_) => TransferOutcome::Info {
                error: "timeout".into(),
            },
        }
    }

    /// `GET path` on node `node`, expecting 200 and a body of type `T`.
    async fn get_json<T: DeserializeOwned>(
        &self,
        node: usize,
        path: &str,
        timeout: Duration,
    ) -> Result<T, RequestError> {
        let (status, body) = self
            .call_json(node, Method::GET, path, None, timeout)
            .await?;
        if status != 200 {
            return Err(RequestError::Status {
                method: "GET",
                path: path.to_string(),
                status,
                body: body.to_string(),
            });
        }
        serde_json::from_value(body).map_err(|e| RequestError::BadBody {
            method: "GET",
            path: path.to_string(),
            why: e.to_string(),
        })
    }

    /// `GET /bank/status` of node `node`.
    pub async fn bank_status(
        &self,
        node: usize,
        timeout: Duration,
    ) -> Result<BankStatus, RequestError> {
        self.get_json(node, "/bank/status", timeout).await
    }

    /// `GET /bank/transfers`: every transfer node `node` ever sent.
    pub async fn bank_transfers(
        &self,
        node: usize,
        timeout: Duration,
    ) -> Result<Vec<Transfer>, RequestError> {
        self.get_json(node, "/bank/transfers", timeout).await
    }

    /// `POST /bank/snapshot` on the initiator `node`; waits up to `timeout` for it.
    pub async fn snapshot(
        &self,
        node: usize,
        request: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Snapshot, SnapshotError> {
        let (status, body) = self
            .call_json(node, Method::POST, "/bank/snapshot", Some(request), timeout)
            .await
            .map_err(|e| SnapshotError::Failed(e.to_string()))?;
        let message = || {
            body["error"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_string)
        };
        match status {
            200 => serde_json::from_value(body.clone())
                .map_err(|e| SnapshotError::Malformed(format!("not a snapshot: {e}"))),
            409 => Err(SnapshotError::Refused(message())),
            status => Err(SnapshotError::Failed(format!(
                "HTTP {status}: {}",
                message()
            ))),
        }
    }

    /// `POST /admin/clock`: set node `node`'s wall-clock offset (0 = no skew).
    pub async fn set_clock_offset(
        &self,
        node: usize,
        offset_ms: i64,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        let body = serde_json::json!({ "offset_ms": offset_ms });
        match self
            .call_json(node, Method::POST, "/admin/clock", Some(&body), timeout)
            .await?
        {
            (200, _) => Ok(()),
            (status, body) => Err(RequestError::Status {
                method: "POST",
                path: "/admin/clock".into(),
                status,
                body: body.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_response as resp;
    use axum::extract::Json;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn transfer_outcomes_follow_the_table() {
        assert_eq!(
            classify_transfer(&resp(200, r#"{"seq":7,"balance":993}"#)),
            TransferOutcome::Ok {
                seq: Some(7),
                balance: Some(993)
            }
        );
        let funds = r#"{"error":"insufficient funds: balance 3","definite":true}"#;
        assert!(matches!(
            classify_transfer(&resp(409, funds)),
            TransferOutcome::Fail { error } if error.contains("insufficient funds")
        ));
        assert!(matches!(
            classify_transfer(&resp(400, r#"{"error":"unknown peer n9"}"#)),
            TransferOutcome::Fail { .. }
        ));
        assert!(matches!(
            classify_transfer(&resp(503, r#"{"error":"x","definite":true}"#)),
            TransferOutcome::Fail { .. }
        ));
        assert!(matches!(
            classify_transfer(&resp(500, "oops")),
            TransferOutcome::Info { .. }
        ));
    }

    #[test]
    fn transfer_request_is_well_formed_http() {
        let addr: std::net::SocketAddr = "10.77.1.2:7000".parse().unwrap();
        let req = String::from_utf8(transfer_request(&addr, "n2", 5)).unwrap();
        assert!(req.starts_with("POST /bank/transfer HTTP/1.1\r\n"), "{req}");
        assert!(
            req.ends_with("\r\n\r\n{\"to\":\"n2\",\"amount\":5}"),
            "{req}"
        );
        assert!(req.contains("content-length: 22\r\n"), "{req}");
    }

    /// A fake node speaking the contract: transfers, status, transfer log, snapshots
    /// (the second concurrent one refused), clock offsets.
    #[tokio::test]
    async fn talks_to_a_node_speaking_the_contract() {
        let seq = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route(
                "/bank/transfer",
                post({
                    let seq = seq.clone();
                    move |Json(b): Json<serde_json::Value>| async move {
                        let amount = b["amount"].as_i64().unwrap();
                        if amount > 100 {
                            return (
                                StatusCode::CONFLICT,
                                Json(serde_json::json!({"error":"insufficient funds","definite":true})),
                            );
                        }
                        let s = seq.fetch_add(1, Ordering::SeqCst) + 1;
                        (
                            StatusCode::OK,
                            Json(serde_json::json!({"seq": s, "balance": 100 - amount})),
                        )
                    }
                }),
            )
            .route(
                "/bank/status",
                get(|| async {
                    Json(serde_json::json!({"node":"n1","balance":95,"clock":{"n1":1},
                        "sent":{"n2":1},"received":{},"unacked":{"n2":1},"snapshot":null,
                        "clock_offset_ms":0}))
                }),
            )
            .route(
                "/bank/transfers",
                get(|| async {
                    Json(serde_json::json!([{"from":"n1","to":"n2","seq":1,"amount":5,"clock":{"n1":1}}]))
                }),
            )
            .route(
                "/bank/snapshot",
                post(|Json(b): Json<serde_json::Value>| async move {
                    if b["id"] == 2 {
                        return (
                            StatusCode::CONFLICT,
                            Json(serde_json::json!({"error":"snapshot 1 is still running on n1"})),
                        );
                    }
                    (
                        StatusCode::OK,
                        Json(serde_json::json!({"id": b["id"], "initiator":"n1",
                            "algorithm": b["algorithm"], "initial_total": 200,
                            "nodes":["n1","n2"], "checkpoints":[], "missing":["n1","n2"]})),
                    )
                }),
            )
            .route(
                "/admin/clock",
                post(|Json(b): Json<serde_json::Value>| async move {
                    assert_eq!(b["offset_ms"], -120);
                    Json(serde_json::json!({}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = HttpClient::new(&[addr]);
        let t = Duration::from_secs(2);

        assert_eq!(
            client.transfer(0, "n2", 5, t).await,
            TransferOutcome::Ok {
                seq: Some(1),
                balance: Some(95)
            }
        );
        assert!(matches!(
            client.transfer(0, "n2", 500, t).await,
            TransferOutcome::Fail { .. }
        ));
        let status = client.bank_status(0, t).await.unwrap();
        assert_eq!((status.balance, status.unacked_total()), (95, 1));
        let log = client.bank_transfers(0, t).await.unwrap();
        assert_eq!((log.len(), log[0].amount), (1, 5));
        let request = |id: u64| serde_json::json!({"id": id, "algorithm": "clock"});
        let snap = client.snapshot(0, &request(1), t).await.unwrap();
        assert_eq!((snap.id, snap.missing.len()), (1, 2));
        assert!(matches!(
            client.snapshot(0, &request(2), t).await,
            Err(SnapshotError::Refused(e)) if e.contains("still running")
        ));
        client.set_clock_offset(0, -120, t).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_node_is_a_definite_failure_everywhere() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let client = HttpClient::new(&[addr]);
        let t = Duration::from_millis(500);
        assert!(matches!(
            client.transfer(0, "n2", 1, t).await,
            TransferOutcome::Fail { .. }
        ));
        assert!(client.bank_status(0, t).await.is_err());
        assert!(matches!(
            client.snapshot(0, &serde_json::json!({"id":1}), t).await,
            Err(SnapshotError::Failed(_))
        ));
    }

    /// Nodes that check the cluster secret answer control calls only with it; the client
    /// sends it on every one of them once given.
    #[tokio::test]
    async fn control_calls_carry_the_cluster_secret() {
        use axum::http::HeaderMap;
        let app = axum::Router::new().route(
            "/admin/clock",
            post(|headers: HeaderMap| async move {
                match headers.get("x-faultline-secret").map(|v| v.as_bytes()) {
                    Some(b"s3cret") => (StatusCode::OK, Json(serde_json::json!({}))),
                    _ => (
                        StatusCode::UNAUTHORIZED,
                        Json(serde_json::json!({"error": "missing or wrong cluster secret"})),
                    ),
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let t = Duration::from_secs(2);
        let without = HttpClient::new(&[addr]);
        let refused = without.set_clock_offset(0, 5, t).await.unwrap_err();
        assert!(
            matches!(refused, RequestError::Status { status: 401, .. }),
            "{refused}"
        );
        let with = HttpClient::new(&[addr]).with_secret(Some("s3cret".into()));
        with.set_clock_offset(0, 5, t).await.unwrap();
    }
}
