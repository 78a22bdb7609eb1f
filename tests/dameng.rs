//! The Dameng (DM8) adapter against `dm-emul` (DM8's tools emulated over
//! PostgreSQL 15: crates/testkit/src/bin/dm_emul, what it follows and
//! where it cannot be faithful), servers run as the `postgres` OS user on
//! loopback.
//!
//! What of the conformance scenario (tests/conformance.rs) applies to DM,
//! and what DM has instead: bootstrap to an OPEN PRIMARY; a standby
//! rebuilt from it (online backup, restore) streaming; stale epochs
//! refused; no synchronous standbys (refused), no timelines (always 1), no
//! read-only default; promotion after the primary was killed; the old
//! primary refused while its directory looks foreign, then "rewound"
//! (rebuilt, old directory kept aside) as a standby of the new one, with
//! every row written before; another engine's data directory refused; and
//! the fence guard killing a DM primary at the lease deadline.

use haraft_agent::fence::{self, FenceState};
use haraft_core::{BootTime, Epoch, TimelineId};
use haraft_db::dameng::Dameng;
use haraft_db::postgres::PgConfig;
use haraft_db::{Database, DbError, DbRole, RunAs, StopMode, Upstream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const PWD: &str = "Dm-Secret-1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn node(root: &Path, bin_dir: &Path, name: &str) -> Dameng {
    Dameng::new(PgConfig {
        bin_dir: bin_dir.to_path_buf(),
        data_dir: root.join(name).join("DAMENG"),
        state_dir: root.join(name).join("state"),
        listen_addresses: "127.0.0.1".into(),
        host: "127.0.0.1".into(),
        port: free_port(),
        socket_dir: root.join(name).join("state"),
        superuser: "SYSDBA".into(),
        superuser_password: PWD.into(),
        // DM's MAL system has no login: unused.
        replication_user: "unused".into(),
        replication_password: String::new(),
        replication_password_file: None,
        application_name: name.into(),
        run_as: Some(RunAs::user("postgres").expect("the postgres OS user exists")),
        keep_aside: 1,
        initdb_locale: "C.UTF-8".into(),
        initdb_encoding: "UTF8".into(),
    })
}

fn upstream(d: &Dameng) -> Upstream {
    let c = d.config();
    Upstream { name: c.application_name.clone(), host: c.host.clone(), port: c.port }
}

/// Kills every dmserver under the roots (by its recorded PID, checked
/// against its command line; its PostgreSQL dies with it), then stops any
/// PostgreSQL left behind (by data directory), even when the test fails.
struct Cleanup(Vec<PathBuf>);

fn files_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() && !path.is_symlink() {
            files_named(&path, name, found);
        } else if e.file_name() == name {
            found.push(path);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        use std::os::unix::process::CommandExt;
        for root in &self.0 {
            let mut pids = Vec::new();
            files_named(root, haraft_db::procs::SERVER_PID_FILE, &mut pids);
            for file in pids {
                if let Some(pid) = haraft_db::procs::recorded_server_pid(file.parent().unwrap()) {
                    // SAFETY: a dmserver this test started, checked by its command line.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let pg = RunAs::user("postgres").unwrap();
        for root in &self.0 {
            let mut pids = Vec::new();
            files_named(root, "postmaster.pid", &mut pids);
            for file in pids {
                let _ = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_ctl")
                    .args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
                    .arg(file.parent().unwrap())
                    .uid(pg.uid)
                    .gid(pg.gid)
                    .output();
            }
        }
    }
}

/// A root directory the database user can reach.
fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    root
}

/// An application's connection: dm-emul serves PostgreSQL's protocol on
/// the instance's port.
async fn connect(d: &Dameng) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let c = d.config();
    let (client, conn) = tokio_postgres::Config::new()
        .host(&c.host)
        .port(c.port)
        .user("SYSDBA")
        .password(PWD)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5))
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn sql(d: &Dameng, query: &str) {
    let client = connect(d).await.unwrap_or_else(|e| panic!("connect to {}: {e}", d.config().application_name));
    client.simple_query(query).await.unwrap_or_else(|e| panic!("{query}: {e}"));
}

