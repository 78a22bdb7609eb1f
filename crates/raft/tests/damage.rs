//! A member's store damaged on disk in ordinary ways, checked the way the
//! agent checks it at start: every damage is refused with a line naming
//! it, and the check changes no byte.

use haraft_core::{Command, Epoch, NodeId};
use haraft_raft::identity::{Identity, StoreId};
use haraft_raft::integrity::{Expect, Found, Verdict, inspect, judge};
use haraft_raft::store::{self, Layout};
use haraft_raft::types::{Entry, LogId, Vote};
use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ENTRIES: u64 = 200;

fn identity(node: u64, store: u128) -> Identity {
    Identity { cluster: "c".into(), node, store: StoreId(store), created_unix_ms: 1_764_000_000_000 }
}

fn expect(node: u64) -> Expect {
    Expect { cluster: "c".into(), node, join: false, managed_db: None }
}

fn entry(index: u64) -> Entry {
    let command =
        Command::Renew { holder: NodeId(1), epoch: Epoch(1), renewal: haraft_core::RenewalSeq(index), position: None };
    Entry { log_id: LogId::new(CommittedLeaderId::new(2, 1), index), payload: EntryPayload::Normal(command) }
}

/// A member's data directory with a vote and `ENTRIES` entries, each
/// appended (and acknowledged) on its own, as Raft does.
fn member(dir: &Path, node: u64, store_id: u128) -> Layout {
    let layout = Layout::new(dir);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut log, _sm, _) = store::create(&layout, &identity(node, store_id)).unwrap();
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        for i in 1..=ENTRIES {
            log.append_synced([entry(i)]).await.unwrap();
        }
    });
    drop(rt);
    layout
}

/// Every file under `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The verdict on `layout`, checking that reaching it changed nothing.
fn verdict(layout: &Layout, node: u64) -> Verdict {
    let before = snapshot(&layout.data_dir);
    let v = judge(&inspect(layout), &expect(node));
    assert_eq!(snapshot(&layout.data_dir), before, "the check changed files under {}", layout.data_dir.display());
    v
}

fn refused(layout: &Layout, node: u64, what: &str) -> String {
    match verdict(layout, node) {
        Verdict::Refuse(text) => {
            assert!(text.contains(what), "expected {what:?} in: {text}");
            assert!(text.contains("member replace") || text.contains("fix node.id"), "no way out in: {text}");
            text
        }
        other => panic!("{what}: not refused but {other:?}"),
    }
}

#[test]
fn a_whole_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let layout = member(dir.path(), 1, 1);
    assert_eq!(verdict(&layout, 1), Verdict::Open);
    let Found::Present(report) = inspect(&layout).store else { panic!("no report") };
    assert_eq!(report.entries.len() as u64, ENTRIES);
}

/// A copy of member `whole` under `base/name` whose sled data file holds `data`.
fn with_data_file(base: &Path, whole: &Layout, name: &str, data: &[u8]) -> Layout {
    let dir = base.join(name);
    copy_dir(&whole.data_dir, &dir);
    let layout = Layout::new(&dir);
    std::fs::write(layout.raft_dir().join("db"), data).unwrap();
    layout
}

fn flipped(data: &[u8], offset: usize, mask: u8) -> Vec<u8> {
    let mut bytes = data.to_vec();
    bytes[offset] ^= mask;
    bytes
}

#[test]
fn a_changed_byte_in_any_stored_record_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let whole = member(&base.path().join("whole"), 1, 1);
    let data = std::fs::read(whole.raft_dir().join("db")).unwrap();
    // Where sled keeps our records' bytes: the vote and a spread of entries
    // (in format 6: this store's state is at feature level 0).
    use haraft_raft::codec::{Format, encode_as};
    let mut records = vec![("the vote".to_string(), encode_as(Format::Bincode6, &Vote::new_committed(2, 1)))];
    for i in [1, 2, 50, 100, 150, 199, ENTRIES] {
        records.push((format!("entry {i}"), encode_as(Format::Bincode6, &entry(i))));
    }
    for (what, record) in records {
        let at = data.windows(record.len()).rposition(|w| w == record.as_slice());
        let at = at.unwrap_or_else(|| panic!("{what} is not stored verbatim in sled's data file"));
        for offset in [at, at + record.len() / 2, at + record.len() - 1] {
            let layout = with_data_file(base.path(), &whole, &format!("flip{offset}"), &flipped(&data, offset, 0x01));
            match verdict(&layout, 1) {
                Verdict::Refuse(text) => eprintln!("{what}, byte {offset}: {text}"),
                other => panic!("{what}: one bit changed at byte {offset} went unnoticed: {other:?}"),
            }
        }
    }
}

