//! Reading `gs_ctl`'s output (openGauss 5.x/6.x formats, from
//! openGauss-server's `src/bin/pg_ctl/pg_ctl.cpp`): pure functions over
//! text, so the adapter's observations are tested with plain strings.
//!
//! `gs_ctl query` prints three blocks, ` HA state:`, ` Senders info:` and
//! ` Receiver info:`. With the server up each row is `\t%-30s : %s` lines
//! and a blank line after it; with the server down (read from
//! `gaussdb.state`) the lines are `        %-30s: %s`. A block without rows
//! says `No information`. Warning lines carry a `[time][pid][node][gs_ctl]: `
//! prefix and are skipped.

use std::collections::BTreeMap;

/// One row of a block: column name to value, as printed.
pub type Row = BTreeMap<String, String>;

/// What `gs_ctl query` said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// The `HA state` row: `local_role`, `db_state`, `detail_information`, ...
    pub ha: Row,
    /// One row per walsender.
    pub senders: Vec<Row>,
    /// One row per walreceiver.
    pub receivers: Vec<Row>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot read gs_ctl query's output ({0}): is bin_dir an openGauss installation of a supported version?")]
pub struct ParseError(String);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Ha,
    Senders,
    Receiver,
}

impl Query {
    /// The HA state's `local_role` (e.g. `Primary`, `Standby`, `Normal`,
    /// `Pending`, `Cascade Standby`, `Unknown`).
    pub fn local_role(&self) -> &str {
        self.ha.get("local_role").map_or("", String::as_str)
    }

    /// The HA state's `db_state` (e.g. `Normal`, `Need repair`, `Starting`).
    pub fn db_state(&self) -> &str {
        self.ha.get("db_state").map_or("", String::as_str)
    }

    /// The repair reason (e.g. `Disconnected`, `WAL segment removed`).
    pub fn detail(&self) -> &str {
        self.ha.get("detail_information").map_or("", String::as_str)
    }

    /// A walreceiver streams (its `state` is `Streaming`, any case).
    pub fn receiving(&self) -> bool {
        self.receivers.iter().any(|r| r.get("state").is_some_and(|s| s.eq_ignore_ascii_case("streaming")))
    }

    /// The role says the server left recovery: a single instance
    /// (`Normal`) or a primary.
    pub fn is_primary(&self) -> bool {
        matches!(self.local_role(), "Primary" | "Normal")
    }
}

/// Parses `gs_ctl query`'s standard output.
pub fn parse_query(text: &str) -> Result<Query, ParseError> {
    let mut query = Query::default();
    let mut block: Option<Block> = None;
    let mut row = Row::new();
    let mut seen_ha = false;
    let flush = |block: Option<Block>, row: &mut Row, query: &mut Query| {
        if row.is_empty() {
            return;
        }
        let row = std::mem::take(row);
        match block {
            Some(Block::Ha) => query.ha = row,
            Some(Block::Senders) => query.senders.push(row),
            Some(Block::Receiver) => query.receivers.push(row),
            None => {}
        }
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            continue;
        }
        let title = match t {
            "HA state:" => Some(Block::Ha),
            "Senders info:" => Some(Block::Senders),
            "Receiver info:" => Some(Block::Receiver),
            _ => None,
        };
        if let Some(next) = title {
            flush(block, &mut row, &mut query);
            seen_ha |= next == Block::Ha;
            block = Some(next);
            continue;
        }
        if t.is_empty() {
            flush(block, &mut row, &mut query);
            continue;
        }
        if t.starts_with("No information") || block.is_none() {
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            return Err(ParseError(format!("a line that is neither a title nor `name : value`: {t:?}")));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(' ') {
            return Err(ParseError(format!("a line that is neither a title nor `name : value`: {t:?}")));
        }
        // A repeated column starts the next row (rows are normally
        // separated by a blank line).
        if row.contains_key(key) {
            flush(block, &mut row, &mut query);
        }
        row.insert(key.to_string(), value.trim().to_string());
    }
    flush(block, &mut row, &mut query);
    if !seen_ha {
        return Err(ParseError("no `HA state:` block".into()));
    }
    if !query.ha.contains_key("local_role") {
        return Err(ParseError("the HA state has no local_role".into()));
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up_row(name: &str, value: &str) -> String {
        format!("\t{name:<30} : {value}\n")
    }

    #[test]
    fn a_running_standby_with_its_receiver() {
        let mut text = String::from("[2026-12-06 10:00:00.000][123][][gs_ctl]: gs_ctl query ,datadir is /d\n");
        text.push_str(&format!(" {:<20}\n", "HA state:"));
        for (k, v) in [
            ("local_role", "Standby"),
            ("static_connections", "1"),
            ("db_state", "Normal"),
            ("detail_information", "Normal"),
        ] {
            text.push_str(&up_row(k, v));
        }
        text.push('\n');
        text.push_str(&format!(" {:<20}\n", "Senders info:"));
        text.push_str("No information \n");
        text.push_str(&format!(" {:<20}\n", "Receiver info:"));
        for (k, v) in [
            ("receiver_pid", "4242"),
            ("local_role", "Standby"),
            ("state", "Streaming"),
            ("receiver_replay_location", "0/3000148"),
            ("channel", "127.0.0.1:6433<--127.0.0.1:7433"),
        ] {
            text.push_str(&up_row(k, v));
        }
        text.push('\n');
        let q = parse_query(&text).unwrap();
        assert_eq!(q.local_role(), "Standby");
        assert_eq!(q.db_state(), "Normal");
        assert!(!q.is_primary());
        assert!(q.senders.is_empty());
        assert_eq!(q.receivers.len(), 1);
        assert!(q.receiving());
        assert_eq!(q.receivers[0]["channel"], "127.0.0.1:6433<--127.0.0.1:7433");
    }

    #[test]
    fn two_senders_and_the_down_format() {
        let mut text = format!(" {:<20}\n", "HA state:");
        text.push_str(&up_row("local_role", "Primary"));
        text.push_str(&up_row("db_state", "Normal"));
        text.push('\n');
        text.push_str(&format!(" {:<20}\n", "Senders info:"));
        for pid in ["1", "2"] {
            text.push_str(&up_row("sender_pid", pid));
            text.push_str(&up_row("state", "Streaming"));
            text.push('\n');
        }
        let q = parse_query(&text).unwrap();
        assert!(q.is_primary());
        assert_eq!(q.senders.len(), 2);

        let down = " HA state:           \n        local_role                    : Unknown\n        \
                    static_connections            : 0\n        db_state                      : Unknown\n        \
                    detail_information            : could not connect to server\n        \
                    sync_mode                     : Async\n Senders info:       \n        No information\n \
                    Receiver info:      \n        No information\n";
        let q = parse_query(down).unwrap();
        assert_eq!(q.local_role(), "Unknown");
        assert_eq!(q.detail(), "could not connect to server");
        assert!(q.receivers.is_empty() && !q.receiving());
    }

    #[test]
    fn garbage_is_an_error_naming_what_is_wrong() {
        assert!(parse_query("").unwrap_err().to_string().contains("no `HA state:` block"));
        let e = parse_query(" HA state:\n\tthis is not a row\n").unwrap_err();
        assert!(e.to_string().contains("neither a title"), "{e}");
        let e = parse_query(" HA state:\n\tdb_state : Normal\n").unwrap_err();
        assert!(e.to_string().contains("no local_role"), "{e}");
    }
}
