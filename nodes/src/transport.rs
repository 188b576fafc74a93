//! Peer messages: one long-lived TCP stream per peer and direction, opened with an HTTP
//! upgrade (`POST /peer/stream`, so peers still need only the client port), then
//! length-prefixed frames. A request frame carries one protocol message; the reply (if
//! the protocol gives one) comes back on the same stream, matched by id, so many
//! messages can be in flight and a writer folds whatever is queued into one `write`.
//! A request/response over HTTP costs both sides a full HTTP exchange per message; on
//! this stream it costs a frame (nodes/README.md, Performance, has the figures).
//!
//! Every message has a total timeout: a peer that is down, paused or cut off costs at
//! most one timeout, after which the stream is dropped and the next message opens a new
//! one (connect timeout too). `POST /peer/message` (one message per HTTP request, the
//! reply in the response body) is still served, for tools and tests.
//!
//! Also the simulated partition: peers named in `isolated` get no messages from us and
//! their messages to us are refused (see `POST /admin/isolate`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::command::NodeId;
use crate::metrics::{Direction, Metrics};

#[derive(Serialize, Deserialize)]
pub struct Envelope<M> {
    pub from: NodeId,
    pub msg: M,
}

/// Why a message was not delivered.
#[derive(Debug)]
pub enum SendFailure {
    Isolated,
    /// The connection was never made: the request did not leave this node.
    Connect(String),
    /// The request may have arrived; no usable reply came.
    NoReply(String),
}

/// Path of the upgrade request, and the header naming the connecting peer.
pub const STREAM_PATH: &str = "/peer/stream";
pub const STREAM_PROTOCOL: &str = "faultline-peer";
pub const PEER_HEADER: &str = "x-faultline-peer";

/// Frame tags: a request, its reply (JSON `Option<M>`), or its refusal (a reason).
pub const TAG_REQUEST: u8 = 0;
pub const TAG_REPLY: u8 = 1;
pub const TAG_REFUSED: u8 = 2;

/// Largest frame accepted: a catch-up append of 1024 entries is far below this.
const MAX_FRAME: usize = 64 << 20;
/// A writer stops folding queued frames into one write past this size.
const MAX_WRITE: usize = 1 << 20;

/// Appends one frame: `len: u32` (of what follows), `id: u64`, `tag: u8`, payload.
pub fn encode_frame(buf: &mut Vec<u8>, id: u64, tag: u8, payload: &[u8]) {
    let len = (8 + 1 + payload.len()) as u32;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&id.to_be_bytes());
    buf.push(tag);
    buf.extend_from_slice(payload);
}

/// Bytes a stream's reader takes from the socket per read.
const READ_BUFFER: usize = 64 * 1024;

/// Reads one frame; `None` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(u64, u8)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if !(9..=MAX_FRAME).contains(&len) {
        return Err(std::io::Error::other(format!("bad frame length {len}")));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    let id = u64::from_be_bytes(buf[..8].try_into().unwrap());
    let tag = buf[8];
    buf.drain(..9);
    Ok(Some((id, tag)))
}

type Waiter = oneshot::Sender<Result<Vec<u8>, SendFailure>>;

/// One outgoing stream to a peer: requests queue on `out`; `pending` holds the callers
/// waiting for replies, and becomes `None` once the stream is dead.
struct Conn {
    out: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    pending: Mutex<Option<HashMap<u64, Waiter>>>,
    /// Tells the stream's writer to stop (and so close the socket) once it is dead.
    closed: tokio::sync::Notify,
}

impl Conn {
    /// False if the stream is already dead.
    fn register(&self, id: u64, waiter: Waiter) -> Result<(), Waiter> {
        match self.pending.lock().unwrap().as_mut() {
            Some(p) => {
                p.insert(id, waiter);
                Ok(())
            }
            None => Err(waiter),
        }
    }

    fn complete(&self, id: u64, result: Result<Vec<u8>, SendFailure>) {
        let waiter = self
            .pending
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|p| p.remove(&id));
        if let Some(w) = waiter {
            let _ = w.send(result);
        }
    }

    fn forget(&self, id: u64) {
        if let Some(p) = self.pending.lock().unwrap().as_mut() {
            p.remove(&id);
        }
    }

    /// Marks the stream dead and fails everyone waiting on it.
    fn fail_all(&self, failure: impl Fn() -> SendFailure) {
        let waiters = self.pending.lock().unwrap().take();
        for (_, w) in waiters.into_iter().flatten() {
            let _ = w.send(Err(failure()));
        }
        self.closed.notify_one();
    }

    fn is_dead(&self) -> bool {
        self.pending.lock().unwrap().is_none()
    }
}

