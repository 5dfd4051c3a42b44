//! The clock that job leases on cluster resources are kept on: CLOCK_BOOTTIME.
//!
//! Why BOOTTIME: it is monotonic (no wall-clock jumps) and, unlike
//! CLOCK_MONOTONIC, it keeps counting while the machine is suspended. A lease
//! is a promise to the other hosts that the job stops by a deadline; a laptop
//! that sleeps through its deadline must find the lease expired when it
//! wakes, not carry on as if no time had passed while the resource was
//! granted to someone else.
//!
//! Why absolute values are safe: the daemon and `sc exec` run on the same
//! host and read the same kernel clock, so the daemon can send a deadline
//! (`Granted.lease_until_ms`, `Lease.until_ms`) as an instant on this clock
//! rather than a duration, and a message delayed in the socket cannot stretch
//! the lease. Never compare these values across hosts.

use nix::time::{ClockId, clock_gettime};

/// Milliseconds since boot, counting suspend (CLOCK_BOOTTIME).
pub fn now_ms() -> u64 {
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => (ts.tv_sec() as u64) * 1000 + (ts.tv_nsec() as u64) / 1_000_000,
        // CLOCK_BOOTTIME exists since Linux 2.6.39 and the call cannot fail
        // with a valid clock id; should it ever, "never expired" would be
        // the unsafe answer for a lease, so report the far future instead
        // (callers add to it with saturating arithmetic).
        Err(_) => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn boottime_moves_forward() {
        let a = super::now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = super::now_ms();
        assert!(a > 0 && b >= a + 5, "{a} {b}");
        assert_ne!(b, u64::MAX);
    }
}
