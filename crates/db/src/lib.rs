//! The database boundary: the [`Database`] trait (observe the local
//! database; act on it, every action carrying the epoch that authorises it
//! and an explicit timeout) and its adapters: [`postgres::Postgres`],
//! [`opengauss::OpenGauss`] and [`dameng::Dameng`], which share haraft's
//! own files about the database (`local`).
//!
//! What it must never do: decide. It reports observations and carries out
//! one action at a time; `haraft_core` chooses the action.

pub mod controldata;
pub mod dameng;
pub mod epoch_guard;
pub mod exec;
pub mod gs_ctl;
mod local;
pub mod opengauss;
pub mod pg_adopt;
pub mod pg_conf;
pub mod postgres;
pub mod procs;
mod syncfs;
pub mod wal;

use haraft_core::dm_switchover::DmAction;
use haraft_core::{Epoch, Lsn, TimelineId};
use std::future::Future;
use std::time::Duration;

pub use exec::RunAs;

/// What the local database is doing, as seen now: one type from the
/// adapter to the pure decisions.
pub use haraft_core::{DbRole, DbStatus, Replica};

/// Where to stream, rewind or rebuild from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The upstream member's name (used in logs).
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Clean: waits for sessions to end and ships all WAL to streaming
    /// standbys first.
    Fast,
    /// Fencing: no checkpoint, no waiting.
    Immediate,
}

impl Upstream {
    /// From a member name and its registered `host:port`.
    pub fn parse(name: &str, address: &str) -> Option<Upstream> {
        let (host, port) = address.rsplit_once(':')?;
        Some(Upstream { name: name.to_string(), host: host.to_string(), port: port.parse().ok()? })
    }
}

/// What pg_rewind reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewindReport {
    /// Where the two histories diverged; WAL after it was discarded here.
    pub diverged_at: Option<Lsn>,
    pub diverged_timeline: Option<TimelineId>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DbError {
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("cannot run {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("{program} failed (exit code {code:?}): {stderr_tail}")]
    CommandFailed { program: String, code: Option<i32>, stderr_tail: String },
    #[error("cannot query the database: {0}")]
    Query(String),
    /// The server is running but refuses connections for now (starting
    /// up, or a standby not yet consistent).
    #[error("the database does not accept connections yet: {0}")]
    NotAcceptingConnections(String),
    #[error("epoch {given} is older than epoch {highest} that already acted on this database: refusing a stale action")]
    StaleEpoch { given: Epoch, highest: Epoch },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(
        "data directory {path} belongs to another database (system identifier {found}, this cluster's is {expected}): \
         move it aside or point the config elsewhere; haraft left it untouched"
    )]
    ForeignDataDir { path: String, found: u64, expected: u64 },
    #[error(
        "data directory {path} was made by {found}, not {expected}: point the config at a {expected} data \
         directory (or use the section of its engine); haraft left it untouched"
    )]
    OtherEngine { path: String, found: &'static str, expected: &'static str },
    #[error("{0}")]
    Unexpected(String),
}

