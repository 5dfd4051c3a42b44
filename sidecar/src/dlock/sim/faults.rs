//! The seeded fault plan (CLUSTER-LOCKS.md §6 "Fault matrix") and how each
//! fault lands: host crashes and restarts as a new generation, whole-daemon
//! pauses (SIGSTOP) and engine stalls with the jobs left running under
//! their stoppers, partitions of every shape (minority, even, three-way,
//! one host, non-transitive bridge, one-way), message loss, delay jitter,
//! wall-clock steps, late members (quorum) and brand-new hosts (available).
//! The quiet tail that follows is in `tail.rs`.

use super::super::Mode;
use super::check::End;
use super::host::Life;
use super::rng::Rng;
use super::world::{RunConfig, World};

#[derive(Debug, Clone)]
pub enum Fault {
    /// First start, join, or restart (killing leftover jobs first).
    Start(usize),
    Crash(usize),
    Pause(usize),
    Resume(usize),
    Stall(usize),
    Unstall(usize),
    Split {
        id: u64,
        group: Vec<u32>,
        blocked: Vec<(usize, usize)>,
    },
    Heal(u64),
    Loss {
        id: u64,
        p: f64,
    },
    LossEnd(u64),
    Jitter {
        id: u64,
        ms: u64,
    },
    JitterEnd(u64),
    WallStep(usize, i64),
}

/// Loss at or above this means nobody counts as "connected" for the
/// available-mode bound.
pub const DISTURBING_LOSS: f64 = 0.2;

/// Host slots: the initial hosts, plus room for brand-new ones joining in
/// available mode (never beyond 50).
pub fn slots(cfg: &RunConfig) -> usize {
    match cfg.mode {
        Mode::Available if cfg.faults => cfg.hosts + 3.min(50usize.saturating_sub(cfg.hosts)),
        _ => cfg.hosts,
    }
}

/// Random partition shapes over `n` host slots.
fn shape(r: &mut Rng, n: usize) -> (Vec<u32>, Vec<(usize, usize)>) {
    let mut g = vec![0u32; n];
    let mut blocked = Vec::new();
    let two = |r: &mut Rng| {
        let a = r.index(n);
        let b = (a + 1 + r.index(n - 1)) % n;
        (a, b)
    };
    match r.below(7) {
        0 | 1 => {
            // A minority of up to half.
            let k = r.range(1, (n / 2).max(1) as u64) as usize;
            let mut hosts: Vec<usize> = (0..n).collect();
            for _ in 0..k {
                let h = hosts.swap_remove(r.index(hosts.len()));
                g[h] = 1;
            }
        }
        2 => g.iter_mut().for_each(|x| *x = r.below(2) as u32),
        3 => g[r.index(n)] = 1,
        4 => g.iter_mut().for_each(|x| *x = r.below(3) as u32),
        5 => {
            // Non-transitive: a and c cannot talk, both talk to the rest.
            let (a, c) = two(r);
            blocked.push((a, c));
            blocked.push((c, a));
        }
        _ => blocked.push(two(r)),
    }
    (g, blocked)
}

