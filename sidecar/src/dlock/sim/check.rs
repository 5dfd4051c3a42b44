//! The invariants, checked on the TRUE state (which jobs really run, and
//! who can really talk to whom), never on what engines believe
//! (CLUSTER-LOCKS.md §6):
//!
//! - capacity, quorum mode: units of running jobs ≤ K, globally, at every
//!   grant (only a grant adds units); a job runs from its grant until it
//!   finished, was stopped, was killed by its stopper or died with its host;
//! - capacity, available mode: ≤ K among hosts mutually connected (same
//!   component, both up, no heavy loss, each known to and held live by the
//!   other's chitchat) for longer than T_heal, checked at every grant and
//!   every 20 ms;
//! - no minority grants, quorum mode (§6 invariant 2, in the form the
//!   lease rule implies under moving partitions): a grant needs, for a
//!   quorum of members, a round trip of values through the network that
//!   started in the last L/2 (matrix clocks, `causal.rs`);
//! - fencing tokens per capacity-1 resource strictly increase in grant
//!   order: globally in quorum mode, between hosts connected for T_heal in
//!   available mode. With capacity ≥ 2 concurrent holders can draw the
//!   same token, so regressions are only counted. Nothing persists tokens:
//!   a holder that dies before anyone saw its token is covered only by the
//!   token's floor at the claim's HLC stamp, which a wall clock stepped
//!   back (or forward, on the host that set the stamp) can undercut once
//!   every host that saw the stamp is gone, and a whole-cluster outage
//!   forgets everything. So the order restarts at a blackout, and after a
//!   wall-clock step a regression is counted, not failed;
//! - liveness: once faults stop and the load stops, every request drains
//!   and every engine's view empties, within a bound.

use super::super::{Mode, Params, ResourceSpec};
use super::host::JobState;
use super::net::NetParams;
use super::world::World;
use std::collections::{BTreeMap, VecDeque};

/// How a running job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Done,
    Stopped,
    Stopper,
    Crash,
    Restart,
}

#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub requests: u64,
    pub grants: u64,
    pub handovers: u64,
    /// Release of a resource someone waited for → next grant on it.
    pub handover_ms: Vec<u64>,
    pub preemptions: u64,
    pub lost_leases: u64,
    pub stopper_kills: u64,
    pub self_downs: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub pauses: u64,
    pub stalls: u64,
    pub partitions: u64,
    pub joins: u64,
    pub gave_up: u64,
    pub abandoned: u64,
    pub request_errors: u64,
    /// Capacity ≥ 2: a grant whose token is not above every earlier one.
    pub token_regressions: u64,
    /// Quorum mode: grants on a host whose side lacks a quorum of members
    /// (allowed for L/2 while its lease lasts; counted to show it).
    pub minority_grants: u64,
    /// Times every host was down at once (the token order restarts).
    pub blackouts: u64,
    /// Pairs connected for T_heal that one side's failure detector
    /// nevertheless called dead (phi false positives).
    pub detector_flaps: u64,
    /// Capacity 1: token regressions in runs with wall-clock steps.
    pub fencing_after_clock_step: u64,
    pub publishes: u64,
    pub messages: u64,
    pub steps: u64,
    pub events: u64,
    pub max_wait_ms: u64,
    pub sim_ms: u64,
    pub tail_start_ms: u64,
    pub drain_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: String,
    pub at_ms: u64,
    pub detail: String,
    pub trace: Vec<String>,
}

const TRACE_KEEP: usize = 400;
const TRACE_SHOW: usize = 60;
const RECENT_GRANTS: usize = 64;

pub struct Checker {
    caps: BTreeMap<String, (u32, Mode)>,
    pub t_heal: u64,
    /// since[a][b]: start of a and b's current unbroken connection
    /// (u64::MAX: not connected); since[a][a]: up since.
    since: Vec<Vec<u64>>,
    last_tok: BTreeMap<String, u64>,
    recent: BTreeMap<String, VecDeque<(usize, u64, u64)>>,
    handover_from: BTreeMap<String, u64>,
    trace: VecDeque<String>,
    pub violation: Option<Violation>,
    /// A wall clock was stepped in this run (see the module doc).
    pub clock_stepped: bool,
    /// SC_SIM_TRACE is set: print every traced event as it happens.
    pub echo_trace: bool,
    /// Quorum mode: since when each host has had fewer than a quorum of
    /// members up on its side of the partition.
    pub minority_since: Vec<Option<u64>>,
}

impl Checker {
    pub fn new(specs: &[ResourceSpec], slots: usize, _p: Params, net: NetParams) -> Checker {
        Checker {
            caps: specs
                .iter()
                .map(|s| (s.name.clone(), (s.capacity, s.mode)))
                .collect(),
            // Detection-sized slack plus 2 s for views to merge and the
            // preempted job to stop (CLUSTER-LOCKS.md §5.6: T_heal).
            t_heal: 8 * net.gossip_ms + 2000 + 200,
            since: vec![vec![u64::MAX; slots]; slots],
            last_tok: BTreeMap::new(),
            recent: BTreeMap::new(),
            handover_from: BTreeMap::new(),
            trace: VecDeque::new(),
            violation: None,
            clock_stepped: false,
            echo_trace: std::env::var_os("SC_SIM_TRACE").is_some(),
            minority_since: vec![None; slots],
        }
    }

