//! Operator operations as plain data: the switchover steps through
//! `apply`, the planner's grant, rollback and timeouts, and the rules that
//! end or refuse operations.

use haraft_core::ops::{OpOutcome, Order, Seen, SeenAll, SwitchoverStep, check_switchover};
use haraft_core::plan::{PlanInput, Step, plan};
use haraft_core::*;

mod support;
use support::*;

#[test]
fn a_switchover_runs_step_by_step_to_done() {
    let mut s = cluster(Policy::default());
    let id = switchover(&mut s, 10, 2);
    assert_eq!(s.current_switchover().unwrap().step, SwitchoverStep::Requested);
    // Another switchover is refused meanwhile, and nothing changes.
    let again = Order::Switchover { from: n(1), to: n(3), epoch: Epoch(1), at_unix_ms: None, force: false };
    let refusal = rejected(&mut s, Command::Operator { order: again, by: "x".into(), at_unix_ms: 0 });
    assert!(matches!(refusal, Rejected::OperationInProgress { .. }), "{refusal:?}");
    let last = DbPosition { timeline: TimelineId(1), lsn: Lsn(200) };
    let demoted = Command::SwitchoverDemoted { holder: n(1), epoch: Epoch(1), id, last, at_unix_ms: 2 };
    applied(&mut s, 11, demoted);
    assert_eq!(s.lease, None);
    assert_eq!(s.primary_position, Some(last));

    // The leader waits (probing again) until the target has received past `last`...
    let behind = seen(&[(2, standby(200)), (3, standby(300))]);
    assert_eq!(plan_at(&s, Some(&behind), 100, 0), Step::ProbeMembers);
    // ...then grants it the next epoch.
    let caught_up = seen(&[(2, standby(201))]);
    let Step::Propose(grant @ Command::Grant { holder, epoch, .. }) = plan_at(&s, Some(&caught_up), 100, 0) else {
        panic!("no grant")
    };
    assert_eq!((holder, epoch), (n(2), Epoch(2)));
    applied(&mut s, 12, grant);
    assert_eq!(s.current_switchover().unwrap().step, SwitchoverStep::Promoting { epoch: Epoch(2), last });
    // Only the target speaks for its promotion, and only at its epoch.
    let wrong = Command::SwitchoverPromoted { holder: n(3), epoch: Epoch(2), id, at_unix_ms: 3 };
    assert!(matches!(rejected(&mut s, wrong), Rejected::NotHolder { .. }));
    applied(&mut s, 13, Command::SwitchoverPromoted { holder: n(2), epoch: Epoch(2), id, at_unix_ms: 3 });
    // Too late to cancel now.
    let cancel = Command::Operator { order: Order::CancelSwitchover, by: "x".into(), at_unix_ms: 0 };
    assert_eq!(rejected(&mut s, cancel), Rejected::TooLateToCancel { id });
    applied(&mut s, 14, Command::SwitchoverRejoined { node: n(1), id, at_unix_ms: 4 });
    assert_eq!(s.operation, None);
    assert_eq!(last_outcome(&s, id), Some(OpOutcome::Done { note: None }));
}

#[test]
fn a_target_that_never_catches_up_gives_the_old_primary_the_lease_back() {
    let mut s = cluster(Policy::default());
    let id = switchover(&mut s, 10, 2);
    let last = DbPosition { timeline: TimelineId(1), lsn: Lsn(200) };
    applied(&mut s, 11, Command::SwitchoverDemoted { holder: n(1), epoch: Epoch(1), id, last, at_unix_ms: 0 });
    let behind = seen(&[(2, standby(150))]);
    let Step::Propose(grant @ Command::Grant { holder, .. }) =
        plan_at(&s, Some(&behind), ops::SWITCHOVER_CATCH_UP_TIMEOUT_MS + 1, 0)
    else {
        panic!("no rollback")
    };
    assert_eq!(holder, n(1));
    applied(&mut s, 12, grant);
    assert_eq!((s.operation.clone(), s.epoch), (None, Epoch(2)));
    let Some(OpOutcome::RolledBack { reason }) = last_outcome(&s, id) else { panic!("{:?}", s.history.back()) };
    assert!(reason.contains("did not receive") && reason.contains("node1 is primary again"), "{reason}");
}

