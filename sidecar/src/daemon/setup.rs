//! Daemon start-up and shutdown: config, logging, the state-dir lock, the
//! socket and its permissions, the cgroup subtree, adoption of what a
//! previous instance left, then the accept loop.

use super::Shared;
use super::state::{Capacity, Daemon, Job};
use super::{scheduler, session};
use crate::client;
use crate::config::{Config, LogFormat, Resolved};
use anyhow::{Context, Result, bail};
use sc_protocol::JobState;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::net::UnixListener;

pub const SYSTEM_CONFIG: &str = "/etc/sc/sidecar.toml";
pub const SYSTEM_STATE_DIR: &str = "/var/lib/sc";

#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    pub config: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    /// Started by `sc exec` for one user: ignore the system config.
    pub private: bool,
}

fn load_config(opts: &DaemonOptions) -> Result<Resolved> {
    if let Some(path) = &opts.config {
        return Ok(Config::load(path)?);
    }
    if !opts.private && Path::new(SYSTEM_CONFIG).exists() {
        return Ok(Config::load(Path::new(SYSTEM_CONFIG))?);
    }
    Ok(Resolved::defaults())
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// FNV-1a: a stable name for this daemon's cgroup subtree, derived from its
/// state dir, so a restarted daemon finds the groups its predecessor made and
/// two daemons on one host never share one.
fn instance_name(state_dir: &Path) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in state_dir.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("sc-{:08x}", h as u32)
}

/// Take the state dir's lock for the daemon's lifetime; a second daemon on
/// the same state dir fails here instead of corrupting it.
fn lock_state_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("daemon.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if let Err(e) = nix::fcntl::Flock::lock(
        file.try_clone()?,
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    ) {
        bail!(
            "another sc daemon already uses the state dir {} ({})",
            dir.display(),
            e.1
        );
    }
    Ok(file)
}

