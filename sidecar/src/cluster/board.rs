//! The cluster board on top of chitchat: publishing this host's keys and
//! reading everyone's into a snapshot.
//!
//! - [`publish`] turns the daemon's state into the desired set of this
//!   host's keys (`node`, `headroom`, `job/<id>`, `svc/<name>`); [`Publisher`]
//!   writes only what changed, and republishes `headroom` when it moved past
//!   a threshold or went stale, not every tick.
//! - [`read_board`] decodes every known host's keys into a `BoardView`,
//!   keeping only what decodes (the rest is counted), with liveness from
//!   chitchat's failure detector and dead-since times tracked here (0.11.2
//!   does not expose them).
//!
//! Both are plain functions over chitchat's state, so they are tested
//! without a network.

use sc_protocol::board::{
    BoardHost, BoardJob, BoardService, BoardView, Headroom, KEY_HEADROOM, KEY_JOB_PREFIX, KEY_NODE,
    KEY_SVC_PREFIX, NodeInfo, decode_value, encode_value,
};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// This host's state, as the daemon hands it over each tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalState {
    pub node: NodeInfo,
    pub headroom: Headroom,
    pub jobs: Vec<BoardJob>,
    pub services: Vec<BoardService>,
}

/// The keys and values this host should have on the board.
pub fn publish(state: &LocalState) -> BTreeMap<String, String> {
    let mut kv = BTreeMap::new();
    kv.insert(KEY_NODE.to_string(), encode_value(&state.node));
    kv.insert(KEY_HEADROOM.to_string(), encode_value(&state.headroom));
    for j in &state.jobs {
        kv.insert(format!("{KEY_JOB_PREFIX}{}", j.id), encode_value(j));
    }
    for s in &state.services {
        kv.insert(format!("{KEY_SVC_PREFIX}{}", s.name), encode_value(s));
    }
    kv
}

/// Headroom moves all the time; it is republished only when it changed by
/// more than this share of memory, when its counts changed, or when the last
/// publication is older than [`HEADROOM_MAX_AGE`].
pub const HEADROOM_MEM_STEP: f64 = 0.02;
pub const HEADROOM_MAX_AGE: Duration = Duration::from_secs(5);

/// What to change on the board to go from what was published to `want`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub set: Vec<(String, String)>,
    pub delete: Vec<String>,
}

/// Remembers what this host published, so each tick writes only changes.
#[derive(Debug, Default)]
pub struct Publisher {
    published: BTreeMap<String, String>,
    headroom: Option<(Headroom, Instant)>,
}

impl Publisher {
    pub fn changes(&mut self, state: &LocalState, mem_total: u64, now: Instant) -> Changes {
        let mut want = publish(state);
        let keep_old_headroom = match &self.headroom {
            Some((old, at)) => {
                let step = (mem_total as f64 * HEADROOM_MEM_STEP) as u64;
                let h = &state.headroom;
                now.duration_since(*at) < HEADROOM_MAX_AGE
                    && old.mem_available.abs_diff(h.mem_available) <= step
                    && old.mem_reserved == h.mem_reserved
                    && old.cpu_reserved_milli == h.cpu_reserved_milli
                    && old.jobs_running == h.jobs_running
                    && old.jobs_queued == h.jobs_queued
            }
            None => false,
        };
        if keep_old_headroom {
            if let Some(old) = self.published.get(KEY_HEADROOM) {
                want.insert(KEY_HEADROOM.to_string(), old.clone());
            }
        } else {
            self.headroom = Some((state.headroom.clone(), now));
        }
        let mut changes = Changes::default();
        for (k, v) in &want {
            if self.published.get(k) != Some(v) {
                changes.set.push((k.clone(), v.clone()));
            }
        }
        for k in self.published.keys() {
            if !want.contains_key(k) {
                changes.delete.push(k.clone());
            }
        }
        self.published = want;
        changes
    }
}

/// One host as chitchat knows it.
pub struct HostKeys<'a> {
    pub name: &'a str,
    pub generation: u64,
    pub gossip_addr: String,
    pub live: bool,
    pub is_self: bool,
    pub kv: Vec<(&'a str, &'a str)>,
}

/// Tracks when each host (name, generation) was first seen dead.
#[derive(Debug, Default)]
pub struct DeathClock {
    since: HashMap<(String, u64), Instant>,
}

