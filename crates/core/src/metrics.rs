//! What `/metrics` reports (the Prometheus text format), and the primary
//! changes it counts from the replicated history. The agent gathers the
//! facts at the scrape; this module only renders them.

use crate::health::{Check, LocalFacts, LocalRole, check};
use crate::ids::{Epoch, NodeId};
use crate::state::{HistoryEntry, HistoryEvent};
/// Primary changes counted from the replicated history: a grant to another
/// member after the previous epoch lapsed or was released is a failover; a
/// grant that takes the lease straight from its holder is a switchover. A
/// grant to the member that held the previous epoch changes no primary (a
/// holder that missed its renewals on a loaded host and got the lease back)
/// and counts as neither. Fed the history again and again, it counts each
/// entry once (by log index).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub failovers: u64,
    pub switchovers: u64,
    seen_index: Option<u64>,
    /// The epoch whose lease ended without a successor yet.
    ended: Option<Epoch>,
    /// The holder of the newest grant seen.
    holder: Option<NodeId>,
}

impl Transitions {
    pub fn update<'a>(&mut self, history: impl IntoIterator<Item = &'a HistoryEntry>) {
        let mut newest = self.seen_index;
        for entry in history {
            if self.seen_index.is_some_and(|seen| entry.log_index <= seen) {
                continue;
            }
            newest = newest.max(Some(entry.log_index));
            match &entry.event {
                HistoryEvent::Lapsed { epoch, .. } | HistoryEvent::Released { epoch, .. } => self.ended = Some(*epoch),
                HistoryEvent::Granted { epoch, holder, .. } => {
                    let ended = self.ended.take();
                    let same_holder = self.holder.replace(*holder) == Some(*holder);
                    match ended {
                        _ if same_holder => {}
                        Some(_) => self.failovers += 1,
                        // The first grant of a cluster changes no primary.
                        None if epoch.0 > 1 => self.switchovers += 1,
                        None => {}
                    }
                }
                HistoryEvent::Node { .. }
                | HistoryEvent::Initialized { .. }
                | HistoryEvent::MembersChanged { .. }
                | HistoryEvent::Bootstrapped { .. }
                | HistoryEvent::DatabaseSet { .. }
                | HistoryEvent::Operation { .. }
                | HistoryEvent::Audit { .. }
                | HistoryEvent::LossAcknowledged { .. }
                | HistoryEvent::FeatureLevelRaised { .. } => {}
            }
        }
        self.seen_index = newest;
    }
}

/// What `/metrics` reports, gathered by the agent at the scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsFacts {
    pub cluster: String,
    pub node: String,
    pub local: LocalFacts,
    /// The highest epoch granted in the replicated state.
    pub epoch: u64,
    pub raft_term: u64,
    /// The Raft leader's id (not the primary); `None` when unknown.
    pub raft_leader: Option<u64>,
    pub raft_is_leader: bool,
    pub raft_commit_index: Option<u64>,
    pub raft_applied_index: Option<u64>,
    pub paused: bool,
    pub transitions: Transitions,
    /// The agent's last database decision: action and reason.
    pub last_decision: Option<(String, String)>,
    /// How many times this agent fenced its database after someone other
    /// than haraft promoted it.
    pub outside_promotions: u64,
    /// Bytes of WAL this agent's rewinds and rebuilds discarded.
    pub discarded_wal_bytes: u64,
    /// Database actions carried out: (kind, outcome `ok`/`failed`, count).
    pub actions: Vec<(String, String, u64)>,
    /// The agent loop's duration histogram: cumulative counts per upper
    /// bound in seconds (the last bound is +Inf), the sum and the count.
    pub loop_buckets: Vec<(f64, u64)>,
    pub loop_sum_seconds: f64,
    pub loop_count: u64,
}

