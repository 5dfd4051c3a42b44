//! `sc bench-gossip` (hidden): how fast the cluster gossip spreads a change,
//! what it costs at idle, and how fast it notices a dead host
//! (docs/benchmarks.md, "Cluster gossip (issue 4)").
//!
//! In one process, on a multi-thread tokio runtime: N chitchat instances,
//! each with its own [`QuicTransport`] endpoint on 127.0.0.1 (certificates
//! from one CA, issued before anything is timed), the daemon's failure
//! detector defaults (parsed from a minimal `[cluster]` section, so they
//! cannot drift), the first node as the only seed, the nodes' gossip ticks
//! spread over one interval (independent hosts do not tick together).
//! Clusters larger than `--quic-max` run over chitchat's in-memory
//! `ChannelTransport` instead, and their rows say so.
//!
//! 1. convergence: once every node sees every node live and the cluster has
//!    been up for [`SETTLE`] (connections made, failure detectors past their
//!    prior), set a key on one node and poll every node's state every
//!    [`POLL`] until all have it;
//! 2. idle traffic: frames and frame bytes (8-byte header + chitchat
//!    payload, counted by a wrapper around the socket) over `--idle-secs`,
//!    and for QUIC the loopback interface's tx bytes over the same window
//!    (QUIC and UDP/IP overhead, ACKs, keep-alives; an upper bound, as
//!    anything else on `lo` counts too);
//! 3. failure detection (the 10-node QUIC cluster, or the smallest QUIC
//!    one): shut one node's chitchat down, which drops its socket and
//!    closes its endpoint, and poll until no other node lists it live;
//!    the victim then rejoins under a new generation and the cluster
//!    settles before the next kill;
//! 4. with `--daemons N`: N real `sc daemon`s (this executable) with
//!    `[cluster]` on 127.0.0.1..N, the board read over their sockets (the
//!    request `sc board --json` makes); SIGKILL one, time until every other
//!    board shows it dead.
//!
//! Prints one markdown table, then the targets as MET / NOT MET lines.
//! Never asserts a timing; fails only when something could not run.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use async_trait::async_trait;
use chitchat::transport::{ChannelTransport, Socket, Transport};
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, ChitchatMessage, FailureDetectorConfig,
    Serializable, spawn_chitchat,
};
use clap::Args;
use sc_protocol::board::BoardView;
use sc_protocol::{Request, Response};
use tokio::sync::Mutex;

use super::certs::{self, CA_CERT_FILE, NODE_CERT_FILE, NODE_KEY_FILE};
use super::tls::NodeTls;
use super::transport::{FRAME_HEADER_LEN, QuicTransport, TransportStats};
use crate::config::{ClusterConfig, Config};

/// How often convergence and liveness are polled.
const POLL: Duration = Duration::from_millis(5);
/// How often a daemon's board is asked for.
const BOARD_POLL: Duration = Duration::from_millis(10);
/// Bound on one propagation or one detection.
const MEASURE_LIMIT: Duration = Duration::from_secs(30);
/// Uptime of the cluster (and of a rejoined victim) before each kill: the
/// failure detector's mean heartbeat interval starts from the 500 ms prior
/// and needs samples to come down to the real interval.
const SETTLE: Duration = Duration::from_secs(10);
/// The key the convergence runs write.
const KEY: &str = "bench";

#[derive(Debug, Args)]
pub struct BenchGossipArgs {
    /// Cluster sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub nodes: Vec<usize>,
    /// Largest cluster run over QUIC; larger ones use chitchat's in-memory
    /// ChannelTransport.
    #[arg(long, default_value_t = 50)]
    pub quic_max: usize,
    /// Propagations per cluster size, and kills.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seconds of idle gossip for the traffic rows (0: skip them).
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,
    /// Gossip interval in milliseconds (the daemon's default: 100).
    #[arg(long)]
    pub gossip_ms: Option<u64>,
    /// Also start this many real `sc daemon`s and time SIGKILL -> dead on
    /// every other board.
    #[arg(long)]
    pub daemons: Option<usize>,
}

