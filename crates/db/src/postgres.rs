//! The PostgreSQL adapter: `pg_ctl`, `initdb`, `pg_basebackup`,
//! `pg_rewind`, `pg_controldata` and `postgres --single` with explicit
//! modes and timeouts; tokio-postgres for observations.
//!
//! haraft owns, inside the data directory: `haraft.conf` (included from
//! postgresql.conf; every setting replication and rewind need,
//! `primary_conninfo` on a standby, and `default_transaction_read_only`,
//! off only while this member holds the lease), `standby.signal`, and
//! `pg_hba.conf` (written at bootstrap). Passwords go to a 0600 passfile in the state
//! directory, never into the data directory or a log line.

use crate::exec;
pub use crate::local::{
    COMMIT_GUARD_NAME, PgConfig, SyncSetting, parse_synchronous_standby_names, parse_timeline_history,
    synchronous_standby_names,
};
use crate::local::{Local, io_err, quote, quote_ident, secs};
use crate::{Database, DbError, DbStatus, RewindReport, StopMode, Upstream};
use haraft_core::{Epoch, Lsn, TimelineId};
use std::time::Duration;

mod observe;
mod settings;

/// Where Debian and most packages put PostgreSQL 15's server binaries.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The promote request `pg_ctl promote` and `pg_promote()` leave for the
/// startup process.
const PROMOTE_SIGNAL: &str = "promote";

pub struct Postgres {
    l: Local,
}

impl Postgres {
    /// An openGauss data directory (it has `pg_xlog`, which PostgreSQL 10
    /// renamed) is never touched.
    fn check_engine(&self) -> Result<(), DbError> {
        let d = &self.l.cfg.data_dir;
        if d.join("pg_xlog").exists() {
            return Err(DbError::OtherEngine {
                path: d.display().to_string(),
                found: "openGauss (pg_xlog)",
                expected: "PostgreSQL",
            });
        }
        Ok(())
    }

    pub fn new(cfg: PgConfig) -> Postgres {
        Postgres { l: Local::new(cfg) }
    }

    pub fn config(&self) -> &PgConfig {
        &self.l.cfg
    }

    async fn is_running(&self, _timeout: Duration) -> Result<bool, DbError> {
        if !self.l.has_data() {
            return Ok(false);
        }
        self.l.server_running().await
    }

    async fn pg_ctl_start(&self, timeout: Duration) -> Result<(), DbError> {
        let log = self.l.log_file();
        let args: Vec<std::ffi::OsString> = vec![
            "start".into(),
            "-D".into(),
            self.l.cfg.data_dir.clone().into(),
            "-w".into(),
            "-t".into(),
            secs(timeout).into(),
            "-l".into(),
            log.into(),
        ];
        exec::run(&self.l.bin("pg_ctl"), args, &[], self.l.cfg.run_as, timeout + Duration::from_secs(2)).await?;
        self.l.end_rebuild()
    }

    async fn finish_crash_recovery(&self, timeout: Duration) -> Result<(), DbError> {
        // Single-user mode refuses standby mode.
        for signal in ["standby.signal", "recovery.signal"] {
            let p = self.l.cfg.data_dir.join(signal);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
            }
        }
        let data = self.l.cfg.data_dir.display().to_string();
        let args = ["--single", "-D", &data, "-c", "archive_mode=off", "-c", "hot_standby=off", "postgres"];
        exec::run(&self.l.bin("postgres"), args, &[], self.l.cfg.run_as, timeout).await.map(|_| ())
    }
}

