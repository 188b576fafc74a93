//! The HTTP client for faultline's own nodes (the client API in the guide), as a
//! `workloads::Client`. It decides what each response proves:
//!
//! | what came back                           | write / cas / roll | read |
//! |------------------------------------------|--------------------|------|
//! | 200                                      | ok                 | ok   |
//! | 409 on cas (value was not `from`)        | fail               | —    |
//! | an error body with `"definite": true`    | fail               | fail |
//! | connection refused / not established     | fail               | fail |
//! | timeout, reset, any other error response | info               | fail |
//!
//! A roll's 200 carries the value the server drew (`{"ok":true,"value":N}`), recorded
//! like a read's; a 200 without an integer value is `info` (it happened, value unknown).
//!
//! The nodes mark each error response `"definite": true` when the request was certainly
//! not applied (nodes/src/api.rs); anything not so marked stays `info`. A read that did
//! not complete can be recorded as `fail` because a read never changes state, so dropping
//! it from the history loses nothing (Jepsen does the same).
//!
//! The op path speaks HTTP/1.1 itself over a small pool of keep-alive connections per
//! node (responses parsed with `httparse`): one write and usually one read per op, in the
//! worker's own task. A general client (reqwest/hyper) hands every request to a separate
//! connection task and back, which costs more CPU per op than the rest of the harness
//! together; the harness must never be the bottleneck. `/status` (rare) uses reqwest.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use workloads::{Client, Completion, Op, OpFn};

/// The header that carries the cluster secret on control requests.
pub const SECRET_HEADER: &str = "x-faultline-secret";

/// How long establishing a connection may take; a connection never established means
/// the request never left, so the op is a definite `fail`.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest response accepted (the API's bodies are tiny).
const MAX_RESPONSE: usize = 1 << 20;
/// Idle connections kept per node.
const MAX_IDLE: usize = 256;

pub struct HttpClient {
    addrs: Vec<SocketAddr>,
    /// Idle keep-alive connections per node.
    idle: Vec<Mutex<Vec<TcpStream>>>,
    status_http: reqwest::Client,
    /// The cluster secret, sent on every request off the op path (admin, status, bank
    /// control calls); the op path is the open client API.
    secret: Option<String>,
}

/// A parsed response.
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

/// Why a request off the op path (status, metrics, admin and bank control calls) got no
/// usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No response: timeout, connection refused or reset (the text says which).
    #[error("{0}")]
    NoAnswer(String),
    /// A response with an unexpected status.
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    /// A 200 whose body is not what the route promises.
    #[error("{method} {path}: bad body: {why}")]
    BadBody {
        method: &'static str,
        path: String,
        why: String,
    },
}

/// Why an exchange failed, and whether the request can have reached the node.
pub(crate) enum ExchangeError {
    /// Nothing was sent (connect failed).
    NotSent(String),
    /// The request may have been delivered.
    MaybeSent(String),
}

impl HttpClient {
    pub fn new(addrs: &[SocketAddr]) -> Self {
        let status_http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .expect("a plain-HTTP reqwest client always builds");
        Self {
            addrs: addrs.to_vec(),
            idle: addrs.iter().map(|_| Mutex::new(Vec::new())).collect(),
            status_http,
            secret: None,
        }
    }

    /// Sends `secret` in `x-faultline-secret` on every control request from now on.
    pub fn with_secret(mut self, secret: Option<String>) -> Self {
        self.secret = secret;
        self
    }

    /// A control request to `path` on node `node`, with the cluster secret.
    fn control(&self, method: reqwest::Method, node: usize, path: &str) -> reqwest::RequestBuilder {
        let url = format!("http://{}{path}", self.addrs[node]);
        let request = self.status_http.request(method, url);
        match &self.secret {
            Some(secret) => request.header(SECRET_HEADER, secret),
            None => request,
        }
    }

    /// Where node `node`'s client API listens.
    pub fn addr(&self, node: usize) -> SocketAddr {
        self.addrs[node]
    }

