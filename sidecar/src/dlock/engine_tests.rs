//! Table-style tests of the engine on a tiny, instant, fully controlled
//! network: every round each connected host sees every other's latest
//! value. The seeded simulation (`sim`) covers delays, loss and faults.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

struct Net {
    hosts: Vec<Engine>,
    values: BTreeMap<String, String>,
    heartbeats: BTreeMap<String, u64>,
    /// Hosts cut off from everyone.
    isolated: BTreeSet<String>,
    /// Hosts not stepping at all (crashed or stopped).
    frozen: BTreeSet<String>,
    now: u64,
    granted: Vec<(String, Grant)>,
    stopped: Vec<(String, u64, StopReason)>,
}

fn spec(name: &str, capacity: u32, mode: Mode) -> ResourceSpec {
    ResourceSpec {
        name: name.into(),
        capacity,
        mode,
        prefetch: capacity,
    }
}

impl Net {
    fn new(names: &[&str], resources: Vec<ResourceSpec>, members: &[&str]) -> Net {
        let hosts = names
            .iter()
            .map(|n| {
                Engine::new(Setup {
                    me: NodeGen::new(*n, 1),
                    resources: resources.clone(),
                    members: members.iter().map(|m| m.to_string()).collect(),
                    params: Params::default(),
                    votes: Vec::new(),
                })
            })
            .collect();
        Net {
            hosts,
            values: BTreeMap::new(),
            heartbeats: BTreeMap::new(),
            isolated: BTreeSet::new(),
            frozen: BTreeSet::new(),
            now: 1_000_000,
            granted: Vec::new(),
            stopped: Vec::new(),
        }
    }

    fn t(&self) -> Now {
        Now {
            mono_ms: self.now,
            wall_ms: 1_700_000_000_000 + self.now,
        }
    }

    fn idx(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.me().name == name)
            .expect("host")
    }

    /// One round of `ms` milliseconds.
    fn round(&mut self, ms: u64) {
        self.now += ms;
        let now = self.t();
        for h in &self.hosts {
            let name = h.me().name.clone();
            if !self.frozen.contains(&name) {
                *self.heartbeats.entry(name).or_insert(0) += 1;
            }
        }
        for i in 0..self.hosts.len() {
            let name = self.hosts[i].me().name.clone();
            if self.frozen.contains(&name) {
                continue;
            }
            let obs: Vec<Observation> = self
                .hosts
                .iter()
                .filter(|o| o.me().name != name)
                .filter(|o| !self.isolated.contains(&name) && !self.isolated.contains(&o.me().name))
                .map(|o| Observation {
                    node: o.me().clone(),
                    live: !self.frozen.contains(&o.me().name),
                    heartbeat: self.heartbeats.get(&o.me().name).copied().unwrap_or(0),
                    dl: self.values.get(&o.me().name).cloned(),
                })
                .collect();
            self.hosts[i].observe(now, &obs);
            let out = self.hosts[i].step(now);
            if let Some(v) = out.publish {
                self.values.insert(name.clone(), v);
            }
            for g in out.granted {
                self.granted.push((name.clone(), g));
            }
            for (job, why) in out.stop {
                self.stopped.push((name.clone(), job, why));
            }
        }
    }

    fn rounds(&mut self, n: usize, ms: u64) {
        for _ in 0..n {
            self.round(ms);
        }
    }

    fn request(&mut self, host: &str, job: u64, needs: &[(&str, u32)], prio: i32) {
        let now = self.t();
        let i = self.idx(host);
        let needs: Vec<(String, u32)> = needs.iter().map(|(n, u)| (n.to_string(), *u)).collect();
        self.hosts[i]
            .request(now, job, &needs, prio)
            .expect("request accepted");
    }

    fn release(&mut self, host: &str, job: u64) {
        let now = self.t();
        let i = self.idx(host);
        self.hosts[i].release(job, now);
    }

    fn holds(&self, host: &str, job: u64) -> bool {
        self.hosts[self.idx(host)].holds(job)
    }
}

