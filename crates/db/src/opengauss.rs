//! The openGauss adapter: `gs_initdb`, `gs_ctl` (start/stop with explicit
//! `-M` and `-m`, `failover`, `build -b incremental|full`, `query`,
//! `reload`) and `pg_controldata`, with explicit timeouts; tokio-postgres
//! (openGauss speaks PostgreSQL's protocol) for observations, through
//! openGauss's own SQL names (`pg_current_xlog_location()`, ...).
//! Formats follow openGauss 5.x/6.x (see `gs_ctl`).
//!
//! What differs from PostgreSQL, and lives only here:
//! - the role a server runs in is the `-M` mode it was started with, not a
//!   file: haraft records the mode it last started this server in
//!   (`opengauss-mode` in the state directory) for a stopped server's role;
//! - replication peers are `replconninfo1` (this member's upstream only,
//!   haraft decides it), never `primary_conninfo`; by openGauss's
//!   convention a node's HA port is its service port + 1;
//! - host connections authenticate with `md5` and
//!   `password_encryption_type = 1` (md5 and sha256 hashes stored):
//!   tokio-postgres speaks md5 and SCRAM, not openGauss's sha256 exchange;
//! - rejoin is `gs_ctl build`: `-b incremental` for a rewind, `-b full`
//!   for a rebuild (into a directory `gs_initdb` prepared, as openGauss
//!   builds standbys); a build starts the server as a standby itself;
//! - the data directory has `pg_xlog`, not `pg_wal` (and a PostgreSQL one
//!   is refused, as the PostgreSQL adapter refuses an openGauss one).
//!
//! haraft never calls `gs_ctl switchover`: a switchover is haraft's own
//! committed sequence (demote, then promote the only writable candidate).

mod settings;

pub use settings::{ha_port, parse_replconninfo};

use crate::gs_ctl::{self, Query};
use crate::local::{Local, PgConfig, io_err, parse_synchronous_standby_names, parse_timeline_history};
use crate::local::{READ_ONLY_SETTING, quote, quote_ident, secs};
use crate::{Database, DbError, DbRole, DbStatus, Replica, RewindReport, StopMode, Upstream, exec};
use haraft_core::{Epoch, Lsn, TimelineId};
use std::path::PathBuf;
use std::time::Duration;

/// The tools the adapter runs; `bin_dir` must hold them. (`pg_xlogdump`,
/// for counting what a rewind discards, is used when present.)
pub const TOOLS: &[&str] = &["gs_ctl", "gs_initdb", "pg_controldata"];

/// openGauss has `replconninfo1` … `replconninfo8`.
const MAX_REPLCONNINFO: usize = 8;

/// Files an openGauss promotion request leaves in the data directory
/// (`gs_ctl failover`, `gs_ctl switchover`; `promote` from tools of the
/// PostgreSQL family).
const PROMOTION_SIGNALS: &[&str] = &["failover", "switchover", "promote"];

pub struct OpenGauss {
    l: Local,
}

impl OpenGauss {
    pub fn new(cfg: PgConfig) -> OpenGauss {
        OpenGauss { l: Local::new(cfg) }
    }

    pub fn config(&self) -> &PgConfig {
        &self.l.cfg
    }

    fn mode_file(&self) -> PathBuf {
        self.l.cfg.state_dir.join("opengauss-mode")
    }

    /// The mode haraft last started (or promoted) this server in.
    fn recorded_standby(&self) -> bool {
        std::fs::read_to_string(self.mode_file()).is_ok_and(|m| m.trim() == "standby")
    }

    fn record_mode(&self, standby: bool) -> Result<(), DbError> {
        self.l.write_file(&self.mode_file(), if standby { "standby\n" } else { "primary\n" })
    }

