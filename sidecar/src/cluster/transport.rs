//! chitchat's `Transport`/`Socket` over one quinn endpoint with mutual TLS.
//!
//! One UDP port per node: [`QuicTransport::open`] binds a single quinn
//! endpoint on chitchat's `listen_addr` that both accepts (server config) and
//! dials (client config), so a peer's source address *is* its gossip
//! address, which chitchat uses as the destination of its reply.
//!
//! Wire: one chitchat message per QUIC unidirectional stream, on a cached
//! connection per peer (we send on connections we dialed and read on
//! connections we accepted). A stream carries one frame:
//!
//! ```text
//! b"scg1" | u32 BE payload length | payload (ChitchatMessage::serialize)
//! ```
//!
//! chitchat 0.11.2's constraints (shared/CHITCHAT-0.11.2.md §6):
//! - `send` is awaited inline in chitchat's only loop, so it never waits on
//!   the network: it enqueues into a bounded per-peer queue served by a
//!   per-peer task (dial with a timeout, cache the connection, redial when
//!   it dies, back off while the peer is unreachable) and returns;
//! - `recv` is dropped whenever another `select!` branch wins, so it only
//!   awaits an mpsc fed by the accept side (cancel-safe);
//! - an `Err` from `recv` stops gossip for good, so bad input (oversized,
//!   malformed, unauthorised) is dropped and counted in [`TransportStats`],
//!   never returned. `recv` fails only once the endpoint is gone.
//!
//! Authorisation happens on the accepting side: a connection whose
//! handshake fails, or whose peer presented no certificate from our CA
//! ([`peer_name`]), never delivers anything.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::tls::{ALPN, CLUSTER_DNS_NAME, NodeTls, peer_name};

/// First four bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"scg1";
/// Magic + u32 length.
pub const FRAME_HEADER_LEN: usize = 8;

/// A per-peer task with nothing to send for this long exits (closing its
/// connection); the next `send` to that peer starts a new one.
const PEER_IDLE: Duration = Duration::from_secs(60);
/// Backoff after a failed dial, doubling up to the max; messages for the
/// peer are dropped (counted as unreachable) until it expires.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// QUIC application error codes.
const CLOSE_UNAUTHORISED: u32 = 1;
const CLOSE_SHUTDOWN: u32 = 2;
const STOP_OVERSIZE: u32 = 1;
const STOP_MALFORMED: u32 = 2;

/// Tunables of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// Largest accepted (and sent) payload, in bytes. chitchat's own
    /// messages stay under 65,507 B; the headroom covers its size
    /// under-counting (CHITCHAT-0.11.2.md §3).
    pub max_frame_len: usize,
    /// Messages waiting per peer; `send` drops (and counts) beyond this.
    pub peer_queue_len: usize,
    /// Decoded messages waiting for chitchat's `recv`.
    pub incoming_queue_len: usize,
    /// Bound on a QUIC handshake, dialing or accepting.
    pub connect_timeout: Duration,
    /// Bound on reading one frame from its stream.
    pub read_timeout: Duration,
    /// Bound on opening a stream and writing one frame.
    pub write_timeout: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_frame_len: 1 << 20,
            peer_queue_len: 64,
            incoming_queue_len: 1024,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Just the max frame length; every other limit at its default.
impl From<usize> for TransportLimits {
    fn from(max_frame_len: usize) -> Self {
        TransportLimits {
            max_frame_len,
            ..TransportLimits::default()
        }
    }
}

/// Counters of one transport, shared with the daemon (`sc status`).
#[derive(Debug, Default)]
pub struct TransportStats {
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_unauthorised: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unreachable: AtomicU64,
    dropped_blocked: AtomicU64,
    connect_failures: AtomicU64,
    connections_dialed: AtomicU64,
}

