//! The replicated cluster state and the only way to change it: `apply`.
//!
//! `apply` never fails: a command that is stale or conflicts with the state
//! is answered with a `Rejected` value and changes nothing.

use crate::db::{DbMember, DbPosition};
use crate::features::FeatureLevel;
use crate::ids::{Epoch, Lsn, NodeId, RenewalSeq};
use crate::ops::{NodeRequest, NodeTask, OpId, OpOutcome, Order, Scheduled, Switchover, SwitchoverStep};
use crate::timing::{Policy, Timing};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// How many history entries the state keeps; older ones are dropped first.
/// 200 covers weeks of failovers on a healthy cluster and keeps snapshots small.
pub const HISTORY_LIMIT: usize = 200;

/// The longest text an audit record keeps of a request, caller or result.
pub const AUDIT_FIELD_LIMIT: usize = 512;

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
    /// An operator asked for `to` to become primary (the cluster had no
    /// healthy primary).
    ManualFailover { id: OpId, to: NodeId, allow_data_loss: bool },
    /// A planned switchover, one committed step at a time.
    Switchover(Switchover),
}

impl Operation {
    pub fn id(&self) -> Option<OpId> {
        match self {
            Operation::Failover { .. } => None,
            Operation::ManualFailover { id, .. } => Some(*id),
            Operation::Switchover(s) => Some(s.id),
        }
    }
}

/// What happened to an operator's operation, for the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpEvent {
    Requested { what: String, by: String },
    Step { what: String },
    Ended { outcome: OpOutcome },
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
    /// The member's database was promoted by someone other than haraft
    /// (seen at `timeline`, `lsn`) and fenced; a rewind discards what it
    /// wrote when it rejoins.
    PromotedOutside { timeline: Option<crate::ids::TimelineId>, lsn: Option<Lsn> },
    /// What `Rewound` says, with how exactly it is known (see
    /// [`crate::loss::Discard`]). Written by every rewind since; `Rewound`
    /// stays for entries written before. New variants go at the end: every
    /// stored log stays readable.
    RewoundAccounted { discard: crate::loss::Discard },
    /// A first base backup made this member's data directory (it had none).
    Copied { from: NodeId },
    /// What `Rebuilt` says, when the directory replaced held WAL past
    /// where the new primary's history left its timeline (a former
    /// primary whose rewind failed): what the copy discarded, measured
    /// before it (the old directory is kept aside). Written from feature
    /// level 1; below it a member writes `Rebuilt`.
    RebuiltAccounted { from: NodeId, discard: crate::loss::Discard },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryEvent {
    Node {
        node: NodeId,
        event: NodeEvent,
    },
    Initialized {
        cluster: String,
    },
    MembersChanged {
        members: Vec<NodeId>,
    },
    Granted {
        holder: NodeId,
        epoch: Epoch,
        verdicts: Vec<Verdict>,
        after: Option<DbPosition>,
    },
    Lapsed {
        holder: NodeId,
        epoch: Epoch,
        renewals: RenewalSeq,
        last_position: Option<DbPosition>,
    },
    Released {
        holder: NodeId,
        epoch: Epoch,
        why: String,
    },
    Bootstrapped {
        holder: NodeId,
        epoch: Epoch,
        system_identifier: u64,
    },
    Operation {
        id: OpId,
        event: OpEvent,
    },
    /// An operator's request that did not become an operation (refused by
    /// a permission or a check), or one carried out outside the operation
    /// machinery (adding a member): who asked, what, and what came of it.
    /// `node` is the member that answered; `times` counts identical
    /// requests in a row (one entry, so a repeated refusal cannot flush
    /// the history).
    Audit {
        node: NodeId,
        what: String,
        by: String,
        refused: bool,
        result: String,
        times: u32,
    },
    /// An operator acknowledged every discarded write recorded before this
    /// entry (`haraftctl history ack`): status stops warning about them.
    LossAcknowledged {
        by: String,
    },
    /// `Bootstrapped`, saying how (see [`DataOrigin`]).
    DatabaseSet {
        holder: NodeId,
        epoch: Epoch,
        system_identifier: u64,
        origin: DataOrigin,
    },
    /// Every member runs a build that reads level `to`: members now write
    /// what only such builds read.
    FeatureLevelRaised {
        from: FeatureLevel,
        to: FeatureLevel,
    },
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
    /// How many members of `synchronous` hold every acknowledged commit
    /// (`sync::SyncSet`: all of them in mode `on`, k in mode `quorum`).
    pub synchronous_quorum: u32,
    /// Synchronous mode, from a grant until the new holder claims the
    /// synchronous set (before it becomes writable): the members that held
    /// every acknowledged write at the grant (the synchronous set and the
    /// previous holder). If the new holder loses the lease before it ever
    /// was writable, they are the synchronous set again, so that a failover
    /// can still choose among them.
    pub synchronous_fallback: Option<(std::collections::BTreeSet<NodeId>, u32)>,
    /// The primary's timeline history (where earlier timelines ended), as
    /// its holder reported it: how a replica knows it diverged.
    pub forks: Vec<crate::db::Fork>,
    /// Maintenance mode: no automatic failover, no automatic actions on
    /// databases (fencing still happens).
    pub paused: bool,
    /// A switchover waiting for its time.
    pub scheduled: Option<Scheduled>,
    /// Operator tasks (rebuild, restart) a member has yet to carry out.
    pub tasks: BTreeMap<NodeId, NodeRequest>,
    /// Lease timing set at runtime, in force from the next grant: a lease
    /// keeps the timing it was granted with (the holder's deadline and the
    /// leader's timer must use the same ttl).
    pub next_config: Option<Timing>,
    /// Members an operator removed that are still in the Raft membership
    /// until the change commits there: no longer members for every
    /// decision (no database, no lease, not synchronous). Being voters
    /// still, they learn of it, and their agents stop their databases.
    pub leaving: std::collections::BTreeSet<NodeId>,
    /// What every member's build reads ([`crate::features`]); 0 in a
    /// cluster started on haraft 0.1, raised by `SetFeatureLevel`.
    #[serde(default)]
    pub feature_level: FeatureLevel,
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
    SetSynchronous { holder: NodeId, epoch: Epoch, standbys: std::collections::BTreeSet<NodeId>, quorum: u32 },
    /// The holder bootstrapped (or adopted) the database. CAS: holder at
    /// epoch, no identifier recorded yet.
    SetSystemIdentifier { holder: NodeId, epoch: Epoch, system_identifier: u64 },
    /// An operator's request, checked on the Raft leader against fresh
    /// probes; `apply` checks it again against the state.
    Operator { order: Order, by: String, at_unix_ms: u64 },
    /// Switchover: the old primary stopped cleanly at `last` and gives the
    /// lease up. CAS: holder at epoch, switchover `id` at its first step.
    SwitchoverDemoted { holder: NodeId, epoch: Epoch, id: OpId, last: DbPosition, at_unix_ms: u64 },
    /// Switchover: the target is a running primary. CAS: holder at epoch,
    /// switchover `id` promoting it.
    SwitchoverPromoted { holder: NodeId, epoch: Epoch, id: OpId, at_unix_ms: u64 },
    /// Switchover: the old primary streams from the new one; done.
    SwitchoverRejoined { node: NodeId, id: OpId, at_unix_ms: u64 },
    /// A member records an operator's request it answered without an
    /// operation: refused, or done outside one (see `HistoryEvent::Audit`).
    Audit { node: NodeId, what: String, by: String, refused: bool, result: String, at_unix_ms: u64 },
    /// A member finished (or failed) an operator task on its database.
    TaskDone { node: NodeId, id: OpId, error: Option<String>, at_unix_ms: u64 },
    /// The Raft leader ends operation `id` (a step took too long, a
    /// scheduled switchover could not run).
    EndOperation { id: OpId, outcome: OpOutcome, at_unix_ms: u64 },
    /// The Raft leader starts the scheduled switchover `id`: its time came
    /// and its preconditions hold. CAS: its old primary holds `epoch`.
    StartScheduled { id: OpId, epoch: Epoch, at_unix_ms: u64 },
    /// `SetSystemIdentifier` with how the database came to be and when, for
    /// the history; written instead of it since. New variants go at the
    /// end: every stored log stays readable.
    SetDatabase { holder: NodeId, epoch: Epoch, system_identifier: u64, origin: DataOrigin, at_unix_ms: u64 },
    /// Dameng's switchover: `node` did its part of the current step
    /// (`dm_switchover`). CAS on the lease, the switchover and its step.
    /// Appended last: stored logs stay readable.
    DmSwitchover { node: NodeId, epoch: Epoch, id: OpId, done: crate::dm_switchover::DmDone, at_unix_ms: u64 },
    /// The Raft leader's: every member reported a build that supports
    /// `to` (CAS on `from`). Feature level 1: proposed only when every
    /// member knows it, like every later variant.
    SetFeatureLevel { from: FeatureLevel, to: FeatureLevel, at_unix_ms: u64 },
}