pub fn main(args: BenchGossipArgs) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(
        args.nodes.iter().all(|&n| n >= 2),
        "every --nodes size must be at least 2"
    );
    if let Some(d) = args.daemons {
        ensure!((2..=254).contains(&d), "--daemons must be 2..=254");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let work = Workdir::new()?;
    let result = rt.block_on(run(&args, &work));
    drop(rt);
    drop(work);
    result
}

/// The daemon's `[cluster]` defaults, from the config parser itself.
fn daemon_defaults() -> Result<ClusterConfig> {
    let text = "[cluster]\nlisten = \"127.0.0.1:1\"\nca = \"ca.crt\"\ncert = \"node.crt\"\nkey = \"node.key\"\n";
    Config::parse(text, Path::new("<bench-gossip>"))?
        .cluster
        .context("no [cluster] in the parsed defaults")
}

async fn run(args: &BenchGossipArgs, work: &Workdir) -> Result<()> {
    let mut defaults = daemon_defaults()?;
    if let Some(ms) = args.gossip_ms {
        ensure!(ms > 0, "--gossip-ms must be more than 0");
        defaults.gossip_interval = Duration::from_millis(ms);
    }
    let quic_sizes: Vec<usize> = args
        .nodes
        .iter()
        .copied()
        .filter(|&n| n <= args.quic_max)
        .collect();
    let fail_size = if quic_sizes.contains(&10) {
        Some(10)
    } else {
        quic_sizes.iter().copied().min()
    };
    let certs_needed = quic_sizes
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(args.daemons.unwrap_or(0));
    let pki = Pki::new(work.path())?;
    let t = Instant::now();
    for i in 0..certs_needed {
        pki.issue(&node_name(i))?;
    }
    progress(format!(
        "issued {certs_needed} node certificates in {} ms (not measured)",
        t.elapsed().as_millis()
    ));

    let mut rows = Vec::new();
    let mut conv = Vec::new();
    let mut fail = None;
    for &n in &args.nodes {
        let quic = n <= args.quic_max;
        let mut cluster = Cluster::start(n, quic, &pki, &defaults).await?;
        let warm = cluster.wait_all_live(warmup_limit(n)).await?;
        progress(format!(
            "{n} nodes over {}: all live after {} ms",
            cluster.kind_name(),
            warm.as_millis()
        ));
        // Steady state: connections up, failure detectors past their prior.
        cluster.settle().await;
        let c = cluster.convergence(args.runs).await?;
        rows.push(Row {
            measurement: "convergence: key set on 1 node, seen by all".into(),
            transport: cluster.kind_name().into(),
            nodes: n,
            runs: args.runs.to_string(),
            median: ms(median(&c.total)),
            max: ms(max(&c.total)),
            per_node_s: "—".into(),
            notes: format!(
                "half the nodes by {} (median); all live {} ms after start, measured after ≥ {} s of uptime",
                ms(median(&c.half)),
                warm.as_millis(),
                SETTLE.as_secs()
            ),
        });
        conv.push((n, cluster.kind_name(), c));
        if args.idle_secs > 0 {
            rows.push(cluster.idle(Duration::from_secs(args.idle_secs)).await?);
        }
        if Some(n) == fail_size && quic {
            let f = cluster.failures(args.runs).await?;
            rows.push(Row {
                measurement: "failure detection: node stopped → no peer lists it live".into(),
                transport: cluster.kind_name().into(),
                nodes: n,
                runs: args.runs.to_string(),
                median: ms(median(&f.total)),
                max: ms(max(&f.total)),
                per_node_s: "—".into(),
                notes: format!(
                    "first peer {} (median); each kill after ≥ {} s of uptime",
                    ms(median(&f.first)),
                    SETTLE.as_secs()
                ),
            });
            fail = Some(f);
        }
        cluster.stop().await;
    }

    let mut daemons = None;
    if let Some(d) = args.daemons {
        let f = daemon_failures(d, args.runs, &pki, work.path()).await?;
        rows.push(Row {
            measurement: "failure detection: `sc daemon` SIGKILLed → dead on every other board"
                .into(),
            transport: "quic (daemons)".into(),
            nodes: d,
            runs: args.runs.to_string(),
            median: ms(median(&f.total)),
            max: ms(max(&f.total)),
            per_node_s: "—".into(),
            notes: format!(
                "first board {} (median); board refreshed every 100 ms, read every {} ms; each kill after ≥ {} s of uptime",
                ms(median(&f.first)),
                BOARD_POLL.as_millis(),
                SETTLE.as_secs()
            ),
        });
        daemons = Some(f);
    }

    print_report(&defaults, &rows, &conv, fail.as_ref(), daemons.as_ref());
    Ok(())
}

