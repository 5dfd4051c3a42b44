//! Running processes with bounded waits.
//!
//! A child's stdout and stderr are read by threads into shared buffers, so a
//! test can look at what a still-running `sc exec` printed so far (e.g. wait
//! for its `started` event). Waiting never depends on the pipes reaching EOF:
//! a background daemon that inherited a pipe must not hang a test (whether
//! the pipe closed is reported in [`RunOutput::stdout_eof`]).

use serde_json::Value;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long to wait for the pipes to close once the process has exited.
const EOF_GRACE: Duration = Duration::from_secs(3);

/// What a finished process left behind.
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Whether stdout reached EOF within a grace period after the exit (false
    /// means some other process still holds the write end).
    pub stdout_eof: bool,
    pub stderr_eof: bool,
    pub what: String,
    pub elapsed: Duration,
}

impl RunOutput {
    /// Exit code; `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// JSON lines on stderr (`sc exec --json` events).
    pub fn events(&self) -> Vec<Value> {
        crate::json_lines(&self.stderr_str())
    }
    /// Stdout parsed as one JSON document (`sc ps --json`, `sc status --json`).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout of {} is not JSON: {e}\n{self}", self.what))
    }
    /// Panic with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit status\n{self}");
        self
    }
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }
}

impl fmt::Display for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => format!("{:?}", self.status),
        };
        write!(
            f,
            "--- {} ({status}, after {:?})\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            self.what,
            self.elapsed,
            self.stdout_str(),
            self.stderr_str()
        )
    }
}

impl fmt::Debug for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

struct Pipe {
    buf: Arc<Mutex<Vec<u8>>>,
    eof: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pipe {
    fn start(mut r: impl Read + Send + 'static) -> Pipe {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let eof = Arc::new(AtomicBool::new(false));
        let (b, e) = (buf.clone(), eof.clone());
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
            e.store(true, Ordering::SeqCst);
        });
        Pipe {
            buf,
            eof,
            thread: Some(thread),
        }
    }
    fn snapshot(&self) -> Vec<u8> {
        self.buf.lock().unwrap().clone()
    }
    fn is_eof(&self) -> bool {
        self.eof.load(Ordering::SeqCst)
    }
    fn finish(&mut self) {
        if self.is_eof()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
        // Otherwise the thread is left to end whenever the writer goes away.
    }
}

/// A running process (usually `sc exec`) in its own process group, with its
/// output captured. Dropping it SIGKILLs the whole process group, so a failed
/// test does not leave jobs behind.
pub struct ScChild {
    child: Child,
    stdout: Pipe,
    stderr: Pipe,
    what: String,
    started: Instant,
    status: Option<ExitStatus>,
}

/// Spawn `cmd` in a new process group with stdout/stderr captured. Stdin is
/// `/dev/null` unless `stdin` is given (then it is written and closed).
pub fn spawn(mut cmd: Command, stdin: Option<Vec<u8>>) -> ScChild {
    let what = describe(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let stdout = Pipe::start(child.stdout.take().unwrap());
    let stderr = Pipe::start(child.stderr.take().unwrap());
    ScChild {
        child,
        stdout,
        stderr,
        what,
        started: Instant::now(),
        status: None,
    }
}

/// Run `cmd` to completion (stdin `/dev/null`), killing it and panicking after
/// `timeout`.
#[track_caller]
pub fn run(cmd: Command, timeout: Duration) -> RunOutput {
    spawn(cmd, None).wait(timeout)
}

impl ScChild {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.snapshot()).into_owned()
    }
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.snapshot()).into_owned()
    }

    /// JSON events printed on stderr so far.
    pub fn events_so_far(&self) -> Vec<Value> {
        crate::json_lines(&self.stderr_so_far())
    }

    /// Whether it has exited (and reap it if so).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        if let Ok(Some(st)) = self.child.try_wait() {
            self.status = Some(st);
        }
        self.status.is_some()
    }

    /// Wait for the first `--json` event named `name`; panics if the process
    /// exits first or after `timeout`.
    #[track_caller]
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            if let Some(e) = self
                .events_so_far()
                .into_iter()
                .find(|e| e["event"] == name)
            {
                return e;
            }
            if self.has_exited() {
                // Let the reader catch up with what was written before the exit.
                std::thread::sleep(Duration::from_millis(100));
                if let Some(e) = self
                    .events_so_far()
                    .into_iter()
                    .find(|e| e["event"] == name)
                {
                    return e;
                }
                panic!(
                    "{} exited ({:?}) without a {name:?} event\n--- stdout:\n{}\n--- stderr:\n{}",
                    self.what,
                    self.status.unwrap(),
                    self.stdout_so_far(),
                    self.stderr_so_far()
                );
            }
            if start.elapsed() >= timeout {
                panic!(
                    "no {name:?} event from {} after {timeout:?}\n--- stderr so far:\n{}",
                    self.what,
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send a signal to this process only (not its group).
    pub fn signal(&self, sig: i32) {
        crate::signal(self.pid(), sig);
    }

    /// Wait for the exit; on `timeout`, kill the process group and panic with
    /// what it printed.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> RunOutput {
        let start = Instant::now();
        let status = loop {
            if self.has_exited() {
                break self.status.unwrap();
            }
            if start.elapsed() >= timeout {
                self.kill_group();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {timeout:?}; killed\n--- stdout:\n{}\n--- stderr:\n{}",
                    self.what,
                    self.stdout_so_far(),
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        let grace = Instant::now();
        while !(self.stdout.is_eof() && self.stderr.is_eof()) && grace.elapsed() < EOF_GRACE {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stdout.finish();
        self.stderr.finish();
        RunOutput {
            status,
            stdout: self.stdout.snapshot(),
            stderr: self.stderr.snapshot(),
            stdout_eof: self.stdout.is_eof(),
            stderr_eof: self.stderr.is_eof(),
            what: self.what.clone(),
            elapsed,
        }
    }

    fn kill_group(&self) {
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
    }
}

impl Drop for ScChild {
    fn drop(&mut self) {
        // The group outlives its leader when the job was orphaned; kill it all.
        self.kill_group();
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
