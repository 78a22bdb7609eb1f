//! The node reconciler: runs on every agent, every tick. From the committed
//! state, this node's own judgement of its lease, and the latest
//! observation of its database, it chooses one next action and says why.
//! The agent's executor carries out one action at a time.

use crate::db::{DbMember, DbRole, DbStatus};
use crate::ids::{Epoch, NodeId};
use crate::ops::{NodeTask, OpId, Switchover, SwitchoverStep};
use crate::state::{ClusterState, Command, DataOrigin, Operation};
use std::fmt;

/// This node's lease, as its own clock judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MyLease {
    /// Valid now, at this epoch.
    Valid(Epoch),
    /// The state names this node but no renewal has been confirmed yet (just
    /// granted, or the agent restarted).
    Pending,
    None,
}

/// Failed rewinds in a row after which a member is rebuilt instead.
pub const REWIND_TRIES: u8 = 3;

/// What the shell remembers between actions about rejoining.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rejoin {
    /// The database must be rewound before it may follow the primary.
    pub needs_rewind: bool,
    /// Rewinds failed [`REWIND_TRIES`] times in a row, or one succeeded and
    /// the standby still never streamed (it said "no rewind required" of a
    /// history the primary cannot serve): rebuild (if policy allows). A
    /// rewind tool that failed part-way is known from the directory's own
    /// marker (`DbStatus::rewind_unfinished`) and rebuilds at once.
    pub rewind_failed: bool,
    /// Rewinds that failed in a row before the rewind tool changed the
    /// directory, or without its marker: a source that did not answer yet,
    /// a crash recovery that timed out. Another rewind may work, and a
    /// rebuild copies the whole database.
    pub failed_rewinds: u8,
    /// A rewind succeeded and no streaming was seen since.
    pub rewound: bool,
    /// The upstream this node last configured its standby for.
    pub configured_upstream: Option<NodeId>,
}

