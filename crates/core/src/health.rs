//! What a member answers to health checks (HAProxy, Kubernetes probes),
//! decided from its own facts at the moment of the request (`/metrics`: `metrics`).
//!
//! The one rule that matters: `/primary` says 200 only on the member whose
//! own lease deadline (on its own clock, read at the request) is still
//! ahead and whose PostgreSQL it last saw as a running primary. A copy of
//! the replicated state never makes a member primary here: a member cut off
//! from the Raft group still holds a state that names it, and its lease ends
//! on time all the same.

use crate::db::{DbRole, DbStatus};
use crate::ids::{Epoch, Lsn};
use crate::state::ClusterState;
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
pub(crate) mod tests {
    use super::*;
    use crate::ids::TimelineId;

    pub(crate) fn db(running: bool, role: Option<DbRole>, lsn: u64) -> DbStatus {
        DbStatus {
            has_data: true,
            running,
            role,
            timeline: Some(TimelineId(2)),
            lsn: Some(Lsn(lsn)),
            ..DbStatus::default()
        }
    }

    pub(crate) fn facts(lease_ms: Option<u64>, db: Option<DbStatus>) -> LocalFacts {
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
}
