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
    let mut command = tokio::process::Command::new(program);
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
