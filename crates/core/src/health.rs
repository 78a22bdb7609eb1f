//! What a member answers to health checks (HAProxy, Kubernetes probes,
//! Prometheus), decided from its own facts at the moment of the request.
//!
//! The one rule that matters: `/primary` says 200 only on the member whose
//! own lease deadline (on its own clock, read at the request) is still
//! ahead and whose PostgreSQL it last saw as a running primary. A copy of
//! the replicated state never makes a member primary here: a member cut off
//! from the Raft group still holds a state that names it, and its lease ends
//! on time all the same.

use crate::db::{DbRole, DbStatus};
use crate::ids::{Epoch, Lsn, NodeId};
use crate::state::{ClusterState, HistoryEntry, HistoryEvent};
use serde::{Deserialize, Serialize};

/// The health checks, by what they ask. Each endpoint of the REST API maps
/// to one; the names and meanings follow Patroni's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// `/primary`, `/read-write`: the writable primary, lease valid here.
    Primary,
    /// `/replica`: a running standby streaming from the primary, within
    /// `max_lag_bytes` when given.
    Replica { max_lag_bytes: Option<u64> },
    /// `/read-only`: the primary or a running standby.
    ReadOnly { max_lag_bytes: Option<u64> },
    /// `/leader`: holds a valid lease, whatever its PostgreSQL is doing.
    Leader,
    /// `/health`: PostgreSQL is running.
    Health,
    /// `/liveness`: the agent's loop ran within a lease ttl.
    Liveness,
    /// `/readiness`: the primary, or a streaming standby within the lag.
    Readiness { max_lag_bytes: Option<u64> },
}

/// What the member knows about itself when it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFacts {
    /// Its own lease's remaining validity by its own clock, read at the
    /// request; `None` when it holds no valid lease.
    pub lease_valid_for_ms: Option<u64>,
    pub lease_epoch: Option<Epoch>,
    /// Its latest observation of its PostgreSQL; `None` before the first
    /// one and for a lease-only member.
    pub db: Option<DbStatus>,
    pub manages_db: bool,
    /// The primary's position as of its last renewal (replicated state),
    /// to measure a standby's lag.
    pub primary_lsn: Option<Lsn>,
    /// Whether the standby streams from the primary the state names.
    pub streaming_from_primary: bool,
    /// Time since the agent's loop last ran; `None` if it never ran.
    pub loop_age_ms: Option<u64>,
    pub ttl_ms: u64,
}

/// A check's answer: the HTTP status and why, for the body and for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub why: String,
}

impl Answer {
    fn yes(why: impl Into<String>) -> Answer {
        Answer { ok: true, why: why.into() }
    }

    fn no(why: impl Into<String>) -> Answer {
        Answer { ok: false, why: why.into() }
    }

    pub fn http_status(&self) -> u16 {
        if self.ok { 200 } else { 503 }
    }
}

/// The member's database role as health checks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalRole {
    Primary,
    Replica,
    Stopped,
    /// Not observed yet.
    Unknown,
    /// A lease-only member.
    None,
}

impl LocalFacts {
    pub fn role(&self) -> LocalRole {
        if !self.manages_db {
            return LocalRole::None;
        }
        match &self.db {
            None => LocalRole::Unknown,
            Some(db) if !db.running => LocalRole::Stopped,
            Some(db) => match db.role {
                Some(DbRole::Primary) => LocalRole::Primary,
                Some(DbRole::Standby) => LocalRole::Replica,
                None => LocalRole::Unknown,
            },
        }
    }

    /// A standby's bytes behind the primary's last reported position.
    pub fn lag_bytes(&self) -> Option<u64> {
        match (self.role(), self.db.as_ref().and_then(|d| d.lsn), self.primary_lsn) {
            (LocalRole::Replica, Some(mine), Some(primary)) => Some(mine.bytes_until(primary)),
            _ => None,
        }
    }
}