pub struct Transport {
    pub id: NodeId,
    /// For peer calls over plain HTTP (bank frames, forwarded client requests); sends the
    /// cluster secret on every request.
    pub client: reqwest::Client,
    /// The cluster secret (`http::SECRET_HEADER`), if any: sent on every peer call and
    /// stream, required on this node's peer and admin routes.
    pub secret: Option<Arc<str>>,
    /// id -> `HOST:PORT`.
    peers: BTreeMap<NodeId, String>,
    urls: BTreeMap<NodeId, String>,
    timeout: Duration,
    isolated: RwLock<BTreeSet<NodeId>>,
    conns: Mutex<HashMap<NodeId, Arc<Conn>>>,
    next_id: AtomicU64,
    pub metrics: Arc<Metrics>,
}

impl Transport {
    pub fn new(
        id: NodeId,
        peers: &[(NodeId, String)],
        timeout: Duration,
        metrics: Arc<Metrics>,
        secret: Option<&str>,
        idle: Duration,
    ) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(s) = secret {
            let mut value = reqwest::header::HeaderValue::from_str(s)?;
            value.set_sensitive(true);
            headers.insert(crate::http::SECRET_HEADER, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            // Give up idle connections well before the peer's server closes them
            // (`--idle-timeout-ms`), so a request never goes out on one being closed.
            .pool_idle_timeout(idle / 2)
            .build()?;
        Ok(Transport {
            id,
            client,
            secret: secret.map(Arc::from),
            peers: peers.iter().cloned().collect(),
            urls: peers
                .iter()
                .map(|(id, addr)| (id.clone(), format!("http://{addr}")))
                .collect(),
            timeout,
            isolated: RwLock::new(BTreeSet::new()),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
        })
    }

    pub fn peer_ids(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    pub fn is_peer(&self, id: &str) -> bool {
        self.peers.contains_key(id)
    }

    /// `http://HOST:PORT` of a peer.
    pub fn base_url(&self, id: &str) -> Option<&str> {
        self.urls.get(id).map(String::as_str)
    }

    pub fn is_isolated(&self, peer: &str) -> bool {
        self.isolated.read().unwrap().contains(peer)
    }

    pub fn isolate(&self, peers: &[NodeId]) {
        self.isolated.write().unwrap().extend(peers.iter().cloned());
        // Streams to them may hold requests in flight; cut them like the link.
        let mut conns = self.conns.lock().unwrap();
        for p in peers {
            if let Some(c) = conns.remove(p) {
                c.fail_all(|| SendFailure::Isolated);
            }
        }
    }

    pub fn heal(&self) {
        self.isolated.write().unwrap().clear();
    }

    pub fn isolated(&self) -> Vec<NodeId> {
        self.isolated.read().unwrap().iter().cloned().collect()
    }

    /// The live stream to `to`, opening a new one if there is none.
    fn conn(&self, to: &str, addr: &str) -> Arc<Conn> {
        let mut conns = self.conns.lock().unwrap();
        if let Some(c) = conns.get(to) {
            if !c.is_dead() {
                return c.clone();
            }
        }
        let (out, out_rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            out,
            pending: Mutex::new(Some(HashMap::new())),
            closed: tokio::sync::Notify::new(),
        });
        conns.insert(to.to_string(), conn.clone());
        tokio::spawn(run_stream(
            addr.to_string(),
            self.id.clone(),
            self.secret.clone(),
            self.timeout,
            conn.clone(),
            out_rx,
        ));
        conn
    }

    fn drop_conn(&self, to: &str, conn: &Arc<Conn>) {
        let mut conns = self.conns.lock().unwrap();
        if conns.get(to).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(to);
        }
    }