#[test]
fn a_lapse_during_a_switchover_fails_it_into_a_failover_and_a_stuck_stop_ends_it() {
    let mut s = cluster(Policy::default());
    let id = switchover(&mut s, 10, 2);
    // The old primary never stopped: after the bound the leader ends it, and it stays primary.
    let Step::Propose(end @ Command::EndOperation { .. }) = plan_at(&s, None, ops::SWITCHOVER_STOP_TIMEOUT_MS + 1, 0)
    else {
        panic!("no end")
    };
    applied(&mut s, 11, end);
    assert_eq!((s.operation.clone(), s.holder()), (None, Some(n(1))));
    assert!(matches!(last_outcome(&s, id), Some(OpOutcome::Failed { .. })));

    let id = switchover(&mut s, 12, 3);
    let l = s.lease.unwrap();
    applied(&mut s, 13, Command::Lapse { holder: n(1), epoch: l.epoch, renewal: l.renewal, at_unix_ms: 0 });
    assert!(matches!(s.operation, Some(Operation::Failover { .. })));
    let Some(OpOutcome::Failed { reason }) = last_outcome(&s, id) else { panic!() };
    assert!(reason.contains("lapsed") && reason.contains("failing over"), "{reason}");
}

#[test]
fn refusals_change_nothing() {
    let mut s = cluster(Policy::default());
    let op = |order| Command::Operator { order, by: "x".into(), at_unix_ms: 0 };
    let sw = |from, to, epoch| Order::Switchover {
        from: n(from),
        to: n(to),
        epoch: Epoch(epoch),
        at_unix_ms: None,
        force: false,
    };
    assert!(matches!(rejected(&mut s, op(sw(2, 3, 1))), Rejected::NotHolder { .. }));
    assert!(matches!(rejected(&mut s, op(sw(1, 2, 7))), Rejected::StaleEpoch { .. }));
    assert_eq!(rejected(&mut s, op(sw(1, 1, 1))), Rejected::SameNode { node: n(1) });
    assert_eq!(rejected(&mut s, op(Order::Rebuild { node: n(1), full: false })), Rejected::IsPrimary { node: n(1) });
    assert_eq!(
        rejected(&mut s, op(Order::Failover { to: n(1), allow_data_loss: false })),
        Rejected::IsPrimary { node: n(1) }
    );
    assert_eq!(rejected(&mut s, op(Order::CancelSwitchover)), Rejected::NothingToCancel);
    assert_eq!(rejected(&mut s, op(Order::Resume)), Rejected::AlreadyPaused { paused: false });
    let bad = Timing { lease_ttl_ms: 100, ..Timing::default() };
    let set = Order::SetConfig { timing: bad, policy: Policy::default(), changes: String::new() };
    assert!(matches!(rejected(&mut s, op(set)), Rejected::BadConfig { .. }));
    applied(&mut s, 10, op(Order::Pause));
    assert_eq!(rejected(&mut s, op(sw(1, 2, 1))), Rejected::Paused);
    let forced = Order::Switchover { from: n(1), to: n(2), epoch: Epoch(1), at_unix_ms: None, force: true };
    applied(&mut s, 11, op(forced));
}

#[test]
fn paused_clusters_do_not_lapse_and_tasks_end_when_reported() {
    let mut s = cluster(Policy::default());
    let op = |order| Command::Operator { order, by: "x".into(), at_unix_ms: 0 };
    applied(&mut s, 10, op(Order::Pause));
    let timer = lease::ExpiryTimer::start(s.lease, BootTime(0), 2500);
    let input = PlanInput {
        state: &s,
        cluster: "c",
        initial_timing: Timing::default(),
        initial_policy: Policy::default(),
        timer: &timer,
        now: BootTime(10_000),
        now_unix_ms: 0,
        live: None,
        operation_age_ms: 0,
    };
    assert_eq!(plan(&input).step, Step::Wait, "a paused cluster lapsed an expired lease");
    // An operator's failover still gets the expired lease lapsed.
    let mut asked = s.clone();
    applied(&mut asked, 20, op(Order::Failover { to: n(3), allow_data_loss: false }));
    let input = PlanInput { state: &asked, ..input };
    assert!(matches!(plan(&input).step, Step::Propose(Command::Lapse { .. })), "{:?}", plan(&input));
    applied(&mut s, 11, op(Order::Resume));
    let Effect::Accepted { id } = applied(&mut s, 12, op(Order::Restart { node: n(2) })) else { panic!() };
    assert_eq!(rejected(&mut s, op(Order::Restart { node: n(2) })), Rejected::TaskPending { node: n(2), id });
    let done = Command::TaskDone { node: n(2), id, error: Some("pg_ctl failed".into()), at_unix_ms: 0 };
    applied(&mut s, 13, done);
    assert!(s.tasks.is_empty());
    assert_eq!(last_outcome(&s, id), Some(OpOutcome::Failed { reason: "pg_ctl failed".into() }));
}

