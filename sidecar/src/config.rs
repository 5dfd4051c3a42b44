//! The sidecar's TOML configuration (`/etc/sc/sidecar.toml` or `--config`).
//!
//! Every key is optional, so an empty file works; unknown keys are refused
//! with the file, line and key named (serde's `deny_unknown_fields` plus the
//! toml crate's spans). Sizes and durations are strings parsed by
//! `sc_protocol::units`. This module only parses and validates: resolving
//! defaults that need the machine (memory, cores) happens in the daemon.

mod learning;
mod ops;
mod pressure;
mod resources;

pub use ops::CgroupLeaf;
pub use pressure::PressureConfig;
pub use resources::{ResourceConfig, ResourceMode};
use sc_protocol::units::{format_duration, parse_duration, parse_size};
use sc_protocol::{ProbeSpec, ProbeTarget, RestartPolicy, RestartSpec, ServiceSpec};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonSection,
    #[serde(default)]
    pub host: HostSection,
    #[serde(default)]
    pub service: Vec<ServiceSection>,
    pub cluster: Option<ClusterSection>,
    /// `[resources]`: cluster-wide resources (see `config/resources.rs`).
    #[serde(default)]
    pub resources: std::collections::BTreeMap<String, resources::ResourceValue>,
    /// `[metrics]`: the Prometheus endpoint (see `config/ops.rs`).
    #[serde(default)]
    pub metrics: ops::MetricsSection,
    /// `[learning]`: learned memory requests (see `config/learning.rs`).
    #[serde(default)]
    pub learning: learning::LearningSection,
}

/// `[cluster]`: gossip with the other hosts' sidecars (QUIC + mutual TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// UDP address to listen on, e.g. "0.0.0.0:7946".
    pub listen: String,
    /// Address the other hosts reach us at (default: `listen`, which must
    /// then not be 0.0.0.0).
    pub advertise: Option<String>,
    /// Some hosts' addresses to join through (HOST:PORT).
    #[serde(default)]
    pub seeds: Vec<String>,
    /// The cluster CA certificate, this node's certificate and key (PEM),
    /// from `sc cluster init-ca` and `sc cluster issue`.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Hosts with another cluster id ignore each other. Default "sc".
    pub cluster_id: Option<String>,
    /// Default 100ms: a board change reaches a few hosts within a round or two.
    pub gossip_interval: Option<String>,
    /// Failure detector: phi threshold (default 8) and the interval assumed
    /// before enough heartbeats were seen (default 500ms; chitchat's own
    /// 5s would keep a fresh cluster from noticing a death for seconds).
    pub phi_threshold: Option<f64>,
    pub initial_interval: Option<String>,
    /// How long a dead host stays on the board (default 1h).
    pub dead_node_grace: Option<String>,
    /// Largest gossip frame accepted (default 128K: chitchat's own messages
    /// stay under 64K, and a bigger compressed frame from a peer could only
    /// be an attempt to make us decompress gigabytes).
    pub max_frame: Option<String>,
    /// The static membership (host names, as in their certificates) that
    /// quorum-mode resources count a majority over. Default: none, and then
    /// only "available" resources may be defined.
    #[serde(default)]
    pub members: Vec<String>,
    /// How long a cluster-resource lease lasts without renewal (default 3s,
    /// 500ms..=60s): a holder cut off from the daemon or the quorum has its
    /// job stopped within this long.
    pub lease: Option<String>,
    /// How long a host must be dead to the failure detector before its
    /// claims on "available" resources drop (default 1s).
    pub available_down: Option<String>,
    /// FOR TESTS AND THE CHAOS HARNESS: a file listing gossip addresses
    /// (one per line) whose traffic this host drops in both directions, read
    /// every 100 ms — a network partition without network namespaces.
    pub test_partition_file: Option<PathBuf>,
}

