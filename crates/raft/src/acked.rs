//! The acknowledged mark, `data_dir/haraft.acked`: what this member has
//! told Raft it keeps — its vote, the last log id it wrote, and its purge
//! point — written durably after every such write, outside sled.
//!
//! Why outside sled: sled 0.34 recovers a damaged or cut data file by
//! stopping at the first record that fails its checksum and silently
//! dropping everything after it (measured: 200 entries written, the file cut
//! 100 bytes short → sled opens with 199 entries and no error; one flipped
//! byte early in the file → it opens with 9). A mark kept inside sled would
//! be dropped with the entries it should vouch for, so a member that lost
//! acknowledged entries would look whole. This file is small, rewritten in
//! place, and read back at start against what sled returns.
//!
//! Two fixed slots of [`SLOT_BYTES`], written alternately, each a codec
//! record (version byte, checksum) with a sequence number: a write torn by
//! a power loss damages only the slot being written, and the other still
//! holds the previous mark.

use crate::codec::{self, Format};
use crate::identity::StoreId;
use crate::types::{LogId, Vote};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One slot. A mark is about 100 bytes; a disk sector is 512.
const SLOT_BYTES: usize = 512;
/// Bytes of the length prefix in front of the record in a slot.
const LEN_BYTES: usize = 2;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Grows by one with every write; the slot with the higher one is current.
    pub seq: u64,
    /// The store this mark vouches for.
    pub store: Option<StoreId>,
    pub vote: Option<Vote>,
    /// The last log id written and synced (it may go down only when Raft
    /// truncates entries that were never committed).
    pub last_log: Option<LogId>,
    pub purged: Option<LogId>,
}

impl Mark {
    pub fn new(store: StoreId) -> Mark {
        Mark { store: Some(store), ..Mark::default() }
    }

    /// Whether this member has told Raft anything yet.
    pub fn acknowledged_anything(&self) -> bool {
        self.vote.is_some() || self.last_log.is_some() || self.purged.is_some()
    }
}

/// Decodes one slot; `None` when it holds no valid mark.
fn decode_slot(slot: &[u8]) -> Option<Mark> {
    let len = u16::from_le_bytes([*slot.first()?, *slot.get(1)?]) as usize;
    let record = slot.get(LEN_BYTES..LEN_BYTES.checked_add(len)?)?;
    codec::decode::<Mark>("acknowledged mark", record).ok()
}

/// Reads the current mark from the file's bytes: the valid slot with the
/// higher sequence number. An error when neither slot is valid.
pub fn parse(bytes: &[u8]) -> Result<Mark, String> {
    if bytes.len() != 2 * SLOT_BYTES {
        return Err(format!("it is {} bytes long, a mark file is {}", bytes.len(), 2 * SLOT_BYTES));
    }
    let (a, b) = bytes.split_at(SLOT_BYTES);
    match (decode_slot(a), decode_slot(b)) {
        (Some(a), Some(b)) => Ok(if a.seq >= b.seq { a } else { b }),
        (Some(m), None) | (None, Some(m)) => Ok(m),
        (None, None) => Err("neither of its two copies passes its checksum".into()),
    }
}

/// The open mark file, and the mark last written to it.
pub struct MarkFile {
    file: File,
    current: Mark,
}

impl MarkFile {
    /// Creates the file with `mark` in both slots, durably (file and its
    /// directory), before anything else of the store exists. In format 6:
    /// a new store is at feature level 0 until its state says otherwise.
    pub fn create(path: &Path, mark: Mark) -> std::io::Result<MarkFile> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        file.write_all_at(&slot_bytes(Format::Bincode6, &mark), 0)?;
        file.write_all_at(&slot_bytes(Format::Bincode6, &mark), SLOT_BYTES as u64)?;
        file.sync_all()?;
        File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
        Ok(MarkFile { file, current: mark })
    }

    /// Opens an existing mark file.
    pub fn open(path: &Path) -> Result<MarkFile, String> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| e.to_string())?;
        let mut bytes = vec![0; 2 * SLOT_BYTES];
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len != bytes.len() as u64 {
            return Err(format!("it is {len} bytes long, a mark file is {}", bytes.len()));
        }
        file.read_exact_at(&mut bytes, 0).map_err(|e| e.to_string())?;
        let current = parse(&bytes)?;
        Ok(MarkFile { file, current })
    }

    pub fn current(&self) -> &Mark {
        &self.current
    }

    /// Applies `change` and writes the result durably (fdatasync: the file
    /// never changes size, so its metadata needs no sync), in `format`.
    pub fn update(&mut self, format: Format, change: impl FnOnce(&mut Mark)) -> std::io::Result<()> {
        let mut next = self.current.clone();
        change(&mut next);
        if next == self.current {
            return Ok(());
        }
        next.seq = self.current.seq + 1;
        let offset = if next.seq.is_multiple_of(2) { 0 } else { SLOT_BYTES as u64 };
        self.file.write_all_at(&slot_bytes(format, &next), offset)?;
        self.file.sync_data()?;
        self.current = next;
        Ok(())
    }
}

