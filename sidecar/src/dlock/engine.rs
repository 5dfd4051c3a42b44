//! The per-host lock state machine (shared/CLUSTER-LOCKS.md §5.3): it
//! takes observations, requests and releases, and on every [`Engine::step`]
//! applies the rules in order — votes (R6), claims (R2), entry (R3), lease
//! renewal and stopper deadlines (R9), over-capacity preemption (R8) — and
//! says what to publish and whom to poke.

use super::lease::Lease;
use super::peers::Peers;
use super::rule::{self, SeenClaim, hlc_phys};
use super::{
    Grant, Mode, Now, Observation, Output, RequestError, ResourceSpec, Setup, Stats, StopReason,
};
use sc_protocol::board::encode_value;
use sc_protocol::dl::{DlClaim, DlRequest, DlValue, NodeGen};
use std::collections::{BTreeMap, BTreeSet};

/// Hosts dead this long leave our join list (keeps the value small).
const JN_FORGET_MS: u64 = 10 * 60 * 1000;

pub struct Engine {
    pub(super) setup: Setup,
    pub(super) specs: BTreeMap<String, ResourceSpec>,
    pub(super) res_cfg: BTreeMap<String, String>,
    pub(super) mh: u64,
    pub(super) quorum: usize,
    pub(super) member: bool,
    pub(super) started_ms: Option<u64>,
    pub(super) clk: u64,
    pub(super) seq: u64,
    pub(super) reqs: Vec<DlRequest>,
    pub(super) claims: Vec<DlClaim>,
    pub(super) toks: BTreeMap<String, u64>,
    /// When we last released a held claim, per resource (wall ms).
    pub(super) rel: BTreeMap<String, u64>,
    pub(super) lease: Lease,
    pub(super) votes: BTreeSet<NodeGen>,
    pub(super) peers: Peers,
    pub(super) published: Option<DlValue>,
    pub(super) pokes: BTreeSet<String>,
    pub(super) deadlines: BTreeMap<u64, u64>,
    pub(super) stopping: BTreeSet<u64>,
    pub(super) self_down: bool,
    /// Since when partial DOWN votes have kept us from any lease.
    pub(super) vote_blocked_since: Option<u64>,
    /// DOWN votes per incarnation (members' newest values and ours),
    /// rebuilt when either changes: `is_down` runs for every peer in
    /// every view, and recounting there is O(members × votes) each time.
    pub(super) down_tally: BTreeMap<NodeGen, usize>,
    pub stats: Stats,
}

