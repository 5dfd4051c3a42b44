//! The hosts' network, and the knobs the faults turn.
//!
//! `netns`: every host is a network namespace `scc<pid>-h<i>` with one veth
//! (`eth0`, 10.77.0.<i+1>/24) whose peer `h<i>` is a port of bridge `br0` in
//! namespace `scc<pid>-br`. Nothing is created in the root namespace, so
//! removing the namespaces removes every link; the harness pid in the names
//! lets a later run find and remove what a crashed run left.
//! Link faults set the bridge port down/up; partitions are nftables drop
//! rules on input inside the receiving host's namespace (one direction
//! each, so one-way cuts are possible).
//!
//! `loopback`: hosts on 127.0.0.<i+1>; cuts go through the daemons'
//! `[cluster] test_partition_file` (both directions at once), and a link
//! down is a cut from everyone.
//!
//! Processes enter a host namespace with setns(2) in the child before exec,
//! not `ip netns exec`: that one also remounts /sys, which hides
//! /sys/fs/cgroup from the daemon (it would run without cgroups).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    Netns,
    Loopback,
}

/// Gossip port in netns mode (each host has its own address).
const PORT: u16 = 7946;

pub struct Net {
    pub kind: NetKind,
    prefix: String,
    addrs: Vec<SocketAddr>,
    /// netns mode: an open handle on each host namespace, for setns.
    ns_files: Vec<File>,
    /// Namespaces we created, in creation order (removed in reverse).
    created: Vec<String>,
    /// loopback mode: each host's `test_partition_file`.
    partition_files: Vec<PathBuf>,
    /// `blocked[i]`: hosts whose packets host i drops.
    blocked: Vec<BTreeSet<usize>>,
    link_up: Vec<bool>,
}

/// Run a command that must succeed; its stderr goes into the error.
pub fn must(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    must(Command::new("ip").args(args))
}

impl Net {
    /// The name prefix for everything run `pid` creates.
    pub fn prefix_for(pid: u32) -> String {
        format!("scc{pid}")
    }

    pub fn setup(kind: NetKind, n: usize, run_dir: &std::path::Path) -> Result<Net, String> {
        let mut net = Net {
            kind,
            prefix: Net::prefix_for(std::process::id()),
            addrs: Vec::new(),
            ns_files: Vec::new(),
            created: Vec::new(),
            partition_files: Vec::new(),
            blocked: vec![BTreeSet::new(); n],
            link_up: vec![true; n],
        };
        // On error, `net` drops here and removes what was made so far.
        match kind {
            NetKind::Netns => net.setup_netns(n)?,
            NetKind::Loopback => net.setup_loopback(n, run_dir)?,
        }
        Ok(net)
    }

