//! `sc status`: the host, its cgroup backend and its place in the cluster.
//!
//! Kept apart from [`crate::message`] (which re-exports these types) only to
//! keep each file readable; it is part of the same local API.

use serde::{Deserialize, Serialize};

/// Cgroup backend as `sc status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendView {
    /// "cgroup v2", "cgroup v1 (+unified for freeze/kill)", "cgroup v1" or "none".
    pub kind: String,
    /// What is enforced: a subset of memory, cpu, pids, freeze, kill.
    pub enforced: Vec<String>,
    pub not_enforced_reason: Option<String>,
    pub subtree: Vec<String>,
}

/// The host as `sc status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub hostname: String,
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub socket: String,
    pub state_dir: String,
    pub cores: u32,
    pub overcommit: f64,
    /// Memory capacity admission works against (detected or configured).
    pub mem_total: u64,
    pub mem_available: u64,
    pub mem_reserve: u64,
    /// Σ reservations of running jobs.
    pub reserved: u64,
    /// Σ max(0, reservation − usage): what admission still holds back.
    pub reserved_unused: u64,
    pub cpu_reserved_milli: u32,
    pub jobs_queued: u32,
    pub jobs_running: u32,
    pub backend: BackendView,
    /// Memory and cores read from the config rather than the machine.
    pub capacity_overridden: bool,
    pub services: Vec<crate::ServiceView>,
    /// `None` when `[cluster]` is not configured.
    pub cluster: Option<ClusterStatus>,
    /// `sc drain` is in effect: no job is admitted until `sc undrain`.
    #[serde(default)]
    pub draining: bool,
}

/// This host as a cluster member, in `sc status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub node_name: String,
    pub cluster_id: String,
    pub listen: String,
    pub advertise: String,
    pub live_hosts: u32,
    pub dead_hosts: u32,
    /// Transport and board counters: messages sent/received, and what was
    /// dropped and why (oversize, malformed, unauthorised, queue full,
    /// undecodable board values...).
    pub counters: Vec<(String, u64)>,
    /// The `[resources]` of the cluster, as this host sees them.
    pub resources: Vec<crate::resource::ResourceStatus>,
}
