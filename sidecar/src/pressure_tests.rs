//! Table tests of the pressure and preemption rules.

use super::*;
use sc_protocol::{PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL};

const G: u64 = 1 << 30;

const T: Thresholds = Thresholds {
    mem_low: G,
    psi: 20.0,
    hold_down_ms: 10_000,
    freeze_gap_ms: 2_000,
};

fn job(id: JobId, priority: i32) -> RunningJob {
    RunningJob {
        id,
        priority,
        seq: id,
        preemptible: true,
        freezable: true,
        frozen: Frozen::No,
        psi: None,
        mem_limited: false,
        cpu_milli: 0,
    }
}

fn no_preempt(mut j: RunningJob) -> RunningJob {
    j.preemptible = false;
    j
}

fn frozen(mut j: RunningJob, f: Frozen) -> RunningJob {
    j.frozen = f;
    j
}

fn psi(mut j: RunningJob, avg10: f64, limited: bool) -> RunningJob {
    j.psi = Some(avg10);
    j.mem_limited = limited;
    j
}

fn cpus(mut j: RunningJob, milli: u32) -> RunningJob {
    j.cpu_milli = milli;
    j
}

fn mem(available: u64) -> Readings {
    Readings {
        mem_available: Some(available),
        psi: Some(0.0),
    }
}

fn host_psi(avg10: f64) -> Readings {
    Readings {
        mem_available: Some(8 * G),
        psi: Some(avg10),
    }
}

#[test]
fn what_counts_as_pressure() {
    let cases: Vec<(&str, Readings, Vec<RunningJob>, bool)> = vec![
        ("plenty of memory, no PSI", mem(4 * G), vec![], false),
        ("no readings at all", Readings::default(), vec![], false),
        ("MemAvailable below the watermark", mem(G - 1), vec![], true),
        ("MemAvailable at the watermark", mem(G), vec![], false),
        ("host PSI above the threshold", host_psi(20.5), vec![], true),
        ("host PSI at the threshold", host_psi(20.0), vec![], false),
        (
            "a job's own PSI above, no limit",
            host_psi(0.0),
            vec![psi(job(1, 0), 50.0, false)],
            true,
        ),
        (
            "a job's own PSI above, against its own limit",
            host_psi(0.0),
            vec![psi(job(1, 0), 50.0, true)],
            false,
        ),
        (
            "a frozen job's PSI does not count",
            host_psi(0.0),
            vec![frozen(
                psi(job(1, 0), 50.0, false),
                Frozen::Pressure { at_ms: 0 },
            )],
            false,
        ),
    ];
    for (what, r, jobs, expected) in cases {
        assert_eq!(pressure_cause(&T, &r, &jobs).is_some(), expected, "{what}");
    }
}

#[test]
fn which_job_is_frozen() {
    let cases: Vec<(&str, Vec<RunningJob>, Option<JobId>)> = vec![
        ("nothing runs", vec![], None),
        (
            "lowest priority first",
            vec![job(1, PRIORITY_NORMAL), job(2, PRIORITY_LOW), job(3, 5)],
            Some(2),
        ),
        (
            "youngest among equals",
            vec![job(1, PRIORITY_LOW), job(2, PRIORITY_LOW)],
            Some(2),
        ),
        (
            "--no-preempt is skipped",
            vec![no_preempt(job(1, PRIORITY_LOW)), job(2, PRIORITY_NORMAL)],
            Some(2),
        ),
        (
            "high is never frozen for a lower one left running",
            vec![no_preempt(job(1, PRIORITY_LOW)), job(2, PRIORITY_HIGH)],
            None,
        ),
        (
            "high may be frozen when nothing lower runs",
            vec![job(1, PRIORITY_HIGH), no_preempt(job(2, PRIORITY_HIGH))],
            Some(1),
        ),
        (
            "high may be frozen once lower ones are frozen",
            vec![
                frozen(job(1, PRIORITY_LOW), Frozen::Pressure { at_ms: 0 }),
                job(2, PRIORITY_HIGH),
            ],
            Some(2),
        ),
        (
            "already frozen jobs are skipped",
            vec![
                frozen(job(1, PRIORITY_LOW), Frozen::User),
                frozen(job(2, PRIORITY_LOW), Frozen::Pressure { at_ms: 0 }),
                job(3, PRIORITY_NORMAL),
            ],
            Some(3),
        ),
        (
            "a job that cannot be frozen is skipped",
            vec![
                RunningJob {
                    freezable: false,
                    ..job(1, PRIORITY_LOW)
                },
                job(2, PRIORITY_NORMAL),
            ],
            Some(2),
        ),
        (
            "only --no-preempt jobs",
            vec![no_preempt(job(1, 0)), no_preempt(job(2, 0))],
            None,
        ),
    ];
    for (what, jobs, expected) in cases {
        assert_eq!(pressure_victim(&jobs), expected, "{what}");
    }
}

/// One scripted step: time, readings, the job table, and the action expected.
struct Step {
    at_ms: u64,
    readings: Readings,
    expect: Option<Action>,
}

/// Runs steps, applying each freeze and thaw to the table as the daemon would.
fn run(mut jobs: Vec<RunningJob>, steps: &[Step]) {
    let mut hold = Hold::default();
    for (i, s) in steps.iter().enumerate() {
        let out = decide_pressure(&T, &s.readings, &jobs, hold, s.at_ms);
        assert_eq!(out.action, s.expect, "step {i} at {} ms", s.at_ms);
        hold = out.hold;
        for j in &mut jobs {
            match out.action {
                Some(Action::Freeze(id)) if id == j.id => {
                    j.frozen = Frozen::Pressure { at_ms: s.at_ms }
                }
                Some(Action::Thaw(id)) if id == j.id => j.frozen = Frozen::No,
                _ => {}
            }
        }
    }
}

