//! The human forms of the status and history documents: the table an
//! operator reads at 3 a.m. (`haraftctl status`), and the history list.

use haraft_core::status::{ClusterHealth, ClusterStatus, HistoryItem, MemberRole, MemberState, RaftRole, bytes, utc};

pub(crate) fn render_history(items: &[HistoryItem]) -> String {
    let mut out = String::new();
    for i in items {
        let at = i.at_unix_ms.map_or_else(|| "-".repeat(19), utc);
        out.push_str(&format!("{at}  #{:<6} {:<15} {}\n", i.log_index, i.event, i.detail));
        for v in &i.verdicts {
            let mark = if v.eligible { "eligible" } else { "not eligible" };
            out.push_str(&format!("{:29}{}: {mark}: {}\n", "", v.node, v.why));
        }
    }
    if items.is_empty() {
        out.push_str("no history yet\n");
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn role(r: RaftRole) -> &'static str {
    match r {
        RaftRole::Leader => "leader",
        RaftRole::Follower => "follower",
        RaftRole::Candidate => "candidate",
        RaftRole::Learner => "learner",
        RaftRole::Shutdown => "shutdown",
        RaftRole::Unknown => "?",
    }
}

fn member_role(r: MemberRole) -> &'static str {
    match r {
        MemberRole::Primary => "primary",
        MemberRole::Replica => "replica",
        MemberRole::Stopped => "stopped",
        MemberRole::Unknown => "unknown",
    }
}

fn member_state(s: MemberState) -> &'static str {
    match s {
        MemberState::Running => "running",
        MemberState::Streaming => "streaming",
        MemberState::CatchingUp => "catching up",
        MemberState::NeedsRewind => "needs rewind",
        MemberState::Rebuilding => "rebuilding",
        MemberState::Stopped => "stopped",
        MemberState::Unreachable => "unreachable",
        MemberState::NoDatabase => "no database",
        MemberState::ForeignData => "foreign data",
    }
}