pub struct ReconcileInput<'a> {
    pub me: NodeId,
    pub state: &'a ClusterState,
    pub lease: MyLease,
    /// What this node registers: its database address and tags.
    pub registration: &'a DbMember,
    /// The latest observation; `None` before the first one.
    pub db: Option<&'a DbStatus>,
    pub rejoin: Rejoin,
    /// The external fence guard holds a deadline from an earlier renewal:
    /// a running primary may wait for this agent's first renewal.
    pub guard_armed: bool,
    /// Holder: how long its database has been down.
    pub primary_down_ms: Option<u64>,
    /// Standby: how long it has not streamed from the primary.
    pub not_streaming_ms: Option<u64>,
    pub stream_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Idle,
    Propose(Command),
    Bootstrap {
        epoch: Epoch,
    },
    StartPrimary {
        epoch: Epoch,
    },
    /// Start as a standby of `upstream`; with `None`, replay only local WAL
    /// (a holder whose database stopped as a standby, about to promote).
    StartStandby {
        upstream: Option<NodeId>,
        epoch: Epoch,
    },
    /// Point a running standby at another upstream.
    Follow {
        upstream: NodeId,
        epoch: Epoch,
    },
    Promote {
        epoch: Epoch,
    },
    /// Immediate: fencing. Fast: a clean stop before rewinding.
    Stop {
        immediate: bool,
    },
    Rewind {
        source: NodeId,
        epoch: Epoch,
    },
    Rebuild {
        source: NodeId,
        epoch: Epoch,
    },
    /// Write `synchronous_standby_names` for these members, `quorum` of
    /// which confirm each commit, and reload.
    SetSynchronous {
        names: Vec<String>,
        quorum: u32,
        epoch: Epoch,
    },
    /// New transactions read-only by default (`true`), or read-write for
    /// the lease holder of `epoch`.
    SetReadOnly {
        read_only: bool,
        epoch: Epoch,
    },
    /// Make the primary's haraft slots exactly these (create missing, drop
    /// the others when inactive).
    SetSlots {
        slots: Vec<String>,
        epoch: Epoch,
    },
    /// Operator task `id`: a clean restart, as the primary (keeping the
    /// lease) or as a standby of `upstream`. Reports the task done.
    Restart {
        id: OpId,
        epoch: Epoch,
        as_primary: bool,
        upstream: Option<NodeId>,
    },
    /// Operator task `id`: rewind from `source` (base backup when that
    /// fails), or a fresh base backup with `full`. Reports the task done.
    Reinit {
        id: OpId,
        source: NodeId,
        epoch: Epoch,
        full: bool,
    },
    /// A step of Dameng's switchover (`dm_switchover`), authorised by `epoch`.
    DmStep {
        action: crate::dm_switchover::DmAction,
        epoch: Epoch,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    NotObservedYet,
    Unregistered,
    PrimaryWithoutLease,
    /// Promoted (or asked to promote) by someone other than haraft: its
    /// sessions are read-only by default, which haraft lifts only for the
    /// lease holder, and this member holds no valid lease.
    PromotedOutsideHaraft,
    /// A stopped server whose settings would let it take writes, without
    /// the lease: whoever starts it outside haraft must get a read-only one.
    WritableWithoutLease,
    /// The holder's running primary still refuses writes by default.
    WritesNotYetAllowed,
    ForeignDataDir {
        found: u64,
        expected: u64,
    },
    NoDataToBootstrap,
    AdoptExistingData,
    /// No database is recorded yet: a running server is left as it runs.
    AwaitingAdoption,
    /// A running server of the cluster does not take haraft's settings
    /// yet (an adopted cluster): haraft's are put in place by a reload.
    AdoptSettings,
    PromoteUnderLease,
    PrimaryWithLease,
    PrimaryDownTooLong {
        down_ms: u64,
        limit_ms: u64,
    },
    RestartPrimaryInPlace,
    StartStoppedStandbyToPromote,
    HolderWithoutData,
    WaitingForLeaseConfirmation,
    NoPrimary,
    WaitingForBootstrap,
    PrimaryAddressUnknown,
    NoDataDirectory,
    RewindFailed,
    FormerPrimary,
    NeedsRewind,
    StoppedStandby,
    Streaming,
    NotStreaming {
        for_ms: u64,
    },
    UpstreamChanged,
    ConnectingToPrimary,
    SyncSettingBehindState,
    /// The setting moves towards the target set.
    SynchronousSetting {
        members: usize,
        quorum: u32,
    },
    /// The replicated state moves towards the target set.
    SynchronousState {
        members: usize,
        quorum: u32,
    },
    SynchronousModeOff,
    WaitingForSyncStandby,
    SlotsDiffer,
    TimelineHistoryChanged,
    Diverged,
    /// Paused: no automatic action.
    Paused,
    OperatorTask,
    SwitchoverMovingSyncToTarget,
    SwitchoverStopping,
    SwitchoverStopped,
    SwitchoverUncleanStop,
    SwitchoverWaitingForLastWal,
    SwitchoverPromoted,
    SwitchoverWaitingForTarget,
    SwitchoverRejoin,
    SwitchoverRejoined,
    ManualFailoverRequested,
    ClaimSynchronousSet,
    NotAMember,
    DmSwitchover(crate::dm_switchover::DmWhy),
}

/// How often a node observes its database, in milliseconds: every 50 ms
/// while it is the old primary or the target of a switchover (the Raft
/// leader grants the target only once a probe shows it has the old
/// primary's last WAL, so a stale observation is write unavailability),
/// otherwise twice a second.
pub fn observe_every_ms(state: &ClusterState, me: NodeId) -> u64 {
    if state.current_switchover().is_some_and(|s| s.from == me || s.to == me) { 50 } else { 500 }
}

