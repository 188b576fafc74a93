//! The HTTP surface of a node: client API, status, metrics, peer messages and admin.
//!
//! Every error body is `{"error": "...", "definite": bool}`: `definite: true` means this
//! request was certainly not applied (the harness may record `fail`); `false` means it
//! may or may not have been (record `info`). README.md lists each case.
//!
//! The client routes (`/kv/*`, `/status`, `/metrics`) are open; the peer routes
//! (`/peer/*`) and `/admin/*` need the cluster secret when the node has one
//! (`http::require_secret`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::command::{Command, NodeId, Op, Outcome, Request, RequestId, Value};
use crate::config::Config;
use crate::driver::{ClientResult, Event, Replier};
use crate::http::{error, parse_body, require_secret, BadRequest, Secret};
use crate::machine::{Machine, Rejection, Status};
use crate::metrics::Direction;
use crate::transport::{self, Envelope, Transport};

/// Marks a client request one node forwarded to another, so it is never forwarded again.
pub const FORWARDED_BY: &str = "x-faultline-forwarded-by";

const MAX_KEY_LEN: usize = 256;

pub struct Node<M: Machine> {
    pub config: Arc<Config>,
    pub events: mpsc::Sender<Event<M::Msg, M::Kind>>,
    pub transport: Arc<Transport>,
    pub status: watch::Receiver<Status>,
    /// Request ids start at the wall clock in ns so a restarted node never reuses one.
    pub next_request: AtomicU64,
}

/// The kv node's routes: client routes open, peer and admin routes behind the cluster
/// secret.
pub fn router<M: Machine>(node: Arc<Node<M>>) -> Router {
    let limit = node.config.max_body_bytes;
    let secret = Secret(node.config.cluster_secret.as_deref().map(Arc::from));
    let guarded = Router::new()
        .route("/peer/message", post(peer_message::<M>))
        .route(transport::STREAM_PATH, post(peer_stream::<M>))
        .route("/admin/isolate", post(isolate::<M>))
        .route("/admin/heal", post(heal::<M>))
        .route("/admin/state", get(admin_state::<M>))
        .route_layer(axum::middleware::from_fn_with_state(secret, require_secret));
    Router::new()
        .route("/kv/{key}", get(get_kv::<M>).put(put_kv::<M>))
        .route("/kv/{key}/cas", post(cas_kv::<M>))
        .route("/kv/{key}/roll", post(roll_kv::<M>))
        .route("/status", get(status::<M>))
        .route("/metrics", get(metrics::<M>))
        .merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route", true) })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(node)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    from: Value,
    to: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// A roll's body: only the session, which may be left out (so may the whole body).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// The key from the path, decoded; refused (400, definite) if not UTF-8, empty, longer
/// than 256 bytes, or `.` / `..` (a URL cannot name those segments: clients and
/// forwarding nodes normalise them away).
fn key_of(path: Result<Path<String>, PathRejection>) -> Result<String, BadRequest> {
    let Path(key) =
        path.map_err(|r| BadRequest::new(format!("bad key in path: {}", r.body_text())))?;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        let msg = format!("key must be 1 to {MAX_KEY_LEN} bytes");
        return Err(BadRequest::new(msg));
    }
    if key == "." || key == ".." {
        let msg = format!("key {key:?} cannot be addressed in a URL");
        return Err(BadRequest::new(msg));
    }
    Ok(key)
}

async fn get_kv<M: Machine>(
    State(node): State<Arc<Node<M>>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let key = match key_of(path) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let cmd = Command {
        op: Op::Get { key },
        client: None,
        seq: None,
    };
    node.client_op(cmd, &headers).await
}

async fn put_kv<M: Machine>(
    State(node): State<Arc<Node<M>>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = key_of(path).and_then(|k| Ok((k, parse_body::<PutBody>(body, None)?)));
    let (key, body) = match parsed {
        Ok(kb) => kb,
        Err(r) => return r.into_response(),
    };
    let cmd = Command {
        op: Op::Put {
            key,
            value: body.value,
        },
        client: body.client,
        seq: body.seq,
    };
    node.client_op(cmd, &headers).await
}

async fn cas_kv<M: Machine>(
    State(node): State<Arc<Node<M>>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = key_of(path).and_then(|k| Ok((k, parse_body::<CasBody>(body, None)?)));
    let (key, body) = match parsed {
        Ok(kb) => kb,
        Err(r) => return r.into_response(),
    };
    let cmd = Command {
        op: Op::Cas {
            key,
            from: body.from,
            to: body.to,
        },
        client: body.client,
        seq: body.seq,
    };
    node.client_op(cmd, &headers).await
}

