//! The final report on stdout: what was done (faults by kind, jobs,
//! hand-overs), each invariant's verdict with its violations, and how to
//! run the same schedule again.

use crate::check::Verdict;
use crate::stamps::host_of;
use crate::util::MS;
use crate::workload::ClientRecord;
use sc_tests::Hold;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

pub struct Handovers {
    /// Consecutive e2e grants on different hosts.
    pub between_hosts: u64,
    /// Idle gaps (ms) from one e2e holder's last stamp to the next one's
    /// start, when the next was already queued (a hand-over to a waiter).
    pub gaps_ms: Vec<f64>,
}

pub fn handovers(holds: &[Hold], clients: &[ClientRecord]) -> Handovers {
    let queued: HashMap<&str, u64> = clients
        .iter()
        .filter_map(|c| Some((c.spec.label.as_str(), c.event("queued")?.0)))
        .collect();
    let e2e: Vec<&Hold> = holds
        .iter()
        .filter(|h| h.resources.iter().any(|r| r == "e2e"))
        .collect();
    let mut out = Handovers {
        between_hosts: 0,
        gaps_ms: Vec::new(),
    };
    for w in e2e.windows(2) {
        let (a, b) = (w[0], w[1]);
        if host_of(&a.label) != host_of(&b.label) {
            out.between_hosts += 1;
        }
        if queued.get(b.label.as_str()).is_some_and(|q| *q < a.last_ns) && b.start_ns >= a.last_ns {
            out.gaps_ms
                .push((b.start_ns - a.last_ns) as f64 / MS as f64);
        }
    }
    out.gaps_ms.sort_by(|x, y| x.total_cmp(y));
    out
}

fn pct(v: &[f64], p: usize) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[(v.len() * p / 100).min(v.len() - 1)]
}

pub struct Summary<'a> {
    pub header: Vec<String>,
    pub faults: &'a BTreeMap<&'static str, u32>,
    pub fault_errors: &'a [String],
    pub clients: &'a [ClientRecord],
    pub holds: &'a [Hold],
    pub verdicts: &'a [Verdict],
    pub seed: u64,
    pub rerun: String,
}

pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "=== sc-chaos report ===");
    for h in &s.header {
        let _ = writeln!(o, "{h}");
    }
    let total: u32 = s.faults.values().sum();
    let _ = writeln!(o, "\nfaults injected: {total}");
    for (k, n) in s.faults {
        let _ = writeln!(o, "  {n:>4}  {k}");
    }
    for e in s.fault_errors {
        let _ = writeln!(o, "  harness error while injecting: {e}");
    }
    let ended = s.holds.iter().filter(|h| h.ended).count();
    let _ = writeln!(
        o,
        "\njobs: {} sc exec clients, {} commands started, {} ran to their end, {} stopped from outside",
        s.clients.len(),
        s.holds.len(),
        ended,
        s.holds.len() - ended
    );
    let ho = handovers(s.holds, s.clients);
    let _ = writeln!(
        o,
        "hand-overs: {} e2e grants moved between hosts; {} hand-overs to a waiter, idle gap p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ho.between_hosts,
        ho.gaps_ms.len(),
        pct(&ho.gaps_ms, 50),
        pct(&ho.gaps_ms, 99),
        ho.gaps_ms.last().copied().unwrap_or(0.0)
    );
    let _ = writeln!(o, "\ninvariants:");
    for v in s.verdicts {
        let _ = writeln!(
            o,
            "  {} {} — {}",
            if v.pass { "PASS" } else { "FAIL" },
            v.name,
            v.summary
        );
        if !v.kinds.is_empty() {
            let counts: Vec<String> = v.kinds.iter().map(|(k, n)| format!("{n}× {k}")).collect();
            let _ = writeln!(
                o,
                "       violations: {} (up to 5 of each below)",
                counts.join(", ")
            );
        }
        for d in &v.details {
            let _ = writeln!(o, "       violation: {d}");
        }
        for n in &v.notes {
            let _ = writeln!(o, "       note: {n}");
        }
    }
    let failed = s.verdicts.iter().filter(|v| !v.pass).count();
    let _ = writeln!(
        o,
        "\nresult: {} ({failed} of {} invariants violated)",
        if failed == 0 { "PASS" } else { "FAIL" },
        s.verdicts.len()
    );
    let _ = writeln!(o, "seed: {}", s.seed);
    let _ = writeln!(o, "rerun: {}", s.rerun);
    o
}
