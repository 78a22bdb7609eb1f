//! What the agent's tasks share: the Raft handle, the published state, and
//! the two ways to reach other members (forwarded proposals, probes). Every
//! call here carries a timeout.

use crate::clock::boottime;
use crate::config::Config;
use haraft_core::status::LatencySummary;
use haraft_core::status::{ProbeInfo, RaftRole};
use haraft_core::{BootTime, ClusterState, Command, Epoch, FeatureLevel, Member, NodeId, Outcome};
use haraft_proto::admin::admin_client::AdminClient;
use haraft_proto::admin::{ProbeReply, ProbeRequest, ProposeReply, ProposeRequest};
use haraft_raft::Raft;
use haraft_raft::codec;
use haraft_raft::network::{NetworkFaults, lazy_channel};
use haraft_raft::store::Applied;
use haraft_raft::types::RaftMetrics;
use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::Channel;

/// How long a probe may take. Members answer from memory, so anything
/// slower than this is as good as unreachable for choosing a primary.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How many recent renewal latencies the holder keeps for status: at one
/// renewal a second, the last ~17 minutes.
const RENEWAL_SAMPLES: usize = 1000;

/// The holder's view of its own lease, published by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseView {
    pub epoch: Option<Epoch>,
    /// Valid until this point on this machine's CLOCK_BOOTTIME.
    pub valid_until: Option<BootTime>,
}

impl LeaseView {
    pub fn valid_for_ms(&self, now: BootTime) -> Option<u64> {
        self.valid_until.filter(|t| now < *t).map(|t| now.ms_until(t))
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProposeError {
    #[error("no answer within {ms} ms")]
    Timeout { ms: u64 },
    #[error("no Raft leader is known")]
    NoLeader,
    #[error("forwarding to the leader {leader} failed: {message}")]
    Forward { leader: String, message: String },
    #[error("raft refused the write: {0}")]
    Raft(String),
    #[error("this node is isolated by fault injection")]
    Isolated,
    #[error("node {node} is not the Raft leader (leader: {leader:?}): ask again")]
    NotLeader { node: NodeId, leader: Option<NodeId> },
    #[error("the Raft leader changed from {from:?} to {to:?} while waiting: asking the new one")]
    LeaderChanged { from: Option<u64>, to: Option<u64> },
}

/// A boxed future of a call to another member.
pub type PeerCall<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, tonic::Status>> + Send>>;

/// How this agent calls other members' admin services when it does not
/// use gRPC: the seam a simulator routes through its own network. Errors
/// are the `tonic::Status` a gRPC call would give (`Unavailable` for an
/// unreachable member), so both ways are handled by the same code.
pub trait PeerCalls: Send + Sync + 'static {
    fn probe(&self, target: NodeId, request: ProbeRequest) -> PeerCall<ProbeReply>;
    fn propose(&self, target: NodeId, request: ProposeRequest) -> PeerCall<ProposeReply>;
}

/// How this agent reaches other members' admin services.
#[derive(Clone, Default)]
pub enum Peers {
    /// gRPC to each member's address (the daemon).
    #[default]
    Grpc,
    /// Through a simulator's network.
    Calls(Arc<dyn PeerCalls>),
}

pub struct Shared {
    pub config: Config,
    /// How probes and forwarded proposals reach other members.
    pub peers: Peers,
    pub raft: Raft,
    pub applied: watch::Receiver<Applied>,
    pub committed: watch::Receiver<Option<u64>>,
    pub lease_view: watch::Receiver<LeaseView>,
    pub faults: NetworkFaults,
    clients: Mutex<HashMap<String, AdminClient<Channel>>>,
    renewal_latencies_us: Mutex<VecDeque<u64>>,
    /// The latest observation of the local database (none without one).
    pub db_status: Mutex<Option<haraft_core::DbStatus>>,
    /// The database action in progress, in words.
    pub db_action: Mutex<Option<String>>,
    pub db_needs_rewind: std::sync::atomic::AtomicBool,
    /// The database decision last taken (action, reason), for /metrics.
    pub last_decision: Mutex<Option<(String, String)>>,
    /// The kind of database action that keeps failing here (see
    /// `haraft_core::backoff`).
    pub db_failing: Mutex<Option<haraft_core::backoff::FailingAction>>,
    /// Database actions carried out, by kind and outcome (`ok`, `failed`).
    pub action_counts: Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
    /// How many times this agent fenced its database after someone else
    /// promoted it.
    pub outside_promotions: std::sync::atomic::AtomicU64,
    /// Bytes of WAL this agent's rewinds (and rebuilds of a diverged
    /// directory) discarded.
    pub discarded_wal_bytes: std::sync::atomic::AtomicU64,
    /// What a rebuild measured it would discard, kept until its history
    /// entry is written: a rebuild that fails after setting the old
    /// directory aside leaves nothing to measure for the next attempt.
    pub(crate) unrecorded_discard: Mutex<Option<haraft_core::loss::Discard>>,
    /// Primary changes counted from the history this agent applied.
    pub transitions: Mutex<haraft_core::metrics::Transitions>,
    pub loop_stats: LoopStats,
    /// Members whose agents said they refused to start, why, and when the
    /// notice came; shown in status while the member is unreachable.
    pub refusals: Mutex<std::collections::BTreeMap<NodeId, (String, BootTime)>>,
}

/// How the agent's loop runs: when it last ran (liveness) and how long its
/// passes take (a histogram for /metrics). Atomics: read by the REST
/// server without waiting on the loop.
#[derive(Default)]
pub struct LoopStats {
    /// CLOCK_BOOTTIME (ms) at the end of the last pass; 0 before the first.
    last_ms: AtomicU64,
    buckets: [AtomicU64; haraft_core::metrics::LOOP_BUCKETS_SECONDS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LoopStats {
    pub fn record(&self, ended: BootTime, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(haraft_core::metrics::LOOP_BUCKETS_SECONDS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.last_ms.store(ended.0, Ordering::Relaxed);
    }

    /// Milliseconds since the last pass ended; `None` before the first.
    pub fn age_ms(&self, now: BootTime) -> Option<u64> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            last => Some(now.0.saturating_sub(last)),
        }
    }

    /// Cumulative bucket counts (the last bound +Inf), sum in seconds, count.
    pub fn histogram(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let count = self.count.load(Ordering::Relaxed);
        let mut buckets: Vec<(f64, u64)> = haraft_core::metrics::LOOP_BUCKETS_SECONDS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, b)| (*bound, b.load(Ordering::Relaxed)))
            .collect();
        buckets.push((f64::INFINITY, count));
        (buckets, self.sum_us.load(Ordering::Relaxed) as f64 / 1e6, count)
    }
}

