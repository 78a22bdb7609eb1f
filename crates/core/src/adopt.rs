//! The first grant of a cluster: which member's database becomes the
//! cluster's when none is recorded yet. An empty cluster bootstraps a new
//! database on the lowest id; a cluster that already runs (hand-built,
//! moved from Patroni or repmgr) is adopted as it runs: its running
//! primary gets the first lease and keeps running, its standbys keep
//! streaming.
//!
//! The rule never guesses between two primaries: two members that run
//! as primaries (or, with none running, two that hold a primary's data
//! directory) get no grant at all, and every member's verdict says why.
//! The seed's dual primary must be resolved by an operator who knows
//! which writes matter, not by haraft.

use crate::db::{DbRole, DbStatus, Live};
use crate::ids::{NodeId, TimelineId};
use crate::state::{ClusterState, Verdict};

/// What a member's answer says about its database before bootstrap.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    RunningPrimary,
    StoppedPrimary,
    Standby,
    Empty,
}

fn found(db: &DbStatus) -> Found {
    match (db.has_data, db.running, db.role) {
        (false, _, _) => Found::Empty,
        (true, true, Some(DbRole::Primary)) => Found::RunningPrimary,
        (true, false, Some(DbRole::Primary)) => Found::StoppedPrimary,
        _ => Found::Standby,
    }
}

fn timeline(db: &DbStatus) -> u32 {
    db.timeline.unwrap_or(TimelineId(0)).0
}

