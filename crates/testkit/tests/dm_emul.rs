//! dm-emul, Dameng DM8's tools emulated over PostgreSQL 15, with real
//! servers run as the `postgres` OS user on loopback: dminit and a NORMAL
//! instance opening, DM's state rules, SIGKILL of dmserver, a standby made
//! by backup/restore streaming, and the seed's switchover (003) step by
//! step through disql.

use haraft_db::RunAs;
use haraft_testkit::dameng;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PWD: &str = "Dm-Secret-1";

fn pg() -> RunAs {
    RunAs::user("postgres").expect("the postgres OS user exists")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Kills every dmserver this test started (by PID; its PostgreSQL dies
/// with it) and stops any PostgreSQL left behind (by data directory),
/// even when the test fails.
struct Cleanup(Vec<Inst>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for inst in &mut self.0 {
            if let Some(mut child) = inst.server.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let pg = pg();
        for inst in &self.0 {
            let data = inst.dir.join("dm_emul/pgdata");
            if data.join("postmaster.pid").exists() {
                let _ = Command::new("/usr/lib/postgresql/15/bin/pg_ctl")
                    .args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
                    .arg(&data)
                    .uid(pg.uid)
                    .gid(pg.gid)
                    .output();
            }
        }
    }
}

struct Inst {
    name: String,
    dir: PathBuf,
    port: u16,
    server: Option<Child>,
}

struct Env {
    _root: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
}

fn env() -> Env {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let bin = dameng::tools_dir(&path.join("tools")).unwrap();
    std::fs::create_dir_all(path.join("run")).unwrap();
    let pg = pg();
    for p in [&path, &path.join("run")] {
        std::os::unix::fs::chown(p, Some(pg.uid), Some(pg.gid)).unwrap();
    }
    Env { _root: root, root: path, bin }
}

impl Env {
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let pg = pg();
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args).env("DM_EMUL_RUN_DIR", self.root.join("run")).current_dir(&self.root).uid(pg.uid).gid(pg.gid);
        cmd
    }

    /// Runs one tool as the postgres user: exit code and stdout.
    fn tool(&self, tool: &str, args: &[&str]) -> (i32, String) {
        let out = self.command(tool, args).stdin(Stdio::null()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!(
            "$ {tool} {}\n{text}{}[exit {:?}]",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn dminit(&self, name: &str, port: u16) -> Inst {
        let (code, text) = self.tool(
            "dminit",
            &[
                &format!("PATH={}", self.root.display()),
                &format!("db_name={name}"),
                &format!("INSTANCE_NAME={name}"),
                &format!("PORT_NUM={port}"),
                &format!("SYSDBA_PWD={PWD}"),
            ],
        );
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("create dm database success."), "{text}");
        Inst { name: name.into(), dir: self.root.join(name), port, server: None }
    }

    /// Starts dmserver detached in its own process group, as the adapter
    /// will, its output in ROOT/NAME.log.
    fn dmserver(&self, inst: &mut Inst, mount: bool) {
        let log = std::fs::File::create(self.root.join(format!("{}.log", inst.name))).unwrap();
        let ini = inst.dir.join("dm.ini");
        let mut args = vec![s(&ini)];
        if mount {
            args.push("mount");
        }
        let child = self
            .command("dmserver", &args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        inst.server = Some(child);
        let pid_file = inst.dir.join("dm_emul/dmserver.pid");
        // Up once it answers (a NORMAL instance answers once OPEN; tests
        // assert the status they expect).
        let limit = Duration::from_secs(60);
        let start = Instant::now();
        loop {
            if pid_file.exists() && self.disql_ok(inst, "SELECT STATUS$ FROM V$INSTANCE").contains("LINEID") {
                return;
            }
            assert!(start.elapsed() < limit, "{} did not start: {}", inst.name, self.server_log(inst));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn server_log(&self, inst: &Inst) -> String {
        std::fs::read_to_string(self.root.join(format!("{}.log", inst.name))).unwrap_or_default()
    }

    fn disql(&self, inst: &Inst, stmt: &str) -> (i32, String) {
        self.tool("disql", &["-S", &format!("SYSDBA/{PWD}@127.0.0.1:{}", inst.port), "-e", stmt])
    }

    fn disql_ok(&self, inst: &Inst, stmt: &str) -> String {
        let out = self
            .command("disql", &["-S", &format!("SYSDBA/{PWD}@127.0.0.1:{}", inst.port), "-e", stmt])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn exec(&self, inst: &Inst, stmt: &str) -> String {
        let (code, text) = self.disql(inst, stmt);
        assert_eq!(code, 0, "{stmt} on {}: {text}", inst.name);
        text
    }

    /// The data rows of a disql result (after the dashed line), values
    /// separated by single spaces.
    fn rows(&self, inst: &Inst, stmt: &str) -> Vec<String> {
        let text = self.exec(inst, stmt);
        text.lines()
            .skip_while(|l| !l.starts_with("----------"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn wait_rows(&self, inst: &Inst, stmt: &str, want: &[&str]) {
        let start = Instant::now();
        loop {
            let got = self.rows(inst, stmt);
            if got == want {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{stmt} on {}: {got:?}, want {want:?}", inst.name);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the adapter writes for a pair: dmmal.ini, and dmarch.ini with
    /// a REALTIME archive to the other instance.
    fn configure_pair(&self, a: &Inst, b: &Inst) {
        let mut mal = String::from("MAL_CHECK_INTERVAL = 5\nMAL_CONN_FAIL_INTERVAL = 5\n");
        for (i, x) in [a, b].iter().enumerate() {
            mal.push_str(&format!(
                "[MAL_INST{}]\nMAL_INST_NAME = {}\nMAL_HOST = 127.0.0.1\nMAL_PORT = {}\nMAL_INST_HOST = 127.0.0.1\nMAL_INST_PORT = {}\n",
                i + 1,
                x.name,
                x.port + 1,
                x.port
            ));
        }
        for (me, peer) in [(a, b), (b, a)] {
            write_as_postgres(&me.dir.join("dmmal.ini"), &mal);
            write_as_postgres(
                &me.dir.join("dmarch.ini"),
                &format!(
                    "[ARCHIVE_REALTIME1]\nARCH_TYPE = REALTIME\nARCH_DEST = {}\n\n[ARCHIVE_LOCAL1]\nARCH_TYPE = LOCAL\nARCH_DEST = {}\nARCH_FILE_SIZE = 128\nARCH_SPACE_LIMIT = 1024\n",
                    peer.name,
                    me.dir.join("arch").display()
                ),
            );
        }
    }

    /// A mode change the way the watcher makes it on a watched instance.
    fn set_mode(&self, inst: &Inst, mode: &str) {
        self.exec(inst, "SP_SET_PARA_VALUE(1, 'ALTER_MODE_STATUS', 1)");
        self.exec(inst, &format!("ALTER DATABASE {mode}"));
        self.exec(inst, "SP_SET_PARA_VALUE(1, 'ALTER_MODE_STATUS', 0)");
    }
}

fn write_as_postgres(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let pg = pg();
    std::os::unix::fs::chown(path, Some(pg.uid), Some(pg.gid)).unwrap();
}

/// A plain PostgreSQL connection to the port, as an application would
/// make one: Ok(output) or Err(psql's error).
fn app_sql(port: u16, sql: &str) -> Result<String, String> {
    let pg = pg();
    let out = Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "SYSDBA",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", PWD)
        .env("PGCONNECT_TIMEOUT", "3")
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

#[test]
fn normal_instance_state_rules_and_sigkill() {
    let e = env();
    let ports = haraft_testkit::procs::free_ports(1);
    let mut cleanup = Cleanup(vec![e.dminit("DMA", ports[0])]);
    let (code, text) = e.tool("dminit", &[&format!("PATH={}", e.root.display()), "DB_NAME=DMA", "PORT_NUM=1"]);
    assert_eq!(code, 1);
    assert!(text.contains("already exists"), "{text}");
    let ini = std::fs::read_to_string(cleanup.0[0].dir.join("dm.ini")).unwrap();
    assert!(ini.contains("INSTANCE_NAME = DMA") && ini.contains(&format!("PORT_NUM = {}", ports[0])), "{ini}");

    // A NORMAL instance opens; disql's banner names its mode and status.
    e.dmserver(&mut cleanup.0[0], false);
    let a = &cleanup.0[0];
    let (code, text) = e.tool(
        "disql",
        &[&format!("SYSDBA/{PWD}@localhost:{}", a.port), "-e", "select mode$, status$ from v$instance;"],
    );
    assert_eq!(code, 0);
    assert!(text.contains(&format!("Server[localhost:{}]:mode is normal, state is open", a.port)), "{text}");
    assert_eq!(e.rows(a, "SELECT MODE$, STATUS$ FROM V$INSTANCE"), ["NORMAL OPEN"]);
    let (code, text) = e.tool("disql", &[&format!("SYSDBA/wrong@localhost:{}", a.port), "-e", "SELECT 1"]);
    assert_eq!(code, 1);
    assert!(text.contains("[-2501]:"), "{text}");
    let (code, text) = e.disql(a, "SELECT NOPE FROM V$INSTANCE");
    assert_eq!(code, 1);
    assert!(text.contains("[-2111]:Invalid column name [NOPE]"), "{text}");
    e.exec(a, "CREATE TABLE t (x int)");
    e.exec(a, "INSERT INTO t VALUES (1)");
    assert_eq!(e.rows(a, "SELECT count(*) FROM t"), ["1"]);
    let lsn: Vec<u64> =
        e.rows(a, "SELECT CUR_LSN, FILE_LSN FROM V$RLOG")[0].split(' ').map(|v| v.parse().unwrap()).collect();
    assert!(lsn[0] > 0 && lsn[0] >= lsn[1], "{lsn:?}");

    // Modes change only in MOUNT.
    let (code, text) = e.disql(a, "ALTER DATABASE PRIMARY");
    assert_eq!(code, 1);
    assert!(text.contains("[-6100]:") && text.contains("only in MOUNT"), "{text}");
    e.exec(a, "ALTER DATABASE MOUNT");
    assert_eq!(e.rows(a, "SELECT MODE$, STATUS$ FROM V$INSTANCE"), ["NORMAL MOUNT"]);
    assert!(app_sql(a.port, "SELECT 1").is_err(), "MOUNT refuses application connections");
    let (code, text) = e.disql(a, "INSERT INTO t VALUES (2)");
    assert_eq!(code, 1);
    assert!(text.contains("[-6100]:"), "{text}");
    let mounted_lsn = e.rows(a, "SELECT CUR_LSN FROM V$RLOG");
    assert_ne!(mounted_lsn, ["0"]);

    // On a watched instance (dmmal.ini present), only with ALTER_MODE_STATUS = 1.
    write_as_postgres(
        &a.dir.join("dmmal.ini"),
        &format!(
            "[MAL_INST1]\nMAL_INST_NAME = DMA\nMAL_HOST = 127.0.0.1\nMAL_PORT = 1\nMAL_INST_HOST = 127.0.0.1\nMAL_INST_PORT = {}\n",
            a.port
        ),
    );
    e.exec(a, "SP_SET_PARA_VALUE(1, 'ALTER_MODE_STATUS', 0)");
    assert!(std::fs::read_to_string(a.dir.join("dm.ini")).unwrap().contains("ALTER_MODE_STATUS = 0"));
    let (code, text) = e.disql(a, "ALTER DATABASE PRIMARY");
    assert_eq!(code, 1);
    assert!(text.contains("[-720]:") && text.contains("ALTER_MODE_STATUS"), "{text}");
    e.set_mode(a, "PRIMARY");
    assert_eq!(e.rows(a, "SELECT MODE$, STATUS$ FROM V$INSTANCE"), ["PRIMARY MOUNT"]);

    // An archive set INVALID refuses OPEN without FORCE.
    e.exec(a, "SP_SET_ARCH_STATUS('INVALID')");
    let (code, text) = e.disql(a, "ALTER DATABASE OPEN");
    assert_eq!(code, 1);
    assert!(text.contains("[-6101]:"), "{text}");
    e.exec(a, "ALTER DATABASE OPEN FORCE");
    assert_eq!(e.rows(a, "SELECT MODE$, STATUS$ FROM V$INSTANCE"), ["PRIMARY OPEN"]);
    assert_eq!(app_sql(a.port, "SELECT count(*) FROM t").unwrap(), "1");
    let (code, text) = e.disql(a, "SP_APPLY_KEEP_PKG()");
    assert_eq!(code, 1);
    assert!(text.contains("[-6102]:"), "{text}");

    // A PRIMARY always starts to MOUNT.
    e.exec(a, "SHUTDOWN IMMEDIATE");
    let status = cleanup.0[0].server.as_mut().unwrap().wait().unwrap();
    assert!(status.success());
    assert!(app_sql(ports[0], "SELECT 1").is_err());
    e.dmserver(&mut cleanup.0[0], false);
    let a = &cleanup.0[0];
    assert_eq!(e.rows(a, "SELECT MODE$, STATUS$ FROM V$INSTANCE"), ["PRIMARY MOUNT"]);
    e.exec(a, "ALTER DATABASE OPEN FORCE");

    // SIGKILL of dmserver: the PostgreSQL underneath stops accepting anything.
    let postmaster: i32 = std::fs::read_to_string(a.dir.join("dm_emul/pgdata/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(app_sql(a.port, "INSERT INTO t VALUES (3)").is_ok());
    let mut child = cleanup.0[0].server.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let start = Instant::now();
    loop {
        let gone = std::fs::read_to_string(format!("/proc/{postmaster}/stat"))
            .map_or(true, |st| st.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'));
        if gone && app_sql(ports[0], "INSERT INTO t VALUES (4)").is_err() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "postgres still runs after SIGKILL of dmserver");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, text) = e.disql(&cleanup.0[0], "SELECT 1");
    assert_eq!(code, 1);
    assert!(text.contains("[-70028]:"), "{text}");
}

#[test]
fn rebuilt_standby_streams_and_the_seed_switchover_swaps_roles() {
    let e = env();
    let ports = haraft_testkit::procs::free_ports(2);
    let mut c = Cleanup(vec![e.dminit("DMSVR02", ports[0]), e.dminit("DMSVR01", ports[1])]);
    // DMSVR02 is the first primary: NORMAL, data, then PRIMARY.
    e.dmserver(&mut c.0[0], false);
    e.exec(&c.0[0], "CREATE TABLE t (x int primary key)");
    e.exec(&c.0[0], "INSERT INTO t VALUES (1), (2)");
    e.configure_pair(&c.0[0], &c.0[1]);
    e.exec(&c.0[0], "ALTER DATABASE MOUNT");
    e.set_mode(&c.0[0], "PRIMARY");
    e.exec(&c.0[0], "ALTER DATABASE OPEN FORCE");

    // DMSVR01 rebuilt from an online backup of the primary.
    let set = e.root.join("backupset");
    e.exec(&c.0[0], &format!("BACKUP DATABASE FULL BACKUPSET '{}'", set.display()));
    let ini01 = c.0[1].dir.join("dm.ini");
    for stmt in [
        format!("RESTORE DATABASE '{}' FROM BACKUPSET '{}'", ini01.display(), set.display()),
        format!("RECOVER DATABASE '{}' FROM BACKUPSET '{}'", ini01.display(), set.display()),
        format!("RECOVER DATABASE '{}' UPDATE DB_MAGIC", ini01.display()),
    ] {
        let (code, text) = e.tool("dmrman", &[&format!("CTLSTMT={stmt}")]);
        assert_eq!(code, 0, "{text}");
    }
    e.dmserver(&mut c.0[1], true);
    e.set_mode(&c.0[1], "STANDBY");
    e.exec(&c.0[1], "ALTER DATABASE OPEN FORCE");
    let (old, new) = (&c.0[0], &c.0[1]);
    assert_eq!(e.rows(new, "SELECT MODE$, STATUS$ FROM V$INSTANCE"), ["STANDBY OPEN"]);
    e.wait_rows(
        old,
        "SELECT ARCH_TYPE, ARCH_DEST, ARCH_STATUS FROM V$ARCH_STATUS",
        &["REALTIME DMSVR01 VALID", &format!("LOCAL {} VALID", old.dir.join("arch").display())],
    );
    e.exec(old, "INSERT INTO t VALUES (3)");
    e.wait_rows(new, "SELECT count(*) FROM t", &["3"]);
    let (code, text) = e.disql(new, "INSERT INTO t VALUES (99)");
    assert_eq!(code, 1);
    assert!(text.contains("[-20000]:") && text.contains("read-only"), "{text}");
    assert_eq!(e.rows(new, "SELECT ARCH_STATUS FROM V$ARCH_STATUS"), ["INVALID", "VALID"]);

    // Rows written up to the switchover, then the seed's steps.
    e.exec(old, "INSERT INTO t VALUES (4)");
    for inst in [old, new] {
        e.exec(inst, "SP_SET_GLOBAL_DW_STATUS(0, 6)");
    }
    e.exec(old, "ALTER DATABASE MOUNT");
    e.exec(new, "SP_APPLY_KEEP_PKG()");
    e.exec(new, "ALTER DATABASE MOUNT");
    let (old_lsn, new_lsn) = (e.rows(old, "SELECT CUR_LSN FROM V$RLOG"), e.rows(new, "SELECT CUR_LSN FROM V$RLOG"));
    assert!(new_lsn[0].parse::<u64>().unwrap() > 0 && old_lsn[0].parse::<u64>().unwrap() > 0);
    e.set_mode(old, "STANDBY");
    e.set_mode(new, "PRIMARY");
    for inst in [old, new] {
        e.exec(inst, "SP_SET_ARCH_STATUS('INVALID')");
    }
    e.exec(old, "ALTER DATABASE OPEN FORCE");
    e.exec(new, "ALTER DATABASE OPEN FORCE");
    for inst in [old, new] {
        e.exec(inst, "SP_SET_GLOBAL_DW_STATUS(6, 0)");
    }

    // Roles swapped; the new primary's archive is INVALID until its
    // watcher's recovery sees the new standby streaming.
    assert_eq!(e.rows(new, "SELECT MODE$, STATUS$ FROM V$INSTANCE"), ["PRIMARY OPEN"]);
    assert_eq!(e.rows(old, "SELECT MODE$, STATUS$ FROM V$INSTANCE"), ["STANDBY OPEN"]);
    assert_eq!(e.rows(new, "SELECT ARCH_STATUS FROM V$ARCH_STATUS")[0], "INVALID");
    e.wait_rows(
        new,
        "SELECT ARCH_DEST, ARCH_STATUS FROM V$ARCH_STATUS",
        &["DMSVR02 VALID", &format!("{} VALID", new.dir.join("arch").display())],
    );

    // No write lost: every row on both; the new primary's writes reach the
    // new standby, which refuses its own.
    e.exec(new, "INSERT INTO t VALUES (5)");
    e.wait_rows(old, "SELECT string_agg(x::text, ',' ORDER BY x) FROM t", &["1,2,3,4,5"]);
    assert_eq!(e.rows(new, "SELECT string_agg(x::text, ',' ORDER BY x) FROM t"), ["1,2,3,4,5"]);
    assert_eq!(app_sql(new.port, "SELECT pg_is_in_recovery()").unwrap(), "f");
    // Promoted: the new primary writes on a new timeline.
    let wal = app_sql(new.port, "SELECT pg_walfile_name(pg_current_wal_lsn())").unwrap();
    assert!(wal.starts_with("00000002"), "{wal}");
    assert_eq!(app_sql(old.port, "SELECT pg_is_in_recovery()").unwrap(), "t");
    assert!(app_sql(old.port, "INSERT INTO t VALUES (6)").unwrap_err().contains("read-only"));
    let (code, text) = e.disql(old, "SP_APPLY_KEEP_PKG()");
    assert_eq!(code, 0, "{text}");
    for inst in [old, new] {
        e.exec(inst, "SHUTDOWN IMMEDIATE");
    }
    for inst in &mut c.0 {
        assert!(inst.server.take().unwrap().wait().unwrap().success());
    }
}
