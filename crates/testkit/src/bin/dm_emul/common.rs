//! What every tool shares: the PostgreSQL binaries, DM's error lines, the
//! instance's files, integer LSNs, psql, and the control socket's path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Where PostgreSQL 15's binaries are (Debian's layout); `DM_EMUL_PG_BIN`
/// overrides it.
pub fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::env::var("DM_EMUL_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    Path::new(&dir).join(tool)
}

/// The emulation's own directory inside an instance directory.
pub fn emul_dir(inst: &Path) -> PathBuf {
    inst.join("dm_emul")
}

pub fn pgdata(inst: &Path) -> PathBuf {
    emul_dir(inst).join("pgdata")
}

pub fn pid_path(inst: &Path) -> PathBuf {
    emul_dir(inst).join("dmserver.pid")
}

/// The control socket a running dmserver listens on, found by the client
/// port (disql only knows `host:port`): `$DM_EMUL_RUN_DIR` (default /tmp)
/// `/dm_emul.PORT.sock`, like PostgreSQL's `/tmp/.s.PGSQL.PORT`.
pub fn socket_path(port: u16) -> PathBuf {
    let dir = std::env::var("DM_EMUL_RUN_DIR").unwrap_or_else(|_| "/tmp".into());
    Path::new(&dir).join(format!("dm_emul.{port}.sock"))
}

/// The dmserver PID in `INST/dm_emul/dmserver.pid` if that process lives.
pub fn running_server(inst: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_path(inst)).ok()?.trim().parse().ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    let alive =
        unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}

/// A DM error: `[-CODE]:message`. Every code the emulation prints is in
/// this table, with where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmErr {
    /// -70028, seen in public DM8 posts for a refused TCP connection.
    Connect,
    /// -2501, seen in public DM8 posts for a wrong user or password.
    Login,
    /// -2007, DM's syntax error (语法分析出错), seen in public posts.
    Syntax,
    /// -2111, DM's invalid column name (无效的列名), seen in public posts.
    Column,
    /// -720: the text was seen in public posts for a mode change refused
    /// by ALTER_MODE_STATUS; the code is from memory, not verified.
    AlterModeStatus,
    /// Chosen by the emulation (no public source found): a statement that
    /// needs another database status (mode change outside MOUNT, OPEN of
    /// an open instance, object access outside OPEN).
    Status,
    /// Chosen by the emulation: OPEN without FORCE while the archive is
    /// INVALID.
    ArchInvalid,
    /// Chosen by the emulation: SP_APPLY_KEEP_PKG on a non-STANDBY.
    NotStandby,
    /// Chosen by the emulation: the PostgreSQL underneath failed; its
    /// message follows (-20000 is DM's user-error range).
    Pg,
}

impl DmErr {
    pub fn code(self) -> i32 {
        match self {
            DmErr::Connect => -70028,
            DmErr::Login => -2501,
            DmErr::Syntax => -2007,
            DmErr::Column => -2111,
            DmErr::AlterModeStatus => -720,
            DmErr::Status => -6100,
            DmErr::ArchInvalid => -6101,
            DmErr::NotStandby => -6102,
            DmErr::Pg => -20000,
        }
    }

    pub fn line(self, msg: &str) -> String {
        format!("[{}]:{msg}", self.code())
    }
}

/// A PostgreSQL LSN as DM's integer LSN: `(hi << 32) | lo`.
pub fn lsn_int(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Runs a command to completion, stdin closed.
pub fn run(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null()).output()
}

/// Result rows of one statement against the local PostgreSQL as SYSDBA
/// over TCP (first row: column names when `header`), or psql's error.
pub fn psql(port: u16, pwd: &str, sql: &str, header: bool) -> Result<Vec<Vec<String>>, String> {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-A", "-q", "-v", "ON_ERROR_STOP=1", "-P", "footer=off", "-F", "\x1f", "-d", "postgres"]);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "SYSDBA"]);
    if !header {
        cmd.arg("-t");
    }
    cmd.args(["-c", sql]);
    cmd.env("PGPASSWORD", pwd).env_remove("PGPASSFILE");
    // A connection that cannot be made in 5 s is reported, not waited on.
    cmd.env("PGCONNECT_TIMEOUT", "5");
    let out = run(&mut cmd).map_err(|e| format!("running psql: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim().strip_prefix("psql: error: ").unwrap_or(err.trim()).to_owned();
        return Err(err.replace('\n', " "));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\x1f').map(str::to_owned).collect())
        .collect())
}

/// One value from `psql`, or None on an error or no row.
pub fn psql_value(port: u16, pwd: &str, sql: &str) -> Option<String> {
    psql(port, pwd, sql, false).ok()?.into_iter().next()?.into_iter().next()
}

/// Calls `check` every 100 ms until it returns true, for at most `limit`.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `YYYY-MM-DD HH:MM:SS` in local time, as DM's tools print it.
pub fn now_text() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let secs = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Copies a directory tree (files, directories, symlinks), keeping modes.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
