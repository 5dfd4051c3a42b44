//! `sc`: the sidecar binary. CLI verbs and `sc daemon` in one executable.
//!
//! Exit codes of `sc` itself: 125 for its own errors (bad flags, a refused
//! request, no daemon); `sc exec` otherwise passes on its command's status.

mod admission;
mod boottime;
mod cli;
mod client;
mod cluster;
mod config;
mod daemon;
mod dlock;
mod learning;
mod ports;
mod pressure;
mod wire;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
