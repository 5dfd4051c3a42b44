//! The cluster board: what each host publishes under its own chitchat keys,
//! and what `sc board` shows.
//!
//! Keys (ASCII only: a non-ASCII first character crashes chitchat 0.11.2):
//! `node`, `headroom`, `job/<id>`, `svc/<name>`. Values are text (chitchat
//! stores strings): a version tag, a space, then JSON — small (well under a
//! kilobyte; chitchat silently drops values near 64 KB). A value whose
//! version is unknown or that does not decode is counted and ignored by
//! readers, never trusted.

use crate::{JobId, JobState, Need, Requests, ServiceState};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Prefix of every board value of this version.
pub const BOARD_VALUE_VERSION: &str = "v1";

pub const KEY_NODE: &str = "node";
pub const KEY_HEADROOM: &str = "headroom";
pub const KEY_JOB_PREFIX: &str = "job/";
pub const KEY_SVC_PREFIX: &str = "svc/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardValueError {
    #[error("board value of unknown version {0:?}")]
    Version(String),
    #[error("board value does not decode: {0}")]
    Malformed(String),
}

/// Encode a board value: `v1 {json}`.
pub fn encode_value<T: Serialize>(v: &T) -> String {
    // Serialising plain data structs to JSON cannot fail.
    let json = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    format!("{BOARD_VALUE_VERSION} {json}")
}

pub fn decode_value<T: DeserializeOwned>(s: &str) -> Result<T, BoardValueError> {
    let (version, json) = s.split_once(' ').unwrap_or((s, ""));
    if version != BOARD_VALUE_VERSION {
        return Err(BoardValueError::Version(version.chars().take(16).collect()));
    }
    serde_json::from_str(json).map_err(|e| BoardValueError::Malformed(e.to_string()))
}

/// `node`: what a host is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub version: String,
    pub cores: u32,
    pub mem_total: u64,
    pub labels: Vec<(String, String)>,
    pub backend: String,
}

/// `headroom`: what a host can still admit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headroom {
    pub mem_available: u64,
    pub mem_reserved: u64,
    pub cpu_reserved_milli: u32,
    pub jobs_running: u32,
    pub jobs_queued: u32,
    /// Memory PSI `some avg10` × 100, when the kernel has it.
    pub psi_some_avg10_x100: Option<u32>,
}

/// `job/<id>`: a queued or running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardJob {
    pub id: JobId,
    pub owner: u32,
    /// The name, or the command line cut to a readable length.
    pub summary: String,
    pub requests: Requests,
    pub priority: i32,
    pub state: JobState,
    pub waiting: Option<String>,
    /// Unix time in ms (wall clocks of different hosts: for display only).
    pub queued_at: u64,
    pub started_at: Option<u64>,
    /// Cluster resources it needs (absent in values from older hosts).
    #[serde(default)]
    pub needs: Vec<Need>,
}

/// `svc/<name>`: a service and its readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardService {
    pub name: String,
    pub state: ServiceState,
    pub ready: bool,
    pub restarts: u32,
    pub last_reason: Option<String>,
}

/// One host in `sc board`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardHost {
    pub name: String,
    pub gossip_addr: String,
    pub live: bool,
    /// How long it has been dead, as seen from the answering host.
    pub dead_for_ms: Option<u64>,
    pub is_self: bool,
    pub node: Option<NodeInfo>,
    pub headroom: Option<Headroom>,
    pub jobs: Vec<BoardJob>,
    pub services: Vec<BoardService>,
}

/// `sc board`: every host the answering daemon knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardView {
    pub cluster_id: String,
    pub hosts: Vec<BoardHost>,
    /// Values that did not decode (wrong version, malformed), since start.
    pub undecodable_values: u64,
    /// The cluster resources (`[resources]`), with holders and queue.
    #[serde(default)]
    pub resources: Vec<BoardResource>,
}

/// One cluster resource in `sc board`, as the answering host sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardResource {
    pub name: String,
    pub capacity: u32,
    /// "quorum" or "available".
    pub mode: String,
    /// Claims that hold it now.
    pub holders: Vec<BoardClaim>,
    /// Claims and requests waiting for it, in the order they will enter.
    pub queue: Vec<BoardClaim>,
    /// What hosts disagree about (capacity, mode, over-capacity after a
    /// partition healed), in words.
    pub conflict: Option<String>,
}

/// A job's request or claim on a cluster resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardClaim {
    pub host: String,
    pub job: u64,
    pub units: u32,
    /// Fencing token of a held claim.
    pub token: Option<u64>,
    /// A stamped claim (it enters in stamp order), not just a request.
    pub claimed: bool,
    pub priority: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_ones_are_named() {
        let svc = BoardService {
            name: "web".into(),
            state: ServiceState::Running,
            ready: true,
            restarts: 2,
            last_reason: Some("exit 1".into()),
        };
        let text = encode_value(&svc);
        assert!(text.starts_with("v1 {"));
        assert_eq!(decode_value::<BoardService>(&text).unwrap(), svc);
        assert!(matches!(
            decode_value::<BoardService>("v9 {}"),
            Err(BoardValueError::Version(v)) if v == "v9"
        ));
        assert!(matches!(
            decode_value::<BoardService>("v1 {\"name\":"),
            Err(BoardValueError::Malformed(_))
        ));
        assert!(decode_value::<BoardService>("").is_err());
    }

    /// A `job/<id>` value from a host that predates `needs` still decodes.
    #[test]
    fn old_job_values_decode_without_needs() {
        let old = r#"v1 {"id":3,"owner":1000,"summary":"make","requests":{"mem":null,"mem_limit":null,"mem_high":null,"cpu_milli":null,"pids":null},"priority":0,"state":"Running","waiting":null,"queued_at":1,"started_at":2}"#;
        let job: BoardJob = decode_value(old).unwrap();
        assert!(job.needs.is_empty());
        let view: BoardView =
            serde_json::from_str(r#"{"cluster_id":"sc","hosts":[],"undecodable_values":0}"#)
                .unwrap();
        assert!(view.resources.is_empty());
    }
}
