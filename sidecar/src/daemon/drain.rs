//! `sc drain` / `sc undrain`: stop and resume admission on this host.
//!
//! While draining, every queued job waits with [`WaitReason::Draining`]
//! (admission sees it as blocked), running jobs finish normally, and queued
//! `--needs` jobs hand back cluster claims that were not granted yet, so
//! another host can take the resource. The state is a marker file in the
//! state dir, so a host drained for maintenance stays drained across a
//! daemon restart.

use super::Shared;
use super::session::Peer;
use sc_protocol::{ErrorKind, Response};
use std::path::{Path, PathBuf};

/// The marker file: present = draining.
pub fn marker(state_dir: &Path) -> PathBuf {
    state_dir.join("draining")
}

/// Root, or the user the daemon runs as (a private per-user daemon).
fn may_drain(peer: Peer) -> bool {
    peer.uid == 0 || peer.uid == nix::unistd::getuid().as_raw()
}

fn denied(peer: Peer, verb: &str) -> Response {
    Response::error(
        ErrorKind::PermissionDenied,
        format!(
            "permission denied: only root or the daemon's own user (uid {}) may {verb} this host; you are uid {}",
            nix::unistd::getuid().as_raw(),
            peer.uid
        ),
    )
}

pub fn drain(shared: &Shared, peer: Peer) -> Response {
    if !may_drain(peer) {
        return denied(peer, "drain");
    }
    let mut d = shared.daemon();
    let path = marker(d.store.dir());
    if let Err(e) = std::fs::write(&path, format!("uid {}\n", peer.uid)) {
        return Response::error(
            ErrorKind::Internal,
            format!("cannot record the drain in {}: {e}", path.display()),
        );
    }
    let was = std::mem::replace(&mut d.draining, true);
    // Claims not granted yet go back to the cluster; the jobs stay queued
    // and ask again after `sc undrain`.
    let waiting: Vec<_> = d
        .jobs
        .values()
        .filter(|j| j.is_queued() && j.claim.as_ref().is_some_and(|c| c.tokens.is_none()))
        .map(|j| j.id)
        .collect();
    for id in &waiting {
        let claim = d.jobs.get_mut(id).and_then(|j| j.claim.take());
        if let (Some(claim), Some(locks)) = (claim, d.locks.as_mut()) {
            locks.give_back(claim);
        }
    }
    let running = d.jobs.values().filter(|j| j.holds_resources()).count();
    drop(d);
    tracing::info!(
        by = peer.uid,
        claims_given_back = waiting.len(),
        "host draining"
    );
    shared.kick();
    let mut message = format!(
        "{}draining: no job is admitted until `sc undrain`; {running} running job(s) finish normally",
        if was { "already " } else { "" }
    );
    if !waiting.is_empty() {
        message.push_str(&format!(
            "; {} waiting cluster claim(s) handed back",
            waiting.len()
        ));
    }
    Response::Ok { message }
}

pub fn undrain(shared: &Shared, peer: Peer) -> Response {
    if !may_drain(peer) {
        return denied(peer, "undrain");
    }
    let mut d = shared.daemon();
    let path = marker(d.store.dir());
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Response::error(
                ErrorKind::Internal,
                format!("cannot remove the drain marker {}: {e}", path.display()),
            );
        }
    }
    let was = std::mem::replace(&mut d.draining, false);
    drop(d);
    tracing::info!(by = peer.uid, "host admitting again");
    shared.kick();
    Response::Ok {
        message: if was {
            "admitting jobs again".into()
        } else {
            "not draining; nothing to do".into()
        },
    }
}
