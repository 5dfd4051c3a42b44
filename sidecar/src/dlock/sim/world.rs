//! The simulated cluster: hosts with their clocks, engines and jobs, the
//! gossip network, and one event queue in simulated milliseconds.
//!
//! Everything is driven from one seeded [`Rng`] and ordered by (time,
//! insertion), and every map is a BTreeMap, so a seed replays exactly.
//! What each event does lives with its subject: the daemon's side of the
//! engine contract in `daemon.rs`, faults in `faults.rs`, the tail in
//! `tail.rs`, the invariants in `check.rs`.

use super::super::{Mode, Now, Params, ResourceSpec};
use super::check::{Checker, RunStats, Violation};
use super::host::{Clock, Host, Life};
use super::net::{Msg, Net, NetParams};
use super::rng::Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// One run's fixed inputs; everything else is drawn from the seed.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    pub seed: u64,
    /// Hosts present from the start (members, in quorum mode).
    pub hosts: usize,
    pub mode: Mode,
    /// Simulated ms with faults and load; a quiet tail follows.
    pub fault_ms: u64,
    pub faults: bool,
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub config: RunConfig,
    pub stats: RunStats,
    pub violation: Option<Violation>,
}

/// Per-run knobs drawn from the seed.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub tick_ms: u64,
    pub coalesce_ms: u64,
    pub stop_delay_ms: u64,
    pub hold_ms: (u64, u64),
    pub long_hold: f64,
    pub think_ms: u64,
    pub give_up: f64,
}

pub enum Ev {
    Gossip { host: usize, epoch: u64 },
    Deliver(Msg),
    Wake { host: usize, token: u64 },
    Arrive { host: usize, epoch: u64 },
    JobEnd { host: usize, job: u64 },
    StopDone { host: usize, job: u64 },
    Stopper { host: usize, job: u64 },
    GiveUp { host: usize, job: u64 },
    Fault(super::faults::Fault),
    Check,
    Tail,
}

struct Queued(u64, u64, Ev);
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

pub struct World {
    pub cfg: RunConfig,
    pub rng: Rng,
    pub now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    pub net: Net,
    pub hosts: Vec<Host>,
    pub by_name: BTreeMap<String, usize>,
    pub specs: Vec<ResourceSpec>,
    pub members: Vec<String>,
    pub params: Params,
    pub knobs: Knobs,
    pub check: Checker,
    pub stats: RunStats,
    pub next_job: u64,
    /// The quiet tail has begun: no new faults, no new requests.
    pub tail: bool,
    pub end_ms: u64,
    pub done: bool,
    /// The partition, loss and jitter faults in force (a stale end event
    /// must not undo a newer fault).
    pub fault_ids: [u64; 3],
}

impl World {
    pub fn new(cfg: RunConfig) -> World {
        let mut rng = Rng::new(cfg.seed);
        let slots = super::faults::slots(&cfg);
        let caps = [("e2e", 1u32), ("gpu", 2u32)];
        let specs: Vec<ResourceSpec> = caps
            .iter()
            .map(|&(name, capacity)| ResourceSpec {
                name: name.into(),
                capacity,
                mode: cfg.mode,
                prefetch: rng.pick(&[0, 1, capacity, capacity]),
            })
            .collect();
        let params = Params {
            lease_ms: if cfg.hosts <= 9 {
                rng.pick(&[2000, 3000, 3000])
            } else {
                3000
            },
            aging_step_ms: rng.pick(&[300, 2000, 30_000]),
            ..Params::default()
        };
        let gossip_ms = if cfg.hosts <= 9 {
            rng.pick(&[50, 100, 100])
        } else {
            100
        };
        let net_p = NetParams {
            gossip_ms,
            phi: 8.0,
            initial_ms: 500,
            delay_ms: (0, rng.pick(&[1, 2, 5])),
        };
        let hold = (10, rng.pick(&[200, 500, 900]));
        let util = 0.3 + rng.below(8) as f64 / 10.0;
        let knobs = Knobs {
            // The daemon steps on every new value and on a timer; at 50
            // hosts a slower timer keeps the engine's O(hosts) steps cheap.
            tick_ms: if cfg.hosts <= 9 {
                rng.pick(&[50, 100, 100])
            } else {
                200
            },
            coalesce_ms: if cfg.hosts <= 9 { 2 } else { 20 },
            stop_delay_ms: rng.pick(&[5, 50, 200]),
            hold_ms: hold,
            long_hold: 0.05,
            // Keep the whole cluster's demand near `util` of one unit.
            think_ms: ((cfg.hosts as f64 * (hold.1 / 2) as f64 / util) as u64).max(50),
            give_up: rng.pick(&[0.0, 0.1]),
        };
        let names: Vec<String> = (0..slots).map(|i| format!("h{i:02}")).collect();
        let members = match cfg.mode {
            Mode::Quorum => names[..cfg.hosts].to_vec(),
            Mode::Available => Vec::new(),
        };
        let max_jobs = rng.pick(&[1, 2]);
        let hosts = names
            .iter()
            .map(|name| {
                let clock = Clock {
                    boot: rng.range(1_000_000, 1_000_000_000),
                    ppm: rng.range(0, 400) as i64 - 200,
                    skew: rng.range(0, 100) as i64 - 50,
                };
                Host::new(name.clone(), clock, max_jobs)
            })
            .collect();
        let seeds: Vec<usize> = (0..cfg.hosts.min(3)).collect();
        let check = Checker::new(&specs, slots, params, net_p);
        World {
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            net: Net::new(slots, net_p, seeds),
            by_name: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
            hosts,
            specs,
            members,
            params,
            knobs,
            check,
            stats: RunStats::default(),
            next_job: 1,
            tail: false,
            end_ms: u64::MAX,
            done: false,
            fault_ids: [0; 3],
        }
    }

