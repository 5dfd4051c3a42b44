//! Helpers for the cluster tests (DESIGN §6): a test CA, node certificates,
//! free UDP addresses on 127.0.0.x, daemons with a `[cluster]` section, and
//! views of `sc board --json` / `sc status --json`'s `cluster`.

use crate::{CMD_TIMEOUT, DaemonConfig, TestDaemon, run, sc_bin, wait_until};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A UDP address on `ip` (e.g. "127.0.0.2") whose port was free a moment
/// ago (bound to port 0, then released). No port is handed out twice by one
/// test process, whatever the IP, so parallel tests do not collide with
/// each other.
pub fn free_udp_addr(ip: &str) -> SocketAddr {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ip: IpAddr = ip.parse().expect("an IP address");
    for _ in 0..100 {
        let s = UdpSocket::bind(SocketAddr::new(ip, 0))
            .unwrap_or_else(|e| panic!("bind UDP {ip}:0: {e}"));
        let addr = s.local_addr().expect("local_addr");
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(addr.port()) {
            return addr;
        }
    }
    panic!("no fresh UDP port on {ip} after 100 tries");
}

/// Run `sc ARGS` without a daemon (the `sc cluster` verbs); must succeed.
#[track_caller]
fn sc_offline(args: &[&str]) {
    let mut cmd = Command::new(sc_bin());
    cmd.args(args).env_remove("SC_SOCKET");
    run(cmd, CMD_TIMEOUT).assert_success();
}

/// A cluster CA made by `sc cluster init-ca` in a temporary directory, and
/// the node certificates issued from it (`sc cluster issue`).
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    #[track_caller]
    pub fn new() -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("sc-test-ca-")
            .tempdir()
            .expect("create tempdir");
        let ca = dir.path().join("ca");
        sc_offline(&["cluster", "init-ca", ca.to_str().unwrap()]);
        assert!(ca.join("ca.crt").is_file() && ca.join("ca.key").is_file());
        TestCa { dir }
    }

    /// The CA directory (ca.crt, ca.key).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Issue a certificate for node `name` reachable at `ip`; returns the
    /// directory holding node.crt, node.key and ca.crt.
    #[track_caller]
    pub fn issue(&self, name: &str, ip: IpAddr) -> PathBuf {
        let out = self.dir.path().join(format!("node-{name}"));
        let ca = self.ca_dir();
        sc_offline(&[
            "cluster",
            "issue",
            "--ca",
            ca.to_str().unwrap(),
            name,
            "--ip",
            &ip.to_string(),
            "--out",
            out.to_str().unwrap(),
        ]);
        for f in ["node.crt", "node.key", "ca.crt"] {
            assert!(out.join(f).is_file(), "sc cluster issue did not write {f}");
        }
        out
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

fn toml_str(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).unwrap()
}

/// One host of a test cluster: its name (the certificate's CN), its gossip
/// address and its certificate directory.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    pub listen: SocketAddr,
    pub certs: PathBuf,
    /// Bare `key = value` lines for `[host]` (e.g. `labels = { gpu = "a100" }`).
    pub host_extra: String,
    /// Extra `key = value` lines for `[cluster]`.
    pub cluster_extra: String,
}

impl HostSpec {
    /// A host named `name` on `ip` with a fresh UDP port and a certificate
    /// from `ca`.
    #[track_caller]
    pub fn new(ca: &TestCa, name: &str, ip: &str) -> HostSpec {
        let listen = free_udp_addr(ip);
        HostSpec {
            name: name.to_string(),
            listen,
            certs: ca.issue(name, listen.ip()),
            host_extra: String::new(),
            cluster_extra: String::new(),
        }
    }