pub fn reconcile(input: &ReconcileInput) -> (Action, Reason) {
    let state = input.state;
    let me = input.me;
    let Some(db) = input.db else { return (Action::Idle, Reason::NotObservedYet) };

    if state.config.is_some() && state.is_member(me) && state.db_members.get(&me) != Some(input.registration) {
        return (Action::Propose(Command::Register { node: me, db: input.registration.clone() }), Reason::Unregistered);
    }

    // Until the cluster has a database (its first grant, then the
    // holder's `SetDatabase`), a running server is left exactly as it
    // runs: a cluster being adopted keeps serving while haraft chooses its
    // primary (`adopt::bootstrap_verdicts`), and two primaries found
    // running are refused, never resolved by stopping one.
    let valid = matches!(input.lease, MyLease::Valid(_));
    if state.system_identifier.is_none() && db.running && !valid {
        return (Action::Idle, Reason::AwaitingAdoption);
    }

    // Safety first: a writable database needs a valid lease. A restarted
    // agent whose fence guard still holds the old deadline may wait for its
    // first renewal; the guard stops PostgreSQL if that deadline passes.
    let holder_in_state = state.lease.map(|l| l.holder) == Some(me);
    // A server promoted by anyone but haraft (`pg_ctl promote`,
    // `pg_promote()`, a script): haraft makes a server read-write by
    // default only under a valid lease and before it promotes it, so a
    // read-only-by-default primary, or a standby asked to leave recovery,
    // without this member's valid lease, is fenced at once.
    let promoted_outside = db.running
        && !valid
        && db.read_only_default == Some(true)
        && (db.role == Some(DbRole::Primary) || (db.role == Some(DbRole::Standby) && db.promotion_signalled));
    if promoted_outside {
        return (Action::Stop { immediate: true }, Reason::PromotedOutsideHaraft);
    }
    if db.is_running_primary() {
        let waiting = input.lease == MyLease::Pending && holder_in_state && input.guard_armed;
        if matches!(input.lease, MyLease::None) || (input.lease == MyLease::Pending && !waiting) {
            return (Action::Stop { immediate: true }, Reason::PrimaryWithoutLease);
        }
    }
    if !db.running && db.has_data && db.read_only_default == Some(false) && !valid {
        return (Action::SetReadOnly { read_only: true, epoch: state.epoch }, Reason::WritableWithoutLease);
    }

    // Not a member (any more): a removed member stops its database and
    // takes no part; a joining one waits here until it is added.
    if state.config.is_some() && !state.is_member(me) {
        if db.running {
            return (Action::Stop { immediate: false }, Reason::NotAMember);
        }
        return (Action::Idle, Reason::NotAMember);
    }

    if let (Some(expected), Some(found)) = (state.system_identifier, db.system_identifier)
        && db.has_data
        && found != expected
    {
        return (Action::Idle, Reason::ForeignDataDir { found, expected });
    }

    if let MyLease::Valid(epoch) = input.lease {
        if state.system_identifier.is_none() {
            return match db.system_identifier {
                None if !db.has_data => (Action::Bootstrap { epoch }, Reason::NoDataToBootstrap),
                Some(system_identifier) => {
                    let origin =
                        if db.is_running_primary() { DataOrigin::RunningPrimary } else { DataOrigin::ExistingData };
                    let command = Command::SetDatabase { holder: me, epoch, system_identifier, origin, at_unix_ms: 0 };
                    (Action::Propose(command), Reason::AdoptExistingData)
                }
                None => (Action::Idle, Reason::NotObservedYet),
            };
        }
        if let Some(s) = state.current_switchover()
            && let Some(step) = holder_switchover(me, epoch, s, state, db, input.primary_down_ms)
        {
            return step;
        }
        // Synchronous mode: claim the synchronous set (empty: only this
        // node has the writes it will acknowledge) before becoming writable,
        // which ends the fallback to the previous set.
        if state.policy.synchronous_mode.is_on() && state.synchronous_fallback.is_some() {
            let command = Command::SetSynchronous { holder: me, epoch, standbys: Default::default(), quorum: 0 };
            return (Action::Propose(command), Reason::ClaimSynchronousSet);
        }
        if let Some(task) = state.tasks.get(&me)
            && task.task == NodeTask::Restart
            && db.running
        {
            let restart = Action::Restart { id: task.id, epoch, as_primary: true, upstream: None };
            return (restart, Reason::OperatorTask);
        }
        if db.is_running_standby() {
            return (Action::Promote { epoch }, Reason::PromoteUnderLease);
        }
        if db.is_running_primary() {
            // An adopted primary: haraft's settings file, included and
            // reloaded, with new transactions read-write.
            if db.foreign_settings {
                return (Action::SetReadOnly { read_only: false, epoch }, Reason::AdoptSettings);
            }
            if db.read_only_default == Some(true) {
                return (Action::SetReadOnly { read_only: false, epoch }, Reason::WritesNotYetAllowed);
            }
            if let Some(forks) = db.forks.as_ref().filter(|f| **f != state.forks) {
                let command = Command::SetForks { holder: me, epoch, forks: forks.clone() };
                return (Action::Propose(command), Reason::TimelineHistoryChanged);
            }
            return synchronous_step(me, epoch, state, db, None)
                .or_else(|| slots_step(me, epoch, state, db))
                .unwrap_or((Action::Idle, Reason::PrimaryWithLease));
        }
        if let Some(Operation::ManualFailover { to, .. }) = &state.operation {
            let why = format!("an operator asked for failover to {}", state.member_name(*to).unwrap_or("?"));
            return (Action::Propose(release(me, epoch, why)), Reason::ManualFailoverRequested);
        }
        if state.paused && state.operation.is_none() {
            return (Action::Idle, Reason::Paused);
        }
        if !db.has_data {
            let why = "holds the lease but has no data directory".to_string();
            return (Action::Propose(release(me, epoch, why)), Reason::HolderWithoutData);
        }
        // Left part-way by a failed rewind: it will not start (or should
        // not be trusted if it does); another member must take over.
        if db.rewind_unfinished {
            let why = "holds the lease but a failed rewind left its data directory part-way".to_string();
            return (Action::Propose(release(me, epoch, why)), Reason::HolderWithoutData);
        }
        let limit_ms = state.policy.primary_start_timeout_ms;
        if let Some(down_ms) = input.primary_down_ms.filter(|d| *d > limit_ms) {
            let why = format!("PostgreSQL did not start within {limit_ms} ms");
            return (Action::Propose(release(me, epoch, why)), Reason::PrimaryDownTooLong { down_ms, limit_ms });
        }
        return match db.role {
            Some(DbRole::Standby) if db.engine == crate::db::Engine::Dameng => (
                Action::StartPrimary { epoch },
                Reason::DmSwitchover(crate::dm_switchover::DmWhy::HolderOpensAsPrimary),
            ),
            Some(DbRole::Standby) => {
                (Action::StartStandby { upstream: None, epoch }, Reason::StartStoppedStandbyToPromote)
            }
            _ => (Action::StartPrimary { epoch }, Reason::RestartPrimaryInPlace),
        };
    }

    if holder_in_state {
        return (Action::Idle, Reason::WaitingForLeaseConfirmation);
    }
    // The old primary of a switchover stays stopped until the target is
    // primary: its clean stop is what lets it follow without a rewind, and
    // what a rollback restarts.
    if let Some(s) = state.current_switchover().filter(|s| s.from == me)
        && matches!(s.step, SwitchoverStep::Demoted { .. } | SwitchoverStep::Promoting { .. })
        && !db.running
    {
        return (Action::Idle, Reason::SwitchoverWaitingForTarget);
    }
    if let Some(step) = crate::dm_switchover::member_step(me, state, db) {
        return step;
    }
    let Some(lease) = state.lease else { return (Action::Idle, Reason::NoPrimary) };
    if state.system_identifier.is_none() {
        return (Action::Idle, Reason::WaitingForBootstrap);
    }
    let Some(primary) = state.db_members.get(&lease.holder) else {
        return (Action::Idle, Reason::PrimaryAddressUnknown);
    };
    let (source, epoch) = (lease.holder, state.epoch);
    if let Some(task) = state.tasks.get(&me) {
        let action = match task.task {
            NodeTask::Restart => Action::Restart { id: task.id, epoch, as_primary: false, upstream: Some(source) },
            NodeTask::Rebuild { full } => Action::Reinit { id: task.id, source, epoch, full },
        };
        return (action, Reason::OperatorTask);
    }
    if let Some(s) = state.current_switchover().filter(|s| s.from == me)
        && let SwitchoverStep::Rejoining { last, .. } = s.step
    {
        if db.streaming_from.as_deref() == Some(primary.address.as_str()) {
            let command = Command::SwitchoverRejoined { node: me, id: s.id, at_unix_ms: 0 };
            return (Action::Propose(command), Reason::SwitchoverRejoined);
        }
        // Stopped cleanly exactly where the target took over: it can follow
        // the new timeline without a rewind.
        let clean_at_last = !db.running
            && db.clean_shutdown == Some(true)
            && db.timeline == Some(last.timeline)
            && db.lsn == Some(last.lsn);
        if clean_at_last {
            return (Action::StartStandby { upstream: Some(source), epoch }, Reason::SwitchoverRejoin);
        }
    }
    if state.paused && state.operation.is_none() {
        return (Action::Idle, Reason::Paused);
    }
    if !db.has_data {
        return (Action::Rebuild { source, epoch }, Reason::NoDataDirectory);
    }
    // A failed rewind, remembered by this agent or (after a restart) by
    // the directory's own marker: another rewind cannot finish it.
    if (input.rejoin.rewind_failed || db.rewind_unfinished) && state.policy.rebuild_on_rewind_failure {
        return (Action::Rebuild { source, epoch }, Reason::RewindFailed);
    }
    // Its timeline history against the primary's: WAL past the point where
    // its timeline ended on the primary cannot be followed.
    let diverged = db.diverged_from(&state.forks);
    if !db.running {
        if db.role == Some(DbRole::Primary) {
            return (Action::Rewind { source, epoch }, Reason::FormerPrimary);
        }
        if input.rejoin.needs_rewind {
            return (Action::Rewind { source, epoch }, Reason::NeedsRewind);
        }
        if diverged {
            return (Action::Rewind { source, epoch }, Reason::Diverged);
        }
        return (Action::StartStandby { upstream: Some(source), epoch }, Reason::StoppedStandby);
    }
    // A running standby. An adopted one is re-pointed through haraft's
    // settings (its slot, its connection) with a reload.
    if db.foreign_settings && !diverged {
        return (Action::Follow { upstream: source, epoch }, Reason::AdoptSettings);
    }
    if db.streaming_from.as_deref() == Some(primary.address.as_str()) {
        return (Action::Idle, Reason::Streaming);
    }
    if diverged {
        return (Action::Stop { immediate: false }, Reason::Diverged);
    }
    if input.rejoin.configured_upstream != Some(source) {
        return (Action::Follow { upstream: source, epoch }, Reason::UpstreamChanged);
    }
    match input.not_streaming_ms {
        // Paused (an operator's failover may be under way): a standby is
        // never stopped to rejoin, it may be the one promoted next.
        Some(for_ms) if for_ms > input.stream_timeout_ms && !state.paused => {
            (Action::Stop { immediate: false }, Reason::NotStreaming { for_ms })
        }
        _ => (Action::Idle, Reason::ConnectingToPrimary),
    }
}