    /// The environment of every gs_ctl call: who it connects as, and the
    /// passfile with the passwords (never an argument).
    fn tool_env(&self) -> [(&'static str, String); 3] {
        [
            ("PGUSER", self.l.cfg.superuser.clone()),
            ("PGPASSFILE", self.l.passfile().display().to_string()),
            ("LC_ALL", "C".to_string()),
        ]
    }

    async fn gs_ctl(&self, args: &[&str], timeout: Duration) -> Result<exec::Output, DbError> {
        let env = self.tool_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let data = self.l.cfg.data_dir.display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-D", &data]);
        exec::run(&self.l.bin("gs_ctl"), all, &env, self.l.cfg.run_as, timeout + Duration::from_secs(2)).await
    }

    /// A data directory of another engine is never touched.
    fn check_engine(&self) -> Result<(), DbError> {
        let d = &self.l.cfg.data_dir;
        if self.l.has_data() && !d.join("pg_xlog").exists() {
            return Err(DbError::OtherEngine {
                path: d.display().to_string(),
                found: "PostgreSQL (pg_wal, no pg_xlog)",
                expected: "openGauss",
            });
        }
        Ok(())
    }

    async fn is_running(&self) -> Result<bool, DbError> {
        self.l.server_running().await
    }

    async fn start(&self, standby: bool, timeout: Duration) -> Result<(), DbError> {
        self.record_mode(standby)?;
        let log = self.l.log_file().display().to_string();
        let mode = if standby { "standby" } else { "primary" };
        self.gs_ctl(&["start", "-M", mode, "-w", "-t", &secs(timeout), "-l", &log], timeout).await?;
        self.l.end_rebuild()
    }

    async fn reload_if_running(&self, timeout: Duration) -> Result<(), DbError> {
        if self.is_running().await? { self.reload(timeout).await } else { Ok(()) }
    }

    /// A server that answers no query, from its control file and what
    /// haraft recorded.
    async fn seen_through_control_file(&self, running: bool, timeout: Duration) -> Result<DbStatus, DbError> {
        let c = self.l.controldata(timeout).await?;
        let (timeline, lsn) = c.position();
        Ok(DbStatus {
            has_data: true,
            running,
            role: Some(if self.recorded_standby() { DbRole::Standby } else { DbRole::Primary }),
            timeline: Some(timeline.max(self.newest_history().unwrap_or(timeline))),
            lsn: Some(lsn),
            replayed_lsn: Some(lsn),
            system_identifier: Some(c.system_identifier),
            clean_shutdown: (!running).then(|| c.state.clean()),
            read_only_default: self.l.settings_file_value(READ_ONLY_SETTING).map(|v| v == "on"),
            promotion_signalled: self.promotion_signalled(),
            ..DbStatus::default()
        })
    }

    /// The newest timeline whose history file is in `pg_xlog`.
    fn newest_history(&self) -> Option<TimelineId> {
        let dir = self.l.cfg.data_dir.join("pg_xlog");
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| {
                let hex = n.strip_suffix(".history")?;
                (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok()).flatten()
            })
            .max()
            .map(TimelineId)
    }

    fn forks(&self, timeline: TimelineId) -> Option<Vec<haraft_core::Fork>> {
        if timeline.0 <= 1 {
            return Some(Vec::new());
        }
        let path = self.l.cfg.data_dir.join("pg_xlog").join(format!("{:08X}.history", timeline.0));
        std::fs::read_to_string(path).ok().map(|t| parse_timeline_history(&t))
    }

