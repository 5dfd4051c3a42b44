//! The daemon's side of cluster resources (`sc exec --needs`): it feeds the
//! pure engine ([`crate::dlock`]) what chitchat shows and what jobs do, and
//! carries out what the engine decides — publish our `dl` value, poke the
//! hosts that can act on it, start granted jobs with their fencing tokens,
//! extend or stop holders, tell waiting jobs who holds what.
//!
//! A job asks only once local admission would start it (so a resource is
//! never held by a job that cannot start); from then on it holds its local
//! reservation while it waits. Its claims are released when the `Job` is
//! dropped, which happens after its processes were killed and reaped.

use super::Shared;
use super::lifecycle::{self, Placed};
use super::state::{Daemon, StopReason};
use crate::dlock::{Engine, Now, Observation, Output, ResourceView};
use sc_protocol::board::BoardResource;
use sc_protocol::dl::{KEY_DL, NodeGen};
use sc_protocol::{JobId, ResourceHolder, Response, WaitReason};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Step period while anything is requested, claimed or held anywhere:
/// lease renewals (every L/12) and deadlines need a steady beat.
const TICK_BUSY: Duration = Duration::from_millis(50);
/// Otherwise: enough to notice peers and vote on silent members.
const TICK_IDLE: Duration = Duration::from_millis(250);

/// The engine and what the daemon needs around it, inside the daemon state.
pub struct Locks {
    pub engine: Engine,
    pub wake: Arc<Notify>,
    release_tx: UnboundedSender<JobId>,
    /// Where our DOWN votes are persisted (they must outlive a restart).
    votes_path: PathBuf,
    /// Resources as `sc board` shows them, refreshed every step.
    pub board: Arc<Mutex<Vec<BoardResource>>>,
}

/// A job's cluster claim as the daemon tracks it.
#[derive(Debug)]
pub struct JobClaim {
    /// (resource, fencing token) once granted.
    pub tokens: Option<Vec<(String, u64)>>,
    /// The stopper's deadline (CLOCK_BOOTTIME ms) last told to the client.
    pub lease_until: Option<u64>,
    /// When this host asked the cluster (for `sc_claim_wait_seconds`).
    pub requested_at: std::time::Instant,
    _release: ReleaseOnDrop,
}

/// Releases the job's claims when the job record goes away. The record is
/// dropped only after `reap` killed what was left of the job.
#[derive(Debug)]
struct ReleaseOnDrop {
    job: JobId,
    tx: UnboundedSender<JobId>,
    /// Cleared when the claim was released synchronously ([`Locks::give_back`]).
    armed: bool,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tx.send(self.job);
        }
    }
}

pub fn now() -> Now {
    Now {
        mono_ms: crate::boottime::now_ms(),
        wall_ms: super::state::wall_ms(),
    }
}

