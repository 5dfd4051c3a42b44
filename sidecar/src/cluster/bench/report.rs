//! The bench's table: rows, medians, verdict lines.

use super::*;

pub(super) struct Row {
    pub(super) measurement: String,
    pub(super) transport: String,
    pub(super) nodes: usize,
    pub(super) runs: String,
    pub(super) median: String,
    pub(super) max: String,
    pub(super) per_node_s: String,
    pub(super) notes: String,
}

pub(super) fn median(xs: &[Duration]) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

pub(super) fn max(xs: &[Duration]) -> Duration {
    xs.iter().copied().max().unwrap_or_default()
}

pub(super) fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

pub(super) fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// MET only if the median and the max both are within the target.
pub(super) fn verdict(times: &[Duration], within: impl Fn(Duration) -> bool) -> &'static str {
    match (within(median(times)), within(max(times))) {
        (true, true) => "MET",
        (true, false) => "MET by the median, NOT by the max",
        _ => "NOT MET",
    }
}

pub(super) fn print_report(
    d: &ClusterConfig,
    rows: &[Row],
    conv: &[(usize, &'static str, Times)],
    fail: Option<&Times>,
    daemons: Option<&Times>,
) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chitchat 0.11.2, gossip_interval {} ms, fanout 3, seed: the first node; failure detector: phi {}, initial_interval {} ms (the daemon's defaults); polled every {} ms; one process, {} tokio workers",
        d.gossip_interval.as_millis(),
        d.phi_threshold,
        d.initial_interval.as_millis(),
        POLL.as_millis(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| measurement | transport | nodes | runs | median | max | per node/s | notes |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.measurement, r.transport, r.nodes, r.runs, r.median, r.max, r.per_node_s, r.notes
        );
    }
    let _ = writeln!(out);
    let target = |out: &mut String, label: &str, n: usize, limit: Duration, strict: bool| match conv
        .iter()
        .find(|(size, _, _)| *size == n)
    {
        Some((_, kind, t)) => {
            let v = verdict(&t.total, |x| if strict { x < limit } else { x <= limit });
            let _ = writeln!(
                out,
                "target: {label}: {v} (median {}, max {}; transport {kind})",
                ms(median(&t.total)),
                ms(max(&t.total))
            );
        }
        None => {
            let _ = writeln!(out, "target: {label}: not measured (no {n}-node cluster)");
        }
    };
    target(
        &mut out,
        "10 hosts ≤ 100 ms",
        10,
        Duration::from_millis(100),
        false,
    );
    target(
        &mut out,
        "100 hosts < 1 s",
        100,
        Duration::from_secs(1),
        true,
    );
    let two = Duration::from_secs(2);
    match fail {
        Some(t) => {
            let _ = writeln!(
                out,
                "target: failure detection ≤ 2 s (in-process QUIC): {} (median {}, max {})",
                verdict(&t.total, |x| x <= two),
                ms(median(&t.total)),
                ms(max(&t.total))
            );
        }
        None => {
            let _ = writeln!(
                out,
                "target: failure detection ≤ 2 s: not measured (no QUIC cluster)"
            );
        }
    }
    if let Some(t) = daemons {
        let _ = writeln!(
            out,
            "target: failure detection ≤ 2 s (real daemons, SIGKILL): {} (median {}, max {})",
            verdict(&t.total, |x| x <= two),
            ms(median(&t.total)),
            ms(max(&t.total))
        );
    }
    let _ = writeln!(
        out,
        "reference (issue 4, this machine): Serf 0.9, 10 agents on loopback: event to all 242 ms median; killed agent marked failed after 5.9 s"
    );
    print!("{out}");
}
