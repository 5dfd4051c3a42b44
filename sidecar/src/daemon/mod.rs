//! `sc daemon`: the local sidecar. Binds the socket, adopts what a previous
//! instance left (job records and cgroups), then serves connections and runs
//! the scheduler until SIGTERM or SIGINT.
//!
//! Stopping the daemon does not stop jobs: they are the children of their
//! `sc exec` processes, which re-attach to the next daemon (as containerd
//! does with `KillMode=process`).

mod control;
mod lifecycle;
mod scheduler;
mod session;
mod setup;
mod state;
pub mod store;

pub use setup::{DaemonOptions, run};

use state::Daemon;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The daemon state and the scheduler's doorbell, shared by every task.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Mutex<Daemon>>,
    kick: Arc<Notify>,
}

impl Shared {
    fn new(daemon: Daemon) -> Shared {
        Shared {
            inner: Arc::new(Mutex::new(daemon)),
            kick: Arc::new(Notify::new()),
        }
    }

    /// Lock the state. A panic while holding the lock is a bug, but the
    /// daemon keeps serving with the state as it was left.
    fn daemon(&self) -> MutexGuard<'_, Daemon> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask the scheduler for a pass.
    fn kick(&self) {
        self.kick.notify_one();
    }

    fn kicked(&self) -> tokio::sync::futures::Notified<'_> {
        self.kick.notified()
    }
}