fn bind_socket(path: &Path, group: Option<&str>) -> Result<UnixListener> {
    if let Some(parent) = path.parent()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create socket dir {}", parent.display()))?;
        // A private socket's dir is the user's alone; a system socket's
        // dir must let the group through.
        let mode = if group.is_some() { 0o755 } else { 0o700 };
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode));
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another sc daemon is already listening on {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    let mode = match group {
        Some(name) => {
            let group = nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .with_context(|| format!("socket_group {name:?} does not exist"))?;
            nix::unistd::chown(path, None, Some(group.gid))
                .with_context(|| format!("cannot give {} to group {name}", path.display()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions of {}", path.display()))?;
    Ok(listener)
}

fn capacity(cfg: &Resolved) -> Result<Capacity> {
    let (mem_total, overridden) = match cfg.memory {
        Some(m) => (m, true),
        None => (
            sc_supervisor::host::read_meminfo()
                .context("cannot read /proc/meminfo")?
                .total,
            false,
        ),
    };
    let cores = cfg.cores.unwrap_or_else(sc_supervisor::host::cpu_count);
    // Default reserve: 5 % of memory, at most 1 GiB.
    let reserve = cfg.reserve.unwrap_or((mem_total / 20).min(1 << 30));
    Ok(Capacity {
        mem_total,
        overridden,
        cores,
        overcommit: cfg.overcommit,
        reserve,
        default_mem: cfg.default_mem,
        meminfo: Default::default(),
    })
}

/// The cluster-resource engine for this incarnation of the host.
fn cluster_locks(
    cc: &crate::config::ClusterConfig,
    resources: &[crate::config::ResourceConfig],
    node: &crate::cluster::node::ClusterNode,
    state_dir: &Path,
) -> (
    super::cluster_locks::Locks,
    tokio::sync::mpsc::UnboundedReceiver<sc_protocol::JobId>,
) {
    use crate::dlock::{Engine, Mode, Params, ResourceSpec, Setup};
    let votes_path = state_dir.join("dl-votes.json");
    let setup = Setup {
        me: sc_protocol::dl::NodeGen::new(node.view.node_name.clone(), node.view.generation),
        resources: resources
            .iter()
            .map(|r| ResourceSpec {
                name: r.name.clone(),
                capacity: r.capacity,
                mode: match r.mode {
                    crate::config::ResourceMode::Quorum => Mode::Quorum,
                    crate::config::ResourceMode::Available => Mode::Available,
                },
                prefetch: r.prefetch.unwrap_or(r.capacity),
            })
            .collect(),
        members: cc.members.clone(),
        params: Params {
            lease_ms: cc.lease.as_millis() as u64,
            available_down_ms: cc.available_down.as_millis() as u64,
            startup_grace_ms: cc.available_down.as_millis() as u64,
            ..Params::default()
        },
        votes: super::cluster_locks::load_votes(&votes_path),
    };
    super::cluster_locks::Locks::new(Engine::new(setup), votes_path)
}

/// Rebuild the job table from the records of a previous instance. Jobs come
/// back detached: they count against headroom until their `sc exec`
/// re-attaches or the grace period runs out.
fn adopt(daemon: &mut Daemon) {
    let (records, problems) = daemon.store.load_jobs();
    for p in problems {
        tracing::warn!("skipping unreadable job record: {p}");
    }
    let now = Instant::now();
    let wall = super::state::wall_ms();
    for rec in records {
        let pid = match rec.state {
            super::store::PersistedState::Running { pid } => Some(pid),
            super::store::PersistedState::Queued => None,
        };
        // A queued record with a populated group was placed just before the
        // old daemon died, before its record caught up: it is running.
        let cgroup = daemon
            .tree
            .open(&format!("jobs/{}", rec.id))
            .ok()
            .flatten()
            .filter(|cg| pid.is_some() || cg.is_populated().unwrap_or(false));
        let ago = |t: u64| std::time::Duration::from_millis(wall.saturating_sub(t));
        let job = Job {
            id: rec.id,
            seq: rec.seq,
            owner: rec.owner,
            limits: super::lifecycle::limits_of(&rec.exec),
            exec: rec.exec,
            reserved: rec.reserved,
            mem_source: rec.mem_source,
            state: JobState::Detached,
            queued_at: now.checked_sub(ago(rec.queued_at)).unwrap_or(now),
            queued_wall: rec.queued_at,
            started_at: rec
                .started_at
                .map(|t| now.checked_sub(ago(t)).unwrap_or(now)),
            started_wall: rec.started_at,
            pid,
            cgroup,
            client: None,
            last_wait: None,
            detached_until: Some(now + daemon.reattach_grace),
            stopping: None,
            claim: None,
            held_in_group: false,
            release: None,
            // Checked against the group's freezer when its sc exec re-attaches.
            paused: rec.paused_by.map(|r| (r, now)),
            ports: rec.ports,
        };
        // A job that held cluster resources lost them with the old
        // generation: others count its slot free once this generation
        // publishes, so it must be dead before that.
        let mut job = job;
        // A queued record with a populated group is either a job waiting
        // for the cluster (placed early, its child still held) or one
        // granted just before the old daemon died: its `sc exec` tells
        // which when it re-attaches (see `lifecycle::reattach`).
        if !job.exec.needs.is_empty() && pid.is_some() {
            tracing::warn!(
                job = job.id,
                "stopping a job that held cluster resources under the previous daemon"
            );
            if let Some(cg) = &job.cgroup {
                let _ = cg.kill_all();
            } else if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            job.stopping = Some(super::state::StopReason::Cluster(
                "the sc daemon restarted while the job held cluster resources; it was stopped so its claim could be released safely".into(),
            ));
        }
        tracing::info!(job = job.id, pid = ?pid, "adopted job from the previous daemon; waiting for its sc exec");
        daemon.next_seq = daemon.next_seq.max(job.seq);
        daemon.next_id = daemon.next_id.max(job.id + 1);
        daemon.jobs.insert(job.id, job);
    }
    // Groups with no record are leftovers nobody supervises.
    if let Ok(names) = daemon.tree.list("jobs") {
        for name in names {
            let known = name
                .parse()
                .ok()
                .is_some_and(|id| daemon.jobs.contains_key(&id));
            if !known && let Ok(Some(cg)) = daemon.tree.open(&format!("jobs/{name}")) {
                tracing::warn!(group = name, "removing a job cgroup with no record");
                let _ = cg.remove();
            }
        }
    }
}

/// Supervise the config's services and the run-time ones recorded in the
/// state dir. A previous daemon's service processes are not adopted: each
/// service's group is emptied and the service started afresh (its output
/// pipes died with that daemon).
fn start_services(shared: &Shared, from_config: Vec<sc_protocol::ServiceSpec>) {
    use super::services::{driver, spawn::RunAs};
    use sc_protocol::ServiceSource;
    let mut d = shared.daemon();
    if let Ok(names) = d.tree.list("services") {
        for name in names {
            if let Ok(Some(cg)) = d.tree.open(&format!("services/{name}")) {
                if cg.is_populated().unwrap_or(false) {
                    tracing::warn!(
                        service = name,
                        "stopping a service process left by the previous daemon"
                    );
                }
                let _ = cg.remove();
            }
        }
    }
    let daemon_uid = nix::unistd::getuid().as_raw();
    let (recorded, problems) = d.store.load_services();
    for p in problems {
        tracing::warn!("skipping unreadable service record: {p}");
    }
    let mut all: Vec<(sc_protocol::ServiceSpec, ServiceSource, u32, bool)> = from_config
        .into_iter()
        .map(|s| (s, ServiceSource::Config, daemon_uid, true))
        .collect();
    for r in recorded {
        if all.iter().any(|(s, ..)| s.name == r.spec.name) {
            tracing::warn!(
                service = r.spec.name,
                "a run-time service has the name of a config service; the config one wins"
            );
            continue;
        }
        all.push((r.spec, ServiceSource::Runtime, r.owner, r.enabled));
    }
    for (spec, source, owner, enabled) in all {
        let user = spec
            .user
            .clone()
            .or_else(|| (owner != daemon_uid).then(|| owner.to_string()));
        let run_as = match user.map(|u| RunAs::lookup(&u)).transpose() {
            Ok(r) => r.filter(|r| r.uid != daemon_uid),
            Err(e) => {
                tracing::error!(service = spec.name, "not starting: {e}");
                continue;
            }
        };
        let name = spec.name.clone();
        let ports = match d.lease_ports(&spec.ports) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(service = name, "not starting: {e}");
                continue;
            }
        };
        let entry = driver::spawn(
            shared, &d.tree, &d.store, spec, source, owner, run_as, enabled, ports,
        );
        d.services.entries.insert(name, entry);
    }
}

/// Stop every service (SIGTERM, SIGKILL after its grace) before exiting.
async fn stop_services(shared: &Shared) {
    let waits: Vec<_> = {
        let d = shared.daemon();
        d.services
            .entries
            .values()
            .filter_map(|e| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                e.control
                    .send(super::services::Control::Remove(tx))
                    .ok()
                    .map(|()| rx)
            })
            .collect()
    };
    for rx in waits {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), rx).await;
    }
}

