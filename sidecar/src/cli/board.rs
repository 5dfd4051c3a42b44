//! `sc board [--json] [--watch]`: every live host with its headroom, and
//! every job and service in the cluster — who runs, who waits, on what, for
//! how long. Also `sc cluster init-ca` and `sc cluster issue`.

use crate::client;
use anyhow::{Result, bail};
use clap::Subcommand;
use sc_protocol::board::{BoardClaim, BoardResource, BoardView};
use sc_protocol::units::{format_cpus, format_duration, format_size};
use sc_protocol::{Request, Response};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Subcommand)]
pub enum ClusterVerb {
    /// Create the cluster CA (ca.crt, ca.key) in DIR.
    InitCa { dir: PathBuf },
    /// Issue a node certificate signed by the CA: DIR/node.crt, node.key, ca.crt.
    Issue {
        /// The CA directory (from init-ca).
        #[arg(long)]
        ca: PathBuf,
        /// The node name: it becomes the host's name on the board.
        name: String,
        /// IP addresses the node is reached at (repeatable).
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        /// DNS names the node is reached at (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn cluster(verb: ClusterVerb) -> Result<()> {
    match verb {
        ClusterVerb::InitCa { dir } => {
            crate::cluster::certs::init_ca(&dir)?;
            println!("cluster CA written to {}", dir.display());
            Ok(())
        }
        ClusterVerb::Issue {
            ca,
            name,
            ips,
            dns,
            out,
        } => {
            crate::cluster::certs::issue(&ca, &name, &ips, &dns, &out)?;
            println!("certificate for {name} written to {}", out.display());
            Ok(())
        }
    }
}

async fn fetch() -> Result<BoardView> {
    let mut conn = client::connect().await?;
    match conn.call(&Request::Board).await? {
        Response::Board(b) => Ok(*b),
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}

pub fn board(json: bool, watch: bool) -> Result<()> {
    super::runtime()?.block_on(async {
        loop {
            let view = fetch().await?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &view)?;
                writeln!(out)?;
            } else {
                if watch {
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                print_board(&mut out, &view)?;
            }
            out.flush()?;
            if !watch {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ago(t: u64) -> String {
    format_duration(Duration::from_millis(now_ms().saturating_sub(t)))
}

pub fn print_board(out: &mut impl Write, b: &BoardView) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<16} {:<10} {:>10} {:>10} {:>7} {:>5} {:>6}  SERVICES",
        "HOST", "STATE", "MEM AVAIL", "RESERVED", "CPU RES", "JOBS", "QUEUED"
    )?;
    for h in &b.hosts {
        let state = match (h.live, h.dead_for_ms) {
            (true, _) => "live".to_string(),
            (false, Some(ms)) => format!("dead {}", format_duration(Duration::from_millis(ms))),
            (false, None) => "dead".to_string(),
        };
        let name = if h.is_self {
            format!("{} *", h.name)
        } else {
            h.name.clone()
        };
        let services: Vec<String> = h
            .services
            .iter()
            .map(|s| {
                let r = if s.ready { "ready" } else { "not ready" };
                format!("{} ({}, {r})", s.name, s.state)
            })
            .collect();
        match &h.headroom {
            Some(r) => writeln!(
                out,
                "{:<16} {:<10} {:>10} {:>10} {:>7} {:>5} {:>6}  {}",
                name,
                state,
                format_size(r.mem_available),
                format_size(r.mem_reserved),
                format_cpus(r.cpu_reserved_milli),
                r.jobs_running,
                r.jobs_queued,
                services.join(", ")
            )?,
            None => writeln!(out, "{name:<16} {state:<10} {:>10}", "-")?,
        }
    }
    let jobs: Vec<_> = b
        .hosts
        .iter()
        .flat_map(|h| h.jobs.iter().map(move |j| (h, j)))
        .collect();
    if !jobs.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<22} {:<9} {:>6} {:>9} {:>8}  COMMAND / WAITING FOR",
            "JOB", "STATE", "OWNER", "MEM", "FOR"
        )?;
        for (h, j) in jobs {
            let since = j.started_at.unwrap_or(j.queued_at);
            let mut tail = j.summary.clone();
            if !j.needs.is_empty() {
                tail.push_str(&format!(
                    "  [needs {}]",
                    super::needs::describe(&j.needs, &[])
                ));
            }
            if let Some(w) = &j.waiting {
                tail.push_str(&format!("  — {w}"));
            }
            if !h.live {
                tail.push_str("  (host dead)");
            }
            writeln!(
                out,
                "{:<22} {:<9} {:>6} {:>9} {:>8}  {}",
                format!("{}/{}", h.name, j.id),
                j.state.to_string(),
                j.owner,
                j.requests
                    .mem
                    .map(format_size)
                    .unwrap_or_else(|| "-".into()),
                ago(since),
                tail
            )?;
        }
    }
    if !b.resources.is_empty() {
        writeln!(out)?;
        print_resources(out, &b.resources)?;
    }
    if b.undecodable_values > 0 {
        writeln!(
            out,
            "\n{} board values did not decode and were ignored",
            b.undecodable_values
        )?;
    }
    Ok(())
}

