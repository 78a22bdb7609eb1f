//! The cluster planner: runs on the Raft leader, decides which command (if
//! any) the cluster needs next. Being leader gives it no authority: what it
//! proposes only counts once committed, and `apply` rejects it if stale.

use crate::ids::{BootTime, NodeId};
use crate::lease::ExpiryTimer;
use crate::ops::{OpOutcome, SeenAll, SwitchoverStep};
use crate::state::{ClusterState, Command, Lease, Operation, Verdict};
use crate::timing::{Policy, Timing};
use std::fmt;

pub use crate::db::Live;
pub use crate::verdicts::{check_failover, failover_verdict};
use crate::verdicts::{db_verdicts, lease_only_verdicts};

pub struct PlanInput<'a> {
    pub state: &'a ClusterState,
    /// The cluster name from this node's configuration, for `Initialize`.
    pub cluster: &'a str,
    /// The settings from this node's configuration, for `Initialize`.
    pub initial_timing: Timing,
    pub initial_policy: Policy,
    /// The leader's expiry timer, already fed the applied lease.
    pub timer: &'a ExpiryTimer,
    pub now: BootTime,
    /// Wall-clock time, only to stamp history entries for people.
    pub now_unix_ms: u64,
    /// Members that answered a fresh probe (taken since the current
    /// operation step began); `None` when not probed yet.
    pub live: Option<&'a SeenAll>,
    /// How long this leader has seen the current operation at its current
    /// step (0 without one): what step timeouts are measured against.
    pub operation_age_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Propose(Command),
    /// Ask every member about itself, then plan again with `live`.
    ProbeMembers,
    Wait,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    ClusterUninitialized,
    NoMembers,
    LeaseValid {
        holder: NodeId,
        remaining_ms: u64,
    },
    /// The timer watches an older lease than the applied one; the shell feeds
    /// it before the next plan.
    TimerBehindState,
    LeaseExpired {
        lease: Lease,
    },
    NoPrimaryNeedsProbe,
    NoPrimaryAssigned,
    LeaseLapsed {
        previous: NodeId,
    },
    NoLiveMember,
    /// Nobody may be promoted; every member's reason is in the verdicts.
    NoEligibleCandidate {
        verdicts: Vec<Verdict>,
    },
    /// Paused: an expired lease is not lapsed, nobody is promoted.
    Paused,
    /// An operation's step took longer than its bound.
    OperationTimedOut {
        id: u64,
    },
    SwitchoverTargetCaughtUp,
    SwitchoverWaitingForTarget,
    SwitchoverRollback,
    ManualFailover,
    ScheduledSwitchoverDue {
        id: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub step: Step,
    pub reason: Reason,
}

