//! Low-level cgroupfs file access: read, write (always `create(false)`, so a
//! missing interface file fails as it would on a real cgroupfs), mkdir,
//! rmdir with a bounded retry, listing child groups, and validation of the
//! relative group names callers pass in.
//!
//! Must not: know about controllers or backends, create regular files, or
//! delete anything but empty directories.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;

/// How often bounded waits re-check the kernel's state.
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// Reads a whole pseudo-file. Kernel interface files report a size of 0,
/// so `fs::read_to_string` starts with tiny probing reads (32 bytes, then
/// doubling): one `read(2)` into a page-sized buffer does the same job in
/// one call for every cgroup file we read.
pub fn read_pseudo(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let len = buf.len();
        if buf.capacity() - len < 1024 {
            buf.reserve(4096);
        }
        let spare = buf.capacity() - len;
        buf.resize(len + spare, 0);
        let n = loop {
            match f.read(&mut buf[len..]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match n {
            Ok(0) => {
                buf.truncate(len);
                break;
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
}

/// Reads an interface file.
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    read_pseudo(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads an interface file; `Ok(None)` when it does not exist (an optional
/// file like `memory.peak` on an old kernel, or a group already removed).
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, Error> {
    match read_pseudo(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `value` to an existing interface file in one `write(2)`.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), Error> {
    let res = OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(false)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| Error::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Parses a whole file holding one unsigned number (`"max"` is not a number).
pub(crate) fn parse_u64(path: &Path, text: &str) -> Result<u64, Error> {
    let t = text.trim();
    t.parse().map_err(|_| Error::Parse {
        path: path.to_owned(),
        detail: format!("expected an unsigned number, got {t:?}"),
    })
}

/// The value of `key` in a flat-keyed file (`"key value"` per line), e.g.
/// `populated` in `cgroup.events` or `oom_kill` in `memory.events`.
pub(crate) fn keyed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()).flatten()
    })
}

/// [`keyed`], parsed as `u64`; a missing key is `Ok(None)`.
pub(crate) fn keyed_u64(path: &Path, text: &str, key: &str) -> Result<Option<u64>, Error> {
    match keyed(text, key) {
        None => Ok(None),
        Some(v) => parse_u64(path, v).map(Some),
    }
}

/// Creates one directory; `Ok(true)` if created, `Ok(false)` if a directory
/// already existed there.
pub(crate) fn mkdir(path: &Path) -> Result<bool, Error> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(source) => Err(Error::Mkdir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes an empty cgroup directory. Absent is success. `EBUSY` right
/// after the last process exited is retried for up to `patience`.
pub(crate) fn rmdir(path: &Path, patience: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + patience;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(POLL);
            }
            Err(source) => {
                return Err(Error::Rmdir {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Names of the child directories (child groups) of `path`, sorted; empty
/// if `path` does not exist.
pub(crate) fn child_dirs(path: &Path) -> Result<Vec<String>, Error> {
    let err = |source: io::Error| Error::ReadDir {
        path: path.to_owned(),
        source,
    };
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_str().map(str::to_owned);
        match name {
            Some(name) if entry.file_type().map_err(err)?.is_dir() => names.push(name),
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}

/// Every directory below `path` (not `path` itself), deepest first, so they
/// can be removed in order.
pub(crate) fn descendants_deepest_first(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for name in child_dirs(path)? {
        let child = path.join(name);
        out.extend(descendants_deepest_first(&child)?);
        out.push(child);
    }
    Ok(out)
}

/// Polls `done` until it returns `Ok(true)` or `limit` passes; `Ok(false)`
/// on timeout. Errors from `done` end the wait.
pub(crate) fn wait_until(
    limit: Duration,
    mut done: impl FnMut() -> Result<bool, Error>,
) -> Result<bool, Error> {
    let deadline = Instant::now() + limit;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(POLL);
    }
}

/// Name prefixes that belong to kernel interface files; a group named
/// `memory.max` would collide with the file of that name.
const RESERVED_PREFIXES: &[&str] = &[
    "cgroup",
    "memory",
    "cpu",
    "cpuacct",
    "cpuset",
    "pids",
    "freezer",
    "io",
    "blkio",
    "hugetlb",
    "rdma",
    "misc",
    "devices",
    "net_cls",
    "net_prio",
    "perf_event",
    "irq",
];
const RESERVED_NAMES: &[&str] = &["tasks", "notify_on_release", "release_agent"];

/// Checks a relative group name like `"jobs/17"` and returns its components.
/// `allow_empty` permits `""` (the subtree root itself, for listing).
pub(crate) fn validate_rel(rel: &str, allow_empty: bool) -> Result<Vec<&str>, Error> {
    let bad = |reason| Error::InvalidName {
        name: rel.to_owned(),
        reason,
    };
    if rel.is_empty() {
        return if allow_empty {
            Ok(Vec::new())
        } else {
            Err(bad("empty"))
        };
    }
    if rel.starts_with('/') {
        return Err(bad("must be relative"));
    }
    let mut parts = Vec::new();
    for part in rel.split('/') {
        if part.is_empty() {
            return Err(bad("empty path component"));
        }
        if part.starts_with('.') {
            return Err(bad("component starts with '.'"));
        }
        if part.len() > 255 {
            return Err(bad("component longer than 255 bytes"));
        }
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "_-.@:+=".contains(c);
        if !part.chars().all(ok_char) {
            return Err(bad("only ASCII letters, digits and _-.@:+= are allowed"));
        }
        if RESERVED_NAMES.contains(&part) {
            return Err(bad("collides with a cgroup interface file"));
        }
        let prefix = part.split_once('.').map(|(p, _)| p);
        if prefix.is_some_and(|p| RESERVED_PREFIXES.contains(&p)) {
            return Err(bad("collides with a cgroup interface file"));
        }
        parts.push(part);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            validate_rel("jobs/17", false).ok(),
            Some(vec!["jobs", "17"])
        );
        assert!(validate_rel("", true).is_ok());
        for bad in [
            "",
            "/jobs",
            "jobs//1",
            "../x",
            "jobs/..",
            "a/.hidden",
            "memory.max",
            "cgroup.procs",
            "tasks",
            "a b",
            "jobs/",
        ] {
            assert!(validate_rel(bad, false).is_err(), "{bad:?} accepted");
        }
        assert!(validate_rel("my.svc", false).is_ok());
    }

    #[test]
    fn keyed_lines() {
        let t = "populated 1\nfrozen 0\n";
        assert_eq!(keyed(t, "frozen"), Some("0"));
        assert_eq!(keyed(t, "nope"), None);
        let p = Path::new("x");
        assert_eq!(keyed_u64(p, t, "populated").ok().flatten(), Some(1));
        assert!(keyed_u64(p, "populated x", "populated").is_err());
    }
}
