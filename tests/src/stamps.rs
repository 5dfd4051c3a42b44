//! Records written by `sc-stamp` jobs (see `src/bin/sc-stamp.rs`): when each
//! job held which resource, from the jobs' own CLOCK_MONOTONIC stamps, and
//! the checks the cluster-resource tests make on them.

use crate::{ScChild, TestDaemon};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// One job's run as its records tell it.
#[derive(Debug, Clone)]
pub struct Hold {
    pub label: String,
    pub job: String,
    pub resources: Vec<String>,
    pub tokens: Vec<u64>,
    pub start_ns: u64,
    /// The `end` stamp, or the last `tick` of a job stopped from outside.
    pub last_ns: u64,
    pub ended: bool,
}

/// Every run recorded in `path`, in start order. Keyed by label: give each
/// job a unique label.
pub fn read_holds(path: &Path) -> Vec<Hold> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut by_label: BTreeMap<String, Hold> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 6 {
            continue;
        }
        let Ok(t) = f[2].parse::<u64>() else { continue };
        let h = by_label.entry(f[1].to_string()).or_insert_with(|| Hold {
            label: f[1].to_string(),
            job: f[3].to_string(),
            resources: f[4].split(',').map(str::to_string).collect(),
            tokens: f[5].split(',').filter_map(|t| t.parse().ok()).collect(),
            start_ns: t,
            last_ns: t,
            ended: false,
        });
        match f[0] {
            "start" => h.start_ns = t,
            "end" => {
                h.ended = true;
                h.last_ns = h.last_ns.max(t);
            }
            _ => h.last_ns = h.last_ns.max(t),
        }
    }
    let mut v: Vec<Hold> = by_label.into_values().collect();
    v.sort_by_key(|h| h.start_ns);
    v
}

/// The most runs holding `res` at one instant.
pub fn max_concurrent(holds: &[Hold], res: &str) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for h in holds
        .iter()
        .filter(|h| h.resources.iter().any(|r| r == res))
    {
        edges.push((h.start_ns, 1));
        // Ends sort before starts at the same instant: touching is not overlap.
        edges.push((h.last_ns, -1));
    }
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

/// The fencing tokens of `res` in start order.
pub fn tokens_of(holds: &[Hold], res: &str) -> Vec<u64> {
    holds
        .iter()
        .filter_map(|h| {
            let i = h.resources.iter().position(|r| r == res)?;
            h.tokens.get(i).copied()
        })
        .collect()
}

/// `sc exec --json --needs NEEDS -- sc-stamp LOG LABEL MS` on `d`, in the
/// background. `stamp` is the `sc-stamp` binary (`env!("CARGO_BIN_EXE_sc-stamp")`
/// in the test that calls it).
pub fn stamp_job(
    stamp: &str,
    d: &TestDaemon,
    needs: &str,
    log: &Path,
    label: &str,
    ms: u64,
) -> ScChild {
    d.spawn(&[
        "exec",
        "--json",
        "--needs",
        needs,
        "--",
        stamp,
        &log.display().to_string(),
        label,
        &ms.to_string(),
    ])
}

/// A long-running holder of `res` on `holder` (started), and a short job
/// waiting for it on `waiter` (its first `waiting` event seen): the opening
/// of every hand-over and failover test.
pub fn holder_and_waiter(
    stamp: &str,
    holder: &TestDaemon,
    waiter: &TestDaemon,
    res: &str,
    log: &Path,
) -> (ScChild, ScChild) {
    let mut h = stamp_job(stamp, holder, res, log, "holder", 60_000);
    h.wait_event("started", Duration::from_secs(20));
    let mut w = stamp_job(stamp, waiter, res, log, "next", 10);
    w.wait_event("waiting", Duration::from_secs(20));
    (h, w)
}
