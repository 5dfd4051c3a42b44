//! Running under systemd (`configs/sc.service`): the readiness protocol of
//! `Type=notify` (datagrams such as `READY=1` to the unix socket named by
//! `$NOTIFY_SOCKET`, a path or an abstract address written with a leading
//! `@`; without the variable nothing is sent), and the choice of the cgroup
//! subtree, which with `Delegate=yes` on cgroup v2 needs the daemon moved
//! into a leaf of its own unit's group first (`[daemon] cgroup_leaf`).

use crate::config::CgroupLeaf;
use sc_supervisor::CgroupTree;
use std::os::unix::net::UnixDatagram;

/// The leaf the daemon moves into: `<unit cgroup>/daemon`, beside its
/// subtree `<unit cgroup>/sc-XXXXXXXX` of jobs and services.
const LEAF: &str = "daemon";

/// Detect the cgroup tree, moving into the leaf first when `mode` says so
/// (`auto`: started by systemd, `$INVOCATION_ID` set, in a `*.service` group).
pub fn cgroup_tree(instance: &str, mode: CgroupLeaf) -> CgroupTree {
    let wanted = match mode {
        CgroupLeaf::Never => false,
        CgroupLeaf::Always => true,
        CgroupLeaf::Auto => {
            std::env::var_os("INVOCATION_ID").is_some()
                && std::fs::read_to_string("/proc/self/cgroup")
                    .ok()
                    .and_then(|t| sc_supervisor::cgroup::v2_path(&t))
                    .is_some_and(|p| {
                        p.ends_with(".service") || p.ends_with(&format!(".service/{LEAF}"))
                    })
        }
    };
    if !wanted {
        return CgroupTree::detect(instance);
    }
    let (tree, moved, err) = CgroupTree::detect_delegated(instance, LEAF);
    match (moved, err) {
        (Some(m), _) => tracing::info!(
            leaf = %m.leaf.display(),
            delegated = %m.own.display(),
            "moved the daemon into a leaf of its delegated cgroup"
        ),
        (None, Some(e)) => tracing::warn!("cannot move the daemon into a leaf cgroup: {e}"),
        (None, None) => {}
    }
    tree
}

/// Sends `state` (newline-separated `KEY=VALUE` lines) to `$NOTIFY_SOCKET`.
/// A failure is logged, never fatal: systemd then times the start out on
/// its own, which says more than a daemon that refused to run.
pub fn notify(state: &str) {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&addr, state) {
        tracing::warn!(socket = ?addr, "cannot notify systemd ({state:?}): {e}");
    }
}

fn send(addr: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = addr.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), addr)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_an_abstract_address() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sc-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        send(std::ffi::OsStr::new(&format!("@{name}")), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }
}