pub fn check(check: Check, facts: &LocalFacts) -> Answer {
    match check {
        Check::Primary => primary(facts),
        Check::Replica { max_lag_bytes } => replica(facts, max_lag_bytes),
        // Patroni's /read-only and /readiness ask the same of a member.
        Check::ReadOnly { max_lag_bytes } | Check::Readiness { max_lag_bytes } => {
            let p = primary(facts);
            if p.ok { p } else { replica(facts, max_lag_bytes) }
        }
        Check::Leader => match (facts.lease_valid_for_ms, facts.lease_epoch) {
            (Some(ms), Some(epoch)) => Answer::yes(format!("holds the lease for epoch {epoch}, valid for {ms} ms")),
            _ => Answer::no("holds no valid lease"),
        },
        Check::Health => match facts.role() {
            LocalRole::Primary | LocalRole::Replica => Answer::yes("PostgreSQL is running"),
            LocalRole::Stopped => Answer::no("PostgreSQL is not running"),
            LocalRole::Unknown => Answer::no("PostgreSQL not observed yet"),
            LocalRole::None => Answer::no("this member manages no PostgreSQL"),
        },
        Check::Liveness => match facts.loop_age_ms {
            Some(age) if age <= facts.ttl_ms => Answer::yes(format!("agent loop ran {age} ms ago")),
            Some(age) => {
                Answer::no(format!("agent loop last ran {age} ms ago (more than the lease ttl {} ms)", facts.ttl_ms))
            }
            None => Answer::no("agent loop has not run yet"),
        },
    }
}

fn primary(facts: &LocalFacts) -> Answer {
    let (Some(ms), Some(epoch)) = (facts.lease_valid_for_ms, facts.lease_epoch) else {
        return Answer::no("not the primary: holds no valid lease");
    };
    match facts.role() {
        LocalRole::Primary => Answer::yes(format!("writable primary, lease for epoch {epoch} valid for {ms} ms")),
        LocalRole::Replica => {
            Answer::no(format!("holds the lease for epoch {epoch} but PostgreSQL is not promoted yet"))
        }
        LocalRole::Stopped => Answer::no(format!("holds the lease for epoch {epoch} but PostgreSQL is not running")),
        LocalRole::Unknown => Answer::no("PostgreSQL not observed yet"),
        LocalRole::None => Answer::no("this member manages no PostgreSQL"),
    }
}

fn replica(facts: &LocalFacts, max_lag_bytes: Option<u64>) -> Answer {
    match facts.role() {
        LocalRole::Replica => {}
        LocalRole::Primary => return Answer::no("not a replica: PostgreSQL is a primary"),
        LocalRole::Stopped => return Answer::no("PostgreSQL is not running"),
        LocalRole::Unknown => return Answer::no("PostgreSQL not observed yet"),
        LocalRole::None => return Answer::no("this member manages no PostgreSQL"),
    }
    if !facts.streaming_from_primary {
        return Answer::no("replica is not streaming from the primary");
    }
    match (max_lag_bytes, facts.lag_bytes()) {
        (None, lag) => {
            Answer::yes(format!("streaming replica, {} bytes behind", lag.map_or("unknown".into(), |l| l.to_string())))
        }
        (Some(max), Some(lag)) if lag <= max => {
            Answer::yes(format!("streaming replica, {lag} bytes behind (limit {max})"))
        }
        (Some(max), Some(lag)) => Answer::no(format!("replica lags {lag} bytes (limit {max})")),
        (Some(_), None) => Answer::no("replica lag unknown: no primary position known"),
    }
}

/// Whether `db` streams from the database of the member holding the lease
/// (by its registered address).
pub fn streams_from_primary(state: &ClusterState, db: &DbStatus) -> bool {
    let primary = state.lease.and_then(|l| state.db_members.get(&l.holder)).map(|m| m.address.as_str());
    db.streaming_from.is_some() && db.streaming_from.as_deref() == primary
}

/// Parses a lag limit as HAProxy checks write it: bytes, or a number with
/// PostgreSQL's units kB, MB, GB, TB (powers of 1024, any letter case).
pub fn parse_lag(text: &str) -> Result<u64, String> {
    let bad = || format!("lag={text:?} is not a size: give bytes or a number with kB, MB, GB or TB (e.g. 16MB)");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

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

/// The body every health endpoint returns: this member's own view, for
/// people and scripts (HAProxy reads only the status code).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub cluster: String,
    pub node: String,
    pub role: LocalRole,
    /// 200 or 503, and why.
    pub status: u16,
    pub why: String,
    pub lease_epoch: Option<u64>,
    pub lease_valid_for_ms: Option<u64>,
    pub timeline: Option<u32>,
    pub lsn: Option<String>,
    pub lag_bytes: Option<u64>,
    pub streaming: bool,
}

