//! What the pure decisions know about databases: a member's registration
//! (address and tags), and a plain summary of an observation.

use crate::ids::{Lsn, TimelineId};
use serde::{Deserialize, Serialize};

/// What a probe of one member returned: it answered, with its database's
/// status when it has one (none: a lease-only member).
pub type Live = std::collections::BTreeMap<crate::ids::NodeId, Option<DbStatus>>;

/// A member's database, as it registered itself in the replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbMember {
    /// host:port where the other members and clients reach its PostgreSQL.
    pub address: String,
    /// Never promote this member.
    pub nofailover: bool,
    /// Among equally advanced candidates the higher priority wins.
    pub priority: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DbRole {
    Primary,
    Standby,
}

/// The database server a member manages: what its observations come
/// from. Core branches on it only where a rule truly differs between
/// engines (Dameng's switchover steps, `dm_switchover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Engine {
    #[default]
    Postgres,
    OpenGauss,
    Dameng,
}

/// The primary's WAL position, reported with each renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbPosition {
    pub timeline: TimelineId,
    pub lsn: Lsn,
}

/// One observation of a member's local database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DbStatus {
    /// A data directory exists.
    pub has_data: bool,
    pub running: bool,
    pub role: Option<DbRole>,
    pub timeline: Option<TimelineId>,
    /// Primary: current write position. Standby: received position.
    pub lsn: Option<Lsn>,
    pub replayed_lsn: Option<Lsn>,
    pub system_identifier: Option<u64>,
    /// For a stopped directory: shut down cleanly?
    pub clean_shutdown: Option<bool>,
    /// Standby: the host:port it streams from, when streaming.
    pub streaming_from: Option<String>,
    /// Primary: who streams from it, by application name (member name).
    pub replicas: Vec<Replica>,
    /// Primary: the member names in `synchronous_standby_names` as haraft
    /// wrote it; `None` when the setting is not haraft's.
    pub synchronous_names: Option<Vec<String>>,
    /// How many of `synchronous_names` confirm each commit (`FIRST n` over
    /// n names: n; `ANY k`: k); `None` with `synchronous_names`, or while
    /// the commit guard holds commits.
    #[serde(default)]
    pub synchronous_quorum: Option<u32>,
    /// Primary: the physical replication slots haraft owns (named by
    /// `slot_name`); `None` when not observed.
    pub slots: Option<Vec<String>>,
    /// Primary: its timeline history, where each earlier timeline ended;
    /// `None` when not observed.
    pub forks: Option<Vec<Fork>>,
    /// New transactions are read-only by default there: haraft keeps
    /// every server so unless its member holds the lease. `None` when
    /// unknown (no data, or settings of a haraft that did not write it).
    #[serde(default)]
    pub read_only_default: Option<bool>,
    /// Someone asked the server to leave recovery (a promote request, or
    /// a running standby without its standby signal file).
    #[serde(default)]
    pub promotion_signalled: bool,
    /// The commit guard holds its commits: the holder's renewals are late.
    #[serde(default)]
    pub commits_held: bool,
    /// A running server that does not take haraft's settings: its
    /// configuration does not include haraft's settings file, or
    /// overrides a setting haraft manages (`postgresql.auto.conf`). A
    /// cluster haraft adopts starts so; haraft takes the settings over
    /// with a reload, never a restart.
    #[serde(default)]
    pub foreign_settings: bool,
    /// The engine whose observation this is.
    #[serde(default)]
    pub engine: Engine,
    /// The server process runs but serves no session (Dameng's MOUNT:
    /// `running` is false, `role` is its mode, `lsn` where its redo
    /// stands). Always false for the PostgreSQL family.
    #[serde(default)]
    pub mounted: bool,
    /// A rewind (pg_rewind, `gs_ctl build -b incremental`) started on this
    /// data directory and did not complete: it may be left part-way, and
    /// PostgreSQL's documentation asks for a new base backup. The adapter
    /// keeps this on disk (beside the data directory), so an agent that
    /// restarted knows it too (simulator seeds 100271, 105131: such a
    /// directory looked like a stopped standby and was started again and
    /// again, never rebuilt). Never encoded: probes at feature level 0
    /// are bincode in haraft 0.1's exact shape, which a new field would
    /// break both ways; the probe carries it as a field of its own
    /// (`ProbeReply.rewind_unfinished`). The member's reconciler rebuilds
    /// (or as holder releases the lease at once); the leader's verdicts
    /// never choose such a member (simulator seed 44468).
    #[serde(skip)]
    pub rewind_unfinished: bool,
}

/// Timeline `timeline` ended at `switch_lsn`: WAL of that timeline past
/// this point is not in the later timelines' history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    pub timeline: crate::ids::TimelineId,
    pub switch_lsn: crate::ids::Lsn,
}

impl DbStatus {
    /// A standby whose timeline ended (in `forks`) before what it holds
    /// diverged: it cannot follow without a rewind.
    pub fn diverged_from(&self, forks: &[Fork]) -> bool {
        match (self.timeline, self.lsn) {
            (Some(t), Some(lsn)) => forks.iter().any(|f| f.timeline == t && lsn > f.switch_lsn),
            _ => false,
        }
    }
}

/// The physical replication slot haraft keeps on the primary for a member:
/// `haraft_` and the member name, lowercased, other characters as `_`
/// (slot names allow only lowercase letters, digits and `_`).
pub fn slot_name(member: &str) -> String {
    let tail: String =
        member.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    format!("haraft_{tail}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Replica {
    pub name: String,
    pub streaming: bool,
    /// PostgreSQL counts it as a synchronous standby right now
    /// (`sync_state` sync, or quorum).
    pub sync: bool,
}

impl DbStatus {
    pub fn is_running_primary(&self) -> bool {
        self.running && self.role == Some(DbRole::Primary)
    }

    pub fn is_running_standby(&self) -> bool {
        self.running && self.role == Some(DbRole::Standby)
    }
}
