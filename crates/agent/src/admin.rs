//! The admin gRPC service: status for haraftctl, and the two peer calls
//! (forwarded renewals, probes).

use crate::auth;
use crate::shared::ProposeError;
use crate::shared::{Shared, role_name};
use haraft_core::auth::{Access, refusal_audited};
use haraft_core::ops::{OperateReply as OperateReplyJson, OperateRequest as OperateRequestJson, audit_entry};
use haraft_core::status::{LocalRaft, Probes, build_status};
use haraft_core::{Command, NodeId};
use haraft_proto::admin::admin_client::AdminClient;
use haraft_proto::admin::admin_server::{self, AdminServer};
use haraft_proto::admin::{
    HistoryReply, HistoryRequest, OperateReply, OperateRequest, ProbeReply, ProbeRequest, ProposeReply, ProposeRequest,
    RefusalAck, RefusalNotice, RenewalLatency, StatusReply, StatusRequest,
};
use haraft_raft::codec;
use haraft_raft::server::{admit, check_speaker};
use openraft::ServerState;
use std::sync::Arc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// A refusal line is a few hundred characters; more is not a reason.
const MAX_REFUSAL_CHARS: usize = 1000;

pub struct AdminService {
    shared: Arc<Shared>,
}

impl AdminService {
    pub fn new(shared: Arc<Shared>) -> AdminServer<AdminService> {
        AdminServer::new(AdminService { shared })
    }

    /// The service itself, not wrapped for a tonic server: a simulator
    /// calls its `admin_server::Admin` methods directly.
    pub fn plain(shared: Arc<Shared>) -> AdminService {
        AdminService { shared }
    }

    fn admit(&self, cluster: &str, target: u64) -> Result<(), Status> {
        admit(cluster, target, &self.shared.config.cluster, self.shared.me().0, &self.shared.faults)
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        auth::require(&self.shared, &request, Access::Read)?;
        let token = request.metadata().get(auth::AUTHORIZATION).cloned();
        let json = status_document(&self.shared, request.into_inner().local_only, token).await?;
        Ok(Response::new(StatusReply { json }))
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Result<Response<HistoryReply>, Status> {
        auth::require(&self.shared, &request, Access::Read)?;
        let token = request.metadata().get(auth::AUTHORIZATION).cloned();
        let json = history_document(&self.shared, request.into_inner().local_only, token).await?;
        Ok(Response::new(HistoryReply { json }))
    }

    async fn propose(&self, request: Request<ProposeRequest>) -> Result<Response<ProposeReply>, Status> {
        let from = request.get_ref().from;
        let tls = self.shared.config.tls.is_some();
        check_speaker(&request, tls, from, |id| self.shared.member(NodeId(id)).map(|m| m.name))?;
        let req = request.into_inner();
        self.admit(&req.cluster, req.target)?;
        let command: Command =
            codec::decode("forwarded command", &req.command).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Only a member's statements about itself are forwarded: its
        // renewal, registration, reports, bootstrap and release. Lapses and
        // grants are the Raft leader's own decisions: no peer can ask for them.
        let speaker = match &command {
            Command::Renew { holder, .. }
            | Command::SetSystemIdentifier { holder, .. }
            | Command::SetDatabase { holder, .. }
            | Command::Release { holder, .. }
            | Command::SetSynchronous { holder, .. }
            | Command::SetForks { holder, .. }
            | Command::SwitchoverDemoted { holder, .. }
            | Command::SwitchoverPromoted { holder, .. } => Some(*holder),
            Command::Register { node, .. }
            | Command::Report { node, .. }
            | Command::SwitchoverRejoined { node, .. }
            | Command::TaskDone { node, .. }
            | Command::DmSwitchover { node, .. }
            | Command::Audit { node, .. } => Some(*node),
            // Operator requests are checked on the leader (Operate), and
            // ending or starting operations is the leader's own decision.
            Command::Initialize { .. }
            | Command::SetMembers { .. }
            | Command::Grant { .. }
            | Command::Lapse { .. }
            | Command::Operator { .. }
            | Command::EndOperation { .. }
            | Command::StartScheduled { .. }
            | Command::SetFeatureLevel { .. } => None,
        };
        match speaker {
            None => {
                return Err(Status::permission_denied(format!(
                    "{command} is decided by the Raft leader, not forwarded"
                )));
            }
            Some(node) if node.0 != req.from => {
                return Err(Status::permission_denied(format!(
                    "node {} cannot speak for node {node}: {command}",
                    req.from
                )));
            }
            Some(_) => {}
        }
        match self.shared.propose_here(command).await {
            Ok(outcome) => {
                Ok(Response::new(ProposeReply { outcome: codec::encode_as(self.shared.write_format(), &outcome) }))
            }
            Err(e @ ProposeError::Timeout { .. }) => Err(Status::deadline_exceeded(e.to_string())),
            Err(e @ ProposeError::NotLeader { .. }) => Err(Status::failed_precondition(e.to_string())),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn operate(&self, request: Request<OperateRequest>) -> Result<Response<OperateReply>, Status> {
        if self.shared.faults.isolated() {
            return Err(Status::unavailable("node isolated by fault injection"));
        }
        let access = if request.get_ref().forwarded { Access::ForwardedOperate } else { Access::Operate };
        let caller = auth::caller(&self.shared, &request)?;
        if let Err(status) = auth::check(&self.shared, &caller, access) {
            if refusal_audited(&caller, access) {
                let refusal =
                    OperateReplyJson { refused: true, message: status.message().into(), ..Default::default() };
                if let Ok(asked) = serde_json::from_str::<OperateRequestJson>(&request.get_ref().json)
                    && let Some((what, refused)) = audit_entry(&asked, &refusal)
                {
                    let by = format!("{} ({})", caller.identity, asked.by);
                    crate::operate::audit(&self.shared, what, by, refused, refusal.message);
                }
            }
            return Err(status);
        }
        let token = request.metadata().get(auth::AUTHORIZATION).cloned();
        let mut req = request.into_inner();
        let mut parsed: OperateRequestJson = serde_json::from_str(&req.json)
            .map_err(|e| Status::invalid_argument(format!("unreadable operator request: {e}")))?;
        // The history names who asked by the verified credential; what the
        // client said about itself (user@host) follows in brackets. A
        // forwarded request was named by the member that checked it.
        if access == Access::Operate && auth::active(&self.shared) {
            parsed.by = format!("{} ({})", caller.identity, parsed.by);
            req.json =
                serde_json::to_string(&parsed).map_err(|e| Status::internal(format!("encoding request: {e}")))?;
        }
        let metrics = self.shared.metrics();
        if metrics.state != ServerState::Leader {
            if req.forwarded {
                return Err(Status::failed_precondition(format!(
                    "node {} is no longer the Raft leader: ask again",
                    self.shared.me()
                )));
            }
            let leader = metrics.current_leader.and_then(|id| self.shared.member(NodeId(id))).ok_or_else(|| {
                Status::unavailable("no Raft leader is known: a majority of members must reach each other")
            })?;
            let mut client = self.shared.client_for(leader.id, &leader.address).map_err(Status::unavailable)?;
            // Probing every member and committing: a few write timeouts at most.
            let call = client.operate(with_token(OperateRequest { json: req.json, forwarded: true }, token));
            return match tokio::time::timeout(self.shared.write_timeout() * 3, call).await {
                // The leader this node knows cannot be reached (dead, cut
                // off): an election is probably under way.
                Ok(Err(status)) if status.code() == tonic::Code::Unavailable => Err(Status::unavailable(format!(
                    "the Raft leader {} is unreachable ({}): a new leader is probably being elected; ask again",
                    leader.name,
                    status.message()
                ))),
                Ok(reply) => reply,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "the Raft leader {} did not answer in time: the request may still commit; check haraftctl status",
                    leader.name
                ))),
            };
        }
        let reply = crate::operate::operate(&self.shared, parsed).await;
        let json = serde_json::to_string(&reply).map_err(|e| Status::internal(format!("encoding reply: {e}")))?;
        Ok(Response::new(OperateReply { json }))
    }

