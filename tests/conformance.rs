//! The adapter conformance suite: one scenario every `Database` adapter
//! must pass against real servers on loopback, run as the `postgres` OS
//! user: bootstrap, slots, rebuild into a streaming standby, stale epochs
//! refused, synchronous standbys, promotion on a new timeline, a diverged
//! old primary (after crash recovery) refused while its directory looks
//! foreign and then rewound, rebuilds keeping the old directory aside.
//!
//! It runs against the PostgreSQL adapter on PostgreSQL 15 and against the
//! openGauss adapter on `og-emul`, the emulation of openGauss's tools over
//! PostgreSQL 15 (crates/testkit/src/bin/og_emul: what it follows and
//! where it cannot be faithful).

use haraft_core::{Epoch, TimelineId};
use haraft_db::opengauss::OpenGauss;
use haraft_db::postgres::{DEFAULT_BIN_DIR, PgConfig, Postgres};
use haraft_db::{Database, DbError, DbRole, RunAs, StopMode, Upstream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// What the suite needs of an adapter beyond the trait.
trait Adapter: Database {
    fn new_adapter(cfg: PgConfig) -> Self;
    fn cfg(&self) -> &PgConfig;
}

impl Adapter for Postgres {
    fn new_adapter(cfg: PgConfig) -> Self {
        Postgres::new(cfg)
    }
    fn cfg(&self) -> &PgConfig {
        self.config()
    }
}

impl Adapter for OpenGauss {
    fn new_adapter(cfg: PgConfig) -> Self {
        OpenGauss::new(cfg)
    }
    fn cfg(&self) -> &PgConfig {
        self.config()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn node<A: Adapter>(root: &Path, bin_dir: &Path, name: &str) -> A {
    A::new_adapter(PgConfig {
        bin_dir: bin_dir.to_path_buf(),
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

fn upstream<A: Adapter>(a: &A) -> Upstream {
    let c = a.cfg();
    Upstream { name: c.application_name.clone(), host: c.host.clone(), port: c.port }
}

/// Stops every server the suite started (by data directory, with
/// PostgreSQL's own pg_ctl: the emulated servers are PostgreSQL servers),
/// even when it fails.
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

async fn connect<A: Adapter>(a: &A) -> tokio_postgres::Client {
    let c = a.cfg();
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

async fn sql<A: Adapter>(a: &A, query: &str) {
    connect(a).await.simple_query(query).await.unwrap_or_else(|e| panic!("{query}: {e}"));
}

async fn count<A: Adapter>(a: &A) -> i64 {
    connect(a).await.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0)
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
async fn caught_up<A: Adapter>(primary: &A, standby: &A) {
    let target = primary.observe(T).await.unwrap().lsn.unwrap();
    wait("the standby to stream and catch up", || async {
        let o = standby.observe(T).await.unwrap();
        o.streaming_from.is_some() && o.replayed_lsn.is_some_and(|l| l >= target)
    })
    .await;
}

/// The scenario, for two fresh nodes of one adapter.
async fn conforms<A: Adapter>(bin_dir: &Path) {
    let root = tempfile::tempdir().unwrap();
    // The database user must be able to reach its directories.
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let n1: A = node(root.path(), bin_dir, "node1");
    let n2: A = node(root.path(), bin_dir, "node2");
    let _cleanup = Cleanup(vec![n1.cfg().data_dir.clone(), n2.cfg().data_dir.clone()]);
    let engine = n1.engine();

    // Nothing yet.
    let o = n1.observe(T).await.unwrap();
    assert_eq!((o.running, o.role, o.has_data), (false, None, false));

    // Bootstrap: a running primary on timeline 1.
    n1.set_peers(&[upstream(&n2)]);
    let sysid = n1.bootstrap(Epoch(1), T).await.unwrap();
    let o = n1.observe(T).await.unwrap();
    if engine == "PostgreSQL" {
        assert_eq!(o.slots, Some(vec!["haraft_node2".into()]), "a new primary has its peers' slots at once");
    }
    assert!(o.running && o.has_data, "{engine}: {o:?}");
    assert_eq!(o.role, Some(DbRole::Primary));
    assert_eq!(o.timeline, Some(TimelineId(1)));
    assert_eq!(o.system_identifier, Some(sysid));
    assert_eq!(o.read_only_default, Some(false), "{engine}: the lease holder's server is writable");
    let bootstrap_again = n1.bootstrap(Epoch(1), T).await.unwrap_err();
    assert!(bootstrap_again.to_string().contains("already holds a database"), "{bootstrap_again}");
    sql(&n1, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)").await;

    // Slots: the primary keeps one per standby; extra ones are dropped.
    n1.set_replication_slots(&["haraft_node2".into(), "haraft_gone".into()], Epoch(1), T).await.unwrap();
    assert_eq!(n1.observe(T).await.unwrap().slots, Some(vec!["haraft_gone".into(), "haraft_node2".into()]));
    n1.set_replication_slots(&["haraft_node2".into()], Epoch(1), T).await.unwrap();
    assert_eq!(n1.observe(T).await.unwrap().slots, Some(vec!["haraft_node2".into()]));

    // Rebuild node2 from node1 (left stopped), start it, stream.
    n2.expect_system_identifier(sysid);
    n2.rebuild(&upstream(&n1), Epoch(1), T).await.unwrap();
    assert!(!n2.observe(T).await.unwrap().running, "{engine}: a rebuilt directory is left stopped");
    n2.start_standby(Some(&upstream(&n1)), Epoch(1), T).await.unwrap();
    caught_up(&n1, &n2).await;
    let o2 = n2.observe(T).await.unwrap();
    assert_eq!(o2.role, Some(DbRole::Standby));
    assert_eq!(o2.timeline, Some(TimelineId(1)));
    assert_eq!(o2.system_identifier, Some(sysid));
    assert_eq!(o2.read_only_default, Some(true), "{engine}: a standby is read-only by default");
    assert_eq!(o2.streaming_from.as_deref(), Some(format!("127.0.0.1:{}", n1.cfg().port).as_str()));
    let o1 = n1.observe(T).await.unwrap();
    assert!(o1.replicas.iter().any(|d| d.name == "node2" && d.streaming), "{engine}: {o1:?}");
    assert_eq!(count(&n2).await, 100);

    // A stale epoch is refused and changes nothing.
    let stale = n2.promote(Epoch(0), T).await.unwrap_err();
    assert_eq!(stale, DbError::StaleEpoch { given: Epoch(0), highest: Epoch(1) });
    assert_eq!(n2.observe(T).await.unwrap().role, Some(DbRole::Standby));
    assert_eq!(n2.observe(T).await.unwrap().slots, None, "a standby reports no slots");

    // Synchronous standby: commits wait for node2, which reports sync.
    n1.set_synchronous_standbys(&["node2".into()], 1, Epoch(1), T).await.unwrap();
    wait("node2 to be the synchronous standby", || async {
        n1.observe(T).await.unwrap().replicas.iter().any(|d| d.name == "node2" && d.sync)
    })
    .await;
    assert_eq!(n1.observe(T).await.unwrap().synchronous_names, Some(vec!["node2".to_string()]));
    sql(&n1, "INSERT INTO t VALUES (101)").await;
    n1.set_synchronous_standbys(&[], 0, Epoch(1), T).await.unwrap();

    // Failover: node1 crashes, node2 is promoted on timeline 2.
    caught_up(&n1, &n2).await;
    n1.stop(StopMode::Immediate, Epoch(1), T).await.unwrap();
    n2.set_peers(&[upstream(&n1)]);
    n2.promote(Epoch(2), T).await.unwrap();
    wait("node2 to be primary", || async { n2.observe(T).await.unwrap().role == Some(DbRole::Primary) }).await;
    let o2 = n2.observe(T).await.unwrap();
    if engine == "PostgreSQL" {
        assert_eq!(o2.slots, Some(vec!["haraft_node1".into()]), "a promoted primary has its peers' slots at once");
    }
    assert_eq!(o2.timeline, Some(TimelineId(2)), "{engine}: {o2:?}");
    assert_eq!(o2.forks.as_ref().map(Vec::len), Some(1), "{engine}: timeline 1's end is in its history");
    sql(&n2, "INSERT INTO t VALUES (200)").await;
    n2.set_replication_slots(&["haraft_node1".into()], Epoch(2), T).await.unwrap();

    // node1 diverges: it comes back as a primary of the old epoch (as a
    // split brain would) and takes a write that node2 never saw, then
    // crashes (crash recovery is needed before the rejoin).
    n1.start_primary(Epoch(1), T).await.unwrap();
    sql(&n1, "INSERT INTO t VALUES (999)").await;
    n1.stop(StopMode::Immediate, Epoch(1), T).await.unwrap();
    let before = n1.observe(T).await.unwrap();
    assert_eq!(before.clean_shutdown, Some(false));
    assert_eq!(before.timeline, Some(TimelineId(1)));
    assert_eq!(before.role, Some(DbRole::Primary), "{engine}: a stopped former primary");

    // A foreign data directory is refused and left untouched.
    n1.expect_system_identifier(sysid + 1);
    let foreign = n1.rewind(&upstream(&n2), Epoch(2), T).await.unwrap_err();
    assert!(matches!(foreign, DbError::ForeignDataDir { .. }), "{foreign}");
    assert!(foreign.to_string().contains("left it untouched"));
    let foreign = n1.start_standby(Some(&upstream(&n2)), Epoch(2), T).await.unwrap_err();
    assert!(matches!(foreign, DbError::ForeignDataDir { .. }), "{foreign}");
    assert_eq!(n1.observe(T).await.unwrap(), before, "the foreign directory was changed");
    n1.expect_system_identifier(sysid);

    // Rewind onto node2's timeline (left stopped), then stream from it.
    let report = n1.rewind(&upstream(&n2), Epoch(2), T).await.unwrap();
    assert!(report.diverged_at.is_some(), "{engine}: {report:?}");
    assert_eq!(report.diverged_timeline, Some(TimelineId(1)));
    assert!(!n1.observe(T).await.unwrap().running, "{engine}: a rewound directory is left stopped");
    n1.start_standby(Some(&upstream(&n2)), Epoch(2), T).await.unwrap();
    caught_up(&n2, &n1).await;
    let o1 = n1.observe(T).await.unwrap();
    assert_eq!(o1.role, Some(DbRole::Standby));
    assert_eq!(o1.timeline, Some(TimelineId(2)));
    assert_eq!(count(&n1).await, 102, "rewound node1 must hold node2's rows (100 + 101 + 200) and not 999");

    // Rebuild keeps the old directory aside (one kept), then streams again.
    n1.rebuild(&upstream(&n2), Epoch(2), T).await.unwrap();
    n1.rebuild(&upstream(&n2), Epoch(2), T).await.unwrap();
    let aside: Vec<_> = std::fs::read_dir(n1.cfg().state_dir.join("aside")).unwrap().collect();
    assert_eq!(aside.len(), 1, "keep_aside = 1");
    n1.start_standby(Some(&upstream(&n2)), Epoch(2), T).await.unwrap();
    caught_up(&n2, &n1).await;
    assert_eq!(count(&n1).await, 102);

    n1.stop(StopMode::Fast, Epoch(2), T).await.unwrap();
    n2.stop(StopMode::Fast, Epoch(2), T).await.unwrap();
    let o = n2.observe(T).await.unwrap();
    assert_eq!((o.running, o.clean_shutdown), (false, Some(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgresql_adapter_conforms() {
    conforms::<Postgres>(Path::new(DEFAULT_BIN_DIR)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opengauss_adapter_conforms_on_the_emulation() {
    let tools = tempfile::tempdir().unwrap();
    let bin = haraft_testkit::opengauss::tools_dir(tools.path()).unwrap();
    conforms::<OpenGauss>(&bin).await;
}

/// Each adapter refuses the other engine's data directory, and changes
/// nothing in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_adapter_refuses_the_other_engines_data_directory() {
    let tools = tempfile::tempdir().unwrap();
    let og_bin = haraft_testkit::opengauss::tools_dir(tools.path()).unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pg: Postgres = node(root.path(), Path::new(DEFAULT_BIN_DIR), "pg");
    let og: OpenGauss = node(root.path(), &og_bin, "og");
    let _cleanup = Cleanup(vec![pg.cfg().data_dir.clone(), og.cfg().data_dir.clone()]);
    pg.bootstrap(Epoch(1), T).await.unwrap();
    og.bootstrap(Epoch(1), T).await.unwrap();
    pg.stop(StopMode::Fast, Epoch(1), T).await.unwrap();
    og.stop(StopMode::Fast, Epoch(1), T).await.unwrap();

    // The same directories, seen by the adapter of the other engine.
    let mut og_cfg = og.cfg().clone();
    og_cfg.data_dir = pg.cfg().data_dir.clone();
    let og_on_pg = OpenGauss::new(og_cfg);
    let e = og_on_pg.observe(T).await.unwrap_err();
    assert!(matches!(e, DbError::OtherEngine { .. }), "{e}");
    assert!(e.to_string().contains("was made by PostgreSQL"), "{e}");
    assert!(og_on_pg.start_primary(Epoch(1), T).await.is_err());
    let mut pg_cfg = pg.cfg().clone();
    pg_cfg.data_dir = og.cfg().data_dir.clone();
    let pg_on_og = Postgres::new(pg_cfg);
    let e = pg_on_og.observe(T).await.unwrap_err();
    assert!(e.to_string().contains("was made by openGauss"), "{e}");
    assert!(pg_on_og.start_standby(None, Epoch(1), T).await.is_err());
    // Nothing was started in either.
    assert!(!pg.cfg().data_dir.join("postmaster.pid").exists());
    assert!(!og.cfg().data_dir.join("postmaster.pid").exists());
}
