//! The simulated side of the Raft store seam: the same openraft storage-v2
//! traits as [`crate::store`], over memory, applying entries through the
//! same code ([`SmData::apply_entry`]).
//!
//! What it models of a disk: an appended entry is acknowledged to openraft
//! (its `LogFlushed` callback) only after a simulated fsync `sync_delay`
//! later; until then it is the unsynced tail. [`MemDisk::crash`] ends the
//! store's current life (the Raft that used it must be dropped): a process
//! crash keeps everything written (sled's flush survives one); a power loss
//! (`lose_unsynced`) keeps only what was synced, and the state machine
//! falls back to its last snapshot (openraft replays the log from there).
//! A vote, a truncation and a purge are durable when they return, as in
//! the sled store.
//!
//! What it does not model: torn or corrupted records, a store lost whole
//! (the identity and integrity checks run on files; see `integrity`).

use crate::store::{Applied, SmData};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone, Default)]
struct Image {
    log: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    snapshot: Option<(SnapshotMeta, SmData)>,
}

#[derive(Default)]
struct Disk {
    /// What a process crash keeps.
    written: Image,
    /// What a power loss keeps.
    synced: Image,
    sm: SmData,
    /// Bumped by every crash: a sync started by an earlier life neither
    /// completes nor calls back.
    life: u64,
    sync_delay: Duration,
}

/// One member's simulated disk, shared by the stores of its successive lives.
#[derive(Clone, Default)]
pub struct MemDisk {
    disk: Arc<Mutex<Disk>>,
}

/// What [`MemDisk::open`] hands to `agent::embedded`.
pub struct MemOpened {
    pub log: MemLog,
    pub state_machine: MemStateMachine,
    pub applied: watch::Receiver<Applied>,
    pub committed: watch::Receiver<Option<u64>>,
}