    async fn query_running(&self, ha: &Query, timeout: Duration) -> Result<DbStatus, DbError> {
        let control = self.l.controldata(timeout).await?;
        let work = async {
            let client = self.l.connect(timeout).await?;
            let q = |e: tokio_postgres::Error| DbError::query(&e);
            let row = client
                .query_one(
                    "SELECT pg_is_in_recovery(),
                            CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_xlog_location() END,
                            pg_last_xlog_receive_location(),
                            (SELECT lsn FROM pg_last_xlog_replay_location()),
                            current_setting('synchronous_standby_names'),
                            current_setting('default_transaction_read_only')",
                    &[],
                )
                .await
                .map_err(q)?;
            let in_recovery: bool = row.get(0);
            let lsn = |i: usize| row.get::<_, Option<String>>(i).and_then(|s| Lsn::parse(&s));
            let replicas = client
                .query("SELECT application_name, state, sync_state FROM pg_stat_replication", &[])
                .await
                .map_err(q)?
                .iter()
                .map(|r| Replica {
                    name: r.get::<_, Option<String>>(0).unwrap_or_default(),
                    streaming: r.get::<_, Option<String>>(1).is_some_and(|s| s.eq_ignore_ascii_case("streaming")),
                    sync: r
                        .get::<_, Option<String>>(2)
                        .is_some_and(|s| s.eq_ignore_ascii_case("sync") || s.eq_ignore_ascii_case("quorum")),
                })
                .collect();
            let slots = if in_recovery {
                None
            } else {
                let rows = client
                    .query(
                        "SELECT slot_name::text FROM pg_replication_slots
                          WHERE slot_type = 'physical' AND slot_name LIKE 'haraft\\_%' ORDER BY 1",
                        &[],
                    )
                    .await
                    .map_err(q)?;
                Some(rows.iter().map(|r| r.get::<_, String>(0)).collect())
            };
            let synchronous = parse_synchronous_standby_names(&row.get::<_, String>(4));
            let (checkpoint_timeline, _) = control.position();
            let timeline = checkpoint_timeline.max(self.newest_history().unwrap_or(checkpoint_timeline));
            let (position, replayed) = if in_recovery { (lsn(2), lsn(3)) } else { (lsn(1), lsn(1)) };
            Ok(DbStatus {
                has_data: true,
                running: true,
                role: Some(if in_recovery { DbRole::Standby } else { DbRole::Primary }),
                timeline: Some(timeline),
                lsn: position,
                replayed_lsn: replayed,
                system_identifier: Some(control.system_identifier),
                clean_shutdown: None,
                streaming_from: if in_recovery && ha.receiving() { self.configured_upstream() } else { None },
                replicas,
                synchronous_names: synchronous.as_ref().map(|s| s.names.clone()),
                synchronous_quorum: synchronous.as_ref().and_then(|s| s.quorum),
                commits_held: synchronous.is_some_and(|s| s.commits_held),
                slots,
                forks: if in_recovery { None } else { self.forks(timeline) },
                read_only_default: Some(row.get::<_, String>(5) == "on"),
                promotion_signalled: in_recovery && self.promotion_signalled(),
                // haraft adopts only PostgreSQL clusters that run; an
                // openGauss one is taken over at its next start.
                foreign_settings: false,
                engine: haraft_core::Engine::OpenGauss,
                mounted: false,
                rewind_unfinished: false,
            })
        };
        self.l.timed("querying openGauss", timeout, work).await
    }

    /// Runs `gs_ctl build` with `mode` from `source` (through
    /// `replconninfo1`). The build starts the server as a standby; it is
    /// stopped again, so that like PostgreSQL's a rejoined directory is
    /// left stopped and the start that follows carries its epoch check.
    async fn build(&self, source: &Upstream, mode: &str, timeout: Duration) -> Result<String, DbError> {
        self.l.settings.lock().expect("never poisoned").upstream = Some(source.clone());
        self.write_settings(true, false)?;
        self.record_mode(true)?;
        let out = self.gs_ctl(&["build", "-b", mode, "-t", &secs(timeout), "-r", &secs(timeout)], timeout).await?;
        if self.is_running().await? {
            self.gs_ctl(&["stop", "-m", "fast", "-t", &secs(timeout)], timeout).await?;
        }
        Ok(format!("{}\n{}", out.stdout, out.stderr))
    }
}

