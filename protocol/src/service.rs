//! Service definitions and views: what `sc service add` and `[[service]]`
//! describe, and what `sc service ls` shows.
//!
//! Probes use kubelet's vocabulary and defaults: period 10 s, timeout 1 s,
//! no initial delay, success threshold 1, failure threshold 3.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a probe checks the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeTarget {
    /// `http://HOST:PORT/PATH`: success is a 2xx or 3xx status.
    Http {
        host: String,
        port: u16,
        path: String,
    },
    /// `tcp://HOST:PORT`: success is an accepted connection.
    Tcp { host: String, port: u16 },
    /// `exec:COMMAND`: success is exit status 0 (run with `sh -c`).
    Exec { command: String },
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeTarget::Http { host, port, path } => write!(f, "http://{host}:{port}{path}"),
            ProbeTarget::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            ProbeTarget::Exec { command } => write!(f, "exec:{command}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid probe {input:?}: {why} (expected http://HOST:PORT/PATH, tcp://HOST:PORT or exec:COMMAND)"
)]
pub struct ProbeParseError {
    pub input: String,
    pub why: String,
}

fn host_port(input: &str, rest: &str) -> Result<(String, u16), ProbeParseError> {
    let bad = |why: &str| ProbeParseError {
        input: input.to_string(),
        why: why.to_string(),
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad("port is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok((host.to_string(), port))
}

impl std::str::FromStr for ProbeTarget {
    type Err = ProbeParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ProbeParseError {
            input: input.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = input.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (host, port) = host_port(input, authority)?;
            Ok(ProbeTarget::Http {
                host,
                port,
                path: path.to_string(),
            })
        } else if let Some(rest) = input.strip_prefix("tcp://") {
            let (host, port) = host_port(input, rest.trim_end_matches('/'))?;
            Ok(ProbeTarget::Tcp { host, port })
        } else if let Some(cmd) = input.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err(bad("empty command"));
            }
            Ok(ProbeTarget::Exec {
                command: cmd.to_string(),
            })
        } else if input.starts_with("https://") {
            Err(bad(
                "https is not supported; probe the plain-HTTP port or use exec:",
            ))
        } else {
            Err(bad("unknown scheme"))
        }
    }
}

/// One probe with its timing (all durations in ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub target: ProbeTarget,
    pub period_ms: u64,
    pub timeout_ms: u64,
    pub initial_delay_ms: u64,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

pub const PROBE_PERIOD_MS: u64 = 10_000;
pub const PROBE_TIMEOUT_MS: u64 = 1_000;
pub const PROBE_SUCCESS_THRESHOLD: u32 = 1;
pub const PROBE_FAILURE_THRESHOLD: u32 = 3;

impl ProbeSpec {
    /// A probe with kubelet's default timing.
    pub fn new(target: ProbeTarget) -> ProbeSpec {
        ProbeSpec {
            target,
            period_ms: PROBE_PERIOD_MS,
            timeout_ms: PROBE_TIMEOUT_MS,
            initial_delay_ms: 0,
            success_threshold: PROBE_SUCCESS_THRESHOLD,
            failure_threshold: PROBE_FAILURE_THRESHOLD,
        }
    }
}

/// When a service that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "never" => Ok(RestartPolicy::Never),
            _ => Err(format!(
                "invalid restart policy {s:?}: expected always, on-failure or never"
            )),
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        })
    }
}

/// Restart timing (ms). Defaults: backoff 1 s doubling to 5 min, reset
/// after 10 min running; more than 5 failures within 10 min → `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartSpec {
    pub policy: RestartPolicy,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub reset_after_ms: u64,
    pub max_failures: u32,
    pub failure_window_ms: u64,
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec {
            policy: RestartPolicy::Always,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 300_000,
            reset_after_ms: 600_000,
            max_failures: 5,
            failure_window_ms: 600_000,
        }
    }
}

/// A service as defined by `sc service add` or `[[service]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub env: Vec<(String, String)>,
    /// Run as this user (name or uid); `None`: the user who added it.
    pub user: Option<String>,
    pub mem_limit: Option<u64>,
    pub cpu_milli: Option<u32>,
    pub pids: Option<u64>,
    pub restart: RestartSpec,
    /// Between SIGTERM and SIGKILL on stop. Default 10 s.
    pub stop_grace_ms: u64,
    pub startup: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
    /// Rotate the log at this size, keeping this many files. Default 10 MB × 5.
    pub log_max_bytes: u64,
    pub log_keep: u32,
    /// Names of TCP ports to lease for it (`--port NAME`, `ports = [...]`),
    /// held as long as the service is defined.
    #[serde(default)]
    pub ports: Vec<String>,
}

pub const STOP_GRACE_MS: u64 = 10_000;
pub const LOG_MAX_BYTES: u64 = 10 * 1000 * 1000;
pub const LOG_KEEP: u32 = 5;

/// Where a service's definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceSource {
    Config,
    Runtime,
}

/// The lifecycle state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Started; the startup probe (if any) has not passed yet.
    Starting,
    Running,
    /// Ended; waiting out the backoff before the next start.
    Backoff,
    Stopping,
    /// Stopped by hand, or ended and not to be restarted.
    Stopped,
    /// The crash-loop breaker tripped: no restarts until `sc service restart`.
    Failed,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Failed => "failed",
        })
    }
}

/// One service in `sc service ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub source: ServiceSource,
    pub owner: u32,
    pub argv: Vec<String>,
    pub state: ServiceState,
    pub ready: bool,
    pub restarts: u32,
    /// Why it last ended or was restarted ("exit 1", "signal 9", "OOM",
    /// "liveness probe failed: ...").
    pub last_reason: Option<String>,
    pub uptime_ms: Option<u64>,
    pub pid: Option<u32>,
    pub mem_current: Option<u64>,
    /// When in backoff: how long until the next start.
    pub next_start_ms: Option<u64>,
    pub restart_policy: RestartPolicy,
    /// Its leased TCP ports: (name, port).
    #[serde(default)]
    pub ports: Vec<(String, u16)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse() {
        assert_eq!(
            "http://127.0.0.1:3000/health"
                .parse::<ProbeTarget>()
                .unwrap(),
            ProbeTarget::Http {
                host: "127.0.0.1".into(),
                port: 3000,
                path: "/health".into()
            }
        );
        assert_eq!(
            "http://localhost:8080".parse::<ProbeTarget>().unwrap(),
            ProbeTarget::Http {
                host: "localhost".into(),
                port: 8080,
                path: "/".into()
            }
        );
        assert_eq!(
            "tcp://[::1]:5432".parse::<ProbeTarget>().unwrap(),
            ProbeTarget::Tcp {
                host: "::1".into(),
                port: 5432
            }
        );
        assert_eq!(
            "exec:pg_isready -q".parse::<ProbeTarget>().unwrap(),
            ProbeTarget::Exec {
                command: "pg_isready -q".into()
            }
        );
        for bad in [
            "ftp://x:1",
            "http://:80/",
            "tcp://host",
            "tcp://h:99999",
            "exec:",
            "https://x:1/",
        ] {
            let e = bad.parse::<ProbeTarget>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
