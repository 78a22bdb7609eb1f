//! Who may become primary after a lapse, and why not: one verdict per
//! member, kept in the grant's history entry. The first grant of a
//! cluster is `adopt`'s; an operator's failover is checked here too.

use crate::db::{DbStatus, Live};
use crate::ids::{Lsn, NodeId};
use crate::ops::SeenAll;
use crate::state::{ClusterState, Operation, Verdict};

/// Checks an operator's failover to `to` against fresh probes: refused
/// while a healthy primary holds the lease; otherwise every member's
/// verdict, and for `to` the words for the history or why not.
pub fn check_failover(
    state: &ClusterState,
    seen: &SeenAll,
    to: NodeId,
    allow_data_loss: bool,
    force: bool,
) -> (Vec<Verdict>, Result<String, String>) {
    let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
    if state.paused && !force {
        return (Vec::new(), Err("the cluster is paused: run haraftctl resume, or add --force".into()));
    }
    if let Some(lease) = state.lease {
        let holder = seen.get(&lease.holder);
        let healthy = holder
            .is_some_and(|s| s.lease_valid_for_ms.is_some() && s.db.as_ref().is_some_and(DbStatus::is_running_primary));
        if healthy {
            let why = format!(
                "{} is a healthy primary holding the lease at epoch {}: use haraftctl switchover --to {}",
                name(lease.holder),
                lease.epoch,
                name(to)
            );
            return (Vec::new(), Err(why));
        }
    }
    let live: Live = seen.iter().map(|(id, s)| (*id, s.db.clone())).collect();
    if !live.contains_key(&to) {
        return (Vec::new(), Err(format!("{} did not answer", name(to))));
    }
    let verdicts = db_verdicts(state, &live);
    let verdict = failover_verdict(state, &verdicts, to, allow_data_loss);
    (verdicts, verdict)
}

/// Whether an operator's failover may promote `to`, given the automatic
/// verdicts: the words for the history, or why not (and what to do).
/// Lag, a stopped database, an older timeline or not being a synchronous
/// standby may lose acknowledged writes: allowed only with data loss
/// allowed. Anything else (no data, another database, nofailover) is refused.
pub fn failover_verdict(
    state: &ClusterState,
    verdicts: &[Verdict],
    to: NodeId,
    allow_data_loss: bool,
) -> Result<String, String> {
    let name = state.member_name(to).unwrap_or("?");
    let Some(v) = verdicts.iter().find(|v| v.node == to) else {
        return Err(format!("{name} is not a member"));
    };
    let may_lose = v.why.starts_with("lags ")
        || v.why.starts_with("not a synchronous standby")
        || v.why.starts_with("on timeline ");
    match (v.eligible, may_lose, allow_data_loss) {
        (true, _, _) => Ok(format!("{} (chosen by the operator)", v.why)),
        (false, true, true) => Ok(format!("{} (chosen by the operator, data loss allowed)", v.why)),
        (false, true, false) => {
            Err(format!("{name} may miss acknowledged writes ({}): add --allow-data-loss to promote it anyway", v.why))
        }
        (false, false, _) => Err(format!("{name} cannot be promoted: {}", v.why)),
    }
}

/// Verdicts for a cluster whose members manage no database: the lowest live
/// id that is not the member whose lease just lapsed (it may take the lease
/// again only when nobody else answers). Eligible ones come first, in order
/// of preference.
pub(crate) fn lease_only_verdicts(state: &ClusterState, live: &Live, previous: Option<NodeId>) -> Vec<Verdict> {
    let mut eligible: Vec<Verdict> = Vec::new();
    let mut rest: Vec<Verdict> = Vec::new();
    let mut previous_live = None;
    for id in state.members.keys().copied() {
        let verdict = |eligible: bool, why: &str| Verdict { node: id, eligible, why: why.to_string(), lsn: None };
        if !live.contains_key(&id) {
            rest.push(verdict(false, "did not answer"));
        } else if Some(id) == previous {
            previous_live = Some(verdict(true, "previous holder, only member left"));
        } else {
            eligible.push(verdict(true, "answered"));
        }
    }
    match previous_live {
        Some(v) if eligible.is_empty() => eligible.push(v),
        Some(mut v) => {
            v.eligible = false;
            v.why = "previous holder: another member is preferred".into();
            rest.push(v);
        }
        None => {}
    }
    eligible.extend(rest);
    eligible
}

