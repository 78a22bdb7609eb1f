//! The status document: what `haraftctl status --json` prints. Its fields
//! are a stable contract: later versions add fields, never remove or rename.

use crate::db::DbRole;
use crate::ids::NodeId;
use crate::state::{ClusterState, Operation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::history::name_of;
pub use crate::history::{HistoryItem, VerdictView, history_view};
pub use crate::words::{bytes, utc};

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
    /// The operation in progress, in words (with its step for a switchover).
    pub operation: Option<String>,
    /// Its id, to follow it in the history; null for an automatic failover.
    #[serde(default)]
    pub operation_id: Option<u64>,
    /// Maintenance mode: no automatic failover or actions.
    #[serde(default)]
    pub paused: bool,
    /// A scheduled switchover, in words.
    #[serde(default)]
    pub scheduled: Option<String>,
    /// Operator tasks (rebuild, restart) members have yet to finish, in words.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The cluster-wide settings by their config-file keys.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Lease settings set at runtime that take effect with the next epoch.
    #[serde(default)]
    pub pending_settings: BTreeMap<String, String>,
    /// Rewinds that discarded WAL (writes acknowledged there are lost)
    /// since an operator last ran `haraftctl history ack`, in words.
    #[serde(default)]
    pub unacknowledged_losses: Vec<String>,
    /// Synchronous mode: which members the replicated state names and how
    /// many of them hold each commit, in words; `None` when off.
    #[serde(default)]
    pub synchronous: Option<String>,
    /// Strict synchronous mode with too few streaming standbys: commits
    /// wait, and why.
    #[serde(default)]
    pub writes_blocked: Option<String>,
    pub members: Vec<MemberStatus>,
    /// The feature level in force ([`crate::features`]): what every
    /// member's build must read.
    #[serde(default)]
    pub feature_level: u32,
    /// Normal: a primary holds a valid lease and every member follows it.
    /// Degraded: a primary holds a valid lease, but some member is
    /// unreachable, stopped or behind. Unavailable: no writable primary.
    pub cluster_state: ClusterHealth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterHealth {
    Normal,
    Degraded,
    Unavailable,
}

/// A member's database role as status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Primary,
    Replica,
    Stopped,
    Unknown,
}

/// A member's database state as status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "streaming")]
    Streaming,
    #[serde(rename = "catching up")]
    CatchingUp,
    #[serde(rename = "needs rewind")]
    NeedsRewind,
    #[serde(rename = "rebuilding")]
    Rebuilding,
    #[serde(rename = "stopped")]
    Stopped,
    #[serde(rename = "unreachable")]
    Unreachable,
    /// A lease-only member: it manages no database.
    #[serde(rename = "no database")]
    NoDatabase,
    /// Its data directory holds another database: refused, untouched.
    #[serde(rename = "foreign data")]
    ForeignData,
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
    pub role: MemberRole,
    pub state: MemberState,
    /// host:port of its PostgreSQL, as it registered.
    pub db_address: Option<String>,
    pub timeline: Option<u32>,
    /// WAL position (PostgreSQL's X/Y text): written (primary) or received (replica).
    pub lsn: Option<String>,
    /// Bytes behind the primary (replicas).
    pub lag_bytes: Option<u64>,
    /// The database action the member is carrying out.
    pub action: Option<String>,
    /// The kind of database action that keeps failing there: its last
    /// error, how often in a row, and when it is tried next.
    #[serde(default)]
    pub failing: Option<crate::backoff::FailingAction>,
    /// A synchronous standby named in the replicated state.
    pub synchronous: bool,
    /// What an operator should know of this member in words: why its
    /// data directory is refused, or, before the cluster has a database,
    /// what the first grant makes of it (two primaries found running are
    /// named here).
    #[serde(default)]
    pub note: Option<String>,
    /// The haraft release the member runs, as its probe said; `None` when
    /// it did not answer, or runs haraft 0.1 (which does not say).
    #[serde(default)]
    pub version: Option<String>,
    /// The highest feature level its build reads; `None` when it did not
    /// answer.
    #[serde(default)]
    pub feature_level: Option<u32>,
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
    /// The member's latest observation of its database (none for a
    /// lease-only member).
    pub db: Option<crate::db::DbStatus>,
    /// The database action the member is carrying out, if any.
    pub action: Option<String>,
    /// The kind of database action that keeps failing, if any.
    pub failing: Option<crate::backoff::FailingAction>,
    /// The member needs a rewind before it can follow the primary.
    pub needs_rewind: bool,
    /// The member manages a database, observed (`db`) or not yet.
    pub manages_database: bool,
    /// Its haraft release; `None` from haraft 0.1, which does not say.
    pub version: Option<String>,
    /// The highest feature level its build reads (0 from haraft 0.1).
    pub feature_level: crate::features::FeatureLevel,
}

