//! The nemesis: a fault schedule drawn from the seed before the run starts
//! (kinds, times, durations, targets), executed against the live cluster,
//! with each fault's undo (restart, SIGCONT, heal, link up) queued for
//! later. Targets named "the holder" are resolved when the fault fires,
//! from the stamp log, so they depend on timing; everything else is fixed
//! by the seed.
//!
//! At most `max_active` disruptive faults (all but client kills) are in
//! force at once, and each is followed by a short quiet gap: with faults
//! overlapping freely a quorum cluster would almost never be able to grant,
//! and progress between faults is part of what is tested. A fault that
//! comes due while the limit is reached waits for its turn.
//!
//! Network cuts compose: each active cut is a set of (receiver, sender)
//! pairs, and a host drops what the union of cuts says; links have a down
//! counter, so an isolation and a flap on one host overlap correctly.

use crate::hosts::{Host, host_name};
use crate::net::Net;
pub use crate::plan::{Fault, Kind, schedule};
use crate::stamps::StampTail;
use crate::topology::{State, Timeline};
use crate::util::{MS, Rng, mono_ns, secs};
use crate::workload::Workload;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone)]
enum Action {
    Restart(usize),
    Cont(usize),
    Heal(u64),
    LinkDown(usize),
    LinkUp(usize),
}

/// What the nemesis acts on.
pub struct Ctl<'a> {
    pub sc: &'a Path,
    pub hosts: &'a mut Vec<Host>,
    pub net: &'a Mutex<Net>,
    pub workload: &'a Workload,
    pub stamps: &'a StampTail,
    pub timeline: &'a mut Timeline,
}

impl Ctl<'_> {
    /// Record the topology as it is now.
    pub fn snapshot(&mut self) {
        self.snapshot_since(mono_ns());
    }

    /// Record the topology as it is now, as holding since `since`.
    fn snapshot_since(&mut self, since: u64) {
        let net = self.net.lock().unwrap();
        let n = self.hosts.len();
        let s = State {
            alive: self.hosts.iter_mut().map(|h| h.alive()).collect(),
            stopped: self.hosts.iter().map(|h| h.stopped).collect(),
            link: (0..n).map(|i| net.link_up(i)).collect(),
            blocked: (0..n).map(|i| net.blocked(i).clone()).collect(),
        };
        drop(net);
        self.timeline.push(since, s);
    }
}

pub struct Nemesis {
    faults: std::collections::VecDeque<Fault>,
    max_active: usize,
    /// End times of the disruptive faults in force.
    active: Vec<u64>,
    /// No new disruptive fault before this.
    quiet_until: u64,
    pending: Vec<(u64, Action)>,
    cuts: BTreeMap<u64, Vec<(usize, usize)>>,
    link_down: Vec<u32>,
    next_cut: u64,
    pub counts: BTreeMap<&'static str, u32>,
    /// (when, what) for the report and the live output.
    pub log: Vec<(u64, String)>,
    pub errors: Vec<String>,
}

