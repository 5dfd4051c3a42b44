//! Killing and signalling every process of a group: `cgroup.kill` where the
//! kernel has it (v2, hybrid unified tree), else a bounded loop of freeze,
//! SIGKILL each process, thaw, until the group is empty.
//!
//! Must not: signal the daemon itself (its pid is skipped even if it was
//! put in the group by mistake), or wait longer than [`KILL_WAIT`].

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::{Cgroup, fsio};
use crate::Error;

/// How long `kill_all` tries before giving up.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(2);

/// Sends `sig` to every process; processes gone meanwhile are ignored.
pub(super) fn signal_all(g: &Cgroup, sig: Signal) -> Result<(), Error> {
    let me = std::process::id();
    for pid in g.pids()? {
        if pid == me || pid == 0 {
            continue;
        }
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        match signal::kill(Pid::from_raw(raw), sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(Error::Signal {
                    pid,
                    signal: sig,
                    source,
                });
            }
        }
    }
    Ok(())
}

pub(super) fn kill_all(g: &Cgroup) -> Result<(), Error> {
    let start = Instant::now();
    let l = g.layout();
    if let (true, Some(core)) = (l.kill2, g.root(&l.core)) {
        fsio::write(&g.dir(core).join("cgroup.kill"), "1")?;
        if fsio::wait_until(KILL_WAIT, || Ok(!g.is_populated()?))? {
            return Ok(());
        }
        // Stragglers only in v1 hierarchies (e.g. adopted groups): go on.
    }
    let can_freeze = g.can_freeze();
    loop {
        if !g.is_populated()? {
            return Ok(());
        }
        if start.elapsed() >= KILL_WAIT {
            break;
        }
        // Frozen processes cannot fork away from the SIGKILLs; a freeze
        // that does not confirm in time still stops most of them.
        if can_freeze {
            let _ = g.freeze();
        }
        let sent = signal_all(g, Signal::SIGKILL);
        if can_freeze {
            g.thaw()?;
        }
        sent?;
        if fsio::wait_until(Duration::from_millis(100), || Ok(!g.is_populated()?))? {
            return Ok(());
        }
    }
    Err(Error::Timeout {
        what: "kill",
        path: g.paths().into_iter().next().unwrap_or_default(),
        waited: start.elapsed(),
    })
}
