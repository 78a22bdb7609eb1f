//! `haraftctl dsn`: a libpq multi-host connection string for the cluster,
//! so that clients find the primary (or a replica) by themselves after a
//! failover, without a proxy.

use haraft_core::status::{ClusterStatus, MemberRole};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Every member, the primary first, `target_session_attrs=read-write`:
    /// libpq skips the others until one accepts writes.
    Primary,
    /// Every member, replicas first, `target_session_attrs=standby`.
    Replica,
}

/// The URI form: postgresql://USER@HOST:PORT,HOST:PORT/DBNAME?target_session_attrs=...
pub fn dsn(status: &ClusterStatus, role: Role, user: &str, dbname: &str) -> Result<String, String> {
    let wanted = match role {
        Role::Primary => MemberRole::Primary,
        Role::Replica => MemberRole::Replica,
    };
    let mut hosts: Vec<(bool, &str)> =
        status.members.iter().filter_map(|m| m.db_address.as_deref().map(|a| (m.role != wanted, a))).collect();
    if hosts.is_empty() {
        return Err(
            "no member has registered its PostgreSQL yet: wait for the cluster to bootstrap (haraftctl status)".into(),
        );
    }
    // Stable: the wanted role first, then by member order.
    hosts.sort_by_key(|(later, _)| *later);
    let list: Vec<&str> = hosts.iter().map(|(_, a)| *a).collect();
    let attrs = match role {
        Role::Primary => "read-write",
        Role::Replica => "standby",
    };
    Ok(format!("postgresql://{}@{}/{}?target_session_attrs={attrs}", encode(user), list.join(","), encode(dbname)))
}

/// Percent-encoding of a URI user or path component.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(members: &[(&str, Option<&str>, MemberRole)]) -> ClusterStatus {
        let text = serde_json::json!({
            "cluster": "c", "answered_by": "n1", "consistent": true, "leader": null, "leader_id": null,
            "term": 1, "commit_index": null, "epoch": 1, "primary": null, "lease": null, "operation": null,
            "cluster_state": "Normal",
            "members": members.iter().enumerate().map(|(i, (name, addr, role))| serde_json::json!({
                "name": name, "id": i + 1, "address": "x:1", "raft_role": "follower", "voter": true,
                "reachable": true, "term": null, "applied_index": null, "error": null, "role": role,
                "state": "streaming", "db_address": addr, "timeline": null, "lsn": null, "lag_bytes": null,
                "action": null, "synchronous": false,
            })).collect::<Vec<_>>(),
        });
        serde_json::from_value(text).expect("a status document")
    }

    #[test]
    fn primary_first_or_replicas_first() {
        let s = status(&[
            ("n1", Some("h1:5432"), MemberRole::Replica),
            ("n2", Some("h2:5432"), MemberRole::Primary),
            ("n3", None, MemberRole::Unknown),
            ("n4", Some("h4:5432"), MemberRole::Stopped),
        ]);
        assert_eq!(
            dsn(&s, Role::Primary, "postgres", "postgres").unwrap(),
            "postgresql://postgres@h2:5432,h1:5432,h4:5432/postgres?target_session_attrs=read-write"
        );
        assert_eq!(
            dsn(&s, Role::Replica, "app user", "my/db").unwrap(),
            "postgresql://app%20user@h1:5432,h2:5432,h4:5432/my%2Fdb?target_session_attrs=standby"
        );
        let empty = status(&[("n1", None, MemberRole::Unknown)]);
        assert!(dsn(&empty, Role::Primary, "u", "d").unwrap_err().contains("wait for the cluster to bootstrap"));
    }
}
