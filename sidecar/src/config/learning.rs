//! `[learning]`: how a job without `--mem` gets its reservation from the
//! peak memory of the command's earlier runs, and how many finished jobs
//! the history store keeps.
//!
//! ```toml
//! [learning]
//! enabled = true       # off: jobs without --mem reserve [host] default_mem
//! runs = 10            # the last N counted runs of a command in a directory
//! percentile = 90      # of their peaks (nearest rank)
//! headroom = 1.2       # times that
//! history_keep = 10000 # finished jobs kept in the history store
//! ```

use crate::learning::LearnParams;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningSection {
    pub enabled: Option<bool>,
    pub runs: Option<u32>,
    pub percentile: Option<u8>,
    pub headroom: Option<f64>,
    pub history_keep: Option<u32>,
}

/// Most finished jobs the history store may be asked to keep: the whole
/// history is read at startup to rebuild what was learned.
pub const HISTORY_KEEP_MAX: u32 = 1_000_000;
pub const HISTORY_KEEP_DEFAULT: u32 = 10_000;

/// `[learning]` checked: the learning parameters and the history size, or
/// the offending key and why.
pub fn resolve(s: &LearningSection) -> Result<(LearnParams, u32), (&'static str, String)> {
    let d = LearnParams::default();
    let runs = s.runs.unwrap_or(d.runs as u32);
    if !(1..=1000).contains(&runs) {
        return Err(("runs", format!("must be 1..=1000, got {runs}")));
    }
    let percentile = s.percentile.unwrap_or(d.percentile);
    if !(1..=100).contains(&percentile) {
        return Err(("percentile", format!("must be 1..=100, got {percentile}")));
    }
    let headroom = s.headroom.unwrap_or(d.headroom);
    if !(headroom.is_finite() && (1.0..=10.0).contains(&headroom)) {
        return Err((
            "headroom",
            format!("must be a factor from 1 to 10, got {headroom}"),
        ));
    }
    let keep = s.history_keep.unwrap_or(HISTORY_KEEP_DEFAULT);
    if !(1..=HISTORY_KEEP_MAX).contains(&keep) {
        return Err((
            "history_keep",
            format!("must be 1..={HISTORY_KEEP_MAX}, got {keep}"),
        ));
    }
    Ok((
        LearnParams {
            enabled: s.enabled.unwrap_or(d.enabled),
            runs: runs as usize,
            percentile,
            headroom,
        },
        keep,
    ))
}
