//! `--port NAME`: jobs and services get a free TCP port of the host's
//! `port_range`, unique among live leases, as `$PORT`, `$SC_PORT_NAME` and
//! `$SC_PORT_<NAME>`; shown in `sc ps`; refused clearly when the range is
//! exhausted or the name is bad.

use sc_tests::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A job body that binds its `$PORT` on 0.0.0.0 (failing if another job
/// holds it), records `PORT SC_PORT_NAME SC_PORT_WEB` in `out`, and keeps
/// the socket open until `release` exists.
fn binding_job(out: &Path, release: &Path) -> Vec<String> {
    let script = format!(
        "import os, socket, time\n\
         s = socket.socket()\n\
         s.bind(('0.0.0.0', int(os.environ['PORT'])))\n\
         s.listen()\n\
         open({out:?} + '.tmp', 'w').write('%s %s %s' % (os.environ['PORT'], os.environ['SC_PORT_NAME'], os.environ['SC_PORT_WEB']))\n\
         os.rename({out:?} + '.tmp', {out:?})\n\
         while not os.path.exists({release:?}): time.sleep(0.05)\n",
        out = out.display().to_string(),
        release = release.display().to_string(),
    );
    vec![python3(), "-c".into(), script]
}

fn ports_of(v: &Value) -> Vec<(String, u64)> {
    v["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn twenty_concurrent_jobs_get_distinct_free_ports() {
    let d = TestDaemon::start("port_range = \"23000-23099\"\n");
    let release = d.dir().join("release");
    let mut jobs = Vec::new();
    let mut outs = Vec::new();
    for i in 0..20 {
        let out = d.dir().join(format!("port-{i}"));
        let mut args: Vec<String> = ["exec", "--json", "--mem", "64M", "--port", "web", "--"]
            .into_iter()
            .map(String::from)
            .collect();
        args.extend(binding_job(&out, &release));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        jobs.push(d.spawn(&argv));
        outs.push(out);
    }
    wait_until(T, "all 20 jobs to bind their port", || {
        outs.iter().all(|o| o.exists())
    });
    let mut seen = BTreeSet::new();
    for o in &outs {
        let text = std::fs::read_to_string(o).expect("port file");
        let f: Vec<&str> = text.split(' ').collect();
        assert_eq!(f.len(), 3, "{text:?}");
        let port: u16 = f[0].parse().expect("a port number");
        assert!((23000..=23099).contains(&port), "port {port} out of range");
        assert_eq!(f[1], "web", "SC_PORT_NAME");
        assert_eq!(f[2], f[0], "SC_PORT_WEB differs from PORT");
        assert!(seen.insert(port), "port {port} leased twice");
    }
    // `sc ps` shows the same leases.
    let listed: BTreeSet<u16> = d
        .ps()
        .iter()
        .flat_map(ports_of)
        .map(|(name, p)| {
            assert_eq!(name, "web");
            p as u16
        })
        .collect();
    assert_eq!(listed, seen, "sc ps --json disagrees with the jobs' $PORT");
    let text = d.sc(&["ps"]);
    assert!(text.stdout_str().contains("[ports web="), "{text}");

    std::fs::write(&release, "").expect("release");
    for j in jobs {
        j.wait(T).assert_success();
    }
    wait_until(T, "the jobs to leave sc ps", || d.ps().is_empty());
}

#[test]
fn exhausted_range_busy_ports_and_bad_names_are_refused() {
    let d = TestDaemon::start("port_range = \"23100-23102\"\n");
    // A program outside sc holds the first port: it is skipped.
    let foreign = std::net::TcpListener::bind("0.0.0.0:23100").expect("bind 23100");
    let release = d.dir().join("release");
    let mut held = Vec::new();
    for i in 0..2 {
        let out = d.dir().join(format!("port-{i}"));
        let mut args: Vec<String> = ["exec", "--json", "--port", "web", "--"]
            .into_iter()
            .map(String::from)
            .collect();
        args.extend(binding_job(&out, &release));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        held.push(d.spawn(&argv));
        wait_until(T, "the job to bind its port", || out.exists());
        let port = std::fs::read_to_string(&out).expect("port file");
        assert!(!port.starts_with("23100 "), "got the busy port: {port}");
    }
    let out = d.sc(&["exec", "--port", "web", "--", "true"]);
    assert_eq!(out.code(), Some(125), "{out}");
    assert!(out.stderr_str().contains("no free port"), "{out}");
    assert!(out.stderr_str().contains("23100-23102"), "{out}");

    for bad in ["9lives", "we b", "a$b"] {
        let out = d.sc(&["exec", "--port", bad, "--", "true"]);
        assert_eq!(out.code(), Some(125), "{out}");
        assert!(out.stderr_str().contains("invalid port name"), "{out}");
    }
    let out = d.sc(&["exec", "--port", "web", "--port", "WEB", "--", "true"]);
    assert_eq!(out.code(), Some(125), "{out}");
    assert!(out.stderr_str().contains("twice"), "{out}");

    // The daemon keeps serving; once the holders end, their ports are free.
    std::fs::write(&release, "").expect("release");
    for j in held {
        j.wait(T).assert_success();
    }
    drop(foreign);
    let out = d.sc(&[
        "exec",
        "--port",
        "a",
        "--port",
        "b",
        "--",
        "sh",
        "-c",
        "echo $PORT $SC_PORT_NAME $SC_PORT_A $SC_PORT_B",
    ]);
    out.assert_success();
    let f: Vec<String> = out
        .stdout_str()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(f.len(), 4, "{out}");
    assert_eq!(f[1], "a");
    assert_eq!(f[0], f[2]);
    assert_ne!(f[2], f[3], "two names got one port");
}

#[test]
fn services_lease_a_port_while_defined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg_out = dir.path().join("cfg-port");
    let d = TestDaemon::start(&format!(
        "port_range = \"23200-23209\"\n\n[[service]]\nname = \"cfgsvc\"\ncommand = [\"sh\", \"-c\", \"echo $PORT $SC_PORT_NAME > {} ; exec sleep 300\"]\nports = [\"web\"]\n",
        cfg_out.display()
    ));
    let rt_out = d.dir().join("rt-port");
    d.sc(&[
        "service",
        "add",
        "rtsvc",
        "--port",
        "api",
        "--",
        "sh",
        "-c",
        &format!(
            "echo $PORT $SC_PORT_NAME > {} ; exec sleep 300",
            rt_out.display()
        ),
    ])
    .assert_success();
    wait_until(T, "both services to write their port", || {
        cfg_out.exists()
            && rt_out.exists()
            && std::fs::read_to_string(&cfg_out).is_ok_and(|s| s.ends_with('\n'))
            && std::fs::read_to_string(&rt_out).is_ok_and(|s| s.ends_with('\n'))
    });
    let read = |p: &Path| -> (u16, String) {
        let s = std::fs::read_to_string(p).expect("port file");
        let mut f = s.split_whitespace();
        (
            f.next().and_then(|p| p.parse().ok()).expect("port"),
            f.next().expect("name").to_string(),
        )
    };
    let (cfg_port, cfg_name) = read(&cfg_out);
    let (rt_port, rt_name) = read(&rt_out);
    assert_eq!(cfg_name, "web");
    assert_eq!(rt_name, "api");
    assert_ne!(cfg_port, rt_port);
    for p in [cfg_port, rt_port] {
        assert!((23200..=23209).contains(&p), "port {p} out of range");
    }
    assert_eq!(
        ports_of(&d.service_view("rtsvc")),
        vec![("api".to_string(), u64::from(rt_port))]
    );
    assert_eq!(
        ports_of(&d.service_view("cfgsvc")),
        vec![("web".to_string(), u64::from(cfg_port))]
    );
    // A job on the same host never gets a service's port.
    let out = d.sc(&["exec", "--port", "x", "--", "sh", "-c", "echo $PORT"]);
    out.assert_success();
    let job_port: u16 = out.stdout_str().trim().parse().expect("port");
    assert!(![cfg_port, rt_port].contains(&job_port), "{job_port}");

    d.sc(&["service", "remove", "rtsvc"]).assert_success();
    let bad = d.sc(&["service", "add", "bad", "--port", "1x", "--", "true"]);
    assert_eq!(bad.code(), Some(125), "{bad}");
    assert!(bad.stderr_str().contains("invalid port name"), "{bad}");
}
