//! Peer messages: one long-lived TCP stream per peer and direction, opened with an HTTP
//! upgrade (`POST /peer/stream`, so peers still need only the client port), then
//! length-prefixed frames. A request frame carries one protocol message; the reply (if
//! the protocol gives one) comes back on the same stream, matched by id, so many
//! messages can be in flight and a writer folds whatever is queued into one `write`.
//! A request/response over HTTP costs both sides a full HTTP exchange per message; on
//! this stream it costs a frame (nodes/README.md, Performance, has the figures).
//!
//! A protocol whose messages need no reply (leaderless) *posts* them instead: no reply
//! frame, no waiting caller; the peer acknowledges everything it has taken with one
//! cumulative frame at most every [`ACK_DELAY`], and the sender hears of acknowledgements
//! and lost streams as [`Link`] events (`Transport::links`). Per message that saves the
//! peer a reply write and the sender a read, a task, a timer and a wake-up of its loop.
//! "Taken" means handed to the peer's node loop, not yet handled by it (a loop that
//! stalls alone is noticed once its bounded queue fills); so a stream that dies reports
//! its posts lost even when all were acknowledged.
//!
//! Every message has a total timeout: a peer that is down, paused or cut off costs at
//! most one timeout, after which the stream is dropped and the next message opens a new
//! one (connect timeout too). For posts the timeout runs from the oldest post not yet
//! acknowledged, and is checked by `Transport::expire` (the node loop calls it each
//! tick). `POST /peer/message` (one message per HTTP request, the reply in the response
//! body) is still served, for tools and tests.
//!
//! Also the simulated partition: peers named in `isolated` get no messages from us and
//! their messages to us are refused (see `POST /admin/isolate`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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

impl SendFailure {
    /// Did the message certainly never arrive (link cut, no connection)?
    pub fn is_definite(&self) -> bool {
        matches!(self, SendFailure::Isolated | SendFailure::Connect(_))
    }
}

/// Path of the upgrade request, and the header naming the connecting peer.
pub const STREAM_PATH: &str = "/peer/stream";
pub const STREAM_PROTOCOL: &str = "faultline-peer";
pub const PEER_HEADER: &str = "x-faultline-peer";

/// Frame tags: a request, its reply (JSON `Option<M>`), or its refusal (a reason); a post
/// (a request that gets no reply), and the acknowledgement of every post up to its id.
pub const TAG_REQUEST: u8 = 0;
pub const TAG_REPLY: u8 = 1;
pub const TAG_REFUSED: u8 = 2;
pub const TAG_POST: u8 = 3;
pub const TAG_ACK: u8 = 4;

/// Longest a receiver holds back its acknowledgement of posts, so that one frame answers
/// every post that arrived meanwhile. Well below the failure detectors' patience (the
/// leaderless mode suspects a peer after 20–30 ms without an answer).
pub const ACK_DELAY: Duration = Duration::from_millis(4);

/// What became of the posts to a peer (see [`Transport::post`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The peer took posts (a sign of life).
    Acked,
    /// The stream died with posts unacknowledged: they may be lost. `definite` when they
    /// certainly never arrived (link cut, no connection).
    Lost { definite: bool },
}

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
type LinkSink = mpsc::UnboundedSender<(NodeId, Link)>;

/// What a live stream owes: callers waiting for replies, and the posts not yet
/// acknowledged with the time each was queued (ids increase along a stream).
#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    /// The last post the peer answered (acknowledged or refused); 0: none.
    acked: u64,
    unacked: VecDeque<(u64, Instant)>,
}

impl Pending {
    /// Did any post go out on this stream? (An acknowledgement says the peer took it, not
    /// that its node loop handled it: if the stream dies, even acknowledged posts may be
    /// lost with the peer's queue.)
    fn posted(&self) -> bool {
        self.acked > 0 || !self.unacked.is_empty()
    }
}

/// One outgoing stream to a peer: frames queue on `out`; `pending` becomes `None` once
/// the stream is dead.
struct Conn {
    peer: NodeId,
    out: mpsc::UnboundedSender<(u64, u8, Vec<u8>)>,
    pending: Mutex<Option<Pending>>,
    /// Tells the stream's writer to stop (and so close the socket) once it is dead.
    closed: tokio::sync::Notify,
    /// The transport's subscriber, looked up at each event (it may subscribe later).
    links: Arc<Mutex<Option<LinkSink>>>,
}