/// A copy of [`TransportStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStatsSnapshot {
    /// Frames handed to QUIC (stream written and finished).
    pub messages_sent: u64,
    /// Messages decoded and handed to chitchat's `recv`.
    pub messages_received: u64,
    /// Frames over `max_frame_len`: incoming streams, or our own messages.
    pub dropped_oversize: u64,
    /// Incoming streams with bad magic, a truncated or overlong body, a
    /// payload that does not decode to exactly its length, or not
    /// complete within `read_timeout`.
    pub dropped_malformed: u64,
    /// Incoming connections refused: failed or timed-out handshake (no
    /// certificate, one not from our CA, wrong ALPN) or no valid node name.
    pub dropped_unauthorised: u64,
    /// Outgoing messages dropped because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Outgoing messages dropped because the peer could not be reached
    /// (dial failed, backing off, stream write failed or timed out).
    pub dropped_unreachable: u64,
    /// Messages and connection attempts dropped by the test hook
    /// ([`QuicTransport::set_blocked`]).
    pub dropped_blocked: u64,
    /// Failed or timed-out dials.
    pub connect_failures: u64,
    /// Successful dials: one per peer while both stay up; a steady rise
    /// between healthy peers is a reconnect loop.
    pub connections_dialed: u64,
}

impl TransportStats {
    /// Reads every counter (each atomically; not all at one instant).
    pub fn snapshot(&self) -> TransportStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStatsSnapshot {
            messages_sent: get(&self.messages_sent),
            messages_received: get(&self.messages_received),
            dropped_oversize: get(&self.dropped_oversize),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_unauthorised: get(&self.dropped_unauthorised),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unreachable: get(&self.dropped_unreachable),
            dropped_blocked: get(&self.dropped_blocked),
            connect_failures: get(&self.connect_failures),
            connections_dialed: get(&self.connections_dialed),
        }
    }
}

impl TransportStats {
    /// Every counter by name, for `sc status`.
    pub fn counters(&self) -> Vec<(String, u64)> {
        self.snapshot().counters()
    }
}

