//! The receiving side of the Raft transport. Every request is checked for
//! the right cluster and target node before it reaches openraft; a payload
//! that does not decode is refused with InvalidArgument and never panics.

use crate::codec::{self, WriteFormat};
use crate::network::NetworkFaults;
use crate::types::{Raft, TypeConfig};
use haraft_proto::raft::raft_server;
use haraft_proto::raft::{RaftReply, RaftRequest};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::{Request, Response, Status};

/// Refuses a peer call that is not for this node of this cluster, or that
/// arrives while fault injection isolates this node.
pub fn admit(cluster: &str, target: u64, my_cluster: &str, me: u64, faults: &NetworkFaults) -> Result<(), Status> {
    if faults.isolated() {
        return Err(Status::unavailable("node isolated by fault injection"));
    }
    if cluster != my_cluster {
        return Err(Status::failed_precondition(format!(
            "request for cluster {cluster:?} reached node {me} of cluster {my_cluster:?}: check [cluster] name and the member addresses"
        )));
    }
    if target != me {
        return Err(Status::failed_precondition(format!(
            "request for node id {target} reached node id {me} of cluster {my_cluster:?}: check the member list's ids and addresses"
        )));
    }
    Ok(())
}

pub struct RaftService {
    raft: Raft,
    cluster: String,
    me: u64,
    faults: NetworkFaults,
    /// Whether peers present certificates (TLS configured): then a message
    /// from member N must come with a certificate naming N.
    tls: bool,
    /// Member names from the config file, for senders the Raft membership
    /// does not hold yet (a joining node hears from the leader first).
    configured: std::collections::BTreeMap<u64, String>,
    /// Replies go out in the format every member reads.
    format: WriteFormat,
}

/// With TLS, the member a request speaks for (`from`) must be the one its
/// certificate names. `name_of` gives a member id's name.
pub fn check_speaker<T>(
    request: &Request<T>,
    tls: bool,
    from: u64,
    name_of: impl FnOnce(u64) -> Option<String>,
) -> Result<(), Status> {
    if !tls {
        return Ok(());
    }
    let Some(name) = name_of(from) else {
        return Err(Status::permission_denied(format!(
            "a request speaks for node id {from}, which is not a member: refused"
        )));
    };
    let certs = request.peer_certs();
    if crate::tls::certificate_names(certs.as_ref(), &name) {
        Ok(())
    } else {
        tracing::warn!(from, member = %name, "refused a request whose certificate does not name the member it speaks for");
        Err(Status::permission_denied(format!(
            "a request speaks for member {name} (node id {from}) but its certificate does not name {name}: each member must use its own certificate"
        )))
    }
}

impl RaftService {
    pub fn new(
        raft: Raft,
        cluster: &str,
        me: u64,
        faults: NetworkFaults,
        tls: bool,
        configured: std::collections::BTreeMap<u64, String>,
        format: WriteFormat,
    ) -> raft_server::RaftServer<RaftService> {
        raft_server::RaftServer::new(RaftService::plain(raft, cluster, me, faults, tls, configured, format))
    }

    /// The service itself, not wrapped for a tonic server: a simulator
    /// calls its `raft_server::Raft` methods directly.
    pub fn plain(
        raft: Raft,
        cluster: &str,
        me: u64,
        faults: NetworkFaults,
        tls: bool,
        configured: std::collections::BTreeMap<u64, String>,
        format: WriteFormat,
    ) -> RaftService {
        RaftService { raft, cluster: cluster.to_string(), me, faults, tls, configured, format }
    }

    fn open<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        request: Request<RaftRequest>,
    ) -> Result<T, Status> {
        let from = request.get_ref().from;
        check_speaker(&request, self.tls, from, |id| {
            let known =
                self.raft.metrics().borrow().membership_config.membership().get_node(&id).map(|n| n.name.clone());
            known.or_else(|| self.configured.get(&id).cloned())
        })?;
        let req = request.into_inner();
        admit(&req.cluster, req.target, &self.cluster, self.me, &self.faults)?;
        codec::decode(what, &req.payload).map_err(|e| {
            tracing::warn!(from = req.from, error = %e, "refused a raft request");
            Status::invalid_argument(e.to_string())
        })
    }
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.open("append-entries request", request)?;
        let result = self.raft.append_entries(rpc).await;
        Ok(Response::new(RaftReply { payload: codec::encode_as(self.format.get(), &result) }))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<u64> = self.open("vote request", request)?;
        let result = self.raft.vote(rpc).await;
        Ok(Response::new(RaftReply { payload: codec::encode_as(self.format.get(), &result) }))
    }

    async fn install_snapshot(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = self.open("install-snapshot request", request)?;
        let result = self.raft.install_snapshot(rpc).await;
        Ok(Response::new(RaftReply { payload: codec::encode_as(self.format.get(), &result) }))
    }
}