#[test]
fn one_holder_then_hand_over_with_a_greater_token() {
    let mut net = Net::new(&["a", "b", "c"], vec![spec("e2e", 1, Mode::Available)], &[]);
    net.rounds(3, 10);
    net.request("a", 1, &[("e2e", 1)], 0);
    net.rounds(4, 10);
    assert!(net.holds("a", 1));
    net.request("b", 7, &[("e2e", 1)], 0);
    net.rounds(4, 10);
    assert!(!net.holds("b", 7), "capacity 1: b waits while a holds");
    let b = net.idx("b");
    let waits = net.hosts[b].waits(net.t());
    assert_eq!(waits.len(), 1);
    assert_eq!(waits[0].holders, vec![("a".to_string(), 1)]);
    net.release("a", 1);
    net.rounds(3, 10);
    assert!(net.holds("b", 7));
    let toks: Vec<u64> = net.granted.iter().map(|(_, g)| g.tokens[0].1).collect();
    assert_eq!(toks.len(), 2);
    assert!(toks[0] < toks[1], "tokens grow: {toks:?}");
    // b waited for a's release: its grant says when that was (a's clock);
    // a waited for nobody.
    assert_eq!(net.granted[0].1.released_at, None);
    let at = net.granted[1]
        .1
        .released_at
        .expect("b's grant ends a hand-over");
    assert!(at <= net.t().wall_ms && at + 30 >= net.t().wall_ms, "{at}");
}

#[test]
fn capacity_two_counts_units() {
    let mut net = Net::new(&["a", "b", "c"], vec![spec("gpu", 2, Mode::Available)], &[]);
    net.rounds(3, 10);
    net.request("a", 1, &[("gpu", 1)], 0);
    net.request("b", 2, &[("gpu", 1)], 0);
    net.request("c", 3, &[("gpu", 2)], 0);
    net.rounds(6, 10);
    assert!(net.holds("a", 1) && net.holds("b", 2));
    assert!(!net.holds("c", 3));
    net.release("a", 1);
    net.rounds(4, 10);
    assert!(!net.holds("c", 3), "one unit free is not two");
    net.release("b", 2);
    net.rounds(4, 10);
    assert!(net.holds("c", 3));
}

#[test]
fn higher_priority_claims_first() {
    let mut net = Net::new(&["a", "b", "c"], vec![spec("e2e", 1, Mode::Available)], &[]);
    net.rounds(3, 10);
    net.request("a", 1, &[("e2e", 1)], 0);
    net.rounds(4, 10);
    // Window is K + P = 2: one holder, one more may claim. Fill it with a
    // low one first, then a high one arrives: low claimed already.
    net.request("b", 2, &[("e2e", 1)], -10);
    net.request("c", 3, &[("e2e", 1)], -10);
    net.rounds(1, 10);
    net.request("c", 4, &[("e2e", 1)], 10);
    net.rounds(4, 10);
    net.release("a", 1);
    net.rounds(4, 10);
    // b's low request claimed within the window before the high one came.
    let held: Vec<u64> = [("b", 2), ("c", 3), ("c", 4)]
        .iter()
        .filter(|(h, j)| net.holds(h, *j))
        .map(|(_, j)| *j)
        .collect();
    assert_eq!(held.len(), 1);
    let first = held[0];
    net.release(if first == 2 { "b" } else { "c" }, first);
    net.rounds(4, 10);
    assert!(
        net.holds("c", 4),
        "the high-priority job goes before the remaining low one"
    );
}

#[test]
fn quorum_holder_cut_off_stops_before_anyone_else_enters() {
    let members = ["a", "b", "c"];
    let mut net = Net::new(&members, vec![spec("e2e", 1, Mode::Quorum)], &members);
    net.rounds(3, 50);
    net.request("a", 1, &[("e2e", 1)], 0);
    net.rounds(10, 50);
    assert!(net.holds("a", 1));
    net.request("b", 2, &[("e2e", 1)], 0);
    net.rounds(4, 50);
    assert!(!net.holds("b", 2));
    net.isolated.insert("a".into());
    let cut = net.now;
    let mut a_stopped_at = None;
    let mut b_granted_at = None;
    for _ in 0..400 {
        net.round(50);
        if a_stopped_at.is_none()
            && net
                .stopped
                .iter()
                .any(|(h, j, r)| h == "a" && *j == 1 && matches!(r, StopReason::LostLease { .. }))
        {
            a_stopped_at = Some(net.now);
            net.release("a", 1);
        }
        if b_granted_at.is_none() && net.holds("b", 2) {
            b_granted_at = Some(net.now);
        }
    }
    let stopped = a_stopped_at.expect("the cut-off holder lost its lease");
    let granted = b_granted_at.expect("the majority re-granted");
    assert!(
        stopped < granted,
        "stop {stopped} before re-grant {granted}"
    );
    assert!(stopped - cut <= Params::default().lease_ms);
    assert!(granted - cut <= Params::default().t_down_ms() + 1000);
}

