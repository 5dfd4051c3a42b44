//! Starting the job's command as our own child, held before `exec` until the
//! daemon has placed it in its cgroup.
//!
//! The child is forked first thing, before we even connect, so its pid goes
//! out with the `Exec` request and the daemon places it as part of the
//! grant: no round trip and no fork on the path from grant to start. It
//! waits in `read` on a pipe; the release carries the job's environment
//! additions (`SC_JOB_ID`, ...), which only the grant knows. The pipe's
//! write end also goes to the daemon with the `Exec` (SCM_RIGHTS), which
//! writes the release itself right after placing the child, so the child
//! starts without waiting for us to wake up; `Granted { released }` says
//! whether it did. Either way exactly one release is written.
//!
//! We fork by hand rather than with `std::process::Command`, whose `spawn`
//! returns only after the child has exec'd. Everything the child needs is
//! allocated before `fork`; after it the child only calls async-signal-safe
//! functions (`read`, `signal`, `execve`, `execvpe`, `write`, `_exit`) and
//! writes into memory reserved in advance.
//!
//! The child inherits cwd, stdin/stdout/stderr, the terminal, the process
//! group and the user, so it behaves as if typed without sc.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

/// Largest environment addition the release can carry.
const RELEASE_MAX: usize = 16 * 1024;
/// Most variables the release can add.
const EXTRA_MAX: usize = 64;

/// A forked child waiting at the barrier.
pub struct HeldChild {
    pub pid: i32,
    release: Option<OwnedFd>,
    errors: OwnedFd,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("command contains a NUL byte: {0:?}")]
    Nul(String),
    #[error("cannot create a pipe: {0}")]
    Pipe(nix::Error),
    #[error("cannot fork: {0}")]
    Fork(nix::Error),
}

fn cstrings(items: impl IntoIterator<Item = String>) -> Result<Vec<CString>, SpawnError> {
    items
        .into_iter()
        .map(|s| CString::new(s.clone()).map_err(|_| SpawnError::Nul(s)))
        .collect()
}

/// The key of a `KEY=VALUE` byte string.
fn key_of(kv: &[u8]) -> &[u8] {
    match kv.iter().position(|b| *b == b'=') {
        Some(i) => &kv[..i],
        None => kv,
    }
}

/// Read exactly `buf.len()` bytes (EINTR-safe, no allocation). False on EOF
/// or error.
unsafe fn read_full(fd: i32, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 || unsafe { *libc::__errno_location() } != libc::EINTR {
            return false;
        }
    }
    true
}

/// Where `execvpe` would find `prog`: the first executable regular file of
/// that name along `PATH`. Searched before the fork (before the job even
/// queues), so the released child makes one `execve` instead of one per `PATH`
/// entry in front of it (a job's start is on the hand-over's critical
/// path). `None` — a name with a slash, an empty `PATH` entry, nothing
/// found — leaves the search to `execvpe` itself, which also runs if the
/// found file fails (removed meanwhile, or a script without `#!` that
/// `execvpe` hands to `sh`): the child behaves exactly as `execvpe` would.
fn resolve_in_path(prog: &str) -> Option<CString> {
    use std::os::unix::fs::PermissionsExt;
    if prog.is_empty() || prog.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        if dir.as_os_str().is_empty() {
            return None;
        }
        let candidate = dir.join(prog);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        let Ok(c) = CString::new(candidate.into_os_string().into_encoded_bytes()) else {
            return None;
        };
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return Some(c);
        }
    }
    None
}

