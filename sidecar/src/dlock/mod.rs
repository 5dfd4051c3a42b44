//! Who runs next on a cluster resource: Lamport's mutual exclusion,
//! generalised to K units, over one gossiped `dl` value per host
//! (DESIGN §6; the rule, its proof and its parameters are in
//! shared/CLUSTER-LOCKS.md §5).
//!
//! This module is pure, like quinn-proto: no I/O, no clock reads, no
//! chitchat. The daemon feeds an [`Engine`] what it observes (every host's
//! `dl` value, liveness and heartbeat, with the time) and what its jobs do
//! (request, release), and carries out the [`Output`]: publish this value,
//! poke these hosts, start these jobs with these fencing tokens, stop those.
//! The same engine runs in the seeded simulation ([`sim`]).
//!
//! - [`rule`]: the claim window and the entry condition over one resource.
//! - [`peers`]: what this host knows of every other incarnation: freshest
//!   value, liveness, progress, who is DOWN or superseded.
//! - [`lease`]: quorum-mode lease renewals and their validity.
//! - [`engine`]: the state machine tying them together; `views` holds its
//!   per-resource reads of the cluster.

pub mod engine;
pub mod lease;
pub mod peers;
mod report;
pub mod rule;
pub mod sim;
mod views;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod tests;

pub use engine::Engine;
pub use sc_protocol::dl::NodeGen;

/// How a resource behaves when hosts fail or the network splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Static membership, quorum leases, DOWN votes: never more than K
    /// holders, and a minority side grants nothing.
    Quorum,
    /// Each side of a partition grants up to K; on heal the extra holders
    /// (largest claim stamps) are preempted.
    Available,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Quorum => "quorum",
            Mode::Available => "available",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    pub capacity: u32,
    pub mode: Mode,
    /// Claims allowed beyond capacity, so the next holder is acknowledged
    /// while the current one runs (default: capacity).
    pub prefetch: u32,
}

/// Timing, all derived from two settings so they cannot be set unsafely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Quorum lease L, in ms.
    pub lease_ms: u64,
    /// Available mode: how long a host must be dead to the failure detector
    /// before its claims drop out, in ms.
    pub available_down_ms: u64,
    /// Aging: +1 effective priority per step waited, up to `aging_cap`.
    pub aging_step_ms: u64,
    pub aging_cap: i32,
    /// Available mode: no entry this long after the engine starts, so a
    /// restarted host hears of the holders before it grants (the daemon
    /// sets it to `available_down_ms`; 0 in the pure tests).
    pub startup_grace_ms: u64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            lease_ms: 3000,
            available_down_ms: 1000,
            aging_step_ms: 30_000,
            // low (-10) to high (+10): a low job outranks new high ones
            // after 21 steps.
            aging_cap: 21,
            startup_grace_ms: 0,
        }
    }
}

impl Params {
    /// Lease renewal period R.
    pub fn renew_ms(&self) -> u64 {
        (self.lease_ms / 12).max(20)
    }
    /// T_down ≥ L·(1+ρ)/(1−ρ) + δ: with ρ ≤ 10 % and δ = 500 ms, 1.5·L + 500
    /// ms is comfortably above (5 s for L = 3 s, as §5.4's example).
    pub fn t_down_ms(&self) -> u64 {
        self.lease_ms * 3 / 2 + 500
    }
    /// The stopper starts stopping this long before the lease ends.
    pub fn stop_margin_ms(&self) -> u64 {
        self.lease_ms / 6
    }
    /// A claim enters only with at least this much lease left.
    pub fn min_lease_to_enter_ms(&self) -> u64 {
        self.lease_ms / 2
    }
}

/// Everything fixed for an engine's life.
#[derive(Debug, Clone)]
pub struct Setup {
    pub me: NodeGen,
    pub resources: Vec<ResourceSpec>,
    /// Static membership for quorum mode (host names).
    pub members: Vec<String>,
    pub params: Params,
    /// DOWN votes this host cast in earlier generations (persisted): it
    /// must never acknowledge a lease of a host it voted DOWN.
    pub votes: Vec<NodeGen>,
}

