//! The scheduling loop: feed the admission rule a snapshot, carry out its
//! decision, tell waiting clients why they wait, expire abandoned jobs.
//!
//! It runs on every kick (a job queued, ended, re-attached) and, while
//! anything waits, once a second to follow memory as it frees up. An idle
//! daemon does not wake at all.

use super::Shared;
use super::lifecycle::{after_placed, grant};
use super::state::{Ending, Job, reap, record_end};
use crate::admission::decide;
use sc_protocol::{ErrorKind, JobState, Response};
use std::time::{Duration, Instant};

/// How often queued jobs are re-checked against live memory readings.
const POLL: Duration = Duration::from_secs(1);

pub async fn run(shared: Shared) {
    loop {
        let (wake, abandoned) = pass(&shared, Instant::now());
        if !abandoned.is_empty() {
            let store = shared.daemon().store.clone();
            let metrics = std::sync::Arc::clone(&shared.metrics);
            let _ = tokio::task::spawn_blocking(move || {
                for job in abandoned {
                    let usage = reap(&job);
                    metrics.record_oom_kills(usage.oom_kills);
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

    // Jobs whose --wait-for can never be met are refused, not queued forever.
    let refused: Vec<(u64, String)> = d
        .jobs
        .values()
        .filter(|j| j.is_queued() && j.client.is_some() && !j.exec.wait_for.is_empty())
        .filter_map(|j| d.gate_refusal(j).map(|why| (j.id, why)))
        .collect();
    let mut failed = Vec::new();
    for (id, why) in refused {
        if let Some(job) = d.take(id) {
            tracing::info!(job = id, "refusing job: {why}");
            job.send(Response::error(ErrorKind::BadRequest, why.clone()));
            failed.push((job, why));
        }
    }
    super::pressure::release_preempted(&mut d);
    let decision = decide(&d.snapshot());
    let preempted = super::pressure::preempt_for_head(&mut d, &decision.wait);
    let mut placed = Vec::new();
    let mut to_pre_place = Vec::new();
    for id in &decision.start {
        // A job that needs cluster resources asks for them only now that
        // it has local headroom; it keeps that headroom while it waits.
        if let Some(job) = d.jobs.get(id)
            && !job.exec.needs.is_empty()
        {
            if job.claim.is_some() {
                continue;
            }
            let (needs, prio) = (job.exec.needs.clone(), job.exec.priority);
            let asked = match d.locks.as_mut() {
                Some(locks) => locks.request(*id, &needs, prio),
                None => Err(format!(
                    "--needs {}: this host has no cluster resources ([resources] and [cluster] in its config)",
                    needs
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )),
            };
            match asked {
                Ok(claim) => {
                    if let Some(job) = d.jobs.get_mut(id) {
                        job.claim = Some(claim);
                    }
                    to_pre_place.push(*id);
                }
                Err(msg) => {
                    tracing::info!(job = id, "refusing job: {msg}");
                    if let Some(job) = d.take(*id) {
                        job.send(Response::error(ErrorKind::Impossible, msg.clone()));
                        failed.push((job, msg));
                    }
                }
            }
            continue;
        }
        match grant(&mut d, *id) {
            Ok(after) => placed.push(after),
            Err(msg) => {
                tracing::warn!(job = id, "{msg}");
                if let Some(job) = d.take(*id) {
                    job.send(Response::error(ErrorKind::Internal, msg.clone()));
                    failed.push((job, msg));
                }
            }
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
    let store = d.store.clone();
    drop(d);
    for p in placed {
        after_placed(shared, store.clone(), p);
    }
    super::pressure::freeze_in_background(shared, preempted);
    for id in to_pre_place {
        super::lifecycle::pre_place_in_background(shared, id);
    }
    if !failed.is_empty() {
        tokio::task::spawn_blocking(move || {
            for (job, msg) in failed {
                let usage = reap(&job);
                let ending = Ending {
                    outcome: "refused",
                    reason: Some(msg),
                    ..Default::default()
                };
                record_end(&store, &job, &ending, &usage);
            }
        });
    }
    (wake, Vec::new())
}