impl ProbeInfo {
    /// A member that manages a database but has not observed it yet says
    /// nothing a decision may use: it may be running a primary.
    pub fn not_observed_yet(&self) -> bool {
        self.manages_database && self.db.is_none()
    }
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
    let primary_address = state.lease.and_then(|l| state.db_members.get(&l.holder)).map(|d| d.address.clone());
    // The primary's own report is fresher than its last renewal's.
    let primary_lsn = state
        .lease
        .and_then(|l| match probes.get(&l.holder) {
            Some(Ok(p)) => p.db.as_ref().filter(|d| d.is_running_primary()).and_then(|d| d.lsn),
            _ => None,
        })
        .or(state.primary_position.map(|p| p.lsn));
    let first_grant = first_grant_notes(state, probes);
    let members: Vec<MemberStatus> = state
        .members
        .values()
        .map(|m| {
            let probe = probes.get(&m.id);
            let ok = match probe {
                Some(Ok(p)) => Some(p),
                _ => None,
            };
            let db = ok.and_then(|p| p.db.as_ref());
            let (role, member_state) = match (ok, db) {
                (None, _) => (MemberRole::Unknown, MemberState::Unreachable),
                (Some(_), None) => (MemberRole::Unknown, MemberState::NoDatabase),
                (Some(p), Some(d)) => {
                    let acting = p.action.as_deref().unwrap_or("");
                    let role = match (d.running, d.role) {
                        (true, Some(DbRole::Primary)) => MemberRole::Primary,
                        (true, _) => MemberRole::Replica,
                        (false, _) => MemberRole::Stopped,
                    };
                    let foreign = foreign_data(state, d).is_some();
                    let st = if foreign {
                        MemberState::ForeignData
                    } else if acting.starts_with("rebuild") {
                        MemberState::Rebuilding
                    } else if p.needs_rewind || acting.starts_with("rewind") {
                        MemberState::NeedsRewind
                    } else if !d.running {
                        MemberState::Stopped
                    } else if d.role == Some(DbRole::Primary) {
                        MemberState::Running
                    } else if d.streaming_from.is_some() && d.streaming_from == primary_address {
                        MemberState::Streaming
                    } else {
                        MemberState::CatchingUp
                    };
                    (role, st)
                }
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
                role,
                state: member_state,
                db_address: state.db_members.get(&m.id).map(|d| d.address.clone()),
                timeline: db.and_then(|d| d.timeline).map(|t| t.0),
                lsn: db.and_then(|d| d.lsn).map(|l| l.to_string()),
                lag_bytes: match (role, db.and_then(|d| d.lsn), primary_lsn) {
                    (MemberRole::Replica | MemberRole::Stopped, Some(l), Some(p)) => Some(l.bytes_until(p)),
                    _ => None,
                },
                action: ok.and_then(|p| p.action.clone()),
                failing: ok.and_then(|p| p.failing.clone()),
                synchronous: state.synchronous.contains(&m.id),
                note: db
                    .and_then(|d| foreign_data(state, d).or_else(|| adopting(state, d)))
                    .or_else(|| first_grant.get(&m.id).cloned()),
                version: ok.and_then(|p| p.version.clone()),
                feature_level: ok.map(|p| p.feature_level.0),
            }
        })
        .collect();
    let lease_valid = lease.as_ref().is_some_and(|l| l.valid_for_ms.is_some());
    let databases = !state.db_members.is_empty();
    let holder_writable = state
        .lease
        .is_some_and(|l| !databases || members.iter().any(|m| m.id == l.holder.0 && m.role == MemberRole::Primary));
    // A second member running a primary (promoted behind haraft's back,
    // until its agent fences it) is never a normal cluster.
    let primaries = members.iter().filter(|m| m.role == MemberRole::Primary).count();
    let cluster_state = if !(lease_valid && holder_writable) {
        ClusterHealth::Unavailable
    } else if primaries <= 1
        && members.iter().all(|m| {
            matches!(m.state, MemberState::Running | MemberState::Streaming)
                || (!databases && m.state == MemberState::NoDatabase)
        })
        && members.iter().all(|m| m.note.is_none())
    {
        ClusterHealth::Normal
    } else {
        ClusterHealth::Degraded
    };
    let (synchronous, writes_blocked) = synchronous_words(state, &members);
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
        operation: state.operation.as_ref().map(|op| crate::ops::describe_operation(state, op)),
        operation_id: state.operation.as_ref().and_then(Operation::id),
        paused: state.paused,
        scheduled: state.scheduled.as_ref().map(|s| {
            format!(
                "switchover {} from {} to {} at {} UTC (asked by {})",
                s.id,
                name_of(state, s.from),
                name_of(state, s.to),
                utc(s.at_unix_ms),
                s.by
            )
        }),
        tasks: state
            .tasks
            .iter()
            .map(|(node, t)| {
                let what = match t.task {
                    crate::ops::NodeTask::Rebuild { full: false } => "rebuild (rewind first)",
                    crate::ops::NodeTask::Rebuild { full: true } => "rebuild (base backup)",
                    crate::ops::NodeTask::Restart => "restart",
                };
                format!("{} on {} (operation {}, asked by {})", what, name_of(state, *node), t.id, t.by)
            })
            .collect(),
        settings: state.config.map(|t| crate::ops::settings(t, state.policy)).unwrap_or_default(),
        pending_settings: state
            .next_config
            .map(|t| {
                let current = state.config.map(|c| crate::ops::settings(c, state.policy)).unwrap_or_default();
                crate::ops::settings(t, state.policy).into_iter().filter(|(k, v)| current.get(k) != Some(v)).collect()
            })
            .unwrap_or_default(),
        unacknowledged_losses: crate::loss::unacknowledged(&state.history)
            .into_iter()
            .filter_map(|e| match &e.event {
                crate::state::HistoryEvent::Node { node, .. } => {
                    let d = crate::loss::discard_of(&e.event)?;
                    let at = if e.at_unix_ms > 0 { format!(" at {} UTC", utc(e.at_unix_ms)) } else { String::new() };
                    let verb = crate::loss::discarded_by(&e.event);
                    Some(format!("{} {verb}{at} (log index {}): {}", name_of(state, *node), e.log_index, d.words()))
                }
                _ => None,
            })
            .collect(),
        synchronous,
        writes_blocked,
        members,
        feature_level: state.feature_level.0,
        cluster_state,
    }
}

