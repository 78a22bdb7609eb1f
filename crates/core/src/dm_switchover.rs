//! Dameng's (DM8) switchover as committed steps: the seed's dmmonitor
//! workflow (/work/shared/seeds/003_2df706cf936fd4a5.txt) inside haraft's
//! operation machinery. This is the one place core branches on the
//! engine for a rule that truly differs: a PostgreSQL-family old primary
//! stops cleanly and gives the lease up, while a DM old primary is put in
//! MOUNT (it serves nothing, writes no redo, and keeps the lease), the
//! target replays the kept redo, and the modes are swapped in MOUNT before
//! either opens. Which list a switchover follows is decided by the old
//! primary's engine when it takes its first step (`DbStatus::engine`),
//! and from then on by the step itself (`SwitchoverStep::Dm`).
//!
//! | step | who moves it on | what it did first |
//! | --- | --- | --- |
//! | `Requested` | old primary: `Snapshot` | (the modes to roll back to: PRIMARY OPEN, STANDBY OPEN; the seed's watchers OPEN → SWITCHOVER) |
//! | `Dm(Snapshot)` | old primary: `OldMounted{last}` | `SP_SET_GLOBAL_DW_STATUS(0, 6)`, `ALTER DATABASE MOUNT`: no new redo after `last` |
//! | `Dm(OldMounted)` | target: `TargetMounted{applied}` | `SP_APPLY_KEEP_PKG()` up to `last`, `ALTER DATABASE MOUNT` |
//! | `Dm(TargetMounted)` | old primary: `OldStandby` (gives the lease up) | `ALTER DATABASE STANDBY` in MOUNT |
//! | `Dm(OldStandby)` | Raft leader: `Grant` to the target | probed: the target in STANDBY mode with `last` applied; else after 10 s `Grant` back (rolled back) |
//! | `Dm(TargetPromoting)` | target: `TargetOpened` | `ALTER DATABASE PRIMARY`, archives INVALID, `ALTER DATABASE OPEN FORCE` under the new epoch |
//! | `Dm(Reopening)` | old primary: `OldReopened` (done) | `ALTER DATABASE OPEN FORCE` as the new primary's STANDBY |
//!
//! Rollback: until the old primary gave the lease up (`Snapshot`,
//! `OldMounted`, `TargetMounted`), a step that takes longer than
//! `DM_STEP_TIMEOUT_MS` ends the switchover rolled back, and the old
//! primary, still holding its lease at its epoch, reopens as PRIMARY (a
//! holder whose DM serves nothing is started as primary, whatever its
//! mode). After it gave the lease up, only a grant ends the step: the
//! target's, or the old primary's back (rolled back at a new epoch).
//! Never two OPEN primaries: the target opens PRIMARY only under the
//! epoch granted after the old primary, in MOUNT and STANDBY mode, gave
//! its lease up.

use crate::db::{DbPosition, DbRole, DbStatus, Engine};
use crate::ids::{Epoch, Lsn, NodeId, TimelineId};
use crate::ops::{OpId, OpOutcome, Switchover, SwitchoverStep};
use crate::reconcile::{Action, Reason};
use crate::state::{ClusterState, Command, Rejected, Verdict};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How long each step before the old primary gives its lease up may take
/// before the switchover rolls back. The seed's steps each took about a
/// second; `SP_APPLY_KEEP_PKG()` on a standby far behind takes longer,
/// and a standby that far behind failed the precondition already.
pub const DM_STEP_TIMEOUT_MS: u64 = 15_000;
/// How long the Raft leader waits, after the old primary gave the lease
/// up, for the target to show it is ready before it gives the lease back.
pub const DM_GRANT_TIMEOUT_MS: u64 = 10_000;
/// How long the old primary may take to stream from the new one before the
/// switchover is reported done without it (as for the other engines).
pub const DM_REOPEN_TIMEOUT_MS: u64 = crate::ops::SWITCHOVER_REJOIN_TIMEOUT_MS;

/// Where a DM switchover stands (see the module's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DmStep {
    Snapshot,
    OldMounted { last: Lsn },
    TargetMounted { last: Lsn },
    OldStandby { last: Lsn },
    TargetPromoting { epoch: Epoch, last: Lsn },
    Reopening { epoch: Epoch },
}

/// What a member reports done (`Command::DmSwitchover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DmDone {
    Snapshot,
    OldMounted { last: Lsn },
    TargetMounted { applied: Lsn },
    OldStandby,
    TargetOpened,
    OldReopened,
}