impl DeathClock {
    pub fn dead_for(
        &mut self,
        name: &str,
        generation: u64,
        live: bool,
        now: Instant,
    ) -> Option<Duration> {
        let key = (name.to_string(), generation);
        if live {
            self.since.remove(&key);
            return None;
        }
        let at = *self.since.entry(key).or_insert(now);
        Some(now.duration_since(at))
    }
}

/// The distinct bad values seen (a bad value is read again every tick; it
/// counts once).
#[derive(Debug, Default)]
pub struct Undecodable {
    seen: std::collections::HashSet<(String, u64, String, u64)>,
}

impl Undecodable {
    fn saw(&mut self, host: &str, generation: u64, key: &str, value: &str) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut h);
        if self.seen.len() < 100_000 {
            self.seen
                .insert((host.to_string(), generation, key.to_string(), h.finish()));
        }
    }

    pub fn count(&self) -> u64 {
        self.seen.len() as u64
    }
}

/// Decode every host's keys. Only the newest generation of a name is kept
/// (a restarted host shows up with a new generation id).
pub fn read_board(
    cluster_id: &str,
    hosts: Vec<HostKeys<'_>>,
    clock: &mut DeathClock,
    now: Instant,
    undecodable: &mut Undecodable,
) -> BoardView {
    let mut newest: BTreeMap<&str, HostKeys<'_>> = BTreeMap::new();
    for h in hosts {
        match newest.get(h.name) {
            Some(seen) if (seen.live || !h.live) && seen.generation >= h.generation => {}
            _ => {
                newest.insert(h.name, h);
            }
        }
    }
    let mut out = Vec::new();
    for (_, h) in newest {
        let mut host = BoardHost {
            name: h.name.to_string(),
            gossip_addr: h.gossip_addr.clone(),
            live: h.live,
            dead_for_ms: clock
                .dead_for(h.name, h.generation, h.live, now)
                .map(|d| d.as_millis() as u64),
            is_self: h.is_self,
            node: None,
            headroom: None,
            jobs: Vec::new(),
            services: Vec::new(),
        };
        for (k, v) in h.kv {
            let ok = if k == KEY_NODE {
                decode_value::<NodeInfo>(v)
                    .map(|n| host.node = Some(n))
                    .is_ok()
            } else if k == KEY_HEADROOM {
                decode_value::<Headroom>(v)
                    .map(|x| host.headroom = Some(x))
                    .is_ok()
            } else if k.starts_with(KEY_JOB_PREFIX) {
                decode_value::<BoardJob>(v)
                    .map(|j| host.jobs.push(j))
                    .is_ok()
            } else if k.starts_with(KEY_SVC_PREFIX) {
                decode_value::<BoardService>(v)
                    .map(|s| host.services.push(s))
                    .is_ok()
            } else {
                // Keys of later versions (e.g. the lock state) are not ours to read here.
                true
            };
            if !ok {
                undecodable.saw(h.name, h.generation, k, v);
            }
        }
        host.jobs.sort_by_key(|j| j.id);
        out.push(host);
    }
    BoardView {
        cluster_id: cluster_id.to_string(),
        hosts: out,
        undecodable_values: undecodable.count(),
        resources: Vec::new(),
    }
}

/// The readiness of `svc` on `host` for `--wait-for svc@host`.
pub fn remote_gate(board: &BoardView, svc: &str, host: &str) -> crate::daemon::services::Gate {
    use crate::daemon::services::Gate;
    let Some(h) = board.hosts.iter().find(|h| h.name == host) else {
        return Gate::Failed(format!("no host {host} on the cluster board"));
    };
    if !h.live {
        return Gate::NotReady(format!("host {host} is not live"));
    }
    let Some(s) = h.services.iter().find(|s| s.name == svc) else {
        return Gate::Failed(format!("no service {svc} on host {host}"));
    };
    if s.ready {
        return Gate::Ready;
    }
    match s.state {
        sc_protocol::ServiceState::Failed => {
            Gate::Failed(format!("service {svc}@{host} has failed"))
        }
        sc_protocol::ServiceState::Stopped => {
            Gate::Failed(format!("service {svc}@{host} is stopped"))
        }
        st => Gate::NotReady(st.to_string()),
    }
}

#[cfg(test)]
#[path = "board_tests.rs"]
mod tests;
