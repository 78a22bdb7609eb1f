//! The status document: what `haraftctl status --json` prints. Its fields
//! are a stable contract: later versions add fields, never remove or rename.

use crate::ids::NodeId;
use crate::state::{ClusterState, Operation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
    /// The member did not answer.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster: String,
    /// The member whose view this is.
    pub answered_by: String,
    /// True when the Raft leader answered after confirming its leadership
    /// with a quorum (a linearizable read); false for a follower's copy.
    pub consistent: bool,
    /// The Raft leader's member name (not the primary).
    pub leader: Option<String>,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: Option<u64>,
    /// The highest epoch ever granted (not the Raft term).
    pub epoch: u64,
    /// The member holding the primary lease.
    pub primary: Option<String>,
    pub lease: Option<LeaseStatus>,
    pub operation: Option<String>,
    pub members: Vec<MemberStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub holder: String,
    pub holder_id: u64,
    pub epoch: u64,
    pub renewal: u64,
    /// How long the holder itself considers the lease valid, by its own
    /// clock; null when the holder did not answer or holds no valid lease.
    pub valid_for_ms: Option<u64>,
    /// Commit latency of the holder's recent renewals, as the holder
    /// measured it; null when the holder did not answer.
    pub renewal_latency: Option<LatencySummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub name: String,
    pub id: u64,
    pub address: String,
    pub raft_role: RaftRole,
    pub voter: bool,
    pub reachable: bool,
    pub term: Option<u64>,
    pub applied_index: Option<u64>,
    /// Why the member was unreachable.
    pub error: Option<String>,
}

/// The answering node's own Raft facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRaft {
    pub node: NodeId,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: Option<u64>,
    pub voters: BTreeSet<NodeId>,
    pub consistent: bool,
}

/// What one member said about itself when probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeInfo {
    pub raft_role: RaftRole,
    pub term: u64,
    pub applied_index: Option<u64>,
    /// Set by the holder only: its remaining validity by its own clock.
    pub lease_valid_for_ms: Option<u64>,
    /// Set by the holder only: commit latency of its recent renewals.
    pub renewal_latency: Option<LatencySummary>,
}

/// Percentiles of a set of durations, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub samples: u64,
}

impl LatencySummary {
    /// Nearest-rank percentiles of `samples_us`; `None` when empty.
    pub fn of(samples_us: &[u64]) -> Option<LatencySummary> {
        let mut sorted = samples_us.to_vec();
        sorted.sort_unstable();
        let rank = |p: u64| {
            let n = sorted.len() as u64;
            // Nearest rank: ceil(p/100 * n), 1-based.
            let r = (p * n).div_ceil(100).max(1);
            sorted[(r - 1) as usize]
        };
        let max_us = *sorted.last()?;
        Some(LatencySummary { p50_us: rank(50), p99_us: rank(99), max_us, samples: sorted.len() as u64 })
    }
}

pub type Probes = BTreeMap<NodeId, Result<ProbeInfo, String>>;

fn name_of(state: &ClusterState, id: NodeId) -> String {
    state.member_name(id).map_or_else(|| format!("node-id-{id}"), str::to_string)
}