/// Load the votes an earlier generation of this host cast.
pub fn load_votes(path: &std::path::Path) -> Vec<NodeGen> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn save_votes(path: &std::path::Path, votes: &[NodeGen]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_string(votes).unwrap_or_else(|_| "[]".into());
    std::fs::write(&tmp, json)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Locks {
    pub fn new(engine: Engine, votes_path: PathBuf) -> (Locks, UnboundedReceiver<JobId>) {
        let (release_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Locks {
                engine,
                wake: Arc::new(Notify::new()),
                release_tx,
                votes_path,
                board: Arc::default(),
            },
            rx,
        )
    }

    /// Ask for a job's resources; on success the job carries the claim.
    pub fn request(
        &mut self,
        job: JobId,
        needs: &[sc_protocol::Need],
        prio: i32,
    ) -> Result<JobClaim, String> {
        let needs: Vec<(String, u32)> = needs.iter().map(|n| (n.name.clone(), n.units)).collect();
        self.engine
            .request(now(), job, &needs, prio)
            .map_err(|e| format!("--needs: {e}"))?;
        self.wake.notify_one();
        Ok(JobClaim {
            tokens: None,
            lease_until: None,
            requested_at: std::time::Instant::now(),
            _release: ReleaseOnDrop {
                job,
                tx: self.release_tx.clone(),
                armed: true,
            },
        })
    }

    /// Release a job's claim now, while the job lives on (`sc drain`): done
    /// in place rather than through the drop channel, so a release still in
    /// flight can never cancel the job's next request under the same id.
    pub fn give_back(&mut self, mut claim: JobClaim) {
        claim._release.armed = false;
        self.engine.release(claim._release.job, now());
        self.wake.notify_one();
    }

    /// `sc status`: every resource with its holders, queue and conflict.
    pub fn status(&self) -> Vec<sc_protocol::ResourceStatus> {
        self.engine
            .resources(now())
            .into_iter()
            .map(|r| sc_protocol::ResourceStatus {
                holders: r.holders.len() as u32,
                queued: r.queue.len() as u32,
                name: r.name,
                capacity: r.capacity,
                mode: r.mode.as_str().to_string(),
                conflict: r.conflict,
            })
            .collect()
    }
}

fn board_resource(r: ResourceView) -> BoardResource {
    BoardResource {
        name: r.name,
        capacity: r.capacity,
        mode: r.mode.as_str().to_string(),
        holders: r
            .holders
            .into_iter()
            .map(|(host, job, units, token)| sc_protocol::board::BoardClaim {
                host,
                job,
                units,
                token: Some(token),
                claimed: true,
                priority: 0,
            })
            .collect(),
        queue: r
            .queue
            .into_iter()
            .map(
                |(host, job, units, claimed, priority)| sc_protocol::board::BoardClaim {
                    host,
                    job,
                    units,
                    token: None,
                    claimed,
                    priority,
                },
            )
            .collect(),
        conflict: r.conflict,
    }
}

/// What chitchat knows, for the engine; and where each host gossips.
fn observe(c: &chitchat::Chitchat) -> (Vec<Observation>, BTreeMap<String, SocketAddr>) {
    let live: std::collections::HashSet<&chitchat::ChitchatId> = c.live_nodes().collect();
    let mut addrs: BTreeMap<String, (u64, SocketAddr)> = BTreeMap::new();
    let obs = c
        .node_states()
        .iter()
        .map(|(id, st)| {
            let e = addrs
                .entry(id.node_id.to_string())
                .or_insert((id.generation_id, id.gossip_advertise_addr));
            if id.generation_id >= e.0 {
                *e = (id.generation_id, id.gossip_advertise_addr);
            }
            Observation {
                node: NodeGen::new(id.node_id.to_string(), id.generation_id),
                live: live.contains(id),
                heartbeat: u64::from(st.heartbeat()),
                dl: st.get(KEY_DL).map(str::to_string),
            }
        })
        .collect();
    (obs, addrs.into_iter().map(|(k, (_, a))| (k, a)).collect())
}

/// What to do after a step, outside the daemon lock.
#[derive(Default)]
struct Actions {
    out: Output,
    placed: Vec<Placed>,
}

/// The engine's loop: wakes on any host's `dl` change, on a local request
/// or release, and on a steady tick.
pub async fn run(
    shared: Shared,
    node: Arc<crate::cluster::node::ClusterNode>,
    mut releases: UnboundedReceiver<JobId>,
) {
    let handle = &node.handle;
    let Some(wake) = shared.daemon().locks.as_ref().map(|l| l.wake.clone()) else {
        return;
    };
    let chitchat = handle.chitchat();
    let w = wake.clone();
    let _subscription = chitchat
        .lock()
        .await
        .subscribe_event(KEY_DL, move |_| w.notify_one());
    let mut pending: Vec<JobId> = Vec::new();
    let mut busy = true;
    loop {
        let tick = if busy { TICK_BUSY } else { TICK_IDLE };
        let woke = tokio::select! {
            _ = wake.notified() => "notified",
            Some(id) = releases.recv() => { pending.push(id); "release" }
            _ = tokio::time::sleep(tick) => "tick",
        };
        while let Ok(id) = releases.try_recv() {
            pending.push(id);
        }
        let (obs, addrs) = observe(&*chitchat.lock().await);
        let t = now();
        let actions = {
            let mut d = shared.daemon();
            step(&mut d, t, &obs, std::mem::take(&mut pending))
        };
        let Some(actions) = actions else { return };
        busy = actions.busy;
        let Actions { out, placed } = actions.actions;
        // The hand-over path, timed from the log (`SC_LOG=sc::daemon::cluster_locks=debug`).
        if out.publish.is_some() || !out.granted.is_empty() || !out.stop.is_empty() {
            tracing::debug!(
                woke,
                published = out.publish.is_some(),
                pokes = ?out.pokes,
                granted = ?out.granted.iter().map(|g| g.job).collect::<Vec<_>>(),
                stopped = ?out.stop.iter().map(|s| s.0).collect::<Vec<_>>(),
                "lock step"
            );
        }
        if let Some(votes) = &out.votes {
            let path = shared.daemon().locks.as_ref().map(|l| l.votes_path.clone());
            if let Some(path) = path
                && let Err(e) = save_votes(&path, votes)
            {
                // Publishing a vote we could forget would let a later
                // generation acknowledge a lease it must not: stop here.
                tracing::error!("cannot persist DOWN votes to {}: {e}", path.display());
                continue;
            }
        }
        // The new value goes to the hosts that wait on it in one message
        // (`cluster/push.rs`); a push that cannot be queued is a poke.
        let mut cc = chitchat.lock().await;
        if let Some(v) = out.publish {
            cc.self_node_state().set(KEY_DL, v);
        }
        for name in &out.pokes {
            if let Some(addr) = addrs.get(name)
                && !node.pusher.push(&cc, *addr)
            {
                let _ = handle.gossip(*addr);
            }
        }
        drop(cc);
        let store = shared.daemon().store.clone();
        for p in placed {
            lifecycle::after_placed(&shared, store.clone(), p);
        }
        for (id, why) in out.stop {
            let shared = shared.clone();
            tokio::spawn(async move {
                lifecycle::stop(&shared, id, StopReason::Cluster(why.to_string())).await;
            });
        }
        if out.self_down {
            restart_as_new_generation(&shared);
        }
    }
}

struct StepResult {
    actions: Actions,
    busy: bool,
}

/// Feed the engine and apply its decisions to the job table.
fn step(d: &mut Daemon, t: Now, obs: &[Observation], releases: Vec<JobId>) -> Option<StepResult> {
    let me = d.cluster.as_ref().map(|c| c.node_name.clone())?;
    let locks = d.locks.as_mut()?;
    for id in releases {
        locks.engine.release(id, t);
    }
    let pauses = locks.engine.stats.self_pauses;
    locks.engine.observe(t, obs);
    if locks.engine.stats.self_pauses > pauses {
        // Leases and silence clocks judge time this daemon did not run:
        // what a holder losing its lease on a healthy cluster looks like.
        tracing::warn!(
            gap_ms = locks.engine.stats.last_pause_ms,
            "the cluster engine did not run for {} ms (daemon stopped, suspended or starved of CPU); silence clocks restart",
            locks.engine.stats.last_pause_ms
        );
    }
    let out = locks.engine.step(t);
    let waits = locks.engine.waits(t);
    let resources = locks.engine.resources(t);
    let busy = !locks.engine.jobs().is_empty()
        || resources
            .iter()
            .any(|r| !r.holders.is_empty() || !r.queue.is_empty());
    *locks.board.lock().unwrap_or_else(|p| p.into_inner()) =
        resources.into_iter().map(board_resource).collect();
    let mut actions = Actions::default();
    for (job, until) in &out.leases {
        if let Some(j) = d.jobs.get_mut(job)
            && let Some(c) = j.claim.as_mut()
        {
            c.lease_until = Some(*until);
            if c.tokens.is_some() {
                j.send(Response::Lease {
                    job: *job,
                    until_ms: *until,
                });
            }
        }
    }
    for g in &out.granted {
        let ok = match d.jobs.get_mut(&g.job) {
            Some(j) if j.is_queued() => match j.claim.as_mut() {
                Some(c) => {
                    // The job's environment lists them in its --needs order.
                    let mut tokens = g.tokens.clone();
                    tokens.sort_by_key(|(r, _)| j.exec.needs.iter().position(|n| n.name == *r));
                    c.tokens = Some(tokens);
                    d.metrics.record_claim_wait(c.requested_at.elapsed());
                    // Another host's release (its wall clock) to this grant
                    // (ours): within the hosts' clock offset.
                    if let Some(at) = g.released_at {
                        let gap = t.wall_ms.saturating_sub(at);
                        d.metrics.record_handover(Duration::from_millis(gap));
                    }
                    true
                }
                None => false,
            },
            _ => false,
        };
        if !ok {
            // The job went away between its request and its grant.
            if let Some(l) = d.locks.as_mut() {
                l.engine.release(g.job, t);
            }
            continue;
        }
        match lifecycle::grant(d, g.job) {
            Ok(placed) => actions.placed.push(placed),
            Err(msg) => {
                tracing::warn!(job = g.job, "{msg}");
                if let Some(job) = d.take(g.job) {
                    job.send(Response::error(sc_protocol::ErrorKind::Internal, msg));
                }
            }
        }
    }
    tell_waits(d, &me, waits);
    actions.out = out;
    Some(StepResult { actions, busy })
}

/// Send each waiting job why it waits, when that changed.
fn tell_waits(d: &mut Daemon, me: &str, waits: Vec<crate::dlock::Wait>) {
    let mut board = None;
    for w in waits {
        let Some(job) = d.jobs.get(&w.job) else {
            continue;
        };
        // Same holders and place: nothing new to say — unless a holder's
        // command was not on the board yet when we last said it.
        let same = matches!(&job.last_wait, Some((WaitReason::Resource { name, holders, ahead, detail }, _))
            if *name == w.res && *ahead == w.ahead && *detail == w.detail
                && holders.iter().all(|h| h.summary.is_some())
                && holders.iter().map(|h| (h.host.as_str(), h.job)).eq(w.holders.iter().map(|(h, j)| (h.as_str(), *j))));
        if same {
            continue;
        }
        let previous = match &job.last_wait {
            Some((WaitReason::Resource { holders, .. }, _)) => Some(holders.clone()),
            _ => None,
        };
        let board = board.get_or_insert_with(|| d.cluster.as_ref().map(|c| c.board()));
        let now_wall = super::state::wall_ms();
        let holders: Vec<ResourceHolder> = w
            .holders
            .iter()
            .map(|(host, id)| {
                let (summary, started) = if host == me {
                    d.jobs
                        .get(id)
                        .map(|j| {
                            (
                                Some(super::board_state::summary(
                                    &j.exec.argv,
                                    j.exec.name.as_deref(),
                                )),
                                j.started_wall,
                            )
                        })
                        .unwrap_or((None, None))
                } else {
                    board
                        .as_ref()
                        .and_then(|b| b.hosts.iter().find(|h| h.name == *host))
                        .and_then(|h| h.jobs.iter().find(|j| j.id == *id))
                        .map(|j| (Some(j.summary.clone()), j.started_at))
                        .unwrap_or((None, None))
                };
                ResourceHolder {
                    host: host.clone(),
                    job: *id,
                    summary,
                    held_ms: started.map(|s| now_wall.saturating_sub(s)),
                }
            })
            .collect();
        let unchanged = previous.is_some_and(|p: Vec<ResourceHolder>| {
            p.iter().map(|h| (&h.host, h.job, &h.summary)).eq(holders
                .iter()
                .map(|h: &ResourceHolder| (&h.host, h.job, &h.summary)))
        }) && matches!(&job.last_wait, Some((WaitReason::Resource { name, ahead, detail, .. }, _))
            if *name == w.res && *ahead == w.ahead && *detail == w.detail);
        if unchanged {
            continue;
        }
        let reason = WaitReason::Resource {
            name: w.res.clone(),
            holders,
            ahead: w.ahead,
            detail: w.detail.clone(),
        };
        let Some(job) = d.jobs.get_mut(&w.job) else {
            continue;
        };
        let position = w.ahead + 1;
        job.last_wait = Some((reason.clone(), position));
        job.send(Response::Waiting {
            job: w.job,
            reason,
            position,
            waited_ms: job.queued_at.elapsed().as_millis() as u64,
        });
    }
}

/// A quorum voted this host DOWN (it was cut off or stopped for longer than
/// T_down): its claims are void everywhere and it may never claim again
/// under this generation. Once the engine's stops have emptied the
/// holders, the daemon replaces itself with a fresh process — a new
/// generation that passes the join barrier again. Jobs that hold nothing in
/// the cluster keep running and re-attach, as after any daemon restart.
fn restart_as_new_generation(shared: &Shared) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    tracing::error!(
        "a quorum of cluster members voted this host DOWN; stopping its cluster jobs and restarting as a new generation"
    );
    let shared = shared.clone();
    tokio::spawn(async move {
        let grace = shared.daemon().kill_grace;
        let deadline = std::time::Instant::now() + grace + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            let holding = shared
                .daemon()
                .jobs
                .values()
                .any(|j| j.claim.as_ref().is_some_and(|c| c.tokens.is_some()));
            if !holding {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new("/proc/self/exe")
            .args(std::env::args_os().skip(1))
            .exec();
        tracing::error!("cannot restart the daemon: {err}");
        std::process::exit(75);
    });
}
