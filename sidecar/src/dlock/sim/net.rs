//! The gossip network, modelled on chitchat 0.11.2 (shared/CHITCHAT-0.11.2.md,
//! CLUSTER-LOCKS.md §2.1) at the level the lock rule depends on.
//!
//! - An incarnation (host name + generation) owns one `dl` value, published
//!   as a sequence of versions; readers only ever move forward in it.
//! - Each running host keeps, per incarnation it knows, the newest version
//!   and heartbeat it has heard of, from anyone (scuttlebutt relays).
//! - A handshake is Syn (digest: heartbeats only) → SynAck (values and
//!   heartbeats) → Ack (values and heartbeats); each message may be lost or
//!   delayed (so reordered), and is dropped when the link is down or the
//!   receiver is crashed or paused at arrival.
//! - Every gossip round a host bumps its heartbeat and opens handshakes
//!   with 3 live peers, sometimes a dead one, sometimes a seed; a poke is
//!   one handshake at once. Each message processed also bumps the heartbeat.
//! - Liveness is chitchat's phi detector per observer: elapsed time since
//!   the last heartbeat increase over the mean interval between increases
//!   (with a prior of 5 × `initial_interval`), dead above the threshold or
//!   with fewer than two heartbeats seen.

use super::super::Observation;
use super::causal::Causal;
use super::detector::Detector;
use super::rng::Rng;
use sc_protocol::dl::NodeGen;
use std::collections::BTreeSet;

pub type Inc = usize;

/// chitchat's `GOSSIP_COUNT`.
const FANOUT: usize = 3;
pub struct Incarnation {
    pub ng: NodeGen,
    pub host: usize,
    /// Published `dl` values; version v is `values[v - 1]`.
    pub values: Vec<String>,
    pub hb: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    pub ver: u32,
    pub hb: u64,
}

/// One host's chitchat instance (lost on a crash; a restart starts empty).
struct Node {
    me: Inc,
    know: Vec<Option<Known>>,
    fd: Vec<Detector>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Syn,
    SynAck,
    Ack,
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub from: usize,
    pub to: usize,
    pub kind: Kind,
    state: Vec<(Inc, Known)>,
    /// Matrix clock (value-carrying messages, small clusters).
    mc: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct NetParams {
    pub gossip_ms: u64,
    pub phi: f64,
    pub initial_ms: u64,
    /// One-way delay on a healthy link, ms (inclusive range).
    pub delay_ms: (u64, u64),
}

pub struct Net {
    pub incs: Vec<Incarnation>,
    nodes: Vec<Option<Node>>,
    /// Processes messages and gossips (false: crashed or paused).
    active: Vec<bool>,
    group: Vec<u32>,
    /// Directed links that drop everything (one-way and bridge cuts).
    blocked: BTreeSet<(usize, usize)>,
    pub loss: f64,
    pub jitter_ms: u64,
    pub p: NetParams,
    pub seeds: Vec<usize>,
    pub messages: u64,
    pub causal: Causal,
}

impl Net {
    pub fn new(hosts: usize, p: NetParams, seeds: Vec<usize>) -> Net {
        Net {
            incs: Vec::new(),
            nodes: (0..hosts).map(|_| None).collect(),
            active: vec![false; hosts],
            group: vec![0; hosts],
            blocked: BTreeSet::new(),
            loss: 0.0,
            jitter_ms: 0,
            p,
            seeds,
            messages: 0,
            causal: Causal::new(hosts, hosts <= 12),
        }
    }

    /// A new chitchat instance on `host` for a new incarnation; it knows
    /// only itself.
    pub fn start(&mut self, host: usize, ng: NodeGen) -> Inc {
        let inc = self.incs.len();
        self.incs.push(Incarnation {
            ng,
            host,
            values: Vec::new(),
            hb: 0,
        });
        let mut know = vec![None; inc + 1];
        know[inc] = Some(Known::default());
        self.nodes[host] = Some(Node {
            me: inc,
            know,
            fd: Vec::new(),
        });
        self.active[host] = true;
        inc
    }

    /// Crash: the instance and everything it knew are gone.
    pub fn crash(&mut self, host: usize) {
        self.nodes[host] = None;
        self.active[host] = false;
    }

