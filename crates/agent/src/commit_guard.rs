//! The commit guard's shell: when the lease keeper says the holder's
//! renewals are late (`LeaseKeeper::commits_held`), the holder's primary
//! stops acknowledging commits (`Database::hold_commits`) until a renewal
//! is confirmed again. It runs beside the one database action at a time,
//! never behind it: holding commits is part of fencing.

use crate::shared::Shared;
use haraft_core::{BootTime, DbStatus, Epoch};
use haraft_db::Database;
use std::sync::Arc;
use std::time::Duration;

/// Bound on writing the settings file and reloading.
const GUARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The guard as this agent last set it, and whether a change is under way.
#[derive(Debug, Default)]
pub struct GuardShell {
    /// What this agent last wrote; `None` before it wrote anything (the
    /// observation then tells, e.g. after an agent restart).
    held: Option<bool>,
    in_flight: bool,
    /// When commits were last held (for the release's log line).
    since: Option<BootTime>,
}

/// What a finished change reports back.
pub struct GuardDone {
    pub held: bool,
    pub result: Result<(), String>,
}

impl GuardShell {
    /// The change to make now (`core::lease::guard_change`), one at a time;
    /// what this agent wrote beats the observation (which tells after an
    /// agent restart).
    pub fn change(
        &mut self,
        hold: bool,
        db: Option<&DbStatus>,
        holder: Option<Epoch>,
        current: Epoch,
    ) -> Option<(bool, Epoch)> {
        if self.in_flight {
            return None;
        }
        let held = self.held.unwrap_or_else(|| db.is_some_and(|d| d.commits_held));
        let running_primary = db.is_some_and(DbStatus::is_running_primary);
        haraft_core::lease::guard_change(hold, held, running_primary, holder, current)
    }

    /// Starts `change` (from [`GuardShell::change`]); the future reports it.
    pub fn start<D: Database>(
        &mut self,
        shared: &Arc<Shared>,
        pg: &Arc<D>,
        (held, epoch): (bool, Epoch),
        unconfirmed_ms: Option<u64>,
        now: BootTime,
    ) -> impl std::future::Future<Output = GuardDone> + Send + 'static {
        self.in_flight = true;
        let node = &shared.config.node_name;
        if held {
            self.since = Some(now);
            tracing::warn!(
                node = %node, unconfirmed_ms = ?unconfirmed_ms,
                "no lease renewal confirmed for a renewal interval and the margin: holding commits \
                 (they wait, none is acknowledged) until one is"
            );
        } else {
            let after = self.since.take().map(|t| t.ms_until(now));
            tracing::warn!(node = %node, held_ms = ?after, "a lease renewal was confirmed: commits go through again");
        }
        let pg = Arc::clone(pg);
        async move {
            let result = pg.hold_commits(held, epoch, GUARD_TIMEOUT).await.map_err(|e| e.to_string());
            GuardDone { held, result }
        }
    }

    pub fn done(&mut self, shared: &Shared, done: GuardDone) {
        self.in_flight = false;
        let kind = if done.held { "hold-commits" } else { "release-commits" };
        let outcome = if done.result.is_ok() { "ok" } else { "failed" };
        *shared.action_counts.lock().expect("never poisoned").entry((kind, outcome)).or_default() += 1;
        match done.result {
            Ok(()) => self.held = Some(done.held),
            // Tried again at the next step.
            Err(e) => tracing::error!(node = %shared.config.node_name, "{kind} failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary(commits_held: bool) -> DbStatus {
        DbStatus {
            has_data: true,
            running: true,
            role: Some(haraft_core::DbRole::Primary),
            commits_held,
            ..DbStatus::default()
        }
    }

    #[test]
    fn one_change_at_a_time_and_what_was_written_beats_the_observation() {
        let mut g = GuardShell::default();
        let (e, now) = (Some(Epoch(4)), Epoch(5));
        // Observed held (an earlier agent), not holding any more: released.
        assert_eq!(g.change(false, Some(&primary(true)), e, now), Some((false, Epoch(4))));
        g.in_flight = true;
        assert_eq!(g.change(true, Some(&primary(false)), e, now), None);
        g.in_flight = false;
        g.held = Some(true);
        assert_eq!(g.change(true, Some(&primary(false)), e, now), None);
        assert_eq!(g.change(false, Some(&primary(false)), e, now), Some((false, Epoch(4))));
    }
}