impl TransportStatsSnapshot {
    /// Every counter by name (the field names), in a fixed order.
    pub fn counters(&self) -> Vec<(String, u64)> {
        [
            ("messages_sent", self.messages_sent),
            ("messages_received", self.messages_received),
            ("dropped_oversize", self.dropped_oversize),
            ("dropped_malformed", self.dropped_malformed),
            ("dropped_unauthorised", self.dropped_unauthorised),
            ("dropped_queue_full", self.dropped_queue_full),
            ("dropped_unreachable", self.dropped_unreachable),
            ("dropped_blocked", self.dropped_blocked),
            ("connect_failures", self.connect_failures),
            ("connections_dialed", self.connections_dialed),
        ]
        .into_iter()
        .map(|(name, n)| (name.to_owned(), n))
        .collect()
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// TEST-ONLY hook (chaos suite): gossip addresses whose traffic is dropped
/// in both directions: no dial, no send, incoming connections from them
/// ignored, incoming messages from them discarded.
type BlockList = Arc<Mutex<HashSet<SocketAddr>>>;

/// TEST-ONLY: see [`QuicTransport::blocker`].
#[derive(Clone)]
pub struct Blocker(BlockList);

impl Blocker {
    pub fn set(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        let mut blocked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let new: HashSet<SocketAddr> = peers.into_iter().map(canonical).collect();
        if *blocked != new {
            tracing::warn!(peers = ?new, "test partition: dropping gossip with these peers");
            *blocked = new;
        }
    }
}

/// What the socket's tasks share.
struct Shared {
    limits: TransportLimits,
    stats: Arc<TransportStats>,
    blocked: BlockList,
    /// Peers that just connected in: a restarted peer is reachable again,
    /// so the dial backoff must go, or our answers to it would be dropped
    /// for seconds. (Our connection to its old process is closed by the
    /// stateless reset the new one sends: `NodeTls::endpoint_config`.)
    came_back: Mutex<HashSet<SocketAddr>>,
    /// What `recv` hands chitchat, for [`super::push::Pusher`] to add a
    /// message as if a peer had sent it. Set when the endpoint is bound.
    inbox: super::push::InboxSlot,
}

impl Shared {
    fn is_blocked(&self, addr: SocketAddr) -> bool {
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        !blocked.is_empty() && blocked.contains(&addr)
    }
}

/// chitchat's transport over QUIC with mutual TLS. Give it to
/// `chitchat::spawn_chitchat`; keep [`QuicTransport::stats`] for status.
pub struct QuicTransport {
    tls: NodeTls,
    shared: Arc<Shared>,
}

impl QuicTransport {
    /// `limits` is a [`TransportLimits`], or just the max frame length
    /// (`usize`) with the other limits at their defaults.
    pub fn new(tls: NodeTls, limits: impl Into<TransportLimits>) -> QuicTransport {
        let limits = limits.into();
        let limits = TransportLimits {
            max_frame_len: limits.max_frame_len.min(u32::MAX as usize),
            peer_queue_len: limits.peer_queue_len.max(1),
            incoming_queue_len: limits.incoming_queue_len.max(1),
            ..limits
        };
        QuicTransport {
            tls,
            shared: Arc::new(Shared {
                limits,
                stats: Arc::default(),
                blocked: Arc::default(),
                came_back: Mutex::default(),
                inbox: Arc::default(),
            }),
        }
    }

    /// The counters, shared with every socket this transport opens.
    pub fn stats(&self) -> Arc<TransportStats> {
        self.shared.stats.clone()
    }

    /// A handle on the block list that outlives handing the transport to
    /// chitchat (`[cluster] test_partition_file`).
    pub fn blocker(&self) -> Blocker {
        Blocker(self.shared.blocked.clone())
    }

    /// TEST-ONLY (chaos suite, `[cluster] test_partition_file`): replaces the set
    /// of gossip addresses whose traffic is dropped in both directions. An
    /// empty set unblocks all.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn set_blocked(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        let mut blocked = self
            .shared
            .blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *blocked = peers.into_iter().map(canonical).collect();
    }

    /// Hands our chitchat messages as if from a peer (see `push.rs`);
    /// works once the endpoint is bound.
    pub fn pusher(&self) -> super::push::Pusher {
        super::push::Pusher::new(self.shared.inbox.clone())
    }

    /// Binds the endpoint and starts accepting; what `open` does, with the
    /// concrete type (tests, `local_addr`).
    pub fn bind(&self, listen_addr: SocketAddr) -> Result<QuicSocket> {
        let socket = std::net::UdpSocket::bind(listen_addr)
            .with_context(|| format!("binding the QUIC gossip endpoint on {listen_addr}"))?;
        let mut endpoint = quinn::Endpoint::new(
            self.tls.endpoint_config(),
            Some(self.tls.server_config()),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .with_context(|| format!("starting the QUIC gossip endpoint on {listen_addr}"))?;
        endpoint.set_default_client_config(self.tls.client_config());
        let (tx, incoming) = mpsc::channel(self.shared.limits.incoming_queue_len);
        *self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx.clone());
        let accept_task = tokio::spawn(accept_loop(endpoint.clone(), self.shared.clone(), tx));
        Ok(QuicSocket {
            endpoint,
            shared: self.shared.clone(),
            peers: HashMap::new(),
            incoming,
            accept_task,
        })
    }
}

#[async_trait]
impl Transport for QuicTransport {
    async fn open(&self, listen_addr: SocketAddr) -> Result<Box<dyn Socket>> {
        Ok(Box::new(self.bind(listen_addr)?))
    }
}

/// One open endpoint. Dropping it closes the endpoint and every
/// connection, and ends every task it started.
pub struct QuicSocket {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    /// Queue of each peer's sending task, by gossip address.
    peers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    incoming: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
    accept_task: JoinHandle<()>,
}

impl QuicSocket {
    /// The bound UDP address (useful with port 0; tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Hands `frame` to `to`'s task, starting one if there is none (or the
    /// previous one exited after idling).
    fn enqueue(&mut self, to: SocketAddr, mut frame: Vec<u8>) {
        for _ in 0..2 {
            if !self.peers.contains_key(&to) {
                self.peers.retain(|_, tx| !tx.is_closed());
                let (tx, rx) = mpsc::channel(self.shared.limits.peer_queue_len);
                tokio::spawn(run_peer(self.endpoint.clone(), to, rx, self.shared.clone()));
                self.peers.insert(to, tx);
            }
            match self.peers[&to].try_send(frame) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => {
                    bump(&self.shared.stats.dropped_queue_full);
                    return;
                }
                Err(TrySendError::Closed(back)) => {
                    self.peers.remove(&to);
                    frame = back;
                }
            }
        }
    }
}

