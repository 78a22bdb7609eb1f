//! Reading a whole store for the start-up check ([`crate::integrity`]):
//! every record decoded and its checksum verified, the log's shape checked.

use super::{CACHE_CAPACITY_BYTES, SmData, StoreIdentity, StoredSnapshot};
use crate::codec::{self, CodecError};
use crate::types::{Entry, LogId, Vote};
use std::path::Path;

/// What a store holds, read record by record with every checksum verified
/// (see [`scan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreReport {
    pub identity: Option<StoreIdentity>,
    pub vote: Option<Vote>,
    pub purged: Option<LogId>,
    /// Every entry's log id, in order (a few thousand at most: the log is
    /// purged after each snapshot).
    pub entries: Vec<LogId>,
    /// The state machine's applied log id (its own record or the snapshot,
    /// whichever is newer).
    pub applied: Option<LogId>,
    /// Records of any kind; 0 for a store that holds nothing yet.
    pub records: usize,
}

impl StoreReport {
    /// The last log id the store can vouch for: its last entry, else its
    /// purge point.
    pub fn last_log(&self) -> Option<LogId> {
        self.entries.last().copied().or(self.purged)
    }

    /// Whether the store still keeps `id`: as an entry with exactly that
    /// log id, or inside what it purged into its snapshot.
    pub fn keeps(&self, id: LogId) -> bool {
        self.purged.is_some_and(|p| p.index >= id.index)
            || self.entries.binary_search_by_key(&id.index, |l| l.index).is_ok_and(|i| self.entries[i] == id)
    }
}

/// Describes a record that fails to decode: "log entry 812 fails its
/// checksum", "the vote record is garbled: ...".
fn bad_record(what: String, e: CodecError) -> String {
    match e {
        CodecError::Checksum { .. } => format!("{what} fails its checksum: its bytes changed after it was written"),
        CodecError::Empty { .. } => format!("{what} is empty"),
        CodecError::Version { found, .. } => {
            format!(
                "{what} has format version {found}, this haraft reads versions 6 and 7: {}",
                codec::version_hint(found)
            )
        }
        CodecError::Garbled { detail, .. } => format!("{what} is garbled: {detail}"),
    }
}

/// Reads every record of the sled store in `dir` and checks the log is
/// whole: each entry under its own index, contiguous from the purge point
/// to the last, the state machine not behind the purge point. Opening a
/// sled store may rewrite its files (its recovery truncates a damaged
/// tail), so [`crate::integrity`] calls this on a copy.
pub fn scan(dir: &Path) -> Result<StoreReport, String> {
    let config = sled::Config::new().path(dir).cache_capacity(CACHE_CAPACITY_BYTES).flush_every_ms(None);
    let db = config.open().map_err(|e| format!("sled cannot read it: {}", sled_text(&e)))?;
    let tree =
        |name: &str| db.open_tree(name).map_err(|e| format!("sled cannot read its {name} tree: {}", sled_text(&e)));
    let (log, meta, sm) = (tree("log")?, tree("meta")?, tree("sm")?);
    let sled_err = |e: sled::Error| format!("sled cannot read it: {}", sled_text(&e));
    let mut report = StoreReport {
        identity: read_record(&meta, "identity", "the identity record")?,
        vote: read_record(&meta, "vote", "the vote record")?,
        purged: read_record(&meta, "last_purged", "the purge point record")?,
        records: meta.len() + sm.len() + log.len(),
        ..StoreReport::default()
    };
    let _: Option<Option<LogId>> = read_record(&meta, "committed", "the commit index record")?;
    for item in log.iter() {
        let (key, bytes) = item.map_err(sled_err)?;
        let Ok(key) = <[u8; 8]>::try_from(key.as_ref()) else {
            return Err(format!("the log holds a key of {} bytes, not an index", key.len()));
        };
        let index = u64::from_be_bytes(key);
        let what = format!("log entry {index}");
        let entry: Entry = codec::decode("log entry", &bytes).map_err(|e| bad_record(what.clone(), e))?;
        if entry.log_id.index != index {
            return Err(format!("{what} holds entry {} instead", entry.log_id.index));
        }
        let expected = match report.entries.last() {
            Some(prev) => prev.index + 1,
            None => report.purged.map_or(index, |p| p.index + 1),
        };
        // Entries at or below the purge point may remain after a crash
        // inside a purge; they are ignored, never a gap.
        if report.purged.is_some_and(|p| index <= p.index) {
            continue;
        }
        if index != expected {
            return Err(format!("the log has a gap: entry {expected} is missing before entry {index}"));
        }
        report.entries.push(entry.log_id);
    }
    let state = sm.get("state").map_err(|e| format!("sled cannot read the state machine record: {}", sled_text(&e)))?;
    let state = state
        .map(|b| SmData::decode("state", &b).map_err(|e| bad_record("the state machine record".into(), e)))
        .transpose()?;
    let snapshot: Option<StoredSnapshot> = read_record(&sm, "snapshot", "the snapshot record")?;
    report.applied = state.and_then(|s| s.applied);
    if let Some(snap) = snapshot {
        SmData::decode("snapshot data", &snap.data).map_err(|e| bad_record("the snapshot's data".into(), e))?;
        report.applied = report.applied.max(snap.meta.last_log_id);
    }
    if let Some(purged) = report.purged
        && report.applied < Some(purged)
    {
        return Err(format!(
            "the state machine is at {} but the log was purged up to entry {}: entries it needs are gone",
            report.applied.map_or("nothing".into(), |l| l.index.to_string()),
            purged.index
        ));
    }
    Ok(report)
}

/// One record of `tree` for [`scan`], its error a sentence about `what`.
fn read_record<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &'static str,
    what: &str,
) -> Result<Option<T>, String> {
    let bytes = tree.get(key).map_err(|e| format!("sled cannot read {what}: {}", sled_text(&e)))?;
    bytes.map(|b| codec::decode(key, &b).map_err(|e| bad_record(what.to_string(), e))).transpose()
}

/// sled's error text without the empty backtrace it appends.
fn sled_text(e: &sled::Error) -> String {
    e.to_string().trim_end_matches(" backtrace ()").to_string()
}
