//! The QUIC transport with real quinn endpoints on 127.0.0.1: chitchat
//! instances converging over it, a foreign CA kept out, bad frames counted,
//! dead and blocked peers not slowing gossip down.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, spawn_chitchat};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;
use crate::cluster::certs::{self, CA_CERT_FILE, NODE_CERT_FILE, NODE_KEY_FILE};

/// Bound on every convergence wait.
const CONVERGE: Duration = Duration::from_secs(10);

/// A CA with node certificates, in a temp dir.
struct Pki {
    _tmp: tempfile::TempDir,
    ca: PathBuf,
    root: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let ca = root.join("ca");
        certs::init_ca(&ca).unwrap();
        Pki {
            _tmp: tmp,
            ca,
            root,
        }
    }

    /// Issues `name` (once) and returns its directory.
    fn node_dir(&self, name: &str) -> PathBuf {
        let dir = self.root.join(name);
        if !dir.exists() {
            let ip = "127.0.0.1".parse().unwrap();
            certs::issue(&self.ca, name, &[ip], &[], &dir).unwrap();
        }
        dir
    }

    fn tls(&self, name: &str) -> NodeTls {
        let dir = self.node_dir(name);
        NodeTls::load(
            &dir.join(CA_CERT_FILE),
            &dir.join(NODE_CERT_FILE),
            &dir.join(NODE_KEY_FILE),
        )
        .unwrap()
    }
}

/// A free UDP port on 127.0.0.1 (released again: small race, fine here).
fn free_addr() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Node {
    name: String,
    transport: QuicTransport,
    handle: ChitchatHandle,
}

impl Node {
    async fn start(tls: NodeTls, addr: SocketAddr, seeds: &[SocketAddr]) -> Node {
        Node::start_with(
            QuicTransport::new(tls, TransportLimits::default()),
            addr,
            seeds,
        )
        .await
    }

    async fn start_with(transport: QuicTransport, addr: SocketAddr, seeds: &[SocketAddr]) -> Node {
        Node::start_gossiping_every(transport, addr, seeds, Duration::from_millis(100)).await
    }

