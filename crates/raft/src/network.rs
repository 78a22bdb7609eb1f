//! The client side of the Raft transport: openraft's `RaftNetwork` over
//! tonic. Connection failures map to openraft's `Unreachable` (it backs off
//! before retrying such a peer); every other transport failure maps to
//! `Network`, as openraft's `RaftNetwork` docs ask.

use crate::codec::{self, WriteFormat};
use crate::tls::Tls;
use crate::types::{RaftNode, TypeConfig};
use haraft_proto::raft::RaftRequest;
use haraft_proto::raft::raft_client::RaftClient;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Cuts a node off from its peers, both ways, for fault tests: while
/// isolated, its outgoing Raft and admin calls fail as unreachable and its
/// server refuses every peer call. Never set in production.
#[derive(Clone, Debug, Default)]
pub struct NetworkFaults {
    isolated: Arc<AtomicBool>,
}

impl NetworkFaults {
    pub fn isolate(&self, on: bool) {
        self.isolated.store(on, Ordering::SeqCst);
    }

    pub fn isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }
}

/// How long to wait for a TCP connection to a peer before calling it
/// unreachable: loopback and LAN connects take well under a millisecond, so
/// 500 ms only ever fires for a dead or partitioned host.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A channel that connects on first use (and reconnects after failures).
/// A channel to `address`, connecting on first use; over TLS when `tls`
/// is given, expecting the server's certificate to name `server_name`.
pub fn lazy_channel(address: &str, tls: Option<(&Tls, &str)>) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some((tls, server_name)) = tls {
        endpoint = endpoint.tls_config(tls.client(server_name))?;
    }
    Ok(endpoint.connect_lazy())
}

#[derive(Clone)]
pub struct NetworkFactory {
    cluster: Arc<str>,
    me: u64,
    faults: NetworkFaults,
    /// Where to connect to a peer instead of its advertised address.
    dial: Arc<std::collections::BTreeMap<u64, String>>,
    tls: Option<Arc<Tls>>,
    /// Requests go out in the format every member reads.
    format: WriteFormat,
}

impl NetworkFactory {
    pub fn new(
        cluster: &str,
        me: u64,
        faults: NetworkFaults,
        dial: std::collections::BTreeMap<u64, String>,
        tls: Option<Arc<Tls>>,
        format: WriteFormat,
    ) -> Self {
        NetworkFactory { cluster: cluster.into(), me, faults, dial: Arc::new(dial), tls, format }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &RaftNode) -> PeerClient {
        let address = self.dial.get(&target).unwrap_or(&node.address);
        let tls = self.tls.as_deref().map(|t| (t, node.name.as_str()));
        let client =
            lazy_channel(address, tls).map(RaftClient::new).map_err(|e| format!("bad address {address:?}: {e}"));
        PeerClient {
            cluster: Arc::clone(&self.cluster),
            me: self.me,
            target,
            client,
            faults: self.faults.clone(),
            format: self.format.clone(),
        }
    }
}

pub struct PeerClient {
    cluster: Arc<str>,
    me: u64,
    target: u64,
    client: Result<RaftClient<Channel>, String>,
    faults: NetworkFaults,
    format: WriteFormat,
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

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: RPCOption,
    ) -> Result<Resp, RPCError<u64, RaftNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.faults.isolated() {
            return Err(RPCError::Unreachable(Unreachable::new(&TransportError("isolated by fault injection".into()))));
        }
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(e.clone()))));
            }
        };
        let request = RaftRequest {
            cluster: self.cluster.to_string(),
            target: self.target,
            from: self.me,
            payload: codec::encode_as(self.format.get(), req),
        };
        let call = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(_) => {
                let msg = format!("no answer from node {} within {:?}", self.target, option.hard_ttl());
                return Err(RPCError::Network(NetworkError::new(&TransportError(msg))));
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        match codec::decode::<Result<Resp, RaftError<u64, E>>>("raft reply", &reply.payload) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
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
