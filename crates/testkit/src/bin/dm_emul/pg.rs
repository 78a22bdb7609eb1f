//! The PostgreSQL underneath an instance: a child of dmserver that dies
//! with it, started with its whole configuration on the command line.

use crate::common::{self, pg_bin, psql_value, wait_until};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a start, promotion or stop may take before it is reported as
/// failed: generous for a loaded CI machine, bounded so a test never hangs.
pub const PG_WAIT: Duration = Duration::from_secs(60);

/// Where a standby streams from: host, port, and the name it announces
/// (its own INSTANCE_NAME, which the primary's V$ARCH_STATUS matches).
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub app_name: String,
}

fn conninfo_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Starts `postgres` as a child of this process. It gets SIGQUIT
/// (immediate shutdown: no new connections, every backend gone) when this
/// process dies for any reason, SIGKILL included (PR_SET_PDEATHSIG, set
/// between fork and exec; the parent check closes the race where the
/// parent died before the prctl). It stays in dmserver's process group, so
/// signalling the group reaches it too.
pub fn start(inst: &Path, port: u16, pwd: &str, upstream: Option<&Upstream>) -> Result<Child, String> {
    let emul = common::emul_dir(inst);
    let hba = emul.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n\
         host replication all 0.0.0.0/0 scram-sha-256\nhost replication all ::/0 scram-sha-256\n",
    )
    .map_err(|e| format!("writing {}: {e}", hba.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(emul.join("postgres.log"))
        .map_err(|e| format!("opening postgres.log: {e}"))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let conninfo = upstream.map_or(String::new(), |u| {
        format!(
            "host={} port={} user=SYSDBA password={} application_name={} connect_timeout=5",
            conninfo_quote(&u.host),
            u.port,
            conninfo_quote(pwd),
            conninfo_quote(&u.app_name)
        )
    });
    let mut cmd = Command::new(pg_bin("postgres"));
    cmd.arg("-D").arg(common::pgdata(inst)).args(["-p", &port.to_string()]);
    for setting in [
        "listen_addresses=*".to_owned(),
        "unix_socket_directories=".to_owned(),
        format!("hba_file={}", hba.display()),
        "wal_level=replica".to_owned(),
        "max_wal_senders=10".to_owned(),
        "hot_standby=on".to_owned(),
        // Enough WAL kept for a rebuilt standby to catch up without a slot.
        "wal_keep_size=512MB".to_owned(),
        // DM's standby acknowledges every package; 1 s keeps the primary's
        // view of the standby (V$ARCH_STATUS) close to the truth.
        "wal_receiver_status_interval=1s".to_owned(),
        "wal_retrieve_retry_interval=1s".to_owned(),
        // A dead peer is noticed in 5 s, DM's typical MAL_CONN_FAIL_INTERVAL.
        "wal_sender_timeout=5s".to_owned(),
        "wal_receiver_timeout=5s".to_owned(),
        "recovery_target_timeline=latest".to_owned(),
        format!("primary_conninfo={conninfo}"),
    ] {
        cmd.arg("-c").arg(setting);
    }
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    // SAFETY: getpid is async-signal-safe and called before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("starting postgres: {e}"))
}

/// Waits until the server accepts SYSDBA's connections; fails when it
/// exits first or does not within PG_WAIT.
pub fn wait_ready(child: &mut Child, port: u16, pwd: &str) -> Result<(), String> {
    let mut exited = None;
    let ok = wait_until(PG_WAIT, || {
        if let Ok(Some(st)) = child.try_wait() {
            exited = Some(st);
            return true;
        }
        psql_value(port, pwd, "SELECT 1").as_deref() == Some("1")
    });
    match (ok, exited) {
        (_, Some(st)) => Err(format!("postgres exited ({st}) while starting, see dm_emul/postgres.log")),
        (true, None) => Ok(()),
        (false, None) => Err(format!("postgres did not accept connections within {PG_WAIT:?}")),
    }
}

/// Promotes a server in recovery and waits until it accepts writes.
pub fn promote(port: u16, pwd: &str) -> Result<(), String> {
    let secs = PG_WAIT.as_secs();
    match psql_value(port, pwd, &format!("SELECT pg_promote(true, {secs})")).as_deref() {
        Some("t") => Ok(()),
        other => Err(format!("promotion did not complete: {other:?}")),
    }
}

/// Stops the server: fast (SIGINT) or immediate (SIGQUIT), then SIGKILL
/// if it has not exited within PG_WAIT.
pub fn stop(child: &mut Child, immediate: bool) {
    let pid = child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, if immediate { libc::SIGQUIT } else { libc::SIGINT }) };
    let done = wait_until(PG_WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !done {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Whether the pgdata is set up to start in recovery.
pub fn has_standby_signal(inst: &Path) -> bool {
    common::pgdata(inst).join("standby.signal").exists()
}

pub fn set_standby_signal(inst: &Path) -> std::io::Result<()> {
    std::fs::write(common::pgdata(inst).join("standby.signal"), "")
}