/// `[cluster]` with units parsed.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub listen: std::net::SocketAddr,
    pub advertise: std::net::SocketAddr,
    pub seeds: Vec<String>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cluster_id: String,
    pub gossip_interval: Duration,
    pub phi_threshold: f64,
    pub initial_interval: Duration,
    pub dead_node_grace: Duration,
    pub max_frame: u64,
    /// Quorum membership for quorum-mode resources (may be empty).
    pub members: Vec<String>,
    /// Lease of a held cluster resource (500ms..=60s).
    pub lease: Duration,
    /// Dead time before a host's claims on available resources drop.
    pub available_down: Duration,
    pub test_partition_file: Option<PathBuf>,
}

/// One `[[service]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    pub name: String,
    /// The command and its arguments (no shell: use ["sh", "-c", "..."]).
    pub command: Vec<String>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    pub user: Option<String>,
    pub mem_limit: Option<String>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    pub restart: Option<String>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    pub reset_after: Option<String>,
    pub max_failures: Option<u32>,
    pub failure_window: Option<String>,
    pub stop_grace: Option<String>,
    pub log_max_size: Option<String>,
    pub log_keep: Option<u32>,
    /// Names of TCP ports to lease for it (`ports = ["web"]`).
    #[serde(default)]
    pub ports: Vec<String>,
    pub startup: Option<ProbeSection>,
    pub readiness: Option<ProbeSection>,
    pub liveness: Option<ProbeSection>,
}

/// `[service.readiness]` and friends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// http://HOST:PORT/PATH, tcp://HOST:PORT or exec:COMMAND
    pub probe: String,
    pub period: Option<String>,
    pub timeout: Option<String>,
    pub initial_delay: Option<String>,
    pub success_threshold: Option<u32>,
    pub failure_threshold: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Unix socket of the local API.
    pub socket: Option<PathBuf>,
    /// Where jobs, history and cgroup bookkeeping are kept.
    pub state_dir: Option<PathBuf>,
    /// "text" (default) or "json".
    pub log_format: Option<LogFormat>,
    /// Group allowed to use the socket (system daemon); the socket is then
    /// mode 0660 owned by root:GROUP, else 0600 owned by the daemon's user.
    pub socket_group: Option<String>,
    /// How long a job whose `sc exec` lost the daemon may take to re-attach
    /// after a daemon restart before it is treated as abandoned.
    pub reattach_grace: Option<String>,
    /// Between SIGTERM and SIGKILL when a job is cancelled or times out.
    pub kill_grace: Option<String>,
    /// Move into a leaf of the own delegated cgroup v2 group (see `config/ops.rs`).
    pub cgroup_leaf: Option<CgroupLeaf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Memory capacity to admit against instead of the machine's (tests,
    /// or a host shared with something sc does not manage).
    pub memory: Option<String>,
    /// Cores to admit against instead of the machine's.
    pub cores: Option<u32>,
    /// Memory kept free for everything that is not a job.
    pub reserve: Option<String>,
    /// CPU overcommit factor: Σ --cpus ≤ cores × overcommit.
    pub overcommit: Option<f64>,
    /// Reservation of a job that does not say `--mem`.
    pub default_mem: Option<String>,
    /// Labels published on the cluster board (`gpu = "a100"`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The pressure rules' keys (see `config/pressure.rs`).
    pub pressure: Option<bool>,
    pub pressure_mem_low: Option<String>,
    pub pressure_psi: Option<f64>,
    pub pressure_hold_down: Option<String>,
    pub pressure_freeze_gap: Option<String>,
    pub pressure_poll: Option<String>,
    /// TCP ports leased to `--port` jobs and services: "FIRST-LAST".
    pub port_range: Option<String>,
}

