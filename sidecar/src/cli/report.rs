//! What `sc exec` tells the person (or agent) while it waits and when the
//! job ends: a one-line status on a terminal's stderr, or JSON lines on
//! stderr with `--json`. Stdout is never touched: it is the command's.

use sc_protocol::units::{format_duration, format_size};
use sc_protocol::{JobId, JobUsage, Reservation, WaitReason};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Reporter {
    json: bool,
    tty: bool,
    /// A status line is on screen and must be cleared before other output.
    line_shown: bool,
    pub since: Instant,
    pub job: Option<JobId>,
    pub wait: Option<(WaitReason, u32)>,
    /// The running job is frozen: by what, and since when.
    paused: Option<(String, Instant)>,
    /// `--explain`: say which memory reservation admission uses and why.
    pub explain: bool,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        Reporter {
            json,
            tty: !json && std::io::stderr().is_terminal(),
            line_shown: false,
            since: Instant::now(),
            job: None,
            wait: None,
            paused: None,
            explain: false,
        }
    }

    /// One JSON line in ONE write: stderr is unbuffered and shared with the
    /// command, and a single write below PIPE_BUF is never interleaved.
    fn emit(&mut self, v: serde_json::Value) {
        if self.json {
            let mut line = v.to_string();
            line.push('\n');
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    pub fn queued(&mut self, job: JobId, position: u32) {
        self.job = Some(job);
        self.emit(json!({"event": "queued", "job": job, "position": position}));
    }

    /// `--explain`: the reservation the daemon chose, as a line or an
    /// `explain` event.
    pub fn explain_reservation(&mut self, job: JobId, r: Option<&Reservation>) {
        if !self.explain {
            return;
        }
        let Some(r) = r else {
            self.say("this daemon does not say how it chose the memory reservation");
            return;
        };
        if self.json {
            self.emit(json!({
                "event": "explain", "job": job, "mem": r.mem, "source": r.source, "why": r.why,
            }));
        } else {
            self.say(&format!("job {job} reserves memory: {}", r.why));
        }
    }

    pub fn waiting(&mut self, job: JobId, reason: &WaitReason, position: u32, waited_ms: u64) {
        self.wait = Some((reason.clone(), position));
        self.emit(json!({
            "event": "waiting", "job": job, "reason": reason.to_string(),
            "detail": reason, "position": position, "waited_ms": waited_ms,
        }));
        self.refresh();
    }

    /// The running job was frozen (`by`: "sc pause", "memory pressure",
    /// "preempted for job N"): a `paused` event, and a status line with
    /// the duration that stays until it is thawed.
    pub fn paused(&mut self, job: JobId, by: &str) {
        self.clear();
        if !self.tty && !self.json {
            eprintln!("sc: job {job} paused ({by})");
        }
        self.emit(json!({"event": "paused", "job": job, "by": by}));
        self.paused = Some((by.to_string(), Instant::now()));
        self.refresh();
    }

    pub fn resumed(&mut self, job: JobId) {
        self.clear();
        let paused_ms = self
            .paused
            .take()
            .map(|(_, at)| at.elapsed().as_millis() as u64);
        if !self.json {
            let after = paused_ms
                .map(|ms| {
                    format!(
                        " after {}",
                        format_duration(std::time::Duration::from_millis(ms))
                    )
                })
                .unwrap_or_default();
            eprintln!("sc: job {job} resumed{after}");
        }
        self.emit(json!({"event": "resumed", "job": job, "paused_ms": paused_ms}));
    }

    /// Redraw the status line (called on changes and once a second).
    pub fn refresh(&mut self) {
        if !self.tty {
            return;
        }
        let line = if let Some((by, at)) = &self.paused {
            format!(
                "sc: job {} paused ({by}) for {}",
                self.job.unwrap_or(0),
                format_duration(at.elapsed())
            )
        } else if let Some((reason, position)) = &self.wait {
            format!(
                "sc: job {} waiting {} — {reason} (#{position} in queue)",
                self.job.unwrap_or(0),
                format_duration(self.since.elapsed())
            )
        } else {
            return;
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.line_shown = true;
    }

    fn clear(&mut self) {
        if self.line_shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.line_shown = false;
        }
    }

    /// `fence_tokens`: by resource name, as the job's environment has them.
    pub fn started(
        &mut self,
        job: JobId,
        pid: i32,
        cgroup: Option<&str>,
        enforced: &[String],
        fence_tokens: &[(String, u64)],
    ) {
        self.clear();
        self.wait = None;
        let tokens: serde_json::Map<String, serde_json::Value> = fence_tokens
            .iter()
            .map(|(name, t)| (name.clone(), json!(t)))
            .collect();
        self.emit(json!({
            "event": "started", "job": job, "pid": pid, "cgroup": cgroup,
            "enforced": enforced, "waited_ms": self.since.elapsed().as_millis() as u64,
            "fence_tokens": tokens,
        }));
    }

    /// The job's lease on its cluster resources ran out and the stopper
    /// killed it: always one line on stderr (the job's output just stops,
    /// and the reason must be visible), plus a `lost_lease` event.
    pub fn lost_lease(&mut self, job: JobId, resources: &[String], detail: serde_json::Value) {
        self.clear();
        let mut v = json!({"event": "lost_lease", "job": job, "resources": resources});
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), detail) {
            obj.extend(more);
        }
        self.emit(v);
        eprintln!(
            "sc: lost the lease on {}: the daemon stopped renewing it; the job was stopped",
            resources.join(", ")
        );
    }

    pub fn event(&mut self, name: &str, job: JobId, extra: serde_json::Value) {
        let mut v = json!({"event": name, "job": job});
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        self.emit(v);
    }

    /// A line for people (never in JSON mode, where events say it).
    pub fn say(&mut self, msg: &str) {
        self.clear();
        if !self.json {
            eprintln!("sc: {msg}");
        }
    }

    /// Something the user must know about sc itself (the daemon went away,
    /// came back): a line, or a `warning` event in JSON mode.
    pub fn warn(&mut self, msg: &str) {
        self.clear();
        if self.json {
            self.emit(json!({"event": "warning", "job": self.job, "message": msg}));
        } else {
            eprintln!("sc: {msg}");
        }
    }

    /// An error: always shown, as an `error` event too in JSON mode.
    pub fn error(&mut self, msg: &str) {
        self.clear();
        if self.json {
            self.emit(json!({"event": "error", "job": self.job, "message": msg}));
        }
        eprintln!("sc: {msg}");
    }

    /// Whether [`Reporter::exited`] shows the job's accounting for a child
    /// that ended so: always in JSON, else only for the OOM line (a SIGKILL).
    pub fn shows_usage(&self, signal: Option<i32>) -> bool {
        self.json || signal == Some(libc::SIGKILL)
    }

    pub fn exited(&mut self, job: JobId, code: Option<i32>, signal: Option<i32>, usage: &JobUsage) {
        let oom = usage.oom_kills > 0 && signal == Some(libc::SIGKILL);
        self.emit(json!({
            "event": "exited", "job": job, "code": code, "signal": signal, "oom": oom,
            "peak_mem": usage.peak_mem, "cpu_time_us": usage.cpu_time_us,
            "waited_ms": usage.waited_ms, "ran_ms": usage.ran_ms,
        }));
        if oom {
            let limit = usage
                .mem_limit
                .map(format_size)
                .unwrap_or_else(|| "none".into());
            let peak = usage
                .peak_mem
                .map(format_size)
                .unwrap_or_else(|| "unknown".into());
            eprintln!("sc: killed: out of memory (limit {limit}, peak {peak})");
        }
    }
}
