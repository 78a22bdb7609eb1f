//! The cluster's feature level: what every member's build can read, so
//! what members may write.
//!
//! A release that adds a record kind (a `Command` variant), a state the
//! previous release could not decode, or a new encoding gives it a level
//! here. The replicated state holds the level in force
//! ([`crate::ClusterState::feature_level`], 0 in a cluster that started on
//! haraft 0.1); each member reports the highest level its build knows in
//! every probe; the Raft leader raises the level ([`next_level`]) only when
//! every member answered with at least it. Until then members of the new
//! build write what the old build reads, so a cluster of mixed builds
//! keeps working and one host can be rolled back. ARCHITECTURE.md,
//! "Upgrades and compatibility", has the rules.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A level of the replicated format; never decreases in a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FeatureLevel(pub u32);

impl FeatureLevel {
    /// haraft 0.1: codec format 6 (bincode) everywhere. Also what a member
    /// whose probe says nothing about its level runs.
    pub const V0_1: FeatureLevel = FeatureLevel(0);
    /// haraft 0.2: records and payloads in CBOR (codec format 7), where a
    /// field added with a default is read by older and newer builds;
    /// `Command::SetFeatureLevel`.
    pub const CBOR_RECORDS: FeatureLevel = FeatureLevel(1);
    /// The highest level this build knows.
    pub const SUPPORTED: FeatureLevel = FeatureLevel::CBOR_RECORDS;
}

impl fmt::Display for FeatureLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What one member's probe said about its build: `None` when it did not
/// answer (its level is unknown, so nothing may be raised).
pub type LevelReport = (NodeId, Option<FeatureLevel>);

/// The level the Raft leader should propose, if any: the highest level
/// every member of `reports` (every Raft member, the leader included)
/// supports, when it is above `current`. A member that did not answer
/// holds the level where it is.
pub fn next_level(current: FeatureLevel, reports: &[LevelReport]) -> Option<FeatureLevel> {
    if reports.is_empty() {
        return None;
    }
    let mut lowest = FeatureLevel::SUPPORTED;
    for (_, level) in reports {
        lowest = lowest.min((*level)?);
    }
    (lowest > current).then_some(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(current: u32, reports: &[(u64, Option<u32>)], expected: Option<u32>) {
        let reports: Vec<LevelReport> = reports.iter().map(|(id, l)| (NodeId(*id), l.map(FeatureLevel))).collect();
        assert_eq!(
            next_level(FeatureLevel(current), &reports),
            expected.map(FeatureLevel),
            "current {current}, reports {reports:?}"
        );
    }

    #[test]
    fn raised_only_when_every_member_supports_it() {
        // Every member upgraded: raised.
        check(0, &[(1, Some(1)), (2, Some(1)), (3, Some(1))], Some(1));
        // One member still on 0.1 (it reports nothing, read as level 0).
        check(0, &[(1, Some(1)), (2, Some(0)), (3, Some(1))], None);
        // One member did not answer: it may be an old build.
        check(0, &[(1, Some(1)), (2, None), (3, Some(1))], None);
        // Nobody answered (not even the leader's own report).
        check(0, &[], None);
        // Already there.
        check(1, &[(1, Some(1)), (2, Some(1))], None);
        // A member of a newer build than this leader: raised only as far as
        // this build knows.
        check(0, &[(1, Some(1)), (2, Some(5))], Some(1));
    }

    #[test]
    fn never_lowered() {
        // A member rolled back after the raise reports a lower level; the
        // level stays (that member cannot read the cluster's records; the
        // README says so before the last member is upgraded).
        for reported in 0..=FeatureLevel::SUPPORTED.0 {
            for current in 0..=FeatureLevel::SUPPORTED.0 {
                let next = next_level(FeatureLevel(current), &[(NodeId(1), Some(FeatureLevel(reported)))]);
                assert!(next.is_none_or(|n| n > FeatureLevel(current)), "{current} -> {next:?}");
            }
        }
    }

    #[test]
    fn set_feature_level_is_a_compare_and_set_that_only_raises() {
        use crate::{ClusterState, Command, Effect, HistoryEvent, Outcome, Rejected};
        let set = |from, to| Command::SetFeatureLevel { from: FeatureLevel(from), to: FeatureLevel(to), at_unix_ms: 5 };
        let mut s = ClusterState::default();
        assert_eq!(s.apply(1, &set(0, 1)), Outcome::Applied(Effect::FeatureLevelSet { level: FeatureLevel(1) }));
        assert_eq!(s.feature_level, FeatureLevel(1));
        assert!(matches!(
            s.history.back().map(|h| &h.event),
            Some(HistoryEvent::FeatureLevelRaised { from: FeatureLevel(0), to: FeatureLevel(1) })
        ));
        let stale =
            Outcome::Rejected(Rejected::StaleFeatureLevel { proposed: FeatureLevel(1), current: FeatureLevel(1) });
        // A second leader's proposal of the same raise, from the old level.
        assert_eq!(s.apply(2, &set(0, 1)), stale);
        // Not a raise.
        assert_eq!(s.apply(3, &set(1, 1)), stale);
        assert!(matches!(s.apply(4, &set(1, 0)), Outcome::Rejected(Rejected::StaleFeatureLevel { .. })));
        assert_eq!(s.feature_level, FeatureLevel(1));
    }
}
