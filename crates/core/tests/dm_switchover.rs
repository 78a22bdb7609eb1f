//! Dameng's switchover step list as plain data (`core::dm_switchover`):
//! each member's next action at each step, every step a compare-and-set,
//! the "choose switchover" preconditions refused per candidate, and the
//! rollback from each step before the new primary opened.

use haraft_core::dm_switchover::{DM_GRANT_TIMEOUT_MS, DM_STEP_TIMEOUT_MS, DmAction, DmDone, DmStep, DmWhy};
use haraft_core::ops::{OpOutcome, Order, Seen, SeenAll, SwitchoverStep, check_switchover};
use haraft_core::plan::Step;
use haraft_core::reconcile::{Action, MyLease, Reason, ReconcileInput, Rejoin, reconcile};
use haraft_core::*;
use support::{SYSID, n};

mod support;

fn address(i: u64) -> String {
    format!("127.0.0.1:{}", 5440 + i)
}

fn registration(i: u64) -> DbMember {
    DbMember { address: address(i), nofailover: false, priority: 1 }
}

fn applied(s: &mut ClusterState, index: u64, c: Command) -> Effect {
    match s.apply(index, &c) {
        Outcome::Applied(e) => e,
        Outcome::Rejected(r) => panic!("{c} rejected: {r}"),
    }
}

fn rejected(s: &mut ClusterState, c: Command) -> Rejected {
    let before = s.clone();
    match s.apply(99, &c) {
        Outcome::Rejected(r) => {
            assert_eq!(*s, before, "a rejected command changed the state");
            r
        }
        Outcome::Applied(e) => panic!("{c} applied: {e:?}"),
    }
}

