//! Operator operations: what an operator may ask for (switchover, failover,
//! rebuild, restart, pause, resume, config set), the checks made before a
//! request is proposed, and the words the history and the CLI use for them.
//!
//! A request is checked twice: here, on the Raft leader, against fresh
//! probes of every member (health, streaming, lag — what only live members
//! can tell); and again by `ClusterState::apply`, against the committed
//! state alone (a compare-and-set, so that a request checked against an
//! older state changes nothing).

use crate::db::{DbPosition, DbStatus, Engine};
use crate::ids::{Epoch, NodeId};
use crate::state::ClusterState;
use crate::sync::SyncMode;
use crate::timing::{Policy, Timing};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An operation's id: the Raft log index of the entry that requested it.
pub type OpId = u64;

/// How long each switchover step may take before the Raft leader ends or
/// rolls back the switchover. The old primary's clean stop is a fast
/// shutdown plus its shutdown checkpoint; 30 s covers a busy server.
pub const SWITCHOVER_STOP_TIMEOUT_MS: u64 = 30_000;
/// How long the Raft leader waits, after the old primary stopped, for the
/// target to have received the old primary's final WAL. A streaming
/// standby has it when the stop ends (a fast shutdown waits for its
/// walsenders), so waiting long only keeps the cluster without a primary:
/// after this the old primary is given the lease back.
pub const SWITCHOVER_CATCH_UP_TIMEOUT_MS: u64 = 10_000;
/// How long the old primary may take to stream from the new one before the
/// switchover is reported done without it.
pub const SWITCHOVER_REJOIN_TIMEOUT_MS: u64 = 60_000;
/// How long a manual failover waits for its target (or for the holder to
/// give the lease up) before it is reported failed.
pub const FAILOVER_TIMEOUT_MS: u64 = 30_000;

/// What an operator asks for, with members named by their names, as the
/// admin API receives it (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Request {
    Switchover {
        from: Option<String>,
        to: Option<String>,
        /// Run at this wall-clock time (Unix ms) instead of now.
        at_unix_ms: Option<u64>,
        /// Also while the cluster is paused.
        force: bool,
    },
    /// Cancel the scheduled switchover, or the running one before its old
    /// primary stopped.
    CancelSwitchover,
    Failover {
        to: String,
        allow_data_loss: bool,
        force: bool,
    },
    Rebuild {
        node: String,
        full: bool,
    },
    Restart {
        node: String,
    },
    Pause,
    Resume,
    /// `KEY=VALUE` pairs, e.g. `failover.synchronous_mode=true`.
    SetConfig {
        changes: Vec<(String, String)>,
    },
    /// Add a member (its agent runs with `node.join = true`): a Raft
    /// learner that catches up, then a voter.
    AddMember {
        id: u64,
        name: String,
        /// host:port of its gRPC listener.
        address: String,
    },
    /// Remove a member from the Raft group and the cluster.
    RemoveMember {
        node: String,
    },
    /// The discarded writes the history names so far are known: status
    /// stops warning about them (`haraftctl history ack`).
    AcknowledgeLoss,
}

impl fmt::Display for Request {
    /// The request as the operator gave it (member names, not ids), with
    /// its arguments: what the history's audit entries say was asked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Switchover { from, to, at_unix_ms, force } => {
                write!(f, "switchover")?;
                if let Some(from) = from {
                    write!(f, " from {from}")?;
                }
                if let Some(to) = to {
                    write!(f, " to {to}")?;
                }
                if let Some(t) = at_unix_ms {
                    write!(f, " at {} UTC", crate::words::utc(*t))?;
                }
                if *force {
                    write!(f, " (force)")?;
                }
                Ok(())
            }
            Request::CancelSwitchover => write!(f, "cancel the switchover"),
            Request::Failover { to, allow_data_loss, force } => {
                write!(f, "failover to {to}")?;
                if *allow_data_loss {
                    write!(f, ", data loss allowed")?;
                }
                if *force {
                    write!(f, " (force)")?;
                }
                Ok(())
            }
            Request::Rebuild { node, full: false } => write!(f, "rebuild {node}"),
            Request::Rebuild { node, full: true } => write!(f, "rebuild {node} from a fresh base backup"),
            Request::Restart { node } => write!(f, "restart PostgreSQL on {node}"),
            Request::Pause => write!(f, "pause"),
            Request::Resume => write!(f, "resume"),
            Request::SetConfig { changes } => {
                let pairs: Vec<String> = changes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "config set {}", pairs.join(" "))
            }
            Request::AddMember { id, name, address } => write!(f, "add member {name} (id {id}) at {address}"),
            Request::RemoveMember { node } => write!(f, "remove member {node}"),
            Request::AcknowledgeLoss => write!(f, "acknowledge the discarded writes"),
        }
    }
}

