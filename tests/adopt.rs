//! Moving a running cluster under haraft (issue: adopt a running cluster
//! in place): a streaming PostgreSQL 15 cluster built by hand (initdb,
//! pg_basebackup -R, standby.signal) under a writer; agents started on it
//! adopt it with no restart of any server and no base backup; a normal
//! failover works afterwards. Two servers found running as primaries are
//! refused, both named, neither touched.

use haraft_testkit::check::{LIMIT, history, logs, members, primary_id, wait_normal, wait_status};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::writer::{self, Writer};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const REPLICATION_PASSWORD: &str = "test-replication-secret";

/// A command as the database OS user (the tests run as root).
fn as_db_user(c: &ProcCluster, program: &str) -> Command {
    let mut command = Command::new(program);
    command.env_remove("PGDATA").current_dir(c.dir.path());
    if let Some((uid, gid)) = c.pg.as_ref().and_then(|p| p.run_as) {
        command.uid(uid).gid(gid);
    }
    command
}

fn run(what: &str, command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn port(c: &ProcCluster, id: u64) -> u16 {
    c.pg.as_ref().expect("postgres cluster").ports[id as usize - 1]
}

/// Node `id`'s directory (`node.data_dir`), made for the database OS user.
fn node_dir(c: &ProcCluster, id: u64) -> PathBuf {
    let dir = c.dir.path().join(&c.nodes[id as usize - 1].data);
    std::fs::create_dir_all(&dir).expect("node dir");
    if let Some((uid, gid)) = c.pg.as_ref().and_then(|p| p.run_as) {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown node dir");
        std::os::unix::fs::chown(dir.parent().expect("data/"), Some(uid), Some(gid)).expect("chown data dir");
    }
    dir
}

/// The server's own settings, as an operator would have them: its port,
/// loopback, a socket directory of its own.
fn configure(c: &ProcCluster, id: u64, pgdata: &Path) {
    let sock = node_dir(c, id).join("sock");
    run("mkdir sock", as_db_user(c, "mkdir").arg("-p").arg(&sock));
    let conf = pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
    text.push_str(&format!(
        "\n# by hand\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n",
        port(c, id),
        sock.display()
    ));
    std::fs::write(&conf, text).expect("write postgresql.conf");
}

fn start_server(c: &ProcCluster, id: u64) {
    let pgdata = c.pgdata(id);
    let log = node_dir(c, id).join("by-hand.log");
    run(
        "pg_ctl start",
        as_db_user(c, &format!("{BIN}/pg_ctl")).arg("start").arg("-D").arg(&pgdata).arg("-l").arg(log).arg("-w"),
    );
}

/// A primary made with initdb (the superuser's password, the replication
/// role haraft's config names), started.
async fn init_primary(c: &ProcCluster, id: u64) {
    let pgdata = c.pgdata(id);
    let pwfile = node_dir(c, id).join("pw");
    std::fs::write(&pwfile, format!("{}\n", c.pg.as_ref().unwrap().superuser_password)).expect("pwfile");
    if let Some((uid, gid)) = c.pg.as_ref().and_then(|p| p.run_as) {
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("chown pwfile");
    }
    run(
        "initdb",
        as_db_user(c, &format!("{BIN}/initdb"))
            .arg("-D")
            .arg(&pgdata)
            .args(["--username=postgres", "--auth-local=peer", "--auth-host=scram-sha-256", "--data-checksums"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C"),
    );
    configure(c, id, &pgdata);
    start_server(c, id);
    let client = connect(c, id).await;
    client
        .batch_execute(&format!("CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '{REPLICATION_PASSWORD}'"))
        .await
        .expect("create the replication role");
}

/// A standby of node `from`, as an operator makes one: pg_basebackup -R.
fn init_standby(c: &ProcCluster, id: u64, from: u64) {
    let pgdata = c.pgdata(id);
    node_dir(c, id);
    run(
        "pg_basebackup",
        as_db_user(c, &format!("{BIN}/pg_basebackup"))
            .arg("-D")
            .arg(&pgdata)
            .args(["-h", "127.0.0.1", "-p", &port(c, from).to_string(), "-U", "replicator", "-R", "-X", "stream"])
            .args(["-c", "fast"])
            .env("PGPASSWORD", REPLICATION_PASSWORD),
    );
    configure(c, id, &pgdata);
    start_server(c, id);
}

async fn connect(c: &ProcCluster, id: u64) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port(c, id))
        .user("postgres")
        .password(&c.pg.as_ref().unwrap().superuser_password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

async fn system_identifier(c: &ProcCluster, id: u64) -> String {
    let row = connect(c, id)
        .await
        .query_one("SELECT system_identifier::text FROM pg_control_system()", &[])
        .await
        .expect("system identifier");
    row.get(0)
}

fn postmaster(c: &ProcCluster, id: u64) -> i32 {
    haraft_db::procs::postmaster_pid(&c.pgdata(id)).expect("a running postmaster")
}

/// `haraft --check-config FILE --adopt` for node `id`.
fn check_adopt(c: &ProcCluster, id: u64) -> (i32, String) {
    let out = as_db_user(c, haraft_testkit::procs::binary("haraft").to_str().unwrap())
        .arg("--check-config")
        .arg(&c.nodes[id as usize - 1].config)
        .arg("--adopt")
        .output()
        .expect("run haraft --check-config --adopt");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn files(c: &ProcCluster, id: u64) -> Vec<Option<String>> {
    ["postgresql.conf", "postgresql.auto.conf", "haraft.conf", "pg_hba.conf"]
        .iter()
        .map(|f| std::fs::read_to_string(c.pgdata(id).join(f)).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_cluster_is_adopted_as_it_runs_and_fails_over_afterwards() {
    let mut c = ProcCluster::with_postgres(3, "");
    init_primary(&c, 1).await;
    init_standby(&c, 2, 1);
    init_standby(&c, 3, 1);
    let ports: Vec<u16> = (1..=3).map(|i| port(&c, i)).collect();
    let password = c.pg.as_ref().unwrap().superuser_password.clone();
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(300)).await;
    let pids: Vec<i32> = (1..=3).map(|i| postmaster(&c, i)).collect();
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(system_identifier(&c, i).await);
    }
    assert!(ids.iter().all(|s| *s == ids[0]), "one database: {ids:?}");

    // What adoption changes, listed before anything is touched.
    let before: Vec<_> = (1..=3).map(|i| files(&c, i)).collect();
    let (code, text) = check_adopt(&c, 1);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("running as a primary"), "{text}");
    assert!(text.contains("postgresql.conf: append `include_if_exists = 'haraft.conf'`"), "{text}");
    assert!(text.contains("create physical replication slots haraft_node2, haraft_node3"), "{text}");
    let (code, text) = check_adopt(&c, 2);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("running as a standby"), "{text}");
    assert!(text.contains("postgresql.auto.conf: remove primary_conninfo"), "{text}");
    assert_eq!(before, (1..=3).map(|i| files(&c, i)).collect::<Vec<_>>(), "--adopt changed nothing");

    let adopting = Instant::now();
    c.start_all();
    let s = wait_normal(&c, "the running cluster adopted, both standbys streaming").await;
    println!("adopted in {:.1} s", adopting.elapsed().as_secs_f64());
    assert_eq!(primary_id(&s), Some(1), "the running primary: {s}");
    // Every server kept running (no restart), no base backup (same database).
    assert_eq!(pids, (1..=3).map(|i| postmaster(&c, i)).collect::<Vec<_>>(), "a server was restarted\n{}", logs(&c));
    for i in 1..=3 {
        assert_eq!(system_identifier(&c, i).await, ids[0]);
    }
    // The standbys stream through haraft's settings now: its slot, its name.
    let primary = connect(&c, 1).await;
    let deadline = Instant::now() + LIMIT;
    loop {
        let q = "SELECT string_agg(slot_name::text || ':' || application_name, ',' ORDER BY slot_name)
                   FROM pg_replication_slots JOIN pg_stat_replication ON pid = active_pid";
        let slots: Option<String> = primary.query_one(q, &[]).await.expect("slots").get(0);
        if slots.as_deref() == Some("haraft_node2:node2,haraft_node3:node3") {
            break;
        }
        assert!(Instant::now() < deadline, "standbys not streaming through haraft's slots: {slots:?}\n{}", logs(&c));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let auto = std::fs::read_to_string(c.pgdata(2).join("postgresql.auto.conf")).expect("auto.conf");
    assert!(!auto.contains("primary_conninfo"), "haraft's setting is not overridden: {auto}");
    let h = history(&c);
    let adopted = h.iter().find(|e| e["event"] == "bootstrapped").expect("a bootstrapped entry");
    assert!(adopted["detail"].as_str().unwrap().contains("running primary was adopted"), "{adopted}");
    assert!(adopted["at_unix_ms"].as_u64().is_some_and(|t| t > 0), "its time: {adopted}");
    assert!(!h.iter().any(|e| e["event"] == "rebuilt" || e["event"] == "rewound"), "{h:?}");

    // A normal failover afterwards.
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.kill_host(1);
    let s = wait_status(&c, "a new primary after the adopted one was killed", |s| {
        primary_id(s).is_some_and(|p| p != 1) && s["cluster_state"] != "Unavailable"
    })
    .await;
    let new = primary_id(&s).expect("a primary");
    let deadline = Instant::now() + LIMIT;
    while w.last_port() != Some(port(&c, new)) {
        assert!(Instant::now() < deadline, "writes never resumed on node{new}\n{}", logs(&c));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports[1..], &password).await;
    let lost = writer::lost(&acks, &committed);
    // Asynchronous replication: a write acknowledged by the killed primary
    // and not yet streamed may be lost; none acknowledged during adoption is.
    let adopted_at = adopting + Duration::from_secs(1);
    let during: Vec<i64> =
        acks.iter().filter(|a| a.at < adopted_at).map(|a| a.id).filter(|id| lost.contains(id)).collect();
    assert!(during.is_empty(), "writes acknowledged before the failover lost: {during:?}");
    let gap = writer::longest_gap(&acks.iter().filter(|a| a.port == ports[0]).cloned().collect::<Vec<_>>());
    println!("longest gap between writes on the adopted primary: {gap:?}; lost at the failover: {}", lost.len());
    assert!(members(&s).len() == 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_running_primaries_are_refused_and_both_named() {
    let mut c = ProcCluster::with_postgres(3, "");
    // The seed's end state: node2 was made a primary of its own by hand.
    init_primary(&c, 1).await;
    init_standby(&c, 2, 1);
    run("pg_ctl promote", as_db_user(&c, &format!("{BIN}/pg_ctl")).arg("promote").arg("-D").arg(c.pgdata(2)).arg("-w"));
    init_standby(&c, 3, 1);
    let pids: Vec<i32> = (1..=3).map(|i| postmaster(&c, i)).collect();
    c.start_all();
    let s = wait_status(&c, "both primaries named in status", |s| {
        let note =
            |i: usize| members(s).get(i).and_then(|m| m["note"].as_str().map(str::to_string)).unwrap_or_default();
        note(0).contains("runs as a primary") && note(1).contains("runs as a primary")
    })
    .await;
    let note = |i: usize| members(&s)[i]["note"].as_str().unwrap_or_default().to_string();
    assert!(note(0).contains("as does node2"), "{s}");
    assert!(note(1).contains("as does node1"), "{s}");
    // Well past a lease ttl and a few planning rounds: nobody granted,
    // nothing stopped or restarted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = c.status().expect("status");
    assert_eq!(s["epoch"], 0, "no grant: {s}\n{:?}\n{}", history(&c), logs(&c));
    assert!(s["primary"].is_null(), "{s}");
    assert_eq!(pids, (1..=3).map(|i| postmaster(&c, i)).collect::<Vec<_>>(), "a server was touched\n{}", logs(&c));
    let (code, table, _) = c.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(table.contains("node1: runs as a primary"), "{table}");
    assert!(table.contains("node2: runs as a primary"), "{table}");

    // The operator decides: node2's writes do not matter. Stopped, it is
    // still on a later timeline than node1's: refused until moved aside.
    run("pg_ctl stop", as_db_user(&c, &format!("{BIN}/pg_ctl")).arg("stop").arg("-D").arg(c.pgdata(2)).arg("-w"));
    wait_status(&c, "node1 refused beside node2's later timeline", |s| {
        members(s)[0]["note"].as_str().is_some_and(|n| n.contains("node2 holds a later timeline"))
    })
    .await;
    std::fs::rename(c.pgdata(2), c.dir.path().join("node2-set-aside")).expect("move node2's data aside");
    let s = wait_normal(&c, "node1 adopted, node2 copied, node3 following").await;
    assert_eq!(primary_id(&s), Some(1));
    assert_eq!((pids[0], pids[2]), (postmaster(&c, 1), postmaster(&c, 3)), "node1 and node3 kept running");
    let h = history(&c);
    let copied = h.iter().find(|e| e["event"] == "rebuilt").expect("node2's base backup in the history");
    assert_eq!(copied["detail"], "node2 copied from node1 by base backup", "{copied}");
}
