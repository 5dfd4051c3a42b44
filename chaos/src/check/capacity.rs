//! (a) Capacity. A hold runs from its job's `start` stamp to its last stamp
//! (`end`, or the last 10 ms `tick` of a job stopped from outside): the
//! effect, not what any daemon believed.
//!
//! quorum mode: never more units in use than the capacity, full stop; and
//! no job starts on a host that was in a minority component for the whole
//! of [`MINORITY_GRACE_NS`] before (CLUSTER-LOCKS §6 item 2, "start time −
//! ε"). A claim enters on a lease with at least L/2 left, and the lease
//! runs from the send time of the last renewal a quorum echoed: a host
//! cut off right after such an echo may still enter for L/2, and its
//! stopper ends the job before the lease does, before anyone else can be
//! granted (T_down > L). ε is that L/2 plus half a second of grant-to-stamp
//! lag.
//! available mode: the bound holds within every set of hosts that were
//! pairwise connected for the last `heal_bound` (each side of a partition
//! may grant up to the capacity; after a heal the excess must be gone
//! within the bound). Also in available mode: a daemon that was just
//! (re)started or continued must not grant while a holder is running on a
//! host whose daemon stayed up and whose network to it stayed intact for
//! the bound: a restart is not a partition, and the new daemon must learn
//! the existing claims before it grants.

use super::{CAPACITY, Input, Verdict, host_label, rel, usage_steps};
use crate::hosts::Mode;
use crate::stamps::host_of;
use crate::util::{MS, SEC};

/// ε of the minority-grant rule: L/2 (the least lease a claim enters on,
/// `Params::min_lease_to_enter_ms`) plus 500 ms of lag.
pub const MINORITY_GRACE_NS: u64 = (crate::hosts::LEASE_MS / 2 + 500) * MS;
use sc_tests::Hold;
use std::collections::BTreeSet;

pub fn check(input: &Input) -> Verdict {
    let mut v = Verdict::new("(a) capacity");
    let mut sums = Vec::new();
    for (res, cap) in CAPACITY {
        let steps = usage_steps(input, res);
        let peak = steps.iter().map(|s| s.1).max().unwrap_or(0);
        let holds = input
            .holds
            .iter()
            .filter(|h| h.resources.iter().any(|r| r == res))
            .count();
        sums.push(format!("{res}: {holds} holds, peak {peak}/{cap} units"));
        match input.mode {
            Mode::Quorum => global(input, res, cap, &steps, &mut v),
            Mode::Available => per_side(input, res, cap, &mut v),
        }
    }
    match input.mode {
        Mode::Quorum => minority_grants(input, &mut v),
        Mode::Available => {
            for (res, cap) in CAPACITY {
                fresh_daemon_grants(input, res, cap, &mut v);
            }
        }
    }
    v.summary = sums.join("; ");
    v
}

fn describe(input: &Input, h: &Hold) -> String {
    format!(
        "{} on {} [{} .. {}{}] token {:?}",
        h.label,
        host_label(&h.label),
        rel(input, h.start_ns),
        rel(input, h.last_ns),
        if h.ended {
            ""
        } else {
            ", stopped from outside"
        },
        h.tokens
    )
}

/// Holds of `res` running at `t` (an end at `t` is over, a start is not).
fn running_at<'a>(input: &'a Input, res: &str, t: u64) -> Vec<&'a Hold> {
    input
        .holds
        .iter()
        .filter(|h| h.resources.iter().any(|r| r == res) && h.start_ns <= t && h.last_ns > t)
        .collect()
}

fn global(input: &Input, res: &str, cap: u32, steps: &[(u64, i64)], v: &mut Verdict) {
    let mut in_excess = false;
    for &(t, used) in steps {
        if used > cap as i64 && !in_excess {
            let who: Vec<String> = running_at(input, res, t)
                .iter()
                .map(|h| describe(input, h))
                .collect();
            v.violation(
                "over capacity",
                format!(
                    "{res}: {used} units in use at {} (capacity {cap}): {}",
                    rel(input, t),
                    who.join("; ")
                ),
            );
        }
        in_excess = used > cap as i64;
    }
}

