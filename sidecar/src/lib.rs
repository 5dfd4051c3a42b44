//! sc, the sidecar: the daemon and every CLI verb, as a library behind two
//! executables (docs/decisions.md, "Two executables").
//!
//! - `sc` (`src/main.rs`) is what users type. It runs `sc exec` (and the
//!   stop guard it may start) itself and hands every other verb to `scd`.
//!   Linked with only that path, it has a fifth of the full one's code and
//!   relocations, which is most of what starting a process costs here: `sc exec` starts once per
//!   job.
//! - `scd` (`src/bin/scd.rs`) is everything: `scd daemon`, and every verb
//!   `sc` forwards to it (exec'd in place, same pid, same arguments).
//!
//! Exit codes of both: 125 for sc's own errors (bad flags, a refused
//! request, no daemon); `sc exec` otherwise passes on its command's status.

mod admission;
mod boottime;
pub mod cli;
mod client;
mod cluster;
mod config;
mod daemon;
mod dlock;
mod learning;
mod ports;
mod pressure;
mod wire;