pub fn plan(input: &PlanInput) -> Plan {
    let state = input.state;
    if state.config.is_none() {
        let command = Command::Initialize {
            cluster: input.cluster.to_string(),
            config: input.initial_timing,
            policy: input.initial_policy,
        };
        return Plan { step: Step::Propose(command), reason: Reason::ClusterUninitialized };
    }
    if state.members.is_empty() {
        return Plan { step: Step::Wait, reason: Reason::NoMembers };
    }
    if let Some(lease) = state.lease {
        if input.timer.watching() != Some(lease) {
            return Plan { step: Step::Wait, reason: Reason::TimerBehindState };
        }
        if let Some(expired) = input.timer.expired(input.now) {
            // Paused: no automatic failover; an operator's failover still
            // needs the expired lease lapsed.
            if state.paused && !matches!(state.operation, Some(Operation::ManualFailover { .. })) {
                return Plan { step: Step::Wait, reason: Reason::Paused };
            }
            return Plan {
                step: Step::Propose(Command::Lapse {
                    holder: expired.holder,
                    epoch: expired.epoch,
                    renewal: expired.renewal,
                    at_unix_ms: input.now_unix_ms,
                }),
                reason: Reason::LeaseExpired { lease: expired },
            };
        }
        if let Some(plan) = held_lease_operation(input, lease) {
            return plan;
        }
        return Plan {
            step: Step::Wait,
            reason: Reason::LeaseValid { holder: lease.holder, remaining_ms: input.timer.remaining_ms(input.now) },
        };
    }
    let Some(seen) = input.live else {
        return Plan { step: Step::ProbeMembers, reason: Reason::NoPrimaryNeedsProbe };
    };
    let live: Live = seen.iter().map(|(id, s)| (*id, s.db.clone())).collect();
    let live = &live;
    match &state.operation {
        Some(Operation::Switchover(s)) => {
            if let SwitchoverStep::Demoted { last } = s.step {
                return switchover_grant(input, s.from, s.to, last, live);
            }
            if let SwitchoverStep::Dm(crate::dm_switchover::DmStep::OldStandby { last }) = s.step {
                let target = live.get(&s.to).and_then(Option::as_ref);
                return match crate::dm_switchover::grant_step(state, s, last, target, input.operation_age_ms) {
                    crate::dm_switchover::GrantStep::Grant { holder, verdicts, rollback: false } => {
                        grant(input, holder, verdicts, Reason::SwitchoverTargetCaughtUp)
                    }
                    crate::dm_switchover::GrantStep::Grant { holder, verdicts, rollback: true } => {
                        grant(input, holder, verdicts, Reason::SwitchoverRollback)
                    }
                    crate::dm_switchover::GrantStep::Probe => {
                        Plan { step: Step::ProbeMembers, reason: Reason::SwitchoverWaitingForTarget }
                    }
                };
            }
        }
        Some(Operation::ManualFailover { id, to, allow_data_loss }) => {
            return manual_failover(input, *id, *to, *allow_data_loss, live);
        }
        _ => {}
    }
    if state.paused {
        return Plan { step: Step::Wait, reason: Reason::Paused };
    }
    let previous = match &state.operation {
        Some(Operation::Failover { from, .. }) => Some(*from),
        _ => None,
    };
    // A member that reports a database but has not registered it yet makes
    // this a cluster of databases all the same: wait for its registration.
    let databases = !state.db_members.is_empty() || live.values().any(Option::is_some);
    let verdicts = if databases { db_verdicts(state, live) } else { lease_only_verdicts(state, live, previous) };
    // The first grant waits until every member has registered its
    // database (or answered that it has none) and answered this round:
    // the choice (`adopt::bootstrap_verdicts`) must not depend on which
    // agents happened to start first, and a member that did not answer
    // may be running a primary that nobody may be promoted beside.
    let unregistered = state.members.keys().any(|id| {
        let answered = live.contains_key(id);
        !answered || (!state.db_members.contains_key(id) && !matches!(live.get(id), Some(None)))
    });
    if databases && state.system_identifier.is_none() && unregistered {
        return Plan { step: Step::Wait, reason: Reason::NoEligibleCandidate { verdicts } };
    }
    let chosen = verdicts.iter().find(|v| v.eligible).map(|v| v.node);
    match chosen {
        None if live.is_empty() => Plan { step: Step::Wait, reason: Reason::NoLiveMember },
        None => Plan { step: Step::Wait, reason: Reason::NoEligibleCandidate { verdicts } },
        Some(holder) => Plan {
            step: Step::Propose(Command::Grant {
                holder,
                epoch: state.epoch.next(),
                verdicts,
                at_unix_ms: input.now_unix_ms,
            }),
            reason: match previous {
                Some(previous) => Reason::LeaseLapsed { previous },
                None => Reason::NoPrimaryAssigned,
            },
        },
    }
}

fn end(input: &PlanInput, id: u64, outcome: OpOutcome) -> Plan {
    Plan {
        step: Step::Propose(Command::EndOperation { id, outcome, at_unix_ms: input.now_unix_ms }),
        reason: Reason::OperationTimedOut { id },
    }
}

fn grant(input: &PlanInput, holder: NodeId, verdicts: Vec<Verdict>, reason: Reason) -> Plan {
    let epoch = input.state.epoch.next();
    Plan { step: Step::Propose(Command::Grant { holder, epoch, verdicts, at_unix_ms: input.now_unix_ms }), reason }
}