/// `POST /kv/{key}/roll`: sets the key to a random integer in [0, 10^9) and answers
/// `{"ok": true, "value": N}`. Who draws N is the replication scheme's business (see
/// `store`); with `--deterministic-roll` this node draws it now and it travels with the
/// request, so every replica that executes it sets N.
async fn roll_kv<M: Machine>(
    State(node): State<Arc<Node<M>>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = key_of(path)
        .and_then(|k| Ok((k, parse_body::<RollBody>(body, Some(RollBody::default()))?)));
    let (key, body) = match parsed {
        Ok(kb) => kb,
        Err(r) => return r.into_response(),
    };
    let drawn = node
        .config
        .deterministic_roll
        .then(|| crate::store::draw_roll(&mut rand::rng()));
    let cmd = Command {
        op: Op::Roll { key, drawn },
        client: body.client,
        seq: body.seq,
    };
    node.client_op(cmd, &headers).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    #[serde(default)]
    dump: Option<String>,
}

/// `GET /admin/state[?dump=1]`: this replica's applied index and a digest of its state
/// (with every key's value when `dump` is 1 or true). Read-only; answered by the
/// protocol loop between batches, with no coordination with other replicas.
async fn admin_state<M: Machine>(
    State(node): State<Arc<Node<M>>>,
    query: Result<Query<StateQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let dump = match query.as_ref().map(|q| q.dump.as_deref()) {
        Ok(None | Some("0" | "false")) => false,
        Ok(Some("1" | "true")) => true,
        Ok(Some(other)) => {
            let msg = format!("dump={other}: expected 1, true, 0 or false");
            return error(StatusCode::BAD_REQUEST, msg, true);
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text(), true),
    };
    let (done, wait) = oneshot::channel();
    if node.events.send(Event::State { dump, done }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "node is stopping", true);
    }
    match tokio::time::timeout(node.config.request_timeout, wait).await {
        Ok(Ok(report)) => {
            let mut body = serde_json::to_value(&report).unwrap_or_default();
            body["id"] = json!(node.config.id);
            body["mode"] = json!(node.config.mode.name());
            Json(body).into_response()
        }
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "protocol loop did not answer in time",
            true,
        ),
    }
}

impl<M: Machine> Node<M> {
    async fn client_op(&self, cmd: Command, headers: &HeaderMap) -> Response {
        let op = cmd.op.name();
        let (label, resp) = self.execute(cmd, headers).await;
        self.transport.metrics.client(op, label);
        resp
    }