fn step(at_ms: u64, readings: Readings, expect: Option<Action>) -> Step {
    Step {
        at_ms,
        readings,
        expect,
    }
}

#[test]
fn freezes_one_at_a_time_and_thaws_in_reverse_after_the_hold_down() {
    use Action::{Freeze, Thaw};
    let low = mem(G / 2);
    let ok = mem(4 * G);
    run(
        vec![
            job(1, PRIORITY_LOW),
            job(2, PRIORITY_NORMAL),
            no_preempt(job(3, PRIORITY_LOW)),
            job(4, PRIORITY_HIGH),
        ],
        &[
            step(0, ok, None),
            step(1_000, low, Some(Freeze(1))),
            // Within the freeze gap: nothing more.
            step(2_000, low, None),
            step(3_000, low, Some(Freeze(2))),
            // Job 4 is high and job 3 (low, --no-preempt) still runs.
            step(6_000, low, None),
            // Pressure goes away; nothing thaws before the hold-down.
            step(7_000, ok, None),
            step(16_999, ok, None),
            step(17_000, ok, Some(Thaw(2))),
            // The next thaw needs another full period...
            step(20_000, ok, None),
            // ...and pressure coming back freezes again and restarts it.
            step(21_000, low, Some(Freeze(2))),
            step(22_000, ok, None),
            step(31_999, ok, None),
            step(32_000, ok, Some(Thaw(2))),
            step(42_000, ok, Some(Thaw(1))),
            step(90_000, ok, None),
        ],
    );
}

#[test]
fn user_pauses_and_preemptions_are_never_thawed_by_the_memory_rule() {
    let ok = mem(4 * G);
    run(
        vec![
            frozen(job(1, PRIORITY_LOW), Frozen::User),
            frozen(job(2, PRIORITY_LOW), Frozen::Preempted { for_job: 9 }),
        ],
        &[
            step(0, ok, None),
            step(60_000, ok, None),
            step(600_000, ok, None),
        ],
    );
}

#[test]
fn preemption_frees_just_enough_cpu() {
    let head = |priority, need, free| CpuWaiter {
        id: 99,
        priority,
        cpu_need: need,
        cpu_free: free,
    };
    let cases: Vec<(&str, CpuWaiter, Vec<RunningJob>, Vec<JobId>)> = vec![
        (
            "normal priority never preempts",
            head(PRIORITY_NORMAL, 2000, 0),
            vec![cpus(job(1, PRIORITY_LOW), 2000)],
            vec![],
        ),
        (
            "high preempts a lower job",
            head(PRIORITY_HIGH, 1000, 0),
            vec![cpus(job(1, PRIORITY_LOW), 2000)],
            vec![1],
        ),
        (
            "it fits already",
            head(PRIORITY_HIGH, 1000, 1000),
            vec![cpus(job(1, PRIORITY_LOW), 1000)],
            vec![],
        ),
        (
            "lowest first, and no more than needed",
            head(PRIORITY_HIGH, 1000, 500),
            vec![
                cpus(job(1, PRIORITY_NORMAL), 1000),
                cpus(job(2, PRIORITY_LOW), 500),
                cpus(job(3, PRIORITY_LOW), 500),
            ],
            vec![3],
        ),
        (
            "several when one is not enough",
            head(PRIORITY_HIGH, 2000, 0),
            vec![
                cpus(job(1, PRIORITY_NORMAL), 1000),
                cpus(job(2, PRIORITY_LOW), 1000),
            ],
            vec![2, 1],
        ),
        (
            "never equal or higher priority, never --no-preempt",
            head(PRIORITY_HIGH, 1000, 0),
            vec![
                cpus(job(1, PRIORITY_HIGH), 1000),
                cpus(no_preempt(job(2, PRIORITY_LOW)), 1000),
            ],
            vec![],
        ),
        (
            "nothing when even all would not do",
            head(PRIORITY_HIGH, 2000, 0),
            vec![
                cpus(job(1, PRIORITY_LOW), 1000),
                cpus(no_preempt(job(2, PRIORITY_LOW)), 1000),
            ],
            vec![],
        ),
        (
            "jobs without a CPU request free nothing",
            head(PRIORITY_HIGH, 1000, 0),
            vec![job(1, PRIORITY_LOW), cpus(job(2, PRIORITY_LOW), 1000)],
            vec![2],
        ),
        (
            "already frozen jobs are not counted",
            head(PRIORITY_HIGH, 1000, 0),
            vec![frozen(
                cpus(job(1, PRIORITY_LOW), 1000),
                Frozen::Pressure { at_ms: 0 },
            )],
            vec![],
        ),
    ];
    for (what, head, jobs, expected) in cases {
        assert_eq!(decide_preemption(&head, &jobs), expected, "{what}");
    }
}

#[test]
fn preempted_jobs_are_released_when_their_preemptor_is_gone() {
    let jobs = vec![
        frozen(job(1, PRIORITY_LOW), Frozen::Preempted { for_job: 7 }),
        frozen(job(2, PRIORITY_LOW), Frozen::Preempted { for_job: 8 }),
        frozen(job(3, PRIORITY_LOW), Frozen::User),
        frozen(job(4, PRIORITY_LOW), Frozen::Pressure { at_ms: 0 }),
        job(5, PRIORITY_LOW),
    ];
    assert_eq!(released_preemptions(&jobs, |id| id == 8), vec![1]);
    assert_eq!(released_preemptions(&jobs, |_| true), Vec::<JobId>::new());
}