fn slot_bytes(format: Format, mark: &Mark) -> Vec<u8> {
    let record = codec::encode_as(format, mark);
    assert!(record.len() + LEN_BYTES <= SLOT_BYTES, "a mark is about 100 bytes, not {}", record.len());
    let mut slot = vec![0; SLOT_BYTES];
    slot[..LEN_BYTES].copy_from_slice(&(record.len() as u16).to_le_bytes());
    slot[LEN_BYTES..LEN_BYTES + record.len()].copy_from_slice(&record);
    slot
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;
    use proptest::prelude::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 2), index)
    }

    #[test]
    fn writes_alternate_slots_and_survive_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haraft.acked");
        let mut f = MarkFile::create(&path, Mark::new(StoreId(7))).unwrap();
        f.update(Format::NEWEST, |m| m.vote = Some(Vote::new(3, 2))).unwrap();
        f.update(Format::NEWEST, |m| m.last_log = Some(log_id(3, 10))).unwrap();
        let seq = f.current().seq;
        assert_eq!(MarkFile::open(&path).unwrap().current(), f.current());
        // Tear the newer slot: the older one, one write behind, is read.
        let mut bytes = std::fs::read(&path).unwrap();
        let newer = if seq.is_multiple_of(2) { 0 } else { SLOT_BYTES };
        bytes[newer + 10] ^= 0xff;
        let older = parse(&bytes).unwrap();
        assert_eq!((older.seq, older.last_log), (seq - 1, None));
        // Both damaged, or the file cut: refused.
        bytes[SLOT_BYTES - newer + 10] ^= 0xff;
        assert!(parse(&bytes).unwrap_err().contains("neither"));
        assert!(parse(&bytes[..700]).unwrap_err().contains("700 bytes"));
    }

    #[test]
    fn a_mark_of_either_format_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haraft.acked");
        let mut f = MarkFile::create(&path, Mark::new(StoreId(u128::MAX - 5))).unwrap();
        f.update(Format::Bincode6, |m| m.vote = Some(Vote::new(3, 2))).unwrap();
        assert_eq!(MarkFile::open(&path).unwrap().current(), f.current());
        f.update(Format::Cbor7, |m| m.last_log = Some(log_id(3, 10))).unwrap();
        let read = MarkFile::open(&path).unwrap();
        assert_eq!(read.current(), f.current());
        assert_eq!(read.current().store, Some(StoreId(u128::MAX - 5)));
    }

    #[test]
    fn an_unchanged_mark_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = MarkFile::create(&dir.path().join("m"), Mark::new(StoreId(1))).unwrap();
        f.update(Format::NEWEST, |m| m.vote = Some(Vote::new(1, 1))).unwrap();
        let seq = f.current().seq;
        f.update(Format::NEWEST, |m| m.vote = Some(Vote::new(1, 1))).unwrap();
        assert_eq!(f.current().seq, seq);
    }

    /// The cost of one mark update (one pwrite + fdatasync of a block),
    /// printed; a measurement, not a check:
    /// `cargo test --release -p haraft-raft --lib acked::tests::update_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement: run by hand on the disk of interest"]
    fn update_cost() {
        let dir = tempfile::tempdir_in(std::env::var("HARAFT_BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
        let mut f = MarkFile::create(&dir.path().join("haraft.acked"), Mark::new(StoreId(1))).unwrap();
        const UPDATES: u64 = 500;
        let started = std::time::Instant::now();
        for i in 1..=UPDATES {
            f.update(Format::NEWEST, |m| m.last_log = Some(log_id(1, i))).unwrap();
        }
        let each = started.elapsed() / UPDATES as u32;
        println!(
            "{{\"mark_update_us\": {}}}\nmark update (pwrite + fdatasync): {each:?} each over {UPDATES}",
            each.as_micros()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = parse(&bytes);
            let mut full = bytes.clone();
            full.resize(2 * SLOT_BYTES, 0);
            let _ = parse(&full);
        }
    }
}