pub fn node_health(cluster: &str, node: &str, facts: &LocalFacts, answer: &Answer) -> NodeHealth {
    let db = facts.db.as_ref();
    NodeHealth {
        cluster: cluster.to_string(),
        node: node.to_string(),
        role: facts.role(),
        status: answer.http_status(),
        why: answer.why.clone(),
        lease_epoch: facts.lease_epoch.map(|e| e.0),
        lease_valid_for_ms: facts.lease_valid_for_ms,
        timeline: db.and_then(|d| d.timeline).map(|t| t.0),
        lsn: db.and_then(|d| d.lsn).map(|l| l.to_string()),
        lag_bytes: facts.lag_bytes(),
        streaming: facts.streaming_from_primary,
    }
}

/// Which callback a change of the local PostgreSQL calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackEvent {
    OnStart,
    OnStop,
    OnRoleChange,
}

impl CallbackEvent {
    pub fn name(self) -> &'static str {
        match self {
            CallbackEvent::OnStart => "on_start",
            CallbackEvent::OnStop => "on_stop",
            CallbackEvent::OnRoleChange => "on_role_change",
        }
    }
}

/// The callback a new observation calls, given the previous one's
/// (running, role): started, stopped, or changed role while running (a
/// promotion). Nothing for the first observation of an agent: it did not
/// see the database start.
pub fn callback_for(before: Option<(bool, Option<DbRole>)>, now: (bool, Option<DbRole>)) -> Option<CallbackEvent> {
    let (was_running, was_role) = before?;
    match (was_running, now.0) {
        (false, true) => Some(CallbackEvent::OnStart),
        (true, false) => Some(CallbackEvent::OnStop),
        (true, true) if was_role != now.1 => Some(CallbackEvent::OnRoleChange),
        (true, true) | (false, false) => None,
    }
}

