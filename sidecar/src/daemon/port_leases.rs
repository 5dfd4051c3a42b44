//! Live port leases. There is no separate lease table: a port is leased
//! while a job in the table or a defined service carries it, so every way
//! a job or service goes away (it ends, its `sc exec` is killed, it is
//! abandoned after a restart, the service is removed) frees its ports with
//! no release step to forget. Jobs' ports are persisted with their records;
//! services are restarted with the daemon and lease anew.

use super::state::Daemon;
use crate::ports::{PortRange, choose};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

/// The configured range and where the next search starts.
#[derive(Debug, Clone)]
pub struct PortLeaser {
    pub range: PortRange,
    next: u16,
}

impl PortLeaser {
    pub fn new(range: PortRange) -> PortLeaser {
        PortLeaser {
            range,
            next: range.first,
        }
    }
}

impl Daemon {
    /// Every port held by a job or a service now.
    pub fn leased_ports(&self) -> BTreeSet<u16> {
        let jobs = self.jobs.values().flat_map(|j| j.ports.iter());
        let services = self.services.entries.values().flat_map(|e| e.ports.iter());
        jobs.chain(services).map(|(_, p)| *p).collect()
    }

    /// Lease one free port per name, in order. All or nothing: on an
    /// exhausted range nothing is taken.
    pub fn lease_ports(&mut self, names: &[String]) -> Result<Vec<(String, u16)>, String> {
        let mut taken = self.leased_ports();
        let range = self.port_leaser.range;
        let mut next = self.port_leaser.next;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let port = choose(range, next, &|p| taken.contains(&p), &mut bindable).ok_or_else(
                || {
                    format!(
                        "--port {name}: no free port left in the host's port_range {range} ({} leased by sc, the rest in use by other programs)",
                        taken.len()
                    )
                },
            )?;
            taken.insert(port);
            next = if port == range.last {
                range.first
            } else {
                port + 1
            };
            out.push((name.clone(), port));
        }
        self.port_leaser.next = next;
        Ok(out)
    }
}

/// Whether nothing listens on `port` now: it can be bound on 127.0.0.1 and
/// on 0.0.0.0 (a server bound to either would collide with the holder).
fn bindable(port: u16) -> bool {
    [Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED]
        .into_iter()
        .all(|ip| TcpListener::bind(SocketAddrV4::new(ip, port)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindable_sees_a_listener() {
        let l = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(!bindable(port));
        drop(l);
    }
}
