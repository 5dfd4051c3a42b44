//! The scheduling loop: feed the admission rule a snapshot, carry out its
//! decision, tell waiting clients why they wait, expire abandoned jobs.
//!
//! It runs on every kick (a job queued, ended, re-attached) and, while
//! anything waits, once a second to follow memory as it frees up. An idle
//! daemon does not wake at all.

use super::Shared;
use super::state::{Ending, Job, reap, record_end};
use crate::admission::decide;
use sc_protocol::{JobState, Response};
use std::time::{Duration, Instant};

/// How often queued jobs are re-checked against live memory readings.
const POLL: Duration = Duration::from_secs(1);

pub async fn run(shared: Shared) {
    loop {
        let (wake, abandoned) = pass(&shared, Instant::now());
        if !abandoned.is_empty() {
            let store = shared.daemon().store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for job in abandoned {
                    let usage = reap(&job);
                    record_end(
                        &store,
                        &job,
                        &Ending {
                            outcome: "abandoned",
                            reason: Some(
                                "its sc exec did not re-attach after the daemon restarted".into(),
                            ),
                            ..Default::default()
                        },
                        &usage,
                    );
                }
            })
            .await;
            continue;
        }
        let kick = shared.kicked();
        match wake {
            Some(after) => {
                tokio::select! {
                    _ = kick => {}
                    _ = tokio::time::sleep(after) => {}
                }
            }
            None => kick.await,
        }
    }
}

/// One scheduling pass. Returns when to wake next (if nothing else kicks)
/// and the jobs to clean up outside the lock.
pub(super) fn pass(shared: &Shared, now: Instant) -> (Option<Duration>, Vec<Job>) {
    let mut d = shared.daemon();
    let expired: Vec<_> = d
        .jobs
        .values()
        .filter(|j| j.state == JobState::Detached && j.detached_until.is_some_and(|t| t <= now))
        .map(|j| j.id)
        .collect();
    let abandoned: Vec<Job> = expired.into_iter().filter_map(|id| d.take(id)).collect();
    if !abandoned.is_empty() {
        return (Some(Duration::ZERO), abandoned);
    }

    let decision = decide(&d.snapshot());
    for id in &decision.start {
        if let Some(job) = d.jobs.get_mut(id) {
            job.state = JobState::Starting;
            job.last_wait = None;
            let mut env = vec![("SC_JOB_ID".to_string(), id.to_string())];
            if let Some(name) = &job.exec.name {
                env.push(("SC_JOB_NAME".to_string(), name.clone()));
            }
            job.send(Response::Granted { job: *id, env });
            tracing::debug!(job = id, "job granted");
        }
    }
    for w in &decision.wait {
        if let Some(job) = d.jobs.get_mut(&w.id) {
            let changed = match &job.last_wait {
                None => true,
                Some((reason, pos)) => {
                    *pos != w.position
                        || std::mem::discriminant(reason) != std::mem::discriminant(&w.reason)
                }
            };
            job.last_wait = Some((w.reason.clone(), w.position));
            if changed {
                job.send(Response::Waiting {
                    job: w.id,
                    reason: w.reason.clone(),
                    position: w.position,
                    waited_ms: job.queued_at.elapsed().as_millis() as u64,
                });
            }
        }
    }
    let next_detached = d
        .jobs
        .values()
        .filter_map(|j| j.detached_until)
        .min()
        .map(|t| t.saturating_duration_since(now));
    let wake = match (decision.wait.is_empty(), next_detached) {
        (false, Some(t)) => Some(t.min(POLL)),
        (false, None) => Some(POLL),
        (true, t) => t,
    };
    (wake, Vec::new())
}