#[test]
fn lease_timing_set_at_runtime_starts_with_the_next_grant() {
    let mut s = cluster(Policy::default());
    let t = Timing { lease_ttl_ms: 4000, ..Timing::default() };
    let order = Order::SetConfig {
        timing: t,
        policy: Policy { synchronous_mode: haraft_core::sync::SyncMode::On, ..Policy::default() },
        changes: "x".into(),
    };
    applied(&mut s, 10, Command::Operator { order, by: "x".into(), at_unix_ms: 0 });
    assert_eq!(s.policy.synchronous_mode, haraft_core::sync::SyncMode::On, "policy applies at once");
    assert_eq!((s.config, s.next_config), (Some(Timing::default()), Some(t)));
    let l = s.lease.unwrap();
    applied(&mut s, 11, Command::Lapse { holder: n(1), epoch: l.epoch, renewal: l.renewal, at_unix_ms: 0 });
    applied(&mut s, 12, Command::Grant { holder: n(2), epoch: Epoch(2), verdicts: vec![], at_unix_ms: 0 });
    assert_eq!((s.config, s.next_config), (Some(t), None));
}

#[test]
fn a_holder_that_never_became_writable_leaves_the_previous_synchronous_members_promotable() {
    let mut s = cluster(Policy { synchronous_mode: haraft_core::sync::SyncMode::On, ..Policy::default() });
    applied(&mut s, 7, Command::SetSynchronous { holder: n(1), epoch: Epoch(1), standbys: [n(2)].into(), quorum: 1 });
    let l = s.lease.unwrap();
    applied(&mut s, 8, Command::Lapse { holder: n(1), epoch: l.epoch, renewal: l.renewal, at_unix_ms: 0 });
    applied(&mut s, 9, Command::Grant { holder: n(2), epoch: Epoch(2), verdicts: vec![], at_unix_ms: 0 });
    assert!(s.synchronous.is_empty());
    // node2 dies before claiming the set or renewing with a position.
    applied(&mut s, 10, Command::Lapse { holder: n(2), epoch: Epoch(2), renewal: RenewalSeq(0), at_unix_ms: 0 });
    assert_eq!(s.synchronous, [n(1), n(2)].into(), "the old set and the old holder are promotable again");
    // Once a holder claimed the set, only it (and its own set) count.
    applied(&mut s, 11, Command::Grant { holder: n(1), epoch: Epoch(3), verdicts: vec![], at_unix_ms: 0 });
    applied(
        &mut s,
        12,
        Command::SetSynchronous { holder: n(1), epoch: Epoch(3), standbys: Default::default(), quorum: 0 },
    );
    applied(&mut s, 13, Command::Lapse { holder: n(1), epoch: Epoch(3), renewal: RenewalSeq(0), at_unix_ms: 0 });
    assert!(s.synchronous.is_empty());
}

