//! The agent's event loop: one closed `Event` enum, one place where every
//! trigger of work is visible. It feeds events into `haraft_core` (the
//! lease keeper, the expiry timer, the planner) and carries their decisions
//! out as spawned proposals and probes, logging one line per decision.

use crate::clock::boottime;
use crate::database::{DbEvent, DbSide};
use crate::shared::{LeaseView, ProposeError, Shared};
use haraft_core::lease::{CommitGuard, ExpiryTimer, KeeperReason, LeaseKeeper};
use haraft_core::ops::{Seen, SeenAll};
use haraft_core::plan::{PlanInput, Reason, Step, plan};
use haraft_core::reconcile::MyLease;
use haraft_core::{BootTime, Command, Epoch, NodeId, Outcome, Timing};
use haraft_db::Database;
use openraft::ServerState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// How soon the loop steps again while something waits on time that no
/// instant names: a leader whose plan is not settled (choosing a primary,
/// an operation and its step bounds), a database action held back by its
/// pause or back-off.
pub(crate) const TICK_MS: u64 = 50;

/// The longest the loop sleeps in a steady cluster. Every instant the
/// lease path depends on (renewal due, validity over, commit guard, the
/// expiry timer) is named by `next_wake`, and every change arrives as an
/// event; this bound caps a wrong estimate, and keeps /liveness ("the loop
/// ran within a lease ttl") true on a member without a database, whose
/// loop has nothing else to wake it.
const IDLE_WAKE_MS: u64 = 500;

/// Whether the agent's process runs. The daemon's gate is always open and
/// costs one `Option` check a step; the simulator closes an embedded
/// agent's gate to freeze it as SIGSTOP would: the loop takes no step, so
/// nothing is decided, renewed or written to the fence file until the gate
/// opens again, while the database and the fence guard (other processes)
/// go on.
#[derive(Clone, Debug, Default)]
pub struct Gate(Option<watch::Receiver<bool>>);

impl Gate {
    /// The daemon's: never closed.
    pub fn open() -> Gate {
        Gate(None)
    }

    /// Open while `running` holds `true`.
    pub fn controlled(running: watch::Receiver<bool>) -> Gate {
        Gate(Some(running))
    }

    /// Waits until the gate is open (at once for the daemon's; a dropped
    /// controller counts as open).
    pub async fn pass(&mut self) {
        if let Some(running) = &mut self.0 {
            let _ = running.wait_for(|open| *open).await;
        }
    }
}

/// How long a probe result may be used to choose a new primary.
const PROBE_FRESH_MS: u64 = 1000;

/// What tests and operators can watch the agent decide, stamped with this
/// machine's CLOCK_BOOTTIME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    BecameLeader {
        at: BootTime,
        term: u64,
    },
    /// The planner proposed a command (before it committed).
    Proposed {
        at: BootTime,
        command: Command,
    },
    /// This node's lease was renewed and is valid until `valid_until`.
    Renewed {
        at: BootTime,
        epoch: Epoch,
        valid_until: BootTime,
    },
    /// This node's lease is no longer valid by its own clock.
    LeaseInvalid {
        at: BootTime,
        epoch: Epoch,
    },
    /// This node applied a change of the lease (a grant, a renewal, a
    /// lapse): its expiry timer restarted at `at` + ttl.
    LeaseApplied {
        at: BootTime,
        lease: haraft_core::Lease,
    },
}

enum Event {
    Tick,
    StateApplied,
    RaftChanged,
    RenewAnswered {
        t_send: BootTime,
        latency_us: u64,
        answer: Result<Outcome, ProposeError>,
    },
    ProposalDone {
        command: Command,
        result: Result<Outcome, ProposeError>,
    },
    ProbeDone {
        live: SeenAll,
    },
    Db(DbEvent),
    /// A file appeared in or left the data directory (`dirwatch`).
    DataDirChanged,
    Shutdown,
}