/// The whole plan, in simulated ms. The quiet tail starts at `fault_ms`.
pub fn plan(cfg: &RunConfig, rng: &mut Rng) -> Vec<(u64, Fault)> {
    let mut r = rng.fork();
    let n = slots(cfg);
    let mut out = Vec::new();
    let quorum = cfg.mode == Mode::Quorum;
    for h in 0..cfg.hosts {
        let late = cfg.faults && quorum && r.chance(0.1);
        let t = if late {
            r.range(500, 8000)
        } else {
            r.below(200)
        };
        out.push((t, Fault::Start(h)));
    }
    if !cfg.faults {
        return out;
    }
    for h in cfg.hosts..n {
        if r.chance(0.7) {
            out.push((r.range(500, cfg.fault_ms * 3 / 4), Fault::Start(h)));
        }
    }
    // Mean spacing of faults; short runs get them closer together.
    let gap = r.pick(&[500, 1200, 3000]).min(cfg.fault_ms / 6).max(50);
    // Wall-clock steps in a quarter of the runs only: after one, a
    // fencing-token regression is counted rather than failed (check.rs).
    let clock_steps = r.chance(0.25);
    let mut id = 0;
    let mut t = r.range(300, 2000.min(cfg.fault_ms / 3).max(300));
    while t + 500 < cfg.fault_ms {
        let h = r.index(cfg.hosts);
        match r.below(100) {
            0..=16 => {
                out.push((t, Fault::Crash(h)));
                if r.chance(0.8) {
                    out.push((t + r.range(50, 8000), Fault::Start(h)));
                }
            }
            17..=31 => {
                // Around 0.5×, 1× and 3× T_down, and short ones.
                let d = match r.below(4) {
                    0 => r.range(50, 1000),
                    1 => r.range(1000, 3000),
                    2 => r.range(3000, 7000),
                    _ => r.range(7000, 16000),
                };
                out.push((t, Fault::Pause(h)));
                let end = if r.chance(0.75) {
                    Fault::Resume(h)
                } else {
                    Fault::Start(h)
                };
                out.push((t + d, end));
            }
            32..=38 => {
                out.push((t, Fault::Stall(h)));
                out.push((t + r.range(100, 6000), Fault::Unstall(h)));
            }
            39..=74 => {
                id += 1;
                let (group, blocked) = shape(&mut r, n);
                let d = match r.below(3) {
                    0 => r.range(50, 800),
                    1 => r.range(800, 6000),
                    _ => r.range(6000, 14000),
                };
                out.push((t, Fault::Split { id, group, blocked }));
                out.push((t + d, Fault::Heal(id)));
            }
            75..=85 => {
                id += 1;
                let p = r.pick(&[0.05, 0.1, 0.2, 0.4]);
                out.push((t, Fault::Loss { id, p }));
                out.push((t + r.range(300, 5000), Fault::LossEnd(id)));
            }
            86..=95 => {
                id += 1;
                let ms = r.pick(&[20, 80, 200]);
                out.push((t, Fault::Jitter { id, ms }));
                out.push((t + r.range(300, 5000), Fault::JitterEnd(id)));
            }
            _ if clock_steps => {
                let step = r.range(1000, 120_000) as i64;
                let d = if r.chance(0.5) { step } else { -step };
                out.push((t, Fault::WallStep(h, d)));
            }
            _ => {}
        }
        t += r.range(gap / 4, gap * 2);
    }
    out
}

impl World {
    pub fn apply_fault(&mut self, f: Fault) {
        if self.tail && !matches!(f, Fault::Start(_)) {
            return;
        }
        let name = |w: &World, h: usize| w.hosts[h].name.clone();
        match f {
            Fault::Start(h) => {
                let host = &self.hosts[h];
                if host.life == Life::Up && !host.restarting {
                    return;
                }
                if self.tail && host.life == Life::Off && host.generation > 0 {
                    // Kept down for good by the tail.
                    return;
                }
                if host.generation == 0 && h >= self.cfg.hosts {
                    self.stats.joins += 1;
                }
                self.start_host(h);
            }
            Fault::Crash(h) => self.crash(h),
            Fault::Pause(h) | Fault::Stall(h) => {
                if self.hosts[h].life != Life::Up {
                    return;
                }
                let pause = matches!(f, Fault::Pause(_));
                self.trace(format!(
                    "{} {}",
                    name(self, h),
                    if pause { "paused" } else { "stalled" }
                ));
                if pause {
                    self.stats.pauses += 1;
                    self.hosts[h].life = Life::Paused;
                    self.net.set_active(h, false);
                } else {
                    self.stats.stalls += 1;
                    self.hosts[h].life = Life::Stalled;
                }
                self.topology_changed();
            }
            Fault::Resume(h) | Fault::Unstall(h) => self.resume(h),
            Fault::Split { id, group, blocked } => {
                self.stats.partitions += 1;
                self.trace(format!(
                    "partition #{id}: groups {group:?} blocked {blocked:?}"
                ));
                self.fault_ids[0] = id;
                self.net.set_topology(group, blocked.into_iter().collect());
                self.topology_changed();
            }
            Fault::Heal(id) => {
                if self.fault_ids[0] == id {
                    self.trace(format!("heal #{id}"));
                    self.net.heal();
                    self.topology_changed();
                }
            }
            Fault::Loss { id, p } => {
                self.trace(format!("loss {p} #{id}"));
                self.fault_ids[1] = id;
                self.net.loss = p;
                self.topology_changed();
            }
            Fault::LossEnd(id) => {
                if self.fault_ids[1] == id {
                    self.net.loss = 0.0;
                    self.topology_changed();
                }
            }
            Fault::Jitter { id, ms } => {
                self.fault_ids[2] = id;
                self.net.jitter_ms = ms;
            }
            Fault::JitterEnd(id) => {
                if self.fault_ids[2] == id {
                    self.net.jitter_ms = 0;
                }
            }
            Fault::WallStep(h, d) => {
                self.trace(format!("{} wall clock steps {d} ms", name(self, h)));
                self.hosts[h].clock.skew += d;
                self.check.clock_stepped = true;
            }
        }
    }