fn per_side(input: &Input, res: &str, cap: u32, v: &mut Verdict) {
    let specs = input.specs();
    let mut points: BTreeSet<u64> = input
        .holds
        .iter()
        .filter(|h| h.resources.iter().any(|r| r == res))
        .map(|h| h.start_ns)
        .collect();
    for c in input.timeline.change_times() {
        points.insert(c);
        points.insert(c + input.heal_bound);
    }
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    for t in points {
        let run = running_at(input, res, t);
        let total: u32 = run.iter().map(|h| input.units(&specs, h, res)).sum();
        if total <= cap {
            continue;
        }
        // The largest group of holders whose hosts were pairwise connected
        // for the whole heal bound: brute force, holders are few.
        let hosts: Vec<Option<usize>> = run.iter().map(|h| host_of(&h.label)).collect();
        let from = t.saturating_sub(input.heal_bound);
        let linked = |a: usize, b: usize| match (hosts[a], hosts[b]) {
            (Some(x), Some(y)) => input.timeline.connected_throughout(x, y, from, t),
            _ => false,
        };
        let k = run.len().min(16);
        let mut worst: Option<(u32, Vec<usize>)> = None;
        for mask in 1u32..(1 << k) {
            let members: Vec<usize> = (0..k).filter(|b| mask & (1 << b) != 0).collect();
            let units: u32 = members
                .iter()
                .map(|&m| input.units(&specs, run[m], res))
                .sum();
            if units <= cap || worst.as_ref().is_some_and(|(u, _)| *u >= units) {
                continue;
            }
            if members
                .iter()
                .all(|&a| members.iter().all(|&b| a >= b || linked(a, b)))
            {
                worst = Some((units, members));
            }
        }
        if let Some((units, members)) = worst {
            let labels: Vec<String> = members.iter().map(|&m| run[m].label.clone()).collect();
            if reported.insert(labels) {
                let who: Vec<String> = members.iter().map(|&m| describe(input, run[m])).collect();
                v.violation("over capacity among connected hosts", format!(
                    "{res}: {units} units in use at {} among hosts connected for the last {}s (capacity {cap}): {}",
                    rel(input, t),
                    input.heal_bound / SEC,
                    who.join("; ")
                ));
            }
        }
    }
}

fn minority_grants(input: &Input, v: &mut Verdict) {
    let q = input.n / 2 + 1;
    for h in input.holds {
        let Some(host) = host_of(&h.label) else {
            continue;
        };
        let from = h.start_ns.saturating_sub(MINORITY_GRACE_NS);
        if input
            .timeline
            .during(from, h.start_ns)
            .all(|s| s.component(host).len() < q)
        {
            v.violation("minority grant", format!(
                "minority grant: {} started while its host had been in a component of fewer than {q} hosts for {:.1} s (L/2 + 0.5 s)",
                describe(input, h),
                MINORITY_GRACE_NS as f64 / 1e9
            ));
        }
    }
}

fn fresh_daemon_grants(input: &Input, res: &str, cap: u32, v: &mut Verdict) {
    let specs = input.specs();
    for b in input
        .holds
        .iter()
        .filter(|h| h.resources.iter().any(|r| r == res))
    {
        let Some(x) = host_of(&b.label) else { continue };
        let t = b.start_ns;
        let from = t.saturating_sub(input.heal_bound);
        // Only grants by a daemon that was down or stopped within the bound:
        // the others are judged by `per_side`.
        if input.timeline.during(from, t).all(|s| s.up(x)) {
            continue;
        }
        let others: Vec<&Hold> = running_at(input, res, t)
            .into_iter()
            .filter(|a| a.label != b.label && a.start_ns < t)
            .filter(|a| {
                host_of(&a.label).is_some_and(|y| {
                    y != x
                        && input
                            .timeline
                            .during(from, t)
                            .all(|s| s.up(y) && s.net_connected(x, y))
                })
            })
            .collect();
        let used: u32 = others
            .iter()
            .map(|a| input.units(&specs, a, res))
            .sum::<u32>()
            + input.units(&specs, b, res);
        if used > cap {
            let who: Vec<String> = others.iter().map(|a| describe(input, a)).collect();
            v.violation("grant by a fresh daemon beside a reachable holder", format!(
                "{res}: {} was granted by a daemon restarted or continued within the last {}s, while reachable hosts held {res}: {} ({used} units, capacity {cap})",
                describe(input, b),
                input.heal_bound / SEC,
                who.join("; ")
            ));
        }
    }
}
