//! The history document: what `haraftctl history --json` prints, built
//! from the replicated history in words an operator reads at 3 a.m. Its
//! fields are a stable contract, as the status document's are.

use crate::ids::NodeId;
use crate::state::{ClusterState, DataOrigin};
use serde::{Deserialize, Serialize};

pub(crate) fn name_of(state: &ClusterState, id: NodeId) -> String {
    state.member_name(id).map_or_else(|| format!("node-id-{id}"), str::to_string)
}

/// One history entry as `haraftctl history --json` prints it. Fields are
/// only ever added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub log_index: u64,
    /// Wall-clock milliseconds since the Unix epoch when it was proposed;
    /// null when not recorded.
    pub at_unix_ms: Option<u64>,
    /// initialized, members-changed, granted, lapsed, released,
    /// bootstrapped, rewound, rebuilt, promoted-outside-haraft,
    /// operation-requested, operation-step, operation-done (and the other
    /// outcomes), request-refused, request-done.
    pub event: String,
    /// The member it concerns.
    pub node: Option<String>,
    pub epoch: Option<u64>,
    pub timeline: Option<u32>,
    pub lsn: Option<String>,
    /// The same in words.
    pub detail: String,
    /// For a grant: every member's eligibility and why.
    pub verdicts: Vec<VerdictView>,
    /// The operator operation this entry belongs to.
    #[serde(default)]
    pub operation: Option<u64>,
    /// Who asked, for an operation-requested or request entry.
    #[serde(default)]
    pub by: Option<String>,
    /// What came of a request that did not become an operation.
    #[serde(default)]
    pub result: Option<String>,
    /// For a rewind: where the WAL it discarded ends (`lsn` is where it
    /// begins) and how many bytes that is.
    #[serde(default)]
    pub discarded_to: Option<String>,
    #[serde(default)]
    pub discarded_bytes: Option<u64>,
    /// For a rewind: transactions that had committed in the discarded WAL.
    #[serde(default)]
    pub discarded_commits: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictView {
    pub node: String,
    pub eligible: bool,
    pub why: String,
    pub lsn: Option<String>,
}

/// A rewind's history item: where it diverged and what it discarded.
/// A rewind's entry, or a rebuild's that discarded WAL (`how`: "rebuilt
/// from node2 by base backup (...)").
fn discard_item(item: &mut HistoryItem, node: &str, d: &crate::loss::Discard, how: Option<String>) {
    item.event = if how.is_some() { "rebuilt" } else { "rewound" }.into();
    item.node = Some(node.to_string());
    item.timeline = d.timeline.map(|t| t.0);
    item.lsn = d.diverged_at.map(|l| l.to_string());
    if d.discarded_bytes().is_some_and(|b| b > 0) {
        item.discarded_to = d.discarded_to.map(|l| l.to_string());
        item.discarded_bytes = d.discarded_bytes();
    }
    item.discarded_commits = d.commits;
    let how = how.unwrap_or_else(|| "rewound".into());
    item.detail = format!("{node} {how}: {}", d.words());
}