/// Fork the child and hold it before exec.
pub fn fork_held(argv: &[String]) -> Result<HeldChild, SpawnError> {
    use std::os::unix::ffi::OsStrExt;
    let args = cstrings(argv.iter().cloned())?;
    let resolved = argv.first().and_then(|p| resolve_in_path(p));
    let mut base: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(c) = CString::new(kv) {
            base.push(c);
        }
    }
    let prog = args[0].clone();
    let mut argp: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    // Room reserved now, filled in by the child after the release.
    let mut envp: Vec<*const libc::c_char> = vec![std::ptr::null(); base.len() + EXTRA_MAX + 1];
    let mut extra = vec![0u8; RELEASE_MAX + 1];

    let (release_r, release_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;

    // SAFETY: after fork the child only runs async-signal-safe code on data
    // prepared above, and ends in exec or _exit.
    match unsafe { nix::unistd::fork() }.map_err(SpawnError::Fork)? {
        nix::unistd::ForkResult::Child => unsafe {
            let rfd = release_r.as_raw_fd();
            let efd = err_w.as_raw_fd();
            libc::close(release_w.as_raw_fd());
            libc::close(err_r.as_raw_fd());
            // The release: a u32 length, then NUL-terminated KEY=VALUE
            // strings. EOF instead means the parent gave up (or died):
            // never run unplaced.
            let mut len = [0u8; 4];
            if !read_full(rfd, &mut len) {
                libc::_exit(125);
            }
            let len = u32::from_le_bytes(len) as usize;
            if len > RELEASE_MAX || !read_full(rfd, &mut extra[..len]) {
                libc::_exit(125);
            }
            // Additions first, then inherited variables they do not replace.
            let mut n = 0;
            let mut added: [&[u8]; EXTRA_MAX] = [&[]; EXTRA_MAX];
            for kv in extra[..len].split(|b| *b == 0).filter(|kv| !kv.is_empty()) {
                if n == EXTRA_MAX {
                    break;
                }
                added[n] = kv;
                envp[n] = kv.as_ptr().cast();
                n += 1;
            }
            // Each string in `extra` must end in NUL for exec: the sender
            // terminates every one, and `extra` has a spare zero byte.
            let n_added = n;
            for c in &base {
                let key = key_of(c.as_bytes());
                if added[..n_added].iter().any(|a| key_of(a) == key) {
                    continue;
                }
                envp[n] = c.as_ptr();
                n += 1;
            }
            envp[n] = std::ptr::null();
            // Rust ignores SIGPIPE; the command must get the default back.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if let Some(path) = &resolved {
                libc::execve(path.as_ptr(), argp.as_ptr(), envp.as_ptr());
            }
            libc::execvpe(prog.as_ptr(), argp.as_ptr(), envp.as_ptr());
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(efd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127);
        },
        nix::unistd::ForkResult::Parent { child } => {
            drop(release_r);
            drop(err_w);
            Ok(HeldChild {
                pid: child.as_raw(),
                release: Some(release_w),
                errors: err_r,
            })
        }
    }
}

/// The release as the held child reads it: a u32 length (little endian),
/// then NUL-terminated `KEY=VALUE` strings. Written by us or by the daemon.
pub fn release_message(env: &[(String, String)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            continue;
        }
        block.extend_from_slice(k.as_bytes());
        block.push(b'=');
        block.extend_from_slice(v.as_bytes());
        block.push(0);
    }
    block.truncate(RELEASE_MAX);
    let mut msg = (block.len() as u32).to_le_bytes().to_vec();
    msg.extend_from_slice(&block);
    msg
}

impl HeldChild {
    /// The release pipe's write end, to pass to the daemon with `Exec`.
    pub fn release_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.release.as_ref().map(|fd| fd.as_fd())
    }

    /// Let the child exec with `env` added to its environment — unless the
    /// daemon has `already` done so. Returns `Err(errno)` if exec failed
    /// (the child has then exited 127 and must still be reaped).
    pub fn release(&mut self, env: &[(String, String)], already: bool) -> Result<(), i32> {
        if let Some(fd) = self.release.take()
            && !already
        {
            let _ = nix::unistd::write(&fd, &release_message(env));
        }
        let mut buf = [0u8; 4];
        let mut got = 0;
        loop {
            match nix::unistd::read(&self.errors, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    if got == 4 {
                        break;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if got == 4 {
            Err(i32::from_ne_bytes(buf))
        } else {
            Ok(())
        }
    }

    /// Give up: the child ends without running the command. Reaps it.
    /// Closing our end of the pipe is not enough: the daemon may hold a
    /// copy of it (and be stopped), so the child is killed too.
    pub fn abort(&mut self) {
        self.release.take();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = wait(self.pid);
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

/// Block until `pid` ends (EINTR-safe).
pub fn wait(pid: i32) -> std::io::Result<Ended> {
    use nix::sys::wait::{WaitStatus, waitpid};
    let pid = nix::unistd::Pid::from_raw(pid);
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Ended::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Ended::Signal(sig as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Wait for `pid` without a thread: a pidfd becomes readable when the
/// process ends (Linux 5.3+). Falls back to a blocking wait on a thread.
pub async fn wait_async(pid: i32) -> std::io::Result<Ended> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return tokio::task::spawn_blocking(move || wait(pid))
            .await
            .map_err(std::io::Error::other)?;
    }
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd stays open and unchanged while the AsyncFd owns it.
    let afd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    loop {
        let mut guard = afd.readable().await?;
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Ended::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Ended::Signal(sig as i32)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => guard.clear_ready(),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_in_path;

    #[test]
    fn a_bare_name_resolves_to_the_file_execvp_would_run() {
        let found = resolve_in_path("sh").expect("sh is on PATH");
        let found = found.to_str().unwrap();
        assert!(found.starts_with('/') && found.ends_with("/sh"), "{found}");
    }

    #[test]
    fn names_with_a_slash_or_not_found_are_left_to_execvpe() {
        assert_eq!(resolve_in_path("./sh"), None);
        assert_eq!(resolve_in_path("/bin/sh"), None);
        assert_eq!(resolve_in_path("sc-no-such-command-anywhere"), None);
        assert_eq!(resolve_in_path(""), None);
    }
}