/// With a valid lease: step timeouts of operations, and a scheduled
/// switchover whose time came.
fn held_lease_operation(input: &PlanInput, lease: Lease) -> Option<Plan> {
    let state = input.state;
    let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
    let age = input.operation_age_ms;
    match &state.operation {
        Some(Operation::Switchover(s)) => match s.step {
            SwitchoverStep::Requested if age > crate::ops::SWITCHOVER_STOP_TIMEOUT_MS => {
                let reason = format!(
                    "{} did not stop cleanly within {} s; it stays primary",
                    name(s.from),
                    crate::ops::SWITCHOVER_STOP_TIMEOUT_MS / 1000
                );
                return Some(end(input, s.id, OpOutcome::Failed { reason }));
            }
            SwitchoverStep::Rejoining { .. } if age > crate::ops::SWITCHOVER_REJOIN_TIMEOUT_MS => {
                let note = format!(
                    "{} is primary; {} did not stream from it within {} s: see haraftctl status",
                    name(s.to),
                    name(s.from),
                    crate::ops::SWITCHOVER_REJOIN_TIMEOUT_MS / 1000
                );
                return Some(end(input, s.id, OpOutcome::Done { note: Some(note) }));
            }
            SwitchoverStep::Dm(step) => {
                let outcome = crate::dm_switchover::held_lease_timeout(state, s, step, age)?;
                return Some(end(input, s.id, outcome));
            }
            _ => return None,
        },
        Some(Operation::ManualFailover { id, .. }) if age > crate::ops::FAILOVER_TIMEOUT_MS => {
            let reason = format!(
                "{} kept the lease for {} s: its primary is healthy again, use haraftctl switchover",
                name(lease.holder),
                crate::ops::FAILOVER_TIMEOUT_MS / 1000
            );
            return Some(end(input, *id, OpOutcome::Failed { reason }));
        }
        Some(_) => return None,
        None => {}
    }
    let scheduled = state.scheduled.as_ref().filter(|s| input.now_unix_ms >= s.at_unix_ms)?;
    let Some(seen) = input.live else {
        return Some(Plan { step: Step::ProbeMembers, reason: Reason::ScheduledSwitchoverDue { id: scheduled.id } });
    };
    let check =
        crate::ops::check_switchover(state, seen, Some(scheduled.from), Some(scheduled.to), scheduled.force, true);
    let step = if check.ok() {
        Command::StartScheduled { id: scheduled.id, epoch: lease.epoch, at_unix_ms: input.now_unix_ms }
    } else {
        let reason = check.summary(state);
        Command::EndOperation {
            id: scheduled.id,
            outcome: OpOutcome::Skipped { reason },
            at_unix_ms: input.now_unix_ms,
        }
    };
    Some(Plan { step: Step::Propose(step), reason: Reason::ScheduledSwitchoverDue { id: scheduled.id } })
}

/// The old primary stopped cleanly at `last`: the target gets the next
/// epoch once it has received all of it; if it does not within the bound,
/// the old primary gets the lease back.
fn switchover_grant(input: &PlanInput, from: NodeId, to: NodeId, last: crate::db::DbPosition, live: &Live) -> Plan {
    let state = input.state;
    let target = live.get(&to).and_then(Option::as_ref);
    let has_all = target.is_some_and(|db| {
        db.is_running_standby()
            && db.system_identifier == state.system_identifier
            && db.timeline == Some(last.timeline)
            && db.lsn.is_some_and(|l| l > last.lsn)
    });
    let got = target.and_then(|db| db.lsn).map_or("nothing".to_string(), |l| l.to_string());
    if has_all {
        let verdicts = vec![Verdict {
            node: to,
            eligible: true,
            why: format!("switchover target: received up to {got}, past the old primary's last {}", last.lsn),
            lsn: target.and_then(|db| db.lsn),
        }];
        return grant(input, to, verdicts, Reason::SwitchoverTargetCaughtUp);
    }
    if input.operation_age_ms > crate::ops::SWITCHOVER_CATCH_UP_TIMEOUT_MS {
        let verdicts = vec![
            Verdict {
                node: to,
                eligible: false,
                why: format!(
                    "did not receive the old primary's last {} within {} s (has {got})",
                    last.lsn,
                    crate::ops::SWITCHOVER_CATCH_UP_TIMEOUT_MS / 1000
                ),
                lsn: target.and_then(|db| db.lsn),
            },
            Verdict {
                node: from,
                eligible: true,
                why: format!("old primary, stopped cleanly at {}: given the lease back", last.lsn),
                lsn: Some(last.lsn),
            },
        ];
        return grant(input, from, verdicts, Reason::SwitchoverRollback);
    }
    // Ask again: the target is about to have it.
    Plan { step: Step::ProbeMembers, reason: Reason::SwitchoverWaitingForTarget }
}

