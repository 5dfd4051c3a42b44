//! Starting the job's command as our own child, held before `exec` until the
//! daemon has placed it in its cgroup.
//!
//! We fork by hand rather than with `std::process::Command`, because
//! `Command::spawn` returns only after the child has exec'd, and the child
//! must not exec before its pid has been sent to the daemon and placed.
//! Everything the child needs (argv, envp) is allocated before `fork`; after
//! it the child only calls async-signal-safe functions: `read`, `signal`,
//! `execvpe`, `write`, `_exit`.
//!
//! The child inherits cwd, stdin/stdout/stderr, the terminal, the process
//! group and the user, so it behaves as if typed without sc.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

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

/// Fork the child and hold it before exec.
pub fn fork_held(argv: &[String], extra_env: &[(String, String)]) -> Result<HeldChild, SpawnError> {
    use std::os::unix::ffi::OsStrExt;
    let args = cstrings(argv.iter().cloned())?;
    let mut env: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if extra_env
            .iter()
            .any(|(ek, _)| ek.as_bytes() == k.as_bytes())
        {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(c) = CString::new(kv) {
            env.push(c);
        }
    }
    env.extend(cstrings(extra_env.iter().map(|(k, v)| format!("{k}={v}")))?);
    let prog = args[0].clone();

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
            let mut b = [0u8; 1];
            loop {
                let n = libc::read(rfd, b.as_mut_ptr().cast(), 1);
                if n == 1 {
                    break;
                }
                if n == 0 || *libc::__errno_location() != libc::EINTR {
                    // The parent gave up (or died): never run unplaced.
                    libc::_exit(125);
                }
            }
            // Rust ignores SIGPIPE; the command must get the default back.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut argp: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
            argp.push(std::ptr::null());
            let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
            envp.push(std::ptr::null());
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

impl HeldChild {
    /// Let the child exec. Returns `Err(errno)` if exec failed (the child
    /// has then exited 127 and must still be reaped).
    pub fn release(&mut self) -> Result<(), i32> {
        if let Some(fd) = self.release.take() {
            let _ = nix::unistd::write(&fd, &[1u8]);
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

    /// Give up: the child exits without running the command.
    pub fn abort(&mut self) {
        self.release.take();
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