impl Database for Postgres {
    fn engine(&self) -> &'static str {
        "PostgreSQL"
    }

    fn expect_system_identifier(&self, id: u64) {
        self.l.expect_system_identifier(id);
    }

    /// Kept for the slots a new primary creates at once (`create_peer_slots`).
    fn set_peers(&self, peers: &[Upstream]) {
        self.l.set_peers(peers);
    }

    async fn observe(&self, timeout: Duration) -> Result<DbStatus, DbError> {
        if !self.l.has_data() {
            return Ok(DbStatus::default());
        }
        self.check_engine()?;
        let seen = if self.is_running(timeout).await? {
            match self.query_running(timeout).await {
                Err(DbError::NotAcceptingConnections(why)) if self.l.cfg.data_dir.join("standby.signal").exists() => {
                    self.recovering_standby(&why, timeout).await
                }
                other => other,
            }
        } else {
            let c = self.l.controldata(timeout).await?;
            let standby = self.l.cfg.data_dir.join("standby.signal").exists();
            Ok(self.seen_through_control_file(&c, standby))
        };
        seen.map(|s| DbStatus { rewind_unfinished: self.l.rewind_unfinished(), ..s })
    }

    async fn bootstrap(&self, epoch: Epoch, timeout: Duration) -> Result<u64, DbError> {
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        if self.l.has_data() {
            return Err(DbError::Unexpected(format!(
                "bootstrap refused: {} already holds a database; haraft never initializes over data",
                self.l.cfg.data_dir.display()
            )));
        }
        self.l.make_dir(&self.l.cfg.data_dir)?;
        let pwfile = self.l.cfg.state_dir.join("initdb.pw");
        self.l.write_file(&pwfile, &format!("{}\n", self.l.cfg.superuser_password))?;
        let data = self.l.cfg.data_dir.display().to_string();
        let pw = pwfile.display().to_string();
        let user = format!("--username={}", self.l.cfg.superuser);
        let pwarg = format!("--pwfile={pw}");
        let locale = format!("--locale={}", self.l.cfg.initdb_locale);
        let encoding = format!("--encoding={}", self.l.cfg.initdb_encoding);
        let args = [
            "-D",
            &data,
            &user,
            &pwarg,
            &locale,
            &encoding,
            "--data-checksums",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--no-instructions",
            // One syncfs below instead of a thousand fsyncs (`syncfs`).
            "--no-sync",
        ];
        let result = exec::run(&self.l.bin("initdb"), args, &[("LC_ALL", "C")], self.l.cfg.run_as, timeout).await;
        let _ = std::fs::remove_file(&pwfile);
        result?;
        let hba = format!(
            "# Written by haraft at bootstrap.\n\
             local all all peer\n\
             host all all 0.0.0.0/0 scram-sha-256\n\
             host all all ::/0 scram-sha-256\n\
             host replication {0} 0.0.0.0/0 scram-sha-256\n\
             host replication {0} ::/0 scram-sha-256\n",
            quote_ident(&self.l.cfg.replication_user)
        );
        self.l.write_file(&self.l.cfg.data_dir.join("pg_hba.conf"), &hba)?;
        crate::syncfs::sync_data_dir(&self.l.cfg.data_dir)?;
        let system_id = self.l.controldata(timeout).await?.system_identifier;
        self.expect_system_identifier(system_id);
        self.start_primary(epoch, timeout).await?;
        let client = self.l.connect(timeout).await?;
        let sql = format!(
            "CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {}",
            quote_ident(&self.l.cfg.replication_user),
            quote(&self.l.replication_password())
        );
        client.batch_execute(&sql).await.map_err(|e| DbError::query(&e))?;
        self.create_peer_slots(&client).await;
        Ok(system_id)
    }

    async fn start_primary(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.check_engine()?;
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.l.check_identity(timeout).await?;
        self.write_settings(false, true)?;
        self.pg_ctl_start(timeout).await
    }

    async fn start_standby(&self, upstream: Option<&Upstream>, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.check_engine()?;
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.l.check_identity(timeout).await?;
        self.l.settings.lock().expect("never poisoned").upstream = upstream.cloned();
        self.write_settings(true, false)?;
        self.pg_ctl_start(timeout).await
    }

    async fn follow(&self, upstream: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        // An adopted standby's first action: haraft's state directory (its
        // epoch guard, the passfile) comes first.
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.l.settings.lock().expect("never poisoned").upstream = Some(upstream.clone());
        self.write_settings(true, false)?;
        // primary_conninfo is reloadable since PostgreSQL 13.
        self.reload(timeout).await
    }

    async fn promote(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        // Read-write by default from the moment it leaves recovery (a
        // standby is read-only whatever the setting says): the reload is
        // taken before the promotion, not waited for after it.
        self.write_settings(true, true)?;
        self.reload(timeout).await?;
        let data = self.l.cfg.data_dir.display().to_string();
        // Asked without pg_ctl's wait, which looks at the control file every
        // 100 ms: the kept session sees the server leave recovery within
        // 10 ms, and the agent's next observation (which /primary answers
        // from, and HAProxy checks) follows at once.
        exec::run(&self.l.bin("pg_ctl"), ["promote", "-D", &data, "-W"], &[], self.l.cfg.run_as, timeout).await?;
        let client = self.l.connect(timeout).await?;
        let until = std::time::Instant::now() + timeout;
        loop {
            let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(|e| DbError::query(&e))?;
            if !row.get::<_, bool>(0) {
                break;
            }
            if std::time::Instant::now() >= until {
                return Err(DbError::Timeout { what: "the promotion".into(), after: timeout });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Promoted: the next start must be as primary.
        self.write_settings(false, true)?;
        self.create_peer_slots(&client).await;
        // PostgreSQL 15 writes the new timeline to its control file only at
        // the next checkpoint, which fast promotion merely requests (spread
        // over checkpoint_timeout). A former primary's pg_rewind reads the
        // source's timeline from there, and asks the source for a
        // checkpoint itself first (`checkpoint_source`); this one, in the
        // background, only keeps the control file current for anyone who
        // reads it sooner. Waiting for it cost the promotion 0.1-0.2 s. Its
        // own session: on the kept one it would hold up the observations.
        match self.l.open(timeout).await {
            Ok(session) => {
                tokio::spawn(async move {
                    if let Err(e) = session.batch_execute("CHECKPOINT").await {
                        tracing::warn!("the checkpoint after a promotion failed: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("no checkpoint after the promotion: {e}"),
        }
        Ok(())
    }

    async fn stop(&self, mode: StopMode, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        // Never refused on epoch: fencing must always be able to stop.
        tracing::info!(%epoch, ?mode, data_dir = %self.l.cfg.data_dir.display(), "stopping PostgreSQL");
        if !self.is_running(timeout).await? {
            return Ok(());
        }
        // Whoever starts it next, outside haraft, gets a read-only server.
        // Best effort: a full disk must not keep fencing from stopping it.
        if let Err(e) = self.write_settings(self.l.cfg.data_dir.join("standby.signal").exists(), false) {
            tracing::warn!("stopping PostgreSQL without making its settings read-only first: {e}");
        }
        let data = self.l.cfg.data_dir.display().to_string();
        let m = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        exec::run(
            &self.l.bin("pg_ctl"),
            ["stop", "-D", &data, "-m", m, "-w", "-t", &secs(timeout)],
            &[],
            self.l.cfg.run_as,
            timeout + Duration::from_secs(2),
        )
        .await
        .map(|_| ())
    }

    async fn rewind(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<RewindReport, DbError> {
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.l.check_identity(timeout).await?;
        if self.is_running(timeout).await? {
            return Err(DbError::Unexpected("rewind refused: PostgreSQL is running; stop it first".into()));
        }
        if !self.l.controldata(timeout).await?.state.clean() {
            self.finish_crash_recovery(timeout).await?;
        }
        self.l.checkpoint_source(source, timeout).await?;
        let data = format!("--target-pgdata={}", self.l.cfg.data_dir.display());
        let server = format!(
            "--source-server=host={} port={} user={} dbname=postgres connect_timeout=5",
            source.host, source.port, self.l.cfg.superuser
        );
        let passfile = self.l.passfile().display().to_string();
        self.l.begin_rewind()?;
        let out = exec::run(
            &self.l.bin("pg_rewind"),
            // One syncfs below instead of an fsync per file (`syncfs`).
            [data.as_str(), server.as_str(), "--no-sync"],
            &[("PGPASSFILE", &passfile), ("LC_ALL", "C")],
            self.l.cfg.run_as,
            timeout,
        )
        .await?;
        // Durable before the marker goes: a crash in between rebuilds.
        crate::syncfs::sync_data_dir(&self.l.cfg.data_dir)?;
        self.l.end_rewind()?;
        let text = format!("{}\n{}", out.stdout, out.stderr);
        let (diverged_at, diverged_timeline) = crate::wal::diverged_at(&text);
        let report = RewindReport { diverged_at, diverged_timeline };
        self.l.settings.lock().expect("never poisoned").upstream = Some(source.clone());
        // pg_rewind copied the source's configuration: make it ours again.
        self.write_settings(true, false)?;
        Ok(report)
    }

    async fn rebuild(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        if self.is_running(timeout).await? {
            self.stop(StopMode::Immediate, epoch, timeout).await?;
        }
        // A postmaster killed -9 left its shared memory segment, which only
        // a start in this same directory would have removed.
        self.l.release_dead_servers_shmem().await;
        let marker = self.l.begin_rebuild(epoch)?;
        self.l.make_dir(&self.l.cfg.data_dir)?;
        let data = self.l.cfg.data_dir.display().to_string();
        let port = source.port.to_string();
        let passfile = self.l.passfile().display().to_string();
        let args = [
            "-D",
            &data,
            "-h",
            &source.host,
            "-p",
            &port,
            "-U",
            &self.l.cfg.replication_user,
            "-X",
            "stream",
            "-c",
            "fast",
            "-w",
            // One syncfs below instead of an fsync per file (`syncfs`).
            "--no-sync",
        ];
        exec::run(&self.l.bin("pg_basebackup"), args, &[("PGPASSFILE", &passfile)], self.l.cfg.run_as, timeout).await?;
        self.l.settings.lock().expect("never poisoned").upstream = Some(source.clone());
        self.write_settings(true, false)?;
        crate::syncfs::sync_data_dir(&self.l.cfg.data_dir)?;
        self.l.end_rewind()?;
        std::fs::remove_file(&marker).map_err(|e| io_err(&marker, e))
    }

    async fn set_synchronous_standbys(
        &self,
        names: &[String],
        quorum: u32,
        epoch: Epoch,
        timeout: Duration,
    ) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        {
            let mut settings = self.l.settings.lock().expect("never poisoned");
            settings.synchronous = names.to_vec();
            settings.synchronous_quorum = quorum;
        }
        let standby = self.l.cfg.data_dir.join("standby.signal").exists();
        // Only the lease holder of `epoch` sets them: its primary stays
        // read-write.
        self.write_settings(standby, !standby)?;
        if self.is_running(timeout).await? { self.reload(timeout).await } else { Ok(()) }
    }

    async fn set_replication_slots(&self, slots: &[String], epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        self.l.sync_slots(slots, "SELECT pg_create_physical_replication_slot($1, true)", timeout).await
    }

    /// `pg_ctl reload`, then waits (at most a second) until the kept
    /// connection has re-read the configuration: a reload is a signal,
    /// answered asynchronously, and an observation made on a session that
    /// has not re-read it yet reports the settings from before (the commit
    /// guard's test saw `commits_held: false` right after holding them).
    async fn reload(&self, timeout: Duration) -> Result<(), DbError> {
        let loaded_before = self.conf_load_time(timeout).await;
        let data = self.l.cfg.data_dir.display().to_string();
        exec::run(&self.l.bin("pg_ctl"), ["reload", "-D", &data], &[], self.l.cfg.run_as, timeout).await?;
        let Some(before) = loaded_before else { return Ok(()) };
        let until = std::time::Instant::now() + timeout.min(Duration::from_secs(1));
        while std::time::Instant::now() < until {
            match self.conf_load_time(timeout).await {
                Some(now) if now != before => return Ok(()),
                Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                None => return Ok(()),
            }
        }
        tracing::warn!(data_dir = %data, "the kept connection did not re-read the configuration within a second of a reload");
        Ok(())
    }

    async fn set_read_only(&self, read_only: bool, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        if !self.l.has_data() {
            return Ok(());
        }
        if !read_only {
            // An adopted primary's first action: haraft's state directory first.
            self.l.prepare_state_dir()?;
            self.l.guard.authorise(epoch)?;
        }
        let standby = self.l.cfg.data_dir.join("standby.signal").exists();
        self.write_settings(standby, !read_only)?;
        if self.is_running(timeout).await? { self.reload(timeout).await } else { Ok(()) }
    }

    async fn hold_commits(&self, held: bool, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        if !held {
            self.l.guard.authorise(epoch)?;
        }
        if !self.l.has_data() || self.l.cfg.data_dir.join("standby.signal").exists() {
            return Ok(());
        }
        let writable = {
            let mut settings = self.l.settings.lock().expect("never poisoned");
            settings.commits_held = held;
            settings.writable
        };
        self.write_settings(false, writable)?;
        if self.is_running(timeout).await? { self.reload(timeout).await } else { Ok(()) }
    }

    async fn end_of_wal(&self, timeout: Duration) -> Result<Option<Lsn>, DbError> {
        self.l.end_of_wal("pg_waldump", "pg_wal", timeout).await
    }

    async fn commits_between(
        &self,
        timeline: TimelineId,
        from: Lsn,
        to: Lsn,
        timeout: Duration,
    ) -> Result<u64, DbError> {
        self.l.commits_between("pg_waldump", "pg_wal", (timeline, from, to), timeout).await
    }

    fn promotion_signalled(&self) -> bool {
        self.promotion_signalled_in(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_names_name_all_or_a_quorum() {
        let two = ["a".to_string(), "b\"c".to_string()];
        assert_eq!(synchronous_standby_names(&[], 0, false), "");
        assert_eq!(synchronous_standby_names(&["node2".into()], 1, false), "FIRST 1 (\"node2\")");
        assert_eq!(synchronous_standby_names(&two, 2, false), "FIRST 2 (\"a\", \"b\"\"c\")");
        assert_eq!(synchronous_standby_names(&two, 1, false), "ANY 1 (\"a\", \"b\"\"c\")");
        assert_eq!(synchronous_standby_names(&[], 0, true), "FIRST 1 (\"haraft commit guard\")");
        assert_eq!(
            synchronous_standby_names(&two, 1, true),
            "FIRST 3 (\"a\", \"b\"\"c\", \"haraft commit guard\")",
            "held: every commit waits, whatever the quorum"
        );
    }

    #[test]
    fn timeline_history_files_parse() {
        let text =
            "1\t0/3000148\tno recovery target specified\n\n2\t0/5000060\tno recovery target specified\n# c\nbad line\n";
        let forks = parse_timeline_history(text);
        assert_eq!(forks.len(), 2);
        assert_eq!((forks[1].timeline, forks[1].switch_lsn), (TimelineId(2), Lsn(0x5000060)));
    }

    #[test]
    fn synchronous_names_parse_back() {
        let cases: [(Vec<String>, u32); 4] = [
            (vec![], 0),
            (vec!["node2".into()], 1),
            (vec!["a".into(), "b\"c".into()], 2),
            (vec!["a".into(), "b".into()], 1),
        ];
        for (names, quorum) in cases {
            let back = parse_synchronous_standby_names(&synchronous_standby_names(&names, quorum, false));
            assert_eq!(back, Some(SyncSetting { names: names.clone(), quorum: Some(quorum), commits_held: false }));
            let held = parse_synchronous_standby_names(&synchronous_standby_names(&names, quorum, true));
            assert_eq!(held, Some(SyncSetting { names, quorum: None, commits_held: true }), "the guard is told apart");
        }
        assert_eq!(parse_synchronous_standby_names("*"), None);
        assert_eq!(parse_synchronous_standby_names("ANY 1 (a, b)"), None, "unquoted: not haraft's");
        assert_eq!(parse_synchronous_standby_names("ANY 2 (\"a\", \"b\")"), None, "haraft writes FIRST for all");
        assert_eq!(parse_synchronous_standby_names("FIRST 2 (\"a\")"), None);
    }

    #[test]
    fn values_are_quoted_for_postgresql_conf() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote("a\\b"), "'a\\\\b'");
    }
}
