//! The database boundary: the [`Database`] trait (observe the local
//! database; act on it, every action carrying the epoch that authorises it
//! and an explicit timeout) and its adapters, PostgreSQL first
//! ([`postgres::Postgres`]).
//!
//! What it must never do: decide. It reports observations and carries out
//! one action at a time; `haraft_core` chooses the action.

pub mod controldata;
pub mod epoch_guard;
pub mod exec;
pub mod postgres;
pub mod procs;
pub mod wal;

use haraft_core::{Epoch, Lsn, TimelineId};
use std::time::Duration;

pub use exec::RunAs;

/// What the local database is doing, as seen now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub running: bool,
    /// `None` when there is no data directory yet.
    pub role: Option<DbRole>,
    pub timeline: Option<TimelineId>,
    /// Primary: the current write position. Standby: what it received.
    pub received_lsn: Option<Lsn>,
    /// Standby: what it replayed. Primary: same as `received_lsn`.
    pub replayed_lsn: Option<Lsn>,
    pub system_identifier: Option<u64>,
    /// For a stopped directory: was it shut down cleanly?
    pub clean_shutdown: Option<bool>,
    /// Standby: host:port it streams from, when streaming.
    pub upstream: Option<String>,
    /// Primary: who streams from it.
    pub downstream: Vec<Downstream>,
    /// The member names in `synchronous_standby_names`, when the setting
    /// has the form haraft writes (`FIRST n ("a", ...)` or empty); `None`
    /// otherwise or when stopped.
    pub synchronous_names: Option<Vec<String>>,
    /// Primary: haraft's physical replication slots (`haraft_*`).
    pub slots: Option<Vec<String>>,
    /// Primary: its timeline history (where each earlier timeline ended).
    pub forks: Option<Vec<haraft_core::Fork>>,
    /// Whether a new session's transactions are read-only by default
    /// (`default_transaction_read_only`): the running server's value, or
    /// what haraft's settings file gives a stopped one. `None` when unknown
    /// (no data, or a settings file of a haraft that did not write it).
    pub read_only_default: Option<bool>,
    /// Someone asked this server to leave recovery: a promote request is
    /// waiting, or a running standby's `standby.signal` is gone.
    pub promotion_signalled: bool,
    /// The commit guard is in force: commits wait (`hold_commits`).
    pub commits_held: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbRole {
    Primary,
    Standby,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downstream {
    pub application_name: String,
    /// e.g. "streaming", "catchup".
    pub state: String,
    /// "async", "sync", "potential", "quorum".
    pub sync_state: String,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
}

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
    #[error("cannot query PostgreSQL: {0}")]
    Query(String),
    /// The server is running but refuses connections for now (starting
    /// up, or a standby not yet consistent).
    #[error("PostgreSQL does not accept connections yet: {0}")]
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
    #[error("{0}")]
    Unexpected(String),
}

/// The local database, observed and acted on by the agent. Every action
/// names the epoch that authorises it: an action with an epoch older than
/// one already carried out is refused (`DbError::StaleEpoch`), except stop,
/// which fencing must always be able to do.
#[allow(async_fn_in_trait)]
pub trait Database {
    async fn observe(&self, timeout: Duration) -> Result<Observation, DbError>;
    /// initdb, configure, start as primary, create the replication role.
    /// Returns the new system identifier.
    async fn bootstrap(&self, epoch: Epoch, timeout: Duration) -> Result<u64, DbError>;
    async fn start_primary(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    /// Start as a standby of `upstream`; with `None`, replay local WAL only.
    async fn start_standby(&self, upstream: Option<&Upstream>, epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    /// Point a running standby at another upstream (reload, no restart).
    async fn follow(&self, upstream: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    async fn promote(&self, epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    async fn stop(&self, mode: StopMode, epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    async fn rewind(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<RewindReport, DbError>;
    async fn rebuild(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    async fn set_synchronous_standbys(&self, names: &[String], epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    /// Makes haraft's physical slots exactly `slots`: creates the missing
    /// ones, drops the others unless a standby is using them.
    async fn set_replication_slots(&self, slots: &[String], epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    async fn reload(&self, timeout: Duration) -> Result<(), DbError>;
    /// Makes new transactions read-only by default (`true`), or read-write
    /// for the lease holder of `epoch` (`false`, refused on a stale
    /// epoch); a running server reloads. Read-only is never refused: like
    /// stop, it is part of fencing.
    async fn set_read_only(&self, read_only: bool, epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    /// The commit guard: a running primary's commits wait, neither
    /// acknowledged nor refused (`true`), or go through again for the
    /// lease holder of `epoch` (`false`, refused on a stale epoch). Holding
    /// is never refused: like stop, it is part of fencing. A standby has
    /// nothing to hold.
    async fn hold_commits(&self, held: bool, epoch: Epoch, timeout: Duration) -> Result<(), DbError>;
    /// The end of the WAL a stopped server holds on its newest timeline
    /// (where its last valid record ends); `None` when none is readable.
    async fn end_of_wal(&self, timeout: Duration) -> Result<Option<Lsn>, DbError>;
    /// Transactions that committed in a stopped server's WAL of `timeline`
    /// from `from` to `to` (what a rewind is about to discard).
    async fn commits_between(
        &self,
        timeline: TimelineId,
        from: Lsn,
        to: Lsn,
        timeout: Duration,
    ) -> Result<u64, DbError>;
    /// A cheap look (no query, no process) for a request to leave
    /// recovery that haraft did not make: see `promotion_signalled`.
    fn promotion_signalled(&self) -> bool;
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