impl Conn {
    /// False if the stream is already dead.
    fn register(&self, id: u64, waiter: Waiter) -> Result<(), Waiter> {
        match self.pending.lock().unwrap().as_mut() {
            Some(p) => {
                p.waiters.insert(id, waiter);
                Ok(())
            }
            None => Err(waiter),
        }
    }

    /// Counts post `id` as queued; false if the stream is already dead.
    fn note_post(&self, id: u64) -> bool {
        match self.pending.lock().unwrap().as_mut() {
            Some(p) => {
                p.unacked.push_back((id, Instant::now()));
                true
            }
            None => false,
        }
    }

    /// Hands a reply to its caller; false if nobody waits for `id` (a post, or a caller
    /// that gave up).
    fn complete(&self, id: u64, result: Result<Vec<u8>, SendFailure>) -> bool {
        let waiter = self
            .pending
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|p| p.waiters.remove(&id));
        match waiter {
            Some(w) => {
                let _ = w.send(result);
                true
            }
            None => false,
        }
    }

    /// The peer took every post up to `id`.
    fn acked(&self, id: u64) {
        self.answered(id, Link::Acked);
    }

    /// The peer refused post `id` (it cut the link on its side, or could not read it):
    /// alive, but that post is certainly lost.
    fn refused_post(&self, id: u64) {
        self.answered(id, Link::Lost { definite: true });
    }

    fn answered(&self, id: u64, link: Link) {
        let mut pending = self.pending.lock().unwrap();
        let Some(p) = pending.as_mut() else { return };
        // An acknowledgement that moves nothing (it crossed a refusal of a later post)
        // says nothing new, and must not clear the suspicion the refusal raised.
        if link == Link::Acked && id <= p.acked {
            return;
        }
        p.acked = p.acked.max(id);
        while p.unacked.front().is_some_and(|&(i, _)| i <= p.acked) {
            p.unacked.pop_front();
        }
        drop(pending);
        self.link(link);
    }

    fn link(&self, link: Link) {
        if let Some(links) = self.links.lock().unwrap().as_ref() {
            let _ = links.send((self.peer.clone(), link));
        }
    }

    /// The oldest unacknowledged post has waited `timeout` (a peer that acknowledges
    /// only now and then, a backlogged one, expires like a silent one).
    fn silent_for(&self, timeout: Duration) -> bool {
        self.pending
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|p| p.unacked.front())
            .is_some_and(|(_, t)| t.elapsed() >= timeout)
    }

    fn forget(&self, id: u64) {
        if let Some(p) = self.pending.lock().unwrap().as_mut() {
            p.waiters.remove(&id);
        }
    }

    /// Marks the stream dead and fails everyone waiting on it; reports its posts (if it
    /// carried any) as lost.
    fn fail_all(&self, failure: impl Fn() -> SendFailure) {
        let Some(pending) = self.pending.lock().unwrap().take() else {
            self.closed.notify_one();
            return;
        };
        if pending.posted() {
            self.link(Link::Lost {
                definite: failure().is_definite(),
            });
        }
        for (_, w) in pending.waiters {
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
    /// Where `Link` events about posts go (one subscriber: the node loop).
    links: Arc<Mutex<Option<LinkSink>>>,
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
            links: Arc::new(Mutex::new(None)),
            metrics,
        })
    }

    /// Subscribes to acknowledgements and losses of posts (a later call replaces the
    /// subscriber).
    pub fn links(&self) -> mpsc::UnboundedReceiver<(NodeId, Link)> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.links.lock().unwrap() = Some(tx);
        rx
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
            peer: to.to_string(),
            out,
            pending: Mutex::new(Some(Pending::default())),
            closed: tokio::sync::Notify::new(),
            links: self.links.clone(),
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

    /// The address of `to`, unless the link to it is cut or it is no peer of ours.
    fn address(&self, to: &str) -> Result<&str, SendFailure> {
        if self.is_isolated(to) {
            return Err(SendFailure::Isolated);
        }
        self.peers
            .get(to)
            .map(String::as_str)
            .ok_or_else(|| SendFailure::Connect(format!("unknown peer {to}")))
    }

    /// A live stream to `to` that `claim` accepted (it fails on a stream that died between
    /// lookup and claim: then a fresh one is opened).
    fn live_conn(&self, to: &str, addr: &str, mut claim: impl FnMut(&Conn) -> bool) -> Arc<Conn> {
        loop {
            let conn = self.conn(to, addr);
            if claim(&conn) {
                return conn;
            }
            self.drop_conn(to, &conn);
        }
    }

    /// Sends `msg` and returns the peer's reply, if its protocol gives one.
    pub async fn send<M: Serialize + DeserializeOwned>(
        &self,
        to: &str,
        msg: M,
        kind: fn(&M) -> &'static str,
    ) -> Result<Option<M>, SendFailure> {
        let addr = self.address(to)?;
        self.metrics.message(to, kind(&msg), Direction::Sent);
        let body = serde_json::to_vec(&msg).map_err(|e| SendFailure::Connect(e.to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut waiter = Some(tx);
        let conn = self.live_conn(to, addr, |c| match c.register(id, waiter.take().unwrap()) {
            Ok(()) => true,
            Err(w) => {
                waiter = Some(w);
                false
            }
        });
        if conn.out.send((id, TAG_REQUEST, body)).is_err() {
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

    /// Queues `msg` for `to` as a post: no reply, no waiting. Posts to one peer are sent
    /// in the order of the calls. An `Err` means it certainly did not leave (cut off,
    /// unknown peer, unserializable); a post that leaves and is lost with its stream is
    /// reported later, as `Link::Lost`, once per stream.
    pub fn post<M: Serialize>(
        &self,
        to: &str,
        msg: &M,
        kind: &'static str,
    ) -> Result<(), SendFailure> {
        let addr = self.address(to)?;
        let body = serde_json::to_vec(msg).map_err(|e| SendFailure::Connect(e.to_string()))?;
        self.metrics.message(to, kind, Direction::Sent);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = self.live_conn(to, addr, |c| c.note_post(id));
        if conn.out.send((id, TAG_POST, body)).is_err() {
            // The writer is gone: the stream is dead or dying, and reports the loss.
            self.drop_conn(to, &conn);
            conn.fail_all(|| SendFailure::NoReply("stream to peer closed".into()));
        }
        Ok(())
    }

    /// Drops every stream whose posts have gone unacknowledged for the message timeout
    /// (a hung peer or link), reporting them lost; the next post opens a new stream.
    pub fn expire(&self) {
        let silent: Vec<(NodeId, Arc<Conn>)> = self
            .conns
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c)| c.silent_for(self.timeout))
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect();
        for (peer, conn) in silent {
            self.drop_conn(&peer, &conn);
            conn.fail_all(|| SendFailure::NoReply("posts unacknowledged, stream dropped".into()));
        }
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
    mut out: mpsc::UnboundedReceiver<(u64, u8, Vec<u8>)>,
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
                Ok(Some((id, TAG_REPLY))) => {
                    reader_conn.complete(id, Ok(std::mem::take(&mut buf)));
                }
                Ok(Some((id, TAG_ACK))) => reader_conn.acked(id),
                Ok(Some((id, _))) => {
                    let why = String::from_utf8_lossy(&buf).into_owned();
                    if !reader_conn.complete(id, Err(SendFailure::NoReply(why))) {
                        reader_conn.refused_post(id);
                    }
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
        let (id, tag, body) = tokio::select! {
            m = out.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = conn.closed.notified() => break,
        };
        buf.clear();
        encode_frame(&mut buf, id, tag, &body);
        while buf.len() < MAX_WRITE {
            match out.try_recv() {
                Ok((id, tag, body)) => encode_frame(&mut buf, id, tag, &body),
                Err(_) => break,
            }
        }
        // A hung peer with a full window blocks the write: it must still see `closed`.
        let wrote = tokio::select! {
            r = wr.write_all(&buf) => r.is_ok(),
            _ = conn.closed.notified() => false,
        };
        if !wrote || conn.is_dead() {
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
    let acks = Arc::new(Acks::default());
    let writer_acks = acks.clone();
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
        let acks = writer_acks;
        let mut acked = 0;
        let mut ack_due: Option<tokio::time::Instant> = None;
        loop {
            buf.clear();
            tokio::select! {
                r = rx.recv() => {
                    let Some(first) = r else { break };
                    encode(&mut buf, first);
                }
                _ = acks.wanted.notified(), if ack_due.is_none() => {
                    ack_due = Some(tokio::time::Instant::now() + ACK_DELAY);
                    continue;
                }
                _ = tokio::time::sleep_until(ack_due.unwrap_or_else(tokio::time::Instant::now)),
                    if ack_due.is_some() => {
                    ack_due = None;
                    // Cleared before reading `taken`: a post taken after this read asks
                    // for a new acknowledgement.
                    acks.scheduled.store(false, Ordering::SeqCst);
                }
            }
            // Whatever else is queued shares the write; and refusals queued before a later
            // post was taken go out before its acknowledgement.
            while buf.len() < MAX_WRITE {
                match rx.try_recv() {
                    Ok(r) => encode(&mut buf, r),
                    Err(_) => break,
                }
            }
            // Any write carries the acknowledgement of every post taken so far.
            let taken = acks.taken.load(Ordering::SeqCst);
            if taken > acked {
                encode_frame(&mut buf, taken, TAG_ACK, &[]);
                acked = taken;
            }
            if !buf.is_empty() && wr.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::new();
    while let Ok(Some((id, tag))) = read_frame(&mut rd, &mut buf).await {
        if tag != TAG_REQUEST && tag != TAG_POST {
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
        let reply = StreamReply {
            id,
            tx: (tag == TAG_REQUEST).then(|| tx.clone()),
        };
        if !deliver(msg, reply).await {
            break;
        }
        if tag == TAG_POST {
            acks.taken.store(id, Ordering::SeqCst);
            if !acks.scheduled.swap(true, Ordering::SeqCst) {
                acks.wanted.notify_one();
            }
        }
    }
    drop(tx);
    // Let queued replies go out; the writer ends once every reply handle is gone.
    let _ = writer.await;
}

/// Posts a stream's reader has handed to the node loop, for its writer to acknowledge:
/// `taken` is the last post's id, `scheduled` says an acknowledgement is already due
/// (so a burst of posts wakes the writer once), `wanted` wakes it.
#[derive(Default)]
struct Acks {
    taken: AtomicU64,
    scheduled: std::sync::atomic::AtomicBool,
    wanted: tokio::sync::Notify,
}

/// A served stream's outgoing frames: a reply (or the refusal of a request or post).
type ReplySink<M> = mpsc::UnboundedSender<(u64, Result<Option<M>, String>)>;

/// Where the answer to one request that came in on a stream goes (nowhere for a post).
pub struct StreamReply<M> {
    id: u64,
    tx: Option<ReplySink<M>>,
}

impl<M> StreamReply<M> {
    /// Sends the reply; for a post, whatever the protocol returned is dropped (a
    /// protocol that posts a message expects nothing back).
    pub fn send(self, reply: Option<M>) {
        if let Some(tx) = self.tx {
            let _ = tx.send((self.id, Ok(reply)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn transport(id: &str, peers: &[(NodeId, String)], timeout: Duration) -> Arc<Transport> {
        let metrics = Arc::new(Metrics::default());
        Arc::new(
            Transport::new(
                id.into(),
                peers,
                timeout,
                metrics,
                None,
                Duration::from_secs(10),
            )
            .unwrap(),
        )
    }

    fn kind(_: &u64) -> &'static str {
        "n"
    }

    /// Accepts one stream, answers its upgrade, and returns the socket.
    async fn accept_stream(listener: &TcpListener) -> TcpStream {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                s.read(&mut byte).await.unwrap(),
                1,
                "upgrade request cut short"
            );
            head.push(byte[0]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        s
    }

    /// A peer `b` that serves streams from `a` and passes every message on.
    async fn peer_b(isolate_a: bool) -> (String, mpsc::UnboundedReceiver<u64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let b = transport(
            "b",
            &[("a".into(), "127.0.0.1:1".into())],
            Duration::from_secs(1),
        );
        if isolate_a {
            b.isolate(&["a".into()]);
        }
        tokio::spawn(async move {
            loop {
                let s = accept_stream(&listener).await;
                let tx = tx.clone();
                tokio::spawn(serve_stream(
                    s,
                    "a".into(),
                    b.clone(),
                    kind,
                    move |m, reply| {
                        reply.send(None);
                        let ok = tx.send(m).is_ok();
                        async move { ok }
                    },
                ));
            }
        });
        (addr, rx)
    }

    async fn next_link(links: &mut mpsc::UnboundedReceiver<(NodeId, Link)>) -> Link {
        let (peer, link) = tokio::time::timeout(Duration::from_secs(5), links.recv())
            .await
            .expect("no link event within 5 s")
            .unwrap();
        assert_eq!(peer, "b");
        link
    }

    fn drain(links: &mut mpsc::UnboundedReceiver<(NodeId, Link)>) -> Vec<Link> {
        let mut got = Vec::new();
        while let Ok((_, link)) = links.try_recv() {
            got.push(link);
        }
        got
    }

    /// A peer that takes the stream and then neither reads nor answers.
    async fn hung_peer() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let _s = accept_stream(&listener).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        (addr, task)
    }

    #[tokio::test]
    async fn posts_arrive_in_order_and_a_few_frames_acknowledge_a_burst() {
        let (addr, mut got) = peer_b(false).await;
        let timeout = Duration::from_millis(100);
        let a = transport("a", &[("b".into(), addr)], timeout);
        let mut links = a.links();
        let mut next = 0u64;
        // Two bursts: the second must be acknowledged too (the writer schedules a new
        // acknowledgement after sending one).
        for _ in 0..2 {
            for _ in 0..200 {
                a.post("b", &next, "n").unwrap();
                next += 1;
            }
            assert_eq!(next_link(&mut links).await, Link::Acked);
            tokio::time::sleep(ACK_DELAY * 5).await;
            let more = drain(&mut links);
            assert!(more.iter().all(|l| *l == Link::Acked), "{more:?}");
            // Replies would have been 200 frames.
            assert!(
                more.len() < 10,
                "{} acknowledgements for 200 posts",
                more.len() + 1
            );
        }
        for i in 0..next {
            assert_eq!(got.recv().await, Some(i));
        }
        // Everything acknowledged: nothing expires, however long we wait.
        tokio::time::sleep(timeout * 2).await;
        a.expire();
        assert_eq!(drain(&mut links), vec![]);
    }

    #[tokio::test]
    async fn posts_a_peer_never_acknowledges_are_reported_lost_after_the_timeout() {
        let (addr, hung) = hung_peer().await;
        let timeout = Duration::from_millis(200);
        let a = transport("a", &[("b".into(), addr)], timeout);
        let mut links = a.links();
        let start = Instant::now();
        // Posts keep coming more often than the timeout: the oldest one still counts.
        let mut i = 0u64;
        while start.elapsed() < timeout * 3 / 4 {
            a.post("b", &i, "n").unwrap();
            i += 1;
            tokio::time::sleep(timeout / 8).await;
            a.expire();
            assert_eq!(drain(&mut links), vec![], "expired before the timeout");
        }
        tokio::time::sleep(timeout / 2).await;
        a.expire();
        assert_eq!(next_link(&mut links).await, Link::Lost { definite: false });
        hung.abort();
    }

    #[tokio::test]
    async fn cut_links_and_refusals_lose_posts_definitely() {
        // Nobody listens: the connection is never made.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = transport(
            "a",
            &[("b".into(), format!("127.0.0.1:{port}"))],
            Duration::from_secs(1),
        );
        let mut links = a.links();
        a.post("b", &1u64, "n").unwrap();
        assert_eq!(next_link(&mut links).await, Link::Lost { definite: true });

        // We cut the link while posts are in flight, then post again: they do not leave.
        let (addr, hung) = hung_peer().await;
        let a = transport("a", &[("b".into(), addr)], Duration::from_secs(1));
        let mut links = a.links();
        a.post("b", &2u64, "n").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.isolate(&["b".into()]);
        assert_eq!(next_link(&mut links).await, Link::Lost { definite: true });
        assert!(matches!(
            a.post("b", &3u64, "n"),
            Err(SendFailure::Isolated)
        ));
        hung.abort();

        // The peer cut the link on its side: it refuses each post.
        let (addr, mut got) = peer_b(true).await;
        let a = transport("a", &[("b".into(), addr)], Duration::from_secs(1));
        let mut links = a.links();
        a.post("b", &4u64, "n").unwrap();
        assert_eq!(next_link(&mut links).await, Link::Lost { definite: true });
        assert!(got.try_recv().is_err(), "an isolated peer took a post");
    }
}
