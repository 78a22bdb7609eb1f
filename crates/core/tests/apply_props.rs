//! Property tests of `ClusterState::apply`: any command sequence keeps the
//! epoch monotonic and at most one primary assigned, and stale
//! compare-and-set commands change nothing.

use haraft_core::*;
use proptest::prelude::*;

fn member(i: u64) -> Member {
    Member { id: NodeId(i), name: format!("node{i}"), address: format!("127.0.0.1:{}", 7000 + i) }
}

/// Operator orders and switchover steps, with ids among the log indexes
/// the sequences use (so that some of them name a real operation).
fn arb_operation() -> impl Strategy<Value = Command> {
    use haraft_core::ops::{OpOutcome, Order};
    let node = (1u64..=4).prop_map(NodeId);
    let epoch = (0u64..=6).prop_map(Epoch);
    let id = 0u64..64;
    let op = |order| Command::Operator { order, by: "prop".into(), at_unix_ms: 0 };
    prop_oneof![
        (node.clone(), node.clone(), epoch.clone(), any::<bool>(), any::<bool>()).prop_map(
            move |(from, to, epoch, later, force)| op(Order::Switchover {
                from,
                to,
                epoch,
                at_unix_ms: later.then_some(1),
                force
            })
        ),
        prop_oneof![
            Just(Order::Pause),
            Just(Order::Resume),
            Just(Order::CancelSwitchover),
            Just(Order::AcknowledgeLoss)
        ]
        .prop_map(op),
        (node.clone(), any::<bool>())
            .prop_map(move |(to, allow_data_loss)| op(Order::Failover { to, allow_data_loss })),
        (node.clone(), any::<bool>()).prop_map(move |(node, full)| op(Order::Rebuild { node, full })),
        node.clone().prop_map(move |node| op(Order::RemoveMember { node })),
        (node.clone(), epoch.clone(), id.clone(), 0u64..300).prop_map(|(holder, epoch, id, lsn)| {
            let last = DbPosition { timeline: TimelineId(1), lsn: Lsn(lsn) };
            Command::SwitchoverDemoted { holder, epoch, id, last, at_unix_ms: 0 }
        }),
        (node.clone(), epoch.clone(), id.clone()).prop_map(|(holder, epoch, id)| Command::SwitchoverPromoted {
            holder,
            epoch,
            id,
            at_unix_ms: 0
        }),
        (node.clone(), id.clone()).prop_map(|(node, id)| Command::SwitchoverRejoined { node, id, at_unix_ms: 0 }),
        (node.clone(), id.clone()).prop_map(|(node, id)| Command::TaskDone { node, id, error: None, at_unix_ms: 0 }),
        // Audit entries must never touch the lease or an operation.
        (node, any::<bool>(), 0u8..3).prop_map(|(node, refused, what)| Command::Audit {
            node,
            what: format!("request {what}"),
            by: "prop".into(),
            refused,
            result: "prop".into(),
            at_unix_ms: 0
        }),
        (id.clone(), epoch).prop_map(|(id, epoch)| Command::StartScheduled { id, epoch, at_unix_ms: 0 }),
        id.prop_map(|id| Command::EndOperation {
            id,
            outcome: OpOutcome::Failed { reason: "prop".into() },
            at_unix_ms: 0
        }),
    ]
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![3 => arb_lease_command(), 1 => arb_operation()]
}

