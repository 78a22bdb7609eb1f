//! The simulated side of the network seams: an in-memory router between
//! the agents' Raft services and admin services. Per link and direction it
//! can cut (a partition: messages vanish, the caller's timeout fires, as
//! with dropped packets), lose a share of messages, delay them (which also
//! reorders them) and duplicate them. Requests are encoded and decoded by
//! the same codec and checked by the same services as over tonic.

use crate::rng::Rng;
use haraft_agent::admin::AdminService;
use haraft_agent::shared::{PeerCall, PeerCalls};
use haraft_core::NodeId;
use haraft_proto::admin::admin_server::Admin;
use haraft_proto::admin::{ProbeReply, ProbeRequest, ProposeReply, ProposeRequest};
use haraft_proto::raft::RaftRequest;
use haraft_proto::raft::raft_server::Raft as RaftRpc;
use haraft_raft::codec;
use haraft_raft::server::RaftService;
use haraft_raft::{RaftNode, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default)]
pub struct Link {
    pub cut: bool,
    pub loss_percent: u64,
    pub extra_delay_ms: u64,
    pub duplicate_percent: u64,
}

/// A one-way network delay on a healthy link: LAN round trips here are
/// well under a millisecond; 1–3 ms keeps reordering possible.
const BASE_DELAY_MS: (u64, u64) = (1, 3);

#[derive(Default)]
struct State {
    raft: BTreeMap<u64, Arc<RaftService>>,
    admin: BTreeMap<u64, Arc<AdminService>>,
    links: BTreeMap<(u64, u64), Link>,
    /// Per member: whether its agent process runs (`false`: paused).
    running: BTreeMap<u64, tokio::sync::watch::Sender<bool>>,
    rng: Option<Rng>,
}

#[derive(Clone, Default)]
pub struct Router(Arc<Mutex<State>>);

/// What happens to one message.
enum Fate {
    Lost,
    Delivered { delay: Duration, duplicate: bool },
}

impl Router {
    pub fn new(rng: Rng) -> Router {
        Router(Arc::new(Mutex::new(State { rng: Some(rng), ..State::default() })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("the router lock is never held across a panic")
    }

    pub fn register(&self, id: u64, raft: Arc<RaftService>, admin: Arc<AdminService>) {
        let mut s = self.lock();
        s.raft.insert(id, raft);
        s.admin.insert(id, admin);
    }

    /// The node is down: nothing reaches it any more.
    pub fn unregister(&self, id: u64) {
        let mut s = self.lock();
        s.raft.remove(&id);
        s.admin.remove(&id);
    }

    /// The gate of member `id`'s agent process, open until `pause`.
    pub fn gate(&self, id: u64) -> haraft_agent::driver::Gate {
        let mut s = self.lock();
        let running = s.running.entry(id).or_insert_with(|| tokio::sync::watch::channel(true).0);
        haraft_agent::driver::Gate::controlled(running.subscribe())
    }

    /// Freezes member `id`'s agent (`false`) or lets it go on (`true`).
    pub fn set_running(&self, id: u64, running: bool) {
        let mut s = self.lock();
        let gate = s.running.entry(id).or_insert_with(|| tokio::sync::watch::channel(true).0);
        gate.send_replace(running);
    }

    pub fn paused(&self, id: u64) -> bool {
        self.lock().running.get(&id).is_some_and(|g| !*g.borrow())
    }

    /// Waits while member `id`'s process is paused: what it sends leaves,
    /// and what reaches it is read, only once it runs again.
    async fn wait_running(&self, id: u64) {
        if !self.paused(id) {
            return;
        }
        let mut gate = self.gate(id);
        gate.pass().await;
    }

    pub fn set_link(&self, from: u64, to: u64, link: Link) {
        self.lock().links.insert((from, to), link);
    }

    pub fn link(&self, from: u64, to: u64) -> Link {
        self.lock().links.get(&(from, to)).copied().unwrap_or_default()
    }

    pub fn heal_all(&self) {
        self.lock().links.clear();
    }

    /// Whether `from` can reach `to` right now (for database traffic).
    pub fn reachable(&self, from: u64, to: u64) -> bool {
        from == to || !self.link(from, to).cut
    }

    fn fate(&self, from: u64, to: u64) -> Fate {
        let mut s = self.lock();
        let link = s.links.get(&(from, to)).copied().unwrap_or_default();
        let rng = s.rng.as_mut().expect("the router always has its generator");
        if link.cut || rng.chance(link.loss_percent) {
            return Fate::Lost;
        }
        let ms = rng.range(BASE_DELAY_MS.0, BASE_DELAY_MS.1) + link.extra_delay_ms;
        Fate::Delivered { delay: Duration::from_millis(ms), duplicate: rng.chance(link.duplicate_percent) }
    }

    /// Carries a request `from` → `to` and its answer back, or never
    /// answers when either is lost (the caller's timeout ends the wait).
    async fn carry<T: Send + 'static>(
        &self,
        from: u64,
        to: u64,
        call: impl Fn(&State) -> Option<PeerCall<T>>,
    ) -> Result<T, tonic::Status> {
        self.wait_running(from).await;
        let Fate::Delivered { delay, duplicate } = self.fate(from, to) else { return std::future::pending().await };
        tokio::time::sleep(delay).await;
        self.wait_running(to).await;
        let Some(first) = call(&self.lock()) else { return std::future::pending().await };
        if duplicate && let Some(copy) = call(&self.lock()) {
            tokio::spawn(async move {
                let _ = copy.await;
            });
        }
        let answer = first.await;
        self.wait_running(to).await;
        let Fate::Delivered { delay, .. } = self.fate(to, from) else { return std::future::pending().await };
        tokio::time::sleep(delay).await;
        self.wait_running(from).await;
        answer
    }
}

/// The admin calls one agent makes to the others.
pub struct SimPeers {
    pub me: u64,
    pub router: Router,
}

impl PeerCalls for SimPeers {
    fn probe(&self, target: NodeId, request: ProbeRequest) -> PeerCall<ProbeReply> {
        let (router, me) = (self.router.clone(), self.me);
        Box::pin(async move {
            router
                .carry(me, target.0, |s| {
                    let svc = Arc::clone(s.admin.get(&target.0)?);
                    let request = request.clone();
                    Some(Box::pin(async move { svc.probe(tonic::Request::new(request)).await.map(|r| r.into_inner()) })
                        as PeerCall<ProbeReply>)
                })
                .await
        })
    }