/// How the cluster's database came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataOrigin {
    /// The first holder created it (initdb).
    Created,
    /// The first holder's data directory, not running, became it.
    ExistingData,
    /// The first holder's running primary was adopted as it ran.
    RunningPrimary,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Initialized,
    MembersSet,
    Registered,
    Reported,
    SynchronousSet,
    ForksSet,
    Released {
        holder: NodeId,
        epoch: Epoch,
    },
    SystemIdentifierSet,
    Granted {
        holder: NodeId,
        epoch: Epoch,
    },
    Renewed {
        epoch: Epoch,
        renewal: RenewalSeq,
    },
    Lapsed {
        holder: NodeId,
        epoch: Epoch,
    },
    /// An operator request was committed as operation `id`.
    Accepted {
        id: OpId,
    },
    OperationStep,
    OperationEnded,
    FeatureLevelSet {
        level: FeatureLevel,
    },
}

/// Why a command changed nothing. A value, not an error: stale commands are
/// expected whenever leaders change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejected {
    AlreadyInitialized {
        cluster: String,
    },
    NotInitialized,
    NoMembers,
    UnknownMember {
        node: NodeId,
    },
    MemberLeaving {
        node: NodeId,
    },
    DuplicateMember {
        node: NodeId,
    },
    LeaseHeld {
        holder: NodeId,
        epoch: Epoch,
    },
    LeaseVacant,
    StaleEpoch {
        proposed: Epoch,
        current: Epoch,
    },
    StaleRenewal {
        proposed: RenewalSeq,
        current: RenewalSeq,
    },
    NotHolder {
        node: NodeId,
        holder: NodeId,
    },
    SystemIdentifierSet {
        system_identifier: u64,
    },
    OperationInProgress {
        what: String,
    },
    SwitchoverScheduled {
        id: OpId,
    },
    Paused,
    AlreadyPaused {
        paused: bool,
    },
    SameNode {
        node: NodeId,
    },
    NoDatabase {
        node: NodeId,
    },
    IsPrimary {
        node: NodeId,
    },
    TaskPending {
        node: NodeId,
        id: OpId,
    },
    NoSuchOperation {
        id: OpId,
    },
    NothingToCancel,
    TooLateToCancel {
        id: OpId,
    },
    BadConfig {
        why: String,
    },
    NothingToAcknowledge,
    /// A DM switchover target reported less redo applied than the old
    /// primary's last.
    SwitchoverBehind {
        node: NodeId,
        applied: Lsn,
        last: Lsn,
    },
    /// A `SetFeatureLevel` whose `from` is not the level in force, or that
    /// would not raise it.
    StaleFeatureLevel {
        proposed: FeatureLevel,
        current: FeatureLevel,
    },
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
            Command::Register { node, .. } | Command::Report { node, .. } | Command::Audit { node, .. } => {
                if !self.members.contains_key(node) {
                    return Err(Rejected::UnknownMember { node: *node });
                }
                if matches!(command, Command::Register { .. }) && self.leaving.contains(node) {
                    return Err(Rejected::MemberLeaving { node: *node });
                }
                Ok(())
            }
            Command::SetSystemIdentifier { holder, epoch, .. }
            | Command::SetDatabase { holder, epoch, .. }
            | Command::Release { holder, epoch, .. }
            | Command::SetSynchronous { holder, epoch, .. }
            | Command::SetForks { holder, epoch, .. } => {
                self.held_by(*holder, *epoch)?;
                let sets_database =
                    matches!(command, Command::SetSystemIdentifier { .. } | Command::SetDatabase { .. });
                if let (true, Some(id)) = (sets_database, self.system_identifier) {
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
                if self.leaving.contains(holder) {
                    return Err(Rejected::MemberLeaving { node: *holder });
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
                // A removed member's lease is renewed no more: it lapses on
                // the leader's timer like any other (never earlier).
                if matches!(command, Command::Renew { .. }) && !self.is_member(*holder) {
                    return Err(Rejected::UnknownMember { node: *holder });
                }
                let lease = self.held_by(*holder, *epoch)?;
                if *renewal != lease.renewal {
                    return Err(Rejected::StaleRenewal { proposed: *renewal, current: lease.renewal });
                }
                Ok(())
            }
            Command::Operator { order, .. } => self.check_order(order),
            Command::SwitchoverDemoted { holder, epoch, id, .. } => {
                self.held_by(*holder, *epoch)?;
                match self.switchover(*id) {
                    Some(s) if s.from == *holder && s.step == SwitchoverStep::Requested => Ok(()),
                    _ => Err(Rejected::NoSuchOperation { id: *id }),
                }
            }
            Command::SwitchoverPromoted { holder, epoch, id, .. } => {
                self.held_by(*holder, *epoch)?;
                match self.switchover(*id) {
                    Some(s) if s.to == *holder && matches!(s.step, SwitchoverStep::Promoting { .. }) => Ok(()),
                    _ => Err(Rejected::NoSuchOperation { id: *id }),
                }
            }
            Command::SwitchoverRejoined { node, id, .. } => match self.switchover(*id) {
                Some(s) if s.from == *node && matches!(s.step, SwitchoverStep::Rejoining { .. }) => Ok(()),
                _ => Err(Rejected::NoSuchOperation { id: *id }),
            },
            Command::TaskDone { node, id, .. } => match self.tasks.get(node) {
                Some(t) if t.id == *id => Ok(()),
                _ => Err(Rejected::NoSuchOperation { id: *id }),
            },
            Command::EndOperation { id, .. } => match &self.operation {
                // Between the old primary's stop and the target's promotion
                // only a grant (to the target, or back to the old primary)
                // ends a switchover: nobody else may be left as primary.
                Some(Operation::Switchover(s)) if s.id == *id => match s.step {
                    SwitchoverStep::Requested | SwitchoverStep::Rejoining { .. } => Ok(()),
                    SwitchoverStep::Dm(step) if crate::dm_switchover::may_end(step) => Ok(()),
                    _ => Err(Rejected::TooLateToCancel { id: *id }),
                },
                Some(Operation::ManualFailover { id: op, .. }) if op == id => Ok(()),
                _ if self.scheduled.as_ref().is_some_and(|s| s.id == *id) => Ok(()),
                _ => Err(Rejected::NoSuchOperation { id: *id }),
            },
            Command::DmSwitchover { node, epoch, id, done, .. } => {
                crate::dm_switchover::check(self, *node, *epoch, *id, *done)
            }
            Command::SetFeatureLevel { from, to, .. } => {
                if *from != self.feature_level || to <= from {
                    return Err(Rejected::StaleFeatureLevel { proposed: *to, current: self.feature_level });
                }
                Ok(())
            }
            Command::StartScheduled { id, epoch, .. } => {
                let Some(s) = self.scheduled.as_ref().filter(|s| s.id == *id) else {
                    return Err(Rejected::NoSuchOperation { id: *id });
                };
                self.held_by(s.from, *epoch)?;
                if let Some(op) = &self.operation {
                    return Err(Rejected::OperationInProgress { what: crate::ops::describe_operation(self, op) });
                }
                Ok(())
            }
        }
    }

    /// The switchover in progress, if it is operation `id`.
    pub fn switchover(&self, id: OpId) -> Option<&Switchover> {
        match &self.operation {
            Some(Operation::Switchover(s)) if s.id == id => Some(s),
            _ => None,
        }
    }

    /// The switchover in progress, whatever its id.
    pub fn current_switchover(&self) -> Option<&Switchover> {
        match &self.operation {
            Some(Operation::Switchover(s)) => Some(s),
            _ => None,
        }
    }

    fn check_order(&self, order: &Order) -> Result<(), Rejected> {
        if self.config.is_none() {
            return Err(Rejected::NotInitialized);
        }
        let has_db = |node: NodeId| {
            if !self.members.contains_key(&node) {
                return Err(Rejected::UnknownMember { node });
            }
            if !self.db_members.contains_key(&node) {
                return Err(Rejected::NoDatabase { node });
            }
            Ok(())
        };
        let busy = |op: &Operation| Rejected::OperationInProgress { what: crate::ops::describe_operation(self, op) };
        match order {
            Order::Switchover { from, to, epoch, at_unix_ms, force } => {
                self.held_by(*from, *epoch)?;
                has_db(*to)?;
                if from == to {
                    return Err(Rejected::SameNode { node: *to });
                }
                if let Some(s) = &self.scheduled {
                    return Err(Rejected::SwitchoverScheduled { id: s.id });
                }
                if at_unix_ms.is_none() {
                    if self.paused && !force {
                        return Err(Rejected::Paused);
                    }
                    if let Some(op) = &self.operation {
                        return Err(busy(op));
                    }
                }
                Ok(())
            }
            Order::CancelSwitchover => match (&self.operation, &self.scheduled) {
                (Some(Operation::Switchover(s)), _) if s.step == SwitchoverStep::Requested => Ok(()),
                (Some(Operation::Switchover(s)), None) => Err(Rejected::TooLateToCancel { id: s.id }),
                (_, Some(_)) => Ok(()),
                _ => Err(Rejected::NothingToCancel),
            },
            Order::Failover { to, .. } => {
                has_db(*to)?;
                if self.holder() == Some(*to) {
                    return Err(Rejected::IsPrimary { node: *to });
                }
                match &self.operation {
                    Some(op @ (Operation::Switchover(_) | Operation::ManualFailover { .. })) => Err(busy(op)),
                    _ => Ok(()),
                }
            }
            Order::Rebuild { node, .. } | Order::Restart { node } => {
                has_db(*node)?;
                if matches!(order, Order::Rebuild { .. }) && self.holder() == Some(*node) {
                    return Err(Rejected::IsPrimary { node: *node });
                }
                match self.tasks.get(node) {
                    Some(t) => Err(Rejected::TaskPending { node: *node, id: t.id }),
                    None => Ok(()),
                }
            }
            Order::Pause | Order::Resume => {
                let pausing = matches!(order, Order::Pause);
                if self.paused == pausing { Err(Rejected::AlreadyPaused { paused: self.paused }) } else { Ok(()) }
            }
            Order::AcknowledgeLoss => {
                if crate::loss::unacknowledged(&self.history).is_empty() {
                    Err(Rejected::NothingToAcknowledge)
                } else {
                    Ok(())
                }
            }
            Order::SetConfig { timing, .. } => {
                timing.validate().map(|_| ()).map_err(|e| Rejected::BadConfig { why: e.to_string() })
            }
            Order::RemoveMember { node } => {
                if !self.members.contains_key(node) {
                    return Err(Rejected::UnknownMember { node: *node });
                }
                if self.leaving.contains(node) {
                    return Err(Rejected::MemberLeaving { node: *node });
                }
                self.busy_with(*node).map_or(Ok(()), Err)
            }
        }
    }

    /// Why `node` cannot leave now: it takes part in the running operation
    /// or a scheduled switchover, or has an operator task pending.
    pub fn busy_with(&self, node: NodeId) -> Option<Rejected> {
        let involved = match &self.operation {
            Some(Operation::Switchover(s)) => s.from == node || s.to == node,
            Some(Operation::ManualFailover { to, .. }) => *to == node,
            _ => false,
        };
        if let Some(op) = self.operation.as_ref().filter(|_| involved) {
            return Some(Rejected::OperationInProgress { what: crate::ops::describe_operation(self, op) });
        }
        if let Some(s) = self.scheduled.as_ref().filter(|s| s.from == node || s.to == node) {
            return Some(Rejected::SwitchoverScheduled { id: s.id });
        }
        self.tasks.get(&node).map(|t| Rejected::TaskPending { node, id: t.id })
    }

    /// A member for every decision: in the membership and not leaving.
    pub fn is_member(&self, node: NodeId) -> bool {
        self.members.contains_key(&node) && !self.leaving.contains(&node)
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
                self.leaving.retain(|id| self.members.contains_key(id));
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
            Command::Audit { node, what, by, refused, result, at_unix_ms } => {
                let event = HistoryEvent::Audit {
                    node: *node,
                    what: clip(what),
                    by: clip(by),
                    refused: *refused,
                    result: clip(result),
                    times: 1,
                };
                let repeated = self.history.back_mut().and_then(|last| match (&mut last.event, &event) {
                    (
                        HistoryEvent::Audit { node: n, what: w, by: b, refused: f, result: r, times },
                        HistoryEvent::Audit { what, by, refused, result, .. },
                    ) if n == node && w == what && b == by && f == refused && r == result => Some(times),
                    _ => None,
                });
                match repeated {
                    Some(times) => *times = times.saturating_add(1),
                    None => self.record(log_index, *at_unix_ms, event),
                }
                Effect::Reported
            }
            Command::Grant { holder, epoch, verdicts, at_unix_ms } => {
                // The new primary builds its own synchronous set; its
                // predecessor's named the new primary itself. Until the new
                // primary claims it, the old set (and the old holder) stays
                // known as a fallback.
                let previous = match &self.operation {
                    Some(Operation::Failover { from, .. }) => Some(*from),
                    Some(Operation::Switchover(s)) => Some(s.from),
                    _ => None,
                };
                let mut fallback = std::mem::take(&mut self.synchronous);
                let mut quorum = std::mem::take(&mut self.synchronous_quorum);
                // The previous holder has every commit it acknowledged: in
                // a set where all hold every commit it counts as one more.
                let all = quorum as usize == fallback.len();
                if previous.is_some_and(|p| fallback.insert(p)) && all {
                    quorum += 1;
                }
                self.synchronous_fallback = Some((fallback, quorum));
                self.lease = Some(Lease { holder: *holder, epoch: *epoch, renewal: RenewalSeq(0) });
                self.epoch = *epoch;
                // Timing set at runtime starts with a new lease.
                if let Some(timing) = self.next_config.take() {
                    self.config = Some(timing);
                }
                let event = HistoryEvent::Granted {
                    holder: *holder,
                    epoch: *epoch,
                    verdicts: verdicts.clone(),
                    after: self.primary_position,
                };
                self.record(log_index, *at_unix_ms, event);
                self.after_grant(log_index, *at_unix_ms, *holder, *epoch, verdicts);
                Effect::Granted { holder: *holder, epoch: *epoch }
            }
            Command::Renew { epoch, renewal, position, .. } => {
                let next = RenewalSeq(renewal.0 + 1);
                if let Some(lease) = self.lease.as_mut() {
                    lease.renewal = next;
                }
                if position.is_some() {
                    self.primary_position = *position;
                    self.synchronous_fallback = None;
                }
                Effect::Renewed { epoch: *epoch, renewal: next }
            }
            Command::Lapse { holder, epoch, renewal, at_unix_ms } => {
                self.lease = None;
                self.lease_lost(log_index, *at_unix_ms, *holder, *epoch, "lapsed");
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
                self.lease_lost(log_index, *at_unix_ms, *holder, *epoch, "was released");
                self.record(
                    log_index,
                    *at_unix_ms,
                    HistoryEvent::Released { holder: *holder, epoch: *epoch, why: why.clone() },
                );
                Effect::Released { holder: *holder, epoch: *epoch }
            }
            Command::SetSynchronous { standbys, quorum, .. } => {
                self.synchronous = standbys.clone();
                self.synchronous_quorum = *quorum;
                self.synchronous_fallback = None;
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
            Command::SetDatabase { holder, epoch, system_identifier, origin, at_unix_ms } => {
                self.system_identifier = Some(*system_identifier);
                let event = HistoryEvent::DatabaseSet {
                    holder: *holder,
                    epoch: *epoch,
                    system_identifier: *system_identifier,
                    origin: *origin,
                };
                self.record(log_index, *at_unix_ms, event);
                Effect::SystemIdentifierSet
            }
            Command::Operator { order, by, at_unix_ms } => {
                self.order(log_index, *at_unix_ms, order, by);
                Effect::Accepted { id: log_index }
            }
            Command::SwitchoverDemoted { holder, id, last, at_unix_ms, .. } => {
                self.lease = None;
                self.primary_position = Some(*last);
                let what = format!(
                    "{} stopped cleanly at {} (timeline {}) and gave the lease up",
                    self.name(*holder),
                    last.lsn,
                    last.timeline
                );
                self.set_step(*id, SwitchoverStep::Demoted { last: *last });
                self.step_event(log_index, *at_unix_ms, *id, what);
                Effect::OperationStep
            }
            Command::SwitchoverPromoted { holder, id, at_unix_ms, .. } => {
                if let Some(SwitchoverStep::Promoting { epoch, last }) = self.switchover(*id).map(|s| s.step) {
                    let what = format!("{} promoted: primary at epoch {epoch}", self.name(*holder));
                    self.set_step(*id, SwitchoverStep::Rejoining { epoch, last });
                    self.step_event(log_index, *at_unix_ms, *id, what);
                }
                Effect::OperationStep
            }
            Command::SwitchoverRejoined { node, id, at_unix_ms } => {
                let what = format!("{} streams from the new primary", self.name(*node));
                self.step_event(log_index, *at_unix_ms, *id, what);
                self.operation = None;
                self.end(log_index, *at_unix_ms, *id, OpOutcome::Done { note: None });
                Effect::OperationEnded
            }
            Command::TaskDone { node, id, error, at_unix_ms } => {
                self.tasks.remove(node);
                let outcome = match error {
                    None => OpOutcome::Done { note: None },
                    Some(reason) => OpOutcome::Failed { reason: reason.clone() },
                };
                self.end(log_index, *at_unix_ms, *id, outcome);
                Effect::OperationEnded
            }
            Command::EndOperation { id, outcome, at_unix_ms } => {
                if self.operation.as_ref().and_then(Operation::id) == Some(*id) {
                    let ended = self.operation.take();
                    // An operator's failover that ends without its grant,
                    // the lease already given up for it: the cluster still
                    // needs a primary, and the member that lost the lease
                    // still has every write it acknowledged. Without this
                    // (simulator seed 5001, synchronous mode) nobody was
                    // eligible: the target was no synchronous standby and
                    // the former holder was no previous holder any more.
                    if matches!(ended, Some(Operation::ManualFailover { .. })) && self.lease.is_none() {
                        self.operation =
                            self.last_lost_lease().map(|from| Operation::Failover { from, lapsed_epoch: self.epoch });
                    }
                } else {
                    self.scheduled = None;
                }
                self.end(log_index, *at_unix_ms, *id, outcome.clone());
                Effect::OperationEnded
            }
            Command::DmSwitchover { epoch, id, done, at_unix_ms, .. } => {
                self.dm_change(log_index, *at_unix_ms, *epoch, *id, *done);
                if self.operation.is_none() { Effect::OperationEnded } else { Effect::OperationStep }
            }
            Command::SetFeatureLevel { from, to, at_unix_ms } => {
                self.feature_level = *to;
                self.record(log_index, *at_unix_ms, HistoryEvent::FeatureLevelRaised { from: *from, to: *to });
                Effect::FeatureLevelSet { level: *to }
            }
            Command::StartScheduled { id, epoch, at_unix_ms } => {
                let Some(s) = self.scheduled.take() else { return Effect::OperationStep };
                self.operation = Some(Operation::Switchover(Switchover {
                    id: *id,
                    from: s.from,
                    to: s.to,
                    epoch: *epoch,
                    step: SwitchoverStep::Requested,
                    by: s.by,
                }));
                let what = format!("scheduled time reached, preconditions hold: stopping {}", self.name(s.from));
                self.step_event(log_index, *at_unix_ms, *id, what);
                Effect::OperationStep
            }
        }
    }

    fn name(&self, id: NodeId) -> String {
        self.member_name(id).map_or_else(|| format!("node {id}"), str::to_string)
    }

    /// Carries out a committed operator order.
    fn order(&mut self, log_index: u64, at: u64, order: &Order, by: &str) {
        let id = log_index;
        let what = self.describe_order(order);
        self.record(log_index, at, HistoryEvent::Operation { id, event: OpEvent::Requested { what, by: by.into() } });
        match order {
            Order::Switchover { from, to, epoch, at_unix_ms: None, .. } => {
                let step = SwitchoverStep::Requested;
                let s = Switchover { id, from: *from, to: *to, epoch: *epoch, step, by: by.into() };
                self.operation = Some(Operation::Switchover(s));
            }
            Order::Switchover { from, to, at_unix_ms: Some(t), force, .. } => {
                let s = Scheduled { id, from: *from, to: *to, at_unix_ms: *t, force: *force, by: by.into() };
                self.scheduled = Some(s);
            }
            Order::CancelSwitchover => {
                let cancelled = match self.operation.take() {
                    Some(Operation::Switchover(s)) if s.step == SwitchoverStep::Requested => s.id,
                    other => {
                        self.operation = other;
                        self.scheduled.take().map_or(0, |s| s.id)
                    }
                };
                self.end(log_index, at, cancelled, OpOutcome::Cancelled);
                self.end(log_index, at, id, OpOutcome::Done { note: Some(format!("cancelled operation {cancelled}")) });
            }
            Order::Failover { to, allow_data_loss } => {
                self.operation = Some(Operation::ManualFailover { id, to: *to, allow_data_loss: *allow_data_loss });
            }
            Order::Rebuild { node, full } => {
                self.tasks.insert(*node, NodeRequest { id, task: NodeTask::Rebuild { full: *full }, by: by.into() });
            }
            Order::Restart { node } => {
                self.tasks.insert(*node, NodeRequest { id, task: NodeTask::Restart, by: by.into() });
            }
            Order::Pause | Order::Resume => {
                self.paused = matches!(order, Order::Pause);
                self.end(log_index, at, id, OpOutcome::Done { note: None });
            }
            Order::AcknowledgeLoss => {
                let count = crate::loss::unacknowledged(&self.history).len();
                self.record(log_index, at, HistoryEvent::LossAcknowledged { by: by.into() });
                let note = Some(format!("{count} discard(s) acknowledged"));
                self.end(log_index, at, id, OpOutcome::Done { note });
            }
            Order::SetConfig { timing, policy, .. } => {
                self.policy = *policy;
                let note = if Some(*timing) == self.config {
                    self.next_config = None;
                    None
                } else {
                    self.next_config = Some(*timing);
                    Some("the lease timing takes effect with the next epoch (the next switchover or failover)".into())
                };
                self.end(log_index, at, id, OpOutcome::Done { note });
            }
            Order::RemoveMember { node } => {
                self.leaving.insert(*node);
                self.db_members.remove(node);
                // One member fewer holds each commit it held.
                if self.synchronous.remove(node) {
                    self.synchronous_quorum = self.synchronous_quorum.saturating_sub(1);
                }
                if let Some((f, quorum)) = self.synchronous_fallback.as_mut()
                    && f.remove(node)
                {
                    *quorum = quorum.saturating_sub(1);
                }
                self.tasks.remove(node);
                let note = Some(format!("{} leaves the Raft group next", self.name(*node)));
                self.end(log_index, at, id, OpOutcome::Done { note });
            }
        }
    }

    fn describe_order(&self, order: &Order) -> String {
        match order {
            Order::Switchover { from, to, at_unix_ms: None, .. } => {
                format!("switchover from {} to {}", self.name(*from), self.name(*to))
            }
            Order::Switchover { from, to, at_unix_ms: Some(t), .. } => format!(
                "switchover from {} to {} scheduled for {} UTC",
                self.name(*from),
                self.name(*to),
                crate::words::utc(*t)
            ),
            Order::CancelSwitchover => "cancel the switchover".into(),
            Order::Failover { to, allow_data_loss } => {
                format!("failover to {}{}", self.name(*to), if *allow_data_loss { ", data loss allowed" } else { "" })
            }
            Order::Rebuild { node, full: false } => {
                format!("rebuild {} (rewind, base backup if that fails)", self.name(*node))
            }
            Order::Rebuild { node, full: true } => format!("rebuild {} from a fresh base backup", self.name(*node)),
            Order::Restart { node } => format!("restart PostgreSQL on {}", self.name(*node)),
            Order::RemoveMember { node } => format!("remove {} from the cluster", self.name(*node)),
            Order::Pause => "pause: no automatic failover or actions".into(),
            Order::Resume => "resume automatic failover and actions".into(),
            Order::AcknowledgeLoss => "acknowledge the discarded writes the history names".into(),
            Order::SetConfig { changes, .. } => format!("config set {changes}"),
        }
    }

    pub(crate) fn set_step(&mut self, id: OpId, step: SwitchoverStep) {
        if let Some(Operation::Switchover(s)) = self.operation.as_mut()
            && s.id == id
        {
            s.step = step;
        }
    }

    pub(crate) fn step_event(&mut self, log_index: u64, at: u64, id: OpId, what: String) {
        self.record(log_index, at, HistoryEvent::Operation { id, event: OpEvent::Step { what } });
    }

    pub(crate) fn end(&mut self, log_index: u64, at: u64, id: OpId, outcome: OpOutcome) {
        self.record(log_index, at, HistoryEvent::Operation { id, event: OpEvent::Ended { outcome } });
    }

    /// A grant moves a switchover or a manual failover on (or ends it).
    fn after_grant(&mut self, log_index: u64, at: u64, holder: NodeId, epoch: Epoch, verdicts: &[Verdict]) {
        match self.operation.take() {
            Some(Operation::Switchover(mut s)) => match s.step {
                SwitchoverStep::Dm(_) if crate::dm_switchover::after_grant(self, &s, holder, epoch).is_some() => {
                    let (step, what) =
                        crate::dm_switchover::after_grant(self, &s, holder, epoch).expect("checked by the guard");
                    s.step = SwitchoverStep::Dm(step);
                    let id = s.id;
                    self.operation = Some(Operation::Switchover(s));
                    self.step_event(log_index, at, id, what);
                }
                SwitchoverStep::Demoted { last } if holder == s.to => {
                    s.step = SwitchoverStep::Promoting { epoch, last };
                    let what =
                        format!("{} granted epoch {epoch}; promoting once it has {}", self.name(holder), last.lsn);
                    let id = s.id;
                    self.operation = Some(Operation::Switchover(s));
                    self.step_event(log_index, at, id, what);
                }
                _ if holder == s.from => {
                    let why = verdicts.iter().find(|v| v.node == s.to).map_or_else(
                        || format!("{} could not take over", self.name(s.to)),
                        |v| format!("{}: {}", self.name(s.to), v.why),
                    );
                    let reason = format!("{why}; {} is primary again at epoch {epoch}", self.name(holder));
                    self.end(log_index, at, s.id, OpOutcome::RolledBack { reason });
                }
                _ => {
                    let reason = format!("{} became primary instead", self.name(holder));
                    self.end(log_index, at, s.id, OpOutcome::Failed { reason });
                }
            },
            Some(Operation::ManualFailover { id, to, .. }) => {
                let outcome = if holder == to {
                    OpOutcome::Done { note: None }
                } else {
                    OpOutcome::Failed { reason: format!("{} became primary instead", self.name(holder)) }
                };
                self.end(log_index, at, id, outcome);
            }
            Some(Operation::Failover { .. }) | None => {}
        }
    }

    /// The lease lapsed or was released: a failover, unless an operator's
    /// failover is already waiting for it. A switchover that loses its
    /// lease this way failed.
    fn lease_lost(&mut self, log_index: u64, at: u64, holder: NodeId, epoch: Epoch, how: &str) {
        // A holder that never was writable acknowledged nothing: whoever had
        // every write at its grant still has every write.
        if let Some((fallback, quorum)) = self.synchronous_fallback.take() {
            self.synchronous = fallback;
            self.synchronous_quorum = quorum;
        }
        match self.operation.take() {
            Some(op @ Operation::ManualFailover { .. }) => self.operation = Some(op),
            other => {
                if let Some(Operation::Switchover(s)) = other {
                    let reason = format!(
                        "the lease of {} at epoch {epoch} {how} while {}: failing over",
                        self.name(holder),
                        crate::ops::step_words(self, &s)
                    );
                    self.end(log_index, at, s.id, OpOutcome::Failed { reason });
                }
                self.operation = Some(Operation::Failover { from: holder, lapsed_epoch: epoch });
            }
        }
    }

    /// Who held the lease of the current epoch, when the history says it
    /// lapsed or was released.
    fn last_lost_lease(&self) -> Option<NodeId> {
        self.history.iter().rev().find_map(|e| match &e.event {
            HistoryEvent::Lapsed { holder, epoch, .. } | HistoryEvent::Released { holder, epoch, .. }
                if *epoch == self.epoch =>
            {
                Some(*holder)
            }
            _ => None,
        })
    }

    fn record(&mut self, log_index: u64, at_unix_ms: u64, event: HistoryEvent) {
        if self.history.len() == HISTORY_LIMIT {
            self.history.pop_front();
        }
        self.history.push_back(HistoryEntry { log_index, at_unix_ms, event });
    }
}

