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

/// A cluster or member name: 1-64 letters, digits, '-', '_' or '.'.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `host:port` with a non-empty host and a port from 1 to 65535.
pub fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

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

/// A PostgreSQL write-ahead-log position. Never compared with a timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Lsn(pub u64);

/// A PostgreSQL timeline id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct TimelineId(pub u32);

impl Lsn {
    /// Parses PostgreSQL's `X/Y` text form (two hex numbers).
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn(((hi as u64) << 32) | lo as u64))
    }

    /// Bytes from `self` forward to `ahead`, zero if `ahead` is not ahead.
    pub fn bytes_until(self, ahead: Lsn) -> u64 {
        ahead.0.saturating_sub(self.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trip() {
        for (text, value) in
            [("0/0", 0u64), ("0/3000060", 0x3000060), ("16/B374D848", 0x16_B374_D848), ("FFFFFFFF/FFFFFFFF", u64::MAX)]
        {
            assert_eq!(Lsn::parse(text), Some(Lsn(value)), "{text}");
            assert_eq!(Lsn(value).to_string(), text);
        }
        for bad in ["", "0", "/1", "1/", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Lsn(10).bytes_until(Lsn(25)), 15);
        assert_eq!(Lsn(25).bytes_until(Lsn(10)), 0);
    }
}
