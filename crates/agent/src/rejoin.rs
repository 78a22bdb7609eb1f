//! Rejoining a member whose database cannot simply follow the primary:
//! a rewind or a rebuild, and the history entry that says what each one
//! threw away. What is discarded is measured before the tool runs (after
//! it the WAL is rewritten or set aside), so that writes acknowledged to
//! clients and lost are named in the history and warned about in status.

use crate::clock::now_unix_ms;
use crate::config::PgSettings;
use crate::database::{record, upstream_of};
use crate::shared::Shared;
use haraft_core::features::FeatureLevel;
use haraft_core::loss::Discard;
use haraft_core::{ClusterState, Command, Lsn, NodeEvent, NodeId, TimelineId};
use haraft_db::Database;
use std::time::Duration;

/// The last timeline and position the database side observed, and
/// whether the latest observation found a data directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub(crate) timeline: Option<TimelineId>,
    pub(crate) lsn: Option<Lsn>,
    /// A data directory was there (a rebuild replaces it, else makes one).
    pub(crate) has_data: bool,
}

/// Bound on counting the commits a rejoin discards: the history entry
/// waits for it, the rejoin does not need it.
const COUNT_COMMITS_TIMEOUT: Duration = Duration::from_secs(10);

/// The local WAL past the point where the new primary's history left this
/// member's timeline, read before a rewind or rebuild discards it.
struct Measured {
    /// Where the new primary's history left the member's timeline.
    fork: Option<(TimelineId, Lsn)>,
    /// Where the member's WAL ended, as far as known.
    discarded_to: Option<Lsn>,
    /// That end was read from the data directory.
    end_known: bool,
    /// Transactions committed from the fork to the end.
    commits: Option<u64>,
}

impl Measured {
    /// What a rebuild discards: everything past the fork (`None` when the
    /// directory held nothing past it, or its timeline did not fork).
    fn rebuild_discard(&self) -> Option<Discard> {
        let (timeline, from) = self.fork?;
        // Past the fork as far as known; an end that could not be read may
        // hide more ("how much could not be read", never "nothing").
        let past = self.discarded_to.filter(|to| *to > from);
        if past.is_none() && self.end_known {
            return None;
        }
        Some(Discard {
            diverged_at: Some(from),
            timeline: Some(timeline),
            discarded_to: past,
            end_known: self.end_known,
            commits: self.commits,
        })
    }
}

/// How far the local WAL reaches and how many commits lie past the fork:
/// the end pg_waldump finds, or the last observed position when it finds
/// none (or less: the observation saw WAL that was never flushed).
async fn measure<D: Database>(pg: &D, state: &ClusterState, seen: Seen, t: Duration) -> Measured {
    let on_disk = match pg.end_of_wal(t).await {
        Ok(end) => end,
        Err(err) => {
            tracing::warn!(
                "cannot read where the local WAL ends ({err}): the history names the last observed position"
            );
            None
        }
    };
    let fork =
        seen.timeline.and_then(|tl| state.forks.iter().find(|f| f.timeline == tl)).map(|f| (f.timeline, f.switch_lsn));
    let commits = match (fork, on_disk) {
        (Some((_, from)), Some(end)) if end <= from => Some(0),
        (Some((timeline, from)), Some(end)) => {
            match pg.commits_between(timeline, from, end, COUNT_COMMITS_TIMEOUT.min(t)).await {
                Ok(n) => Some(n),
                Err(err) => {
                    tracing::warn!(
                        "cannot count the commits the rejoin discards ({err}): the history names the range only"
                    );
                    None
                }
            }
        }
        _ => None,
    };
    Measured { fork, discarded_to: on_disk.max(seen.lsn), end_known: on_disk.is_some(), commits }
}

/// Counts and logs a discard that may have lost acknowledged writes.
fn account(shared: &Shared, discard: &Discard, verb: &str) {
    if let Some(b) = discard.discarded_bytes() {
        shared.discarded_wal_bytes.fetch_add(b, std::sync::atomic::Ordering::Relaxed);
    }
    if discard.may_have_lost() {
        tracing::error!(node = %shared.config.node_name, "{verb}: {}", discard.words());
    }
}

