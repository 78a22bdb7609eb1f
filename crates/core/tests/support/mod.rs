//! What the operation tests share: a three-member cluster with node1
//! primary, and short ways to apply, refuse and plan.
#![allow(dead_code)] // each test file uses some of these

use haraft_core::ops::{OpOutcome, Order, Seen, SeenAll};
use haraft_core::plan::{PlanInput, Step, plan};
use haraft_core::*;

pub const SYSID: u64 = 7;

pub fn n(i: u64) -> NodeId {
    NodeId(i)
}

pub fn applied(s: &mut ClusterState, index: u64, c: Command) -> Effect {
    match s.apply(index, &c) {
        Outcome::Applied(e) => e,
        Outcome::Rejected(r) => panic!("{c} rejected: {r}"),
    }
}

pub fn rejected(s: &mut ClusterState, c: Command) -> Rejected {
    let before = s.clone();
    match s.apply(99, &c) {
        Outcome::Rejected(r) => {
            assert_eq!(*s, before, "a rejected command changed the state");
            r
        }
        Outcome::Applied(e) => panic!("{c} applied: {e:?}"),
    }
}

/// Three members with databases; node1 primary at epoch 1, writable.
pub fn cluster(policy: Policy) -> ClusterState {
    let mut s = ClusterState::default();
    applied(&mut s, 1, Command::Initialize { cluster: "c".into(), config: Timing::default(), policy });
    let members = (1..=3).map(|i| Member { id: n(i), name: format!("node{i}"), address: String::new() }).collect();
    applied(&mut s, 2, Command::SetMembers { members });
    for i in 1..=3 {
        let db = DbMember { address: format!("127.0.0.1:{}", 5440 + i), nofailover: false, priority: 1 };
        applied(&mut s, 3, Command::Register { node: n(i), db });
    }
    applied(&mut s, 4, Command::Grant { holder: n(1), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
    applied(&mut s, 5, Command::SetSystemIdentifier { holder: n(1), epoch: Epoch(1), system_identifier: SYSID });
    let position = Some(DbPosition { timeline: TimelineId(1), lsn: Lsn(100) });
    applied(&mut s, 6, Command::Renew { holder: n(1), epoch: Epoch(1), renewal: RenewalSeq(0), position });
    s
}

pub fn switchover(s: &mut ClusterState, index: u64, to: u64) -> u64 {
    let order = Order::Switchover { from: n(1), to: n(to), epoch: Epoch(1), at_unix_ms: None, force: false };
    match applied(s, index, Command::Operator { order, by: "ops@db1".into(), at_unix_ms: 1 }) {
        Effect::Accepted { id } => id,
        other => panic!("{other:?}"),
    }
}

pub fn standby(lsn: u64) -> Option<DbStatus> {
    Some(DbStatus {
        has_data: true,
        running: true,
        role: Some(DbRole::Standby),
        timeline: Some(TimelineId(1)),
        lsn: Some(Lsn(lsn)),
        system_identifier: Some(SYSID),
        streaming_from: Some("127.0.0.1:5441".into()),
        ..DbStatus::default()
    })
}

/// The planner's step 10 ms into a 2.5 s expiry timer started at the
/// lease's last renewal, an operation `age_ms` old.
pub fn plan_at(s: &ClusterState, live: Option<&SeenAll>, age_ms: u64, now_unix_ms: u64) -> Step {
    let timer = lease::ExpiryTimer::start(s.lease, BootTime(0), 2500);
    plan_step(s, live, &timer, BootTime(10), now_unix_ms, age_ms)
}

/// The planner's step of cluster "c" at the default timing and policy.
pub fn plan_step(
    s: &ClusterState,
    live: Option<&SeenAll>,
    timer: &lease::ExpiryTimer,
    now: BootTime,
    now_unix_ms: u64,
    age_ms: u64,
) -> Step {
    plan(&PlanInput {
        state: s,
        cluster: "c",
        initial_timing: Timing::default(),
        initial_policy: Policy::default(),
        timer,
        now,
        now_unix_ms,
        live,
        operation_age_ms: age_ms,
    })
    .step
}

pub fn seen(dbs: &[(u64, Option<DbStatus>)]) -> SeenAll {
    dbs.iter().map(|(i, db)| (n(*i), Seen { lease_valid_for_ms: Some(1000), db: db.clone() })).collect()
}

pub fn last_outcome(s: &ClusterState, id: u64) -> Option<OpOutcome> {
    s.history.iter().rev().find_map(|h| match &h.event {
        HistoryEvent::Operation { id: i, event: OpEvent::Ended { outcome } } if *i == id => Some(outcome.clone()),
        _ => None,
    })
}