    /// A member whose agent refused to start says why. Authenticated like
    /// a peer call (with TLS, only a certificate naming that member may
    /// speak for it); the reason is clipped and only ever shown.
    async fn refused(&self, request: Request<RefusalNotice>) -> Result<Response<RefusalAck>, Status> {
        let from = request.get_ref().from;
        let tls = self.shared.config.tls.is_some();
        check_speaker(&request, tls, from, |id| self.shared.member(NodeId(id)).map(|m| m.name))?;
        let notice = request.into_inner();
        self.admit(&notice.cluster, notice.target)?;
        if self.shared.member(NodeId(from)).is_none() {
            return Err(Status::permission_denied(format!("node {from} is not a member")));
        }
        let reason: String = notice.reason.chars().take(MAX_REFUSAL_CHARS).collect();
        tracing::warn!(member = from, %reason, "a member's agent refused to start");
        let now = crate::clock::boottime();
        self.shared.refusals.lock().expect("never poisoned").insert(NodeId(from), (reason, now));
        Ok(Response::new(RefusalAck {}))
    }

    /// A peer call (the leader's probes): like Raft traffic, authenticated
    /// by TLS when the cluster has it, and carrying no token.
    async fn probe(&self, request: Request<ProbeRequest>) -> Result<Response<ProbeReply>, Status> {
        let req = request.into_inner();
        self.admit(&req.cluster, req.target)?;
        let info = self.shared.local_probe();
        Ok(Response::new(ProbeReply {
            node_id: self.shared.me().0,
            name: self.shared.config.node_name.clone(),
            cluster: self.shared.config.cluster.clone(),
            raft_role: role_name(info.raft_role).to_string(),
            term: info.term,
            applied_index: info.applied_index,
            lease_valid_for_ms: info.lease_valid_for_ms,
            renewal_latency: info.renewal_latency.map(|r| RenewalLatency {
                p50_us: r.p50_us,
                p99_us: r.p99_us,
                max_us: r.max_us,
                samples: r.samples,
            }),
            db: info.db.as_ref().map(|db| codec::encode_as(self.shared.write_format(), db)).unwrap_or_default(),
            action: info.action,
            needs_rewind: info.needs_rewind,
            rewind_unfinished: info.db.as_ref().is_some_and(|db| db.rewind_unfinished),
            manages_database: info.manages_database,
            version: info.version.unwrap_or_default(),
            feature_level: info.feature_level.0,
            failing: info.failing.map(|f| haraft_proto::admin::FailingAction {
                action: f.action,
                error: f.error,
                count: f.count,
                next_try_unix_ms: f.next_try_unix_ms,
            }),
        }))
    }
}