pub fn role_of(state: ServerState) -> RaftRole {
    match state {
        ServerState::Leader => RaftRole::Leader,
        ServerState::Follower => RaftRole::Follower,
        ServerState::Candidate => RaftRole::Candidate,
        ServerState::Learner => RaftRole::Learner,
        ServerState::Shutdown => RaftRole::Shutdown,
    }
}

pub fn role_name(role: RaftRole) -> &'static str {
    match role {
        RaftRole::Leader => "leader",
        RaftRole::Follower => "follower",
        RaftRole::Candidate => "candidate",
        RaftRole::Learner => "learner",
        RaftRole::Shutdown => "shutdown",
        RaftRole::Unknown => "unknown",
    }
}

pub fn role_from_name(name: &str) -> RaftRole {
    match name {
        "leader" => RaftRole::Leader,
        "follower" => RaftRole::Follower,
        "candidate" => RaftRole::Candidate,
        "learner" => RaftRole::Learner,
        "shutdown" => RaftRole::Shutdown,
        _ => RaftRole::Unknown,
    }
}

impl Shared {
    pub fn new(
        config: Config,
        raft: Raft,
        applied: watch::Receiver<Applied>,
        committed: watch::Receiver<Option<u64>>,
        lease_view: watch::Receiver<LeaseView>,
        faults: NetworkFaults,
    ) -> Shared {
        Shared {
            config,
            raft,
            applied,
            committed,
            lease_view,
            faults,
            peers: Peers::Grpc,
            clients: Mutex::new(HashMap::new()),
            renewal_latencies_us: Mutex::new(VecDeque::new()),
            db_status: Mutex::new(None),
            db_action: Mutex::new(None),
            db_needs_rewind: std::sync::atomic::AtomicBool::new(false),
            last_decision: Mutex::new(None),
            db_failing: Mutex::new(None),
            action_counts: Mutex::new(Default::default()),
            outside_promotions: Default::default(),
            discarded_wal_bytes: Default::default(),
            unrecorded_discard: Default::default(),
            transitions: Mutex::new(haraft_core::metrics::Transitions::default()),
            loop_stats: LoopStats::default(),
            refusals: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    pub fn me(&self) -> NodeId {
        self.config.node
    }

    pub fn state(&self) -> Arc<ClusterState> {
        Arc::clone(&self.applied.borrow().state)
    }

    /// The codec format this member writes: what every member reads at the
    /// feature level of the state applied here (as the store's own).
    pub fn write_format(&self) -> codec::Format {
        codec::Format::for_level(self.applied.borrow().state.feature_level)
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.config.raft.write_timeout_ms)
    }

    /// Members as the replicated state knows them, or from the config file
    /// before the first membership entry is applied.
    pub fn members(&self) -> Vec<Member> {
        let state = self.state();
        if state.members.is_empty() { self.config.members.clone() } else { state.members.values().cloned().collect() }
    }

    pub fn member(&self, id: NodeId) -> Option<Member> {
        self.members().into_iter().find(|m| m.id == id)
    }

    /// An admin client for member `id` (advertised at `address`), through
    /// this node's dial override for it if it has one. With TLS, its
    /// certificate must name the member.
    pub fn client_for(&self, id: NodeId, address: &str) -> Result<AdminClient<Channel>, String> {
        let address = self.config.dial.raft.get(&id).map_or(address, String::as_str);
        let name = self.member(id).map(|m| m.name).unwrap_or_else(|| format!("node-id-{id}"));
        let mut clients = self.clients.lock().expect("client cache lock is never poisoned: no panics while held");
        if let Some(c) = clients.get(address) {
            return Ok(c.clone());
        }
        let tls = self.config.tls.as_ref().map(|t| (&*t.loaded, name.as_str()));
        let channel = lazy_channel(address, tls).map_err(|e| format!("bad address {address:?}: {e}"))?;
        let client = AdminClient::new(channel);
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }

    /// Commits `command` through Raft: locally when this node leads,
    /// otherwise forwarded once to the leader. Bounded by the write timeout.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        self.propose_within(command, self.write_timeout()).await
    }

