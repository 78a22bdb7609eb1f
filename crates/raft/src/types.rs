//! The openraft type configuration.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Cursor;

/// A Raft member as openraft stores it in membership entries: the name and
/// address travel with the membership, so every node learns them from the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftNode {
    pub name: String,
    /// host:port of the member's gRPC listener.
    pub address: String,
}

impl fmt::Display for RaftNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

openraft::declare_raft_types!(
    /// haraft's Raft: entries carry `haraft_core::Command`s; each applied
    /// entry answers with the command's `Outcome` (none for blank and
    /// membership entries).
    pub TypeConfig:
        D = haraft_core::Command,
        R = Option<haraft_core::Outcome>,
        NodeId = u64,
        Node = RaftNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<u64, RaftNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, RaftNode>;
pub type StorageError = openraft::StorageError<u64>;
pub type RaftMetrics = openraft::RaftMetrics<u64, RaftNode>;
