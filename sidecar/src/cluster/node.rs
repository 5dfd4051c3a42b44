//! This host as a cluster member: chitchat over the QUIC transport, a
//! publisher that writes this host's board keys, and an observer that keeps
//! a decoded snapshot of everyone's for `sc board` and `--wait-for
//! NAME@HOST` (read without awaiting chitchat's lock).

use super::board::{DeathClock, HostKeys, LocalState, Publisher, Undecodable, read_board};
use super::tls::NodeTls;
use super::transport::{QuicTransport, TransportStats};
use crate::config::ClusterConfig;
use anyhow::{Context, Result};
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, spawn_chitchat};
use sc_protocol::board::BoardView;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the board is written and read back.
const TICK: Duration = Duration::from_millis(100);

/// What the rest of the daemon sees of the cluster.
#[derive(Clone)]
pub struct ClusterView {
    pub node_name: String,
    pub cluster_id: String,
    pub listen: std::net::SocketAddr,
    pub advertise: std::net::SocketAddr,
    pub board: Arc<Mutex<BoardView>>,
    pub stats: Arc<TransportStats>,
    pub id_stats: Arc<super::filter::ClusterIdStats>,
    /// Chitchat generation of this incarnation (its start time in ms).
    pub generation: u64,
    /// Cluster resources as this host's lock engine sees them.
    resources: Option<Arc<Mutex<Vec<sc_protocol::board::BoardResource>>>>,
}

impl ClusterView {
    /// Transport and filter counters for `sc status`.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut c = self.stats.counters();
        c.extend(self.id_stats.counters());
        c
    }

    pub fn board(&self) -> BoardView {
        let mut b = self.board.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(r) = &self.resources {
            b.resources = r.lock().unwrap_or_else(|p| p.into_inner()).clone();
        }
        b
    }

    pub fn set_resources(&mut self, r: Arc<Mutex<Vec<sc_protocol::board::BoardResource>>>) {
        self.resources = Some(r);
    }
}

/// The running member: keep it alive for the daemon's lifetime.
pub struct ClusterNode {
    pub view: ClusterView,
    pub handle: ChitchatHandle,
    /// One-message pushes of our state (`push.rs`).
    pub pusher: super::push::Pusher,
}

/// Load the certificates (the node name is the certificate's), bind the
/// QUIC endpoint and join. A bumped generation id on every start keeps a
/// restarted host from taking its old values back from its peers.
pub async fn start(cfg: &ClusterConfig) -> Result<ClusterNode> {
    let tls = NodeTls::load(&cfg.ca, &cfg.cert, &cfg.key).with_context(|| {
        format!(
            "cannot load the cluster certificates ({}, {}, {})",
            cfg.ca.display(),
            cfg.cert.display(),
            cfg.key.display()
        )
    })?;
    let node_name = tls.node_name().to_string();
    let quic = QuicTransport::new(tls, cfg.max_frame as usize);
    let stats = quic.stats();
    let pusher = quic.pusher();
    if let Some(path) = cfg.test_partition_file.clone() {
        watch_partition_file(path, quic.blocker());
    }
    let transport = super::filter::ClusterIdFilter::new(quic, cfg.cluster_id.clone());
    let id_stats = transport.stats();
    let generation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(node_name.clone(), generation, cfg.advertise),
        cluster_id: cfg.cluster_id.clone(),
        gossip_interval: cfg.gossip_interval,
        listen_addr: cfg.listen,
        seed_nodes: cfg.seeds.clone(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: cfg.phi_threshold,
            initial_interval: cfg.initial_interval,
            dead_node_grace_period: cfg.dead_node_grace,
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
    };
    let handle = spawn_chitchat(config, Vec::new(), &transport)
        .await
        .with_context(|| format!("cannot start gossip on {}", cfg.listen))?;
    let view = ClusterView {
        node_name,
        cluster_id: cfg.cluster_id.clone(),
        listen: cfg.listen,
        advertise: cfg.advertise,
        board: Arc::new(Mutex::new(BoardView {
            cluster_id: cfg.cluster_id.clone(),
            hosts: Vec::new(),
            undecodable_values: 0,
            resources: Vec::new(),
        })),
        stats,
        id_stats,
        generation,
        resources: None,
    };
    Ok(ClusterNode {
        view,
        handle,
        pusher,
    })
}

/// TEST-ONLY (`[cluster] test_partition_file`): follow the file's list of
/// gossip addresses to cut off; a missing or empty file heals.
fn watch_partition_file(path: std::path::PathBuf, blocker: super::transport::Blocker) {
    tokio::spawn(async move {
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let peers: Vec<std::net::SocketAddr> =
                text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            blocker.set(peers);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Every tick: write this host's changed keys, then read the board back.
/// `local` snapshots the daemon's state (it locks the daemon briefly);
/// `changed` is called when another host's liveness or services changed on
/// the board, so the scheduler re-checks jobs waiting on them at once.
pub async fn run(
    node: &ClusterNode,
    mem_total: u64,
    mut local: impl FnMut() -> LocalState,
    changed: impl Fn(),
) {
    let chitchat = node.handle.chitchat();
    let mut publisher = Publisher::default();
    let mut clock = DeathClock::default();
    let mut undecodable = Undecodable::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = local();
        let now = Instant::now();
        let changes = publisher.changes(&state, mem_total, now);
        let mut c = chitchat.lock().await;
        {
            let me = c.self_node_state();
            for (k, v) in changes.set {
                me.set(k, v);
            }
            for k in changes.delete {
                me.delete(&k);
            }
        }
        let self_id = c.self_chitchat_id().clone();
        let live: std::collections::HashSet<ChitchatId> = c.live_nodes().cloned().collect();
        let hosts: Vec<HostKeys<'_>> = c
            .node_states()
            .iter()
            .map(|(id, st)| HostKeys {
                name: &id.node_id,
                generation: id.generation_id,
                gossip_addr: id.gossip_advertise_addr.to_string(),
                live: live.contains(id) || *id == self_id,
                is_self: *id == self_id,
                kv: st.key_values().collect(),
            })
            .collect();
        let view = read_board(
            &node.view.cluster_id,
            hosts,
            &mut clock,
            now,
            &mut undecodable,
        );
        drop(c);
        let mut board = node.view.board.lock().unwrap_or_else(|p| p.into_inner());
        // Only other hosts' changes matter to waiting jobs; ours kick already.
        let others = |b: &BoardView| -> Vec<(String, bool, Vec<sc_protocol::board::BoardService>)> {
            b.hosts
                .iter()
                .filter(|h| !h.is_self)
                .map(|h| (h.name.clone(), h.live, h.services.clone()))
                .collect()
        };
        let moved = others(&board) != others(&view);
        *board = view;
        drop(board);
        if moved {
            changed();
        }
    }
}
