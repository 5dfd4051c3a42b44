//! The `[host]` keys of the pressure rules (`crate::pressure`): when the
//! daemon freezes jobs because memory runs low, and when it thaws them.
//!
//! ```toml
//! [host]
//! pressure = true             # freeze jobs under memory pressure
//! pressure_mem_low = "512M"   # MemAvailable watermark (default: 1/32 of memory, at most 512M)
//! pressure_psi = 20.0         # memory PSI `some avg10` threshold, percent
//! pressure_hold_down = "30s"  # pressure must stay low this long before each thaw
//! pressure_freeze_gap = "10s" # at least this long between two freezes
//! pressure_poll = "1s"        # how often the readings are taken
//! ```

use super::HostSection;
use sc_protocol::units::{format_duration, parse_duration, parse_size};
use std::time::Duration;

/// The pressure keys with units parsed; `mem_low` is resolved against the
/// memory capacity by the daemon ([`PressureConfig::mem_low_for`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PressureConfig {
    pub enabled: bool,
    pub mem_low: Option<u64>,
    pub psi: f64,
    pub hold_down: Duration,
    pub freeze_gap: Duration,
    pub poll: Duration,
}

pub const DEFAULT_PSI: f64 = 20.0;
pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(30);
pub const DEFAULT_FREEZE_GAP: Duration = Duration::from_secs(10);
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Below this, reading /proc and every job's cgroup would cost more than
/// it tells.
const POLL_MIN: Duration = Duration::from_millis(100);

impl PressureConfig {
    /// The watermark: configured, or 1/32 of memory capped at 512 MiB —
    /// about where the kernel starts reclaiming hard on a dev host.
    pub fn mem_low_for(&self, mem_total: u64) -> u64 {
        self.mem_low.unwrap_or((mem_total / 32).min(512 << 20))
    }
}

/// `(key, message)` on a bad value.
pub fn resolve(h: &HostSection) -> Result<PressureConfig, (&'static str, String)> {
    let dur = |key: &'static str, v: &Option<String>, default: Duration| match v {
        Some(t) => parse_duration(t).map_err(|e| (key, e.to_string())),
        None => Ok(default),
    };
    let psi = h.pressure_psi.unwrap_or(DEFAULT_PSI);
    if !(psi.is_finite() && psi > 0.0 && psi <= 100.0) {
        return Err((
            "pressure_psi",
            format!("must be a percentage in (0, 100], got {psi}"),
        ));
    }
    let hold_down = dur(
        "pressure_hold_down",
        &h.pressure_hold_down,
        DEFAULT_HOLD_DOWN,
    )?;
    if hold_down.is_zero() {
        return Err(("pressure_hold_down", "must be more than 0".into()));
    }
    let poll = dur("pressure_poll", &h.pressure_poll, DEFAULT_POLL)?;
    if poll < POLL_MIN {
        return Err((
            "pressure_poll",
            format!(
                "must be at least {}, got {}",
                format_duration(POLL_MIN),
                format_duration(poll)
            ),
        ));
    }
    Ok(PressureConfig {
        enabled: h.pressure.unwrap_or(true),
        mem_low: h
            .pressure_mem_low
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| ("pressure_mem_low", e.to_string()))?,
        psi,
        hold_down,
        freeze_gap: dur(
            "pressure_freeze_gap",
            &h.pressure_freeze_gap,
            DEFAULT_FREEZE_GAP,
        )?,
        poll,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(f: impl FnOnce(&mut HostSection)) -> HostSection {
        let mut h = HostSection::default();
        f(&mut h);
        h
    }

    #[test]
    fn defaults_and_values() {
        let d = resolve(&HostSection::default()).unwrap();
        assert!(d.enabled);
        assert_eq!(d.psi, DEFAULT_PSI);
        assert_eq!(d.hold_down, DEFAULT_HOLD_DOWN);
        assert_eq!(d.mem_low_for(64 << 30), 512 << 20);
        assert_eq!(d.mem_low_for(4 << 30), 128 << 20);
        let r = resolve(&host(|h| {
            h.pressure = Some(false);
            h.pressure_mem_low = Some("1G".into());
            h.pressure_psi = Some(100.0);
            h.pressure_hold_down = Some("2s".into());
            h.pressure_freeze_gap = Some("0s".into());
            h.pressure_poll = Some("200ms".into());
        }))
        .unwrap();
        assert!(!r.enabled);
        assert_eq!(r.mem_low_for(64 << 30), 1 << 30);
        assert_eq!(r.hold_down, Duration::from_secs(2));
        assert_eq!(r.freeze_gap, Duration::ZERO);
        assert_eq!(r.poll, Duration::from_millis(200));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(HostSection, &str)> = vec![
            (host(|h| h.pressure_psi = Some(0.0)), "pressure_psi"),
            (host(|h| h.pressure_psi = Some(150.0)), "pressure_psi"),
            (
                host(|h| h.pressure_hold_down = Some("0s".into())),
                "pressure_hold_down",
            ),
            (
                host(|h| h.pressure_poll = Some("10ms".into())),
                "pressure_poll",
            ),
            (
                host(|h| h.pressure_mem_low = Some("lots".into())),
                "pressure_mem_low",
            ),
            (
                host(|h| h.pressure_freeze_gap = Some("soon".into())),
                "pressure_freeze_gap",
            ),
        ];
        for (h, key) in cases {
            let (k, msg) = resolve(&h).unwrap_err();
            assert_eq!(k, key, "{msg}");
            assert!(!msg.is_empty());
        }
    }
}