/// The statements a member runs at a step (`Action::DmStep`); the DM
/// adapter carries them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmAction {
    /// Old primary: `SP_SET_GLOBAL_DW_STATUS(0, 6)`, `ALTER DATABASE MOUNT`.
    MountOld,
    /// Target: `SP_SET_GLOBAL_DW_STATUS(0, 6)`, `SP_APPLY_KEEP_PKG()`,
    /// `ALTER DATABASE MOUNT`.
    ApplyAndMount,
    /// Old primary, in MOUNT: `ALTER DATABASE STANDBY`.
    SetStandby,
    /// Target, holding the new epoch: `ALTER DATABASE PRIMARY`, archives
    /// INVALID, `ALTER DATABASE OPEN FORCE`, `SP_SET_GLOBAL_DW_STATUS(6, 0)`.
    OpenPrimary,
    /// Old primary: `ALTER DATABASE OPEN FORCE` as `upstream`'s STANDBY,
    /// `SP_SET_GLOBAL_DW_STATUS(6, 0)`.
    OpenStandby { upstream: NodeId },
}

/// Why a member takes its DM switchover action (`Reason::DmSwitchover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmWhy {
    Snapshot,
    MountOldPrimary,
    OldPrimaryMounted,
    /// The old primary's server left MOUNT (died, or was opened by hand):
    /// it takes no further step; the switchover rolls back at its timeout.
    OldPrimaryLeftMount,
    ApplyKeptRedo,
    TargetMounted,
    /// The target's applied redo stops short of the old primary's last.
    TargetBehind,
    /// In MOUNT until the other side's step commits.
    WaitingInMount,
    SetStandby,
    OldPrimaryStandby,
    OpenPrimary,
    TargetOpened,
    OpenStandby,
    OldPrimaryReopened,
    /// A lease holder whose DM serves nothing (MOUNT, or stopped in
    /// STANDBY mode) is opened as PRIMARY: DM changes the mode in MOUNT,
    /// there is no replay-then-promote as in PostgreSQL.
    HolderOpensAsPrimary,
}

fn name(state: &ClusterState, id: NodeId) -> String {
    state.member_name(id).map_or_else(|| format!("node {id}"), str::to_string)
}

fn dm(step: DmStep) -> SwitchoverStep {
    SwitchoverStep::Dm(step)
}

/// Checks a `Command::DmSwitchover` against the state (compare-and-set on
/// the lease, the switchover and its step).
pub fn check(state: &ClusterState, node: NodeId, epoch: Epoch, id: OpId, done: DmDone) -> Result<(), Rejected> {
    let not_at_step = Rejected::NoSuchOperation { id };
    let s = state.switchover(id).ok_or(not_at_step.clone())?;
    let held = |holder: NodeId, e: Epoch| -> Result<(), Rejected> {
        match state.lease {
            None => Err(Rejected::LeaseVacant),
            Some(l) if l.epoch != e => Err(Rejected::StaleEpoch { proposed: e, current: l.epoch }),
            Some(l) if l.holder != holder => Err(Rejected::NotHolder { node: holder, holder: l.holder }),
            Some(_) => Ok(()),
        }
    };
    let ok = match (done, s.step) {
        (DmDone::Snapshot, SwitchoverStep::Requested) => node == s.from && epoch == s.epoch,
        (DmDone::OldMounted { .. }, SwitchoverStep::Dm(DmStep::Snapshot))
        | (DmDone::OldStandby, SwitchoverStep::Dm(DmStep::TargetMounted { .. })) => node == s.from,
        (DmDone::TargetMounted { applied }, SwitchoverStep::Dm(DmStep::OldMounted { last })) => {
            if node == s.to && applied < last {
                return Err(Rejected::SwitchoverBehind { node, applied, last });
            }
            node == s.to && epoch == s.epoch
        }
        (DmDone::TargetOpened, SwitchoverStep::Dm(DmStep::TargetPromoting { epoch: granted, .. })) => {
            node == s.to && epoch == granted
        }
        (DmDone::OldReopened, SwitchoverStep::Dm(DmStep::Reopening { .. })) => node == s.from,
        _ => false,
    };
    if !ok {
        return Err(not_at_step);
    }
    match done {
        // The old primary acts under its lease; the target's apply needs
        // the old primary still holding it (a lapse in between ended the
        // switchover); the target opens under the epoch it was granted.
        DmDone::Snapshot | DmDone::OldMounted { .. } | DmDone::OldStandby => held(node, epoch),
        DmDone::TargetMounted { .. } => held(s.from, s.epoch),
        DmDone::TargetOpened => held(node, epoch),
        DmDone::OldReopened => Ok(()),
    }
}

