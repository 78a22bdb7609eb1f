//! The PostgreSQL adapter against real PostgreSQL 15 servers on loopback,
//! run as the `postgres` OS user, beyond the conformance suite every
//! adapter passes (tests/conformance.rs): read-only by default unless made
//! primary, the end of a stopped server's WAL, a failing base backup that
//! keeps the real former data and reads a fixed password file again, held
//! commits, a standby refusing connections, kill -9 and shared memory.

use haraft_core::Epoch;
use haraft_db::postgres::{DEFAULT_BIN_DIR, PgConfig, Postgres};
use haraft_db::{Database, DbRole, RunAs, StopMode, Upstream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn node(root: &Path, name: &str) -> Postgres {
    Postgres::new(PgConfig {
        bin_dir: PathBuf::from(DEFAULT_BIN_DIR),
        data_dir: root.join(name).join("pgdata"),
        state_dir: root.join(name).join("state"),
        listen_addresses: "127.0.0.1".into(),
        host: "127.0.0.1".into(),
        port: free_port(),
        socket_dir: root.join(name).join("state"),
        superuser: "postgres".into(),
        superuser_password: "super-secret".into(),
        replication_user: "replicator".into(),
        replication_password: "repl-secret".into(),
        replication_password_file: None,
        application_name: name.into(),
        run_as: Some(RunAs::user("postgres").expect("the postgres OS user exists")),
        keep_aside: 1,
        initdb_locale: "C.UTF-8".into(),
        initdb_encoding: "UTF8".into(),
    })
}

fn upstream(pg: &Postgres) -> Upstream {
    let c = pg.config();
    Upstream { name: c.application_name.clone(), host: c.host.clone(), port: c.port }
}

/// Stops every server this test started, even when it fails.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        use std::os::unix::process::CommandExt;
        let pg = RunAs::user("postgres").unwrap();
        for data in &self.0 {
            if data.join("postmaster.pid").exists() {
                let _ = std::process::Command::new(Path::new(DEFAULT_BIN_DIR).join("pg_ctl"))
                    .args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
                    .arg(data)
                    .uid(pg.uid)
                    .gid(pg.gid)
                    .output();
            }
        }
    }
}

/// Two nodes (no database yet) in a temporary directory, and the cleanup
/// that stops whatever servers they start.
fn two_nodes() -> (tempfile::TempDir, Postgres, Postgres, Cleanup) {
    let root = tempfile::tempdir().unwrap();
    // The database user must be able to reach its directories.
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let n1 = node(root.path(), "node1");
    let n2 = node(root.path(), "node2");
    let cleanup = Cleanup(vec![n1.config().data_dir.clone(), n2.config().data_dir.clone()]);
    (root, n1, n2, cleanup)
}

/// `two_nodes` with node1 bootstrapped as primary at epoch 1 and node2
/// copied from it and started as its standby; the system identifier.
async fn primary_and_standby() -> (tempfile::TempDir, Postgres, Postgres, Cleanup, u64) {
    let (root, n1, n2, cleanup) = two_nodes();
    let sysid = n1.bootstrap(Epoch(1), T).await.unwrap();
    n1.set_replication_slots(&["haraft_node2".into()], Epoch(1), T).await.unwrap();
    n2.expect_system_identifier(sysid);
    n2.rebuild(&upstream(&n1), Epoch(1), T).await.unwrap();
    n2.start_standby(Some(&upstream(&n1)), Epoch(1), T).await.unwrap();
    (root, n1, n2, cleanup, sysid)
}

async fn connect(pg: &Postgres) -> tokio_postgres::Client {
    let c = pg.config();
    let (client, conn) = tokio_postgres::Config::new()
        .host(&c.host)
        .port(c.port)
        .user(&c.superuser)
        .password(&c.superuser_password)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", c.application_name));
    tokio::spawn(conn);
    client
}

async fn sql(pg: &Postgres, query: &str) {
    connect(pg).await.simple_query(query).await.unwrap_or_else(|e| panic!("{query}: {e}"));
}

async fn wait<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `standby` streams from `primary` and replayed all it wrote.
async fn caught_up(primary: &Postgres, standby: &Postgres) {
    let target = primary.observe(T).await.unwrap().lsn.unwrap();
    wait("the standby to stream and catch up", || async {
        let o = standby.observe(T).await.unwrap();
        o.streaming_from.is_some() && o.replayed_lsn.is_some_and(|l| l >= target)
    })
    .await;
}