async fn count(d: &Dameng) -> i64 {
    connect(d).await.unwrap().query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0)
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
async fn caught_up(primary: &Dameng, standby: &Dameng) {
    let target = primary.observe(T).await.unwrap().lsn.unwrap();
    let from = format!("127.0.0.1:{}", primary.config().port);
    wait("the standby to stream and catch up", || async {
        let o = standby.observe(T).await.unwrap();
        o.streaming_from.as_deref() == Some(from.as_str()) && o.replayed_lsn.is_some_and(|l| l >= target)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dameng_adapter_on_the_emulation() {
    let tools = tempfile::tempdir().unwrap();
    let bin = haraft_testkit::dameng::tools_dir(tools.path()).unwrap();
    let root = root();
    let _cleanup = Cleanup(vec![root.path().to_path_buf()]);
    let n1 = node(root.path(), &bin, "node1");
    let n2 = node(root.path(), &bin, "node2");
    n1.set_peers(&[upstream(&n2)]);
    n2.set_peers(&[upstream(&n1)]);

    // Nothing yet.
    let o = n1.observe(T).await.unwrap();
    assert_eq!((o.running, o.role, o.has_data), (false, None, false));

    // Bootstrap: an OPEN PRIMARY; DM has no timelines, no read-only
    // default, no synchronous standbys in haraft.
    let sysid = n1.bootstrap(Epoch(1), T).await.unwrap();
    let o = n1.observe(T).await.unwrap();
    assert!(o.running && o.has_data, "{o:?}");
    assert_eq!(o.role, Some(DbRole::Primary));
    assert_eq!(o.timeline, Some(TimelineId(1)));
    assert_eq!(o.system_identifier, Some(sysid));
    assert_eq!((o.read_only_default, o.synchronous_names, o.forks, o.slots), (None, None, None, None));
    let again = n1.bootstrap(Epoch(1), T).await.unwrap_err();
    assert!(again.to_string().contains("already holds a database"), "{again}");
    sql(&n1, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)").await;

    // Rebuild node2 from node1 (online backup, restore; left stopped),
    // start it as a standby: it streams.
    n2.expect_system_identifier(sysid);
    n2.rebuild(&upstream(&n1), Epoch(1), T).await.unwrap();
    let o2 = n2.observe(T).await.unwrap();
    assert!(!o2.running && o2.has_data, "a rebuilt directory is left stopped: {o2:?}");
    assert_eq!((o2.role, o2.system_identifier), (Some(DbRole::Standby), Some(sysid)));
    n2.start_standby(Some(&upstream(&n1)), Epoch(1), T).await.unwrap();
    caught_up(&n1, &n2).await;
    let o2 = n2.observe(T).await.unwrap();
    assert_eq!((o2.role, o2.timeline, o2.system_identifier), (Some(DbRole::Standby), Some(TimelineId(1)), Some(sysid)));
    let o1 = n1.observe(T).await.unwrap();
    assert!(o1.replicas.iter().any(|r| r.name == "node2" && r.streaming && !r.sync), "{o1:?}");
    assert_eq!(count(&n2).await, 100);
    let refused = connect(&n2).await.unwrap().simple_query("INSERT INTO t VALUES (0)").await;
    assert!(refused.is_err(), "a STANDBY refuses writes");

    // A stale epoch is refused and changes nothing.
    let stale = n2.promote(Epoch(0), T).await.unwrap_err();
    assert_eq!(stale, DbError::StaleEpoch { given: Epoch(0), highest: Epoch(1) });
    assert_eq!(n2.observe(T).await.unwrap().role, Some(DbRole::Standby));

    // Synchronous standbys are not supported for DM: said, not ignored.
    let sync = n1.set_synchronous_standbys(&["node2".into()], 1, Epoch(1), T).await.unwrap_err();
    assert!(sync.to_string().contains("not supported for DM"), "{sync}");
    n1.set_synchronous_standbys(&[], 0, Epoch(1), T).await.unwrap();

    // Failover: node1 is killed, node2 promoted (still "timeline 1").
    sql(&n1, "INSERT INTO t VALUES (101)").await;
    caught_up(&n1, &n2).await;
    n1.stop(StopMode::Immediate, Epoch(1), T).await.unwrap();
    let before = n1.observe(T).await.unwrap();
    assert_eq!((before.running, before.clean_shutdown), (false, Some(false)));
    assert_eq!(before.role, Some(DbRole::Primary), "a stopped former primary");
    wait("node1's PostgreSQL to go with its dmserver", || async { connect(&n1).await.is_err() }).await;
    n2.promote(Epoch(2), T).await.unwrap();
    let o2 = n2.observe(T).await.unwrap();
    assert_eq!((o2.running, o2.role, o2.timeline), (true, Some(DbRole::Primary), Some(TimelineId(1))), "{o2:?}");
    sql(&n2, "INSERT INTO t VALUES (200)").await;

    // A foreign data directory is refused and left untouched.
    n1.expect_system_identifier(sysid + 1);
    let foreign = n1.rewind(&upstream(&n2), Epoch(2), T).await.unwrap_err();
    assert!(matches!(foreign, DbError::ForeignDataDir { .. }), "{foreign}");
    let foreign = n1.start_standby(Some(&upstream(&n2)), Epoch(2), T).await.unwrap_err();
    assert!(matches!(foreign, DbError::ForeignDataDir { .. }), "{foreign}");
    assert_eq!(n1.observe(T).await.unwrap(), before, "the foreign directory was changed");
    n1.expect_system_identifier(sysid);

    // The former primary is "rewound": rebuilt from node2 (old directory
    // kept aside, nothing discarded, no divergence named), left stopped,
    // then a streaming standby of node2 with every row.
    let report = n1.rewind(&upstream(&n2), Epoch(2), T).await.unwrap();
    assert_eq!((report.diverged_at, report.diverged_timeline), (None, None));
    assert!(!n1.observe(T).await.unwrap().running, "a rewound directory is left stopped");
    let aside: Vec<_> = std::fs::read_dir(n1.config().state_dir.join("aside")).unwrap().collect();
    assert_eq!(aside.len(), 1, "the old directory is kept aside");
    n1.start_standby(Some(&upstream(&n2)), Epoch(2), T).await.unwrap();
    caught_up(&n2, &n1).await;
    assert_eq!(n1.observe(T).await.unwrap().role, Some(DbRole::Standby));
    assert_eq!(count(&n1).await, 102, "node1 holds node2's rows (100 + 101 + 200)");
    assert_eq!(count(&n2).await, 102);

    // Clean stops, observed as such, positions kept.
    n1.stop(StopMode::Fast, Epoch(2), T).await.unwrap();
    n2.stop(StopMode::Fast, Epoch(2), T).await.unwrap();
    for n in [&n1, &n2] {
        let o = n.observe(T).await.unwrap();
        assert_eq!((o.running, o.clean_shutdown), (false, Some(true)), "{o:?}");
        assert!(o.lsn.is_some_and(|l| l.0 > 0), "{o:?}");
    }
}

/// Another engine's data directory (PG_VERSION at its top) is refused and
/// nothing is started or written there.
#[tokio::test]
async fn the_dameng_adapter_refuses_another_engines_directory() {
    let tools = tempfile::tempdir().unwrap();
    let bin = haraft_testkit::dameng::tools_dir(tools.path()).unwrap();
    let root = root();
    let d = node(root.path(), &bin, "pg");
    std::fs::create_dir_all(&d.config().data_dir).unwrap();
    std::fs::write(d.config().data_dir.join("PG_VERSION"), "15\n").unwrap();
    let e = d.observe(T).await.unwrap_err();
    assert!(matches!(e, DbError::OtherEngine { .. }), "{e}");
    assert!(e.to_string().contains("was made by the PostgreSQL family"), "{e}");
    assert!(matches!(d.start_primary(Epoch(1), T).await, Err(DbError::OtherEngine { .. })));
    assert!(matches!(d.bootstrap(Epoch(1), T).await, Err(DbError::OtherEngine { .. })));
    let left: Vec<_> = std::fs::read_dir(&d.config().data_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, ["PG_VERSION"]);
}

/// The fence guard kills a DM primary at the lease deadline: it finds
/// dmserver through the PID file the adapter keeps in the instance
/// directory, and the PostgreSQL under dm-emul goes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_kills_a_dameng_primary_at_the_deadline() {
    let tools = tempfile::tempdir().unwrap();
    let bin = haraft_testkit::dameng::tools_dir(tools.path()).unwrap();
    let root = root();
    let _cleanup = Cleanup(vec![root.path().to_path_buf()]);
    let d = node(root.path(), &bin, "node1");
    d.bootstrap(Epoch(1), T).await.unwrap();
    sql(&d, "CREATE TABLE t (id int)").await;
    let data_dir = d.config().data_dir.clone();
    let pid = haraft_db::procs::recorded_server_pid(&data_dir).expect("dmserver's PID is recorded");

    let file = root.path().join("fence");
    let now = haraft_agent::clock::boottime();
    let owner = std::process::id();
    fence::write(&file, &FenceState::Armed { deadline: now.plus_ms(60_000), pgdata: data_dir.clone(), owner }).unwrap();
    assert!(!fence::check_once(&file).0, "not before the deadline");
    assert!(d.observe(T).await.unwrap().running);
    fence::write(&file, &FenceState::Armed { deadline: BootTime(now.0 - 1), pgdata: data_dir.clone(), owner }).unwrap();
    assert!(fence::check_once(&file).0, "fenced at the deadline");
    assert_eq!(fence::read(&file), Some(FenceState::Fenced));
    wait("dmserver to die", || async { haraft_db::procs::recorded_server_pid(&data_dir).is_none() }).await;
    // A killed dmserver is a zombie until the adapter's reaper thread
    // waits on it: `recorded_server_pid` already refuses it (a zombie has
    // no command line), `kill(pid, 0)` only after the reap.
    // SAFETY: signal 0 only checks that the process exists.
    wait("dmserver to be reaped", || async { (unsafe { libc::kill(pid, 0) }) != 0 }).await;
    wait("its PostgreSQL to refuse connections", || async { connect(&d).await.is_err() }).await;
    let o = d.observe(T).await.unwrap();
    assert_eq!((o.running, o.clean_shutdown, o.role), (false, Some(false), Some(DbRole::Primary)));
}