/// An operator asked for `to`: grant it once it answers, if it may be
/// promoted (or only its lag or synchronous state stands in the way and
/// data loss was allowed); otherwise end the request with the reason.
fn manual_failover(input: &PlanInput, id: u64, to: NodeId, allow_data_loss: bool, live: &Live) -> Plan {
    if !live.contains_key(&to) {
        if input.operation_age_ms > crate::ops::FAILOVER_TIMEOUT_MS {
            let name = input.state.member_name(to).unwrap_or("?");
            let reason = format!("{name} did not answer for {} s", crate::ops::FAILOVER_TIMEOUT_MS / 1000);
            return end(input, id, OpOutcome::Failed { reason });
        }
        return Plan { step: Step::ProbeMembers, reason: Reason::ManualFailover };
    }
    let mut verdicts = db_verdicts(input.state, live);
    match failover_verdict(input.state, &verdicts, to, allow_data_loss) {
        Ok(why) => {
            if let Some(v) = verdicts.iter_mut().find(|v| v.node == to) {
                v.eligible = true;
                v.why = why;
            }
            // The chosen member first, as the history reads a grant.
            verdicts.sort_by_key(|v| v.node != to);
            grant(input, to, verdicts, Reason::ManualFailover)
        }
        Err(reason) => end(input, id, OpOutcome::Failed { reason }),
    }
}