#[test]
fn switchover_checks_name_every_candidate() {
    let s = cluster(Policy::default());
    let mut far = standby(100 - 1).unwrap();
    far.lsn = Some(Lsn(0));
    let probes: SeenAll = [
        (
            n(1),
            Seen {
                lease_valid_for_ms: Some(1500),
                db: Some(DbStatus {
                    running: true,
                    role: Some(DbRole::Primary),
                    timeline: Some(TimelineId(1)),
                    lsn: Some(Lsn(5 << 20)),
                    has_data: true,
                    system_identifier: Some(SYSID),
                    ..DbStatus::default()
                }),
            },
        ),
        (n(2), Seen { lease_valid_for_ms: None, db: standby(5 << 20) }),
        (n(3), Seen { lease_valid_for_ms: None, db: Some(far) }),
    ]
    .into();
    let plan = check_switchover(&s, &probes, None, None, false, false);
    assert!(plan.ok(), "{plan:?}");
    assert_eq!(plan.to, Some(n(2)));
    let node3 = &plan.candidates.iter().find(|(id, _)| *id == n(3)).unwrap().1;
    assert!(!node3.ok && node3.reasons[0].starts_with("lags 5242880 bytes"), "{node3:?}");
    let to_self = check_switchover(&s, &probes, None, Some(n(1)), false, false);
    assert!(!to_self.ok() && to_self.summary(&s).contains("is the primary itself"), "{}", to_self.summary(&s));
    let without_primary: SeenAll = probes.into_iter().filter(|(id, _)| *id != n(1)).collect();
    let down = check_switchover(&s, &without_primary, None, Some(n(2)), false, false);
    assert!(down.summary(&s).contains("the primary node1 did not answer"), "{}", down.summary(&s));
}

#[test]
fn member_changes_are_checked_and_a_removed_holder_renews_no_more() {
    use haraft_core::members::{AddStep, check_add_member, check_remove_member};
    let mut s = cluster(Policy { synchronous_mode: haraft_core::sync::SyncMode::On, ..Policy::default() });
    let voters: std::collections::BTreeSet<NodeId> = (1..=3).map(n).collect();
    // Adding: a fresh id, name and address only.
    assert!(matches!(check_add_member(&s, &voters, 4, "node4", "10.0.0.4:7001"), Ok(AddStep::Learner(_))));
    for (id, name, address, why) in [
        (0, "node4", "10.0.0.4:7001", "id 0"),
        (2, "node4", "10.0.0.4:7001", "is node2's"),
        (4, "node2", "10.0.0.4:7001", "already named"),
        (4, "no spaces", "10.0.0.4:7001", "not valid"),
        (4, "node4", "10.0.0.4", "not host:port"),
    ] {
        let e = check_add_member(&s, &voters, id, name, address).unwrap_err();
        assert!(e.contains(why), "{e}");
    }

    // The same member left a learner is made a voter; a voter is not added twice.
    let mut with_learner = s.clone();
    let mut members: Vec<Member> = with_learner.members.values().cloned().collect();
    members.push(Member { id: n(4), name: "node4".into(), address: "10.0.0.4:7001".into() });
    applied(&mut with_learner, 7, Command::SetMembers { members });
    assert_eq!(check_add_member(&with_learner, &voters, 4, "node4", "10.0.0.4:7001"), Ok(AddStep::Voter));
    let e = check_add_member(&with_learner, &voters, 2, "node2", "10.0.0.2:7001").unwrap_err();
    assert!(e.contains("is node2's"), "{e}");
    let all: std::collections::BTreeSet<NodeId> = (1..=4).map(n).collect();
    let e = check_add_member(&with_learner, &all, 4, "node4", "10.0.0.4:7001").unwrap_err();
    assert!(e.contains("voting member already"), "{e}");

    // Removing: the primary answering with a valid lease is refused; a
    // synchronous standby while nobody holds a valid lease too.
    let healthy = |ids: &[u64]| -> SeenAll {
        ids.iter().map(|i| (n(*i), Seen { lease_valid_for_ms: (*i == 1).then_some(1000), db: standby(100) })).collect()
    };
    let e = check_remove_member(&s, &healthy(&[1, 2, 3]), n(1)).unwrap_err();
    assert!(e.contains("switch over first"), "{e}");
    assert!(check_remove_member(&s, &healthy(&[1, 2, 3]), n(3)).is_ok());
    applied(&mut s, 7, Command::SetSynchronous { holder: n(1), epoch: Epoch(1), standbys: [n(2)].into(), quorum: 1 });
    assert!(check_remove_member(&s, &healthy(&[1, 2, 3]), n(2)).is_ok(), "a live primary moves its set");
    let e = check_remove_member(&s, &healthy(&[2, 3]), n(2)).unwrap_err();
    assert!(e.contains("synchronous standby"), "{e}");
    // The primary that did not answer (host dead) may be removed; from
    // then on its renewals are refused, and its lease still lapses only by
    // the leader's timer (a Lapse is accepted).
    assert!(check_remove_member(&s, &healthy(&[2, 3]), n(1)).is_ok());
    // First the order: node1 leaves every decision at once.
    let remove = Command::Operator { order: Order::RemoveMember { node: n(1) }, by: "ops".into(), at_unix_ms: 0 };
    assert!(matches!(applied(&mut s, 8, remove.clone()), Effect::Accepted { .. }));
    assert!(!s.is_member(n(1)) && !s.db_members.contains_key(&n(1)));
    assert_eq!(rejected(&mut s, remove), Rejected::MemberLeaving { node: n(1) });
    assert!(check_remove_member(&s, &healthy(&[2, 3]), n(1)).is_ok(), "a second request resumes the Raft step");
    assert_eq!(s.lease.map(|l| l.holder), Some(n(1)), "removal does not end a lease");
    let renew = Command::Renew { holder: n(1), epoch: Epoch(1), renewal: RenewalSeq(1), position: None };
    assert_eq!(rejected(&mut s, renew.clone()), Rejected::UnknownMember { node: n(1) });
    let db = DbMember { address: "127.0.0.1:5441".into(), nofailover: false, priority: 1 };
    assert_eq!(rejected(&mut s, Command::Register { node: n(1), db }), Rejected::MemberLeaving { node: n(1) });
    // Then the Raft membership: still no renewal, and a lapse by the
    // leader's timer ends the lease.
    let members = (2..=3).map(|i| Member { id: n(i), name: format!("node{i}"), address: String::new() }).collect();
    applied(&mut s, 9, Command::SetMembers { members });
    assert!(s.leaving.is_empty());
    assert_eq!(rejected(&mut s, renew), Rejected::UnknownMember { node: n(1) });
    applied(&mut s, 10, Command::Lapse { holder: n(1), epoch: Epoch(1), renewal: RenewalSeq(1), at_unix_ms: 0 });
    assert_eq!(s.lease, None);
    // A removed member's id is never reused.
    let e = check_add_member(&s, &voters, 1, "node1b", "10.0.0.9:7001").unwrap_err();
    assert!(e.contains("never reused"), "{e}");
    assert!(check_remove_member(&s, &SeenAll::new(), n(1)).unwrap_err().contains("not a member"));
}

