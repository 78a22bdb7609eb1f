//! The state machine's record (`sm/state`, and the data of every snapshot)
//! in each codec format, with haraft 0.1's shape of the types that changed
//! since.
//!
//! Format 6 is bincode, which is not self-describing: a type reads back
//! only in exactly the shape it was written in. Every type in this record
//! whose shape changed after 0.1 has its 0.1 shape here, with conversions
//! both ways, so that this build reads a 0.1 store and, below feature level
//! 1, writes what a 0.1 member (or this host rolled back to 0.1) reads.
//! The fixture test (`tests/upgrade.rs` under `crates/raft`) fails when a
//! change to a type breaks reading 0.1's records.

use crate::codec::{self, CodecError, Format};
use crate::types::{LogId, SnapshotMeta, StoredMembership};
use haraft_core::ops::{NodeRequest, Scheduled};
use haraft_core::state::HistoryEntry;
use haraft_core::{
    ClusterState, DbMember, DbPosition, Epoch, FeatureLevel, Fork, Lease, Member, NodeId, Policy, Timing,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The persisted state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SmData {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: ClusterState,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub meta: SnapshotMeta,
    /// An encoded [`SmData`] (a codec record of its own).
    pub data: Vec<u8>,
}

impl SmData {
    /// Applies one entry; the command's outcome for a normal entry. Every
    /// store (sled, and memory in `memstore`) applies through this.
    pub(crate) fn apply_entry(&mut self, entry: crate::types::Entry) -> Option<haraft_core::Outcome> {
        use openraft::EntryPayload;
        let index = entry.log_id.index;
        self.applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Normal(command) => Some(self.state.apply(index, &command)),
            EntryPayload::Membership(membership) => {
                let members = super::members_of(&membership);
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                if !members.is_empty() {
                    self.state.apply(index, &haraft_core::Command::SetMembers { members });
                }
                None
            }
        }
    }

    /// The record in `format`: in format 6 as haraft 0.1 wrote it.
    pub fn encode(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Bincode6 => codec::encode_as(format, &SmDataV6::from(self.clone())),
            Format::Cbor7 => codec::encode_as(format, self),
        }
    }

    pub fn decode(what: &'static str, bytes: &[u8]) -> Result<SmData, CodecError> {
        let (format, body) = codec::checked_body(what, bytes)?;
        match format {
            Format::Bincode6 => codec::decode_body::<SmDataV6>(what, format, body).map(SmData::from),
            Format::Cbor7 => codec::decode_body(what, format, body),
        }
    }
}

/// [`SmData`] as haraft 0.1 stored it.
#[derive(Serialize, Deserialize)]
struct SmDataV6 {
    applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterStateV6,
}

/// `ClusterState` as haraft 0.1 stored it: the same fields in the same
/// order, without `feature_level` (0.1 is level 0).
#[derive(Serialize, Deserialize)]
struct ClusterStateV6 {
    cluster: String,
    members: BTreeMap<NodeId, Member>,
    lease: Option<Lease>,
    epoch: Epoch,
    config: Option<Timing>,
    policy: Policy,
    operation: Option<haraft_core::Operation>,
    history: VecDeque<HistoryEntry>,
    db_members: BTreeMap<NodeId, DbMember>,
    system_identifier: Option<u64>,
    primary_position: Option<DbPosition>,
    synchronous: BTreeSet<NodeId>,
    synchronous_quorum: u32,
    synchronous_fallback: Option<(BTreeSet<NodeId>, u32)>,
    forks: Vec<Fork>,
    paused: bool,
    scheduled: Option<Scheduled>,
    tasks: BTreeMap<NodeId, NodeRequest>,
    next_config: Option<Timing>,
    leaving: BTreeSet<NodeId>,
}

impl From<SmData> for SmDataV6 {
    fn from(d: SmData) -> SmDataV6 {
        let s = d.state;
        // Written only below level 1, where nothing else is set.
        debug_assert_eq!(s.feature_level, FeatureLevel::V0_1, "format 6 is written only at level 0");
        SmDataV6 {
            applied: d.applied,
            membership: d.membership,
            state: ClusterStateV6 {
                cluster: s.cluster,
                members: s.members,
                lease: s.lease,
                epoch: s.epoch,
                config: s.config,
                policy: s.policy,
                operation: s.operation,
                history: s.history,
                db_members: s.db_members,
                system_identifier: s.system_identifier,
                primary_position: s.primary_position,
                synchronous: s.synchronous,
                synchronous_quorum: s.synchronous_quorum,
                synchronous_fallback: s.synchronous_fallback,
                forks: s.forks,
                paused: s.paused,
                scheduled: s.scheduled,
                tasks: s.tasks,
                next_config: s.next_config,
                leaving: s.leaving,
            },
        }
    }
}