    fn propose(&self, target: NodeId, request: ProposeRequest) -> PeerCall<ProposeReply> {
        let (router, me) = (self.router.clone(), self.me);
        Box::pin(async move {
            router
                .carry(me, target.0, |s| {
                    let svc = Arc::clone(s.admin.get(&target.0)?);
                    let request = request.clone();
                    Some(Box::pin(
                        async move { svc.propose(tonic::Request::new(request)).await.map(|r| r.into_inner()) },
                    ) as PeerCall<ProposeReply>)
                })
                .await
        })
    }
}

/// openraft's network factory over the router.
#[derive(Clone)]
pub struct SimNetwork {
    pub cluster: Arc<str>,
    pub me: u64,
    pub router: Router,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimPeer;

    async fn new_client(&mut self, target: u64, _node: &RaftNode) -> SimPeer {
        SimPeer { net: self.clone(), target }
    }
}

pub struct SimPeer {
    net: SimNetwork,
    target: u64,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl SimPeer {
    /// As `haraft_raft::network::PeerClient::call`, over the router.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: RPCOption,
    ) -> Result<Resp, RPCError<u64, RaftNode, RaftError<u64, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let request = RaftRequest {
            cluster: self.net.cluster.to_string(),
            target: self.target,
            from: self.net.me,
            payload: codec::encode(req),
        };
        let target = self.target;
        let call = self.net.router.carry(self.net.me, target, |s| {
            let svc = Arc::clone(s.raft.get(&target)?);
            let request = request.clone();
            Some(Box::pin(async move {
                let request = tonic::Request::new(request);
                match rpc {
                    Rpc::AppendEntries => svc.append_entries(request).await,
                    Rpc::Vote => svc.vote(request).await,
                    Rpc::InstallSnapshot => svc.install_snapshot(request).await,
                }
                .map(|r| r.into_inner())
            }) as PeerCall<haraft_proto::raft::RaftReply>)
        });
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(_) => {
                let msg = format!("no answer from node {target} within {:?}", option.hard_ttl());
                return Err(RPCError::Network(NetworkError::new(&TransportError(msg))));
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status))),
            Ok(Ok(reply)) => reply,
        };
        match codec::decode::<Result<Resp, RaftError<u64, E>>>("raft reply", &reply.payload) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(target, remote))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for SimPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, RaftNode, RaftError<u64>>> {
        self.call(Rpc::AppendEntries, &rpc, option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, RaftNode, RaftError<u64, InstallSnapshotError>>> {
        self.call(Rpc::InstallSnapshot, &rpc, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, RaftNode, RaftError<u64>>> {
        self.call(Rpc::Vote, &rpc, option).await
    }
}
