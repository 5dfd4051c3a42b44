//! The service verbs: `add`, `start`, `stop`, `restart`, `remove`, `ls`,
//! and the log tail for `sc logs`.
//!
//! Who may do what: a run-time service belongs to the user who added it
//! (its owner and root may act on it); a service from the config file may be
//! started, stopped and restarted by anyone who can reach the socket (the
//! socket's group is the trust boundary on a shared host) but removed only
//! by editing the config.

use super::spawn::RunAs;
use super::{Control, ServiceEntry, driver};
use crate::daemon::Shared;
use crate::daemon::session::Peer;
use crate::daemon::store::PersistedService;
use sc_protocol::{ErrorKind, Response, ServiceSource, ServiceSpec, ServiceState};

fn err(kind: ErrorKind, msg: impl Into<String>) -> Response {
    Response::error(kind, msg)
}

fn ok(msg: impl Into<String>) -> Response {
    Response::Ok {
        message: msg.into(),
    }
}

fn unknown(name: &str) -> Response {
    err(
        ErrorKind::NotFound,
        format!("no service {name:?} on this host"),
    )
}

/// May `peer` control this service?
fn may_control(peer: Peer, e: &ServiceEntry) -> bool {
    peer.uid == 0 || e.source == ServiceSource::Config || e.owner == peer.uid
}

fn denied(name: &str, e: &ServiceEntry) -> Response {
    err(
        ErrorKind::PermissionDenied,
        format!(
            "permission denied: service {name} belongs to uid {}; only its owner or root may change it",
            e.owner
        ),
    )
}

/// Who a new run-time service runs as.
fn run_as_for(peer: Peer, spec: &ServiceSpec) -> Result<Option<RunAs>, String> {
    let daemon_uid = nix::unistd::getuid().as_raw();
    match &spec.user {
        Some(user) => {
            let u = RunAs::lookup(user)?;
            if peer.uid != 0 && u.uid != peer.uid {
                return Err(format!(
                    "only root may run a service as another user ({user})"
                ));
            }
            Ok((u.uid != daemon_uid).then_some(u))
        }
        None if peer.uid != daemon_uid => RunAs::lookup(&peer.uid.to_string()).map(Some),
        None => Ok(None),
    }
}

pub fn add(shared: &Shared, peer: Peer, spec: ServiceSpec, start: bool) -> Response {
    if let Err(e) = crate::config::check_service(&spec) {
        return err(ErrorKind::BadRequest, e.to_string());
    }
    if !std::path::Path::new(&spec.cwd).is_dir() {
        return err(
            ErrorKind::BadRequest,
            format!(
                "service {}: working directory {} does not exist",
                spec.name, spec.cwd
            ),
        );
    }
    let run_as = match run_as_for(peer, &spec) {
        Ok(r) => r,
        Err(e) => return err(ErrorKind::PermissionDenied, e),
    };
    let mut d = shared.daemon();
    if d.services.entries.contains_key(&spec.name) {
        return err(
            ErrorKind::BadRequest,
            format!("a service named {} already exists", spec.name),
        );
    }
    let ports = match d.lease_ports(&spec.ports) {
        Ok(p) => p,
        Err(e) => return err(ErrorKind::BadRequest, format!("service {}: {e}", spec.name)),
    };
    let record = PersistedService {
        spec: spec.clone(),
        owner: peer.uid,
        enabled: start,
    };
    if let Err(e) = d.store.save_service(&record) {
        return err(
            ErrorKind::Internal,
            format!("cannot record the service, not adding it: {e}"),
        );
    }
    let name = spec.name.clone();
    let entry = driver::spawn(
        shared,
        &d.tree,
        &d.store,
        spec,
        ServiceSource::Runtime,
        peer.uid,
        run_as,
        start,
        ports,
    );
    d.services.entries.insert(name.clone(), entry);
    tracing::info!(service = name, owner = peer.uid, "service added");
    ok(if start {
        format!("service {name} added and starting")
    } else {
        format!("service {name} added (not started)")
    })
}

/// Record whether a run-time service should run after a daemon restart.
fn set_enabled(shared: &Shared, name: &str, enabled: bool) {
    let d = shared.daemon();
    if let Some(e) = d.services.entries.get(name)
        && e.source == ServiceSource::Runtime
    {
        let rec = PersistedService {
            spec: e.spec.clone(),
            owner: e.owner,
            enabled,
        };
        if let Err(e) = d.store.save_service(&rec) {
            tracing::error!(service = name, "cannot record the service: {e}");
        }
    }
}

pub fn control(shared: &Shared, peer: Peer, name: &str, what: Control) -> Response {
    let verb = match &what {
        Control::Start => "start",
        Control::Stop => "stop",
        Control::Restart => "restart",
        Control::Remove(_) => "remove",
    };
    {
        let d = shared.daemon();
        let Some(e) = d.services.entries.get(name) else {
            return unknown(name);
        };
        if !may_control(peer, e) {
            return denied(name, e);
        }
        let starts = matches!(what, Control::Start | Control::Restart);
        if e.control.send(what).is_err() {
            return err(
                ErrorKind::Internal,
                format!("service {name} is not supervised any more"),
            );
        }
        // The driver starts it on its next turn; until then a `--wait-for`
        // right after `sc service start` must see it coming, not "stopped"
        // (and be refused). The driver overwrites this as it acts.
        if starts {
            let mut st = e.status.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(st.state, ServiceState::Stopped | ServiceState::Failed) {
                st.state = ServiceState::Starting;
            }
        }
    }
    set_enabled(shared, name, verb != "stop");
    ok(format!("service {name}: {verb} requested"))
}

pub async fn remove(shared: &Shared, peer: Peer, name: &str) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let d = shared.daemon();
        let Some(e) = d.services.entries.get(name) else {
            return unknown(name);
        };
        if e.source == ServiceSource::Config {
            return err(
                ErrorKind::BadRequest,
                format!("service {name} is defined in the config file; remove it there"),
            );
        }
        if !(peer.uid == 0 || e.owner == peer.uid) {
            return denied(name, e);
        }
        if e.control.send(Control::Remove(tx)).is_err() {
            return err(
                ErrorKind::Internal,
                format!("service {name} is not supervised any more"),
            );
        }
    }
    // The driver answers once no process of the service is left.
    let _ = rx.await;
    let mut d = shared.daemon();
    d.services.entries.remove(name);
    if let Err(e) = d.store.remove_service(name) {
        tracing::error!(service = name, "cannot remove the service record: {e}");
    }
    tracing::info!(service = name, "service removed");
    ok(format!("service {name} stopped and removed"))
}

pub fn list(shared: &Shared) -> Response {
    Response::Services(shared.daemon().services.views())
}

/// Check `sc logs NAME` is allowed and return where the log lives.
pub fn log_location(
    shared: &Shared,
    peer: Peer,
    name: &str,
) -> Result<std::path::PathBuf, Response> {
    let d = shared.daemon();
    let Some(e) = d.services.entries.get(name) else {
        return Err(unknown(name));
    };
    if !may_control(peer, e) {
        return Err(denied(name, e));
    }
    Ok(d.store.logs_dir())
}
