//! How a DM instance is started and waited for: dmserver spawned
//! detached, disql polled until it answers, the mode set in MOUNT and the
//! instance opened; and how its exit is awaited.

use super::{Dameng, Instance, POLL};
use crate::local::io_err;
use crate::{DbError, Upstream, exec};
use std::time::{Duration, Instant};

impl Dameng {
    /// Spawns `dmserver INST/dm.ini mount` detached: its own process
    /// group, output appended to `dmserver.log` in the state directory,
    /// its PID in `procs::SERVER_PID_FILE`. A thread reaps it when it
    /// exits (the adapter never waits on it otherwise).
    pub(super) fn spawn_server(&self) -> Result<i32, DbError> {
        use std::os::unix::process::CommandExt;
        let c = &self.l.cfg;
        let ini = std::fs::canonicalize(self.dm_ini()).map_err(|e| io_err(&self.dm_ini(), e))?;
        let log_path = self.state_file("dmserver.log");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| io_err(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| io_err(&log_path, e))?;
        let mut cmd = std::process::Command::new(self.l.bin("dmserver"));
        cmd.arg(&ini).arg("mount").current_dir(&c.data_dir).process_group(0);
        exec::at_child_priority(&mut cmd);
        cmd.stdin(std::process::Stdio::null()).stdout(log).stderr(log2);
        for (k, _) in std::env::vars_os().filter(|(k, _)| exec::is_postgres_variable(k)) {
            cmd.env_remove(k);
        }
        if let Some(r) = c.run_as {
            cmd.uid(r.uid).gid(r.gid);
        }
        let mut child =
            cmd.spawn().map_err(|e| DbError::Spawn { program: "dmserver".into(), message: e.to_string() })?;
        let pid = child.id() as i32;
        let reaper = std::thread::Builder::new().name("dmserver-reaper".into()).spawn(move || child.wait());
        if let Err(e) = reaper {
            tracing::warn!("cannot start the thread that reaps dmserver {pid}: {e}");
        }
        self.l.write_file(&c.data_dir.join(crate::procs::SERVER_PID_FILE), &format!("{pid}\n"))?;
        tracing::info!(pid, data_dir = %c.data_dir.display(), "dmserver started");
        Ok(pid)
    }

    /// Waits until the local dmserver answers disql.
    pub(super) async fn wait_answering(&self, pid: i32, timeout: Duration) -> Result<Instance, DbError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.instance(left.max(POLL)).await {
                Ok(i) => return Ok(i),
                Err(DbError::NotAcceptingConnections(why)) => {
                    // SAFETY: signal 0 only checks that the process exists.
                    if unsafe { libc::kill(pid, 0) } != 0 {
                        return Err(DbError::Unexpected(format!(
                            "dmserver {pid} exited while starting: see {} ({why})",
                            self.state_file("dmserver.log").display()
                        )));
                    }
                    if left.is_zero() {
                        return Err(DbError::Timeout { what: "dmserver answering disql".into(), after: timeout });
                    }
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts (or adopts a running) dmserver, sets the mode and opens it.
    /// A standby without an upstream stays in MOUNT (it has nothing to
    /// replay from; dm-emul would pick any other instance).
    pub(super) async fn start(
        &self,
        standby: bool,
        upstream: Option<&Upstream>,
        timeout: Duration,
    ) -> Result<(), DbError> {
        let pid = match self.server_pid() {
            Some(pid) => pid,
            None => {
                self.write_peers_config(upstream)?;
                self.record_mode(standby)?;
                self.record_stop(false)?;
                self.spawn_server()?
            }
        };
        let now = self.wait_answering(pid, timeout).await?;
        let want = if standby { "STANDBY" } else { "PRIMARY" };
        if now.open() && now.mode != want {
            return Err(DbError::Unexpected(format!(
                "DM is running OPEN as {}, not {want}: haraft stops it before it starts it in another mode",
                now.mode
            )));
        }
        if !now.open() {
            self.write_peers_config(upstream)?;
            self.record_mode(standby)?;
            if now.mode != want {
                self.set_mode(want, timeout).await?;
            }
            if !standby || upstream.is_some() {
                self.disql("ALTER DATABASE OPEN FORCE", timeout).await?;
            }
        }
        self.l.end_rebuild()
    }

    /// Waits until dmserver `pid` is gone.
    pub(super) async fn wait_exit(&self, pid: i32, timeout: Duration) -> Result<(), DbError> {
        let deadline = Instant::now() + timeout;
        while self.server_pid() == Some(pid) {
            if Instant::now() >= deadline {
                return Err(DbError::Timeout { what: format!("dmserver {pid} exiting"), after: timeout });
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}
