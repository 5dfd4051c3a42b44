//! pids controller: writes `pids_max` to `pids.max` (same file and format
//! on v1 and v2: a number or `max`).
//!
//! Must not: touch other controllers' files.

use super::{Cgroup, Limits, fsio};
use crate::Error;

pub(super) fn apply(g: &Cgroup, limits: &Limits) -> Result<(), Error> {
    let Some(root) = &g.layout().pids else {
        if limits.pids_max.is_some() {
            tracing::debug!(group = g.rel(), "pids limit not enforced here; skipped");
        }
        return Ok(());
    };
    let value = limits
        .pids_max
        .map_or_else(|| "max".to_owned(), |v| v.to_string());
    fsio::write(&g.dir(root).join("pids.max"), &value)
}
