//! The checkers on hand-made records: each must catch the violation it is
//! for, and must not fail what the design allows (available mode's two
//! sides of a partition, concurrent capacity-2 tokens).

use super::*;
use crate::topology::{State, Timeline};
use crate::util::SEC;
use crate::workload::JobSpec;

fn hold(label: &str, res: &str, tok: u64, start: u64, last: u64) -> Hold {
    Hold {
        label: label.into(),
        job: "1".into(),
        resources: vec![res.into()],
        tokens: vec![tok],
        start_ns: start * SEC,
        last_ns: last * SEC,
        ended: true,
    }
}

fn client(label: &str, host: usize, res: &str) -> ClientRecord {
    ClientRecord {
        spec: JobSpec {
            label: label.into(),
            host,
            needs: vec![(res.into(), 1)],
            mem: None,
            priority: None,
            wait_for: false,
            hold_ms: 100,
        },
        pid: 1,
        spawned_ns: 0,
        exited_ns: Some(1),
        code: Some(0),
        events: Vec::new(),
        text: Vec::new(),
        killed_ns: None,
        spawn_error: None,
    }
}

fn judge(mode: Mode, holds: &[Hold], timeline: &Timeline) -> Vec<Verdict> {
    let clients: Vec<ClientRecord> = holds
        .iter()
        .map(|h| {
            client(
                &h.label,
                crate::stamps::host_of(&h.label).unwrap(),
                &h.resources[0],
            )
        })
        .collect();
    let input = input(mode, holds, &clients, timeline);
    vec![capacity::check(&input), tokens::check(&input)]
}

/// Three hosts, 5 s bounds, no histories, faults until 100 s.
fn input<'a>(
    mode: Mode,
    holds: &'a [Hold],
    clients: &'a [ClientRecord],
    timeline: &'a Timeline,
) -> Input<'a> {
    Input {
        mode,
        n: 3,
        holds,
        clients,
        timeline,
        heal_bound: 5 * SEC,
        stable_bound: 5 * SEC,
        liveness_bound: 5 * SEC,
        histories: &[],
        leftover_records: &[],
        undrained: &[],
        restarted: &[],
        t0: 0,
        faults_end: 100 * SEC,
    }
}

/// host 2 cut off from 0 and 1 during [10 s, 30 s).
fn partitioned() -> Timeline {
    let mut tl = Timeline::new(3, 0);
    let mut s = State::healthy(3);
    s.blocked[2] = [0, 1].into();
    s.blocked[0].insert(2);
    s.blocked[1].insert(2);
    tl.push(10 * SEC, s);
    tl.push(30 * SEC, State::healthy(3));
    tl
}

#[test]
fn quorum_overlap_fails_and_available_partition_overlap_passes() {
    let holds = [
        hold("h0-1", "e2e", 10, 12, 20),
        hold("h2-1", "e2e", 11, 15, 18),
    ];
    let q = judge(Mode::Quorum, &holds, &partitioned());
    assert!(!q[0].pass, "quorum: two e2e holders at once: {:?}", q[0]);
    let a = judge(Mode::Available, &holds, &partitioned());
    assert!(
        a[0].pass,
        "available: each side of a partition may grant: {:?}",
        a[0]
    );
    assert!(
        a[1].pass,
        "tokens across a partition are not compared: {:?}",
        a[1]
    );
}

#[test]
fn available_overlap_between_connected_hosts_fails() {
    let holds = [
        hold("h0-1", "e2e", 10, 12, 20),
        hold("h1-1", "e2e", 11, 15, 18),
    ];
    let a = judge(Mode::Available, &holds, &partitioned());
    assert!(!a[0].pass, "{:?}", a[0]);
}

