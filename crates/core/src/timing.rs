//! Lease timing: the cluster-wide settings, the rules that make them safe,
//! and the arithmetic both sides of the lease use.

use crate::ids::BootTime;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Cluster-wide lease settings, replicated in `ClusterState::config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// How long a committed renewal keeps the lease, measured by the Raft
    /// leader from when it applies the renewal.
    pub lease_ttl_ms: u64,
    /// How often the holder proposes a renewal.
    pub renew_interval_ms: u64,
    /// Bound on how much faster the holder's clock may run than the leader's,
    /// in parts per million; the holder shortens its lease by this fraction.
    pub clock_drift_ppm: u64,
    /// Time the holder reserves to stop being writable before its deadline.
    pub demote_budget_ms: u64,
}

impl Default for Timing {
    /// ttl 1.3 s, renewal every 250 ms, demote budget 100 ms (haraft-bench
    /// load and failover, README "Performance"). A failover waits at most
    /// one ttl after the last renewal the Raft leader applied (also when
    /// the Raft leader died with the primary: its successor counts from
    /// when it applied the last renewal, not from its election), then the
    /// promotion (0.1-0.3 s): median about 1.4 s. The holder's validity,
    /// 1.3 s x 0.99 - 0.1 s = 1.187 s, outlasts the replacement of a dead
    /// Raft leader at the default Raft timing (at most 0.8 s after its last
    /// heartbeat, see `RaftTiming`) plus a renewal interval, so a primary
    /// is not fenced because a replica host that led Raft died. 1% drift
    /// is 20x the 500 ppm NTP may slew a clock; the fence guard kills the
    /// server at the holder's deadline, and 100 ms after it is far more
    /// than a kill takes (the commit guard stops acknowledging commits
    /// long before, at the renewal interval + its margin).
    fn default() -> Self {
        Timing::DEFAULT
    }
}

impl Timing {
    /// `Timing::default()`, usable in constants.
    pub const DEFAULT: Timing =
        Timing { lease_ttl_ms: 1300, renew_interval_ms: 250, clock_drift_ppm: 10_000, demote_budget_ms: 100 };
}

/// A timing rule that a setting breaks, with the numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimingError {
    RenewIntervalZero,
    DriftTooLarge {
        clock_drift_ppm: u64,
    },
    TtlTooShort {
        lease_ttl_ms: u64,
        renew_interval_ms: u64,
        clock_drift_ppm: u64,
        demote_budget_ms: u64,
        minimum_ttl_ms: u64,
    },
}

impl fmt::Display for TimingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimingError::RenewIntervalZero => {
                write!(f, "lease.renew_interval_ms must be at least 1")
            }
            TimingError::DriftTooLarge { clock_drift_ppm } => {
                write!(f, "lease.clock_drift_ppm = {clock_drift_ppm} is too large: it must be below 500000 (50%)")
            }
            TimingError::TtlTooShort {
                lease_ttl_ms,
                renew_interval_ms,
                clock_drift_ppm,
                demote_budget_ms,
                minimum_ttl_ms,
            } => write!(
                f,
                "lease.ttl_ms = {lease_ttl_ms} is too short for lease.renew_interval_ms = {renew_interval_ms}: \
                 ttl x (1 - {clock_drift_ppm} ppm) - lease.demote_budget_ms ({demote_budget_ms}) must cover two renewal intervals; \
                 raise lease.ttl_ms to at least {minimum_ttl_ms} or lower lease.renew_interval_ms"
            ),
        }
    }
}

const PPM: u64 = 1_000_000;

/// Cluster-wide failover policy, replicated with the lease timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// A standby further behind the primary's last reported position than
    /// this is not promoted automatically.
    pub maximum_lag_on_failover_bytes: u64,
    /// How long the holder may try to (re)start its PostgreSQL before it
    /// releases the lease so that another member takes over.
    pub primary_start_timeout_ms: u64,
    /// When pg_rewind fails, rebuild from a base backup (keeping the old
    /// directory aside).
    pub rebuild_on_rewind_failure: bool,
    /// Commits wait for synchronous standbys named in the replicated
    /// state, and only such a standby may be promoted (see `sync`).
    pub synchronous_mode: crate::sync::SyncMode,
    /// How many standbys confirm each commit (`on`: the set's size;
    /// `quorum`: any this many of every healthy standby). At least 1.
    pub synchronous_node_count: u32,
    /// With fewer healthy standbys than `synchronous_node_count`, commits
    /// wait instead of going through with fewer confirmations.
    pub synchronous_strict: bool,
}

impl Default for Policy {
    /// 1 MiB of lag: a few hundred small transactions, as Patroni's default
    /// (1 MB); 30 s to restart a crashed primary in place, which covers
    /// crash recovery of a test-sized database many times over while still
    /// failing over within a minute when it cannot start.
    fn default() -> Self {
        Policy {
            maximum_lag_on_failover_bytes: 1024 * 1024,
            primary_start_timeout_ms: 30_000,
            rebuild_on_rewind_failure: true,
            synchronous_mode: crate::sync::SyncMode::Off,
            synchronous_node_count: 1,
            synchronous_strict: false,
        }
    }
}

impl Timing {
    /// Checks the rules; never adjusts a value.
    pub fn validate(self) -> Result<Timing, TimingError> {
        if self.renew_interval_ms == 0 {
            return Err(TimingError::RenewIntervalZero);
        }
        // Above 50% the "safe" lease would be a fraction of its ttl; such a
        // bound means the clocks are not trustworthy at all.
        if self.clock_drift_ppm >= PPM / 2 {
            return Err(TimingError::DriftTooLarge { clock_drift_ppm: self.clock_drift_ppm });
        }
        // The holder must be able to lose one renewal and still renew before
        // its deadline: validity >= 2 renewal intervals.
        let needed = 2 * self.renew_interval_ms + self.demote_budget_ms;
        if self.holder_validity_ms() < needed {
            // Smallest ttl with ttl*(1-ρ) >= needed, rounded up.
            let minimum_ttl_ms = (needed * PPM).div_ceil(PPM - self.clock_drift_ppm);
            return Err(TimingError::TtlTooShort {
                lease_ttl_ms: self.lease_ttl_ms,
                renew_interval_ms: self.renew_interval_ms,
                clock_drift_ppm: self.clock_drift_ppm,
                demote_budget_ms: self.demote_budget_ms,
                minimum_ttl_ms,
            });
        }
        Ok(self)
    }

    /// ttl shortened by the drift bound, before the demote budget.
    fn holder_validity_ms(&self) -> u64 {
        self.lease_ttl_ms.saturating_mul(PPM - self.clock_drift_ppm.min(PPM)) / PPM
    }

    /// The holder's deadline for a renewal sent at `t_send` (read before
    /// proposing) and committed as granted: t_send + ttl(1-ρ) - demote_budget.
    pub fn holder_deadline(&self, t_send: BootTime) -> BootTime {
        BootTime(t_send.0 + self.holder_validity_ms().saturating_sub(self.demote_budget_ms))
    }

    /// How long the holder waits for one renewal before giving it up: half
    /// its validity (ttl(1-ρ) - demote_budget). A renewal forwarded to a
    /// Raft leader that hangs (frozen, cut off, its disk full) is then
    /// abandoned in time for another attempt, to the leader elected
    /// meanwhile, before the holder's deadline. The validity rule
    /// (validity >= 2 renewal intervals) keeps this at least one interval.
    pub fn renewal_attempt_ms(&self) -> u64 {
        (self.holder_validity_ms().saturating_sub(self.demote_budget_ms) / 2).max(1)
    }

    /// When the holder tries again after a renewal failed: soon, but not in a
    /// tight loop (a quarter interval gives three retries before the next
    /// regular renewal).
    pub fn retry_interval_ms(&self) -> u64 {
        (self.renew_interval_ms / 4).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Timing::default().validate(), Ok(Timing::default()));
    }

    #[test]
    fn holder_deadline_subtracts_drift_and_budget() {
        let t = Timing::default();
        // 1300 * 0.99 - 100 = 1187
        assert_eq!(t.holder_deadline(BootTime(10_000)), BootTime(11_187));
    }

    #[test]
    fn a_renewal_attempt_leaves_room_for_another_before_the_deadline() {
        let t = Timing::default();
        // (1300 * 0.99 - 100) / 2
        assert_eq!(t.renewal_attempt_ms(), 593);
        for ttl in [2500u64, 3000, 10_000, 60_000] {
            for renew in [100u64, 500, 1000] {
                for budget in [0u64, 500] {
                    let Ok(t) = (Timing {
                        lease_ttl_ms: ttl,
                        renew_interval_ms: renew,
                        clock_drift_ppm: 10_000,
                        demote_budget_ms: budget,
                    })
                    .validate() else {
                        continue;
                    };
                    let window = t.holder_deadline(BootTime(0)).0;
                    // Two attempts (and the retry pause between them) fit.
                    assert!(
                        2 * t.renewal_attempt_ms() + t.retry_interval_ms() <= window + t.retry_interval_ms(),
                        "{t:?}"
                    );
                    assert!(t.renewal_attempt_ms() >= t.renew_interval_ms / 2, "{t:?}");
                }
            }
        }
    }

    #[test]
    fn holder_deadline_is_always_before_ttl() {
        for ttl in [100, 1000, 3000, 60_000] {
            for drift in [0, 1, 10_000, 400_000] {
                for budget in [0, 10, 500] {
                    let t = Timing {
                        lease_ttl_ms: ttl,
                        renew_interval_ms: 1,
                        clock_drift_ppm: drift,
                        demote_budget_ms: budget,
                    };
                    assert!(t.holder_deadline(BootTime(5)) <= BootTime(5 + ttl));
                }
            }
        }
    }

    #[test]
    fn short_ttl_is_refused_with_the_minimum() {
        let t = Timing { lease_ttl_ms: 2000, renew_interval_ms: 1000, ..Timing::default() };
        match t.validate() {
            Err(TimingError::TtlTooShort { minimum_ttl_ms, .. }) => {
                assert_eq!(minimum_ttl_ms, 2122);
                let fixed = Timing { lease_ttl_ms: minimum_ttl_ms, ..t };
                assert!(fixed.validate().is_ok());
                let one_less = Timing { lease_ttl_ms: minimum_ttl_ms - 1, ..t };
                assert!(one_less.validate().is_err());
            }
            other => panic!("expected TtlTooShort, got {other:?}"),
        }
    }

    #[test]
    fn zero_interval_and_huge_drift_are_refused() {
        assert_eq!(
            Timing { renew_interval_ms: 0, ..Timing::default() }.validate(),
            Err(TimingError::RenewIntervalZero)
        );
        assert!(matches!(
            Timing { clock_drift_ppm: 500_000, ..Timing::default() }.validate(),
            Err(TimingError::DriftTooLarge { .. })
        ));
    }
}