/// Verdicts for a cluster of databases. Before bootstrap: see
/// `adopt::bootstrap_verdicts`. After: running members of
/// this database, on the primary's timeline, within the lag limit, not
/// tagged nofailover; the highest LSN wins, then priority, then the lowest id.
pub(crate) fn db_verdicts(state: &ClusterState, live: &Live) -> Vec<Verdict> {
    if state.system_identifier.is_none() {
        return crate::adopt::bootstrap_verdicts(state, live);
    }
    // Synchronous mode: the holder whose lease just ended has every write
    // it acknowledged, as every synchronous standby does.
    let previous = match &state.operation {
        Some(Operation::Failover { from, .. }) => Some(*from),
        _ => None,
    };
    // Synchronous mode: a member of the set may be promoted only when
    // enough of the set answered to include a holder of every commit
    // (`sync::eligible`); among them the highest LSN ranks first, running
    // or not, when not every member holds every commit.
    let set = crate::sync::SyncSet::new(state.synchronous.clone(), state.synchronous_quorum);
    let sync_on = state.policy.synchronous_mode.is_on();
    // An answer counts when it reports this database (another's WAL says
    // nothing about this one's commits).
    let ours = |id: &NodeId| match live.get(id) {
        Some(Some(st)) => st.system_identifier == state.system_identifier,
        _ => false,
    };
    let quorum_short = if sync_on { crate::sync::eligible(&set, &|id| ours(&id)).err() } else { None };
    let lsn_first = sync_on && (set.quorum as usize) < set.members.len();
    let mut out: Vec<(Verdict, (u8, u64, u32))> = Vec::new();
    for id in state.members.keys().copied() {
        let no = |why: String, lsn| (Verdict { node: id, eligible: false, why, lsn }, (0, 0, 0));
        let Some(db) = state.db_members.get(&id) else {
            let why = match live.get(&id) {
                Some(Some(_)) => "has not registered its database yet",
                _ => "manages no database",
            };
            out.push(no(why.into(), None));
            continue;
        };
        let Some(answer) = live.get(&id) else {
            out.push(no("did not answer".into(), None));
            continue;
        };
        let Some(status) = answer else {
            out.push(no("could not observe its database".into(), None));
            continue;
        };
        let lsn = status.lsn;
        // Running candidates rank above stopped ones, then by LSN, then
        // priority.
        let key = (1u8, lsn.unwrap_or(Lsn(0)).0, db.priority);
        let verdict = if db.nofailover {
            no("tagged nofailover".into(), lsn)
        } else if state.policy.synchronous_mode.is_on() && !state.synchronous.contains(&id) && Some(id) != previous {
            no("not a synchronous standby (synchronous mode)".into(), lsn)
        } else if let Some(why) = quorum_short.as_ref().filter(|_| Some(id) != previous) {
            no(why.clone(), lsn)
        } else if !status.has_data {
            no("has no data directory".into(), lsn)
        } else if status.rewind_unfinished {
            // It would release the lease at once (simulator seed 44468:
            // granted to it a thousand times while it was the most
            // advanced member).
            no("a failed rewind left its data directory part-way: it needs a base backup".into(), lsn)
        } else if status.system_identifier != state.system_identifier {
            no(format!("holds another database (system identifier {:?})", status.system_identifier), lsn)
        } else {
            // A stopped member reports its last checkpoint, a lower bound of
            // its WAL: it is not held to the lag limit, but any running
            // candidate is preferred to it. Without this, a cluster whose
            // every database stopped (a full restart) could never recover.
            match (state.primary_position, status.timeline, lsn) {
                (Some(p), Some(t), _) if t < p.timeline => {
                    no(format!("on timeline {t}, behind the primary's timeline {}", p.timeline), lsn)
                }
                (Some(p), _, Some(l))
                    if status.running && l.bytes_until(p.lsn) > state.policy.maximum_lag_on_failover_bytes =>
                {
                    no(
                        format!(
                            "lags {} bytes behind the primary's last reported {} (limit {})",
                            l.bytes_until(p.lsn),
                            p.lsn,
                            state.policy.maximum_lag_on_failover_bytes
                        ),
                        lsn,
                    )
                }
                (_, _, None) => no("reports no WAL position".into(), lsn),
                (_, _, Some(l)) if status.running => {
                    (Verdict { node: id, eligible: true, why: format!("received up to {l}"), lsn }, key)
                }
                (_, _, Some(l)) => (
                    Verdict { node: id, eligible: true, why: format!("stopped, last checkpoint {l}"), lsn },
                    (u8::from(lsn_first), l.0, db.priority),
                ),
            }
        };
        out.push(verdict);
    }
    // Quorum: the most advanced member of the set that answered holds
    // every commit; if it cannot be promoted, no other member of the set
    // may be (it could lack a commit only that one holds).
    if lsn_first {
        let answered_best = set.members.iter().filter(|id| ours(id)).filter_map(|id| live.get(id)?.as_ref()?.lsn).max();
        let eligible_best =
            out.iter().filter(|(v, _)| v.eligible && set.members.contains(&v.node)).filter_map(|(v, _)| v.lsn).max();
        if let Some(best) = answered_best.filter(|b| eligible_best < Some(*b)) {
            for (v, _) in out.iter_mut().filter(|(v, _)| v.eligible && Some(v.node) != previous) {
                v.eligible = false;
                v.why = format!(
                    "a synchronous standby that received up to {best}, more than any candidate, answered but cannot be promoted"
                );
            }
        }
    }
    // Eligible first; among them the best key (LSN, then priority) first;
    // ties keep id order (the sort is stable).
    out.sort_by(|(a, ka), (b, kb)| b.eligible.cmp(&a.eligible).then(kb.cmp(ka)));
    out.into_iter().map(|(v, _)| v).collect()
}
