//! This build reads what earlier releases wrote: each release's data
//! directory (one member's Raft store, identity and acknowledged mark,
//! made by `scripts/make-store-fixture.sh` with that release's binary) is
//! kept under `tests/fixtures/` and opened here. A change to a stored type
//! that breaks reading an earlier release fails this test.

use haraft_core::{Command, FeatureLevel};
use haraft_raft::codec::{self, Format};
use haraft_raft::integrity::{Expect, Verdict, inspect, judge};
use haraft_raft::store::{self, Layout};
use haraft_raft::types::{Entry, LogId};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, RaftLogReader};
use std::path::{Path, PathBuf};

/// Every release's fixture: its directory under `tests/fixtures`, and the
/// feature level its records are at.
const FIXTURES: &[(&str, FeatureLevel)] = &[("store-0.1.0", FeatureLevel::V0_1)];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A copy to open: sled writes to a store it opens.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&fixture(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for item in std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display())) {
        let item = item.expect("dir entry");
        let target = to.join(item.file_name());
        if item.file_type().expect("file type").is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).expect("copy file");
        }
    }
}

fn expect() -> Expect {
    Expect { cluster: "fixture".into(), node: 1, join: false, managed_db: None }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// The raw log records of a closed store, by index.
fn raw_log(layout: &Layout) -> Vec<(u64, Vec<u8>)> {
    let db = sled::open(layout.raft_dir()).expect("sled opens the fixture");
    let log = db.open_tree("log").expect("log tree");
    log.iter()
        .map(|item| {
            let (key, value) = item.expect("a log record");
            (u64::from_be_bytes(key.as_ref().try_into().expect("8-byte key")), value.to_vec())
        })
        .collect()
}

#[test]
fn every_release_s_data_directory_opens_and_reads() {
    for (name, level) in FIXTURES {
        let dir = copy_of(name);
        let layout = Layout::new(dir.path());
        let findings = inspect(&layout);
        assert_eq!(judge(&findings, &expect()), Verdict::Open, "{name}: {findings:?}");

        // Every log entry decodes, and this build writes it back in its
        // format byte for byte: what it sends a member of that release
        // below the next feature level is what that release wrote.
        let raw = raw_log(&layout);
        assert!(raw.len() >= 3, "{name}: the fixture has a log (initialize, members, grant)");
        for (index, bytes) in &raw {
            let format = codec::format_of(bytes).expect("a format this build reads");
            let entry: Entry =
                codec::decode("log entry", bytes).unwrap_or_else(|e| panic!("{name}: entry {index}: {e}"));
            assert_eq!(entry.log_id.index, *index);
            assert_eq!(&codec::encode_as(format, &entry), bytes, "{name}: entry {index} re-encodes differently");
        }

        let rt = runtime();
        rt.block_on(async {
            let (mut log, mut sm, applied) = store::open(&layout).unwrap_or_else(|e| panic!("{name}: {e}"));
            let state = applied.borrow().state.clone();
            assert_eq!(state.cluster, "fixture", "{name}");
            assert_eq!(state.members.len(), 3, "{name}");
            assert!(state.lease.is_some() && state.epoch.0 >= 1, "{name}: a lease was granted: {state:?}");
            assert_eq!(state.feature_level, *level, "{name}");
            assert!(log.read_vote().await.expect("vote").is_some(), "{name}");
            let entries = log.try_get_log_entries(..).await.expect("entries");
            assert_eq!(entries.len(), raw.len(), "{name}");
            let (applied_id, membership) = sm.applied_state().await.expect("applied state");
            assert_eq!(membership.membership().nodes().count(), 3, "{name}");

            // Below level 1 this build writes format 6: a member of that
            // release, or this host rolled back to it, reads everything.
            let last: LogId = entries.last().expect("entries").log_id;
            assert_eq!(log.write_format().get(), Format::for_level(*level), "{name}");
            // The leader raises the level once every member runs this build.
            let raise = Entry {
                log_id: LogId::new(last.leader_id, last.index + 1),
                payload: EntryPayload::Normal(Command::SetFeatureLevel {
                    from: *level,
                    to: FeatureLevel::SUPPORTED,
                    at_unix_ms: 1,
                }),
            };
            log.append_synced([raise.clone()]).await.expect("append");
            sm.apply([raise]).await.expect("apply");
            assert!(applied_id <= Some(last), "{name}: nothing applied past the log");
            assert_eq!(log.write_format().get(), Format::NEWEST, "{name}");
            let vote = log.read_vote().await.expect("vote").expect("a vote");
            log.save_vote(&vote).await.expect("vote rewritten");
        });
        drop(rt);

        // After the raise: still whole, records of both formats side by side.
        let findings = inspect(&layout);
        assert_eq!(judge(&findings, &expect()), Verdict::Open, "{name} after the raise: {findings:?}");
        let formats: Vec<_> = raw_log(&layout).iter().map(|(_, b)| codec::format_of(b)).collect();
        assert_eq!(formats.last(), Some(&Some(Format::for_level(*level))), "the raise itself is written below it");
        {
            let db = sled::open(layout.raft_dir()).expect("sled");
            let record = |tree: &str, key: &str| {
                let bytes = db.open_tree(tree).unwrap().get(key).unwrap().expect("the record");
                codec::format_of(&bytes)
            };
            assert_eq!(record("sm", "state"), Some(Format::NEWEST), "{name}: the state after the raise");
            assert_eq!(record("meta", "vote"), Some(Format::NEWEST), "{name}: a vote written after the raise");
            // Written once at creation: format 6 for good (rule 4).
            assert_eq!(record("meta", "identity"), Some(Format::Bincode6), "{name}");
        }
        let rt = runtime();
        rt.block_on(async {
            let (_log, _sm, applied) = store::open(&layout).expect("reopen");
            assert_eq!(applied.borrow().state.feature_level, FeatureLevel::SUPPORTED, "{name}");
        });
    }
}
