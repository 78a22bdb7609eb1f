//! A database promoted behind haraft's back (the seed's dual primary, by
//! PostgreSQL's own commands): real agents and PostgreSQL 15, a writer
//! through `target_session_attrs=read-write` and one writer bound directly
//! to every server, as clients that ignore roles are.

use haraft_core::Lsn;
use haraft_testkit::check::{LIMIT, history, logs, normal, primary_id, wait_normal};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::writer::{self, Ack, Writer};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(10);
const WRITERS_LIMIT: Duration = Duration::from_secs(300);

fn pg_ctl(c: &ProcCluster, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_ctl");
    command.args(args).env_remove("PGDATA");
    if let Some((uid, gid)) = c.pg.as_ref().and_then(|p| p.run_as) {
        command.uid(uid).gid(gid);
    }
    command.output().expect("run pg_ctl")
}

async fn connect(c: &ProcCluster, id: u64) -> tokio_postgres::Client {
    let pg = c.pg.as_ref().expect("postgres cluster");
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(pg.ports[id as usize - 1])
        .user("postgres")
        .password(&pg.superuser_password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.expect("connect to a member's PostgreSQL");
    tokio::spawn(conn);
    client
}

/// The highest write position a server showed while out of recovery,
/// polled every 5 ms until `stop` (its own WAL as a primary, if it ever
/// was one).
fn watch_out_of_recovery(
    port: u16,
    password: String,
) -> (tokio::task::JoinHandle<Option<Lsn>>, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let mut highest: Option<Lsn> = None;
        let mut client: Option<tokio_postgres::Client> = None;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if client.is_none() {
                let mut config = tokio_postgres::Config::new();
                config.host("127.0.0.1").port(port).user("postgres").password(&password).dbname("postgres");
                if let Ok(Ok((cl, conn))) =
                    tokio::time::timeout(Duration::from_secs(1), config.connect(tokio_postgres::NoTls)).await
                {
                    tokio::spawn(conn);
                    client = Some(cl);
                }
            }
            if let Some(cl) = &client {
                let q = "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END";
                match cl.query_one(q, &[]).await {
                    Ok(row) => {
                        if let Some(lsn) = row.get::<_, Option<String>>(0).and_then(|s| Lsn::parse(&s)) {
                            highest = highest.max(Some(lsn));
                        }
                    }
                    Err(_) => client = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        highest
    });
    (task, stop)
}

fn entries<'a>(h: &'a [Value], event: &str, node: &str) -> Vec<&'a Value> {
    h.iter().filter(|e| e["event"] == event && e["node"] == node).collect()
}

