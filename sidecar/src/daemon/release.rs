//! The daemon's side of releasing a held child: `sc exec` passes the write
//! end of its held child's release pipe with `Exec` (SCM_RIGHTS, read by
//! `wire::FdReader`), and the grant writes the release into it right after
//! `Granted`, so the child does not wait for its `sc exec` to wake up and
//! do it (`cli/child.rs` has the format and the child's side). A client
//! that passed nothing, a release too long for one atomic write, or a job
//! queued while 256 others hold a pipe (each is an open descriptor of the
//! daemon's) falls back to the client writing it; `Granted { released }`
//! says which.

use sc_protocol::JobId;
use std::os::fd::OwnedFd;

/// A descriptor an `sc exec` passed as its held child's release pipe, if it
/// is one: the write end of a pipe. Made non-blocking, so that a pipe its
/// client filled can never stall the daemon (a release is one atomic write
/// of at most `PIPE_BUF` bytes, or none).
pub fn release_pipe(fd: OwnedFd) -> Option<OwnedFd> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let st = nix::sys::stat::fstat(&fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return None;
    }
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).ok()?);
    if flags & OFlag::O_ACCMODE != OFlag::O_WRONLY {
        return None;
    }
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).ok()?;
    Some(fd)
}

/// The release of a placed job's held child, written by the daemon itself.
pub struct Release {
    job: JobId,
    pipe: OwnedFd,
    msg: Vec<u8>,
}

impl Release {
    /// `None` when `msg` is too long for one atomic pipe write: then the
    /// client writes it.
    pub fn new(job: JobId, pipe: OwnedFd, msg: Vec<u8>) -> Option<Release> {
        (msg.len() <= libc::PIPE_BUF).then_some(Release { job, pipe, msg })
    }

    /// Let the child exec. A failure leaves it for the client to see: a
    /// child that died meanwhile (EPIPE) is reaped and reported by its
    /// `sc exec`; a pipe its client filled (EAGAIN) is that client's doing.
    pub fn fire(self) {
        match nix::unistd::write(&self.pipe, &self.msg) {
            Ok(n) if n == self.msg.len() => {}
            Ok(n) => tracing::warn!(
                job = self.job,
                "release of the held child cut short at {n} bytes"
            ),
            Err(e) => tracing::warn!(job = self.job, "cannot release the held child: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_write_end_of_a_pipe_is_taken_and_it_never_blocks() {
        let (r, w) = nix::unistd::pipe().unwrap();
        assert!(release_pipe(r).is_none(), "a read end");
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(release_pipe(file.into()).is_none(), "a regular file");
        let w = release_pipe(w).expect("a write end");
        let flags = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_ne!(flags & libc::O_NONBLOCK, 0);
    }

    #[test]
    fn a_release_is_written_whole_or_left_to_the_client() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let msg = crate::cli::child::release_message(&[("SC_JOB_ID".into(), "7".into())]);
        let release = Release::new(7, release_pipe(w).unwrap(), msg.clone()).unwrap();
        release.fire();
        let mut buf = vec![0u8; 64];
        let n = nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf[..n], &msg[..]);
        // Closed once written: the child sees no second writer from us.
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 0);
        let (_r, w) = nix::unistd::pipe().unwrap();
        let long = vec![0u8; libc::PIPE_BUF + 1];
        assert!(Release::new(8, w, long).is_none());
    }
}
