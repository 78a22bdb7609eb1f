//! og-emul, openGauss's tools emulated over PostgreSQL 15, with real
//! servers run as the `postgres` OS user on loopback: initdb and start,
//! a full build streaming, failover leaving two primaries (as the real
//! tool does), an incremental build of the old primary, refusals, and the
//! SQL surface.

use haraft_db::RunAs;
use haraft_testkit::opengauss;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SUPERUSER: &str = "haraft";
const PASSWORD: &str = "og-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn pg() -> RunAs {
    RunAs::user("postgres").expect("the postgres OS user exists")
}

/// Stops every server this test started (by data directory), even when
/// it fails.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let pg = pg();
        for data in &self.0 {
            if data.join("postmaster.pid").exists() {
                let _ = Command::new("/usr/lib/postgresql/15/bin/pg_ctl")
                    .args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
                    .arg(data)
                    .uid(pg.uid)
                    .gid(pg.gid)
                    .output();
            }
        }
    }
}

struct Env {
    _root: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    passfile: PathBuf,
}

fn env() -> Env {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = opengauss::tools_dir(&path.join("tools")).unwrap();
    let passfile = path.join("pgpass");
    std::fs::write(&passfile, format!("*:*:*:{SUPERUSER}:{PASSWORD}\n")).unwrap();
    std::fs::write(path.join("pwfile"), format!("{PASSWORD}\n")).unwrap();
    let pg = pg();
    for p in [&passfile, &path.join("pwfile")] {
        std::os::unix::fs::chown(p, Some(pg.uid), Some(pg.gid)).unwrap();
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    std::os::unix::fs::chown(&path, Some(pg.uid), Some(pg.gid)).unwrap();
    Env { _root: root, root: path, bin, passfile }
}

struct Node {
    name: String,
    data: PathBuf,
    sock: PathBuf,
    port: u16,
}

impl Env {
    fn node(&self, name: &str) -> Node {
        let sock = self.root.join(format!("{name}-sock"));
        std::fs::create_dir_all(&sock).unwrap();
        let pg = pg();
        std::os::unix::fs::chown(&sock, Some(pg.uid), Some(pg.gid)).unwrap();
        Node { name: name.into(), data: self.root.join(name), sock, port: free_port() }
    }

    /// Runs one tool as the postgres user, with the adapter's environment.
    fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let pg = pg();
        let out = Command::new(self.bin.join(tool))
            .args(args)
            .env("PGUSER", SUPERUSER)
            .env("PGPASSFILE", &self.passfile)
            .current_dir(&self.root)
            .uid(pg.uid)
            .gid(pg.gid)
            .output()
            .unwrap();
        eprintln!(
            "$ {tool} {}\n{}{}[exit {:?}]",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        out
    }

    fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = self.tool("gs_ctl", args);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn initdb(&self, n: &Node) {
        let pwfile = format!("--pwfile={}", self.root.join("pwfile").display());
        let nodename = format!("--nodename={}", n.name);
        let out = self.tool(
            "gs_initdb",
            &["-D", s(&n.data), &nodename, "-U", SUPERUSER, &pwfile, "-E", "UTF8", "--locale=C.UTF-8"],
        );
        assert!(out.status.success(), "gs_initdb {}", n.name);
        assert!(std::fs::symlink_metadata(n.data.join("pg_xlog")).unwrap().file_type().is_symlink());
    }

    /// What the adapter writes: haraft.conf, its include line, pg_hba.conf.
    fn configure(&self, n: &Node, peer: Option<&Node>, extra: &str) {
        let conf = n.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        if !text.contains("include_if_exists = 'haraft.conf'") {
            text.push_str("include_if_exists = 'haraft.conf'\n");
            std::fs::write(&conf, text).unwrap();
        }
        let mut h = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directory = '{}'\nwal_level = hot_standby\n\
             hot_standby = on\nmax_wal_senders = 10\nmax_replication_slots = 10\nwal_keep_segments = 16\n\
             wal_receiver_status_interval = 1\nwal_sender_timeout = 2s\npgxc_node_name = '{}'\n\
             synchronous_standby_names = ''\n",
            n.port,
            n.sock.display(),
            n.name
        );
        if let Some(p) = peer {
            h.push_str(&format!(
                "replconninfo1 = 'localhost=127.0.0.1 localport={} remotehost=127.0.0.1 remoteport={}'\n",
                n.port + 1,
                p.port + 1
            ));
        }
        h.push_str(extra);
        write_as_postgres(&n.data.join("haraft.conf"), &h);
        write_as_postgres(
            &n.data.join("pg_hba.conf"),
            "local all all sha256\nhost all all 0.0.0.0/0 sha256\nhost replication all 0.0.0.0/0 sha256\n",
        );
    }

    fn start(&self, n: &Node, mode: &str) -> (i32, String) {
        let log = n.data.parent().unwrap().join(format!("{}.log", n.name));
        self.ctl(&["start", "-D", s(&n.data), "-M", mode, "-w", "-t", "30", "-l", s(&log)])
    }

    /// psql as the superuser through the node's socket: rows, or the error.
    fn sql(&self, n: &Node, query: &str) -> Result<String, String> {
        let pg = pg();
        let out = Command::new("/usr/lib/postgresql/15/bin/psql")
            .args(["-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-d", "postgres"])
            .args(["-h", s(&n.sock), "-p", &n.port.to_string(), "-c", query])
            .env("PGUSER", SUPERUSER)
            .env("PGPASSFILE", &self.passfile)
            .uid(pg.uid)
            .gid(pg.gid)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn wait_sql(&self, n: &Node, query: &str, want: &str) {
        let start = Instant::now();
        loop {
            let got = self.sql(n, query);
            if got.as_deref() == Ok(want) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{query} on {}: {got:?}, want {want}", n.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_as_postgres(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let pg = pg();
    std::os::unix::fs::chown(path, Some(pg.uid), Some(pg.gid)).unwrap();
}

/// The values of `name` in one block of `gs_ctl query` (`\tname : value`).
fn field<'a>(query: &'a str, block: &str, name: &str) -> Vec<&'a str> {
    let body = query.split(&format!(" {block}")).nth(1).unwrap_or("");
    let body = body.split(" Senders info:").next().unwrap_or(body);
    let body = body.split(" Receiver info:").next().unwrap_or(body);
    body.lines()
        .filter_map(|l| l.strip_prefix('\t'))
        .filter_map(|l| l.split_once(" : "))
        .filter(|(k, _)| k.trim_end() == name)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn refusals_and_the_sql_surface_on_a_primary() {
    let e = env();
    let n1 = e.node("node1");
    let _cleanup = Cleanup(vec![n1.data.clone()]);

    let out = e.tool("gs_initdb", &["-D", s(&n1.data), "-U", SUPERUSER]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gs_initdb: openGauss node name is mandatory"));
    assert!(!n1.data.exists());

    e.initdb(&n1);
    e.configure(&n1, None, "primary_conninfo = 'host=127.0.0.1'\n");
    let (code, text) = e.start(&n1, "primary");
    assert_eq!(code, 1);
    assert!(text.contains("unrecognized configuration parameter \"primary_conninfo\" in file"), "{text}");
    assert!(!n1.data.join("postmaster.pid").exists());

    e.configure(&n1, None, "");
    let (code, text) = e.start(&n1, "primary");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("server started ({})", n1.data.display())));
    let (code, text) = e.start(&n1, "primary");
    assert_eq!(code, 0);
    assert!(text.contains("another server might be running; Please use the restart command"));

    let (code, q) = e.ctl(&["query", "-D", s(&n1.data)]);
    assert_eq!(code, 0);
    assert!(q.contains(" HA state:           \n"), "{q}");
    assert_eq!(field(&q, "HA state:", "local_role"), ["Normal"]);
    assert_eq!(field(&q, "HA state:", "db_state"), ["Normal"]);
    assert!(q.contains(" Senders info:       \nNo information \n"), "{q}");

    let (code, text) = e.ctl(&["stop", "-D", s(&n1.data), "-m", "smart"]);
    assert_eq!(code, 1);
    assert!(text.contains(" unrecognized shutdown mode \"smart\""));
    let (code, text) = e.ctl(&["build", "-D", s(&n1.data), "-b", "full"]);
    assert_eq!(code, 1);
    assert!(text.contains("could not connect to server."), "{text}");
    e.configure(&n1, Some(&n1), "");
    let (code, text) = e.ctl(&["reload", "-D", s(&n1.data)]);
    assert_eq!(code, 0, "{text}");
    e.wait_sql(&n1, "SELECT local_role FROM pg_stat_get_stream_replications()", "Primary");
    let (code, text) = e.ctl(&["build", "-D", s(&n1.data), "-b", "incremental"]);
    assert_eq!(code, 1);
    assert!(text.contains("The local server run as Primary,build cannot be executed."), "{text}");
    assert!(n1.data.join("postmaster.pid").exists());
    let (code, text) = e.ctl(&["frobnicate", "-D", s(&n1.data)]);
    assert_eq!(code, 1);
    assert!(text.contains(" unrecognized operation mode \"frobnicate\""));
    let (code, text) = e.ctl(&["failover", "-D", s(&n1.data), "-t", "10"]);
    assert_eq!(code, 0);
    assert!(text.contains(&format!(" failover completed ({})", n1.data.display())));

    // The openGauss SQL surface and the shadows of PostgreSQL-only names.
    let lsn = e.sql(&n1, "SELECT pg_current_xlog_location()").unwrap();
    assert!(lsn.contains('/'), "{lsn}");
    assert_eq!(e.sql(&n1, "SELECT pg_typeof(pg_current_xlog_location())").unwrap(), "text");
    assert_eq!(e.sql(&n1, &format!("SELECT pg_xlog_location_diff('{lsn}', '{lsn}')")).unwrap(), "0");
    assert_eq!(e.sql(&n1, "SELECT pg_typeof(pg_xlog_location_diff('0/10', '0/0'))").unwrap(), "numeric");
    assert_eq!(e.sql(&n1, "SELECT * FROM pg_stat_get_stream_replications()").unwrap(), "Primary|1|Normal|Normal");
    for shadow in [
        "SELECT pg_promote()",
        "SELECT pg_current_wal_lsn()",
        "SELECT pg_last_wal_replay_lsn()",
        "SELECT pg_wal_lsn_diff('0/1'::pg_lsn, '0/0'::pg_lsn)",
        "SELECT * FROM pg_ls_waldir()",
        "SELECT timeline_id FROM pg_control_checkpoint()",
        "SELECT pg_wal_replay_pause()",
    ] {
        let err = e.sql(&n1, shadow).unwrap_err();
        assert!(err.contains("42883") && err.contains("does not exist"), "{shadow}: {err}");
    }
    let err = e.sql(&n1, "SELECT pg_promote()").unwrap_err();
    assert!(err.contains("function pg_promote() does not exist"), "{err}");
    let err = e.sql(&n1, "SELECT status FROM pg_stat_wal_receiver").unwrap_err();
    assert!(err.contains("42P01") && err.contains("relation \"pg_stat_wal_receiver\" does not exist"), "{err}");
    assert_eq!(
        e.sql(&n1, "SELECT slotname FROM pg_create_physical_replication_slot('haraft_x', false)").unwrap(),
        "haraft_x"
    );
    assert_eq!(
        e.sql(&n1, "SELECT restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'haraft_x'").unwrap(),
        "t"
    );
    assert_eq!(e.sql(&n1, "SELECT count(*) FROM pg_stat_replication").unwrap(), "0");

    let (code, text) = e.ctl(&["stop", "-D", s(&n1.data), "-m", "fast", "-t", "30"]);
    assert_eq!(code, 0);
    assert!(text.contains("waiting for server to shut down...") && text.contains("server stopped"), "{text}");
    let (code, text) = e.ctl(&["stop", "-D", s(&n1.data), "-m", "fast", "-t", "30"]);
    assert_eq!(code, 1);
    assert!(text.contains("does not exist") && text.contains("Is server running?"), "{text}");
    let (code, text) = e.ctl(&["status", "-D", s(&n1.data)]);
    assert_eq!(code, 3);
    assert!(text.contains("no server running"));
    let out = e.tool("pg_controldata", &[s(&n1.data)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Database cluster state:               shut down"));
}

#[test]
fn full_build_failover_and_incremental_build() {
    let e = env();
    let n1 = e.node("node1");
    let n2 = e.node("node2");
    let _cleanup = Cleanup(vec![n1.data.clone(), n2.data.clone()]);

    e.initdb(&n1);
    e.configure(&n1, Some(&n2), "");
    let (code, text) = e.start(&n1, "primary");
    assert_eq!(code, 0, "{text}");
    e.sql(&n1, "SELECT * FROM pg_create_physical_replication_slot('haraft_node2', false)").unwrap();
    e.sql(&n1, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)").unwrap();

    e.initdb(&n2);
    e.configure(&n2, Some(&n1), "");
    let (code, text) = e.ctl(&["build", "-D", s(&n2.data), "-b", "full", "-r", "30", "-t", "30"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("gs_build.pid\" success"), "{text}");
    assert!(text.contains(&format!("server started ({})", n2.data.display())), "{text}");
    assert!(std::fs::read_to_string(n2.data.join("haraft.conf")).unwrap().contains("pgxc_node_name = 'node2'"));
    assert!(std::fs::symlink_metadata(n2.data.join("pg_xlog")).unwrap().file_type().is_symlink());
    e.wait_sql(&n2, "SELECT db_state FROM pg_stat_get_stream_replications()", "Normal");
    e.wait_sql(&n2, "SELECT count(*) FROM t", "1");

    let (_, q1) = e.ctl(&["query", "-D", s(&n1.data)]);
    assert_eq!(field(&q1, "HA state:", "local_role"), ["Primary"]);
    assert_eq!(field(&q1, "Senders info:", "state"), ["Streaming"]);
    assert_eq!(field(&q1, "Senders info:", "sync_state"), ["Async"]);
    assert!(field(&q1, "Senders info:", "channel")[0].contains("-->127.0.0.1:"), "{q1}");
    assert!(q1.contains(" Receiver info:      \nNo information \n"), "{q1}");
    let (_, q2) = e.ctl(&["query", "-D", s(&n2.data)]);
    assert_eq!(field(&q2, "HA state:", "local_role"), ["Standby"]);
    assert_eq!(field(&q2, "HA state:", "db_state"), ["Normal"]);
    assert_eq!(field(&q2, "Receiver info:", "state"), ["Streaming"]);
    assert!(field(&q2, "Receiver info:", "channel")[0].ends_with(&format!("<--127.0.0.1:{}", n1.port)), "{q2}");
    // The SQL surface's shapes on a streaming standby.
    assert!(e.sql(&n2, "SELECT pg_last_xlog_receive_location()").unwrap().contains('/'));
    assert!(e.sql(&n2, "SELECT lsn FROM pg_last_xlog_replay_location()").unwrap().contains('/'));
    assert!(e.sql(&n2, "SELECT pg_current_xlog_location()").unwrap_err().contains("recovery is in progress"));
    assert_eq!(
        e.sql(&n1, "SELECT application_name, state, sync_state FROM pg_stat_replication").unwrap(),
        "node2|Streaming|Async"
    );

    // Failover on the standby; the old primary goes on as a second primary
    // until stopped (what gs_ctl really does).
    let (code, text) = e.ctl(&["failover", "-D", s(&n2.data), "-t", "30"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("failover term (1)") && text.contains(" waiting for server to failover..."), "{text}");
    assert!(text.contains(&format!(" failover completed ({})", n2.data.display())), "{text}");
    e.wait_sql(&n2, "SELECT local_role FROM pg_stat_get_stream_replications()", "Primary");
    e.wait_sql(&n1, "SELECT local_role FROM pg_stat_get_stream_replications()", "Primary");
    e.sql(&n1, "INSERT INTO t VALUES (2)").unwrap();
    e.sql(&n2, "SELECT * FROM pg_create_physical_replication_slot('haraft_node1', false)").unwrap();
    e.sql(&n2, "INSERT INTO t VALUES (3)").unwrap();
    let (code, text) = e.ctl(&["failover", "-D", s(&n1.data), "-t", "10"]);
    assert_eq!(code, 0);
    assert!(text.contains(" failover completed ("));

    let (code, _) = e.ctl(&["stop", "-D", s(&n1.data), "-m", "fast", "-t", "30"]);
    assert_eq!(code, 0);
    let (code, text) = e.ctl(&["build", "-D", s(&n1.data), "-b", "incremental", "-t", "30"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("servers diverged at WAL location"), "{text}");
    assert!(text.contains(&format!("server started ({})", n1.data.display())), "{text}");
    e.wait_sql(&n1, "SELECT db_state FROM pg_stat_get_stream_replications()", "Normal");
    e.wait_sql(&n1, "SELECT string_agg(x::text, ',' ORDER BY x) FROM t", "1,3");
    let (_, q1) = e.ctl(&["query", "-D", s(&n1.data)]);
    assert_eq!(field(&q1, "HA state:", "local_role"), ["Standby"]);
    assert_eq!(field(&q1, "Receiver info:", "state"), ["Streaming"]);
    assert!(std::fs::symlink_metadata(n1.data.join("pg_xlog")).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(n1.data.join("haraft.conf")).unwrap().contains("pgxc_node_name = 'node1'"));

    for n in [&n1, &n2] {
        let (code, _) = e.ctl(&["stop", "-D", s(&n.data), "-m", "fast", "-t", "30"]);
        assert_eq!(code, 0);
    }
}
