//! (d) Every waiting job runs within a bound once its resources are free
//! and its host is alive and connected.
//!
//! Two checks. The drain: after the faults stop (everything healed,
//! restarted, continued) the quiet tail must empty every queue. The idle
//! resource: while the whole cluster has been healthy for `stable_bound`,
//! a job whose latest wait reason is a cluster resource must not wait more
//! than `liveness_bound` while the stamps show every resource it needs with
//! enough free units. (Memory, services and the local queue order are
//! host-local reasons, judged by the drain only.) Here a resource counts
//! as in use from a job's `started` event to its client's exit as well as
//! over its stamps: a grant whose command never ran (or ran briefly) still
//! used the resource for a moment, and is not an idle resource.
//!
//! Entry follows claim order (CLUSTER-LOCKS §5.3 R3): a claim waits for
//! every earlier claim on the resource, even one that itself waits for
//! another resource. So `gpu:2` sits behind an `e2e,gpu` claim whose `e2e`
//! is held, with `gpu` idle; letting it overtake would starve the
//! two-resource job. Such a wait is not judged: the job said it had claims
//! ahead, and another waiting job with the same resource had one of its
//! own resources in use. The head of that chain is still judged, so a
//! stuck claim is still caught.

use super::{CAPACITY, Input, Verdict, rel, usage_at};
use crate::hosts::host_name;
use crate::util::{MS, secs};
use crate::workload::ClientRecord;
use serde_json::Value;
use std::collections::HashMap;

