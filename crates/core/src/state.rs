//! The replicated cluster state and the only way to change it: `apply`.
//!
//! `apply` never fails: a command that is stale or conflicts with the state
//! is answered with a `Rejected` value and changes nothing.

use crate::db::{DbMember, DbPosition};
use crate::ids::{Epoch, Lsn, NodeId, RenewalSeq};
use crate::timing::{Policy, Timing};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// How many history entries the state keeps; older ones are dropped first.
/// 200 covers weeks of failovers on a healthy cluster and keeps snapshots small.
pub const HISTORY_LIMIT: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    /// host:port of the member's gRPC listener (Raft and admin API).
    pub address: String,
}

/// The primary assignment: who may be writable, under which epoch, and how
/// many renewals it has committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: NodeId,
    pub epoch: Epoch,
    pub renewal: RenewalSeq,
}

/// What the cluster is doing besides keeping its primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// The lease of `from` at `lapsed_epoch` lapsed; a new primary is being chosen.
    Failover { from: NodeId, lapsed_epoch: Epoch },
}

/// Why a member could or could not become primary when an epoch was
/// granted: the planner's inputs, kept in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub node: NodeId,
    pub eligible: bool,
    /// Plain words: "highest LSN", "lags 48 MiB (limit 16 MiB)", ...
    pub why: String,
    pub lsn: Option<Lsn>,
}

