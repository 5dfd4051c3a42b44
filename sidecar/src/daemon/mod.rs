//! `sc daemon`: the local sidecar. Binds the socket, adopts what a previous
//! instance left (job records and cgroups), then serves connections and runs
//! the scheduler until SIGTERM or SIGINT.
//!
//! Stopping the daemon does not stop jobs: they are the children of their
//! `sc exec` processes, which re-attach to the next daemon (as containerd
//! does with `KillMode=process`).

mod board_state;
pub(crate) mod cluster_locks;
mod control;
mod drain;
mod history;
mod lifecycle;
pub mod logs;
pub(crate) mod metrics;
mod metrics_http;
mod port_leases;
mod pressure;
mod release;
mod replies;
mod scheduler;
pub(crate) mod services;
mod session;
mod setup;
mod state;
pub mod store;
mod systemd;

pub use setup::{DaemonOptions, run};

use state::Daemon;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The daemon state and the scheduler's doorbell, shared by every task.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Mutex<Daemon>>,
    kick: Arc<Notify>,
    tree: sc_supervisor::CgroupTree,
    priming: Arc<AtomicBool>,
    /// The same counters as `Daemon::metrics`, reachable without the lock.
    pub(crate) metrics: Arc<metrics::Metrics>,
}

impl Shared {
    fn new(daemon: Daemon) -> Shared {
        Shared {
            tree: daemon.tree.clone(),
            metrics: Arc::clone(&daemon.metrics),
            inner: Arc::new(Mutex::new(daemon)),
            kick: Arc::new(Notify::new()),
            priming: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A client connected and may soon need a job placed: start the
    /// kernel's slow migration path now, in the background, so placement
    /// does not wait for it (see `CgroupTree::prime_migration`).
    fn prime_migration(&self) {
        if self.priming.swap(true, Ordering::AcqRel) {
            return;
        }
        let tree = self.tree.clone();
        let flag = Arc::clone(&self.priming);
        tokio::task::spawn_blocking(move || {
            tree.prime_migration();
            flag.store(false, Ordering::Release);
        });
    }

    /// Lock the state. A panic while holding the lock is a bug, but the
    /// daemon keeps serving with the state as it was left.
    pub(crate) fn daemon(&self) -> MutexGuard<'_, Daemon> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask the scheduler for a pass.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    fn kicked(&self) -> tokio::sync::futures::Notified<'_> {
        self.kick.notified()
    }
}