impl Nemesis {
    pub fn new(faults: Vec<Fault>, n: usize, max_active: usize) -> Nemesis {
        Nemesis {
            faults: faults.into(),
            max_active: max_active.max(1),
            active: Vec::new(),
            quiet_until: 0,
            pending: Vec::new(),
            cuts: BTreeMap::new(),
            link_down: vec![0; n],
            next_cut: 0,
            counts: BTreeMap::new(),
            log: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn planned(&self) -> usize {
        self.faults.len()
    }

    /// Fire what is due; `t0` is the start of the fault phase. Returns the
    /// lines to show.
    pub fn step(&mut self, t0: u64, ctl: &mut Ctl) -> Vec<String> {
        let now = mono_ns();
        let mut said = Vec::new();
        let before = self.active.len();
        self.active.retain(|end| *end > now);
        if self.active.len() < before {
            // A quiet gap of 0.5-2.5 s after each disruptive fault ends.
            self.quiet_until = now + (500 + now % 2000) * MS;
        }
        let mut k = 0;
        while k < self.faults.len() && t0 + self.faults[k].at <= now {
            let disruptive = self.faults[k].kind != Kind::KillClient;
            if disruptive && (self.active.len() >= self.max_active || now < self.quiet_until) {
                k += 1;
                continue;
            }
            let f = self.faults.remove(k).unwrap();
            if let Some((line, until)) = self.inject(&f, now, ctl) {
                if disruptive {
                    self.active.push(until);
                }
                *self.counts.entry(f.kind.name()).or_default() += 1;
                self.log.push((now, line.clone()));
                said.push(line);
            }
        }
        self.pending.sort_by_key(|(t, _)| *t);
        // A heal is stamped when it began, not once its commands are done:
        // a host may be reached again, and granted (a push arrives in one
        // message), before the last one returns — and a start stamped
        // before the recorded heal looked like a minority grant (CI seed
        // 1795292164: a start 2.17 s into a 2.2 s split). Cuts stay
        // stamped after they took effect. Both err toward "connected".
        let undo_from = mono_ns();
        let mut undone = false;
        while self.pending.first().is_some_and(|(t, _)| *t <= now) {
            let (_, a) = self.pending.remove(0);
            self.undo(a, ctl);
            undone = true;
        }
        if undone {
            ctl.snapshot_since(undo_from);
        } else {
            ctl.snapshot();
        }
        said
    }

    /// Undo everything now (the quiet tail): heal, SIGCONT, restart.
    pub fn heal_all(&mut self, ctl: &mut Ctl) {
        self.faults.clear();
        self.cuts.clear();
        self.link_down.iter_mut().for_each(|c| *c = 0);
        let n = ctl.hosts.len();
        for i in 0..n {
            let mut net = ctl.net.lock().unwrap();
            if let Err(e) = net
                .set_link(i, true)
                .and_then(|_| net.set_blocked(i, BTreeSet::new()))
            {
                self.errors.push(e);
            }
        }
        for (_, a) in std::mem::take(&mut self.pending) {
            if let Action::Restart(_) | Action::Cont(_) = a {
                self.undo(a, ctl);
            }
        }
        for i in 0..n {
            if !ctl.hosts[i].alive() {
                self.undo(Action::Restart(i), ctl);
            }
        }
        ctl.snapshot();
    }

    fn later(&mut self, now: u64, dur: u64, a: Action) {
        self.pending.push((now + dur, a));
    }

    /// The daemon to hit for a "holder" fault: an e2e holder's host, else a
    /// gpu holder's, else host `r % n`.
    fn holder(ctl: &Ctl, r: u64, now: u64) -> (usize, &'static str) {
        let n = ctl.hosts.len();
        for res in ["e2e", "gpu"] {
            let h = ctl.stamps.holders(res, now);
            if !h.is_empty() {
                return (
                    h[(r as usize) % h.len()],
                    if res == "e2e" {
                        "holds e2e"
                    } else {
                        "holds gpu"
                    },
                );
            }
        }
        ((r as usize) % n, "no holder now")
    }

    /// Inject `f`; what was done, and when it will be undone.
    fn inject(&mut self, f: &Fault, now: u64, ctl: &mut Ctl) -> Option<(String, u64)> {
        let line = self.inject_line(f, now, ctl)?;
        // A flap's last toggle may end up to 0.5 s after its duration.
        let slack = if f.kind == Kind::Flap { 500 * MS } else { 0 };
        Some((line, now + f.dur + slack))
    }

    fn inject_line(&mut self, f: &Fault, now: u64, ctl: &mut Ctl) -> Option<String> {
        let n = ctl.hosts.len();
        let mut rng = Rng::new(f.r);
        let pick = (f.r as usize) % n;
        let d = secs(f.dur);
        match f.kind {
            Kind::KillDaemon | Kind::KillHolder => {
                let (i, why) = if f.kind == Kind::KillHolder {
                    Self::holder(ctl, f.r, now)
                } else {
                    (pick, "")
                };
                if !ctl.hosts[i].alive() {
                    return None;
                }
                ctl.hosts[i].kill9();
                self.later(now, f.dur, Action::Restart(i));
                Some(format!(
                    "kill -9 {} daemon {why}; restart in {d}",
                    host_name(i)
                ))
            }
            Kind::KillClient => {
                let label = ctl.workload.kill_client(&mut rng)?;
                Some(format!("kill -9 sc exec of job {label}"))
            }
            Kind::StopDaemon | Kind::StopHolder => {
                let (i, why) = if f.kind == Kind::StopHolder {
                    Self::holder(ctl, f.r, now)
                } else {
                    (pick, "")
                };
                if !ctl.hosts[i].alive() || ctl.hosts[i].stopped {
                    return None;
                }
                ctl.hosts[i].sigstop();
                self.later(now, f.dur, Action::Cont(i));
                Some(format!("SIGSTOP {} daemon {why} for {d}", host_name(i)))
            }
            Kind::Isolate => {
                self.link(pick, false, ctl);
                self.later(now, f.dur, Action::LinkUp(pick));
                Some(format!("link of {} down for {d}", host_name(pick)))
            }
            Kind::Flap => {
                let mut t = 0;
                let mut flips = 0;
                while t < f.dur {
                    let down = rng.range(100, 500) * MS;
                    self.later(now, t, Action::LinkDown(pick));
                    self.later(now, t + down, Action::LinkUp(pick));
                    t += down + rng.range(100, 600) * MS;
                    flips += 1;
                }
                Some(format!(
                    "link of {} flapping ({flips} times in {d})",
                    host_name(pick)
                ))
            }
            Kind::Split => {
                let size = 1 + rng.below((n / 2).max(1));
                let mut hosts: Vec<usize> = (0..n).collect();
                let mut a = BTreeSet::new();
                while a.len() < size {
                    a.insert(hosts.remove(rng.below(hosts.len())));
                }
                let mut pairs = Vec::new();
                for &x in &a {
                    for &y in &hosts {
                        pairs.extend([(x, y), (y, x)]);
                    }
                }
                let names = |s: &mut dyn Iterator<Item = usize>| {
                    s.map(host_name).collect::<Vec<_>>().join(",")
                };
                let line = format!(
                    "partition {{{}}} | {{{}}} for {d}",
                    names(&mut a.iter().copied()),
                    names(&mut hosts.iter().copied())
                );
                self.cut(pairs, now, f.dur, ctl);
                Some(line)
            }
            Kind::OneWay | Kind::PairCut => {
                let j = (pick + 1 + rng.below(n - 1)) % n;
                let pairs = if f.kind == Kind::OneWay {
                    vec![(j, pick)]
                } else {
                    vec![(j, pick), (pick, j)]
                };
                self.cut(pairs, now, f.dur, ctl);
                Some(if f.kind == Kind::OneWay {
                    format!(
                        "one-way cut {} -> {} dropped for {d}",
                        host_name(pick),
                        host_name(j)
                    )
                } else {
                    format!(
                        "cut {} <-> {} (others still reach both) for {d}",
                        host_name(pick),
                        host_name(j)
                    )
                })
            }
        }
    }

    fn cut(&mut self, pairs: Vec<(usize, usize)>, now: u64, dur: u64, ctl: &mut Ctl) {
        let id = self.next_cut;
        self.next_cut += 1;
        self.cuts.insert(id, pairs);
        self.apply_cuts(ctl);
        self.later(now, dur, Action::Heal(id));
    }

    fn apply_cuts(&mut self, ctl: &mut Ctl) {
        let n = ctl.hosts.len();
        let mut want = vec![BTreeSet::new(); n];
        for pairs in self.cuts.values() {
            for &(recv, from) in pairs {
                want[recv].insert(from);
            }
        }
        let mut net = ctl.net.lock().unwrap();
        for (i, set) in want.into_iter().enumerate() {
            if *net.blocked(i) != set
                && let Err(e) = net.set_blocked(i, set)
            {
                self.errors.push(e);
            }
        }
    }

    fn link(&mut self, i: usize, up: bool, ctl: &mut Ctl) {
        if up {
            self.link_down[i] = self.link_down[i].saturating_sub(1);
        } else {
            self.link_down[i] += 1;
        }
        let want = self.link_down[i] == 0;
        let mut net = ctl.net.lock().unwrap();
        if net.link_up(i) != want
            && let Err(e) = net.set_link(i, want)
        {
            self.errors.push(e);
        }
    }

    fn undo(&mut self, a: Action, ctl: &mut Ctl) {
        match a {
            Action::Restart(i) => {
                if !ctl.hosts[i].alive() {
                    let net = ctl.net.lock().unwrap();
                    if let Err(e) = ctl.hosts[i].start(ctl.sc, &net, i) {
                        self.errors.push(e);
                    }
                }
            }
            Action::Cont(i) => {
                if ctl.hosts[i].stopped {
                    ctl.hosts[i].sigcont();
                }
            }
            Action::Heal(id) => {
                self.cuts.remove(&id);
                self.apply_cuts(ctl);
            }
            Action::LinkDown(i) => self.link(i, false, ctl),
            Action::LinkUp(i) => self.link(i, true, ctl),
        }
    }
}
