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

use crate::controldata::{self, ControlData};
use crate::epoch_guard::EpochGuard;
use crate::exec::{self, RunAs};
use crate::{Database, DbError, DbRole, Downstream, Observation, RewindReport, StopMode, Upstream};
use haraft_core::{Epoch, Lsn, TimelineId};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long the adapter waits for a killed server's last processes to let
/// go of its shared memory segment before it forgets the segment.
const SHMEM_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Where Debian and most packages put PostgreSQL 15's server binaries.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

#[derive(Clone, Debug)]
pub struct PgConfig {
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    /// haraft's own files about this database: epoch guard, passfile, log,
    /// directories kept aside by rebuilds. Outside `data_dir`.
    pub state_dir: PathBuf,
    /// `listen_addresses`.
    pub listen_addresses: String,
    /// How the agent (and the other members) reach this server.
    pub host: String,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub superuser: String,
    pub superuser_password: String,
    pub replication_user: String,
    pub replication_password: String,
    /// The file `replication_password` was read from, read again (first
    /// line) each time the passfile is written; `None` when it came from
    /// the environment.
    pub replication_password_file: Option<PathBuf>,
    /// This member's name: its `application_name` upstream, its slot name.
    pub application_name: String,
    pub run_as: Option<RunAs>,
    /// How many directories set aside by rebuilds to keep (oldest go first).
    pub keep_aside: usize,
    /// `initdb --locale` and `--encoding` at bootstrap: never the agent's
    /// inherited `LANG`/`LC_*`.
    pub initdb_locale: String,
    pub initdb_encoding: String,
}

pub struct Postgres {
    cfg: PgConfig,
    guard: EpochGuard,
    expected_system_id: Mutex<Option<u64>>,
    settings: Mutex<Settings>,
}

#[derive(Clone, Debug, Default)]
struct Settings {
    upstream: Option<Upstream>,
    synchronous: Vec<String>,
    /// New transactions are read-write by default: only while this member
    /// holds the lease (see `set_read_only`).
    writable: bool,
    /// The commit guard: commits wait (see `hold_commits`).
    commits_held: bool,
}

/// The promote request `pg_ctl promote` and `pg_promote()` leave for the
/// startup process.
const PROMOTE_SIGNAL: &str = "promote";

const READ_ONLY_SETTING: &str = "default_transaction_read_only";

/// Whole seconds for a tool's own `-t`, rounded up, at least 1.
fn secs(timeout: Duration) -> String {
    timeout.as_secs().max(1).to_string()
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn io_err(path: &Path, e: std::io::Error) -> DbError {
    DbError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// A timeline history file: one `TLI<tab>LSN<tab>reason` line per earlier
/// timeline, the LSN where it ended. Unreadable lines are skipped.
pub fn parse_timeline_history(text: &str) -> Vec<haraft_core::Fork> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let timeline = TimelineId(words.next()?.parse().ok()?);
            let switch_lsn = Lsn::parse(words.next()?)?;
            Some(haraft_core::Fork { timeline, switch_lsn })
        })
        .collect()
}

/// The members named by a `synchronous_standby_names` that haraft wrote;
/// `None` for any other form.
pub fn parse_synchronous_standby_names(text: &str) -> Option<Vec<String>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(Vec::new());
    }
    let rest = text.strip_prefix("FIRST ")?;
    let (count, list) = rest.split_once(' ')?;
    let list = list.trim().strip_prefix('(')?.strip_suffix(')')?;
    let mut names = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut name = String::new();
        loop {
            match chars.next()? {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    name.push('"');
                }
                '"' => break,
                c => name.push(c),
            }
        }
        names.push(name);
    }
    (count.parse::<usize>().ok()? == names.len()).then_some(names)
}

/// The standby the commit guard adds to `synchronous_standby_names`: no
/// member can have this name (member names have no spaces), so no standby
/// ever confirms for it and every commit waits.
pub const COMMIT_GUARD_NAME: &str = "haraft commit guard";

/// The text of `synchronous_standby_names` for a set of members: every one
/// of them must confirm a commit, so any of them may be promoted without
/// losing it. With `commits_held`, the commit guard's name joins them:
/// commits wait for a confirmation that never comes.
pub fn synchronous_standby_names(names: &[String], commits_held: bool) -> String {
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    if commits_held {
        all.push(COMMIT_GUARD_NAME);
    }
    if all.is_empty() {
        return String::new();
    }
    let list: Vec<String> = all.iter().map(|n| quote_ident(n)).collect();
    format!("FIRST {} ({})", all.len(), list.join(", "))
}

/// The member names of a parsed `synchronous_standby_names`, and whether
/// the commit guard is among them.
pub fn without_commit_guard(mut names: Vec<String>) -> (Vec<String>, bool) {
    let before = names.len();
    names.retain(|n| n != COMMIT_GUARD_NAME);
    let held = names.len() != before;
    (names, held)
}

