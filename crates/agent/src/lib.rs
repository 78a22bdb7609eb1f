//! The `haraft` agent daemon, as a library so that tests can run several
//! agents in one process.
//!
//! What it is for: reading the configuration ([`config`]), starting the
//! Raft store, transport and admin API ([`agent`]), and the event loop that
//! carries `haraft_core`'s decisions out ([`driver`]).
//!
//! What it must never do: decide. Which command to propose, when a lease is
//! valid, when it lapses: all of that is `haraft_core`, fed with time read
//! here from CLOCK_BOOTTIME ([`clock`]).

pub mod admin;
pub mod agent;
pub mod auth;
pub mod callbacks;
pub mod clock;
pub mod commit_guard;
pub mod config;
pub mod database;
pub mod dirwatch;
pub mod driver;
pub mod embedded;
pub mod failpoint;
pub mod features;
pub mod fence;
pub mod operate;
pub mod rejoin;
pub mod rest;
pub mod shared;

pub use agent::{AgentHandle, start};
pub use driver::AgentEvent;