impl Drop for QuicSocket {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
    }
}

#[async_trait]
impl Socket for QuicSocket {
    /// Never waits on the network: encodes, enqueues for `to`, returns.
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> Result<()> {
        let to = canonical(to);
        if self.shared.is_blocked(to) {
            bump(&self.shared.stats.dropped_blocked);
            return Ok(());
        }
        let frame = encode_frame(&msg);
        if frame.len() - FRAME_HEADER_LEN > self.shared.limits.max_frame_len {
            bump(&self.shared.stats.dropped_oversize);
            warn!(
                %to,
                len = frame.len() - FRAME_HEADER_LEN,
                max = self.shared.limits.max_frame_len,
                "gossip message over the frame limit, not sent"
            );
            return Ok(());
        }
        self.enqueue(to, frame);
        Ok(())
    }

    /// Cancel-safe: only awaits the mpsc the accept side fills.
    async fn recv(&mut self) -> Result<(SocketAddr, ChitchatMessage)> {
        self.incoming
            .recv()
            .await
            .context("the QUIC gossip endpoint is closed")
    }
}

/// Serialises `msg` into a frame.
pub fn encode_frame(msg: &ChitchatMessage) -> Vec<u8> {
    let len = msg.serialized_len();
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + len);
    frame.extend_from_slice(&FRAME_MAGIC);
    frame.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    msg.serialize(&mut frame);
    frame
}

/// Decodes a frame's payload: `None` unless it is exactly one message.
fn decode_payload(payload: &[u8]) -> Option<ChitchatMessage> {
    // chitchat's decoder is not meant to panic; if it ever does on hostile
    // input, count the frame as malformed rather than lose the task silently.
    std::panic::catch_unwind(|| {
        let mut cursor = payload;
        let msg = ChitchatMessage::deserialize(&mut cursor).ok()?;
        cursor.is_empty().then_some(msg)
    })
    .ok()
    .flatten()
}

/// IPv4-mapped IPv6 addresses as IPv4, so a peer has one address.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

// ---- sending side -------------------------------------------------------

/// Serves one peer's queue until the socket is dropped or it idles.
async fn run_peer(
    endpoint: quinn::Endpoint,
    peer: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut link = PeerLink {
        endpoint,
        peer,
        shared,
        conn: None,
        backoff: BACKOFF_MIN,
        retry_at: None,
    };
    loop {
        let frame = match timeout(PEER_IDLE, rx.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            // Idle: refuse new messages (the socket will start a new task),
            // deliver what is already queued, then exit.
            Err(_) => {
                rx.close();
                continue;
            }
        };
        link.deliver(&frame).await;
    }
    if let Some(conn) = link.conn {
        conn.close(0u32.into(), b"idle");
    }
}

