//! `haraft --check-config --adopt`: what haraft would change in a
//! PostgreSQL data directory it adopts (a cluster that already runs,
//! hand-built or from Patroni or repmgr), read before anything is touched.
//! Reads the configuration files and, when the server runs, its settings;
//! writes nothing.

use crate::local::Local;
use crate::pg_conf;
use crate::postgres::PgConfig;
use crate::{DbError, procs};
use std::time::Duration;

/// What the check found: what haraft will change, what the operator
/// should know, and what must be fixed before haraft can adopt it.
#[derive(Debug, Default)]
pub struct AdoptionReport {
    pub found: Vec<String>,
    pub changes: Vec<String>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
}

/// The running server's view: role and the settings the report compares.
struct Running {
    in_recovery: bool,
    system_identifier: String,
    settings: Vec<(String, String)>,
    slots: Vec<String>,
}

/// haraft's value of a restart-only setting, as `haraft.conf` will say it
/// (what `pg_settings.setting` shows for it).
fn haraft_value(cfg: &PgConfig, name: &str) -> Option<String> {
    Some(match name {
        "listen_addresses" => cfg.listen_addresses.clone(),
        "port" => cfg.port.to_string(),
        "unix_socket_directories" => cfg.socket_dir.display().to_string(),
        "unix_socket_permissions" => "0700".into(),
        "wal_level" => "replica".into(),
        "hot_standby" | "wal_log_hints" => "on".into(),
        "max_wal_senders" | "max_replication_slots" => "10".into(),
        _ => return None,
    })
}

async fn query_running(local: &Local, timeout: Duration) -> Result<Running, DbError> {
    let client = local.connect(timeout).await?;
    let q = |e: tokio_postgres::Error| DbError::query(&e);
    let row = client
        .query_one("SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system())::text", &[])
        .await
        .map_err(q)?;
    let names: Vec<String> = pg_conf::RESTART_ONLY
        .iter()
        .chain(["data_checksums", "synchronous_standby_names"].iter())
        .map(|s| s.to_string())
        .collect();
    let settings = client
        .query("SELECT name, setting FROM pg_settings WHERE name = ANY($1) ORDER BY name", &[&names])
        .await
        .map_err(q)?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let slots = client
        .query("SELECT slot_name::text FROM pg_replication_slots ORDER BY 1", &[])
        .await
        .map_err(q)?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok(Running { in_recovery: row.get(0), system_identifier: row.get(1), settings, slots })
}

