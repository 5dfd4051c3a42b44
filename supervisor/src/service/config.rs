//! [`MachineConfig`]: what the service machine needs from a service
//! definition (restart spec, stop grace, probes).
//!
//! Plain data: no I/O here.

use std::time::Duration;

use sc_protocol::{ProbeSpec, RestartSpec, STOP_GRACE_MS, ServiceSpec};

use super::probe::ProbeKind;

/// What the machine needs from a service definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    pub restart: RestartSpec,
    /// Between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    pub startup: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
}

impl MachineConfig {
    /// `restart`, the default stop grace, no probes.
    pub fn new(restart: RestartSpec) -> MachineConfig {
        MachineConfig {
            restart,
            stop_grace: Duration::from_millis(STOP_GRACE_MS),
            startup: None,
            readiness: None,
            liveness: None,
        }
    }

    pub(crate) fn probe(&self, kind: ProbeKind) -> Option<&ProbeSpec> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
        }
    }
}

impl From<&ServiceSpec> for MachineConfig {
    fn from(spec: &ServiceSpec) -> MachineConfig {
        MachineConfig {
            restart: spec.restart.clone(),
            stop_grace: Duration::from_millis(spec.stop_grace_ms),
            startup: spec.startup.clone(),
            readiness: spec.readiness.clone(),
            liveness: spec.liveness.clone(),
        }
    }
}
