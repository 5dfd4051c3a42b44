//! Memory controller: writes `mem_max`/`mem_high` and reads memory use,
//! peak and OOM kills, in v2 (`memory.max`, `memory.high`, `memory.current`,
//! `memory.peak`, `memory.events`) or v1 (`memory.limit_in_bytes`,
//! `memory.memsw.limit_in_bytes`, `memory.soft_limit_in_bytes`,
//! `memory.usage_in_bytes`, `memory.max_usage_in_bytes`,
//! `memory.oom_control`) form.
//!
//! Must not: touch other controllers' files, or change v1
//! `memory.use_hierarchy` / `oom_kill_disable` (the defaults give an OOM
//! kill inside the group).

use std::path::Path;

use super::{Cgroup, Limits, Usage, fsio};
use crate::Error;

/// v2 value: a number or `max`.
fn v2_value(v: Option<u64>) -> String {
    v.map_or_else(|| "max".to_owned(), |v| v.to_string())
}

/// v1 value: a number or `-1` (unlimited).
fn v1_value(v: Option<u64>) -> String {
    v.map_or_else(|| "-1".to_owned(), |v| v.to_string())
}

/// Writes the limits; with `fresh` (a just-created group, holding the
/// kernel's "no limit" defaults) only those that are set.
pub(super) fn apply(g: &Cgroup, limits: &Limits, fresh: bool) -> Result<(), Error> {
    let Some(root) = g.root(&g.layout().memory) else {
        if limits.mem_max.is_some() || limits.mem_high.is_some() {
            tracing::debug!(group = g.rel(), "memory limit not enforced here; skipped");
        }
        return Ok(());
    };
    let dir = g.dir(root);
    let write = |v: Option<u64>| !fresh || v.is_some();
    if g.layout().v2 {
        if write(limits.mem_high) {
            fsio::write(&dir.join("memory.high"), &v2_value(limits.mem_high))?;
        }
        if write(limits.mem_max) {
            fsio::write(&dir.join("memory.max"), &v2_value(limits.mem_max))?;
        }
    } else {
        if write(limits.mem_max) {
            apply_v1_limit(&dir, limits.mem_max)?;
        }
        if write(limits.mem_high) {
            fsio::write(
                &dir.join("memory.soft_limit_in_bytes"),
                &v1_value(limits.mem_high),
            )?;
        }
    }
    Ok(())
}

/// Sets `memory.limit_in_bytes` and, when swap accounting exists,
/// `memory.memsw.limit_in_bytes` to the same value so swap cannot dodge the
/// limit. The kernel keeps memsw >= mem at every step, so a limit at or
/// below the current memsw limit is written mem first, a higher one memsw
/// first.
fn apply_v1_limit(dir: &Path, max: Option<u64>) -> Result<(), Error> {
    let mem = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let value = v1_value(max);
    // memsw is optional: absent with swapaccount=0 or without CONFIG_MEMCG_SWAP.
    let Some(current) = fsio::read_opt(&memsw)? else {
        return fsio::write(&mem, &value);
    };
    let current = fsio::parse_u64(&memsw, &current)?;
    if max.unwrap_or(u64::MAX) <= current {
        fsio::write(&mem, &value)?;
        fsio::write(&memsw, &value)
    } else {
        fsio::write(&memsw, &value)?;
        fsio::write(&mem, &value)
    }
}

/// Reads an optional single-number file.
fn number(path: &Path) -> Result<Option<u64>, Error> {
    match fsio::read_opt(path)? {
        Some(text) => fsio::parse_u64(path, &text).map(Some),
        None => Ok(None),
    }
}

/// Reads an optional flat-keyed file's `key`.
fn keyed(path: &Path, key: &str) -> Result<Option<u64>, Error> {
    match fsio::read_opt(path)? {
        Some(text) => fsio::keyed_u64(path, &text, key),
        None => Ok(None),
    }
}

/// Memory fields of [`Usage`] (`cpu_time_us` is left `None`).
/// Memory in use now (one file: admission reads it for every running job
/// on every pass, where the whole [`usage`] would read three).
pub(super) fn current(g: &Cgroup) -> Result<Option<u64>, Error> {
    let Some(root) = g.root(&g.layout().memory) else {
        return Ok(None);
    };
    let dir = g.dir(root);
    let file = if g.layout().v2 {
        "memory.current"
    } else {
        "memory.usage_in_bytes"
    };
    number(&dir.join(file))
}

pub(super) fn usage(g: &Cgroup) -> Result<Usage, Error> {
    let Some(root) = g.root(&g.layout().memory) else {
        return Ok(Usage::default());
    };
    let dir = g.dir(root);
    if g.layout().v2 {
        Ok(Usage {
            mem_current: number(&dir.join("memory.current"))?,
            mem_peak: number(&dir.join("memory.peak"))?,
            cpu_time_us: None,
            oom_kills: keyed(&dir.join("memory.events"), "oom_kill")?,
        })
    } else {
        Ok(Usage {
            mem_current: number(&dir.join("memory.usage_in_bytes"))?,
            mem_peak: number(&dir.join("memory.max_usage_in_bytes"))?,
            cpu_time_us: None,
            oom_kills: keyed(&dir.join("memory.oom_control"), "oom_kill")?,
        })
    }
}
