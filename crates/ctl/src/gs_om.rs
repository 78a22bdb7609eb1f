//! `haraftctl status --format gs_om`: the status document drawn as
//! openGauss's `gs_om -t status --detail` draws a cluster, for operators
//! (and their scripts) who read that layout. For any engine: it only reads
//! the status document.
//!
//! The layout is gs_om's as openGauss-OM 1.x wrote it
//! (`dbClusterInfo.queryClsInfo` in script/gspylib/common/DbClusterInfo.py
//! as of commit a2679f0, current when the seed's transcripts were taken): a
//! `[   Cluster State   ]` block, then `[  Datanode State   ]` with every
//! datanode on one line, separated by ` | `, however many there are (three
//! nodes give one line with two separators). Column widths are its
//! constants: the node column is 2 (id) + 1 + the longest name + 1, the IP
//! column 16, the instance column 8 + 1 + the longest data directory, the
//! state column 17; the dashed line is that sum plus 3, once per node.
//! Each block title is followed by a blank line, as gs_om prints it (the
//! seed's copy lost those blank lines; other transcripts of the same
//! version keep them). Later gs_om (openGauss-OM 76ba6b2, 2.0) prints one
//! node per line with a port column; scripts written against the seed's
//! layout expect the single line, so that is what this keeps.
//!
//! What the status document gives and gs_om's words for it:
//!
//! | gs_om                  | from the status document                                        |
//! |------------------------|-----------------------------------------------------------------|
//! | `cluster_state`        | `Unavailable` when two members' databases run as primaries (gs_om's `primaryDbNum != 1`); otherwise the document's `cluster_state`: `Normal` (a primary holds a valid lease and every member runs or streams from it), `Degraded` (a primary with a valid lease, some member down, behind, needing a rewind or being rebuilt), `Unavailable` (no primary accepting writes) |
//! | `redistributing`       | always `No` (haraft never redistributes)                        |
//! | `current_az`           | always `AZ_ALL` (haraft has no availability zones)              |
//! | node                   | the member's id                                                 |
//! | node name              | the member's name                                               |
//! | node_ip                | the host of its database address (`-` when it registered none)  |
//! | instance id            | its database's port (see `row`)                                 |
//! | data directory         | `-`: not in the status document (see `row`)                     |
//! | `P` / `S`              | `P` for the member holding the primary lease, `S` for the others |
//! | role `Primary`         | role primary (its database runs as a primary)                   |
//! | role `Standby`         | role replica                                                    |
//! | role `Down`            | role stopped                                                    |
//! | role `Unknown`         | role unknown (unreachable, or no observation of its database)   |
//! | state `Normal`         | state running (a primary) or streaming (from the lease holder)  |
//! | state `Catchup`        | state catching up (running, not streaming from the primary yet) |
//! | state `Need repair(WAL)` | state needs rewind (diverged; a rewind is due or under way)   |
//! | state `Building`       | state rebuilding                                                |
//! | state `Manually stopped` | state stopped (gs_om's words for a server it cannot reach locally) |
//! | state `Unknown`        | state unreachable, or no database observation yet               |
//!
//! A lease-only member (no database address and no database) is left out:
//! gs_om lists datanodes, and it has none.

use haraft_core::status::{ClusterHealth, ClusterStatus, MemberRole, MemberState, MemberStatus};

/// gs_om's column constants (DbClusterInfo.py): NODE_ID_LEN, SPACE_LEN,
/// INSTANCE_ID_LEN, IP_LEN, STATE_LEN, SEPERATOR_LEN.
const NODE_ID_LEN: usize = 2;
const SPACE_LEN: usize = 1;
const INSTANCE_ID_LEN: usize = 8;
const IP_LEN: usize = 16;
const STATE_LEN: usize = 17;
const SEPERATOR_LEN: usize = 1;

/// What is printed where the status document has no value.
const NONE: &str = "-";