/// The primary's synchronous standbys, one safe step at a time
/// (`sync::next_step`: the setting and the replicated state each change
/// only in the order that keeps every acknowledged commit where a failover
/// looks for it), towards `sync::target` (mode, count, strictness, the
/// healthy standbys that may be promoted; `prefer`: a switchover target
/// that must join an `on` set).
fn synchronous_step(
    me: NodeId,
    epoch: Epoch,
    state: &ClusterState,
    db: &DbStatus,
    prefer: Option<NodeId>,
) -> Option<(Action, Reason)> {
    use crate::sync::{SyncSet, SyncStep};
    use std::collections::BTreeSet;
    // A setting haraft did not write, or held by the commit guard, is
    // left alone.
    let names = db.synchronous_names.as_ref()?;
    let quorum = db.synchronous_quorum?;
    let id_of = |name: &str| state.members.values().find(|m| m.name == name).map(|m| m.id);
    // A name that is no member any more (removed) still counts as one the
    // setting waits for: a stand-in id keeps the arithmetic honest until
    // the setting drops it.
    let setting_members: BTreeSet<NodeId> =
        names.iter().enumerate().map(|(i, n)| id_of(n).unwrap_or(NodeId(u64::MAX - i as u64))).collect();
    let setting = SyncSet::new(setting_members, quorum);
    let current = SyncSet::new(state.synchronous.clone(), state.synchronous_quorum);
    let replica = |id: NodeId| {
        let name = state.member_name(id)?;
        db.replicas.iter().find(|r| r.name == name)
    };
    let mut healthy: Vec<(&str, NodeId)> = state
        .members
        .values()
        .filter(|m| m.id != me && state.db_members.get(&m.id).is_some_and(|d| !d.nofailover))
        .filter(|m| replica(m.id).is_some_and(|r| r.streaming))
        .map(|m| (m.name.as_str(), m.id))
        .collect();
    healthy.sort();
    let healthy: Vec<NodeId> = healthy.into_iter().map(|(_, id)| id).collect();
    let caught_up = |id: NodeId| replica(id).is_some_and(|r| r.streaming && r.sync);
    let p = &state.policy;
    let target = crate::sync::target(
        p.synchronous_mode,
        p.synchronous_node_count,
        p.synchronous_strict,
        &state.synchronous,
        &healthy,
        prefer,
    );
    let reason = |default: Reason| match (p.synchronous_mode.is_on(), prefer.is_some()) {
        (false, _) => Reason::SynchronousModeOff,
        (true, true) => Reason::SwitchoverMovingSyncToTarget,
        (true, false) => default,
    };
    let names_of = |set: &SyncSet| -> Vec<String> {
        set.members.iter().filter_map(|id| state.member_name(*id).map(str::to_string)).collect()
    };
    match crate::sync::next_step(&setting, &current, &target, &caught_up)? {
        SyncStep::Setting(next) => {
            let why = if crate::sync::covers(&setting, &current) {
                reason(Reason::SynchronousSetting { members: next.members.len(), quorum: next.quorum })
            } else {
                Reason::SyncSettingBehindState
            };
            Some((Action::SetSynchronous { names: names_of(&next), quorum: next.quorum, epoch }, why))
        }
        SyncStep::State(next) => {
            let why = reason(Reason::SynchronousState { members: next.members.len(), quorum: next.quorum });
            let command = Command::SetSynchronous { holder: me, epoch, standbys: next.members, quorum: next.quorum };
            Some((Action::Propose(command), why))
        }
        SyncStep::Wait => Some((Action::Idle, Reason::WaitingForSyncStandby)),
    }
}