    /// Update who has been connected since when. `peer(a, b)` says
    /// whether a's chitchat knows b, and holds it live. Returns how many
    /// long-connected pairs just broke only because the failure detector
    /// called one of them dead (links up, no heavy loss).
    pub fn connectivity(
        &mut self,
        t: u64,
        comps: &[Option<usize>],
        disturbed: bool,
        peer: impl Fn(usize, usize) -> (bool, bool),
    ) -> u64 {
        let mut flaps = 0;
        let n = self.since.len();
        for a in 0..n {
            for b in 0..n {
                let linked = comps[a].is_some() && comps[a] == comps[b] && !disturbed;
                let (ab, ba) = (peer(a, b), peer(b, a));
                let same = comps[a].is_some() && (a == b || linked && ab.0 && ba.0 && ab.1 && ba.1);
                if !same && a < b && linked && ab.0 && ba.0 && self.stable(a, b, t) {
                    flaps += 1;
                }
                let s = &mut self.since[a][b];
                if !same {
                    *s = u64::MAX;
                } else if *s == u64::MAX {
                    *s = t;
                }
            }
        }
        flaps
    }

    pub fn forget_tokens(&mut self) {
        self.last_tok.clear();
        self.recent.clear();
    }

    /// Connected without a break since at least T_heal before `t`.
    fn stable(&self, a: usize, b: usize, t: u64) -> bool {
        let s = self.since[a][b];
        s != u64::MAX && s + self.t_heal <= t
    }
}

impl World {
    pub fn trace(&mut self, line: String) {
        let c = &mut self.check;
        let line = format!("{:>7} {line}", self.now);
        if c.echo_trace {
            eprintln!("seed {} {}", self.cfg.seed, line);
        }
        c.trace.push_back(line);
        if c.trace.len() > TRACE_KEEP {
            c.trace.pop_front();
        }
    }

    pub fn fail(&mut self, invariant: &str, detail: String) {
        if self.check.violation.is_some() {
            return;
        }
        let tr = &self.check.trace;
        self.check.violation = Some(Violation {
            invariant: invariant.to_string(),
            at_ms: self.now,
            detail,
            trace: tr
                .iter()
                .skip(tr.len().saturating_sub(TRACE_SHOW))
                .cloned()
                .collect(),
        });
    }

    /// (host, job, units, token) of every job really running on `res`.
    fn running_on(&self, res: &str) -> Vec<(usize, u64, u32, u64)> {
        let mut out = Vec::new();
        for (h, host) in self.hosts.iter().enumerate() {
            for (&id, job) in &host.jobs {
                let JobState::Running { tokens, .. } = &job.state else {
                    continue;
                };
                if let Some((_, u)) = job.needs.iter().find(|(r, _)| r == res) {
                    let tok = tokens.iter().find(|(r, _)| r == res).map_or(0, |t| t.1);
                    out.push((h, id, *u, tok));
                }
            }
        }
        out
    }

    fn describe(&self, holders: &[(usize, u64, u32, u64)]) -> String {
        let parts: Vec<String> = holders
            .iter()
            .map(|&(h, j, u, tok)| {
                format!("{} job {j} ({u} units, token {tok})", self.hosts[h].name)
            })
            .collect();
        parts.join("; ")
    }

    pub fn check_grant(&mut self, h: usize, _job: u64, tokens: &[(String, u64)]) {
        let t = self.now;
        let mut quorum = false;
        for (res, tok) in tokens {
            let tok = *tok;
            let Some(&(cap, mode)) = self.check.caps.get(res) else {
                self.fail("grant of an unknown resource", res.clone());
                return;
            };
            let holders = self.running_on(res);
            let last = self.check.last_tok.get(res).copied().unwrap_or(0);
            let recent = self.check.recent.entry(res.clone()).or_default().clone();
            match (mode, cap) {
                (Mode::Quorum, _) => {
                    quorum = true;
                    let used: u32 = holders.iter().map(|x| x.2).sum();
                    if used > cap {
                        let d = format!(
                            "{res} (capacity {cap}) has {used} units running: {}",
                            self.describe(&holders)
                        );
                        self.fail(
                            "capacity (quorum mode): more units running than capacity",
                            d,
                        );
                    }
                    if cap == 1 && tok <= last && self.check.clock_stepped {
                        self.stats.fencing_after_clock_step += 1;
                    } else if cap == 1 && tok <= last {
                        let d = format!(
                            "{res}: {} was granted token {tok}, an earlier grant had {last}",
                            self.hosts[h].name
                        );
                        self.fail(
                            "fencing (quorum mode): token not above every earlier grant's",
                            d,
                        );
                    } else if tok <= last {
                        self.stats.token_regressions += 1;
                    }
                }
                (Mode::Available, _) => {
                    for &(a, t1, tok1) in &recent {
                        if tok <= tok1 && self.check.stable(a, h, t1) {
                            if cap == 1 {
                                let d = format!(
                                    "{res}: {} granted token {tok} at {t}; {} granted {tok1} at {t1}, connected since {}",
                                    self.hosts[h].name, self.hosts[a].name, self.check.since[a][h]
                                );
                                self.fail("fencing (available mode): token not above a connected host's earlier grant", d);
                            } else {
                                self.stats.token_regressions += 1;
                            }
                            break;
                        }
                    }
                }
            }
            self.check.last_tok.insert(res.clone(), last.max(tok));
            let r = self.check.recent.entry(res.clone()).or_default();
            r.push_back((h, t, tok));
            if r.len() > RECENT_GRANTS {
                r.pop_front();
            }
            if let Some(t0) = self.check.handover_from.remove(res) {
                self.stats.handovers += 1;
                self.stats.handover_ms.push(t - t0);
            }
        }
        if quorum {
            self.check_lease_quorum(h);
        }
        self.check_available();
    }