    /// `GET /status` of node `node`, or `None` if it does not answer within `timeout`.
    pub async fn status(&self, node: usize, timeout: Duration) -> Option<serde_json::Value> {
        let resp = self
            .control(reqwest::Method::GET, node, "/status")
            .timeout(timeout)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// A JSON request off the hot path (bank status, snapshots, admin calls): the status
    /// and the body (`null` when it is not JSON). `Err` says why no response came.
    pub async fn call_json(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<(u16, serde_json::Value), RequestError> {
        let mut request = self.control(method, node, path).timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let no_answer = |e: reqwest::Error| RequestError::NoAnswer(describe_reqwest(&e));
        let resp = request.send().await.map_err(no_answer)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(no_answer)?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// `GET path` on node `node` as text (e.g. `/metrics`); `Err` says why not 200.
    pub async fn get_text(
        &self,
        node: usize,
        path: &str,
        timeout: Duration,
    ) -> Result<String, RequestError> {
        let no_answer = |e: reqwest::Error| RequestError::NoAnswer(describe_reqwest(&e));
        let resp = self
            .control(reqwest::Method::GET, node, path)
            .timeout(timeout)
            .send()
            .await
            .map_err(no_answer)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(no_answer)?;
        if status == 200 {
            Ok(text)
        } else {
            Err(RequestError::Status {
                method: "GET",
                path: path.to_string(),
                status,
                body: text.trim().to_string(),
            })
        }
    }

    /// An idle connection to `node` that the node has not closed, or a new one.
    async fn connection(&self, node: usize) -> Result<TcpStream, ExchangeError> {
        loop {
            let pooled = self.idle[node]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let Some(stream) = pooled else { break };
            // A closed or misbehaving idle connection reads EOF or data: drop it. An open
            // one has nothing to read.
            let mut probe = [0u8; 1];
            if let Err(e) = stream.try_read(&mut probe) {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Ok(stream);
                }
            }
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addrs[node])).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(e)) => Err(ExchangeError::NotSent(format!("connect: {e}"))),
            Err(_) => Err(ExchangeError::NotSent("connect timeout".into())),
        }
    }

    fn put_back(&self, node: usize, stream: TcpStream) {
        let mut idle = self.idle[node].lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(stream);
        }
    }

    /// Sends one request and reads its response.
    pub(crate) async fn exchange(
        &self,
        node: usize,
        request: &[u8],
    ) -> Result<Response, ExchangeError> {
        let mut stream = self.connection(node).await?;
        let maybe =
            |what: &str, e: std::io::Error| ExchangeError::MaybeSent(format!("{what}: {e}"));
        stream
            .write_all(request)
            .await
            .map_err(|e| maybe("send", e))?;
        let response = read_response(&mut stream)
            .await
            .map_err(|e| maybe("receive", e))?;
        if response.keep_alive {
            self.put_back(node, stream);
        }
        Ok(response)
    }
}

/// One line for a failed reqwest call, without its URL (the node is named by the caller).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {detail}")
    }
}

/// The request bytes for `op` against `addr`. Bodies are written by hand: integers need
/// no escaping, and this is the hot path.
fn request_bytes(op: &Op, addr: &SocketAddr) -> Vec<u8> {
    let key = op.wire_key();
    let (method, path, body) = match op.f {
        OpFn::Read => ("GET", format!("/kv/{key}"), String::new()),
        OpFn::Write(v) => ("PUT", format!("/kv/{key}"), format!("{{\"value\":{v}}}")),
        OpFn::Cas(from, to) => (
            "POST",
            format!("/kv/{key}/cas"),
            format!("{{\"from\":{from},\"to\":{to}}}"),
        ),
        OpFn::Roll => ("POST", format!("/kv/{key}/roll"), String::new()),
    };
    json_request(method, &path, addr, &body)
}

/// One HTTP/1.1 request with a JSON body (empty for none) to the node at `addr`.
pub(crate) fn json_request(method: &str, path: &str, addr: &SocketAddr, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one HTTP/1.1 response: head, then a body framed by content-length, chunked
/// encoding, or the connection's end.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let (status, head_len, length, chunked, mut keep_alive) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let mut length = None;
                let mut chunked = false;
                let mut keep_alive = response.version == Some(1);
                for h in response.headers.iter() {
                    let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(
                            value
                                .parse::<usize>()
                                .map_err(|_| invalid(format!("bad content-length {value}")))?,
                        );
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value.to_ascii_lowercase().contains("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        keep_alive = !value.eq_ignore_ascii_case("close");
                    }
                }
                break (
                    response.code.unwrap_or(0),
                    head_len,
                    length,
                    chunked,
                    keep_alive,
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE => continue,
            Ok(httparse::Status::Partial) => return Err(invalid("response head too large".into())),
            Err(e) => return Err(invalid(format!("bad response: {e}"))),
        }
    };
    let mut rest = buf.split_off(head_len);
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            match httparse::parse_chunk_size(&rest) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    // Last chunk; the trailer ends with an empty line.
                    while !rest[used..].windows(2).any(|w| w == b"\r\n") {
                        read_more(stream, &mut rest, &mut chunk).await?;
                    }
                    break;
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    let size = size as usize;
                    if body.len() + size > MAX_RESPONSE {
                        return Err(invalid("response body too large".into()));
                    }
                    while rest.len() < used + size + 2 {
                        read_more(stream, &mut rest, &mut chunk).await?;
                    }
                    body.extend_from_slice(&rest[used..used + size]);
                    rest.drain(..used + size + 2);
                }
                Ok(httparse::Status::Partial) => read_more(stream, &mut rest, &mut chunk).await?,
                Err(_) => return Err(invalid("bad chunk size".into())),
            }
        }
        keep_alive = false; // trailers and leftovers are not worth tracking
        body
    } else if let Some(length) = length {
        if length > MAX_RESPONSE {
            return Err(invalid("response body too large".into()));
        }
        while rest.len() < length {
            read_more(stream, &mut rest, &mut chunk).await?;
        }
        if rest.len() > length {
            keep_alive = false; // unexpected bytes after the body
        }
        rest.truncate(length);
        rest
    } else {
        keep_alive = false;
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 || rest.len() > MAX_RESPONSE {
                break rest;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    };
    Ok(Response {
        status,
        body,
        keep_alive,
    })
}

