//! `sc-supervisor`: one host's processes for sc. Cgroups (v2, v1, none) for
//! jobs and services — limits, freeze, kill, accounting — and host readings
//! (memory, memory pressure, CPU count).
//!
//! Must not: use the network, spawn processes, hold process-global mutable
//! state, or panic on anything read from outside the process. Blocking
//! calls are short and bounded; async callers wrap them in
//! `spawn_blocking`.

pub mod cgroup;
mod error;
pub mod host;
pub mod service;

pub use cgroup::{BackendInfo, BackendKind, Cgroup, CgroupTree, Limits, Usage};
pub use error::Error;
pub use host::{
    MemInfo, cpu_count, parse_meminfo, parse_psi_some_avg10, read_meminfo, read_memory_psi,
};