/// The holder's part in a switchover: the old primary moves the
/// synchronous set (synchronous mode), stops cleanly and gives the lease
/// up with its last position; the target promotes once it has that
/// position and says so. `None`: nothing switchover-specific to do.
fn holder_switchover(
    me: NodeId,
    epoch: Epoch,
    s: &Switchover,
    state: &ClusterState,
    db: &DbStatus,
    down_ms: Option<u64>,
) -> Option<(Action, Reason)> {
    let down_limit_ms = state.policy.primary_start_timeout_ms;
    if db.engine == crate::db::Engine::Dameng || matches!(s.step, SwitchoverStep::Dm(_)) {
        return crate::dm_switchover::holder_step(me, epoch, s, db, down_ms, down_limit_ms);
    }
    match s.step {
        SwitchoverStep::Requested if s.from == me && s.epoch == epoch => {
            if db.is_running_primary() {
                if state.policy.synchronous_mode == crate::sync::SyncMode::On && !state.synchronous.contains(&s.to) {
                    return synchronous_step(me, epoch, state, db, Some(s.to))
                        .or(Some((Action::Idle, Reason::WaitingForSyncStandby)));
                }
                return Some((Action::Stop { immediate: false }, Reason::SwitchoverStopping));
            }
            if db.running {
                return Some((Action::Stop { immediate: false }, Reason::SwitchoverStopping));
            }
            match (db.role, db.clean_shutdown, db.timeline, db.lsn) {
                (Some(DbRole::Primary), Some(true), Some(timeline), Some(lsn)) => {
                    let last = crate::db::DbPosition { timeline, lsn };
                    let command = Command::SwitchoverDemoted { holder: me, epoch, id: s.id, last, at_unix_ms: 0 };
                    Some((Action::Propose(command), Reason::SwitchoverStopped))
                }
                // Crashed while stopping: start again, then stop cleanly.
                _ if db.has_data => Some((Action::StartPrimary { epoch }, Reason::SwitchoverUncleanStop)),
                _ => None,
            }
        }
        SwitchoverStep::Promoting { epoch: granted, last } if s.to == me && granted == epoch => {
            if db.is_running_primary() {
                let command = Command::SwitchoverPromoted { holder: me, epoch, id: s.id, at_unix_ms: 0 };
                return Some((Action::Propose(command), Reason::SwitchoverPromoted));
            }
            if db.is_running_standby() && db.lsn.is_none_or(|l| l <= last.lsn) {
                return Some((Action::Idle, Reason::SwitchoverWaitingForLastWal));
            }
            None
        }
        _ => None,
    }
}

