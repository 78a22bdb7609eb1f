//! The agent's event loop: one closed `Event` enum, one place where every
//! trigger of work is visible. It feeds events into `haraft_core` (the
//! lease keeper, the expiry timer, the planner) and carries their decisions
//! out as spawned proposals and probes, logging one line per decision.

use crate::clock::boottime;
use crate::database::{DbEvent, DbSide};
use crate::shared::{LeaseView, ProposeError, Shared};
use haraft_core::lease::{CommitGuard, ExpiryTimer, LeaseKeeper};
use haraft_core::ops::SeenAll;
use haraft_core::{BootTime, Command, Epoch, Outcome, Timing};
use haraft_db::Database;
use openraft::ServerState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

mod decide;

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
}