/// Why a member's data directory is refused, when it holds another
/// database than the cluster's.
fn foreign_data(state: &ClusterState, db: &crate::db::DbStatus) -> Option<String> {
    let (expected, found) = (state.system_identifier?, db.system_identifier?);
    (db.has_data && found != expected).then(|| {
        format!(
            "holds another database (system identifier {found}, this cluster's is {expected}): haraft leaves it \
             untouched; move it aside (haraft then copies the primary's) or point the config at this cluster's data"
        )
    })
}

/// A server of the cluster that runs without haraft's settings yet.
fn adopting(state: &ClusterState, db: &crate::db::DbStatus) -> Option<String> {
    (state.system_identifier.is_some() && db.running && db.foreign_settings).then(|| {
        "runs with settings haraft has not taken over yet (adoption): haraft's are applied by a reload".to_string()
    })
}

/// Before the first grant: each member's verdict for it, from this
/// round's probes.
fn first_grant_notes(state: &ClusterState, probes: &Probes) -> BTreeMap<NodeId, String> {
    if state.system_identifier.is_some() || state.lease.is_some() || state.db_members.is_empty() {
        return BTreeMap::new();
    }
    let live: crate::db::Live = probes
        .iter()
        .filter_map(|(id, p)| p.as_ref().ok().filter(|p| !p.not_observed_yet()).map(|p| (*id, p.db.clone())))
        .collect();
    crate::adopt::bootstrap_verdicts(state, &live).into_iter().map(|v| (v.node, v.why)).collect()
}