/// The admin API's request envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperateRequest {
    pub request: Request,
    /// Who asks (recorded in the history).
    pub by: String,
    /// Check and answer with the plan, change nothing.
    pub dry_run: bool,
}

/// The audit entry an answered request leaves in the history, as
/// (what was asked, refused): a request that became no operation — refused,
/// or a member added (done outside the operation machinery). An operation
/// records itself; a dry run asks for nothing.
pub fn audit_entry(request: &OperateRequest, reply: &OperateReply) -> Option<(String, bool)> {
    let added = matches!(request.request, Request::AddMember { .. }) && reply.accepted;
    (!request.dry_run && (reply.refused || added)).then(|| (request.request.to_string(), reply.refused))
}

/// The admin API's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OperateReply {
    /// The request was committed (false for a dry run or a refusal).
    pub accepted: bool,
    /// The request was refused; `message` says why and what to do.
    pub refused: bool,
    /// The operation's id when accepted: follow it in the history.
    pub id: Option<OpId>,
    /// One line: what was done or planned, or why it was refused and what to do.
    pub message: String,
    /// For switchover and failover: every candidate and why it can or cannot be the target.
    pub candidates: Vec<CandidateCheck>,
    /// The member a switchover or failover would promote.
    pub target: Option<String>,
    /// The primary a switchover would stop.
    pub from: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateCheck {
    pub node: String,
    pub ok: bool,
    /// Why not (empty when ok), or notes.
    pub reasons: Vec<String>,
    pub lag_bytes: Option<u64>,
}

/// An operator request resolved to member ids: what the Raft log carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    /// A switchover now (`at_unix_ms` None) or scheduled. `epoch` is the
    /// lease of `from` the checks saw (compare-and-set).
    Switchover {
        from: NodeId,
        to: NodeId,
        epoch: Epoch,
        at_unix_ms: Option<u64>,
        force: bool,
    },
    CancelSwitchover,
    Failover {
        to: NodeId,
        allow_data_loss: bool,
    },
    Rebuild {
        node: NodeId,
        full: bool,
    },
    Restart {
        node: NodeId,
    },
    Pause,
    Resume,
    /// The whole new settings; `changes` says what changed, for the history.
    SetConfig {
        timing: Timing,
        policy: Policy,
        changes: String,
    },
    /// The member leaves: from now on it is no member for any decision
    /// (`ClusterState::leaving`); the Raft membership change follows.
    RemoveMember {
        node: NodeId,
    },
    /// The discarded writes the history names so far are known to the
    /// operators: status stops warning about them.
    AcknowledgeLoss,
}

/// The steps of a switchover, each one committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwitchoverStep {
    /// Committed: the old primary stops cleanly (after moving the
    /// synchronous set to the target, in synchronous mode).
    Requested,
    /// The old primary stopped cleanly at `last` and gave the lease up.
    Demoted { last: DbPosition },
    /// The target holds the lease at `epoch`; it promotes once it has
    /// received `last`.
    Promoting { epoch: Epoch, last: DbPosition },
    /// The target is a running primary; the old primary restarts as its standby.
    Rejoining { epoch: Epoch, last: DbPosition },
    /// Dameng's own step list (`dm_switchover`): the old primary is put
    /// in MOUNT instead of stopped. Appended last: stored logs stay
    /// readable.
    Dm(crate::dm_switchover::DmStep),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switchover {
    pub id: OpId,
    pub from: NodeId,
    pub to: NodeId,
    /// The old primary's epoch.
    pub epoch: Epoch,
    pub step: SwitchoverStep,
    pub by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    pub id: OpId,
    pub from: NodeId,
    pub to: NodeId,
    pub at_unix_ms: u64,
    pub force: bool,
    pub by: String,
}

