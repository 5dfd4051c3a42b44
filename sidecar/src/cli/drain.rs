//! `sc drain [--wait]`: stop admitting jobs on this host, and optionally
//! wait until the jobs that run now have finished (for maintenance scripts:
//! `sc drain --wait && reboot`).

use super::verbs::{ask, refused};
use anyhow::Result;
use sc_protocol::{Request, Response};
use std::time::Duration;

/// How often `--wait` asks the daemon whether jobs still run.
const WAIT_POLL: Duration = Duration::from_millis(250);

pub fn drain(wait: bool) -> Result<()> {
    match ask(Request::Drain)? {
        Response::Ok { message } => println!("{message}"),
        other => return Err(refused(other)),
    }
    if !wait {
        return Ok(());
    }
    let mut told = None;
    loop {
        let st = match ask(Request::Status)? {
            Response::Status(s) => s,
            other => return Err(refused(other)),
        };
        if !st.draining {
            anyhow::bail!("the host was undrained while waiting for its jobs to finish");
        }
        if st.jobs_running == 0 {
            println!("drained: no job is running");
            return Ok(());
        }
        if told != Some(st.jobs_running) {
            eprintln!("waiting for {} running job(s) to finish", st.jobs_running);
            told = Some(st.jobs_running);
        }
        std::thread::sleep(WAIT_POLL);
    }
}
