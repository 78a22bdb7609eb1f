//! Running PostgreSQL's tools: explicit arguments, an explicit timeout,
//! optionally as another OS user, with the tail of stderr kept for errors.

use crate::DbError;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The OS user the database runs as, when the caller is root (tests).
/// In production the agent runs as the database user and needs none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Looks up an OS user by name.
    pub fn user(name: &str) -> Result<RunAs, String> {
        let cname = std::ffi::CString::new(name).map_err(|_| format!("user name {name:?} contains a NUL byte"))?;
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0u8; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; getpwnam_r writes into
        // `pwd` and `buf` only.
        let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc != 0 || result.is_null() {
            return Err(format!("no OS user {name:?}"));
        }
        Ok(RunAs { uid: pwd.pw_uid, gid: pwd.pw_gid })
    }

    /// Gives `path` to this user (used for directories the database writes).
    pub fn chown(&self, path: &Path) -> std::io::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
    }

    /// `chown` of `path` and everything below it.
    pub fn chown_tree(&self, path: &Path) -> std::io::Result<()> {
        self.chown(path)?;
        if path.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.chown_tree(&entry?.path())?;
            }
        }
        Ok(())
    }
}

/// The nice value the tools and servers the agent starts get: 0 when the
/// agent itself runs at a raised priority (a negative nice value, from the
/// unit's `Nice=`), so that the lease path is favoured under CPU
/// starvation and the database is not; `None` (inherit) otherwise. Read
/// once.
pub fn child_nice() -> Option<i32> {
    static CHILD_NICE: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    *CHILD_NICE.get_or_init(|| own_nice().filter(|n| *n < 0).map(|_| 0))
}

/// This process's nice value (`/proc/self/stat`, field 19: getpriority
/// cannot tell -1 from an error without errno).
pub fn own_nice() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(16)?.parse().ok()
}

/// Makes `command`'s process start at `child_nice()`.
pub fn at_child_priority(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    if let Some(nice) = child_nice() {
        // SAFETY: setpriority is a single system call, async-signal-safe;
        // lowering one's own priority needs no privilege.
        unsafe {
            command.pre_exec(move || {
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                Ok(())
            })
        };
    }
}

/// How many lines of a failing tool's stderr an error carries.
const STDERR_TAIL_LINES: usize = 6;

pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join(" | ")
}

/// Whether `name` is a variable of libpq's (`PGPASSWORD`, `PGHOST`,
/// `PGSSLMODE`, ...) or of PostgreSQL's own tools (`PGDATA`, `PGPORT`,
/// `PGCTLTIMEOUT`, ...): all of them start with `PG`.
pub fn is_postgres_variable(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b"PG")
}

/// Runs `program args` with `env` added, as `run_as` when set, killing it
/// if it outlives `timeout`. stdin is /dev/null.
///
/// None of the agent's own `PG*` variables reach the tool: a `PGPASSWORD`
/// exported in the operator's shell would beat the replication password
/// haraft means (measured: every base backup failed with "password
/// authentication failed"), and `PGHOST`, `PGPORT`, `PGUSER`, `PGSSLMODE`
/// would change where and as whom it connects. What haraft means is given
/// explicitly (arguments, `env`, the private passfile).
pub async fn run<I, S>(
    program: &Path,
    args: I,
    env: &[(&str, &str)],
    run_as: Option<RunAs>,
    timeout: Duration,
) -> Result<Output, DbError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let name = program.file_name().map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut std_command = std::process::Command::new(program);
    at_child_priority(&mut std_command);
    let mut command = tokio::process::Command::from(std_command);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for (k, _) in std::env::vars_os().filter(|(k, _)| is_postgres_variable(k)) {
        command.env_remove(k);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    if let Some(r) = run_as {
        command.uid(r.uid).gid(r.gid);
    }
    let child = command.spawn().map_err(|e| DbError::Spawn { program: name.clone(), message: e.to_string() })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => return Err(DbError::Timeout { what: name, after: timeout }),
        Ok(Err(e)) => return Err(DbError::Spawn { program: name, message: e.to_string() }),
        Ok(Ok(o)) => o,
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let detail = if stderr.trim().is_empty() { tail(&stdout) } else { tail(&stderr) };
        return Err(DbError::CommandFailed { program: name, code: output.status.code(), stderr_tail: detail });
    }
    Ok(Output { stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_carries_exit_code_and_stderr_tail() {
        let err =
            run(Path::new("/bin/sh"), ["-c", "echo one >&2; echo two >&2; exit 3"], &[], None, Duration::from_secs(5))
                .await
                .err()
                .expect("fails");
        match err {
            DbError::CommandFailed { program, code, stderr_tail } => {
                assert_eq!(program, "sh");
                assert_eq!(code, Some(3));
                assert_eq!(stderr_tail, "one | two");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn tools_start_at_the_childrens_priority() {
        let out =
            run(Path::new("/bin/sh"), ["-c", "cut -d' ' -f19 /proc/self/stat"], &[], None, Duration::from_secs(5))
                .await
                .expect("runs");
        let own = own_nice().expect("this process's nice value");
        let expected = child_nice().unwrap_or(own);
        assert_eq!(out.stdout.trim(), expected.to_string(), "own nice {own}");
        assert!(own >= 0 || expected == 0, "a raised agent starts its tools at 0");
    }

    /// Runs itself at nice -5 (as root): the raised process's tools start
    /// at nice 0.
    #[tokio::test]
    async fn a_raised_agent_starts_its_tools_at_nice_zero() {
        const NAME: &str = "exec::tests::a_raised_agent_starts_its_tools_at_nice_zero";
        if std::env::var_os("HARAFT_EXEC_PRIORITY_PROBE").is_some() {
            assert_eq!(own_nice(), Some(-5), "the probe runs raised");
            let cmd = ["-c", "cut -d' ' -f19 /proc/self/stat"];
            let out = run(Path::new("/bin/sh"), cmd, &[], None, Duration::from_secs(5)).await.expect("runs");
            assert_eq!(out.stdout.trim(), "0", "a tool of a raised process starts at nice 0");
            return;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: raising a priority needs root");
            return;
        }
        use std::os::unix::process::CommandExt;
        let mut probe = std::process::Command::new(std::env::current_exe().expect("test binary"));
        probe.args(["--exact", NAME, "--nocapture"]).env("HARAFT_EXEC_PRIORITY_PROBE", "1");
        // SAFETY: one system call in the child; root may raise a priority.
        unsafe {
            probe.pre_exec(|| {
                libc::setpriority(libc::PRIO_PROCESS, 0, -5);
                Ok(())
            })
        };
        let out = probe.output().expect("run the probe");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
    }

    #[test]
    fn postgres_variables_are_recognised() {
        for name in ["PGPASSWORD", "PGHOST", "PGSSLMODE", "PGDATA", "PGCTLTIMEOUT"] {
            assert!(is_postgres_variable(OsStr::new(name)), "{name}");
        }
        for name in ["PATH", "LANG", "HOME", "XPGX"] {
            assert!(!is_postgres_variable(OsStr::new(name)), "{name}");
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_tool() {
        let started = std::time::Instant::now();
        let err =
            run(Path::new("/bin/sleep"), ["30"], &[], None, Duration::from_millis(200)).await.err().expect("times out");
        assert!(matches!(err, DbError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn unknown_user_is_an_error() {
        assert!(RunAs::user("no-such-user-haraft").is_err());
        assert_eq!(RunAs::user("root").unwrap(), RunAs { uid: 0, gid: 0 });
    }
}
