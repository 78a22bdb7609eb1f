//! The sled-backed Raft log and state machine. This is the only module that
//! touches sled.
//!
//! Durability: sled's `flush` ends in `sync_file_range` on Linux, which
//! survives a process crash but not a power loss, so every flush that Raft
//! relies on (log append, truncate, purge, vote, snapshot) is followed by an
//! `fdatasync` of sled's data file, and then by a durable write of the
//! acknowledged mark ([`crate::acked`]) outside sled.
//!
//! Layout ([`Layout`], under the node's `data_dir`):
//! - `haraft.identity`: which member and store this is ([`crate::identity`])
//! - `haraft.acked`: the acknowledged mark ([`crate::acked`])
//! - `raft/`: one sled database
//!   - tree `log`: big-endian log index -> Entry
//!   - tree `meta`: `identity`, `vote`, `committed`, `last_purged`
//!   - tree `sm`: `state` (applied log id, membership, ClusterState), `snapshot`
//!
//! Every value is a `codec` record with a format byte and a checksum,
//! verified on every read, and written in the format the feature level of
//! the applied state allows ([`codec::WriteFormat`]; `state` keeps haraft
//! 0.1's shape of the state machine record).

use crate::acked::{Mark, MarkFile};
use crate::codec::{self, CodecError, Format, WriteFormat};
use crate::identity::{Identity, StoreId};
use crate::types::{Entry, LogId, RaftNode, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote};
use haraft_core::{ClusterState, Member, NodeId};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{AnyError, ErrorSubject, ErrorVerb, RaftLogReader, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// sled's default cache is 1 GiB; the whole Raft state of a cluster is a
/// few megabytes, and the agent's idle RSS goal is 20 MB. (1 MiB was tried
/// against an idle agent's RSS growth, 2026-12-07: the same ~1 MB a minute
/// over the first minutes; the cache is not where it goes.)
const CACHE_CAPACITY_BYTES: u64 = 4 * 1024 * 1024;

/// Where a member keeps its Raft state under its `node.data_dir`.
#[derive(Clone, Debug)]
pub struct Layout {
    pub data_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout { data_dir: data_dir.to_path_buf() }
    }
    /// The sled store's directory.
    pub fn raft_dir(&self) -> PathBuf {
        self.data_dir.join("raft")
    }
    pub fn identity(&self) -> PathBuf {
        self.data_dir.join("haraft.identity")
    }
    pub fn acked(&self) -> PathBuf {
        self.data_dir.join("haraft.acked")
    }
}

/// What the state machine publishes after every applied batch.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub index: Option<u64>,
    pub state: Arc<ClusterState>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the raft store at {path}: {source} (is another haraft running with this data_dir?)")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("cannot open {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("raft store at {path}: {source}; see README \"A member's Raft store was damaged\"")]
    Record { path: PathBuf, source: CodecError },
    #[error("{path}: {message}; see README \"A member's Raft store was damaged\"")]
    Mark { path: PathBuf, message: String },
}

/// The store's own copy of its identity (the identity file's fields that
/// matter), so that a store copied from another member is recognised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    pub cluster: String,
    pub node: u64,
    pub store: StoreId,
}

impl From<&Identity> for StoreIdentity {
    fn from(i: &Identity) -> StoreIdentity {
        StoreIdentity { cluster: i.cluster.clone(), node: i.node, store: i.store }
    }
}

struct Inner {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    sm: sled::Tree,
    data_file: File,
    mark: Mutex<MarkFile>,
    /// What this member writes (in the store and on the wire), from the
    /// feature level of the state it applied last.
    format: WriteFormat,
}