/// Config values with units parsed and checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    pub socket_group: Option<String>,
    pub reattach_grace: Duration,
    pub kill_grace: Duration,
    pub memory: Option<u64>,
    pub cores: Option<u32>,
    pub reserve: Option<u64>,
    pub overcommit: f64,
    pub default_mem: u64,
    pub port_range: crate::ports::PortRange,
    pub services: Vec<ServiceSpec>,
    pub labels: Vec<(String, String)>,
    pub cluster: Option<ClusterConfig>,
    /// `[resources]`, sorted by name; empty without `[cluster]`.
    pub resources: Vec<ResourceConfig>,
    /// `[metrics] listen`; `None`: no endpoint.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub cgroup_leaf: CgroupLeaf,
    /// The `[host] pressure*` keys.
    pub pressure: PressureConfig,
    /// `[learning]`: how jobs without `--mem` learn their reservation.
    pub learning: crate::learning::LearnParams,
    /// Finished jobs kept in the history store.
    pub history_keep: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: [{section}] {key}: {message}")]
    Value {
        path: PathBuf,
        section: &'static str,
        key: &'static str,
        message: String,
    },
    /// A rule across keys or sections; the message names them.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: [[service]] {name:?}: {message}")]
    Service {
        path: PathBuf,
        name: String,
        message: String,
    },
}

pub const DEFAULT_DEFAULT_MEM: u64 = 256 << 20;

impl Config {
    pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Resolved, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_toml_error(text, &e),
        })?;
        config.resolve(path)
    }

    fn resolve(self, path: &Path) -> Result<Resolved, ConfigError> {
        let value_err = |section, key, message: String| ConfigError::Value {
            path: path.to_path_buf(),
            section,
            key,
            message,
        };
        let size = |section, key, v: &Option<String>| -> Result<Option<u64>, ConfigError> {
            v.as_deref()
                .map(parse_size)
                .transpose()
                .map_err(|e| value_err(section, key, e.to_string()))
        };
        let duration = |section,
                        key,
                        v: &Option<String>,
                        default: Duration|
         -> Result<Duration, ConfigError> {
            Ok(v.as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| value_err(section, key, e.to_string()))?
                .unwrap_or(default))
        };
        let h = &self.host;
        let d = &self.daemon;
        let overcommit = h.overcommit.unwrap_or(1.0);
        if !(overcommit.is_finite() && overcommit > 0.0 && overcommit <= 64.0) {
            return Err(value_err(
                "host",
                "overcommit",
                format!("must be a number in (0, 64], got {overcommit}"),
            ));
        }
        if h.cores == Some(0) {
            return Err(value_err("host", "cores", "must be at least 1".into()));
        }
        let memory = size("host", "memory", &h.memory)?;
        if memory == Some(0) {
            return Err(value_err("host", "memory", "must be more than 0".into()));
        }
        let pressure = pressure::resolve(h).map_err(|(key, msg)| value_err("host", key, msg))?;
        let mut services: Vec<ServiceSpec> = Vec::new();
        for section in &self.service {
            let spec = service_spec(section).map_err(|message| ConfigError::Service {
                path: path.to_path_buf(),
                name: section.name.clone(),
                message,
            })?;
            if services.iter().any(|s| s.name == spec.name) {
                return Err(ConfigError::Service {
                    path: path.to_path_buf(),
                    name: spec.name,
                    message: "defined twice".into(),
                });
            }
            services.push(spec);
        }
        let cluster = match &self.cluster {
            Some(c) => Some(cluster_config(c).map_err(|message| ConfigError::Value {
                path: path.to_path_buf(),
                section: "cluster",
                key: message.0,
                message: message.1,
            })?),
            None => None,
        };
        let resources =
            resources::resolve(&self.resources, cluster.as_ref()).map_err(|message| {
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message,
                }
            })?;
        let metrics_listen = ops::metrics_listen(&self.metrics)
            .map_err(|message| value_err("metrics", "listen", message))?;
        let (learning, history_keep) =
            learning::resolve(&self.learning).map_err(|(key, message)| ConfigError::Value {
                path: path.to_path_buf(),
                section: "learning",
                key,
                message,
            })?;
        Ok(Resolved {
            learning,
            history_keep,
            pressure,
            cluster,
            resources,
            metrics_listen,
            cgroup_leaf: d.cgroup_leaf.unwrap_or_default(),
            labels: h
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            services,
            socket: d.socket.clone(),
            state_dir: d.state_dir.clone(),
            log_format: d.log_format.unwrap_or(LogFormat::Text),
            socket_group: d.socket_group.clone(),
            reattach_grace: duration(
                "daemon",
                "reattach_grace",
                &d.reattach_grace,
                Duration::from_secs(10),
            )?,
            kill_grace: duration(
                "daemon",
                "kill_grace",
                &d.kill_grace,
                Duration::from_secs(5),
            )?,
            memory,
            cores: h.cores,
            reserve: size("host", "reserve", &h.reserve)?,
            overcommit,
            default_mem: size("host", "default_mem", &h.default_mem)?
                .unwrap_or(DEFAULT_DEFAULT_MEM),
            port_range: h
                .port_range
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| value_err("host", "port_range", e))?
                .unwrap_or_default(),
        })
    }
}

