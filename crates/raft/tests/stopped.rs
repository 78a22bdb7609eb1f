//! `stopped` resolves when Raft's core ends, and not before.

use haraft_raft::codec::{Format, WriteFormat};
use haraft_raft::memstore::MemDisk;
use haraft_raft::network::{NetworkFactory, NetworkFaults};
use haraft_raft::{Raft, RaftNode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn stopped_resolves_when_the_core_ends_and_not_while_it_runs() {
    let disk = MemDisk::new(Duration::ZERO);
    let opened = disk.open();
    let network =
        NetworkFactory::new("c", 1, NetworkFaults::default(), BTreeMap::new(), None, WriteFormat::new(Format::NEWEST));
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    };
    let raft =
        Raft::new(1, Arc::new(config.validate().unwrap()), network, opened.log, opened.state_machine).await.unwrap();
    raft.initialize(BTreeMap::from([(1, RaftNode { name: "node1".into(), address: "127.0.0.1:1".into() })]))
        .await
        .unwrap();
    raft.wait(Some(Duration::from_secs(10))).state(openraft::ServerState::Leader, "leader").await.unwrap();

    let waiter = tokio::spawn({
        let raft = raft.clone();
        async move { haraft_raft::stopped::stopped(&raft).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "stopped resolved while Raft ran");

    raft.shutdown().await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("stopped did not resolve within 10 s of Raft's shutdown")
        .unwrap();
    // The reason is the core's own (a storage error's text, here a clean
    // stop's), not the fallback for a core gone without one.
    assert_eq!(reason, openraft::error::Fatal::<u64>::Stopped.to_string());
}
