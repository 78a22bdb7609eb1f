//! The Dameng (DM8) adapter: `dminit`, `dmserver` (spawned detached, in
//! MOUNT), `disql` (one statement per call: modes, OPEN, views, online
//! backup, shutdown) and `dmrman` (restore), every call with an explicit
//! timeout, as the database's OS user. Behaviour follows DM8 as its
//! public pages show it (/work/shared/reference/dameng.md); tested on
//! `dm-emul` (crates/testkit/src/bin/dm_emul: its contract and where it
//! cannot be faithful).
//!
//! The data directory is the instance directory INST (holding `dm.ini`):
//! `dminit PATH=<parent> DB_NAME=<basename>`, INSTANCE_NAME = the member
//! name, PORT_NUM = the configured port, SYSDBA's password = the
//! superuser password (the superuser is SYSDBA). The replication user and
//! password, `listen_addresses`, the socket directory and initdb's locale
//! are not used: DM's redo travels over its MAL system, which has no
//! login.
//!
//! What differs from the PostgreSQL family, and how haraft's rules still
//! hold:
//! - **Roles are modes.** A server haraft starts is `dmserver INST/dm.ini
//!   mount`; haraft then sets the mode in MOUNT (`ALTER_MODE_STATUS` 1,
//!   `ALTER DATABASE PRIMARY|STANDBY`, `ALTER_MODE_STATUS` 0 again, so
//!   that nobody else changes a mode by hand, as DM's watcher has it) and
//!   opens it (`ALTER DATABASE OPEN FORCE`). Only an OPEN server is
//!   observed as running: one in MOUNT serves nothing (no connection
//!   works), and the next start adopts it. A stopped server's role is the
//!   mode haraft last gave it (`dameng-mode` in the state directory).
//! - **No read-only default** (`read_only_default: None`): what replaces
//!   it is DM's own rule that PRIMARY and STANDBY always start to MOUNT,
//!   where no session can connect. A server the fence killed and an
//!   operator restarts by hand comes back serving nobody; only haraft
//!   opens it, after the epoch guard. A STANDBY refuses writes. A mode
//!   change by hand needs `ALTER_MODE_STATUS` set back to 1 first.
//! - **No timelines.** DM's redo has no history of where a primary's
//!   reign ended. Every observation says timeline 1 and reports no
//!   timeline history (`forks: None`, so the cluster's stays empty and no
//!   standby is ever seen as diverged by it). What keeps core's rejoin
//!   rules safe: a stopped former primary (recorded mode PRIMARY) is always
//!   "rewound", and the DM rewind is a rebuild; a standby that cannot
//!   stream from the new primary (one that received redo the new primary
//!   never had) is stopped after `stream_timeout_ms` and then "rewound",
//!   that is rebuilt too. A diverged server is never followed blindly.
//! - **Rewind is rebuild** (`rewind`): DM has no pg_rewind. The old
//!   directory is kept aside (nothing is discarded), and the report names
//!   no divergence (`diverged_at: None`).
//! - **System identifier**: DM's DB_MAGIC differs between a primary and
//!   its standbys (`dmrman ... UPDATE DB_MAGIC` is part of making one) and
//!   dm-emul exposes none; haraft draws its own number at bootstrap (the
//!   recipe of PostgreSQL's initdb: time and PID, 63 bits) and keeps it in
//!   the database (`HARAFT_IDENTITY`, one row: it travels with every
//!   backup and copy) and in `INST/haraft-identity` (read while stopped;
//!   a rebuild writes the source's, read from its table). A DM database
//!   haraft did not create has no identity and is not adopted.
//! - **Not available for DM yet**: synchronous standbys
//!   (`synchronous_names: None`; asking for some is an error), the commit
//!   guard (`hold_commits` holds nothing: the fence at the deadline is the
//!   only bound), replication slots (DM keeps redo for its archives
//!   itself), reading the redo of a stopped server (`end_of_wal` is
//!   `None`, `commits_between` an error), promotion signals (a mode
//!   change is a statement, not a file).
//! - **Fencing**: dmserver keeps no `postmaster.pid`; the adapter records
//!   the PID of the dmserver it spawns in `INST/haraft-server.pid`
//!   (`procs::SERVER_PID_FILE`), where the fence finds it by the data
//!   directory (and checks it by dmserver's command line, which names
//!   INST/dm.ini).
//!
//! What a real DM deployment needs beyond the emulation: dmserver's
//! network ports open between the hosts (MAL port = client port + 1,
//! watcher port + 2, by haraft's convention; `ini::mal_port`); the online
//! backup a rebuild takes is written by the *source's* dmserver into a
//! directory under this member's state directory, so on separate hosts
//! that path must be shared storage (haraft does not copy backup sets
//! yet); DM's watcher (dmwatcher) is not run: the archive recovery it does
//! is not done, a standby that falls out of its archive is rebuilt
//! instead; disql takes SYSDBA's password as an argument (visible in the
//! process list of that host), the only form dm-emul accepts.