fn cluster_config(c: &ClusterSection) -> Result<ClusterConfig, (&'static str, String)> {
    let addr =
        |key: &'static str, v: &str| -> Result<std::net::SocketAddr, (&'static str, String)> {
            v.parse()
                .map_err(|_| (key, format!("{v:?} is not an IP:PORT address")))
        };
    let listen = addr("listen", &c.listen)?;
    let advertise = match &c.advertise {
        Some(a) => addr("advertise", a)?,
        None if listen.ip().is_unspecified() => {
            return Err((
                "advertise",
                format!("listen is {listen}: say which address the other hosts reach us at"),
            ));
        }
        None => listen,
    };
    if advertise.ip().is_unspecified() || advertise.port() == 0 {
        return Err((
            "advertise",
            format!("{advertise} cannot be reached by other hosts"),
        ));
    }
    let dur = |key: &'static str,
               v: &Option<String>,
               default: Duration|
     -> Result<Duration, (&'static str, String)> {
        match v {
            Some(t) => parse_duration(t).map_err(|e| (key, e.to_string())),
            None => Ok(default),
        }
    };
    let gossip_interval = dur(
        "gossip_interval",
        &c.gossip_interval,
        Duration::from_millis(100),
    )?;
    if gossip_interval.is_zero() {
        return Err(("gossip_interval", "must be more than 0".into()));
    }
    let cluster_id = c.cluster_id.clone().unwrap_or_else(|| "sc".into());
    if cluster_id.is_empty() || !cluster_id.is_ascii() {
        return Err(("cluster_id", "must be non-empty ASCII".into()));
    }
    let phi_threshold = c.phi_threshold.unwrap_or(8.0);
    if !(phi_threshold.is_finite() && phi_threshold > 0.0) {
        return Err((
            "phi_threshold",
            format!("must be more than 0, got {phi_threshold}"),
        ));
    }
    let lease = dur("lease", &c.lease, Duration::from_secs(3))?;
    if lease < Duration::from_millis(500) || lease > Duration::from_secs(60) {
        return Err((
            "lease",
            format!("must be from 500ms to 60s, got {}", format_duration(lease)),
        ));
    }
    for (i, m) in c.members.iter().enumerate() {
        if m.trim().is_empty() {
            return Err(("members", "a member name is empty".into()));
        }
        if c.members[..i].contains(m) {
            return Err(("members", format!("{m:?} is listed twice")));
        }
    }
    Ok(ClusterConfig {
        members: c.members.clone(),
        lease,
        available_down: dur("available_down", &c.available_down, Duration::from_secs(1))?,
        test_partition_file: c.test_partition_file.clone(),
        listen,
        advertise,
        seeds: c.seeds.clone(),
        ca: c.ca.clone(),
        cert: c.cert.clone(),
        key: c.key.clone(),
        cluster_id,
        gossip_interval,
        phi_threshold,
        initial_interval: dur(
            "initial_interval",
            &c.initial_interval,
            Duration::from_millis(500),
        )?,
        dead_node_grace: dur(
            "dead_node_grace",
            &c.dead_node_grace,
            Duration::from_secs(3600),
        )?,
        max_frame: match &c.max_frame {
            Some(t) => parse_size(t).map_err(|e| ("max_frame", e.to_string()))?,
            None => 128 << 10,
        },
    })
}

