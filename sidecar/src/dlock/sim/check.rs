//! The invariants, checked on the TRUE state (which jobs really run, and
//! who can really talk to whom), never on what engines believe
//! (CLUSTER-LOCKS.md §6):
//!
//! - capacity, quorum mode: units of running jobs ≤ K, globally, at every
//!   grant (only a grant adds units); a job runs from its grant until it
//!   finished, was stopped, was killed by its stopper or died with its host;
//! - capacity, available mode: ≤ K among hosts mutually connected (same
//!   component, both up, no heavy loss) for longer than T_heal, checked at
//!   every grant and every 20 ms;
//! - fencing tokens per capacity-1 resource strictly increase in grant
//!   order: globally in quorum mode, between hosts connected for T_heal in
//!   available mode. With capacity ≥ 2 concurrent holders can draw the
//!   same token, so regressions are only counted;
//! - liveness: once faults stop and the load stops, every request drains
//!   and every engine's view empties, within a bound.

use super::super::{Mode, Params, ResourceSpec};
use super::net::NetParams;
use super::world::{JobState, Life, World};
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
    /// Quorum mode: grants on a host whose component lacks a quorum of
    /// members (allowed while its lease lasts; counted to show it).
    pub minority_grants: u64,
    /// Times every host was down at once (the token order restarts).
    pub blackouts: u64,
    pub publishes: u64,
    pub messages: u64,
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
        }
    }

    pub fn connectivity(
        &mut self,
        t: u64,
        comps: &[Option<usize>],
        disturbed: bool,
        know: impl Fn(usize, usize) -> bool,
    ) {
        for (a, row) in self.since.iter_mut().enumerate() {
            for (b, s) in row.iter_mut().enumerate() {
                let same = comps[a].is_some()
                    && comps[a] == comps[b]
                    && (a == b || !disturbed && know(a, b));
                if !same {
                    *s = u64::MAX;
                } else if *s == u64::MAX {
                    *s = t;
                }
            }
        }
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
        c.trace.push_back(format!("{:>7} {line}", self.now));
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
                    if cap == 1 && tok <= last {
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
            let q = self.members.len() / 2 + 1;
            let with_me = (0..self.cfg.hosts)
                .filter(|&m| self.check.since[h][m] != u64::MAX)
                .count();
            if with_me < q {
                self.stats.minority_grants += 1;
            }
        }
        self.check_available();
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

    /// Tail: done once no job is left and every engine's view is empty.
    pub fn check_converged(&mut self) {
        if self.hosts.iter().any(|h| !h.jobs.is_empty()) {
            return;
        }
        for h in 0..self.hosts.len() {
            let now = self.host_now(h);
            let host = &self.hosts[h];
            if host.life != Life::Up {
                continue;
            }
            let Some(e) = &host.engine else { continue };
            if e.resources(now)
                .iter()
                .any(|r| !r.holders.is_empty() || !r.queue.is_empty())
            {
                return;
            }
        }
        self.stats.drain_ms = self.now - self.stats.tail_start_ms;
        self.done = true;
    }

    /// The tail's bound passed with work left: say what each engine waits on.
    pub fn liveness_failure(&mut self) {
        let mut lines = Vec::new();
        for h in 0..self.hosts.len() {
            let now = self.host_now(h);
            let host = &self.hosts[h];
            for (id, j) in &host.jobs {
                let state = match &j.state {
                    JobState::Waiting => "waiting".to_string(),
                    JobState::Running { since, .. } => format!("running since {since}"),
                };
                lines.push(format!(
                    "{} job {id} {:?} asked at {}: {state}",
                    host.name, j.needs, j.asked
                ));
            }
            let Some(e) = host.engine.as_ref().filter(|_| host.life == Life::Up) else {
                continue;
            };
            if let Some(inc) = host.inc
                && let Some(raw) = self.net.incs[inc].values.last()
                && let Ok(v) = sc_protocol::board::decode_value::<sc_protocol::dl::DlValue>(raw)
            {
                let down: Vec<String> = v.down.iter().map(|d| d.to_string()).collect();
                let lack: Vec<String> = v.lack.iter().map(|(n, s)| format!("{n}:{s}")).collect();
                lines.push(format!(
                    "  {} = {}: lseq {} down {down:?} lack {lack:?}",
                    host.name,
                    e.me(),
                    v.lseq
                ));
            }
            for w in e.waits(now) {
                lines.push(format!("  {} waits: {w:?}", host.name));
            }
            for r in e.resources(now) {
                if !r.holders.is_empty() || !r.queue.is_empty() {
                    lines.push(format!(
                        "  {} sees {}: holders {:?} queue {:?}",
                        host.name, r.name, r.holders, r.queue
                    ));
                }
            }
        }
        lines.truncate(60);
        let d = format!(
            "not drained {} ms into the quiet tail:\n{}",
            self.now - self.stats.tail_start_ms,
            lines.join("\n")
        );
        self.fail("liveness: requests left at the end of the quiet tail", d);
    }
}