/// The System V segment named on line 7 of `postmaster.pid`, if it exists.
fn shmem_segment(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let id: i32 = text.lines().nth(6)?.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: IPC_STAT into a zeroed plain-data struct.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    (unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } == 0).then_some(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_after_kill_9_releases_the_dead_servers_shared_memory() {
    let (_root, n1, n2, _cleanup, _sysid) = primary_and_standby().await;

    let data1 = &n1.config().data_dir;
    let data2 = &n2.config().data_dir;
    assert!(shmem_segment(data1).is_some(), "a running server has its segment");
    assert!(!haraft_db::procs::release_stale_shmem(data1, Duration::ZERO), "a running server's segment was removed");
    assert!(shmem_segment(data1).is_some());

    let segment = shmem_segment(data2).expect("the standby's segment");
    let postmaster = haraft_db::procs::postmaster_pid(data2).expect("the standby's postmaster");
    assert!(haraft_db::procs::signal_server(data2, libc::SIGKILL) > 0);
    // Until init reaps it, the killed postmaster's PID still exists and
    // PostgreSQL's socket lock file would refuse the next start.
    // SAFETY: signal 0 only checks that the PID exists.
    wait("the killed standby's postmaster to be gone", || async { (unsafe { libc::kill(postmaster, 0) }) != 0 }).await;
    assert_eq!(shmem_segment(data2), Some(segment), "kill -9 leaves the segment behind");

    // The rebuild sets the directory aside and must not leak the segment.
    n2.rebuild(&upstream(&n1), Epoch(1), T).await.unwrap();
    // SAFETY: IPC_STAT into a zeroed plain-data struct.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    assert_ne!(unsafe { libc::shmctl(segment, libc::IPC_STAT, &mut ds) }, 0, "segment {segment} leaked by the rebuild");
    n2.start_standby(Some(&upstream(&n1)), Epoch(1), T).await.unwrap();
    caught_up(&n1, &n2).await;
}

fn run_pg_ctl(args: &[&str]) {
    use std::os::unix::process::CommandExt;
    let pg = RunAs::user("postgres").unwrap();
    let out = std::process::Command::new(Path::new(DEFAULT_BIN_DIR).join("pg_ctl"))
        .args(args)
        .uid(pg.uid)
        .gid(pg.gid)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_haraft_the_wal_end_is_found_and_failed_rebuilds_keep_the_real_data() {
    let (root, n1, _unused, _cleanup) = two_nodes();
    // node2 reads its replication password from a file, wrong at first.
    let password_file = root.path().join("node2-replication-password");
    std::fs::write(&password_file, "wrong\n").unwrap();
    let mut config = node(root.path(), "node2b").config().clone();
    config.replication_password_file = Some(password_file.clone());
    let n2 = Postgres::new(config);
    let _cleanup2 = Cleanup(vec![n2.config().data_dir.clone()]);

    let sysid = n1.bootstrap(Epoch(1), T).await.unwrap();
    sql(&n1, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)").await;
    assert_eq!(n1.observe(T).await.unwrap().read_only_default, Some(false), "the primary takes writes");
    n1.set_replication_slots(&["haraft_node2b".into()], Epoch(1), T).await.unwrap();
    n2.expect_system_identifier(sysid);

    // A failing base backup (wrong password) on a member without data, twice:
    // nothing is kept aside for an empty directory or its own unfinished copy.
    for _ in 0..2 {
        let err = n2.rebuild(&upstream(&n1), Epoch(1), T).await.unwrap_err();
        assert!(err.to_string().contains("password authentication failed"), "{err}");
    }
    let aside = n2.config().state_dir.join("aside");
    let kept = || std::fs::read_dir(&aside).map(|d| d.count()).unwrap_or(0);
    assert!(kept() <= 1, "an unfinished copy was kept aside");
    let kept_before = kept();
    // The fixed password file is read again: no restart needed.
    std::fs::write(&password_file, "repl-secret\n").unwrap();
    n2.rebuild(&upstream(&n1), Epoch(1), T).await.unwrap();
    assert_eq!(kept(), kept_before, "the unfinished copy was kept aside");
    assert!(!n2.config().state_dir.join("rebuild-in-progress").exists());
    n2.start_standby(Some(&upstream(&n1)), Epoch(1), T).await.unwrap();
    caught_up(&n1, &n2).await;
    let o = n2.observe(T).await.unwrap();
    assert_eq!((o.read_only_default, o.promotion_signalled), (Some(true), false));

    // With real data there, failures keep that data aside once and only it.
    std::fs::write(&password_file, "wrong\n").unwrap();
    n2.stop(StopMode::Fast, Epoch(1), T).await.unwrap();
    for _ in 0..3 {
        n2.rebuild(&upstream(&n1), Epoch(1), T).await.unwrap_err();
    }
    let kept_dirs: Vec<PathBuf> = std::fs::read_dir(&aside).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept_dirs.len(), 1, "{kept_dirs:?}");
    assert!(kept_dirs[0].join("PG_VERSION").is_file(), "the real data was pushed out by failed copies");
    std::fs::write(&password_file, "repl-secret\n").unwrap();
    n2.rebuild(&upstream(&n1), Epoch(1), T).await.unwrap();
    assert!(std::fs::read_dir(&aside).unwrap().next().unwrap().unwrap().path().join("PG_VERSION").is_file());
    n2.start_standby(Some(&upstream(&n1)), Epoch(1), T).await.unwrap();
    caught_up(&n1, &n2).await;

    // Promoted by hand: out of recovery but read-only by default.
    let data2 = n2.config().data_dir.display().to_string();
    run_pg_ctl(&["promote", "-w", "-D", &data2]);
    let o = n2.observe(T).await.unwrap();
    assert_eq!((o.role, o.read_only_default), (Some(DbRole::Primary), Some(true)));
    let refused = connect(&n2).await.simple_query("INSERT INTO t VALUES (1000)").await.unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert!(message.contains("read-only transaction"), "{refused:?}");
    n2.stop(StopMode::Immediate, Epoch(1), T).await.unwrap();

    // The end of a stopped server's WAL lies past its last commit.
    let client = connect(&n1).await;
    client.batch_execute("BEGIN; INSERT INTO t VALUES (11)").await.unwrap();
    let before_commit: String = client.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).await.unwrap().get(0);
    client.batch_execute("COMMIT").await.unwrap();
    n1.stop(StopMode::Immediate, Epoch(1), T).await.unwrap();
    let end = n1.end_of_wal(T).await.unwrap().expect("a readable WAL");
    assert!(
        end > haraft_core::Lsn::parse(&before_commit).unwrap(),
        "{end} is not past the commit after {before_commit}"
    );

    // Promoted by haraft: read-write by default from the start.
    n2.rewind(&upstream(&n1), Epoch(2), T).await.unwrap_err(); // the source is down: refused, nothing changed
    assert!(!n2.observe(T).await.unwrap().rewind_unfinished, "refused before pg_rewind ran: no marker");
    // An agent that died while pg_rewind ran left its marker: the
    // directory is reported part-way (and rebuilt) until a rewind completes.
    std::fs::write(n2.config().state_dir.join("rewind-in-progress"), "").unwrap();
    assert!(n2.observe(T).await.unwrap().rewind_unfinished);
    n1.start_primary(Epoch(1), T).await.unwrap();
    n2.rewind(&upstream(&n1), Epoch(2), T).await.unwrap();
    assert!(!n2.observe(T).await.unwrap().rewind_unfinished, "a completed rewind removes the marker");
    n2.start_standby(Some(&upstream(&n1)), Epoch(2), T).await.unwrap();
    caught_up(&n1, &n2).await;
    n1.stop(StopMode::Fast, Epoch(2), T).await.unwrap();
    assert_eq!(
        n1.observe(T).await.unwrap().read_only_default,
        Some(true),
        "a stopped server keeps no read-write settings"
    );
    n2.promote(Epoch(2), T).await.unwrap();
    assert_eq!(n2.observe(T).await.unwrap().read_only_default, Some(false));
    sql(&n2, "INSERT INTO t VALUES (2000)").await;
    n2.set_read_only(true, Epoch(2), T).await.unwrap();
    wait("the reload to make new sessions read-only", || async {
        n2.observe(T).await.unwrap().read_only_default == Some(true)
    })
    .await;
    n2.stop(StopMode::Fast, Epoch(2), T).await.unwrap();
}