/// Something an operator asked one member to do to its own database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeTask {
    /// Rewind from the primary (base backup when that fails), or a fresh
    /// base backup with `full`.
    Rebuild { full: bool },
    /// A clean restart of PostgreSQL; the primary keeps its lease.
    Restart,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRequest {
    pub id: OpId,
    pub task: NodeTask,
    pub by: String,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpOutcome {
    Done {
        note: Option<String>,
    },
    Failed {
        reason: String,
    },
    /// The old primary is primary again (at a new epoch; a DM old primary
    /// that never gave its lease up, at its own).
    RolledBack {
        reason: String,
    },
    Cancelled,
    /// A scheduled switchover whose preconditions did not hold at its time.
    Skipped {
        reason: String,
    },
}

/// What the probes of one member showed the Raft leader.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Seen {
    /// The member's own view of its lease.
    pub lease_valid_for_ms: Option<u64>,
    pub db: Option<DbStatus>,
}

/// Probe answers by member; a member missing did not answer.
pub type SeenAll = BTreeMap<NodeId, Seen>;

/// The result of checking a switchover: the blocking reasons that concern
/// no single candidate, every candidate's check, and the chosen target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchoverPlan {
    pub from: Option<NodeId>,
    pub blockers: Vec<String>,
    pub candidates: Vec<(NodeId, CandidateCheck)>,
    pub to: Option<NodeId>,
}

impl SwitchoverPlan {
    pub fn ok(&self) -> bool {
        self.blockers.is_empty() && self.to.is_some()
    }

    /// One line: the plan, or every reason it cannot run.
    pub fn summary(&self, state: &ClusterState) -> String {
        let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
        if let (true, Some(from), Some(to)) = (self.ok(), self.from, self.to) {
            return format!("switchover from {} to {}", name(from), name(to));
        }
        let mut reasons = self.blockers.clone();
        if self.blockers.is_empty() {
            let why: Vec<String> =
                self.candidates.iter().map(|(_, c)| format!("{}: {}", c.node, c.reasons.join(", "))).collect();
            reasons.push(format!("no member can take over ({})", why.join("; ")));
        }
        reasons.join("; ")
    }
}