impl Inner {
    /// Flush sled, fdatasync its data file, then record `change` in the
    /// acknowledged mark, durably, off the async threads. The store goes
    /// first, so the mark never claims more than the store holds.
    async fn sync(self: &Arc<Self>, change: impl FnOnce(&mut Mark) + Send + 'static) -> std::io::Result<()> {
        let inner = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            inner.db.flush().map_err(std::io::Error::other)?;
            inner.data_file.sync_data()?;
            inner.mark.lock().expect("never poisoned").update(inner.format.get(), change)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Records `change` in the acknowledged mark alone, durably: for a mark
    /// that must go down before the store changes.
    async fn mark(self: &Arc<Self>, change: impl FnOnce(&mut Mark) + Send + 'static) -> std::io::Result<()> {
        let inner = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            inner.mark.lock().expect("never poisoned").update(inner.format.get(), change)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    fn get<T: serde::de::DeserializeOwned>(tree: &sled::Tree, key: &'static str) -> Result<Option<T>, ReadError> {
        match tree.get(key).map_err(ReadError::Sled)? {
            None => Ok(None),
            Some(bytes) => codec::decode(key, &bytes).map(Some).map_err(ReadError::Record),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Sled(sled::Error),
    #[error("{0}")]
    Record(CodecError),
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::IO { source: StorageIOError::new(subject, verb, AnyError::error(e.to_string())) }
}

fn read_logs_err(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_err(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::StateMachine, verb, e)
}

/// How long `open` waits for sled's lock on a store just closed in this
/// process.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn open_sled(dir: &Path) -> Result<sled::Db, OpenError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_CAPACITY_BYTES)
        // We flush (and fdatasync) ourselves where Raft needs it; the
        // background flush only bounds what an unsynced apply may lose.
        .flush_every_ms(Some(1000));
    // sled's file lock outlives the last handle of a store closed in this
    // process by a moment (its background threads let go of it last), so
    // a reopen right after a close (a node restarted in-process) waits for
    // it; another process holding it is still refused, after the wait.
    let started = std::time::Instant::now();
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.map_err(|source| OpenError::Sled { path: dir.to_path_buf(), source }),
        }
    }
}

mod scan;
mod state;
pub use scan::{StoreReport, scan};
pub(crate) use state::{SmData, StoredSnapshot};

/// Whether another process (or this one) holds sled's lock on the store
/// in `dir` (sled takes an exclusive `flock` on its data file).
pub fn in_use(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = File::open(dir.join("db")) else { return false };
    // SAFETY: flock on a descriptor we own; the lock, if taken, is
    // released at once and in any case when `file` is closed.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if taken {
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    }
    !taken
}

/// Creates a new member's store: the acknowledged mark first, then the
/// identity file, then the store's own identity record, each durable
/// before the next. A crash in between leaves an identity whose mark says
/// nothing was acknowledged and an empty store, which [`crate::integrity`]
/// lets the next start finish.
pub fn create(layout: &Layout, identity: &Identity) -> Result<Opened, OpenError> {
    let file_err = |path: PathBuf| move |source| OpenError::File { path, source };
    std::fs::create_dir_all(&layout.data_dir).map_err(file_err(layout.data_dir.clone()))?;
    let acked = layout.acked();
    // A mark of an earlier creation attempt that acknowledged nothing
    // (integrity allows only that here) is replaced if it names another store.
    if MarkFile::open(&acked).is_ok_and(|m| m.current().store != Some(identity.store)) {
        std::fs::remove_file(&acked).map_err(file_err(acked.clone()))?;
    }
    if !acked.exists() {
        MarkFile::create(&acked, Mark::new(identity.store)).map_err(file_err(acked.clone()))?;
    }
    if !layout.identity().exists() {
        identity.write(&layout.identity()).map_err(file_err(layout.identity()))?;
    }
    std::fs::create_dir_all(layout.raft_dir()).map_err(file_err(layout.raft_dir()))?;
    let db = open_sled(&layout.raft_dir())?;
    let meta = db.open_tree("meta").map_err(|source| OpenError::Sled { path: layout.raft_dir(), source })?;
    // A new store is at feature level 0 until its state says otherwise.
    meta.insert("identity", codec::encode_as(Format::Bincode6, &StoreIdentity::from(identity)))
        .and_then(|_| db.flush())
        .map_err(|source| OpenError::Sled { path: layout.raft_dir(), source })?;
    let data_path = layout.raft_dir().join("db");
    File::open(&data_path).and_then(|f| f.sync_data()).map_err(file_err(data_path))?;
    drop((meta, db));
    open(layout)
}

/// The two halves of an open store and the state machine's published state.
pub type Opened = (LogStore, StateMachineStore, watch::Receiver<Applied>);