/// The local database, observed and acted on by the agent. Every action
/// names the epoch that authorises it: an action with an epoch older than
/// one already carried out is refused (`DbError::StaleEpoch`), except stop,
/// which fencing must always be able to do.
pub trait Database: Send + Sync + 'static {
    /// Which engine this adapter drives (for logs and refusals).
    fn engine(&self) -> &'static str;
    fn observe(&self, timeout: Duration) -> impl Future<Output = Result<DbStatus, DbError>> + Send;
    /// From now on, refuse to start, rewind or rebuild over a data
    /// directory whose system identifier differs (another cluster's data).
    fn expect_system_identifier(&self, id: u64);
    /// The other members' databases, as this member reaches them (called
    /// on every step; cheap). An engine whose primary must name its
    /// standbys (openGauss: `replconninfoN`) writes them with its next
    /// settings; PostgreSQL needs nothing.
    fn set_peers(&self, _peers: &[Upstream]) {}
    /// Create the database, configure it, start it as primary, create the
    /// replication role. Returns the new system identifier.
    fn bootstrap(&self, epoch: Epoch, timeout: Duration) -> impl Future<Output = Result<u64, DbError>> + Send;
    fn start_primary(&self, epoch: Epoch, timeout: Duration) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Start as a standby of `upstream`; with `None`, replay local WAL only.
    fn start_standby(
        &self,
        upstream: Option<&Upstream>,
        epoch: Epoch,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Point a running standby at another upstream (reload, no restart).
    fn follow(
        &self,
        upstream: &Upstream,
        epoch: Epoch,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    fn promote(&self, epoch: Epoch, timeout: Duration) -> impl Future<Output = Result<(), DbError>> + Send;
    fn stop(&self, mode: StopMode, epoch: Epoch, timeout: Duration)
    -> impl Future<Output = Result<(), DbError>> + Send;
    /// Rejoin a stopped former primary to `source`'s history, discarding
    /// what diverged (pg_rewind, `gs_ctl build -b incremental`).
    fn rewind(
        &self,
        source: &Upstream,
        epoch: Epoch,
        timeout: Duration,
    ) -> impl Future<Output = Result<RewindReport, DbError>> + Send;
    /// A new copy of `source` (base backup, `gs_ctl build -b full`).
    fn rebuild(
        &self,
        source: &Upstream,
        epoch: Epoch,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    /// `quorum` of `names` confirm each commit (all of them: `FIRST n`;
    /// fewer: `ANY k`).
    fn set_synchronous_standbys(
        &self,
        names: &[String],
        quorum: u32,
        epoch: Epoch,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Makes haraft's physical slots exactly `slots`: creates the missing
    /// ones, drops the others unless a standby is using them.
    fn set_replication_slots(
        &self,
        slots: &[String],
        epoch: Epoch,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    fn reload(&self, timeout: Duration) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Makes new transactions read-only by default (`true`), or read-write
    /// for the lease holder of `epoch` (`false`, refused on a stale
    /// epoch); a running server reloads. Read-only is never refused: like
    /// stop, it is part of fencing.
    fn set_read_only(
        &self,
        read_only: bool,
        epoch: Epoch,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    /// The commit guard: a running primary's commits wait, neither
    /// acknowledged nor refused (`true`), or go through again for the
    /// lease holder of `epoch` (`false`, refused on a stale epoch). Holding
    /// is never refused: like stop, it is part of fencing. A standby has
    /// nothing to hold.
    fn hold_commits(
        &self,
        held: bool,
        epoch: Epoch,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    /// The end of the WAL a stopped server holds on its newest timeline
    /// (where its last valid record ends); `None` when none is readable.
    fn end_of_wal(&self, timeout: Duration) -> impl Future<Output = Result<Option<Lsn>, DbError>> + Send;
    /// Transactions that committed in a stopped server's WAL of `timeline`
    /// from `from` to `to` (what a rewind is about to discard).
    fn commits_between(
        &self,
        timeline: TimelineId,
        from: Lsn,
        to: Lsn,
        timeout: Duration,
    ) -> impl Future<Output = Result<u64, DbError>> + Send;
    /// A cheap look (no query, no process) for a request to leave
    /// recovery that haraft did not make: see `promotion_signalled`.
    fn promotion_signalled(&self) -> bool;
    /// One step of Dameng's switchover (`haraft_core::dm_switchover`):
    /// the statements of `action`; `upstream` is the new primary for
    /// `OpenStandby`. Only the DM adapter has these steps: core gives them
    /// to no other engine, and the others refuse them.
    fn dm_switchover_step(
        &self,
        action: DmAction,
        _upstream: Option<&Upstream>,
        _epoch: Epoch,
        _timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send {
        let engine = self.engine();
        async move {
            Err(DbError::Unexpected(format!(
                "the Dameng switchover step {action} is not supported by {engine}: its switchover stops the old primary instead"
            )))
        }
    }
}

impl DbError {
    /// A failed connection or query in words: tokio-postgres says only
    /// "db error" unless the server's own message is taken from it (seen:
    /// an agent logged "cannot query PostgreSQL: db error" every 500 ms
    /// for two minutes about a standby that refused every connection).
    pub fn query(e: &tokio_postgres::Error) -> DbError {
        let text = match e.as_db_error() {
            Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
            None => match std::error::Error::source(e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        };
        DbError::Query(text)
    }
}
