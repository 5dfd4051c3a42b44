//! `sc-stamp FILE LABEL MS`: a tiny compiled job for the cluster-resource
//! tests and benchmarks. It appends `start`, then a `tick` every 10 ms for
//! MS milliseconds, then `end` records to FILE, each with CLOCK_MONOTONIC in
//! ns (shared by every process on the host), and the resources and fencing
//! tokens sc gave it. A job stopped from outside leaves its last `tick` as
//! the upper bound of when it last ran. Compiled, not a script, so a
//! benchmark's critical section measures sc, not an interpreter's start.

use std::io::Write;
use std::time::Duration;

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(label), Some(ms)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: sc-stamp FILE LABEL MS");
        std::process::exit(2);
    };
    let ms: u64 = ms.parse().unwrap_or(0);
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "-".into());
    let (job, res, tok) = (var("SC_JOB_ID"), var("SC_RESOURCE"), var("SC_FENCE_TOKEN"));
    let rec = |kind: &str| {
        // One write per line on an O_APPEND file: lines never interleave.
        let line = format!("{kind} {label} {} {job} {res} {tok}\n", mono_ns());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    };
    rec("start");
    let end = mono_ns() + ms * 1_000_000;
    while mono_ns() < end {
        std::thread::sleep(
            Duration::from_millis(10).min(Duration::from_nanos(end - mono_ns().min(end))),
        );
        if mono_ns() < end {
            rec("tick");
        }
    }
    rec("end");
}