/// The synchronous set in words, and, in strict mode, why commits wait
/// when fewer of its members stream than must confirm.
fn synchronous_words(state: &ClusterState, members: &[MemberStatus]) -> (Option<String>, Option<String>) {
    let p = &state.policy;
    if !p.synchronous_mode.is_on() {
        return (None, None);
    }
    let names: Vec<String> = state.synchronous.iter().map(|id| name_of(state, *id)).collect();
    let q = state.synchronous_quorum;
    let set = match (names.is_empty(), q as usize == names.len()) {
        (true, _) => "none yet: no failover can promote a standby without losing acknowledged writes".to_string(),
        (false, true) => format!("every one of {} confirms each commit", names.join(", ")),
        (false, false) => format!("any {q} of {} confirm each commit", names.join(", ")),
    };
    let words = format!("{} mode (node count {}): {set}", p.synchronous_mode.word(), p.synchronous_node_count);
    let streaming = members
        .iter()
        .filter(|m| state.synchronous.contains(&NodeId(m.id)) && m.state == MemberState::Streaming)
        .count();
    let need = p.synchronous_node_count.max(q) as usize;
    let blocked = (p.synchronous_strict && state.lease.is_some() && streaming < need).then(|| {
        format!(
            "strict synchronous mode: {need} synchronous standbys must confirm each commit and {streaming} stream; \
             commits wait until enough stream (or set failover.synchronous_strict=false to let them through with fewer)"
        )
    });
    (Some(words), blocked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Epoch;
    use crate::state::{Command, Member};
    use crate::timing::{Policy, Timing};

    #[test]
    fn status_names_leader_primary_and_unreachable_members() {
        let mut s = ClusterState::default();
        s.apply(
            1,
            &Command::Initialize { cluster: "demo".into(), config: Timing::default(), policy: Policy::default() },
        );
        let members =
            (1..=3).map(|i| Member { id: NodeId(i), name: format!("node{i}"), address: format!("a{i}") }).collect();
        s.apply(2, &Command::SetMembers { members });
        s.apply(3, &Command::Grant { holder: NodeId(2), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
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
                db: None,
                action: None,
                failing: None,
                needs_rewind: false,
                manages_database: false,
                version: Some("0.2.0".into()),
                feature_level: crate::features::FeatureLevel(1),
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
                db: None,
                action: None,
                failing: None,
                needs_rewind: false,
                manages_database: false,
                version: Some("0.2.0".into()),
                feature_level: crate::features::FeatureLevel(1),
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
        assert_eq!(st.members[2].state, MemberState::Unreachable);
        assert_eq!(st.members[0].state, MemberState::NoDatabase);
        assert_eq!(st.cluster_state, ClusterHealth::Degraded);
        assert_eq!(st.members[0].version.as_deref(), Some("0.2.0"));
        assert_eq!((st.members[0].feature_level, st.members[2].feature_level), (Some(1), None));
        assert_eq!(st.feature_level, 0);
        let json = serde_json_like(&st);
        for key in ["cluster", "leader", "term", "epoch", "primary", "members"] {
            assert!(json.contains(key), "{key} missing");
        }
    }

    fn db_probe(db: crate::db::DbStatus, action: Option<&str>) -> Result<ProbeInfo, String> {
        Ok(ProbeInfo {
            raft_role: RaftRole::Follower,
            term: 1,
            applied_index: Some(9),
            lease_valid_for_ms: None,
            renewal_latency: None,
            db: Some(db),
            action: action.map(str::to_string),
            failing: None,
            needs_rewind: false,
            manages_database: true,
            version: None,
            feature_level: crate::features::FeatureLevel(0),
        })
    }

    /// Three members with registered databases, nothing granted.
    fn three_registered() -> ClusterState {
        use crate::db::DbMember;
        let mut s = ClusterState::default();
        s.apply(1, &Command::Initialize { cluster: "c".into(), config: Timing::default(), policy: Policy::default() });
        let members =
            (1..=3).map(|i| Member { id: NodeId(i), name: format!("node{i}"), address: format!("a{i}") }).collect();
        s.apply(2, &Command::SetMembers { members });
        for i in 1..=3 {
            let db = DbMember { address: format!("127.0.0.1:540{i}"), nofailover: false, priority: 1 };
            s.apply(3, &Command::Register { node: NodeId(i), db });
        }
        s
    }

    /// Node 1's view as the Raft leader.
    fn leader_view() -> LocalRaft {
        LocalRaft {
            node: NodeId(1),
            term: 1,
            leader: Some(NodeId(1)),
            commit_index: Some(9),
            voters: BTreeSet::new(),
            consistent: true,
        }
    }

    #[test]
    fn database_roles_states_lag_and_cluster_state() {
        use crate::db::DbStatus;
        use crate::ids::{Lsn, TimelineId};
        let mut s = three_registered();
        s.apply(4, &Command::Grant { holder: NodeId(1), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
        let d = |running, role, lsn: u64, from: Option<&str>| DbStatus {
            has_data: true,
            running,
            role: Some(role),
            timeline: Some(TimelineId(1)),
            lsn: Some(Lsn(lsn)),
            replayed_lsn: Some(Lsn(lsn)),
            system_identifier: Some(1),
            clean_shutdown: None,
            streaming_from: from.map(str::to_string),
            replicas: Vec::new(),
            synchronous_names: None,
            slots: None,
            forks: None,
            ..DbStatus::default()
        };
        let local = leader_view();
        let mut probes = Probes::new();
        let mut primary = db_probe(d(true, DbRole::Primary, 1000, None), None).unwrap();
        primary.lease_valid_for_ms = Some(2000);
        probes.insert(NodeId(1), Ok(primary));
        probes.insert(NodeId(2), db_probe(d(true, DbRole::Standby, 900, Some("127.0.0.1:5401")), None));
        probes.insert(NodeId(3), db_probe(d(true, DbRole::Standby, 800, Some("127.0.0.1:5401")), None));
        let st = build_status(&s, &local, &probes);
        assert_eq!(st.cluster_state, ClusterHealth::Normal);
        assert_eq!((st.members[0].role, st.members[0].state), (MemberRole::Primary, MemberState::Running));
        assert_eq!((st.members[1].role, st.members[1].state), (MemberRole::Replica, MemberState::Streaming));
        assert_eq!(st.members[1].lag_bytes, Some(100));
        assert_eq!(st.members[2].lag_bytes, Some(200));
        assert_eq!(st.members[0].lsn.as_deref(), Some("0/3E8"));
        // One replica rebuilding: degraded; the primary gone: unavailable.
        probes.insert(NodeId(3), db_probe(d(false, DbRole::Standby, 800, None), Some("rebuild source=1 epoch=1")));
        // A replica promoted behind haraft's back: two primaries are never
        // normal (the seed's gs_om said "Normal" of neither either).
        probes.insert(NodeId(2), db_probe(d(true, DbRole::Primary, 900, None), None));
        let st = build_status(&s, &local, &probes);
        assert_eq!((st.members[1].role, st.cluster_state), (MemberRole::Primary, ClusterHealth::Degraded));
        probes.insert(NodeId(2), db_probe(d(true, DbRole::Standby, 900, Some("127.0.0.1:5401")), None));
        let st = build_status(&s, &local, &probes);
        assert_eq!((st.members[2].role, st.members[2].state), (MemberRole::Stopped, MemberState::Rebuilding));
        assert_eq!(st.cluster_state, ClusterHealth::Degraded);
        probes.insert(NodeId(1), Err("unreachable".into()));
        let st = build_status(&s, &local, &probes);
        assert_eq!(st.cluster_state, ClusterHealth::Unavailable);
    }

    #[test]
    fn foreign_data_and_adoption_are_shown_per_member_and_in_the_history() {
        use crate::db::DbStatus;
        use crate::ids::{Lsn, TimelineId};
        use crate::state::{DataOrigin, NodeEvent};
        let mut s = three_registered();
        let d = |role, sysid, from: Option<&str>, foreign_settings| DbStatus {
            has_data: true,
            running: true,
            role: Some(role),
            timeline: Some(TimelineId(1)),
            lsn: Some(Lsn(100)),
            system_identifier: Some(sysid),
            streaming_from: from.map(str::to_string),
            foreign_settings,
            ..DbStatus::default()
        };
        let local = leader_view();
        let mut probes = Probes::new();
        let mut primary = db_probe(d(DbRole::Primary, 7, None, false), None).unwrap();
        primary.lease_valid_for_ms = Some(2000);
        probes.insert(NodeId(1), Ok(primary));
        probes.insert(NodeId(2), db_probe(d(DbRole::Standby, 7, Some("127.0.0.1:5401"), true), None));
        probes.insert(NodeId(3), db_probe(d(DbRole::Standby, 9, None, false), None));
        // Before the first grant: each member's verdict for it.
        let st = build_status(&s, &local, &probes);
        assert!(st.members[0].note.as_deref().is_some_and(|n| n.contains("adopted as it runs (chosen)")), "{st:?}");
        s.apply(4, &Command::Grant { holder: NodeId(1), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
        let origin = DataOrigin::RunningPrimary;
        let set =
            Command::SetDatabase { holder: NodeId(1), epoch: Epoch(1), system_identifier: 7, origin, at_unix_ms: 42 };
        s.apply(5, &set);
        let st = build_status(&s, &local, &probes);
        assert_eq!(st.members[2].state, MemberState::ForeignData);
        let note = st.members[2].note.as_deref().unwrap_or_default();
        assert!(note.contains("holds another database (system identifier 9, this cluster's is 7)"), "{note}");
        assert!(st.members[1].note.as_deref().is_some_and(|n| n.contains("not taken over yet")), "{st:?}");
        assert_eq!(st.members[1].state, MemberState::Streaming);
        assert_eq!(st.cluster_state, ClusterHealth::Degraded, "adopting, and a foreign member: not normal");
        s.apply(6, &Command::Report { node: NodeId(3), event: NodeEvent::Copied { from: NodeId(1) }, at_unix_ms: 43 });
        let h = history_view(&s);
        let boot = h.iter().find(|i| i.event == "bootstrapped").expect("bootstrapped");
        assert_eq!(boot.at_unix_ms, Some(42));
        assert!(boot.detail.contains("node1's running primary was adopted as it ran"), "{}", boot.detail);
        let copied = h.iter().find(|i| i.event == "rebuilt").expect("rebuilt");
        assert_eq!(copied.detail, "node3 copied from node1 by base backup");
    }

    #[test]
    fn history_names_members_and_keeps_the_decision_inputs() {
        use crate::ids::{Lsn, TimelineId};
        use crate::state::{NodeEvent, Verdict};
        let mut s = ClusterState::default();
        s.apply(
            1,
            &Command::Initialize { cluster: "demo".into(), config: Timing::default(), policy: Policy::default() },
        );
        let members =
            (1..=2).map(|i| Member { id: NodeId(i), name: format!("node{i}"), address: String::new() }).collect();
        s.apply(2, &Command::SetMembers { members });
        let verdicts = vec![
            Verdict { node: NodeId(1), eligible: true, why: "received up to 0/10".into(), lsn: Some(Lsn(16)) },
            Verdict { node: NodeId(2), eligible: false, why: "tagged nofailover".into(), lsn: None },
        ];
        s.apply(3, &Command::Grant { holder: NodeId(1), epoch: Epoch(1), verdicts, at_unix_ms: 1_700_000_000_000 });
        let event = NodeEvent::Rewound {
            diverged_at: Some(Lsn(0x100)),
            timeline: Some(TimelineId(1)),
            discarded_to: Some(Lsn(0x180)),
        };
        s.apply(4, &Command::Report { node: NodeId(2), event, at_unix_ms: 5 });
        let event = NodeEvent::PromotedOutside { timeline: Some(TimelineId(2)), lsn: Some(Lsn(0x5000)) };
        s.apply(5, &Command::Report { node: NodeId(2), event, at_unix_ms: 6 });
        let h = history_view(&s);
        assert_eq!(
            h.iter().map(|i| i.event.as_str()).collect::<Vec<_>>(),
            ["initialized", "members-changed", "granted", "rewound", "promoted-outside-haraft"]
        );
        assert_eq!(h[2].node.as_deref(), Some("node1"));
        assert_eq!(h[2].at_unix_ms, Some(1_700_000_000_000));
        assert_eq!(h[2].verdicts[1].why, "tagged nofailover");
        assert_eq!(
            h[3].detail,
            "node2 rewound: diverged at 0/100; discarded at least 0/100–0/180 (at least 128 B of WAL; its end is the last position known)"
        );
        assert_eq!((h[3].discarded_to.as_deref(), h[3].discarded_bytes), (Some("0/180"), Some(128)));
        assert_eq!(
            h[4].detail,
            "node2 was promoted outside haraft (timeline 2, at 0/5000): fenced; what it wrote is discarded when it rejoins (its rewind names the range)"
        );
        assert_eq!((h[4].timeline, h[4].lsn.as_deref()), (Some(2), Some("0/5000")));
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