fn opt_ms(key: &str, v: &Option<String>, default: u64) -> Result<u64, String> {
    match v {
        Some(text) => parse_duration(text)
            .map(|d| d.as_millis() as u64)
            .map_err(|e| format!("{key}: {e}")),
        None => Ok(default),
    }
}

fn probe_of(kind: &str, p: &Option<ProbeSection>) -> Result<Option<ProbeSpec>, String> {
    let Some(p) = p else { return Ok(None) };
    let target: ProbeTarget = p.probe.parse().map_err(|e| format!("{kind}.probe: {e}"))?;
    let d = ProbeSpec::new(target);
    let spec = ProbeSpec {
        period_ms: opt_ms(&format!("{kind}.period"), &p.period, d.period_ms)?,
        timeout_ms: opt_ms(&format!("{kind}.timeout"), &p.timeout, d.timeout_ms)?,
        initial_delay_ms: opt_ms(&format!("{kind}.initial_delay"), &p.initial_delay, 0)?,
        success_threshold: p.success_threshold.unwrap_or(d.success_threshold),
        failure_threshold: p.failure_threshold.unwrap_or(d.failure_threshold),
        target: d.target,
    };
    check_probe(&spec).map_err(|e| format!("{kind}: {e}"))?;
    Ok(Some(spec))
}

fn service_spec(s: &ServiceSection) -> Result<ServiceSpec, String> {
    let d = RestartSpec::default();
    let policy: RestartPolicy = match &s.restart {
        Some(p) => p.parse().map_err(|e| format!("restart: {e}"))?,
        None => RestartPolicy::Always,
    };
    let cpu_milli = match s.cpus {
        Some(c) if !(c.is_finite() && c > 0.0) => {
            return Err(format!("cpus: must be more than 0, got {c}"));
        }
        Some(c) => Some((c * 1000.0).round() as u32),
        None => None,
    };
    let spec = ServiceSpec {
        name: s.name.clone(),
        argv: s.command.clone(),
        cwd: s.cwd.clone().unwrap_or_else(|| "/".into()),
        env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        user: s.user.clone(),
        mem_limit: s
            .mem_limit
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| format!("mem_limit: {e}"))?,
        cpu_milli,
        pids: s.pids,
        restart: RestartSpec {
            policy,
            backoff_initial_ms: opt_ms(
                "backoff_initial",
                &s.backoff_initial,
                d.backoff_initial_ms,
            )?,
            backoff_max_ms: opt_ms("backoff_max", &s.backoff_max, d.backoff_max_ms)?,
            reset_after_ms: opt_ms("reset_after", &s.reset_after, d.reset_after_ms)?,
            max_failures: s.max_failures.unwrap_or(d.max_failures),
            failure_window_ms: opt_ms("failure_window", &s.failure_window, d.failure_window_ms)?,
        },
        stop_grace_ms: opt_ms("stop_grace", &s.stop_grace, sc_protocol::STOP_GRACE_MS)?,
        startup: probe_of("startup", &s.startup)?,
        readiness: probe_of("readiness", &s.readiness)?,
        liveness: probe_of("liveness", &s.liveness)?,
        log_max_bytes: s
            .log_max_size
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| format!("log_max_size: {e}"))?
            .unwrap_or(sc_protocol::LOG_MAX_BYTES),
        log_keep: s.log_keep.unwrap_or(sc_protocol::LOG_KEEP),
        ports: s.ports.clone(),
    };
    check_service(&spec).map_err(|e| e.to_string())?;
    Ok(spec)
}

/// A probe's numbers make sense.
pub fn check_probe(p: &ProbeSpec) -> Result<(), String> {
    if p.period_ms == 0 {
        return Err("period must be more than 0".into());
    }
    if p.timeout_ms == 0 {
        return Err("timeout must be more than 0".into());
    }
    if p.success_threshold == 0 || p.failure_threshold == 0 {
        return Err("thresholds must be at least 1".into());
    }
    Ok(())
}