/// The sending state for one peer.
struct PeerLink {
    endpoint: quinn::Endpoint,
    peer: SocketAddr,
    shared: Arc<Shared>,
    conn: Option<quinn::Connection>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

enum WriteFailure {
    TimedOut,
    Failed(String),
}

impl PeerLink {
    async fn deliver(&mut self, frame: &[u8]) {
        let stats = self.shared.stats.clone();
        if self.shared.is_blocked(self.peer) {
            bump(&stats.dropped_blocked);
            return;
        }
        let came_back = self
            .shared
            .came_back
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.peer);
        // Only the backoff: closing our connection here too made every
        // new connection close the other side's, a reconnect (and a TLS
        // handshake) per message between two healthy peers.
        if came_back {
            self.retry_at = None;
            self.backoff = BACKOFF_MIN;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            bump(&stats.dropped_unreachable);
            return;
        }
        // A cached connection may have died without our noticing yet (peer
        // restarted): one retry on a fresh connection.
        for _ in 0..2 {
            let Some(conn) = self.connection().await else {
                bump(&stats.dropped_unreachable);
                return;
            };
            match write_frame(&conn, frame, self.shared.limits.write_timeout).await {
                Ok(()) => {
                    tracing::trace!(peer = %self.peer, len = frame.len(), "gossip message sent");
                    bump(&stats.messages_sent);
                    return;
                }
                Err(WriteFailure::TimedOut) => {
                    // Slow, not necessarily dead: keep the connection.
                    debug!(peer = %self.peer, "gossip write timed out");
                    bump(&stats.dropped_unreachable);
                    return;
                }
                Err(WriteFailure::Failed(error)) => {
                    debug!(peer = %self.peer, %error, "gossip write failed");
                    self.conn = None;
                }
            }
        }
        bump(&stats.dropped_unreachable);
    }

    /// The cached connection, or a new one; `None` (and a backoff) if the
    /// dial fails.
    async fn connection(&mut self) -> Option<quinn::Connection> {
        if let Some(conn) = &self.conn {
            if conn.close_reason().is_none() {
                return Some(conn.clone());
            }
            self.conn = None;
        }
        match self.dial().await {
            Ok(conn) => {
                bump(&self.shared.stats.connections_dialed);
                debug!(peer = %self.peer, "gossip connection established");
                self.backoff = BACKOFF_MIN;
                self.retry_at = None;
                self.conn = Some(conn.clone());
                Some(conn)
            }
            Err(error) => {
                bump(&self.shared.stats.connect_failures);
                debug!(peer = %self.peer, error = %format!("{error:#}"), backoff = ?self.backoff, "gossip dial failed");
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                None
            }
        }
    }

    async fn dial(&self) -> Result<quinn::Connection> {
        let connecting = self.endpoint.connect(self.peer, CLUSTER_DNS_NAME)?;
        let conn = timeout(self.shared.limits.connect_timeout, connecting)
            .await
            .context("handshake timed out")??;
        Ok(conn)
    }
}

/// Writes `frame` on a new unidirectional stream and finishes it. A write
/// cut short by the timeout resets the stream, so the peer never sees a
/// truncated frame as a complete one.
async fn write_frame(
    conn: &quinn::Connection,
    frame: &[u8],
    limit: Duration,
) -> Result<(), WriteFailure> {
    let mut stream = match timeout(limit, conn.open_uni()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(WriteFailure::Failed(e.to_string())),
        Err(_) => return Err(WriteFailure::TimedOut),
    };
    match timeout(limit, stream.write_all(frame)).await {
        Ok(Ok(())) => stream
            .finish()
            .map_err(|e| WriteFailure::Failed(e.to_string())),
        Ok(Err(e)) => Err(WriteFailure::Failed(e.to_string())),
        Err(_) => {
            let _ = stream.reset(0u32.into());
            Err(WriteFailure::TimedOut)
        }
    }
}

// ---- receiving side -----------------------------------------------------

pub(super) type Inbox = mpsc::Sender<(SocketAddr, ChitchatMessage)>;

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>, inbox: Inbox) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = canonical(incoming.remote_address());
        if shared.is_blocked(remote) {
            bump(&shared.stats.dropped_blocked);
            incoming.ignore();
            continue;
        }
        tokio::spawn(serve_connection(
            incoming,
            remote,
            shared.clone(),
            inbox.clone(),
        ));
    }
}