fn warmup_limit(n: usize) -> Duration {
    Duration::from_secs(20) + Duration::from_millis(300) * n as u32
}

fn node_name(i: usize) -> String {
    format!("n{i:03}")
}

fn progress(line: String) {
    eprintln!("bench-gossip: {line}");
}

// ---- measurements -------------------------------------------------------

/// Times of the runs of one measurement.
#[derive(Debug, Default)]
struct Times {
    /// Until every node had it (convergence) / every peer saw it (failure).
    total: Vec<Duration>,
    /// Convergence: until half of the other nodes had it.
    half: Vec<Duration>,
    /// Failure: until the first peer saw it.
    first: Vec<Duration>,
}

/// One in-process chitchat instance.
struct Node {
    id: ChitchatId,
    chitchat: Arc<Mutex<Chitchat>>,
    handle: Option<ChitchatHandle>,
    /// QUIC only: kept to rejoin under a new generation.
    tls: Option<NodeTls>,
    stats: Option<Arc<TransportStats>>,
}

enum Kind {
    Quic,
    Channel(ChannelTransport),
}

struct Cluster {
    kind: Kind,
    nodes: Vec<Node>,
    seeds: Vec<String>,
    defaults: ClusterConfig,
    counter: Arc<Counter>,
    generation: u64,
    started: Instant,
}

impl Cluster {
    async fn start(n: usize, quic: bool, pki: &Pki, defaults: &ClusterConfig) -> Result<Cluster> {
        let (kind, addrs) = if quic {
            (Kind::Quic, free_udp_addrs(Ipv4Addr::LOCALHOST, n)?)
        } else {
            // Addresses are only names in the channel transport.
            let addrs = (0..n)
                .map(|i| SocketAddr::from((Ipv4Addr::LOCALHOST, 20_000 + i as u16)))
                .collect();
            (Kind::Channel(ChannelTransport::default()), addrs)
        };
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let mut cluster = Cluster {
            kind,
            nodes: Vec::with_capacity(n),
            seeds: vec![addrs[0].to_string()],
            defaults: defaults.clone(),
            counter: Arc::default(),
            generation,
            started: Instant::now(),
        };
        // Independent hosts tick at unrelated moments: spread the nodes'
        // gossip ticks over one interval instead of starting them together.
        let slot = defaults.gossip_interval / n as u32;
        let t0 = tokio::time::Instant::now();
        for (i, addr) in addrs.into_iter().enumerate() {
            tokio::time::sleep_until(t0 + slot * i as u32).await;
            let tls = match cluster.kind {
                Kind::Quic => Some(pki.tls(&node_name(i))?),
                Kind::Channel(_) => None,
            };
            let node = cluster.spawn(node_name(i), addr, tls).await?;
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Quic => "quic",
            Kind::Channel(_) => "channel",
        }
    }

