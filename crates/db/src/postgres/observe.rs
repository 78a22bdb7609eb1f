//! Observing a PostgreSQL server: one query on the kept session when it
//! answers, its control file when it does not.

use super::Postgres;
use crate::controldata::ControlData;
use crate::local::{parse_synchronous_standby_names, parse_timeline_history};
use crate::{DbError, DbRole, DbStatus, Replica};
use haraft_core::{Lsn, TimelineId};
use std::time::Duration;

impl Postgres {
    /// A running standby that refuses connections ("not yet accepting
    /// connections": it has not reached a consistent state, e.g. WAL it
    /// needs is gone or belongs to a diverged timeline), seen through its
    /// control file: running, not streaming. Without this the agent had no
    /// observation to decide on and waited forever (a nemesis run in CI);
    /// with it, the standby counts as not streaming and is stopped and
    /// rewound after `stream_timeout_ms` like any other.
    pub(super) async fn recovering_standby(&self, why: &str, timeout: Duration) -> Result<DbStatus, DbError> {
        tracing::warn!(data_dir = %self.l.cfg.data_dir.display(), "the standby refuses connections: {why}");
        let c = self.l.controldata(timeout).await?;
        Ok(DbStatus { running: true, clean_shutdown: None, ..self.seen_through_control_file(&c, true) })
    }

    /// What the control file and haraft's files say of a server that
    /// answers no query: stopped unless the caller knows better.
    pub(super) fn seen_through_control_file(&self, c: &ControlData, standby: bool) -> DbStatus {
        let (timeline, lsn) = c.position();
        DbStatus {
            has_data: true,
            running: false,
            role: Some(if standby { DbRole::Standby } else { DbRole::Primary }),
            timeline: Some(timeline),
            lsn: Some(lsn),
            replayed_lsn: Some(lsn),
            system_identifier: Some(c.system_identifier),
            clean_shutdown: Some(c.state.clean()),
            streaming_from: None,
            replicas: Vec::new(),
            synchronous_names: None,
            synchronous_quorum: None,
            slots: None,
            forks: None,
            read_only_default: self.settings_file_read_only(),
            promotion_signalled: self.promotion_signalled_in(false),
            // Nothing commits on a server that answers no query.
            commits_held: false,
            // Its next start writes haraft's settings.
            foreign_settings: false,
            engine: haraft_core::Engine::Postgres,
            mounted: false,
            rewind_unfinished: false,
        }
    }

