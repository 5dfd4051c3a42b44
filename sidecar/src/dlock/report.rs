//! What the engine tells people: why each of our jobs waits (naming the
//! holders, or the members that hold our lease back), and each resource's
//! holders and queue for `sc board`.

use super::engine::Engine;
use super::rule::{self, SeenClaim};
use super::{Mode, Now, ResourceView, Wait};

impl Engine {
    /// Why each of our waiting jobs waits, on the first resource that
    /// holds it back.
    pub fn waits(&self, now: Now) -> Vec<Wait> {
        let me = self.setup.me.name.as_str();
        let mut out = Vec::new();
        for req in &self.reqs {
            for (res, _) in &req.needs {
                if let Some(w) = self.request_wait(req.job, res, now) {
                    out.push(w);
                    break;
                }
            }
        }
        let mut jobs: Vec<u64> = self
            .claims
            .iter()
            .filter(|c| !c.held)
            .map(|c| c.job)
            .collect();
        jobs.dedup();
        for job in jobs {
            for c in self.claims.iter().filter(|c| c.job == job) {
                let all = self.claims_on(&c.res, now);
                let mode = self.mode_of(&c.res);
                let mine = SeenClaim {
                    node: me,
                    job,
                    units: c.units,
                    ts: c.ts,
                    held: false,
                };
                let cap = self.specs.get(&c.res).map(|s| s.capacity).unwrap_or(0);
                // Holders first: they are what the user waits on; the
                // protocol's own steps only when nothing else holds it back.
                let detail = if !rule::fits(&mine, &all, cap) {
                    None
                } else if let Err(who) = self.acked(mode, c.ts, now) {
                    Some(format!("waiting for {who} to acknowledge the claim"))
                } else if mode == Mode::Quorum
                    && self
                        .lease_until()
                        .is_none_or(|u| u < now.mono_ms + self.setup.params.min_lease_to_enter_ms())
                {
                    Some(self.lease_shortfall(now))
                } else {
                    continue;
                };
                out.push(Wait {
                    job,
                    res: c.res.clone(),
                    holders: holders(&all),
                    ahead: rule::claims_ahead(&mine, &all),
                    detail,
                });
                break;
            }
        }
        out
    }

    /// Why our lease is short, member by member: who voted us DOWN, whose
    /// echo is too old, who never echoed — so a stuck quorum names its
    /// cause instead of just failing.
    fn lease_shortfall(&self, now: Now) -> String {
        let me = &self.setup.me;
        let fresh_ms = self.setup.params.lease_ms - self.setup.params.min_lease_to_enter_ms();
        let mut ok = 1;
        let mut why = Vec::new();
        for m in self.setup.members.iter().filter(|m| **m != me.name) {
            let Some((_, v)) = self.peers.newest_value(m) else {
                why.push(format!("{m} has published nothing"));
                continue;
            };
            if v.down.contains(me) {
                why.push(format!("{m} voted this host DOWN"));
                continue;
            }
            match self.lease_echo(m).and_then(|s| self.lease.sent_at(s)) {
                Some(at) if now.mono_ms.saturating_sub(at) < fresh_ms => ok += 1,
                Some(at) => why.push(format!(
                    "{m} echoes a renewal {:.1}s old",
                    now.mono_ms.saturating_sub(at) as f64 / 1000.0
                )),
                None => why.push(format!("{m} has not echoed a renewal")),
            }
        }
        format!(
            "no quorum: {ok} of {} members acknowledge this host's lease in time, {} needed ({})",
            self.setup.members.len(),
            self.quorum,
            why.join(", ")
        )
    }

    fn request_wait(&self, job: u64, res: &str, now: Now) -> Option<Wait> {
        let spec = self.specs.get(res)?;
        let all = self.claims_on(res, now);
        let detail = if let Some(why) = self.conflict(res) {
            Some(format!("configuration conflict: {why}"))
        } else {
            self.admitted(spec.mode, now)
                .err()
                .map(|why| format!("joining the cluster: {why}"))
        };
        let claimed: u32 = all.iter().map(|c| c.units).sum();
        let reqs = self.requests_on(res, now);
        let (fits, ahead) = rule::in_window(
            &self.setup.me.name,
            job,
            &reqs,
            (spec.capacity + spec.prefetch).saturating_sub(claimed),
            now.wall_ms,
            &self.setup.params,
        );
        if fits && detail.is_none() {
            return None;
        }
        let unheld = all.iter().filter(|c| !c.held).count() as u32;
        Some(Wait {
            job,
            res: res.to_string(),
            holders: holders(&all),
            ahead: ahead + unheld,
            detail,
        })
    }

    /// Every configured resource: holders, then the queue in order.
    pub fn resources(&self, now: Now) -> Vec<ResourceView> {
        self.specs
            .values()
            .map(|spec| {
                let mut all = self.claims_on(&spec.name, now);
                all.sort_by(rule::claim_order);
                let prio = |node: &str, job: u64| -> i32 {
                    if node == self.setup.me.name {
                        self.claims
                            .iter()
                            .find(|c| c.job == job)
                            .map(|c| c.prio)
                            .unwrap_or(0)
                    } else {
                        self.peers
                            .newest_value(node)
                            .and_then(|(_, v)| v.claims.iter().find(|c| c.job == job))
                            .map(|c| c.prio)
                            .unwrap_or(0)
                    }
                };
                let token = |node: &str, job: u64| -> u64 {
                    if node == self.setup.me.name {
                        self.claims
                            .iter()
                            .find(|c| c.job == job && c.res == spec.name)
                            .map(|c| c.tok)
                            .unwrap_or(0)
                    } else {
                        self.peers
                            .newest_value(node)
                            .and_then(|(_, v)| {
                                v.claims.iter().find(|c| c.job == job && c.res == spec.name)
                            })
                            .map(|c| c.tok)
                            .unwrap_or(0)
                    }
                };
                let mut reqs = self.requests_on(&spec.name, now);
                rule::rank(&mut reqs, now.wall_ms, &self.setup.params);
                ResourceView {
                    name: spec.name.clone(),
                    capacity: spec.capacity,
                    mode: spec.mode,
                    holders: all
                        .iter()
                        .filter(|c| c.held)
                        .map(|c| (c.node.to_string(), c.job, c.units, token(c.node, c.job)))
                        .collect(),
                    queue: all
                        .iter()
                        .filter(|c| !c.held)
                        .map(|c| {
                            (
                                c.node.to_string(),
                                c.job,
                                c.units,
                                true,
                                prio(c.node, c.job),
                            )
                        })
                        .chain(
                            reqs.iter()
                                .map(|r| (r.node.to_string(), r.job, r.units, false, r.prio)),
                        )
                        .collect(),
                    conflict: self.conflict(&spec.name),
                }
            })
            .collect()
    }
}

fn holders(all: &[SeenClaim<'_>]) -> Vec<(String, u64)> {
    all.iter()
        .filter(|c| c.held)
        .map(|c| (c.node.to_string(), c.job))
        .collect()
}
