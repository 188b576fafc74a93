//! The bank's HTTP routes (merged into the node's router by `lib.rs`). Error bodies are
//! `{"error", "definite"}` like the kv routes': `definite: true` means nothing happened.
//! `/bank/peer` and `/admin/clock` need the cluster secret, like the kv peer and admin
//! routes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::http::{error, parse_body, require_secret, Secret};

use super::model::unix_ms;
use super::peer::{self, PeerMsg, PeerReply};
use super::{snapshot, Bank, Refusal};
use crate::command::NodeId;
use crate::metrics::Direction;
use crate::transport::Envelope;

/// Peer requests carry up to a retransmission batch of frames, more than a client body.
const PEER_BODY_LIMIT: usize = 4 << 20;

pub fn router(bank: Arc<Bank>) -> Router {
    let secret = Secret(bank.transport.secret.clone());
    let guard = || axum::middleware::from_fn_with_state(secret.clone(), require_secret);
    let client = Router::new()
        .route("/bank/transfer", post(transfer))
        .route("/bank/status", get(status))
        .route("/bank/transfers", get(transfers))
        .route("/bank/snapshot", post(take_snapshot))
        .merge(
            Router::new()
                .route("/admin/clock", post(set_clock))
                .route_layer(guard()),
        )
        .layer(DefaultBodyLimit::max(bank.max_body_bytes));
    let peers = Router::new()
        .route("/bank/peer", post(peer_message))
        .route_layer(guard())
        .layer(DefaultBodyLimit::max(PEER_BODY_LIMIT));
    client.merge(peers).with_state(bank)
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Bad(m) => error(StatusCode::BAD_REQUEST, m, true),
            Refusal::Conflict(m) => error(StatusCode::CONFLICT, m, true),
            Refusal::Disk(m) => error(StatusCode::INTERNAL_SERVER_ERROR, m, false),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: NodeId,
    amount: i64,
}

async fn transfer(State(bank): State<Arc<Bank>>, body: Result<Bytes, BytesRejection>) -> Response {
    let metrics = &bank.transport.metrics;
    let body: TransferBody = match parse_body(body, None) {
        Ok(b) => b,
        Err(r) => {
            metrics.client("transfer", "bad_request");
            return r.into_response();
        }
    };
    match bank.transfer(&body.to, body.amount).await {
        Ok((seq, balance)) => {
            metrics.client("transfer", "ok");
            Json(json!({"seq": seq, "balance": balance})).into_response()
        }
        Err(r) => {
            metrics.client(
                "transfer",
                match &r {
                    Refusal::Bad(_) => "bad_request",
                    Refusal::Conflict(_) => "insufficient_funds",
                    Refusal::Disk(_) => "disk_error",
                },
            );
            r.into_response()
        }
    }
}

async fn status(State(bank): State<Arc<Bank>>) -> Response {
    let mut st = bank.lock();
    let now = unix_ms();
    st.snap.expire(now);
    let per_out =
        |f: &dyn Fn(&super::Outgoing) -> u64| -> serde_json::Map<String, serde_json::Value> {
            st.out
                .iter()
                .map(|(p, ch)| (p.clone(), json!(f(ch))))
                .collect()
        };
    let sent = per_out(&|ch| ch.last_transfer);
    let unacked = per_out(&|ch| ch.outbox.len() as u64);
    let per_in =
        |f: &dyn Fn(&super::Incoming) -> u64| -> serde_json::Map<String, serde_json::Value> {
            st.inc
                .iter()
                .map(|(p, ch)| (p.clone(), json!(f(ch))))
                .collect()
        };
    let received = per_in(&|ch| ch.last_transfer);
    let held_back = per_in(&|ch| ch.inbox.held() as u64);
    let held_back_total = per_in(&|ch| ch.inbox.held_total);
    let running = st.snap.running(&bank.id, now).map(|(id, _)| id);
    Json(json!({
        "node": bank.id,
        "balance": st.balance,
        "clock": st.clock,
        "sent": sent,
        "received": received,
        "unacked": unacked,
        "held_back": held_back,
        "held_back_total": held_back_total,
        "snapshot": running,
        "clock_offset_ms": bank.clock_offset(),
        "channels": bank.channels.name(),
        "transfers_sent": st.transfers.len(),
    }))
    .into_response()
}

async fn transfers(State(bank): State<Arc<Bank>>) -> Response {
    let st = bank.lock();
    Json(&st.transfers).into_response()
}

async fn take_snapshot(
    State(bank): State<Arc<Bank>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: snapshot::Request = match parse_body(body, Some(snapshot::Request::default())) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match snapshot::take(&bank, req).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    offset_ms: i64,
}

async fn set_clock(State(bank): State<Arc<Bank>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body: ClockBody = match parse_body(body, None) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    // An offset beyond a day is a typo, not a skew worth simulating. (Not `abs()`: it
    // overflows for i64::MIN.)
    if !(-86_400_000..=86_400_000).contains(&body.offset_ms) {
        let msg = format!("offset_ms {}: must be within ±86400000", body.offset_ms);
        return error(StatusCode::BAD_REQUEST, msg, true);
    }
    bank.set_clock_offset(body.offset_ms);
    tracing::info!(offset_ms = body.offset_ms, "bank: clock offset set");
    Json(json!({"offset_ms": body.offset_ms})).into_response()
}

async fn peer_message(
    State(bank): State<Arc<Bank>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let env: Envelope<PeerMsg> = match parse_body(body, None) {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    let from = env.from;
    if !bank.transport.is_peer(&from) {
        return error(StatusCode::FORBIDDEN, format!("{from} is not a peer"), true);
    }
    if bank.transport.is_isolated(&from) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("isolated from {from}"),
            true,
        );
    }
    peer::count(&bank, &from, &env.msg, Direction::Received);
    let result = match env.msg {
        PeerMsg::Frames(frames) => bank.receive(&from, frames).await.map(|ack| {
            bank.transport
                .metrics
                .message(&from, "bank_ack", Direction::Sent);
            PeerReply { ack: Some(ack) }
        }),
        PeerMsg::Checkpoint {
            snapshot,
            checkpoint,
        } => snapshot::on_checkpoint(&bank, &from, snapshot, checkpoint)
            .map(|()| PeerReply::default()),
        PeerMsg::ClockRecord(cr) => snapshot::on_clock_record(&bank, &from, cr)
            .await
            .map(|()| PeerReply::default()),
    };
    match result {
        Ok(reply) => Json(reply).into_response(),
        Err(r) => r.into_response(),
    }
}
