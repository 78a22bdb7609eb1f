//! Quorum synchronous replication and strict mode against real PostgreSQL
//! 15: five members with `ANY 2` over every healthy standby lose no
//! acknowledged write when the primary and a standby die at once; strict
//! mode makes commits wait while too few standbys stream, and they resume
//! when one returns.

use haraft_testkit::check::{LIMIT, logs, members, normal, primary_id, wait_status};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::wait_for;
use haraft_testkit::writer::{self, Writer};
use serde_json::Value;
use std::time::Duration;

fn in_set(s: &Value) -> Vec<u64> {
    members(s).iter().filter(|m| m["synchronous"] == true).filter_map(|m| m["id"].as_u64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_of_two_loses_nothing_when_the_primary_and_a_standby_die_together() {
    let mut c =
        ProcCluster::with_postgres(5, "[failover]\nsynchronous_mode = \"quorum\"\nsynchronous_node_count = 2\n");
    c.start_all();
    let s =
        wait_status(&c, "five members, every standby in the quorum set", |s| normal(s) && in_set(s).len() == 4).await;
    let first = primary_id(&s).unwrap();
    assert!(
        s["synchronous"].as_str().is_some_and(|w| w.contains("any 2 of")),
        "the status names the quorum: {}",
        s["synchronous"]
    );
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The primary and one standby die at the same moment: three of the
    // four set members answer (4 - 2 + 1 = 3 are needed).
    let standby = (1..=5).find(|i| *i != first).unwrap();
    c.kill_host(first);
    c.kill_host(standby);
    let s = wait_for("a new primary", LIMIT, || {
        c.status().filter(|s| primary_id(s).is_some_and(|p| p != first && p != standby))
    })
    .await;
    let second = primary_id(&s).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acks = w.stop().await;
    assert!(acks.len() > 50, "the writer barely wrote: {}", acks.len());
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "quorum mode lost {} acknowledged writes: {lost:?}\n{}", lost.len(), logs(&c));
    writer::assert_no_overlap(&acks, "the writer");
    let gap = writer::switch_gap(&acks, ports[first as usize - 1]);
    eprintln!(
        "quorum 2 of 4: node{second} promoted; writes resumed after {gap:?}; {} acknowledged, none lost",
        acks.len()
    );
    haraft_testkit::check::report("kill-9-primary-and-a-standby (quorum 2)", gap, 0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_holds_commits_while_too_few_standbys_stream_and_resumes() {
    let mut c = ProcCluster::with_postgres(
        3,
        "[failover]\nsynchronous_mode = \"on\"\nsynchronous_node_count = 2\nsynchronous_strict = true\n",
    );
    c.start_all();
    let s = wait_status(&c, "both standbys synchronous", |s| normal(s) && in_set(s).len() == 2).await;
    let first = primary_id(&s).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(20), Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // One standby's host dies (the Raft group keeps its majority): two
    // must confirm each commit and one streams, so commits wait.
    let gone = (1..=3).find(|i| *i != first).unwrap();
    c.kill_host(gone);
    let blocked = wait_status(&c, "writes reported blocked", |s| s["writes_blocked"].is_string()).await;
    assert!(
        blocked["writes_blocked"]
            .as_str()
            .unwrap()
            .contains("2 synchronous standbys must confirm each commit and 1 stream"),
        "{}",
        blocked["writes_blocked"]
    );
    let (code, table, _) = c.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(table.contains("WARNING: writes blocked: strict synchronous mode"), "{table}");
    let before = writer::committed_ids(&ports, &password).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = writer::committed_ids(&ports, &password).await.len();
    assert!(during <= before + 1, "commits went through in strict mode with one standby: {before} -> {during}");
    assert_eq!(primary_id(&c.status().unwrap()), Some(first), "no failover for a lost standby");

    // It returns: commits flow again, none acknowledged was lost.
    c.start(gone);
    wait_status(&c, "writes flowing again", |s| normal(s) && s["writes_blocked"].is_null() && in_set(s).len() == 2)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = writer::committed_ids(&ports, &password).await.len();
    assert!(after > during + 10, "commits did not resume: {during} -> {after}");
    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "strict mode lost acknowledged writes: {lost:?}");
    let block = writer::longest_gap(&acks).unwrap_or_default();
    eprintln!("strict mode: commits held {block:?} while one of two synchronous standbys was gone; none lost");
}

/// The walreceiver of the server in `pgdata` (a child of its postmaster).
fn walreceiver(pgdata: &std::path::Path) -> Option<i32> {
    haraft_db::procs::server_pids(pgdata).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("walreceiver"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_set_member_is_never_promoted_while_a_more_advanced_one_answered() {
    // node3 is preferred by priority: only the LSN may keep it from being
    // chosen.
    let mut c = ProcCluster::with_postgres(3, "[failover]\nsynchronous_mode = \"quorum\"\n");
    let node3 = c.nodes[2].config.clone();
    let text = std::fs::read_to_string(&node3).unwrap().replacen("[postgresql]\n", "[postgresql]\npriority = 10\n", 1);
    std::fs::write(&node3, text).unwrap();
    c.start_all();
    let s = wait_status(&c, "both standbys in the quorum set", |s| normal(s) && in_set(s).len() == 2).await;
    assert_eq!(primary_id(&s), Some(1), "bootstrap chooses the lowest id");
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // node3 stops receiving (its server and agent still answer); any 1 of
    // the set confirms, so commits go on through node2. Within the 2 s
    // wal_sender_timeout node3 is still in the set, lagging.
    let receiver = walreceiver(&c.pgdata(3)).expect("node3's walreceiver");
    // SAFETY: a PID of node3's server, read from its postmaster's children.
    unsafe { libc::kill(receiver, libc::SIGSTOP) };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.kill_host(1);
    let s = wait_for("a new primary", LIMIT, || c.status().filter(|s| primary_id(s).is_some_and(|p| p != 1))).await;
    // SAFETY: as above; the process may be gone, which kill reports.
    unsafe { libc::kill(receiver, libc::SIGCONT) };
    assert_eq!(primary_id(&s), Some(2), "a lagging member was promoted: {s}\n{}", logs(&c));
    let granted = haraft_testkit::check::history(&c).into_iter().rev().find(|h| h["event"] == "granted").unwrap();
    eprintln!("verdicts: {}", granted["verdicts"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "quorum mode lost {} acknowledged writes: {lost:?}", lost.len());
}
