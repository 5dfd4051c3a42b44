//! Sizes and durations as people type them.
//!
//! Sizes: a number (decimals allowed) and an optional unit. `K`, `M`, `G`,
//! `T` and `KiB`…`TiB` are binary (1024-based, as `docker run -m` and
//! systemd's `MemoryMax=` read them); `KB`, `MB`, `GB`, `TB` are decimal;
//! `B` or no unit is bytes. Case does not matter.
//!
//! Durations: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`,
//! `d` (`90s`, `5m`, `1h30m`, `1.5s`); a bare number is seconds.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "invalid size {0:?}: expected a number and an optional unit such as 512M, 2G or 1.5GiB"
    )]
    BadSize(String),
    #[error("invalid duration {0:?}: expected e.g. 500ms, 90s, 5m, 1h30m")]
    BadDuration(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// Parse a size such as `512M`, `2G`, `1.5GiB`, `100MB`, `4096`.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let s = input.trim();
    let bad = || UnitError::BadSize(input.to_string());
    let (num, unit) = split_number(s);
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let bytes = (value * mult).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(UnitError::Overflow(input.to_string()));
    }
    Ok(bytes as u64)
}

/// Parse a duration such as `500ms`, `90s`, `5m`, `1h30m`, `2`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let s = input.trim();
    let bad = || UnitError::BadDuration(input.to_string());
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let (num, after) = split_number(rest);
        if num.is_empty() {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let secs = match &after[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += value * secs;
        rest = &after[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| UnitError::Overflow(input.to_string()))
}

/// `1536M` → "1.5 GiB": for people, not for parsing back exactly.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Thousandths of a CPU as a short decimal: 1500 → "1.5", 2000 → "2".
pub fn format_cpus(milli: u32) -> String {
    if milli.is_multiple_of(1000) {
        format!("{}", milli / 1000)
    } else {
        let s = format!("{:.3}", milli as f64 / 1000.0);
        s.trim_end_matches('0').to_string()
    }
}

/// A duration as `3m12s`, `450ms`, `2h05m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Milliseconds as a compact, whole-unit duration: `450ms`, `45s`, `3m12s`,
/// `1h02m`. For one-line statuses ("held 3m12s"), where `45.0s` would be
/// noise; [`format_duration`] keeps its tenth of a second for short waits.
pub fn format_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        for bad in ["", "G", "1.2.3G", "12X", "-1G", ".", "1 G B"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            parse_size("99999999999T"),
            Err(UnitError::Overflow(_))
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "s", "5x", "m5", "-3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
        assert_eq!(format_size(12), "12 B");
        assert_eq!(format_cpus(1500), "1.5");
        assert_eq!(format_cpus(2000), "2");
        assert_eq!(format_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(format_duration(Duration::from_millis(450)), "450ms");
    }

    #[test]
    fn compact_durations() {
        assert_eq!(format_duration_ms(0), "0ms");
        assert_eq!(format_duration_ms(450), "450ms");
        assert_eq!(format_duration_ms(1000), "1s");
        assert_eq!(format_duration_ms(45_999), "45s");
        assert_eq!(format_duration_ms(60_000), "1m00s");
        assert_eq!(format_duration_ms(192_000), "3m12s");
        assert_eq!(format_duration_ms(3_599_999), "59m59s");
        assert_eq!(format_duration_ms(3_720_000), "1h02m");
        assert_eq!(format_duration_ms(100 * 3_600_000), "100h00m");
    }
}
