//! openGauss under haraft: the seed's scenarios
//! (`../shared/seeds/000_d3f17f816c8a7fed.txt`) with real agents and the
//! openGauss adapter, on og-emul (openGauss's tools emulated over
//! PostgreSQL 15; see crates/testkit/src/bin/og_emul for what it follows
//! and where it cannot be faithful).
//!
//! - a killed primary fails over, and the old one comes back as
//!   `Standby Normal` without anyone running `gs_ctl build` by hand;
//! - `haraftctl failover --to` while the old primary still runs never makes
//!   two primaries (the seed's `gs_ctl failover` did): refused while it
//!   holds its lease; once its agent is frozen, granted only after its
//!   guard stopped it;
//! - the seed's own command, `gs_ctl failover` on a standby behind
//!   haraft's back: the server acknowledges no write, is stopped and
//!   rejoins.

use haraft_testkit::check::{LIMIT, history, logs, primary_id, wait_normal, wait_status};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::wait_for;
use haraft_testkit::writer::{self, Ack, Writer};
use std::time::Duration;

const EVERY: Duration = Duration::from_millis(20);
const WRITERS_LIMIT: Duration = Duration::from_secs(300);

fn name(id: u64) -> String {
    format!("node{id}")
}

/// `haraftctl status --format gs_om`, which must read `Normal` with
/// `node` as a `Standby Normal` datanode.
fn gs_om_shows_standby_normal(c: &ProcCluster, node: u64) {
    let (code, out, err) = c.ctl(&["status", "--format", "gs_om"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cluster_state   : Normal"), "{out}");
    let line = out.lines().find(|l| l.contains(" Standby ")).unwrap_or_default();
    let me = line.split(" | ").find(|cell| cell.contains(&format!(" {} ", name(node)))).unwrap_or_default();
    assert!(me.trim_end().ends_with("S Standby Normal"), "node{node} is not a Standby Normal datanode:\n{out}");
}

/// What the (emulated) `gs_ctl query` says of node `id`: local_role and
/// db_state.
fn gs_ctl_query(c: &ProcCluster, id: u64) -> (String, String) {
    let out = c.gs_ctl(id, &["query"]);
    let q = haraft_db::gs_ctl::parse_query(&String::from_utf8_lossy(&out.stdout)).expect("gs_ctl query parses");
    (q.local_role().to_string(), q.db_state().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_and_comes_back_standby_normal() {
    let mut c = ProcCluster::with_opengauss(3, "");
    c.start_all();
    let status = wait_normal(&c, "bootstrap on openGauss: one primary, two streaming standbys").await;
    let first = primary_id(&status).unwrap();
    assert_eq!(gs_ctl_query(&c, first), ("Primary".to_string(), "Normal".to_string()));
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, EVERY, WRITERS_LIMIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    c.kill_host(first);
    let after =
        wait_for("a new primary", LIMIT, || c.status().filter(|s| primary_id(s).is_some_and(|p| p != first))).await;
    let second = primary_id(&after).unwrap();
    assert_eq!(after["epoch"].as_u64(), Some(2), "{after}");

    // The old primary's host comes back: haraft rejoins it (gs_ctl build)
    // with no command from anyone.
    c.start(first);
    let healed = wait_normal(&c, "the old primary streaming again").await;
    assert_eq!(primary_id(&healed), Some(second));
    gs_om_shows_standby_normal(&c, first);
    let (role, state) = gs_ctl_query(&c, first);
    assert_eq!((role.as_str(), state.as_str()), ("Standby", "Normal"), "gs_ctl query on the old primary");

    let acks = w.stop().await;
    assert!(acks.len() > 50, "the writer barely wrote: {}", acks.len());
    writer::assert_no_overlap(&acks, "the writer");
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed);
    assert!(lost.len() < 50, "lost {} acknowledged writes: {lost:?}", lost.len());
    let gap = writer::switch_gap(&acks, ports[first as usize - 1]).expect("writes resumed on the new primary");
    eprintln!("openGauss failover: writes resumed after {gap:?}; lost {} of {}", lost.len(), acks.len());
    let h = history(&c);
    let rejoined = h.iter().any(|e| (e["event"] == "rewound" || e["event"] == "rebuilt") && e["node"] == name(first));
    assert!(rejoined, "no rejoin of node{first} in the history: {h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_while_the_old_primary_runs_never_makes_two_primaries() {
    let mut c = ProcCluster::with_opengauss(3, "");
    c.start_all();
    let first = primary_id(&wait_normal(&c, "bootstrap").await).unwrap();
    let chosen = (1..=3).rev().find(|i| *i != first).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    // A writer that follows the primary (it creates the table), and one
    // bound to each server, as clients that ignore roles are.
    let main = Writer::start(&ports, &password, EVERY, WRITERS_LIMIT).await;
    let direct: Vec<Writer> =
        ports.iter().map(|p| Writer::direct(*p, &password, *p as i64 * 1_000_000, EVERY, WRITERS_LIMIT)).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The seed's operator ran failover with the old primary alive: refused
    // while it holds its lease, and nothing changes.
    let (code, _, err) = c.ctl(&["failover", "--to", &name(chosen), "--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("healthy primary holding the lease"), "{err}");

    // Its agent freezes; its server keeps running and accepting writes
    // until its fence guard stops it. Paused, so that only the operator's
    // failover acts.
    assert_eq!(c.ctl(&["pause"]).0, 0);
    wait_status(&c, "paused", |s| s["paused"] == true).await;
    c.freeze_agent(first, true);
    let (code, out, err) = c.ctl(&["failover", "--to", &name(chosen), "--force", "--wait", "60"]);
    assert_eq!(code, 0, "{out}{err}\n{}", logs(&c));
    let after = wait_status(&c, "the chosen member primary", |s| primary_id(s) == Some(chosen)).await;
    assert_eq!(after["epoch"], 2, "{after}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.freeze_agent(first, false);
    // The thawed member may answer first, before it caught up with the
    // leader: resume is retried (bounded), every refusal shown.
    let resumed = wait_for("haraftctl resume to succeed", Duration::from_secs(20), || {
        let (code, out, err) = c.ctl(&["resume"]);
        if code != 0 {
            eprintln!("haraftctl resume: exit {code}: {out}{err}");
        }
        (code == 0).then_some(())
    })
    .await;
    let _: () = resumed;
    wait_normal(&c, "the old primary rejoined").await;
    gs_om_shows_standby_normal(&c, first);

    let mut acks: Vec<Ack> = main.stop().await;
    for w in direct {
        acks.extend(w.stop().await);
    }
    let by = |port: u16| acks.iter().filter(|a| a.port == port).count();
    assert!(by(ports[first as usize - 1]) > 10, "the old primary took no writes before the failover");
    assert!(by(ports[chosen as usize - 1]) > 10, "the new primary took no writes after it");
    // Never two primaries: no acknowledged write of one server falls
    // between two of the other's.
    writer::assert_no_overlap(&acks, "the direct writers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gs_ctl_failover_behind_harafts_back_acknowledges_nothing_and_rejoins() {
    let mut c = ProcCluster::with_opengauss(3, "");
    c.start_all();
    let s = wait_normal(&c, "bootstrap").await;
    let primary = primary_id(&s).unwrap();
    let rogue = (1..=3).find(|i| *i != primary).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let port = ports[rogue as usize - 1];
    let direct = Writer::direct(port, &password, 9_000_000, Duration::from_millis(10), WRITERS_LIMIT);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // haraft may stop the server before its promotion completes (it sees
    // the request): gs_ctl then reports a failed failover.
    let out = c.gs_ctl(rogue, &["failover", "-t", "10"]);
    eprintln!("gs_ctl failover on node{rogue}: {:?}\n{}", out.status.code(), String::from_utf8_lossy(&out.stdout));
    let fenced = wait_for("the rogue primary fenced and recorded", LIMIT, || {
        history(&c)
            .into_iter()
            .any(|e| e["event"] == "promoted-outside-haraft" && e["node"] == name(rogue))
            .then_some(())
    })
    .await;
    let _: () = fenced;
    let end = wait_normal(&c, "the rogue rejoined").await;
    assert_eq!(primary_id(&end), Some(primary), "the primary changed:\n{}", logs(&c));
    assert_eq!(end["epoch"].as_u64(), s["epoch"].as_u64(), "a failover happened");
    gs_om_shows_standby_normal(&c, rogue);
    let refused = direct.refused_read_only();
    let acks = direct.stop().await;
    assert!(acks.is_empty(), "the rogue primary acknowledged {} writes: {acks:?}", acks.len());
    eprintln!("gs_ctl failover behind haraft's back: {refused} writes refused read-only, none acknowledged");
}