impl MemDisk {
    pub fn new(sync_delay: Duration) -> MemDisk {
        MemDisk { disk: Arc::new(Mutex::new(Disk { sync_delay, ..Disk::default() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().expect("the simulated disk lock is never held across a panic")
    }

    /// A new life of the store over what the disk holds.
    pub fn open(&self) -> MemOpened {
        let d = self.lock();
        let (committed_tx, committed) = watch::channel(d.written.committed.map(|l| l.index));
        let (applied_tx, applied) =
            watch::channel(Applied { index: d.sm.applied.map(|l| l.index), state: Arc::new(d.sm.state.clone()) });
        let life = d.life;
        drop(d);
        MemOpened {
            log: MemLog { disk: self.clone(), life, committed_tx: Arc::new(committed_tx) },
            state_machine: MemStateMachine { disk: self.clone(), applied_tx: Arc::new(applied_tx), seq: 0 },
            applied,
            committed,
        }
    }

    /// Ends the current life: with `lose_unsynced`, as a power loss does.
    pub fn crash(&self, lose_unsynced: bool) {
        let mut d = self.lock();
        d.life += 1;
        if lose_unsynced {
            d.written = d.synced.clone();
            d.sm = d.synced.snapshot.as_ref().map(|(_, data)| data.clone()).unwrap_or_default();
        }
    }

    /// The highest log index a process crash would keep, and the highest a
    /// power loss would keep (for traces and tests).
    pub fn tails(&self) -> (Option<u64>, Option<u64>) {
        let d = self.lock();
        (d.written.log.keys().next_back().copied(), d.synced.log.keys().next_back().copied())
    }
}

#[derive(Clone)]
pub struct MemLog {
    disk: MemDisk,
    life: u64,
    committed_tx: Arc<watch::Sender<Option<u64>>>,
}

impl RaftLogReader<TypeConfig> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.disk.lock().written.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let d = self.disk.lock();
        let last_purged_log_id = d.written.last_purged;
        let last_log_id = d.written.log.values().next_back().map(|e| e.log_id).or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut d = self.disk.lock();
        d.written.vote = Some(*vote);
        d.synced.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.disk.lock().written.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.disk.lock().written.committed = committed;
        self.committed_tx.send_replace(committed.map(|l| l.index));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.disk.lock().written.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let delay = {
            let mut d = self.disk.lock();
            for e in entries {
                d.written.log.insert(e.log_id.index, e);
            }
            d.sync_delay
        };
        // The simulated fsync: everything written so far is synced when it
        // completes, unless the store crashed first.
        let disk = self.disk.clone();
        let life = self.life;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut d = disk.lock();
            if d.life != life {
                return;
            }
            d.synced.log = d.written.log.clone();
            d.synced.last_purged = d.written.last_purged;
            drop(d);
            callback.log_io_completed(Ok(()));
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut d = self.disk.lock();
        d.written.log.retain(|i, _| *i < log_id.index);
        d.synced.log.retain(|i, _| *i < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut guard = self.disk.lock();
        let d = &mut *guard;
        for image in [&mut d.written, &mut d.synced] {
            image.last_purged = Some(log_id);
            image.log.retain(|i, _| *i > log_id.index);
        }
        Ok(())
    }
}

pub struct MemStateMachine {
    disk: MemDisk,
    applied_tx: Arc<watch::Sender<Applied>>,
    seq: u64,
}

impl MemStateMachine {
    fn publish(&self, data: &SmData) {
        self.applied_tx
            .send_replace(Applied { index: data.applied.map(|l| l.index), state: Arc::new(data.state.clone()) });
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = MemSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let d = self.disk.lock();
        Ok((d.sm.applied, d.sm.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<haraft_core::Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut d = self.disk.lock();
        let replies = entries.into_iter().map(|entry| d.sm.apply_entry(entry)).collect();
        let data = d.sm.clone();
        drop(d);
        self.publish(&data);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.seq += 1;
        MemSnapshotBuilder { disk: self.disk.clone(), seq: self.seq }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data: SmData = crate::codec::decode("snapshot data", snapshot.get_ref()).map_err(|e| StorageError::IO {
            source: openraft::StorageIOError::read_snapshot(Some(meta.signature()), openraft::AnyError::new(&e)),
        })?;
        let mut d = self.disk.lock();
        d.sm = data.clone();
        d.written.snapshot = Some((meta.clone(), data.clone()));
        d.synced.snapshot = Some((meta.clone(), data.clone()));
        drop(d);
        self.publish(&data);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let d = self.disk.lock();
        Ok(d.written.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(crate::codec::encode(data))),
        }))
    }
}

pub struct MemSnapshotBuilder {
    disk: MemDisk,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for MemSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut d = self.disk.lock();
        let data = d.sm.clone();
        let snapshot_id = match data.applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta { last_log_id: data.applied, last_membership: data.membership.clone(), snapshot_id };
        d.written.snapshot = Some((meta.clone(), data.clone()));
        d.synced.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(crate::codec::encode(&data))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, MemLog, MemStateMachine, ()> for Builder {
        async fn build(&self) -> Result<((), MemLog, MemStateMachine), StorageError> {
            let opened = MemDisk::new(Duration::from_millis(1)).open();
            Ok(((), opened.log, opened.state_machine))
        }
    }

    /// openraft's own conformance suite, as the sled store runs it.
    #[test]
    fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).expect("the in-memory store conforms to openraft's storage contract");
    }

    #[test]
    fn power_loss_drops_the_unsynced_tail_and_a_process_crash_does_not() {
        use openraft::{CommittedLeaderId, EntryPayload};
        let disk = MemDisk::new(Duration::from_millis(5));
        let entry = |i| Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), i), payload: EntryPayload::Blank };
        // Entry 1 synced, entry 2 only written.
        disk.lock().written.log.insert(1, entry(1));
        disk.lock().synced.log.insert(1, entry(1));
        disk.lock().written.log.insert(2, entry(2));
        assert_eq!(disk.tails(), (Some(2), Some(1)));
        disk.crash(false);
        assert_eq!(disk.tails(), (Some(2), Some(1)), "a process crash keeps what was written");
        disk.crash(true);
        assert_eq!(disk.tails(), (Some(1), Some(1)), "a power loss keeps only what was synced");
    }
}