impl OpenGauss {
    /// The observation, before it is marked as openGauss's.
    async fn observe_server(&self, timeout: Duration) -> Result<DbStatus, DbError> {
        if !self.l.has_data() {
            return Ok(DbStatus::default());
        }
        self.check_engine()?;
        if !self.is_running().await? {
            return self.seen_through_control_file(false, timeout).await;
        }
        let out = self.gs_ctl(&["query"], timeout).await?;
        let ha = gs_ctl::parse_query(&out.stdout).map_err(|e| DbError::Unexpected(e.to_string()))?;
        match self.query_running(&ha, timeout).await {
            // Starting, or a standby not yet consistent: running, not
            // streaming (see the PostgreSQL adapter's recovering_standby).
            Err(DbError::NotAcceptingConnections(why)) => {
                tracing::warn!(data_dir = %self.l.cfg.data_dir.display(), db_state = ha.db_state(), "openGauss refuses connections: {why}");
                self.seen_through_control_file(true, timeout).await
            }
            other => other,
        }
    }
}

impl Database for OpenGauss {
    fn engine(&self) -> &'static str {
        "openGauss"
    }

    fn expect_system_identifier(&self, id: u64) {
        self.l.expect_system_identifier(id);
    }

    fn set_peers(&self, peers: &[Upstream]) {
        self.l.set_peers(peers);
    }

    async fn observe(&self, timeout: Duration) -> Result<DbStatus, DbError> {
        let seen = self.observe_server(timeout).await?;
        let rewind_unfinished = seen.has_data && self.l.rewind_unfinished();
        Ok(DbStatus { engine: haraft_core::Engine::OpenGauss, rewind_unfinished, ..seen })
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
        self.initdb(timeout).await?;
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
        Ok(system_id)
    }

    async fn start_primary(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.check_engine()?;
        self.l.check_identity(timeout).await?;
        self.write_settings(false, true)?;
        self.start(false, timeout).await
    }

    async fn start_standby(&self, upstream: Option<&Upstream>, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.check_engine()?;
        self.l.check_identity(timeout).await?;
        self.l.settings.lock().expect("never poisoned").upstream = upstream.cloned();
        self.write_settings(true, false)?;
        self.start(true, timeout).await
    }

    async fn follow(&self, upstream: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        self.l.settings.lock().expect("never poisoned").upstream = Some(upstream.clone());
        self.write_settings(true, false)?;
        // replconninfoN are reload-level: the walreceiver reconnects.
        self.reload(timeout).await
    }

    async fn promote(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        // Read-write by default from the moment it leaves recovery.
        self.write_settings(true, true)?;
        self.reload(timeout).await?;
        self.gs_ctl(&["failover", "-t", &secs(timeout)], timeout).await?;
        self.record_mode(false)?;
        // The rewind of a former primary reads the new one's timeline from
        // its control file, which the next checkpoint updates.
        let client = self.l.connect(timeout).await?;
        client.batch_execute("CHECKPOINT").await.map_err(|e| DbError::query(&e))?;
        self.write_settings(false, true)?;
        self.reload(timeout).await
    }

    async fn stop(&self, mode: StopMode, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        // Never refused on epoch: fencing must always be able to stop.
        tracing::info!(%epoch, ?mode, data_dir = %self.l.cfg.data_dir.display(), "stopping openGauss");
        if !self.is_running().await? {
            return Ok(());
        }
        if let Err(e) = self.write_settings(self.recorded_standby(), false) {
            tracing::warn!("stopping openGauss without making its settings read-only first: {e}");
        }
        let m = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        self.gs_ctl(&["stop", "-m", m, "-t", &secs(timeout)], timeout).await.map(|_| ())
    }

    async fn rewind(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<RewindReport, DbError> {
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.check_engine()?;
        self.l.check_identity(timeout).await?;
        if self.is_running().await? {
            return Err(DbError::Unexpected("rewind refused: openGauss is running; stop it first".into()));
        }
        self.l.checkpoint_source(source, timeout).await?;
        self.l.begin_rewind()?;
        let text = self.build(source, "incremental", timeout).await?;
        self.l.end_rewind()?;
        let (diverged_at, diverged_timeline) = crate::wal::diverged_at(&text);
        Ok(RewindReport { diverged_at, diverged_timeline })
    }

    async fn rebuild(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        if self.is_running().await? {
            self.stop(StopMode::Immediate, epoch, timeout).await?;
        }
        self.l.release_dead_servers_shmem().await;
        let marker = self.l.begin_rebuild(epoch)?;
        // openGauss builds a standby into a directory gs_initdb made (its
        // configuration files stay; the data comes from the source).
        self.initdb(timeout).await?;
        self.build(source, "full", timeout).await?;
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
        let standby = self.recorded_standby();
        self.write_settings(standby, !standby)?;
        self.reload_if_running(timeout).await
    }

    async fn set_replication_slots(&self, slots: &[String], epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        // openGauss: (slot name, isDummyStandby).
        self.l.sync_slots(slots, "SELECT pg_create_physical_replication_slot($1, false)", timeout).await
    }

    async fn reload(&self, timeout: Duration) -> Result<(), DbError> {
        self.gs_ctl(&["reload"], timeout).await.map(|_| ())
    }

    async fn set_read_only(&self, read_only: bool, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        if !read_only {
            self.l.guard.authorise(epoch)?;
        }
        if !self.l.has_data() {
            return Ok(());
        }
        self.write_settings(self.recorded_standby(), !read_only)?;
        self.reload_if_running(timeout).await
    }

    async fn hold_commits(&self, held: bool, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        if !held {
            self.l.guard.authorise(epoch)?;
        }
        if !self.l.has_data() || self.recorded_standby() {
            return Ok(());
        }
        let writable = {
            let mut settings = self.l.settings.lock().expect("never poisoned");
            settings.commits_held = held;
            settings.writable
        };
        self.write_settings(false, writable)?;
        self.reload_if_running(timeout).await
    }

    async fn end_of_wal(&self, timeout: Duration) -> Result<Option<Lsn>, DbError> {
        if !self.l.bin("pg_xlogdump").is_file() {
            return Ok(None);
        }
        self.l.end_of_wal("pg_xlogdump", "pg_xlog", timeout).await
    }

    async fn commits_between(
        &self,
        timeline: TimelineId,
        from: Lsn,
        to: Lsn,
        timeout: Duration,
    ) -> Result<u64, DbError> {
        if !self.l.bin("pg_xlogdump").is_file() {
            return Err(DbError::Unexpected(format!(
                "pg_xlogdump is not in {}: the commits a rewind discards cannot be counted",
                self.l.cfg.bin_dir.display()
            )));
        }
        self.l.commits_between("pg_xlogdump", "pg_xlog", (timeline, from, to), timeout).await
    }

    fn promotion_signalled(&self) -> bool {
        PROMOTION_SIGNALS.iter().any(|f| self.l.cfg.data_dir.join(f).exists())
    }
}