pub fn check(input: &Input) -> Verdict {
    let mut v = Verdict::new("(d) waiting jobs run");
    let by_label: HashMap<&str, &crate::workload::ClientRecord> = input
        .clients
        .iter()
        .map(|c| (c.spec.label.as_str(), c))
        .collect();
    for label in input.undrained {
        let last = by_label
            .get(label.as_str())
            .and_then(|c| c.events.last())
            .map(|(_, e)| e.to_string())
            .unwrap_or_default();
        v.violation(
            "not drained by the quiet tail",
            format!("{label}: still not done when the quiet tail ran out; last event {last}"),
        );
    }
    let steps: HashMap<&str, Vec<(u64, i64)>> = CAPACITY
        .iter()
        .map(|(r, _)| (*r, granted_steps(input, r)))
        .collect();
    let cap: HashMap<&str, i64> = CAPACITY.iter().map(|(r, c)| (*r, *c as i64)).collect();
    let free_at = |needs: &[(String, u32)], t: u64| {
        needs.iter().all(|(r, u)| {
            steps
                .get(r.as_str())
                .is_some_and(|s| cap[r.as_str()] - usage_at(s, t) >= *u as i64)
        })
    };
    let mut waits: Vec<u64> = Vec::new();
    let mut judged_ns = 0u64;
    let mut behind_ns = 0u64;
    for c in input.clients {
        let Some((queued, _)) = c.event("queued") else {
            continue;
        };
        let end = wait_end(c).unwrap_or(input.faults_end);
        if let Some((_, e)) = c.event("started") {
            waits.push(e["waited_ms"].as_u64().unwrap_or(0));
        }
        let mut t = *queued;
        let mut run_from: Option<u64> = None;
        let mut worst = 0u64;
        let mut worst_at = 0u64;
        while t < end {
            let stable = input
                .timeline
                .healthy_since(t)
                .is_some_and(|s| t.saturating_sub(s) >= input.stable_bound);
            let wait = last_wait(c, t).and_then(|e| e["detail"].get("Resource"));
            let on_resource = wait.is_some();
            let mut free = free_at(&c.spec.needs, t);
            if stable
                && on_resource
                && free
                && wait.is_some_and(|w| behind_blocked(input, c, w, t, &free_at))
            {
                behind_ns += 100 * MS;
                free = false;
            }
            if stable && on_resource {
                judged_ns += 100 * MS;
            }
            if stable && on_resource && free {
                let from = *run_from.get_or_insert(t);
                if t - from > worst {
                    worst = t - from;
                    worst_at = from;
                }
            } else {
                run_from = None;
            }
            t += 100 * MS;
        }
        if worst > input.liveness_bound {
            let said = last_wait(c, worst_at + worst)
                .and_then(|e| e["reason"].as_str())
                .unwrap_or("?");
            v.violation("waited while its resources were free", format!(
                "{} on {} (needs {}) waited {} from {} while the cluster was stable and its resources were free; it last said \"{said}\"{}",
                c.spec.label,
                host_name(c.spec.host),
                c.spec.needs_arg(),
                secs(worst),
                rel(input, worst_at),
                others_waiting(input, c, worst_at + worst / 2)
            ));
        }
    }
    waits.sort_unstable();
    let pct = |p: usize| {
        waits
            .get((waits.len() * p / 100).min(waits.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    v.summary = format!(
        "{} undrained; {} of resource waits judged against the {} bound",
        input.undrained.len(),
        secs(judged_ns),
        secs(input.liveness_bound)
    );
    if behind_ns > 0 {
        v.notes.push(format!(
            "{} of waits behind an earlier claim that waited for another resource in use (claim order, not judged)",
            secs(behind_ns)
        ));
    }
    v.notes.push(format!(
        "waited before start: p50 {} ms, p90 {} ms, max {} ms ({} jobs)",
        pct(50),
        pct(90),
        waits.last().copied().unwrap_or(0),
        waits.len()
    ));
    v
}

/// For a violation's report: every other job that waited at `t` for a
/// resource `c` needs, with its host and what it said then, so that the
/// head of a stuck queue is named even when the daemon logs are gone (CI
/// keeps only this report).
fn others_waiting(input: &Input, c: &ClientRecord, t: u64) -> String {
    let mut out = Vec::new();
    for k in input.clients {
        if k.spec.label == c.spec.label
            || !k
                .spec
                .needs
                .iter()
                .any(|(r, _)| c.spec.needs.iter().any(|(q, _)| q == r))
            || k.event("queued").is_none_or(|(q, _)| *q > t)
            || wait_end(k).is_some_and(|e| e <= t)
        {
            continue;
        }
        let said = last_wait(k, t)
            .and_then(|e| e["reason"].as_str())
            .unwrap_or("(no waiting event yet)");
        out.push(format!(
            "{} on {} (needs {}): \"{said}\"",
            k.spec.label,
            host_name(k.spec.host),
            k.spec.needs_arg()
        ));
    }
    if out.is_empty() {
        return "; no other job waited for its resources then".into();
    }
    format!("; waiting with it at {}: {}", rel(input, t), out.join(", "))
}

/// Are all these needs free at this instant (from the stamps)?
type FreeAt<'a> = dyn Fn(&[(String, u32)], u64) -> bool + 'a;

/// When the client stopped waiting: started, exited or killed, first.
fn wait_end(c: &ClientRecord) -> Option<u64> {
    [
        c.event("started").map(|(t, _)| *t),
        c.exited_ns,
        c.killed_ns,
    ]
    .into_iter()
    .flatten()
    .min()
}

/// The client's latest `waiting` event at or before `t`.
fn last_wait(c: &ClientRecord, t: u64) -> Option<&Value> {
    c.events
        .iter()
        .take_while(|(et, _)| *et <= t)
        .filter(|(_, e)| e["event"] == "waiting")
        .last()
        .map(|(_, e)| e)
}

/// Does `c`, waiting with claims ahead on the resource its wait names, sit
/// behind another job that waits for that resource too and has one of its
/// own needs in use at `t`?
fn behind_blocked(
    input: &Input,
    c: &ClientRecord,
    wait: &Value,
    t: u64,
    free_at: &FreeAt<'_>,
) -> bool {
    let ahead = wait["ahead"].as_u64().unwrap_or(0);
    let Some(res) = wait["name"].as_str() else {
        return false;
    };
    if ahead == 0 {
        return false;
    }
    input.clients.iter().any(|k| {
        if k.spec.label == c.spec.label || !k.spec.needs.iter().any(|(r, _)| r == res) {
            return false;
        }
        let Some((queued, _)) = k.event("queued") else {
            return false;
        };
        let gone = wait_end(k).unwrap_or(u64::MAX);
        *queued <= t && t < gone && !free_at(&k.spec.needs, t)
    })
}

/// Units of `res` granted at each change: from a client's `started` event
/// (or its first stamp) to its exit (or its last stamp), whichever is wider.
fn granted_steps(input: &Input, res: &str) -> Vec<(u64, i64)> {
    let holds: HashMap<&str, &sc_tests::Hold> =
        input.holds.iter().map(|h| (h.label.as_str(), h)).collect();
    let mut edges: Vec<(u64, i64)> = Vec::new();
    for c in input.clients {
        let u = c.spec.units(res) as i64;
        let hold = holds.get(c.spec.label.as_str());
        let from = [
            c.event("started").map(|(t, _)| *t),
            hold.map(|h| h.start_ns),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(from) = from.filter(|_| u > 0) else {
            continue;
        };
        let to = [c.exited_ns, hold.map(|h| h.last_ns)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(input.faults_end);
        edges.push((from, u));
        edges.push((to.max(from), -u));
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