    /// The config text appended after `[host]` (see [`DaemonConfig::extra`]).
    pub fn config_extra(&self, seeds: &[SocketAddr]) -> String {
        let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            "{}\n\n[cluster]\nlisten = \"{}\"\nseeds = [{}]\nca = {}\ncert = {}\nkey = {}\ntest_partition_file = {}\n{}\n",
            self.host_extra,
            self.listen,
            seeds.join(", "),
            toml_str(&self.certs.join("ca.crt")),
            toml_str(&self.certs.join("node.crt")),
            toml_str(&self.certs.join("node.key")),
            toml_str(&self.partition_file()),
            self.cluster_extra,
        )
    }

    /// The file this host's daemon reads the gossip addresses to cut off
    /// from (`[cluster] test_partition_file`).
    pub fn partition_file(&self) -> PathBuf {
        self.certs.join("partition")
    }

    /// Start a daemon for this host, joining through `seeds`.
    #[track_caller]
    pub fn start(&self, seeds: &[SocketAddr]) -> TestDaemon {
        TestDaemon::start_with(DaemonConfig {
            extra: self.config_extra(seeds),
            ..DaemonConfig::default()
        })
    }
}

/// The hosts of a `sc board --json` document.
pub fn board_hosts(board: &Value) -> Vec<Value> {
    board["hosts"].as_array().cloned().unwrap_or_default()
}

/// The host `name` of a `sc board --json` document, if listed.
pub fn board_host<'a>(board: &'a Value, name: &str) -> Option<&'a Value> {
    board["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["name"] == name)
}

/// Whether `board` lists every host of `names` as live.
pub fn all_live(board: &Value, names: &[&str]) -> bool {
    names
        .iter()
        .all(|n| board_host(board, n).is_some_and(|h| h["live"] == true))
}

impl TestDaemon {
    /// `sc board --json`, which must succeed.
    #[track_caller]
    pub fn board(&self) -> Value {
        let out = self.sc(&["board", "--json"]);
        out.assert_success();
        out.json()
    }

    /// The host `name` on this daemon's board, if listed.
    #[track_caller]
    pub fn board_host(&self, name: &str) -> Option<Value> {
        board_host(&self.board(), name).cloned()
    }

    /// `cluster` of `sc status --json`.
    #[track_caller]
    pub fn cluster_status(&self) -> Value {
        let st = self.status();
        assert!(
            st["cluster"].is_object(),
            "sc status --json has no cluster object: {st}"
        );
        st["cluster"].clone()
    }

    /// A transport counter of `sc status --json` (`cluster.counters`).
    #[track_caller]
    pub fn cluster_counter(&self, name: &str) -> u64 {
        counter(&self.cluster_status(), name)
    }
}