#[test]
fn changed_bytes_elsewhere_in_the_data_file_are_refused_or_change_nothing() {
    let base = tempfile::tempdir().unwrap();
    let whole = member(&base.path().join("whole"), 1, 1);
    let Found::Present(intact) = inspect(&whole).store else { panic!("no report") };
    let data = std::fs::read(whole.raft_dir().join("db")).unwrap();
    for offset in (0..data.len()).step_by(data.len() / 40) {
        let layout = with_data_file(base.path(), &whole, &format!("flip{offset}"), &flipped(&data, offset, 0x5a));
        match verdict(&layout, 1) {
            Verdict::Refuse(text) => assert!(text.contains("raft"), "{text}"),
            // A byte sled never reads (padding after a flushed segment's
            // last record) may change unnoticed; then all must be there.
            Verdict::Open => {
                let Found::Present(report) = inspect(&layout).store else { panic!("opened without a report") };
                assert_eq!(report, intact, "byte {offset} changed what the store holds, unnoticed");
            }
            other => panic!("byte {offset}: {other:?}"),
        }
    }
}

#[test]
fn the_data_file_cut_anywhere_in_its_records_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let whole = member(&base.path().join("whole"), 1, 1);
    let Found::Present(intact) = inspect(&whole).store else { panic!("no report") };
    let data = std::fs::read(whole.raft_dir().join("db")).unwrap();
    // sled preallocates: the records end where the zeros begin.
    let end = data.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    let len = data.len() as u64;
    for cut in [0, 1000, end / 4, end / 2, end - 5000, end - 100, end - 1, end, (end + len) / 2] {
        let layout = with_data_file(base.path(), &whole, &format!("cut{cut}"), &data[..cut as usize]);
        match verdict(&layout, 1) {
            Verdict::Refuse(text) => {
                assert!(cut < end, "cut at {cut}, after the records (end {end}): {text}");
                eprintln!("cut at {cut}: {text}");
            }
            Verdict::Open if cut >= end => {
                let Found::Present(report) = inspect(&layout).store else { panic!("opened without a report") };
                assert_eq!(report, intact, "cut at {cut}, after the records, changed what the store holds");
            }
            other => panic!("cut at {cut} of {end} bytes of records: {other:?}"),
        }
    }
}

#[test]
fn lost_foreign_and_missing_files_are_refused() {
    let base = tempfile::tempdir().unwrap();
    let whole = member(&base.path().join("whole"), 1, 1);
    let other = member(&base.path().join("other"), 3, 3);
    let case = |name: &str, damage: &dyn Fn(&Layout)| {
        let dir = base.path().join(name);
        copy_dir(&whole.data_dir, &dir);
        let layout = Layout::new(&dir);
        damage(&layout);
        layout
    };
    let l = case("store-deleted", &|l| std::fs::remove_dir_all(l.raft_dir()).unwrap());
    refused(&l, 1, &format!("acknowledged log entry {ENTRIES} (term 2): it lost its Raft state"));
    let l = case("identity-deleted", &|l| std::fs::remove_file(l.identity()).unwrap());
    refused(&l, 1, "haraft.identity is missing but the Raft store");
    let l = case("mark-deleted", &|l| std::fs::remove_file(l.acked()).unwrap());
    refused(&l, 1, "haraft.acked is missing");
    let l = case("everything-deleted", &|l| {
        std::fs::remove_dir_all(l.raft_dir()).unwrap();
        std::fs::remove_file(l.identity()).unwrap();
    });
    refused(&l, 1, "lost its identity and store");
    let l = case("foreign-store", &|l| {
        std::fs::remove_dir_all(l.raft_dir()).unwrap();
        copy_dir(&other.raft_dir(), &l.raft_dir());
    });
    refused(&l, 1, "belongs to node 3");
    let l = case("foreign-data-dir", &|l| {
        std::fs::remove_dir_all(&l.data_dir).unwrap();
        copy_dir(&other.data_dir, &l.data_dir);
    });
    refused(&l, 1, "belongs to node 3");
    let l = case("identity-edited", &|l| {
        let text = std::fs::read_to_string(l.identity()).unwrap();
        std::fs::write(l.identity(), text.replace("node = 1", "node = 2")).unwrap();
    });
    refused(&l, 2, "fails its checksum");
    let l = case("mark-cut", &|l| {
        let f = std::fs::OpenOptions::new().write(true).open(l.acked()).unwrap();
        f.set_len(100).unwrap();
    });
    refused(&l, 1, "100 bytes long");
}