    pub fn crash(&mut self, h: usize) {
        if self.hosts[h].life == Life::Off {
            return;
        }
        self.stats.crashes += 1;
        self.trace(format!("{} crashes", self.hosts[h].name));
        self.kill_jobs(h, End::Crash);
        let host = &mut self.hosts[h];
        host.engine = None;
        host.inc = None;
        host.life = Life::Off;
        host.epoch += 1;
        host.restarting = false;
        self.net.crash(h);
        if self.blackout() {
            self.stats.blackouts += 1;
            self.trace("blackout: every host is down".into());
            self.check.forget_tokens();
        }
        self.topology_changed();
    }

    pub fn resume(&mut self, h: usize) {
        if !matches!(self.hosts[h].life, Life::Paused | Life::Stalled) {
            return;
        }
        self.trace(format!("{} resumes", self.hosts[h].name));
        self.hosts[h].life = Life::Up;
        self.net.set_active(h, true);
        self.wake(h, self.now);
        self.topology_changed();
    }

    /// Recompute who is connected to whom, for the available-mode bound:
    /// in one component of the links, both up, no heavy loss, and each
    /// known to and held live by the other's chitchat. The last part is
    /// the failure detector's verdict, not the links': after a partition
    /// cuts the heartbeat rate, phi (tuned to the old rate) can call a
    /// reachable peer dead, and available mode then rightly treats it as
    /// gone. Such flaps are counted, not hidden.
    pub fn topology_changed(&mut self) {
        let mut comps = self.net.components();
        for (h, c) in comps.iter_mut().enumerate() {
            if self.hosts[h].life != Life::Up {
                *c = None;
            }
        }
        let disturbed = self.net.loss >= DISTURBING_LOSS;
        let (net, now) = (&self.net, self.now);
        let flaps = self.check.connectivity(now, &comps, disturbed, |a, b| {
            (net.knows(a, b), net.sees_live(a, b, now))
        });
        self.stats.detector_flaps += flaps;
        if self.cfg.mode == Mode::Quorum {
            // Members that can echo a lease renewal: up (not paused, not
            // stalled) and on the same side.
            let q = self.members.len() / 2 + 1;
            let n = self.cfg.hosts;
            for h in 0..n {
                let up = |m: usize| self.hosts[m].life == Life::Up;
                let side = (0..n)
                    .filter(|&m| up(m) && self.net.same_group(h, m))
                    .count();
                let slot = &mut self.check.minority_since[h];
                if !up(h) || side >= q {
                    *slot = None;
                } else {
                    slot.get_or_insert(self.now);
                }
            }
        }
    }

    /// Every host is down at once: nothing remembers the fencing tokens
    /// (they are not persisted), so the quorum-mode order starts over.
    pub fn blackout(&mut self) -> bool {
        self.hosts.iter().all(|h| h.life == Life::Off)
    }
}