async fn read_more(
    stream: &mut TcpStream,
    into: &mut Vec<u8>,
    chunk: &mut [u8],
) -> std::io::Result<()> {
    let n = stream.read(chunk).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed mid-response",
        ));
    }
    into.extend_from_slice(&chunk[..n]);
    Ok(())
}

impl Client for HttpClient {
    async fn invoke(&self, node: usize, op: &Op, deadline: Duration) -> Completion {
        let is_read = op.f == OpFn::Read;
        let request = request_bytes(op, &self.addrs[node]);
        let response = match tokio::time::timeout(deadline, self.exchange(node, &request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(ExchangeError::NotSent(error))) => return Completion::Fail { error },
            Ok(Err(ExchangeError::MaybeSent(error))) => return unknown(is_read, error),
            // Dropping the future closed its connection: no late reply can confuse a
            // later op.
            Err(_) => return unknown(is_read, "timeout".into()),
        };
        classify(op, response)
    }
}

/// Turns a complete response into an outcome (see the table at the top).
fn classify(op: &Op, response: Response) -> Completion {
    let body = String::from_utf8_lossy(&response.body);
    match (op.f, response.status) {
        (OpFn::Read, 200) => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => match v.get("value") {
                Some(serde_json::Value::Null) => Completion::Ok { read: None },
                Some(value) => match value.as_i64() {
                    Some(v) => Completion::Ok { read: Some(v) },
                    None => Completion::Fail {
                        error: format!("read returned a non-integer value {value}"),
                    },
                },
                None => Completion::Fail {
                    error: format!("read body without a value: {body}"),
                },
            },
            Err(e) => Completion::Fail {
                error: format!("read body: {e}"),
            },
        },
        // The roll happened; only the value it set tells the checker anything, so a body
        // without one leaves the roll's effect unknown (`info`), never a wrong `ok`.
        (OpFn::Roll, 200) => match serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("value").and_then(|v| v.as_i64()))
        {
            Some(v) => Completion::Ok { read: Some(v) },
            None => Completion::Info {
                error: format!(
                    "roll answered 200 without an integer value: {}",
                    body.trim()
                ),
            },
        },
        (_, 200) => Completion::Ok { read: None },
        (OpFn::Cas(..), 409) => Completion::Fail {
            error: "cas mismatch".into(),
        },
        (_, status) => {
            let definite = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("definite").and_then(|d| d.as_bool()))
                .unwrap_or(false);
            let error = format!("HTTP {status}: {}", body.trim());
            if op.f == OpFn::Read || definite {
                Completion::Fail { error }
            } else {
                Completion::Info { error }
            }
        }
    }
}

/// An op whose fate is unknown: `info`, except a read, which changes nothing (`fail`).
fn unknown(is_read: bool, error: String) -> Completion {
    if is_read {
        Completion::Fail { error }
    } else {
        Completion::Info { error }
    }
}

/// A keep-alive response with `body`, as the nodes send them, for classification tests.
#[cfg(test)]
pub(crate) fn test_response(status: u16, body: &str) -> Response {
    Response {
        status,
        body: body.as_bytes().to_vec(),
        keep_alive: true,
    }
}

#[cfg(test)]
mod tests {
    use super::test_response as resp;
    use super::*;

    fn op(f: OpFn) -> Op {
        Op {
            key: Some("k1".into()),
            f,
        }
    }