/// The commit guard on a real primary with a synchronous standby: held,
/// a commit waits (neither acknowledged nor refused) and the observation
/// says so while naming the members as before; released, the waiting
/// commit is acknowledged. A stale epoch cannot release it; holding needs
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_commits_wait_until_released_and_only_the_holder_releases() {
    let (_root, n1, n2, _cleanup) = two_nodes();
    let sysid = n1.bootstrap(Epoch(2), T).await.unwrap();
    sql(&n1, "CREATE TABLE t (id int PRIMARY KEY)").await;
    n1.set_replication_slots(&["haraft_node2".into()], Epoch(2), T).await.unwrap();
    n2.expect_system_identifier(sysid);
    n2.rebuild(&upstream(&n1), Epoch(2), T).await.unwrap();
    n2.start_standby(Some(&upstream(&n1)), Epoch(2), T).await.unwrap();
    n1.set_synchronous_standbys(&["node2".into()], 1, Epoch(2), T).await.unwrap();
    caught_up(&n1, &n2).await;
    sql(&n1, "INSERT INTO t VALUES (1)").await;

    n1.hold_commits(true, Epoch(1), T).await.expect("holding needs no current epoch");
    let o = n1.observe(T).await.unwrap();
    assert!(o.commits_held, "{o:?}");
    assert_eq!(o.synchronous_names, Some(vec!["node2".to_string()]), "the members are named as before");
    let client = connect(&n1).await;
    let insert = tokio::spawn(async move { client.execute("INSERT INTO t VALUES (2)", &[]).await.map(|_| client) });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!insert.is_finished(), "a commit was answered while commits were held");
    // A standby's guard is never asked for: nothing changes there.
    n2.hold_commits(true, Epoch(2), T).await.unwrap();
    assert!(!n2.observe(T).await.unwrap().commits_held);

    let stale = n1.hold_commits(false, Epoch(1), T).await.unwrap_err();
    assert!(stale.to_string().contains("epoch"), "{stale}");
    n1.hold_commits(false, Epoch(2), T).await.unwrap();
    let client = tokio::time::timeout(Duration::from_secs(10), insert)
        .await
        .expect("the held commit is acknowledged once released")
        .unwrap()
        .expect("the held commit succeeded");
    let o = n1.observe(T).await.unwrap();
    assert!(!o.commits_held && o.synchronous_names == Some(vec!["node2".to_string()]), "{o:?}");
    let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
}