/// FNV-1a: a stable hash of the membership list for the config check.
fn members_hash(members: &[String]) -> u64 {
    if members.is_empty() {
        return 0;
    }
    let mut sorted = members.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in sorted.join("\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl Engine {
    pub fn new(setup: Setup) -> Engine {
        let specs: BTreeMap<String, ResourceSpec> = setup
            .resources
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        let res_cfg = specs
            .values()
            .map(|r| {
                (
                    r.name.clone(),
                    format!("{}/{}", r.capacity, r.mode.as_str()),
                )
            })
            .collect();
        let mut members = setup.members.clone();
        members.sort();
        members.dedup();
        let member = members.contains(&setup.me.name);
        let mut e = Engine {
            mh: members_hash(&members),
            quorum: members.len() / 2 + 1,
            member,
            votes: setup.votes.iter().cloned().collect(),
            setup: Setup { members, ..setup },
            specs,
            res_cfg,
            started_ms: None,
            clk: 0,
            seq: 0,
            reqs: Vec::new(),
            claims: Vec::new(),
            toks: BTreeMap::new(),
            rel: BTreeMap::new(),
            lease: Lease::default(),
            peers: Peers::default(),
            published: None,
            pokes: BTreeSet::new(),
            deadlines: BTreeMap::new(),
            stopping: BTreeSet::new(),
            self_down: false,
            vote_blocked_since: None,
            down_tally: BTreeMap::new(),
            stats: Stats::default(),
        };
        e.tally_votes();
        e
    }

    pub fn me(&self) -> &NodeGen {
        &self.setup.me
    }

    /// Take in chitchat's view: every incarnation it knows.
    pub fn observe(&mut self, now: Now, obs: &[Observation]) {
        self.started_ms.get_or_insert(now.mono_ms);
        let (ackers, max_ts, paused) =
            self.peers
                .observe(now, obs, &self.setup.me, self.clk, &mut self.stats);
        if paused {
            // A continued daemon is a fresh one as far as it knows: what
            // chitchat shows is as old as the pause, so it waits the same
            // startup grace (available mode) before it grants again.
            self.started_ms = Some(now.mono_ms);
        }
        // R0: raise the clock past every claim seen; publishing it is the
        // acknowledgement, and the claimer is poked to pick it up at once.
        self.clk = self.clk.max(max_ts);
        self.pokes.extend(ackers);
        self.tally_votes();
    }

    /// R1: a job asks for units of resources. Refused at once when it can
    /// never be granted here.
    pub fn request(
        &mut self,
        now: Now,
        job: u64,
        needs: &[(String, u32)],
        prio: i32,
    ) -> Result<(), RequestError> {
        if self.reqs.iter().any(|r| r.job == job) || self.claims.iter().any(|c| c.job == job) {
            return Err(RequestError::Duplicate(job));
        }
        for (name, units) in needs {
            let spec = self
                .specs
                .get(name)
                .ok_or_else(|| RequestError::Unknown(name.clone()))?;
            if *units == 0 || *units > spec.capacity {
                return Err(RequestError::TooMany {
                    name: name.clone(),
                    units: *units,
                    capacity: spec.capacity,
                });
            }
            if spec.mode == Mode::Quorum && !self.member {
                return Err(RequestError::NotMember(name.clone()));
            }
            if let Some(why) = self.conflict(name) {
                return Err(RequestError::Conflict {
                    name: name.clone(),
                    why,
                });
            }
        }
        let mut needs = needs.to_vec();
        needs.sort();
        self.reqs.push(DlRequest {
            job,
            needs,
            prio,
            arr: self.clk.max(hlc_phys(now.wall_ms)),
        });
        Ok(())
    }

    /// R4: the job ended (or gave up waiting). Its claims go, and the next
    /// claimers are poked so the hand-over costs one exchange.
    pub fn release(&mut self, job: u64, now: Now) {
        self.reqs.retain(|r| r.job != job);
        let gone: Vec<DlClaim> = self
            .claims
            .iter()
            .filter(|c| c.job == job)
            .cloned()
            .collect();
        self.claims.retain(|c| c.job != job);
        self.deadlines.remove(&job);
        self.stopping.remove(&job);
        for c in &gone {
            if c.held {
                let t = self.toks.entry(c.res.clone()).or_insert(0);
                *t = (*t).max(c.tok);
                self.rel.insert(c.res.clone(), now.wall_ms);
            }
            // Everyone still waiting on the resource: claimers may enter,
            // and requesters may now fit in the claim window — left to
            // the next gossip round, they would wait a gossip interval.
            let mut names: Vec<String> = self
                .claims_on(&c.res, now)
                .into_iter()
                .filter(|o| !o.held)
                .map(|o| o.node.to_string())
                .collect();
            names.extend(
                self.requests_on(&c.res, now)
                    .into_iter()
                    .map(|r| r.node.to_string()),
            );
            self.pokes.extend(names);
        }
    }

    /// Is this job granted (all its claims held)?
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn holds(&self, job: u64) -> bool {
        let mut any = false;
        for c in self.claims.iter().filter(|c| c.job == job) {
            if !c.held {
                return false;
            }
            any = true;
        }
        any
    }

    /// Jobs with a request or claims here.
    pub fn jobs(&self) -> BTreeSet<u64> {
        self.reqs
            .iter()
            .map(|r| r.job)
            .chain(self.claims.iter().map(|c| c.job))
            .collect()
    }

    // ---- the step ------------------------------------------------------

    pub fn step(&mut self, now: Now) -> Output {
        let mut out = Output::default();
        self.started_ms.get_or_insert(now.mono_ms);
        if self.member && self.update_votes(now) {
            self.tally_votes();
            out.votes = Some(self.votes.iter().cloned().collect());
        }
        if self.member && self.down_votes(&self.setup.me.clone()) >= self.quorum {
            self.self_down = true;
        }
        if self.member && !self.self_down && self.blocked_by_votes(now) {
            self.self_down = true;
        }
        if self.self_down {
            out.self_down = true;
            for job in self.held_jobs() {
                if self.stopping.insert(job) {
                    out.stop.push((job, StopReason::SelfDown));
                }
            }
        } else {
            self.claim_stage(now);
            self.renew_lease(now);
            self.entry_stage(now, &mut out);
        }
        self.stopper_deadlines(now, &mut out);
        self.preempt_excess(now, &mut out);
        out.publish = self.compose(now);
        let me = self.setup.me.name.clone();
        out.pokes = std::mem::take(&mut self.pokes)
            .into_iter()
            .filter(|n| *n != me)
            .collect();
        out
    }

    fn held_jobs(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .claims
            .iter()
            .filter(|c| c.held)
            .map(|c| c.job)
            .collect();
        v.dedup();
        v
    }

    /// R6 (quorum): vote DOWN, for good, any member incarnation silent for
    /// T_down, and members never seen for T_down after our start.
    fn update_votes(&mut self, now: Now) -> bool {
        let t_down = self.setup.params.t_down_ms();
        let mut new = Vec::new();
        for m in &self.setup.members {
            if *m == self.setup.me.name {
                continue;
            }
            let gens = self.peers.current_gens(m);
            if gens.is_empty() {
                let ng = NodeGen::new(m.clone(), 0);
                let any = self
                    .peers
                    .map
                    .range(ng.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.name == *m);
                let since = self.started_ms.unwrap_or(now.mono_ms);
                if !any && now.mono_ms.saturating_sub(since) >= t_down {
                    new.push(ng);
                }
                continue;
            }
            for g in gens {
                if let Some(p) = self.peers.map.get(g)
                    && now.mono_ms.saturating_sub(p.progress_ms) >= t_down
                {
                    new.push(g.clone());
                }
            }
        }
        let mut changed = false;
        for ng in new {
            changed |= self.votes.insert(ng);
        }
        changed
    }

    /// R2 + R7: turn requests within the window into claims, once every
    /// required host has admitted us.
    fn claim_stage(&mut self, now: Now) {
        let mut order: Vec<(u64, u64)> = self.reqs.iter().map(|r| (r.arr, r.job)).collect();
        order.sort();
        for (_, job) in order {
            let Some(req) = self.reqs.iter().find(|r| r.job == job).cloned() else {
                continue;
            };
            if !self.may_claim(&req, now) {
                continue;
            }
            let peers_clk = self
                .peers
                .current()
                .filter_map(|(_, p)| p.value.as_ref().map(|v| v.clk))
                .max()
                .unwrap_or(0);
            let ts = self.clk.max(peers_clk).max(hlc_phys(now.wall_ms)) + 1;
            self.clk = ts;
            for (res, units) in &req.needs {
                self.claims.push(DlClaim {
                    job,
                    res: res.clone(),
                    units: *units,
                    ts,
                    held: false,
                    tok: 0,
                    prio: req.prio,
                    arr: req.arr,
                });
                let (known, _) = self.required(self.mode_of(res), now);
                let names: Vec<String> = known.iter().map(|k| k.name.clone()).collect();
                self.pokes.extend(names);
            }
            self.reqs.retain(|r| r.job != job);
        }
    }

    pub(super) fn admitted(&self, mode: Mode, now: Now) -> Result<(), String> {
        let me = &self.setup.me;
        let (known, unseen) = self.required(mode, now);
        if let Some(m) = unseen.first() {
            return Err(format!("member {m} has never been seen"));
        }
        for k in known {
            let ok = self.peers.value(k).is_some_and(|v| v.jn.contains(me));
            if !ok {
                return Err(format!("waiting for {} to admit this host", k.name));
            }
        }
        Ok(())
    }

    fn may_claim(&self, req: &DlRequest, now: Now) -> bool {
        req.needs.iter().all(|(res, _)| {
            let Some(spec) = self.specs.get(res) else {
                return false;
            };
            if self.conflict(res).is_some() || self.admitted(spec.mode, now).is_err() {
                return false;
            }
            let claims = self.claims_on(res, now);
            let claimed: u32 = claims.iter().map(|c| c.units).sum();
            let reqs = self.requests_on(res, now);
            let me = self.setup.me.name.as_str();
            // Aging reads each host's wall clock, so hosts whose clocks
            // disagree can each rank another host's request first: nobody
            // claims and nothing changes, for good. While the resource has
            // no claim at all, the first request by arrival, on which
            // everyone agrees, may claim as well. Claims are safe in any
            // number; this costs at most one priority inversion.
            rule::in_window(
                me,
                req.job,
                &reqs,
                (spec.capacity + spec.prefetch).saturating_sub(claimed),
                now.wall_ms,
                &self.setup.params,
            )
            .0 || claims.is_empty()
                && reqs
                    .iter()
                    .min_by_key(|r| (r.arr, r.node, r.job))
                    .is_some_and(|r| r.node == me && r.job == req.job)
        })
    }

    /// (a) of R3: every required clock has passed `ts`. Returns the first
    /// host that has not.
    pub(super) fn acked(&self, mode: Mode, ts: u64, now: Now) -> Result<(), String> {
        let (known, unseen) = self.required(mode, now);
        if let Some(m) = unseen.first() {
            return Err((*m).to_string());
        }
        for k in known {
            if self.peers.value(k).is_none_or(|v| v.clk < ts) {
                return Err(k.name.clone());
            }
        }
        Ok(())
    }

    /// A member that voted this incarnation DOWN never acknowledges its
    /// lease again, even when fewer than a quorum voted. If the live
    /// members would make a quorum but the willing ones do not, this
    /// generation can never hold a lease again (say a 2–2 split of a
    /// 5-member cluster with the fifth down: each side voted the other):
    /// once that has lasted T_down with our lease run out, come back as a
    /// new generation, which everyone acknowledges.
    fn blocked_by_votes(&mut self, now: Now) -> bool {
        let me = &self.setup.me;
        let (mut live, mut willing) = (1, 1);
        for m in self.setup.members.iter().filter(|m| **m != me.name) {
            let Some((ng, v)) = self.peers.newest_value(m) else {
                continue;
            };
            if self.peers.map.get(ng).is_some_and(|p| p.live) {
                live += 1;
                willing += usize::from(!v.down.contains(me));
            }
        }
        // Waiting requests count too, not only claims: with a bare quorum
        // up, every host someone voted against is blocked, and if each
        // waited to reach the claim window first they would come back one
        // T_down after another.
        let quorum = |r: &str| self.mode_of(r) == Mode::Quorum;
        let wants = self.claims.iter().any(|c| quorum(&c.res))
            || self
                .reqs
                .iter()
                .any(|r| r.needs.iter().any(|(n, _)| quorum(n)));
        let blocked = live >= self.quorum
            && willing < self.quorum
            && self.lease_until().is_none_or(|u| u <= now.mono_ms)
            && wants;
        if !blocked {
            self.vote_blocked_since = None;
            return false;
        }
        let since = *self.vote_blocked_since.get_or_insert(now.mono_ms);
        now.mono_ms - since >= self.setup.params.t_down_ms()
    }

    fn lease_ok(&self, now: Now) -> bool {
        self.lease_until()
            .is_some_and(|until| until >= now.mono_ms + self.setup.params.min_lease_to_enter_ms())
    }

    /// R3: a job enters when every one of its claims may, at once.
    fn entry_stage(&mut self, now: Now, out: &mut Output) {
        let waiting: BTreeSet<u64> = self
            .claims
            .iter()
            .filter(|c| !c.held)
            .map(|c| c.job)
            .collect();
        for job in waiting {
            let mine: Vec<DlClaim> = self
                .claims
                .iter()
                .filter(|c| c.job == job)
                .cloned()
                .collect();
            let me = self.setup.me.name.clone();
            let ok = mine.iter().all(|c| {
                let Some(spec) = self.specs.get(&c.res) else {
                    return false;
                };
                if self.acked(spec.mode, c.ts, now).is_err() {
                    return false;
                }
                if spec.mode == Mode::Quorum && !self.lease_ok(now) {
                    return false;
                }
                // A fresh incarnation has not heard from anyone yet: in
                // available mode it would grant at once, beside holders it
                // simply has not heard of. Give gossip the down time to
                // merge first (quorum mode waits for acknowledgements).
                if spec.mode == Mode::Available
                    && self.started_ms.is_some_and(|t| {
                        now.mono_ms.saturating_sub(t) < self.setup.params.startup_grace_ms
                    })
                {
                    return false;
                }
                let all = self.claims_on(&c.res, now);
                let seen = SeenClaim {
                    node: &me,
                    job,
                    units: c.units,
                    ts: c.ts,
                    held: false,
                };
                rule::fits(&seen, &all, spec.capacity)
            });
            if !ok {
                continue;
            }
            let mut tokens = Vec::new();
            for c in &mine {
                // Never below the claim's stamp: a holder that crashed or
                // was cut off right after entering may never have shown
                // its token to anyone, and once it is DOWN or superseded
                // nobody waits for it. Stamps of successive holders grow
                // (§5.4's lemma), so stamp-floored tokens still do.
                let tok = (self.max_token(&c.res) + 1).max(c.ts);
                self.toks.insert(c.res.clone(), tok);
                tokens.push((c.res.clone(), tok));
            }
            for c in self.claims.iter_mut().filter(|c| c.job == job) {
                c.held = true;
                c.tok = tokens
                    .iter()
                    .find(|(r, _)| *r == c.res)
                    .map(|(_, t)| *t)
                    .unwrap_or(0);
            }
            self.stats.grants += 1;
            let released_at = mine
                .iter()
                .filter_map(|c| self.released_since(&c.res, rule::hlc_wall_ms(c.arr)))
                .max();
            out.granted.push(Grant {
                job,
                tokens,
                released_at,
            });
        }
    }

    fn renew_lease(&mut self, now: Now) {
        let quorum_claims = self
            .claims
            .iter()
            .any(|c| self.mode_of(&c.res) == Mode::Quorum);
        if !quorum_claims {
            return;
        }
        let due = self
            .lease
            .last_renewal_ms()
            .is_none_or(|t| now.mono_ms.saturating_sub(t) >= self.setup.params.renew_ms());
        if due {
            self.lease.renew(now.mono_ms);
        }
    }

    /// R9: the stopper deadline of each held job. Quorum: the lease's end
    /// minus the stop margin; a job past it is stopped. Available: the
    /// available-mode down time from now, so a job whose daemon died stops
    /// about when the others start counting its slot as free.
    fn stopper_deadlines(&mut self, now: Now, out: &mut Output) {
        let p = self.setup.params;
        let until = self.lease_until();
        for job in self.held_jobs() {
            let quorum: Vec<String> = self
                .claims
                .iter()
                .filter(|c| c.job == job && self.mode_of(&c.res) == Mode::Quorum)
                .map(|c| c.res.clone())
                .collect();
            let prev = self.deadlines.get(&job).copied();
            let d = if quorum.is_empty() {
                now.mono_ms + p.available_down_ms
            } else {
                until
                    .map(|u| u.saturating_sub(p.stop_margin_ms()))
                    .unwrap_or(0)
            };
            let report = match prev {
                None => true,
                Some(old) if quorum.is_empty() => d >= old + p.renew_ms() || d < old,
                Some(old) => d != old,
            };
            if report {
                self.deadlines.insert(job, d);
                out.leases.push((job, d));
            }
            if !quorum.is_empty() && d <= now.mono_ms && self.stopping.insert(job) {
                self.stats.lost_leases += 1;
                out.stop
                    .push((job, StopReason::LostLease { resources: quorum }));
            }
        }
    }

    /// R8: more holders than capacity (available mode after a heal, or a
    /// broken assumption in quorum mode): ours beyond the first K units in
    /// claim order stop.
    fn preempt_excess(&mut self, now: Now, out: &mut Output) {
        let me = self.setup.me.name.clone();
        let mut victims = Vec::new();
        for (name, spec) in &self.specs {
            let all = self.claims_on(name, now);
            for c in rule::excess(&all, spec.capacity) {
                if c.node == me {
                    victims.push((c.job, name.clone()));
                }
            }
        }
        for (job, resource) in victims {
            if self.stopping.insert(job) {
                self.stats.preemptions += 1;
                out.stop.push((job, StopReason::Preempted { resource }));
            }
        }
    }

    /// Our value; `Some` when it changed since the last publication.
    fn compose(&mut self, now: Now) -> Option<String> {
        // `toks` is the highest token used *or seen* (§5.2): carrying the
        // tokens seen in others' values is how a restarted generation of
        // their holder learns them, as it never reads its predecessor's
        // value.
        let names: Vec<String> = self.specs.keys().cloned().collect();
        for r in names {
            let t = self.max_token(&r);
            if t > 0 {
                self.toks.insert(r, t);
            }
        }
        let lack: Vec<(NodeGen, u64)> = if self.member {
            self.peers
                .current()
                .filter(|(k, _)| self.setup.members.contains(&k.name) && !self.votes.contains(k))
                .filter_map(|(k, p)| {
                    let v = p.value.as_ref()?;
                    (v.lseq > 0 && !v.claims.is_empty()).then(|| (k.clone(), v.lseq))
                })
                .collect()
        } else {
            Vec::new()
        };
        let jn: Vec<NodeGen> = self
            .peers
            .current()
            .filter(|(_, p)| {
                p.live
                    || p.dead_since
                        .is_some_and(|t| now.mono_ms.saturating_sub(t) < JN_FORGET_MS)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let value = DlValue {
            seq: self.seq,
            clk: self.clk,
            res: self.res_cfg.clone(),
            mh: self.mh,
            reqs: self.reqs.clone(),
            claims: self.claims.clone(),
            jn,
            toks: self.toks.clone(),
            lseq: self.lease.lseq,
            lack,
            down: self.votes.iter().cloned().collect(),
            rel: self.rel.clone(),
        };
        if self.published.as_ref() == Some(&value) {
            return None;
        }
        // `value` carries the last published seq, so the comparison above
        // ignores it; a real change gets the next one.
        self.seq += 1;
        let value = DlValue {
            seq: self.seq,
            ..value
        };
        let s = encode_value(&value);
        self.published = Some(value);
        self.stats.publishes += 1;
        Some(s)
    }
}