/// Something a member did to its own database that the history keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeEvent {
    /// pg_rewind discarded this member's WAL from `diverged_at` (on
    /// `timeline`) up to `discarded_to`, its last known position.
    Rewound { diverged_at: Option<Lsn>, timeline: Option<crate::ids::TimelineId>, discarded_to: Option<Lsn> },
    /// A fresh base backup replaced the data directory (the old one kept aside).
    Rebuilt { from: NodeId },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryEvent {
    Node { node: NodeId, event: NodeEvent },
    Initialized { cluster: String },
    MembersChanged { members: Vec<NodeId> },
    Granted { holder: NodeId, epoch: Epoch, verdicts: Vec<Verdict>, after: Option<DbPosition> },
    Lapsed { holder: NodeId, epoch: Epoch, renewals: RenewalSeq, last_position: Option<DbPosition> },
    Released { holder: NodeId, epoch: Epoch, why: String },
    Bootstrapped { holder: NodeId, epoch: Epoch, system_identifier: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The Raft log index of the entry that made this happen.
    pub log_index: u64,
    /// Wall-clock time the proposer stamped, for people only (never used in
    /// any decision); 0 when unknown.
    pub at_unix_ms: u64,
    pub event: HistoryEvent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClusterState {
    /// Empty until the first leader commits `Initialize`.
    pub cluster: String,
    pub members: BTreeMap<NodeId, Member>,
    /// The current primary assignment; `None` before the first grant and
    /// between a lapse and the next grant.
    pub lease: Option<Lease>,
    /// The highest epoch ever granted. Never decreases.
    pub epoch: Epoch,
    /// Cluster-wide settings; `None` until initialized.
    pub config: Option<Timing>,
    pub policy: Policy,
    pub operation: Option<Operation>,
    pub history: VecDeque<HistoryEntry>,
    /// Each member's database, as it registered itself. Members without
    /// one (lease-only agents) never hold the lease once any member has one.
    pub db_members: BTreeMap<NodeId, DbMember>,
    /// The database this cluster manages, recorded after bootstrap.
    pub system_identifier: Option<u64>,
    /// The primary's position as of its last renewal.
    pub primary_position: Option<DbPosition>,
    /// Synchronous mode: the standbys every commit waits for. Only they may
    /// be promoted. A standby enters `synchronous_standby_names` before it
    /// enters this set, and leaves this set before it leaves the setting.
    pub synchronous: std::collections::BTreeSet<NodeId>,
    /// The primary's timeline history (where earlier timelines ended), as
    /// its holder reported it: how a replica knows it diverged.
    pub forks: Vec<crate::db::Fork>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Written once, by the first leader: the cluster's name and settings.
    Initialize { cluster: String, config: Timing, policy: Policy },
    /// Written by the state machine whenever Raft membership changes.
    SetMembers { members: Vec<Member> },
    /// A member announces its database address and tags.
    Register { node: NodeId, db: DbMember },
    /// Assign `epoch` to `holder`. CAS: no lease is held and `epoch` is the
    /// next one. `verdicts` are the planner's inputs, kept in the history.
    Grant { holder: NodeId, epoch: Epoch, verdicts: Vec<Verdict>, at_unix_ms: u64 },
    /// The holder's heartbeat, with its database position. CAS on
    /// (epoch, renewal).
    Renew { holder: NodeId, epoch: Epoch, renewal: RenewalSeq, position: Option<DbPosition> },
    /// The Raft leader's expiry timer fired. CAS on (epoch, renewal): a
    /// renewal applied after the decision makes this stale.
    Lapse { holder: NodeId, epoch: Epoch, renewal: RenewalSeq, at_unix_ms: u64 },
    /// The holder gives its lease up (its database cannot run). CAS on
    /// (holder, epoch).
    Release { holder: NodeId, epoch: Epoch, why: String, at_unix_ms: u64 },
    /// A member reports what it did to its database, for the history.
    Report { node: NodeId, event: NodeEvent, at_unix_ms: u64 },
    /// The holder reports its database's timeline history. CAS on (holder, epoch).
    SetForks { holder: NodeId, epoch: Epoch, forks: Vec<crate::db::Fork> },
    /// The holder names its synchronous standbys. CAS on (holder, epoch).
    SetSynchronous { holder: NodeId, epoch: Epoch, standbys: std::collections::BTreeSet<NodeId> },
    /// The holder bootstrapped (or adopted) the database. CAS: holder at
    /// epoch, no identifier recorded yet.
    SetSystemIdentifier { holder: NodeId, epoch: Epoch, system_identifier: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Initialized,
    MembersSet,
    Registered,
    Reported,
    SynchronousSet,
    ForksSet,
    Released { holder: NodeId, epoch: Epoch },
    SystemIdentifierSet,
    Granted { holder: NodeId, epoch: Epoch },
    Renewed { epoch: Epoch, renewal: RenewalSeq },
    Lapsed { holder: NodeId, epoch: Epoch },
}

/// Why a command changed nothing. A value, not an error: stale commands are
/// expected whenever leaders change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejected {
    AlreadyInitialized { cluster: String },
    NotInitialized,
    NoMembers,
    UnknownMember { node: NodeId },
    DuplicateMember { node: NodeId },
    LeaseHeld { holder: NodeId, epoch: Epoch },
    LeaseVacant,
    StaleEpoch { proposed: Epoch, current: Epoch },
    StaleRenewal { proposed: RenewalSeq, current: RenewalSeq },
    NotHolder { node: NodeId, holder: NodeId },
    SystemIdentifierSet { system_identifier: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Applied(Effect),
    Rejected(Rejected),
}

impl ClusterState {
    pub fn holder(&self) -> Option<NodeId> {
        self.lease.map(|l| l.holder)
    }

    pub fn member_name(&self, id: NodeId) -> Option<&str> {
        self.members.get(&id).map(|m| m.name.as_str())
    }

    /// Applies one committed command at Raft log `log_index`.
    pub fn apply(&mut self, log_index: u64, command: &Command) -> Outcome {
        let epoch_before = self.epoch;
        let outcome = match self.check(command) {
            Err(rejected) => Outcome::Rejected(rejected),
            Ok(()) => Outcome::Applied(self.change(log_index, command)),
        };
        // The fencing token never goes backwards, and a held lease is always
        // the newest epoch.
        assert!(self.epoch >= epoch_before, "epoch decreased from {epoch_before} to {}", self.epoch);
        if let Some(lease) = self.lease {
            assert_eq!(lease.epoch, self.epoch, "held lease is not the newest epoch");
        }
        outcome
    }

    fn check(&self, command: &Command) -> Result<(), Rejected> {
        match command {
            Command::Initialize { .. } => {
                if self.config.is_some() {
                    return Err(Rejected::AlreadyInitialized { cluster: self.cluster.clone() });
                }
                Ok(())
            }
            Command::SetMembers { members } => {
                if members.is_empty() {
                    return Err(Rejected::NoMembers);
                }
                let mut seen = std::collections::BTreeSet::new();
                for m in members {
                    if !seen.insert(m.id) {
                        return Err(Rejected::DuplicateMember { node: m.id });
                    }
                }
                Ok(())
            }
            Command::Register { node, .. } | Command::Report { node, .. } => {
                if !self.members.contains_key(node) {
                    return Err(Rejected::UnknownMember { node: *node });
                }
                Ok(())
            }
            Command::SetSystemIdentifier { holder, epoch, .. }
            | Command::Release { holder, epoch, .. }
            | Command::SetSynchronous { holder, epoch, .. }
            | Command::SetForks { holder, epoch, .. } => {
                self.held_by(*holder, *epoch)?;
                if let (Command::SetSystemIdentifier { .. }, Some(id)) = (command, self.system_identifier) {
                    return Err(Rejected::SystemIdentifierSet { system_identifier: id });
                }
                Ok(())
            }
            Command::Grant { holder, epoch, .. } => {
                if self.config.is_none() {
                    return Err(Rejected::NotInitialized);
                }
                if !self.members.contains_key(holder) {
                    return Err(Rejected::UnknownMember { node: *holder });
                }
                if let Some(lease) = self.lease {
                    return Err(Rejected::LeaseHeld { holder: lease.holder, epoch: lease.epoch });
                }
                if *epoch != self.epoch.next() {
                    return Err(Rejected::StaleEpoch { proposed: *epoch, current: self.epoch });
                }
                Ok(())
            }
            Command::Renew { holder, epoch, renewal, .. } | Command::Lapse { holder, epoch, renewal, .. } => {
                let lease = self.held_by(*holder, *epoch)?;
                if *renewal != lease.renewal {
                    return Err(Rejected::StaleRenewal { proposed: *renewal, current: lease.renewal });
                }
                Ok(())
            }
        }
    }

    /// The current lease, if `holder` holds it at `epoch` (the first half
    /// of every lease CAS).
    fn held_by(&self, holder: NodeId, epoch: Epoch) -> Result<Lease, Rejected> {
        let Some(lease) = self.lease else {
            return Err(Rejected::LeaseVacant);
        };
        if epoch != lease.epoch {
            return Err(Rejected::StaleEpoch { proposed: epoch, current: lease.epoch });
        }
        if holder != lease.holder {
            return Err(Rejected::NotHolder { node: holder, holder: lease.holder });
        }
        Ok(lease)
    }

    fn change(&mut self, log_index: u64, command: &Command) -> Effect {
        match command {
            Command::Initialize { cluster, config, policy } => {
                self.cluster = cluster.clone();
                self.config = Some(*config);
                self.policy = *policy;
                self.record(log_index, 0, HistoryEvent::Initialized { cluster: cluster.clone() });
                Effect::Initialized
            }
            Command::SetMembers { members } => {
                self.members = members.iter().map(|m| (m.id, m.clone())).collect();
                self.db_members.retain(|id, _| self.members.contains_key(id));
                let ids = self.members.keys().copied().collect();
                self.record(log_index, 0, HistoryEvent::MembersChanged { members: ids });
                Effect::MembersSet
            }
            Command::Register { node, db } => {
                self.db_members.insert(*node, db.clone());
                Effect::Registered
            }
            Command::Report { node, event, at_unix_ms } => {
                self.record(log_index, *at_unix_ms, HistoryEvent::Node { node: *node, event: event.clone() });
                Effect::Reported
            }
            Command::Grant { holder, epoch, verdicts, at_unix_ms } => {
                // The new primary builds its own synchronous set; its
                // predecessor's named the new primary itself.
                self.synchronous.clear();
                self.lease = Some(Lease { holder: *holder, epoch: *epoch, renewal: RenewalSeq(0) });
                self.epoch = *epoch;
                self.operation = None;
                let event = HistoryEvent::Granted {
                    holder: *holder,
                    epoch: *epoch,
                    verdicts: verdicts.clone(),
                    after: self.primary_position,
                };
                self.record(log_index, *at_unix_ms, event);
                Effect::Granted { holder: *holder, epoch: *epoch }
            }
            Command::Renew { epoch, renewal, position, .. } => {
                let next = RenewalSeq(renewal.0 + 1);
                if let Some(lease) = self.lease.as_mut() {
                    lease.renewal = next;
                }
                if position.is_some() {
                    self.primary_position = *position;
                }
                Effect::Renewed { epoch: *epoch, renewal: next }
            }
            Command::Lapse { holder, epoch, renewal, at_unix_ms } => {
                self.lease = None;
                self.operation = Some(Operation::Failover { from: *holder, lapsed_epoch: *epoch });
                let event = HistoryEvent::Lapsed {
                    holder: *holder,
                    epoch: *epoch,
                    renewals: *renewal,
                    last_position: self.primary_position,
                };
                self.record(log_index, *at_unix_ms, event);
                Effect::Lapsed { holder: *holder, epoch: *epoch }
            }
            Command::Release { holder, epoch, why, at_unix_ms } => {
                self.lease = None;
                self.operation = Some(Operation::Failover { from: *holder, lapsed_epoch: *epoch });
                self.record(
                    log_index,
                    *at_unix_ms,
                    HistoryEvent::Released { holder: *holder, epoch: *epoch, why: why.clone() },
                );
                Effect::Released { holder: *holder, epoch: *epoch }
            }
            Command::SetSynchronous { standbys, .. } => {
                self.synchronous = standbys.clone();
                Effect::SynchronousSet
            }
            Command::SetForks { forks, .. } => {
                self.forks = forks.clone();
                Effect::ForksSet
            }
            Command::SetSystemIdentifier { holder, epoch, system_identifier } => {
                self.system_identifier = Some(*system_identifier);
                let event = HistoryEvent::Bootstrapped {
                    holder: *holder,
                    epoch: *epoch,
                    system_identifier: *system_identifier,
                };
                self.record(log_index, 0, event);
                Effect::SystemIdentifierSet
            }
        }
    }

    fn record(&mut self, log_index: u64, at_unix_ms: u64, event: HistoryEvent) {
        if self.history.len() == HISTORY_LIMIT {
            self.history.pop_front();
        }
        self.history.push_back(HistoryEntry { log_index, at_unix_ms, event });
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Initialize { cluster, .. } => write!(f, "initialize cluster={cluster}"),
            Command::SetMembers { members } => {
                write!(f, "set-members")?;
                for m in members {
                    write!(f, " {}={}", m.id, m.name)?;
                }
                Ok(())
            }
            Command::Register { node, db } => write!(f, "register node={node} db={}", db.address),
            Command::Report { node, event, .. } => write!(f, "report node={node} {event:?}"),
            Command::SetForks { holder, epoch, forks } => {
                write!(f, "set-timeline-history holder={holder} epoch={epoch} forks={}", forks.len())
            }
            Command::SetSynchronous { holder, epoch, standbys } => {
                let ids: Vec<String> = standbys.iter().map(|n| n.to_string()).collect();
                write!(f, "set-synchronous holder={holder} epoch={epoch} standbys=[{}]", ids.join(","))
            }
            Command::Grant { holder, epoch, .. } => write!(f, "grant holder={holder} epoch={epoch}"),
            Command::Renew { holder, epoch, renewal, .. } => {
                write!(f, "renew holder={holder} epoch={epoch} renewal={renewal}")
            }
            Command::Lapse { holder, epoch, renewal, .. } => {
                write!(f, "lapse holder={holder} epoch={epoch} renewal={renewal}")
            }
            Command::Release { holder, epoch, why, .. } => {
                write!(f, "release holder={holder} epoch={epoch} why={why:?}")
            }
            Command::SetSystemIdentifier { holder, epoch, system_identifier } => {
                write!(f, "set-system-identifier holder={holder} epoch={epoch} id={system_identifier}")
            }
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::AlreadyInitialized { cluster } => {
                write!(f, "cluster {cluster:?} is already initialized")
            }
            Rejected::NotInitialized => write!(f, "cluster is not initialized yet"),
            Rejected::NoMembers => write!(f, "membership would be empty"),
            Rejected::UnknownMember { node } => write!(f, "node {node} is not a member"),
            Rejected::DuplicateMember { node } => write!(f, "node id {node} appears twice"),
            Rejected::LeaseHeld { holder, epoch } => {
                write!(f, "node {holder} holds the lease at epoch {epoch}")
            }
            Rejected::LeaseVacant => write!(f, "no lease is held"),
            Rejected::StaleEpoch { proposed, current } => {
                write!(f, "stale epoch {proposed} (current {current})")
            }
            Rejected::StaleRenewal { proposed, current } => {
                write!(f, "stale renewal {proposed} (current {current})")
            }
            Rejected::NotHolder { node, holder } => {
                write!(f, "node {node} is not the holder (node {holder} is)")
            }
            Rejected::SystemIdentifierSet { system_identifier } => {
                write!(f, "the cluster's database is already recorded (system identifier {system_identifier})")
            }
        }
    }
}