/// Counter `name` of a `cluster` status object (`counters: [[name, n], ...]`).
#[track_caller]
pub fn counter(cluster: &Value, name: &str) -> u64 {
    cluster["counters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c[0] == name).and_then(|c| c[1].as_u64()))
        .unwrap_or_else(|| panic!("no counter {name:?} in {cluster}"))
}

// ---- The three-host test cluster (used by tests/cluster*.rs) ----

/// How long a fresh cluster may take to list every host live everywhere.
pub const CONVERGE: Duration = Duration::from_secs(20);
/// Upper bound for a board change (job, service) to reach another host.
pub const PROPAGATE: Duration = Duration::from_secs(10);
/// Upper bound for noticing a killed host (the design target is ~2 s).
pub const DETECT_DEAD: Duration = Duration::from_secs(10);

/// Straight to fd 2, so it shows even when libtest captures output.
pub fn report(line: String) {
    let _ = std::io::stderr().write_all(format!("CLUSTER-TIMING {line}\n").as_bytes());
}

/// A cluster of daemons from one CA; each daemon seeds with all the others.
pub struct Cluster {
    // Daemons first: they drop (stop) before the certificates go.
    pub daemons: Vec<TestDaemon>,
    pub specs: Vec<HostSpec>,
    pub ca: TestCa,
}

impl Cluster {
    /// Hosts `host-a`, `host-b`, ... on 127.0.0.1, 127.0.0.2, ...;
    /// `host_extra[i]` goes into host i's `[host]`.
    #[track_caller]
    pub fn start(n: usize, host_extra: &[&str]) -> Cluster {
        Cluster::start_with(n, host_extra, "")
    }

    /// As [`Cluster::start`], with `cluster_extra` appended to every host's
    /// `[cluster]` section (it may open further sections, e.g. `[resources]`).
    #[track_caller]
    pub fn start_with(n: usize, host_extra: &[&str], cluster_extra: &str) -> Cluster {
        let ca = TestCa::new();
        let specs: Vec<HostSpec> = (0..n)
            .map(|i| {
                let name = format!("host-{}", (b'a' + i as u8) as char);
                let mut s = HostSpec::new(&ca, &name, &format!("127.0.0.{}", i + 1));
                s.host_extra = host_extra.get(i).unwrap_or(&"").to_string();
                s.cluster_extra = cluster_extra.to_string();
                s
            })
            .collect();
        let daemons = specs
            .iter()
            .map(|s| s.start(&seeds_except(&specs, &s.name)))
            .collect();
        Cluster { daemons, specs, ca }
    }

    /// Cut host `i` off from hosts `from` (both directions: `i` drops their
    /// traffic and they drop `i`'s). An empty `from` heals host `i`.
    pub fn partition(&self, i: usize, from: &[usize]) {
        let line = |addrs: Vec<String>| addrs.join("\n");
        let cut: Vec<String> = from
            .iter()
            .map(|j| self.specs[*j].listen.to_string())
            .collect();
        std::fs::write(self.specs[i].partition_file(), line(cut)).expect("write partition file");
        for (j, s) in self.specs.iter().enumerate() {
            if j == i {
                continue;
            }
            let mut mine: Vec<String> = std::fs::read_to_string(s.partition_file())
                .unwrap_or_default()
                .lines()
                .filter(|l| *l != self.specs[i].listen.to_string())
                .map(str::to_string)
                .collect();
            if from.contains(&j) {
                mine.push(self.specs[i].listen.to_string());
            }
            std::fs::write(s.partition_file(), line(mine)).expect("write partition file");
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.specs.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn d(&self, i: usize) -> &TestDaemon {
        &self.daemons[i]
    }

    /// Wait until every daemon's board lists every host live; returns how
    /// long it took.
    #[track_caller]
    pub fn converge(&self) -> Duration {
        let start = Instant::now();
        let names = self.names();
        for d in &self.daemons {
            wait_until(
                CONVERGE,
                "every host live, with its node info, on every board",
                || converged(&d.board(), &names),
            );
        }
        let took = start.elapsed();
        report(format!("{} hosts converged in {took:?}", names.len()));
        took
    }
}

/// Every host of `names` is live on `board`, with its node info and headroom.
pub fn converged(board: &Value, names: &[&str]) -> bool {
    all_live(board, names)
        && names.iter().all(|n| {
            board_host(board, n).is_some_and(|h| h["node"].is_object() && h["headroom"].is_object())
        })
}

pub fn seeds_except(specs: &[HostSpec], name: &str) -> Vec<SocketAddr> {
    specs
        .iter()
        .filter(|s| s.name != name)
        .map(|s| s.listen)
        .collect()
}

/// `sc service add ARGS` on `d`, which must succeed.
#[track_caller]
pub fn add_service(d: &TestDaemon, args: &[&str]) {
    let mut v = vec!["service", "add"];
    v.extend_from_slice(args);
    d.sc(&v).assert_success();
}

/// Host `host`'s job named (summary) `summary` on `d`'s board.
pub fn board_job(d: &TestDaemon, host: &str, summary: &str) -> Option<Value> {
    d.board_host(host)?["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["summary"] == summary)
        .cloned()
}

/// Host `host`'s service `name` on `d`'s board.
pub fn board_service(d: &TestDaemon, host: &str, name: &str) -> Option<Value> {
    board_service_in(&d.board(), host, name)
}

pub fn board_service_in(board: &Value, host: &str, name: &str) -> Option<Value> {
    board_host(board, host)?["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}