/// What an audit record keeps of one text field: at most
/// `AUDIT_FIELD_LIMIT` bytes (cut at a character boundary), so that no
/// request can bloat the replicated state.
fn clip(text: &str) -> String {
    if text.len() <= AUDIT_FIELD_LIMIT {
        return text.to_string();
    }
    let mut end = AUDIT_FIELD_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
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
            Command::Audit { node, what, by, refused, result, .. } => {
                write!(f, "audit node={node} by={by:?} what={what:?} refused={refused} result={result:?}")
            }
            Command::SetForks { holder, epoch, forks } => {
                write!(f, "set-timeline-history holder={holder} epoch={epoch} forks={}", forks.len())
            }
            Command::SetSynchronous { holder, epoch, standbys, quorum } => {
                let ids: Vec<String> = standbys.iter().map(|n| n.to_string()).collect();
                write!(f, "set-synchronous holder={holder} epoch={epoch} standbys=[{}] quorum={quorum}", ids.join(","))
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
            Command::SetDatabase { holder, epoch, system_identifier, origin, .. } => {
                write!(f, "set-database holder={holder} epoch={epoch} id={system_identifier} origin={origin:?}")
            }
            Command::Operator { order, by, .. } => write!(f, "operator by={by:?} {order:?}"),
            Command::SwitchoverDemoted { holder, epoch, id, last, .. } => {
                write!(f, "switchover-demoted id={id} holder={holder} epoch={epoch} last={}", last.lsn)
            }
            Command::SwitchoverPromoted { holder, epoch, id, .. } => {
                write!(f, "switchover-promoted id={id} holder={holder} epoch={epoch}")
            }
            Command::SwitchoverRejoined { node, id, .. } => write!(f, "switchover-rejoined id={id} node={node}"),
            Command::TaskDone { node, id, error, .. } => write!(f, "task-done id={id} node={node} error={error:?}"),
            Command::EndOperation { id, outcome, .. } => write!(f, "end-operation id={id} {outcome}"),
            Command::StartScheduled { id, epoch, .. } => write!(f, "start-scheduled id={id} epoch={epoch}"),
            Command::DmSwitchover { node, epoch, id, done, .. } => {
                write!(f, "dm-switchover id={id} node={node} epoch={epoch} done={done:?}")
            }
            Command::SetFeatureLevel { from, to, .. } => write!(f, "set-feature-level from={from} to={to}"),
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
            Rejected::MemberLeaving { node } => write!(f, "node {node} is leaving the cluster"),
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
            Rejected::OperationInProgress { what } => write!(f, "another operation is in progress: {what}"),
            Rejected::SwitchoverScheduled { id } => {
                write!(f, "switchover {id} is scheduled: cancel it first (haraftctl switchover --cancel)")
            }
            Rejected::Paused => write!(f, "the cluster is paused: run haraftctl resume, or add --force"),
            Rejected::AlreadyPaused { paused: true } => write!(f, "the cluster is already paused"),
            Rejected::AlreadyPaused { paused: false } => write!(f, "the cluster is not paused"),
            Rejected::SameNode { node } => write!(f, "node {node} is already the primary"),
            Rejected::NoDatabase { node } => write!(f, "node {node} manages no database"),
            Rejected::IsPrimary { node } => write!(f, "node {node} is the primary"),
            Rejected::TaskPending { node, id } => {
                write!(f, "node {node} has not finished operation {id} yet: follow it with haraftctl history")
            }
            Rejected::NoSuchOperation { id } => write!(f, "operation {id} is not in progress (or not at that step)"),
            Rejected::NothingToCancel => write!(f, "no switchover is running or scheduled"),
            Rejected::TooLateToCancel { id } => write!(
                f,
                "switchover {id} is past the old primary's stop and can no longer be cancelled: it completes or rolls back on its own"
            ),
            Rejected::BadConfig { why } => write!(f, "{why}"),
            Rejected::SwitchoverBehind { node, applied, last } => write!(
                f,
                "node {node} has applied redo up to {}, short of the old primary's last {}: it applies the kept redo first",
                applied.0, last.0
            ),
            Rejected::NothingToAcknowledge => {
                write!(f, "no discarded writes wait for an acknowledgement (haraftctl history lists every rewind)")
            }
            Rejected::StaleFeatureLevel { proposed, current } => {
                write!(f, "feature level {proposed} would not raise the level in force, {current}")
            }
        }
    }
}
