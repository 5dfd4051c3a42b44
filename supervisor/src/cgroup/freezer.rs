//! Freezing: v2 / hybrid unified `cgroup.freeze` (confirmed through
//! `cgroup.events` `frozen 1`), else the v1 freezer (`freezer.state`
//! `FROZEN`). The v2 interface is preferred on hybrid hosts. Only the
//! hierarchies the group is in are used.
//!
//! Must not: wait unboundedly (freeze waits at most [`FREEZE_WAIT`]), or
//! send signals.

use std::time::Duration;

use super::{Cgroup, fsio};
use crate::Error;

/// How long `freeze` waits for the kernel to confirm.
pub(crate) const FREEZE_WAIT: Duration = Duration::from_secs(1);

fn unsupported(g: &Cgroup) -> Error {
    let backend = if g.layout().v2 {
        "cgroup v2"
    } else {
        "cgroup v1"
    };
    Error::Unsupported {
        what: "freeze",
        backend: format!(
            "{backend}: group {} is in no hierarchy with cgroup.freeze or a freezer",
            g.rel()
        ),
    }
}

pub(super) fn freeze(g: &Cgroup) -> Result<(), Error> {
    let l = g.layout();
    if let (true, Some(core)) = (l.freeze2, g.root(&l.core)) {
        let dir = g.dir(core);
        fsio::write(&dir.join("cgroup.freeze"), "1")?;
        if fsio::wait_until(FREEZE_WAIT, || is_frozen(g))? {
            return Ok(());
        }
        return Err(Error::Timeout {
            what: "freeze",
            path: dir,
            waited: FREEZE_WAIT,
        });
    }
    let Some(root) = g.root(&l.freezer) else {
        return Err(unsupported(g));
    };
    let state = g.dir(root).join("freezer.state");
    // v1 may sit in FREEZING; writing FROZEN again retries stragglers.
    let done = fsio::wait_until(FREEZE_WAIT, || {
        fsio::write(&state, "FROZEN")?;
        is_frozen(g)
    })?;
    if done {
        Ok(())
    } else {
        Err(Error::Timeout {
            what: "freeze",
            path: g.dir(root),
            waited: FREEZE_WAIT,
        })
    }
}

pub(super) fn thaw(g: &Cgroup) -> Result<(), Error> {
    let l = g.layout();
    if let (true, Some(core)) = (l.freeze2, g.root(&l.core)) {
        return fsio::write(&g.dir(core).join("cgroup.freeze"), "0");
    }
    match g.root(&l.freezer) {
        Some(root) => fsio::write(&g.dir(root).join("freezer.state"), "THAWED"),
        None => Err(unsupported(g)),
    }
}

pub(super) fn is_frozen(g: &Cgroup) -> Result<bool, Error> {
    let l = g.layout();
    if let (true, Some(core)) = (l.freeze2, g.root(&l.core)) {
        let text = fsio::read(&g.dir(core).join("cgroup.events"))?;
        return Ok(fsio::keyed(&text, "frozen") == Some("1"));
    }
    match g.root(&l.freezer) {
        Some(root) => {
            let text = fsio::read(&g.dir(root).join("freezer.state"))?;
            Ok(text.trim() == "FROZEN")
        }
        None => Ok(false),
    }
}
