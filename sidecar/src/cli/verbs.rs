//! The small verbs: `daemon`, `ps`, `status`, `cancel`/`pause`/`resume`,
//! `config check`. Each connects, asks once, prints.

use super::DaemonArgs;
use crate::client;
use crate::config::Config;
use crate::daemon::{self, DaemonOptions};
use anyhow::{Result, bail};
use sc_protocol::units::{format_cpus, format_duration, format_size};
use sc_protocol::{JobView, Request, ResourceStatus, Response};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub fn daemon(args: DaemonArgs) -> Result<()> {
    let opts = DaemonOptions {
        config: args.config,
        socket: args.socket,
        log_format: args.log_format.map(Into::into),
        private: args.private,
    };
    // One thread serves every connection: the daemon's work per message is
    // a few microseconds of bookkeeping, and hops between worker threads
    // cost more than they save (measured: docs/benchmarks.md). Anything
    // that blocks (killing, removing cgroups) runs on the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(batch_priority)
        .build()?;
    rt.block_on(daemon::run(opts))
}

/// The blocking pool's threads (accounting, history fsyncs, cgroup removal)
/// run as SCHED_BATCH: same CPU share, but a woken one does not preempt
/// what runs. Measured: a job's accounting, started right after its
/// `Finished`, used to preempt the event loop on its CPU before the
/// release of the job's cluster units went out, adding about a
/// millisecond to the hand-over (docs/benchmarks.md). Children forked from
/// these threads get the normal policy back (SCHED_RESET_ON_FORK). A
/// failure only costs that latency, so it is ignored.
fn batch_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid param.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH | libc::SCHED_RESET_ON_FORK, &param);
    }
}

pub(super) fn ask(req: Request) -> Result<Response> {
    super::runtime()?.block_on(async {
        let mut conn = client::connect_to(&client::choose_socket().path).await?;
        conn.call(&req).await
    })
}

pub(super) fn refused(resp: Response) -> anyhow::Error {
    match resp {
        Response::Error { message, .. } => anyhow::anyhow!("{message}"),
        other => anyhow::anyhow!("unexpected answer from the daemon: {other:?}"),
    }
}

pub fn ps(json: bool) -> Result<()> {
    let (jobs, services) = match ask(Request::Ps)? {
        Response::Jobs { jobs, services } => (jobs, services),
        other => return Err(refused(other)),
    };
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = serde_json::json!({ "jobs": jobs, "services": services });
        // The state as the text view says it, for readers that do not
        // want to decode `paused`.
        if let Some(list) = v["jobs"].as_array_mut() {
            for (jv, j) in list.iter_mut().zip(&jobs) {
                jv["state_text"] = serde_json::Value::String(state_text(j));
            }
        }
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>5}  {:<9}  {:>6}  {:>9}  {:>5}  {:>4}  {:>8}  COMMAND / WAITING FOR",
        "ID", "STATE", "OWNER", "MEM", "CPUS", "PRIO", "AGE"
    )?;
    for j in &jobs {
        writeln!(out, "{}", ps_line(j))?;
    }
    if !services.is_empty() {
        writeln!(out)?;
        super::service::print_services(&mut out, &services)?;
    }
    Ok(())
}

/// `running`, `paused (memory pressure) for 12s`, ...
fn state_text(j: &JobView) -> String {
    match &j.paused {
        Some(p) => format!(
            "{} ({}) for {}",
            j.state,
            p.reason,
            format_duration(Duration::from_millis(p.paused_ms))
        ),
        None => j.state.to_string(),
    }
}

fn ps_line(j: &JobView) -> String {
    let cmd = j.name.clone().unwrap_or_else(|| j.argv.join(" "));
    let mut tail = truncate(&cmd, 60);
    if !j.needs.is_empty() {
        let needs = super::needs::describe(&j.needs, &j.fence_tokens);
        tail.push_str(&format!("  [needs {needs}]"));
    }
    if j.paused.is_some() {
        tail.push_str(&format!("  — {}", state_text(j)));
    }
    if !j.ports.is_empty() {
        tail.push_str(&format!("  [ports {}]", ports_text(&j.ports)));
    }
    if let Some(w) = &j.waiting {
        let pos = j
            .position
            .map(|p| format!(" (#{p} in queue)"))
            .unwrap_or_default();
        tail.push_str(&format!("  — {w}{pos}"));
    }
    format!(
        "{:>5}  {:<9}  {:>6}  {:>9}  {:>5}  {:>4}  {:>8}  {}",
        j.id,
        j.state.to_string(),
        j.owner,
        format_size(j.reserved),
        j.requests
            .cpu_milli
            .map(format_cpus)
            .unwrap_or_else(|| "-".into()),
        j.priority,
        format_duration(Duration::from_millis(j.age_ms)),
        tail
    )
}