pub fn build_status(state: &ClusterState, local: &LocalRaft, probes: &Probes) -> ClusterStatus {
    let lease = state.lease.map(|l| LeaseStatus {
        holder: name_of(state, l.holder),
        holder_id: l.holder.0,
        epoch: l.epoch.0,
        renewal: l.renewal.0,
        valid_for_ms: match probes.get(&l.holder) {
            Some(Ok(p)) => p.lease_valid_for_ms,
            _ => None,
        },
        renewal_latency: match probes.get(&l.holder) {
            Some(Ok(p)) => p.renewal_latency,
            _ => None,
        },
    });
    let members = state
        .members
        .values()
        .map(|m| {
            let probe = probes.get(&m.id);
            let ok = match probe {
                Some(Ok(p)) => Some(p),
                _ => None,
            };
            MemberStatus {
                name: m.name.clone(),
                id: m.id.0,
                address: m.address.clone(),
                raft_role: ok.map_or(RaftRole::Unknown, |p| p.raft_role),
                voter: local.voters.contains(&m.id),
                reachable: ok.is_some(),
                term: ok.map(|p| p.term),
                applied_index: ok.and_then(|p| p.applied_index),
                error: match probe {
                    Some(Err(e)) => Some(e.clone()),
                    None => Some("not probed".to_string()),
                    Some(Ok(_)) => None,
                },
            }
        })
        .collect();
    ClusterStatus {
        cluster: state.cluster.clone(),
        answered_by: name_of(state, local.node),
        consistent: local.consistent,
        leader: local.leader.map(|id| name_of(state, id)),
        leader_id: local.leader.map(|id| id.0),
        term: local.term,
        commit_index: local.commit_index,
        epoch: state.epoch.0,
        primary: state.holder().map(|id| name_of(state, id)),
        lease,
        operation: state.operation.as_ref().map(|op| match op {
            Operation::Failover { from, lapsed_epoch } => {
                format!(
                    "failover: lease of {} lapsed at epoch {lapsed_epoch}, choosing a new primary",
                    name_of(state, *from)
                )
            }
        }),
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Epoch;
    use crate::state::{Command, Member};
    use crate::timing::Timing;

    #[test]
    fn status_names_leader_primary_and_unreachable_members() {
        let mut s = ClusterState::default();
        s.apply(1, &Command::Initialize { cluster: "demo".into(), config: Timing::default() });
        let members =
            (1..=3).map(|i| Member { id: NodeId(i), name: format!("node{i}"), address: format!("a{i}") }).collect();
        s.apply(2, &Command::SetMembers { members });
        s.apply(3, &Command::Grant { holder: NodeId(2), epoch: Epoch(1) });
        let local = LocalRaft {
            node: NodeId(1),
            term: 4,
            leader: Some(NodeId(1)),
            commit_index: Some(3),
            voters: [1, 2, 3].into_iter().map(NodeId).collect(),
            consistent: true,
        };
        let mut probes = Probes::new();
        probes.insert(
            NodeId(1),
            Ok(ProbeInfo {
                raft_role: RaftRole::Leader,
                term: 4,
                applied_index: Some(3),
                lease_valid_for_ms: None,
                renewal_latency: None,
            }),
        );
        probes.insert(
            NodeId(2),
            Ok(ProbeInfo {
                raft_role: RaftRole::Follower,
                term: 4,
                applied_index: Some(3),
                lease_valid_for_ms: Some(1500),
                renewal_latency: None,
            }),
        );
        probes.insert(NodeId(3), Err("connection refused".into()));
        let st = build_status(&s, &local, &probes);
        assert_eq!(st.leader.as_deref(), Some("node1"));
        assert_eq!(st.primary.as_deref(), Some("node2"));
        assert_eq!(st.epoch, 1);
        assert_eq!(st.lease.as_ref().unwrap().valid_for_ms, Some(1500));
        assert!(!st.members[2].reachable);
        assert_eq!(st.members[2].raft_role, RaftRole::Unknown);
        assert_eq!(st.members[2].error.as_deref(), Some("connection refused"));
        let json = serde_json_like(&st);
        for key in ["cluster", "leader", "term", "epoch", "primary", "members"] {
            assert!(json.contains(key), "{key} missing");
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(LatencySummary::of(&[]), None);
        let one = LatencySummary::of(&[7]).unwrap();
        assert_eq!((one.p50_us, one.p99_us, one.max_us, one.samples), (7, 7, 7, 1));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        let s = LatencySummary::of(&hundred).unwrap();
        assert_eq!((s.p50_us, s.p99_us, s.max_us, s.samples), (50, 99, 100, 100));
        let s = LatencySummary::of(&[10, 20, 30]).unwrap();
        assert_eq!((s.p50_us, s.p99_us), (20, 30));
    }

    // core has no serde_json; Debug output is enough to see field names here.
    // The JSON shape itself is tested in the ctl and end-to-end tests.
    fn serde_json_like(st: &ClusterStatus) -> String {
        format!("{st:?}")
    }
}
