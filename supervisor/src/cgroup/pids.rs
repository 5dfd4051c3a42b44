//! pids controller: writes `pids_max` to `pids.max` (same file and format
//! on v1 and v2: a number or `max`).
//!
//! Must not: touch other controllers' files.

use super::{Cgroup, Limits, fsio};
use crate::Error;

/// Writes `pids.max`; with `fresh` (a just-created group, holding the
/// kernel's `max` default) only when a limit is set.
pub(super) fn apply(g: &Cgroup, limits: &Limits, fresh: bool) -> Result<(), Error> {
    // Not in the pids hierarchy: no limit to clear (`set_limits` refused a
    // new one before we got here).
    let Some(root) = g.root(&g.layout().pids) else {
        if limits.pids_max.is_some() {
            tracing::debug!(group = g.rel(), "pids limit not enforced here; skipped");
        }
        return Ok(());
    };
    if fresh && limits.pids_max.is_none() {
        return Ok(());
    }
    let value = limits
        .pids_max
        .map_or_else(|| "max".to_owned(), |v| v.to_string());
    fsio::write(&g.dir(root).join("pids.max"), &value)
}