/// What a committed `Command::DmSwitchover` changes: the next step (and
/// the lease, when the old primary gives it up), and the history line.
impl ClusterState {
    pub(crate) fn dm_change(&mut self, log_index: u64, at: u64, epoch: Epoch, id: OpId, done: DmDone) {
        let Some(s) = self.switchover(id).cloned() else { return };
        let (from, to) = (name(self, s.from), name(self, s.to));
        let (next, what) = match (done, s.step) {
            (DmDone::Snapshot, _) => (
                Some(DmStep::Snapshot),
                format!(
                    "{from}: switchover begins (DM's watchers OPEN -> SWITCHOVER): {from} PRIMARY OPEN, {to} STANDBY OPEN \
                     at epoch {epoch}; a failure before {to} opens returns to these modes"
                ),
            ),
            (DmDone::OldMounted { last }, _) => {
                let timeline = self.primary_position.map_or(TimelineId(1), |p| p.timeline);
                self.primary_position = Some(DbPosition { timeline, lsn: last });
                (
                    Some(DmStep::OldMounted { last }),
                    format!(
                        "{from}: SP_SET_GLOBAL_DW_STATUS(0, 6), ALTER DATABASE MOUNT: no new redo after {}",
                        last.0
                    ),
                )
            }
            (DmDone::TargetMounted { applied }, SwitchoverStep::Dm(DmStep::OldMounted { last })) => (
                Some(DmStep::TargetMounted { last }),
                format!(
                    "{to}: SP_SET_GLOBAL_DW_STATUS(0, 6), SP_APPLY_KEEP_PKG() applied up to {} ({from}'s last {}), \
                     ALTER DATABASE MOUNT",
                    applied.0, last.0
                ),
            ),
            (DmDone::OldStandby, SwitchoverStep::Dm(DmStep::TargetMounted { last })) => {
                self.lease = None;
                (
                    Some(DmStep::OldStandby { last }),
                    format!("{from}: ALTER DATABASE STANDBY (in MOUNT); gave the lease up at epoch {epoch}"),
                )
            }
            (DmDone::TargetOpened, SwitchoverStep::Dm(DmStep::TargetPromoting { epoch: granted, .. })) => (
                Some(DmStep::Reopening { epoch: granted }),
                format!(
                    "{to}: ALTER DATABASE PRIMARY, archives INVALID, ALTER DATABASE OPEN FORCE, \
                     SP_SET_GLOBAL_DW_STATUS(6, 0): primary at epoch {granted}"
                ),
            ),
            (DmDone::OldReopened, _) => (
                None,
                format!(
                    "{from}: ALTER DATABASE OPEN FORCE as STANDBY of {to}, SP_SET_GLOBAL_DW_STATUS(6, 0): \
                     streaming from {to}"
                ),
            ),
            // `check` admitted no other pair.
            _ => return,
        };
        self.step_event(log_index, at, id, what);
        match next {
            Some(step) => self.set_step(id, dm(step)),
            None => {
                self.operation = None;
                self.end(log_index, at, id, OpOutcome::Done { note: None });
            }
        }
    }
}

/// A grant during `Dm(OldStandby)` to the target: the step it moves the
/// switchover to, and the history line. `None` for any other grant (the
/// caller rolls back or fails the switchover as for every engine).
pub fn after_grant(state: &ClusterState, s: &Switchover, holder: NodeId, epoch: Epoch) -> Option<(DmStep, String)> {
    match s.step {
        SwitchoverStep::Dm(DmStep::OldStandby { last }) if holder == s.to => {
            let what = format!("{} granted epoch {epoch}: ALTER DATABASE PRIMARY next", name(state, holder));
            Some((DmStep::TargetPromoting { epoch, last }, what))
        }
        _ => None,
    }
}

/// Whether the Raft leader may end the switchover at this step
/// (`Command::EndOperation`): while the old primary still holds its
/// lease (it reopens as PRIMARY), and once the target is open.
pub fn may_end(step: DmStep) -> bool {
    match step {
        DmStep::Snapshot | DmStep::OldMounted { .. } | DmStep::TargetMounted { .. } | DmStep::Reopening { .. } => true,
        DmStep::OldStandby { .. } | DmStep::TargetPromoting { .. } => false,
    }
}