    /// `propose` bounded by `limit` (never more than the write timeout).
    pub async fn propose_within(&self, command: Command, limit: Duration) -> Result<Outcome, ProposeError> {
        let limit = limit.min(self.write_timeout());
        match tokio::time::timeout(limit, self.propose_unbounded(command)).await {
            Ok(result) => result,
            Err(_) => Err(ProposeError::Timeout { ms: limit.as_millis() as u64 }),
        }
    }

    async fn propose_unbounded(&self, command: Command) -> Result<Outcome, ProposeError> {
        if self.faults.isolated() {
            return Err(ProposeError::Forward { leader: "?".into(), message: "isolated by fault injection".into() });
        }
        match self.raft.client_write(command.clone()).await {
            Ok(resp) => {
                resp.data.ok_or_else(|| ProposeError::Raft("a command entry answered without an outcome".into()))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let (Some(leader), Some(node)) = (f.leader_id, f.leader_node) else {
                    return Err(ProposeError::NoLeader);
                };
                if leader == self.me().0 {
                    return Err(ProposeError::NoLeader);
                }
                self.forward(NodeId(leader), &node.address, command).await
            }
            Err(e) => Err(ProposeError::Raft(e.to_string())),
        }
    }

    /// A lease renewal: `propose_within(attempt)`, given up as soon as
    /// another Raft leader is known than the one it went to. A renewal
    /// forwarded to a leader that hangs would otherwise wait out its whole
    /// attempt while the new leader could commit it at once; every moment
    /// counts against the holder's deadline.
    pub async fn renew(&self, command: Command, attempt: Duration) -> Result<Outcome, ProposeError> {
        // Server metrics: they change with the leader, not with every
        // heartbeat answer.
        let mut metrics = self.raft.server_metrics();
        let from = metrics.borrow().current_leader;
        let leader_changed = async {
            loop {
                if metrics.changed().await.is_err() {
                    // Raft stopped: the attempt's own bound ends it.
                    std::future::pending::<()>().await;
                }
                let to = metrics.borrow().current_leader;
                if to.is_some() && to != from {
                    return to;
                }
            }
        };
        tokio::select! {
            // Biased: an answer beats a leader change seen at the same
            // moment, and no draw from the runtime's unseeded generator.
            biased;
            answer = self.propose_within(command, attempt) => answer,
            to = leader_changed => Err(ProposeError::LeaderChanged { from, to }),
        }
    }