/// A running standby that refuses connections (here: hot standby off, as
/// for one that cannot reach a consistent state) is still observed: a
/// running standby that streams from nobody, positions from its control
/// file; the agent then treats it as not streaming (stop and rewind after
/// `stream_timeout_ms`) instead of waiting for an observation forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_refuses_connections_is_observed_as_not_streaming() {
    let (_root, n1, n2, _cleanup, sysid) = primary_and_standby().await;
    caught_up(&n1, &n2).await;
    n2.stop(StopMode::Fast, Epoch(1), T).await.unwrap();
    // A file included after haraft's (haraft takes over settings set in
    // postgresql.conf and postgresql.auto.conf, and does not follow
    // includes).
    let data = n2.config().data_dir.clone();
    std::fs::write(data.join("late.conf"), "hot_standby = off\n").unwrap();
    let conf = data.join("postgresql.conf");
    let text = std::fs::read_to_string(&conf).unwrap() + "include 'late.conf'\n";
    std::fs::write(&conf, text).unwrap();
    // pg_ctl start -w returns once the postmaster says "standby"; no
    // connection is accepted after that.
    n2.start_standby(Some(&upstream(&n1)), Epoch(1), T).await.unwrap();
    let o = n2.observe(T).await.expect("observed through its control file");
    assert!(o.running, "{o:?}");
    assert_eq!((o.role, o.streaming_from.as_deref()), (Some(DbRole::Standby), None), "{o:?}");
    assert_eq!(o.system_identifier, Some(sysid));
    assert!(o.lsn.is_some() && o.timeline.is_some(), "{o:?}");
    n2.stop(StopMode::Fast, Epoch(1), T).await.unwrap();
}
