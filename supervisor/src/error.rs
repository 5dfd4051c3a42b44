//! The crate's one error type, [`Error`], with the path (and value) of the
//! cgroupfs or procfs file that failed.
//!
//! Must not: erase context into strings (`to_string()` of an inner error), or
//! depend on anything but std, nix and thiserror.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

/// Everything that can go wrong in `sc-supervisor`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file (cgroup interface file, `/proc/...`).
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// Writing `value` to a cgroup interface file.
    #[error("write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    /// Creating a cgroup directory.
    #[error("create cgroup {path}: {source}")]
    Mkdir { path: PathBuf, source: io::Error },
    /// Removing a cgroup directory.
    #[error("remove cgroup {path}: {source}")]
    Rmdir { path: PathBuf, source: io::Error },
    /// Listing a cgroup directory.
    #[error("list cgroup {path}: {source}")]
    ReadDir { path: PathBuf, source: io::Error },
    /// A file's contents were not what the kernel documents.
    #[error("unexpected contents in {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    /// A relative group name that is empty, absolute, has `..`, or collides
    /// with interface file names.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// The tree has no usable cgroups ([`crate::BackendKind::None`]).
    #[error("cgroups are not available: {reason}")]
    NoBackend { reason: String },
    /// The backend lacks what the operation needs (e.g. freeze on v1
    /// without a freezer hierarchy or unified tree).
    #[error("{what} is not supported here ({backend})")]
    Unsupported { what: &'static str, backend: String },
    /// A bounded wait (freeze, kill, rmdir) ran out.
    #[error("{what} of {path} did not complete within {waited:?}")]
    Timeout {
        what: &'static str,
        path: PathBuf,
        waited: Duration,
    },
    /// `kill(2)` failed for a reason other than "no such process".
    #[error("send {signal} to pid {pid}: {source}")]
    Signal {
        pid: u32,
        signal: Signal,
        source: nix::errno::Errno,
    },
}