/// Quorum mode: node2 and node3 in the set, any 1 of them holds each
/// commit. A failover needs both to answer, and takes the most advanced
/// (stopped or running); when that one cannot be promoted, nobody is.
#[test]
fn a_quorum_failover_needs_enough_answers_and_takes_the_most_advanced() {
    let policy = Policy { synchronous_mode: haraft_core::sync::SyncMode::Quorum, ..Policy::default() };
    let mut s = cluster(policy);
    applied(
        &mut s,
        7,
        Command::SetSynchronous { holder: n(1), epoch: Epoch(1), standbys: [n(2), n(3)].into(), quorum: 1 },
    );
    let l = s.lease.unwrap();
    applied(&mut s, 8, Command::Lapse { holder: n(1), epoch: l.epoch, renewal: l.renewal, at_unix_ms: 0 });
    let grant_to = |s: &ClusterState, live: &SeenAll| match plan_at(s, Some(live), 0, 0) {
        Step::Propose(Command::Grant { holder, .. }) => Some(holder),
        _ => None,
    };

    // Only the lagging one answered: it may lack a commit only node2 has.
    assert_eq!(grant_to(&s, &seen(&[(3, standby(90))])), None);
    // Both answered: the most advanced, although node3 reports a checkpoint.
    assert_eq!(grant_to(&s, &seen(&[(2, standby(90)), (3, standby(100))])), Some(n(3)));
    let mut stopped = standby(120).unwrap();
    stopped.running = false;
    assert_eq!(grant_to(&s, &seen(&[(2, standby(100)), (3, Some(stopped))])), Some(n(3)));
    // The most advanced answered but cannot be promoted: nobody is.
    let mut behind = standby(120).unwrap();
    behind.timeline = Some(TimelineId(0));
    assert_eq!(grant_to(&s, &seen(&[(2, standby(100)), (3, Some(behind))])), None);
    // An answer about another database does not count.
    let mut other = standby(120).unwrap();
    other.system_identifier = Some(SYSID + 1);
    assert_eq!(grant_to(&s, &seen(&[(2, standby(100)), (3, Some(other))])), None);
}