    async fn start_gossiping_every(
        transport: QuicTransport,
        addr: SocketAddr,
        seeds: &[SocketAddr],
        gossip_interval: Duration,
    ) -> Node {
        let name = transport.tls.node_name().to_owned();
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(name.clone(), 1, addr),
            cluster_id: "sc-test".to_owned(),
            gossip_interval,
            listen_addr: addr,
            seed_nodes: seeds.iter().map(ToString::to_string).collect(),
            failure_detector_config: FailureDetectorConfig {
                initial_interval: Duration::from_millis(200),
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let kv = vec![("k".to_owned(), format!("v-{name}"))];
        let handle = spawn_chitchat(config, kv, &transport).await.unwrap();
        Node {
            name,
            transport,
            handle,
        }
    }

    /// Whether this node holds `other`'s key `k` with its value.
    async fn sees(&self, other: &str) -> bool {
        let want = format!("v-{other}");
        self.handle
            .with_chitchat(|c| {
                c.node_states()
                    .iter()
                    .any(|(id, st)| &*id.node_id == other && st.get("k") == Some(want.as_str()))
            })
            .await
    }

    /// Whether this node knows anything about node id `other`.
    async fn knows(&self, other: &str) -> bool {
        self.handle
            .with_chitchat(|c| c.node_states().keys().any(|id| &*id.node_id == other))
            .await
    }

    fn stats(&self) -> TransportStatsSnapshot {
        self.transport.stats().snapshot()
    }
}

async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every node of `nodes` sees every name of `names`.
async fn all_see(nodes: &[&Node], names: &[&str]) -> bool {
    for node in nodes {
        for name in names {
            if !node.sees(name).await {
                return false;
            }
        }
    }
    true
}

async fn shutdown(nodes: Vec<Node>) {
    for node in nodes {
        node.handle.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_chitchat_nodes_converge_over_quic() {
    let pki = Pki::new();
    let (addr_a, addr_b, addr_c) = (free_addr(), free_addr(), free_addr());
    let a = Node::start(pki.tls("a"), addr_a, &[]).await;
    let b = Node::start(pki.tls("b"), addr_b, &[addr_a]).await;
    let c = Node::start(pki.tls("c"), addr_c, &[addr_a]).await;

    let started = Instant::now();
    assert!(
        eventually(CONVERGE, || async {
            all_see(&[&a, &b, &c], &["a", "b", "c"]).await
        })
        .await,
        "no convergence within {CONVERGE:?}"
    );
    eprintln!("converged in {:?}", started.elapsed());

    // A later write travels too.
    a.handle
        .with_chitchat(|c| c.self_node_state().set("k2", "later"))
        .await;
    let later = || async {
        for node in [&b, &c] {
            let seen = node
                .handle
                .with_chitchat(|c| {
                    c.node_states()
                        .iter()
                        .any(|(id, st)| &*id.node_id == "a" && st.get("k2") == Some("later"))
                })
                .await;
            if !seen {
                return false;
            }
        }
        true
    };
    assert!(eventually(CONVERGE, later).await);

    // Steady gossip between healthy peers keeps its connections: each
    // node dials each peer once (plus a redial if both dialed at once).
    let dialed: Vec<u64> = [&a, &b, &c]
        .iter()
        .map(|n| n.stats().connections_dialed)
        .collect();
    let sent: Vec<u64> = [&a, &b, &c]
        .iter()
        .map(|n| n.stats().messages_sent)
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, node) in [&a, &b, &c].into_iter().enumerate() {
        let s = node.stats();
        assert!(s.messages_sent > sent[i] + 10, "{}: {s:?}", node.name);
        assert_eq!(
            s.connections_dialed, dialed[i],
            "{}: new connections during steady gossip (a reconnect loop): {s:?}",
            node.name
        );
    }

    for node in [&a, &b, &c] {
        let s = node.stats();
        assert!(
            s.messages_sent > 0 && s.messages_received > 0,
            "{}: {s:?}",
            node.name
        );
        assert_eq!(
            s.dropped_malformed + s.dropped_oversize + s.dropped_unauthorised,
            0,
            "{s:?}"
        );
    }
    shutdown(vec![a, b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_from_another_ca_cannot_join() {
    let pki = Pki::new();
    let other = Pki::new();
    let (addr_a, addr_b, addr_x) = (free_addr(), free_addr(), free_addr());
    let a = Node::start(pki.tls("a"), addr_a, &[]).await;
    let b = Node::start(pki.tls("b"), addr_b, &[addr_a]).await;
    // x knows both addresses and keeps trying them.
    let x = Node::start(other.tls("x"), addr_x, &[addr_a, addr_b]).await;

    assert!(eventually(CONVERGE, || async { all_see(&[&a, &b], &["a", "b"]).await }).await);
    tokio::time::sleep(Duration::from_secs(3)).await;

    for node in [&a, &b] {
        assert!(!node.knows("x").await, "{} knows x", node.name);
        let s = node.stats();
        assert!(s.dropped_unauthorised > 0, "{}: {s:?}", node.name);
    }
    assert!(!x.knows("a").await && !x.knows("b").await);
    shutdown(vec![a, b, x]).await;
}

/// A raw quinn client endpoint on an ephemeral port.
fn raw_client(config: quinn::ClientConfig) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}

/// Writes `bytes` as one uni stream; errors are ignored (the server may
/// stop the stream or close the connection).
async fn write_stream(conn: &quinn::Connection, bytes: &[u8]) {
    if let Ok(mut s) = conn.open_uni().await {
        let _ = s.write_all(bytes).await;
        let _ = s.finish();
    }
}

fn frame(magic: &[u8; 4], len: usize, payload: &[u8]) -> Vec<u8> {
    let mut f = magic.to_vec();
    f.extend_from_slice(&(len as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_frames_are_dropped_and_counted() {
    let pki = Pki::new();
    let limits = TransportLimits {
        max_frame_len: 4096,
        ..TransportLimits::default()
    };
    let transport = QuicTransport::new(pki.tls("server"), limits);
    let mut socket = transport.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();

    let client = raw_client(pki.tls("probe").client_config());
    let conn = client
        .connect(addr, CLUSTER_DNS_NAME)
        .unwrap()
        .await
        .unwrap();
    let good = ChitchatMessage::BadCluster.serialize_to_vec();

    // Oversized: announced over the limit (and really that long).
    write_stream(&conn, &frame(b"scg1", 5000, &vec![0; 5000])).await;
    // Malformed: bad magic; garbage payload; trailing bytes beyond the
    // announced length; truncated; decodes but not to exactly its length.
    write_stream(&conn, &frame(b"xxxx", good.len(), &good)).await;
    write_stream(&conn, &frame(b"scg1", 5, b"hello")).await;
    let mut long = good.clone();
    long.push(0);
    write_stream(&conn, &frame(b"scg1", good.len(), &long)).await;
    write_stream(&conn, &frame(b"scg1", good.len() + 1, &good)).await;
    write_stream(&conn, &frame(b"scg1", long.len(), &long)).await;
    write_stream(&conn, b"sc").await;

    let stats = transport.stats();
    assert!(
        eventually(Duration::from_secs(5), || async {
            let s = stats.snapshot();
            s.dropped_oversize == 1 && s.dropped_malformed == 6
        })
        .await,
        "{:?}",
        stats.snapshot()
    );

    // recv still works afterwards, on the same connection.
    write_stream(&conn, &frame(b"scg1", good.len(), &good)).await;
    let (from, msg) = timeout(Duration::from_secs(5), socket.recv())
        .await
        .expect("recv timed out")
        .unwrap();
    assert_eq!(msg, ChitchatMessage::BadCluster);
    assert_eq!(from, client.local_addr().unwrap());
    // The reader task counts after handing the message over: wait for it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            stats.snapshot().messages_received == 1
        })
        .await,
        "{:?}",
        stats.snapshot()
    );
    assert_eq!(stats.snapshot().dropped_unauthorised, 0);

    // Our own message over the limit is not sent either.
    let tiny = QuicTransport::new(pki.tls("tiny"), 2usize);
    let mut tiny_socket = tiny.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    tiny_socket
        .send(addr, ChitchatMessage::BadCluster)
        .await
        .unwrap();
    assert_eq!(tiny.stats().snapshot().dropped_oversize, 1);
}

/// A client config trusting `ca` and presenting `identity`'s certificate
/// (which may come from another CA), or none.
fn client_config(ca: &Path, identity: Option<&Path>) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(dir) => {
            let chain = CertificateDer::pem_file_iter(dir.join(NODE_CERT_FILE))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(dir.join(NODE_KEY_FILE)).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![crate::cluster::tls::ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(config).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accepting_side_refuses_clients_without_a_cluster_certificate() {
    let pki = Pki::new();
    let other = Pki::new();
    let transport = QuicTransport::new(pki.tls("server"), TransportLimits::default());
    let mut socket = transport.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let good = frame(
        b"scg1",
        ChitchatMessage::BadCluster.serialized_len(),
        &ChitchatMessage::BadCluster.serialize_to_vec(),
    );

    // Trusts our CA (so its own handshake can complete) but presents a
    // certificate from another CA, then none at all. Whatever the dialer
    // believes, nothing it writes may come out of recv.
    let foreign = client_config(&pki.ca.join(CA_CERT_FILE), Some(&other.node_dir("x")));
    let anonymous = client_config(&pki.ca.join(CA_CERT_FILE), None);
    for (i, config) in [foreign, anonymous].into_iter().enumerate() {
        let client = raw_client(config);
        if let Ok(Ok(conn)) = timeout(
            Duration::from_secs(3),
            client.connect(addr, CLUSTER_DNS_NAME).unwrap(),
        )
        .await
        {
            write_stream(&conn, &good).await;
        }
        let stats = transport.stats();
        assert!(
            eventually(Duration::from_secs(5), || async {
                stats.snapshot().dropped_unauthorised == i as u64 + 1
            })
            .await,
            "{:?}",
            stats.snapshot()
        );
    }
    assert!(
        timeout(Duration::from_millis(500), socket.recv())
            .await
            .is_err(),
        "an unauthorised client delivered a message"
    );
    assert_eq!(transport.stats().snapshot().messages_received, 0);

    // A proper node still gets through.
    let client = raw_client(pki.tls("ok").client_config());
    let conn = client
        .connect(addr, CLUSTER_DNS_NAME)
        .unwrap()
        .await
        .unwrap();
    write_stream(&conn, &good).await;
    let (_, msg) = timeout(Duration::from_secs(5), socket.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg, ChitchatMessage::BadCluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_returns_at_once_even_to_a_peer_that_never_answers() {
    let pki = Pki::new();
    // A bound UDP socket that never answers: every dial times out.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = black_hole.local_addr().unwrap();
    // A long connect timeout: a send that waited for the dial would make
    // the 200 sends take minutes, not fit in the generous bound below.
    let limits = TransportLimits {
        connect_timeout: Duration::from_secs(10),
        ..TransportLimits::default()
    };
    let transport = QuicTransport::new(pki.tls("a"), limits);
    let mut socket = transport.bind("127.0.0.1:0".parse().unwrap()).unwrap();

    let sends = async {
        for _ in 0..200 {
            socket
                .send(dead, ChitchatMessage::BadCluster)
                .await
                .unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), sends)
        .await
        .expect("send waited for the dead peer");
    let s = transport.stats().snapshot();
    assert!(s.dropped_queue_full >= 200 - 65, "{s:?}");

    let stats = transport.stats();
    // The dial fails by QUIC's idle timeout or, at the latest, by the 10 s
    // connect timeout: wait past that (a loaded CI host once missed 5 s).
    assert!(
        eventually(Duration::from_secs(30), || async {
            let s = stats.snapshot();
            s.connect_failures >= 1 && s.dropped_unreachable >= 1
        })
        .await,
        "{:?}",
        stats.snapshot()
    );
    assert_eq!(stats.snapshot().messages_sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_seed_does_not_delay_gossip_between_live_nodes() {
    let pki = Pki::new();
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = black_hole.local_addr().unwrap();
    let (addr_a, addr_b, addr_c) = (free_addr(), free_addr(), free_addr());
    let a = Node::start(pki.tls("a"), addr_a, &[dead]).await;
    let b = Node::start(pki.tls("b"), addr_b, &[dead, addr_a]).await;
    let c = Node::start(pki.tls("c"), addr_c, &[dead, addr_a]).await;

    let started = Instant::now();
    assert!(
        eventually(CONVERGE, || async {
            all_see(&[&a, &b, &c], &["a", "b", "c"]).await
        })
        .await,
        "no convergence within {CONVERGE:?} with a dead seed"
    );
    eprintln!("converged in {:?} despite the dead seed", started.elapsed());
    // The dead seed was tried (and is still being tried) meanwhile.
    assert!(
        eventually(Duration::from_secs(5), || async {
            [&a, &b, &c]
                .iter()
                .map(|n| n.stats().connect_failures + n.stats().dropped_unreachable)
                .sum::<u64>()
                > 0
        })
        .await
    );
    shutdown(vec![a, b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_peers_are_cut_off_both_ways_until_unblocked() {
    let pki = Pki::new();
    let (addr_a, addr_b, addr_c) = (free_addr(), free_addr(), free_addr());
    let ta = QuicTransport::new(pki.tls("a"), TransportLimits::default());
    let tb = QuicTransport::new(pki.tls("b"), TransportLimits::default());
    let tc = QuicTransport::new(pki.tls("c"), TransportLimits::default());
    // Only c's side blocks: a and b must still never hear from it, and c
    // must never hear from them, although a and b would talk to c.
    tc.set_blocked([addr_a, addr_b]);
    let a = Node::start_with(ta, addr_a, &[]).await;
    let b = Node::start_with(tb, addr_b, &[addr_a]).await;
    let c = Node::start_with(tc, addr_c, &[addr_a, addr_b]).await;

    assert!(eventually(CONVERGE, || async { all_see(&[&a, &b], &["a", "b"]).await }).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!a.knows("c").await && !b.knows("c").await);
    assert!(!c.knows("a").await && !c.knows("b").await);
    assert!(c.stats().dropped_blocked > 0);

    c.transport.set_blocked([]);
    assert!(
        eventually(CONVERGE, || async {
            all_see(&[&a, &b, &c], &["a", "b", "c"]).await
        })
        .await,
        "no convergence after unblocking"
    );
    shutdown(vec![a, b, c]).await;
}

/// Starts a node on a runtime of its own, so that dropping that runtime
/// kills it the way kill -9 does: no CONNECTION_CLOSE, peers not told.
fn start_killable(
    tls: NodeTls,
    addr: SocketAddr,
    seeds: Vec<SocketAddr>,
) -> (tokio::runtime::Runtime, Node) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let node = rt.block_on(Node::start(tls, addr, &seeds));
        (rt, node)
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reached_again_before_the_idle_timeout() {
    let pki = Pki::new();
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let a = Node::start(pki.tls("a"), addr_a, &[]).await;
    let (rt, b) = start_killable(pki.tls("b"), addr_b, vec![addr_a]);
    assert!(eventually(CONVERGE, || async { all_see(&[&a], &["b"]).await }).await);
    // Killed: a's connection to it stays open, as far as a can tell.
    rt.shutdown_background();
    std::mem::forget(b);
    // The dead runtime drops its socket in the background.
    assert!(
        eventually(CONVERGE, || async {
            std::net::UdpSocket::bind(addr_b).is_ok()
        })
        .await,
        "b's port never came free"
    );
    let b2 = Node::start(pki.tls("b"), addr_b, &[addr_a]).await;
    let restarted = Instant::now();
    // b2 hears a only over a connection a dials anew: on the old one, a's
    // writes vanish until QUIC's idle timeout unless b2's stateless reset
    // (same key as the old process) closes it at a's next packet.
    let heard = eventually(
        super::super::tls::IDLE_TIMEOUT - Duration::from_secs(2),
        || async { b2.stats().messages_received > 0 },
    )
    .await;
    assert!(
        heard,
        "a reached the restarted b only after {:?} (a: {:?})",
        restarted.elapsed(),
        a.stats()
    );
    shutdown(vec![a, b2]).await;
}

/// Key `key` of node `of` as `node` holds it.
async fn value_seen(node: &Node, of: &str, key: &str) -> Option<String> {
    node.handle
        .with_chitchat(|c| {
            c.node_states()
                .iter()
                .find(|(id, _)| &*id.node_id == of)
                .and_then(|(_, st)| st.get(key).map(str::to_owned))
        })
        .await
}

/// With gossip rounds an hour apart (only the first one at start), a
/// value set on `a` reaches `b` only when pushed (cluster/push.rs), and
/// then in one message, with every earlier key of `a`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_delivers_our_state_without_a_gossip_round() {
    let pki = Pki::new();
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let hour = Duration::from_secs(3600);
    let quic = |name| QuicTransport::new(pki.tls(name), TransportLimits::default());
    let a = Node::start_gossiping_every(quic("a"), addr_a, &[], hour).await;
    let b = Node::start_gossiping_every(quic("b"), addr_b, &[addr_a], hour).await;
    assert!(
        eventually(CONVERGE, || async { all_see(&[&a, &b], &["a", "b"]).await }).await,
        "the first round did not make a and b meet"
    );

    a.handle
        .with_chitchat(|c| c.self_node_state().set("quiet", "1"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        value_seen(&b, "a", "quiet").await,
        None,
        "gossiped without a push"
    );

    let pusher = a.transport.pusher();
    let pushed = a
        .handle
        .with_chitchat(|c| {
            c.self_node_state().set("pushed", "2");
            pusher.push(c, addr_b)
        })
        .await;
    assert!(pushed, "the push was not queued");
    assert!(
        eventually(CONVERGE, || async {
            value_seen(&b, "a", "pushed").await.as_deref() == Some("2")
        })
        .await,
        "b never got the pushed value"
    );
    assert_eq!(value_seen(&b, "a", "quiet").await.as_deref(), Some("1"));
    shutdown(vec![a, b]).await;
}
