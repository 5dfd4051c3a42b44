//! Seeded simulation of the cluster-lock rule: the real [`Engine`] on up
//! to 50 simulated hosts over a model of chitchat gossip, with crashes,
//! restarts, pauses, partitions, loss, delay and clock skew, checking the
//! invariants of shared/CLUSTER-LOCKS.md §6 on the true state after every
//! step (Appendix A's model, grown up: the Python model has no failures,
//! leases or DOWN votes; this runs the code that ships).
//!
//! - [`run`] plays one seed; the same seed replays the same run exactly.
//! - [`main`] is `sc sim-dlock` (hidden): a batch of seeds, a summary
//!   table, the seed and a trace tail for any violation.
//! - The `#[test]`s in `tests.rs` run a CI-sized batch.
//!
//! Layout: `net` (the gossip model) with `detector` (phi) and `causal`
//! (matrix clocks for the lease check), `host` (clocks, daemon state, jobs),
//! `world` (the event queue and the run), `daemon` (the daemon's side of
//! the engine contract, and the load), `faults` (the seeded fault plan),
//! `tail` (the quiet tail and liveness), `check` (the invariants),
//! `report` (the CLI and its table), `rng` (splitmix64).
//!
//! Not modelled: chitchat's garbage collection of dead hosts (runs are
//! shorter than `dead_node_grace`; `dlock/tests.rs` has the two tests of
//! a restart after it), MTU truncation (one key per host cannot be torn),
//! message duplication (merges are idempotent), CPU time.
//!
//! [`Engine`]: super::Engine

mod causal;
mod check;
mod daemon;
mod detector;
mod faults;
mod host;
mod net;
mod report;
mod rng;
mod tail;
mod world;

#[cfg(test)]
mod tests;

pub use report::{SimArgs, main};
pub use world::{RunConfig, RunResult};

/// Play one seed to the end (or to its first violation).
pub fn run(cfg: RunConfig) -> RunResult {
    world::World::new(cfg).run()
}