/// Simulator seed 5001 (synchronous mode): an operator's failover to a
/// member that is no synchronous standby; the holder released the lease
/// for it, then the failover was refused. Before, the operation ended with
/// nothing in its place and nobody, the former holder included, was
/// eligible: no primary until an operator allowed data loss.
#[test]
fn a_refused_failover_after_the_release_fails_over_from_the_former_holder() {
    let mut s = cluster(Policy { synchronous_mode: haraft_core::sync::SyncMode::On, ..Policy::default() });
    applied(&mut s, 7, Command::SetSynchronous { holder: n(1), epoch: Epoch(1), standbys: [n(2)].into(), quorum: 1 });
    let order = Order::Failover { to: n(3), allow_data_loss: false };
    let Effect::Accepted { id } = applied(&mut s, 8, Command::Operator { order, by: "x".into(), at_unix_ms: 0 }) else {
        panic!("not accepted")
    };
    applied(&mut s, 9, Command::Release { holder: n(1), epoch: Epoch(1), why: "asked".into(), at_unix_ms: 0 });
    assert!(matches!(s.operation, Some(Operation::ManualFailover { .. })));
    // node3 may miss acknowledged writes: the planner ends the request.
    let live = seen(&[(1, standby(100)), (2, standby(100)), (3, standby(100))]);
    let Step::Propose(end @ Command::EndOperation { .. }) = plan_at(&s, Some(&live), 10, 0) else {
        panic!("the failover is not ended")
    };
    applied(&mut s, 10, end);
    assert!(matches!(last_outcome(&s, id), Some(OpOutcome::Failed { .. })));
    assert_eq!(s.operation, Some(Operation::Failover { from: n(1), lapsed_epoch: Epoch(1) }));
    // The former holder (or the synchronous standby) is granted.
    let mut old = standby(100);
    if let Some(db) = old.as_mut() {
        db.running = false;
        db.role = Some(DbRole::Primary);
        db.streaming_from = None;
    }
    let live = seen(&[(1, old), (2, None), (3, standby(100))]);
    let Step::Propose(Command::Grant { holder, .. }) = plan_at(&s, Some(&live), 10, 0) else {
        panic!("no grant: {:?}", plan_at(&s, Some(&live), 10, 0))
    };
    assert_eq!(holder, n(1), "the released holder has every acknowledged write");
}

#[test]
fn a_member_left_part_way_by_a_failed_rewind_is_never_granted() {
    // Simulator seed 44468: the most advanced member's directory was left
    // part-way by a failed pg_rewind; granted, it released at once, and
    // was granted again, a thousand times.
    let mut s = cluster(Policy::default());
    applied(&mut s, 7, Command::Release { holder: n(1), epoch: Epoch(1), why: "x".into(), at_unix_ms: 0 });
    let mut part_way = standby(300);
    if let Some(db) = part_way.as_mut() {
        db.running = false;
        db.rewind_unfinished = true;
    }
    let mut stopped = standby(200);
    if let Some(db) = stopped.as_mut() {
        db.running = false;
    }
    let live = seen(&[(1, part_way.clone()), (2, stopped), (3, None)]);
    let Step::Propose(Command::Grant { holder, verdicts, .. }) = plan_at(&s, Some(&live), 10, 0) else {
        panic!("no grant: {:?}", plan_at(&s, Some(&live), 10, 0))
    };
    assert_eq!(holder, n(2));
    let node1 = verdicts.iter().find(|v| v.node == n(1)).expect("node1's verdict");
    assert!(!node1.eligible && node1.why.contains("part-way"), "{node1:?}");
    // Alone, it is still not granted: nobody is.
    let live = seen(&[(1, part_way), (2, None), (3, None)]);
    assert!(!matches!(plan_at(&s, Some(&live), 10, 0), Step::Propose(Command::Grant { .. })));
}
