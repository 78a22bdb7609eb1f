//! The agent's database side: observes the local database through the
//! [`Database`] seam (PostgreSQL or openGauss, chosen by the config), feeds
//! the pure reconciler, carries out one action at a time, and keeps the
//! fence file in step with the lease.

use crate::callbacks;
use crate::clock::now_unix_ms;
use crate::commit_guard::{GuardDone, GuardShell};
use crate::config::PgSettings;
use crate::fence::{self, FenceState};
use crate::rejoin::{Seen, rebuild, rewind};
use crate::shared::Shared;
use haraft_core::backoff::Backoff;
use haraft_core::dm_switchover::{DmAction, DmDone};
use haraft_core::health;
use haraft_core::reconcile::{Action, MyLease, Reason, ReconcileInput, Rejoin, reconcile};
use haraft_core::{BootTime, ClusterState, Command, DbPosition, DbStatus, Lsn, NodeEvent, NodeId, Outcome};
use haraft_db::postgres::PgConfig;
use haraft_db::{Database, StopMode, Upstream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed action before the next one of any kind (no tight
/// loops of alternating actions); the same kind waits longer (`backoff`).
const RETRY_AFTER_FAILURE_MS: u64 = 1000;

pub enum DbEvent {
    Observed { result: Result<DbStatus, String> },
    ActionDone { action: Action, reason: Reason, result: Result<(), String> },
    GuardDone(GuardDone),
}

pub struct DbSide<D: Database> {
    pg: Arc<D>,
    settings: PgSettings,
    fence_path: PathBuf,
    fence: Option<FenceState>,
    observation: Option<DbStatus>,
    /// False from the end of an action until the next observation: no
    /// decision is made on what the database looked like before it.
    fresh: bool,
    observe_in_flight: bool,
    next_observe_at: BootTime,
    action_in_flight: bool,
    next_action_at: BootTime,
    rejoin: Rejoin,
    primary_down_since: Option<BootTime>,
    not_streaming_since: Option<BootTime>,
    last_key: String,
    /// The last timeline and position observed: whose WAL a rewind
    /// discards, and up to where at least.
    last_seen: Seen,
    /// Failures of each kind of action, and when each may be tried again.
    backoff: Backoff,
    /// The commit guard, beside the one action at a time.
    guard: GuardShell,
    /// An action was decided but held back (its pause after a failure, its
    /// back-off): look again then.
    act_again_at: Option<BootTime>,
    /// The daemon's loop watches the data directory (`dirwatch`): a promote
    /// request wakes it. Otherwise (the simulator, inotify unavailable) a
    /// running standby's directory is looked at every tick.
    pub dir_watched: bool,
}

/// A random number for back-off jitter (through the clock seam).
fn jitter() -> u64 {
    crate::clock::random_u64()
}

/// `path` made absolute against the working directory: PostgreSQL runs in
/// its data directory, where relative paths would mean something else.
fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// haraft's own files about the database, beside the Raft store.
fn state_dir(config: &crate::config::Config) -> PathBuf {
    absolute(&config.data_dir.join("pgstate"))
}

/// What says that haraft managed a database for this member before: the
/// epoch guard it writes before every action, or the settings file it
/// writes into the data directory. `None` for a host haraft never ran on.
pub fn managed_database(config: &crate::config::Config) -> Option<String> {
    let pg = config.postgres.as_ref()?;
    let guard = haraft_db::epoch_guard::EpochGuard::new(&state_dir(config));
    let settings = absolute(&pg.data_dir).join("haraft.conf");
    if guard.path().exists() {
        Some(format!("its epoch guard {}", guard.path().display()))
    } else if settings.exists() {
        Some(format!("its settings file {}", settings.display()))
    } else {
        None
    }
}

/// The adapter's configuration, whichever the engine.
pub fn db_config(config: &crate::config::Config, pg: &PgSettings) -> PgConfig {
    let state_dir = state_dir(config);
    PgConfig {
        bin_dir: absolute(&pg.bin_dir),
        data_dir: absolute(&pg.data_dir),
        socket_dir: state_dir.clone(),
        state_dir,
        listen_addresses: pg.listen.ip().to_string(),
        host: connect_host(pg),
        port: pg.listen.port(),
        superuser: pg.superuser.clone(),
        superuser_password: pg.superuser_password.0.clone(),
        replication_user: pg.replication_user.clone(),
        replication_password: pg.replication_password.0.clone(),
        replication_password_file: pg.replication_password_file.as_ref().map(|f| absolute(f)),
        application_name: config.node_name.clone(),
        run_as: None,
        keep_aside: pg.keep_aside,
        initdb_locale: pg.initdb_locale.clone(),
        initdb_encoding: pg.initdb_encoding.clone(),
    }
}

/// The address the agent uses for its own queries: the listen address,
/// or loopback when PostgreSQL listens on every interface.
fn connect_host(pg: &PgSettings) -> String {
    let ip = pg.listen.ip();
    if ip.is_unspecified() { "127.0.0.1".into() } else { ip.to_string() }
}

impl<D: Database> DbSide<D> {
    pub fn new(config: &crate::config::Config, mut settings: PgSettings, pg: Arc<D>) -> DbSide<D> {
        settings.data_dir = absolute(&settings.data_dir);
        let fence_path = absolute(&config.data_dir.join("fence"));
        let fence = fence::read(&fence_path);
        DbSide {
            pg,
            settings,
            fence_path,
            fence,
            observation: None,
            fresh: false,
            observe_in_flight: false,
            next_observe_at: BootTime(0),
            action_in_flight: false,
            next_action_at: BootTime(0),
            rejoin: Rejoin::default(),
            primary_down_since: None,
            not_streaming_since: None,
            last_key: String::new(),
            act_again_at: None,
            dir_watched: false,
            last_seen: Seen::default(),
            backoff: Backoff::default(),
            guard: GuardShell::default(),
        }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.settings.data_dir
    }

    pub fn fence_path(&self) -> &PathBuf {
        &self.fence_path
    }

    /// The primary's position, sent with renewals.
    pub fn position(&self) -> Option<DbPosition> {
        let o = self.observation.as_ref().filter(|o| o.is_running_primary())?;
        Some(DbPosition { timeline: o.timeline?, lsn: o.lsn? })
    }

    /// When the loop must step for this side without an event: the next
    /// observation, or a held-back action's next look. An action or an
    /// observation in flight ends with an event.
    pub fn next_due(&self, now: BootTime) -> Option<BootTime> {
        if self.action_in_flight {
            return None;
        }
        let observe = (!self.observe_in_flight).then_some(self.next_observe_at);
        let look = (!self.dir_watched && self.observation.as_ref().is_some_and(DbStatus::is_running_standby))
            .then(|| now.plus_ms(crate::driver::TICK_MS));
        [observe, self.act_again_at, look].into_iter().flatten().map(|t| t.max(now.plus_ms(1))).min()
    }

    pub fn needs_rewind(&self) -> bool {
        self.rejoin.needs_rewind
    }

    pub fn on_event(&mut self, shared: &Shared, event: DbEvent, now: BootTime) {
        match event {
            DbEvent::Observed { result } => {
                self.observe_in_flight = false;
                self.next_observe_at =
                    now.plus_ms(haraft_core::reconcile::observe_every_ms(&shared.state(), shared.me()));
                match result {
                    Ok(mut status) => {
                        // Streaming through a dial override is streaming
                        // from that member: decisions compare registered
                        // addresses.
                        if let Some(from) = status.streaming_from.clone() {
                            let state = shared.state();
                            let dialed = shared.config.dial.postgresql.iter().find(|(_, a)| **a == from);
                            if let Some(db) = dialed.and_then(|(id, _)| state.db_members.get(id)) {
                                status.streaming_from = Some(db.address.clone());
                            }
                        }
                        if status.lsn.is_some() {
                            (self.last_seen.timeline, self.last_seen.lsn) = (status.timeline, status.lsn);
                        }
                        self.last_seen.has_data = status.has_data;
                        *shared.db_status.lock().expect("never poisoned") = Some(status.clone());
                        let before = self.observation.as_ref().map(|o| (o.running, o.role));
                        if let Some(event) = health::callback_for(before, (status.running, status.role)) {
                            let role = health::role_word(status.role, status.running);
                            let c = &shared.config;
                            callbacks::spawn(
                                &c.callbacks,
                                &c.node_name,
                                &c.cluster,
                                event,
                                role,
                                shared.state().epoch.0,
                            );
                        }
                        self.observation = Some(status);
                        self.fresh = true;
                    }
                    Err(e) => tracing::warn!(node = %shared.config.node_name, "cannot observe PostgreSQL: {e}"),
                }
            }
            DbEvent::GuardDone(done) => {
                self.guard.done(shared, done);
                self.next_observe_at = now;
            }
            DbEvent::ActionDone { action, reason, result } => {
                self.action_in_flight = false;
                *shared.db_action.lock().expect("never poisoned") = None;
                self.rejoin = self.rejoin.after(&action, &reason, result.is_ok());
                let outcome = if result.is_ok() { "ok" } else { "failed" };
                *shared.action_counts.lock().expect("never poisoned").entry((action.kind(), outcome)).or_default() += 1;
                self.backoff.record(
                    &action,
                    result.as_ref().map(|_| ()).map_err(String::as_str),
                    now,
                    now_unix_ms(),
                    jitter(),
                );
                *shared.db_failing.lock().expect("never poisoned") = self.backoff.worst();
                match &result {
                    Ok(()) => tracing::info!(node = %shared.config.node_name, "done: {action}"),
                    Err(e) => {
                        match self.backoff.failing(&action) {
                            Some(f) => tracing::warn!(
                                node = %shared.config.node_name,
                                "failed ({} in a row, next try in {} ms): {action}: {e}",
                                f.count, f.next_try_unix_ms.saturating_sub(now_unix_ms())
                            ),
                            None => tracing::warn!(node = %shared.config.node_name, "failed: {action}: {e}"),
                        }
                        self.next_action_at = now.plus_ms(RETRY_AFTER_FAILURE_MS);
                    }
                }
                // Look again at once: the action changed the database, and
                // the next decision waits for that look.
                self.next_observe_at = now;
                self.fresh = false;
            }
        }
    }

    /// Keeps the fence file in step with the lease: armed with the deadline
    /// while the lease is valid; disarmed once the lease is gone and the
    /// database is not a running primary (while it is, the last deadline
    /// stays armed and the guards fence at it).
    fn sync_fence(&mut self, valid_until: Option<BootTime>) {
        let desired = match valid_until {
            Some(deadline) => {
                Some(FenceState::Armed { deadline, pgdata: self.settings.data_dir.clone(), owner: std::process::id() })
            }
            None if self.observation.as_ref().is_some_and(DbStatus::is_running_primary) => None,
            None => match &self.fence {
                Some(FenceState::Armed { .. }) => Some(FenceState::Disarmed),
                _ => None,
            },
        };
        let Some(desired) = desired else { return };
        if self.fence.as_ref() == Some(&desired) {
            return;
        }
        match fence::write(&self.fence_path, &desired) {
            Ok(()) => self.fence = Some(desired),
            Err(e) => tracing::error!(path = %self.fence_path.display(), "cannot write the fence file: {e}"),
        }
    }

    /// At start: a fence file armed by an earlier agent is taken over (same
    /// deadline, this agent as owner), so the guards keep it.
    pub fn adopt_fence(&mut self) {
        if let Some(FenceState::Armed { deadline, pgdata, .. }) = self.fence.clone() {
            let adopted = FenceState::Armed { deadline, pgdata, owner: std::process::id() };
            if fence::write(&self.fence_path, &adopted).is_ok() {
                self.fence = Some(adopted);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        shared: &Arc<Shared>,
        spawn: &dyn Fn(std::pin::Pin<Box<dyn std::future::Future<Output = DbEvent> + Send>>),
        state: &ClusterState,
        lease: MyLease,
        valid_until: Option<BootTime>,
        hold_commits: Option<u64>,
        now: BootTime,
    ) {
        if let Some(id) = state.system_identifier {
            self.pg.expect_system_identifier(id);
        }
        let me = shared.me();
        let peers: Vec<Upstream> =
            state.db_members.keys().filter(|n| **n != me).filter_map(|n| upstream_of(shared, state, *n).ok()).collect();
        self.pg.set_peers(&peers);
        self.sync_fence(valid_until);
        let epoch = match lease {
            MyLease::Valid(e) => Some(e),
            _ => None,
        };
        if let Some(change) = self.guard.change(hold_commits.is_some(), self.observation.as_ref(), epoch, state.epoch) {
            let work = self.guard.start(shared, &self.pg, change, hold_commits, now);
            spawn(Box::pin(async move { DbEvent::GuardDone(work.await) }));
        }
        // A standby someone else asked to promote is looked at now, not at
        // its next observation: a look costs a few stat() calls a tick.
        if !self.action_in_flight
            && now < self.next_observe_at
            && self.observation.as_ref().is_some_and(DbStatus::is_running_standby)
            && self.pg.promotion_signalled()
        {
            self.next_observe_at = now;
        }
        if !self.observe_in_flight && now >= self.next_observe_at && !self.action_in_flight {
            self.observe_in_flight = true;
            let pg = Arc::clone(&self.pg);
            spawn(Box::pin(async move {
                let result = pg.observe(OBSERVE_TIMEOUT).await.map_err(|e| e.to_string());
                DbEvent::Observed { result }
            }));
        }
        let Some(db) = self.observation.clone().filter(|_| self.fresh) else { return };
        if state.config.is_none() {
            return;
        }
        // Timers the reconciler reads as plain durations.
        let holder = matches!(lease, MyLease::Valid(_));
        self.primary_down_since = match (holder && !db.running, self.primary_down_since) {
            (true, None) => Some(now),
            (true, since) => since,
            (false, _) => None,
        };
        let streaming = haraft_core::health::streams_from_primary(state, &db);
        if streaming {
            self.rejoin = self.rejoin.streamed();
        }
        self.not_streaming_since = match (db.is_running_standby() && !streaming, self.not_streaming_since) {
            (true, None) => Some(now),
            (true, since) => since,
            (false, _) => None,
        };
        let registration = self.settings.registration();
        let (action, reason) = reconcile(&ReconcileInput {
            me,
            state,
            lease,
            registration: &registration,
            db: Some(&db),
            rejoin: self.rejoin,
            guard_armed: matches!(self.fence, Some(FenceState::Armed { .. })),
            primary_down_ms: self.primary_down_since.map(|t| t.ms_until(now)),
            not_streaming_ms: self.not_streaming_since.map(|t| t.ms_until(now)),
            stream_timeout_ms: self.settings.stream_timeout_ms,
        });
        // One line per decision: the same action for the same kind of
        // reason is not logged again as its numbers change.
        let key = format!("{action} {:?}", std::mem::discriminant(&reason));
        if key != self.last_key {
            *shared.last_decision.lock().expect("never poisoned") = Some((action.to_string(), reason.to_string()));
            match action {
                // Refused data: said once, loudly, and shown in status.
                Action::Idle if matches!(reason, Reason::ForeignDataDir { .. }) => tracing::warn!(
                    node = %shared.config.node_name,
                    "database: left untouched: its data directory holds another database ({reason}); move it aside or point the config at this cluster's data"
                ),
                Action::Idle => tracing::info!(node = %shared.config.node_name, "database: idle because {reason}"),
                _ => tracing::info!(node = %shared.config.node_name, "database: {action} because {reason}"),
            }
            self.last_key = key;
        }
        self.backoff.decided(&action, &reason);
        *shared.db_failing.lock().expect("never poisoned") = self.backoff.worst();
        // Fencing does not wait out the pause after a failed action.
        let fencing = action == Action::Stop { immediate: true };
        self.act_again_at = None;
        if action == Action::Idle || self.action_in_flight {
            return;
        }
        if now < self.next_action_at && !fencing {
            self.act_again_at = Some(self.next_action_at);
            return;
        }
        let may_run = self.backoff.admit(&action, now);
        *shared.db_failing.lock().expect("never poisoned") = self.backoff.worst();
        if !may_run {
            // The back-off's next try is minutes away at most; a tick is
            // cheap next to the action it holds back.
            self.act_again_at = Some(now.plus_ms(crate::driver::TICK_MS));
            return;
        }
        self.action_in_flight = true;
        *shared.db_action.lock().expect("never poisoned") = Some(action.to_string());
        let shared = Arc::clone(shared);
        let pg = Arc::clone(&self.pg);
        let settings = self.settings.clone();
        let state = state.clone();
        let last_seen = self.last_seen;
        let seen = (db.timeline, db.lsn);
        spawn(Box::pin(async move {
            let result = execute(&shared, &*pg, &settings, &state, &action, last_seen).await;
            if result.is_ok() && reason == Reason::PromotedOutsideHaraft {
                fenced_outside_promotion(&shared, seen).await;
            }
            DbEvent::ActionDone { action, reason, result }
        }));
    }
}

/// Where this node reaches `node`'s PostgreSQL: its registered address, or
/// this node's dial override for it.
pub(crate) fn upstream_of(shared: &Shared, state: &ClusterState, node: NodeId) -> Result<Upstream, String> {
    let name = state.member_name(node).unwrap_or("?");
    let db = state.db_members.get(&node).ok_or_else(|| format!("node {node} registered no database"))?;
    let address = shared.config.dial.postgresql.get(&node).unwrap_or(&db.address);
    Upstream::parse(name, address).ok_or_else(|| format!("node {node}'s database address {address:?} is not host:port"))
}

async fn propose(shared: &Shared, command: Command) -> Result<(), String> {
    match shared.propose(command).await {
        Ok(Outcome::Applied(_)) => Ok(()),
        Ok(Outcome::Rejected(r)) => Err(format!("refused: {r}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Carries out one action.
async fn execute<D: Database>(
    shared: &Shared,
    pg: &D,
    settings: &PgSettings,
    state: &ClusterState,
    action: &Action,
    last_seen: Seen,
) -> Result<(), String> {
    let t = Duration::from_millis(settings.start_timeout_ms);
    let me = shared.me();
    let e = |e: haraft_db::DbError| e.to_string();
    match action {
        Action::Idle => Ok(()),
        Action::Propose(command) => {
            // The reconciler has no clock: history entries get the time here.
            let at_unix_ms = now_unix_ms();
            let command = match command.clone() {
                Command::Release { holder, epoch, why, .. } => Command::Release { holder, epoch, why, at_unix_ms },
                Command::SwitchoverDemoted { holder, epoch, id, last, .. } => {
                    crate::failpoint::hit("before-switchover-demoted");
                    Command::SwitchoverDemoted { holder, epoch, id, last, at_unix_ms }
                }
                Command::SwitchoverPromoted { holder, epoch, id, .. } => {
                    crate::failpoint::hit("before-switchover-promoted");
                    Command::SwitchoverPromoted { holder, epoch, id, at_unix_ms }
                }
                Command::SetDatabase { holder, epoch, system_identifier, origin, .. } => {
                    Command::SetDatabase { holder, epoch, system_identifier, origin, at_unix_ms }
                }
                Command::SwitchoverRejoined { node, id, .. } => {
                    crate::failpoint::hit("before-switchover-rejoined");
                    Command::SwitchoverRejoined { node, id, at_unix_ms }
                }
                Command::DmSwitchover { node, epoch, id, done, .. } => {
                    crate::failpoint::hit(&format!("before-dm-{}", dm_point(done)));
                    Command::DmSwitchover { node, epoch, id, done, at_unix_ms }
                }
                other => other,
            };
            propose(shared, command).await
        }
        Action::Bootstrap { epoch } => {
            let system_identifier = pg.bootstrap(*epoch, t).await.map_err(e)?;
            let origin = haraft_core::DataOrigin::Created;
            let at_unix_ms = now_unix_ms();
            propose(shared, Command::SetDatabase { holder: me, epoch: *epoch, system_identifier, origin, at_unix_ms })
                .await
        }
        Action::StartPrimary { epoch } => pg.start_primary(*epoch, t).await.map_err(e),
        Action::StartStandby { upstream, epoch } => {
            let up = match upstream {
                Some(n) => Some(upstream_of(shared, state, *n)?),
                None => None,
            };
            pg.start_standby(up.as_ref(), *epoch, t).await.map_err(e)
        }
        Action::Follow { upstream, epoch } => {
            pg.follow(&upstream_of(shared, state, *upstream)?, *epoch, t).await.map_err(e)
        }
        Action::Promote { epoch } => {
            if state.current_switchover().is_some_and(|s| s.to == me) {
                crate::failpoint::hit("before-switchover-promote");
            }
            crate::failpoint::hit("before-promote");
            pg.promote(*epoch, t).await.map_err(e)
        }
        Action::Stop { immediate } => {
            let mode = if *immediate { StopMode::Immediate } else { StopMode::Fast };
            pg.stop(mode, state.epoch, t).await.map_err(e)
        }
        Action::Rewind { source, epoch } => {
            crate::failpoint::hit("before-rewind");
            rewind(shared, pg, state, *source, *epoch, last_seen, t).await
        }
        Action::SetSynchronous { names, quorum, epoch } => {
            pg.set_synchronous_standbys(names, *quorum, *epoch, t).await.map_err(e)
        }
        Action::SetSlots { slots, epoch } => pg.set_replication_slots(slots, *epoch, t).await.map_err(e),
        Action::SetReadOnly { read_only, epoch } => pg.set_read_only(*read_only, *epoch, t).await.map_err(e),
        Action::Rebuild { source, epoch } => rebuild(shared, pg, settings, state, *source, *epoch, last_seen).await,
        Action::Restart { id, epoch, as_primary, upstream } => {
            let result = async {
                pg.stop(StopMode::Fast, *epoch, t).await.map_err(e)?;
                if *as_primary {
                    pg.start_primary(*epoch, t).await.map_err(e)
                } else {
                    let up = upstream.map(|n| upstream_of(shared, state, n)).transpose()?;
                    pg.start_standby(up.as_ref(), *epoch, t).await.map_err(e)
                }
            }
            .await;
            task_done(shared, *id, result).await
        }
        Action::DmStep { action, epoch } => {
            let up = match action {
                DmAction::OpenStandby { upstream } => Some(upstream_of(shared, state, *upstream)?),
                _ => None,
            };
            pg.dm_switchover_step(*action, up.as_ref(), *epoch, t).await.map_err(e)
        }
        Action::Reinit { id, source, epoch, full } => {
            let result = async {
                pg.stop(StopMode::Fast, *epoch, t).await.map_err(e)?;
                if !*full {
                    match rewind(shared, pg, state, *source, *epoch, last_seen, t).await {
                        Ok(()) => return Ok(()),
                        Err(err) => tracing::warn!("rewind failed, rebuilding from a base backup instead: {err}"),
                    }
                }
                rebuild(shared, pg, settings, state, *source, *epoch, Seen { has_data: true, ..last_seen }).await
            }
            .await;
            task_done(shared, *id, result).await
        }
    }
}

/// The failpoint name of a DM switchover step's report
/// (`before-dm-NAME`: the step's statements ran, its entry is not
/// proposed yet).
fn dm_point(done: DmDone) -> &'static str {
    match done {
        DmDone::Snapshot => "snapshot",
        DmDone::OldMounted { .. } => "old-mounted",
        DmDone::TargetMounted { .. } => "target-mounted",
        DmDone::OldStandby => "old-standby",
        DmDone::TargetOpened => "target-opened",
        DmDone::OldReopened => "old-reopened",
    }
}

/// After a server promoted outside haraft was stopped: counted, logged
/// and recorded in the history (its rewind, when it rejoins, names what
/// it wrote).
async fn fenced_outside_promotion(shared: &Shared, (timeline, lsn): (Option<haraft_core::TimelineId>, Option<Lsn>)) {
    shared.outside_promotions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::error!(
        node = %shared.config.node_name, ?timeline, ?lsn,
        "PostgreSQL was promoted outside haraft (pg_ctl promote, pg_promote() or a script?): stopped it; \
         it rejoins as a standby and what it wrote is discarded. Ask haraft for a switchover instead"
    );
    let event = NodeEvent::PromotedOutside { timeline, lsn };
    record(shared, Command::Report { node: shared.me(), event, at_unix_ms: now_unix_ms() }).await;
}

/// A history entry for people: failing to record it undoes nothing.
pub(crate) async fn record(shared: &Shared, command: Command) {
    if let Err(err) = propose(shared, command).await {
        tracing::warn!("done but not recorded in the history: {err}");
    }
}

/// Reports an operator task's result; the action's own result is the
/// task's (a failed task is retried only if the operator asks again).
async fn task_done(shared: &Shared, id: haraft_core::ops::OpId, result: Result<(), String>) -> Result<(), String> {
    let command = Command::TaskDone { node: shared.me(), id, error: result.clone().err(), at_unix_ms: now_unix_ms() };
    // Until it is recorded the task stays pending and would run again:
    // try a few times.
    for attempt in 1..=5 {
        match propose(shared, command.clone()).await {
            Ok(()) => break,
            Err(err) if attempt == 5 => tracing::warn!("operation {id} finished but is not recorded: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    result
}
