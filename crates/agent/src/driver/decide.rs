//! The driver's decisions on each event: read the replicated state, keep
//! or fence the lease, plan as the Raft leader, reconcile the local
//! database; each carried out as spawned work (see the parent module for
//! the event loop that calls `step`).

use super::{AgentEvent, Driver, Event, PROBE_FRESH_MS};
use crate::clock::boottime;
use crate::database::{DbEvent, DbSide};
use crate::shared::LeaseView;
use haraft_core::lease::{CommitGuard, KeeperReason};
use haraft_core::ops::Seen;
use haraft_core::plan::{PlanInput, Reason, Step, plan};
use haraft_core::reconcile::MyLease;
use haraft_core::{BootTime, Command, NodeId};
use haraft_db::Database;
use openraft::ServerState;
use std::sync::Arc;

impl<D: Database> Driver<D> {
    pub(super) fn step(&mut self) {
        let me = self.shared.me();
        let state = self.shared.state();
        let metrics = self.shared.metrics();
        // Read after the state: any renewal in `state` was applied (and
        // sent) before `now`, so a timer restarted at `now + ttl` can never
        // fire before `t_send + ttl` of a renewal it has seen.
        let now = boottime();
        let ttl = self.timing().lease_ttl_ms;
        self.shared.transitions.lock().expect("never poisoned").update(&state.history);

        if metrics.current_term > self.last_term {
            if self.last_term != 0 {
                self.elections_seen += 1;
            }
            self.last_term = metrics.current_term;
        }

        // The expiry timer, on every member: restarted at now + ttl
        // whenever the applied lease changes. `now` is read after the state,
        // so every renewal in it was sent (t_send) before `now`: the timer
        // cannot fire before t_send + ttl of the newest renewal this member
        // applied, whoever leads. A member elected Raft leader goes on with
        // its own timer rather than a full ttl from its election: a
        // committed renewal it has not applied yet is in its log, is
        // applied (restarting the timer) before any lapse it proposes, and
        // makes that lapse stale (the lapse is a compare-and-set on the
        // renewal count).
        let restarted = self.timer.observe(state.lease, now, ttl);
        if restarted && let Some(lease) = state.lease {
            let _ = self.events.send(AgentEvent::LeaseApplied { at: now, lease });
        }
        let leading = metrics.state == ServerState::Leader && metrics.current_leader == Some(me.0);
        match (self.leading, leading) {
            (Some(term), true) if term == metrics.current_term => {}
            (_, true) => {
                self.leading = Some(metrics.current_term);
                let _ = self.events.send(AgentEvent::BecameLeader { at: now, term: metrics.current_term });
                match state.lease {
                    Some(l) => tracing::warn!(
                        node = %self.name(), term = metrics.current_term, elections = self.elections_seen,
                        "became Raft leader: lease of node {} epoch {} can lapse no earlier than {} ms from now (a ttl after this member applied its last renewal)",
                        l.holder, l.epoch, self.timer.remaining_ms(now)
                    ),
                    None => {
                        tracing::info!(node = %self.name(), term = metrics.current_term, "became Raft leader")
                    }
                }
            }
            (Some(_), false) => {
                tracing::info!(node = %self.name(), term = metrics.current_term, "no longer Raft leader");
                self.leading = None;
                self.live = None;
            }
            (None, false) => {}
        }

        self.keep_lease(me, &state, now);
        self.plan(&state, now);
        self.reconcile(me, &state, now);
    }

