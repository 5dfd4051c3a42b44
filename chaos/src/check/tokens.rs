//! (b) Fencing tokens (docs/cluster-resources.md "Fencing tokens").
//!
//! Fails on: a grant without a token; for capacity 1, a token not above
//! the previous grant's (in start order). For capacity K > 1 holders whose
//! claims were in the K-window together may carry tokens in any order, even
//! when one ended before the other started (a 5-host run, seed 2026, showed
//! it: each host tokens with what it has seen, and the later starter's claim
//! was stamped earlier): counted, not failed.
//!
//! In available mode two sides of a partition grant independently, so a
//! pair is only judged when the second host must have seen the first
//! grant's token: the two hosts were connected from the first grant's
//! start to the second's, and for the heal bound before the second (the
//! same bound as capacity, (a)). A grant made inside a partition reaches
//! the other side only after the heal; a host that enters just after the
//! heal on an earlier claim (it need not wait for a later one) tokens it
//! with what it knows.

use super::{CAPACITY, Input, Verdict, host_label, rel};
use crate::hosts::Mode;
use crate::stamps::host_of;
use sc_tests::Hold;

fn token(h: &Hold, res: &str) -> Option<u64> {
    let i = h.resources.iter().position(|r| r == res)?;
    h.tokens.get(i).copied()
}

pub fn check(input: &Input) -> Verdict {
    let mut v = Verdict::new("(b) fencing tokens");
    let mut sums = Vec::new();
    for (res, cap) in CAPACITY {
        let holds: Vec<&Hold> = input
            .holds
            .iter()
            .filter(|h| h.resources.iter().any(|r| r == res))
            .collect(); // read_holds sorts by start
        let mut concurrent_inversions = 0;
        let mut after_ended_inversions = 0;
        let mut judged = 0;
        for h in &holds {
            if token(h, res).is_none() {
                v.violation(
                    "grant without a token",
                    format!("{res}: {} ran without a fencing token", h.label),
                );
            }
        }
        let show = |h: &Hold| {
            format!(
                "{} on {} (start {}, token {})",
                h.label,
                host_label(&h.label),
                rel(input, h.start_ns),
                token(h, res).unwrap_or(0)
            )
        };
        for (k, b) in holds.iter().enumerate() {
            let Some(tb) = token(b, res) else { continue };
            // The 50 grants before it: inversions are local, and all pairs
            // would be quadratic in a long run.
            for a in &holds[k.saturating_sub(50)..k] {
                let Some(ta) = token(a, res) else { continue };
                let ended_before = a.last_ns < b.start_ns;
                let comparable = match input.mode {
                    Mode::Quorum => true,
                    Mode::Available => match (host_of(&a.label), host_of(&b.label)) {
                        (Some(x), Some(y)) => input.timeline.connected_throughout(
                            x,
                            y,
                            a.start_ns.min(b.start_ns.saturating_sub(input.heal_bound)),
                            b.start_ns,
                        ),
                        _ => false,
                    },
                };
                if !comparable {
                    continue;
                }
                judged += 1;
                // For capacity > 1 two claims inside the K-window may enter
                // in either order and each host tokens with what it has
                // seen, so a later start can carry a smaller token even
                // after the other holder ended: counted, not failed.
                let bad = if cap == 1 {
                    tb <= ta
                } else {
                    if tb < ta {
                        if ended_before {
                            after_ended_inversions += 1;
                        } else {
                            concurrent_inversions += 1;
                        }
                    }
                    false
                };
                if bad {
                    v.violation(
                        "token not above an earlier grant",
                        format!(
                            "{res}: {} got a token not above {}{}",
                            show(b),
                            show(a),
                            if ended_before {
                                ", which had ended"
                            } else {
                                ", still running"
                            }
                        ),
                    );
                }
            }
        }
        sums.push(format!(
            "{res}: {} grants, {judged} pairs judged",
            holds.len()
        ));
        if after_ended_inversions > 0 {
            v.notes.push(format!(
                "{res}: {after_ended_inversions} grants with a token below a holder that had already ended (both in the capacity-{cap} window; allowed)"
            ));
        }
        if concurrent_inversions > 0 {
            v.notes.push(format!(
                "{res}: {concurrent_inversions} pairs of concurrent holders with tokens out of start order (allowed for capacity {cap})"
            ));
        }
    }
    v.summary = sums.join("; ");
    v
}
