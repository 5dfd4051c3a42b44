//! Services: long-running processes the daemon starts, probes, restarts and
//! stops (DESIGN §5).
//!
//! - [`ServiceTable`]: every defined service, its definition and live status;
//!   also the readiness gate `sc exec --wait-for` waits on;
//! - `driver`: one task per service, feeding the pure `ServiceMachine`
//!   (sc-supervisor) with exits, probe results and timers, and carrying out
//!   its actions;
//! - `spawn`: starting the process as its user, in its cgroup;
//! - `probe_run`: running an HTTP, TCP or exec probe once;
//! - `verbs`: the `sc service ...` and `sc logs` handlers.

pub mod driver;
pub mod probe_run;
pub mod spawn;
pub mod verbs;

use sc_protocol::{ServiceSource, ServiceSpec, ServiceState, ServiceView};
use sc_supervisor::Cgroup;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// What the driver publishes about its service.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    pub state: ServiceState,
    pub ready: bool,
    pub restarts: u32,
    pub last_reason: Option<String>,
    pub pid: Option<u32>,
    pub running_since: Option<Instant>,
    pub next_start: Option<Instant>,
    pub cgroup: Option<Cgroup>,
}

impl Default for ServiceStatus {
    fn default() -> Self {
        ServiceStatus {
            state: ServiceState::Stopped,
            ready: false,
            restarts: 0,
            last_reason: None,
            pid: None,
            running_since: None,
            next_start: None,
            cgroup: None,
        }
    }
}

/// Orders from the verbs to a service's driver.
#[derive(Debug)]
pub enum Control {
    Start,
    Stop,
    Restart,
    /// Stop for good; the driver ends once the process is gone and then
    /// answers on the channel.
    Remove(tokio::sync::oneshot::Sender<()>),
}

pub struct ServiceEntry {
    pub spec: ServiceSpec,
    pub source: ServiceSource,
    pub owner: u32,
    pub status: Arc<Mutex<ServiceStatus>>,
    pub control: UnboundedSender<Control>,
    /// Its leased TCP ports, held while it is defined: (name, port).
    pub ports: Vec<(String, u16)>,
}

impl ServiceEntry {
    pub fn status(&self) -> ServiceStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Whether a `--wait-for` name lets a job through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Ready,
    /// Not ready yet: keep waiting; the text says in what state.
    NotReady(String),
    /// It will not become ready without someone acting: fail the job.
    Failed(String),
    Unknown,
}

#[derive(Default)]
pub struct ServiceTable {
    pub entries: BTreeMap<String, ServiceEntry>,
}

impl ServiceTable {
    /// The readiness gate for `--wait-for NAME`. Names with `@HOST` (a
    /// service on another host) will be answered by the cluster board.
    pub fn gate(&self, name: &str) -> Gate {
        let Some(entry) = self.entries.get(name) else {
            return Gate::Unknown;
        };
        let st = entry.status();
        if st.ready {
            return Gate::Ready;
        }
        match st.state {
            ServiceState::Failed => Gate::Failed(format!(
                "service {name} has failed{}",
                st.last_reason
                    .map(|r| format!(" (last: {r})"))
                    .unwrap_or_default()
            )),
            ServiceState::Stopped => Gate::Failed(format!(
                "service {name} is stopped; start it with `sc service start {name}`"
            )),
            s => Gate::NotReady(s.to_string()),
        }
    }

    pub fn views(&self) -> Vec<ServiceView> {
        let now = Instant::now();
        self.entries
            .values()
            .map(|e| {
                let st = e.status();
                ServiceView {
                    name: e.spec.name.clone(),
                    source: e.source,
                    owner: e.owner,
                    argv: e.spec.argv.clone(),
                    state: st.state,
                    ready: st.ready,
                    restarts: st.restarts,
                    last_reason: st.last_reason.clone(),
                    uptime_ms: st
                        .running_since
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    pid: st.pid,
                    mem_current: st
                        .cgroup
                        .as_ref()
                        .filter(|_| st.pid.is_some())
                        .and_then(|c| c.usage().ok())
                        .and_then(|u| u.mem_current),
                    next_start_ms: st
                        .next_start
                        .map(|t| t.saturating_duration_since(now).as_millis() as u64),
                    restart_policy: e.spec.restart.policy,
                    ports: e.ports.clone(),
                }
            })
            .collect()
    }
}