/// Checks a switchover against the committed state and fresh probes.
/// `from`/`to` are already resolved member ids (unknown names are refused
/// before). Without `to`, the best candidate is chosen: a synchronous
/// standby first, then the least lag, the highest priority, the lowest id.
/// `scheduled_run`: this is the scheduled switchover itself, at its time
/// (which a scheduled switchover otherwise blocks).
pub fn check_switchover(
    state: &ClusterState,
    seen: &SeenAll,
    from: Option<NodeId>,
    to: Option<NodeId>,
    force: bool,
    scheduled_run: bool,
) -> SwitchoverPlan {
    let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
    let mut blockers = Vec::new();
    if state.paused && !force {
        blockers.push("the cluster is paused: run haraftctl resume, or add --force".to_string());
    }
    if let Some(op) = &state.operation {
        blockers.push(format!("another operation is in progress: {}", describe_operation(state, op)));
    }
    if let Some(s) = state.scheduled.as_ref().filter(|_| !scheduled_run) {
        blockers.push(format!(
            "switchover {} to {} is scheduled: cancel it first (haraftctl switchover --cancel)",
            s.id,
            name(s.to)
        ));
    }
    let Some(lease) = state.lease else {
        blockers.push("no primary holds the lease: use haraftctl failover --to NAME".to_string());
        return SwitchoverPlan { from, blockers, candidates: Vec::new(), to: None };
    };
    if let Some(f) = from
        && f != lease.holder
    {
        blockers.push(format!("{} is not the primary ({} is)", name(f), name(lease.holder)));
    }
    let primary = seen.get(&lease.holder);
    let primary_db = primary.and_then(|s| s.db.as_ref()).filter(|d| d.is_running_primary());
    match primary {
        None => blockers.push(format!("the primary {} did not answer", name(lease.holder))),
        Some(s) if s.lease_valid_for_ms.is_none() => {
            blockers.push(format!("the primary {} has not confirmed its lease", name(lease.holder)))
        }
        Some(s) if primary_db.is_none() => {
            let dm = s.db.as_ref().is_some_and(|d| d.engine == Engine::Dameng);
            let what =
                if dm { "DM instance is not OPEN in PRIMARY mode" } else { "PostgreSQL is not running as primary" };
            blockers.push(format!("the primary {}'s {what}", name(lease.holder)))
        }
        Some(_) => {}
    }
    let primary_address = state.db_members.get(&lease.holder).map(|d| d.address.as_str());
    let mut candidates: Vec<(NodeId, CandidateCheck, (bool, u64, u32))> = Vec::new();
    for id in state.members.keys().copied() {
        if id == lease.holder && to != Some(id) {
            continue;
        }
        if to.is_some_and(|t| t != id) {
            continue;
        }
        let mut reasons = Vec::new();
        let mut lag = None;
        let db_member = state.db_members.get(&id);
        if id == lease.holder {
            reasons.push("is the primary itself".to_string());
        } else if db_member.is_none() {
            reasons.push("manages no database".to_string());
        } else if db_member.is_some_and(|d| d.nofailover) {
            reasons.push("tagged nofailover".to_string());
        }
        let status = seen.get(&id).map(|s| s.db.as_ref());
        match status {
            _ if id == lease.holder || db_member.is_none() => {}
            None => reasons.push("did not answer".to_string()),
            Some(None) => reasons.push("could not observe its database".to_string()),
            Some(Some(db)) => {
                if db.system_identifier != state.system_identifier {
                    reasons.push("holds another database".to_string());
                } else if !db.is_running_standby() {
                    reasons.push(match db.engine {
                        Engine::Dameng => "is not OPEN in STANDBY mode (DM: both instances running and OPEN)".into(),
                        Engine::Postgres | Engine::OpenGauss => "is not a running standby".to_string(),
                    });
                } else {
                    if db.streaming_from.is_none() || db.streaming_from.as_deref() != primary_address {
                        reasons.push("is not streaming from the primary".to_string());
                    }
                    if let Some(p) = primary_db.filter(|p| p.engine == Engine::Dameng) {
                        reasons.extend(crate::dm_switchover::candidate_reasons(state, p, &name(id), db));
                    }
                    if let Some(p) = primary_db {
                        if db.timeline != p.timeline {
                            reasons.push(format!(
                                "on timeline {}, the primary is on {}",
                                db.timeline.map_or("?".into(), |t| t.to_string()),
                                p.timeline.map_or("?".into(), |t| t.to_string())
                            ));
                        }
                        if let (Some(l), Some(pl)) = (db.lsn, p.lsn) {
                            let behind = l.bytes_until(pl);
                            lag = Some(behind);
                            if behind > state.policy.maximum_lag_on_failover_bytes {
                                reasons.push(format!(
                                    "lags {behind} bytes (limit {})",
                                    state.policy.maximum_lag_on_failover_bytes
                                ));
                            }
                        }
                    }
                }
            }
        }
        let ok = reasons.is_empty();
        let sync = state.synchronous.contains(&id);
        // Mode on: only a member of the set has every commit; in quorum
        // mode the switchover waits for the target to reach the old
        // primary's last position, set member or not.
        if ok && state.policy.synchronous_mode == SyncMode::On && !sync {
            reasons.push("not synchronous yet: the synchronous set is moved to it first".to_string());
        }
        let priority = db_member.map_or(0, |d| d.priority);
        let check = CandidateCheck { node: name(id), ok, reasons, lag_bytes: lag };
        candidates.push((id, check, (sync, u64::MAX - lag.unwrap_or(u64::MAX), priority)));
    }
    // The best first: synchronous, least lag, highest priority; ties keep id order.
    candidates.sort_by(|(_, a, ka), (_, b, kb)| b.ok.cmp(&a.ok).then(kb.cmp(ka)));
    let chosen = candidates.iter().find(|(_, c, _)| c.ok).map(|(id, _, _)| *id);
    SwitchoverPlan {
        from: Some(lease.holder),
        blockers,
        candidates: candidates.into_iter().map(|(id, c, _)| (id, c)).collect(),
        to: chosen,
    }
}

/// The settings an operator may change at runtime, by the config file's key names.
pub const CONFIG_KEYS: &[&str] = &[
    "lease.ttl_ms",
    "lease.renew_interval_ms",
    "lease.clock_drift_ppm",
    "lease.demote_budget_ms",
    "failover.maximum_lag_on_failover_bytes",
    "failover.primary_start_timeout_ms",
    "failover.rebuild_on_rewind_failure",
    "failover.synchronous_mode",
    "failover.synchronous_node_count",
    "failover.synchronous_strict",
];

/// The most standbys `failover.synchronous_node_count` may name
/// (PostgreSQL's own limit on a list is far above any cluster's size).
pub const MAX_SYNC_NODES: u32 = 32;

/// The settings by their config-file keys, as `config show` prints them.
pub fn settings(t: Timing, p: Policy) -> BTreeMap<String, String> {
    let values = [
        t.lease_ttl_ms.to_string(),
        t.renew_interval_ms.to_string(),
        t.clock_drift_ppm.to_string(),
        t.demote_budget_ms.to_string(),
        p.maximum_lag_on_failover_bytes.to_string(),
        p.primary_start_timeout_ms.to_string(),
        p.rebuild_on_rewind_failure.to_string(),
        p.synchronous_mode.word().to_string(),
        p.synchronous_node_count.to_string(),
        p.synchronous_strict.to_string(),
    ];
    CONFIG_KEYS.iter().map(|k| k.to_string()).zip(values).collect()
}

