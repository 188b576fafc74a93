//! The HTTP plumbing the kv routes (`api.rs`) and the bank's (`bank/api.rs`) share: the
//! error body, body parsing, the cluster secret, and the server loop with its limits.
//!
//! Every error response is JSON, `{"error": "...", "definite": bool}` — including the
//! ones axum makes on its own (405, a path that is not UTF-8), which [`json_errors`]
//! rewrites. Requests the server refuses before routing (a URI or header block over
//! [`MAX_URI_BYTES`] / [`MAX_HEADER_BYTES`] / [`MAX_HEADERS`]) get a JSON 414/431 from
//! [`limits`]; only what hyper itself rejects while parsing (a URI over 65,534 bytes, more
//! than 256 headers or ~400 KiB of head, a malformed request line) gets its bare
//! status with an empty body.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;

/// The header that carries the cluster secret on peer and admin routes.
pub const SECRET_HEADER: &str = "x-faultline-secret";

/// Longest request target served (bytes); longer gets 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields, and their total size (names + values), served; more gets 431.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// `{"error": msg, "definite": definite}` with `code`.
pub fn error(code: StatusCode, msg: impl Into<String>, definite: bool) -> Response {
    (
        code,
        Json(json!({"error": msg.into(), "definite": definite})),
    )
        .into_response()
}

/// A request refused before anything happened: definitely not applied.
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct BadRequest(pub StatusCode, pub String);

impl BadRequest {
    pub fn new(msg: impl Into<String>) -> Self {
        BadRequest(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(self.0, self.1, true)
    }
}

/// Parses a JSON object body (unknown fields are refused where `T` says
/// `deny_unknown_fields`), turning every way it can be wrong into a 4xx with a message.
/// `empty` is what an empty body means, where one is allowed.
pub fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    empty: Option<T>,
) -> Result<T, BadRequest> {
    let bytes = body.map_err(|r| BadRequest(r.status(), r.body_text()))?;
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None if empty.is_some() => return Ok(empty.unwrap()),
        // serde would also take a JSON array for a struct; only objects are meant.
        Some(b'{') => {}
        _ => return Err(BadRequest::new("body must be a JSON object")),
    }
    serde_json::from_slice(&bytes).map_err(|e| BadRequest::new(format!("bad JSON body: {e}")))
}

/// The cluster secret, if the node has one; the state of [`require_secret`].
#[derive(Clone)]
pub struct Secret(pub Option<std::sync::Arc<str>>);

/// Refuses (401) a request without the cluster secret in [`SECRET_HEADER`]. Without a
/// secret configured everything passes (hand-started clusters; the node warned at start).
pub async fn require_secret(State(secret): State<Secret>, req: Request, next: Next) -> Response {
    let Some(want) = secret.0.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(SECRET_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or(b"");
    if constant_time_eq(given, want.as_bytes()) {
        next.run(req).await
    } else {
        let msg = format!(
            "missing or wrong {SECRET_HEADER}: peer and admin routes need the cluster secret"
        );
        error(StatusCode::UNAUTHORIZED, msg, true)
    }
}

/// Compares without returning early at the first differing byte, so response time does
/// not tell an attacker how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses requests whose target or header block is over this server's limits with a
/// JSON 414 / 431 (below hyper's own limits, which answer without a body).
pub async fn limits(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        let msg = format!("request target is {uri_len} bytes; at most {MAX_URI_BYTES}");
        return error(StatusCode::URI_TOO_LONG, msg, true);
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        let msg = format!(
            "{} header fields, {bytes} bytes; at most {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes",
            headers.len()
        );
        return error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg, true);
    }
    next.run(req).await
}

/// Gives every error response a JSON body: the ones axum makes itself (405 with no body,
/// a path segment that is not UTF-8 as plain text) become `{"error", "definite": true}` —
/// nothing was applied, the request never reached a handler.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let msg = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase()
    } else {
        text
    };
    error(status, msg, true)
}

/// Wraps `app` in the layers every node route has: limits, JSON errors.
pub fn with_common_layers(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(limits))
        .layer(axum::middleware::from_fn(json_errors))
}

/// Serves `app` on `listener` until the listener fails: HTTP/1.1 with upgrades (the peer
/// stream), `TCP_NODELAY`, and `idle`: a connection that has not sent a complete request
/// head for that long — idle between keep-alive requests, or sending its head too
/// slowly — is closed (hyper's header-read timeout, which restarts for every request).
pub async fn serve(listener: TcpListener, app: Router, idle: Duration) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(idle)
        .max_headers(256)
        .keep_alive(true);
    loop {
        let (tcp, _peer): (_, SocketAddr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin (as axum).
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!("connection ended: {e}");
            }
        });
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