/// The primary keeps one physical slot per other member with a database,
/// so that WAL a standby still needs stays until it has it.
fn slots_step(me: NodeId, epoch: Epoch, state: &ClusterState, db: &DbStatus) -> Option<(Action, Reason)> {
    let have: std::collections::BTreeSet<&str> = db.slots.as_ref()?.iter().map(String::as_str).collect();
    let want: std::collections::BTreeSet<String> = state
        .db_members
        .keys()
        .filter(|id| **id != me)
        .filter_map(|id| state.member_name(*id))
        .map(crate::db::slot_name)
        .collect();
    if want.iter().map(String::as_str).collect::<std::collections::BTreeSet<_>>() == have {
        return None;
    }
    Some((Action::SetSlots { slots: want.into_iter().collect(), epoch }, Reason::SlotsDiffer))
}

fn release(holder: NodeId, epoch: Epoch, why: String) -> Command {
    Command::Release { holder, epoch, why, at_unix_ms: 0 }
}

impl Rejoin {
    /// The standby was seen streaming from the primary: its last rewind
    /// worked.
    pub fn streamed(self) -> Rejoin {
        Rejoin { rewound: false, ..self }
    }

    /// What an action's result teaches about rejoining.
    pub fn after(self, action: &Action, reason: &Reason, ok: bool) -> Rejoin {
        let mut next = self;
        match (action, ok) {
            (Action::Rewind { .. }, true) => {
                next.needs_rewind = false;
                next.rewind_failed = false;
                next.failed_rewinds = 0;
                next.rewound = true;
            }
            (Action::Rewind { .. }, false) => {
                next.failed_rewinds = next.failed_rewinds.saturating_add(1);
                next.rewind_failed |= next.failed_rewinds >= REWIND_TRIES;
            }
            (Action::Rebuild { .. } | Action::Reinit { .. }, true) => next = Rejoin::default(),
            (Action::Restart { upstream, as_primary: false, .. }, true) => next.configured_upstream = *upstream,
            (Action::Stop { immediate: false }, true)
                if matches!(reason, Reason::NotStreaming { .. } | Reason::Diverged) =>
            {
                next.needs_rewind = true;
                // Rewound, and still it could not stream: another rewind
                // would do the same.
                next.rewind_failed |= self.rewound;
                next.rewound = false;
            }
            (Action::StartStandby { upstream: Some(u), .. }, true) | (Action::Follow { upstream: u, .. }, true) => {
                next.configured_upstream = Some(*u);
            }
            // A primary follows nobody and needs no rewind: its history is
            // the cluster's from now on.
            (Action::Promote { .. } | Action::StartPrimary { .. } | Action::Bootstrap { .. }, true) => {
                next = Rejoin::default();
            }
            _ => {}
        }
        next
    }
}

