//! The sidecar's TOML configuration (`/etc/sc/sidecar.toml` or `--config`).
//!
//! Every key is optional, so an empty file works; unknown keys are refused
//! with the file, line and key named (serde's `deny_unknown_fields` plus the
//! toml crate's spans). Sizes and durations are strings parsed by
//! `sc_protocol::units`. This module only parses and validates: resolving
//! defaults that need the machine (memory, cores) happens in the daemon.

use sc_protocol::units::{parse_duration, parse_size};
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
        Ok(Resolved {
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
        })
    }
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