/// Completes the handshake, authorises the peer, then reads every stream.
async fn serve_connection(
    incoming: quinn::Incoming,
    remote: SocketAddr,
    shared: Arc<Shared>,
    inbox: Inbox,
) {
    let stats = &shared.stats;
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    let conn = match timeout(shared.limits.connect_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => {
            bump(&stats.dropped_unauthorised);
            debug!(%remote, %error, "gossip handshake failed");
            return;
        }
        Err(_) => {
            bump(&stats.dropped_unauthorised);
            debug!(%remote, "gossip handshake timed out");
            return;
        }
    };
    let Some(name) = authorise(&conn) else {
        bump(&stats.dropped_unauthorised);
        warn!(%remote, "gossip connection without a valid cluster certificate, closed");
        conn.close(CLOSE_UNAUTHORISED.into(), b"unauthorised");
        return;
    };
    debug!(%remote, peer = %name, "gossip connection accepted");
    shared
        .came_back
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(remote);
    loop {
        match conn.accept_uni().await {
            Ok(stream) => {
                tokio::spawn(read_stream(stream, remote, shared.clone(), inbox.clone()));
            }
            Err(error) => {
                debug!(%remote, peer = %name, %error, "gossip connection ended");
                return;
            }
        }
    }
}

/// The peer's node name if it presented a CA-signed certificate with a
/// valid name and negotiated our ALPN.
fn authorise(conn: &quinn::Connection) -> Option<String> {
    let alpn = conn
        .handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol?;
    if alpn != ALPN {
        return None;
    }
    peer_name(conn)
}

enum FrameError {
    /// The header announces more than the limit.
    Oversize,
    /// Bad magic, truncated, or longer than announced.
    Malformed,
    /// The stream or connection went away (not the peer's fault per se).
    Lost(String),
}

/// Reads, checks and decodes one frame, then hands it to `recv`.
async fn read_stream(
    mut stream: quinn::RecvStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    inbox: Inbox,
) {
    let stats = &shared.stats;
    let limits = shared.limits;
    let payload = match timeout(
        limits.read_timeout,
        read_frame(&mut stream, limits.max_frame_len),
    )
    .await
    {
        Ok(Ok(payload)) => payload,
        Ok(Err(FrameError::Oversize)) => {
            bump(&stats.dropped_oversize);
            debug!(%remote, "gossip frame over the limit, dropped");
            let _ = stream.stop(STOP_OVERSIZE.into());
            return;
        }
        Ok(Err(FrameError::Malformed)) | Err(_) => {
            bump(&stats.dropped_malformed);
            debug!(%remote, "malformed or incomplete gossip frame, dropped");
            let _ = stream.stop(STOP_MALFORMED.into());
            return;
        }
        Ok(Err(FrameError::Lost(error))) => {
            debug!(%remote, %error, "gossip stream lost");
            return;
        }
    };
    let Some(msg) = decode_payload(&payload) else {
        bump(&stats.dropped_malformed);
        debug!(%remote, len = payload.len(), "undecodable gossip payload, dropped");
        return;
    };
    if shared.is_blocked(remote) {
        bump(&stats.dropped_blocked);
        return;
    }
    if inbox.send((remote, msg)).await.is_ok() {
        tracing::trace!(%remote, len = payload.len(), "gossip message received");
        bump(&stats.messages_received);
    }
}

async fn read_frame(stream: &mut quinn::RecvStream, max_len: usize) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    match stream.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Malformed),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(FrameError::Lost(e.to_string())),
    }
    if header[..4] != FRAME_MAGIC {
        return Err(FrameError::Malformed);
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > max_len {
        return Err(FrameError::Oversize);
    }
    match stream.read_to_end(len).await {
        Ok(payload) if payload.len() == len => Ok(payload),
        Ok(_) | Err(quinn::ReadToEndError::TooLong) => Err(FrameError::Malformed),
        Err(quinn::ReadToEndError::Read(e)) => Err(FrameError::Lost(e.to_string())),
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
