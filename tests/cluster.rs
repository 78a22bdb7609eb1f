//! Multi-node tests: three agents in one process over real gRPC on
//! loopback. One process means one CLOCK_BOOTTIME, so "the holder's
//! deadline passed before the new epoch was decided" is asserted on one
//! clock.

use haraft_agent::AgentEvent;
use haraft_core::{BootTime, Command, Epoch, NodeId};
use haraft_testkit::inproc::Cluster;
use haraft_testkit::wait_for;
use std::time::Duration;
use tokio::sync::broadcast;

/// Default lease timing: the tests exercise the shipped settings.
const TTL_MS: u64 = haraft_core::Timing::DEFAULT.lease_ttl_ms;
const LIMIT: Duration = Duration::from_secs(30);

async fn started() -> Cluster {
    haraft_testkit::init_logging();
    let c = Cluster::start(3, "").await;
    wait_for("a leader, a holder with a valid lease", LIMIT, || {
        let holder = c.state().holder()?;
        (c.leader().is_some() && c.valid_holders() == vec![holder]).then_some(())
    })
    .await;
    c
}

/// Drains everything an agent announced so far. Losing events to a full
/// channel would hide what the assertions need: fail loudly instead.
fn drain(rx: &mut broadcast::Receiver<AgentEvent>) -> Vec<AgentEvent> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(broadcast::error::TryRecvError::Empty) => return out,
            Err(e) => panic!("agent events lost: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_elect_a_leader_grant_epoch_one_and_the_holder_renews() {
    let c = started().await;
    let state = c.state();
    assert_eq!(state.epoch, Epoch(1));
    assert_eq!(state.cluster, "test");
    assert_eq!(state.members.len(), 3);
    let lease = state.lease.expect("a lease");
    let voters = c.agent(1).raft_metrics().membership_config.membership().voter_ids().count();
    assert_eq!(voters, 3);
    // The holder renews: the renewal count grows and validity moves forward.
    let first = c.agent(lease.holder.0).lease().valid_until.expect("valid");
    wait_for("two more renewals", LIMIT, || {
        let l = c.state().lease?;
        (l.renewal.0 >= lease.renewal.0 + 2).then_some(())
    })
    .await;
    let later = c.agent(lease.holder.0).lease().valid_until.expect("still valid");
    assert!(later > first, "validity did not move: {first:?} -> {later:?}");
    assert_eq!(c.valid_holders(), vec![lease.holder], "exactly one node considers itself primary");
    assert_eq!(c.state().epoch, Epoch(1), "no lapse while renewing");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_holder_lapses_its_lease_after_its_deadline_and_grants_the_next_epoch_elsewhere() {
    let mut c = started().await;
    let old = c.state().lease.unwrap();
    let mut events: Vec<_> = (1..=3).filter(|&i| i != old.holder.0).map(|i| (i, c.agent(i).subscribe())).collect();
    let holder_deadline = c.agent(old.holder.0).lease().valid_until.unwrap();
    c.stop(old.holder.0).await;
    let new = wait_for("a new epoch", LIMIT, || {
        let l = c.state().lease?;
        (l.epoch > old.epoch).then_some(l)
    })
    .await;
    assert_eq!(new.epoch, old.epoch.next());
    assert_ne!(new.holder, old.holder);
    // The lapse was decided on the leader's clock only after the stopped
    // holder's own deadline (same process, same CLOCK_BOOTTIME).
    let lapse_at = events
        .iter_mut()
        .flat_map(|(_, rx)| drain(rx))
        .find_map(|e| match e {
            AgentEvent::Proposed { at, command: Command::Lapse { epoch, .. } } if epoch == old.epoch => Some(at),
            _ => None,
        })
        .expect("the leader proposed the lapse");
    assert!(lapse_at >= holder_deadline, "lapse at {lapse_at:?} before the holder's deadline {holder_deadline:?}");
    wait_for("the new holder's lease to be valid", LIMIT, || (c.valid_holders() == vec![new.holder]).then_some(()))
        .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_holder_stops_being_primary_before_any_new_epoch_is_decided() {
    let c = started().await;
    let old = c.state().lease.unwrap();
    let mut holder_rx = c.agent(old.holder.0).subscribe();
    let mut others: Vec<_> = (1..=3).filter(|&i| i != old.holder.0).map(|i| c.agent(i).subscribe()).collect();
    c.agent(old.holder.0).faults().isolate(true);

    let new = wait_for("a new epoch among the majority", LIMIT, || {
        let s = (1..=3).filter(|&i| i != old.holder.0).map(|i| c.agent(i).state()).max_by_key(|s| s.epoch)?;
        let l = s.lease?;
        (l.epoch > old.epoch).then_some(l)
    })
    .await;
    assert_ne!(new.holder, old.holder);

    let holder_events = drain(&mut holder_rx);
    let last_deadline: BootTime = holder_events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Renewed { valid_until, .. } => Some(*valid_until),
            _ => None,
        })
        .max()
        .unwrap_or_else(|| c.agent(old.holder.0).lease().valid_until.unwrap_or_default());
    let invalid_at = holder_events
        .iter()
        .find_map(|e| match e {
            AgentEvent::LeaseInvalid { at, epoch } if *epoch == old.epoch => Some(*at),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the cut-off holder never said its lease ended: {holder_events:?}"));
    let decisions: Vec<(BootTime, Command)> = others
        .iter_mut()
        .flat_map(drain)
        .filter_map(|e| match e {
            AgentEvent::Proposed { at, command } => Some((at, command)),
            _ => None,
        })
        .collect();
    let lapse_at = decisions
        .iter()
        .find_map(|(at, c)| matches!(c, Command::Lapse { epoch, .. } if *epoch == old.epoch).then_some(*at))
        .expect("the majority's leader proposed the lapse");
    let grant_at = decisions
        .iter()
        .find_map(|(at, c)| matches!(c, Command::Grant { epoch, .. } if *epoch == new.epoch).then_some(*at))
        .expect("the majority's leader proposed the grant");
    assert!(last_deadline <= lapse_at, "holder deadline {last_deadline:?} after the lapse decision {lapse_at:?}");
    assert!(
        invalid_at <= grant_at,
        "holder still valid at {invalid_at:?} when epoch {} was decided at {grant_at:?}",
        new.epoch
    );
    assert!(c.agent(old.holder.0).lease().valid_until.is_none(), "cut-off holder still claims the lease");

    // Healed, it learns the new epoch and never claims the old lease again.
    c.agent(old.holder.0).faults().isolate(false);
    wait_for("the old holder to catch up", LIMIT, || (c.agent(old.holder.0).state().epoch >= new.epoch).then_some(()))
        .await;
    let holders = c.valid_holders();
    assert!(!holders.contains(&old.holder), "old holder claims a lease again: {holders:?}");
    assert!(holders.len() <= 1, "two primaries: {holders:?}");
    wait_for("one valid holder", LIMIT, || (c.valid_holders().len() == 1).then_some(())).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_raft_leader_elects_another_whose_lapse_waits_a_ttl_from_its_last_applied_renewal() {
    let mut c = started().await;
    let leader = c.leader().expect("a leader");
    let before = c.state().lease.unwrap();
    let mut rxs: Vec<(u64, _)> = (1..=3).filter(|&i| i != leader.0).map(|i| (i, c.agent(i).subscribe())).collect();
    c.stop(leader.0).await;
    let new_leader = wait_for("a new leader", LIMIT, || c.leader().filter(|l| *l != leader)).await;
    // Give a fired timer every chance to show up: two ttls.
    tokio::time::sleep(Duration::from_millis(2 * TTL_MS)).await;
    let mut all = Vec::new();
    for (id, rx) in rxs.iter_mut() {
        let events: Vec<AgentEvent> = drain(rx);
        // Every lapse a member proposes comes a full ttl (its own clock)
        // after it applied the lease it lapses: the last renewal the
        // holder could have been answered for was sent before that.
        for (i, e) in events.iter().enumerate() {
            if let AgentEvent::Proposed { at, command: Command::Lapse { holder, epoch, renewal, .. } } = e {
                let applied = events[..i].iter().rev().find_map(|e| match e {
                    AgentEvent::LeaseApplied { at, lease }
                        if (lease.holder, lease.epoch, lease.renewal) == (*holder, *epoch, *renewal) =>
                    {
                        Some(*at)
                    }
                    _ => None,
                });
                // Applied before this agent subscribed: earlier still.
                if let Some(applied) = applied {
                    assert!(
                        at.0 >= applied.0 + TTL_MS,
                        "node{id} proposed a lapse at {at:?}, within a ttl of applying that lease at {applied:?}"
                    );
                }
            }
        }
        all.extend(events);
    }
    if before.holder == leader {
        // The holder went down with the leader: its lease lapses and
        // another member gets the next epoch.
        let l = wait_for("the next epoch", LIMIT, || c.state().lease.filter(|l| l.epoch > before.epoch)).await;
        assert_ne!(l.holder, leader);
    } else {
        // The holder survived: it renews through the new leader, no lapse.
        let l = c.state().lease.unwrap();
        assert_eq!((l.holder, l.epoch), (before.holder, before.epoch), "lease changed hands though its holder lives");
        assert!(l.renewal > before.renewal);
        assert!(!all.iter().any(|e| matches!(e, AgentEvent::Proposed { command: Command::Lapse { .. }, .. })));
    }
    assert_eq!(c.leader(), Some(new_leader));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_all_three_keeps_the_state() {
    let mut c = started().await;
    // Force history beyond the first grant: stop the holder once.
    let first = c.state().lease.unwrap();
    c.stop(first.holder.0).await;
    wait_for("epoch 2", LIMIT, || c.state().lease.filter(|l| l.epoch == Epoch(2))).await;
    c.restart(first.holder.0).await;
    wait_for("the restarted node to catch up", LIMIT, || {
        (c.agent(first.holder.0).state().epoch == Epoch(2)).then_some(())
    })
    .await;
    let before = c.state();
    for id in 1..=3 {
        c.stop(id).await;
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    wait_for("a leader again", LIMIT, || c.leader()).await;
    let after = c.state();
    assert_eq!(after.cluster, before.cluster);
    assert_eq!(after.members, before.members);
    assert!(after.epoch >= before.epoch, "epoch went back from {} to {}", before.epoch, after.epoch);
    assert!(after.history.len() >= before.history.len());
    assert_eq!(
        after.history.iter().take(before.history.len()).collect::<Vec<_>>(),
        before.history.iter().collect::<Vec<_>>()
    );
    wait_for("one valid holder", LIMIT, || (c.valid_holders().len() == 1).then_some(())).await;
    c.shutdown().await;
}

/// A cluster of one build raises its feature level by itself (every member
/// reads it), every member applies it, and the stores, now holding records
/// of both formats, survive a restart of every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_raises_the_feature_level_once_every_member_reads_it() {
    use haraft_core::{FeatureLevel, HistoryEvent};
    let mut c = started().await;
    // The leader looks every 5 s.
    wait_for("the feature level raised", LIMIT, || {
        (1..=3).all(|id| c.agent(id).state().feature_level == FeatureLevel::SUPPORTED).then_some(())
    })
    .await;
    let raised: Vec<_> = c
        .state()
        .history
        .iter()
        .filter(|h| matches!(h.event, HistoryEvent::FeatureLevelRaised { .. }))
        .cloned()
        .collect();
    assert_eq!(raised.len(), 1, "raised once: {raised:?}");
    let epoch = c.state().epoch;
    for id in 1..=3 {
        c.stop(id).await;
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    wait_for("one valid holder again", LIMIT, || (c.valid_holders().len() == 1).then_some(())).await;
    assert_eq!(c.state().feature_level, FeatureLevel::SUPPORTED);
    assert!(c.state().epoch >= epoch);
    c.shutdown().await;
}

mod garbled {
    use super::*;
    use haraft_proto::admin::ProposeRequest;
    use haraft_proto::admin::admin_client::AdminClient;
    use haraft_proto::raft::RaftRequest;
    use haraft_proto::raft::raft_client::RaftClient;
    use haraft_raft::codec;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbled_misaddressed_and_forbidden_peer_calls_are_refused_and_nothing_changes() {
        let c = started().await;
        let target = c.agent(2);
        let endpoint = format!("http://{}", target.local_addr);
        let mut raft = RaftClient::connect(endpoint.clone()).await.unwrap();
        let before = c.state();

        let cases: Vec<(RaftRequest, tonic::Code, &str)> = vec![
            (
                RaftRequest {
                    cluster: "test".into(),
                    target: 2,
                    from: 1,
                    payload: vec![haraft_raft::codec::Format::NEWEST as u8, 0xff, 0xff, 0xff],
                },
                tonic::Code::InvalidArgument,
                "garbled",
            ),
            (
                RaftRequest { cluster: "test".into(), target: 2, from: 1, payload: vec![] },
                tonic::Code::InvalidArgument,
                "empty",
            ),
            (
                RaftRequest { cluster: "test".into(), target: 2, from: 1, payload: vec![42, 1, 2] },
                tonic::Code::InvalidArgument,
                "format version 42",
            ),
            (
                RaftRequest { cluster: "test".into(), target: 3, from: 1, payload: vec![] },
                tonic::Code::FailedPrecondition,
                "node id 3 reached node id 2",
            ),
            (
                RaftRequest { cluster: "other".into(), target: 2, from: 1, payload: vec![] },
                tonic::Code::FailedPrecondition,
                "cluster \"other\"",
            ),
        ];
        for (req, code, text) in cases {
            for status in [
                raft.append_entries(req.clone()).await.unwrap_err(),
                raft.vote(req.clone()).await.unwrap_err(),
                raft.install_snapshot(req.clone()).await.unwrap_err(),
            ] {
                assert_eq!(status.code(), code, "{status:?}");
                assert!(status.message().contains(text), "{:?} lacks {text:?}", status.message());
            }
        }

        // A peer cannot ask for a lapse or a grant, nor renew for another node.
        let mut admin = AdminClient::connect(endpoint).await.unwrap();
        let lease = before.lease.unwrap();
        let forbidden = [
            (1, Command::Lapse { holder: lease.holder, epoch: lease.epoch, renewal: lease.renewal, at_unix_ms: 0 }),
            (1, Command::Grant { holder: NodeId(1), epoch: lease.epoch.next(), verdicts: vec![], at_unix_ms: 0 }),
            (3, Command::Renew { holder: NodeId(9), epoch: lease.epoch, renewal: lease.renewal, position: None }),
        ];
        for (from, command) in forbidden {
            let req = ProposeRequest { cluster: "test".into(), target: 2, from, command: codec::encode(&command) };
            let status = admin.propose(req).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{command}: {status:?}");
        }

        // Still one healthy cluster with the same epoch.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = c.state();
        assert_eq!(after.epoch, before.epoch);
        assert_eq!(after.holder(), before.holder());
        assert_eq!(c.valid_holders(), vec![lease.holder]);
        c.shutdown().await;
    }
}

/// The danger a lost store is: node C acknowledged entries that node B
/// never saw; if C forgot them and voted, B and C could elect B and commit
/// over them. C must refuse to start, so the cluster waits for A, which
/// has them, and nothing committed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amnesiac_member_is_never_counted_and_nothing_committed_is_lost() {
    let mut c = started().await;
    let leader = wait_for("a leader", LIMIT, || c.leader()).await.0;
    let others: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let (b, amnesiac) = (others[0], others[1]);
    c.stop(b).await;
    // Renewals go on with the leader and the amnesiac-to-be: entries only
    // those two hold.
    let seen = c.agent(leader).raft_metrics().last_applied.map_or(0, |l| l.index);
    wait_for("entries committed without node B", LIMIT, || {
        (c.agent(amnesiac).raft_metrics().last_applied.map_or(0, |l| l.index) > seen + 3).then_some(())
    })
    .await;
    let before = c.state();
    let committed = c.agent(leader).raft_metrics().last_applied.map_or(0, |l| l.index);
    c.stop(leader).await;
    c.stop(amnesiac).await;
    std::fs::remove_dir_all(c.data_dir(amnesiac).join("raft")).expect("delete the store");

    c.restart(b).await;
    let refused = c.try_restart(amnesiac).await.expect_err("a member that lost its store started");
    assert!(refused.contains("it lost its Raft state") && refused.contains("member replace"), "{refused}");
    // B alone has no quorum: nobody leads, nothing is decided.
    tokio::time::sleep(Duration::from_millis(3 * TTL_MS)).await;
    assert_eq!(c.agent(b).raft_metrics().current_leader.filter(|&l| l == b), None, "node B led alone");

    c.restart(leader).await;
    wait_for("a leader again, past every entry committed before", LIMIT, || {
        let applied = c.agent(b).raft_metrics().last_applied.map_or(0, |l| l.index);
        (c.leader().is_some() && applied >= committed).then_some(())
    })
    .await;
    let after = c.state();
    assert!(after.epoch >= before.epoch, "epoch went back from {} to {}", before.epoch, after.epoch);
    assert_eq!(
        after.history.iter().take(before.history.len()).collect::<Vec<_>>(),
        before.history.iter().collect::<Vec<_>>(),
        "history committed before the loss changed"
    );
    assert!(after.lease.map(|l| l.renewal) >= before.lease.map(|l| l.renewal), "renewals went back");
    c.shutdown().await;
}