    /// Pause or resume (SIGSTOP): state kept, nothing processed meanwhile.
    pub fn set_active(&mut self, host: usize, on: bool) {
        self.active[host] = on && self.nodes[host].is_some();
    }

    pub fn publish(&mut self, inc: Inc, value: String) {
        self.incs[inc].values.push(value);
    }

    /// On the same side of the current partition (one-way and bridge cuts
    /// aside).
    pub fn same_group(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    pub fn link_up(&self, from: usize, to: usize) -> bool {
        self.group[from] == self.group[to] && !self.blocked.contains(&(from, to))
    }

    /// Replace the topology: hosts talk within a group, minus `blocked`.
    pub fn set_topology(&mut self, group: Vec<u32>, blocked: BTreeSet<(usize, usize)>) {
        self.group = group;
        self.blocked = blocked;
    }

    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
        self.blocked.clear();
    }

    /// Hosts that are active and talk both ways, as connected components.
    pub fn components(&self) -> Vec<Option<usize>> {
        let n = self.active.len();
        let mut comp = vec![None; n];
        let mut next = 0;
        for s in 0..n {
            if !self.active[s] || comp[s].is_some() {
                continue;
            }
            comp[s] = Some(next);
            let mut stack = vec![s];
            while let Some(a) = stack.pop() {
                let reachable: Vec<usize> = (0..n)
                    .filter(|&b| {
                        comp[b].is_none()
                            && self.active[b]
                            && self.link_up(a, b)
                            && self.link_up(b, a)
                    })
                    .collect();
                for b in reachable {
                    comp[b] = Some(next);
                    stack.push(b);
                }
            }
            next += 1;
        }
        comp
    }

    fn state(&self, host: usize) -> Vec<(Inc, Known)> {
        let Some(node) = &self.nodes[host] else {
            return Vec::new();
        };
        let mut out: Vec<(Inc, Known)> = node
            .know
            .iter()
            .enumerate()
            .filter_map(|(i, k)| k.map(|k| (i, k)))
            .collect();
        for e in &mut out {
            if e.0 == node.me {
                let me = &self.incs[node.me];
                e.1 = Known {
                    ver: me.values.len() as u32,
                    hb: me.hb,
                };
            }
        }
        out
    }

    fn bump(&mut self, host: usize) {
        if let Some(node) = &self.nodes[host] {
            self.incs[node.me].hb += 1;
        }
    }

    /// The Syn that opens a handshake (gossip round or poke).
    pub fn syn(&self, from: usize, to: usize) -> Msg {
        Msg {
            from,
            to,
            kind: Kind::Syn,
            state: self.state(from),
            mc: Vec::new(),
        }
    }

    /// One gossip round of `host`: bump the heartbeat, pick peers.
    pub fn gossip_round(&mut self, host: usize, now: u64, rng: &mut Rng) -> Vec<Msg> {
        if !self.active[host] {
            return Vec::new();
        }
        self.bump(host);
        let Some(node) = &self.nodes[host] else {
            return Vec::new();
        };
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        for (inc, k) in node.know.iter().enumerate() {
            let h = self.incs[inc].host;
            if k.is_none() || h == host {
                continue;
            }
            let d = node.fd.get(inc);
            if d.is_some_and(|d| d.live(now, self.p.phi, self.p.initial_ms)) {
                live.push(h);
            } else {
                dead.push(h);
            }
        }
        live.sort_unstable();
        live.dedup();
        dead.sort_unstable();
        dead.dedup();
        dead.retain(|h| live.binary_search(h).is_err());
        let mut out = Vec::new();
        let mut pool = live.clone();
        while out.len() < FANOUT && !pool.is_empty() {
            out.push(pool.swap_remove(rng.index(pool.len())));
        }
        if !dead.is_empty() && rng.chance(dead.len() as f64 / (live.len() + 1) as f64) {
            out.push(rng.pick(&dead));
        }
        let seeds: Vec<usize> = self.seeds.iter().copied().filter(|&s| s != host).collect();
        if !seeds.is_empty()
            && (live.len() < seeds.len()
                || rng.chance(seeds.len() as f64 / (live.len() + dead.len() + 1) as f64))
        {
            out.push(rng.pick(&seeds));
        }
        out.sort_unstable();
        out.dedup();
        out.into_iter().map(|to| self.syn(host, to)).collect()
    }