fn arb_lease_command() -> impl Strategy<Value = Command> {
    let node = (1u64..=4).prop_map(NodeId);
    let epoch = (0u64..=6).prop_map(Epoch);
    let renewal = (0u64..=4).prop_map(RenewalSeq);
    prop_oneof![
        Just(Command::Initialize { cluster: "c".into(), config: Timing::default(), policy: Policy::default() }),
        prop::collection::vec(1u64..=4, 0..4)
            .prop_map(|ids| Command::SetMembers { members: ids.into_iter().map(member).collect() }),
        (node.clone(), epoch.clone()).prop_map(|(holder, epoch)| Command::Grant {
            holder,
            epoch,
            verdicts: vec![],
            at_unix_ms: 0
        }),
        (node.clone(), epoch.clone(), renewal.clone()).prop_map(|(holder, epoch, renewal)| Command::Renew {
            holder,
            epoch,
            renewal,
            position: None
        }),
        (node.clone(), epoch.clone(), renewal).prop_map(|(holder, epoch, renewal)| Command::Lapse {
            holder,
            epoch,
            renewal,
            at_unix_ms: 0
        }),
        (node.clone(), epoch.clone()).prop_map(|(holder, epoch)| Command::Release {
            holder,
            epoch,
            why: "test".into(),
            at_unix_ms: 0
        }),
        (node.clone(), epoch.clone(), 1u64..3).prop_map(|(holder, epoch, system_identifier)| {
            Command::SetSystemIdentifier { holder, epoch, system_identifier }
        }),
        (node.clone(), epoch.clone(), prop::collection::btree_set((1u64..=4).prop_map(NodeId), 0..3), 0u32..3)
            .prop_map(|(holder, epoch, standbys, quorum)| Command::SetSynchronous { holder, epoch, standbys, quorum }),
        (node.clone(), epoch.clone(), 0u64..100).prop_map(|(holder, epoch, lsn)| Command::SetForks {
            holder,
            epoch,
            forks: vec![Fork { timeline: TimelineId(1), switch_lsn: Lsn(lsn) }],
        }),
        (node, any::<bool>()).prop_map(|(node, nofailover)| Command::Register {
            node,
            db: DbMember { address: "127.0.0.1:5432".into(), nofailover, priority: 1 },
        }),
    ]
}

