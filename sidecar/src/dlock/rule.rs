//! The rule over one resource, as pure functions of what a host sees
//! (shared/CLUSTER-LOCKS.md §5.3 R2, R3(b), R8).
//!
//! Priority decides only who may publish a claim (the window); entry
//! orders claims purely by (stamp, host, job). Putting priority into the
//! entry rule is unsafe for K ≥ 2 (§2.3): do not change that without
//! running the simulation.

use super::Params;
use std::cmp::Ordering;

/// Bits of the HLC below the physical milliseconds.
pub const HLC_LOGICAL_BITS: u32 = 16;

pub fn hlc_phys(wall_ms: u64) -> u64 {
    wall_ms << HLC_LOGICAL_BITS
}

/// The wall-clock milliseconds an HLC value carries.
pub fn hlc_wall_ms(clk: u64) -> u64 {
    clk >> HLC_LOGICAL_BITS
}

/// A claim on the resource, from any host's value or ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenClaim<'a> {
    pub node: &'a str,
    pub job: u64,
    pub units: u32,
    pub ts: u64,
    pub held: bool,
}

impl SeenClaim<'_> {
    /// The total order of claims: stamp, then host, then job.
    pub fn key(&self) -> (u64, &str, u64) {
        (self.ts, self.node, self.job)
    }
    pub fn same(&self, node: &str, job: u64) -> bool {
        self.node == node && self.job == job
    }
}

/// R3(b): claim `c` may enter when the units of every other claim that is
/// held, or ordered before it, plus its own, fit in the capacity. Held
/// claims count whatever their stamp: that only makes entry more careful,
/// and it covers a partition's old holders coming back (available mode).
pub fn fits(c: &SeenClaim<'_>, all: &[SeenClaim<'_>], capacity: u32) -> bool {
    let before: u64 = all
        .iter()
        .filter(|o| !o.same(c.node, c.job))
        .filter(|o| o.held || o.key() < c.key())
        .map(|o| u64::from(o.units))
        .sum();
    before + u64::from(c.units) <= u64::from(capacity)
}

/// Claims ordered before `c` that do not hold yet (for "N ahead of you").
pub fn claims_ahead(c: &SeenClaim<'_>, all: &[SeenClaim<'_>]) -> u32 {
    all.iter()
        .filter(|o| !o.same(c.node, c.job) && !o.held && o.key() < c.key())
        .count() as u32
}

/// An advisory request on the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest<'a> {
    pub node: &'a str,
    pub job: u64,
    pub units: u32,
    pub prio: i32,
    /// HLC at arrival.
    pub arr: u64,
}

/// Base priority plus one per aging step waited, capped: a waiting job
/// eventually outranks every new arrival.
pub fn effective_priority(prio: i32, arr: u64, wall_ms: u64, p: &Params) -> i64 {
    let waited = wall_ms.saturating_sub(arr >> HLC_LOGICAL_BITS);
    let steps = (waited / p.aging_step_ms.max(1)).min(p.aging_cap.max(0) as u64);
    i64::from(prio) + steps as i64
}

/// Rank order: effective priority (higher first), arrival, host, job.
pub fn rank(reqs: &mut [SeenRequest<'_>], wall_ms: u64, p: &Params) {
    reqs.sort_by(|a, b| {
        effective_priority(b.prio, b.arr, wall_ms, p)
            .cmp(&effective_priority(a.prio, a.arr, wall_ms, p))
            .then(a.arr.cmp(&b.arr))
            .then(a.node.cmp(b.node))
            .then(a.job.cmp(&b.job))
    });
}

/// R2: may request (`node`, `job`) turn into a claim? Only while it is
/// within the first `room` units (capacity + prefetch − claimed units) of
/// the ranked waiting requests. Returns the requests ranked ahead of it
/// either way.
pub fn in_window(
    node: &str,
    job: u64,
    reqs: &[SeenRequest<'_>],
    room: u32,
    wall_ms: u64,
    p: &Params,
) -> (bool, u32) {
    let mut ranked = reqs.to_vec();
    rank(&mut ranked, wall_ms, p);
    let mut ahead_units = 0u64;
    let mut ahead = 0u32;
    for r in &ranked {
        if r.node == node && r.job == job {
            return (ahead_units + u64::from(r.units) <= u64::from(room), ahead);
        }
        ahead_units += u64::from(r.units);
        ahead += 1;
    }
    (false, ahead)
}

/// R8: held claims beyond capacity. The holders within the first
/// `capacity` units in claim order keep their place; the rest are returned.
pub fn excess<'a>(all: &[SeenClaim<'a>], capacity: u32) -> Vec<SeenClaim<'a>> {
    let mut held: Vec<SeenClaim<'a>> = all.iter().filter(|c| c.held).cloned().collect();
    held.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut used = 0u64;
    let mut out = Vec::new();
    for c in held {
        used += u64::from(c.units);
        if used > u64::from(capacity) {
            out.push(c);
        }
    }
    out
}

/// Compare two claims in claim order (for sorting views).
pub fn claim_order(a: &SeenClaim<'_>, b: &SeenClaim<'_>) -> Ordering {
    a.key().cmp(&b.key())
}
