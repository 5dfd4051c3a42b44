//! Finished jobs as `sc history` shows them, and where a job's memory
//! reservation came from (`sc exec --explain`, `sc ps --json`).

use crate::message::{JobId, JobUsage, Requests};
use serde::{Deserialize, Serialize};

/// Where the memory reservation admission uses for a job came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemSource {
    /// `--mem` was given.
    Requested,
    /// Learned from the peak memory of `runs` earlier runs of the same
    /// command in the same directory.
    Learned { runs: u32 },
    /// `[host] default_mem`: nothing to learn from (or learning is off).
    Default,
}

/// A job's memory reservation and, in words, why it is that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub mem: u64,
    pub source: MemSource,
    /// e.g. "learned 1.3 GiB: p90 of peak memory over the last 7 runs of
    /// `cargo build` in /src, plus 20%".
    pub why: String,
}

/// One finished job, as recorded in the daemon's history store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: JobId,
    pub owner: u32,
    pub argv: Vec<String>,
    pub cwd: String,
    pub name: Option<String>,
    pub requests: Requests,
    /// Memory reservation admission used.
    pub reserved: u64,
    pub priority: i32,
    /// Unix times in ms.
    pub queued_at: u64,
    pub started_at: Option<u64>,
    pub ended_at: u64,
    /// "exited", "signal", "spawn-failed", "cancelled", "timed-out",
    /// "client-gone", "abandoned", "refused".
    pub outcome: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    /// Peak memory, CPU time, wall time (`ran_ms`), wait (`waited_ms`).
    pub usage: JobUsage,
    /// Where `reserved` came from (`None` in records of jobs queued before
    /// a daemon restart that did not know).
    #[serde(default)]
    pub mem_source: Option<MemSource>,
}
