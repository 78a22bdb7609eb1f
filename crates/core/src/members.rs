//! Membership changes an operator asks for (`haraftctl member add`,
//! `member remove`), checked against the state, the Raft voters and fresh
//! probes before anything changes.

use crate::ids::NodeId;
use crate::ops::SeenAll;
use crate::state::{ClusterState, Member};

/// What `member add` does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddStep {
    /// A new member: add it as a learner, then make it a voter.
    Learner(Member),
    /// The same member was left a learner by an earlier `member add`
    /// (it did not catch up in time): make it a voter.
    Voter,
}

/// `haraftctl member add`, checked against the state and the Raft voters:
/// the step to take, or why not. Ids are never reused: a removed member's
/// id still names its old data directory and history.
pub fn check_add_member(
    state: &ClusterState,
    voters: &std::collections::BTreeSet<NodeId>,
    id: u64,
    name: &str,
    address: &str,
) -> Result<AddStep, String> {
    if let Some(m) = state.members.get(&NodeId(id)).filter(|m| m.name == name && m.address == address) {
        if voters.contains(&m.id) {
            return Err(format!("{name} (id {id}) is a voting member already"));
        }
        return Ok(AddStep::Voter);
    }
    if id == 0 {
        return Err("member id 0 is not valid: use an id of at least 1 that no member ever had".into());
    }
    if let Some(m) = state.members.get(&NodeId(id)) {
        return Err(format!("id {id} is {}'s: pick an id no member ever had", m.name));
    }
    let was_member = state.history.iter().any(|h| match &h.event {
        crate::state::HistoryEvent::MembersChanged { members } => members.contains(&NodeId(id)),
        _ => false,
    });
    if was_member {
        return Err(format!("id {id} belonged to a member removed earlier: ids are never reused; pick another id"));
    }
    if !crate::ids::valid_name(name) {
        return Err(format!("member name {name:?} is not valid: use 1-64 letters, digits, '-', '_' or '.'"));
    }
    if state.members.values().any(|m| m.name == name) {
        return Err(format!("a member is already named {name:?}: pick another name"));
    }
    if !crate::ids::is_host_port(address) {
        return Err(format!("address {address:?} is not host:port: give the new agent's gRPC address"));
    }
    if let Some(m) = state.members.values().find(|m| m.address == address) {
        return Err(format!("{} already has address {address}: give the new agent's own address", m.name));
    }
    Ok(AddStep::Learner(Member { id: NodeId(id), name: name.to_string(), address: address.to_string() }))
}

/// `haraftctl member remove`, checked against the state and fresh probes
/// (`seen`): `Ok` when `node` may leave, else why not and what to do.
/// A lease holder that did not answer (a dead primary host) may be
/// removed: removal does not shorten its lease (its renewals are refused
/// from then on and the lease lapses on the leader's timer as usual).
pub fn check_remove_member(state: &ClusterState, seen: &SeenAll, node: NodeId) -> Result<(), String> {
    let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
    if !state.members.contains_key(&node) {
        return Err(format!("node id {node} is not a member"));
    }
    if state.leaving.contains(&node) {
        // Removed from the state already; only the Raft change is left.
        return Ok(());
    }
    if state.members.len() == 1 {
        return Err(format!("{} is the only member: a cluster cannot remove its last member", name(node)));
    }
    let holder_valid = |id: NodeId| seen.get(&id).is_some_and(|s| s.lease_valid_for_ms.is_some());
    if let Some(lease) = state.lease
        && lease.holder == node
        && holder_valid(node)
    {
        return Err(format!(
            "{} is the primary and holds a valid lease at epoch {}: switch over first (haraftctl switchover --from {})",
            name(node),
            lease.epoch,
            name(node)
        ));
    }
    if let Some(why) = state.busy_with(node) {
        return Err(format!("{} cannot leave now: {why}", name(node)));
    }
    let keeps_writes =
        state.synchronous.contains(&node) || state.synchronous_fallback.as_ref().is_some_and(|f| f.0.contains(&node));
    let live_primary = state.lease.is_some_and(|l| l.holder != node && holder_valid(l.holder));
    if state.policy.synchronous_mode.is_on() && keeps_writes && !live_primary {
        return Err(format!(
            "{} is a synchronous standby and no primary holds a valid lease: it may be the only member with every acknowledged write; remove it after the failover",
            name(node)
        ));
    }
    Ok(())
}
