//! Starting a service's process: as its user, in its own session, placed in
//! its cgroup before it execs, with stdout and stderr piped to the daemon
//! (which writes them to the service's rotated log).
//!
//! The child moves itself into the cgroup in `pre_exec` by writing `0` to
//! each `cgroup.procs` (0 means "the writer"), then drops privileges by hand:
//! std applies `uid`/`gid` *before* `pre_exec` closures, and a process that
//! is no longer root could not join a root-owned cgroup.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A user to run as, resolved in the daemon (never after fork).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub name: String,
    pub home: String,
    pub shell: String,
}

impl RunAs {
    /// Look a user up by name or numeric uid.
    pub fn lookup(user: &str) -> Result<RunAs, String> {
        use nix::unistd::{Uid, User};
        let found = match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(user),
        };
        let u = found
            .map_err(|e| format!("cannot look up user {user:?}: {e}"))?
            .ok_or_else(|| format!("no user {user:?}"))?;
        let cname = CString::new(u.name.clone()).map_err(|_| format!("bad user name {user:?}"))?;
        let groups = nix::unistd::getgrouplist(&cname, u.gid)
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|_| vec![u.gid.as_raw()]);
        Ok(RunAs {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            groups,
            name: u.name,
            home: u.dir.display().to_string(),
            shell: u.shell.display().to_string(),
        })
    }

    /// The variables a login would set for this user.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), self.home.clone()),
            ("USER".into(), self.name.clone()),
            ("LOGNAME".into(), self.name.clone()),
            ("SHELL".into(), self.shell.clone()),
        ]
    }

    /// Switch to this user in the child (for commands not placed in a cgroup).
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        cmd.uid(self.uid).gid(self.gid);
        let groups = self.groups.clone();
        // SAFETY: setgroups is async-signal-safe; `groups` was built before fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Everything needed to start one service process.
pub struct Launch<'a> {
    pub argv: &'a [String],
    pub cwd: &'a str,
    /// Start from an empty environment (run-time services carry the
    /// environment of `sc service add`) or from the daemon's.
    pub clear_env: bool,
    pub env: &'a [(String, String)],
    pub user: Option<&'a RunAs>,
    /// `cgroup.procs` files to join before exec.
    pub cgroup_procs: Vec<PathBuf>,
}

/// Start the process. It is its own session and process group leader, so
/// signals for the daemon's terminal never reach it.
pub fn launch(l: &Launch<'_>) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&l.argv[0]);
    cmd.args(&l.argv[1..])
        .current_dir(l.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(false);
    if l.clear_env {
        cmd.env_clear();
    }
    if let Some(u) = l.user {
        cmd.envs(u.env());
    }
    cmd.envs(l.env.iter().map(|(k, v)| (k, v)));
    let procs: Vec<CString> = l
        .cgroup_procs
        .iter()
        .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
        .collect();
    let user = l.user.map(|u| (u.uid, u.gid, u.groups.clone()));
    // SAFETY: the closure only makes async-signal-safe calls (setsid, open,
    // write, close, setgroups, setgid, setuid) on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for p in &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
            }
            if let Some((uid, gid, groups)) = &user
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}