pub struct Driver<D: Database> {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Event>,
    lease_view: watch::Sender<LeaseView>,
    events: broadcast::Sender<AgentEvent>,
    keeper: LeaseKeeper,
    /// The expiry timer, kept on every member from the lease changes it
    /// applies: a member elected Raft leader goes on with it.
    timer: ExpiryTimer,
    /// The term this node leads, while it is the Raft leader.
    leading: Option<u64>,
    elections_seen: u64,
    last_term: u64,
    proposal_in_flight: bool,
    /// After a proposal failed, the next one waits until then (no spinning
    /// while this node cannot reach a quorum).
    next_proposal_at: BootTime,
    probe_in_flight: bool,
    live: Option<(SeenAll, BootTime)>,
    /// The operation and step this leader last saw, and since when: step
    /// timeouts count from here (a new leader starts counting afresh,
    /// which only ever lengthens a bound).
    operation_seen: Option<(String, BootTime)>,
    last_plan_key: String,
    /// The leader's last plan waits only for events and the expiry timer
    /// (the lease is valid or the cluster paused, no operation runs): the
    /// loop need not step on a tick.
    plan_settled: bool,
    was_valid: Option<Epoch>,
    /// The local database, when this member manages one.
    db: Option<DbSide<D>>,
}

pub async fn run<D: Database>(
    shared: Arc<Shared>,
    mut db: Option<DbSide<D>>,
    lease_view: watch::Sender<LeaseView>,
    events: broadcast::Sender<AgentEvent>,
    mut shutdown: watch::Receiver<bool>,
    mut gate: Gate,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut dir_watch = db.as_mut().and_then(|side| watch_data_dir(side, &shared));
    let mut applied = shared.applied.clone();
    // The server metrics change with the role, vote, leader or membership;
    // the full ones with every heartbeat answer (20-30 wake-ups a second
    // of an idle agent, each dropped here).
    let mut metrics = shared.raft.server_metrics();
    let mut driver = Driver {
        shared,
        tx,
        lease_view,
        events,
        keeper: LeaseKeeper::default(),
        timer: ExpiryTimer::start(None, boottime(), 0),
        leading: None,
        elections_seen: 0,
        last_term: 0,
        proposal_in_flight: false,
        next_proposal_at: BootTime(0),
        probe_in_flight: false,
        live: None,
        operation_seen: None,
        last_plan_key: String::new(),
        plan_settled: true,
        was_valid: None,
        db,
    };
    // The loop sleeps until the next instant something is due (`next_wake`)
    // or an event arrives; it does not poll.
    let wake = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(wake);
    let mut raft_seen = RaftKey::of(&metrics.borrow());
    loop {
        // Biased, in this order: shutdown, then the due instant (renewals
        // and deadlines never wait behind a stream of other events; `wake`
        // is reset at least 1 ms ahead after every event, so it cannot
        // starve them either). An unbiased select draws from the runtime's
        // generator, which no seed reaches: the simulator's runs of one
        // seed differed (8 of 100 seeds, 2026-12-07).
        let event = tokio::select! {
            biased;
            _ = shutdown.changed() => Event::Shutdown,
            _ = &mut wake => Event::Tick,
            r = applied.changed() => if r.is_ok() { Event::StateApplied } else { Event::Shutdown },
            r = metrics.changed() => match r {
                Ok(()) => {
                    // A vote's commit flag changes it too; only a change
                    // of role, term, leader or membership is news.
                    let key = RaftKey::of(&metrics.borrow_and_update());
                    if key == raft_seen {
                        continue;
                    }
                    raft_seen = key;
                    Event::RaftChanged
                }
                Err(_) => Event::Shutdown,
            },
            Some(e) = rx.recv() => e,
            r = async { dir_watch.as_ref().expect("guarded").changed().await }, if dir_watch.is_some() => match r {
                Ok(()) => Event::DataDirChanged,
                Err(e) => {
                    tracing::warn!(node = %driver.name(), "watching the data directory failed ({e}): looking at it every {TICK_MS} ms instead");
                    dir_watch = None;
                    if let Some(side) = driver.db.as_mut() {
                        side.dir_watched = false;
                    }
                    Event::DataDirChanged
                }
            },
        };
        if matches!(event, Event::Shutdown) {
            break;
        }
        gate.pass().await;
        let started = std::time::Instant::now();
        driver.handle(event);
        let now = boottime();
        driver.shared.loop_stats.record(now, started.elapsed());
        let sleep_ms = now.ms_until(driver.next_wake(now)).max(1);
        wake.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(sleep_ms));
    }
}

/// The daemon's watch of its data directory, when `side` asks for one and
/// inotify gives it (the simulator's sides do not ask: they poll).
fn watch_data_dir<D: Database>(side: &mut DbSide<D>, shared: &Shared) -> Option<crate::dirwatch::DirWatch> {
    if !side.dir_watched {
        return None;
    }
    match crate::dirwatch::DirWatch::new(side.data_dir()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(node = %shared.config.node_name, data_dir = %side.data_dir().display(), "cannot watch the data directory ({e}): looking at it every {TICK_MS} ms instead");
            side.dir_watched = false;
            None
        }
    }
}