/// Opens the store of `layout`. [`crate::integrity`] decides first whether
/// it may be opened at all; this only reads what it needs.
pub fn open(layout: &Layout) -> Result<Opened, OpenError> {
    let dir = &layout.raft_dir();
    let sled_err = |source| OpenError::Sled { path: dir.to_path_buf(), source };
    let db = open_sled(dir)?;
    let log = db.open_tree("log").map_err(sled_err)?;
    let meta = db.open_tree("meta").map_err(sled_err)?;
    let sm = db.open_tree("sm").map_err(sled_err)?;
    let data_path = dir.join("db");
    let data_file = File::open(&data_path).map_err(|source| OpenError::File { path: data_path, source })?;
    let mark = MarkFile::open(&layout.acked()).map_err(|message| OpenError::Mark { path: layout.acked(), message })?;
    let format = WriteFormat::new(Format::Bincode6);
    let inner = Arc::new(Inner { db, log, meta, sm, data_file, mark: Mutex::new(mark), format });

    let record_err = |e: ReadError| match e {
        ReadError::Sled(source) => OpenError::Sled { path: dir.to_path_buf(), source },
        ReadError::Record(source) => OpenError::Record { path: dir.to_path_buf(), source },
    };
    let mut data = match inner.sm.get("state").map_err(|e| record_err(ReadError::Sled(e)))? {
        Some(bytes) => SmData::decode("state", &bytes).map_err(|e| record_err(ReadError::Record(e)))?,
        None => SmData::default(),
    };
    let snapshot = Inner::get::<StoredSnapshot>(&inner.sm, "snapshot").map_err(record_err)?;
    if let Some(snap) = &snapshot {
        // The state record is written without a sync after each apply; a
        // synced snapshot may be newer after a crash.
        if snap.meta.last_log_id > data.applied {
            data = SmData::decode("snapshot data", &snap.data)
                .map_err(|source| OpenError::Record { path: dir.to_path_buf(), source })?;
        }
    }

    inner.format.set(Format::for_level(data.state.feature_level));
    let committed = Inner::get::<Option<LogId>>(&inner.meta, "committed").map_err(record_err)?.flatten();
    let (committed_tx, _) = watch::channel(committed.map(|l| l.index));
    let (applied_tx, applied_rx) =
        watch::channel(Applied { index: data.applied.map(|l| l.index), state: Arc::new(data.state.clone()) });
    let log_store = LogStore { inner: Arc::clone(&inner), committed_tx: Arc::new(committed_tx) };
    let sm_store = StateMachineStore { inner, data, applied_tx: Arc::new(applied_tx), snapshot_seq: 0 };
    Ok((log_store, sm_store, applied_rx))
}

#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
    committed_tx: Arc<watch::Sender<Option<u64>>>,
}

impl LogStore {
    /// What this member writes, for its transport and admin service.
    pub fn write_format(&self) -> WriteFormat {
        self.inner.format.clone()
    }

    /// The commit index as openraft last reported it to this store.
    pub fn committed(&self) -> watch::Receiver<Option<u64>> {
        self.committed_tx.subscribe()
    }

