//! Newtypes so that an epoch is never compared with a Raft term, nor a
//! renewal sequence with a log index.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A member's Raft node id, as written in every node's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct NodeId(pub u64);

/// The number of a primary assignment (the fencing token). It only grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Epoch(pub u64);

/// How many renewals the current assignment has committed. Every lease
/// transition is compare-and-set on (epoch, renewal sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct RenewalSeq(pub u64);

/// A point in time on this machine's CLOCK_BOOTTIME, in milliseconds.
/// Only meaningful on the machine that read it: never replicated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct BootTime(pub u64);

impl BootTime {
    pub fn plus_ms(self, ms: u64) -> BootTime {
        BootTime(self.0.saturating_add(ms))
    }
    /// Milliseconds from `self` until `later`, zero if `later` is not later.
    pub fn ms_until(self, later: BootTime) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

impl Epoch {
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for RenewalSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
