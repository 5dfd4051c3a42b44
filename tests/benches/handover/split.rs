//! The hand-over bench's split of each hand-over at the daemons' own log
//! lines (`job ended` on the releasing host, `job started` on the next):
//! converting the jobs' CLOCK_MONOTONIC records to the logs' wall-clock
//! time of day, and reading those lines.

use super::*;

/// CLOCK_REALTIME − CLOCK_MONOTONIC in seconds, modulo one day: turns a
/// record's CLOCK_MONOTONIC into the daemons' log time (seconds of the UTC
/// day).
fn mono_to_day_offset() -> f64 {
    let mut rt = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut rt) };
    let real = rt.tv_sec as f64 + rt.tv_nsec as f64 / 1e9;
    let mono = mono_ns() as f64 / 1e9;
    (real - mono).rem_euclid(86400.0)
}

/// `2026-11-21T06:59:31.779356Z` → seconds of the day.
fn seconds_of_day(stamp: &str) -> Option<f64> {
    let time = stamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// From one daemon's log: label → (release time: `cluster units released`,
/// else `job ended`; `job started` time),
/// seconds of the day. The label is the third argv element of the job's
/// `job queued` line (`sc-stamp FILE LABEL MS`).
fn log_times(log: &str) -> std::collections::HashMap<String, (Option<f64>, Option<f64>)> {
    use std::collections::HashMap;
    let mut label_of: HashMap<String, String> = HashMap::new();
    let mut out: HashMap<String, (Option<f64>, Option<f64>)> = HashMap::new();
    for line in log.lines() {
        let Some(t) = line.split_whitespace().next().and_then(seconds_of_day) else {
            continue;
        };
        let Some(id) = line
            .split(" job=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        else {
            continue;
        };
        if line.contains(" job queued ") {
            let argv = line.split("argv=[").nth(1).unwrap_or("");
            let args: Vec<&str> = argv
                .split(", ")
                .map(|a| a.trim_matches(|c| c == '"' || c == ']'))
                .collect();
            if args.len() >= 3 {
                label_of.insert(id.to_string(), args[2].to_string());
            }
        } else if let Some(label) = label_of.get(id) {
            let e = out.entry(label.clone()).or_default();
            if line.contains(" job started ") {
                e.1 = Some(t);
            } else if line.contains(" cluster units released") {
                e.0 = Some(t);
            } else if line.contains(" job ended ") {
                // Older daemons logged no release line; `job ended`
                // follows the release.
                e.0.get_or_insert(t);
            }
        }
    }
    out
}

/// Split each hand-over between hosts at the daemons' `job ended` and
/// `job started` log lines.
pub(super) fn split_handovers(c: &Cluster, holds: &[Hold]) -> Option<[Vec<f64>; 3]> {
    let off = mono_to_day_offset();
    let mut times = std::collections::HashMap::new();
    for d in &c.daemons {
        times.extend(log_times(&d.log()));
    }
    // Differences of seconds-of-day, in ms, across a midnight too.
    let gap = |a: f64, b: f64| {
        let mut d = b - a;
        if d < -43200.0 {
            d += 86400.0;
        } else if d > 43200.0 {
            d -= 86400.0;
        }
        d * 1e3
    };
    let rec = |ns: u64| (ns as f64 / 1e9 + off).rem_euclid(86400.0);
    let mut parts: [Vec<f64>; 3] = Default::default();
    for w in holds.windows(2) {
        let (prev, next) = (&w[0], &w[1]);
        if !prev.ended || host_of(prev) == host_of(next) {
            continue;
        }
        let (Some((Some(ended), _)), Some((_, Some(started)))) =
            (times.get(&prev.label), times.get(&next.label))
        else {
            continue;
        };
        parts[0].push(gap(rec(prev.last_ns), *ended));
        parts[1].push(gap(*ended, *started));
        parts[2].push(gap(*started, rec(next.start_ns)));
    }
    if parts[0].is_empty() {
        return None;
    }
    Some(parts.map(sorted))
}