/// The human table: a header of cluster facts, one row per member, then
/// warnings in plain words.
pub(crate) fn render(s: &ClusterStatus) -> String {
    let mut out = String::new();
    let leader = match &s.leader {
        Some(l) => format!("{l} (term {})", s.term),
        None => format!("none (term {})", s.term),
    };
    let primary = match (&s.primary, &s.lease) {
        (Some(p), Some(l)) => match l.valid_for_ms {
            Some(ms) => format!("{p} (epoch {}, lease valid for {ms} ms)", l.epoch),
            None => format!("{p} (epoch {}, lease not confirmed by the holder)", l.epoch),
        },
        _ => format!("none (last epoch {})", s.epoch),
    };
    let commit = s.commit_index.map_or("-".to_string(), |c| c.to_string());
    let health = match s.cluster_state {
        ClusterHealth::Normal => "Normal",
        ClusterHealth::Degraded => "Degraded",
        ClusterHealth::Unavailable => "Unavailable",
    };
    out.push_str(&format!("Cluster:      {} ({health})\n", s.cluster));
    out.push_str(&format!("Raft leader:  {leader}, commit index {commit}\n"));
    out.push_str(&format!("Primary:      {primary}\n"));
    if let Some(r) = s.lease.as_ref().and_then(|l| l.renewal_latency) {
        out.push_str(&format!(
            "Renewals:     commit latency p50 {:.1} ms, p99 {:.1} ms over the last {}\n",
            r.p50_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0,
            r.samples
        ));
    }
    if let Some(sync) = &s.synchronous {
        out.push_str(&format!("Synchronous:  {sync}\n"));
    }
    if let Some(op) = &s.operation {
        let id = s.operation_id.map(|id| format!(" (operation {id}: haraftctl follow {id})")).unwrap_or_default();
        out.push_str(&format!("In progress:  {op}{id}\n"));
    }
    if let Some(scheduled) = &s.scheduled {
        out.push_str(&format!("Scheduled:    {scheduled}\n"));
    }
    for task in &s.tasks {
        out.push_str(&format!("Task:         {task}\n"));
    }
    if s.paused {
        out.push_str("Paused:       yes: no automatic failover or actions (haraftctl resume)\n");
    }
    let view = if s.consistent {
        "the Raft leader, confirmed by a quorum"
    } else {
        "its own copy (not confirmed by a quorum)"
    };
    out.push_str(&format!("Features:     level {}{}\n", s.feature_level, versions_in_words(s)));
    out.push_str(&format!("Answered by:  {}, from {view}\n\n", s.answered_by));

    let header = [
        "MEMBER",
        "ID",
        "VERSION",
        "RAFT",
        "VOTER",
        "REACHABLE",
        "ROLE",
        "STATE",
        "DB ADDRESS",
        "TL",
        "LSN",
        "LAG",
        "NOTE",
    ];
    let rows: Vec<[String; 13]> = s
        .members
        .iter()
        .map(|m| {
            let mut notes = Vec::new();
            if s.primary.as_deref() == Some(m.name.as_str()) {
                notes.push(format!("lease holder, epoch {}", s.epoch));
            }
            if m.synchronous {
                notes.push("synchronous standby".to_string());
            }
            if let Some(a) = &m.action {
                notes.push(format!("doing: {a}"));
            }
            if let Some(e) = &m.error {
                notes.push(e.clone());
            }
            let dash = || "-".to_string();
            [
                m.name.clone(),
                m.id.to_string(),
                member_version(s, m),
                role(m.raft_role).to_string(),
                yes_no(m.voter).to_string(),
                yes_no(m.reachable).to_string(),
                member_role(m.role).to_string(),
                member_state(m.state).to_string(),
                m.db_address.clone().unwrap_or_else(dash),
                m.timeline.map_or_else(dash, |t| t.to_string()),
                m.lsn.clone().unwrap_or_else(dash),
                m.lag_bytes.map_or_else(dash, bytes),
                notes.join("; "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    out.push_str(&line(header.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    // Notes are sentences: under the table, one line a member.
    let noted: Vec<(&str, &str)> =
        s.members.iter().filter_map(|m| Some((m.name.as_str(), m.note.as_deref()?))).collect();
    if !noted.is_empty() {
        out.push('\n');
        for (name, note) in noted {
            out.push_str(&format!("{name}: {note}\n"));
        }
    }

    let mut warnings = Vec::new();
    for m in &s.members {
        if let Some(level) = m.feature_level.filter(|l| *l < s.feature_level) {
            warnings.push(format!(
                "{} runs haraft {} (feature level {level}), which cannot read this cluster's records (level {}): upgrade it",
                m.name,
                member_version(s, m),
                s.feature_level
            ));
        }
    }
    if s.leader.is_none() {
        warnings.push(
            "no Raft leader: no lease can be renewed or granted until a majority of members reach each other"
                .to_string(),
        );
    }
    let down: Vec<&str> = s.members.iter().filter(|m| !m.reachable).map(|m| m.name.as_str()).collect();
    if !down.is_empty() {
        warnings.push(format!("unreachable: {}", down.join(", ")));
    }
    if s.primary.is_none() {
        warnings.push("no primary holds the lease".to_string());
    }
    if s.paused {
        warnings.push("paused: a failed primary is not replaced until haraftctl resume".to_string());
    }
    let primaries: Vec<&str> =
        s.members.iter().filter(|m| m.role == MemberRole::Primary).map(|m| m.name.as_str()).collect();
    if primaries.len() > 1 {
        warnings.push(format!(
            "{} run a primary: only the lease holder's takes writes (the others are read-only by default), \
             and their agents fence them at once",
            primaries.join(" and ")
        ));
    }
    if let Some(blocked) = &s.writes_blocked {
        warnings.push(format!("writes blocked: {blocked}"));
    }
    for loss in &s.unacknowledged_losses {
        warnings.push(format!(
            "{loss}: writes acknowledged there are lost; see haraftctl history, then haraftctl history ack"
        ));
    }
    for m in &s.members {
        if let Some(f) = &m.failing {
            let times = if f.count == 1 { "once".to_string() } else { format!("{} times in a row", f.count) };
            warnings.push(format!(
                "{}: {} failed {times}: {}; next try at {} (haraftctl rebuild/restart {} tries at once)",
                m.name,
                f.action,
                f.error,
                utc(f.next_try_unix_ms),
                m.name
            ));
        }
    }
    for w in warnings {
        out.push_str(&format!("\nWARNING: {w}"));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A member's haraft release for the table: haraft 0.1 does not say it,
/// and a status document built by a 0.1 leader carries no versions at all
/// (then they are unknown: `?`).
fn member_version(s: &ClusterStatus, m: &haraft_core::status::MemberStatus) -> String {
    let reported = s.members.iter().any(|m| m.version.is_some());
    match (&m.version, m.reachable) {
        (Some(v), _) => v.clone(),
        (None, true) if reported => "0.1".to_string(),
        (None, true) => "?".to_string(),
        (None, false) => "-".to_string(),
    }
}

/// After the feature level: whether members run different releases, and
/// what raises the level.
fn versions_in_words(s: &ClusterStatus) -> String {
    if !s.members.iter().any(|m| m.version.is_some()) {
        return " (answered by a Raft leader running haraft 0.1, which does not report versions)".to_string();
    }
    let reachable: Vec<_> = s.members.iter().filter(|m| m.reachable).collect();
    let mut versions: Vec<String> = reachable.iter().map(|m| member_version(s, m)).collect();
    versions.sort();
    versions.dedup();
    let readable = reachable.iter().filter_map(|m| m.feature_level).min();
    match (versions.len(), readable) {
        (0 | 1, Some(r)) if r > s.feature_level && reachable.len() == s.members.len() => {
            format!(" (every member reads {r}: the Raft leader raises it within seconds)")
        }
        (0 | 1, _) => String::new(),
        _ => format!(
            " (members run {}: an upgrade in progress; the level is raised once every member reads a higher one)",
            versions.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haraft_core::status::{LeaseStatus, MemberStatus};

    fn member(name: &str, id: u64, role: RaftRole, reachable: bool) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            id,
            address: format!("127.0.0.1:700{id}"),
            raft_role: role,
            voter: true,
            reachable,
            term: reachable.then_some(3),
            applied_index: reachable.then_some(40),
            error: (!reachable).then(|| "connection refused".to_string()),
            role: if reachable { MemberRole::Replica } else { MemberRole::Unknown },
            state: if reachable { MemberState::Streaming } else { MemberState::Unreachable },
            db_address: Some(format!("127.0.0.1:540{id}")),
            timeline: reachable.then_some(2),
            lsn: reachable.then(|| "0/3000060".to_string()),
            lag_bytes: reachable.then_some(2048),
            action: None,
            failing: None,
            synchronous: false,
            note: None,
            version: reachable.then(|| "0.2.0".to_string()),
            feature_level: reachable.then_some(1),
        }
    }

    #[test]
    fn versions_during_an_upgrade() {
        let base = |members: Vec<MemberStatus>, level: u32| ClusterStatus {
            members,
            feature_level: level,
            ..serde_json::from_value(serde_json::json!({
                "cluster": "c", "answered_by": "node1", "consistent": true, "leader": "node1", "leader_id": 1,
                "term": 1, "commit_index": 1, "epoch": 1, "primary": null, "lease": null, "operation": null,
                "cluster_state": "Normal", "members": [],
            }))
            .expect("a status document")
        };
        let old = |name: &str, id: u64| MemberStatus {
            version: None,
            feature_level: Some(0),
            ..member(name, id, RaftRole::Follower, true)
        };
        // Mid-upgrade, answered by an upgraded leader.
        let t = render(&base(vec![member("node1", 1, RaftRole::Leader, true), old("node2", 2)], 0));
        assert!(t.contains("Features:     level 0 (members run 0.1, 0.2.0: an upgrade in progress"), "{t}");
        assert!(t.contains("node2   2   0.1 "), "{t}");
        // Every member upgraded, the raise due.
        let t = render(&base(
            vec![member("node1", 1, RaftRole::Leader, true), member("node2", 2, RaftRole::Follower, true)],
            0,
        ));
        assert!(t.contains("level 0 (every member reads 1: the Raft leader raises it within seconds)"), "{t}");
        // Answered by a 0.1 leader: nothing is known of versions.
        let t = render(&base(vec![old("node1", 1), old("node2", 2)], 0));
        assert!(t.contains("answered by a Raft leader running haraft 0.1"), "{t}");
        assert!(t.contains("node2   2   ?"), "{t}");
        // A member below the level in force (rolled back after the raise).
        let t = render(&base(vec![member("node1", 1, RaftRole::Leader, true), old("node2", 2)], 1));
        assert!(t.contains("WARNING: node2 runs haraft 0.1 (feature level 0), which cannot read this cluster's records (level 1): upgrade it"), "{t}");
    }

    #[test]
    fn table_names_leader_primary_and_unreachable() {
        let s = ClusterStatus {
            cluster: "demo".into(),
            answered_by: "node2".into(),
            consistent: true,
            leader: Some("node2".into()),
            leader_id: Some(2),
            term: 3,
            commit_index: Some(40),
            epoch: 4,
            primary: Some("node1".into()),
            lease: Some(LeaseStatus {
                holder: "node1".into(),
                holder_id: 1,
                epoch: 4,
                renewal: 9,
                valid_for_ms: Some(2100),
                renewal_latency: None,
            }),
            operation: Some("switchover 41 from node1 to node3: stopping node1 cleanly".into()),
            operation_id: Some(41),
            paused: true,
            scheduled: None,
            tasks: vec!["restart on node3 (operation 40, asked by ops@db1)".into()],
            settings: Default::default(),
            pending_settings: Default::default(),
            unacknowledged_losses: vec!["node3 rewound (log index 30): diverged at 0/100; discarded 0/100–0/180 (128 B of WAL, 1 committed transaction)".into()],
            synchronous: Some("quorum mode (node count 2): any 2 of node2, node3, node4 confirm each commit".into()),
            writes_blocked: Some("strict synchronous mode: 2 synchronous standbys must confirm each commit and 1 stream".into()),
            members: vec![
                member("node1", 1, RaftRole::Follower, true),
                MemberStatus {
                    failing: Some(haraft_core::backoff::FailingAction {
                        action: "rebuild".into(),
                        error: "pg_basebackup failed: password authentication failed".into(),
                        count: 4,
                        next_try_unix_ms: 1_795_261_445_000,
                    }),
                    ..member("node2", 2, RaftRole::Leader, true)
                },
                member("node3", 3, RaftRole::Unknown, false),
            ],
            feature_level: 1,
            cluster_state: ClusterHealth::Degraded,
        };
        let t = render(&s);
        assert!(t.contains("Features:     level 1\n"), "{t}");
        assert!(t.contains("node1   1   0.2.0    follower"), "{t}");
        assert!(t.contains("Raft leader:  node2 (term 3), commit index 40"), "{t}");
        assert!(t.contains("Primary:      node1 (epoch 4, lease valid for 2100 ms)"), "{t}");
        assert!(t.contains("lease holder, epoch 4"), "{t}");
        assert!(t.contains("Cluster:      demo (Degraded)"), "{t}");
        assert!(t.contains("streaming") && t.contains("2.0 KiB"), "{t}");
        assert!(t.contains("WARNING: unreachable: node3"), "{t}");
        assert!(
            t.contains(
                "WARNING: node2: rebuild failed 4 times in a row: pg_basebackup failed: password authentication failed; \
                 next try at 2026-11-21 11:44:05"
            ),
            "{t}"
        );
        assert!(
            t.contains("In progress:  switchover 41 from node1 to node3: stopping node1 cleanly (operation 41"),
            "{t}"
        );
        assert!(t.contains("Task:         restart on node3"), "{t}");
        assert!(
            t.contains("WARNING: node3 rewound (log index 30): diverged at 0/100; discarded 0/100–0/180 (128 B of WAL, 1 committed transaction): writes acknowledged there are lost; see haraftctl history, then haraftctl history ack"),
            "{t}"
        );
        assert!(t.contains("Paused:       yes"), "{t}");
        assert!(
            t.contains("Synchronous:  quorum mode (node count 2): any 2 of node2, node3, node4 confirm each commit"),
            "{t}"
        );
        assert!(t.contains("WARNING: writes blocked: strict synchronous mode: 2 synchronous standbys"), "{t}");
        let row = t.lines().find(|l| l.starts_with("node3")).unwrap();
        assert!(row.contains("connection refused") && row.contains("unreachable"), "{row}");
        assert!(!t.contains("run a primary"), "{t}");
        // A second member running a primary (promoted by hand) is named.
        let mut two = s.clone();
        two.members[0].role = MemberRole::Primary;
        two.members[1].role = MemberRole::Primary;
        let t = render(&two);
        assert!(t.contains("WARNING: node1 and node2 run a primary: only the lease holder's takes writes"), "{t}");
        // A member's note is a sentence under the table; its state a word.
        let mut foreign = s.clone();
        foreign.members[1].state = MemberState::ForeignData;
        foreign.members[1].note = Some("holds another database (system identifier 9, this cluster's is 7)".into());
        let t = render(&foreign);
        assert!(t.contains("foreign data"), "{t}");
        assert!(t.contains("\nnode2: holds another database (system identifier 9, this cluster's is 7)\n"), "{t}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_261_445_000), "2026-11-21 11:44:05");
        assert_eq!(utc(1_709_164_800_000), "2024-02-29 00:00:00");
    }
}