pub mod disql;
pub mod ini;
mod rejoin;
mod server;
mod switchover;

use crate::local::{Local, PgConfig, io_err};
use crate::{Database, DbError, DbRole, DbStatus, Replica, RewindReport, StopMode, Upstream, exec};
use disql::Table;
use haraft_core::dm_switchover::DmAction;
use haraft_core::{Epoch, Lsn, TimelineId};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The tools the adapter runs; `bin_dir` must hold them.
pub const TOOLS: &[&str] = &["dminit", "dmserver", "disql", "dmrman"];

/// The table haraft keeps its identity number in (see the module doc).
const IDENTITY_TABLE: &str = "HARAFT_IDENTITY";
const IDENTITY_FILE: &str = "haraft-identity";

/// How often a start or stop looks again: disql answers in milliseconds.
const POLL: Duration = Duration::from_millis(100);

/// The standby's look at its upstream (is the realtime archive to it
/// VALID?) is bounded apart from the observation's timeout: an upstream
/// that does not answer means "not streaming", never a failed observation.
const UPSTREAM_LOOK: Duration = Duration::from_secs(2);

/// DM's instance state, from `V$INSTANCE`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Instance {
    mode: String,
    status: String,
}

impl Instance {
    fn open(&self) -> bool {
        self.status == "OPEN"
    }

    /// NORMAL (what dminit makes) serves writes like PRIMARY.
    fn role(&self) -> DbRole {
        if self.mode == "STANDBY" { DbRole::Standby } else { DbRole::Primary }
    }
}

pub struct Dameng {
    l: Local,
}

impl Dameng {
    pub fn new(cfg: PgConfig) -> Dameng {
        Dameng { l: Local::new(cfg) }
    }

    pub fn config(&self) -> &PgConfig {
        &self.l.cfg
    }

    fn data_dir(&self) -> &Path {
        &self.l.cfg.data_dir
    }

    fn dm_ini(&self) -> PathBuf {
        self.data_dir().join("dm.ini")
    }

    fn has_data(&self) -> bool {
        self.dm_ini().is_file()
    }

    fn state_file(&self, name: &str) -> PathBuf {
        self.l.cfg.state_dir.join(name)
    }

