//! Learned memory requests: which finished runs teach something, what a
//! command's recent runs say it needs, and which reservation a new job gets
//! (its `--mem`, the learned value, or the default) with the reason in words.
//!
//! Pure: the daemon feeds it the recorded runs and carries out the choice.

use sc_protocol::units::format_size;
use sc_protocol::{JobUsage, MemSource, Reservation};

/// `[learning]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnParams {
    /// Learn at all; off, a job without `--mem` gets the default.
    pub enabled: bool,
    /// How many of a command's most recent counted runs are looked at.
    pub runs: usize,
    /// Which percentile of their peaks (nearest rank, 1..=100).
    pub percentile: u8,
    /// Factor applied to that percentile (1.2 = 20% more).
    pub headroom: f64,
}

impl Default for LearnParams {
    fn default() -> Self {
        LearnParams {
            enabled: true,
            runs: 10,
            percentile: 90,
            headroom: 1.2,
        }
    }
}

/// What one finished run says about its command's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub peak: u64,
    /// OOM-killed: it hit its limit, so its peak is only a lower bound.
    pub oom_killed: bool,
}

/// The run a finished job counts as, if it counts: it ran to its own end
/// (an exit or a signal, OOM kills included) and its peak was measured.
/// Spawn failures, cancelled, timed-out, abandoned and refused jobs say
/// nothing reliable about what the command needs.
pub fn run_of(outcome: &str, usage: &JobUsage) -> Option<Run> {
    if !matches!(outcome, "exited" | "signal") {
        return None;
    }
    let peak = usage.peak_mem.filter(|p| *p > 0)?;
    Some(Run {
        peak,
        oom_killed: usage.oom_kills > 0,
    })
}

/// A learned request: the bytes and how many runs taught it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    pub mem: u64,
    pub runs: u32,
}

const MIB: u64 = 1 << 20;

/// What a command's recent runs (oldest first) say it needs: the
/// percentile of the last `runs` peaks times the headroom, never below the
/// largest OOM-killed peak times the headroom, rounded up to a MiB.
pub fn learn(history: &[Run], p: &LearnParams) -> Option<Learned> {
    let recent = &history[history.len().saturating_sub(p.runs.max(1))..];
    if recent.is_empty() {
        return None;
    }
    let mut peaks: Vec<u64> = recent.iter().map(|r| r.peak).collect();
    peaks.sort_unstable();
    let rank = (usize::from(p.percentile.clamp(1, 100)) * peaks.len()).div_ceil(100);
    let pick = peaks[rank.max(1) - 1];
    let floor = recent
        .iter()
        .filter(|r| r.oom_killed)
        .map(|r| r.peak)
        .max()
        .unwrap_or(0);
    let scaled = (pick.max(floor) as f64 * p.headroom).ceil() as u64;
    Some(Learned {
        mem: scaled.div_ceil(MIB).max(1) * MIB,
        runs: recent.len() as u32,
    })
}

/// What the explanation calls the command: its argv, shortened.
fn command_words(argv: &[String]) -> String {
    let s = argv.join(" ");
    if s.chars().count() <= 60 {
        return s;
    }
    let mut t: String = s.chars().take(57).collect();
    t.push_str("...");
    t
}

/// The reservation of a new job. `usable` is what the host can ever give
/// (capacity minus reserve): a learned value above it is capped, so a
/// command that once peaked past it is not refused as impossible.
pub fn choose(
    requested: Option<u64>,
    learned: Option<Learned>,
    default: u64,
    usable: u64,
    argv: &[String],
    cwd: &str,
    p: &LearnParams,
) -> Reservation {
    if let Some(mem) = requested {
        return Reservation {
            mem,
            source: MemSource::Requested,
            why: format!("--mem {} given", format_size(mem)),
        };
    }
    let Some(l) = learned.filter(|_| p.enabled) else {
        let why = if p.enabled {
            format!(
                "default {}: no earlier runs of `{}` in {cwd}",
                format_size(default),
                command_words(argv)
            )
        } else {
            format!("default {}: learning is off", format_size(default))
        };
        return Reservation {
            mem: default,
            source: MemSource::Default,
            why,
        };
    };
    let mem = l.mem.min(usable).max(1);
    let runs = if l.runs == 1 {
        "the last run".to_string()
    } else {
        format!("the last {} runs", l.runs)
    };
    let mut why = format!(
        "learned {}: p{} of peak memory over {runs} of `{}` in {cwd}",
        format_size(mem),
        p.percentile,
        command_words(argv)
    );
    let extra = ((p.headroom - 1.0) * 100.0).round();
    if extra > 0.0 {
        why.push_str(&format!(", plus {extra}%"));
    }
    if mem < l.mem {
        why.push_str(&format!(
            ", capped at what this host can give ({})",
            format_size(usable)
        ));
    }
    Reservation {
        mem,
        source: MemSource::Learned { runs: l.runs },
        why,
    }
}

#[cfg(test)]
#[path = "learning_tests.rs"]
mod tests;