/// Three DM members; node1 primary at epoch 1.
fn cluster() -> ClusterState {
    let mut s = ClusterState::default();
    let config = Timing::default();
    applied(&mut s, 1, Command::Initialize { cluster: "c".into(), config, policy: Policy::default() });
    let members = (1..=3).map(|i| Member { id: n(i), name: format!("node{i}"), address: String::new() }).collect();
    applied(&mut s, 2, Command::SetMembers { members });
    for i in 1..=3 {
        applied(&mut s, 3, Command::Register { node: n(i), db: registration(i) });
    }
    applied(&mut s, 4, Command::Grant { holder: n(1), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
    applied(&mut s, 5, Command::SetSystemIdentifier { holder: n(1), epoch: Epoch(1), system_identifier: SYSID });
    let position = Some(DbPosition { timeline: TimelineId(1), lsn: Lsn(100) });
    applied(&mut s, 6, Command::Renew { holder: n(1), epoch: Epoch(1), renewal: RenewalSeq(0), position });
    s
}

fn switchover(s: &mut ClusterState, index: u64) -> u64 {
    let order = Order::Switchover { from: n(1), to: n(2), epoch: Epoch(1), at_unix_ms: None, force: false };
    match applied(s, index, Command::Operator { order, by: "ops@db1".into(), at_unix_ms: 1 }) {
        Effect::Accepted { id } => id,
        other => panic!("{other:?}"),
    }
}

fn dm(role: DbRole) -> DbStatus {
    DbStatus {
        has_data: true,
        role: Some(role),
        timeline: Some(TimelineId(1)),
        system_identifier: Some(SYSID),
        engine: Engine::Dameng,
        ..DbStatus::default()
    }
}

/// An OPEN PRIMARY whose REALTIME archives to `valid` are VALID.
fn open_primary(lsn: u64, valid: &[u64]) -> DbStatus {
    let replicas =
        (2..=3).map(|i| Replica { name: format!("node{i}"), streaming: valid.contains(&i), sync: false }).collect();
    DbStatus { running: true, lsn: Some(Lsn(lsn)), replayed_lsn: Some(Lsn(lsn)), replicas, ..dm(DbRole::Primary) }
}

/// An OPEN STANDBY of node1: received `lsn`, applied `applied`.
fn open_standby(lsn: u64, applied: u64) -> DbStatus {
    DbStatus {
        running: true,
        lsn: Some(Lsn(lsn)),
        replayed_lsn: Some(Lsn(applied)),
        streaming_from: Some(address(1)),
        ..dm(DbRole::Standby)
    }
}

fn mounted(role: DbRole, lsn: u64) -> DbStatus {
    DbStatus { mounted: true, lsn: Some(Lsn(lsn)), replayed_lsn: Some(Lsn(lsn)), ..dm(role) }
}

fn next(s: &ClusterState, me: u64, lease: MyLease, db: &DbStatus) -> (Action, Reason) {
    let reg = registration(me);
    reconcile(&ReconcileInput {
        me: n(me),
        state: s,
        lease,
        registration: &reg,
        db: Some(db),
        rejoin: Rejoin::default(),
        guard_armed: false,
        primary_down_ms: None,
        not_streaming_ms: None,
        stream_timeout_ms: 10_000,
    })
}

/// The command a member proposes now (panics on any other action).
fn proposal(s: &ClusterState, me: u64, lease: MyLease, db: &DbStatus) -> Command {
    match next(s, me, lease, db) {
        (Action::Propose(c), _) => c,
        other => panic!("node{me} does {other:?}, not a proposal"),
    }
}

fn plan_at(s: &ClusterState, live: &SeenAll, age_ms: u64) -> Step {
    support::plan_at(s, Some(live), age_ms, 5)
}

fn seen(dbs: &[(u64, DbStatus)]) -> SeenAll {
    dbs.iter().map(|(i, db)| (n(*i), Seen { lease_valid_for_ms: Some(1000), db: Some(db.clone()) })).collect()
}

fn step(s: &ClusterState) -> SwitchoverStep {
    s.current_switchover().expect("a switchover").step
}

fn outcome(s: &ClusterState, id: u64) -> Option<OpOutcome> {
    s.history.iter().rev().find_map(|h| match &h.event {
        HistoryEvent::Operation { id: i, event: OpEvent::Ended { outcome } } if *i == id => Some(outcome.clone()),
        _ => None,
    })
}

fn steps_said(s: &ClusterState, id: u64) -> Vec<String> {
    s.history
        .iter()
        .filter_map(|h| match &h.event {
            HistoryEvent::Operation { id: i, event: OpEvent::Step { what } } if *i == id => Some(what.clone()),
            _ => None,
        })
        .collect()
}

const VALID1: MyLease = MyLease::Valid(Epoch(1));

/// Runs the switchover of node1 to node2 up to (not including) `until`;
/// returns its id.
fn run_until(s: &mut ClusterState, until: SwitchoverStep) -> u64 {
    let id = switchover(s, 10);
    let mut index = 11;
    let mut apply = |s: &mut ClusterState, c: Command| {
        applied(s, index, c);
        index += 1;
    };
    loop {
        let now = step(s);
        if now == until {
            return id;
        }
        match now {
            SwitchoverStep::Requested => apply(s, proposal(s, 1, VALID1, &open_primary(500, &[2, 3]))),
            SwitchoverStep::Dm(DmStep::Snapshot) => apply(s, proposal(s, 1, VALID1, &mounted(DbRole::Primary, 500))),
            SwitchoverStep::Dm(DmStep::OldMounted { .. }) => {
                apply(s, proposal(s, 2, MyLease::None, &mounted(DbRole::Standby, 520)))
            }
            SwitchoverStep::Dm(DmStep::TargetMounted { .. }) => {
                apply(s, proposal(s, 1, VALID1, &mounted(DbRole::Standby, 500)))
            }
            SwitchoverStep::Dm(DmStep::OldStandby { .. }) => {
                let Step::Propose(grant) = plan_at(s, &seen(&[(2, mounted(DbRole::Standby, 520))]), 100) else {
                    panic!("no grant")
                };
                apply(s, grant)
            }
            SwitchoverStep::Dm(DmStep::TargetPromoting { .. }) => {
                let opened = DbStatus { running: true, ..dm(DbRole::Primary) };
                apply(s, proposal(s, 2, MyLease::Valid(Epoch(2)), &opened))
            }
            other => panic!("run_until does not pass {other:?}"),
        }
    }
}

#[test]
fn each_member_is_told_its_next_step_and_the_history_reads_like_the_seed() {
    let mut s = cluster();
    let id = switchover(&mut s, 10);
    let why = |w: DmWhy| Reason::DmSwitchover(w);
    // The old primary records the modes to roll back to, then mounts.
    let snapshot = proposal(&s, 1, VALID1, &open_primary(500, &[2, 3]));
    assert!(matches!(snapshot, Command::DmSwitchover { done: DmDone::Snapshot, .. }), "{snapshot}");
    applied(&mut s, 11, snapshot);
    assert_eq!(
        next(&s, 1, VALID1, &open_primary(500, &[2, 3])),
        (Action::DmStep { action: DmAction::MountOld, epoch: Epoch(1) }, why(DmWhy::MountOldPrimary))
    );
    // Meanwhile the target streams on, untouched.
    assert_eq!(next(&s, 2, MyLease::None, &open_standby(500, 500)), (Action::Idle, Reason::Streaming));
    // In MOUNT at 500: reported, still holding the lease.
    let mounted_at = proposal(&s, 1, VALID1, &mounted(DbRole::Primary, 500));
    assert!(matches!(mounted_at, Command::DmSwitchover { done: DmDone::OldMounted { last: Lsn(500) }, .. }));
    applied(&mut s, 12, mounted_at);
    assert_eq!(s.holder(), Some(n(1)));
    assert_eq!(s.primary_position.map(|p| p.lsn), Some(Lsn(500)));
    // The old primary waits in MOUNT; the target applies the kept redo and mounts.
    assert_eq!(next(&s, 1, VALID1, &mounted(DbRole::Primary, 500)), (Action::Idle, why(DmWhy::WaitingInMount)));
    assert_eq!(
        next(&s, 2, MyLease::None, &open_standby(520, 480)),
        (Action::DmStep { action: DmAction::ApplyAndMount, epoch: Epoch(1) }, why(DmWhy::ApplyKeptRedo))
    );
    assert_eq!(next(&s, 2, MyLease::None, &mounted(DbRole::Standby, 499)), (Action::Idle, why(DmWhy::TargetBehind)));
    let c = proposal(&s, 2, MyLease::None, &mounted(DbRole::Standby, 520));
    applied(&mut s, 13, c);
    // The old primary becomes STANDBY in MOUNT, then gives the lease up.
    assert_eq!(
        next(&s, 1, VALID1, &mounted(DbRole::Primary, 500)),
        (Action::DmStep { action: DmAction::SetStandby, epoch: Epoch(1) }, why(DmWhy::SetStandby))
    );
    assert_eq!(next(&s, 2, MyLease::None, &mounted(DbRole::Standby, 520)), (Action::Idle, why(DmWhy::WaitingInMount)));
    let c = proposal(&s, 1, VALID1, &mounted(DbRole::Standby, 500));
    applied(&mut s, 14, c);
    assert_eq!(s.lease, None);
    // Nobody opens while the lease is vacant.
    assert_eq!(next(&s, 1, MyLease::None, &mounted(DbRole::Standby, 500)), (Action::Idle, why(DmWhy::WaitingInMount)));
    assert_eq!(next(&s, 2, MyLease::None, &mounted(DbRole::Standby, 520)), (Action::Idle, why(DmWhy::WaitingInMount)));
    // The leader grants the target once a probe shows it ready.
    let not_yet = seen(&[(2, mounted(DbRole::Standby, 400))]);
    assert_eq!(plan_at(&s, &not_yet, 100), Step::ProbeMembers);
    let Step::Propose(grant @ Command::Grant { holder, epoch, .. }) =
        plan_at(&s, &seen(&[(2, mounted(DbRole::Standby, 520))]), 100)
    else {
        panic!("no grant")
    };
    assert_eq!((holder, epoch), (n(2), Epoch(2)));
    applied(&mut s, 15, grant);
    assert_eq!(step(&s), SwitchoverStep::Dm(DmStep::TargetPromoting { epoch: Epoch(2), last: Lsn(500) }));
    // Granted but unconfirmed: the target waits for its first renewal.
    assert_eq!(next(&s, 2, MyLease::Pending, &mounted(DbRole::Standby, 520)).1, Reason::WaitingForLeaseConfirmation);
    let valid2 = MyLease::Valid(Epoch(2));
    assert_eq!(
        next(&s, 2, valid2, &mounted(DbRole::Standby, 520)),
        (Action::DmStep { action: DmAction::OpenPrimary, epoch: Epoch(2) }, why(DmWhy::OpenPrimary))
    );
    let opened = DbStatus { running: true, ..dm(DbRole::Primary) };
    let c = proposal(&s, 2, valid2, &opened);
    applied(&mut s, 16, c);
    // The old primary opens as the new primary's standby, then reports it.
    assert_eq!(
        next(&s, 1, MyLease::None, &mounted(DbRole::Standby, 500)),
        (Action::DmStep { action: DmAction::OpenStandby { upstream: n(2) }, epoch: Epoch(2) }, why(DmWhy::OpenStandby))
    );
    let streaming = DbStatus { streaming_from: Some(address(2)), ..open_standby(530, 530) };
    let c = proposal(&s, 1, MyLease::None, &streaming);
    applied(&mut s, 17, c);
    assert_eq!(s.operation, None);
    assert_eq!(outcome(&s, id), Some(OpOutcome::Done { note: None }));
    let said = steps_said(&s, id).join("\n");
    let order = [
        "node1: switchover begins",
        "node1: SP_SET_GLOBAL_DW_STATUS(0, 6), ALTER DATABASE MOUNT",
        "node2: SP_SET_GLOBAL_DW_STATUS(0, 6), SP_APPLY_KEEP_PKG() applied up to 520 (node1's last 500)",
        "node1: ALTER DATABASE STANDBY",
        "node2 granted epoch 2",
        "node2: ALTER DATABASE PRIMARY, archives INVALID, ALTER DATABASE OPEN FORCE",
        "node1: ALTER DATABASE OPEN FORCE as STANDBY of node2",
    ];
    let mut at = 0;
    for line in order {
        let found = said[at..].find(line).unwrap_or_else(|| panic!("{line:?} not (in order) in:\n{said}"));
        at += found + line.len();
    }
}

#[test]
fn every_step_is_a_compare_and_set() {
    let mut s = cluster();
    let id = switchover(&mut s, 10);
    let cmd = |node: u64, epoch: u64, done: DmDone| Command::DmSwitchover {
        node: n(node),
        epoch: Epoch(epoch),
        id,
        done,
        at_unix_ms: 0,
    };
    // Out of order, by the wrong member, or at a stale epoch: refused.
    let early = rejected(&mut s, cmd(1, 1, DmDone::OldMounted { last: Lsn(5) }));
    assert_eq!(early, Rejected::NoSuchOperation { id });
    assert_eq!(rejected(&mut s, cmd(2, 1, DmDone::Snapshot)), Rejected::NoSuchOperation { id });
    assert_eq!(rejected(&mut s, cmd(1, 0, DmDone::Snapshot)), Rejected::NoSuchOperation { id });
    applied(&mut s, 11, cmd(1, 1, DmDone::Snapshot));
    applied(&mut s, 12, cmd(1, 1, DmDone::OldMounted { last: Lsn(500) }));
    // The target cannot report less than the old primary's last redo.
    let short = rejected(&mut s, cmd(2, 1, DmDone::TargetMounted { applied: Lsn(499) }));
    assert_eq!(short, Rejected::SwitchoverBehind { node: n(2), applied: Lsn(499), last: Lsn(500) });
    assert!(short.to_string().contains("short of the old primary's last 500"), "{short}");
    assert_eq!(
        rejected(&mut s, cmd(3, 1, DmDone::TargetMounted { applied: Lsn(600) })),
        Rejected::NoSuchOperation { id }
    );
    applied(&mut s, 13, cmd(2, 1, DmDone::TargetMounted { applied: Lsn(500) }));
    // Only the holder gives the lease up; the target cannot open before a grant.
    assert!(matches!(rejected(&mut s, cmd(2, 1, DmDone::OldStandby)), Rejected::NoSuchOperation { .. }));
    assert_eq!(rejected(&mut s, cmd(2, 2, DmDone::TargetOpened)), Rejected::NoSuchOperation { id });
    applied(&mut s, 14, cmd(1, 1, DmDone::OldStandby));
    // No grant to anyone but the target or the old primary ends it well:
    // the planner grants only those two; a third member's grant fails it.
    let mut other = s.clone();
    applied(&mut other, 15, Command::Grant { holder: n(3), epoch: Epoch(2), verdicts: vec![], at_unix_ms: 0 });
    assert!(matches!(outcome(&other, id), Some(OpOutcome::Failed { .. })), "{:?}", outcome(&other, id));
    // A PostgreSQL step at a DM step is refused.
    let pg = Command::SwitchoverPromoted { holder: n(2), epoch: Epoch(2), id, at_unix_ms: 0 };
    assert!(matches!(rejected(&mut s, pg), Rejected::LeaseVacant));
}

#[test]
fn a_postgres_old_primary_never_takes_the_dm_steps() {
    let mut s = cluster();
    switchover(&mut s, 10);
    let pg = DbStatus { engine: Engine::Postgres, ..open_primary(500, &[2, 3]) };
    assert_eq!(next(&s, 1, VALID1, &pg), (Action::Stop { immediate: false }, Reason::SwitchoverStopping));
    let dm = open_primary(500, &[2, 3]);
    assert!(matches!(next(&s, 1, VALID1, &dm).0, Action::Propose(Command::DmSwitchover { .. })));
}

#[test]
fn choose_switchover_refuses_each_candidate_with_its_reason() {
    let s = cluster();
    const BIG: u64 = 1 << 30;
    let primary = open_primary(BIG, &[3]);
    let live = seen(&[
        (1, primary),
        // Archive to it INVALID (just after a switchover).
        (2, open_standby(BIG, BIG)),
        // Received all, applied far less.
        (3, open_standby(BIG, BIG - 32 * 1024 * 1024)),
    ]);
    let plan = check_switchover(&s, &live, None, None, false, false);
    assert!(!plan.ok(), "{plan:?}");
    let reasons = |id: u64| plan.candidates.iter().find(|(c, _)| *c == n(id)).unwrap().1.reasons.join("; ");
    assert!(reasons(2).contains("REALTIME archive to it is not VALID"), "{}", reasons(2));
    assert!(reasons(3).contains("has applied only up to"), "{}", reasons(3));
    let summary = plan.summary(&s);
    assert!(summary.contains("node2:") && summary.contains("node3:"), "{summary}");

    // A candidate in MOUNT is not OPEN; a primary in MOUNT blocks it all.
    let live = seen(&[(1, open_primary(1000, &[2, 3])), (2, mounted(DbRole::Standby, 1000))]);
    let plan = check_switchover(&s, &live, None, Some(n(2)), false, false);
    assert!(plan.candidates[0].1.reasons.iter().any(|r| r.contains("not OPEN in STANDBY mode")), "{plan:?}");
    let live = seen(&[(1, mounted(DbRole::Primary, 1000)), (2, open_standby(1000, 1000))]);
    let plan = check_switchover(&s, &live, None, Some(n(2)), false, false);
    assert!(plan.blockers.iter().any(|b| b.contains("DM instance is not OPEN in PRIMARY mode")), "{plan:?}");

    // All conditions hold: chosen.
    let live = seen(&[(1, open_primary(1000, &[2, 3])), (2, open_standby(1000, 1000)), (3, open_standby(990, 990))]);
    let plan = check_switchover(&s, &live, None, None, false, false);
    assert!(plan.ok(), "{plan:?}");
    assert_eq!(plan.to, Some(n(2)));
}

/// Before the old primary gave the lease up, a step that takes too long
/// ends the switchover rolled back, and the old primary, holding its
/// lease at its epoch, reopens as PRIMARY whatever mode it reached; the
/// target reopens as its standby.
#[test]
fn every_step_before_the_lease_is_given_up_rolls_back_under_the_old_epoch() {
    let steps = [
        SwitchoverStep::Dm(DmStep::Snapshot),
        SwitchoverStep::Dm(DmStep::OldMounted { last: Lsn(500) }),
        SwitchoverStep::Dm(DmStep::TargetMounted { last: Lsn(500) }),
    ];
    for until in steps {
        let mut s = cluster();
        let id = run_until(&mut s, until);
        let live = seen(&[]);
        assert_eq!(plan_at(&s, &live, DM_STEP_TIMEOUT_MS - 1,), Step::Wait, "{until:?}: ended early");
        let Step::Propose(end @ Command::EndOperation { .. }) = plan_at(&s, &live, DM_STEP_TIMEOUT_MS + 1) else {
            panic!("{until:?}: no end")
        };
        applied(&mut s, 50, end);
        let Some(OpOutcome::RolledBack { reason }) = outcome(&s, id) else {
            panic!("{until:?}: {:?}", outcome(&s, id))
        };
        assert!(reason.contains("node1 reopens as PRIMARY at epoch 1"), "{reason}");
        assert_eq!(s.lease.map(|l| (l.holder, l.epoch)), Some((n(1), Epoch(1))));
        // Whatever the old primary reached: reopened as PRIMARY at epoch 1.
        for old in [open_primary(500, &[]), mounted(DbRole::Primary, 500), mounted(DbRole::Standby, 500)] {
            let (action, _) = next(&s, 1, VALID1, &old);
            let expected = if old.running { Action::Idle } else { Action::StartPrimary { epoch: Epoch(1) } };
            if old.running {
                assert!(!matches!(action, Action::Stop { .. } | Action::DmStep { .. }), "{until:?}: {action:?}");
            } else {
                assert_eq!(action, expected, "{until:?} with {old:?}");
            }
        }
        // The target, in MOUNT or OPEN, is a standby of the old primary again.
        let (action, _) = next(&s, 2, MyLease::None, &mounted(DbRole::Standby, 520));
        assert_eq!(action, Action::StartStandby { upstream: Some(n(1)), epoch: Epoch(1) }, "{until:?}");
    }
}

#[test]
fn after_the_lease_was_given_up_only_a_grant_ends_it() {
    let mut s = cluster();
    let id = run_until(&mut s, SwitchoverStep::Dm(DmStep::OldStandby { last: Lsn(500) }));
    // The leader cannot end it, and neither can an operator.
    let end = Command::EndOperation { id, outcome: OpOutcome::Failed { reason: "x".into() }, at_unix_ms: 0 };
    assert_eq!(rejected(&mut s, end.clone()), Rejected::TooLateToCancel { id });
    // The target never shows up ready: the old primary gets the lease back
    // at the next epoch and reopens as PRIMARY from STANDBY mode.
    let behind = seen(&[(2, mounted(DbRole::Standby, 400))]);
    assert_eq!(plan_at(&s, &behind, DM_GRANT_TIMEOUT_MS - 1), Step::ProbeMembers);
    let Step::Propose(back @ Command::Grant { holder, epoch, .. }) = plan_at(&s, &behind, DM_GRANT_TIMEOUT_MS + 1)
    else {
        panic!("no grant back")
    };
    assert_eq!((holder, epoch), (n(1), Epoch(2)));
    applied(&mut s, 60, back);
    assert!(matches!(outcome(&s, id), Some(OpOutcome::RolledBack { .. })), "{:?}", outcome(&s, id));
    let (action, reason) = next(&s, 1, MyLease::Valid(Epoch(2)), &mounted(DbRole::Standby, 500));
    assert_eq!(action, Action::StartPrimary { epoch: Epoch(2) });
    assert_eq!(reason, Reason::DmSwitchover(DmWhy::HolderOpensAsPrimary));

    // Granted to the target: still no end by the leader until it opened.
    let mut s = cluster();
    let id = run_until(&mut s, SwitchoverStep::Dm(DmStep::TargetPromoting { epoch: Epoch(2), last: Lsn(500) }));
    let end = Command::EndOperation { id, outcome: OpOutcome::Failed { reason: "x".into() }, at_unix_ms: 0 };
    assert_eq!(rejected(&mut s, end), Rejected::TooLateToCancel { id });
    // Its lease lapses (the target died): failed, a failover begins; the
    // old primary stays in MOUNT (no primary to follow yet).
    let lapse = Command::Lapse { holder: n(2), epoch: Epoch(2), renewal: RenewalSeq(0), at_unix_ms: 0 };
    applied(&mut s, 61, lapse);
    assert!(matches!(outcome(&s, id), Some(OpOutcome::Failed { .. })));
    assert_eq!(next(&s, 1, MyLease::None, &mounted(DbRole::Standby, 500)), (Action::Idle, Reason::NoPrimary));
    // Opened: the target is the primary; the old primary's reopening may
    // time out into done with a note.
    let mut s = cluster();
    let id = run_until(&mut s, SwitchoverStep::Dm(DmStep::Reopening { epoch: Epoch(2) }));
    let live = seen(&[]);
    assert_eq!(plan_at(&s, &live, 1000), Step::Wait);
    let Step::Propose(done) = plan_at(&s, &live, 61_000) else { panic!("no end") };
    applied(&mut s, 62, done);
    assert!(matches!(outcome(&s, id), Some(OpOutcome::Done { note: Some(_) })), "{:?}", outcome(&s, id));
}

/// At no step of the list do two members open as PRIMARY: only the
/// member holding a valid lease is ever told to open or start as primary.
#[test]
fn only_the_holder_is_ever_told_to_open_as_primary() {
    let dbs = [
        open_primary(500, &[2, 3]),
        open_standby(500, 500),
        mounted(DbRole::Primary, 500),
        mounted(DbRole::Standby, 520),
        DbStatus { running: true, ..dm(DbRole::Primary) },
        dm(DbRole::Standby),
        dm(DbRole::Primary),
    ];
    let ends = [
        SwitchoverStep::Dm(DmStep::Snapshot),
        SwitchoverStep::Dm(DmStep::OldMounted { last: Lsn(500) }),
        SwitchoverStep::Dm(DmStep::TargetMounted { last: Lsn(500) }),
        SwitchoverStep::Dm(DmStep::OldStandby { last: Lsn(500) }),
        SwitchoverStep::Dm(DmStep::TargetPromoting { epoch: Epoch(2), last: Lsn(500) }),
        SwitchoverStep::Dm(DmStep::Reopening { epoch: Epoch(2) }),
    ];
    for until in ends {
        let mut s = cluster();
        run_until(&mut s, until);
        for me in 1..=3 {
            // A member's own judgement is valid only for the lease the state gives it.
            let mine = s.lease.filter(|l| l.holder == n(me)).map(|l| MyLease::Valid(l.epoch));
            for lease in [MyLease::None, MyLease::Pending].into_iter().chain(mine) {
                let holds = matches!(lease, MyLease::Valid(_));
                for db in &dbs {
                    let (action, reason) = next(&s, me, lease, db);
                    let opens_primary = matches!(
                        action,
                        Action::StartPrimary { .. }
                            | Action::Promote { .. }
                            | Action::DmStep { action: DmAction::OpenPrimary, .. }
                    );
                    assert!(
                        !opens_primary || holds,
                        "{until:?}: node{me} with {lease:?} and {db:?} told {action:?} because {reason}"
                    );
                }
            }
        }
    }
}