/// Verdicts for the first grant: the chosen member first and eligible,
/// every other member ineligible with what it will do or why nobody is
/// chosen. Members that did not answer, or have not registered, are
/// never chosen (the planner waits for all of them: a member that did
/// not answer may be running a primary).
pub fn bootstrap_verdicts(state: &ClusterState, live: &Live) -> Vec<Verdict> {
    let name = |id: NodeId| state.member_name(id).unwrap_or("?").to_string();
    let names = |ids: &[NodeId]| ids.iter().map(|&id| name(id)).collect::<Vec<_>>().join(", ");
    // Members with an observation of a registered database.
    let mut seen: Vec<(NodeId, &DbStatus)> = Vec::new();
    let mut out: Vec<Verdict> = Vec::new();
    for id in state.members.keys().copied() {
        let no = |why: &str, db: Option<&DbStatus>| Verdict {
            node: id,
            eligible: false,
            why: why.to_string(),
            lsn: db.and_then(|d| d.lsn),
        };
        match (state.db_members.get(&id), live.get(&id)) {
            (None, Some(Some(_))) => out.push(no("has not registered its database yet", None)),
            (None, _) => out.push(no("manages no database", None)),
            (Some(_), None) => out.push(no("did not answer", None)),
            (Some(_), Some(None)) => out.push(no("could not observe its database", None)),
            (Some(_), Some(Some(db))) => seen.push((id, db)),
        }
    }
    let nofailover = |id: NodeId| state.db_members.get(&id).is_some_and(|d| d.nofailover);
    let of = |kind: Found| seen.iter().filter(|(_, db)| found(db) == kind).map(|(id, _)| *id).collect::<Vec<_>>();
    let (running, stopped) = (of(Found::RunningPrimary), of(Found::StoppedPrimary));
    let db_of = |id: NodeId| seen.iter().find(|(i, _)| *i == id).map(|(_, db)| *db);

    // Refusals: every seen member gets the same explanation.
    let refuse = |out: &mut Vec<Verdict>, own: &dyn Fn(NodeId, &DbStatus) -> Option<String>, rest: String| {
        for &(id, db) in &seen {
            let why = own(id, db).unwrap_or_else(|| rest.clone());
            out.push(Verdict { node: id, eligible: false, why, lsn: db.lsn });
        }
    };
    let chosen = match running.as_slice() {
        [] => None,
        [p] => Some(*p),
        many => {
            let own = |id: NodeId, db: &DbStatus| {
                (found(db) == Found::RunningPrimary).then(|| {
                    let others: Vec<NodeId> = many.iter().copied().filter(|&o| o != id).collect();
                    format!(
                        "runs as a primary (timeline {}), as does {}: haraft adopts none of them; stop every \
                         one that must not be primary (their writes may differ), and haraft adopts the one left",
                        timeline(db),
                        names(&others)
                    )
                })
            };
            refuse(&mut out, &own, format!("not chosen: {} all run as primaries", names(many)));
            return sorted(out);
        }
    };
    if let Some(p) = chosen {
        let pdb = db_of(p).expect("a running primary was seen");
        if nofailover(p) {
            let own = |id: NodeId, _: &DbStatus| {
                (id == p).then(|| {
                    "runs as a primary but is tagged nofailover: remove the tag to adopt it, or stop it".into()
                })
            };
            refuse(&mut out, &own, format!("not chosen: {} runs as a primary", name(p)));
            return sorted(out);
        }
        let ahead: Vec<NodeId> = seen
            .iter()
            .filter(|(id, db)| *id != p && db.has_data && timeline(db) > timeline(pdb))
            .map(|(id, _)| *id)
            .collect();
        if !ahead.is_empty() {
            let own = |id: NodeId, _: &DbStatus| {
                (id == p).then(|| {
                    format!(
                        "runs as a primary on timeline {}, but {} holds a later timeline: haraft adopts neither; \
                         stop the one whose history must not survive",
                        timeline(pdb),
                        names(&ahead)
                    )
                })
            };
            refuse(&mut out, &own, format!("not chosen: {} runs as a primary behind a later timeline", name(p)));
            return sorted(out);
        }
        for &(id, db) in &seen {
            let why = if id == p {
                format!("runs as a primary on timeline {}: adopted as it runs (chosen)", timeline(db))
            } else if !db.has_data {
                format!("has no data: copies {}'s once adopted", name(p))
            } else if db.system_identifier != pdb.system_identifier {
                format!(
                    "holds another database (system identifier {:?}): refused once {} is adopted",
                    db.system_identifier,
                    name(p)
                )
            } else {
                format!("follows {}, the running primary", name(p))
            };
            out.push(Verdict { node: id, eligible: id == p, why, lsn: db.lsn });
        }
        return sorted(out);
    }
    if stopped.len() > 1 {
        let own = |id: NodeId, db: &DbStatus| {
            (found(db) == Found::StoppedPrimary).then(|| {
                let others: Vec<NodeId> = stopped.iter().copied().filter(|&o| o != id).collect();
                format!(
                    "holds a stopped primary's data directory (timeline {}), as does {}: haraft chooses none; \
                     start the right one, or make the others standbys",
                    timeline(db),
                    names(&others)
                )
            })
        };
        refuse(&mut out, &own, format!("not chosen: {} hold primaries' data directories", names(&stopped)));
        return sorted(out);
    }
    // Nothing runs as a primary: the most advanced data (a primary's
    // directory first, then the latest timeline, then the highest
    // position), else a new database on the lowest id.
    let rank = |db: &DbStatus| (db.has_data, found(db) == Found::StoppedPrimary, timeline(db), db.lsn.map(|l| l.0));
    let best =
        seen.iter().filter(|(id, _)| !nofailover(*id)).fold(
            None::<(NodeId, &DbStatus)>,
            |best, &(id, db)| match best {
                Some((_, b)) if rank(b) >= rank(db) => best,
                _ => Some((id, db)),
            },
        );
    for &(id, db) in &seen {
        let eligible = best.is_some_and(|(b, _)| b == id);
        let why = match (eligible, db.has_data) {
            (_, _) if nofailover(id) => "tagged nofailover".to_string(),
            (true, true) => "has data to bootstrap from (chosen)".to_string(),
            (true, false) => "can bootstrap a new database (chosen)".to_string(),
            (false, _) => format!("not chosen: {} goes first", name(best.map_or(id, |(b, _)| b))),
        };
        out.push(Verdict { node: id, eligible, why, lsn: db.lsn });
    }
    sorted(out)
}

/// The chosen member first, then member order.
fn sorted(mut out: Vec<Verdict>) -> Vec<Verdict> {
    out.sort_by(|a, b| b.eligible.cmp(&a.eligible).then(a.node.cmp(&b.node)));
    out
}
