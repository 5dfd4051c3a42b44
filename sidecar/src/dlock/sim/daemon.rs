//! The daemon's half of the engine contract, as `sc daemon` carries it
//! out: feed the engine chitchat's view, step it, and do what the
//! [`Output`] says — publish, poke, start granted jobs under a stopper,
//! stop jobs, persist votes, restart as a new generation when voted DOWN.
//! Also the jobs themselves and the load that creates them.

use super::super::{Engine, Grant, Output, Setup, StopReason};
use super::check::End;
use super::host::{Job, JobState, Life};
use super::world::{Ev, World};
use sc_protocol::dl::NodeGen;

/// Needs a job may ask for, with their weights in percent.
const NEEDS: [(&[(&str, u32)], u64); 5] = [
    (&[("e2e", 1)], 30),
    (&[("gpu", 1)], 25),
    (&[("gpu", 2)], 15),
    (&[("e2e", 1), ("gpu", 1)], 20),
    (&[("e2e", 1), ("gpu", 2)], 10),
];

impl World {
    /// One evaluation: pending releases, observe, step, carry out.
    pub fn step_host(&mut self, h: usize) {
        let now = self.host_now(h);
        let host = &mut self.hosts[h];
        let Some(engine) = host.engine.as_mut() else {
            return;
        };
        for job in std::mem::take(&mut host.unreleased) {
            engine.release(job, now);
        }
        let obs = self.net.observations(h, self.now, &mut host.seen);
        engine.observe(now, &obs);
        let out = engine.step(now);
        self.stats.steps += 1;
        self.apply(h, out);
    }

    fn apply(&mut self, h: usize, out: Output) {
        let t = self.now;
        if let Some(v) = out.votes {
            self.hosts[h].votes = v;
        }
        if let Some(value) = out.publish
            && let Some(inc) = self.hosts[h].inc
        {
            self.net.publish(inc, value);
            self.stats.publishes += 1;
        }
        for g in out.granted {
            self.granted(h, g);
        }
        for (job, deadline) in out.leases {
            let td = self.hosts[h].clock.true_at(deadline);
            if let Some(Job {
                state: JobState::Running { deadline: d, .. },
                ..
            }) = self.hosts[h].jobs.get_mut(&job)
            {
                *d = Some(td);
                self.at(td, Ev::Stopper { host: h, job });
            }
        }
        for (job, why) in out.stop {
            match why {
                StopReason::LostLease { .. } => self.stats.lost_leases += 1,
                StopReason::Preempted { .. } => self.stats.preemptions += 1,
                StopReason::SelfDown => {}
            }
            self.trace(format!("{} stop job {job}: {why:?}", self.hosts[h].name));
            if let Some(Job {
                state: JobState::Running { stopping, .. },
                ..
            }) = self.hosts[h].jobs.get_mut(&job)
                && !*stopping
            {
                *stopping = true;
                let d = self.rng.range(0, self.knobs.stop_delay_ms);
                self.at(t + d, Ev::StopDone { host: h, job });
            }
        }
        if out.self_down && !self.hosts[h].restarting {
            self.hosts[h].restarting = true;
            self.stats.self_downs += 1;
            self.trace(format!("{} self-down: restarting", self.hosts[h].name));
            let d = self.rng.range(20, 500);
            self.at(t + d, Ev::Fault(super::faults::Fault::Start(h)));
        }
        for name in out.pokes {
            if let Some(&to) = self.by_name.get(&name)
                && to != h
            {
                let m = self.net.syn(h, to);
                self.send(m);
            }
        }
    }

    fn granted(&mut self, h: usize, g: Grant) {
        let t = self.now;
        let name = self.hosts[h].name.clone();
        let Some(job) = self.hosts[h]
            .jobs
            .get_mut(&g.job)
            .filter(|j| j.state == JobState::Waiting)
        else {
            self.fail(
                "grant of a job that is not waiting",
                format!(
                    "{name} granted job {} which it does not have waiting",
                    g.job
                ),
            );
            return;
        };
        job.state = JobState::Running {
            since: t,
            tokens: g.tokens.clone(),
            deadline: None,
            stopping: false,
        };
        let hold = job.hold;
        let waited = t - job.asked;
        self.stats.grants += 1;
        self.stats.max_wait_ms = self.stats.max_wait_ms.max(waited);
        self.trace(format!(
            "{name} grant job {} {:?} after {waited} ms",
            g.job, g.tokens
        ));
        self.check_grant(h, g.job, &g.tokens);
        self.at(
            t + hold,
            Ev::JobEnd {
                host: h,
                job: g.job,
            },
        );
    }

    /// A job's process is gone (finished, stopped, killed): really stopped
    /// now; the engine is told as soon as it can be.
    pub fn job_ended(&mut self, h: usize, job: u64, end: End) {
        if !matches!(
            self.hosts[h].jobs.get(&job).map(|j| &j.state),
            Some(JobState::Running { .. })
        ) {
            return;
        }
        self.check_stop(h, job, end);
        self.hosts[h].jobs.remove(&job);
        self.tell_released(h, job);
    }