/// Is this a usable service name? It names files and cgroups.
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A whole definition makes sense (shared by `[[service]]` and `sc service add`).
pub fn check_service(s: &ServiceSpec) -> anyhow::Result<()> {
    if !valid_service_name(&s.name) {
        anyhow::bail!(
            "invalid service name {:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'",
            s.name
        );
    }
    if s.argv.is_empty() || s.argv[0].is_empty() {
        anyhow::bail!("service {}: no command", s.name);
    }
    let r = &s.restart;
    if r.backoff_initial_ms == 0 || r.backoff_initial_ms > r.backoff_max_ms {
        anyhow::bail!(
            "service {}: backoff must start above 0 and not above its maximum",
            s.name
        );
    }
    if r.max_failures == 0 {
        anyhow::bail!("service {}: max_failures must be at least 1", s.name);
    }
    if s.log_keep == 0 {
        anyhow::bail!("service {}: log_keep must be at least 1", s.name);
    }
    crate::ports::check_names(&s.ports).map_err(|e| anyhow::anyhow!("service {}: {e}", s.name))?;
    if s.log_max_bytes < 4096 {
        anyhow::bail!("service {}: log_max_size must be at least 4K", s.name);
    }
    if s.mem_limit == Some(0) || s.cpu_milli == Some(0) || s.pids == Some(0) {
        anyhow::bail!(
            "service {}: a limit of 0 would stop it from running",
            s.name
        );
    }
    Ok(())
}

impl Resolved {
    pub fn defaults() -> Resolved {
        Config::default()
            .resolve(Path::new("<defaults>"))
            .expect("the built-in defaults are valid")
    }
}

/// toml's message with the line number spelled out first.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message();
    match line {
        Some(line) => format!("line {line}: {message}"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Resolved, ConfigError> {
        Config::parse(text, Path::new("sc.toml"))
    }

    #[test]
    fn empty_file_works() {
        let r = parse("").unwrap();
        assert_eq!(r.default_mem, DEFAULT_DEFAULT_MEM);
        assert_eq!(r.overcommit, 1.0);
        assert!(r.memory.is_none());
    }

    #[test]
    fn values_parse() {
        let r = parse(
            "[daemon]\nsocket = \"/tmp/x.sock\"\nkill_grace = \"2s\"\n[host]\nmemory = \"4G\"\ncores = 2\nreserve = \"0\"\n",
        )
        .unwrap();
        assert_eq!(r.memory, Some(4 << 30));
        assert_eq!(r.cores, Some(2));
        assert_eq!(r.reserve, Some(0));
        assert_eq!(r.kill_grace, Duration::from_secs(2));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[host]\ncores = 2\nmemroy = \"4G\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sc.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("memroy"), "{err}");
    }

    #[test]
    fn unknown_section_is_refused() {
        let err = parse("[hots]\n").unwrap_err().to_string();
        assert!(err.contains("hots") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn services_parse_and_errors_name_the_service() {
        let r = parse(
            "[[service]]\nname = \"web\"\ncommand = [\"python3\", \"-m\", \"http.server\"]\nrestart = \"on-failure\"\n[service.readiness]\nprobe = \"http://127.0.0.1:8000/\"\nperiod = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(r.services.len(), 1);
        let s = &r.services[0];
        assert_eq!(s.restart.policy, RestartPolicy::OnFailure);
        let p = s.readiness.as_ref().unwrap();
        assert_eq!(p.period_ms, 2000);
        assert_eq!(p.failure_threshold, 3);
        let err = parse("[[service]]\nname = \"web\"\ncommand = [\"x\"]\n[service.liveness]\nprobe = \"ftp://x:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"web\"") && err.contains("liveness.probe"),
            "{err}"
        );
        let err = parse("[[service]]\nname = \"web\"\ncommand = [\"x\"]\nrestrat = \"always\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("restrat") && err.contains("line 4"), "{err}");
        let err = parse("[[service]]\nname = \"a b\"\ncommand = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid service name"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse("[host]\nmemory = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[host] memory") && err.contains("lots"),
            "{err}"
        );
        let err = parse("[host]\novercommit = -1.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("overcommit"), "{err}");
        let err = parse("[daemon]\nlog_format = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