/// Applies `KEY=VALUE` changes to the current settings, refusing unknown
/// keys, bad values and unsafe lease timing with the numbers. Returns the
/// new settings and a description of what changed.
pub fn apply_config_changes(
    timing: Timing,
    policy: Policy,
    changes: &[(String, String)],
) -> Result<(Timing, Policy, String), String> {
    if changes.is_empty() {
        return Err("nothing to set: give KEY=VALUE, e.g. failover.synchronous_mode=true".into());
    }
    let (mut t, mut p) = (timing, policy);
    let mut said = Vec::new();
    for (key, value) in changes {
        let value = value.trim();
        let number = || -> Result<u64, String> {
            value.parse::<u64>().map_err(|_| format!("{key} = {value:?}: expected a whole number"))
        };
        let boolean = || -> Result<bool, String> {
            match value {
                "true" | "on" | "yes" => Ok(true),
                "false" | "off" | "no" => Ok(false),
                _ => Err(format!("{key} = {value:?}: expected true or false")),
            }
        };
        match key.as_str() {
            "lease.ttl_ms" => t.lease_ttl_ms = number()?,
            "lease.renew_interval_ms" => t.renew_interval_ms = number()?,
            "lease.clock_drift_ppm" => t.clock_drift_ppm = number()?,
            "lease.demote_budget_ms" => t.demote_budget_ms = number()?,
            "failover.maximum_lag_on_failover_bytes" | "failover.maximum_lag_on_failover" => {
                p.maximum_lag_on_failover_bytes = parse_bytes(value)
                    .ok_or_else(|| format!("{key} = {value:?}: expected bytes, e.g. 1048576 or 16MB"))?
            }
            "failover.primary_start_timeout_ms" => p.primary_start_timeout_ms = number()?,
            "failover.rebuild_on_rewind_failure" => p.rebuild_on_rewind_failure = boolean()?,
            "failover.synchronous_mode" => {
                p.synchronous_mode =
                    SyncMode::parse(value).ok_or_else(|| format!("{key} = {value:?}: expected off, on or quorum"))?
            }
            "failover.synchronous_node_count" => {
                p.synchronous_node_count = u32::try_from(number()?)
                    .ok()
                    .filter(|k| (1..=MAX_SYNC_NODES).contains(k))
                    .ok_or_else(|| format!("{key} = {value:?}: expected 1 to {MAX_SYNC_NODES}"))?
            }
            "failover.synchronous_strict" => p.synchronous_strict = boolean()?,
            k if k.ends_with("_command") || k.rsplit('.').next().is_some_and(|last| last.ends_with("_command")) => {
                return Err(format!(
                    "{key} runs a shell command: it can only be set in the local PostgreSQL configuration, never remotely"
                ));
            }
            _ => return Err(format!("unknown setting {key:?}: settable keys are {}", CONFIG_KEYS.join(", "))),
        }
        said.push(format!("{key}={value}"));
    }
    let t = t.validate().map_err(|e| e.to_string())?;
    if p.primary_start_timeout_ms == 0 {
        return Err("failover.primary_start_timeout_ms must be at least 1".into());
    }
    Ok((t, p, said.join(" ")))
}

/// `1048576`, `16MB`, `16MiB`, `512kB`, `1GB` (units of 1024, as PostgreSQL reads them).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" | "k" => 1 << 10,
        "mb" | "mib" | "m" => 1 << 20,
        "gb" | "gib" | "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The operation in words, for status and refusals.
pub fn describe_operation(state: &ClusterState, op: &crate::state::Operation) -> String {
    use crate::state::Operation;
    let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
    match op {
        Operation::Failover { from, lapsed_epoch } => {
            format!("failover: lease of {} lapsed at epoch {lapsed_epoch}, choosing a new primary", name(*from))
        }
        Operation::ManualFailover { id, to, allow_data_loss } => format!(
            "manual failover {id} to {}{}",
            name(*to),
            if *allow_data_loss { " (data loss allowed)" } else { "" }
        ),
        Operation::Switchover(s) => {
            format!("switchover {} from {} to {}: {}", s.id, name(s.from), name(s.to), step_words(state, s))
        }
    }
}