/// The step in words, for status and refusals.
pub fn step_words(state: &ClusterState, s: &Switchover, step: DmStep) -> String {
    let (from, to) = (name(state, s.from), name(state, s.to));
    match step {
        DmStep::Snapshot => format!("{from} mounting (no new redo)"),
        DmStep::OldMounted { last } => format!("{from} in MOUNT at {}; {to} applying the kept redo", last.0),
        DmStep::TargetMounted { .. } => format!("{to} applied {from}'s redo and is in MOUNT; {from} to STANDBY"),
        DmStep::OldStandby { .. } => format!("{from} is STANDBY and gave the lease up; waiting to grant {to}"),
        DmStep::TargetPromoting { epoch, .. } => format!("{to} holds epoch {epoch}: PRIMARY, OPEN FORCE"),
        DmStep::Reopening { .. } => format!("{to} is primary; {from} opening as its STANDBY"),
    }
}

/// With a valid lease: a step that took too long ends the switchover
/// (`None`: keep waiting).
pub fn held_lease_timeout(state: &ClusterState, s: &Switchover, step: DmStep, age_ms: u64) -> Option<OpOutcome> {
    let (from, to) = (name(state, s.from), name(state, s.to));
    let secs = DM_STEP_TIMEOUT_MS / 1000;
    let why = match step {
        DmStep::Snapshot => format!("{from} did not reach MOUNT within {secs} s"),
        DmStep::OldMounted { last } => {
            format!("{to} did not apply {from}'s redo up to {} and reach MOUNT within {secs} s", last.0)
        }
        DmStep::TargetMounted { .. } => format!("{from} did not become STANDBY within {secs} s"),
        DmStep::Reopening { .. } if age_ms > DM_REOPEN_TIMEOUT_MS => {
            let note = format!(
                "{to} is primary; {from} did not stream from it within {} s: see haraftctl status",
                DM_REOPEN_TIMEOUT_MS / 1000
            );
            return Some(OpOutcome::Done { note: Some(note) });
        }
        DmStep::Reopening { .. } | DmStep::OldStandby { .. } | DmStep::TargetPromoting { .. } => return None,
    };
    (age_ms > DM_STEP_TIMEOUT_MS)
        .then(|| OpOutcome::RolledBack { reason: format!("{why}; {from} reopens as PRIMARY at epoch {}", s.epoch) })
}

/// What the Raft leader does while the lease is vacant at `Dm(OldStandby)`.
pub enum GrantStep {
    Grant { holder: NodeId, verdicts: Vec<Verdict>, rollback: bool },
    Probe,
}

/// The target gets the next epoch once a fresh probe shows it in STANDBY
/// mode with the old primary's last redo applied; past
/// `DM_GRANT_TIMEOUT_MS` the old primary gets it back.
pub fn grant_step(
    state: &ClusterState,
    s: &Switchover,
    last: Lsn,
    target: Option<&DbStatus>,
    age_ms: u64,
) -> GrantStep {
    let ready = target.is_some_and(|db| {
        db.system_identifier == state.system_identifier
            && db.role == Some(DbRole::Standby)
            && (db.mounted || db.running)
            && db.lsn.is_some_and(|l| l >= last)
    });
    let got = target.and_then(|db| db.lsn).map_or("nothing".to_string(), |l| l.0.to_string());
    if ready {
        let why =
            format!("switchover target: STANDBY with redo applied up to {got}, the old primary's last {}", last.0);
        let verdicts = vec![Verdict { node: s.to, eligible: true, why, lsn: target.and_then(|db| db.lsn) }];
        return GrantStep::Grant { holder: s.to, verdicts, rollback: false };
    }
    if age_ms > DM_GRANT_TIMEOUT_MS {
        let verdicts = vec![
            Verdict {
                node: s.to,
                eligible: false,
                why: format!(
                    "not ready as STANDBY with {} applied within {} s (has {got})",
                    last.0,
                    DM_GRANT_TIMEOUT_MS / 1000
                ),
                lsn: target.and_then(|db| db.lsn),
            },
            Verdict {
                node: s.from,
                eligible: true,
                why: format!("old primary, in MOUNT at {}: given the lease back", last.0),
                lsn: Some(last),
            },
        ];
        return GrantStep::Grant { holder: s.from, verdicts, rollback: true };
    }
    GrantStep::Probe
}