    /// When `msg` arrives, or `None` if it is lost on the way.
    pub fn transmit(&mut self, now: u64, rng: &mut Rng) -> Option<u64> {
        self.messages += 1;
        if self.loss > 0.0 && rng.chance(self.loss) {
            return None;
        }
        let (lo, hi) = self.p.delay_ms;
        Some(now + rng.range(lo, hi) + rng.below(self.jitter_ms + 1))
    }

    /// Process an arriving message. Returns the reply to send, and whether
    /// the receiver learnt a new `dl` version.
    pub fn deliver(&mut self, now: u64, msg: Msg) -> (Option<Msg>, bool) {
        if !self.active[msg.to] || !self.link_up(msg.from, msg.to) {
            return (None, false);
        }
        if self.nodes[msg.to].is_none() {
            return (None, false);
        }
        let values = msg.kind != Kind::Syn;
        if values {
            self.causal.merge(msg.to, now, &msg.mc);
        }
        let Some(node) = &mut self.nodes[msg.to] else {
            return (None, false);
        };
        let mut fresh = false;
        for (inc, k) in msg.state {
            if inc == node.me {
                continue;
            }
            if node.know.len() <= inc {
                node.know.resize(inc + 1, None);
            }
            if node.fd.len() <= inc {
                node.fd.resize(inc + 1, Detector::default());
            }
            let mine = match &mut node.know[inc] {
                Some(m) => m,
                // A digest alone does not add a node; a delta does.
                None if !values => continue,
                slot => slot.insert(Known::default()),
            };
            if k.hb > mine.hb {
                mine.hb = k.hb;
                node.fd[inc].beat(now);
            }
            if values && k.ver > mine.ver {
                mine.ver = k.ver;
                fresh = true;
            }
        }
        self.bump(msg.to);
        let reply = match msg.kind {
            Kind::Syn => Some(Kind::SynAck),
            Kind::SynAck => Some(Kind::Ack),
            Kind::Ack => None,
        }
        .map(|kind| Msg {
            from: msg.to,
            to: msg.from,
            kind,
            state: self.state(msg.to),
            mc: self.causal.stamp(msg.to, now),
        });
        (reply, fresh)
    }

    /// What the daemon passes to `Engine::observe`: every incarnation this
    /// host's chitchat knows. A value goes along only when it is newer
    /// than the last one handed to this engine (`seen`, per incarnation):
    /// the engine ignores a value whose `seq` it already has, so this only
    /// saves decoding.
    pub fn observations(&self, host: usize, now: u64, seen: &mut Vec<u32>) -> Vec<Observation> {
        let Some(node) = &self.nodes[host] else {
            return Vec::new();
        };
        if seen.len() < node.know.len() {
            seen.resize(node.know.len(), 0);
        }
        let mut out = Vec::with_capacity(node.know.len());
        for (inc, k) in node.know.iter().enumerate() {
            let Some(k) = k else { continue };
            let me = inc == node.me;
            let dl = (!me && k.ver > seen[inc]).then(|| {
                seen[inc] = k.ver;
                self.incs[inc].values[k.ver as usize - 1].clone()
            });
            out.push(Observation {
                node: self.incs[inc].ng.clone(),
                live: me
                    || node
                        .fd
                        .get(inc)
                        .is_some_and(|d| d.live(now, self.p.phi, self.p.initial_ms)),
                heartbeat: if me { self.incs[inc].hb } else { k.hb },
                dl,
            });
        }
        out
    }

    /// Does `host`'s chitchat hold `other`'s current incarnation live?
    pub fn sees_live(&self, host: usize, other: usize, now: u64) -> bool {
        let (Some(a), Some(b)) = (&self.nodes[host], &self.nodes[other]) else {
            return false;
        };
        a.me == b.me
            || a.fd
                .get(b.me)
                .is_some_and(|d| d.live(now, self.p.phi, self.p.initial_ms))
    }

    /// Does `host`'s chitchat know the incarnation running on `other`?
    /// (A host that never reached a seed knows nobody, and nobody knows
    /// it: it is a cluster of its own, whatever the links allow.)
    pub fn knows(&self, host: usize, other: usize) -> bool {
        let (Some(a), Some(b)) = (&self.nodes[host], &self.nodes[other]) else {
            return false;
        };
        a.me == b.me || a.know.get(b.me).is_some_and(|k| k.is_some())
    }
}