/// The time, as the daemon read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// CLOCK_BOOTTIME in ms: leases, silence, dead-since.
    pub mono_ms: u64,
    /// Wall clock in ms since the epoch: the HLC's physical part, aging.
    pub wall_ms: u64,
}

/// One host incarnation as chitchat shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub node: NodeGen,
    /// In chitchat's live set.
    pub live: bool,
    pub heartbeat: u64,
    /// Its raw `dl` value, if it has one.
    pub dl: Option<String>,
}

/// A job that may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub job: u64,
    /// (resource, fencing token), in the order of the job's needs.
    pub tokens: Vec<(String, u64)>,
    /// When another host released one of these resources after this job
    /// asked for it (that host's wall clock, ms): the hand-over this grant
    /// ends started there. `None` when the job waited for no other host.
    pub released_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Quorum mode: the lease could not be renewed in time.
    LostLease { resources: Vec<String> },
    /// Available mode after a partition healed: more holders than capacity,
    /// and this one's claim is among the latest.
    Preempted { resource: String },
    /// A quorum of members voted this host DOWN.
    SelfDown,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::LostLease { resources } => write!(
                f,
                "lost the lease on {}: a quorum of members did not acknowledge its renewal in time",
                resources.join(",")
            ),
            StopReason::Preempted { resource } => write!(
                f,
                "preempted: {resource} had more holders than its capacity after a partition healed, and this job's claim is among the latest"
            ),
            StopReason::SelfDown => write!(
                f,
                "this host was voted DOWN by a quorum of members (it was cut off or stopped for too long)"
            ),
        }
    }
}

/// What the daemon must do after a step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Write this as our `dl` value.
    pub publish: Option<String>,
    /// Gossip with these hosts now (by name): they have something to
    /// acknowledge or can enter.
    pub pokes: Vec<String>,
    pub granted: Vec<Grant>,
    pub stop: Vec<(u64, StopReason)>,
    /// Stopper deadlines (CLOCK_BOOTTIME ms) of held jobs, when they moved.
    pub leases: Vec<(u64, u64)>,
    /// A quorum voted this host DOWN: stop every holder and come back as a
    /// new generation.
    pub self_down: bool,
    /// Our DOWN votes changed: persist them before anything else.
    pub votes: Option<Vec<NodeGen>>,
}

/// Why one of our jobs waits on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub job: u64,
    pub res: String,
    /// Current holders: (host, job).
    pub holders: Vec<(String, u64)>,
    /// Claims and requests ordered before this one, not yet holding.
    pub ahead: u32,
    pub detail: Option<String>,
}

/// Why a request is refused at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown cluster resource {0:?} (not in [resources] of this host)")]
    Unknown(String),
    #[error("{name} has capacity {capacity}; {units} units can never be granted")]
    TooMany {
        name: String,
        units: u32,
        capacity: u32,
    },
    #[error("{0} is a quorum resource and this host is not in [cluster] members")]
    NotMember(String),
    #[error("{name}: {why}")]
    Conflict { name: String, why: String },
    #[error("job {0} already has a request")]
    Duplicate(u64),
}

/// One resource as `sc board` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceView {
    pub name: String,
    pub capacity: u32,
    pub mode: Mode,
    /// (host, job, units, token) of held claims.
    pub holders: Vec<(String, u64, u32, u64)>,
    /// (host, job, units, claimed, priority) in order: claims by stamp,
    /// then requests by rank.
    pub queue: Vec<(String, u64, u32, bool, i32)>,
    pub conflict: Option<String>,
}

/// Counters for `sc status` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub grants: u64,
    pub preemptions: u64,
    pub lost_leases: u64,
    pub stale_values: u64,
    pub undecodable_values: u64,
    pub publishes: u64,
    /// Times this engine found its own steps a second or more apart
    /// (stopped, suspended, or starved of CPU), and the last such gap.
    pub self_pauses: u64,
    pub last_pause_ms: u64,
}