/// The "choose switchover" preconditions for one candidate (member
/// `candidate_name`), beyond what every engine checks (a running standby
/// of this database, streaming from the primary, within the lag limit):
/// the primary's archive to it VALID, and the redo it received applied.
/// Each reason says what to do.
pub fn candidate_reasons(
    state: &ClusterState,
    primary: &DbStatus,
    candidate_name: &str,
    candidate: &DbStatus,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if !archive_valid(primary, candidate_name) {
        reasons.push(
            "the primary's REALTIME archive to it is not VALID: DM revalidates it once the standby streams again \
             (a few seconds after a switchover); retry then"
                .to_string(),
        );
    }
    let limit = state.policy.maximum_lag_on_failover_bytes;
    if let (Some(received), Some(applied)) = (candidate.lsn, candidate.replayed_lsn) {
        let behind = applied.bytes_until(received);
        if behind > limit {
            reasons.push(format!(
                "has applied only up to {} of the {} it received ({behind} bytes behind, limit {limit}): \
                 wait for it to apply",
                applied.0, received.0
            ));
        }
    }
    reasons
}

/// The primary's archive to `candidate` (by member name) is VALID.
pub fn archive_valid(primary: &DbStatus, candidate: &str) -> bool {
    primary.replicas.iter().any(|r| r.name == candidate && r.streaming)
}

/// The holder's part (the old primary before it gives the lease up, the
/// target once granted). `None`: nothing DM-specific to do.
pub fn holder_step(
    me: NodeId,
    epoch: Epoch,
    s: &Switchover,
    db: &DbStatus,
    down_ms: Option<u64>,
    down_limit_ms: u64,
) -> Option<(Action, Reason)> {
    let why = |w: DmWhy| Reason::DmSwitchover(w);
    let propose = |done: DmDone, w: DmWhy| {
        let command = Command::DmSwitchover { node: me, epoch, id: s.id, done, at_unix_ms: 0 };
        Some((Action::Propose(command), why(w)))
    };
    let act = |action: DmAction, w: DmWhy| Some((Action::DmStep { action, epoch }, why(w)));
    let in_mount = |role: DbRole| db.mounted && db.role == Some(role);
    match s.step {
        SwitchoverStep::Requested if s.from == me && s.epoch == epoch && db.engine == Engine::Dameng => {
            db.is_running_primary().then(|| propose(DmDone::Snapshot, DmWhy::Snapshot)).flatten()
        }
        SwitchoverStep::Dm(step) if s.from == me && s.epoch == epoch => match step {
            DmStep::Snapshot if db.is_running_primary() => act(DmAction::MountOld, DmWhy::MountOldPrimary),
            DmStep::Snapshot => match db.lsn {
                Some(last) if in_mount(DbRole::Primary) => {
                    propose(DmDone::OldMounted { last }, DmWhy::OldPrimaryMounted)
                }
                // Not running: restarted in place first (then mounted).
                _ => None,
            },
            DmStep::OldMounted { .. } if db.mounted => Some((Action::Idle, why(DmWhy::WaitingInMount))),
            DmStep::TargetMounted { .. } if in_mount(DbRole::Primary) => act(DmAction::SetStandby, DmWhy::SetStandby),
            DmStep::TargetMounted { .. } if in_mount(DbRole::Standby) => {
                propose(DmDone::OldStandby, DmWhy::OldPrimaryStandby)
            }
            DmStep::OldMounted { .. } | DmStep::TargetMounted { .. } => {
                Some((Action::Idle, why(DmWhy::OldPrimaryLeftMount)))
            }
            DmStep::OldStandby { .. } | DmStep::TargetPromoting { .. } | DmStep::Reopening { .. } => None,
        },
        SwitchoverStep::Dm(DmStep::TargetPromoting { epoch: granted, .. }) if s.to == me && granted == epoch => {
            if db.is_running_primary() {
                return propose(DmDone::TargetOpened, DmWhy::TargetOpened);
            }
            // Opening keeps failing: the generic rule releases the lease.
            if down_ms.is_some_and(|d| d > down_limit_ms) {
                return None;
            }
            if db.mounted {
                return act(DmAction::OpenPrimary, DmWhy::OpenPrimary);
            }
            None
        }
        _ => None,
    }
}

