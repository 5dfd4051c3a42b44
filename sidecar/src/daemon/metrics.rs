//! The daemon's Prometheus metrics: atomic counters and histograms bumped
//! where things happen, plus gauges read from the job table, the services
//! and the cluster view at scrape time, rendered in the text exposition
//! format (version 0.0.4). Served by `metrics_http` on `[metrics] listen`.
//!
//! Every name starts with `sc_`. Counters count since this daemon started
//! (Prometheus handles the reset a restart causes).

use super::state::Daemon;
use sc_protocol::JobState;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the wait histograms: from a free host's
/// sub-millisecond grant to a job queued behind others for an hour.
const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A cumulative histogram of durations with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket of [`WAIT_BUCKETS`]: observations at or below its bound
    /// and above the previous one (made cumulative when rendered).
    buckets: [AtomicU64; WAIT_BUCKETS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = WAIT_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in WAIT_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        // Read count last: a concurrent observation may show in the count
        // but not yet in a bucket, never the other way round in +Inf.
        let count = self.count.load(Ordering::Relaxed).max(cumulative);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Counters and histograms of events, shared by every task (`Shared` and
/// `Daemon` hold the same `Arc`).
#[derive(Debug, Default)]
pub struct Metrics {
    admissions: AtomicU64,
    queue_wait: Histogram,
    claim_wait: Histogram,
    handover: Histogram,
    freezes: AtomicU64,
    thaws: AtomicU64,
    oom_kills: AtomicU64,
    /// By probe: startup, readiness, liveness.
    probe_failures: [AtomicU64; 3],
}

/// Which probe of a service failed.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    Startup = 0,
    Readiness = 1,
    Liveness = 2,
}

const PROBES: [&str; 3] = ["startup", "readiness", "liveness"];

impl Metrics {
    /// A job was placed (given its cgroup and let run) after waiting `waited`
    /// since it was queued.
    pub fn record_admission(&self, waited: Duration) {
        self.admissions.fetch_add(1, Ordering::Relaxed);
        self.queue_wait.observe(waited);
    }

    /// A `--needs` job's cluster claim was granted `waited` after this host
    /// asked the cluster for it.
    pub fn record_claim_wait(&self, waited: Duration) {
        self.claim_wait.observe(waited);
    }

    /// A grant here ended a hand-over: another host released the resource
    /// `gap` before (by its clock).
    pub fn record_handover(&self, gap: Duration) {
        self.handover.observe(gap);
    }

    /// A job was frozen (`sc pause`, or the daemon itself).
    pub fn record_freeze(&self) {
        self.freezes.fetch_add(1, Ordering::Relaxed);
    }

    /// A frozen job was thawed.
    pub fn record_thaw(&self) {
        self.thaws.fetch_add(1, Ordering::Relaxed);
    }

    /// A job ended with this many OOM kills in its cgroup.
    pub fn record_oom_kills(&self, n: u64) {
        self.oom_kills.fetch_add(n, Ordering::Relaxed);
    }

    pub fn record_probe_failure(&self, probe: Probe) {
        self.probe_failures[probe as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The whole exposition: the counters here plus gauges read from `d`.
    pub fn render(&self, d: &Daemon) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let _ = writeln!(
            out,
            "# HELP sc_jobs Jobs in the daemon's table by state (queued includes jobs waiting for cluster resources).\n# TYPE sc_jobs gauge"
        );
        for state in [
            JobState::Queued,
            JobState::Starting,
            JobState::Running,
            JobState::Paused,
            JobState::Detached,
        ] {
            let n = d.jobs.values().filter(|j| j.state == state).count();
            let _ = writeln!(out, "sc_jobs{{state=\"{state}\"}} {n}");
        }
        counter(
            &mut out,
            "sc_admissions_total",
            "Jobs admitted: placed in their cgroup and let run.",
            &self.admissions,
        );
        self.queue_wait.render(
            &mut out,
            "sc_queue_wait_seconds",
            "Time from a job's arrival (sc exec) to its admission, per admitted job.",
        );
        counter(
            &mut out,
            "sc_freezes_total",
            "Jobs frozen (sc pause).",
            &self.freezes,
        );
        counter(
            &mut out,
            "sc_thaws_total",
            "Frozen jobs thawed (sc resume).",
            &self.thaws,
        );
        counter(
            &mut out,
            "sc_oom_kills_total",
            "OOM kills in jobs' cgroups, counted when each job ends.",
            &self.oom_kills,
        );
        let _ = writeln!(
            out,
            "# HELP sc_service_restarts_total Automatic restarts of each service by its restart policy.\n# TYPE sc_service_restarts_total counter"
        );
        for v in d.services.views() {
            let _ = writeln!(
                out,
                "sc_service_restarts_total{{service=\"{}\"}} {}",
                escape(&v.name),
                v.restarts
            );
        }
        let _ = writeln!(
            out,
            "# HELP sc_probe_failures_total Failed service probe runs, by probe.\n# TYPE sc_probe_failures_total counter"
        );
        for (name, n) in PROBES.iter().zip(&self.probe_failures) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "sc_probe_failures_total{{probe=\"{name}\"}} {n}");
        }
        self.claim_wait.render(
            &mut out,
            "sc_claim_wait_seconds",
            "For jobs with --needs: time from this host asking the cluster for the job's resources to their grant (includes waiting for holders to hand them over).",
        );
        self.handover.render(
            &mut out,
            "sc_claim_handover_seconds",
            "Hand-over of cluster resources: for grants here that waited for another host's release, time from that release (the releasing host's clock) to the grant (this host's clock); accurate to the hosts' clock offset.",
        );
        self.render_cluster(&mut out, d);
        out
    }

    fn render_cluster(&self, out: &mut String, d: &Daemon) {
        let Some(c) = &d.cluster else {
            return;
        };
        let board = c.board();
        let live = board.hosts.iter().filter(|h| h.live && !h.is_self).count();
        let _ = writeln!(
            out,
            "# HELP sc_cluster_live_peers Other hosts the failure detector deems live.\n# TYPE sc_cluster_live_peers gauge\nsc_cluster_live_peers {live}"
        );
        let _ = writeln!(
            out,
            "# HELP sc_cluster_dropped_messages_total Cluster messages dropped by the transport and the cluster-id filter, by reason.\n# TYPE sc_cluster_dropped_messages_total counter"
        );
        for (name, n) in c.counters() {
            if let Some(reason) = name.strip_prefix("dropped_") {
                let _ = writeln!(
                    out,
                    "sc_cluster_dropped_messages_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_every_observation() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(70));
        h.observe(Duration::from_secs(7200));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"3600\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 7200.0705\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