    fn read_state(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.state_file(name)).ok().map(|t| t.trim().to_string())
    }

    fn write_state(&self, name: &str, value: &str) -> Result<(), DbError> {
        self.l.write_file(&self.state_file(name), &format!("{value}\n"))
    }

    /// The mode haraft last started (or promoted) this server in.
    fn recorded_standby(&self) -> bool {
        self.read_state("dameng-mode").as_deref() == Some("standby")
    }

    fn record_mode(&self, standby: bool) -> Result<(), DbError> {
        self.write_state("dameng-mode", if standby { "standby" } else { "primary" })
    }

    /// `clean` after a clean stop (or a restore), `running` from a start
    /// on: a server that died without haraft stopping it reads unclean.
    fn record_stop(&self, clean: bool) -> Result<(), DbError> {
        self.write_state("dameng-stop", if clean { "clean" } else { "running" })
    }

    /// The last position observed (`V$RLOG`): a stopped server's position,
    /// a lower bound when it was not stopped cleanly through haraft.
    fn recorded_position(&self) -> Option<Lsn> {
        self.read_state("dameng-position")?.parse().ok().map(Lsn)
    }

    fn record_position(&self, lsn: Lsn) {
        if self.recorded_position() != Some(lsn)
            && let Err(e) = self.write_state("dameng-position", &lsn.0.to_string())
        {
            tracing::warn!("cannot record DM's position: {e}");
        }
    }

    /// Another engine's data directory is never touched.
    fn check_engine(&self) -> Result<(), DbError> {
        let d = self.data_dir();
        if d.join("PG_VERSION").exists() {
            return Err(DbError::OtherEngine {
                path: d.display().to_string(),
                found: "the PostgreSQL family (PG_VERSION, no dm.ini)",
                expected: "Dameng DM8",
            });
        }
        Ok(())
    }

    fn identity(&self) -> Option<u64> {
        std::fs::read_to_string(self.data_dir().join(IDENTITY_FILE)).ok()?.trim().parse().ok()
    }

    /// Refuses a data directory of another database (one without haraft's
    /// identity reads as 0).
    fn check_identity(&self) -> Result<(), DbError> {
        let Some(expected) = *self.l.expected_system_id.lock().expect("never poisoned") else { return Ok(()) };
        if !self.has_data() {
            return Ok(());
        }
        let found = self.identity().unwrap_or(0);
        if found != expected {
            return Err(DbError::ForeignDataDir { path: self.data_dir().display().to_string(), found, expected });
        }
        Ok(())
    }

    fn server_pid(&self) -> Option<i32> {
        crate::procs::recorded_server_pid(self.data_dir())
    }

    fn prepare_state_dir(&self) -> Result<(), DbError> {
        self.l.make_dir(&self.l.cfg.state_dir)
    }

    /// One statement through disql at `host:port` as SYSDBA; its stdout.
    /// A refused connection is `NotAcceptingConnections`.
    async fn disql_at(&self, host: &str, port: u16, stmt: &str, timeout: Duration) -> Result<String, DbError> {
        let c = &self.l.cfg;
        let logon = format!("{}/{}@{host}:{port}", c.superuser, c.superuser_password);
        match exec::run(&self.l.bin("disql"), ["-S", &logon, "-e", stmt], &[], c.run_as, timeout).await {
            Ok(out) => Ok(out.stdout),
            Err(DbError::CommandFailed { stderr_tail, code, .. }) => match disql::error(&stderr_tail) {
                Some(e) if e.code == disql::CONNECT_FAILED => {
                    Err(DbError::NotAcceptingConnections(format!("DM at {host}:{port}: [{}]:{}", e.code, e.message)))
                }
                Some(e) => Err(DbError::Query(format!("{stmt}: [{}]:{}", e.code, e.message))),
                None => Err(DbError::CommandFailed { program: "disql".into(), code, stderr_tail }),
            },
            Err(e) => Err(e),
        }
    }

    async fn disql(&self, stmt: &str, timeout: Duration) -> Result<String, DbError> {
        self.disql_at(&self.l.cfg.host, self.l.cfg.port, stmt, timeout).await
    }

    async fn table_at(&self, host: &str, port: u16, stmt: &str, timeout: Duration) -> Result<Table, DbError> {
        let out = self.disql_at(host, port, stmt, timeout).await?;
        disql::parse_table(&out).map_err(|e| DbError::Unexpected(format!("{stmt}: {e}")))
    }

    async fn table(&self, stmt: &str, timeout: Duration) -> Result<Table, DbError> {
        self.table_at(&self.l.cfg.host, self.l.cfg.port, stmt, timeout).await
    }

    async fn instance(&self, timeout: Duration) -> Result<Instance, DbError> {
        let t = self.table("SELECT MODE$, STATUS$ FROM V$INSTANCE", timeout).await?;
        match (t.value(0, "MODE$"), t.value(0, "STATUS$")) {
            (Some(mode), Some(status)) => Ok(Instance { mode: mode.to_string(), status: status.to_string() }),
            _ => Err(DbError::Unexpected(format!("V$INSTANCE without MODE$ and STATUS$: {t:?}"))),
        }
    }

    /// A mode change, in MOUNT, the way DM's watcher makes one.
    async fn set_mode(&self, mode: &str, timeout: Duration) -> Result<(), DbError> {
        self.disql("SP_SET_PARA_VALUE(1, 'ALTER_MODE_STATUS', 1)", timeout).await?;
        self.disql(&format!("ALTER DATABASE {mode}"), timeout).await?;
        self.disql("SP_SET_PARA_VALUE(1, 'ALTER_MODE_STATUS', 0)", timeout).await?;
        Ok(())
    }

    /// `dminit` into the data directory (created 0700 for the database
    /// user when missing; its parent must exist).
    async fn dminit(&self, timeout: Duration) -> Result<(), DbError> {
        let c = &self.l.cfg;
        let (Some(parent), Some(name)) = (c.data_dir.parent(), c.data_dir.file_name()) else {
            return Err(DbError::Unexpected(format!("{}: not a directory path dminit can use", c.data_dir.display())));
        };
        self.l.make_dir(&c.data_dir)?;
        let args = [
            format!("PATH={}", parent.display()),
            format!("DB_NAME={}", name.to_string_lossy()),
            format!("INSTANCE_NAME={}", c.application_name),
            format!("PORT_NUM={}", c.port),
            format!("SYSDBA_PWD={}", c.superuser_password),
        ];
        exec::run(&self.l.bin("dminit"), args, &[], c.run_as, timeout).await?;
        Ok(())
    }

    /// dmmal.ini and dmarch.ini for this member's role: a standby names
    /// its upstream as its only REALTIME archive (dm-emul's standby
    /// streams from it), a primary every peer; dm.ini reads both.
    fn write_peers_config(&self, upstream: Option<&Upstream>) -> Result<(), DbError> {
        let c = &self.l.cfg;
        let peers = self.l.settings.lock().expect("never poisoned").peers.clone();
        let me = Upstream { name: c.application_name.clone(), host: c.host.clone(), port: c.port };
        let mut others: Vec<&Upstream> = peers.iter().collect();
        others.extend(upstream);
        let realtime: Vec<&str> = match upstream {
            Some(up) => vec![up.name.as_str()],
            None => peers.iter().map(|p| p.name.as_str()).collect(),
        };
        let arch_dir = c.data_dir.join("arch");
        self.l.make_dir(&arch_dir)?;
        self.l.write_file(&c.data_dir.join("dmmal.ini"), &ini::dmmal(&me, &others))?;
        self.l.write_file(&c.data_dir.join("dmarch.ini"), &ini::dmarch(&realtime, &arch_dir))?;
        let text = std::fs::read_to_string(self.dm_ini()).map_err(|e| io_err(&self.dm_ini(), e))?;
        let text = ini::set_key(&ini::set_key(&text, "MAL_INI", "1"), "ARCH_INI", "1");
        self.l.write_file(&self.dm_ini(), &text)
    }

    /// The upstream this standby's files name (survives an agent restart).
    fn configured_upstream(&self) -> Option<Upstream> {
        let read = |f: &str| std::fs::read_to_string(self.data_dir().join(f)).ok();
        ini::upstream(&read("dmmal.ini")?, &read("dmarch.ini")?)
    }

    /// Whether the upstream's realtime archive to this instance is VALID
    /// (DM's standby has no view of its own receiving).
    async fn streams_from(&self, up: &Upstream) -> bool {
        let stmt = "SELECT ARCH_TYPE, ARCH_STATUS, ARCH_DEST FROM V$ARCH_STATUS";
        let Ok(t) = self.table_at(&up.host, up.port, stmt, UPSTREAM_LOOK).await else { return false };
        (0..t.rows.len()).any(|r| {
            t.value(r, "ARCH_TYPE") == Some("REALTIME")
                && t.value(r, "ARCH_DEST") == Some(self.l.cfg.application_name.as_str())
                && t.value(r, "ARCH_STATUS") == Some("VALID")
        })
    }

    async fn observe_open(&self, instance: &Instance, timeout: Duration) -> Result<DbStatus, DbError> {
        let rlog = self.table("SELECT FILE_LSN, FLUSH_LSN, CUR_LSN FROM V$RLOG", timeout).await?;
        let lsn = |c: &str| rlog.number(0, c).map(Lsn);
        let role = instance.role();
        let mut status = DbStatus {
            has_data: true,
            running: true,
            role: Some(role),
            timeline: Some(TimelineId(1)),
            system_identifier: self.identity(),
            ..DbStatus::default()
        };
        match role {
            DbRole::Primary => {
                (status.lsn, status.replayed_lsn) = (lsn("CUR_LSN"), lsn("CUR_LSN"));
                let stmt = "SELECT ARCH_TYPE, ARCH_STATUS, ARCH_DEST FROM V$ARCH_STATUS";
                let arch = self.table(stmt, timeout).await?;
                status.replicas = (0..arch.rows.len())
                    .filter(|r| arch.value(*r, "ARCH_TYPE") == Some("REALTIME"))
                    .map(|r| Replica {
                        name: arch.value(r, "ARCH_DEST").unwrap_or_default().to_string(),
                        streaming: arch.value(r, "ARCH_STATUS") == Some("VALID"),
                        sync: false,
                    })
                    .collect();
            }
            DbRole::Standby => {
                (status.lsn, status.replayed_lsn) = (lsn("FLUSH_LSN"), lsn("FILE_LSN"));
                if let Some(up) = self.configured_upstream()
                    && self.streams_from(&up).await
                {
                    status.streaming_from = Some(format!("{}:{}", up.host, up.port));
                }
            }
        }
        if let Some(l) = status.lsn {
            self.record_position(l);
        }
        Ok(status)
    }

    /// A server that does not serve (stopped, starting, or in MOUNT).
    fn not_serving(&self, role: DbRole, alive: bool) -> DbStatus {
        let position = self.recorded_position();
        DbStatus {
            has_data: true,
            running: false,
            role: Some(role),
            timeline: Some(TimelineId(1)),
            lsn: position,
            replayed_lsn: position,
            system_identifier: self.identity(),
            clean_shutdown: (!alive).then(|| self.read_state("dameng-stop").as_deref() == Some("clean")),
            ..DbStatus::default()
        }
    }
}