pub fn history_view(state: &ClusterState) -> Vec<HistoryItem> {
    use crate::state::{HistoryEvent, NodeEvent};
    state
        .history
        .iter()
        .map(|h| {
            let mut item = HistoryItem {
                log_index: h.log_index,
                at_unix_ms: (h.at_unix_ms > 0).then_some(h.at_unix_ms),
                event: String::new(),
                node: None,
                epoch: None,
                timeline: None,
                lsn: None,
                detail: String::new(),
                verdicts: Vec::new(),
                operation: None,
                by: None,
                result: None,
                discarded_to: None,
                discarded_bytes: None,
                discarded_commits: None,
            };
            match &h.event {
                HistoryEvent::Initialized { cluster } => {
                    item.event = "initialized".into();
                    item.detail = format!("cluster {cluster} initialized");
                }
                HistoryEvent::MembersChanged { members } => {
                    item.event = "members-changed".into();
                    let names: Vec<String> = members.iter().map(|id| name_of(state, *id)).collect();
                    item.detail = format!("members: {}", names.join(", "));
                }
                HistoryEvent::Granted { holder, epoch, verdicts, after } => {
                    item.event = "granted".into();
                    item.node = Some(name_of(state, *holder));
                    item.epoch = Some(epoch.0);
                    item.timeline = after.map(|p| p.timeline.0);
                    item.lsn = after.map(|p| p.lsn.to_string());
                    item.detail = match after {
                        Some(p) => format!(
                            "{} became primary at epoch {epoch}; the previous primary last reported {} on timeline {}",
                            name_of(state, *holder),
                            p.lsn,
                            p.timeline
                        ),
                        None => format!("{} became primary at epoch {epoch}", name_of(state, *holder)),
                    };
                    item.verdicts = verdicts
                        .iter()
                        .map(|v| VerdictView {
                            node: name_of(state, v.node),
                            eligible: v.eligible,
                            why: v.why.clone(),
                            lsn: v.lsn.map(|l| l.to_string()),
                        })
                        .collect();
                }
                HistoryEvent::Lapsed { holder, epoch, renewals, last_position } => {
                    item.event = "lapsed".into();
                    item.node = Some(name_of(state, *holder));
                    item.epoch = Some(epoch.0);
                    item.timeline = last_position.map(|p| p.timeline.0);
                    item.lsn = last_position.map(|p| p.lsn.to_string());
                    item.detail = format!(
                        "the lease of {} at epoch {epoch} lapsed after {renewals} renewals",
                        name_of(state, *holder)
                    );
                }
                HistoryEvent::Released { holder, epoch, why } => {
                    item.event = "released".into();
                    item.node = Some(name_of(state, *holder));
                    item.epoch = Some(epoch.0);
                    item.detail = format!("{} released the lease of epoch {epoch}: {why}", name_of(state, *holder));
                }
                HistoryEvent::Bootstrapped { holder, epoch, system_identifier } => {
                    item.event = "bootstrapped".into();
                    item.node = Some(name_of(state, *holder));
                    item.epoch = Some(epoch.0);
                    item.detail = format!("database created, system identifier {system_identifier}");
                }
                HistoryEvent::DatabaseSet { holder, epoch, system_identifier, origin } => {
                    item.event = "bootstrapped".into();
                    let name = name_of(state, *holder);
                    item.node = Some(name.clone());
                    item.epoch = Some(epoch.0);
                    item.detail = match origin {
                        DataOrigin::Created => {
                            format!("{name} created the database, system identifier {system_identifier}")
                        }
                        DataOrigin::ExistingData => format!(
                            "{name}'s existing data directory became the cluster's database, system identifier {system_identifier}"
                        ),
                        DataOrigin::RunningPrimary => format!(
                            "{name}'s running primary was adopted as it ran (not restarted), system identifier {system_identifier}"
                        ),
                    };
                }
                HistoryEvent::Node { node, event: NodeEvent::Rewound { diverged_at, timeline, discarded_to } } => {
                    let d = crate::loss::Discard::before_account(*diverged_at, *timeline, *discarded_to);
                    discard_item(&mut item, &name_of(state, *node), &d, None);
                }
                HistoryEvent::Node { node, event: NodeEvent::RewoundAccounted { discard } } => {
                    discard_item(&mut item, &name_of(state, *node), discard, None);
                }
                HistoryEvent::Node { node, event: NodeEvent::RebuiltAccounted { from, discard } } => {
                    let how = format!("rebuilt from {} by base backup (the old data directory is kept aside)", name_of(state, *from));
                    discard_item(&mut item, &name_of(state, *node), discard, Some(how));
                }
                HistoryEvent::FeatureLevelRaised { from, to } => {
                    item.event = "feature-level-raised".into();
                    item.detail = format!(
                        "every member runs a build that reads feature level {to}: raised from {from} (a host rolled back to an older build can no longer read the cluster's records)"
                    );
                }
                HistoryEvent::LossAcknowledged { by } => {
                    item.event = "loss-acknowledged".into();
                    item.by = Some(by.clone());
                    item.detail = format!("{by} acknowledged the discarded writes recorded before this entry");
                }
                HistoryEvent::Operation { id, event } => {
                    item.operation = Some(*id);
                    match event {
                        crate::state::OpEvent::Requested { what, by } => {
                            item.event = "operation-requested".into();
                            item.by = Some(by.clone());
                            item.detail = format!("operation {id}: {what} (asked by {by})");
                        }
                        crate::state::OpEvent::Step { what } => {
                            item.event = "operation-step".into();
                            item.detail = format!("operation {id}: {what}");
                        }
                        crate::state::OpEvent::Ended { outcome } => {
                            item.event = outcome.event_name().into();
                            item.detail = format!("operation {id}: {outcome}");
                        }
                    }
                }
                HistoryEvent::Audit { node, what, by, refused, result, times } => {
                    item.event = if *refused { "request-refused" } else { "request-done" }.into();
                    item.node = Some(name_of(state, *node));
                    item.by = Some(by.clone());
                    item.result = Some(result.clone());
                    let repeated = if *times > 1 { format!(" ({times} times in a row)") } else { String::new() };
                    item.detail = format!("{by} asked {}: {what}; {result}{repeated}", name_of(state, *node));
                }
                HistoryEvent::Node { node, event: NodeEvent::PromotedOutside { timeline, lsn } } => {
                    item.event = "promoted-outside-haraft".into();
                    item.node = Some(name_of(state, *node));
                    item.timeline = timeline.map(|t| t.0);
                    item.lsn = lsn.map(|l| l.to_string());
                    let at = match (timeline, lsn) {
                        (Some(t), Some(l)) => format!(" (timeline {}, at {l})", t.0),
                        _ => String::new(),
                    };
                    item.detail = format!(
                        "{} was promoted outside haraft{at}: fenced; what it wrote is discarded when it rejoins (its rewind names the range)",
                        name_of(state, *node)
                    );
                }
                HistoryEvent::Node { node, event: NodeEvent::Copied { from } } => {
                    item.event = "rebuilt".into();
                    item.node = Some(name_of(state, *node));
                    item.detail =
                        format!("{} copied from {} by base backup", name_of(state, *node), name_of(state, *from));
                }
                HistoryEvent::Node { node, event: NodeEvent::Rebuilt { from } } => {
                    item.event = "rebuilt".into();
                    item.node = Some(name_of(state, *node));
                    item.detail = format!(
                        "{} rebuilt from {} by base backup (a previous data directory is kept aside)",
                        name_of(state, *node),
                        name_of(state, *from)
                    );
                }
            }
            item
        })
        .collect()
}
