//! The cluster (DESIGN §6): the cluster CA and node certificates
//! ([`certs`]), the mutual-TLS configuration of one node ([`tls`]),
//! chitchat's `Transport`/`Socket` over one quinn endpoint ([`transport`]),
//! one-message pushes of our state to chosen peers ([`push`]),
//! and the board on top of chitchat ([`board`], [`node`]).

pub mod bench;
pub mod board;
pub mod certs;
pub mod filter;
pub mod node;
pub mod push;
pub mod tls;
pub mod transport;
