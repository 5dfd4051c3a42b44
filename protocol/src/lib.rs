//! sc-protocol: every type that crosses a process or host boundary in sc,
//! and the frame codec that carries them.
//!
//! This crate is pure: it does no I/O, reads no clock and spawns nothing.
//! The daemon and the CLI both frame and unframe bytes with [`codec`], so there
//! is one codec for blocking and async callers alike.
//!
//! - [`board`]: the cluster board's keys and values, and `sc board`'s view.
//! - [`dl`]: the one board value that carries a host's cluster-lock state.
//! - [`history`]: finished jobs (`sc history`) and where a job's memory
//!   reservation came from (learned, requested, default).
//! - [`codec`]: length-prefixed frames with a magic, a version and a kind.
//! - [`message`]: the local API, one `Request` variant per CLI verb.
//! - [`resource`]: cluster resources a job needs (`--needs`), their holders
//!   and state, and the fencing-token environment of a job.
//! - [`service`]: service definitions, probes, restart policy, views.
//! - [`status`]: `sc status`'s view of the host (re-exported by `message`).
//! - [`units`]: parsing and printing of sizes (`512M`, `1.5GiB`) and durations
//!   (`90s`, `5m`), shared by the CLI flags and the config file.

pub mod board;
pub mod codec;
pub mod dl;
pub mod history;
pub mod message;
pub mod resource;
pub mod service;
pub mod status;
pub mod units;

pub use codec::{CodecError, FrameDecoder, FrameKind, MAX_FRAME_LEN, PROTOCOL_VERSION};
pub use history::{HistoryEntry, MemSource, Reservation};
pub use message::*;
pub use resource::{ENV_FENCE_TOKEN, ENV_RESOURCE, fence_token_var, fence_tokens_of_env};
pub use service::*;