/// The cluster resources: capacity and mode, then who holds each, who
/// queues for it (in entry order) and what hosts disagree about.
fn print_resources(out: &mut impl Write, resources: &[BoardResource]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<22} {:>4}  {:<9}  HELD BY / QUEUE",
        "RESOURCE", "CAP", "MODE"
    )?;
    let indent = " ".repeat(40);
    for r in resources {
        let held: Vec<String> = r.holders.iter().map(claim).collect();
        let held = if held.is_empty() {
            "free".to_string()
        } else {
            held.join(", ")
        };
        writeln!(
            out,
            "{:<22} {:>4}  {:<9}  {held}",
            r.name, r.capacity, r.mode
        )?;
        if !r.queue.is_empty() {
            let queue: Vec<String> = r.queue.iter().map(claim).collect();
            writeln!(out, "{indent}queue: {}", queue.join(", "))?;
        }
        if let Some(c) = &r.conflict {
            writeln!(out, "{indent}CONFLICT: {c}")?;
        }
    }
    Ok(())
}

/// `host-b job 42 tok 7`, with the units, a claim mark and the priority
/// when they say something.
fn claim(c: &BoardClaim) -> String {
    let mut s = format!("{} job {}", c.host, c.job);
    if c.units != 1 {
        s.push_str(&format!(" x{}", c.units));
    }
    if let Some(t) = c.token {
        s.push_str(&format!(" tok {t}"));
    }
    if c.priority != 0 {
        s.push_str(&format!(" prio {}", c.priority));
    }
    if c.claimed && c.token.is_none() {
        s.push_str(" (claimed)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_section_shows_holders_queue_and_conflict() {
        let c = |host: &str, job, units, token, claimed, priority| BoardClaim {
            host: String::from(host),
            job,
            units,
            token,
            claimed,
            priority,
        };
        let view = BoardView {
            cluster_id: "sc".into(),
            hosts: vec![],
            undecodable_values: 0,
            resources: vec![
                BoardResource {
                    name: "e2e-env".into(),
                    capacity: 1,
                    mode: "quorum".into(),
                    holders: vec![c("host-b", 42, 1, Some(7), true, 0)],
                    queue: vec![
                        c("host-a", 3, 1, None, true, 0),
                        c("host-c", 9, 2, None, false, 10),
                    ],
                    conflict: Some("2 holders after a partition healed".into()),
                },
                BoardResource {
                    name: "gpu".into(),
                    capacity: 4,
                    mode: "available".into(),
                    ..Default::default()
                },
            ],
        };
        let mut out = Vec::new();
        print_board(&mut out, &view).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("host-b job 42 tok 7"), "{text}");
        assert!(
            text.contains("queue: host-a job 3 (claimed), host-c job 9 x2 prio 10"),
            "{text}"
        );
        assert!(text.contains("CONFLICT: 2 holders"), "{text}");
        assert!(text.contains("gpu") && text.contains("free"), "{text}");
    }
}