/// The upper bounds (seconds) of the agent loop duration histogram.
pub const LOOP_BUCKETS_SECONDS: [f64; 8] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// Renders the Prometheus text exposition format (version 0.0.4).
pub fn metrics_text(m: &MetricsFacts) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let one = |v: f64| vec![(String::new(), number(v))];
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let role = m.local.role();
    family(
        "haraft_info",
        "gauge",
        "This agent's cluster and member name.",
        &[(labels(&[("cluster", &m.cluster), ("node", &m.node)]), "1".into())],
    );
    let roles = [
        (LocalRole::Primary, "primary"),
        (LocalRole::Replica, "replica"),
        (LocalRole::Stopped, "stopped"),
        (LocalRole::Unknown, "unknown"),
        (LocalRole::None, "none"),
    ];
    let role_samples: Vec<_> =
        roles.iter().map(|(r, name)| (labels(&[("role", name)]), number(flag(*r == role)))).collect();
    family("haraft_role", "gauge", "The local PostgreSQL's role (1 for the current one).", &role_samples);
    family(
        "haraft_primary",
        "gauge",
        "1 when /primary answers 200: a valid lease here and a running primary.",
        &one(flag(check(Check::Primary, &m.local).ok)),
    );
    family("haraft_epoch", "gauge", "The highest epoch (fencing token) granted in the cluster.", &one(m.epoch as f64));
    family(
        "haraft_lease_remaining_seconds",
        "gauge",
        "How long this member's own lease stays valid by its own clock; 0 when it holds none.",
        &one(m.local.lease_valid_for_ms.unwrap_or(0) as f64 / 1000.0),
    );
    family("haraft_raft_term", "gauge", "The current Raft term.", &one(m.raft_term as f64));
    family(
        "haraft_raft_leader_id",
        "gauge",
        "The Raft leader's member id (not the primary); 0 when none is known.",
        &one(m.raft_leader.unwrap_or(0) as f64),
    );
    family("haraft_raft_is_leader", "gauge", "1 when this member is the Raft leader.", &one(flag(m.raft_is_leader)));
    let optional = |v: Option<u64>| v.map(|v| vec![(String::new(), number(v as f64))]).unwrap_or_default();
    family(
        "haraft_raft_commit_index",
        "gauge",
        "The highest Raft log index known committed.",
        &optional(m.raft_commit_index),
    );
    family(
        "haraft_raft_applied_index",
        "gauge",
        "The highest Raft log index applied here.",
        &optional(m.raft_applied_index),
    );
    family("haraft_paused", "gauge", "1 in maintenance mode (no automatic failover).", &one(flag(m.paused)));
    let db = m.local.db.as_ref();
    family(
        "haraft_postgres_running",
        "gauge",
        "1 when the local PostgreSQL was last seen running.",
        &optional(m.local.manages_db.then(|| u64::from(db.is_some_and(|d| d.running)))),
    );
    family(
        "haraft_postgres_timeline",
        "gauge",
        "The local PostgreSQL's timeline.",
        &optional(db.and_then(|d| d.timeline).map(|t| u64::from(t.0))),
    );
    family(
        "haraft_postgres_lsn_bytes",
        "gauge",
        "WAL position as a byte count: written (primary) or received (replica).",
        &optional(db.and_then(|d| d.lsn).map(|l| l.0)),
    );
    family(
        "haraft_replication_lag_bytes",
        "gauge",
        "Bytes this replica is behind the primary's last reported position.",
        &optional(m.local.lag_bytes()),
    );
    family(
        "haraft_failovers_total",
        "counter",
        "Primary changes after a lease lapsed or was released (from the history this agent has seen).",
        &one(m.transitions.failovers as f64),
    );
    family(
        "haraft_switchovers_total",
        "counter",
        "Primary changes by a planned switchover (from the history this agent has seen).",
        &one(m.transitions.switchovers as f64),
    );
    family(
        "haraft_outside_promotions_fenced_total",
        "counter",
        "Times this agent stopped its database after someone other than haraft promoted it.",
        &one(m.outside_promotions as f64),
    );
    family(
        "haraft_discarded_wal_bytes_total",
        "counter",
        "Bytes of WAL this agent's rewinds and rebuilds discarded (writes acknowledged there are lost; see haraftctl history).",
        &one(m.discarded_wal_bytes as f64),
    );
    let actions: Vec<_> = m
        .actions
        .iter()
        .map(|(action, outcome, n)| (labels(&[("action", action), ("outcome", outcome)]), n.to_string()))
        .collect();
    family(
        "haraft_database_actions_total",
        "counter",
        "Database actions this agent carried out, by kind and outcome (a repeating failure backs off: see the status).",
        &actions,
    );
    let decision: Vec<_> = m
        .last_decision
        .iter()
        .map(|(action, reason)| (labels(&[("action", action), ("reason", reason)]), "1".to_string()))
        .collect();
    family("haraft_last_decision_info", "gauge", "The agent's last database decision and its reason.", &decision);
    let mut loop_samples: Vec<(String, String)> = m
        .loop_buckets
        .iter()
        .map(|(le, count)| {
            let le = if le.is_infinite() { "+Inf".to_string() } else { number(*le) };
            (labels(&[("le", &le)]), count.to_string())
        })
        .collect();
    // A histogram's samples carry suffixed names; written by hand here.
    out.push_str("# HELP haraft_loop_duration_seconds How long one pass of the agent's loop took.\n");
    out.push_str("# TYPE haraft_loop_duration_seconds histogram\n");
    for (labels, count) in loop_samples.drain(..) {
        out.push_str(&format!("haraft_loop_duration_seconds_bucket{labels} {count}\n"));
    }
    out.push_str(&format!("haraft_loop_duration_seconds_sum {}\n", number(m.loop_sum_seconds)));
    out.push_str(&format!("haraft_loop_duration_seconds_count {}\n", m.loop_count));
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// `{a="x",b="y"}` with Prometheus escaping (backslash, quote, newline).
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbRole;
    use crate::health::tests::{db, facts};
    use crate::ids::RenewalSeq;

    fn entry(log_index: u64, event: HistoryEvent) -> HistoryEntry {
        HistoryEntry { log_index, at_unix_ms: 0, event }
    }

    /// Epoch `e` granted to node `e` (each grant moves the primary).
    fn granted(e: u64) -> HistoryEvent {
        granted_to(e, e)
    }

    fn granted_to(holder: u64, epoch: u64) -> HistoryEvent {
        HistoryEvent::Granted { holder: NodeId(holder), epoch: Epoch(epoch), verdicts: vec![], after: None }
    }

    #[test]
    fn transitions_count_each_grant_once_by_its_cause() {
        let lapsed = |e| HistoryEvent::Lapsed {
            holder: NodeId(1),
            epoch: Epoch(e),
            renewals: RenewalSeq(4),
            last_position: None,
        };
        let released = |e| HistoryEvent::Released { holder: NodeId(1), epoch: Epoch(e), why: "down".into() };
        let mut history = vec![entry(1, HistoryEvent::Initialized { cluster: "c".into() }), entry(5, granted(1))];
        let mut t = Transitions::default();
        t.update(&history);
        assert_eq!((t.failovers, t.switchovers), (0, 0), "the first grant is no change");
        history.extend([entry(9, lapsed(1)), entry(11, granted(2)), entry(20, granted(3))]);
        t.update(&history);
        t.update(&history);
        assert_eq!((t.failovers, t.switchovers), (1, 1));
        // The history is a window: older entries fall out; counts stay.
        history.drain(..3);
        history.extend([entry(30, released(3)), entry(31, granted(4))]);
        t.update(&history);
        assert_eq!((t.failovers, t.switchovers), (2, 1));
        // The lease lapses and comes back to its holder: no primary change.
        history.extend([entry(40, lapsed(5)), entry(41, granted_to(4, 5))]);
        t.update(&history);
        assert_eq!((t.failovers, t.switchovers), (2, 1), "a re-grant to the holder is no failover");
        history.extend([entry(50, granted_to(4, 6))]);
        t.update(&history);
        assert_eq!((t.failovers, t.switchovers), (2, 1), "nor a switchover");
    }
    #[test]
    fn metrics_render_every_family_with_escaped_labels() {
        let mut t = Transitions::default();
        t.update(&[entry(1, granted(1)), entry(2, granted(2))]);
        let m = MetricsFacts {
            cluster: "c\"1".into(),
            node: "node1".into(),
            local: facts(Some(1500), Some(db(true, Some(DbRole::Primary), 1000))),
            epoch: 3,
            raft_term: 7,
            raft_leader: Some(2),
            raft_is_leader: false,
            raft_commit_index: Some(42),
            raft_applied_index: Some(41),
            paused: false,
            transitions: t,
            last_decision: Some(("idle".into(), "primary with a valid lease".into())),
            outside_promotions: 2,
            discarded_wal_bytes: 4096,
            actions: vec![("rebuild".into(), "failed".into(), 3)],
            loop_buckets: vec![(0.001, 3), (f64::INFINITY, 4)],
            loop_sum_seconds: 0.25,
            loop_count: 4,
        };
        let text = metrics_text(&m);
        for line in [
            "haraft_info{cluster=\"c\\\"1\",node=\"node1\"} 1",
            "haraft_role{role=\"primary\"} 1",
            "haraft_role{role=\"replica\"} 0",
            "haraft_primary 1",
            "haraft_epoch 3",
            "haraft_lease_remaining_seconds 1.5",
            "haraft_raft_leader_id 2",
            "haraft_raft_commit_index 42",
            "haraft_postgres_timeline 2",
            "haraft_postgres_lsn_bytes 1000",
            "haraft_switchovers_total 1",
            "haraft_failovers_total 0",
            "haraft_outside_promotions_fenced_total 2",
            "haraft_discarded_wal_bytes_total 4096",
            "haraft_database_actions_total{action=\"rebuild\",outcome=\"failed\"} 3",
            "haraft_last_decision_info{action=\"idle\",reason=\"primary with a valid lease\"} 1",
            "haraft_loop_duration_seconds_bucket{le=\"0.001\"} 3",
            "haraft_loop_duration_seconds_bucket{le=\"+Inf\"} 4",
            "haraft_loop_duration_seconds_sum 0.25",
            "haraft_loop_duration_seconds_count 4",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // A primary has no lag sample at all (absent, not 0).
        assert!(!text.contains("\nharaft_replication_lag_bytes "), "{text}");
    }
}
