//! PostgreSQL under haraft: real agents (as the postgres OS user) and real
//! PostgreSQL 15 servers on loopback. Bootstrap, failover with fencing,
//! rejoin by rewind, crash restart in place, frozen agents and hosts.

use haraft_testkit::check::{LIMIT, logs, members, normal, primary_id, wait_normal, wait_status};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::wait_for;
use haraft_testkit::writer::{self, Writer};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_failover_with_fencing_and_rejoin_by_rewind() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let status = wait_normal(&c, "bootstrap: one primary, two streaming replicas").await;
    let first = primary_id(&status).unwrap();
    assert_eq!(status["epoch"].as_u64(), Some(1));
    for m in members(&status) {
        assert!(m["db_address"].is_string() && m["timeline"] == 1 && m["lsn"].is_string(), "{m}");
    }

    // Writes flow; then the primary host dies (agent, guard, PostgreSQL).
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(20), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.kill_host(first);
    let after =
        wait_for("a new primary", LIMIT, || c.status().filter(|s| primary_id(s).is_some_and(|p| p != first))).await;
    let second = primary_id(&after).unwrap();
    assert_eq!(after["epoch"].as_u64(), Some(2), "{after}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The old host comes back and rejoins as a streaming replica.
    c.start(first);
    let healed = wait_normal(&c, "the old primary streaming again").await;
    if std::env::var("HARAFT_DEBUG_PGLOG").is_ok() {
        eprintln!("{}", logs(&c));
    }
    assert_eq!(primary_id(&healed), Some(second));
    let acks = w.stop().await;
    assert!(acks.len() > 50, "the writer barely wrote: {}", acks.len());
    let committed = writer::committed_ids(&ports, &password).await;
    writer::assert_no_overlap(&acks, "the writer");
    let lost = writer::lost(&acks, &committed);
    // Asynchronous replication: losses are bounded by what was in flight at
    // the kill; reported here, bounded by the lag limit.
    assert!(lost.len() < 50, "lost {} acknowledged writes: {lost:?}", lost.len());
    let old_port = ports[first as usize - 1];
    let gap = writer::switch_gap(&acks, old_port).expect("writes resumed on the new primary");
    eprintln!("failover: writes resumed after {gap:?}; lost {} of {} acknowledged writes", lost.len(), acks.len());
    haraft_testkit::check::report("kill-9-primary-host (async)", Some(gap), lost.len(), 1);

    // The history tells the story: bootstrap, the lapse, the new epoch with
    // every member's verdict, and the old primary's rewind.
    let (code, out, err) = c.ctl(&["history", "--json"]);
    assert_eq!(code, 0, "{err}");
    let history: Vec<Value> = serde_json::from_str(&out).unwrap();
    let find = |event: &str| history.iter().find(|h| h["event"] == event).cloned();
    assert!(find("bootstrapped").is_some(), "{out}");
    let lapsed = find("lapsed").expect("a lapse");
    assert_eq!(lapsed["node"], format!("node{first}"));
    let granted = history.iter().filter(|h| h["event"] == "granted").nth(1).expect("a second grant").clone();
    assert_eq!(granted["epoch"], 2);
    assert_eq!(granted["node"], format!("node{second}"));
    assert!(granted["at_unix_ms"].is_u64() && granted["verdicts"].as_array().unwrap().len() == 3, "{granted}");
    let old =
        granted["verdicts"].as_array().unwrap().iter().find(|v| v["node"] == format!("node{first}")).unwrap().clone();
    assert_eq!(old["eligible"], false, "{old}");
    let rewound = find("rewound").expect("the old primary was rewound");
    assert_eq!(rewound["node"], format!("node{first}"));
    let (code, table, _) = c.ctl(&["history"]);
    assert_eq!(code, 0);
    assert!(table.contains(&format!("node{second} became primary at epoch 2")), "{table}");
    assert!(table.contains("not eligible: did not answer"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_postgres_on_the_primary_is_restarted_in_place_without_failover() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let before = wait_normal(&c, "bootstrap").await;
    let primary = primary_id(&before).unwrap();
    let timeline = members(&before)[primary as usize - 1]["timeline"].clone();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(c.kill_postgres(primary) > 0, "no PostgreSQL processes to kill");
    // It comes back under the same lease: same epoch, same timeline.
    wait_for("PostgreSQL down", LIMIT, || c.status().filter(|s| primary_id(s).is_none())).await;
    let after = wait_normal(&c, "the primary restarted in place").await;
    assert_eq!(primary_id(&after), Some(primary), "{after}");
    assert_eq!(after["epoch"], before["epoch"], "a failover happened: {after}");
    assert_eq!(members(&after)[primary as usize - 1]["timeline"], timeline);
    assert!(c.log(primary).contains("start-primary epoch=1 because primary-down-restart-in-place"), "{}", logs(&c));
    // Restarted in place: every acknowledged write was flushed to its WAL
    // before the acknowledgement, so none is lost, and only it acknowledged.
    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    writer::assert_no_overlap(&acks, "the writer");
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "lost acknowledged writes across a crash restart: {lost:?}");
    assert!(acks.iter().all(|a| a.port == ports[primary as usize - 1]), "another server acknowledged writes");
    haraft_testkit::check::report("kill-9-primary-postgres", None, lost.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_primary_agent_is_fenced_by_its_guard_before_a_new_epoch() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let before = wait_normal(&c, "bootstrap").await;
    let old = primary_id(&before).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(20), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.freeze_agent(old, true);
    let after =
        wait_for("a new primary", LIMIT, || c.status().filter(|s| primary_id(s).is_some_and(|p| p != old))).await;
    // By the time another member is primary, the frozen agent's guard
    // process has killed its PostgreSQL.
    assert!(haraft_db::procs::server_pids(&c.pgdata(old)).is_empty(), "old primary still running: {after}");
    let fence = std::fs::read_to_string(c.dir.path().join(format!("data/node{old}/fence"))).unwrap();
    assert_eq!(fence.trim(), "fenced");
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.freeze_agent(old, false);
    let healed = wait_normal(&c, "the thawed node rejoining").await;
    assert_ne!(primary_id(&healed), Some(old));
    let acks = w.stop().await;
    writer::assert_no_overlap(&acks, "the writer");
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed).len();
    eprintln!("frozen agent: lost {lost} of {} acknowledged writes", acks.len());
    let promotions = healed["epoch"].as_u64().unwrap_or(1) - 1;
    haraft_testkit::check::report("frozen-primary-agent (async)", writer::longest_switch_gap(&acks), lost, promotions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nofailover_members_are_never_promoted() {
    // node1 and node2 carry nofailover: only node3 may ever be primary.
    let mut c = ProcCluster::with_postgres(3, "");
    for id in [1, 2] {
        let path = c.nodes[id - 1].config.clone();
        let text =
            std::fs::read_to_string(&path).unwrap().replace("[postgresql]\n", "[postgresql]\nnofailover = true\n");
        std::fs::write(&path, text).unwrap();
    }
    c.start_all();
    let s = wait_normal(&c, "bootstrap on the only eligible member").await;
    assert_eq!(primary_id(&s), Some(3), "{s}");
    // Without node3 nobody may be promoted, and the leader says why.
    c.kill_host(3);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let s = c.status().expect("status");
    assert_eq!(primary_id(&s), None, "{s}");
    assert_eq!(s["cluster_state"], "Unavailable");
    let all = logs(&c);
    assert!(all.contains("no-eligible-candidate") && all.contains("tagged nofailover"), "{all}");
    c.start(3);
    let s = wait_normal(&c, "node3 back as primary").await;
    assert_eq!(primary_id(&s), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_cluster_is_refused_and_left_untouched() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let s = wait_normal(&c, "bootstrap").await;
    let victim = (1..=3).find(|&i| Some(i) != primary_id(&s)).unwrap();
    c.kill_host(victim);
    // Replace its data directory with a fresh database of its own.
    let pgdata = c.pgdata(victim);
    std::fs::remove_dir_all(&pgdata).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let mut initdb = std::process::Command::new("/usr/lib/postgresql/15/bin/initdb");
    initdb.arg("-D").arg(&pgdata).arg("--auth=trust").env("LC_ALL", "C");
    if let Some((uid, gid)) = pg.run_as {
        use std::os::unix::process::CommandExt;
        initdb.uid(uid).gid(gid);
    }
    assert!(initdb.output().unwrap().status.success());
    let control = std::fs::read(pgdata.join("global/pg_control")).unwrap();
    c.start(victim);
    wait_for("the refusal in the log", LIMIT, || c.log(victim).contains("foreign-data-dir").then_some(())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(std::fs::read(pgdata.join("global/pg_control")).unwrap(), control, "the foreign directory was changed");
    assert!(haraft_db::procs::server_pids(&pgdata).is_empty(), "the foreign directory was started");
    let s = c.status().expect("status");
    assert_eq!(s["cluster_state"], "Degraded", "{s}");
}

fn synchronous_member(s: &Value) -> Option<u64> {
    members(s).iter().find(|m| m["synchronous"] == true).and_then(|m| m["id"].as_u64())
}

async fn wait_normal_synchronous(c: &ProcCluster, what: &str) -> Value {
    wait_status(c, what, |s| normal(s) && synchronous_member(s).is_some()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_mode_loses_no_acknowledged_write_through_failover_and_standby_loss() {
    let mut c = ProcCluster::with_postgres(3, "[failover]\nsynchronous_mode = true\n");
    c.start_all();
    let s = wait_normal_synchronous(&c, "a synchronous standby").await;
    let first = primary_id(&s).unwrap();
    let sync = synchronous_member(&s).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The primary host dies: only its synchronous standby may take over.
    c.kill_host(first);
    let s = wait_for("a new primary", LIMIT, || c.status().filter(|s| primary_id(s).is_some_and(|p| p != first))).await;
    assert_eq!(primary_id(&s), Some(sync), "promoted a member outside the synchronous set: {s}");
    c.start(first);
    let s = wait_normal_synchronous(&c, "the old primary back and a new synchronous standby").await;
    let standby = synchronous_member(&s).unwrap();

    // The synchronous standby's host dies: the set moves to the other
    // standby and commits flow again.
    let acked_before = writer::committed_ids(&ports, &password).await.len();
    c.kill_host(standby);
    let moved = wait_for("the synchronous set to move", LIMIT, || {
        c.status().filter(|s| synchronous_member(s).is_some_and(|m| m != standby) && primary_id(s) == Some(sync))
    })
    .await;
    assert_ne!(synchronous_member(&moved), Some(standby));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_after = writer::committed_ids(&ports, &password).await.len();
    assert!(acked_after > acked_before, "commits did not resume after the standby was lost");
    c.start(standby);
    wait_normal_synchronous(&c, "all three back").await;

    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "synchronous mode lost {} acknowledged writes: {lost:?}", lost.len());
    writer::assert_no_overlap(&acks, "the writer");
    let block = writer::longest_gap(&acks).unwrap_or_default();
    eprintln!(
        "synchronous mode: {} acknowledged writes, none lost; longest pause between acknowledgements {block:?}",
        acks.len()
    );
    let gap = writer::switch_gap(&acks, ports[first as usize - 1]);
    haraft_testkit::check::report("kill-9-primary-host-then-sync-standby-host (sync)", gap, 0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_primary_host_acknowledges_nothing_after_the_new_epoch_in_synchronous_mode() {
    let mut c = ProcCluster::with_postgres(3, "[failover]\nsynchronous_mode = true\n");
    c.start_all();
    let s = wait_normal_synchronous(&c, "a synchronous standby").await;
    let old = primary_id(&s).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.freeze_host(old, true);
    wait_for("a new primary", LIMIT, || c.status().filter(|s| primary_id(s).is_some_and(|p| p != old))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.freeze_host(old, false);
    wait_normal_synchronous(&c, "the thawed host rejoining").await;
    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed);
    writer::assert_no_overlap(&acks, "frozen primary host");
    assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
    eprintln!("frozen host: {} acknowledged writes, none lost, no overlap", acks.len());
    haraft_testkit::check::report(
        "frozen-primary-host (sync)",
        writer::switch_gap(&acks, ports[old as usize - 1]),
        0,
        1,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lagging_beyond_the_limit_is_never_promoted() {
    // node2 may never be promoted; node3 will lag far behind.
    let mut c = ProcCluster::with_postgres(3, "");
    let path = c.nodes[1].config.clone();
    let text = std::fs::read_to_string(&path).unwrap().replace("[postgresql]\n", "[postgresql]\nnofailover = true\n");
    std::fs::write(&path, text).unwrap();
    c.start_all();
    let s = wait_normal(&c, "bootstrap").await;
    assert_eq!(primary_id(&s), Some(1), "{s}");
    // Freeze node3's PostgreSQL, then write more WAL on the primary than
    // the kernel can hold in flight to node3's frozen walreceiver: the
    // primary's send buffer and node3's receive buffer (up to 4 + 32 MiB
    // here) are read at once when node3 thaws, and with 8 MiB of filler
    // node3 once caught up fully and was rightly promoted (CI, 7509cdb).
    haraft_db::procs::signal_server(&c.pgdata(3), libc::SIGSTOP);
    let rows = 2 * (socket_buffer_max("tcp_rmem") + socket_buffer_max("tcp_wmem")) / 1000 + 8000;
    let pg = c.pg.as_ref().unwrap();
    let (port, password) = (pg.ports[0], pg.superuser_password.clone());
    let (client, conn) = tokio_postgres_connect(port, &password).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE filler AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, {rows}) g"
        ))
        .await
        .expect("write filler");
    drop(client);
    conn.abort();
    // Let renewals carry the primary's new position into the state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.kill_host(1);
    haraft_db::procs::signal_server(&c.pgdata(3), libc::SIGCONT);
    // No member may be promoted: node2 is tagged nofailover, node3 lags.
    wait_for("the leader's refusal", LIMIT, || logs(&c).contains("no-eligible-candidate").then_some(())).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = c.status().expect("status");
    let all = logs(&c);
    assert_eq!(primary_id(&s), None, "a member was promoted: {s}\n{all}");
    assert!(all.contains("node 3: lags"), "{all}");
    assert!(all.contains("node 2: tagged nofailover"), "{all}");
}

/// The largest buffer the kernel gives a TCP socket in one direction
/// (the third field of `net.ipv4.tcp_rmem` or `tcp_wmem`), in bytes.
fn socket_buffer_max(name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).expect("read the TCP buffer limits");
    text.split_whitespace().nth(2).and_then(|v| v.parse().ok()).expect("the TCP buffer limit's third field")
}

async fn tokio_postgres_connect(port: u16, password: &str) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the primary");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

/// libpq's variables as an operator's shell might export them, all wrong
/// for haraft: the agents must bootstrap, base-back up, fail over and
/// rewind exactly as without them (a `PGPASSWORD` used to beat the
/// replication password and no replica ever copied its data).
const WRONG_PG_ENVIRONMENT: &[(&str, &str)] = &[
    ("PGPASSWORD", "not-the-password"),
    ("PGUSER", "nobody"),
    ("PGHOST", "192.0.2.1"),
    ("PGPORT", "1"),
    ("PGSSLMODE", "require"),
    ("PGDATABASE", "nowhere"),
    ("PGPASSFILE", "/nonexistent/pgpass"),
    ("PGCONNECT_TIMEOUT", "1"),
    // Nor does the locale of the shell that started it: the database is
    // created with haraft's initdb_locale/initdb_encoding.
    ("LANG", "tr_TR.ISO-8859-9"),
    ("LC_ALL", "tr_TR.ISO-8859-9"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_libpq_environment_changes_nothing() {
    let mut c = ProcCluster::with_postgres(3, "");
    for id in 1..=3 {
        c.start_with_env(id, WRONG_PG_ENVIRONMENT);
    }
    let first =
        primary_id(&wait_normal(&c, "bootstrap and two base backups under a wrong PG* environment").await).unwrap();
    c.kill_host(first);
    wait_for("a new primary", LIMIT, || c.status().filter(|s| primary_id(s).is_some_and(|p| p != first))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.start_with_env(first, WRONG_PG_ENVIRONMENT);
    let healed = wait_normal(&c, "the old primary rewound and streaming").await;
    assert_ne!(primary_id(&healed), Some(first));
    let pg = c.pg.as_ref().unwrap();
    let port = pg.ports[primary_id(&healed).unwrap() as usize - 1];
    let (client, _task) = tokio_postgres_connect(port, &pg.superuser_password).await;
    let row = client
        .query_one("SELECT current_setting('server_encoding'), datcollate, datctype FROM pg_database WHERE datname = 'postgres'", &[])
        .await
        .unwrap();
    let got: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(got, ("UTF8".into(), "C.UTF-8".into(), "C.UTF-8".into()), "the database's encoding and locale");
    assert!(!logs(&c).contains("password authentication failed"), "{}", logs(&c));
}