/// pg_rewind from `source`, then the history entry accounting for what it
/// discarded: from the divergence to where the local WAL ended, how
/// exactly that end is known, and how many transactions had committed
/// there.
pub(crate) async fn rewind<D: Database>(
    shared: &Shared,
    pg: &D,
    state: &ClusterState,
    source: NodeId,
    epoch: haraft_core::Epoch,
    seen: Seen,
    t: Duration,
) -> Result<(), String> {
    let m = measure(pg, state, seen, t).await;
    let report = pg.rewind(&upstream_of(shared, state, source)?, epoch, t).await.map_err(|e| e.to_string())?;
    let discard = Discard {
        diverged_at: report.diverged_at,
        timeline: report.diverged_timeline,
        discarded_to: m.discarded_to,
        end_known: m.end_known,
        commits: m.commits.filter(|_| report.diverged_at.is_some()),
    };
    account(shared, &discard, "rewound");
    let event = NodeEvent::RewoundAccounted { discard };
    record(shared, Command::Report { node: shared.me(), event, at_unix_ms: now_unix_ms() }).await;
    Ok(())
}

/// A base backup from `source` replaces the data directory (the old one is
/// kept aside); when that directory had WAL past the fork (a former
/// primary whose rewind failed), the entry says what was discarded, as a
/// rewind's does.
pub(crate) async fn rebuild<D: Database>(
    shared: &Shared,
    pg: &D,
    settings: &PgSettings,
    state: &ClusterState,
    source: NodeId,
    epoch: haraft_core::Epoch,
    seen: Seen,
) -> Result<(), String> {
    let t = Duration::from_millis(settings.rebuild_timeout_ms);
    crate::failpoint::hit("before-rebuild");
    let measured = if seen.has_data { measure(pg, state, seen, t).await.rebuild_discard() } else { None };
    let discard = {
        let mut kept = shared.unrecorded_discard.lock().expect("never poisoned");
        *kept = measured.or(*kept);
        *kept
    };
    pg.rebuild(&upstream_of(shared, state, source)?, epoch, t).await.map_err(|e| e.to_string())?;
    shared.unrecorded_discard.lock().expect("never poisoned").take();
    if let Some(d) = &discard {
        account(shared, d, "rebuilt");
    }
    // 0.1 cannot read the accounted entry: below feature level 1 the
    // discard is in the log only.
    let accounted = shared.state().feature_level >= FeatureLevel::CBOR_RECORDS;
    let event = match discard {
        Some(discard) if accounted => NodeEvent::RebuiltAccounted { from: source, discard },
        // The directory was there, or an earlier attempt set it aside.
        Some(_) => NodeEvent::Rebuilt { from: source },
        None if seen.has_data => NodeEvent::Rebuilt { from: source },
        None => NodeEvent::Copied { from: source },
    };
    record(shared, Command::Report { node: shared.me(), event, at_unix_ms: now_unix_ms() }).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(to: Option<u64>, end_known: bool) -> Measured {
        Measured { fork: Some((TimelineId(1), Lsn(0x100))), discarded_to: to.map(Lsn), end_known, commits: None }
    }

    #[test]
    fn a_rebuild_names_what_lay_past_the_fork_and_never_says_nothing_when_unsure() {
        // A former primary that wrote past the fork.
        let d = measured(Some(0x180), true).rebuild_discard().expect("WAL past the fork");
        assert_eq!(
            (d.diverged_at, d.discarded_to, d.discarded_bytes()),
            (Some(Lsn(0x100)), Some(Lsn(0x180)), Some(0x80))
        );
        // A standby behind the fork, its end read: nothing discarded.
        assert_eq!(measured(Some(0x80), true).rebuild_discard(), None);
        assert_eq!(measured(Some(0x100), true).rebuild_discard(), None);
        // Its end unread and the last observation behind the fork: it may
        // have written past it; the range is not named.
        let unsure = measured(Some(0x80), false).rebuild_discard().expect("may have lost");
        assert_eq!(unsure.discarded_to, None);
        assert!(unsure.may_have_lost() && unsure.words().contains("could not be read"), "{}", unsure.words());
        // A timeline that did not fork: a plain rebuild.
        assert_eq!(Measured { fork: None, ..measured(Some(0x180), true) }.rebuild_discard(), None);
    }
}