    /// Sends `msg` and returns the peer's reply, if its protocol gives one.
    pub async fn send<M: Serialize + DeserializeOwned>(
        &self,
        to: &str,
        msg: M,
        kind: fn(&M) -> &'static str,
    ) -> Result<Option<M>, SendFailure> {
        if self.is_isolated(to) {
            return Err(SendFailure::Isolated);
        }
        let Some(addr) = self.peers.get(to) else {
            return Err(SendFailure::Connect(format!("unknown peer {to}")));
        };
        self.metrics.message(to, kind(&msg), Direction::Sent);
        let body = serde_json::to_vec(&msg).map_err(|e| SendFailure::Connect(e.to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut waiter = tx;
        let conn = loop {
            let conn = self.conn(to, addr);
            match conn.register(id, waiter) {
                Ok(()) => break conn,
                Err(w) => {
                    // Died between lookup and registration: open a fresh one.
                    waiter = w;
                    self.drop_conn(to, &conn);
                }
            }
        };
        if conn.out.send((id, body)).is_err() {
            conn.forget(id);
            self.drop_conn(to, &conn);
            return Err(SendFailure::NoReply("stream to peer closed".into()));
        }
        let bytes = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(bytes))) => bytes,
            Ok(Ok(Err(failure))) => return Err(failure),
            Ok(Err(_)) => return Err(SendFailure::NoReply("stream to peer closed".into())),
            Err(_) => {
                // A hung peer or link: drop the stream (its queue would only grow) and
                // let the next message open a new one.
                self.drop_conn(to, &conn);
                conn.fail_all(|| SendFailure::NoReply("stream dropped after a timeout".into()));
                return Err(SendFailure::NoReply(format!(
                    "no reply from {to} within {:?}",
                    self.timeout
                )));
            }
        };
        let reply: Option<M> =
            serde_json::from_slice(&bytes).map_err(|e| SendFailure::NoReply(e.to_string()))?;
        // A reply that arrives after we cut the link is dropped like its request would be.
        if self.is_isolated(to) {
            return Err(SendFailure::Isolated);
        }
        if let Some(r) = &reply {
            self.metrics.message(to, kind(r), Direction::Received);
        }
        Ok(reply)
    }
}

/// Opens the stream (connect, upgrade), then writes queued requests and hands replies to
/// their waiters until either side fails.
async fn run_stream(
    addr: String,
    me: NodeId,
    secret: Option<Arc<str>>,
    timeout: Duration,
    conn: Arc<Conn>,
    mut out: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
) {
    let stream =
        match tokio::time::timeout(timeout, open_stream(&addr, &me, secret.as_deref())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return conn.fail_all(|| SendFailure::Connect(e.to_string())),
            Err(_) => {
                return conn.fail_all(|| SendFailure::Connect(format!("{addr}: connect timed out")))
            }
        };
    let (rd, mut wr) = stream.into_split();
    // Buffered: a frame is a length then a body, and the peer packs many frames into one
    // write; unbuffered, each frame cost two or more recvfrom calls (strace: recvfrom was
    // the most frequent syscall of a leaderless node under the cluster bench).
    let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
    let reader_conn = conn.clone();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        loop {
            match read_frame(&mut rd, &mut buf).await {
                Ok(Some((id, TAG_REPLY))) => reader_conn.complete(id, Ok(std::mem::take(&mut buf))),
                Ok(Some((id, _))) => {
                    let why = String::from_utf8_lossy(&buf).into_owned();
                    reader_conn.complete(id, Err(SendFailure::NoReply(why)));
                }
                Ok(None) | Err(_) => break,
            }
        }
        reader_conn.fail_all(|| SendFailure::NoReply("stream to peer lost".into()));
    });
    let mut buf = Vec::new();
    loop {
        // A stream given up (timeout, isolation) must close its socket: if it stayed open,
        // the kernel would deliver what it still holds once the link is back — up to a
        // second after the heal (TCP's retransmission backoff), messages the protocol
        // already counted as lost.
        let (id, body) = tokio::select! {
            m = out.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = conn.closed.notified() => break,
        };
        buf.clear();
        encode_frame(&mut buf, id, TAG_REQUEST, &body);
        while buf.len() < MAX_WRITE {
            match out.try_recv() {
                Ok((id, body)) => encode_frame(&mut buf, id, TAG_REQUEST, &body),
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || conn.is_dead() {
            break;
        }
    }
    conn.fail_all(|| SendFailure::NoReply("stream to peer lost".into()));
    reader.abort();
}

/// Longest wait for a TCP connection to a peer. The handshake is the kernel's work, done in
/// well under a millisecond between the nodes' namespaces even on a busy machine; a SYN
/// that gets no answer was dropped (a cut link), and Linux resends it only after 1 s. So a
/// stream opened during a partition would otherwise hold every message queued on it for
/// the whole message timeout after the heal; with a short connect timeout the next
/// attempt goes out at once.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// Connects and asks the peer's HTTP server to switch the connection to frames.
async fn open_stream(addr: &str, me: &str, secret: Option<&str>) -> std::io::Result<TcpStream> {
    let mut s = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(s) => s?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{addr}: connect timed out after {CONNECT_TIMEOUT:?}"),
            ))
        }
    };
    s.set_nodelay(true)?;
    // Closing discards unsent data (RST) instead of delivering it late (see run_stream).
    s.set_zero_linger()?;
    let secret = secret.map_or(String::new(), |s| {
        format!("{}: {s}\r\n", crate::http::SECRET_HEADER)
    });
    let head = format!(
        "POST {STREAM_PATH} HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\n\
         upgrade: {STREAM_PROTOCOL}\r\n{PEER_HEADER}: {me}\r\n{secret}content-length: 0\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    // The server says nothing after its 101 until we send a request, so reading up to
    // the end of its head takes nothing that belongs to the frames.
    let mut resp = Vec::new();
    let mut byte = [0u8; 1];
    while !resp.ends_with(b"\r\n\r\n") {
        if resp.len() > 8192 || s.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other(format!(
                "{addr}: no stream upgrade: {}",
                String::from_utf8_lossy(&resp)
                    .lines()
                    .next()
                    .unwrap_or("closed")
            )));
        }
        resp.push(byte[0]);
    }
    if !resp.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(format!(
            "{addr}: refused the stream: {}",
            String::from_utf8_lossy(&resp).lines().next().unwrap_or("")
        )));
    }
    Ok(s)
}

