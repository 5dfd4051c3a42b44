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
//! Layout: `net` (gossip model), `world` (hosts, clocks, event queue),
//! `daemon` (the daemon's side of the engine contract, jobs, load),
//! `faults` (the seeded fault plan and the quiet tail), `check`
//! (invariants), `report` (the CLI and the table), `rng` (splitmix64).
//!
//! [`Engine`]: super::Engine

mod check;
mod daemon;
mod faults;
mod net;
mod report;
mod rng;
mod world;

#[cfg(test)]
mod tests;

pub use check::{RunStats, Violation};
pub use report::{SimArgs, SimMode, Summary, main, run_batch};
pub use world::{RunConfig, RunResult};

/// Play one seed to the end (or to its first violation).
pub fn run(cfg: RunConfig) -> RunResult {
    world::World::new(cfg).run()
}