/// The two blocks of `gs_om -t status --detail`, ending in a newline.
pub(crate) fn render(s: &ClusterStatus) -> String {
    let datanodes: Vec<&MemberStatus> = s.members.iter().filter(|m| !lease_only(m)).collect();
    let mut out = String::new();
    out.push_str("[   Cluster State   ]\n\n");
    out.push_str(&format!("cluster_state   : {}\n", cluster_state(s)));
    out.push_str("redistributing  : No\n");
    out.push_str("current_az      : AZ_ALL\n\n");
    out.push_str("[  Datanode State   ]\n\n");
    let rows: Vec<Row> = datanodes.iter().map(|m| row(s, m)).collect();
    out.push_str(&datanode_lines(&rows));
    out
}

/// The Datanode block's title line, dashes and the line of datanodes.
fn datanode_lines(rows: &[Row]) -> String {
    let mut out = String::new();
    let longest_name = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let longest_dir = rows.iter().map(|r| r.data_dir.len()).max().unwrap_or(0);
    let node_len = NODE_ID_LEN + SPACE_LEN + longest_name + SPACE_LEN;
    let instance_len = INSTANCE_ID_LEN + SPACE_LEN + longest_dir;
    // gs_om repeats the column titles once per node; the last one's
    // "state" is not padded.
    for _ in 1..rows.len() {
        out.push_str(&format!(
            "{:<node_len$}{:<IP_LEN$}{:<instance_len$}{:<STATE_LEN$}| ",
            "node", "node_ip", "instance", "state"
        ));
    }
    out.push_str(&format!("{:<node_len$}{:<IP_LEN$}{:<instance_len$}state\n", "node", "node_ip", "instance"));
    let per_node = node_len + instance_len + IP_LEN + SPACE_LEN + STATE_LEN + SPACE_LEN + SEPERATOR_LEN;
    out.push_str(&"-".repeat(rows.len() * per_node));
    out.push('\n');
    let cells: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{:<2} {:<longest_name$} {:<15} {} {:<longest_dir$} {} {:<7} {}",
                r.id, r.name, r.host, r.port, r.data_dir, r.static_role, r.role, r.state
            )
        })
        .collect();
    if !cells.is_empty() {
        out.push_str(&cells.join(" | "));
        out.push('\n');
    }
    out
}

/// A member that manages no database: no address registered and nothing
/// observed.
fn lease_only(m: &MemberStatus) -> bool {
    m.db_address.is_none() && m.state == MemberState::NoDatabase
}

fn cluster_state(s: &ClusterStatus) -> &'static str {
    // gs_om calls a cluster with two primaries Unavailable. haraft's own
    // health looks at the lease holder only, so a second database running
    // as a primary (promoted by hand, not yet fenced) is counted here.
    let primaries = s.members.iter().filter(|m| m.role == MemberRole::Primary).count();
    if primaries > 1 {
        return "Unavailable";
    }
    match s.cluster_state {
        ClusterHealth::Normal => "Normal",
        ClusterHealth::Degraded => "Degraded",
        ClusterHealth::Unavailable => "Unavailable",
    }
}

/// One datanode's cells.
struct Row {
    id: u64,
    name: String,
    host: String,
    port: String,
    data_dir: String,
    static_role: &'static str,
    role: &'static str,
    state: &'static str,
}

fn row(s: &ClusterStatus, m: &MemberStatus) -> Row {
    let (host, port) = match m.db_address.as_deref().map(split_address) {
        Some((host, Some(port))) => (host, port),
        Some((host, None)) => (host, NONE.to_string()),
        None => (NONE.to_string(), NONE.to_string()),
    };
    Row {
        id: m.id,
        name: m.name.clone(),
        host,
        // gs_om prints the datanode's instance id (6001, 6002, ...) here;
        // haraft has none, and the port is what an operator needs to reach
        // the database. It takes the same place so the layout holds.
        port,
        // The status document does not carry the data directory: it lives
        // only in each agent's config file, and putting it in the document
        // means carrying it in the probe or the replicated state. Printed
        // as "-" until the document has it.
        data_dir: NONE.to_string(),
        // gs_om's P/S is the role in the static configuration (who was set
        // up as primary); haraft has no static roles, so P marks the
        // member holding the primary lease: the one that should be the
        // primary now.
        static_role: if s.primary.as_deref() == Some(m.name.as_str()) { "P" } else { "S" },
        role: role(m.role),
        state: state(m.state),
    }
}