/// The report for the data directory of `cfg`; `others` are the other
/// members' names (their slots on a primary).
pub async fn report(cfg: PgConfig, others: &[String], timeout: Duration) -> Result<AdoptionReport, DbError> {
    let mut r = AdoptionReport::default();
    let d = cfg.data_dir.clone();
    if !d.join("PG_VERSION").exists() {
        r.problems.push(format!(
            "{} holds no PostgreSQL data directory (no PG_VERSION): point [postgresql] data_dir at the running cluster's",
            d.display()
        ));
        return Ok(r);
    }
    let version = std::fs::read_to_string(d.join("PG_VERSION")).unwrap_or_default().trim().to_string();
    let local = Local::new(cfg.clone());
    let server = procs::postmaster_pid(&d).map(|pid| (pid, procs::postmaster_port(&d)));
    let running = match server {
        Some((pid, port)) => {
            if port != Some(cfg.port) {
                r.problems.push(format!(
                    "the server (PID {pid}) listens on port {}, but the config says {}: set [postgresql] listen to its port, \
                     haraft must reach it where it runs",
                    port.map_or("?".into(), |p| p.to_string()),
                    cfg.port
                ));
            }
            match query_running(&local, timeout).await {
                Ok(run) => Some(run),
                Err(e) => {
                    r.problems.push(format!(
                        "cannot query the running server as {} on {}:{} ({e}): check the superuser password file and pg_hba.conf",
                        cfg.superuser, cfg.host, cfg.port
                    ));
                    None
                }
            }
        }
        None => None,
    };
    let role = match (&server, &running) {
        (None, _) => "stopped (haraft starts it once a member is chosen)".to_string(),
        (Some((pid, _)), Some(run)) if run.in_recovery => format!("running as a standby (PID {pid})"),
        (Some((pid, _)), Some(_)) => format!("running as a primary (PID {pid})"),
        (Some((pid, _)), None) => format!("running (PID {pid}), role unknown"),
    };
    let sysid = running.as_ref().map_or("read at start".to_string(), |run| run.system_identifier.clone());
    r.found.push(format!("{}: PostgreSQL {version}, {role}, system identifier {sysid}", d.display()));

    let read = |name: &str| std::fs::read_to_string(d.join(name)).unwrap_or_default();
    let (conf, auto) = (read("postgresql.conf"), read("postgresql.auto.conf"));
    if !pg_conf::includes_haraft(&conf) {
        r.changes.push(format!("postgresql.conf: append `{}` (haraft's settings, read last)", pg_conf::INCLUDE));
    } else if !pg_conf::overridden(&conf, true).is_empty() {
        r.changes.push(format!(
            "postgresql.conf: move `{}` to the end ({} set after it would override haraft's)",
            pg_conf::INCLUDE,
            pg_conf::overridden(&conf, true).join(", ")
        ));
    }
    let overrides = pg_conf::overridden(&auto, false);
    if !overrides.is_empty() {
        r.changes.push(format!(
            "postgresql.auto.conf: remove {} (ALTER SYSTEM's file is read last and would override haraft's)",
            overrides.join(", ")
        ));
    }
    r.changes.push(format!("write haraft.conf: {}", pg_conf::MANAGED.join(", ")));
    let reload = if server.is_some() { "then reload (no restart)" } else { "before its start" };
    r.changes.push(format!("apply them: {reload}"));

    if let Some(run) = &running {
        let setting = |name: &str| run.settings.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        for name in pg_conf::RESTART_ONLY {
            if let (Some(now), Some(want)) = (setting(name), haraft_value(&cfg, name))
                && now != want
            {
                r.notes.push(format!(
                    "{name}: the server runs with '{now}', haraft.conf sets '{want}': that takes effect at its next \
                     restart, which haraft does not do for it"
                ));
            }
        }
        if setting("wal_level") == Some("logical") {
            r.notes.push(
                "wal_level is logical: haraft.conf sets replica, so logical decoding stops working after the next \
                 restart; adopt only a cluster that does not need it"
                    .into(),
            );
        }
        if setting("wal_log_hints") == Some("off") && setting("data_checksums") == Some("off") {
            r.notes.push(
                "pg_rewind needs wal_log_hints or data checksums, and neither is on now: until the next restart a \
                 former primary is rebuilt by base backup instead of rewound"
                    .into(),
            );
        }
        if setting("synchronous_standby_names").is_some_and(|v| !v.is_empty()) {
            r.notes.push(format!(
                "synchronous_standby_names is '{}' now: haraft.conf replaces it with the standbys [failover] \
                 synchronous_mode names (none when off)",
                setting("synchronous_standby_names").unwrap_or_default()
            ));
        }
        if run.in_recovery {
            r.changes.push(format!(
                "primary_conninfo and primary_slot_name move to haraft.conf (user {}, passfile {}); the standby \
                 reconnects, the server keeps running",
                cfg.replication_user,
                cfg.state_dir.join("pgpass").display()
            ));
        } else {
            let slots: Vec<String> = others.iter().map(|o| haraft_core::slot_name(o)).collect();
            let missing: Vec<&String> = slots.iter().filter(|s| !run.slots.contains(s)).collect();
            if !missing.is_empty() {
                let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                r.changes.push(format!("create physical replication slots {} once adopted", names.join(", ")));
            }
            let foreign: Vec<&str> =
                run.slots.iter().filter(|s| !s.starts_with("haraft_")).map(String::as_str).collect();
            if !foreign.is_empty() {
                r.notes.push(format!("slots {} are not haraft's: left alone", foreign.join(", ")));
            }
        }
    }
    r.notes.push(format!(
        "pg_hba.conf is left as it is: it must let {} connect for replication and {} connect (haraft, pg_rewind) \
         from every member",
        cfg.replication_user, cfg.superuser
    ));
    Ok(r)
}
