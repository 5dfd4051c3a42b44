//! The quiet tail: faults stop, every host comes back (but for a few kept
//! down for good: a minority of members in quorum mode), the network
//! heals and the load stops. Then every request must be granted and every
//! engine's view must empty within a bound, or the run fails with what
//! each engine says it waits for.

use super::super::Mode;
use super::host::{JobState, Life};
use super::world::World;

impl World {
    /// The quiet tail: heal everything, stop the load, maybe keep a few
    /// hosts down for good (a minority of members in quorum mode), and
    /// give the backlog a bound to drain in.
    pub fn start_tail(&mut self) {
        self.trace("quiet tail".into());
        self.net.heal();
        self.net.loss = 0.0;
        self.net.jitter_ms = 0;
        self.fault_ids = [u64::MAX; 3];
        let n = self.cfg.hosts;
        let spare = match self.cfg.mode {
            Mode::Quorum => n - (n / 2 + 1),
            Mode::Available => n.saturating_sub(1) / 2,
        };
        let mut keep_down = Vec::new();
        if self.cfg.faults && spare > 0 && self.rng.chance(0.3) {
            let k = self.rng.range(1, spare as u64) as usize;
            let mut pool: Vec<usize> = (0..n).collect();
            for _ in 0..k {
                keep_down.push(pool.swap_remove(self.rng.index(pool.len())));
            }
        }
        self.tail = true;
        for h in 0..self.hosts.len() {
            if keep_down.contains(&h) {
                self.crash(h);
                continue;
            }
            match self.hosts[h].life {
                Life::Off if h < n || self.hosts[h].generation > 0 => {
                    self.start_host(h);
                }
                Life::Paused | Life::Stalled => self.resume(h),
                _ => {}
            }
        }
        self.topology_changed();
        // Bound: the slowest recovery chains three T_down periods (hosts
        // kept down are voted DOWN; a host whose lease partial DOWN votes
        // block waits T_down before coming back as a new generation, which
        // then joins), plus one for slack, plus every pending job's hold
        // one after the other (as if all needed the capacity-1 resource).
        let backlog: u64 = self
            .hosts
            .iter()
            .flat_map(|h| h.jobs.values())
            .map(|j| j.hold + 300)
            .sum();
        self.end_ms = self.now + 4 * self.params.t_down_ms() + backlog;
        self.stats.tail_start_ms = self.now;
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
                    "{} job {id} {:?} prio {} asked at {}: {state}",
                    host.name, j.needs, j.prio, j.asked
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