    fn setup_netns(&mut self, n: usize) -> Result<(), String> {
        let br = format!("{}-br", self.prefix);
        ip(&["netns", "add", &br])?;
        self.created.push(br.clone());
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let h = format!("{}-h{i}", self.prefix);
            ip(&["netns", "add", &h])?;
            self.created.push(h.clone());
            let port = format!("h{i}");
            // Both ends are created directly in their namespaces: nothing
            // ever appears in the root namespace.
            ip(&[
                "-n", &h, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &br,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            let addr = format!("10.77.0.{}", i + 1);
            ip(&[
                "-n",
                &h,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &h, "link", "set", "eth0", "up"])?;
            ip(&["-n", &h, "link", "set", "lo", "up"])?;
            let f = File::open(format!("/run/netns/{h}"))
                .map_err(|e| format!("open netns {h}: {e}"))?;
            self.ns_files.push(f);
            self.addrs
                .push(SocketAddr::new(addr.parse().unwrap(), PORT));
        }
        Ok(())
    }

    fn setup_loopback(&mut self, n: usize, run_dir: &std::path::Path) -> Result<(), String> {
        for i in 0..n {
            let ip = format!("127.0.0.{}", i + 1);
            // A port free a moment ago; kept for the whole run (restarts
            // reuse it).
            let s = UdpSocket::bind((ip.as_str(), 0)).map_err(|e| format!("bind {ip}: {e}"))?;
            self.addrs.push(s.local_addr().map_err(|e| e.to_string())?);
            let f = run_dir.join(format!("partition-{i}"));
            std::fs::write(&f, "").map_err(|e| format!("{}: {e}", f.display()))?;
            self.partition_files.push(f);
        }
        Ok(())
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    pub fn n(&self) -> usize {
        self.addrs.len()
    }

    /// loopback mode: host i's `test_partition_file`.
    pub fn partition_file(&self, i: usize) -> Option<&PathBuf> {
        self.partition_files.get(i)
    }

    pub fn one_way_possible(&self) -> bool {
        self.kind == NetKind::Netns
    }

    /// Make `cmd` run inside host i's network namespace (netns mode).
    pub fn enter(&self, i: usize, cmd: &mut Command) {
        if let Some(f) = self.ns_files.get(i) {
            let fd = f.as_raw_fd();
            // SAFETY: only setns(2) between fork and exec; the fd stays open
            // for the life of `self`.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    }

    /// Host i drops what comes from every host in `from` (and nothing else).
    pub fn set_blocked(&mut self, i: usize, from: BTreeSet<usize>) -> Result<(), String> {
        self.blocked[i] = from;
        match self.kind {
            NetKind::Netns => self.apply_nft(i),
            NetKind::Loopback => self.apply_files(),
        }
    }

    pub fn blocked(&self, i: usize) -> &BTreeSet<usize> {
        &self.blocked[i]
    }

    pub fn set_link(&mut self, i: usize, up: bool) -> Result<(), String> {
        self.link_up[i] = up;
        match self.kind {
            NetKind::Netns => ip(&[
                "-n",
                &format!("{}-br", self.prefix),
                "link",
                "set",
                &format!("h{i}"),
                if up { "up" } else { "down" },
            ]),
            NetKind::Loopback => self.apply_files(),
        }
    }

    pub fn link_up(&self, i: usize) -> bool {
        self.link_up[i]
    }

    fn apply_nft(&self, i: usize) -> Result<(), String> {
        let set: Vec<String> = self.blocked[i]
            .iter()
            .map(|j| self.addrs[*j].ip().to_string())
            .collect();
        let rule = if set.is_empty() {
            String::new()
        } else {
            format!("ip saddr {{ {} }} drop", set.join(", "))
        };
        // Declare, delete, re-create: one atomic transaction whether or not
        // the table existed.
        let script = format!(
            "table inet scchaos\ndelete table inet scchaos\ntable inet scchaos {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    {rule}\n  }}\n}}\n"
        );
        let mut cmd = Command::new("nft");
        cmd.args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.enter(i, &mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("nft: {e} (apt-get install nftables)"))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft stdin: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nft in host {i}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// loopback: the transport hook drops both directions, so a host's file
    /// lists everyone it must not talk to either way.
    fn apply_files(&self) -> Result<(), String> {
        let n = self.n();
        for i in 0..n {
            let lines: Vec<String> = (0..n)
                .filter(|&j| j != i)
                .filter(|&j| {
                    !self.link_up[i]
                        || !self.link_up[j]
                        || self.blocked[i].contains(&j)
                        || self.blocked[j].contains(&i)
                })
                .map(|j| self.addrs[j].to_string())
                .collect();
            let f = &self.partition_files[i];
            // Whole file via rename: the daemon re-reads it every 100 ms and
            // must never see half of it.
            let tmp = f.with_extension("tmp");
            std::fs::write(&tmp, lines.join("\n"))
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, f).map_err(|e| format!("{}: {e}", f.display()))?;
        }
        Ok(())
    }

    /// Remove every namespace we created (their links go with them).
    pub fn teardown(&mut self) {
        self.ns_files.clear();
        while let Some(ns) = self.created.pop() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("sc-chaos: cannot remove namespace {ns}: {e}");
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Namespaces left by runs whose harness is gone (`scc<pid>-...` with no
/// live sc-chaos of that pid): removed. Returns their names.
pub fn remove_stale_namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("scc")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !crate::guard::harness_alive(pid) && ip(&["netns", "del", name]).is_ok() {
            removed.push(name.to_string());
        }
    }
    removed
}