    pub(super) async fn query_running(&self, timeout: Duration) -> Result<DbStatus, DbError> {
        let work = async {
            let client = self.l.connect(timeout).await?;
            let q = |e: tokio_postgres::Error| DbError::query(&e);
            let row = client
                .query_one(
                    "SELECT pg_is_in_recovery(),
                            (SELECT system_identifier FROM pg_control_system())::text,
                            CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
                            CASE WHEN pg_is_in_recovery() THEN NULL
                                 ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,
                            pg_last_wal_receive_lsn()::text,
                            pg_last_wal_replay_lsn()::text,
                            (SELECT timeline_id FROM pg_control_checkpoint()),
                            (SELECT received_tli FROM pg_stat_wal_receiver),
                            (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver
                              WHERE status = 'streaming'),
                            current_setting('synchronous_standby_names'),
                            (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir()
                              WHERE name ~ '^[0-9A-F]{8}[.]history$'),
                            current_setting('default_transaction_read_only')",
                    &[],
                )
                .await
                .map_err(q)?;
            let in_recovery: bool = row.get(0);
            let sysid: Option<String> = row.get(1);
            let lsn = |i: usize| row.get::<_, Option<String>>(i).and_then(|s| Lsn::parse(&s));
            let timeline = if in_recovery {
                // Streaming: the timeline it receives. Otherwise the newest
                // timeline whose history it holds: the last restartpoint's
                // timeline lags a timeline switch by up to a checkpoint
                // interval.
                let received: Option<i32> = row.get(7);
                let checkpoint: Option<i32> = row.get(6);
                let newest_history: Option<i32> = row.get(10);
                received.or(newest_history.max(checkpoint)).map(|t| TimelineId(t as u32))
            } else {
                row.get::<_, Option<String>>(3).and_then(|hex| u32::from_str_radix(&hex, 16).ok()).map(TimelineId)
            };
            let (received_lsn, replayed_lsn) = if in_recovery { (lsn(4), lsn(5)) } else { (lsn(2), lsn(2)) };
            let synchronous = parse_synchronous_standby_names(&row.get::<_, String>(9));
            let slots = if in_recovery {
                None
            } else {
                let rows = client
                    .query(
                        "SELECT slot_name::text FROM pg_replication_slots
                          WHERE slot_type = 'physical' AND slot_name LIKE 'haraft\\_%' ORDER BY 1",
                        &[],
                    )
                    .await
                    .map_err(q)?;
                Some(rows.iter().map(|r| r.get::<_, String>(0)).collect())
            };
            let forks = match (in_recovery, timeline) {
                (false, Some(TimelineId(1))) => Some(Vec::new()),
                (false, Some(TimelineId(t))) => {
                    let path = format!("pg_wal/{t:08X}.history");
                    match client.query_one("SELECT pg_read_file($1)", &[&path]).await {
                        Ok(row) => Some(parse_timeline_history(&row.get::<_, String>(0))),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            let replicas = client
                .query("SELECT application_name, state, sync_state FROM pg_stat_replication", &[])
                .await
                .map_err(q)?
                .iter()
                .map(|r| Replica {
                    name: r.get::<_, Option<String>>(0).unwrap_or_default(),
                    streaming: r.get::<_, Option<String>>(1).is_some_and(|s| s == "streaming"),
                    sync: r.get::<_, Option<String>>(2).is_some_and(|s| s == "sync" || s == "quorum"),
                })
                .collect();
            Ok(DbStatus {
                has_data: true,
                running: true,
                role: Some(if in_recovery { DbRole::Standby } else { DbRole::Primary }),
                timeline,
                lsn: received_lsn,
                replayed_lsn,
                // bigint in SQL: values above i64::MAX come back negative.
                system_identifier: sysid.and_then(|s| s.parse::<i64>().ok()).map(|v| v as u64),
                clean_shutdown: None,
                streaming_from: row.get(8),
                replicas,
                synchronous_names: synchronous.as_ref().map(|s| s.names.clone()),
                synchronous_quorum: synchronous.as_ref().and_then(|s| s.quorum),
                commits_held: synchronous.is_some_and(|s| s.commits_held),
                slots,
                forks,
                read_only_default: Some(row.get::<_, String>(11) == "on"),
                promotion_signalled: self.promotion_signalled_in(in_recovery),
                foreign_settings: self.foreign_settings(),
                engine: haraft_core::Engine::Postgres,
                mounted: false,
                rewind_unfinished: false,
            })
        };
        self.l.timed("querying PostgreSQL", timeout, work).await
    }

    /// When the kept connection's session last read the configuration;
    /// `None` when the server cannot be asked.
    pub(super) async fn conf_load_time(&self, timeout: Duration) -> Option<String> {
        let client = self.l.connect(timeout).await.ok()?;
        let ask = async {
            client.query_one("SELECT pg_catalog.pg_conf_load_time()::text", &[]).await.map_err(|e| DbError::query(&e))
        };
        self.l.timed("reading the configuration's load time", timeout, ask).await.ok().map(|row| row.get(0))
    }

    /// Finishes crash recovery of a stopped, uncleanly shut down directory
    /// with a single-user server, so that pg_rewind accepts it.
    /// The other members' slots on a new primary, before they connect: a
    /// standby that starts or re-points at once would otherwise be refused
    /// ("replication slot does not exist") and wait out its retry interval
    /// until the reconciler's SetSlots, an observation later. Missing ones
    /// only; SetSlots drops what no member needs. Best effort: SetSlots
    /// tries again.
    pub(super) async fn create_peer_slots(&self, client: &tokio_postgres::Client) {
        let slots: Vec<String> = {
            let settings = self.l.settings.lock().expect("never poisoned");
            settings.peers.iter().map(|p| haraft_core::slot_name(&p.name)).collect()
        };
        let create = "SELECT pg_create_physical_replication_slot($1, true)
                       WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)";
        for slot in &slots {
            if let Err(e) = client.execute(create, &[slot]).await {
                tracing::warn!(%slot, "creating the replication slot of a member failed (the reconciler tries again): {e}");
            }
        }
    }
}