/// The current step of a switchover in words.
pub fn step_words(state: &ClusterState, s: &Switchover) -> String {
    let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
    match s.step {
        // Engine-neutral: the state learns a Dameng switchover's engine
        // only at its next step (PostgreSQL: a clean stop; Dameng: the
        // snapshot of both modes, then MOUNT).
        SwitchoverStep::Requested => format!("{} stops taking writes first", name(s.from)),
        SwitchoverStep::Demoted { last } => {
            format!(
                "{} stopped at {} (timeline {}); waiting for {} to have it",
                name(s.from),
                last.lsn,
                last.timeline,
                name(s.to)
            )
        }
        SwitchoverStep::Promoting { epoch, last } => {
            format!("{} holds epoch {epoch}, promoting once it has replayed {}", name(s.to), last.lsn)
        }
        SwitchoverStep::Rejoining { .. } => {
            format!("{} is primary; {} restarting as its standby", name(s.to), name(s.from))
        }
        SwitchoverStep::Dm(step) => crate::dm_switchover::step_words(state, s, step),
    }
}

impl fmt::Display for OpOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpOutcome::Done { note: None } => write!(f, "done"),
            OpOutcome::Done { note: Some(n) } => write!(f, "done ({n})"),
            OpOutcome::Failed { reason } => write!(f, "failed: {reason}"),
            OpOutcome::RolledBack { reason } => write!(f, "rolled back: {reason}"),
            OpOutcome::Cancelled => write!(f, "cancelled"),
            OpOutcome::Skipped { reason } => write!(f, "skipped: {reason}"),
        }
    }
}

impl OpOutcome {
    /// The history's event name for an operation that ended this way.
    pub fn event_name(&self) -> &'static str {
        match self {
            OpOutcome::Done { .. } => "operation-done",
            OpOutcome::Failed { .. } => "operation-failed",
            OpOutcome::RolledBack { .. } => "operation-rolled-back",
            OpOutcome::Cancelled => "operation-cancelled",
            OpOutcome::Skipped { .. } => "operation-skipped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_parse_with_units() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("16MB"), Some(16 << 20));
        assert_eq!(parse_bytes("16 MiB"), Some(16 << 20));
        assert_eq!(parse_bytes("512kB"), Some(512 << 10));
        assert_eq!(parse_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_bytes("MB"), None);
        assert_eq!(parse_bytes("12XB"), None);
        assert_eq!(parse_bytes("-1"), None);
    }

    #[test]
    fn config_changes_are_validated_with_the_numbers() {
        let (t, p) = (Timing::default(), Policy::default());
        let set = |k: &str, v: &str| apply_config_changes(t, p, &[(k.to_string(), v.to_string())]);
        let (_, p2, said) = set("failover.maximum_lag_on_failover", "16MB").unwrap();
        assert_eq!(p2.maximum_lag_on_failover_bytes, 16 << 20);
        assert_eq!(said, "failover.maximum_lag_on_failover=16MB");
        assert_eq!(set("failover.synchronous_mode", "on").unwrap().1.synchronous_mode, SyncMode::On);
        assert_eq!(set("failover.synchronous_mode", "true").unwrap().1.synchronous_mode, SyncMode::On);
        assert_eq!(set("failover.synchronous_mode", "quorum").unwrap().1.synchronous_mode, SyncMode::Quorum);
        assert_eq!(set("failover.synchronous_node_count", "2").unwrap().1.synchronous_node_count, 2);
        let e = set("failover.synchronous_node_count", "0").unwrap_err();
        assert!(e.contains("expected 1 to"), "{e}");
        assert!(set("failover.synchronous_strict", "true").unwrap().1.synchronous_strict);
        let e = set("lease.ttl_ms", "600").unwrap_err();
        assert!(e.contains("raise lease.ttl_ms to at least"), "{e}");
        let e = set("postgresql.archive_command", "rm -rf /").unwrap_err();
        assert!(e.contains("runs a shell command"), "{e}");
        let e = set("restore_command", "x").unwrap_err();
        assert!(e.contains("runs a shell command"), "{e}");
        let e = set("lease.nope", "1").unwrap_err();
        assert!(e.contains("unknown setting") && e.contains("lease.ttl_ms"), "{e}");
        let e = set("failover.synchronous_mode", "maybe").unwrap_err();
        assert!(e.contains("expected off, on or quorum"), "{e}");
        assert!(apply_config_changes(t, p, &[]).is_err());
    }
}