/// Waits for the rogue's fencing in the history and for the cluster to be
/// whole again with it streaming; returns the history.
async fn fenced_and_rejoined(c: &ProcCluster, rogue: u64, times: usize) -> Vec<Value> {
    let name = format!("node{rogue}");
    let start = Instant::now();
    loop {
        let h = history(c);
        if entries(&h, "promoted-outside-haraft", &name).len() >= times && c.status().is_some_and(|s| normal(&s)) {
            return h;
        }
        assert!(start.elapsed() < LIMIT, "{name} was not fenced and rejoined: {:?}\n{}", c.status(), logs(c));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The rewind that followed the last fencing of `rogue`, if its server had
/// left recovery (a server fenced mid-promotion resumes as it was).
fn rewind_after_fencing(h: &[Value], rogue: u64) -> Option<&Value> {
    let name = format!("node{rogue}");
    let fenced = entries(h, "promoted-outside-haraft", &name).last()?["log_index"].as_u64()?;
    entries(h, "rewound", &name).into_iter().find(|e| e["log_index"].as_u64() > Some(fenced))
}

fn discarded_to(rewound: &Value) -> Option<Lsn> {
    rewound["discarded_to"].as_str().and_then(Lsn::parse)
}

/// WAL page size: a server's flush position may lie at the end of the page
/// holding its last record (the rest of the page is padding).
const WAL_PAGE: u64 = 8192;

/// Whether the discarded range, ending at `to`, covers WAL flushed up to
/// `flushed`.
fn covers(to: Option<Lsn>, flushed: Lsn) -> bool {
    to.is_some_and(|to| to >= flushed || (flushed.0.is_multiple_of(WAL_PAGE) && to.0 > flushed.0 - WAL_PAGE))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_promoted_by_hand_acknowledges_no_write_and_rejoins_by_itself() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let s = wait_normal(&c, "bootstrap").await;
    let primary = primary_id(&s).unwrap();
    let epoch = s["epoch"].as_u64().unwrap();
    let replicas: Vec<u64> = (1..=3).filter(|i| *i != primary).collect();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let main = Writer::start(&ports, &password, EVERY, WRITERS_LIMIT).await;
    let direct: Vec<Writer> =
        ports.iter().map(|p| Writer::direct(*p, &password, *p as i64 * 1_000_000, EVERY, WRITERS_LIMIT)).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. pg_ctl promote on a streaming replica, the primary healthy.
    let first = replicas[0];
    let (watch, stop_watch) = watch_out_of_recovery(ports[first as usize - 1], password.clone());
    let data = c.pgdata(first).display().to_string();
    let out = pg_ctl(&c, &["promote", "-D", &data, "-t", "10"]);
    eprintln!("pg_ctl promote on node{first}: {:?} {}", out.status.code(), String::from_utf8_lossy(&out.stdout));
    let h = fenced_and_rejoined(&c, first, 1).await;
    stop_watch.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen_first = watch.await.unwrap();
    check_rewind(&h, first, seen_first);

    // 2. SELECT pg_promote() on the other one.
    let second = replicas[1];
    let (watch, stop_watch) = watch_out_of_recovery(ports[second as usize - 1], password.clone());
    let client = connect(&c, second).await;
    let promoted = tokio::time::timeout(Duration::from_secs(15), client.query_one("SELECT pg_promote()", &[])).await;
    eprintln!("pg_promote() on node{second}: {promoted:?}");
    let h = fenced_and_rejoined(&c, second, 1).await;
    stop_watch.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen_second = watch.await.unwrap();
    check_rewind(&h, second, seen_second);

    let end = wait_normal(&c, "converged").await;
    assert_eq!(primary_id(&end), Some(primary), "the primary changed:\n{}", logs(&c));
    assert_eq!(end["epoch"].as_u64(), Some(epoch), "a failover happened:\n{}", logs(&c));
    let mut acks: Vec<Ack> = main.stop().await;
    let mut refused = 0;
    for w in direct {
        refused += w.refused_read_only();
        acks.extend(w.stop().await);
    }
    for rogue in [first, second] {
        let port = ports[rogue as usize - 1];
        let by_rogue: Vec<&Ack> = acks.iter().filter(|a| a.port == port).collect();
        assert!(by_rogue.is_empty(), "node{rogue} acknowledged {} writes: {:?}", by_rogue.len(), &by_rogue[..1]);
    }
    writer::assert_no_overlap(&acks, "the writers");
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(refused > 0, "the direct writers on the replicas were never refused: is the test writing at all?");
    for rogue in [first, second] {
        let text = c.log(rogue);
        assert!(text.contains("promoted outside haraft"), "node{rogue}'s log says nothing:\n{text}");
    }
    let metrics = haraft_testkit::http::get(&c.rest[first as usize - 1], "/metrics").await.unwrap();
    assert!(
        metrics.body.lines().any(|l| l == "haraft_outside_promotions_fenced_total 1"),
        "node{first}'s counter:\n{}",
        metrics.body
    );
    eprintln!(
        "promoted by hand: node{first} (seen out of recovery up to {seen_first:?}), node{second} ({seen_second:?}); \
         {} acknowledged writes, none by either; {refused} refused as read-only on replicas",
        acks.len()
    );
}

/// The rewind that followed a fencing covers everything the server was
/// seen to write while out of recovery.
fn check_rewind(h: &[Value], rogue: u64, seen: Option<Lsn>) {
    let fenced = entries(h, "promoted-outside-haraft", &format!("node{rogue}"));
    let detail = fenced.last().unwrap()["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains("was promoted outside haraft"), "{detail}");
    match (rewind_after_fencing(h, rogue), seen) {
        (Some(rewound), Some(seen)) => {
            assert!(
                covers(discarded_to(rewound), seen),
                "node{rogue} flushed WAL up to {seen} but the history names {rewound}"
            );
        }
        (None, Some(seen)) => panic!("node{rogue} was primary up to {seen} but no rewind is in the history: {h:?}"),
        (_, None) => {}
    }
}

/// A session that lifts the read-only default itself can write on the
/// rogue until it is fenced; every write it was told committed lies in the
/// range the history says was discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_lifts_the_read_only_default_is_fenced_and_its_writes_accounted() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let s = wait_normal(&c, "bootstrap").await;
    let primary = primary_id(&s).unwrap();
    let rogue = (1..=3).find(|i| *i != primary).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let main = Writer::start(&ports, &password, EVERY, WRITERS_LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let session = connect(&c, rogue).await;
    session.batch_execute("SET default_transaction_read_only = off").await.expect("allowed on a standby");
    let writes = tokio::spawn(async move {
        // (id, the flush position after its commit was acknowledged)
        let mut acked: Vec<(i64, Option<Lsn>)> = Vec::new();
        let mut first_ack: Option<Instant> = None;
        let mut last_ack: Option<Instant> = None;
        let started = Instant::now();
        let mut id = 900_000_000i64;
        while started.elapsed() < Duration::from_secs(60) {
            id += 1;
            match session.execute("INSERT INTO writes (id) VALUES ($1)", &[&id]).await {
                Ok(_) => {
                    let now = Instant::now();
                    first_ack.get_or_insert(now);
                    last_ack = Some(now);
                    let flushed = session
                        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
                        .await
                        .ok()
                        .and_then(|r| Lsn::parse(r.get::<_, &str>(0)));
                    acked.push((id, flushed));
                }
                Err(_) if session.is_closed() => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        (acked, first_ack.zip(last_ack).map(|(a, b)| b - a))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data = c.pgdata(rogue).display().to_string();
    let promoted_at = Instant::now();
    let _ = pg_ctl(&c, &["promote", "-D", &data, "-t", "10"]);
    let h = fenced_and_rejoined(&c, rogue, 1).await;
    let (acked, window) = writes.await.unwrap();
    let fenced_after = promoted_at.elapsed();

    if let Some(highest) = acked.iter().filter_map(|(_, l)| *l).max() {
        let rewound = rewind_after_fencing(&h, rogue).expect("a rewind after the rogue took writes");
        assert!(
            covers(discarded_to(rewound), highest),
            "the rogue flushed writes up to {highest} but the history names {rewound}"
        );
    }
    // What it acknowledged is gone with its timeline, and said to be. The
    // writer stops before the read-back: a write acknowledged after it
    // would read as lost (CI saw exactly that once).
    let acks = main.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    let kept: Vec<i64> = acked.iter().map(|(id, _)| *id).filter(|id| committed.contains(id)).collect();
    assert!(kept.is_empty(), "writes of the rogue's own timeline reached the cluster: {kept:?}");
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "the primary's acknowledged writes lost: {lost:?}");
    writer::assert_no_overlap(&acks, "the read-write writer");
    eprintln!(
        "rogue session: {} writes acknowledged by node{rogue} over {window:?} before it was fenced \
         (history and rejoin within {fenced_after:?})",
        acked.len()
    );
}