    pub fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue
            .push(Reverse(Queued(t.max(self.now), self.seq, ev)));
    }

    pub fn send(&mut self, msg: Msg) {
        if let Some(t) = self.net.transmit(self.now, &mut self.rng) {
            self.at(t, Ev::Deliver(msg));
        }
    }

    /// Step host `h`'s engine at `t` unless a step is already due sooner.
    pub fn wake(&mut self, h: usize, t: u64) {
        let host = &mut self.hosts[h];
        if host.wake_at <= t {
            return;
        }
        host.wake_token += 1;
        host.wake_at = t;
        let token = host.wake_token;
        self.at(t, Ev::Wake { host: h, token });
    }

    pub fn host_now(&self, h: usize) -> Now {
        self.hosts[h].clock.now(self.now)
    }

    /// Run to the end; the first violation stops the run.
    pub fn run(mut self) -> RunResult {
        let plan = super::faults::plan(&self.cfg, &mut self.rng);
        for (t, f) in plan {
            self.at(t, Ev::Fault(f));
        }
        self.at(self.cfg.fault_ms, Ev::Tail);
        self.at(0, Ev::Check);
        while let Some(Reverse(Queued(t, _, ev))) = self.queue.pop() {
            if t > self.end_ms || self.done {
                break;
            }
            self.now = t;
            self.stats.events += 1;
            self.handle(ev);
            if self.check.violation.is_some() {
                break;
            }
        }
        if self.check.violation.is_none() && !self.done {
            self.liveness_failure();
        }
        self.stats.sim_ms = self.now;
        self.stats.messages = self.net.messages;
        RunResult {
            config: self.cfg,
            stats: self.stats,
            violation: self.check.violation.take(),
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Gossip { host, epoch } => {
                if self.hosts[host].epoch != epoch {
                    return;
                }
                for m in self.net.gossip_round(host, self.now, &mut self.rng) {
                    self.send(m);
                }
                let t = self.now + self.net.p.gossip_ms;
                self.at(t, Ev::Gossip { host, epoch });
            }
            Ev::Deliver(msg) => {
                let to = msg.to;
                let (reply, fresh) = self.net.deliver(self.now, msg);
                if let Some(r) = reply {
                    self.send(r);
                }
                if fresh && self.hosts[to].life == Life::Up {
                    // The daemon evaluates when a value changes, at most
                    // once per `coalesce_ms`.
                    let next = self.hosts[to].last_step + self.knobs.coalesce_ms;
                    let t = (self.now + self.rng.below(3)).max(next);
                    self.wake(to, t);
                }
            }
            Ev::Wake { host, token } => {
                if self.hosts[host].wake_token != token {
                    return;
                }
                self.hosts[host].wake_at = u64::MAX;
                if self.hosts[host].life != Life::Up {
                    return;
                }
                self.hosts[host].last_step = self.now;
                self.step_host(host);
                let t = self.now + self.knobs.tick_ms;
                self.wake(host, t);
            }
            Ev::Arrive { host, epoch } => self.arrive(host, epoch),
            Ev::JobEnd { host, job } => self.job_ended(host, job, super::check::End::Done),
            Ev::StopDone { host, job } => self.job_ended(host, job, super::check::End::Stopped),
            Ev::Stopper { host, job } => self.stopper(host, job),
            Ev::GiveUp { host, job } => self.give_up(host, job),
            Ev::Fault(f) => self.apply_fault(f),
            Ev::Check => {
                // Chitchat membership moves with every message: refresh
                // who knows whom before checking.
                self.topology_changed();
                self.check_available();
                if self.tail {
                    self.check_converged();
                }
                self.at(self.now + 20, Ev::Check);
            }
            Ev::Tail => self.start_tail(),
        }
    }
}
