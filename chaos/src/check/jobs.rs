//! (c) Every job a daemon acknowledged (its client printed `queued`) ends
//! exactly once, with a recorded reason: the client exited with a final
//! event (`exited`, `lost_lease` or `error`) or was killed by the harness,
//! the job's host has exactly one history record for it (naming it),
//! no job record is left in a state dir, and no job started twice. Also:
//! a job sc reported `started` that ended by a signal must have run its
//! command (its first stamp), unless the harness killed its client or sc
//! said why it stopped it (`cancelled`, `lost_lease`).

use super::{Input, Verdict, host_label};
use crate::hosts::host_name;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The records of a stopped daemon's history store (an unreadable store
/// is said on stderr and counts as empty, so its jobs show as unrecorded).
pub fn history_of(state_dir: &Path) -> Vec<Value> {
    sc_tests::history_of(state_dir).unwrap_or_else(|e| {
        eprintln!("chaos: cannot read the history store: {e}");
        Vec::new()
    })
}

const FINAL: [&str; 3] = ["exited", "lost_lease", "error"];

/// A short reason for a client's end, for the tallies.
fn reason(c: &crate::workload::ClientRecord) -> String {
    if c.killed_ns.is_some() {
        return "client killed by the harness".into();
    }
    let code = c.code.map(|c| c.to_string()).unwrap_or("?".into());
    match c.last_event() {
        Some(e) if e["event"] == "error" => {
            // Keep the kind of error, not its ids and paths, so the tally
            // groups alike ends.
            let msg: Vec<String> = e["message"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .take(10)
                .map(|w| {
                    if w.contains('/') {
                        "PATH".into()
                    } else if w.trim_end_matches([':', ',']).parse::<u64>().is_ok() {
                        "N".into()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            let msg = msg.join(" ");
            format!("exit {code}: error: {msg}")
        }
        Some(e) if e["event"] == "lost_lease" => format!("exit {code}: lost the lease"),
        Some(e) if e["event"] == "exited" => {
            let preempted = c.events.iter().any(|(_, e)| {
                e["event"] == "cancelled"
                    && e["reason"].as_str().is_some_and(|r| r.contains("preempt"))
            });
            if preempted {
                format!("exit {code}: preempted")
            } else {
                format!("exit {code}")
            }
        }
        Some(e) => format!("exit {code} after {}", e["event"]),
        None => format!(
            "exit {code}, no event: {}",
            c.text.last().cloned().unwrap_or_default()
        ),
    }
}

pub fn check(input: &Input) -> Verdict {
    let mut v = Verdict::new("(c) every acknowledged job ends exactly once");
    let mut by_id: Vec<HashMap<u64, Vec<&Value>>> = vec![HashMap::new(); input.n];
    for (h, recs) in input.histories.iter().enumerate() {
        for r in recs {
            if let Some(id) = r["id"].as_u64() {
                by_id[h].entry(id).or_default().push(r);
            }
        }
    }
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    let mut not_acked: BTreeMap<String, u32> = BTreeMap::new();
    let mut acked = 0;
    for c in input.clients {
        let label = &c.spec.label;
        if let Some(e) = &c.spawn_error {
            v.violation(
                "harness could not start sc exec",
                format!("{label}: the harness could not start sc exec: {e}"),
            );
            continue;
        }
        let Some(id) = c.job_id() else {
            *not_acked.entry(reason(c)).or_default() += 1;
            continue;
        };
        acked += 1;
        *tally.entry(reason(c)).or_default() += 1;
        let host = c.spec.host;
        if c.exited_ns.is_none() {
            v.violation(
                "sc exec never exited",
                format!(
                    "{label} (job {id} on {}): its sc exec never exited",
                    host_name(host)
                ),
            );
        } else if c.killed_ns.is_none()
            && !c
                .last_event()
                .is_some_and(|e| FINAL.iter().any(|f| e["event"] == *f))
        {
            v.violation("no final event", format!(
                "{label} (job {id} on {}): sc exec exited {:?} without a final event (last: {:?}; stderr: {:?})",
                host_name(host),
                c.code,
                c.last_event().map(|e| e.to_string()),
                c.text.last()
            ));
        }
        match by_id[host].get(&id).map(|r| r.as_slice()).unwrap_or(&[]) {
            [] => v.violation("no history record", format!(
                "{label} (job {id} on {}): acknowledged, but {} has no history record of its end (client: {})",
                host_name(host),
                host_name(host),
                reason(c)
            )),
            [r] => {
                if r["name"].as_str() != Some(label) {
                    v.violation("history record names another job", format!(
                        "{label} (job {id} on {}): the history record of job {id} names {}",
                        host_name(host),
                        r["name"]
                    ));
                }
            }
            many => v.violation("several history records", format!(
                "{label} (job {id} on {}): {} history records: {}",
                host_name(host),
                many.len(),
                many.iter().map(|r| r["outcome"].to_string()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    let stamped: std::collections::HashSet<&str> =
        input.holds.iter().map(|h| h.label.as_str()).collect();
    for c in input.clients {
        let killed_by_sc = c
            .events
            .iter()
            .any(|(_, e)| e["event"] == "cancelled" || e["event"] == "lost_lease");
        let signalled = c
            .last_event()
            .is_some_and(|e| e["event"] == "exited" && e["signal"].is_number());
        if c.event("started").is_some()
            && signalled
            && c.killed_ns.is_none()
            && !killed_by_sc
            && !stamped.contains(c.spec.label.as_str())
        {
            v.violation("started but its command never ran", format!(
                "{} (job {} on {}): sc said it started, then it ended by signal {} (sc exec exit {:?}), but its command never ran",
                c.spec.label,
                c.job_id().unwrap_or(0),
                host_name(c.spec.host),
                c.last_event().map(|e| e["signal"].to_string()).unwrap_or_default(),
                c.code
            ));
        }
    }
    for label in input.restarted {
        v.violation(
            "command started twice",
            format!(
                "{label} on {}: its command started more than once",
                host_label(label)
            ),
        );
    }
    for (h, left) in input.leftover_records.iter().enumerate() {
        for f in left {
            v.violation(
                "job record left in a state dir",
                format!(
                    "{}: job record {f} left in the state dir after teardown",
                    host_name(h)
                ),
            );
        }
    }
    let outcomes: BTreeMap<String, u32> =
        input
            .histories
            .iter()
            .flatten()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r["outcome"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
                m
            });
    v.summary = format!(
        "{acked} acknowledged, {} not acknowledged",
        input.clients.len() - acked
    );
    v.notes.push(format!("client ends: {}", fmt_tally(&tally)));
    if !not_acked.is_empty() {
        v.notes.push(format!(
            "refused before queueing: {}",
            fmt_tally(&not_acked)
        ));
    }
    v.notes
        .push(format!("daemon history outcomes: {}", fmt_tally(&outcomes)));
    v
}

pub fn fmt_tally(t: &BTreeMap<String, u32>) -> String {
    let mut v: Vec<(&String, &u32)> = t.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