/// The serving side of a stream from peer `from`: each request goes to `deliver` along
/// with a [`StreamReply`] that the protocol loop uses to answer it.
pub async fn serve_stream<IO, M, F, Fut>(
    io: IO,
    from: NodeId,
    transport: Arc<Transport>,
    kind: fn(&M) -> &'static str,
    mut deliver: F,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    M: Serialize + DeserializeOwned + Send + 'static,
    F: FnMut(M, StreamReply<M>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (rd, mut wr) = tokio::io::split(io);
    let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd); // see `run_stream`
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Result<Option<M>, String>)>();
    let writer_transport = transport.clone();
    let writer_from = from.clone();
    let writer = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut body = Vec::new();
        let mut encode = |buf: &mut Vec<u8>, (id, r): (u64, Result<Option<M>, String>)| match r {
            Ok(reply) => {
                if let Some(m) = &reply {
                    writer_transport
                        .metrics
                        .message(&writer_from, kind(m), Direction::Sent);
                }
                body.clear();
                let _ = serde_json::to_writer(&mut body, &reply);
                encode_frame(buf, id, TAG_REPLY, &body);
            }
            Err(why) => encode_frame(buf, id, TAG_REFUSED, why.as_bytes()),
        };
        while let Some(first) = rx.recv().await {
            buf.clear();
            encode(&mut buf, first);
            while buf.len() < MAX_WRITE {
                match rx.try_recv() {
                    Ok(r) => encode(&mut buf, r),
                    Err(_) => break,
                }
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::new();
    while let Ok(Some((id, tag))) = read_frame(&mut rd, &mut buf).await {
        if tag != TAG_REQUEST {
            break;
        }
        if transport.is_isolated(&from) {
            let _ = tx.send((id, Err(format!("isolated from {from}"))));
            continue;
        }
        let msg: M = match serde_json::from_slice(&buf) {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send((id, Err(format!("bad message: {e}"))));
                continue;
            }
        };
        transport
            .metrics
            .message(&from, kind(&msg), Direction::Received);
        let reply = StreamReply { id, tx: tx.clone() };
        if !deliver(msg, reply).await {
            break;
        }
    }
    drop(tx);
    // Let queued replies go out; the writer ends once every reply handle is gone.
    let _ = writer.await;
}

/// Where the answer to one request that came in on a stream goes.
pub struct StreamReply<M> {
    id: u64,
    tx: mpsc::UnboundedSender<(u64, Result<Option<M>, String>)>,
}

impl<M> StreamReply<M> {
    pub fn send(self, reply: Option<M>) {
        let _ = self.tx.send((self.id, Ok(reply)));
    }
}
