//! What every tool shares: openGauss's log line, the PostgreSQL binaries,
//! the postmaster's PID file, and psql.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where PostgreSQL 15's binaries are (Debian's layout); `OG_EMUL_PG_BIN`
/// overrides it.
pub fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::env::var("OG_EMUL_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    Path::new(&dir).join(tool)
}

/// openGauss's `pg_log(PG_WARNING/PG_PROGRESS, ...)` line:
/// `[YYYY-MM-DD HH:MM:SS.mmm][pid][nodename][progname]: message`, on stdout
/// as the reference says gs_ctl's "stderr" helper writes it.
pub fn log(node: &str, progname: &str, msg: &str) {
    println!("[{}][{}][{node}][{progname}]: {msg}", log_time(), std::process::id());
}

/// openGauss's `pg_log(PG_PRINT, ...)`: the text as is, no prefix.
pub fn print(msg: &str) {
    use std::io::Write;
    print!("{msg}");
    let _ = std::io::stdout().flush();
}

fn log_time() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis()
    )
}

/// The postmaster's PID from `DATADIR/postmaster.pid`, if the file exists
/// and names a process that is alive.
pub fn running_pid(datadir: &Path) -> Option<i32> {
    let pid = pid_in_file(datadir)?;
    // SAFETY: signal 0 only checks that the process exists.
    let alive =
        unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}

/// The PID `DATADIR/postmaster.pid` names (negative for a single-user
/// backend, as PostgreSQL writes it), alive or not.
pub fn pid_in_file(datadir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(datadir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse::<i32>().ok().map(i32::abs)
}

pub fn pid_file(datadir: &Path) -> String {
    datadir.join("postmaster.pid").display().to_string()
}

/// Runs a command to completion, stdin closed.
pub fn run(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null()).output()
}

/// stdout and stderr of a finished command, as lines.
pub fn lines_of(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    v.extend(String::from_utf8_lossy(&out.stderr).lines().map(str::to_owned));
    v
}

/// Where psql reaches a server: a socket directory or host, and a port.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: Option<String>,
    pub port: Option<u16>,
}

/// Result rows of one query (first row: column names when `header`), or
/// the error psql printed (its `psql: error: ` prefix removed).
pub fn psql(at: &Endpoint, dbname: &str, sql: &str, header: bool) -> Result<Vec<Vec<String>>, String> {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-A", "-q", "-v", "ON_ERROR_STOP=1", "-P", "footer=off", "-F", "\x1f", "-d", dbname]);
    if !header {
        cmd.arg("-t");
    }
    if let Some(h) = &at.host {
        cmd.args(["-h", h]);
    }
    if let Some(p) = at.port {
        cmd.args(["-p", &p.to_string()]);
    }
    cmd.args(["-c", sql]);
    // A connection that cannot be made in 5 s is reported, not waited on
    // (the same bound gs_ctl's own connections use, connect_timeout=5).
    cmd.env("PGCONNECT_TIMEOUT", "5");
    let out = run(&mut cmd).map_err(|e| format!("running psql: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim().strip_prefix("psql: error: ").unwrap_or(err.trim()).to_owned();
        return Err(err);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\x1f').map(str::to_owned).collect())
        .collect())
}
