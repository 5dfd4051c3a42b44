//! The admission rule: which queued jobs may start on this host now.
//!
//! A pure function of a [`Snapshot`]: no I/O, no clock, no cgroup handles.
//! The daemon builds the snapshot from live readings, calls [`decide`] and
//! carries out the [`Decision`]. Rules (DESIGN §4):
//!
//! - rank: priority (higher first), then arrival;
//! - memory: `request + Σ max(0, reserved_i − used_i) ≤ MemAvailable − reserve`
//!   over running jobs, so a job's reservation counts until it grows into it;
//! - CPU: `Σ cpu requests ≤ cores × overcommit`;
//! - a job held back by something else (a `--wait-for` service) waits
//!   without taking headroom or blocking anyone;
//! - the first job in rank order that does not fit is the *head*. A job behind
//!   it may start (backfill) only if it fits now AND still fits beside the
//!   head's full request once the jobs running now have ended, so a stream of
//!   small jobs can never keep the head waiting forever (no starvation).

use sc_protocol::{JobId, WaitReason};

/// What the host can give, as read at snapshot time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostReading {
    /// MemAvailable (or the configured capacity minus what jobs use).
    pub mem_available: u64,
    /// Memory kept free for everything that is not a job.
    pub mem_reserve: u64,
    /// cores × overcommit, in thousandths of a CPU.
    pub cpu_capacity_milli: u64,
}

/// A job that holds resources: running, paused, starting or detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub mem_reserved: u64,
    /// Memory the job uses now (0 when unknown: the whole reservation counts).
    pub mem_used: u64,
    pub cpu_milli: u32,
}

/// A job waiting for admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: JobId,
    pub priority: i32,
    /// Arrival order, unique per daemon state dir.
    pub seq: u64,
    pub mem: u64,
    pub cpu_milli: u32,
    /// Something other than headroom holds it back (a `--wait-for` service
    /// that is not ready). A blocked job takes no headroom and never
    /// becomes the head: it cannot hold up the jobs behind it.
    pub blocked: Option<WaitReason>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub host: Option<HostReading>,
    pub holders: Vec<Holder>,
    pub queue: Vec<Candidate>,
}

/// The outcome for one waiting job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub id: JobId,
    /// 1 = next in rank order.
    pub position: u32,
    pub reason: WaitReason,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Jobs to start now, in rank order.
    pub start: Vec<JobId>,
    /// Every job that stays queued, in rank order.
    pub wait: Vec<Wait>,
}

/// Rank order: higher priority first, then earlier arrival.
pub fn rank(queue: &mut [Candidate]) {
    queue.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
}

/// Decide which queued jobs start now.
pub fn decide(snapshot: &Snapshot) -> Decision {
    let mut queue = snapshot.queue.clone();
    rank(&mut queue);
    let Some(host) = snapshot.host else {
        // No reading yet: admit nothing rather than guess.
        return Decision {
            start: Vec::new(),
            wait: queue
                .iter()
                .enumerate()
                .map(|(i, c)| Wait {
                    id: c.id,
                    position: i as u32 + 1,
                    reason: WaitReason::Memory {
                        need: c.mem,
                        free: 0,
                    },
                })
                .collect(),
        };
    };

    let unused: u64 = snapshot
        .holders
        .iter()
        .map(|h| h.mem_reserved.saturating_sub(h.mem_used))
        .sum();
    let used: u64 = snapshot.holders.iter().map(|h| h.mem_used).sum();
    let mut mem_free = host
        .mem_available
        .saturating_sub(host.mem_reserve)
        .saturating_sub(unused);
    let mut cpu_free = host.cpu_capacity_milli.saturating_sub(
        snapshot
            .holders
            .iter()
            .map(|h| u64::from(h.cpu_milli))
            .sum(),
    );
    // What the head could have once every job running now has ended: their
    // usage and unused reservations come back.
    let mem_drained = host.mem_available.saturating_sub(host.mem_reserve) + used;
    let cpu_drained = host.cpu_capacity_milli;

    let mut decision = Decision::default();
    // Once a head is blocked: its request, and what backfilled jobs took.
    let mut head: Option<(Candidate, u64, u64)> = None;
    let mut position = 0u32;
    for c in queue {
        if let Some(reason) = &c.blocked {
            position += 1;
            decision.wait.push(Wait {
                id: c.id,
                position,
                reason: reason.clone(),
            });
            continue;
        }
        let cpu = u64::from(c.cpu_milli);
        let fits_now = c.mem <= mem_free && cpu <= cpu_free;
        let allowed = match &head {
            None => fits_now,
            Some((h, bf_mem, bf_cpu)) => {
                fits_now
                    && h.mem + bf_mem + c.mem <= mem_drained
                    && u64::from(h.cpu_milli) + bf_cpu + cpu <= cpu_drained
            }
        };
        if allowed {
            mem_free -= c.mem;
            cpu_free -= cpu;
            if let Some((_, bf_mem, bf_cpu)) = &mut head {
                *bf_mem += c.mem;
                *bf_cpu += cpu;
            }
            decision.start.push(c.id);
            continue;
        }
        position += 1;
        let reason = if c.mem > mem_free {
            WaitReason::Memory {
                need: c.mem,
                free: mem_free,
            }
        } else if cpu > cpu_free {
            WaitReason::Cpu {
                need: c.cpu_milli,
                free: cpu_free.min(u64::from(u32::MAX)) as u32,
            }
        } else {
            WaitReason::Behind {
                ahead: position - 1,
            }
        };
        decision.wait.push(Wait {
            id: c.id,
            position,
            reason,
        });
        if head.is_none() {
            head = Some((c.clone(), 0, 0));
        }
    }
    decision
}

/// Why a request can never be granted on this host, if it cannot.
pub fn impossible(
    capacity_mem: u64,
    reserve: u64,
    cpu_capacity_milli: u64,
    mem: u64,
    cpu_milli: u32,
) -> Option<String> {
    use sc_protocol::units::{format_cpus, format_size};
    let usable = capacity_mem.saturating_sub(reserve);
    if mem > usable {
        return Some(format!(
            "impossible request: --mem {} is more than this host can ever give ({} of memory minus a {} reserve = {})",
            format_size(mem),
            format_size(capacity_mem),
            format_size(reserve),
            format_size(usable)
        ));
    }
    if u64::from(cpu_milli) > cpu_capacity_milli {
        return Some(format!(
            "impossible request: --cpus {} is more than this host's {} CPUs (cores × overcommit)",
            format_cpus(cpu_milli),
            format_cpus(cpu_capacity_milli.min(u64::from(u32::MAX)) as u32)
        ));
    }
    None
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