/// `web=20001,api=20002`, as `sc ps` shows leased ports.
pub(super) fn ports_text(ports: &[(String, u16)]) -> String {
    ports
        .iter()
        .map(|(n, p)| format!("{n}={p}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

pub fn status(json: bool) -> Result<()> {
    let st = match ask(Request::Status)? {
        Response::Status(s) => s,
        other => return Err(refused(other)),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &st)?;
        writeln!(out)?;
        return Ok(());
    }
    let overridden = if st.capacity_overridden {
        " (from config)"
    } else {
        ""
    };
    writeln!(
        out,
        "host:          {} (sc {}, daemon pid {}, up {})",
        st.hostname,
        st.version,
        st.pid,
        format_duration(Duration::from_millis(st.uptime_ms))
    )?;
    writeln!(out, "socket:        {}", st.socket)?;
    writeln!(out, "state dir:     {}", st.state_dir)?;
    writeln!(
        out,
        "cores:         {} (overcommit {}, {} CPUs reserved)",
        st.cores,
        st.overcommit,
        format_cpus(st.cpu_reserved_milli)
    )?;
    writeln!(
        out,
        "memory:        {}{overridden}, {} available, {} reserve",
        format_size(st.mem_total),
        format_size(st.mem_available),
        format_size(st.mem_reserve)
    )?;
    writeln!(
        out,
        "reserved:      {} by running jobs ({} not yet used)",
        format_size(st.reserved),
        format_size(st.reserved_unused)
    )?;
    writeln!(
        out,
        "jobs:          {} running, {} queued",
        st.jobs_running, st.jobs_queued
    )?;
    if st.draining {
        writeln!(
            out,
            "draining:      yes — no job is admitted until `sc undrain`"
        )?;
    }
    let b = &st.backend;
    let enforced = if b.enforced.is_empty() {
        "nothing".to_string()
    } else {
        b.enforced.join(", ")
    };
    writeln!(out, "cgroups:       {} — enforced: {enforced}", b.kind)?;
    if let Some(r) = &b.not_enforced_reason {
        writeln!(out, "               not enforced: {r}")?;
    }
    for p in &b.subtree {
        writeln!(out, "               subtree {p}")?;
    }
    if let Some(c) = &st.cluster {
        writeln!(
            out,
            "cluster:       {} in {:?} (listen {}, advertise {}), {} live peers, {} dead",
            c.node_name, c.cluster_id, c.listen, c.advertise, c.live_hosts, c.dead_hosts
        )?;
        let nonzero: Vec<String> = c
            .counters
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if !nonzero.is_empty() {
            writeln!(out, "               {}", nonzero.join(", "))?;
        }
        print_resources(&mut out, &c.resources)?;
    }
    if !st.services.is_empty() {
        let ready = st.services.iter().filter(|s| s.ready).count();
        writeln!(
            out,
            "services:      {} defined, {ready} ready",
            st.services.len()
        )?;
        writeln!(out)?;
        super::service::print_services(&mut out, &st.services)?;
    }
    Ok(())
}

/// The cluster resources in `sc status`, conflicts spelled out.
fn print_resources(out: &mut impl Write, resources: &[ResourceStatus]) -> std::io::Result<()> {
    for (i, r) in resources.iter().enumerate() {
        let label = if i == 0 { "resources:" } else { "" };
        writeln!(
            out,
            "{label:<15}{}: capacity {}, {}, {} held, {} queued",
            r.name, r.capacity, r.mode, r.holders, r.queued
        )?;
        if let Some(c) = &r.conflict {
            writeln!(out, "{:<15}  CONFLICT: {c}", "")?;
        }
    }
    Ok(())
}

pub fn control(req: Request) -> Result<()> {
    match ask(req)? {
        Response::Ok { message } => {
            println!("{message}");
            Ok(())
        }
        other => Err(refused(other)),
    }
}

pub fn config_check(file: &Path) -> Result<()> {
    match Config::load(file) {
        Ok(r) => {
            println!("{}: ok", file.display());
            // Say how the resources were read: a bare `name = 2` is
            // "available", which may not be what was meant.
            if let (Some(c), false) = (&r.cluster, r.resources.is_empty()) {
                let list: Vec<String> = r
                    .resources
                    .iter()
                    .map(|x| {
                        let prefetch = x.prefetch.map(|p| format!(", prefetch {p}"));
                        let mode = x.mode.as_str();
                        format!(
                            "{} (capacity {}, {mode}{})",
                            x.name,
                            x.capacity,
                            prefetch.unwrap_or_default()
                        )
                    })
                    .collect();
                println!(
                    "resources: {}; lease {}, available_down {}",
                    list.join(", "),
                    format_duration(c.lease),
                    format_duration(c.available_down)
                );
            }
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}