#[cfg(test)]
mod tests {
    /// The adapter's SQL names only what openGauss has: no PostgreSQL 10+
    /// names (`*_wal_*`, `*_lsn`), no `pg_promote`, no `pg_control_*`, no
    /// `pg_stat_wal_receiver`.
    #[test]
    fn sql_uses_only_opengauss_names() {
        let sources = [include_str!("opengauss.rs"), include_str!("opengauss/settings.rs")];
        let code: String = sources.iter().map(|s| s.split("#[cfg(test)]").next().unwrap()).collect();
        // String literals that are SQL (settings' names are checked by
        // the emulation, which refuses what openGauss does not know).
        let sql: Vec<&str> = code.split('"').skip(1).step_by(2).filter(|t| t.contains("SELECT")).collect();
        assert!(sql.len() >= 4, "the SQL statements were not found: {sql:?}");
        let forbidden = ["_wal_", "_lsn", "pg_promote", "pg_control_", "pg_stat_wal_receiver", "pg_ls_waldir"];
        for text in &sql {
            for f in forbidden {
                assert!(!text.contains(f), "{f:?} is not an openGauss name, in {text:?}");
            }
        }
        // The names it does use are openGauss's.
        let used = sql.concat();
        for name in ["pg_current_xlog_location()", "pg_last_xlog_receive_location()", "pg_last_xlog_replay_location()"]
        {
            assert!(used.contains(name), "{name}");
        }
    }
}
