//! PostgreSQL's configuration files as haraft touches them: the include
//! of haraft's own settings file from `postgresql.conf`, and the settings
//! haraft manages that `postgresql.auto.conf` (ALTER SYSTEM's file, read
//! after every other) would override. Pure text in, text out: the
//! adapter reads and writes the files.
//!
//! A cluster haraft created has both right from its bootstrap; a cluster
//! it adopts (hand-built, from Patroni or repmgr) gets them with its first
//! settings change, by a reload, and `haraft --check-config --adopt`
//! lists them before anything is touched.

/// Every setting `haraft.conf` sets (the PostgreSQL adapter writes no
/// other).
pub const MANAGED: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "unix_socket_permissions",
    "wal_level",
    "hot_standby",
    "hot_standby_feedback",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_size",
    "max_slot_wal_keep_size",
    "wal_log_hints",
    "wal_receiver_status_interval",
    "wal_sender_timeout",
    "recovery_target_timeline",
    "wal_retrieve_retry_interval",
    "cluster_name",
    "synchronous_standby_names",
    "default_transaction_read_only",
    "primary_slot_name",
    "primary_conninfo",
];

/// Of `MANAGED`, those a running server takes only at its next start.
pub const RESTART_ONLY: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "unix_socket_permissions",
    "wal_level",
    "hot_standby",
    "max_wal_senders",
    "max_replication_slots",
    "wal_log_hints",
];

/// The line haraft appends to `postgresql.conf`: haraft's file comes
/// last, so its settings win over everything but `postgresql.auto.conf`.
pub const INCLUDE: &str = "include_if_exists = 'haraft.conf'";

/// What haraft appends to `postgresql.conf` that lacks its include.
pub const INCLUDE_BLOCK: &str =
    "\n# haraft's settings (replication, rewind, role) come last.\ninclude_if_exists = 'haraft.conf'\n";

/// The setting a configuration line sets, lowercased, and its value
/// (quotes kept); `None` for blank lines and comments.
fn setting(line: &str) -> Option<(String, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let value = rest.trim_start().strip_prefix('=').unwrap_or(rest).trim();
    Some((key.to_ascii_lowercase(), value))
}

/// A value as PostgreSQL reads it: the quoted string without its quotes
/// (a doubled quote left as is: no file haraft looks for has one), or
/// the bare word; a trailing comment dropped.
fn unquoted(value: &str) -> &str {
    match value.strip_prefix('\'') {
        Some(rest) => rest.split('\'').next().unwrap_or(""),
        None => value.split(|c: char| c.is_whitespace() || c == '#').next().unwrap_or(""),
    }
}

fn is_haraft_include(key: &str, value: &str) -> bool {
    matches!(key, "include_if_exists" | "include") && unquoted(value) == "haraft.conf"
}

/// `text` (a `postgresql.conf`) includes haraft's settings file, on a
/// line of its own (a later line setting a managed key again still wins:
/// see `overridden`).
pub fn includes_haraft(text: &str) -> bool {
    text.lines().filter_map(setting).any(|(key, value)| is_haraft_include(&key, value))
}

/// The managed settings `text` sets, in order, each once; for
/// `postgresql.auto.conf` all of them override haraft's, for
/// `postgresql.conf` only those after haraft's include line.
pub fn overridden(text: &str, after_include: bool) -> Vec<String> {
    let mut seen_include = !after_include;
    let mut out: Vec<String> = Vec::new();
    for (key, value) in text.lines().filter_map(setting) {
        if is_haraft_include(&key, value) {
            seen_include = true;
            out.clear();
            continue;
        }
        if seen_include && MANAGED.contains(&key.as_str()) && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// `text` without the lines that set a managed setting.
pub fn without_managed(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if !setting(line).is_some_and(|(key, _)| MANAGED.contains(&key.as_str())) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The configuration of a server takes haraft's settings: `conf`
/// includes haraft's file and nothing after it, nor `auto_conf`, sets a
/// managed setting again.
pub fn takes_haraft_settings(conf: &str, auto_conf: &str) -> bool {
    includes_haraft(conf) && overridden(conf, true).is_empty() && overridden(auto_conf, false).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_include_is_found_whatever_its_spelling() {
        assert!(includes_haraft("port = 5432\ninclude_if_exists = 'haraft.conf'\n"));
        assert!(includes_haraft("include 'haraft.conf'"));
        assert!(includes_haraft("INCLUDE_IF_EXISTS='haraft.conf'  # haraft"));
        assert!(!includes_haraft("# include_if_exists = 'haraft.conf'\n"));
        assert!(!includes_haraft("include_if_exists = 'other.conf'\n"));
    }

    #[test]
    fn managed_settings_set_after_the_include_or_in_auto_conf_override() {
        let conf = "primary_conninfo = 'host=a'\ninclude_if_exists = 'haraft.conf'\nwork_mem = '4MB'\nport 5433\n";
        assert_eq!(overridden(conf, true), vec!["port".to_string()], "before the include: haraft's wins");
        let auto = "# Do not edit this file manually!\nprimary_conninfo = 'user=replicator host=10.0.0.1'\nwork_mem = '8MB'\nprimary_conninfo = 'x'\n";
        assert_eq!(overridden(auto, false), vec!["primary_conninfo".to_string()]);
        assert!(!takes_haraft_settings(conf, ""));
        assert!(!takes_haraft_settings("include_if_exists = 'haraft.conf'\n", auto));
        assert!(takes_haraft_settings("include_if_exists = 'haraft.conf'\n", "work_mem = '8MB'\n"));
        assert!(!takes_haraft_settings("work_mem = '8MB'\n", ""), "no include: not haraft's");
    }

    #[test]
    fn only_managed_lines_are_removed() {
        let auto = "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nprimary_conninfo = 'user=r host=h'\nwork_mem = '8MB'\nSYNCHRONOUS_STANDBY_NAMES = '*'\n";
        let kept = without_managed(auto);
        assert_eq!(
            kept,
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nwork_mem = '8MB'\n"
        );
        assert!(overridden(&kept, false).is_empty());
    }

    #[test]
    fn restart_only_settings_are_managed_ones() {
        for key in RESTART_ONLY {
            assert!(MANAGED.contains(key), "{key}");
        }
        assert!(INCLUDE_BLOCK.contains(INCLUDE));
    }
}
