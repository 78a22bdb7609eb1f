//! openraft glue for haraft.
//!
//! What it is for: the openraft type configuration ([`types`]), the sled
//! log and state-machine store ([`store`], the only module that touches
//! sled), the member's identity record ([`identity`]) and acknowledged mark
//! ([`acked`]), the start-up checks that refuse a damaged, lost or foreign
//! store ([`integrity`]), the versioned, checksummed record codec
//! ([`codec`]) and the tonic transport ([`network`] for the client side,
//! [`server`] for the receiving side), and the wait for Raft to stop on
//! its own ([`stopped`]).
//!
//! What it must never do: decide anything about leases or primaries; that
//! is `haraft_core`. A command reaches the state only through Raft.

// openraft fixes the storage error type; its size is not ours to shrink.
#![allow(clippy::result_large_err)]

pub mod acked;
pub mod codec;
pub mod identity;
pub mod integrity;
pub mod memstore;
pub mod network;
pub mod server;
pub mod stopped;
pub mod store;
pub mod tls;
pub mod types;

pub use types::{Raft, RaftNode, TypeConfig};