impl From<SmDataV6> for SmData {
    fn from(d: SmDataV6) -> SmData {
        let s = d.state;
        SmData {
            applied: d.applied,
            membership: d.membership,
            state: ClusterState {
                cluster: s.cluster,
                members: s.members,
                lease: s.lease,
                epoch: s.epoch,
                config: s.config,
                policy: s.policy,
                operation: s.operation,
                history: s.history,
                db_members: s.db_members,
                system_identifier: s.system_identifier,
                primary_position: s.primary_position,
                synchronous: s.synchronous,
                synchronous_quorum: s.synchronous_quorum,
                synchronous_fallback: s.synchronous_fallback,
                forks: s.forks,
                paused: s.paused,
                scheduled: s.scheduled,
                tasks: s.tasks,
                next_config: s.next_config,
                leaving: s.leaving,
                feature_level: FeatureLevel::V0_1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(level: FeatureLevel) -> SmData {
        let mut state = ClusterState { cluster: "demo".into(), epoch: Epoch(4), paused: true, ..Default::default() };
        state.feature_level = level;
        SmData { applied: None, membership: StoredMembership::default(), state }
    }

    #[test]
    fn both_formats_round_trip() {
        let old = data(FeatureLevel::V0_1);
        assert_eq!(SmData::decode("state", &old.encode(Format::Bincode6)), Ok(old));
        let new = data(FeatureLevel::CBOR_RECORDS);
        assert_eq!(SmData::decode("state", &new.encode(Format::Cbor7)), Ok(new));
    }

    #[test]
    fn format_6_is_the_0_1_shape_without_the_level() {
        // The current ClusterState under bincode would carry one more
        // field; 0.1's reader would find trailing bytes.
        let old = data(FeatureLevel::V0_1);
        let as_now = codec::encode_as(Format::Bincode6, &old);
        assert_ne!(old.encode(Format::Bincode6), as_now);
        assert!(matches!(codec::decode::<SmDataV6>("state", &as_now), Err(CodecError::Garbled { .. })));
    }

    /// Sizes and costs of the state record in both formats, printed; a
    /// measurement, not a check:
    /// `cargo test --release -p haraft-raft --lib store::state::tests::format_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement"]
    fn format_cost() {
        use haraft_core::{Command, RenewalSeq};
        let mut state = ClusterState::default();
        let members = (1..=3)
            .map(|i| Member { id: NodeId(i), name: format!("node{i}"), address: format!("10.0.0.1{i}:7001") })
            .collect();
        state.apply(
            1,
            &Command::Initialize { cluster: "main".into(), config: Timing::default(), policy: Policy::default() },
        );
        state.apply(2, &Command::SetMembers { members });
        for i in 0..400u64 {
            state.apply(
                3 + i,
                &Command::Audit {
                    node: NodeId(1),
                    what: format!("switchover to node{}", i % 3 + 1),
                    by: "ops@db1".into(),
                    refused: true,
                    result: "refused: node3 lags 48 MiB (limit 16 MiB)".into(),
                    at_unix_ms: 1_700_000_000_000 + i,
                },
            );
        }
        let data = SmData { applied: None, membership: StoredMembership::default(), state };
        let renew = Command::Renew { holder: NodeId(2), epoch: Epoch(7), renewal: RenewalSeq(9), position: None };
        for format in [Format::Bincode6, Format::Cbor7] {
            let started = std::time::Instant::now();
            let rounds = 200;
            let mut bytes = Vec::new();
            for _ in 0..rounds {
                bytes = data.encode(format);
                SmData::decode("state", &bytes).unwrap();
            }
            let each = started.elapsed() / rounds;
            println!(
                "{format:?}: state with {} history entries {} bytes, encode+decode {each:?}; a renewal {} bytes",
                data.state.history.len(),
                bytes.len(),
                codec::encode_as(format, &renew).len()
            );
        }
    }
}