    /// Runs one client command here or at the leader; returns (metrics label, response).
    async fn execute(&self, cmd: Command, headers: &HeaderMap) -> (&'static str, Response) {
        let forwarded_by = headers
            .get(FORWARDED_BY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(from) = &forwarded_by {
            if self.transport.is_isolated(from) {
                return (
                    "refused_isolated",
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("isolated from {from}"),
                        true,
                    ),
                );
            }
        }
        let req = Request {
            id: RequestId {
                node: self.config.id.clone(),
                n: self.next_request.fetch_add(1, Ordering::Relaxed),
            },
            cmd,
        };
        let (done, wait) = oneshot::channel();
        let cmd = req.cmd.clone();
        let event = Event::Client {
            req,
            forwarded: forwarded_by.is_some(),
            done,
        };
        if self.events.send(event).await.is_err() {
            return (
                "stopped",
                error(StatusCode::SERVICE_UNAVAILABLE, "node is stopping", true),
            );
        }
        let result = match tokio::time::timeout(self.config.request_timeout, wait).await {
            Err(_) => {
                return (
                    "timeout",
                    error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timed out waiting for the request to commit",
                        false,
                    ),
                )
            }
            Ok(Err(_)) => {
                return (
                    "dropped",
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "node stopped while waiting",
                        false,
                    ),
                )
            }
            Ok(Ok(r)) => r,
        };
        match result {
            ClientResult::Done(outcome) => outcome_response(outcome),
            ClientResult::Rejected(Rejection::NotLeader {
                leader: Some(leader),
            }) if forwarded_by.is_none() => self.forward(&leader, cmd).await,
            ClientResult::Rejected(Rejection::NotLeader { leader }) => {
                let addr = leader.as_deref().and_then(|l| self.transport.base_url(l));
                let body = json!({
                    "error": match &leader {
                        Some(l) => format!("not the leader; {l} leads"),
                        None => "no leader known".to_string(),
                    },
                    "definite": true,
                    "leader": leader,
                    "leader_url": addr,
                });
                (
                    "not_leader",
                    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response(),
                )
            }
            ClientResult::Rejected(Rejection::NoQuorum) => (
                "no_quorum",
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no contact with a majority of replicas",
                    true,
                ),
            ),
            ClientResult::Rejected(Rejection::LeadershipLost) => (
                "leadership_lost",
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "lost leadership before the read was confirmed",
                    true,
                ),
            ),
        }
    }

    /// Passes the request on to the leader and its answer back unchanged.
    async fn forward(&self, leader: &NodeId, cmd: Command) -> (&'static str, Response) {
        let Some(base) = self.transport.base_url(leader) else {
            return (
                "not_leader",
                error(StatusCode::SERVICE_UNAVAILABLE, "leader unknown", true),
            );
        };
        if self.transport.is_isolated(leader) {
            return (
                "forward_refused",
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("leader {leader} is isolated from this node"),
                    true,
                ),
            );
        }
        let client = &self.transport.client;
        // The key is one path segment, percent-encoded ('/', '?', '%', '#', spaces,
        // non-ASCII...), so the leader decodes exactly the key the client sent.
        let url = |key: &str, suffix: Option<&str>| -> Result<reqwest::Url, String> {
            let mut url = reqwest::Url::parse(base).map_err(|e| e.to_string())?;
            url.path_segments_mut()
                .map_err(|()| format!("{base} cannot be a base URL"))?
                .pop_if_empty()
                .push("kv")
                .push(key)
                .extend(suffix);
            Ok(url)
        };
        let built = match cmd.op {
            Op::Get { key } => url(&key, None).map(|u| client.get(u)),
            Op::Put { key, value } => url(&key, None).map(|u| {
                client.put(u).json(&PutBody {
                    value,
                    client: cmd.client,
                    seq: cmd.seq,
                })
            }),
            Op::Cas { key, from, to } => url(&key, Some("cas")).map(|u| {
                client.post(u).json(&CasBody {
                    from,
                    to,
                    client: cmd.client,
                    seq: cmd.seq,
                })
            }),
            // A pre-drawn value is not part of the client API: the leader draws again.
            Op::Roll { key, .. } => url(&key, Some("roll")).map(|u| {
                client.post(u).json(&RollBody {
                    client: cmd.client,
                    seq: cmd.seq,
                })
            }),
        };
        let builder = match built {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("cannot address leader {leader}: {e}");
                return (
                    "forward_failed",
                    error(StatusCode::SERVICE_UNAVAILABLE, msg, true),
                );
            }
        };
        // The leader may wait up to the request timeout; allow for that plus the hop.
        let timeout = self.config.request_timeout + self.config.peer_timeout;
        let sent = builder
            .header(FORWARDED_BY, &self.config.id)
            .timeout(timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return (
                    "forward_failed",
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot connect to leader {leader}: {e}"),
                        true,
                    ),
                )
            }
            Err(e) => {
                return (
                    "forward_unknown",
                    error(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("no answer from leader {leader}: {e}"),
                        false,
                    ),
                )
            }
        };
        let status = resp.status();
        match resp.bytes().await {
            Ok(body) => (
                if status.is_success() {
                    "forwarded_ok"
                } else {
                    "forwarded_error"
                },
                (
                    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response(),
            ),
            Err(e) => (
                "forward_unknown",
                error(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("answer from leader {leader} cut off: {e}"),
                    false,
                ),
            ),
        }
    }
}

fn outcome_response(outcome: Outcome) -> (&'static str, Response) {
    match outcome {
        Outcome::Value(v) => ("ok", Json(json!({ "value": v })).into_response()),
        Outcome::Written => ("ok", Json(json!({ "ok": true })).into_response()),
        Outcome::Rolled { value } => (
            "ok",
            Json(json!({ "ok": true, "value": value })).into_response(),
        ),
        Outcome::CasMismatch { current } => (
            "cas_mismatch",
            (
                StatusCode::CONFLICT,
                Json(json!({
                    "error": "cas mismatch: current value differs from 'from'",
                    "current": current,
                    "definite": true,
                })),
            )
                .into_response(),
        ),
        Outcome::StaleSeq { last } => (
            "stale_seq",
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": format!("seq is below {last}, the last applied for this client; not applied now"),
                    "definite": false,
                })),
            )
                .into_response(),
        ),
    }
}