pub fn role_word(role: Option<DbRole>, running: bool) -> &'static str {
    match (running, role) {
        (false, _) => "stopped",
        (true, Some(DbRole::Primary)) => "primary",
        (true, Some(DbRole::Standby)) => "replica",
        (true, None) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RenewalSeq, TimelineId};

    fn db(running: bool, role: Option<DbRole>, lsn: u64) -> DbStatus {
        DbStatus {
            has_data: true,
            running,
            role,
            timeline: Some(TimelineId(2)),
            lsn: Some(Lsn(lsn)),
            ..DbStatus::default()
        }
    }

    fn facts(lease_ms: Option<u64>, db: Option<DbStatus>) -> LocalFacts {
        LocalFacts {
            lease_valid_for_ms: lease_ms,
            lease_epoch: lease_ms.map(|_| Epoch(3)),
            db,
            manages_db: true,
            primary_lsn: Some(Lsn(1000)),
            streaming_from_primary: true,
            loop_age_ms: Some(40),
            ttl_ms: 2500,
        }
    }

    fn codes(f: &LocalFacts) -> [u16; 7] {
        [
            Check::Primary,
            Check::Replica { max_lag_bytes: None },
            Check::ReadOnly { max_lag_bytes: None },
            Check::Leader,
            Check::Health,
            Check::Liveness,
            Check::Readiness { max_lag_bytes: None },
        ]
        .map(|c| check(c, f).http_status())
    }

    #[test]
    fn status_codes_by_situation() {
        let primary = Some(db(true, Some(DbRole::Primary), 1000));
        let replica = Some(db(true, Some(DbRole::Standby), 900));
        let stopped = Some(db(false, None, 900));
        //                                               pri  rep  ro   lead hlth live ready
        let cases = [
            ("primary with a valid lease", facts(Some(1500), primary.clone()), [200, 503, 200, 200, 200, 200, 200]),
            // A lapsed lease (or a cut-off primary past its deadline): not
            // primary although PostgreSQL still runs as one, until fenced.
            ("primary whose lease lapsed", facts(None, primary.clone()), [503, 503, 503, 503, 200, 200, 503]),
            ("streaming replica", facts(None, replica.clone()), [503, 200, 200, 503, 200, 200, 200]),
            ("stopped", facts(None, stopped.clone()), [503, 503, 503, 503, 503, 200, 503]),
            (
                "lease granted, promotion pending",
                facts(Some(900), replica.clone()),
                [503, 200, 200, 200, 200, 200, 200],
            ),
            ("lease held, PostgreSQL down", facts(Some(900), stopped), [503, 503, 503, 200, 503, 200, 503]),
            ("not observed yet", facts(None, None), [503, 503, 503, 503, 503, 200, 503]),
        ];
        for (what, f, expected) in cases {
            assert_eq!(codes(&f), expected, "{what}");
        }
        let mut not_streaming = facts(None, replica.clone());
        not_streaming.streaming_from_primary = false;
        assert_eq!(codes(&not_streaming), [503, 503, 503, 503, 200, 200, 503]);
        let mut stuck = facts(Some(1500), primary);
        stuck.loop_age_ms = Some(2501);
        assert_eq!(check(Check::Liveness, &stuck).http_status(), 503);
        stuck.loop_age_ms = None;
        assert_eq!(check(Check::Liveness, &stuck).http_status(), 503);
        let mut lease_only = facts(Some(1500), None);
        lease_only.manages_db = false;
        assert_eq!(codes(&lease_only), [503, 503, 503, 200, 503, 200, 503]);
    }

    #[test]
    fn replica_lag_limit() {
        let f = facts(None, Some(db(true, Some(DbRole::Standby), 900)));
        assert_eq!(f.lag_bytes(), Some(100));
        assert!(check(Check::Replica { max_lag_bytes: Some(100) }, &f).ok);
        let a = check(Check::Replica { max_lag_bytes: Some(99) }, &f);
        assert_eq!(a, Answer::no("replica lags 100 bytes (limit 99)"));
        assert!(!check(Check::ReadOnly { max_lag_bytes: Some(99) }, &f).ok);
        assert!(!check(Check::Readiness { max_lag_bytes: Some(99) }, &f).ok);
        let mut unknown = f.clone();
        unknown.primary_lsn = None;
        assert!(check(Check::Replica { max_lag_bytes: None }, &unknown).ok);
        assert!(!check(Check::Replica { max_lag_bytes: Some(1 << 30) }, &unknown).ok);
        // A standby ahead of the last reported position is 0 behind.
        let ahead = facts(None, Some(db(true, Some(DbRole::Standby), 5000)));
        assert_eq!(ahead.lag_bytes(), Some(0));
    }

    #[test]
    fn lag_sizes() {
        for (text, bytes) in [
            ("0", 0),
            ("1024", 1024),
            ("16kB", 16 << 10),
            ("16MB", 16 << 20),
            ("1gb", 1 << 30),
            ("2 TB", 2 << 40),
            ("7B", 7),
        ] {
            assert_eq!(parse_lag(text), Ok(bytes), "{text}");
        }
        for bad in ["", "MB", "-1", "1.5MB", "16XB", "16 M B", "99999999999999999999", "18014398509481984TB"] {
            let e = parse_lag(bad).unwrap_err();
            assert!(e.starts_with(&format!("lag={bad:?} is not a size")), "{bad}: {e}");
        }
    }

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
    fn callbacks_follow_observed_changes() {
        use CallbackEvent::*;
        let p = Some(DbRole::Primary);
        let s = Some(DbRole::Standby);
        assert_eq!(callback_for(None, (true, p)), None);
        assert_eq!(callback_for(Some((false, None)), (true, s)), Some(OnStart));
        assert_eq!(callback_for(Some((true, s)), (false, None)), Some(OnStop));
        assert_eq!(callback_for(Some((true, s)), (true, p)), Some(OnRoleChange));
        assert_eq!(callback_for(Some((true, p)), (true, p)), None);
        assert_eq!(callback_for(Some((false, None)), (false, None)), None);
        assert_eq!(role_word(p, true), "primary");
        assert_eq!(role_word(p, false), "stopped");
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