impl Dameng {
    /// The observation, before it is marked as DM's.
    async fn observe_server(&self, timeout: Duration) -> Result<DbStatus, DbError> {
        self.check_engine()?;
        if !self.has_data() {
            return Ok(DbStatus::default());
        }
        let recorded = if self.recorded_standby() { DbRole::Standby } else { DbRole::Primary };
        if self.server_pid().is_none() {
            return Ok(self.not_serving(recorded, false));
        }
        match self.instance(timeout).await {
            // Starting: not serving yet.
            Err(DbError::NotAcceptingConnections(_)) => Ok(self.not_serving(recorded, true)),
            Err(e) => Err(e),
            Ok(i) if !i.open() => Ok(self.in_mount(&i, timeout).await),
            Ok(i) => self.observe_open(&i, timeout).await,
        }
    }
}

impl Database for Dameng {
    fn engine(&self) -> &'static str {
        "Dameng"
    }

    fn expect_system_identifier(&self, id: u64) {
        self.l.expect_system_identifier(id);
    }

    fn set_peers(&self, peers: &[Upstream]) {
        self.l.set_peers(peers);
    }

    async fn observe(&self, timeout: Duration) -> Result<DbStatus, DbError> {
        let seen = self.observe_server(timeout).await?;
        Ok(DbStatus { engine: haraft_core::Engine::Dameng, ..seen })
    }

    async fn dm_switchover_step(
        &self,
        action: DmAction,
        upstream: Option<&Upstream>,
        epoch: Epoch,
        timeout: Duration,
    ) -> Result<(), DbError> {
        self.switchover_step(action, upstream, epoch, timeout).await
    }

    async fn bootstrap(&self, epoch: Epoch, timeout: Duration) -> Result<u64, DbError> {
        self.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.check_engine()?;
        if self.has_data() {
            return Err(DbError::Unexpected(format!(
                "bootstrap refused: {} already holds a database; haraft never initializes over data",
                self.data_dir().display()
            )));
        }
        self.dminit(timeout).await?;
        let id = rejoin::new_identity();
        self.l.write_file(&self.data_dir().join(IDENTITY_FILE), &format!("{id}\n"))?;
        self.expect_system_identifier(id);
        self.start_primary(epoch, timeout).await?;
        // DDL commits by itself (disql's sessions do not autocommit DML).
        let stmt = format!("CREATE TABLE {IDENTITY_TABLE} AS SELECT CAST({id} AS BIGINT) AS ID");
        self.disql(&stmt, timeout).await?;
        Ok(id)
    }

    async fn start_primary(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.check_engine()?;
        self.check_identity()?;
        self.start(false, None, timeout).await
    }

    async fn start_standby(&self, upstream: Option<&Upstream>, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.check_engine()?;
        self.check_identity()?;
        self.l.settings.lock().expect("never poisoned").upstream = upstream.cloned();
        self.start(true, upstream, timeout).await
    }

    /// DM's primary pushes redo to the instances its dmarch.ini names, and
    /// dm-emul's standby connects to its REALTIME destination at OPEN: the
    /// standby's files are rewritten and it is reopened (MOUNT, OPEN
    /// FORCE). A real DM standby needs the new primary's dmarch.ini to
    /// name it (written at that primary's promotion from its peers).
    async fn follow(&self, upstream: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        self.l.settings.lock().expect("never poisoned").upstream = Some(upstream.clone());
        let now = self.instance(timeout).await?;
        if now.mode != "STANDBY" {
            return Err(DbError::Unexpected(format!("follow refused: DM is {}, not STANDBY", now.mode)));
        }
        self.write_peers_config(Some(upstream))?;
        if now.open() {
            self.disql("ALTER DATABASE MOUNT", timeout).await?;
        }
        self.disql("ALTER DATABASE OPEN FORCE", timeout).await.map(|_| ())
    }

    /// The seed's switchover steps for the new primary: replay what the
    /// standby kept back (`SP_APPLY_KEEP_PKG`), MOUNT, PRIMARY, OPEN FORCE.
    async fn promote(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        if self.server_pid().is_none() {
            return Err(DbError::Unexpected("promote refused: dmserver is not running".into()));
        }
        let now = self.instance(timeout).await?;
        if now.mode == "PRIMARY" && now.open() {
            return Ok(());
        }
        if now.open() {
            if now.mode == "STANDBY" {
                self.disql("SP_APPLY_KEEP_PKG()", timeout).await?;
            }
            self.disql("ALTER DATABASE MOUNT", timeout).await?;
        }
        self.l.settings.lock().expect("never poisoned").upstream = None;
        self.write_peers_config(None)?;
        if now.mode != "PRIMARY" {
            self.set_mode("PRIMARY", timeout).await?;
        }
        self.record_mode(false)?;
        self.disql("ALTER DATABASE OPEN FORCE", timeout).await.map(|_| ())
    }

    /// Fast: MOUNT first (no new redo; V$RLOG then keeps where it
    /// stopped), `SHUTDOWN IMMEDIATE`, wait for dmserver to exit (SIGTERM
    /// if disql cannot ask it: dm-emul stops on it as on SHUTDOWN).
    /// Immediate: SIGKILL of dmserver (dm-emul's PostgreSQL dies with it).
    async fn stop(&self, mode: StopMode, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        // Never refused on epoch: fencing must always be able to stop.
        tracing::info!(%epoch, ?mode, data_dir = %self.data_dir().display(), "stopping DM");
        let Some(pid) = self.server_pid() else { return Ok(()) };
        match mode {
            StopMode::Immediate => {
                // SAFETY: the PID was just checked to be this instance's dmserver.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                self.wait_exit(pid, timeout).await
            }
            StopMode::Fast => {
                if self.instance(timeout).await.is_ok_and(|i| i.open())
                    && let Err(e) = self.disql("ALTER DATABASE MOUNT", timeout).await
                {
                    tracing::warn!("stopping DM without MOUNT first: {e}");
                }
                if let Ok(t) = self.table("SELECT CUR_LSN FROM V$RLOG", timeout).await
                    && let Some(l) = t.number(0, "CUR_LSN").filter(|l| *l > 0)
                {
                    self.record_position(Lsn(l));
                }
                if let Err(e) = self.disql("SHUTDOWN IMMEDIATE", timeout).await {
                    tracing::warn!("SHUTDOWN IMMEDIATE failed ({e}): sending dmserver {pid} SIGTERM");
                    // SAFETY: the PID was just checked to be this instance's dmserver.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
                self.wait_exit(pid, timeout).await?;
                self.record_stop(true)
            }
        }
    }

    /// DM has no pg_rewind: a diverged former primary is rebuilt (see
    /// `rebuild`; its old directory is kept aside, so nothing is
    /// discarded), and the report names no divergence.
    async fn rewind(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<RewindReport, DbError> {
        self.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.check_engine()?;
        self.check_identity()?;
        self.restore_from(source, epoch, timeout).await?;
        Ok(RewindReport { diverged_at: None, diverged_timeline: None })
    }

    async fn rebuild(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        self.prepare_state_dir()?;
        self.l.guard.authorise(epoch)?;
        self.check_engine()?;
        self.restore_from(source, epoch, timeout).await
    }

    async fn set_synchronous_standbys(
        &self,
        names: &[String],
        _quorum: u32,
        epoch: Epoch,
        _timeout: Duration,
    ) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        if names.is_empty() {
            return Ok(());
        }
        Err(DbError::Unexpected(format!(
            "synchronous standbys ({}) are not supported for DM by haraft yet: set failover.synchronous_mode = off",
            names.join(", ")
        )))
    }

    /// DM keeps the redo its archives need itself: there are no slots.
    async fn set_replication_slots(&self, _slots: &[String], epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)
    }

    /// haraft changes no DM setting that a reload would apply.
    async fn reload(&self, _timeout: Duration) -> Result<(), DbError> {
        Ok(())
    }

    /// Nothing to write: DM has no read-only default; see the module doc
    /// for the rule that replaces it (PRIMARY and STANDBY start to MOUNT).
    async fn set_read_only(&self, read_only: bool, epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        if !read_only {
            self.l.guard.authorise(epoch)?;
        }
        Ok(())
    }

    /// No commit guard for DM yet: commits are not held (MOUNT would stop
    /// the service, not hold it); the fence at the deadline is the bound.
    async fn hold_commits(&self, held: bool, epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        if !held {
            self.l.guard.authorise(epoch)?;
        } else {
            tracing::warn!("DM has no commit guard in haraft: commits are not held, the fence bounds them");
        }
        Ok(())
    }

    async fn end_of_wal(&self, _timeout: Duration) -> Result<Option<Lsn>, DbError> {
        Ok(None)
    }

    async fn commits_between(
        &self,
        _timeline: TimelineId,
        _from: Lsn,
        _to: Lsn,
        _timeout: Duration,
    ) -> Result<u64, DbError> {
        Err(DbError::Unexpected("DM's redo logs cannot be read by haraft: commits cannot be counted".into()))
    }

    fn promotion_signalled(&self) -> bool {
        false
    }
}
