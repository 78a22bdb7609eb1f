//! Operator operations against real agents and real PostgreSQL 15:
//! switchover under a writer, crash points at each switchover step,
//! refused preconditions, pause/resume, scheduled switchover, restart,
//! rebuild and config set.

use haraft_testkit::check::{history, logs, normal, primary_id, wait_normal, wait_status};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::writer::{self, Writer};
use serde_json::Value;
use std::time::Duration;

/// The history entries of operation `id`.
fn operation(c: &ProcCluster, id: u64) -> Vec<Value> {
    history(c).into_iter().filter(|h| h["operation"] == id).collect()
}

/// The operation id a haraftctl run printed: "... (operation 42)".
fn printed_id(out: &str) -> u64 {
    let tail = out.split("(operation ").nth(1).unwrap_or_else(|| panic!("no operation id in {out:?}"));
    tail.split(')').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no operation id in {out:?}"))
}

fn ended(entries: &[Value]) -> Option<String> {
    entries.iter().find_map(|h| {
        let e = h["event"].as_str().unwrap_or("");
        (e.starts_with("operation-") && e != "operation-requested" && e != "operation-step").then(|| e.to_string())
    })
}

fn name(id: u64) -> String {
    format!("node{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_a_writer_loses_nothing_and_reports_each_step() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let status = wait_normal(&c, "bootstrap").await;
    let first = primary_id(&status).unwrap();
    let target = (1..=3).find(|i| *i != first).unwrap();

    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (code, out, err) = c.ctl(&["switchover", "--to", &name(target), "--force"]);
    assert_eq!(code, 0, "switchover failed:\n{out}\n{err}\n{}", logs(&c));
    assert!(out.contains(&format!("switchover from {} to {}", name(first), name(target))), "{out}");
    for step in
        ["stopped cleanly at", "granted epoch 2", "promoted: primary at epoch 2", "streams from the new primary"]
    {
        assert!(out.contains(step), "step {step:?} not printed:\n{out}");
    }
    let id = printed_id(&out);
    // The CLI said done only after the old primary streams: the cluster is
    // already converged (give status one round of probes).
    let after = wait_normal(&c, "converged after the switchover").await;
    assert_eq!(primary_id(&after), Some(target));
    assert_eq!(after["epoch"], 2);
    assert!(after["operation"].is_null(), "{after}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    writer::assert_no_overlap(&acks, "the writer");
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "a switchover lost {} acknowledged writes: {lost:?}", lost.len());
    let gap = writer::switch_gap(&acks, ports[first as usize - 1]).expect("writes resumed on the new primary");
    eprintln!("switchover: writes unavailable for {gap:?}; {} acknowledged writes, none lost", acks.len());
    haraft_testkit::check::report("switchover", Some(gap), lost.len(), 1);

    // The history: who asked, every step, the outcome; and no rewind was
    // needed (the old primary stopped cleanly where the target took over).
    let entries = operation(&c, id);
    assert_eq!(entries[0]["event"], "operation-requested", "{entries:?}");
    assert!(entries[0]["by"].as_str().is_some_and(|b| !b.is_empty()), "{entries:?}");
    assert_eq!(ended(&entries).as_deref(), Some("operation-done"), "{entries:?}");
    let rewound: Vec<Value> = history(&c).into_iter().filter(|h| h["event"] == "rewound").collect();
    assert!(rewound.is_empty(), "a clean switchover needs no rewind: {rewound:?}\n{}", logs(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_operations_say_why_and_change_nothing() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let status = wait_normal(&c, "bootstrap").await;
    let first = primary_id(&status).unwrap();
    let other = (1..=3).find(|i| *i != first).unwrap();
    let before = history(&c).len();

    let refused = |args: &[&str], expect: &str| {
        let (code, out, err) = c.ctl(args);
        assert_eq!(code, 1, "{args:?} was not refused:\n{out}\n{err}");
        assert!(err.contains(expect), "{args:?}: expected {expect:?} in:\n{err}");
    };
    refused(&["switchover", "--to", "node9", "--force"], "unknown member \"node9\"");
    refused(&["switchover", "--to", &name(first), "--force"], "is the primary itself");
    refused(&["switchover", "--from", &name(other), "--force"], &format!("{} is not the primary", name(other)));
    refused(&["failover", "--to", &name(other), "--force"], "healthy primary holding the lease");
    refused(&["rebuild", &name(first), "--force"], "is the primary");
    refused(&["config", "set", "lease.ttl_ms=600"], "raise lease.ttl_ms to at least");
    refused(&["config", "set", "postgresql.archive_command=rm -rf /"], "runs a shell command");
    refused(&["config", "set", "lease.bogus=1"], "unknown setting");
    refused(&["switchover", "--cancel"], "no switchover is running or scheduled");
    let (code, _, err) = c.ctl(&["switchover", "--at", "yesterday", "--force"]);
    assert_eq!(code, 2, "{err}");
    // Without --force and without a terminal: nothing can be confirmed.
    refused(&["switchover", "--to", &name(other)], "not a terminal");
    // Each request that reached the leader and was refused is audited with
    // its reason; nothing else entered the history. (The dry run shown
    // before a confirmation asks for nothing and is not audited; the bad
    // --at never left haraftctl.)
    let reasons = [
        "unknown member \"node9\"",
        "is the primary itself",
        "is not the primary",
        "healthy primary holding the lease",
        "is the primary",
        "raise lease.ttl_ms to at least",
        "runs a shell command",
        "unknown setting",
        "no switchover is running or scheduled",
    ];
    let after = haraft_testkit::wait_for("every refusal audited", Duration::from_secs(10), || {
        let h = history(&c);
        (h.len() >= before + reasons.len()).then_some(h)
    })
    .await;
    let (audits, rest): (Vec<Value>, Vec<Value>) = after.into_iter().partition(|h| h["event"] == "request-refused");
    assert_eq!(rest.len(), before, "refusals changed the history: {rest:?}");
    assert_eq!(audits.len(), reasons.len(), "{audits:?}");
    for (audit, reason) in audits.iter().zip(reasons) {
        assert!(audit["result"].as_str().unwrap().contains(reason), "expected {reason:?}: {audit}");
        assert!(audit["by"].as_str().is_some_and(|b| !b.is_empty()), "{audit}");
    }

    // Paused: switchover refused without --force; status says so.
    assert_eq!(c.ctl(&["pause"]).0, 0);
    let s = wait_status(&c, "paused", |s| s["paused"] == true).await;
    refused(&["switchover", "--to", &name(other)], "paused");
    let (_, table, _) = c.ctl(&["status"]);
    assert!(table.contains("Paused:       yes"), "{table}");
    refused(&["pause"], "already paused");
    assert_eq!(c.ctl(&["resume"]).0, 0);

    // A scheduled switchover blocks another one until cancelled.
    let (code, out, err) = c.ctl(&["switchover", "--to", &name(other), "--at", "+1h", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let scheduled = printed_id(&out);
    let s2 = wait_status(&c, "the schedule in status", |s| s["scheduled"].is_string()).await;
    assert!(s2["scheduled"].as_str().unwrap().contains(&format!("to {}", name(other))), "{s2}");
    refused(&["switchover", "--to", &name(other), "--force"], "is scheduled");
    assert_eq!(c.ctl(&["switchover", "--cancel"]).0, 0);
    wait_status(&c, "the schedule gone", |s| s["scheduled"].is_null()).await;
    assert_eq!(ended(&operation(&c, scheduled)).as_deref(), Some("operation-cancelled"));

    // config set: validated, shown, recorded.
    let (code, out, err) = c.ctl(&["config", "set", "failover.maximum_lag_on_failover=16MB", "lease.ttl_ms=3000"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, shown, _) = c.ctl(&["config", "show"]);
    assert_eq!(code, 0);
    assert!(shown.contains("failover.maximum_lag_on_failover_bytes = 16777216"), "{shown}");
    assert!(shown.contains("lease.ttl_ms = 1300  (set to 3000: takes effect with the next epoch)"), "{shown}");
    assert_eq!(primary_id(&s), Some(first), "nothing changed the primary");
    assert!(normal(&c.status().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_blocks_automatic_failover_and_resume_lets_it_proceed() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let first = primary_id(&wait_normal(&c, "bootstrap").await).unwrap();
    assert_eq!(c.ctl(&["pause"]).0, 0);
    wait_status(&c, "paused", |s| s["paused"] == true).await;
    c.kill_host(first);
    // Well past the ttl (2.5 s): nobody is promoted while paused.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = c.status().expect("status");
    assert_eq!(s["epoch"], 1, "a paused cluster failed over: {s}\n{}", logs(&c));
    assert!(s["members"].as_array().unwrap().iter().all(|m| m["role"] != "primary"), "{s}");
    assert_eq!(c.ctl(&["resume"]).0, 0);
    let after = wait_status(&c, "failover after resume", |s| primary_id(s).is_some_and(|p| p != first)).await;
    assert_eq!(after["epoch"], 2, "{after}");
    c.start(first);
    wait_normal(&c, "converged").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_switchover_fires_once_at_its_time() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let first = primary_id(&wait_normal(&c, "bootstrap").await).unwrap();
    let target = (1..=3).rev().find(|i| *i != first).unwrap();
    let (code, out, err) = c.ctl(&["switchover", "--to", &name(target), "--at", "+5s", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = printed_id(&out);
    let s = c.status().unwrap();
    assert_eq!(primary_id(&s), Some(first), "ran before its time");
    let (code, followed, err) = c.ctl(&["follow", &id.to_string(), "--wait", "80"]);
    assert_eq!(code, 0, "{followed}{err}\n{}", logs(&c));
    assert!(followed.contains("scheduled time reached"), "{followed}");
    let after = wait_normal(&c, "converged").await;
    assert_eq!(primary_id(&after), Some(target));
    assert_eq!(after["epoch"], 2, "fired more than once? {after}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.status().unwrap()["epoch"], 2, "fired more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_lease_and_rebuild_rejoins() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let first = primary_id(&wait_normal(&c, "bootstrap").await).unwrap();
    let replica = (1..=3).find(|i| *i != first).unwrap();

    // Not following long enough is reported as still in progress, never
    // as done; following it again sees it end.
    let (code, out, err) = c.ctl(&["restart", &name(first), "--force", "--wait", "0"]);
    assert_eq!(code, 3, "{out}{err}\n{}", logs(&c));
    assert!(err.contains("still in progress") && err.contains("haraftctl follow"), "{err}");
    let (code, out, err) = c.ctl(&["follow", &printed_id(&out).to_string(), "--wait", "60"]);
    assert_eq!(code, 0, "{out}{err}\n{}", logs(&c));
    let s = wait_normal(&c, "converged after the restart").await;
    assert_eq!((primary_id(&s), s["epoch"].as_u64()), (Some(first), Some(1)), "restart moved the primary: {s}");

    let (code, out, err) = c.ctl(&["rebuild", &name(replica), "--full", "--force"]);
    assert_eq!(code, 0, "{out}{err}\n{}", logs(&c));
    wait_normal(&c, "converged after the rebuild").await;
    assert!(history(&c).iter().any(|h| h["event"] == "rebuilt" && h["node"] == name(replica)));
    let (code, out, err) = c.ctl(&["rebuild", &name(replica), "--force"]);
    assert_eq!(code, 0, "{out}{err}\n{}", logs(&c));
    wait_normal(&c, "converged after the rewind").await;
}

/// Where the Raft leader is when a switchover's crash point fires.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Leader {
    /// Wherever the election put it.
    Anywhere,
    /// The Raft leader is the old primary.
    IsPrimary,
    /// The Raft leader is neither the old primary nor the target.
    Bystander,
}

/// Switches over to `to` with no crash point armed (the once-file exists)
/// and waits for the cluster to settle with `to` as primary.
async fn arrange_primary(c: &ProcCluster, to: u64) {
    let (code, out, err) = c.ctl(&["switchover", "--to", &name(to), "--force", "--wait", "60"]);
    assert_eq!(code, 0, "arranging switchover to {}: {out}{err}\n{}", name(to), logs(c));
    wait_status(c, "the arranged primary", |s| normal(s) && primary_id(s) == Some(to)).await;
}

/// Crash one agent at a step of the switchover; restart it; the cluster
/// ends with one primary and every other member streaming, no
/// acknowledged write lost, and the CLI's exit code matching the outcome
/// the history recorded. With `leader` other than `Anywhere`, a first
/// switchover (crash point disarmed) arranges where the Raft leader is
/// relative to the primary, and the point must fire on the Raft leader.
async fn crash_during_switchover(point: &str, leader: Leader) {
    let mut c = ProcCluster::with_postgres(3, "[failover]\nsynchronous_mode = true\n");
    // Armed on every member, fired once: by whichever reaches it first.
    // While the file exists the point is disarmed.
    let once = c.dir.path().join("failpoint-fired");
    if leader != Leader::Anywhere {
        std::fs::write(&once, "disarmed while arranging").unwrap();
    }
    let once_path = once.display().to_string();
    for id in 1..=3 {
        c.start_with_env(id, &[("HARAFT_FAILPOINTS", point), ("HARAFT_FAILPOINT_ONCE", &once_path)]);
    }
    let s = wait_normal(&c, "bootstrap").await;
    let mut first = primary_id(&s).unwrap();
    let raft_leader = s["leader_id"].as_u64().expect("a Raft leader");
    let target = match leader {
        Leader::Anywhere => (1..=3).find(|i| *i != first).unwrap(),
        Leader::IsPrimary => {
            if raft_leader != first {
                arrange_primary(&c, raft_leader).await;
                first = raft_leader;
            }
            (1..=3).find(|i| *i != first).unwrap()
        }
        Leader::Bystander => {
            if raft_leader == first {
                let other = (1..=3).find(|i| *i != first).unwrap();
                arrange_primary(&c, other).await;
                first = other;
            }
            (1..=3).find(|i| *i != first && *i != raft_leader).unwrap()
        }
    };
    if leader != Leader::Anywhere {
        let s = wait_normal(&c, "settled before the switchover under test").await;
        assert_eq!(s["leader_id"].as_u64(), Some(raft_leader), "the Raft leader moved while arranging: {s}");
        std::fs::remove_file(&once).unwrap();
    }

    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut command = c.ctl_command(&["switchover", "--to", &name(target), "--force", "--wait", "150"]);
    let cli = tokio::task::spawn_blocking(move || command.output());
    // Whoever hits the failpoint is restarted at once (as systemd would),
    // while the CLI follows the switchover.
    let mut crashed = Vec::new();
    while !cli.is_finished() {
        for i in 1..=3 {
            if c.exited(i) {
                crashed.push(i);
                c.start(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cli = cli.await.unwrap().unwrap();
    let (code, out) = (cli.status.code().unwrap_or(-1), String::from_utf8_lossy(&cli.stdout).to_string());
    let err = String::from_utf8_lossy(&cli.stderr).to_string();
    let id = printed_id(&out);
    for i in 1..=3 {
        if c.exited(i) {
            crashed.push(i);
            c.start(i);
        }
    }
    assert!(!crashed.is_empty(), "no agent reached failpoint {point}:\n{out}\n{err}\n{}", logs(&c));
    if leader != Leader::Anywhere {
        assert_eq!(crashed[0], raft_leader, "{point} fired on node{} and not on the Raft leader", crashed[0]);
    }
    let end = wait_normal(&c, "converged after the crash").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    writer::assert_no_overlap(&acks, point);
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "{point}: lost {} acknowledged writes (synchronous mode): {lost:?}", lost.len());

    let outcome = ended(&operation(&c, id));
    match code {
        0 => assert_eq!(outcome.as_deref(), Some("operation-done"), "{point}: exit 0 but {outcome:?}\n{out}"),
        1 => assert!(
            outcome.is_some() && outcome.as_deref() != Some("operation-done"),
            "{point}: {outcome:?}\n{out}\n{err}"
        ),
        3 => assert!(err.contains("still in progress"), "{err}"),
        other => panic!("{point}: haraftctl exited {other}\n{out}\n{err}"),
    }
    eprintln!(
        "{point} (Raft leader: {leader:?}): crashed {crashed:?} (old primary node{first}, target node{target}); CLI exit {code}; outcome {outcome:?}; primary now node{}; {} acks, none lost",
        primary_id(&end).unwrap(),
        acks.len()
    );
    let epoch = end["epoch"].as_u64().unwrap_or(1);
    haraft_testkit::check::report(&format!("crash {point} (sync, leader {leader:?})"), None, lost.len(), epoch - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_primary_agent_crashes_after_its_clean_stop() {
    crash_during_switchover("before-switchover-demoted", Leader::Anywhere).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_agent_crashes_before_promoting() {
    crash_during_switchover("before-switchover-promote", Leader::Anywhere).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_agent_crashes_after_promoting_before_reporting_it() {
    crash_during_switchover("before-switchover-promoted", Leader::Anywhere).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_primary_agent_crashes_when_streaming_again_before_reporting_it() {
    crash_during_switchover("before-switchover-rejoined", Leader::Anywhere).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_that_is_the_old_primary_crashes_before_granting_the_target() {
    crash_during_switchover("before-switchover-grant", Leader::IsPrimary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_that_is_neither_primary_nor_target_crashes_before_granting() {
    crash_during_switchover("before-switchover-grant", Leader::Bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_promotes_the_named_member_when_the_primary_is_gone() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let first = primary_id(&wait_normal(&c, "bootstrap").await).unwrap();
    // Paused, so that the automatic failover does not get there first.
    assert_eq!(c.ctl(&["pause"]).0, 0);
    wait_status(&c, "paused", |s| s["paused"] == true).await;
    let chosen = (1..=3).rev().find(|i| *i != first).unwrap();
    c.kill_host(first);
    // Without --force a paused cluster refuses.
    let (code, _, err) = c.ctl(&["failover", "--to", &name(chosen)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("paused"), "{err}");
    let (code, out, err) = c.ctl(&["failover", "--to", &name(chosen), "--force", "--wait", "60"]);
    assert_eq!(code, 0, "{out}{err}\n{}", logs(&c));
    let id = printed_id(&out);
    let after = wait_status(&c, "the chosen member primary", |s| primary_id(s) == Some(chosen)).await;
    assert_eq!(after["epoch"], 2, "{after}");
    let entries = operation(&c, id);
    assert_eq!(ended(&entries).as_deref(), Some("operation-done"), "{entries:?}");
    let granted = history(&c).into_iter().rev().find(|h| h["event"] == "granted").unwrap();
    let why = granted["verdicts"][0]["why"].as_str().unwrap_or("").to_string();
    assert!(granted["node"] == name(chosen) && why.contains("chosen by the operator"), "{granted}");
    assert_eq!(c.ctl(&["resume"]).0, 0);
    c.start(first);
    wait_normal(&c, "the old primary rejoined").await;
}