    fn tell_released(&mut self, h: usize, job: u64) {
        let now = self.host_now(h);
        let host = &mut self.hosts[h];
        match host.life {
            Life::Up => {
                if let Some(e) = host.engine.as_mut() {
                    e.release(job, now);
                }
                self.wake(h, self.now);
            }
            Life::Paused | Life::Stalled => host.unreleased.push(job),
            Life::Off => {}
        }
    }

    /// The stopper (the job's `sc exec` parent) kills at its deadline,
    /// whatever state the daemon is in.
    pub fn stopper(&mut self, h: usize, job: u64) {
        let due = matches!(
            self.hosts[h].jobs.get(&job).map(|j| &j.state),
            Some(JobState::Running { deadline: Some(d), .. }) if *d <= self.now
        );
        if due {
            self.stats.stopper_kills += 1;
            self.trace(format!("{} stopper kills job {job}", self.hosts[h].name));
            self.job_ended(h, job, End::Stopper);
        }
    }

    pub fn give_up(&mut self, h: usize, job: u64) {
        if self.hosts[h].jobs.get(&job).map(|j| &j.state) != Some(&JobState::Waiting) {
            return;
        }
        self.hosts[h].jobs.remove(&job);
        self.stats.gave_up += 1;
        self.trace(format!("{} job {job} gives up waiting", self.hosts[h].name));
        self.tell_released(h, job);
    }

    /// The load: each host asks now and then, at most `max_jobs` at once.
    pub fn arrive(&mut self, h: usize, epoch: u64) {
        if self.hosts[h].epoch != epoch || self.tail {
            return;
        }
        let next = self.now + self.rng.range(1, 2 * self.knobs.think_ms);
        self.at(next, Ev::Arrive { host: h, epoch });
        let host = &self.hosts[h];
        if host.life != Life::Up || host.jobs.len() >= host.max_jobs {
            return;
        }
        let mut roll = self.rng.below(100);
        let mut needs = Vec::new();
        for (n, w) in NEEDS {
            if roll < w {
                needs = n.iter().map(|&(r, u)| (r.to_string(), u)).collect();
                break;
            }
            roll -= w;
        }
        let prio = self.rng.pick(&[-10, 0, 10]);
        let k = self.knobs;
        let hold = if self.rng.chance(k.long_hold) {
            self.rng.range(1000, 5000)
        } else {
            self.rng.range(k.hold_ms.0, k.hold_ms.1)
        };
        let job = self.next_job;
        self.next_job += 1;
        let now = self.host_now(h);
        let host = &mut self.hosts[h];
        let Some(engine) = host.engine.as_mut() else {
            return;
        };
        match engine.request(now, job, &needs, prio) {
            Ok(()) => {
                host.jobs.insert(
                    job,
                    Job {
                        needs,
                        prio,
                        asked: self.now,
                        hold,
                        state: JobState::Waiting,
                    },
                );
                self.stats.requests += 1;
                if self.rng.chance(k.give_up) {
                    let d = self.rng.range(300, 6000);
                    self.at(self.now + d, Ev::GiveUp { host: h, job });
                }
                self.wake(h, self.now);
            }
            Err(e) => {
                self.stats.request_errors += 1;
                self.trace(format!("{} request refused: {e}", self.hosts[h].name));
            }
        }
    }

    /// Every job of `h` dies now (crash: the cgroup is killed; restart:
    /// the new daemon kills the old generation's jobs before publishing).
    pub fn kill_jobs(&mut self, h: usize, end: End) {
        let jobs: Vec<(u64, bool)> = self.hosts[h]
            .jobs
            .iter()
            .map(|(&j, job)| (j, job.state != JobState::Waiting))
            .collect();
        for (job, running) in jobs {
            if running {
                self.check_stop(h, job, end);
            } else {
                self.stats.abandoned += 1;
            }
        }
        self.hosts[h].jobs.clear();
        self.hosts[h].unreleased.clear();
    }

    /// First start, join, or restart as a new generation with the
    /// persisted votes.
    pub fn start_host(&mut self, h: usize) {
        self.kill_jobs(h, End::Restart);
        let t = self.now;
        let wall = self.host_now(h).wall_ms;
        let host = &mut self.hosts[h];
        if host.generation > 0 {
            self.stats.restarts += 1;
        }
        host.generation = (host.generation + 1).max(wall);
        let ng = NodeGen::new(host.name.clone(), host.generation);
        host.engine = Some(Engine::new(Setup {
            me: ng.clone(),
            resources: self.specs.clone(),
            members: self.members.clone(),
            params: self.params,
            votes: host.votes.clone(),
        }));
        host.inc = Some(self.net.start(h, ng.clone()));
        host.seen.clear();
        host.life = Life::Up;
        host.epoch += 1;
        host.restarting = false;
        host.wake_at = u64::MAX;
        let epoch = host.epoch;
        self.trace(format!("start {ng}"));
        let g = self.rng.below(self.net.p.gossip_ms);
        self.at(t + g, Ev::Gossip { host: h, epoch });
        self.wake(h, t);
        if !self.tail {
            let a = self.rng.range(0, self.knobs.think_ms);
            self.at(t + a, Ev::Arrive { host: h, epoch });
        }
        self.topology_changed();
    }
}
