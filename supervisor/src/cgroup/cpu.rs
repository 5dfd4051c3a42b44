//! CPU controller: writes `cpu_milli` as a bandwidth quota per 100 ms
//! period (v2 `cpu.max`, v1 `cpu.cfs_period_us` + `cpu.cfs_quota_us`) and
//! reads CPU time (v2 `cpu.stat` `usage_usec`, v1 `cpuacct.usage`).
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

pub(super) fn apply(g: &Cgroup, limits: &Limits) -> Result<(), Error> {
    let Some(root) = &g.layout().cpu else {
        if limits.cpu_milli.is_some() {
            tracing::debug!(group = g.rel(), "cpu limit not enforced here; skipped");
        }
        return Ok(());
    };
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

/// CPU time in microseconds: v1 `cpuacct.usage` (ns), else `cpu.stat`
/// `usage_usec` in the v2 / unified tree.
pub(super) fn usage_us(g: &Cgroup) -> Result<Option<u64>, Error> {
    let l = g.layout();
    if let Some(root) = &l.cpuacct {
        let path = g.dir(root).join("cpuacct.usage");
        if let Some(text) = fsio::read_opt(&path)? {
            return Ok(Some(fsio::parse_u64(&path, &text)? / 1000));
        }
    }
    if let Some(core) = &l.core {
        let path = g.dir(core).join("cpu.stat");
        if let Some(text) = fsio::read_opt(&path)? {
            return fsio::keyed_u64(&path, &text, "usage_usec");
        }
    }
    Ok(None)
}