impl Action {
    /// The action's kind, without its arguments: what failures are counted
    /// by (see `backoff`) and metrics are labelled with.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Idle => "idle",
            Action::Propose(_) => "propose",
            Action::Bootstrap { .. } => "bootstrap",
            Action::StartPrimary { .. } => "start-primary",
            Action::StartStandby { .. } => "start-standby",
            Action::Follow { .. } => "follow",
            Action::Promote { .. } => "promote",
            Action::Stop { immediate: true } => "fence",
            Action::Stop { immediate: false } => "stop",
            Action::Rewind { .. } => "rewind",
            Action::Rebuild { .. } => "rebuild",
            Action::SetSynchronous { .. } => "set-synchronous-standbys",
            Action::SetReadOnly { .. } => "set-read-only",
            Action::SetSlots { .. } => "set-slots",
            Action::Restart { .. } => "operator-restart",
            Action::Reinit { .. } => "operator-rebuild",
            Action::DmStep { .. } => "dm-switchover-step",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Idle => write!(f, "idle"),
            Action::Propose(c) => write!(f, "propose {c}"),
            Action::Bootstrap { epoch } => write!(f, "bootstrap epoch={epoch}"),
            Action::StartPrimary { epoch } => write!(f, "start-primary epoch={epoch}"),
            Action::StartStandby { upstream: Some(u), epoch } => write!(f, "start-standby upstream={u} epoch={epoch}"),
            Action::StartStandby { upstream: None, epoch } => write!(f, "start-standby upstream=none epoch={epoch}"),
            Action::Follow { upstream, epoch } => write!(f, "follow upstream={upstream} epoch={epoch}"),
            Action::Promote { epoch } => write!(f, "promote epoch={epoch}"),
            Action::Stop { immediate: true } => write!(f, "stop mode=immediate"),
            Action::Stop { immediate: false } => write!(f, "stop mode=fast"),
            Action::Rewind { source, epoch } => write!(f, "rewind source={source} epoch={epoch}"),
            Action::Rebuild { source, epoch } => write!(f, "rebuild source={source} epoch={epoch}"),
            Action::SetSlots { slots, epoch } => write!(f, "set-slots [{}] epoch={epoch}", slots.join(",")),
            Action::SetReadOnly { read_only: true, .. } => write!(f, "set-read-only-by-default"),
            Action::SetReadOnly { read_only: false, epoch } => write!(f, "set-read-write-by-default epoch={epoch}"),
            Action::SetSynchronous { names, quorum, epoch } => {
                write!(f, "set-synchronous-standbys names=[{}] quorum={quorum} epoch={epoch}", names.join(","))
            }
            Action::Restart { id, epoch, as_primary: true, .. } => {
                write!(f, "restart as primary operation={id} epoch={epoch}")
            }
            Action::Restart { id, epoch, upstream, .. } => {
                write!(f, "restart as standby operation={id} upstream={upstream:?} epoch={epoch}")
            }
            Action::Reinit { id, source, epoch, full } => {
                let how = if *full { "base backup" } else { "rewind" };
                write!(f, "rebuild ({how}) operation={id} source={source} epoch={epoch}")
            }
            Action::DmStep { action, epoch } => write!(f, "dm-switchover {action} epoch={epoch}"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotObservedYet => write!(f, "not-observed-yet"),
            Reason::Unregistered => write!(f, "unregistered"),
            Reason::PrimaryWithoutLease => write!(f, "primary-without-lease"),
            Reason::PromotedOutsideHaraft => write!(f, "promoted-outside-haraft"),
            Reason::WritableWithoutLease => write!(f, "read-write-settings-without-lease"),
            Reason::WritesNotYetAllowed => write!(f, "holder-still-read-only-by-default"),
            Reason::ForeignDataDir { found, expected } => {
                write!(f, "foreign-data-dir system_identifier={found} expected={expected}")
            }
            Reason::NoDataToBootstrap => write!(f, "lease-granted-no-data"),
            Reason::AdoptExistingData => write!(f, "adopt-existing-data"),
            Reason::AwaitingAdoption => write!(f, "no-database-recorded-yet-server-left-running"),
            Reason::AdoptSettings => write!(f, "adopting-server-settings"),
            Reason::PromoteUnderLease => write!(f, "lease-granted"),
            Reason::PrimaryWithLease => write!(f, "primary-with-lease"),
            Reason::PrimaryDownTooLong { down_ms, limit_ms } => {
                write!(f, "primary-down-too-long down_ms={down_ms} limit_ms={limit_ms}")
            }
            Reason::RestartPrimaryInPlace => write!(f, "primary-down-restart-in-place"),
            Reason::StartStoppedStandbyToPromote => write!(f, "lease-granted-database-stopped"),
            Reason::HolderWithoutData => write!(f, "holder-without-data"),
            Reason::WaitingForLeaseConfirmation => write!(f, "waiting-for-first-renewal"),
            Reason::NoPrimary => write!(f, "no-primary"),
            Reason::WaitingForBootstrap => write!(f, "waiting-for-bootstrap"),
            Reason::PrimaryAddressUnknown => write!(f, "primary-address-unknown"),
            Reason::NoDataDirectory => write!(f, "no-data-directory"),
            Reason::RewindFailed => write!(f, "rewind-failed"),
            Reason::FormerPrimary => write!(f, "former-primary"),
            Reason::NeedsRewind => write!(f, "needs-rewind"),
            Reason::StoppedStandby => write!(f, "standby-stopped"),
            Reason::Streaming => write!(f, "streaming"),
            Reason::NotStreaming { for_ms } => write!(f, "not-streaming for_ms={for_ms}"),
            Reason::UpstreamChanged => write!(f, "upstream-changed"),
            Reason::ConnectingToPrimary => write!(f, "connecting-to-primary"),
            Reason::SyncSettingBehindState => write!(f, "synchronous-setting-behind-state"),
            Reason::SynchronousSetting { members, quorum } => {
                write!(f, "synchronous-setting-towards members={members} quorum={quorum}")
            }
            Reason::SynchronousState { members, quorum } => {
                write!(f, "synchronous-state-towards members={members} quorum={quorum}")
            }
            Reason::SynchronousModeOff => write!(f, "synchronous-mode-off"),
            Reason::WaitingForSyncStandby => write!(f, "waiting-for-synchronous-standby"),
            Reason::SlotsDiffer => write!(f, "replication-slots-differ-from-members"),
            Reason::TimelineHistoryChanged => write!(f, "timeline-history-changed"),
            Reason::Diverged => write!(f, "diverged-from-primary-timeline-history"),
            Reason::Paused => write!(f, "paused"),
            Reason::NotAMember => write!(f, "not-a-member-of-the-cluster"),
            Reason::OperatorTask => write!(f, "operator-task"),
            Reason::SwitchoverMovingSyncToTarget => write!(f, "switchover-moving-synchronous-set-to-target"),
            Reason::SwitchoverStopping => write!(f, "switchover-stopping-old-primary"),
            Reason::SwitchoverStopped => write!(f, "switchover-old-primary-stopped"),
            Reason::SwitchoverUncleanStop => write!(f, "switchover-old-primary-stopped-uncleanly"),
            Reason::SwitchoverWaitingForLastWal => write!(f, "switchover-waiting-for-last-wal"),
            Reason::SwitchoverPromoted => write!(f, "switchover-target-promoted"),
            Reason::SwitchoverWaitingForTarget => write!(f, "switchover-waiting-for-target"),
            Reason::SwitchoverRejoin => write!(f, "switchover-rejoin-as-standby"),
            Reason::SwitchoverRejoined => write!(f, "switchover-rejoined"),
            Reason::ManualFailoverRequested => write!(f, "manual-failover-requested"),
            Reason::ClaimSynchronousSet => write!(f, "claim-synchronous-set-before-writable"),
            Reason::DmSwitchover(why) => write!(f, "{why}"),
        }
    }
}