#[test]
fn overlap_after_heal_is_allowed_within_the_bound_only() {
    // Healed at 30 s; both run on until 33 s (within 5 s), then until 40 s.
    let short = [
        hold("h0-1", "e2e", 10, 20, 33),
        hold("h2-1", "e2e", 11, 25, 33),
    ];
    assert!(judge(Mode::Available, &short, &partitioned())[0].pass);
    let long = [
        hold("h0-1", "e2e", 10, 20, 40),
        hold("h2-1", "e2e", 11, 25, 40),
    ];
    assert!(!judge(Mode::Available, &long, &partitioned())[0].pass);
}

#[test]
fn fresh_daemon_granting_next_to_a_reachable_holder_fails() {
    let mut tl = Timeline::new(3, 0);
    let mut s = State::healthy(3);
    s.alive[2] = false;
    tl.push(10 * SEC, s);
    tl.push(20 * SEC, State::healthy(3));
    let holds = [
        hold("h1-1", "e2e", 10, 18, 25),
        hold("h2-1", "e2e", 11, 21, 22),
    ];
    let a = judge(Mode::Available, &holds, &tl);
    assert!(!a[0].pass, "{:?}", a[0]);
    assert!(
        a[0].details[0].contains("restarted or continued"),
        "{:?}",
        a[0]
    );
}

#[test]
fn tokens_must_increase_for_capacity_one() {
    let tl = Timeline::new(3, 0);
    let holds = [hold("h0-1", "e2e", 10, 1, 2), hold("h1-1", "e2e", 9, 3, 4)];
    assert!(!judge(Mode::Quorum, &holds, &tl)[1].pass);
    let holds = [hold("h0-1", "e2e", 10, 1, 2), hold("h1-1", "e2e", 11, 3, 4)];
    assert!(judge(Mode::Quorum, &holds, &tl)[1].pass);
}

#[test]
fn capacity_two_token_inversions_are_counted_not_failed() {
    let tl = Timeline::new(3, 0);
    // Concurrent, out of order: a note, not a failure.
    let holds = [hold("h0-1", "gpu", 10, 1, 5), hold("h1-1", "gpu", 9, 2, 4)];
    let v = judge(Mode::Quorum, &holds, &tl);
    assert!(v[1].pass && !v[1].notes.is_empty(), "{:?}", v[1]);
    // Below a holder that had ended: a note too (both were in the window).
    let holds = [hold("h0-1", "gpu", 10, 1, 2), hold("h1-1", "gpu", 9, 3, 4)];
    let v = judge(Mode::Quorum, &holds, &tl);
    assert!(v[1].pass && !v[1].notes.is_empty(), "{:?}", v[1]);
}

#[test]
fn minority_grant_fails_in_quorum_mode() {
    let holds = [hold("h2-1", "e2e", 10, 15, 16)];
    let v = judge(Mode::Quorum, &holds, &partitioned());
    assert!(!v[0].pass, "{:?}", v[0]);
}

/// The 5-host run of 2026-11-21: host-e entered 1.07 s into a three-way
/// split, on a lease a quorum had echoed just before it (entry needs L/2
/// left), and its stopper ended the job 1 s later. The protocol allows
/// that; a grant later than L/2 + lag into the split is still caught.
#[test]
fn a_grant_on_a_lease_from_before_the_split_is_not_a_minority_grant() {
    let holds = [hold("h2-1", "e2e", 10, 11, 12)];
    let v = judge(Mode::Quorum, &holds, &partitioned());
    assert!(v[0].pass, "{:?}", v[0]);
    let holds = [hold("h2-1", "e2e", 10, 13, 14)];
    let v = judge(Mode::Quorum, &holds, &partitioned());
    assert!(!v[0].pass, "{:?}", v[0]);
}

/// Seed 11 (available mode): host-c granted inside its partition just
/// before the heal; host-b entered half a second after the heal, on an
/// earlier claim, before host-c's token reached it. Not comparable within
/// the heal bound; comparable once the hosts have been connected that long.
#[test]
fn available_tokens_across_a_fresh_heal_are_not_compared() {
    let holds = [
        hold("h2-1", "e2e", 20, 29, 30),
        hold("h1-1", "e2e", 10, 31, 32),
    ];
    assert!(judge(Mode::Available, &holds, &partitioned())[1].pass);
    let holds = [
        hold("h2-1", "e2e", 20, 36, 37),
        hold("h1-1", "e2e", 10, 38, 39),
    ];
    assert!(!judge(Mode::Available, &holds, &partitioned())[1].pass);
}

