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

use crate::controldata::ControlData;
use crate::exec;
pub use crate::local::{
    COMMIT_GUARD_NAME, PgConfig, SyncSetting, parse_synchronous_standby_names, parse_timeline_history,
    synchronous_standby_names,
};
use crate::local::{Local, io_err, quote, quote_ident, secs};
use crate::pg_conf;
use crate::{Database, DbError, DbRole, DbStatus, Replica, RewindReport, StopMode, Upstream};
use haraft_core::{Epoch, Lsn, TimelineId};
use std::time::Duration;

/// Where Debian and most packages put PostgreSQL 15's server binaries.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The promote request `pg_ctl promote` and `pg_promote()` leave for the
/// startup process.
const PROMOTE_SIGNAL: &str = "promote";

const READ_ONLY_SETTING: &str = "default_transaction_read_only";

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

    /// haraft.conf for the role the server is about to start in; new
    /// transactions read-write by default only when `writable` (the lease
    /// holder's server, about to take or taking writes).
    ///
    /// The settings stay locked until the file is written: the commit
    /// guard writes it beside whatever action is running, and neither may
    /// write an older picture over the other's newer one.
    fn write_settings(&self, standby: bool, writable: bool) -> Result<(), DbError> {
        let mut settings = self.l.settings.lock().expect("never poisoned");
        settings.writable = writable;
        // A standby has no synchronous standbys (the list of its time as
        // primary would make its first commits after a promotion wait for
        // members that do not stream from it yet), and takes no commits to
        // hold.
        if standby {
            settings.synchronous.clear();
            settings.synchronous_quorum = 0;
            settings.commits_held = false;
        }
        let c = &self.l.cfg;
        let mut text = String::from("# Written by haraft before every start; edits are overwritten.\n");
        let mut set = |k: &str, v: String| {
            debug_assert!(pg_conf::MANAGED.contains(&k), "{k} must be listed in pg_conf::MANAGED");
            text.push_str(&format!("{k} = {v}\n"));
        };
        set("listen_addresses", quote(&c.listen_addresses));
        set("port", c.port.to_string());
        set("unix_socket_directories", quote(&c.socket_dir.display().to_string()));
        set("unix_socket_permissions", "0700".into());
        set("wal_level", "replica".into());
        set("hot_standby", "on".into());
        set("hot_standby_feedback", "on".into());
        set("max_wal_senders", "10".into());
        set("max_replication_slots", "10".into());
        // pg_rewind needs the WAL since the divergence on the new primary;
        // 256 MB covers minutes of a busy test cluster.
        set("wal_keep_size", quote("256MB"));
        // A member that is gone for good must not fill the primary's disk
        // through its slot: past 1 GB the slot is invalidated and the
        // member is rebuilt when it returns.
        set("max_slot_wal_keep_size", quote("1GB"));
        set("wal_log_hints", "on".into());
        // Standbys report every second and a silent one is dropped after
        // 2 s (within the default 2.5 s lease ttl), so a cut-off synchronous standby
        // leaves pg_stat_replication, and the synchronous set, within a ttl.
        set("wal_receiver_status_interval", quote("1s"));
        set("wal_sender_timeout", quote("2s"));
        set("recovery_target_timeline", quote("latest"));
        // A standby whose upstream went away (a switchover's old primary
        // stopping, a re-pointed bystander) waits this long before it tries
        // again, and a promotion asked for meanwhile waited it out too:
        // PostgreSQL's 5 s made 5 of 10 switchovers take 5.3-5.7 s.
        set("wal_retrieve_retry_interval", quote("250ms"));
        set("cluster_name", quote(&c.application_name));
        set(
            "synchronous_standby_names",
            quote(&synchronous_standby_names(
                &settings.synchronous,
                settings.synchronous_quorum,
                settings.commits_held,
            )),
        );
        // A server promoted by anyone but haraft refuses writes by default
        // (and libpq's target_session_attrs=read-write passes it by).
        set(READ_ONLY_SETTING, if settings.writable { "off" } else { "on" }.into());
        if let (true, Some(up)) = (standby, settings.upstream.as_ref()) {
            // The primary keeps this member's slot (see set_replication_slots).
            set("primary_slot_name", quote(&haraft_core::slot_name(&c.application_name)));
            let conninfo = format!(
                "host={} port={} user={} application_name={} passfile={} connect_timeout=2",
                up.host,
                up.port,
                c.replication_user,
                c.application_name,
                self.l.passfile().display()
            );
            set("primary_conninfo", quote(&conninfo));
        } else {
            set("primary_conninfo", quote(""));
            set("primary_slot_name", quote(""));
        }
        self.l.write_file(&c.data_dir.join("haraft.conf"), &text)?;
        drop(settings);
        self.take_settings_over()?;
        let signal = c.data_dir.join("standby.signal");
        if standby {
            // A promote request left over from someone else's promotion
            // must not promote the standby haraft starts.
            let promote = c.data_dir.join(PROMOTE_SIGNAL);
            if promote.exists() && !writable {
                std::fs::remove_file(&promote).map_err(|e| io_err(&promote, e))?;
            }
            self.l.write_file(&signal, "")?;
        } else if signal.exists() {
            std::fs::remove_file(&signal).map_err(|e| io_err(&signal, e))?;
        }
        Ok(())
    }

    /// Makes the server's configuration take haraft's settings: the
    /// include of `haraft.conf` last in `postgresql.conf`, and no managed
    /// setting in `postgresql.auto.conf` (see `pg_conf`). A no-op on a
    /// cluster haraft created; on one it adopts, what `haraft
    /// --check-config --adopt` listed.
    fn take_settings_over(&self) -> Result<(), DbError> {
        let d = &self.l.cfg.data_dir;
        let (conf_path, auto_path) = (d.join("postgresql.conf"), d.join("postgresql.auto.conf"));
        let conf = std::fs::read_to_string(&conf_path).map_err(|e| io_err(&conf_path, e))?;
        if !pg_conf::includes_haraft(&conf) || !pg_conf::overridden(&conf, true).is_empty() {
            tracing::info!(path = %conf_path.display(), "including haraft.conf last");
            let mut text: String =
                conf.lines().filter(|l| !pg_conf::includes_haraft(l)).flat_map(|l| [l, "\n"]).collect();
            text.push_str(pg_conf::INCLUDE_BLOCK);
            self.l.write_file(&conf_path, &text)?;
        }
        let auto = match std::fs::read_to_string(&auto_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&auto_path, e)),
        };
        let overrides = pg_conf::overridden(&auto, false);
        if !overrides.is_empty() {
            tracing::info!(path = %auto_path.display(), "removing settings haraft manages: {}", overrides.join(", "));
            self.l.write_file(&auto_path, &pg_conf::without_managed(&auto))?;
        }
        Ok(())
    }

    /// A running server's configuration does not take haraft's settings
    /// (a cluster being adopted); an unreadable file counts as not.
    fn foreign_settings(&self) -> bool {
        let d = &self.l.cfg.data_dir;
        let read = |name: &str| std::fs::read_to_string(d.join(name));
        let auto = read("postgresql.auto.conf").unwrap_or_default();
        match read("postgresql.conf") {
            Ok(conf) => !d.join("haraft.conf").exists() || !pg_conf::takes_haraft_settings(&conf, &auto),
            Err(_) => true,
        }
    }

    /// What haraft's settings file gives new transactions: `None` without
    /// the file or without the setting (written by an earlier haraft).
    fn settings_file_read_only(&self) -> Option<bool> {
        self.l.settings_file_value(READ_ONLY_SETTING).map(|v| v == "on")
    }

    /// A promote request is waiting, or (for a server in recovery) the
    /// file that keeps it a standby is gone: someone asked it to leave
    /// recovery. haraft's own promotion is told apart by the caller.
    fn promotion_signalled_in(&self, in_recovery: bool) -> bool {
        let d = &self.l.cfg.data_dir;
        d.join(PROMOTE_SIGNAL).exists()
            || (in_recovery && !d.join("standby.signal").exists() && !d.join("recovery.signal").exists())
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

    /// A running standby that refuses connections ("not yet accepting
    /// connections": it has not reached a consistent state, e.g. WAL it
    /// needs is gone or belongs to a diverged timeline), seen through its
    /// control file: running, not streaming. Without this the agent had no
    /// observation to decide on and waited forever (a nemesis run in CI);
    /// with it, the standby counts as not streaming and is stopped and
    /// rewound after `stream_timeout_ms` like any other.
    async fn recovering_standby(&self, why: &str, timeout: Duration) -> Result<DbStatus, DbError> {
        tracing::warn!(data_dir = %self.l.cfg.data_dir.display(), "the standby refuses connections: {why}");
        let c = self.l.controldata(timeout).await?;
        Ok(DbStatus { running: true, clean_shutdown: None, ..self.seen_through_control_file(&c, true) })
    }

    /// What the control file and haraft's files say of a server that
    /// answers no query: stopped unless the caller knows better.
    fn seen_through_control_file(&self, c: &ControlData, standby: bool) -> DbStatus {
        let (timeline, lsn) = c.position();
        DbStatus {
            has_data: true,
            running: false,
            role: Some(if standby { DbRole::Standby } else { DbRole::Primary }),
            timeline: Some(timeline),
            lsn: Some(lsn),
            replayed_lsn: Some(lsn),
            system_identifier: Some(c.system_identifier),
            clean_shutdown: Some(c.state.clean()),
            streaming_from: None,
            replicas: Vec::new(),
            synchronous_names: None,
            synchronous_quorum: None,
            slots: None,
            forks: None,
            read_only_default: self.settings_file_read_only(),
            promotion_signalled: self.promotion_signalled_in(false),
            // Nothing commits on a server that answers no query.
            commits_held: false,
            // Its next start writes haraft's settings.
            foreign_settings: false,
            engine: haraft_core::Engine::Postgres,
            mounted: false,
            rewind_unfinished: false,
        }
    }

    async fn query_running(&self, timeout: Duration) -> Result<DbStatus, DbError> {
        let work = async {
            let client = self.l.connect(timeout).await?;
            let q = |e: tokio_postgres::Error| DbError::query(&e);
            let row = client
                .query_one(
                    "SELECT pg_is_in_recovery(),
                            (SELECT system_identifier FROM pg_control_system())::text,
                            CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
                            CASE WHEN pg_is_in_recovery() THEN NULL
                                 ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,
                            pg_last_wal_receive_lsn()::text,
                            pg_last_wal_replay_lsn()::text,
                            (SELECT timeline_id FROM pg_control_checkpoint()),
                            (SELECT received_tli FROM pg_stat_wal_receiver),
                            (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver
                              WHERE status = 'streaming'),
                            current_setting('synchronous_standby_names'),
                            (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir()
                              WHERE name ~ '^[0-9A-F]{8}[.]history$'),
                            current_setting('default_transaction_read_only')",
                    &[],
                )
                .await
                .map_err(q)?;
            let in_recovery: bool = row.get(0);
            let sysid: Option<String> = row.get(1);
            let lsn = |i: usize| row.get::<_, Option<String>>(i).and_then(|s| Lsn::parse(&s));
            let timeline = if in_recovery {
                // Streaming: the timeline it receives. Otherwise the newest
                // timeline whose history it holds: the last restartpoint's
                // timeline lags a timeline switch by up to a checkpoint
                // interval.
                let received: Option<i32> = row.get(7);
                let checkpoint: Option<i32> = row.get(6);
                let newest_history: Option<i32> = row.get(10);
                received.or(newest_history.max(checkpoint)).map(|t| TimelineId(t as u32))
            } else {
                row.get::<_, Option<String>>(3).and_then(|hex| u32::from_str_radix(&hex, 16).ok()).map(TimelineId)
            };
            let (received_lsn, replayed_lsn) = if in_recovery { (lsn(4), lsn(5)) } else { (lsn(2), lsn(2)) };
            let synchronous = parse_synchronous_standby_names(&row.get::<_, String>(9));
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
            let forks = match (in_recovery, timeline) {
                (false, Some(TimelineId(1))) => Some(Vec::new()),
                (false, Some(TimelineId(t))) => {
                    let path = format!("pg_wal/{t:08X}.history");
                    match client.query_one("SELECT pg_read_file($1)", &[&path]).await {
                        Ok(row) => Some(parse_timeline_history(&row.get::<_, String>(0))),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            let replicas = client
                .query("SELECT application_name, state, sync_state FROM pg_stat_replication", &[])
                .await
                .map_err(q)?
                .iter()
                .map(|r| Replica {
                    name: r.get::<_, Option<String>>(0).unwrap_or_default(),
                    streaming: r.get::<_, Option<String>>(1).is_some_and(|s| s == "streaming"),
                    sync: r.get::<_, Option<String>>(2).is_some_and(|s| s == "sync" || s == "quorum"),
                })
                .collect();
            Ok(DbStatus {
                has_data: true,
                running: true,
                role: Some(if in_recovery { DbRole::Standby } else { DbRole::Primary }),
                timeline,
                lsn: received_lsn,
                replayed_lsn,
                // bigint in SQL: values above i64::MAX come back negative.
                system_identifier: sysid.and_then(|s| s.parse::<i64>().ok()).map(|v| v as u64),
                clean_shutdown: None,
                streaming_from: row.get(8),
                replicas,
                synchronous_names: synchronous.as_ref().map(|s| s.names.clone()),
                synchronous_quorum: synchronous.as_ref().and_then(|s| s.quorum),
                commits_held: synchronous.is_some_and(|s| s.commits_held),
                slots,
                forks,
                read_only_default: Some(row.get::<_, String>(11) == "on"),
                promotion_signalled: self.promotion_signalled_in(in_recovery),
                foreign_settings: self.foreign_settings(),
                engine: haraft_core::Engine::Postgres,
                mounted: false,
                rewind_unfinished: false,
            })
        };
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Timeout { what: "querying PostgreSQL".into(), after: timeout }),
        };
        if result.is_err() {
            self.l.forget_connection();
        }
        result
    }

    /// When the kept connection's session last read the configuration;
    /// `None` when the server cannot be asked.
    async fn conf_load_time(&self, timeout: Duration) -> Option<String> {
        let client = self.l.connect(timeout).await.ok()?;
        let ask = client.query_one("SELECT pg_catalog.pg_conf_load_time()::text", &[]);
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(row)) => Some(row.get(0)),
            _ => {
                self.l.forget_connection();
                None
            }
        }
    }

    /// Finishes crash recovery of a stopped, uncleanly shut down directory
    /// with a single-user server, so that pg_rewind accepts it.
    /// The other members' slots on a new primary, before they connect: a
    /// standby that starts or re-points at once would otherwise be refused
    /// ("replication slot does not exist") and wait out its retry interval
    /// until the reconciler's SetSlots, an observation later. Missing ones
    /// only; SetSlots drops what no member needs. Best effort: SetSlots
    /// tries again.
    async fn create_peer_slots(&self, client: &tokio_postgres::Client) {
        let slots: Vec<String> = {
            let settings = self.l.settings.lock().expect("never poisoned");
            settings.peers.iter().map(|p| haraft_core::slot_name(&p.name)).collect()
        };
        let create = "SELECT pg_create_physical_replication_slot($1, true)
                       WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)";
        for slot in &slots {
            if let Err(e) = client.execute(create, &[slot]).await {
                tracing::warn!(%slot, "creating the replication slot of a member failed (the reconciler tries again): {e}");
            }
        }
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