pub async fn run(opts: DaemonOptions) -> Result<()> {
    let cfg = load_config(&opts)?;
    init_logging(opts.log_format.unwrap_or(cfg.log_format));
    let socket = opts
        .socket
        .clone()
        .or(cfg.socket.clone())
        .unwrap_or_else(client::private_socket);
    let state_dir = match &cfg.state_dir {
        Some(d) => d.clone(),
        None if socket == Path::new(client::SYSTEM_SOCKET) => PathBuf::from(SYSTEM_STATE_DIR),
        None => client::private_state_dir(),
    };
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
    // Job history holds command lines, which may carry secrets.
    let _ = std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700));
    let state_dir = state_dir.canonicalize().unwrap_or(state_dir);
    let _lock = lock_state_dir(&state_dir)?;
    let mut store = super::store::Store::open(&state_dir)?;
    store.attach_history(std::sync::Arc::new(super::history::History::open(
        &state_dir,
        cfg.learning.clone(),
        cfg.history_keep,
    )));
    let capacity = capacity(&cfg)?;
    let tree = super::systemd::cgroup_tree(&instance_name(&state_dir), cfg.cgroup_leaf);
    let info = tree.info();
    tracing::info!(
        backend = %info.kind,
        enforced = ?info.enforced,
        reason = ?info.not_enforced_reason,
        subtree = ?info.root,
        "cgroups"
    );
    let mut daemon = Daemon {
        jobs: Default::default(),
        next_id: store.next_id()?,
        ids_reserved: 0,
        next_seq: 0,
        next_conn: 0,
        capacity,
        tree,
        store,
        started: Instant::now(),
        socket: socket.clone(),
        reattach_grace: cfg.reattach_grace,
        kill_grace: cfg.kill_grace,
        services: Default::default(),
        cluster: None,
        locks: None,
        metrics: Default::default(),
        draining: super::drain::marker(&state_dir).exists(),
        port_leaser: super::port_leases::PortLeaser::new(cfg.port_range),
    };
    if daemon.draining {
        tracing::warn!("this host is draining (sc drain): no job is admitted until sc undrain");
    }
    adopt(&mut daemon);
    let services = cfg.services.clone();
    // Bound before the socket: a daemon that cannot serve its configured
    // metrics refuses to start, and leaves no socket behind — nor the empty
    // cgroup subtree it has just made.
    let bound = async {
        let metrics = match cfg.metrics_listen {
            Some(addr) => Some(super::metrics_http::bind(addr).await?),
            None => None,
        };
        anyhow::Ok((metrics, bind_socket(&socket, cfg.socket_group.as_deref())?))
    };
    let (metrics_listener, listener) = match bound.await {
        Ok(b) => b,
        Err(e) => {
            if daemon.jobs.is_empty() {
                let _ = daemon.tree.remove_subtree_if_empty();
            }
            return Err(e);
        }
    };
    tracing::info!(
        socket = %socket.display(),
        state_dir = %state_dir.display(),
        memory = daemon.capacity.mem_total,
        cores = daemon.capacity.cores,
        "sc daemon ready"
    );
    let cluster = match &cfg.cluster {
        Some(cc) => {
            let mut node = crate::cluster::node::start(cc).await?;
            tracing::info!(
                node = node.view.node_name,
                listen = %cc.listen,
                advertise = %cc.advertise,
                seeds = ?cc.seeds,
                "joined the cluster gossip"
            );
            daemon.cluster = Some(node.view.clone());
            let releases = if cfg.resources.is_empty() {
                None
            } else {
                let (locks, rx) = cluster_locks(cc, &cfg.resources, &node, &state_dir);
                node.view.set_resources(locks.board.clone());
                daemon.cluster = Some(node.view.clone());
                daemon.locks = Some(locks);
                Some(rx)
            };
            Some((node, releases))
        }
        None => None,
    };
    let shared = Shared::new(daemon);
    start_services(&shared, services);
    if let Some((node, releases)) = cluster {
        let node = std::sync::Arc::new(node);
        if let Some(rx) = releases {
            tokio::spawn(super::cluster_locks::run(shared.clone(), node.clone(), rx));
        }
        let shared = shared.clone();
        let labels = cfg.labels.clone();
        let mem_total = shared.daemon().capacity.mem_total;
        tokio::spawn(async move {
            let name = node.view.node_name.clone();
            crate::cluster::node::run(
                &node,
                mem_total,
                || super::board_state::local_state(&shared.daemon(), &name, &labels),
                || shared.kick(),
            )
            .await;
        });
    }
    tokio::spawn(scheduler::run(shared.clone()));
    tokio::spawn(super::pressure::run(shared.clone(), cfg.pressure.clone()));

    if let Some(l) = metrics_listener {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "serving Prometheus metrics on http://{addr}/metrics");
        }
        tokio::spawn(super::metrics_http::serve(shared.clone(), l));
    }
    // Handlers first: a SIGTERM right after READY=1 must stop us cleanly.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Listening and done adopting: clients can be served.
    super::systemd::notify(&format!("READY=1\nSTATUS=serving on {}", socket.display()));

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.prime_migration();
                    tokio::spawn(session::serve(shared.clone(), stream));
                }
                Err(e) => {
                    // EMFILE and friends: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(
        "sc daemon stopping; running jobs keep running and re-attach to the next daemon"
    );
    super::systemd::notify("STOPPING=1\nSTATUS=stopping; jobs keep running");
    let _ = std::fs::remove_file(&socket);
    stop_services(&shared).await;
    // Leave the subtree only while something lives in it (jobs to adopt).
    let d = shared.daemon();
    if d.jobs.is_empty()
        && let Err(e) = d.tree.remove_subtree_if_empty()
    {
        tracing::warn!("cannot remove the cgroup subtree: {e}");
    }
    Ok(())
}
