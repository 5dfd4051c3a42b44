//! The `dl` board key: one host's whole cluster-lock state in ONE value
//! (DESIGN §6, shared/CLUSTER-LOCKS.md §5.2).
//!
//! One key, because chitchat skips superseded versions and cuts deltas at
//! the MTU: two keys of one host are not read atomically, so a reader could
//! hold a newer clock without the older claim it covers. The value is
//! replaced whole, so every reader sees an atomic snapshot of the host.
//! It is never deleted and never given a TTL; `seq` grows with every
//! publication so a reader can refuse an older value rebuilt from a lagging
//! peer after chitchat garbage-collected the host's state.
//!
//! Field names are short: the value travels in every delta that carries it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The board key.
pub const KEY_DL: &str = "dl";

/// A host incarnation: its name and its chitchat generation (start time).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeGen {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "g")]
    pub generation: u64,
}

impl NodeGen {
    pub fn new(name: impl Into<String>, generation: u64) -> NodeGen {
        NodeGen {
            name: name.into(),
            generation,
        }
    }
}

impl std::fmt::Display for NodeGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.generation)
    }
}

/// An advisory request: ranked by effective priority, then arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlRequest {
    pub job: u64,
    /// (resource, units), sorted by resource.
    pub needs: Vec<(String, u32)>,
    pub prio: i32,
    /// HLC at arrival.
    pub arr: u64,
}

/// A claim on one resource, stamped with the claimer's clock. A job's
/// claims on several resources share one stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlClaim {
    pub job: u64,
    pub res: String,
    pub units: u32,
    pub ts: u64,
    pub held: bool,
    /// Fencing token, 0 until held.
    pub tok: u64,
    /// For display only: the request's priority and arrival.
    pub prio: i32,
    pub arr: u64,
}

/// A host's `dl` value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlValue {
    /// Publication counter of this generation.
    pub seq: u64,
    /// Hybrid logical clock: the acknowledgement watermark.
    pub clk: u64,
    /// This host's resource configuration: name → "K/mode".
    pub res: BTreeMap<String, String>,
    /// Hash of the sorted `[cluster] members` list (0 when none).
    pub mh: u64,
    pub reqs: Vec<DlRequest>,
    pub claims: Vec<DlClaim>,
    /// Host incarnations this host knows (the join barrier).
    pub jn: Vec<NodeGen>,
    /// Highest fencing token used or seen, per resource.
    pub toks: BTreeMap<String, u64>,
    /// Lease renewal counter (quorum mode), bumped while holding claims.
    pub lseq: u64,
    /// Echo of other claimers' `lseq`.
    pub lack: Vec<(NodeGen, u64)>,
    /// Permanent DOWN votes.
    pub down: Vec<NodeGen>,
    /// Per resource, when this host last released a held claim on it (its
    /// wall clock, ms): where a hand-over starts, for the grantor's
    /// `sc_claim_handover_seconds`. Not used by the rule.
    #[serde(default)]
    pub rel: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::{decode_value, encode_value};

    #[test]
    fn round_trips_through_the_board_encoding() {
        let v = DlValue {
            seq: 3,
            clk: 99,
            res: [("e2e".to_string(), "1/quorum".to_string())].into(),
            claims: vec![DlClaim {
                job: 4,
                res: "e2e".into(),
                units: 1,
                ts: 98,
                held: true,
                tok: 7,
                prio: 0,
                arr: 90,
            }],
            jn: vec![NodeGen::new("b", 5)],
            ..Default::default()
        };
        let s = encode_value(&v);
        assert!(s.starts_with("v1 {"));
        assert_eq!(decode_value::<DlValue>(&s).unwrap(), v);
    }
}
