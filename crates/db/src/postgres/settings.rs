//! The settings haraft owns in a PostgreSQL data directory (`haraft.conf`,
//! `standby.signal`), written for the role the server starts in, and what
//! they say of a promotion someone else asked for.

use super::{PROMOTE_SIGNAL, Postgres};
use crate::DbError;
use crate::local::{READ_ONLY_SETTING, io_err, quote};
use crate::pg_conf;

impl Postgres {
    /// haraft.conf for the role the server is about to start in (see
    /// `Local::begin_settings_file`), then `standby.signal` to match.
    pub(super) fn write_settings(&self, standby: bool, writable: bool) -> Result<(), DbError> {
        let mut file = self.l.begin_settings_file(standby, writable);
        let upstream = file.settings.upstream.clone();
        let c = &self.l.cfg;
        let mut set = |k: &str, v: String| file.set(k, v);
        set("listen_addresses", quote(&c.listen_addresses));
        set("port", c.port.to_string());
        set("unix_socket_directories", quote(&c.socket_dir.display().to_string()));
        set("unix_socket_permissions", "0700".into());
        set("wal_level", "replica".into());
        set("hot_standby", "on".into());
        set("hot_standby_feedback", "on".into());
        set("max_wal_senders", "10".into());
        set("max_replication_slots", "10".into());
        // pg_rewind needs the WAL since the divergence on the new primary;
        // 256 MB covers minutes of a busy test cluster.
        set("wal_keep_size", quote("256MB"));
        // A member that is gone for good must not fill the primary's disk
        // through its slot: past 1 GB the slot is invalidated and the
        // member is rebuilt when it returns.
        set("max_slot_wal_keep_size", quote("1GB"));
        set("wal_log_hints", "on".into());
        // Standbys report every second and a silent one is dropped after
        // 2 s (within the default 2.5 s lease ttl), so a cut-off synchronous standby
        // leaves pg_stat_replication, and the synchronous set, within a ttl.
        set("wal_receiver_status_interval", quote("1s"));
        set("wal_sender_timeout", quote("2s"));
        set("recovery_target_timeline", quote("latest"));
        // A standby whose upstream went away (a switchover's old primary
        // stopping, a re-pointed bystander) waits this long before it tries
        // again, and a promotion asked for meanwhile waited it out too:
        // PostgreSQL's 5 s made 5 of 10 switchovers take 5.3-5.7 s.
        set("wal_retrieve_retry_interval", quote("250ms"));
        set("cluster_name", quote(&c.application_name));
        if let (true, Some(up)) = (standby, upstream.as_ref()) {
            // The primary keeps this member's slot (see set_replication_slots).
            set("primary_slot_name", quote(&haraft_core::slot_name(&c.application_name)));
            let conninfo = format!(
                "host={} port={} user={} application_name={} passfile={} connect_timeout=2",
                up.host,
                up.port,
                c.replication_user,
                c.application_name,
                self.l.passfile().display()
            );
            set("primary_conninfo", quote(&conninfo));
        } else {
            set("primary_conninfo", quote(""));
            set("primary_slot_name", quote(""));
        }
        file.set_commit_rules();
        debug_assert!(
            file.names().all(|k| pg_conf::MANAGED.contains(&k)),
            "every setting of haraft.conf must be listed in pg_conf::MANAGED"
        );
        file.write()?;
        self.take_settings_over()?;
        let signal = c.data_dir.join("standby.signal");
        if standby {
            // A promote request left over from someone else's promotion
            // must not promote the standby haraft starts.
            let promote = c.data_dir.join(PROMOTE_SIGNAL);
            if promote.exists() && !writable {
                std::fs::remove_file(&promote).map_err(|e| io_err(&promote, e))?;
            }
            self.l.write_file(&signal, "")?;
        } else if signal.exists() {
            std::fs::remove_file(&signal).map_err(|e| io_err(&signal, e))?;
        }
        Ok(())
    }

    /// Makes the server's configuration take haraft's settings: the
    /// include of `haraft.conf` last in `postgresql.conf`, and no managed
    /// setting in `postgresql.auto.conf` (see `pg_conf`). A no-op on a
    /// cluster haraft created; on one it adopts, what `haraft
    /// --check-config --adopt` listed.
    pub(super) fn take_settings_over(&self) -> Result<(), DbError> {
        let d = &self.l.cfg.data_dir;
        let (conf_path, auto_path) = (d.join("postgresql.conf"), d.join("postgresql.auto.conf"));
        let conf = std::fs::read_to_string(&conf_path).map_err(|e| io_err(&conf_path, e))?;
        if !pg_conf::includes_haraft(&conf) || !pg_conf::overridden(&conf, true).is_empty() {
            tracing::info!(path = %conf_path.display(), "including haraft.conf last");
            let mut text: String =
                conf.lines().filter(|l| !pg_conf::includes_haraft(l)).flat_map(|l| [l, "\n"]).collect();
            text.push_str(pg_conf::INCLUDE_BLOCK);
            self.l.write_file(&conf_path, &text)?;
        }
        let auto = match std::fs::read_to_string(&auto_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&auto_path, e)),
        };
        let overrides = pg_conf::overridden(&auto, false);
        if !overrides.is_empty() {
            tracing::info!(path = %auto_path.display(), "removing settings haraft manages: {}", overrides.join(", "));
            self.l.write_file(&auto_path, &pg_conf::without_managed(&auto))?;
        }
        Ok(())
    }

    /// A running server's configuration does not take haraft's settings
    /// (a cluster being adopted); an unreadable file counts as not.
    pub(super) fn foreign_settings(&self) -> bool {
        let d = &self.l.cfg.data_dir;
        let read = |name: &str| std::fs::read_to_string(d.join(name));
        let auto = read("postgresql.auto.conf").unwrap_or_default();
        match read("postgresql.conf") {
            Ok(conf) => !d.join("haraft.conf").exists() || !pg_conf::takes_haraft_settings(&conf, &auto),
            Err(_) => true,
        }
    }

    /// What haraft's settings file gives new transactions: `None` without
    /// the file or without the setting (written by an earlier haraft).
    pub(super) fn settings_file_read_only(&self) -> Option<bool> {
        self.l.settings_file_value(READ_ONLY_SETTING).map(|v| v == "on")
    }

    /// A promote request is waiting, or (for a server in recovery) the
    /// file that keeps it a standby is gone: someone asked it to leave
    /// recovery. haraft's own promotion is told apart by the caller.
    pub(super) fn promotion_signalled_in(&self, in_recovery: bool) -> bool {
        let d = &self.l.cfg.data_dir;
        d.join(PROMOTE_SIGNAL).exists()
            || (in_recovery && !d.join("standby.signal").exists() && !d.join("recovery.signal").exists())
    }
}