/// Probe answers from database statuses (tests and callers without lease views).
pub fn seen_from(live: &Live) -> SeenAll {
    live.iter().map(|(id, db)| (*id, crate::ops::Seen { lease_valid_for_ms: None, db: db.clone() })).collect()
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ClusterUninitialized => write!(f, "cluster-uninitialized"),
            Reason::NoMembers => write!(f, "no-members"),
            Reason::LeaseValid { holder, remaining_ms } => {
                write!(f, "lease-valid holder={holder} expires_in_ms={remaining_ms}")
            }
            Reason::TimerBehindState => write!(f, "timer-behind-state"),
            Reason::LeaseExpired { lease } => {
                write!(f, "lease-expired holder={} epoch={} renewal={}", lease.holder, lease.epoch, lease.renewal)
            }
            Reason::NoPrimaryNeedsProbe => write!(f, "no-primary-probing-members"),
            Reason::NoPrimaryAssigned => write!(f, "no-primary-assigned"),
            Reason::LeaseLapsed { previous } => write!(f, "lease-lapsed previous={previous}"),
            Reason::NoLiveMember => write!(f, "no-live-member"),
            Reason::NoEligibleCandidate { verdicts } => {
                write!(f, "no-eligible-candidate")?;
                for v in verdicts {
                    write!(f, "; node {}: {}", v.node, v.why)?;
                }
                Ok(())
            }
            Reason::Paused => write!(f, "paused"),
            Reason::OperationTimedOut { id } => write!(f, "operation-step-ended id={id}"),
            Reason::SwitchoverTargetCaughtUp => write!(f, "switchover-target-caught-up"),
            Reason::SwitchoverWaitingForTarget => write!(f, "switchover-waiting-for-target"),
            Reason::SwitchoverRollback => write!(f, "switchover-rollback"),
            Reason::ManualFailover => write!(f, "manual-failover"),
            Reason::ScheduledSwitchoverDue { id } => write!(f, "scheduled-switchover-due id={id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbStatus;
    use crate::db::{DbMember, DbPosition, DbRole};
    use crate::ids::Lsn;
    use crate::ids::{Epoch, RenewalSeq, TimelineId};
    use crate::state::Member;

    fn state(members: &[u64]) -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(1, &Command::Initialize { cluster: "c".into(), config: Timing::default(), policy: Policy::default() });
        let members = members
            .iter()
            .map(|&i| Member { id: NodeId(i), name: format!("node{i}"), address: format!("127.0.0.1:{i}") })
            .collect();
        s.apply(2, &Command::SetMembers { members });
        s
    }

    fn grant(s: &mut ClusterState, holder: u64) {
        let epoch = s.epoch.next();
        let out = s.apply(3, &Command::Grant { holder: NodeId(holder), epoch, verdicts: vec![], at_unix_ms: 0 });
        assert!(matches!(out, crate::state::Outcome::Applied(_)), "{out:?}");
    }

    fn lapse(s: &mut ClusterState) {
        let l = s.lease.unwrap();
        s.apply(4, &Command::Lapse { holder: l.holder, epoch: l.epoch, renewal: l.renewal, at_unix_ms: 0 });
    }

    fn live(ids: &[u64]) -> Live {
        ids.iter().map(|&i| (NodeId(i), None)).collect()
    }

    /// What a plan proposes, reduced to what the cases compare.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Initialize,
        Grant(u64, u64),
        Lapse(u64, u64),
        Probe,
        Wait,
    }

    /// One case: state, timer, now, live set → expected step.
    fn check(state: &ClusterState, timer: &ExpiryTimer, now: u64, live: Option<&Live>, expected: Got) {
        let seen = live.map(seen_from);
        let input = PlanInput {
            state,
            cluster: "c",
            initial_timing: Timing::default(),
            initial_policy: Policy::default(),
            timer,
            now: BootTime(now),
            now_unix_ms: 0,
            live: seen.as_ref(),
            operation_age_ms: 0,
        };
        let got = match plan(&input).step {
            Step::Propose(Command::Initialize { .. }) => Got::Initialize,
            Step::Propose(Command::Grant { holder, epoch, .. }) => Got::Grant(holder.0, epoch.0),
            Step::Propose(Command::Lapse { holder, epoch, .. }) => Got::Lapse(holder.0, epoch.0),
            Step::Propose(other) => panic!("unexpected proposal {other}"),
            Step::ProbeMembers => Got::Probe,
            Step::Wait => Got::Wait,
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn uninitialized_cluster_is_initialized_first() {
        let s = ClusterState::default();
        check(&s, &ExpiryTimer::start(None, BootTime(0), 3000), 0, None, Got::Initialize);
    }

    #[test]
    fn first_grant_goes_to_lowest_live_id_at_epoch_one() {
        let s = state(&[1, 2, 3]);
        let t = ExpiryTimer::start(None, BootTime(0), 3000);
        check(&s, &t, 0, None, Got::Probe);
        check(&s, &t, 0, Some(&live(&[1, 2, 3])), Got::Grant(1, 1));
        check(&s, &t, 0, Some(&live(&[2, 3])), Got::Grant(2, 1));
        check(&s, &t, 0, Some(&live(&[])), Got::Wait);
    }

    #[test]
    fn held_lease_lapses_only_when_the_timer_fired() {
        let mut s = state(&[1, 2, 3]);
        grant(&mut s, 1);
        let l = s.lease.unwrap();
        let t = ExpiryTimer::start(Some(l), BootTime(100), 3000);
        check(&s, &t, 3099, Some(&live(&[2, 3])), Got::Wait);
        check(&s, &t, 3100, None, Got::Lapse(1, 1));
        // A timer that watches an older lease never lapses the newer one.
        let old = ExpiryTimer::start(Some(Lease { renewal: RenewalSeq(7), ..l }), BootTime(0), 1);
        check(&s, &old, 10_000, None, Got::Wait);
    }

    #[test]
    fn after_a_lapse_another_member_gets_the_next_epoch() {
        let mut s = state(&[1, 2, 3]);
        grant(&mut s, 1);
        lapse(&mut s);
        let t = ExpiryTimer::start(None, BootTime(0), 3000);
        check(&s, &t, 0, Some(&live(&[1, 2, 3])), Got::Grant(2, 2));
        check(&s, &t, 0, Some(&live(&[1, 3])), Got::Grant(3, 2));
        // Only the old holder is alive: it may take the lease back, at a new epoch.
        check(&s, &t, 0, Some(&live(&[1])), Got::Grant(1, 2));
    }

    // --- clusters of databases ---

    const SYSID: u64 = 42;

    fn db_state(tags: &[(u64, bool, u32)]) -> ClusterState {
        let mut s = state(&tags.iter().map(|t| t.0).collect::<Vec<_>>());
        for &(id, nofailover, priority) in tags {
            let db = DbMember { address: format!("127.0.0.1:{}", 5000 + id), nofailover, priority };
            s.apply(5, &Command::Register { node: NodeId(id), db });
        }
        s
    }

    fn standby(lsn: u64, timeline: u32) -> Option<DbStatus> {
        Some(DbStatus {
            has_data: true,
            running: true,
            role: Some(DbRole::Standby),
            timeline: Some(TimelineId(timeline)),
            lsn: Some(Lsn(lsn)),
            replayed_lsn: Some(Lsn(lsn)),
            system_identifier: Some(SYSID),
            clean_shutdown: None,
            streaming_from: None,
            replicas: Vec::new(),
            synchronous_names: None,
            slots: None,
            forks: None,
            ..DbStatus::default()
        })
    }

    /// A database cluster after bootstrap on node 1, whose lease lapsed
    /// with the primary last reported at (timeline 2, LSN 10 MiB).
    fn lapsed_db_cluster(tags: &[(u64, bool, u32)]) -> ClusterState {
        let mut s = db_state(tags);
        grant(&mut s, 1);
        s.apply(6, &Command::SetSystemIdentifier { holder: NodeId(1), epoch: Epoch(1), system_identifier: SYSID });
        let position = Some(DbPosition { timeline: TimelineId(2), lsn: Lsn(10 << 20) });
        s.apply(7, &Command::Renew { holder: NodeId(1), epoch: Epoch(1), renewal: RenewalSeq(0), position });
        lapse(&mut s);
        s
    }

    fn plan_with(s: &ClusterState, live: &Live) -> Plan {
        let t = ExpiryTimer::start(None, BootTime(0), 3000);
        plan(&PlanInput {
            state: s,
            cluster: "c",
            initial_timing: Timing::default(),
            initial_policy: Policy::default(),
            timer: &t,
            now: BootTime(0),
            now_unix_ms: 0,
            live: Some(&seen_from(live)),
            operation_age_ms: 0,
        })
    }

    #[test]
    fn bootstrap_prefers_a_member_with_data_else_the_lowest_id() {
        let s = db_state(&[(1, false, 1), (2, false, 1), (3, false, 1)]);
        let none = || Some(DbStatus::default());
        let t = ExpiryTimer::start(None, BootTime(0), 3000);
        let all_empty: Live = [(NodeId(1), none()), (NodeId(2), none()), (NodeId(3), none())].into();
        check(&s, &t, 0, Some(&all_empty), Got::Grant(1, 1));
        let with_data: Live = [(NodeId(1), none()), (NodeId(2), none()), (NodeId(3), standby(5, 1))].into();
        check(&s, &t, 0, Some(&with_data), Got::Grant(3, 1));
    }

    #[test]
    fn failover_picks_the_most_advanced_eligible_standby_and_says_why_not_the_others() {
        let s = lapsed_db_cluster(&[(1, false, 1), (2, false, 1), (3, false, 1), (4, true, 1), (5, false, 1)]);
        let live: Live = [
            (
                NodeId(1),
                Some(DbStatus {
                    has_data: true,
                    system_identifier: Some(SYSID),
                    lsn: Some(Lsn(20 << 20)),
                    ..DbStatus::default()
                }),
            ),
            (NodeId(2), standby((10 << 20) - 100, 2)),
            (NodeId(3), standby((10 << 20) - 10, 2)),
            (NodeId(4), standby(10 << 20, 2)),
            (NodeId(5), standby(1 << 20, 2)),
        ]
        .into();
        let p = plan_with(&s, &live);
        let Step::Propose(Command::Grant { holder, epoch, verdicts, .. }) = p.step else { panic!("{p:?}") };
        assert_eq!((holder, epoch), (NodeId(3), Epoch(2)));
        let why = |id: u64| verdicts.iter().find(|v| v.node == NodeId(id)).unwrap().why.clone();
        assert!(why(1).starts_with("stopped, last checkpoint"), "{}", why(1));
        assert!(
            verdicts.iter().find(|v| v.node == NodeId(1)).unwrap().eligible,
            "a stopped member may be chosen, last"
        );
        assert_eq!(why(4), "tagged nofailover");
        assert!(why(5).starts_with("lags 9437184 bytes"), "{}", why(5));
        assert!(verdicts.iter().find(|v| v.node == NodeId(2)).unwrap().eligible);
    }

    #[test]
    fn when_every_database_stopped_the_most_advanced_one_is_chosen() {
        let s = lapsed_db_cluster(&[(1, false, 1), (2, false, 1), (3, false, 1)]);
        let stopped = |lsn: u64| {
            let mut d = standby(lsn, 2);
            d.as_mut().unwrap().running = false;
            d
        };
        let live: Live = [(NodeId(1), stopped(100)), (NodeId(2), stopped(5000)), (NodeId(3), stopped(200))].into();
        let p = plan_with(&s, &live);
        assert!(matches!(p.step, Step::Propose(Command::Grant { holder: NodeId(2), .. })), "{p:?}");
        // A running standby, even behind, is preferred to a stopped one.
        let live: Live = [(NodeId(1), stopped(10 << 20)), (NodeId(3), standby((10 << 20) - 10, 2))].into();
        let p = plan_with(&s, &live);
        assert!(matches!(p.step, Step::Propose(Command::Grant { holder: NodeId(3), .. })), "{p:?}");
    }

    #[test]
    fn priority_breaks_ties_then_the_lowest_id() {
        let s = lapsed_db_cluster(&[(1, false, 1), (2, false, 1), (3, false, 5), (4, false, 5)]);
        let at = (10 << 20) - 5;
        let live: Live = [(NodeId(2), standby(at, 2)), (NodeId(3), standby(at, 2)), (NodeId(4), standby(at, 2))].into();
        let p = plan_with(&s, &live);
        assert!(matches!(p.step, Step::Propose(Command::Grant { holder: NodeId(3), .. })), "{p:?}");
    }

    #[test]
    fn nobody_eligible_waits_and_names_every_reason() {
        let s = lapsed_db_cluster(&[(1, false, 1), (2, false, 1), (3, false, 1)]);
        let mut other_db = standby(10 << 20, 2);
        other_db.as_mut().unwrap().system_identifier = Some(7);
        let live: Live = [(NodeId(2), standby(100, 1)), (NodeId(3), other_db)].into();
        let p = plan_with(&s, &live);
        assert_eq!(p.step, Step::Wait);
        let Reason::NoEligibleCandidate { verdicts } = &p.reason else { panic!("{p:?}") };
        assert_eq!(verdicts.len(), 3);
        let text = p.reason.to_string();
        assert!(text.contains("node 1: did not answer"), "{text}");
        assert!(text.contains("node 2: on timeline 1, behind the primary's timeline 2"), "{text}");
        assert!(text.contains("node 3: holds another database"), "{text}");
    }

    #[test]
    fn bootstrap_waits_for_registrations_and_skips_nofailover() {
        // Nobody registered yet, but members report databases: wait.
        let s = state(&[1, 2]);
        let empty: Live = [(NodeId(1), Some(DbStatus::default())), (NodeId(2), Some(DbStatus::default()))].into();
        let p = plan_with(&s, &empty);
        assert_eq!(p.step, Step::Wait, "{p:?}");
        assert!(p.reason.to_string().contains("has not registered its database yet"), "{}", p.reason);
        // One registered, the other not yet: still wait.
        let s = db_state(&[(1, false, 1)]);
        let s = {
            let mut s = s;
            s.apply(
                9,
                &Command::SetMembers {
                    members: (1..=2)
                        .map(|i| Member { id: NodeId(i), name: format!("node{i}"), address: String::new() })
                        .collect(),
                },
            );
            s
        };
        assert_eq!(plan_with(&s, &empty).step, Step::Wait);
        // A member that did not answer and never registered: still wait
        // (node1 is the lowest id, and node2 may be too).
        let only_one: Live = [(NodeId(1), Some(DbStatus::default()))].into();
        assert_eq!(plan_with(&s, &only_one).step, Step::Wait);
        // Registered, node1 tagged nofailover: node2 bootstraps.
        let s = db_state(&[(1, true, 1), (2, false, 1)]);
        let p = plan_with(&s, &empty);
        assert!(matches!(p.step, Step::Propose(Command::Grant { holder: NodeId(2), .. })), "{p:?}");
    }

    #[test]
    fn members_without_a_database_never_get_the_lease_in_a_database_cluster() {
        let mut s = lapsed_db_cluster(&[(1, false, 1), (2, false, 1)]);
        s.apply(
            9,
            &Command::SetMembers {
                members: (1..=3)
                    .map(|i| Member { id: NodeId(i), name: format!("n{i}"), address: String::new() })
                    .collect(),
            },
        );
        let live: Live = [(NodeId(3), None)].into();
        let p = plan_with(&s, &live);
        assert_eq!(p.step, Step::Wait, "{p:?}");
    }
}
