//! The sled store against openraft's own storage suite, plus restart and
//! format-version checks on real files.

use haraft_core::{Command, Epoch, NodeId, Policy, Timing};
use haraft_raft::identity::{Identity, StoreId};
use haraft_raft::integrity::{Expect, Verdict, inspect, judge};
use haraft_raft::store::{self, Layout, LogStore, StateMachineStore};
use haraft_raft::types::{Entry, LogId, RaftNode, StorageError, TypeConfig, Vote};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftLogReader};
use std::collections::{BTreeMap, BTreeSet};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm, _applied) = store::create(&Layout::new(dir.path()), &identity()).expect("create store");
        Ok((dir, log, sm))
    }
}

/// openraft's suite creates its own runtime: run it from a plain test.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(SledBuilder).expect("openraft storage suite");
}

fn identity() -> Identity {
    Identity { cluster: "c".into(), node: 1, store: StoreId(0x5eed), created_unix_ms: 0 }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry { log_id: log_id(term, index), payload }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn vote_log_and_state_machine_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let rt = runtime();
    rt.block_on(async {
        let (mut log, mut sm, applied) = store::create(&layout, &identity()).unwrap();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        let nodes: BTreeMap<u64, RaftNode> = (1..=3)
            .map(|i| (i, RaftNode { name: format!("node{i}"), address: format!("127.0.0.1:{}", 7000 + i) }))
            .collect();
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
        let entries = vec![
            entry(3, 1, EntryPayload::Membership(membership)),
            entry(
                3,
                2,
                EntryPayload::Normal(Command::Initialize {
                    cluster: "c".into(),
                    config: Timing::default(),
                    policy: Policy::default(),
                }),
            ),
            entry(
                3,
                3,
                EntryPayload::Normal(Command::Grant {
                    holder: NodeId(2),
                    epoch: Epoch(1),
                    verdicts: vec![],
                    at_unix_ms: 0,
                }),
            ),
        ];
        // openraft's `LogFlushed` callback cannot be built outside openraft;
        // `append` is `append_synced` plus that callback.
        log.append_synced(entries.clone()).await.unwrap();
        sm.apply(entries).await.unwrap();
        assert_eq!(applied.borrow().state.holder(), Some(NodeId(2)));
        drop((log, sm));
    });
    drop(rt);
    // A new runtime and a fresh open, as after a process restart.
    let rt = runtime();
    rt.block_on(async {
        assert_eq!(judge(&inspect(&layout), &expect()), Verdict::Open);
        let (mut log, mut sm, applied) = store::open(&layout).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(3, 3)));
        assert_eq!(log.try_get_log_entries(1..4).await.unwrap().len(), 3);
        let (last_applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(last_applied, Some(log_id(3, 3)));
        assert_eq!(membership.membership().voter_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
        let s = applied.borrow().state.clone();
        assert_eq!(s.cluster, "c");
        assert_eq!(s.epoch, Epoch(1));
        assert_eq!(s.members.len(), 3);
        assert_eq!(s.member_name(NodeId(3)), Some("node3"));
    });
}

fn expect() -> Expect {
    Expect { cluster: "c".into(), node: 1, join: false, managed_db: None }
}

#[test]
fn record_with_another_format_version_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let rt = runtime();
    rt.block_on(async {
        let (mut log, _sm, _) = store::create(&layout, &identity()).unwrap();
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
    });
    drop(rt);
    // Rewrite the vote record with a different version byte, through sled.
    {
        let db = sled::open(layout.raft_dir()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        let mut bytes = meta.get("vote").unwrap().unwrap().to_vec();
        bytes[0] = 9;
        meta.insert("vote", bytes).unwrap();
        db.flush().unwrap();
    }
    let Verdict::Refuse(err) = judge(&inspect(&layout), &expect()) else {
        panic!("a record of another format version was accepted")
    };
    assert!(err.contains("format version 9"), "{err}");
    assert!(err.contains("vote"), "{err}");
    assert!(err.contains(&layout.raft_dir().display().to_string()), "{err}");
}

#[test]
fn a_second_open_of_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let _first = store::create(&layout, &identity()).unwrap();
    let err = match store::open(&layout) {
        Ok(_) => panic!("two stores opened one directory"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("another haraft"), "{err}");
}
