//! Operator requests, on the Raft leader: names resolved to members, the
//! pure checks of `haraft_core::ops` run against fresh probes of every
//! member, then one `Command::Operator` committed (which `apply` checks
//! again against the state it lands on).

use crate::clock::now_unix_ms;
use crate::shared::{ProposeError, Shared};
use haraft_core::members::{AddStep, check_add_member, check_remove_member};
use haraft_core::ops::{
    CandidateCheck, OperateReply, OperateRequest, Order, Request, Seen, SeenAll, apply_config_changes, audit_entry,
    check_switchover,
};
use haraft_core::plan::check_failover;
use haraft_core::{ClusterState, Command, Effect, NodeId, Outcome};
use haraft_raft::types::RaftNode;
use openraft::ChangeMembers;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn refuse(message: String) -> OperateReply {
    OperateReply { message, refused: true, ..OperateReply::default() }
}

fn resolve(state: &ClusterState, name: &str) -> Result<NodeId, String> {
    state.members.values().find(|m| m.name == name).map(|m| m.id).ok_or_else(|| {
        let names: Vec<&str> = state.members.values().map(|m| m.name.as_str()).collect();
        format!("unknown member {name:?}: the members are {}", names.join(", "))
    })
}

/// Checks `request` and, unless it is a dry run, commits it. A request
/// that does not become an operation (refused, or a member added) is
/// recorded in the history as an audit entry; an operation records itself.
pub async fn operate(shared: &Arc<Shared>, request: OperateRequest) -> OperateReply {
    let reply = check_and_commit(shared, &request).await;
    if let Some((what, refused)) = audit_entry(&request, &reply) {
        audit(shared, what, request.by.clone(), refused, reply.message.clone());
    }
    reply
}

/// Records an operator's request in the history (`Command::Audit`), in the
/// background: the answer never waits for it, and a cluster without a
/// quorum only loses the record (logged).
pub fn audit(shared: &Arc<Shared>, what: String, by: String, refused: bool, result: String) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let command = Command::Audit { node: shared.me(), what, by, refused, result, at_unix_ms: now_unix_ms() };
        match shared.propose(command).await {
            Ok(Outcome::Applied(_)) => {}
            Ok(Outcome::Rejected(r)) => tracing::warn!("audit record refused: {r}"),
            Err(e) => tracing::warn!("audit record not committed: {e}"),
        }
    });
}

async fn check_and_commit(shared: &Arc<Shared>, request: &OperateRequest) -> OperateReply {
    let seen: SeenAll = shared
        .probe_all()
        .await
        .into_iter()
        .filter_map(|(id, r)| r.ok().map(|p| (id, Seen { lease_valid_for_ms: p.lease_valid_for_ms, db: p.db })))
        .collect();
    let state = shared.state();
    if let Request::AddMember { id, name, address } = &request.request {
        return add_member(shared, &state, *id, name, address, request.dry_run).await.unwrap_or_else(refuse);
    }
    if let Request::RemoveMember { node } = &request.request {
        return remove_member(shared, &state, &seen, node, request).await.unwrap_or_else(refuse);
    }
    let mut reply = OperateReply::default();
    let order = match decide(&state, &seen, &request.request, &mut reply) {
        Ok(order) => order,
        Err(message) => {
            reply.message = message;
            reply.refused = true;
            return reply;
        }
    };
    if request.dry_run {
        return reply;
    }
    match commit(shared, order, &request.by).await {
        Ok(id) => {
            reply.accepted = true;
            reply.id = Some(id);
            reply
        }
        Err(message) => refuse(message),
    }
}

/// Commits `order` on this node (the Raft leader): its operation id, or
/// why it was not committed.
async fn commit(shared: &Shared, order: Order, by: &str) -> Result<u64, String> {
    let by = if by.trim().is_empty() { "unknown".to_string() } else { by.to_string() };
    let command = Command::Operator { order, by, at_unix_ms: now_unix_ms() };
    match shared.propose_here(command).await {
        Ok(Outcome::Applied(Effect::Accepted { id })) => Ok(id),
        Ok(Outcome::Applied(other)) => Err(format!("unexpected effect {other:?}")),
        Ok(Outcome::Rejected(r)) => Err(format!("refused: {r}")),
        Err(ProposeError::Timeout { ms }) => Err(format!(
            "not committed within {ms} ms: it may still commit; check haraftctl status before asking again"
        )),
        Err(e) => Err(format!("not committed: {e}")),
    }
}