    #[test]
    fn outcomes_follow_the_table() {
        assert_eq!(
            classify(&op(OpFn::Read), resp(200, r#"{"value":3}"#)),
            Completion::Ok { read: Some(3) }
        );
        assert_eq!(
            classify(&op(OpFn::Read), resp(200, r#"{"value":null}"#)),
            Completion::Ok { read: None }
        );
        assert_eq!(
            classify(&op(OpFn::Write(1)), resp(200, "{}")),
            Completion::Ok { read: None }
        );
        assert!(matches!(
            classify(&op(OpFn::Cas(1, 2)), resp(409, "{}")),
            Completion::Fail { .. }
        ));
        let definite = r#"{"error":"no leader","definite":true}"#;
        let maybe = r#"{"error":"timed out","definite":false}"#;
        assert!(matches!(
            classify(&op(OpFn::Write(1)), resp(503, definite)),
            Completion::Fail { .. }
        ));
        assert!(matches!(
            classify(&op(OpFn::Write(1)), resp(504, maybe)),
            Completion::Info { .. }
        ));
        assert!(matches!(
            classify(&op(OpFn::Cas(0, 1)), resp(500, "oops")),
            Completion::Info { .. }
        ));
        assert_eq!(
            classify(&op(OpFn::Roll), resp(200, r#"{"ok":true,"value":417}"#)),
            Completion::Ok { read: Some(417) }
        );
        assert!(matches!(
            classify(&op(OpFn::Roll), resp(200, r#"{"ok":true}"#)),
            Completion::Info { .. }
        ));
        assert!(matches!(
            classify(&op(OpFn::Roll), resp(503, definite)),
            Completion::Fail { .. }
        ));
        assert!(matches!(
            classify(&op(OpFn::Roll), resp(504, maybe)),
            Completion::Info { .. }
        ));
        assert!(matches!(
            classify(&op(OpFn::Read), resp(504, maybe)),
            Completion::Fail { .. }
        ));
        assert!(matches!(
            classify(&op(OpFn::Read), resp(200, r#"{"value":"x"}"#)),
            Completion::Fail { .. }
        ));
    }

    #[test]
    fn requests_are_well_formed_http() {
        let addr: SocketAddr = "10.77.1.2:7000".parse().unwrap();
        let req = String::from_utf8(request_bytes(&op(OpFn::Cas(1, 2)), &addr)).unwrap();
        assert!(req.starts_with("POST /kv/k1/cas HTTP/1.1\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n{\"from\":1,\"to\":2}"), "{req}");
        assert!(req.contains("content-length: 17\r\n"), "{req}");
        let read = String::from_utf8(request_bytes(
            &Op {
                key: None,
                f: OpFn::Read,
            },
            &addr,
        ))
        .unwrap();
        assert!(
            read.starts_with("GET /kv/r HTTP/1.1\r\n") && read.contains("content-length: 0\r\n"),
            "{read}"
        );
    }

    /// A server answering with chunked encoding, then content-length, then closing.
    #[tokio::test]
    async fn reads_chunked_and_sized_responses_and_survives_a_closed_idle_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await.unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\n{\"valu\r\n5\r\ne\":4}\r\n0\r\n\r\n")
                .await
                .unwrap();
            let (mut conn, _) = listener.accept().await.unwrap();
            let _ = conn.read(&mut buf).await.unwrap();
            conn.write_all(b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
            drop(conn); // the pooled connection is now closed by the server
            let (mut conn, _) = listener.accept().await.unwrap();
            let _ = conn.read(&mut buf).await.unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"value\":7}\n")
                .await
                .unwrap();
        });
        let client = HttpClient::new(&[addr]);
        let t = Duration::from_secs(2);
        assert_eq!(
            client.invoke(0, &op(OpFn::Read), t).await,
            Completion::Ok { read: Some(4) }
        );
        assert!(matches!(
            client.invoke(0, &op(OpFn::Cas(1, 2)), t).await,
            Completion::Fail { .. }
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            client.invoke(0, &op(OpFn::Read), t).await,
            Completion::Ok { read: Some(7) }
        );
    }

    #[tokio::test]
    async fn refused_connection_is_a_definite_failure_and_silence_is_info() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused_addr = closed.local_addr().unwrap();
        drop(closed);
        let client = HttpClient::new(&[refused_addr]);
        assert!(matches!(
            client
                .invoke(0, &op(OpFn::Write(1)), Duration::from_secs(1))
                .await,
            Completion::Fail { .. }
        ));

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = HttpClient::new(&[silent.local_addr().unwrap()]);
        let outcome = client
            .invoke(0, &op(OpFn::Write(1)), Duration::from_millis(200))
            .await;
        assert!(matches!(outcome, Completion::Info { .. }), "{outcome:?}");
        drop(silent);
    }
}