impl Postgres {
    pub fn new(cfg: PgConfig) -> Postgres {
        let guard = EpochGuard::new(&cfg.state_dir);
        Postgres { cfg, guard, expected_system_id: Mutex::new(None), settings: Mutex::new(Settings::default()) }
    }

    pub fn config(&self) -> &PgConfig {
        &self.cfg
    }

    /// From now on, refuse to start, rewind or rebuild over a data
    /// directory whose system identifier differs (another cluster's data).
    pub fn expect_system_identifier(&self, id: u64) {
        *self.expected_system_id.lock().expect("never poisoned") = Some(id);
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.cfg.bin_dir.join(name)
    }

    fn passfile(&self) -> PathBuf {
        self.cfg.state_dir.join("pgpass")
    }

    fn log_file(&self) -> PathBuf {
        self.cfg.state_dir.join("postgresql.log")
    }

    fn has_data(&self) -> bool {
        self.cfg.data_dir.join("PG_VERSION").is_file()
    }

    /// Creates `dir` (0700) owned by the database user.
    fn make_dir(&self, dir: &Path) -> Result<(), DbError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))?;
        if let Some(r) = self.cfg.run_as {
            r.chown(dir).map_err(|e| io_err(dir, e))?;
        }
        Ok(())
    }

    /// Writes a file (0600) owned by the database user.
    fn write_file(&self, path: &Path, text: &str) -> Result<(), DbError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).map_err(|e| io_err(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io_err(path, e))?;
        if let Some(r) = self.cfg.run_as {
            r.chown(path).map_err(|e| io_err(path, e))?;
        }
        Ok(())
    }

    /// The replication password now: its file's first line when it has
    /// one that is readable and not empty, else the one configured.
    fn replication_password(&self) -> String {
        let from_file = self.cfg.replication_password_file.as_ref().and_then(|f| {
            let text = std::fs::read_to_string(f)
                .map_err(|e| tracing::warn!(path = %f.display(), "cannot read the replication password file again ({e}): using the one read at start"))
                .ok()?;
            text.lines().next().filter(|l| !l.is_empty()).map(str::to_string)
        });
        from_file.unwrap_or_else(|| self.cfg.replication_password.clone())
    }

    fn prepare_state_dir(&self) -> Result<(), DbError> {
        self.make_dir(&self.cfg.state_dir)?;
        self.make_dir(&self.cfg.socket_dir)?;
        // libpq's passfile: host:port:database:user:password, ':' and '\' escaped.
        let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
        let text = format!(
            "*:*:*:{}:{}\n*:*:*:{}:{}\n",
            esc(&self.cfg.replication_user),
            esc(&self.replication_password()),
            esc(&self.cfg.superuser),
            esc(&self.cfg.superuser_password)
        );
        self.write_file(&self.passfile(), &text)
    }

    /// haraft.conf for the role the server is about to start in; new
    /// transactions read-write by default only when `writable` (the lease
    /// holder's server, about to take or taking writes).
    ///
    /// The settings stay locked until the file is written: the commit
    /// guard writes it beside whatever action is running, and neither may
    /// write an older picture over the other's newer one.
    fn write_settings(&self, standby: bool, writable: bool) -> Result<(), DbError> {
        let mut settings = self.settings.lock().expect("never poisoned");
        settings.writable = writable;
        // A standby has no synchronous standbys (the list of its time as
        // primary would make its first commits after a promotion wait for
        // members that do not stream from it yet), and takes no commits to
        // hold.
        if standby {
            settings.synchronous.clear();
            settings.commits_held = false;
        }
        let c = &self.cfg;
        let mut text = String::from("# Written by haraft before every start; edits are overwritten.\n");
        let mut set = |k: &str, v: String| text.push_str(&format!("{k} = {v}\n"));
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
            quote(&synchronous_standby_names(&settings.synchronous, settings.commits_held)),
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
                self.passfile().display()
            );
            set("primary_conninfo", quote(&conninfo));
        } else {
            set("primary_conninfo", quote(""));
            set("primary_slot_name", quote(""));
        }
        self.write_file(&c.data_dir.join("haraft.conf"), &text)?;
        drop(settings);
        let signal = c.data_dir.join("standby.signal");
        if standby {
            // A promote request left over from someone else's promotion
            // must not promote the standby haraft starts.
            let promote = c.data_dir.join(PROMOTE_SIGNAL);
            if promote.exists() && !writable {
                std::fs::remove_file(&promote).map_err(|e| io_err(&promote, e))?;
            }
            self.write_file(&signal, "")?;
        } else if signal.exists() {
            std::fs::remove_file(&signal).map_err(|e| io_err(&signal, e))?;
        }
        Ok(())
    }

    /// What haraft's settings file gives new transactions: `None` without
    /// the file or without the setting (written by an earlier haraft).
    fn settings_file_read_only(&self) -> Option<bool> {
        let text = std::fs::read_to_string(self.cfg.data_dir.join("haraft.conf")).ok()?;
        text.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == READ_ONLY_SETTING).then(|| value.trim() == "on")
        })
    }

    /// A promote request is waiting, or (for a server in recovery) the
    /// file that keeps it a standby is gone: someone asked it to leave
    /// recovery. haraft's own promotion is told apart by the caller.
    fn promotion_signalled_in(&self, in_recovery: bool) -> bool {
        let d = &self.cfg.data_dir;
        d.join(PROMOTE_SIGNAL).exists()
            || (in_recovery && !d.join("standby.signal").exists() && !d.join("recovery.signal").exists())
    }

    async fn controldata(&self, timeout: Duration) -> Result<ControlData, DbError> {
        let out =
            exec::run(&self.bin("pg_controldata"), [&self.cfg.data_dir], &[("LC_ALL", "C")], self.cfg.run_as, timeout)
                .await?;
        controldata::parse(&out.stdout).map_err(|e| DbError::Unexpected(e.to_string()))
    }

    /// Refuses a data directory of another database.
    async fn check_identity(&self, timeout: Duration) -> Result<(), DbError> {
        let Some(expected) = *self.expected_system_id.lock().expect("never poisoned") else { return Ok(()) };
        if !self.has_data() {
            return Ok(());
        }
        let found = self.controldata(timeout).await?.system_identifier;
        if found != expected {
            return Err(DbError::ForeignDataDir { path: self.cfg.data_dir.display().to_string(), found, expected });
        }
        Ok(())
    }

    async fn is_running(&self, timeout: Duration) -> Result<bool, DbError> {
        if !self.has_data() {
            return Ok(false);
        }
        let data = self.cfg.data_dir.display().to_string();
        match exec::run(&self.bin("pg_ctl"), ["status", "-D", &data], &[], self.cfg.run_as, timeout).await {
            // pg_ctl only checks that the PID in postmaster.pid exists; after
            // a crash it may belong to another process. Such a stale file
            // would also stop PostgreSQL from starting: remove it.
            Ok(_) if crate::procs::postmaster_pid(&self.cfg.data_dir).is_none() => {
                // The file is the only record of the dead server's segment.
                self.release_dead_servers_shmem().await;
                let pidfile = self.cfg.data_dir.join("postmaster.pid");
                tracing::warn!(path = %pidfile.display(), "stale postmaster.pid (its PID is another process now): removed");
                match std::fs::remove_file(&pidfile) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&pidfile, e)),
                    _ => Ok(false),
                }
            }
            Ok(_) => Ok(true),
            // pg_ctl status: 3 means not running, 4 no accessible data directory.
            Err(DbError::CommandFailed { code: Some(3 | 4), .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the System V segment a killed server left (see
    /// [`crate::procs::release_stale_shmem`]), waiting a moment for its
    /// orphaned backends to let go, off the async worker threads.
    async fn release_dead_servers_shmem(&self) {
        let dir = self.cfg.data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || crate::procs::release_stale_shmem(&dir, SHMEM_RELEASE_WAIT)).await;
    }

    async fn pg_ctl_start(&self, timeout: Duration) -> Result<(), DbError> {
        let log = self.log_file();
        let args: Vec<std::ffi::OsString> = vec![
            "start".into(),
            "-D".into(),
            self.cfg.data_dir.clone().into(),
            "-w".into(),
            "-t".into(),
            secs(timeout).into(),
            "-l".into(),
            log.into(),
        ];
        exec::run(&self.bin("pg_ctl"), args, &[], self.cfg.run_as, timeout + Duration::from_secs(2)).await?;
        // A directory a server started from is no unfinished copy (if an
        // operator put data there after a failed rebuild, it is theirs).
        let marker = self.rebuild_marker();
        if marker.exists() {
            std::fs::remove_file(&marker).map_err(|e| io_err(&marker, e))?;
        }
        Ok(())
    }

    async fn connect(&self, timeout: Duration) -> Result<tokio_postgres::Client, DbError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.cfg.host)
            .port(self.cfg.port)
            .user(&self.cfg.superuser)
            .password(&self.cfg.superuser_password)
            .dbname("postgres")
            .application_name("haraft")
            .connect_timeout(timeout);
        let connect = config.connect(tokio_postgres::NoTls);
        let (client, connection) = match tokio::time::timeout(timeout, connect).await {
            Err(_) => return Err(DbError::Timeout { what: "connecting to PostgreSQL".into(), after: timeout }),
            Ok(Err(e))
                if e.as_db_error()
                    .is_some_and(|d| *d.code() == tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW) =>
            {
                return Err(DbError::NotAcceptingConnections(DbError::query(&e).to_string()));
            }
            Ok(Err(e)) => return Err(DbError::query(&e)),
            Ok(Ok(pair)) => pair,
        };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A running standby that refuses connections ("not yet accepting
    /// connections": it has not reached a consistent state, e.g. WAL it
    /// needs is gone or belongs to a diverged timeline), seen through its
    /// control file: running, not streaming. Without this the agent had no
    /// observation to decide on and waited forever (a nemesis run in CI);
    /// with it, the standby counts as not streaming and is stopped and
    /// rewound after `stream_timeout_ms` like any other.
    async fn recovering_standby(&self, why: &str, timeout: Duration) -> Result<Observation, DbError> {
        tracing::warn!(data_dir = %self.cfg.data_dir.display(), "the standby refuses connections: {why}");
        let c = self.controldata(timeout).await?;
        Ok(Observation { running: true, clean_shutdown: None, ..self.seen_through_control_file(&c, true) })
    }

    /// What the control file and haraft's files say of a server that
    /// answers no query: stopped unless the caller knows better.
    fn seen_through_control_file(&self, c: &ControlData, standby: bool) -> Observation {
        let (timeline, lsn) = c.position();
        Observation {
            running: false,
            role: Some(if standby { DbRole::Standby } else { DbRole::Primary }),
            timeline: Some(timeline),
            received_lsn: Some(lsn),
            replayed_lsn: Some(lsn),
            system_identifier: Some(c.system_identifier),
            clean_shutdown: Some(c.state.clean()),
            upstream: None,
            downstream: Vec::new(),
            synchronous_names: None,
            slots: None,
            forks: None,
            read_only_default: self.settings_file_read_only(),
            promotion_signalled: self.promotion_signalled_in(false),
            // Nothing commits on a server that answers no query.
            commits_held: false,
        }
    }

    async fn query_running(&self, timeout: Duration) -> Result<Observation, DbError> {
        let work = async {
            let client = self.connect(timeout).await?;
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
            let synchronous = parse_synchronous_standby_names(&row.get::<_, String>(9)).map(without_commit_guard);
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
            let downstream = client
                .query(
                    "SELECT application_name, state, sync_state, flush_lsn::text, replay_lsn::text FROM pg_stat_replication",
                    &[],
                )
                .await
                .map_err(q)?
                .iter()
                .map(|r| Downstream {
                    application_name: r.get::<_, Option<String>>(0).unwrap_or_default(),
                    state: r.get::<_, Option<String>>(1).unwrap_or_default(),
                    sync_state: r.get::<_, Option<String>>(2).unwrap_or_default(),
                    flush_lsn: r.get::<_, Option<String>>(3).and_then(|s| Lsn::parse(&s)),
                    replay_lsn: r.get::<_, Option<String>>(4).and_then(|s| Lsn::parse(&s)),
                })
                .collect();
            Ok(Observation {
                running: true,
                role: Some(if in_recovery { DbRole::Standby } else { DbRole::Primary }),
                timeline,
                received_lsn,
                replayed_lsn,
                // bigint in SQL: values above i64::MAX come back negative.
                system_identifier: sysid.and_then(|s| s.parse::<i64>().ok()).map(|v| v as u64),
                clean_shutdown: None,
                upstream: row.get(8),
                downstream,
                synchronous_names: synchronous.as_ref().map(|(names, _)| names.clone()),
                commits_held: synchronous.is_some_and(|(_, held)| held),
                slots,
                forks,
                read_only_default: Some(row.get::<_, String>(11) == "on"),
                promotion_signalled: self.promotion_signalled_in(in_recovery),
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Timeout { what: "querying PostgreSQL".into(), after: timeout }),
        }
    }

    /// Asks the rewind source for a checkpoint, so that its control file
    /// names its current timeline (see `promote`).
    async fn checkpoint_source(&self, source: &Upstream, timeout: Duration) -> Result<(), DbError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&source.host)
            .port(source.port)
            .user(&self.cfg.superuser)
            .password(&self.cfg.superuser_password)
            .dbname("postgres")
            .application_name("haraft")
            .connect_timeout(timeout);
        let work = async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| DbError::query(&e))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client.batch_execute("CHECKPOINT").await.map_err(|e| DbError::query(&e))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Timeout { what: format!("a checkpoint on {}", source.name), after: timeout }),
        }
    }

    /// Finishes crash recovery of a stopped, uncleanly shut down directory
    /// with a single-user server, so that pg_rewind accepts it.
    async fn finish_crash_recovery(&self, timeout: Duration) -> Result<(), DbError> {
        // Single-user mode refuses standby mode.
        for signal in ["standby.signal", "recovery.signal"] {
            let p = self.cfg.data_dir.join(signal);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
            }
        }
        let data = self.cfg.data_dir.display().to_string();
        let args = ["--single", "-D", &data, "-c", "archive_mode=off", "-c", "hot_standby=off", "postgres"];
        exec::run(&self.bin("postgres"), args, &[], self.cfg.run_as, timeout).await.map(|_| ())
    }

    /// Removes everything inside the data directory (the directory stays:
    /// it may be a mount point).
    fn clear_data_dir(&self) -> Result<(), DbError> {
        for entry in std::fs::read_dir(&self.cfg.data_dir).map_err(|e| io_err(&self.cfg.data_dir, e))? {
            let path = entry.map_err(|e| io_err(&self.cfg.data_dir, e))?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }

    /// Says that the data directory is a copy a rebuild is making: present
    /// from before the copy starts until it is complete.
    fn rebuild_marker(&self) -> PathBuf {
        self.cfg.state_dir.join("rebuild-in-progress")
    }

    /// Moves the data directory aside (for a rebuild) and prunes old ones.
    fn set_aside(&self, epoch: Epoch) -> Result<Option<PathBuf>, DbError> {
        if !self.cfg.data_dir.exists() {
            return Ok(None);
        }
        let aside_root = self.cfg.state_dir.join("aside");
        std::fs::create_dir_all(&aside_root).map_err(|e| io_err(&aside_root, e))?;
        let mut n = 0;
        let target = loop {
            let candidate = aside_root.join(format!("epoch{:08}-{n}", epoch.0));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        match std::fs::rename(&self.cfg.data_dir, &target) {
            Ok(()) => {}
            // The data directory is a mount point or on another filesystem
            // than the state directory (a dedicated volume, as production
            // often has): it cannot be moved aside, and copying it could
            // need as much space again. Its contents are removed instead.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::EBUSY)) => {
                tracing::warn!(
                    data_dir = %self.cfg.data_dir.display(),
                    "the data directory is a mount point or on another filesystem than {}: its contents are removed, not kept aside",
                    aside_root.display()
                );
                self.clear_data_dir()?;
                return Ok(None);
            }
            Err(e) => return Err(io_err(&self.cfg.data_dir, e)),
        }
        let mut kept: Vec<PathBuf> = std::fs::read_dir(&aside_root)
            .map_err(|e| io_err(&aside_root, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        kept.sort();
        while kept.len() > self.cfg.keep_aside {
            let oldest = kept.remove(0);
            std::fs::remove_dir_all(&oldest).map_err(|e| io_err(&oldest, e))?;
        }
        Ok(Some(target))
    }
}

impl Database for Postgres {
    async fn observe(&self, timeout: Duration) -> Result<Observation, DbError> {
        if !self.has_data() {
            return Ok(Observation {
                running: false,
                role: None,
                timeline: None,
                received_lsn: None,
                replayed_lsn: None,
                system_identifier: None,
                clean_shutdown: None,
                upstream: None,
                downstream: Vec::new(),
                synchronous_names: None,
                slots: None,
                forks: None,
                read_only_default: None,
                promotion_signalled: false,
                commits_held: false,
            });
        }
        if self.is_running(timeout).await? {
            return match self.query_running(timeout).await {
                Err(DbError::NotAcceptingConnections(why)) if self.cfg.data_dir.join("standby.signal").exists() => {
                    self.recovering_standby(&why, timeout).await
                }
                other => other,
            };
        }
        let c = self.controldata(timeout).await?;
        let standby = self.cfg.data_dir.join("standby.signal").exists();
        Ok(self.seen_through_control_file(&c, standby))
    }

    async fn bootstrap(&self, epoch: Epoch, timeout: Duration) -> Result<u64, DbError> {
        self.prepare_state_dir()?;
        self.guard.authorise(epoch)?;
        if self.has_data() {
            return Err(DbError::Unexpected(format!(
                "bootstrap refused: {} already holds a database; haraft never initializes over data",
                self.cfg.data_dir.display()
            )));
        }
        self.make_dir(&self.cfg.data_dir)?;
        let pwfile = self.cfg.state_dir.join("initdb.pw");
        self.write_file(&pwfile, &format!("{}\n", self.cfg.superuser_password))?;
        let data = self.cfg.data_dir.display().to_string();
        let pw = pwfile.display().to_string();
        let user = format!("--username={}", self.cfg.superuser);
        let pwarg = format!("--pwfile={pw}");
        let locale = format!("--locale={}", self.cfg.initdb_locale);
        let encoding = format!("--encoding={}", self.cfg.initdb_encoding);
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
        ];
        let result = exec::run(&self.bin("initdb"), args, &[("LC_ALL", "C")], self.cfg.run_as, timeout).await;
        let _ = std::fs::remove_file(&pwfile);
        result?;
        let hba = format!(
            "# Written by haraft at bootstrap.\n\
             local all all peer\n\
             host all all 0.0.0.0/0 scram-sha-256\n\
             host all all ::/0 scram-sha-256\n\
             host replication {0} 0.0.0.0/0 scram-sha-256\n\
             host replication {0} ::/0 scram-sha-256\n",
            quote_ident(&self.cfg.replication_user)
        );
        self.write_file(&self.cfg.data_dir.join("pg_hba.conf"), &hba)?;
        let conf = self.cfg.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|e| io_err(&conf, e))?;
        text.push_str(
            "\n# haraft's settings (replication, rewind, role) come last.\ninclude_if_exists = 'haraft.conf'\n",
        );
        self.write_file(&conf, &text)?;
        let system_id = self.controldata(timeout).await?.system_identifier;
        self.expect_system_identifier(system_id);
        self.start_primary(epoch, timeout).await?;
        let client = self.connect(timeout).await?;
        let sql = format!(
            "CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {}",
            quote_ident(&self.cfg.replication_user),
            quote(&self.replication_password())
        );
        client.batch_execute(&sql).await.map_err(|e| DbError::query(&e))?;
        Ok(system_id)
    }

    async fn start_primary(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.prepare_state_dir()?;
        self.guard.authorise(epoch)?;
        self.check_identity(timeout).await?;
        self.write_settings(false, true)?;
        self.pg_ctl_start(timeout).await
    }

    async fn start_standby(&self, upstream: Option<&Upstream>, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.prepare_state_dir()?;
        self.guard.authorise(epoch)?;
        self.check_identity(timeout).await?;
        self.settings.lock().expect("never poisoned").upstream = upstream.cloned();
        self.write_settings(true, false)?;
        self.pg_ctl_start(timeout).await
    }

    async fn follow(&self, upstream: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.guard.authorise(epoch)?;
        self.settings.lock().expect("never poisoned").upstream = Some(upstream.clone());
        self.write_settings(true, false)?;
        // primary_conninfo is reloadable since PostgreSQL 13.
        self.reload(timeout).await
    }

    async fn promote(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.guard.authorise(epoch)?;
        // Read-write by default from the moment it leaves recovery (a
        // standby is read-only whatever the setting says): the reload is
        // taken before the promotion, not waited for after it.
        self.write_settings(true, true)?;
        self.reload(timeout).await?;
        let data = self.cfg.data_dir.display().to_string();
        exec::run(
            &self.bin("pg_ctl"),
            ["promote", "-D", &data, "-w", "-t", &secs(timeout)],
            &[],
            self.cfg.run_as,
            timeout + Duration::from_secs(2),
        )
        .await?;
        // pg_rewind (PostgreSQL 15) reads the source's timeline from its
        // control file, which promotion updates only at the next
        // checkpoint: without this one, a former primary rewound soon after
        // would be told "no rewind required" and could not follow.
        let client = self.connect(timeout).await?;
        client.batch_execute("CHECKPOINT").await.map_err(|e| DbError::query(&e))?;
        // Promoted: the next start must be as primary.
        self.write_settings(false, true)
    }

    async fn stop(&self, mode: StopMode, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        // Never refused on epoch: fencing must always be able to stop.
        tracing::info!(%epoch, ?mode, data_dir = %self.cfg.data_dir.display(), "stopping PostgreSQL");
        if !self.is_running(timeout).await? {
            return Ok(());
        }
        // Whoever starts it next, outside haraft, gets a read-only server.
        // Best effort: a full disk must not keep fencing from stopping it.
        if let Err(e) = self.write_settings(self.cfg.data_dir.join("standby.signal").exists(), false) {
            tracing::warn!("stopping PostgreSQL without making its settings read-only first: {e}");
        }
        let data = self.cfg.data_dir.display().to_string();
        let m = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        exec::run(
            &self.bin("pg_ctl"),
            ["stop", "-D", &data, "-m", m, "-w", "-t", &secs(timeout)],
            &[],
            self.cfg.run_as,
            timeout + Duration::from_secs(2),
        )
        .await
        .map(|_| ())
    }

    async fn rewind(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<RewindReport, DbError> {
        self.prepare_state_dir()?;
        self.guard.authorise(epoch)?;
        self.check_identity(timeout).await?;
        if self.is_running(timeout).await? {
            return Err(DbError::Unexpected("rewind refused: PostgreSQL is running; stop it first".into()));
        }
        if !self.controldata(timeout).await?.state.clean() {
            self.finish_crash_recovery(timeout).await?;
        }
        self.checkpoint_source(source, timeout).await?;
        let data = format!("--target-pgdata={}", self.cfg.data_dir.display());
        let server = format!(
            "--source-server=host={} port={} user={} dbname=postgres connect_timeout=5",
            source.host, source.port, self.cfg.superuser
        );
        let passfile = self.passfile().display().to_string();
        let out = exec::run(
            &self.bin("pg_rewind"),
            [data.as_str(), server.as_str()],
            &[("PGPASSFILE", &passfile), ("LC_ALL", "C")],
            self.cfg.run_as,
            timeout,
        )
        .await?;
        let text = format!("{}\n{}", out.stdout, out.stderr);
        // "servers diverged at WAL location 0/3000148 on timeline 1"
        let mut report = RewindReport { diverged_at: None, diverged_timeline: None };
        if let Some(rest) = text.split("servers diverged at WAL location ").nth(1) {
            let mut words = rest.split_whitespace();
            report.diverged_at = words.next().and_then(Lsn::parse);
            report.diverged_timeline = words.nth(2).and_then(|t| t.trim_end_matches('.').parse().ok()).map(TimelineId);
        }
        self.settings.lock().expect("never poisoned").upstream = Some(source.clone());
        // pg_rewind copied the source's configuration: make it ours again.
        self.write_settings(true, false)?;
        Ok(report)
    }

    async fn rebuild(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.prepare_state_dir()?;
        self.guard.authorise(epoch)?;
        if self.is_running(timeout).await? {
            self.stop(StopMode::Immediate, epoch, timeout).await?;
        }
        // A postmaster killed -9 left its shared memory segment, which only
        // a start in this same directory would have removed.
        self.release_dead_servers_shmem().await;
        let marker = self.rebuild_marker();
        if marker.exists() && self.cfg.data_dir.exists() {
            // What is there is an earlier rebuild's unfinished copy: it is
            // removed, never kept aside, so repeated failures cannot push
            // the real former data directory out of the kept ones.
            tracing::info!(data_dir = %self.cfg.data_dir.display(), "removing an unfinished copy of an earlier rebuild");
            self.clear_data_dir()?;
        } else if let Some(aside) = self.set_aside(epoch)? {
            tracing::info!(aside = %aside.display(), "old data directory kept aside");
        }
        self.write_file(&marker, &format!("{}\n", self.cfg.data_dir.display()))?;
        self.make_dir(&self.cfg.data_dir)?;
        let data = self.cfg.data_dir.display().to_string();
        let port = source.port.to_string();
        let passfile = self.passfile().display().to_string();
        let args = [
            "-D",
            &data,
            "-h",
            &source.host,
            "-p",
            &port,
            "-U",
            &self.cfg.replication_user,
            "-X",
            "stream",
            "-c",
            "fast",
            "-w",
        ];
        exec::run(&self.bin("pg_basebackup"), args, &[("PGPASSFILE", &passfile)], self.cfg.run_as, timeout).await?;
        self.settings.lock().expect("never poisoned").upstream = Some(source.clone());
        self.write_settings(true, false)?;
        std::fs::remove_file(&marker).map_err(|e| io_err(&marker, e))
    }

    async fn set_synchronous_standbys(&self, names: &[String], epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.guard.authorise(epoch)?;
        self.settings.lock().expect("never poisoned").synchronous = names.to_vec();
        let standby = self.cfg.data_dir.join("standby.signal").exists();
        // Only the lease holder of `epoch` sets them: its primary stays
        // read-write.
        self.write_settings(standby, !standby)?;
        if self.is_running(timeout).await? { self.reload(timeout).await } else { Ok(()) }
    }

    async fn set_replication_slots(&self, slots: &[String], epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.guard.authorise(epoch)?;
        let client = self.connect(timeout).await?;
        let q = |e: tokio_postgres::Error| DbError::query(&e);
        let work = async {
            let existing = client
                .query(
                    "SELECT slot_name::text, active FROM pg_replication_slots
                      WHERE slot_type = 'physical' AND slot_name LIKE 'haraft\\_%'",
                    &[],
                )
                .await
                .map_err(q)?;
            for row in &existing {
                let (name, active): (String, bool) = (row.get(0), row.get(1));
                if !slots.contains(&name) && !active {
                    client.execute("SELECT pg_drop_replication_slot($1)", &[&name]).await.map_err(q)?;
                }
            }
            for name in slots {
                if !existing.iter().any(|r| r.get::<_, String>(0) == *name) {
                    client.execute("SELECT pg_create_physical_replication_slot($1, true)", &[name]).await.map_err(q)?;
                }
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Timeout { what: "setting replication slots".into(), after: timeout }),
        }
    }

    async fn reload(&self, timeout: Duration) -> Result<(), DbError> {
        let data = self.cfg.data_dir.display().to_string();
        exec::run(&self.bin("pg_ctl"), ["reload", "-D", &data], &[], self.cfg.run_as, timeout).await.map(|_| ())
    }

    async fn set_read_only(&self, read_only: bool, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        if !read_only {
            self.guard.authorise(epoch)?;
        }
        if !self.has_data() {
            return Ok(());
        }
        let standby = self.cfg.data_dir.join("standby.signal").exists();
        self.write_settings(standby, !read_only)?;
        if self.is_running(timeout).await? { self.reload(timeout).await } else { Ok(()) }
    }

    async fn hold_commits(&self, held: bool, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        if !held {
            self.guard.authorise(epoch)?;
        }
        if !self.has_data() || self.cfg.data_dir.join("standby.signal").exists() {
            return Ok(());
        }
        let writable = {
            let mut settings = self.settings.lock().expect("never poisoned");
            settings.commits_held = held;
            settings.writable
        };
        self.write_settings(false, writable)?;
        if self.is_running(timeout).await? { self.reload(timeout).await } else { Ok(()) }
    }

    async fn end_of_wal(&self, timeout: Duration) -> Result<Option<Lsn>, DbError> {
        let pg_wal = self.cfg.data_dir.join("pg_wal");
        let segments = crate::wal::segments_newest_first(&pg_wal).map_err(|e| io_err(&pg_wal, e))?;
        let waldump = |args: Vec<std::ffi::OsString>| async move {
            // pg_waldump stops with an error where the valid WAL ends.
            match exec::run(&self.bin("pg_waldump"), args, &[("LC_ALL", "C")], self.cfg.run_as, timeout).await {
                Ok(out) => Ok((out.stdout, out.stderr)),
                Err(DbError::CommandFailed { stderr_tail, .. }) => Ok((String::new(), stderr_tail)),
                Err(e) => Err(e),
            }
        };
        for segment in segments {
            let (_, stderr) = waldump(vec!["--quiet".into(), segment.clone().into()]).await?;
            let Some((last, next)) = crate::wal::waldump_stop(&stderr) else { continue };
            if next.is_some() {
                return Ok(next);
            }
            // The reason names no position: the end of that last record.
            let timeline = crate::wal::segment_timeline(&segment).unwrap_or(1).to_string();
            let args = ["--path".into(), pg_wal.clone().into(), "--timeline".into(), timeline.into()];
            let mut args: Vec<std::ffi::OsString> = args.into();
            args.extend(["--start".into(), last.to_string().into(), "--limit".into(), "1".into()]);
            let (stdout, _) = waldump(args).await?;
            return Ok(Some(crate::wal::record_end(&stdout).unwrap_or(last)));
        }
        Ok(None)
    }

    async fn commits_between(
        &self,
        timeline: TimelineId,
        from: Lsn,
        to: Lsn,
        timeout: Duration,
    ) -> Result<u64, DbError> {
        let pg_wal = self.cfg.data_dir.join("pg_wal");
        let args: Vec<std::ffi::OsString> = vec![
            "--path".into(),
            pg_wal.into(),
            "--timeline".into(),
            timeline.0.to_string().into(),
            "--start".into(),
            from.to_string().into(),
            "--end".into(),
            to.to_string().into(),
            "--rmgr=Transaction".into(),
        ];
        // `to` must lie within the valid WAL (`end_of_wal`): past it
        // pg_waldump fails and nothing is counted.
        let out = exec::run(&self.bin("pg_waldump"), args, &[("LC_ALL", "C")], self.cfg.run_as, timeout).await?;
        Ok(crate::wal::commit_records(&out.stdout))
    }

    fn promotion_signalled(&self) -> bool {
        self.promotion_signalled_in(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_names_require_every_member_of_the_set() {
        assert_eq!(synchronous_standby_names(&[], false), "");
        assert_eq!(synchronous_standby_names(&["node2".into()], false), "FIRST 1 (\"node2\")");
        assert_eq!(synchronous_standby_names(&["a".into(), "b\"c".into()], false), "FIRST 2 (\"a\", \"b\"\"c\")");
        assert_eq!(synchronous_standby_names(&[], true), "FIRST 1 (\"haraft commit guard\")");
        assert_eq!(synchronous_standby_names(&["node2".into()], true), "FIRST 2 (\"node2\", \"haraft commit guard\")");
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
        for names in [vec![], vec!["node2".to_string()], vec!["a".to_string(), "b\"c".to_string()]] {
            assert_eq!(parse_synchronous_standby_names(&synchronous_standby_names(&names, false)), Some(names.clone()));
            let held =
                parse_synchronous_standby_names(&synchronous_standby_names(&names, true)).map(without_commit_guard);
            assert_eq!(held, Some((names, true)), "the guard is told apart from the members");
        }
        assert_eq!(parse_synchronous_standby_names("*"), None);
        assert_eq!(parse_synchronous_standby_names("ANY 1 (a, b)"), None);
        assert_eq!(parse_synchronous_standby_names("FIRST 2 (\"a\")"), None);
    }

    #[test]
    fn values_are_quoted_for_postgresql_conf() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote("a\\b"), "'a\\\\b'");
    }
}