    async fn spawn(&self, name: String, addr: SocketAddr, tls: Option<NodeTls>) -> Result<Node> {
        let d = &self.defaults;
        let id = ChitchatId::new(name, self.generation, addr);
        // As cluster::node::start builds it for the daemon.
        let config = ChitchatConfig {
            chitchat_id: id.clone(),
            cluster_id: "sc-bench".into(),
            gossip_interval: d.gossip_interval,
            listen_addr: addr,
            seed_nodes: self.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: d.phi_threshold,
                initial_interval: d.initial_interval,
                dead_node_grace_period: d.dead_node_grace,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let (handle, stats) = match (&self.kind, &tls) {
            (Kind::Quic, Some(tls)) => {
                let quic = QuicTransport::new(tls.clone(), d.max_frame as usize);
                let stats = quic.stats();
                let transport = Counting {
                    inner: quic,
                    counter: self.counter.clone(),
                };
                let handle = spawn_chitchat(config, Vec::new(), &transport).await?;
                (handle, Some(stats))
            }
            (Kind::Channel(channel), _) => {
                let transport = Counting {
                    inner: channel.clone(),
                    counter: self.counter.clone(),
                };
                (spawn_chitchat(config, Vec::new(), &transport).await?, None)
            }
            (Kind::Quic, None) => bail!("a QUIC node needs its certificates"),
        };
        Ok(Node {
            id,
            chitchat: handle.chitchat(),
            handle: Some(handle),
            tls,
            stats,
        })
    }

    /// Until every running node lists every running node as live.
    async fn wait_all_live(&self, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        let ids: Vec<&ChitchatId> = self.running().map(|n| &n.id).collect();
        loop {
            let mut all = true;
            for node in self.running() {
                let c = node.chitchat.lock().await;
                let live: HashSet<&ChitchatId> = c.live_nodes().collect();
                if !ids.iter().all(|id| live.contains(id)) {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "{} nodes over {}: not all live after {} s",
                    self.nodes.len(),
                    self.kind_name(),
                    limit.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Until the cluster has been up for [`SETTLE`].
    async fn settle(&self) {
        tokio::time::sleep(SETTLE.saturating_sub(self.started.elapsed())).await;
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.handle.is_some())
    }

    /// `runs` propagations of a new value, each from another node (never
    /// the seed), each timed until every node has it.
    async fn convergence(&self, runs: usize) -> Result<Times> {
        let n = self.nodes.len();
        let mut times = Times::default();
        for r in 0..runs {
            // Off the gossip ticks' phase.
            tokio::time::sleep(Duration::from_millis(200 + 37 * r as u64 % 100)).await;
            let writer = 1 + (r * 7) % (n - 1);
            let value = format!("v{r}-{}", self.generation);
            let writer_id = self.nodes[writer].id.clone();
            let start = {
                let mut c = self.nodes[writer].chitchat.lock().await;
                c.self_node_state().set(KEY, &value);
                Instant::now()
            };
            let mut seen: Vec<Option<Duration>> = vec![None; n];
            seen[writer] = Some(Duration::ZERO);
            loop {
                for (i, node) in self.nodes.iter().enumerate() {
                    if seen[i].is_some() {
                        continue;
                    }
                    let c = node.chitchat.lock().await;
                    if c.node_state(&writer_id).and_then(|s| s.get(KEY)) == Some(value.as_str()) {
                        seen[i] = Some(start.elapsed());
                    }
                }
                if seen.iter().all(Option::is_some) {
                    break;
                }
                if start.elapsed() > MEASURE_LIMIT {
                    bail!("a value did not reach every node within {MEASURE_LIMIT:?}");
                }
                tokio::time::sleep(POLL).await;
            }
            let mut others: Vec<Duration> = seen
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != writer)
                .filter_map(|(_, t)| *t)
                .collect();
            others.sort();
            let total = *others.last().unwrap_or(&Duration::ZERO);
            let half = others[(others.len() - 1) / 2];
            progress(format!(
                "{n} nodes over {}: run {}: all in {} ms, half in {} ms",
                self.kind_name(),
                r + 1,
                total.as_millis(),
                half.as_millis()
            ));
            times.total.push(total);
            times.half.push(half);
        }
        Ok(times)
    }

    /// Traffic over `window` of gossip with nothing changing.
    async fn idle(&self, window: Duration) -> Result<Row> {
        let n = self.nodes.len();
        let quic = matches!(self.kind, Kind::Quic);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let frames0 = self.counter.frames.load(Ordering::Relaxed);
        let bytes0 = self.counter.bytes.load(Ordering::Relaxed);
        let sent0 = self.quic_sent();
        let lo0 = lo_tx_bytes();
        let cpu0 = cpu_time();
        let start = Instant::now();
        tokio::time::sleep(window).await;
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_time().saturating_sub(cpu0).as_secs_f64();
        let lo = lo_tx_bytes().zip(lo0).map(|(b, a)| b.saturating_sub(a));
        let frames = self.counter.frames.load(Ordering::Relaxed) - frames0;
        let bytes = self.counter.bytes.load(Ordering::Relaxed) - bytes0;
        let sent = self.quic_sent() - sent0;
        let per = |x: u64| x as f64 / n as f64 / secs;
        let mut notes = format!("{:.1} msgs/node/s", per(frames));
        if quic {
            match lo {
                Some(lo) => {
                    let _ = write!(
                        notes,
                        ", loopback wire ≤ {} B/node/s (QUIC+UDP/IP, ACKs, keep-alives)",
                        thousands(per(lo))
                    );
                }
                None => notes.push_str(", loopback bytes not readable"),
            }
            let _ = write!(notes, ", {:.1} frames/node/s handed to QUIC", per(sent));
        }
        let _ = write!(
            notes,
            "; process CPU {:.0}% of one core",
            cpu / secs * 100.0
        );
        progress(format!(
            "{n} nodes over {}: idle: {notes}",
            self.kind_name()
        ));
        Ok(Row {
            measurement: format!("idle traffic, frame bytes ({} s window)", window.as_secs()),
            transport: self.kind_name().into(),
            nodes: n,
            runs: "1".into(),
            median: "—".into(),
            max: "—".into(),
            per_node_s: format!("{} B", thousands(per(bytes))),
            notes,
        })
    }

    fn quic_sent(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.stats.as_ref())
            .map(|s| s.snapshot().messages_sent)
            .sum()
    }

    /// `runs` kills, each of another node (never the seed); the victim
    /// rejoins under a new generation on a new port, and the cluster
    /// settles for [`SETTLE`] before the next kill.
    async fn failures(&mut self, runs: usize) -> Result<Times> {
        let n = self.nodes.len();
        let mut times = Times::default();
        self.settle().await;
        for r in 0..runs {
            let v = n - 1 - r % (n - 1);
            let victim = self.nodes[v].id.clone();
            let handle = self.nodes[v].handle.take().context("victim not running")?;
            let start = Instant::now();
            let _ = handle.shutdown().await;
            let mut seen: Vec<Option<Duration>> = vec![None; n];
            seen[v] = Some(Duration::ZERO);
            loop {
                for (i, node) in self.nodes.iter().enumerate() {
                    if seen[i].is_some() {
                        continue;
                    }
                    let c = node.chitchat.lock().await;
                    if !c.live_nodes().any(|id| *id == victim) {
                        seen[i] = Some(start.elapsed());
                    }
                }
                if seen.iter().all(Option::is_some) {
                    break;
                }
                if start.elapsed() > MEASURE_LIMIT {
                    bail!("a stopped node was still live somewhere after {MEASURE_LIMIT:?}");
                }
                tokio::time::sleep(POLL).await;
            }
            let mut others: Vec<Duration> = seen
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != v)
                .filter_map(|(_, t)| *t)
                .collect();
            others.sort();
            let total = *others.last().unwrap_or(&Duration::ZERO);
            progress(format!(
                "{n} nodes over {}: kill {}: {} seen dead by all in {} ms, by the first in {} ms",
                self.kind_name(),
                r + 1,
                victim.node_id,
                total.as_millis(),
                others[0].as_millis()
            ));
            times.total.push(total);
            times.first.push(others[0]);

            // Rejoin as a restarted daemon would: same name, new generation.
            self.generation += 1;
            let addr = free_udp_addrs(Ipv4Addr::LOCALHOST, 1)?[0];
            let tls = self.nodes[v].tls.clone();
            self.nodes[v] = self.spawn(victim.node_id.to_string(), addr, tls).await?;
            if r + 1 < runs {
                self.wait_all_live(warmup_limit(n)).await?;
                tokio::time::sleep(SETTLE).await;
            }
        }
        Ok(times)
    }

    async fn stop(self) {
        for node in self.nodes {
            if let Some(h) = node.handle {
                let _ = h.shutdown().await;
            }
        }
        // Let the endpoints' drivers finish closing.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` free UDP ports on `ip` (bound together, then released: a small
/// race, fine on a quiet host).
fn free_udp_addrs(ip: Ipv4Addr, n: usize) -> Result<Vec<SocketAddr>> {
    let socks = (0..n)
        .map(|_| UdpSocket::bind((ip, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("finding {n} free UDP ports on {ip}"))?;
    socks
        .iter()
        .map(|s| Ok(s.local_addr()?))
        .collect::<Result<Vec<_>>>()
}

// ---- counting frames ----------------------------------------------------

/// Bytes sent on the loopback interface so far.
fn lo_tx_bytes() -> Option<u64> {
    std::fs::read_to_string("/sys/class/net/lo/statistics/tx_bytes")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we own; RUSAGE_SELF is valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: initialised by the successful call above (and zeroed before).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---- certificates and the work dir ----------------------------------------

/// A temp dir, removed on drop.
struct Workdir(PathBuf);

impl Workdir {
    fn new() -> Result<Workdir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("sc-bench-gossip-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&path)
            .with_context(|| format!("creating the work dir {}", path.display()))?;
        Ok(Workdir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and node certificates under the work dir.
struct Pki {
    root: PathBuf,
    ca: PathBuf,
}

impl Pki {
    fn new(root: &Path) -> Result<Pki> {
        let ca = root.join("ca");
        certs::init_ca(&ca)?;
        Ok(Pki {
            root: root.to_owned(),
            ca,
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join("nodes").join(name)
    }

    fn issue(&self, name: &str) -> Result<()> {
        if !self.dir(name).join(NODE_CERT_FILE).exists() {
            certs::issue(&self.ca, name, &[], &[], &self.dir(name))?;
        }
        Ok(())
    }

    fn tls(&self, name: &str) -> Result<NodeTls> {
        self.issue(name)?;
        let dir = self.dir(name);
        NodeTls::load(
            &dir.join(CA_CERT_FILE),
            &dir.join(NODE_CERT_FILE),
            &dir.join(NODE_KEY_FILE),
        )
    }
}

// ---- real daemons -------------------------------------------------------

mod counting;
mod daemons;
mod report;
use counting::*;

use daemons::daemon_failures;
use report::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_defaults_parse() {
        let d = daemon_defaults().unwrap();
        assert!(d.phi_threshold > 0.0);
        assert!(!d.gossip_interval.is_zero());
    }

    #[test]
    fn medians_and_formats() {
        let d = |ms| Duration::from_millis(ms);
        assert_eq!(median(&[d(3), d(1), d(2)]), d(2));
        assert_eq!(median(&[d(4), d(1), d(2), d(3)]), d(2) + d(1) / 2);
        assert_eq!(max(&[d(4), d(9)]), d(9));
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(verdict(&[d(50), d(250)], |x| x <= d(100)), "NOT MET");
        assert_eq!(
            verdict(&[d(50), d(60), d(150)], |x| x <= d(100)),
            "MET by the median, NOT by the max"
        );
    }
}