/// The status document (`haraftctl status --json`, REST `/cluster`): the
/// Raft leader's view, or this node's own when `local_only` or when the
/// leader cannot be reached in time.
pub async fn status_document(shared: &Arc<Shared>, local_only: bool, token: Option<Token>) -> Result<String, Status> {
    if shared.faults.isolated() {
        return Err(Status::unavailable("node isolated by fault injection"));
    }
    if !local_only
        && let Some(json) = from_leader(shared, async |mut c| {
            c.status(with_token(StatusRequest { local_only: true }, token)).await.map(|r| r.into_inner().json)
        })
        .await
    {
        return Ok(json);
    }
    let metrics = shared.metrics();
    let is_leader = metrics.state == ServerState::Leader;
    // A linearizable read proves this node still leads a quorum; being
    // leader alone proves nothing (openraft 0.9 has no check-quorum).
    let consistent = is_leader
        && matches!(tokio::time::timeout(shared.write_timeout(), shared.raft.ensure_linearizable()).await, Ok(Ok(_)));
    let probes: Probes = with_refusals(shared, shared.probe_all().await).into_iter().collect();
    let local = LocalRaft {
        node: shared.me(),
        term: metrics.current_term,
        leader: metrics.current_leader.map(NodeId),
        commit_index: *shared.committed.borrow(),
        voters: metrics.membership_config.membership().voter_ids().map(NodeId).collect(),
        consistent,
    };
    let status = build_status(&shared.state(), &local, &probes);
    serde_json::to_string(&status).map_err(|e| Status::internal(format!("encoding status: {e}")))
}

/// A member that does not answer, and whose agent said it refused to
/// start, is shown with the reason; one that answers again is forgotten.
fn with_refusals(
    shared: &Shared,
    probes: Vec<(NodeId, Result<haraft_core::status::ProbeInfo, String>)>,
) -> Vec<(NodeId, Result<haraft_core::status::ProbeInfo, String>)> {
    let mut refusals = shared.refusals.lock().expect("never poisoned");
    let now = crate::clock::boottime();
    probes
        .into_iter()
        .map(|(id, probe)| match probe {
            Ok(info) => {
                refusals.remove(&id);
                (id, Ok(info))
            }
            Err(e) => match refusals.get(&id) {
                Some((reason, at)) => {
                    let ago = now.0.saturating_sub(at.0) / 1000;
                    (id, Err(format!("{e}; its agent refused to start {ago} s ago: {reason}")))
                }
                None => (id, Err(e)),
            },
        })
        .collect()
}

/// The history document (`haraftctl history --json`, REST `/history`): the
/// Raft leader's copy, or this node's own when out of reach.
pub async fn history_document(shared: &Arc<Shared>, local_only: bool, token: Option<Token>) -> Result<String, Status> {
    if shared.faults.isolated() {
        return Err(Status::unavailable("node isolated by fault injection"));
    }
    if !local_only
        && let Some(json) = from_leader(shared, async |mut c| {
            c.history(with_token(HistoryRequest { local_only: true }, token)).await.map(|r| r.into_inner().json)
        })
        .await
    {
        return Ok(json);
    }
    let items = haraft_core::status::history_view(&shared.state());
    serde_json::to_string(&items).map_err(|e| Status::internal(format!("encoding history: {e}")))
}

/// A caller's bearer token, as it came.
pub type Token = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// `message` as a request carrying `token`, for forwarding a caller's
/// request to the Raft leader under the caller's own credential.
fn with_token<T>(message: T, token: Option<Token>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(t) = token {
        request.metadata_mut().insert(auth::AUTHORIZATION, t);
    }
    request
}

/// Asks the Raft leader (when it is another member) with `call`, bounded by
/// the write timeout: its view is the freshest. `None` when this node leads
/// or the leader does not answer in time; the caller then answers itself.
async fn from_leader(
    shared: &Arc<Shared>,
    call: impl AsyncFnOnce(AdminClient<Channel>) -> Result<String, Status>,
) -> Option<String> {
    let metrics = shared.metrics();
    if metrics.state == ServerState::Leader {
        return None;
    }
    let leader = metrics.current_leader.and_then(|id| shared.member(NodeId(id)))?;
    let client = shared.client_for(leader.id, &leader.address).ok()?;
    tokio::time::timeout(shared.write_timeout(), call(client)).await.ok()?.ok()
}
