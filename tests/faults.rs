//! The fault matrix, each scenario a test: real agents and PostgreSQL 15,
//! every link between nodes through a chaos proxy (clients reach every
//! PostgreSQL directly), a writer every 10 ms, and the invariants checked
//! after healing: no two servers acknowledged writes in overlapping time,
//! no acknowledged write lost (synchronous mode), epochs never decrease,
//! every member streams from the one primary, no panic in any agent log.

use haraft_testkit::chaos::{Fault, Traffic};
use haraft_testkit::check::{LIMIT, logs, normal, primary_id, report, wait_normal};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::writer::{self, Ack, Writer};
use serde_json::Value;
use std::time::{Duration, Instant};

const SYNC: &str = "[failover]\nsynchronous_mode = true\n";

/// What a scenario's writer saw, checked against what the cluster kept.
struct Outcome {
    acks: Vec<Ack>,
    lost: Vec<i64>,
}

async fn writer(c: &ProcCluster) -> Writer {
    let pg = c.pg.as_ref().expect("postgres cluster");
    Writer::start(&pg.ports, &pg.superuser_password, Duration::from_millis(10), Duration::from_secs(240)).await
}

async fn finish(c: &ProcCluster, w: Writer) -> Outcome {
    let pg = c.pg.as_ref().expect("postgres cluster");
    let acks = w.stop().await;
    let committed = writer::committed_ids(&pg.ports, &pg.superuser_password).await;
    let lost = writer::lost(&acks, &committed);
    writer::assert_no_overlap(&acks, "the writer");
    Outcome { acks, lost }
}

/// Converged (one primary, every other member streaming from it), no
/// agent exited, no panic logged.
async fn converged(c: &mut ProcCluster, what: &str) -> Value {
    let s = wait_normal(c, what).await;
    for i in 1..=c.nodes.len() as u64 {
        assert!(!c.exited(i), "node{i}'s agent exited:\n{}", c.log(i));
    }
    assert!(!logs(c).contains("panicked"), "a panic in an agent log:\n{}", logs(c));
    s
}