    /// Commits `command` on this node, which must be the Raft leader (no
    /// forwarding): for the leader's own decisions and operator requests.
    pub async fn propose_here(&self, command: Command) -> Result<Outcome, ProposeError> {
        let ms = self.config.raft.write_timeout_ms;
        match tokio::time::timeout(self.write_timeout(), self.raft.client_write(command)).await {
            Err(_) => Err(ProposeError::Timeout { ms }),
            Ok(Ok(resp)) => {
                resp.data.ok_or_else(|| ProposeError::Raft("a command entry answered without an outcome".into()))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ProposeError::NotLeader { node: self.me(), leader: f.leader_id.map(NodeId) })
            }
            Ok(Err(e)) => Err(ProposeError::Raft(e.to_string())),
        }
    }

    async fn forward(&self, leader: NodeId, address: &str, command: Command) -> Result<Outcome, ProposeError> {
        let fail = |message: String| ProposeError::Forward { leader: format!("node {leader} at {address}"), message };
        let request = ProposeRequest {
            cluster: self.config.cluster.clone(),
            target: leader.0,
            from: self.me().0,
            command: codec::encode_as(self.write_format(), &command),
        };
        let reply = match &self.peers {
            Peers::Grpc => {
                let mut client = self.client_for(leader, address).map_err(fail)?;
                client.propose(request).await.map(tonic::Response::into_inner)
            }
            Peers::Calls(peers) => peers.propose(leader, request).await,
        }
        .map_err(|s| fail(s.message().to_string()))?;
        codec::decode::<Outcome>("propose reply", &reply.outcome).map_err(|e| fail(e.to_string()))
    }

    /// Records the commit latency of one granted renewal.
    pub fn record_renewal(&self, latency_us: u64) {
        let mut samples = self.renewal_latencies_us.lock().expect("latency lock is never poisoned");
        if samples.len() == RENEWAL_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(latency_us);
    }

    /// This node's own probe answer.
    pub fn local_probe(&self) -> ProbeInfo {
        let m = self.metrics();
        ProbeInfo {
            raft_role: role_of(m.state),
            term: m.current_term,
            applied_index: m.last_applied.map(|l| l.index),
            lease_valid_for_ms: self.lease_view.borrow().valid_for_ms(boottime()),
            renewal_latency: {
                let samples = self.renewal_latencies_us.lock().expect("latency lock is never poisoned");
                LatencySummary::of(&samples.iter().copied().collect::<Vec<_>>())
            },
            db: self.db_status.lock().expect("never poisoned").clone(),
            action: self.db_action.lock().expect("never poisoned").clone(),
            failing: self.db_failing.lock().expect("never poisoned").clone(),
            needs_rewind: self.db_needs_rewind.load(std::sync::atomic::Ordering::Relaxed),
            manages_database: self.config.postgres.is_some(),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            feature_level: FeatureLevel::SUPPORTED,
        }
    }

    /// Asks `member` about itself, bounded by `PROBE_TIMEOUT`.
    pub async fn probe(&self, member: &Member) -> Result<ProbeInfo, String> {
        if member.id == self.me() {
            return Ok(self.local_probe());
        }
        if self.faults.isolated() {
            return Err("isolated by fault injection".into());
        }
        let request = ProbeRequest { cluster: self.config.cluster.clone(), target: member.id.0 };
        let call = match &self.peers {
            Peers::Grpc => {
                let mut client = self.client_for(member.id, &member.address)?;
                Box::pin(async move { client.probe(request).await.map(tonic::Response::into_inner) })
                    as PeerCall<ProbeReply>
            }
            Peers::Calls(peers) => peers.probe(member.id, request),
        };
        let reply = match tokio::time::timeout(PROBE_TIMEOUT, call).await {
            Err(_) => return Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(format!("unreachable ({})", status.message()));
            }
            Ok(Err(status)) => return Err(status.message().to_string()),
            Ok(Ok(r)) => r,
        };
        if reply.node_id != member.id.0 || reply.cluster != self.config.cluster {
            return Err(format!(
                "address {} answers as node {} of cluster {:?}, expected node {} of {:?}",
                member.address, reply.node_id, reply.cluster, member.id, self.config.cluster
            ));
        }
        Ok(ProbeInfo {
            raft_role: role_from_name(&reply.raft_role),
            term: reply.term,
            applied_index: reply.applied_index,
            lease_valid_for_ms: reply.lease_valid_for_ms,
            renewal_latency: reply.renewal_latency.map(|r| LatencySummary {
                p50_us: r.p50_us,
                p99_us: r.p99_us,
                max_us: r.max_us,
                samples: r.samples,
            }),
            db: if reply.db.is_empty() {
                None
            } else {
                let mut db: haraft_core::DbStatus =
                    codec::decode("database status", &reply.db).map_err(|e| format!("member {}: {e}", member.id))?;
                db.rewind_unfinished = reply.rewind_unfinished;
                Some(db)
            },
            action: reply.action,
            needs_rewind: reply.needs_rewind,
            manages_database: reply.manages_database,
            // haraft 0.1 sends neither: no version, level 0.
            version: Some(reply.version).filter(|v| !v.is_empty()),
            feature_level: FeatureLevel(reply.feature_level),
            failing: reply.failing.map(|f| haraft_core::backoff::FailingAction {
                action: f.action,
                error: f.error,
                count: f.count,
                next_try_unix_ms: f.next_try_unix_ms,
            }),
        })
    }

    /// Probes every member concurrently.
    pub async fn probe_all(self: &Arc<Self>) -> Vec<(NodeId, Result<ProbeInfo, String>)> {
        let mut set = tokio::task::JoinSet::new();
        for m in self.members() {
            let shared = Arc::clone(self);
            set.spawn(async move { (m.id, shared.probe(&m).await) });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(pair) = joined {
                out.push(pair);
            }
        }
        out.sort_by_key(|(id, _)| *id);
        out
    }
}