async fn status<M: Machine>(State(node): State<Arc<Node<M>>>) -> Response {
    let s = node.status.borrow().clone();
    let isolated = node.transport.isolated();
    let reachable: Vec<&NodeId> = s
        .reachable_peers
        .iter()
        .filter(|p| !isolated.contains(p))
        .collect();
    Json(json!({
        "id": node.config.id,
        "mode": node.config.mode.name(),
        "role": s.role,
        "term": s.term,
        "leader": s.leader,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_index": s.last_index,
        "reachable_peers": reachable,
        "isolated_peers": isolated,
        "bugs": node.config.bugs.names(),
    }))
    .into_response()
}

async fn metrics<M: Machine>(State(node): State<Arc<Node<M>>>) -> Response {
    let s = node.status.borrow().clone();
    let text = node
        .transport
        .metrics
        .render(&node.config.id, node.config.mode.name(), &s);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

async fn peer_message<M: Machine>(
    State(node): State<Arc<Node<M>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let env: Envelope<M::Msg> = match parse_body(body, None) {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    if !node.transport.is_peer(&env.from) {
        return error(
            StatusCode::FORBIDDEN,
            format!("{} is not a peer", env.from),
            true,
        );
    }
    if node.transport.is_isolated(&env.from) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("isolated from {}", env.from),
            true,
        );
    }
    let metrics = &node.transport.metrics;
    metrics.message(&env.from, M::kind_name(&env.msg), Direction::Received);
    let (reply, wait) = oneshot::channel();
    let from = env.from.clone();
    let event = Event::Peer {
        from: env.from,
        msg: env.msg,
        reply: Replier::Http(reply),
    };
    if node.events.send(event).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "node is stopping", true);
    }
    match tokio::time::timeout(node.config.peer_timeout, wait).await {
        Ok(Ok(reply)) => {
            if let Some(r) = &reply {
                metrics.message(&from, M::kind_name(r), Direction::Sent);
            }
            Json(reply).into_response()
        }
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "message not processed in time",
            false,
        ),
    }
}

/// Switches a peer's connection to a stream of framed messages (see `transport`).
async fn peer_stream<M: Machine>(
    State(node): State<Arc<Node<M>>>,
    mut req: axum::extract::Request,
) -> Response {
    let from = req
        .headers()
        .get(transport::PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !node.transport.is_peer(&from) {
        let msg = format!("{from:?} is not a peer");
        return error(StatusCode::FORBIDDEN, msg, true);
    }
    if node.transport.is_isolated(&from) {
        let msg = format!("isolated from {from}");
        return error(StatusCode::SERVICE_UNAVAILABLE, msg, true);
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => {
                tracing::debug!(peer = %from, "peer stream upgrade failed: {e}");
                return;
            }
        };
        let events = node.events.clone();
        let peer = from.clone();
        transport::serve_stream(
            io,
            from,
            node.transport.clone(),
            M::kind_name,
            |msg, reply| {
                let event = Event::Peer {
                    from: peer.clone(),
                    msg,
                    reply: Replier::Stream(reply),
                };
                let events = events.clone();
                async move { events.send(event).await.is_ok() }
            },
        )
        .await;
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (axum::http::header::CONNECTION, "upgrade"),
            (axum::http::header::UPGRADE, transport::STREAM_PROTOCOL),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IsolateBody {
    peers: Vec<NodeId>,
}

async fn isolate<M: Machine>(
    State(node): State<Arc<Node<M>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body: IsolateBody = match parse_body(body, None) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if let Some(p) = body.peers.iter().find(|p| !node.transport.is_peer(p)) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{p} is not a peer of this node"),
            true,
        );
    }
    node.transport.isolate(&body.peers);
    tracing::info!(isolated = ?node.transport.isolated(), "isolate");
    Json(json!({ "isolated": node.transport.isolated() })).into_response()
}

async fn heal<M: Machine>(State(node): State<Arc<Node<M>>>) -> Response {
    node.transport.heal();
    tracing::info!("heal");
    Json(json!({ "isolated": node.transport.isolated() })).into_response()
}
