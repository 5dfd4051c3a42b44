//! What the engine reads off the cluster for one resource: which
//! incarnations count, their claims and requests, who must acknowledge a
//! stamp, the highest fencing token visible, our lease's end, and whether a
//! live peer's configuration conflicts with ours. Pure reads of the state.

use super::engine::Engine;
use super::rule::{SeenClaim, SeenRequest};
use super::{Mode, Now};
use sc_protocol::dl::{DlRequest, NodeGen};
use std::collections::{BTreeMap, BTreeSet};

impl Engine {
    // ---- views of the cluster, per resource ----------------------------

    /// Does this incarnation's state count for a resource of this mode?
    pub(super) fn counted(&self, ng: &NodeGen, mode: Mode, now: Now) -> bool {
        if self.peers.superseded(ng) {
            return false;
        }
        match mode {
            Mode::Quorum => self.setup.members.contains(&ng.name) && !self.is_down(ng),
            Mode::Available => {
                !self
                    .peers
                    .locally_down(ng, now, self.setup.params.available_down_ms)
            }
        }
    }

    /// Quorum mode: DOWN when superseded or voted by a quorum of members.
    pub(super) fn is_down(&self, ng: &NodeGen) -> bool {
        self.peers.superseded(ng) || self.down_votes(ng) >= self.quorum
    }

    pub(super) fn down_votes(&self, ng: &NodeGen) -> usize {
        self.down_tally.get(ng).copied().unwrap_or(0)
    }

    /// Count, once per member, its votes: ours, or its newest value's.
    pub(super) fn tally_votes(&mut self) {
        let mut tally: BTreeMap<NodeGen, usize> = BTreeMap::new();
        for m in &self.setup.members {
            let votes: BTreeSet<&NodeGen> = if *m == self.setup.me.name {
                self.votes.iter().collect()
            } else {
                self.peers
                    .newest_value(m)
                    .map(|(_, v)| v.down.iter().collect())
                    .unwrap_or_default()
            };
            for ng in votes {
                *tally.entry(ng.clone()).or_default() += 1;
            }
        }
        self.down_tally = tally;
    }

    pub(super) fn mode_of(&self, res: &str) -> Mode {
        self.specs
            .get(res)
            .map(|s| s.mode)
            .unwrap_or(Mode::Available)
    }

