//! The first grant of a cluster (`adopt::bootstrap_verdicts`, through the
//! planner): a new database, existing data, or a cluster that already
//! runs; never a guess between two primaries.

use haraft_core::adopt::bootstrap_verdicts;
use haraft_core::db::Live;
use haraft_core::lease::ExpiryTimer;
use haraft_core::plan::{Step, seen_from};
use haraft_core::*;

const SYSID: u64 = 77;

mod support;

/// Three registered members (`nofailover` as given), nothing granted.
fn cluster(nofailover: &[u64]) -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(1, &Command::Initialize { cluster: "c".into(), config: Timing::default(), policy: Policy::default() });
    let members = (1..=3).map(|i| Member { id: NodeId(i), name: format!("node{i}"), address: String::new() }).collect();
    s.apply(2, &Command::SetMembers { members });
    for i in 1..=3 {
        let db =
            DbMember { address: format!("127.0.0.1:{}", 5400 + i), nofailover: nofailover.contains(&i), priority: 1 };
        s.apply(3, &Command::Register { node: NodeId(i), db });
    }
    s
}

fn server(running: bool, role: DbRole, timeline: u32, lsn: u64) -> Option<DbStatus> {
    Some(DbStatus {
        has_data: true,
        running,
        role: Some(role),
        timeline: Some(TimelineId(timeline)),
        lsn: Some(Lsn(lsn)),
        system_identifier: Some(SYSID),
        ..DbStatus::default()
    })
}

fn primary(timeline: u32) -> Option<DbStatus> {
    server(true, DbRole::Primary, timeline, 500)
}

fn standby(lsn: u64) -> Option<DbStatus> {
    server(true, DbRole::Standby, 1, lsn)
}

fn empty() -> Option<DbStatus> {
    Some(DbStatus::default())
}

fn live(dbs: [Option<DbStatus>; 3]) -> Live {
    dbs.into_iter().enumerate().map(|(i, d)| (NodeId(i as u64 + 1), d)).collect()
}

/// The planner's step for `live`, on a leader long past its first ttl.
fn step(s: &ClusterState, live: &Live) -> Step {
    let timer = ExpiryTimer::start(None, BootTime(0), 3000);
    support::plan_step(s, Some(&seen_from(live)), &timer, BootTime(60_000), 0, 0)
}

fn granted(s: &ClusterState, live: &Live) -> Option<u64> {
    match step(s, live) {
        Step::Propose(Command::Grant { holder, .. }) => Some(holder.0),
        _ => None,
    }
}

fn why(verdicts: &[Verdict], id: u64) -> String {
    verdicts.iter().find(|v| v.node == NodeId(id)).map(|v| v.why.clone()).unwrap_or_default()
}

#[test]
fn the_running_primary_is_adopted_and_its_standbys_follow() {
    let s = cluster(&[]);
    let l = live([standby(400), primary(1), empty()]);
    assert_eq!(granted(&s, &l), Some(2), "the running primary, not the lowest id with data");
    let v = bootstrap_verdicts(&s, &l);
    assert!(why(&v, 2).contains("adopted as it runs (chosen)"), "{}", why(&v, 2));
    assert_eq!(why(&v, 1), "follows node2, the running primary");
    assert!(why(&v, 3).starts_with("has no data: copies node2's"), "{}", why(&v, 3));
    assert_eq!(v.iter().filter(|v| v.eligible).count(), 1);
}

#[test]
fn two_running_primaries_get_no_grant_and_each_is_named() {
    let s = cluster(&[]);
    let l = live([primary(1), primary(2), standby(400)]);
    assert_eq!(step(&s, &l), Step::Wait);
    let v = bootstrap_verdicts(&s, &l);
    assert!(v.iter().all(|v| !v.eligible));
    assert!(why(&v, 1).contains("runs as a primary (timeline 1), as does node2"), "{}", why(&v, 1));
    assert!(why(&v, 2).contains("runs as a primary (timeline 2), as does node1"), "{}", why(&v, 2));
    assert!(why(&v, 3).contains("node1, node2 all run as primaries"), "{}", why(&v, 3));
}

#[test]
fn a_running_primary_that_may_not_be_chosen_blocks_every_other() {
    // Tagged nofailover: promoting another member beside it would make two.
    let s = cluster(&[2]);
    let l = live([standby(400), primary(1), empty()]);
    assert_eq!(granted(&s, &l), None);
    assert!(why(&bootstrap_verdicts(&s, &l), 2).contains("tagged nofailover"));
    // Another member's data is on a later timeline than the running primary.
    let s = cluster(&[]);
    let l = live([server(false, DbRole::Standby, 3, 900), primary(2), empty()]);
    assert_eq!(granted(&s, &l), None);
    assert!(why(&bootstrap_verdicts(&s, &l), 2).contains("node1 holds a later timeline"));
}

#[test]
fn with_nothing_running_the_most_advanced_data_wins_and_two_stopped_primaries_none() {
    let s = cluster(&[]);
    let stopped_primary = server(false, DbRole::Primary, 1, 100);
    let l = live([standby(400), stopped_primary.clone(), server(false, DbRole::Standby, 1, 900)]);
    assert_eq!(granted(&s, &l), Some(2), "a primary's data directory first");
    let l = live([server(false, DbRole::Standby, 1, 400), server(false, DbRole::Standby, 2, 300), empty()]);
    assert_eq!(granted(&s, &l), Some(2), "then the later timeline");
    let l = live([server(false, DbRole::Standby, 1, 400), server(false, DbRole::Standby, 1, 900), empty()]);
    assert_eq!(granted(&s, &l), Some(2), "then the higher position");
    let l = live([stopped_primary.clone(), empty(), stopped_primary]);
    assert_eq!(granted(&s, &l), None);
    assert!(why(&bootstrap_verdicts(&s, &l), 3).contains("as does node1"));
    assert_eq!(granted(&s, &live([empty(), empty(), empty()])), Some(1), "a new database on the lowest id");
    assert_eq!(granted(&cluster(&[1]), &live([empty(), empty(), empty()])), Some(2), "never a nofailover one");
}

#[test]
fn the_first_grant_waits_for_every_member_to_answer() {
    let s = cluster(&[]);
    let mut l = live([standby(400), primary(1), empty()]);
    l.remove(&NodeId(3));
    assert_eq!(step(&s, &l), Step::Wait, "the silent member may run a primary too");
    l.remove(&NodeId(2));
    assert_eq!(step(&s, &l), Step::Wait);
}