    /// The database side: one action at a time toward what the state says.
    pub(super) fn reconcile(&mut self, me: NodeId, state: &haraft_core::ClusterState, now: BootTime) {
        // The commit guard: how long no renewal was confirmed, once that is
        // past the renewal interval and the margin.
        let margin_ms = self.shared.config.postgres.as_ref().map_or(0, |p| p.commit_guard_margin_ms);
        let hold = self
            .keeper
            .commits_held(now, &self.timing(), CommitGuard { margin_ms })
            .then(|| self.keeper.confirmed_at().map_or(0, |t| t.ms_until(now)));
        let Some(db) = self.db.as_mut() else { return };
        let valid = self.keeper.valid(now);
        let lease = match valid {
            Some(h) => MyLease::Valid(h.lease.epoch),
            None if state.lease.is_some_and(|l| l.holder == me) => MyLease::Pending,
            None => MyLease::None,
        };
        let tx = self.tx.clone();
        let spawn = move |f: std::pin::Pin<Box<dyn std::future::Future<Output = DbEvent> + Send>>| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(Event::Db(f.await));
            });
        };
        db.step(&self.shared, &spawn, state, lease, valid.and_then(|h| h.valid_until), hold, now);
    }

    /// The holder's side: renew on time; say when validity ends.
    pub(super) fn keep_lease(&mut self, me: NodeId, state: &haraft_core::ClusterState, now: BootTime) {
        let position = self.db.as_ref().and_then(DbSide::position);
        if let Some((command, reason)) = self.keeper.tick(me, state.lease, now, position) {
            match (&command, reason) {
                (Some(c), KeeperReason::RenewalDue) => {
                    tracing::debug!(node = %self.name(), "{c} because {reason}")
                }
                (Some(c), _) => tracing::info!(node = %self.name(), "{c} because {reason}"),
                (None, _) => {
                    tracing::warn!(node = %self.name(), "not primary any more because {reason}")
                }
            }
            if let Some(command) = command {
                let shared = Arc::clone(&self.shared);
                let tx = self.tx.clone();
                let attempt = std::time::Duration::from_millis(self.timing().renewal_attempt_ms());
                tokio::spawn(async move {
                    // t_send is read before proposing: the lease is measured
                    // from here, never from when the answer arrived.
                    let t_send = boottime();
                    let started = std::time::Instant::now();
                    let answer = shared.renew(command, attempt).await;
                    let latency_us = started.elapsed().as_micros() as u64;
                    let _ = tx.send(Event::RenewAnswered { t_send, latency_us, answer });
                });
            }
        }
        let valid = self.keeper.valid(now);
        let view = LeaseView { epoch: valid.map(|h| h.lease.epoch), valid_until: valid.and_then(|h| h.valid_until) };
        if let Some(h) = valid
            && self.lease_view.borrow().valid_until != view.valid_until
        {
            let valid_until = h.valid_until.expect("valid() implies a deadline");
            let _ = self.events.send(AgentEvent::Renewed { at: now, epoch: h.lease.epoch, valid_until });
        }
        match (self.was_valid, valid) {
            (Some(epoch), None) => {
                tracing::warn!(node = %self.name(), %epoch, "lease no longer valid on this node's clock: not primary");
                let _ = self.events.send(AgentEvent::LeaseInvalid { at: now, epoch });
            }
            (None, Some(h)) => {
                tracing::info!(node = %self.name(), epoch = %h.lease.epoch, "lease valid: this node is the primary")
            }
            _ => {}
        }
        self.was_valid = valid.map(|h| h.lease.epoch);
        self.lease_view.send_replace(view);
    }

    /// The Raft leader's side: initialize, lapse, grant.
    pub(super) fn plan(&mut self, state: &haraft_core::ClusterState, now: BootTime) {
        self.plan_settled = true;
        if self.leading.is_none() {
            return;
        }
        let timer = &self.timer;
        if self.proposal_in_flight || now < self.next_proposal_at {
            return;
        }
        // Probes taken before the current operation step began say nothing
        // about it (e.g. whether the target has the old primary's last WAL).
        let op_key = operation_key(state);
        if self.operation_seen.as_ref().map(|(k, _)| k) != op_key.as_ref() {
            self.operation_seen = op_key.map(|k| (k, now));
            self.live = None;
        }
        let operation_age_ms = self.operation_seen.as_ref().map_or(0, |(_, since)| since.ms_until(now));
        let live = self.live.as_ref().filter(|(_, at)| at.ms_until(now) <= PROBE_FRESH_MS).map(|(l, _)| l);
        let config = &self.shared.config;
        let now_unix_ms = crate::clock::now_unix_ms();
        let decided = plan(&PlanInput {
            state,
            cluster: &config.cluster,
            initial_timing: config.timing,
            initial_policy: config.policy,
            timer,
            now,
            now_unix_ms,
            live,
            operation_age_ms,
        });
        self.plan_settled = decided.step == Step::Wait
            && matches!(decided.reason, Reason::LeaseValid { .. } | Reason::Paused)
            && state.operation.is_none()
            && state.scheduled.is_none();
        let key = match &decided.reason {
            Reason::LeaseValid { holder, .. } => format!("lease-valid {holder}"),
            r => r.to_string(),
        };
        // One line per decision: a probe is only the way to the next
        // decision (logged at debug), so a cluster that cannot promote
        // anyone says why once, not every second.
        match &decided.step {
            Step::ProbeMembers => {
                tracing::debug!(node = %self.name(), "plan: probe members because {}", decided.reason)
            }
            _ if key == self.last_plan_key => {}
            Step::Propose(c) => {
                tracing::info!(node = %self.name(), "plan: propose {c} because {}", decided.reason);
                self.last_plan_key = key;
            }
            Step::Wait => {
                tracing::info!(node = %self.name(), "plan: wait because {}", decided.reason);
                self.last_plan_key = key;
            }
        }
        match decided.step {
            Step::Wait => {}
            Step::ProbeMembers => {
                if !self.probe_in_flight {
                    self.probe_in_flight = true;
                    let shared = Arc::clone(&self.shared);
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let live = shared
                            .probe_all()
                            .await
                            .into_iter()
                            // One that has not observed its database yet
                            // counts as not answering (it may run a primary).
                            .filter_map(|(id, r)| {
                                r.ok()
                                    .filter(|p| !p.not_observed_yet())
                                    .map(|p| (id, Seen { lease_valid_for_ms: p.lease_valid_for_ms, db: p.db }))
                            })
                            .collect();
                        let _ = tx.send(Event::ProbeDone { live });
                    });
                }
            }
            Step::Propose(command) => {
                if matches!(command, Command::Grant { .. }) && state.current_switchover().is_some() {
                    crate::failpoint::hit("before-switchover-grant");
                }
                self.proposal_in_flight = true;
                let _ = self.events.send(AgentEvent::Proposed { at: now, command: command.clone() });
                let shared = Arc::clone(&self.shared);
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    // The leader's own decisions are never forwarded.
                    let result = shared.propose_here(command.clone()).await;
                    let _ = tx.send(Event::ProposalDone { command, result });
                });
            }
        }
    }
}

/// The operation in progress and its step (or the scheduled switchover),
/// as a key that changes whenever either does.
fn operation_key(state: &haraft_core::ClusterState) -> Option<String> {
    use haraft_core::Operation;
    match (&state.operation, &state.scheduled) {
        (Some(Operation::Switchover(s)), _) => Some(format!("{}:{:?}", s.id, std::mem::discriminant(&s.step))),
        (Some(op @ Operation::ManualFailover { .. }), _) => op.id().map(|id| id.to_string()),
        (Some(Operation::Failover { from, lapsed_epoch }), _) => Some(format!("failover:{from}:{lapsed_epoch}")),
        (None, Some(s)) => Some(format!("scheduled:{}", s.id)),
        (None, None) => None,
    }
}
