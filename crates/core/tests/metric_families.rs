//! The `/metrics` families dashboards depend on: every family's name, type
//! and HELP text and the label names of its samples, compared with
//! `fixtures/metric_families.txt`, captured from the renderer before it was
//! last reworked. A change here breaks someone's dashboard or alert: change
//! the fixture only on purpose, and say so in the release notes.

use haraft_core::db::{DbRole, DbStatus};
use haraft_core::health::LocalFacts;
use haraft_core::ids::{Epoch, Lsn, TimelineId};
use haraft_core::metrics::{LOOP_BUCKETS_SECONDS, MetricsFacts, Transitions, metrics_text};
use std::collections::BTreeMap;

const FIXTURE: &str = include_str!("fixtures/metric_families.txt");

/// A member's facts with every optional sample present for its role.
fn facts(role: DbRole) -> MetricsFacts {
    let db = DbStatus {
        has_data: true,
        running: true,
        role: Some(role),
        timeline: Some(TimelineId(3)),
        lsn: Some(Lsn(5_000)),
        ..DbStatus::default()
    };
    let mut buckets: Vec<(f64, u64)> = LOOP_BUCKETS_SECONDS.iter().map(|b| (*b, 1)).collect();
    buckets.push((f64::INFINITY, 2));
    MetricsFacts {
        cluster: "c1".into(),
        node: "node1".into(),
        local: LocalFacts {
            lease_valid_for_ms: (role == DbRole::Primary).then_some(1500),
            lease_epoch: (role == DbRole::Primary).then_some(Epoch(4)),
            db: Some(db),
            manages_db: true,
            primary_lsn: Some(Lsn(6_000)),
            streaming_from_primary: true,
            loop_age_ms: Some(40),
            ttl_ms: 2500,
        },
        epoch: 4,
        raft_term: 9,
        raft_leader: Some(2),
        raft_is_leader: false,
        raft_commit_index: Some(40),
        raft_applied_index: Some(40),
        paused: false,
        transitions: Transitions::default(),
        last_decision: Some(("idle".into(), "streaming".into())),
        outside_promotions: 1,
        discarded_wal_bytes: 0,
        actions: vec![("rebuild".into(), "ok".into(), 1), ("follow".into(), "failed".into(), 2)],
        loop_buckets: buckets,
        loop_sum_seconds: 0.5,
        loop_count: 2,
    }
}

/// One line per family (`family NAME TYPE HELP`) followed by one line per
/// distinct sample name and label-name set (`  sample NAME{a,b}`), sorted.
/// Label values are left out except `role` and `le`, whose values are a
/// fixed set dashboards select on.
fn families(texts: &[String]) -> String {
    let mut out: BTreeMap<String, (String, String, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for text in texts {
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a name and a text");
                current = name.to_string();
                out.entry(current.clone()).or_default().1 = help.to_string();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
                assert_eq!(name, current, "TYPE follows its family's HELP");
                out.entry(current.clone()).or_default().0 = kind.to_string();
            } else if line.starts_with('#') || line.is_empty() {
                panic!("unexpected line {line:?}");
            } else {
                let (series, _value) = line.rsplit_once(' ').expect("a sample has a value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.strip_suffix('}').expect("labels end with }")),
                    None => (series, ""),
                };
                assert!(name.starts_with(&current), "sample {name} outside its family {current}");
                let keys: Vec<String> = split_labels(labels)
                    .into_iter()
                    .map(|(k, v)| if k == "role" || k == "le" { format!("{k}={v}") } else { k })
                    .collect();
                out.entry(current.clone()).or_default().2.insert(format!("{name}{{{}}}", keys.join(",")));
            }
        }
    }
    let mut text = String::new();
    for (name, (kind, help, samples)) in out {
        text.push_str(&format!("family {name} {kind} {help}\n"));
        for s in samples {
            text.push_str(&format!("  sample {s}\n"));
        }
    }
    text
}

/// `a="x",b="y\"z"` into its pairs (values unescaped only as far as
/// needed to find their ends).
fn split_labels(labels: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label key=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("label value ends with a quote") {
                (_, '\\') => value.push(chars.next().expect("escape has a character").1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        pairs.push((key.to_string(), value));
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    pairs
}

#[test]
fn metric_families_match_the_fixture() {
    let texts = [metrics_text(&facts(DbRole::Primary)), metrics_text(&facts(DbRole::Standby))];
    let actual = families(&texts);
    assert_eq!(actual, FIXTURE, "the /metrics families changed: dashboards and alerts depend on them");
}

#[test]
fn the_comparison_notices_a_renamed_label() {
    let text = metrics_text(&facts(DbRole::Primary)).replace("{action=", "{kind=");
    assert_ne!(families(&[text]), families(&[metrics_text(&facts(DbRole::Primary))]));
}