/// "host:port", "[v6]:port" or a bare host, into host and port.
fn split_address(address: &str) -> (String, Option<String>) {
    match address.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
            (host.to_string(), Some(port.to_string()))
        }
        _ => (address.to_string(), None),
    }
}

fn role(r: MemberRole) -> &'static str {
    match r {
        MemberRole::Primary => "Primary",
        MemberRole::Replica => "Standby",
        MemberRole::Stopped => "Down",
        MemberRole::Unknown => "Unknown",
    }
}

fn state(s: MemberState) -> &'static str {
    match s {
        MemberState::Running | MemberState::Streaming => "Normal",
        MemberState::CatchingUp => "Catchup",
        MemberState::NeedsRewind => "Need repair(WAL)",
        MemberState::Rebuilding => "Building",
        MemberState::Stopped => "Manually stopped",
        MemberState::Unreachable | MemberState::NoDatabase => "Unknown",
        // gs_om's word for a datanode whose data cannot be used.
        MemberState::ForeignData => "Abnormal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haraft_core::status::{LeaseStatus, RaftRole};

    fn member(id: u64, name: &str, db_address: &str, role: MemberRole, state: MemberState) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            id,
            address: format!("{db_address}-agent"),
            raft_role: RaftRole::Follower,
            voter: true,
            reachable: state != MemberState::Unreachable,
            term: Some(3),
            applied_index: Some(40),
            error: None,
            role,
            state,
            db_address: Some(db_address.into()),
            timeline: Some(2),
            lsn: Some("0/3000060".into()),
            lag_bytes: None,
            action: None,
            failing: None,
            synchronous: false,
            note: None,
            version: Some("0.2.0".into()),
            feature_level: Some(1),
        }
    }

    fn cluster(primary: Option<&str>, health: ClusterHealth, members: Vec<MemberStatus>) -> ClusterStatus {
        ClusterStatus {
            cluster: "og".into(),
            answered_by: members[0].name.clone(),
            consistent: true,
            leader: Some(members[0].name.clone()),
            leader_id: Some(members[0].id),
            term: 3,
            commit_index: Some(40),
            epoch: 4,
            primary: primary.map(str::to_string),
            lease: primary.map(|p| LeaseStatus {
                holder: p.into(),
                holder_id: members.iter().find(|m| m.name == p).map_or(0, |m| m.id),
                epoch: 4,
                renewal: 9,
                valid_for_ms: Some(2100),
                renewal_latency: None,
            }),
            operation: None,
            operation_id: None,
            paused: false,
            scheduled: None,
            tasks: vec![],
            settings: Default::default(),
            pending_settings: Default::default(),
            unacknowledged_losses: vec![],
            synchronous: None,
            writes_blocked: None,
            members,
            feature_level: 1,
            cluster_state: health,
        }
    }

    const SEED_HEADER: &str =
        "node           node_ip         instance  state            | node           node_ip         instance  state\n";

    /// The seed's two nodes: cen7-og1-02 at 192.168.229.53 and cen7-og1-03
    /// at 192.168.229.54.
    fn seed(one: (MemberRole, MemberState), two: (MemberRole, MemberState)) -> Vec<MemberStatus> {
        vec![
            member(1, "cen7-og1-02", "192.168.229.53:5432", one.0, one.1),
            member(2, "cen7-og1-03", "192.168.229.54:5432", two.0, two.1),
        ]
    }

    fn check(s: &ClusterStatus, expected: &str) {
        let got = render(s);
        assert_eq!(got, expected, "\ngot:\n{got}\nexpected:\n{expected}");
    }

    #[test]
    fn normal_two_nodes_as_in_the_seed() {
        let members = seed((MemberRole::Primary, MemberState::Running), (MemberRole::Replica, MemberState::Streaming));
        let s = cluster(Some("cen7-og1-02"), ClusterHealth::Normal, members);
        // Widths: node 2+1+11+1 = 15, node_ip 16, instance 8+1+1 = 10
        // (the data directory is "-"), state 17; dashes 2 * (15+10+16+1+17+1+1).
        let expected = format!(
            "[   Cluster State   ]\n\n\
             cluster_state   : Normal\n\
             redistributing  : No\n\
             current_az      : AZ_ALL\n\n\
             [  Datanode State   ]\n\n\
             {SEED_HEADER}\
             {}\n\
             1  cen7-og1-02 192.168.229.53  5432 - P Primary Normal | 2  cen7-og1-03 192.168.229.54  5432 - S Standby Normal\n",
            "-".repeat(122)
        );
        check(&s, &expected);
    }

    #[test]
    fn the_seed_byte_for_byte_given_its_instance_ids_and_data_directory() {
        // The status document has neither; with the seed's values in their
        // places the lines are gs_om's own (the seed's first transcript).
        let seed_row = |id, name: &str, host: &str, static_role, role| Row {
            id,
            name: name.into(),
            host: host.into(),
            port: format!("600{id}"),
            data_dir: "/opt/openGuass/data/dn".into(),
            static_role,
            role,
            state: "Normal",
        };
        let rows = [
            seed_row(1, "cen7-og1-02", "192.168.229.53", "P", "Primary"),
            seed_row(2, "cen7-og1-03", "192.168.229.54", "S", "Standby"),
        ];
        let seed = "node           node_ip         instance                       state            | node           node_ip         instance                       state
--------------------------------------------------------------------------------------------------------------------------------------------------------------------
1  cen7-og1-02 192.168.229.53  6001 /opt/openGuass/data/dn P Primary Normal | 2  cen7-og1-03 192.168.229.54  6002 /opt/openGuass/data/dn S Standby Normal
";
        assert_eq!(datanode_lines(&rows), seed);
    }

    #[test]
    fn two_primaries_are_unavailable() {
        // The seed's failover by hand: node 2 promoted while node 1 still
        // runs as a primary. haraft's own health may still say Normal (the
        // lease holder is fine); gs_om's view does not.
        let members = seed((MemberRole::Primary, MemberState::Running), (MemberRole::Primary, MemberState::Running));
        let s = cluster(Some("cen7-og1-02"), ClusterHealth::Normal, members);
        let t = render(&s);
        assert!(t.contains("cluster_state   : Unavailable\n"), "{t}");
        assert!(
            t.ends_with(
                "1  cen7-og1-02 192.168.229.53  5432 - P Primary Normal | 2  cen7-og1-03 192.168.229.54  5432 - S Primary Normal\n"
            ),
            "{t}"
        );
    }

    #[test]
    fn old_primary_needing_a_rewind_is_degraded() {
        // After the seed's manual failover node 2 restarted as a standby
        // that diverged: gs_om's "Standby Need repair(WAL)".
        let members =
            seed((MemberRole::Primary, MemberState::Running), (MemberRole::Replica, MemberState::NeedsRewind));
        let s = cluster(Some("cen7-og1-02"), ClusterHealth::Degraded, members);
        let t = render(&s);
        assert!(t.contains("cluster_state   : Degraded\n"), "{t}");
        assert!(t.ends_with("| 2  cen7-og1-03 192.168.229.54  5432 - S Standby Need repair(WAL)\n"), "{t}");
    }

    #[test]
    fn three_nodes_share_one_line() {
        let members = vec![
            member(1, "db1", "10.0.0.1:5432", MemberRole::Replica, MemberState::Streaming),
            member(2, "db2", "10.0.0.2:5432", MemberRole::Primary, MemberState::Running),
            member(3, "db3", "10.0.0.3:15432", MemberRole::Stopped, MemberState::Rebuilding),
        ];
        let s = cluster(Some("db2"), ClusterHealth::Degraded, members);
        let t = render(&s);
        let lines: Vec<&str> = t.lines().collect();
        // Title, blank, three facts, blank, title, blank, header, dashes, row.
        assert_eq!(lines.len(), 11, "{t}");
        let title = "node   node_ip         instance  state            ";
        assert_eq!(lines[8], format!("{title}| {title}| node   node_ip         instance  state"));
        // 3 * (7 + 10 + 16 + 1 + 17 + 1 + 1)
        assert_eq!(lines[9], "-".repeat(159));
        assert_eq!(
            lines[10],
            "1  db1 10.0.0.1        5432 - S Standby Normal | 2  db2 10.0.0.2        5432 - P Primary Normal | \
             3  db3 10.0.0.3        15432 - S Down    Building"
        );
        assert_eq!(lines[2], "cluster_state   : Degraded");
    }

    #[test]
    fn a_member_without_a_database_observation() {
        let mut unknown = member(2, "node2", "[fd00::2]:5433", MemberRole::Unknown, MemberState::NoDatabase);
        unknown.timeline = None;
        unknown.lsn = None;
        let mut unreachable = member(3, "node3", "10.0.0.3:5432", MemberRole::Unknown, MemberState::Unreachable);
        unreachable.error = Some("connection refused".into());
        // A lease-only member: no database address, no database.
        let mut witness = member(4, "witness", "", MemberRole::Unknown, MemberState::NoDatabase);
        witness.db_address = None;
        // Registered without a port, and another never registered at all.
        let mut bare = member(5, "node5", "db5.example", MemberRole::Stopped, MemberState::Stopped);
        bare.db_address = Some("db5.example".into());
        let mut nowhere = member(6, "node6", "", MemberRole::Unknown, MemberState::Unreachable);
        nowhere.db_address = None;
        let members = vec![
            member(1, "node1", "10.0.0.1:5432", MemberRole::Primary, MemberState::Running),
            unknown,
            unreachable,
            witness,
            bare,
            nowhere,
        ];
        let s = cluster(Some("node1"), ClusterHealth::Degraded, members);
        let t = render(&s);
        let row = t.lines().last().unwrap();
        let cells: Vec<&str> = row.split(" | ").collect();
        assert_eq!(
            cells,
            [
                "1  node1 10.0.0.1        5432 - P Primary Normal",
                "2  node2 fd00::2         5433 - S Unknown Unknown",
                "3  node3 10.0.0.3        5432 - S Unknown Unknown",
                "5  node5 db5.example     - - S Down    Manually stopped",
                "6  node6 -               - - S Unknown Unknown",
            ],
            "{t}"
        );
        assert!(!t.contains("witness"), "{t}");
        assert_eq!(t.lines().nth(8).unwrap().matches("| ").count(), 4, "{t}");
    }

    #[test]
    fn no_primary_and_catching_up() {
        let members = vec![
            member(1, "node1", "10.0.0.1:5432", MemberRole::Stopped, MemberState::Stopped),
            member(2, "node2", "10.0.0.2:5432", MemberRole::Replica, MemberState::CatchingUp),
        ];
        let s = cluster(None, ClusterHealth::Unavailable, members);
        let t = render(&s);
        assert!(t.contains("cluster_state   : Unavailable\n"), "{t}");
        assert!(
            t.ends_with(
                "1  node1 10.0.0.1        5432 - S Down    Manually stopped | 2  node2 10.0.0.2        5432 - S Standby Catchup\n"
            ),
            "{t}"
        );
    }
}
