//! `sc history`: finished jobs, oldest first (the newest end up next to the
//! prompt), as a table or as one JSON object per line (`--json`).

use crate::client;
use anyhow::{Result, bail};
use sc_protocol::units::{format_duration, format_size};
use sc_protocol::{HistoryEntry, MemSource, Request, Response};
use std::io::Write;
use std::time::Duration;

pub fn history(json: bool, n: u32) -> Result<()> {
    let entries = super::runtime()?.block_on(async {
        let mut conn = client::connect_to(&client::choose_socket().path).await?;
        conn.send(&Request::History { limit: n }).await?;
        let mut all = Vec::new();
        loop {
            match conn.recv().await? {
                Response::HistoryPage { entries, more } => {
                    all.extend(entries);
                    if !more {
                        return Ok::<_, anyhow::Error>(all);
                    }
                }
                Response::Error { message, .. } => bail!("{message}"),
                other => bail!("unexpected answer from the daemon: {other:?}"),
            }
        }
    })?;
    let mut out = std::io::stdout().lock();
    if json {
        for e in &entries {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:>5}  {:>6}  {:<12}  {:>10}  {:>10}  {:<7}  {:>8}  {:>8}  {:>8}  COMMAND  (CWD)",
        "ID", "OWNER", "OUTCOME", "PEAK MEM", "RESERVED", "FROM", "CPU", "WALL", "WAITED"
    )?;
    for e in &entries {
        writeln!(out, "{}", line(e))?;
    }
    Ok(())
}

/// How a job ended, in a few characters.
fn outcome(e: &HistoryEntry) -> String {
    match (e.outcome.as_str(), e.code, e.signal) {
        (_, _, Some(9)) if e.usage.oom_kills > 0 => "oom-killed".into(),
        ("exited", Some(c), _) => format!("exit {c}"),
        ("signal", _, Some(s)) => format!("signal {s}"),
        (o, _, _) => o.to_string(),
    }
}

fn line(e: &HistoryEntry) -> String {
    let ms = |v: u64| format_duration(Duration::from_millis(v));
    let source = match e.mem_source {
        Some(MemSource::Requested) => "--mem",
        Some(MemSource::Learned { .. }) => "learned",
        Some(MemSource::Default) => "default",
        None => "",
    };
    let cmd = e.name.clone().unwrap_or_else(|| e.argv.join(" "));
    format!(
        "{:>5}  {:>6}  {:<12}  {:>10}  {:>10}  {:<7}  {:>8}  {:>8}  {:>8}  {}  ({})",
        e.id,
        e.owner,
        outcome(e),
        e.usage
            .peak_mem
            .map(format_size)
            .unwrap_or_else(|| "-".into()),
        format_size(e.reserved),
        source,
        e.usage
            .cpu_time_us
            .map(|us| format_duration(Duration::from_micros(us)))
            .unwrap_or_else(|| "-".into()),
        ms(e.usage.ran_ms),
        ms(e.usage.waited_ms),
        truncate(&cmd, 60),
        e.cwd
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 3).collect();
    t.push_str("...");
    t
}