/// How long a new member may take to catch up with the Raft log before
/// it becomes a voter.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(8);

/// `member add`: a learner first (it receives the log without voting),
/// a voter once it has caught up. Run again for a member left a learner,
/// it finishes the job.
async fn add_member(
    shared: &Arc<Shared>,
    state: &ClusterState,
    id: u64,
    name: &str,
    address: &str,
    dry_run: bool,
) -> Result<OperateReply, String> {
    let voters: BTreeSet<NodeId> = shared.metrics().membership_config.membership().voter_ids().map(NodeId).collect();
    let step = check_add_member(state, &voters, id, name, address)?;
    let mut reply = OperateReply {
        message: format!("add {name} (id {id}) at {address}: a learner until it has caught up, then a voter"),
        ..OperateReply::default()
    };
    if dry_run {
        return Ok(reply);
    }
    let bound = shared.write_timeout();
    let raft_err = |e: String| format!("membership not changed: {e}");
    let index = match step {
        AddStep::Voter => shared.metrics().last_log_index.unwrap_or(0),
        AddStep::Learner(m) => {
            let node = RaftNode { name: m.name, address: m.address };
            match tokio::time::timeout(bound, shared.raft.add_learner(id, node, false)).await {
                Ok(Ok(resp)) => resp.log_id.index,
                Ok(Err(e)) => return Err(raft_err(e.to_string())),
                Err(_) => {
                    return Err(format!(
                        "adding {name} as a learner was not committed within {bound:?}: check haraftctl status before asking again"
                    ));
                }
            }
        }
    };
    let start = tokio::time::Instant::now();
    loop {
        let matched = shared.metrics().replication.and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index);
        if matched.is_some_and(|m| m >= index) {
            break;
        }
        if start.elapsed() > LEARNER_CATCH_UP {
            return Err(format!(
                "{name} was added as a learner (non-voting) but has not caught up within {} s: start its agent (node.join = true, listening at {address}), then run haraftctl member add again to make it a voter, or haraftctl member remove {name}",
                LEARNER_CATCH_UP.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
    match tokio::time::timeout(bound * 2, shared.raft.change_membership(change, false)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(raft_err(e.to_string())),
        Err(_) => {
            return Err(format!(
                "making {name} a voter was not committed within {:?}: check haraftctl status",
                bound * 2
            ));
        }
    }
    tracing::info!(member = %name, id, %address, "member added");
    reply.accepted = true;
    reply.message = format!(
        "{name} is a voting member now; its agent copies the database from the primary and streams (haraftctl status)"
    );
    Ok(reply)
}

/// `member remove`: first a committed order that makes it leave every
/// decision (it is still a voter, so it learns of it and stops its
/// PostgreSQL), then out of the Raft group (voter or learner). Run again
/// when the second step did not commit: it resumes there.
async fn remove_member(
    shared: &Arc<Shared>,
    state: &ClusterState,
    seen: &SeenAll,
    name: &str,
    request: &OperateRequest,
) -> Result<OperateReply, String> {
    let node = resolve(state, name)?;
    check_remove_member(state, seen, node)?;
    let mut reply =
        OperateReply { message: format!("remove {name} (id {node}) from the cluster"), ..OperateReply::default() };
    if request.dry_run {
        return Ok(reply);
    }
    if !state.leaving.contains(&node) {
        reply.id = Some(commit(shared, Order::RemoveMember { node }, &request.by).await?);
    }
    let voter = shared.metrics().membership_config.membership().voter_ids().any(|v| v == node.0);
    let ids = BTreeSet::from([node.0]);
    let change = if voter { ChangeMembers::RemoveVoters(ids) } else { ChangeMembers::RemoveNodes(ids) };
    let bound = shared.write_timeout() * 2;
    match tokio::time::timeout(bound, shared.raft.change_membership(change, false)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("membership not changed: {e}")),
        Err(_) => return Err(format!("removing {name} was not committed within {bound:?}: check haraftctl status")),
    }
    tracing::info!(member = %name, id = node.0, "member removed");
    reply.accepted = true;
    reply.message = format!(
        "{name} removed: stop its agent (it stops its PostgreSQL once it learns of the removal); never reuse id {node}"
    );
    Ok(reply)
}

/// The order a request resolves to, with the plan filled into `reply`
/// (message, candidates, target); `Err` with the reason it is refused.
fn decide(state: &ClusterState, seen: &SeenAll, request: &Request, reply: &mut OperateReply) -> Result<Order, String> {
    if state.config.is_none() {
        return Err("the cluster is not initialized yet".into());
    }
    let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
    let reachable = |node: NodeId| {
        if seen.contains_key(&node) {
            Ok(())
        } else {
            Err(format!("{} did not answer: check its agent (haraftctl status)", name(node)))
        }
    };
    match request {
        Request::Switchover { from, to, at_unix_ms, force } => {
            let from = from.as_deref().map(|n| resolve(state, n)).transpose()?;
            let to = to.as_deref().map(|n| resolve(state, n)).transpose()?;
            if let Some(at) = at_unix_ms
                && *at <= now_unix_ms()
            {
                return Err(format!(
                    "--at {} UTC is in the past (by this agent's clock): give a later time",
                    haraft_core::status::utc(*at)
                ));
            }
            let plan = check_switchover(state, seen, from, to, *force, false);
            reply.candidates = plan.candidates.iter().map(|(_, c)| c.clone()).collect();
            reply.from = plan.from.map(name);
            reply.target = plan.to.map(name);
            let lease = state.lease.ok_or_else(|| plan.summary(state))?;
            let target = match (at_unix_ms, plan.ok()) {
                (None, false) => return Err(plan.summary(state)),
                (None, true) => plan.to,
                // A scheduled switchover is checked again at its time;
                // now only its members must make sense.
                (Some(_), _) => to.or(plan.to),
            };
            let target = target.ok_or_else(|| plan.summary(state))?;
            reply.target = Some(name(target));
            reply.message = match at_unix_ms {
                None => format!("switchover from {} to {}", name(lease.holder), name(target)),
                Some(at) => format!(
                    "switchover from {} to {} at {} UTC, if its preconditions hold then",
                    name(lease.holder),
                    name(target),
                    haraft_core::status::utc(*at)
                ),
            };
            Ok(Order::Switchover {
                from: lease.holder,
                to: target,
                epoch: lease.epoch,
                at_unix_ms: *at_unix_ms,
                force: *force,
            })
        }
        Request::CancelSwitchover => {
            reply.message = "cancel the switchover".into();
            Ok(Order::CancelSwitchover)
        }
        Request::Failover { to, allow_data_loss, force } => {
            let to = resolve(state, to)?;
            let (verdicts, verdict) = check_failover(state, seen, to, *allow_data_loss, *force);
            reply.candidates = verdicts
                .iter()
                .map(|v| CandidateCheck {
                    node: name(v.node),
                    ok: v.eligible,
                    reasons: vec![v.why.clone()],
                    lag_bytes: None,
                })
                .collect();
            reply.target = Some(name(to));
            let why = verdict?;
            reply.message = format!("failover to {}: {why}", name(to));
            Ok(Order::Failover { to, allow_data_loss: *allow_data_loss })
        }
        Request::Rebuild { node, full } => {
            let node = resolve(state, node)?;
            if state.holder() == Some(node) {
                return Err(format!(
                    "{} is the primary: a rebuild would discard it; switch over first (haraftctl switchover)",
                    name(node)
                ));
            }
            reachable(node)?;
            reply.message = format!(
                "rebuild {} from {}",
                name(node),
                if *full { "a fresh base backup" } else { "a rewind (a base backup if that fails)" }
            );
            Ok(Order::Rebuild { node, full: *full })
        }
        Request::Restart { node } => {
            let node = resolve(state, node)?;
            reachable(node)?;
            reply.message = format!("restart PostgreSQL on {}", name(node));
            Ok(Order::Restart { node })
        }
        Request::Pause => {
            reply.message = "pause automatic failover and actions".into();
            Ok(Order::Pause)
        }
        Request::Resume => {
            reply.message = "resume automatic failover and actions".into();
            Ok(Order::Resume)
        }
        Request::AcknowledgeLoss => {
            let count = haraft_core::loss::unacknowledged(&state.history).len();
            reply.message = format!("acknowledge {count} rewind(s) that discarded writes");
            Ok(Order::AcknowledgeLoss)
        }
        Request::AddMember { .. } | Request::RemoveMember { .. } => {
            Err("membership changes are not orders: this agent could not handle the request".into())
        }
        Request::SetConfig { changes } => {
            let current = state.config.expect("checked above");
            let base = state.next_config.unwrap_or(current);
            let (timing, policy, said) = apply_config_changes(base, state.policy, changes)?;
            reply.message = format!("config set {said}");
            Ok(Order::SetConfig { timing, policy, changes: said })
        }
    }
}
