//! `judge` with plain data: every rule, each through one `check`.

use super::*;
use crate::identity::StoreId;
use crate::store::StoreIdentity;
use crate::types::{LogId, Vote};
use openraft::CommittedLeaderId;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn identity() -> Identity {
    Identity { cluster: "c".into(), node: 2, store: StoreId(9), created_unix_ms: 1_764_000_000_000 }
}

fn expect() -> Expect {
    Expect { cluster: "c".into(), node: 2, join: false, managed_db: None }
}

fn report(last: u64) -> StoreReport {
    StoreReport {
        identity: Some(StoreIdentity::from(&identity())),
        vote: Some(Vote::new_committed(3, 1)),
        purged: None,
        entries: (1..=last).map(|i| log_id(3, i)).collect(),
        applied: Some(log_id(3, last)),
        records: last as usize + 3,
    }
}

fn mark(last: u64) -> Mark {
    Mark {
        seq: 7,
        store: Some(StoreId(9)),
        vote: Some(Vote::new_committed(3, 1)),
        last_log: Some(log_id(3, last)),
        purged: None,
    }
}

/// A healthy member's findings, with its last acknowledged entry 10.
fn whole() -> Findings {
    Findings {
        layout: Layout::new(Path::new("/d")),
        identity: Found::Present(identity()),
        mark: Found::Present(mark(10)),
        store: Found::Present(report(10)),
        retired: vec![],
    }
}

fn check(f: Findings, e: Expect, want: &str) {
    let verdict = judge(&f, &e);
    match (&verdict, want) {
        (Verdict::Open, "open") | (Verdict::Create, "create") | (Verdict::Finish(_), "finish") => {}
        (Verdict::Refuse(text), _) if text.contains(want) => {
            assert!(text.contains("member replace") || text.contains("nothing was changed"), "{text}");
        }
        _ => panic!("expected {want:?}, got {verdict:?}"),
    }
}

#[test]
fn a_whole_store_opens_and_may_hold_more_than_its_mark() {
    check(whole(), expect(), "open");
    // A crash after the store's sync, before the mark's: the store is ahead.
    let mut f = whole();
    f.store = Found::Present(report(12));
    check(f, expect(), "open");
    // A vote newer than the mark's.
    let mut f = whole();
    if let Found::Present(r) = &mut f.store {
        r.vote = Some(Vote::new(4, 2));
    }
    check(f, expect(), "open");
    // Entries up to the mark purged into a snapshot.
    let mut f = whole();
    if let Found::Present(r) = &mut f.store {
        r.purged = Some(log_id(3, 10));
        r.entries.clear();
    }
    check(f, expect(), "open");
}

#[test]
fn lost_entries_a_lost_vote_and_a_purge_gone_back_are_refused() {
    let mut f = whole();
    f.store = Found::Present(report(9));
    check(f, expect(), "ends at entry 9 (term 3) but this member acknowledged entry 10 (term 3)");
    // Same index, another term: not the entry this member acknowledged.
    let mut f = whole();
    f.mark = Found::Present(Mark { last_log: Some(log_id(4, 10)), ..mark(10) });
    check(f, expect(), "acknowledged entry 10 (term 4)");
    let mut f = whole();
    f.mark = Found::Present(Mark { vote: Some(Vote::new(5, 3)), ..mark(10) });
    check(f, expect(), "cast an uncommitted vote for node 3 in term 5: it lost its vote");
    let mut f = whole();
    if let Found::Present(r) = &mut f.store {
        r.vote = None;
    }
    check(f, expect(), "has no vote");
    let mut f = whole();
    f.mark = Found::Present(Mark { purged: Some(log_id(3, 5)), ..mark(10) });
    check(f, expect(), "went back in time");
}

#[test]
fn a_store_lost_or_emptied_after_taking_part_is_refused() {
    let mut f = whole();
    f.store = Found::Absent;
    check(f, expect(), "is empty but this member was initialized at 2025-11-24");
    let mut f = whole();
    f.store = Found::Present(StoreReport::default());
    check(f, expect(), "acknowledged log entry 10");
    // Never acknowledged anything: the creation was interrupted, finish it.
    let mut f = whole();
    f.store = Found::Absent;
    f.mark = Found::Present(Mark::new(StoreId(9)));
    check(f, expect(), "finish");
}

#[test]
fn foreign_and_damaged_files_are_refused() {
    let mut f = whole();
    if let Found::Present(r) = &mut f.store {
        r.identity = Some(StoreIdentity { cluster: "c".into(), node: 3, store: StoreId(4) });
    }
    check(f, expect(), "belongs to node 3 (store 00000000000000000000000000000004), this member is node 2");
    let mut f = whole();
    if let Found::Present(r) = &mut f.store {
        r.identity = None;
    }
    check(f, expect(), "no identity record");
    check(whole(), Expect { node: 3, ..expect() }, "belongs to node 2");
    check(whole(), Expect { cluster: "other".into(), ..expect() }, "belongs to cluster \"c\"");
    let mut f = whole();
    f.mark = Found::Present(Mark { store: Some(StoreId(1)), ..mark(10) });
    check(f, expect(), "copied from elsewhere");
    let mut f = whole();
    f.mark = Found::Absent;
    check(f, expect(), "haraft.acked is missing");
    let mut f = whole();
    f.identity = Found::Damaged("it fails its checksum".into());
    check(f, expect(), "/d/haraft.identity: it fails its checksum");
    let mut f = whole();
    f.store = Found::Damaged("log entry 812 fails its checksum".into());
    check(f, expect(), "log entry 812 fails its checksum");
    let mut f = whole();
    f.mark = Found::Damaged("neither of its two copies".into());
    check(f, expect(), "neither");
    // Unreadable is not damage: fix the permissions, not the member.
    let mut f = whole();
    f.store = Found::Unreadable("Permission denied (os error 13)".into());
    check(f, expect(), "check its owner and permissions");
}

#[test]
fn a_new_member_is_created_only_when_nothing_says_it_existed() {
    let pristine = || Findings { identity: Found::Absent, mark: Found::Absent, store: Found::Absent, ..whole() };
    check(pristine(), expect(), "create");
    check(pristine(), Expect { join: true, ..expect() }, "create");
    // The identity deleted, the store kept.
    check(Findings { identity: Found::Absent, ..whole() }, expect(), "identity cannot be proven");
    // Identity and store deleted, the mark kept.
    check(
        Findings { identity: Found::Absent, store: Found::Absent, ..whole() },
        expect(),
        "lost its identity and store",
    );
    // Everything of Raft deleted, the database kept.
    let db = Expect { managed_db: Some("the epoch guard /d/pgstate/db-epoch".into()), ..expect() };
    check(pristine(), db.clone(), "haraft managed a database here (the epoch guard");
    check(pristine(), Expect { join: true, ..db.clone() }, "haraft managed a database here");
    // A replacement: the old store retired, a new id, join = true.
    let retired = || Findings { retired: vec![3], ..pristine() };
    check(retired(), Expect { join: true, ..db.clone() }, "create");
    check(retired(), db.clone(), "haraft managed a database here");
    check(retired(), Expect { node: 3, join: true, ..db }, "needs a new node.id");
}