    /// Quorum mode, §6 invariant 2. A grant needs a lease renewal sent at
    /// most L/2 ago (entry wants L/2 of lease left) and echoed back by a
    /// quorum of members counting us: so the network must have carried,
    /// for q − 1 other members, something we sent in the last L/2 to them
    /// and their state back to us. Whether the host's side has a quorum
    /// right now is only counted: with partitions that move, the echoes
    /// may come from members on different sides at different times, and
    /// that is safe (each echoing member votes DOWN only T_down after it
    /// last heard from us).
    fn check_lease_quorum(&mut self, h: usize) {
        let t = self.now;
        if self.check.minority_since[h].is_some() {
            self.stats.minority_grants += 1;
        }
        let since = t.saturating_sub(self.params.lease_ms / 2 + 5);
        let mut echoed = Vec::new();
        for m in (0..self.cfg.hosts).filter(|&m| m != h) {
            match self.net.causal.round_trip(h, m) {
                None => return,
                Some(rt) if rt >= since => echoed.push(self.hosts[m].name.clone()),
                Some(_) => {}
            }
        }
        let q = self.members.len() / 2 + 1;
        if echoed.len() + 1 < q {
            let d = format!(
                "{} granted at {t}, but only {echoed:?} can have echoed a renewal it sent since {since} (quorum {q})",
                self.hosts[h].name
            );
            self.fail(
                "no minority grants (quorum mode): grant without a quorum round trip",
                d,
            );
        }
    }

    /// A running job really stopped: note hand-overs, trace it.
    pub fn check_stop(&mut self, h: usize, job: u64, end: End) {
        let t = self.now;
        let Some(j) = self.hosts[h].jobs.get(&job) else {
            return;
        };
        let since = match &j.state {
            JobState::Running { since, .. } => *since,
            JobState::Waiting => return,
        };
        let needs: Vec<String> = j.needs.iter().map(|(r, _)| r.clone()).collect();
        for res in needs {
            let waiter = self.hosts.iter().any(|host| {
                host.jobs
                    .values()
                    .any(|j| j.state == JobState::Waiting && j.needs.iter().any(|(r, _)| *r == res))
            });
            if waiter {
                self.check.handover_from.entry(res).or_insert(t);
            }
        }
        self.trace(format!(
            "{} job {job} ends ({end:?}) after {} ms",
            self.hosts[h].name,
            t - since
        ));
    }

    /// Available mode: ≤ K among hosts connected for longer than T_heal.
    /// "Connected for T_heal" is an equivalence (both pairs unbroken since
    /// before t − T_heal puts the third pair in one component throughout),
    /// so each holder's class is every holder stably connected to it.
    pub fn check_available(&mut self) {
        let t = self.now;
        let caps: Vec<(String, u32)> = self
            .check
            .caps
            .iter()
            .filter(|(_, (_, m))| *m == Mode::Available)
            .map(|(n, (c, _))| (n.clone(), *c))
            .collect();
        for (res, cap) in caps {
            let holders = self.running_on(&res);
            if holders.iter().map(|x| x.2).sum::<u32>() <= cap {
                continue;
            }
            for &(a, ..) in &holders {
                let class: Vec<(usize, u64, u32, u64)> = holders
                    .iter()
                    .copied()
                    .filter(|&(b, ..)| self.check.stable(a, b, t))
                    .collect();
                let used: u32 = class.iter().map(|x| x.2).sum();
                if used > cap {
                    let d = format!(
                        "{res} (capacity {cap}) has {used} units running among hosts connected for over {} ms: {}",
                        self.check.t_heal,
                        self.describe(&class)
                    );
                    self.fail(
                        "capacity (available mode): over capacity among long-connected hosts",
                        d,
                    );
                    return;
                }
            }
        }
    }
}