#[test]
fn minority_grants_nothing() {
    let members = ["a", "b", "c"];
    let mut net = Net::new(&members, vec![spec("e2e", 1, Mode::Quorum)], &members);
    net.rounds(3, 50);
    net.isolated.insert("c".into());
    net.request("c", 9, &[("e2e", 1)], 0);
    net.rounds(300, 50);
    assert!(!net.holds("c", 9));
    let c = net.idx("c");
    let w = net.hosts[c].waits(net.t());
    assert_eq!(w.len(), 1, "{w:?}");
}

#[test]
fn a_silent_member_is_voted_down_and_the_rest_go_on() {
    let members = ["a", "b", "c"];
    let mut net = Net::new(&members, vec![spec("e2e", 1, Mode::Quorum)], &members);
    net.rounds(3, 50);
    net.frozen.insert("c".into());
    net.request("a", 1, &[("e2e", 1)], 0);
    net.rounds(20, 50);
    assert!(
        !net.holds("a", 1),
        "c has not acknowledged and is not DOWN yet"
    );
    net.rounds(150, 50);
    assert!(net.holds("a", 1), "c voted DOWN after T_down");
}

#[test]
fn refuses_what_can_never_be_granted() {
    let mut e = Engine::new(Setup {
        me: NodeGen::new("a", 1),
        resources: vec![
            spec("e2e", 1, Mode::Quorum),
            spec("gpu", 2, Mode::Available),
        ],
        members: vec!["b".into(), "c".into()],
        params: Params::default(),
        votes: Vec::new(),
    });
    let now = Now {
        mono_ms: 1,
        wall_ms: 1,
    };
    assert!(matches!(
        e.request(now, 1, &[("nope".into(), 1)], 0),
        Err(RequestError::Unknown(_))
    ));
    assert!(matches!(
        e.request(now, 1, &[("gpu".into(), 3)], 0),
        Err(RequestError::TooMany { .. })
    ));
    assert!(matches!(
        e.request(now, 1, &[("e2e".into(), 1)], 0),
        Err(RequestError::NotMember(_))
    ));
}

#[test]
fn conflicting_capacity_is_refused_by_name() {
    let mut net = Net::new(&["a", "b"], vec![spec("e2e", 1, Mode::Available)], &[]);
    let b = net.idx("b");
    net.hosts[b] = Engine::new(Setup {
        me: NodeGen::new("b", 1),
        resources: vec![spec("e2e", 2, Mode::Available)],
        members: Vec::new(),
        params: Params::default(),
        votes: Vec::new(),
    });
    net.rounds(3, 10);
    let now = net.t();
    let err = net.hosts[0]
        .request(now, 1, &[("e2e".into(), 1)], 0)
        .unwrap_err();
    assert!(err.to_string().contains("b has e2e = 2/available"), "{err}");
}

#[test]
fn a_stale_value_is_ignored() {
    let mut net = Net::new(&["a", "b"], vec![spec("e2e", 1, Mode::Available)], &[]);
    net.rounds(2, 10);
    net.request("a", 1, &[("e2e", 1)], 0);
    net.rounds(3, 10);
    let fresh = net.values["a"].clone();
    net.release("a", 1);
    net.rounds(2, 10);
    // b is fed a's older value (as after chitchat rebuilt a from a
    // lagging peer): it must keep the newer one.
    let b = net.idx("b");
    let now = net.t();
    net.hosts[b].observe(
        now,
        &[Observation {
            node: NodeGen::new("a", 1),
            live: true,
            heartbeat: 1000,
            dl: Some(fresh),
        }],
    );
    assert!(net.hosts[b].stats.stale_values >= 1);
    assert!(net.hosts[b].resources(now)[0].holders.is_empty());
}

/// Hosts sharing one available-mode `gpu` unit, with a 1 s startup grace.
fn gpu_net_with_startup_grace(names: &[&str]) -> Net {
    let mut net = Net::new(names, vec![spec("gpu", 1, Mode::Available)], &[]);
    for (i, n) in names.iter().enumerate() {
        net.hosts[i] = Engine::new(Setup {
            me: NodeGen::new(*n, 1),
            resources: vec![spec("gpu", 1, Mode::Available)],
            members: Vec::new(),
            params: Params {
                startup_grace_ms: 1000,
                ..Params::default()
            },
            votes: Vec::new(),
        });
    }
    net
}