/// What the loop reads of openraft's server metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RaftKey {
    term: u64,
    leader: Option<u64>,
    state: ServerState,
    membership: Option<openraft::LogId<u64>>,
}

impl RaftKey {
    fn of(m: &openraft::metrics::RaftServerMetrics<u64, haraft_raft::RaftNode>) -> RaftKey {
        RaftKey {
            term: m.vote.leader_id().term,
            leader: m.current_leader,
            state: m.state,
            membership: m.membership_config.log_id().as_ref().copied(),
        }
    }
}

impl<D: Database> Driver<D> {
    fn name(&self) -> &str {
        &self.shared.config.node_name
    }

    fn timing(&self) -> Timing {
        self.shared.state().config.unwrap_or(self.shared.config.timing)
    }

    /// When the loop must step next without an event: the lease keeper's
    /// next instant, the leader's expiry timer and proposal pause, a tick
    /// while the leader's plan or the database side waits on time, the
    /// next observation of the database; at most `IDLE_WAKE_MS` away.
    fn next_wake(&self, now: BootTime) -> BootTime {
        let margin_ms = self.shared.config.postgres.as_ref().map_or(0, |p| p.commit_guard_margin_ms);
        let keeper = self.keeper.next_due(now, &self.timing(), CommitGuard { margin_ms });
        let leader = match self.leading {
            None => vec![],
            Some(_) => vec![
                self.timer.fires_at(),
                Some(self.next_proposal_at),
                (!self.plan_settled).then(|| now.plus_ms(TICK_MS)),
            ],
        };
        let db = self.db.as_ref().and_then(|d| d.next_due(now));
        leader
            .into_iter()
            .chain([keeper, db])
            .flatten()
            .filter(|t| *t > now)
            .fold(now.plus_ms(IDLE_WAKE_MS), BootTime::min)
    }

    fn handle(&mut self, event: Event) {
        let now = boottime();
        match event {
            Event::Tick | Event::StateApplied | Event::RaftChanged | Event::DataDirChanged | Event::Shutdown => {}
            Event::RenewAnswered { t_send, latency_us, answer } => {
                let timing = self.timing();
                match &answer {
                    Ok(outcome) => {
                        if matches!(outcome, Outcome::Applied(_)) {
                            self.shared.record_renewal(latency_us);
                        }
                        self.keeper.on_answer(t_send, now, Some(outcome), &timing);
                    }
                    Err(e) => {
                        let left = self.keeper.valid(now).and_then(|h| h.valid_until).map(|t| now.ms_until(t));
                        tracing::warn!(node = %self.name(), error = %e, valid_for_ms = ?left, "lease renewal failed");
                        self.keeper.on_answer(t_send, now, None, &timing);
                    }
                }
                if let Ok(Outcome::Rejected(r)) = &answer {
                    tracing::warn!(node = %self.name(), "lease renewal refused: {r}");
                }
            }
            Event::ProposalDone { command, result } => {
                self.proposal_in_flight = false;
                match result {
                    Ok(Outcome::Applied(effect)) => {
                        tracing::info!(node = %self.name(), "committed {command}: {effect:?}")
                    }
                    Ok(Outcome::Rejected(r)) => {
                        tracing::info!(node = %self.name(), "{command} changed nothing: {r}")
                    }
                    Err(e) => {
                        tracing::warn!(node = %self.name(), "{command} not committed: {e}");
                        self.next_proposal_at = now.plus_ms(self.timing().retry_interval_ms());
                    }
                }
                if matches!(command, Command::Grant { .. }) {
                    self.live = None;
                }
            }
            Event::ProbeDone { live } => {
                self.probe_in_flight = false;
                self.live = Some((live, now));
            }
            Event::Db(e) => {
                if let Some(db) = self.db.as_mut() {
                    db.on_event(&self.shared, e, now);
                    self.shared.db_needs_rewind.store(db.needs_rewind(), std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        self.step();
    }

    fn step(&mut self) {
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
    fn reconcile(&mut self, me: NodeId, state: &haraft_core::ClusterState, now: BootTime) {
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
    fn keep_lease(&mut self, me: NodeId, state: &haraft_core::ClusterState, now: BootTime) {
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
    fn plan(&mut self, state: &haraft_core::ClusterState, now: BootTime) {
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