/// A client queued at `queued` s that waited on `res` with `ahead` claims
/// before it and started at `started` s.
fn waiter(
    label: &str,
    needs: &[(&str, u32)],
    queued: f64,
    res: &str,
    ahead: u32,
    started: u64,
) -> ClientRecord {
    let at = |s: f64| (s * SEC as f64) as u64;
    let mut c = client(label, crate::stamps::host_of(label).unwrap(), res);
    c.spec.needs = needs.iter().map(|(r, u)| (r.to_string(), *u)).collect();
    c.events = vec![
        (at(queued), serde_json::json!({"event": "queued", "job": 1})),
        (
            at(queued + 0.1),
            serde_json::json!({"event": "waiting", "reason": format!("{res}: {ahead} ahead of you"),
                "detail": {"Resource": {"name": res, "ahead": ahead, "holders": [], "detail": null}}}),
        ),
        (
            started * SEC,
            serde_json::json!({"event": "started", "job": 1, "waited_ms": 0}),
        ),
    ];
    c.exited_ns = Some((started + 1) * SEC);
    c
}

fn judge_liveness(holds: &[Hold], clients: &[ClientRecord]) -> Verdict {
    let healthy = Timeline::new(3, 0);
    let input = Input {
        stable_bound: 0,
        ..input(Mode::Quorum, holds, clients, &healthy)
    };
    liveness::check(&input)
}

#[test]
fn a_wait_behind_an_earlier_claim_blocked_elsewhere_is_claim_order_not_a_stall() {
    // h0-1 holds e2e for 20 s; h1-1 (e2e,gpu) claimed first and waits for
    // it; h2-1 (gpu:2) waits behind h1-1's gpu claim with gpu idle.
    let holds = [hold("h0-1", "e2e", 1, 0, 20)];
    let mut holder = waiter("h0-1", &[("e2e", 1)], 0.0, "e2e", 0, 0);
    holder.events.retain(|(_, e)| e["event"] != "waiting");
    holder.exited_ns = Some(20 * SEC);
    let two = waiter("h1-1", &[("e2e", 1), ("gpu", 1)], 0.5, "e2e", 0, 20);
    let behind = waiter("h2-1", &[("gpu", 2)], 1.0, "gpu", 1, 22);
    let v = judge_liveness(&holds, &[holder, two, behind]);
    assert!(v.pass, "{:?}", v.details);
    assert!(
        v.notes.iter().any(|n| n.contains("claim order")),
        "{:?}",
        v.notes
    );
}

#[test]
fn a_wait_behind_a_claim_that_could_enter_is_a_stall() {
    // Nobody holds e2e: h1-1 could enter and does not; both stall.
    let two = waiter("h1-1", &[("e2e", 1), ("gpu", 1)], 0.5, "e2e", 0, 20);
    let behind = waiter("h2-1", &[("gpu", 2)], 1.0, "gpu", 1, 22);
    let v = judge_liveness(&[], &[two, behind]);
    assert!(!v.pass);
    assert_eq!(
        v.kinds.get("waited while its resources were free"),
        Some(&2),
        "{:?}",
        v.details
    );
    assert!(
        v.details
            .iter()
            .any(|d| d.contains("h2-1") && d.contains("1 ahead of you")),
        "{:?}",
        v.details
    );
    // Each report names the other job waiting then, and what it said: the
    // head of the queue is named when only the report is kept.
    assert!(
        v.details.iter().any(
            |d| d.starts_with("[waited while its resources were free] h2-1")
                && d.contains("waiting with it at")
                && d.contains("h1-1 on host-b (needs e2e,gpu)")
        ),
        "{:?}",
        v.details
    );
}