    /// Writes `entries` in one batch and returns once they are on disk
    /// (flushed and fdatasync'ed). `append` is this plus openraft's callback.
    pub async fn append_synced<I: IntoIterator<Item = Entry>>(&self, entries: I) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        let mut last = None;
        for entry in entries {
            batch.insert(&index_key(entry.log_id.index), codec::encode_as(self.inner.format.get(), &entry));
            last = Some(entry.log_id);
        }
        self.inner.log.apply_batch(batch).map_err(write_logs_err)?;
        let Some(last) = last else { return Ok(()) };
        self.inner.sync(move |m| m.last_log = Some(last)).await.map_err(write_logs_err)
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        Inner::get(&self.inner.meta, "last_purged").map_err(read_logs_err)
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Bound::Included(index_key(e)),
            Bound::Excluded(&e) => Bound::Excluded(index_key(e)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.inner.log.range((Bound::Included(index_key(start)), end)) {
            let (_, bytes) = item.map_err(read_logs_err)?;
            out.push(codec::decode::<Entry>("log entry", &bytes).map_err(read_logs_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let last = match self.inner.log.last().map_err(read_logs_err)? {
            Some((_, bytes)) => Some(codec::decode::<Entry>("log entry", &bytes).map_err(read_logs_err)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let err = |e: String| io_err(ErrorSubject::Vote, ErrorVerb::Write, e);
        self.inner
            .meta
            .insert("vote", codec::encode_as(self.inner.format.get(), vote))
            .map_err(|e| err(e.to_string()))?;
        let vote = *vote;
        self.inner.sync(move |m| m.vote = Some(vote)).await.map_err(|e| err(e.to_string()))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Inner::get(&self.inner.meta, "vote").map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only makes a restarted node wait for the
        // leader to tell it the commit index again.
        self.inner
            .meta
            .insert("committed", codec::encode_as(self.inner.format.get(), &committed))
            .map_err(write_logs_err)?;
        self.committed_tx.send_replace(committed.map(|l| l.index));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(Inner::get::<Option<LogId>>(&self.inner.meta, "committed").map_err(read_logs_err)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        match self.append_synced(entries).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // What the log ends with afterwards: the entry before the cut, or
        // the purge point when the cut is right after it.
        let before = match log_id.index.checked_sub(1) {
            None => None,
            Some(i) => match self.inner.log.get(index_key(i)).map_err(write_logs_err)? {
                Some(bytes) => Some(codec::decode::<Entry>("log entry", &bytes).map_err(write_logs_err)?.log_id),
                None => self.last_purged()?,
            },
        };
        // Truncated entries were never committed (Raft only overwrites
        // what the leader does not have), so the mark may go down: first,
        // so that it never claims an entry the store no longer holds.
        self.inner.mark(move |m| m.last_log = before).await.map_err(write_logs_err)?;
        let mut batch = sled::Batch::default();
        for item in self.inner.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(write_logs_err)?;
            batch.remove(key);
        }
        self.inner.log.apply_batch(batch).map_err(write_logs_err)?;
        self.inner.sync(|_| {}).await.map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves entries
        // that are merely ignored, never a gap.
        self.inner
            .meta
            .insert("last_purged", codec::encode_as(self.inner.format.get(), &log_id))
            .map_err(write_logs_err)?;
        let mut batch = sled::Batch::default();
        for item in self.inner.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(write_logs_err)?;
            batch.remove(key);
        }
        self.inner.log.apply_batch(batch).map_err(write_logs_err)?;
        // Entries up to the purge point are kept by the snapshot now; when
        // a snapshot from the leader replaced the whole log, it is also the
        // new end of the log.
        self.inner
            .sync(move |m| {
                m.purged = Some(log_id);
                m.last_log = m.last_log.max(Some(log_id));
            })
            .await
            .map_err(write_logs_err)
    }
}

pub struct StateMachineStore {
    inner: Arc<Inner>,
    data: SmData,
    applied_tx: Arc<watch::Sender<Applied>>,
    snapshot_seq: u64,
}

impl StateMachineStore {
    fn publish(&self) {
        self.applied_tx.send_replace(Applied {
            index: self.data.applied.map(|l| l.index),
            state: Arc::new(self.data.state.clone()),
        });
    }

    fn persist_state(&self) -> Result<(), StorageError> {
        // The level this state is at decides the format from here on.
        let format = Format::for_level(self.data.state.feature_level);
        self.inner.format.set(format);
        self.inner.sm.insert("state", self.data.encode(format)).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(())
    }
}

fn members_of(membership: &openraft::Membership<u64, RaftNode>) -> Vec<Member> {
    membership
        .nodes()
        .map(|(id, node)| Member { id: NodeId(*id), name: node.name.clone(), address: node.address.clone() })
        .collect()
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.data.applied, self.data.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<haraft_core::Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let replies = entries.into_iter().map(|entry| self.data.apply_entry(entry)).collect();
        self.persist_state()?;
        self.publish();
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder { inner: Arc::clone(&self.inner), data: self.data.clone(), seq: self.snapshot_seq }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data = SmData::decode("snapshot data", &bytes).map_err(|e| StorageError::IO {
            source: StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e)),
        })?;
        self.data = data;
        self.persist_state()?;
        let stored = StoredSnapshot { meta: meta.clone(), data: bytes };
        self.inner
            .sm
            .insert("snapshot", codec::encode_as(self.inner.format.get(), &stored))
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.inner.sync(|_| {}).await.map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored: Option<StoredSnapshot> =
            Inner::get(&self.inner.sm, "snapshot").map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

pub struct SnapshotBuilder {
    inner: Arc<Inner>,
    data: SmData,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let format = Format::for_level(self.data.state.feature_level);
        let data = self.data.encode(format);
        let snapshot_id = match self.data.applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta =
            SnapshotMeta { last_log_id: self.data.applied, last_membership: self.data.membership.clone(), snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        self.inner
            .sm
            .insert("snapshot", codec::encode_as(self.inner.format.get(), &stored))
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.inner.sync(|_| {}).await.map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
