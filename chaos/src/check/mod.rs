//! The invariants (issue 6 §4, CLUSTER-LOCKS §6), judged only from records
//! the cluster cannot fake: the jobs' own stamps (CLOCK_MONOTONIC), the
//! clients' exit codes and JSON events as the harness saw them, the
//! harness's topology timeline, the daemons' history files, and what is
//! left on the machine after teardown.

mod capacity;
mod jobs;
mod liveness;
#[cfg(test)]
mod tests;
mod tokens;

pub use jobs::history_of;

use crate::hosts::Mode;
use crate::topology::Timeline;
use crate::workload::{ClientRecord, JobSpec};
use sc_tests::Hold;
use serde_json::Value;
use std::collections::HashMap;

pub const CAPACITY: [(&str, u32); 2] = [("e2e", 1), ("gpu", 2)];

pub struct Input<'a> {
    pub mode: Mode,
    pub n: usize,
    pub holds: &'a [Hold],
    pub clients: &'a [ClientRecord],
    pub timeline: &'a Timeline,
    /// Available mode: hosts connected this long count as one side.
    pub heal_bound: u64,
    /// A cluster healthy this long is "stable" for the liveness check.
    pub stable_bound: u64,
    /// How long a job may wait while its resources sit free (stable cluster).
    pub liveness_bound: u64,
    /// Per host: the records of its history store.
    pub histories: &'a [Vec<Value>],
    /// Per host: job records (`state/jobs/*.json`) left after teardown.
    pub leftover_records: &'a [Vec<String>],
    /// Labels of clients still running when the quiet tail ran out.
    pub undrained: &'a [String],
    /// Labels the stamp log shows starting more than once.
    pub restarted: &'a [String],
    /// Start and end of the fault phase (for relative times in reports).
    pub t0: u64,
    pub faults_end: u64,
}

impl Input<'_> {
    pub fn specs(&self) -> HashMap<&str, &JobSpec> {
        self.clients
            .iter()
            .map(|c| (c.spec.label.as_str(), &c.spec))
            .collect()
    }

    /// Units of `res` a hold took (from the job's `--needs`).
    pub fn units(&self, specs: &HashMap<&str, &JobSpec>, h: &Hold, res: &str) -> u32 {
        if !h.resources.iter().any(|r| r == res) {
            return 0;
        }
        specs
            .get(h.label.as_str())
            .map(|s| s.units(res))
            .unwrap_or(1)
            .max(1)
    }
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub name: &'static str,
    pub pass: bool,
    pub summary: String,
    /// Violations, a few of each kind.
    pub details: Vec<String>,
    /// How many violations of each kind.
    pub kinds: std::collections::BTreeMap<&'static str, usize>,
    /// Reported, never failed on.
    pub notes: Vec<String>,
}

impl Verdict {
    fn new(name: &'static str) -> Verdict {
        Verdict {
            name,
            pass: true,
            summary: String::new(),
            details: Vec::new(),
            kinds: Default::default(),
            notes: Vec::new(),
        }
    }

    /// Record a violation of `kind`; the first few of each kind are shown.
    fn violation(&mut self, kind: &'static str, line: String) {
        self.pass = false;
        let n = self.kinds.entry(kind).or_default();
        *n += 1;
        if *n <= 5 {
            self.details.push(format!("[{kind}] {line}"));
        }
    }
}

pub fn check_all(input: &Input) -> Vec<Verdict> {
    vec![
        capacity::check(input),
        tokens::check(input),
        jobs::check(input),
        liveness::check(input),
    ]
}

/// Units of `res` held at each change, from the holds: `(t, in use)`
/// sorted by time; ends sort before starts at one instant.
pub fn usage_steps(input: &Input, res: &str) -> Vec<(u64, i64)> {
    let specs = input.specs();
    let mut edges: Vec<(u64, i64)> = Vec::new();
    for h in input.holds {
        let u = input.units(&specs, h, res) as i64;
        if u > 0 {
            edges.push((h.start_ns, u));
            edges.push((h.last_ns, -u));
        }
    }
    edges.sort_by_key(|&(t, d)| (t, d));
    let mut cur = 0;
    edges
        .into_iter()
        .map(|(t, d)| {
            cur += d;
            (t, cur)
        })
        .collect()
}

/// Units in use at `t` given [`usage_steps`].
pub fn usage_at(steps: &[(u64, i64)], t: u64) -> i64 {
    let k = steps.partition_point(|(s, _)| *s <= t);
    if k == 0 { 0 } else { steps[k - 1].1 }
}

/// `t` as seconds since the fault phase started.
pub fn rel(input: &Input, t: u64) -> String {
    let d = t as i128 - input.t0 as i128;
    format!("{:+.2}s", d as f64 / 1e9)
}

/// Display name of host `i` for a label.
pub fn host_label(label: &str) -> String {
    match crate::stamps::host_of(label) {
        Some(i) => crate::hosts::host_name(i),
        None => "?".into(),
    }
}
