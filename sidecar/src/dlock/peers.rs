//! What this host knows of every other host incarnation: its freshest
//! `dl` value, its liveness to chitchat, when it last showed progress, and
//! from those who is superseded, locally down (available mode) or DOWN by
//! quorum vote.
//!
//! Values only move forward: one with a `seq` at or below the high-water
//! mark is a stale copy (chitchat can rebuild a garbage-collected host from
//! a lagging peer) and is ignored. A host that vanishes from chitchat keeps
//! its last value here: missing is unknown, not released. Silence is only
//! measured over time we ran ourselves: after our own pause every silence
//! clock restarts ([`SELF_PAUSE_MS`]).

use super::{Now, Observation, Stats};
use sc_protocol::board::decode_value;
use sc_protocol::dl::{DlValue, NodeGen};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Peer {
    pub value: Option<DlValue>,
    /// Highest `seq` accepted.
    pub hwm: u64,
    pub live: bool,
    /// Since when chitchat has called it dead (continuously).
    pub dead_since: Option<u64>,
    pub heartbeat: u64,
    /// Last time its heartbeat or its value moved.
    pub progress_ms: u64,
    last_bad: Option<String>,
    /// The raw value last decoded: the engine observes every tick, and
    /// decoding every peer's unchanged value each time was most of an
    /// idle daemon's CPU.
    last_raw: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub map: BTreeMap<NodeGen, Peer>,
    /// When we last observed (our own progress).
    last_observed_ms: Option<u64>,
}

/// A gap this long between two of our own observations means *we* were
/// stopped (SIGSTOP, suspend, a starved loop), not the others: their
/// silence over it says nothing, and chitchat's state right after it is as
/// stale as we were. Far above the engine's tick (≤ 250 ms).
const SELF_PAUSE_MS: u64 = 1000;

impl Peers {
    /// Take in one round of observations. Returns the owners of claims
    /// stamped above `clk` (they wait for our acknowledgement), the
    /// highest claim stamp seen, and whether we were just paused.
    pub fn observe(
        &mut self,
        now: Now,
        obs: &[Observation],
        me: &NodeGen,
        clk: u64,
        stats: &mut Stats,
    ) -> (Vec<String>, u64, bool) {
        let mut waiting_for_ack = Vec::new();
        let mut max_ts = 0;
        let gap = self.last_observed_ms.map(|t| now.mono_ms.saturating_sub(t));
        let paused = gap.is_some_and(|g| g >= SELF_PAUSE_MS);
        if paused {
            stats.self_pauses += 1;
            stats.last_pause_ms = gap.unwrap_or(0);
            // Restart every silence clock from now: a vote (R6) or a
            // local DOWN (available mode) only ever comes later for it,
            // which is the safe direction; voting on resume would cast a
            // permanent DOWN vote against every live peer.
            for p in self.map.values_mut() {
                p.progress_ms = p.progress_ms.max(now.mono_ms);
                if let Some(t) = p.dead_since.as_mut() {
                    *t = (*t).max(now.mono_ms);
                }
            }
        }
        self.last_observed_ms = Some(now.mono_ms);
        let seen: std::collections::BTreeSet<&NodeGen> = obs.iter().map(|o| &o.node).collect();
        for p in self.map.iter_mut().filter(|(k, _)| !seen.contains(k)) {
            // Garbage-collected by chitchat: dead, value kept.
            p.1.live = false;
            p.1.dead_since.get_or_insert(now.mono_ms);
        }
        for o in obs {
            if o.node == *me || (o.node.name == me.name && o.node.generation < me.generation) {
                continue;
            }
            let p = self.map.entry(o.node.clone()).or_insert(Peer {
                value: None,
                hwm: 0,
                live: false,
                dead_since: Some(now.mono_ms),
                heartbeat: o.heartbeat,
                progress_ms: now.mono_ms,
                last_bad: None,
                last_raw: None,
            });
            if o.heartbeat > p.heartbeat {
                p.heartbeat = o.heartbeat;
                p.progress_ms = now.mono_ms;
            }
            p.live = o.live;
            if o.live {
                p.dead_since = None;
            } else {
                p.dead_since.get_or_insert(now.mono_ms);
            }
            let Some(raw) = &o.dl else { continue };
            if p.last_raw.as_deref() == Some(raw.as_str()) {
                continue;
            }
            p.last_raw = Some(raw.clone());
            match decode_value::<DlValue>(raw) {
                Ok(v) if v.seq > p.hwm || p.value.is_none() && v.seq == p.hwm => {
                    p.hwm = v.seq;
                    p.progress_ms = now.mono_ms;
                    let top = v.claims.iter().map(|c| c.ts).max().unwrap_or(0);
                    if top > clk {
                        waiting_for_ack.push(o.node.name.clone());
                    }
                    max_ts = max_ts.max(top);
                    p.value = Some(v);
                }
                Ok(v) => {
                    if v.seq < p.hwm {
                        stats.stale_values += 1;
                    }
                }
                Err(_) => {
                    if p.last_bad.as_deref() != Some(raw.as_str()) {
                        stats.undecodable_values += 1;
                        p.last_bad = Some(raw.clone());
                    }
                }
            }
        }
        (waiting_for_ack, max_ts, paused)
    }

    /// A later generation of the same host has published its `dl`: the
    /// daemon kills the old generation's cluster jobs before its first
    /// publication, so the old claims are gone.
    pub fn superseded(&self, ng: &NodeGen) -> bool {
        self.map
            .range(NodeGen::new(ng.name.clone(), ng.generation.saturating_add(1))..)
            .take_while(|(k, _)| k.name == ng.name)
            .any(|(_, p)| p.value.is_some())
    }

    /// Available mode: dead to the failure detector for `down_ms` on end.
    /// Revocable: if it comes back, its claims count again.
    pub fn locally_down(&self, ng: &NodeGen, now: Now, down_ms: u64) -> bool {
        self.map.get(ng).is_some_and(|p| {
            !p.live
                && p.dead_since
                    .is_some_and(|t| now.mono_ms.saturating_sub(t) >= down_ms)
        })
    }

    /// The value of the newest generation of `name` that has one.
    pub fn newest_value(&self, name: &str) -> Option<(&NodeGen, &DlValue)> {
        self.map
            .range(NodeGen::new(name, 0)..)
            .take_while(|(k, _)| k.name == name)
            .filter_map(|(k, p)| p.value.as_ref().map(|v| (k, v)))
            .last()
    }

    /// Generations of `name` that are not superseded.
    pub fn current_gens(&self, name: &str) -> Vec<&NodeGen> {
        self.map
            .range(NodeGen::new(name, 0)..)
            .take_while(|(k, _)| k.name == name)
            .map(|(k, _)| k)
            .filter(|k| !self.superseded(k))
            .collect()
    }

    /// Every known incarnation that is not superseded.
    pub fn current(&self) -> impl Iterator<Item = (&NodeGen, &Peer)> {
        self.map.iter().filter(|(k, _)| !self.superseded(k))
    }

    pub fn value(&self, ng: &NodeGen) -> Option<&DlValue> {
        self.map.get(ng).and_then(|p| p.value.as_ref())
    }
}