/// A state that is initialized with three members, so that grants can succeed.
fn started() -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(1, &Command::Initialize { cluster: "c".into(), config: Timing::default(), policy: Policy::default() });
    s.apply(2, &Command::SetMembers { members: (1..=3).map(member).collect() });
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn epoch_is_monotonic_and_one_primary_at_most(commands in prop::collection::vec(arb_command(), 0..60), init in any::<bool>()) {
        let mut s = if init { started() } else { ClusterState::default() };
        let mut last_epoch = s.epoch;
        for (i, c) in commands.iter().enumerate() {
            let before = s.clone();
            let outcome = s.apply(10 + i as u64, c);
            prop_assert!(s.epoch >= last_epoch);
            last_epoch = s.epoch;
            // At most one primary: the lease is a single Option, and a held
            // lease always carries the newest epoch.
            if let Some(l) = s.lease {
                prop_assert_eq!(l.epoch, s.epoch);
            }
            // A grant always starts with an empty synchronous set.
            if matches!(outcome, Outcome::Applied(Effect::Granted { .. })) {
                prop_assert!(s.synchronous.is_empty());
            }
            // The database identity, once recorded, never changes.
            if before.system_identifier.is_some() {
                prop_assert_eq!(s.system_identifier, before.system_identifier);
            }
            match outcome {
                Outcome::Rejected(_) => prop_assert_eq!(&s, &before, "a rejected command changed the state"),
                Outcome::Applied(Effect::Granted { epoch, .. }) => {
                    prop_assert!(before.lease.is_none(), "granted over a held lease");
                    prop_assert_eq!(epoch, before.epoch.next());
                }
                Outcome::Applied(_) => {}
            }
        }
    }

    #[test]
    fn stale_renewals_and_lapses_are_rejected(renewals in 0u64..20, stale in 0u64..20, lapse in any::<bool>()) {
        let mut s = started();
        s.apply(3, &Command::Grant { holder: NodeId(1), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
        for r in 0..renewals {
            let out = s.apply(4 + r, &Command::Renew { holder: NodeId(1), epoch: Epoch(1), renewal: RenewalSeq(r), position: None });
            prop_assert_eq!(out, Outcome::Applied(Effect::Renewed { epoch: Epoch(1), renewal: RenewalSeq(r + 1) }));
        }
        prop_assume!(stale != renewals);
        let before = s.clone();
        let command = if lapse {
            Command::Lapse { holder: NodeId(1), epoch: Epoch(1), renewal: RenewalSeq(stale), at_unix_ms: 0 }
        } else {
            Command::Renew { holder: NodeId(1), epoch: Epoch(1), renewal: RenewalSeq(stale), position: None }
        };
        let out = s.apply(100, &command);
        prop_assert_eq!(out, Outcome::Rejected(Rejected::StaleRenewal { proposed: RenewalSeq(stale), current: RenewalSeq(renewals) }));
        prop_assert_eq!(s, before);
    }
}

#[test]
fn lapse_then_stale_grant_from_a_deposed_leader_is_rejected() {
    let mut s = started();
    s.apply(3, &Command::Grant { holder: NodeId(1), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
    s.apply(4, &Command::Lapse { holder: NodeId(1), epoch: Epoch(1), renewal: RenewalSeq(0), at_unix_ms: 0 });
    assert_eq!(s.holder(), None);
    assert!(matches!(s.operation, Some(Operation::Failover { from: NodeId(1), .. })));
    // Two leaders both decided to grant epoch 2; only the first applies.
    assert_eq!(
        s.apply(5, &Command::Grant { holder: NodeId(2), epoch: Epoch(2), verdicts: vec![], at_unix_ms: 0 }),
        Outcome::Applied(Effect::Granted { holder: NodeId(2), epoch: Epoch(2) })
    );
    assert_eq!(
        s.apply(6, &Command::Grant { holder: NodeId(3), epoch: Epoch(2), verdicts: vec![], at_unix_ms: 0 }),
        Outcome::Rejected(Rejected::LeaseHeld { holder: NodeId(2), epoch: Epoch(2) })
    );
    // The old holder's renewal after the lapse is refused.
    assert_eq!(
        s.apply(7, &Command::Renew { holder: NodeId(1), epoch: Epoch(1), renewal: RenewalSeq(0), position: None }),
        Outcome::Rejected(Rejected::StaleEpoch { proposed: Epoch(1), current: Epoch(2) })
    );
    assert_eq!(s.operation, None);
}

#[test]
fn grant_to_a_non_member_or_before_initialize_is_rejected() {
    let mut s = ClusterState::default();
    assert_eq!(
        s.apply(1, &Command::Grant { holder: NodeId(1), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 }),
        Outcome::Rejected(Rejected::NotInitialized)
    );
    let mut s = started();
    assert_eq!(
        s.apply(3, &Command::Grant { holder: NodeId(9), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 }),
        Outcome::Rejected(Rejected::UnknownMember { node: NodeId(9) })
    );
    assert_eq!(
        s.apply(3, &Command::Grant { holder: NodeId(1), epoch: Epoch(5), verdicts: vec![], at_unix_ms: 0 }),
        Outcome::Rejected(Rejected::StaleEpoch { proposed: Epoch(5), current: Epoch(0) })
    );
}

#[test]
fn history_is_bounded() {
    let mut s = started();
    for i in 0..(haraft_core::state::HISTORY_LIMIT as u64 + 50) {
        let e = s.epoch.next();
        s.apply(10 + 2 * i, &Command::Grant { holder: NodeId(1), epoch: e, verdicts: vec![], at_unix_ms: 0 });
        s.apply(11 + 2 * i, &Command::Lapse { holder: NodeId(1), epoch: e, renewal: RenewalSeq(0), at_unix_ms: 0 });
    }
    assert_eq!(s.history.len(), haraft_core::state::HISTORY_LIMIT);
    assert!(matches!(s.history.back().unwrap().event, HistoryEvent::Lapsed { .. }));
}
