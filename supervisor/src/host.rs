//! Host readings for admission and pressure: total/available memory from
//! `/proc/meminfo`, memory pressure (`some avg10`) from
//! `/proc/pressure/memory`, and the usable CPU count. Pure parsers plus
//! thin readers.
//!
//! Must not: cache readings, keep state, or touch cgroups.

use std::path::Path;

use crate::Error;

const MEMINFO: &str = "/proc/meminfo";
const MEMORY_PSI: &str = "/proc/pressure/memory";

/// Host memory in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`: what can be allocated without swapping.
    pub available: u64,
}

/// The value in bytes of a `Key:   123 kB` line.
fn kb_field(text: &str, key: &str) -> Result<u64, Error> {
    let bad = |detail: String| Error::Parse {
        path: MEMINFO.into(),
        detail,
    };
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .ok_or_else(|| bad(format!("no {key} line")))?;
    let mut it = line.split_whitespace();
    let n: u64 = it
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad(format!("{key}: not a number: {line:?}")))?;
    match it.next() {
        Some("kB") => n
            .checked_mul(1024)
            .ok_or_else(|| bad(format!("{key}: too large"))),
        None => Ok(n),
        Some(unit) => Err(bad(format!("{key}: unknown unit {unit:?}"))),
    }
}

/// Parses the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, Error> {
    Ok(MemInfo {
        total: kb_field(text, "MemTotal")?,
        available: kb_field(text, "MemAvailable")?,
    })
}

/// Reads and parses `/proc/meminfo`.
pub fn read_meminfo() -> Result<MemInfo, Error> {
    let text = crate::cgroup::read_pseudo(Path::new(MEMINFO)).map_err(|source| Error::Read {
        path: Path::new(MEMINFO).to_owned(),
        source,
    })?;
    parse_meminfo(&text)
}

/// `avg10` of the `some` line of a PSI file (percent of the last 10 s in
/// which some task stalled), e.g. `some avg10=1.23 avg60=… total=…` → 1.23.
pub fn parse_psi_some_avg10(text: &str) -> Option<f64> {
    let rest = text.lines().find_map(|l| l.strip_prefix("some "))?;
    let v = rest
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?;
    v.parse().ok().filter(|x: &f64| x.is_finite())
}

/// Memory pressure from `/proc/pressure/memory`; `None` without PSI
/// (kernel without `CONFIG_PSI` or booted with `psi=0`).
pub fn read_memory_psi() -> Option<f64> {
    parse_psi_some_avg10(&crate::cgroup::read_pseudo(Path::new(MEMORY_PSI)).ok()?)
}

/// CPUs this process may use (affinity and cgroup quota aware), at least 1.
pub fn cpu_count() -> u32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO_TEXT: &str = "MemTotal:       24681472 kB\nMemFree:        23465092 kB\n\
        MemAvailable:   24173568 kB\nBuffers:           12 kB\nHugePages_Total:       0\n";

    #[test]
    fn meminfo() {
        let m = parse_meminfo(MEMINFO_TEXT).expect("parses");
        assert_eq!(m.total, 24_681_472 * 1024);
        assert_eq!(m.available, 24_173_568 * 1024);
    }

    #[test]
    fn meminfo_errors() {
        assert!(parse_meminfo("MemTotal: 10 kB\n").is_err());
        assert!(parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB\n").is_err());
        assert!(parse_meminfo("").is_err());
        let e = parse_meminfo("MemTotal: 1 kB\n")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("MemAvailable")));
    }

    #[test]
    fn meminfo_real() {
        let m = read_meminfo().expect("/proc/meminfo readable on Linux");
        assert!(m.total > 0 && m.available <= m.total);
    }

    #[test]
    fn psi() {
        let t = "some avg10=12.50 avg60=3.00 avg300=0.10 total=123456\n\
                 full avg10=1.00 avg60=0.00 avg300=0.00 total=100\n";
        assert_eq!(parse_psi_some_avg10(t), Some(12.5));
        assert_eq!(parse_psi_some_avg10("full avg10=1.00\n"), None);
        assert_eq!(parse_psi_some_avg10("some avg10=nan\n"), None);
        assert_eq!(parse_psi_some_avg10(""), None);
        if let Some(v) = read_memory_psi() {
            assert!(v >= 0.0);
        }
    }

    #[test]
    fn cpus() {
        assert!(cpu_count() >= 1);
    }
}
