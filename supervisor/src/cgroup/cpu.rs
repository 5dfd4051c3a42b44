//! CPU controller: writes `cpu_milli` as a bandwidth quota per 100 ms
//! period (v2 `cpu.max`, v1 `cpu.cfs_period_us` + `cpu.cfs_quota_us`) and
//! reads CPU time (v2 / hybrid unified `cpu.stat` `usage_usec`, else v1
//! `cpuacct.usage`).
//!
//! Must not: touch weights/shares or cpusets, or other controllers' files.

use super::{Cgroup, Limits, fsio};
use crate::Error;

/// The CFS period used for every quota, in microseconds.
pub(crate) const PERIOD_US: u64 = 100_000;
/// The kernel rejects quotas below 1 ms.
const MIN_QUOTA_US: u64 = 1_000;

/// Quota in microseconds per [`PERIOD_US`] for `milli` thousandths of a CPU.
pub(crate) fn quota_us(milli: u32) -> u64 {
    (u64::from(milli) * PERIOD_US / 1000).max(MIN_QUOTA_US)
}

/// Writes the quota; with `fresh` (a just-created group, holding the
/// kernel's "no limit" default) only when one is set.
pub(super) fn apply(g: &Cgroup, limits: &Limits, fresh: bool) -> Result<(), Error> {
    // Not in the cpu hierarchy: no limit to clear (`set_limits` refused a
    // new one before we got here).
    let Some(root) = g.root(&g.layout().cpu) else {
        if limits.cpu_milli.is_some() {
            tracing::debug!(group = g.rel(), "cpu limit not enforced here; skipped");
        }
        return Ok(());
    };
    if fresh && limits.cpu_milli.is_none() {
        return Ok(());
    }
    let dir = g.dir(root);
    let quota = limits.cpu_milli.map(quota_us);
    if g.layout().v2 {
        let q = quota.map_or_else(|| "max".to_owned(), |q| q.to_string());
        fsio::write(&dir.join("cpu.max"), &format!("{q} {PERIOD_US}"))
    } else {
        fsio::write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
        let q = quota.map_or_else(|| "-1".to_owned(), |q| q.to_string());
        fsio::write(&dir.join("cpu.cfs_quota_us"), &q)
    }
}

/// CPU time in microseconds: `cpu.stat` `usage_usec` in the v2 / unified
/// tree (present in every non-root cgroup2 group, cpu controller or not),
/// else v1 `cpuacct.usage` (ns), from whichever the group is in.
pub(super) fn usage_us(g: &Cgroup) -> Result<Option<u64>, Error> {
    let l = g.layout();
    if let Some(core) = g.root(&l.core) {
        let path = g.dir(core).join("cpu.stat");
        if let Some(text) = fsio::read_opt(&path)?
            && let Some(us) = fsio::keyed_u64(&path, &text, "usage_usec")?
        {
            return Ok(Some(us));
        }
    }
    if let Some(root) = g.root(&l.cpuacct) {
        let path = g.dir(root).join("cpuacct.usage");
        if let Some(text) = fsio::read_opt(&path)? {
            return Ok(Some(fsio::parse_u64(&path, &text)? / 1000));
        }
    }
    Ok(None)
}