/// Waits (bounded) for a status from nodes `via` that satisfies `ok`.
async fn wait_via(c: &ProcCluster, via: &[u64], what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Some(s) = c.status_via(via).filter(|s| ok(s)) {
            return s;
        }
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}: {:?}\n{}", c.status_via(via), logs(c));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn others(n: u64, of: u64) -> Vec<u64> {
    (1..=n).filter(|i| *i != of).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_cut_off_from_the_majority_stops_acknowledging_before_a_new_epoch() {
    let (mut c, chaos) = ProcCluster::with_chaos(3, SYNC).await;
    c.start_all();
    let first = primary_id(&converged(&mut c, "bootstrap").await).unwrap();
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    chaos.isolate(first);
    let majority = others(3, first);
    let after = wait_via(&c, &majority, "a new primary on the majority side", |s| {
        primary_id(s).is_some_and(|p| p != first) && s["epoch"].as_u64() > Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    chaos.heal();
    let healed = converged(&mut c, "the old primary back as a replica").await;
    assert_eq!(primary_id(&healed), primary_id(&after), "the primary changed again after healing");
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "lost {} acknowledged writes in synchronous mode: {:?}", out.lost.len(), out.lost);
    let pg = c.pg.as_ref().unwrap();
    let gap = writer::switch_gap(&out.acks, pg.ports[first as usize - 1]).expect("writes resumed on the new primary");
    eprintln!(
        "partitioned primary: its last acknowledged write to the new primary's first: {gap:?}; epoch {}; {} acks, none lost",
        healed["epoch"],
        out.acks.len()
    );
    report("partitioned-primary", Some(gap), out.lost.len(), healed["epoch"].as_u64().unwrap_or(1) - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_replica_causes_no_failover() {
    let (mut c, chaos) = ProcCluster::with_chaos(3, "").await;
    c.start_all();
    let s = converged(&mut c, "bootstrap").await;
    let primary = primary_id(&s).unwrap();
    let replica = others(3, primary)[0];
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    chaos.isolate(replica);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = c.status_via(&others(3, replica)).expect("status from the majority");
    assert_eq!((primary_id(&during), during["epoch"].as_u64()), (Some(primary), Some(1)), "{during}");
    chaos.heal();
    let healed = converged(&mut c, "the replica streaming again").await;
    assert_eq!((primary_id(&healed), healed["epoch"].as_u64()), (Some(primary), Some(1)));
    let out = finish(&c, w).await;
    let longest = writer::longest_gap(&out.acks).unwrap_or_default();
    assert!(out.lost.is_empty(), "{:?}", out.lost);
    eprintln!("cut-off replica: no failover; longest write gap {longest:?}");
    report("cut-off-replica", None, out.lost.len(), healed["epoch"].as_u64().unwrap_or(1) - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_synchronous_standby_is_replaced_without_failover() {
    let (mut c, chaos) = ProcCluster::with_chaos(3, SYNC).await;
    c.start_all();
    let s = haraft_testkit::check::wait_status(&c, "a synchronous standby", |s| {
        normal(s) && s["members"].as_array().is_some_and(|m| m.iter().any(|m| m["synchronous"] == true))
    })
    .await;
    let primary = primary_id(&s).unwrap();
    let sync =
        s["members"].as_array().unwrap().iter().find(|m| m["synchronous"] == true).unwrap()["id"].as_u64().unwrap();
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut_at = Instant::now();
    chaos.isolate(sync);
    let moved = wait_via(&c, &others(3, sync), "the synchronous set moved", |s| {
        s["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["synchronous"] == true && m["id"].as_u64() != Some(sync)))
    })
    .await;
    eprintln!("synchronous set moved {:?} after the cut", cut_at.elapsed());
    assert_eq!((primary_id(&moved), moved["epoch"].as_u64()), (Some(primary), Some(1)), "{moved}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    chaos.heal();
    let healed = converged(&mut c, "the old synchronous standby streaming again").await;
    let out = finish(&c, w).await;
    report("cut-off-synchronous-standby", None, out.lost.len(), healed["epoch"].as_u64().unwrap_or(1) - 1);
    assert!(out.lost.is_empty(), "{:?}", out.lost);
    let longest = writer::longest_gap(&out.acks).unwrap_or_default();
    eprintln!("cut-off synchronous standby: commits blocked at most {longest:?}");
    // Commits wait for the lost standby until it leaves pg_stat_replication
    // (wal_sender_timeout 2 s) and the set moves: about one ttl.
    assert!(longest < Duration::from_secs(10), "commits blocked for {longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_peer_traffic_is_rejected_without_a_crash() {
    let (mut c, chaos) = ProcCluster::with_chaos(3, SYNC).await;
    c.start_all();
    let first = primary_id(&converged(&mut c, "bootstrap").await).unwrap();
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Peer (Raft and admin) traffic around the primary garbled, then on
    // every link, then cut mid-stream (truncated). Replication traffic is
    // PostgreSQL's protocol, not haraft's: without TLS its standby status
    // messages carry no checksum, and garbling them once made a primary
    // count commits as replicated that were not (see ARCHITECTURE.md, "The chaos proxy").
    chaos.around(first, Traffic::Raft, Fault::Garble);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for id in 1..=3 {
        chaos.around(id, Traffic::Raft, Fault::Garble);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in 1..=3 {
        chaos.around(id, Traffic::Raft, Fault::Cut);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    chaos.heal();
    let healed = converged(&mut c, "converged after garbling").await;
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "{:?}", out.lost);
    let pg = c.pg.as_ref().unwrap();
    let gap = writer::switch_gap(&out.acks, pg.ports[first as usize - 1]);
    report("garbled-peer-traffic", gap, out.lost.len(), healed["epoch"].as_u64().unwrap_or(1) - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_every_agent_causes_no_failover() {
    let (mut c, _chaos) = ProcCluster::with_chaos(3, SYNC).await;
    c.start_all();
    let s = converged(&mut c, "bootstrap").await;
    let primary = primary_id(&s).unwrap();
    let w = writer(&c).await;
    for id in 1..=3 {
        c.kill_agent_only(id);
        c.start(id);
        let now = converged(&mut c, &format!("node{id}'s agent back")).await;
        assert_eq!((primary_id(&now), now["epoch"].as_u64()), (Some(primary), Some(1)), "{now}");
    }
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "{:?}", out.lost);
    let longest = writer::longest_gap(&out.acks).unwrap_or_default();
    eprintln!("rolling restart: no failover; longest write gap {longest:?}");
    report("rolling-restart", None, out.lost.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_on_the_primary_fails_over_once_and_it_rejoins_when_space_returns() {
    let settings = "[failover]\nsynchronous_mode = true\nprimary_start_timeout_ms = 5000\n";
    let mut c = ProcCluster::with_postgres(3, settings);
    // node1 (the first primary: the lowest id) keeps its data and WAL on a
    // small disk of its own.
    let owner = c.pg.as_ref().unwrap().run_as;
    let disk = haraft_testkit::disk::Tmpfs::mount(&c.pgdata(1), 400, owner);
    c.start_all();
    let s = converged(&mut c, "bootstrap").await;
    assert_eq!(primary_id(&s), Some(1), "{s}");
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fill = disk.fill();
    // New WAL segments need space: switch segments until PostgreSQL finds none.
    let pg = c.pg.as_ref().unwrap();
    let first_port = pg.ports[0];
    let conn =
        format!("host=127.0.0.1 port={} user=postgres password={} dbname=postgres", pg.ports[0], pg.superuser_password);
    if let Ok((client, connection)) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
        tokio::spawn(connection);
        // WAL without heap pages (which fail with an ERROR on a full disk):
        // until a new segment is needed and cannot be created (a PANIC).
        for _ in 0..400 {
            let q = "SELECT pg_logical_emit_message(false, 'haraft-test', repeat('x', 1000000))";
            if client.simple_query(q).await.is_err() && client.is_closed() {
                break;
            }
        }
    }
    let moved =
        haraft_testkit::check::wait_status(&c, "a new primary", |s| primary_id(s).is_some_and(|p| p != 1)).await;
    let epoch = moved["epoch"].as_u64().unwrap();
    // No flapping while the disk stays full.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let still = c.status_via(&[2, 3]).expect("status");
    assert_eq!((primary_id(&still), still["epoch"].as_u64()), (primary_id(&moved), Some(epoch)), "{still}");
    disk.free(&fill);
    let healed = converged(&mut c, "node1 back as a replica once it has space").await;
    assert_eq!(healed["epoch"].as_u64(), Some(epoch), "the primary changed again: {healed}");
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "lost {} acknowledged writes in synchronous mode", out.lost.len());
    let gap = writer::switch_gap(&out.acks, first_port);
    eprintln!("disk full on the primary: one failover (epoch {epoch}), writes resumed after {gap:?}, none lost");
    report("disk-full-primary", gap, 0, epoch - 1);
    drop(c);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_under_an_agents_raft_directory_corrupts_nothing() {
    let mut c = ProcCluster::with_postgres(3, SYNC);
    let owner = c.pg.as_ref().unwrap().run_as;
    let disk = haraft_testkit::disk::Tmpfs::mount(&c.dir.path().join("data/node3/raft"), 64, owner);
    c.start_all();
    let s = converged(&mut c, "bootstrap").await;
    let (primary, epoch) = (primary_id(&s), s["epoch"].as_u64());
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fill = disk.fill();
    // Renewals commit twice a second: node3's store soon finds no space.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = c.status_via(&[1, 2]).expect("status from node1 and node2");
    eprintln!("raft disk full on node3: agent exited: {}", c.exited(3));
    disk.free(&fill);
    if !c.is_running(3) {
        c.start(3);
    }
    let healed = converged(&mut c, "node3 back with space").await;
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "{:?}", out.lost);
    // A full disk on node3 moves no lease: the same holder at the same
    // epoch throughout. (When node3 was the Raft leader, renewals stall
    // for the election; if that outlasts the holder's own deadline, the
    // holder stops its PostgreSQL, as it must, and restarts it in place
    // at the same epoch once a renewal commits again: so `during` may
    // catch the database down, but never another holder or epoch.)
    let holder = |s: &Value| (s["lease"]["holder_id"].as_u64(), s["epoch"].as_u64());
    assert_eq!(holder(&during), (primary, epoch), "{during}");
    assert_eq!((primary_id(&healed), healed["epoch"].as_u64()), (primary, epoch), "{healed}");
    report("disk-full-raft-dir", None, out.lost.len(), 0);
    drop(c);
    drop(disk);
}

/// Arms `point` on every member (fired once), kills the primary host
/// (the trigger of a failover, a rewind or a rebuild), restarts whoever
/// crashed at once, and checks the cluster converges without loss.
async fn crash_during_failover(point: &str, settings: &str) {
    let mut c = ProcCluster::with_postgres(3, settings);
    let once = c.dir.path().join("failpoint-fired").display().to_string();
    for id in 1..=3 {
        c.start_with_env(id, &[("HARAFT_FAILPOINTS", point), ("HARAFT_FAILPOINT_ONCE", &once)]);
    }
    let first = primary_id(&converged(&mut c, "bootstrap").await).unwrap();
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.kill_host(first);
    let env = [("HARAFT_FAILPOINTS", point), ("HARAFT_FAILPOINT_ONCE", once.as_str())];
    let start = Instant::now();
    let mut crashed = Vec::new();
    let mut first_back = false;
    // Whoever crashes is restarted at once; the old primary comes back
    // (armed too) once another member is primary, to be rewound.
    while start.elapsed() < LIMIT {
        for id in others(3, first) {
            if c.exited(id) {
                crashed.push(id);
                c.start(id);
            }
        }
        if !first_back && c.status_via(&others(3, first)).is_some_and(|s| primary_id(&s).is_some_and(|p| p != first)) {
            c.start_with_env(first, &env);
            first_back = true;
        }
        if first_back && c.exited(first) {
            crashed.push(first);
            c.start(first);
        }
        if first_back && !crashed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!crashed.is_empty(), "nobody reached failpoint {point}:\n{}", logs(&c));
    let end = converged(&mut c, "converged after the crash").await;
    let out = finish(&c, w).await;
    if settings.contains("synchronous_mode = true") {
        assert!(out.lost.is_empty(), "{point}: lost {:?}", out.lost);
    }
    let epoch = end["epoch"].as_u64().unwrap_or(1);
    eprintln!("{point}: nodes {crashed:?} crashed and came back; epoch {epoch}; lost {}", out.lost.len());
    report(&format!("crash {point}"), None, out.lost.len(), epoch - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_primary_crashes_before_promoting_in_a_failover() {
    crash_during_failover("before-promote", SYNC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_primary_crashes_before_its_rewind() {
    crash_during_failover("before-rewind", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_crashes_before_the_rebuild_an_operator_asked_for() {
    let mut c = ProcCluster::with_postgres(3, SYNC);
    c.start_all();
    let primary = primary_id(&converged(&mut c, "bootstrap").await).unwrap();
    let replica = others(3, primary)[1];
    c.kill_agent_only(replica);
    c.start_with_env(replica, &[("HARAFT_FAILPOINTS", "before-rebuild")]);
    converged(&mut c, "the replica's agent back, armed").await;
    let w = writer(&c).await;
    let mut command = c.ctl_command(&["rebuild", &format!("node{replica}"), "--full", "--force", "--wait", "120"]);
    let cli = tokio::task::spawn_blocking(move || command.output());
    let mut crashed = false;
    while !cli.is_finished() {
        if c.exited(replica) {
            crashed = true;
            c.start(replica);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cli = cli.await.unwrap().unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&cli.stdout), String::from_utf8_lossy(&cli.stderr));
    assert!(crashed, "the failpoint never fired:\n{out}");
    // The task outlived the crash: the restarted agent carried it out.
    assert_eq!(cli.status.code(), Some(0), "{out}\n{}", logs(&c));
    let end = converged(&mut c, "converged after the rebuild").await;
    let res = finish(&c, w).await;
    assert!(res.lost.is_empty(), "{:?}", res.lost);
    report("crash before-rebuild (operator task)", None, 0, end["epoch"].as_u64().unwrap_or(1) - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_primarys_agent_killed_its_guard_fences_before_the_new_epoch() {
    let mut c = ProcCluster::with_postgres(3, SYNC);
    c.start_all();
    let first = primary_id(&converged(&mut c, "bootstrap").await).unwrap();
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The agent dies; its PostgreSQL and fence guard live on.
    c.kill_agent_only(first);
    let after = wait_via(&c, &others(3, first), "a new primary", |s| primary_id(s).is_some_and(|p| p != first)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.start(first);
    let end = converged(&mut c, "the old primary back as a replica").await;
    assert_eq!(primary_id(&end), primary_id(&after));
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "{:?}", out.lost);
    let pg = c.pg.as_ref().unwrap();
    let gap = writer::switch_gap(&out.acks, pg.ports[first as usize - 1]);
    report("kill-9-primary-agent-only", gap, 0, end["epoch"].as_u64().unwrap_or(1) - 1);
}

/// libfaketime's preload library (Debian package `faketime`; `.ci/run`
/// installs it).
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.is_file());
    found.expect("libfaketime is missing: apt-get install faketime").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jumps_on_the_primary_change_nothing() {
    let mut c = ProcCluster::with_postgres(3, SYNC);
    // Every node's wall clock is read from its own file, re-read on every
    // call; monotonic clocks stay real, as an NTP step leaves them. Which
    // node bootstraps first is not fixed, so all run under libfaketime and
    // the primary's clock is the one that jumps.
    let lib = libfaketime();
    for id in 1..=3u64 {
        let offset = c.dir.path().join(format!("node{id}-clock-offset"));
        std::fs::write(&offset, "+0\n").unwrap();
        let file = offset.display().to_string();
        let env = [
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", file.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
            // Every renewal logged, so that the log shows the clock it ran on.
            ("HARAFT_LOG", "info,haraft_agent=debug"),
        ];
        c.start_with_env(id, &env);
    }
    let s = converged(&mut c, "bootstrap").await;
    let primary = primary_id(&s).unwrap();
    let offset = c.dir.path().join(format!("node{primary}-clock-offset"));
    let w = writer(&c).await;
    let hour = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600 % 24;
    let later = [(hour() + 2) % 24, (hour() + 3) % 24];
    for jump in ["+2h", "-2h", "+0"] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::fs::write(&offset, format!("{jump}\n")).unwrap();
    }
    // The jump took effect: the primary logged with its clock two hours ahead.
    let log = c.log(primary);
    assert!(
        later.iter().any(|h| log.contains(&format!("T{h:02}:"))),
        "node{primary}'s wall clock never jumped:\n{log}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let end = converged(&mut c, "converged after the clock jumps").await;
    assert_eq!(
        (primary_id(&end), end["epoch"].as_u64()),
        (Some(primary), Some(1)),
        "a clock jump changed the primary: {end}"
    );
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "{:?}", out.lost);
    let longest = writer::longest_gap(&out.acks).unwrap_or_default();
    eprintln!("wall clock jumps on the primary: no failover; longest write gap {longest:?}");
    report("wall-clock-jumps", None, out.lost.len(), 0);
}

/// The primary host dies; while the failover is pending (a 6 s lease, so
/// that both changes land before it lapses) an operator adds a new member
/// and removes the dead one. The failover completes among the members, the
/// new member copies the database from the new primary and streams, and
/// nothing acknowledged is lost (synchronous mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_and_the_dead_primary_removed_during_a_failover() {
    let extra = format!("{SYNC}\n[lease]\nttl_ms = 6000\n");
    let mut c = ProcCluster::with_postgres(3, &extra);
    c.start_all();
    let first = primary_id(&converged(&mut c, "bootstrap").await).unwrap();
    let new = c.add_joining_node(&extra);
    c.start(new);
    let (name, first_name) = (format!("node{new}"), format!("node{first}"));
    let address = c.addresses[new as usize - 1].clone();
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Refused, changing nothing: the healthy primary, an id or address in
    // use, a bad address, an unknown member.
    let refused = |args: &[&str], text: &str| {
        let (code, out, err) = c.ctl(args);
        assert_eq!(code, 1, "{args:?} was not refused: {out}{err}");
        assert!(err.contains(text), "{args:?}: expected {text:?} in: {err}");
    };
    refused(&["member", "remove", &first_name, "--force"], "switch over first");
    refused(&["member", "add", &name, "--id", "1", "--address", &address, "--force"], "is node1's");
    refused(&["member", "add", &name, "--id", &new.to_string(), "--address", "nowhere", "--force"], "not host:port");
    refused(
        &["member", "add", &name, "--id", &new.to_string(), "--address", &c.addresses[0].clone(), "--force"],
        "already has address",
    );
    refused(&["member", "remove", "node9", "--force"], "unknown member");
    assert_eq!(c.status().unwrap()["members"].as_array().unwrap().len(), 3);

    c.kill_host(first);
    let (code, out, err) = c.ctl(&["member", "add", &name, "--id", &new.to_string(), "--address", &address, "--force"]);
    assert_eq!(code, 0, "member add: {out}{err}\n{}", logs(&c));
    let (code, out, err) = c.ctl(&["member", "remove", &first_name, "--force"]);
    assert_eq!(code, 0, "member remove: {out}{err}\n{}", logs(&c));
    let during = c.status().expect("status");
    eprintln!("membership changed at epoch {} ({})", during["epoch"], during["cluster_state"]);
    assert_eq!(during["epoch"].as_u64(), Some(1), "the failover was decided before the changes: {during}");

    let end = converged(&mut c, "the new member streaming from the new primary").await;
    let ids: Vec<u64> = end["members"].as_array().unwrap().iter().filter_map(|m| m["id"].as_u64()).collect();
    assert!(!ids.contains(&first) && ids.contains(&new) && ids.len() == 3, "members {ids:?}: {end}");
    assert_ne!(primary_id(&end), Some(first));
    assert_eq!(end["epoch"].as_u64(), Some(2), "{end}");

    // A live replica removed (not the synchronous standby): its agent
    // stops its PostgreSQL; the other two carry on.
    let gone = end["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] != "primary" && m["synchronous"] != true)
        .and_then(|m| m["id"].as_u64())
        .expect("a non-synchronous replica");
    let log_before = c.log(gone).len();
    let (code, out, err) = c.ctl(&["member", "remove", &format!("node{gone}"), "--force"]);
    assert_eq!(code, 0, "member remove of a live replica: {out}{err}");
    haraft_testkit::wait_for("the removed member's PostgreSQL stopped", LIMIT, || {
        haraft_db::procs::server_pids(&c.pgdata(gone)).is_empty().then_some(())
    })
    .await;
    let two = converged(&mut c, "two members left").await;
    assert_eq!(two["members"].as_array().unwrap().len(), 2, "{two}");
    let since = c.log(gone).get(log_before..).unwrap_or_default().to_string();
    assert!(since.contains("not-a-member-of-the-cluster"), "the removed agent did not say why it stopped:\n{since}");
    let removal = haraft_testkit::check::history(&c).into_iter().rev().find(|h| {
        h["event"] == "operation-requested"
            && h["detail"].as_str().is_some_and(|d| d.contains(&format!("remove node{gone} from the cluster")))
    });
    assert!(removal.is_some_and(|h| h["by"].is_string()), "the removal is not in the history with who asked");
    // Adding a member is no operation: an audit entry says who added it;
    // the refused requests are audited as well.
    let history = haraft_testkit::check::history(&c);
    let audited = |event: &str, what: &str| {
        history.iter().any(|h| {
            h["event"] == event
                && h["by"].is_string()
                && h["detail"].as_str().is_some_and(|d| d.contains(&format!(": {what}")))
        })
    };
    assert!(audited("request-done", &format!("add member {name} (id {new}) at {address};")), "member add not audited");
    assert!(audited("request-refused", "remove member node9;"), "a refused member remove not audited");

    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "lost {} acknowledged writes in synchronous mode: {:?}", out.lost.len(), out.lost);
    let changes = haraft_testkit::check::history(&c).iter().filter(|h| h["event"] == "members-changed").count();
    assert!(changes >= 3, "expected the learner, joint and final membership in the history");
    let gap = writer::switch_gap(&out.acks, c.pg.as_ref().unwrap().ports[first as usize - 1]);
    report("member-add-remove-during-failover", gap, out.lost.len(), 1);
}

/// A partition that flaps: the primary of the moment is cut off from the
/// others for 0.5-6 s, then the links heal for 0.3-3 s, over and over for
/// `HARAFT_FLAP_SECONDS` (default 60; the long run in the README uses
/// minutes), seeded by `HARAFT_FLAP_SEED`. Each promotion needs a cut of
/// the primary, so there are never more promotions than cuts; after the
/// last heal the cluster converges with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_partition_keeps_promotions_bounded_and_converges() {
    let seconds = std::env::var("HARAFT_FLAP_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed = std::env::var("HARAFT_FLAP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261121);
    let (mut c, chaos) = ProcCluster::with_chaos(3, SYNC).await;
    c.start_all();
    let mut victim = primary_id(&converged(&mut c, "bootstrap").await).unwrap();
    let w = writer(&c).await;
    let mut rng = haraft_testkit::nemesis::Rng::new(seed);
    let began = Instant::now();
    let (mut cuts, mut last_epoch) = (0u64, 1u64);
    while began.elapsed() < Duration::from_secs(seconds) {
        if let Some(s) = c.status() {
            victim = primary_id(&s).unwrap_or(victim);
            let epoch = s["epoch"].as_u64().unwrap_or(last_epoch);
            assert!(epoch >= last_epoch, "epoch went back from {last_epoch} to {epoch}");
            last_epoch = epoch;
        }
        chaos.isolate(victim);
        cuts += 1;
        tokio::time::sleep(Duration::from_millis(500 + rng.below(5500))).await;
        chaos.heal();
        tokio::time::sleep(Duration::from_millis(300 + rng.below(2700))).await;
    }
    let healed = converged(&mut c, "converged after the flapping stopped").await;
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "lost {} acknowledged writes in synchronous mode: {:?}", out.lost.len(), out.lost);
    let epoch = healed["epoch"].as_u64().unwrap_or(1);
    assert!(epoch >= last_epoch, "epoch went back from {last_epoch} to {epoch}");
    let promotions = epoch - 1;
    eprintln!(
        "flapping partition (seed {seed}, {seconds} s): {cuts} cuts, {promotions} promotions, {} acks, none lost",
        out.acks.len()
    );
    assert!(promotions <= cuts, "{promotions} promotions from {cuts} cuts of the primary");
    report("flapping-partition", writer::longest_switch_gap(&out.acks), out.lost.len(), promotions);
}

/// A short nemesis run (the long one is `haraft-nemesis`, see the README):
/// seed from `HARAFT_NEMESIS_SEED` to replay a failure, 40 s of faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_short_run_breaks_no_invariant() {
    let seed = std::env::var("HARAFT_NEMESIS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261121);
    let report = haraft_testkit::nemesis::run(seed, 40, true).await;
    for f in &report.faults {
        eprintln!("{f}");
    }
    eprintln!(
        "nemesis seed {seed}: {} acks, {} lost, {} promotions, converged {}",
        report.acknowledged, report.lost, report.promotions, report.converged
    );
    assert!(report.passed(), "nemesis seed {seed} broke: {:?}\n{}", report.violations, report.logs);
    haraft_testkit::check::report("nemesis-40s", None, report.lost, report.promotions);
}

/// The Raft leader, not the primary, freezes (its agent stopped with
/// SIGSTOP; its PostgreSQL, a replica, runs on). The primary's renewals are
/// forwarded to it and hang; each is given up after half the holder's
/// validity, or at once when another leader is known, and the next reaches
/// the new leader. No failover, no new epoch, nothing lost. Whether the
/// primary also stayed writable throughout is a race of the election
/// (0.9-1.2 s with the default Raft timing, openraft 0.9 waiting out its
/// leader lease first) against the holder's validity (1.975 s after its
/// last renewal was sent): usually it does; if not it fences itself and
/// restarts in place at the same epoch. The report's gap is the longest
/// pause between two acknowledged writes, and the line says which happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_raft_leader_that_is_not_the_primary_leaves_the_primary_writable() {
    let mut c = ProcCluster::with_postgres(3, SYNC);
    c.start_all();
    let mut status = converged(&mut c, "bootstrap").await;
    // openraft 0.9 cannot move leadership: move the primary instead.
    if status["leader_id"] == status["lease"]["holder_id"] {
        let leader = status["leader_id"].as_u64().unwrap();
        let target = others(3, leader)[0];
        let (code, out, err) = c.ctl(&["switchover", "--to", &format!("node{target}"), "--force"]);
        assert_eq!(code, 0, "{out}{err}");
        status = converged(&mut c, "the primary moved off the Raft leader").await;
    }
    let (leader, primary) = (status["leader_id"].as_u64().unwrap(), primary_id(&status).unwrap());
    assert_ne!(leader, primary, "{status}");
    let epoch = status["epoch"].as_u64().unwrap();
    let log_before = c.log(primary).len();
    let w = writer(&c).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.freeze_agent(leader, true);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during =
        wait_via(&c, &others(3, leader), "a new Raft leader", |s| s["leader_id"].as_u64().is_some_and(|l| l != leader))
            .await;
    c.freeze_agent(leader, false);
    let healed = converged(&mut c, "the frozen agent back").await;
    let out = finish(&c, w).await;
    assert!(out.lost.is_empty(), "lost {} acknowledged writes: {:?}", out.lost.len(), out.lost);
    assert_eq!((primary_id(&during), during["epoch"].as_u64()), (Some(primary), Some(epoch)), "{during}");
    assert_eq!((primary_id(&healed), healed["epoch"].as_u64()), (Some(primary), Some(epoch)), "{healed}");
    let fenced = c.log(primary)[log_before..].contains("lease no longer valid");
    let gap = out.acks.windows(2).map(|w| w[1].at - w[0].at).max();
    eprintln!(
        "frozen Raft leader (not the primary): {} acks, none lost, longest pause {gap:?}, primary kept epoch {epoch}; it {}",
        out.acks.len(),
        if fenced { "fenced itself until the new leader renewed its lease" } else { "stayed writable throughout" }
    );
    report("frozen-raft-leader", gap, out.lost.len(), 0);
}