#[test]
fn a_fresh_engine_waits_the_startup_grace_before_granting() {
    let mut net = gpu_net_with_startup_grace(&["a", "b"]);
    net.request("a", 1, &[("gpu", 1)], 0);
    net.rounds(40, 20);
    assert!(!net.holds("a", 1), "no grant before hearing the others");
    net.rounds(20, 20);
    assert!(net.holds("a", 1), "granted once the grace is over");
}

#[test]
fn a_member_resuming_from_its_own_pause_does_not_vote_everyone_down() {
    let members = ["a", "b", "c"];
    let mut a = Engine::new(Setup {
        me: NodeGen::new("a", 1),
        resources: vec![spec("e2e", 1, Mode::Quorum)],
        members: members.iter().map(|m| m.to_string()).collect(),
        params: Params::default(),
        votes: Vec::new(),
    });
    let obs = |hb: u64| -> Vec<Observation> {
        ["b", "c"]
            .iter()
            .map(|n| Observation {
                node: NodeGen::new(*n, 1),
                live: true,
                heartbeat: hb,
                dl: None,
            })
            .collect()
    };
    let at = |ms: u64| Now {
        mono_ms: ms,
        wall_ms: 1_700_000_000_000 + ms,
    };
    let mut t = 1_000_000;
    for hb in 1..=20 {
        a.observe(at(t), &obs(hb));
        assert_eq!(a.step(at(t)).votes, None);
        t += 50;
    }
    // Stopped for 12 s (> T_down); on resume chitchat is as stale as we
    // were: the same heartbeats.
    t += 12_000;
    a.observe(at(t), &obs(20));
    assert_eq!(a.step(at(t)).votes, None, "no vote on our own pause");
    // Real silence after the resume still counts, from the resume.
    let t_down = Params::default().t_down_ms();
    let resumed = t;
    let mut voted = None;
    while voted.is_none() && t < resumed + 2 * t_down {
        t += 50;
        a.observe(at(t), &obs(20));
        voted = a.step(at(t)).votes.map(|v| (t, v));
    }
    let (when, votes) = voted.expect("silent peers voted DOWN after T_down");
    assert!(
        when >= resumed + t_down,
        "voted {} ms after resume",
        when - resumed
    );
    assert_eq!(votes.len(), 2);
}

/// CI seed 1795283242 (available mode): host-c's daemon, SIGSTOPped for
/// 10 s, granted its next claim 0.4 s after it continued, from what
/// chitchat had shown before the stop, beside host-a's new holder. A
/// continued engine waits the startup grace, as a restarted one does.
#[test]
fn a_continued_engine_waits_the_startup_grace_before_granting() {
    let mut net = gpu_net_with_startup_grace(&["a", "c"]);
    net.rounds(60, 20);
    net.request("c", 1, &[("gpu", 1)], 0);
    net.request("c", 2, &[("gpu", 1)], 0);
    net.rounds(10, 20);
    assert!(net.holds("c", 1) && !net.holds("c", 2), "2 queued behind 1");
    // What c's chitchat shows when the stop begins, and still shows the
    // moment c continues, 10 s later.
    let c = net.idx("c");
    let a = net.idx("a");
    let stale = vec![Observation {
        node: net.hosts[a].me().clone(),
        live: true,
        heartbeat: net.heartbeats.get("a").copied().unwrap_or(0),
        dl: net.values.get("a").cloned(),
    }];
    net.now += 10_000;
    let now = net.t();
    net.hosts[c].release(1, now);
    net.hosts[c].observe(now, &stale);
    let out = net.hosts[c].step(now);
    assert!(
        out.granted.is_empty(),
        "granted on resume: {:?}",
        out.granted
    );
    // Counted, with the gap, for the daemon's log and `sc status`.
    assert_eq!(net.hosts[c].stats.self_pauses, 1);
    assert!(net.hosts[c].stats.last_pause_ms >= 10_000);
    // Fresh news, then the grace runs out: granted.
    net.rounds(60, 20);
    assert!(net.holds("c", 2), "granted once the grace is over");
}