    /// Unreleased claims on `res` that count: ours and counted hosts'.
    pub(super) fn claims_on(&self, res: &str, now: Now) -> Vec<SeenClaim<'_>> {
        let mode = self.mode_of(res);
        let me = self.setup.me.name.as_str();
        let mut out: Vec<SeenClaim<'_>> = self
            .claims
            .iter()
            .filter(|c| c.res == res)
            .map(|c| SeenClaim {
                node: me,
                job: c.job,
                units: c.units,
                ts: c.ts,
                held: c.held,
            })
            .collect();
        for (ng, p) in &self.peers.map {
            let Some(v) = &p.value else { continue };
            if !self.counted(ng, mode, now) {
                continue;
            }
            out.extend(v.claims.iter().filter(|c| c.res == res).map(|c| SeenClaim {
                node: ng.name.as_str(),
                job: c.job,
                units: c.units,
                ts: c.ts,
                held: c.held,
            }));
        }
        out
    }

    /// Waiting requests on `res`: ours and counted hosts'.
    pub(super) fn requests_on(&self, res: &str, now: Now) -> Vec<SeenRequest<'_>> {
        let mode = self.mode_of(res);
        let me = self.setup.me.name.as_str();
        let pick = |node: &'_ str, r: &DlRequest| -> Option<(u32, i32, u64, u64)> {
            let _ = node;
            r.needs
                .iter()
                .find(|(n, _)| n == res)
                .map(|(_, u)| (*u, r.prio, r.arr, r.job))
        };
        let mut out: Vec<SeenRequest<'_>> = self
            .reqs
            .iter()
            .filter_map(|r| pick(me, r))
            .map(|(units, prio, arr, job)| SeenRequest {
                node: me,
                job,
                units,
                prio,
                arr,
            })
            .collect();
        for (ng, p) in &self.peers.map {
            let Some(v) = &p.value else { continue };
            if !self.counted(ng, mode, now) {
                continue;
            }
            for r in &v.reqs {
                if let Some((units, prio, arr, job)) = pick(&ng.name, r) {
                    out.push(SeenRequest {
                        node: ng.name.as_str(),
                        job,
                        units,
                        prio,
                        arr,
                    });
                }
            }
        }
        out
    }

    /// Req: the incarnations whose clock must pass a claim's stamp, and
    /// quorum members never seen at all (they block until voted DOWN: as
    /// never seen by a quorum, or in the incarnations others saw, see
    /// [`Engine::voted_away`]).
    pub(super) fn required(&self, mode: Mode, now: Now) -> (Vec<&NodeGen>, Vec<&str>) {
        match mode {
            Mode::Quorum => {
                let mut known = Vec::new();
                let mut unseen = Vec::new();
                for m in &self.setup.members {
                    if *m == self.setup.me.name {
                        continue;
                    }
                    let any = self
                        .peers
                        .map
                        .range(NodeGen::new(m.clone(), 0)..)
                        .next()
                        .is_some_and(|(k, _)| k.name == *m);
                    if !any {
                        if !self.is_down(&NodeGen::new(m.clone(), 0)) && !self.voted_away(m) {
                            unseen.push(m.as_str());
                        }
                        continue;
                    }
                    known.extend(
                        self.peers
                            .current_gens(m)
                            .into_iter()
                            .filter(|g| !self.is_down(g)),
                    );
                }
                (known, unseen)
            }
            Mode::Available => (
                self.peers
                    .current()
                    .map(|(k, _)| k)
                    .filter(|k| self.counted(k, Mode::Available, now))
                    .collect(),
                Vec::new(),
            ),
        }
    }

    /// A member we have never seen, but which the cluster has voted DOWN:
    /// every incarnation of it that our peers still mention — in DOWN
    /// votes (ours included), join lists or lease echoes — is DOWN, and
    /// there is at least one. We then know what we would know had we seen
    /// its last incarnation before chitchat forgot it (a host dead for half
    /// `dead_node_grace` is no longer gossiped, so a host restarted after
    /// that never sees it): it does not count, exactly like a DOWN
    /// incarnation we did see. Our own placeholder vote for a member never
    /// seen (generation 0) is no incarnation and is not asked about; a
    /// live incarnation a peer knows is in that peer's join list, so it
    /// keeps the member required until we see it ourselves.
    pub(super) fn voted_away(&self, member: &str) -> bool {
        let mut mentioned: BTreeSet<&NodeGen> = self
            .down_tally
            .keys()
            .filter(|ng| ng.name == member && ng.generation > 0)
            .collect();
        for p in self.peers.map.values() {
            let Some(v) = &p.value else { continue };
            mentioned.extend(v.jn.iter().filter(|ng| ng.name == member));
            mentioned.extend(
                v.lack
                    .iter()
                    .map(|(ng, _)| ng)
                    .filter(|ng| ng.name == member),
            );
        }
        !mentioned.is_empty() && mentioned.iter().all(|ng| self.is_down(ng))
    }

    /// Highest fencing token ever visible for `res`, from any incarnation
    /// (a DOWN host's last value still counts).
    pub(super) fn max_token(&self, res: &str) -> u64 {
        let mut t = self.toks.get(res).copied().unwrap_or(0);
        t = t.max(
            self.claims
                .iter()
                .filter(|c| c.res == res)
                .map(|c| c.tok)
                .max()
                .unwrap_or(0),
        );
        for p in self.peers.map.values() {
            let Some(v) = &p.value else { continue };
            t = t.max(v.toks.get(res).copied().unwrap_or(0));
            t = t.max(
                v.claims
                    .iter()
                    .filter(|c| c.res == res)
                    .map(|c| c.tok)
                    .max()
                    .unwrap_or(0),
            );
        }
        t
    }

    /// End of our quorum lease, if a quorum acknowledged a renewal.
    pub(super) fn lease_until(&self) -> Option<u64> {
        let me = &self.setup.me;
        let echoes = self
            .setup
            .members
            .iter()
            .filter(|m| **m != me.name)
            .map(|m| self.lease_echo(m).unwrap_or(0));
        self.lease
            .valid_until(echoes, self.quorum, self.setup.params.lease_ms)
    }

    /// The newest renewal of our lease that member `m` echoes, if any.
    pub(super) fn lease_echo(&self, m: &str) -> Option<u64> {
        let me = &self.setup.me;
        self.peers
            .newest_value(m)
            .and_then(|(_, v)| v.lack.iter().find(|(n, _)| n == me).map(|(_, s)| *s))
    }

    /// A resource whose configuration differs from a live peer's.
    /// The latest release of `res` by another host at or after `since`
    /// (wall ms, each host's own clock), from the current values.
    pub(super) fn released_since(&self, res: &str, since: u64) -> Option<u64> {
        self.peers
            .current()
            .filter_map(|(_, p)| p.value.as_ref()?.rel.get(res).copied())
            .filter(|at| *at >= since)
            .max()
    }

    pub fn conflict(&self, res: &str) -> Option<String> {
        let mine = self.res_cfg.get(res)?;
        let quorum = self.mode_of(res) == Mode::Quorum;
        for (ng, p) in self.peers.current() {
            if !p.live {
                continue;
            }
            let Some(v) = &p.value else { continue };
            if let Some(theirs) = v.res.get(res)
                && theirs != mine
            {
                return Some(format!(
                    "{} has {res} = {theirs}, this host {mine}; fix [resources] so every host agrees",
                    ng.name
                ));
            }
            if quorum && self.setup.members.contains(&ng.name) && v.mh != self.mh {
                return Some(format!(
                    "[cluster] members differ between this host and {}",
                    ng.name
                ));
            }
        }
        None
    }
}