/// A member's part while it does not hold the lease: the target's apply
/// and MOUNT, both sides staying in MOUNT between steps, and the old
/// primary reopening as the new primary's standby. `None`: nothing
/// DM-specific to do.
pub fn member_step(me: NodeId, state: &ClusterState, db: &DbStatus) -> Option<(Action, Reason)> {
    let s = state.current_switchover()?;
    let SwitchoverStep::Dm(step) = s.step else { return None };
    let why = |w: DmWhy| Reason::DmSwitchover(w);
    let idle = |w: DmWhy| Some((Action::Idle, why(w)));
    let standby_in_mount = db.mounted && db.role == Some(DbRole::Standby);
    if s.to == me {
        return match step {
            DmStep::OldMounted { .. } if db.is_running_standby() => Some((
                Action::DmStep { action: DmAction::ApplyAndMount, epoch: state.epoch },
                why(DmWhy::ApplyKeptRedo),
            )),
            DmStep::OldMounted { last } if standby_in_mount => match db.lsn {
                Some(applied) if applied >= last => {
                    let done = DmDone::TargetMounted { applied };
                    let command = Command::DmSwitchover { node: me, epoch: s.epoch, id: s.id, done, at_unix_ms: 0 };
                    Some((Action::Propose(command), why(DmWhy::TargetMounted)))
                }
                _ => idle(DmWhy::TargetBehind),
            },
            DmStep::TargetMounted { .. } | DmStep::OldStandby { .. } | DmStep::TargetPromoting { .. } if db.mounted => {
                idle(DmWhy::WaitingInMount)
            }
            _ => None,
        };
    }
    if s.from == me {
        return match step {
            // Stays in MOUNT (or down) until the target opened: reopening
            // it here could make two primaries' worth of redo.
            DmStep::OldStandby { .. } | DmStep::TargetPromoting { .. } if !db.running => idle(DmWhy::WaitingInMount),
            DmStep::Reopening { .. } => {
                let primary = state.db_members.get(&s.to).map(|d| d.address.as_str());
                if db.is_running_standby() && db.streaming_from.is_some() && db.streaming_from.as_deref() == primary {
                    let command = Command::DmSwitchover {
                        node: me,
                        epoch: state.epoch,
                        id: s.id,
                        done: DmDone::OldReopened,
                        at_unix_ms: 0,
                    };
                    return Some((Action::Propose(command), why(DmWhy::OldPrimaryReopened)));
                }
                if standby_in_mount {
                    let action = DmAction::OpenStandby { upstream: s.to };
                    return Some((Action::DmStep { action, epoch: state.epoch }, why(DmWhy::OpenStandby)));
                }
                None
            }
            _ => None,
        };
    }
    None
}

impl fmt::Display for DmAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmAction::MountOld => write!(f, "mount-old-primary"),
            DmAction::ApplyAndMount => write!(f, "apply-kept-redo-and-mount"),
            DmAction::SetStandby => write!(f, "set-standby-mode"),
            DmAction::OpenPrimary => write!(f, "open-as-primary"),
            DmAction::OpenStandby { upstream } => write!(f, "open-as-standby upstream={upstream}"),
        }
    }
}

impl fmt::Display for DmWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            DmWhy::Snapshot => "dm-switchover-snapshot-of-modes",
            DmWhy::MountOldPrimary => "dm-switchover-mount-old-primary",
            DmWhy::OldPrimaryMounted => "dm-switchover-old-primary-mounted",
            DmWhy::OldPrimaryLeftMount => "dm-switchover-old-primary-left-mount-rolling-back-at-timeout",
            DmWhy::ApplyKeptRedo => "dm-switchover-apply-kept-redo",
            DmWhy::TargetMounted => "dm-switchover-target-applied-and-mounted",
            DmWhy::TargetBehind => "dm-switchover-target-short-of-last-redo",
            DmWhy::WaitingInMount => "dm-switchover-waiting-in-mount",
            DmWhy::SetStandby => "dm-switchover-old-primary-to-standby",
            DmWhy::OldPrimaryStandby => "dm-switchover-old-primary-standby-gives-lease-up",
            DmWhy::OpenPrimary => "dm-switchover-open-target-as-primary",
            DmWhy::TargetOpened => "dm-switchover-target-opened",
            DmWhy::OpenStandby => "dm-switchover-open-old-primary-as-standby",
            DmWhy::OldPrimaryReopened => "dm-switchover-old-primary-streams",
            DmWhy::HolderOpensAsPrimary => "dm-holder-opens-as-primary",
        };
        write!(f, "{text}")
    }
}
