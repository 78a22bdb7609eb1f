//! The simulated side of the `Database` seam: one member's adapter over
//! the shared model ([`crate::model`]). Each action takes a little virtual
//! time, as the real tools do, and carries out the `postgres` adapter's
//! preconditions: the epoch check, a stopped directory for rewind and
//! rebuild, a reachable, running source, the system identifier.

use crate::model::{Server, Servers, id_of_host};
use haraft_core::{DbRole, DbStatus, Epoch, Fork, Lsn, TimelineId};
use haraft_db::{Database, DbError, RewindReport, StopMode, Upstream};
use std::sync::Arc;
use std::time::Duration;

/// How long the model's actions take: a start or promote of a small
/// PostgreSQL on these machines takes 100–300 ms; a query a millisecond.
const START: Duration = Duration::from_millis(200);
const QUICK: Duration = Duration::from_millis(2);
const COPY: Duration = Duration::from_millis(800);

/// Says whether the network carries `from`'s database traffic to `to`.
pub type Reach = Arc<dyn Fn(u64, u64) -> bool + Send + Sync>;

pub struct ModelDb {
    pub id: u64,
    pub servers: Servers,
    pub reach: Reach,
    /// This life of the member's host: cleared when it goes down, so an
    /// action the agent started before (a start waiting on pg_ctl) does
    /// not land afterwards. In a real host crash pg_ctl dies with it.
    pub alive: Arc<std::sync::atomic::AtomicBool>,
}

fn failed(program: &str, stderr: impl Into<String>) -> DbError {
    DbError::CommandFailed { program: program.into(), code: Some(1), stderr_tail: stderr.into() }
}

impl ModelDb {
    /// Runs `f` on this member's server after `delay`, under the epoch
    /// check unless `fencing` (stop, read-only, hold are never refused).
    async fn act<T>(
        &self,
        delay: Duration,
        epoch: Option<Epoch>,
        f: impl FnOnce(&mut crate::model::Table, u64) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        tokio::time::sleep(delay).await;
        let mut t = self.servers.lock();
        // Checked under the model's lock, which the crash takes after
        // clearing it: an action lands wholly before the crash or not at all.
        if !self.alive.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DbError::Unexpected("the host went down".into()));
        }
        let me = t.servers.get_mut(&self.id).ok_or_else(|| DbError::Unexpected("no such server".into()))?;
        if let Some(given) = epoch {
            if given < me.epoch_high {
                return Err(DbError::StaleEpoch { given, highest: me.epoch_high });
            }
            me.epoch_high = given;
        }
        f(&mut t, self.id)
    }

    fn source_id(&self, upstream: &Upstream) -> Result<u64, DbError> {
        id_of_host(&upstream.host).ok_or_else(|| failed("pg_basebackup", format!("unknown host {}", upstream.host)))
    }
}

/// What every program that writes into a full data directory reports.
fn no_space(tool: &str) -> DbError {
    failed(tool, "could not write to file: No space left on device")
}

fn me(t: &mut crate::model::Table, id: u64) -> &mut Server {
    t.servers.get_mut(&id).expect("act() checked the server exists")
}

/// A running, reachable source's copy, or why not.
fn source_of(t: &crate::model::Table, me: u64, source: u64, reach: &Reach, tool: &str) -> Result<Server, DbError> {
    match t.servers.get(&source) {
        Some(s) if s.running && s.has_data && reach(source, me) && reach(me, source) => Ok(s.clone()),
        _ => Err(failed(tool, "could not connect to server: connection refused")),
    }
}

impl Database for ModelDb {
    fn engine(&self) -> &'static str {
        "postgresql (model)"
    }

    async fn observe(&self, _timeout: Duration) -> Result<DbStatus, DbError> {
        tokio::time::sleep(QUICK).await;
        let mut status = {
            let t = self.servers.lock();
            let s = t.servers.get(&self.id).ok_or_else(|| DbError::Unexpected("no such server".into()))?;
            s.status()
        };
        if status.is_running_primary() {
            status.replicas = self.servers.replicas_of(self.id);
        }
        Ok(status)
    }

    fn expect_system_identifier(&self, id: u64) {
        if let Some(s) = self.servers.lock().servers.get_mut(&self.id) {
            s.expected_sysid = Some(id);
        }
    }

    async fn bootstrap(&self, epoch: Epoch, _timeout: Duration) -> Result<u64, DbError> {
        self.act(START, Some(epoch), |t, id| {
            let sysid = t.next_sysid;
            let s = me(t, id);
            if s.disk_full {
                return Err(no_space("initdb"));
            }
            if s.has_data {
                return Err(failed("initdb", "directory exists but is not empty"));
            }
            *s = Server {
                name: s.name.clone(),
                has_data: true,
                system_identifier: Some(sysid),
                running: true,
                role: Some(DbRole::Primary),
                timeline: 1,
                lsn: 0x0100_0000,
                read_only: true,
                epoch_high: epoch,
                ..Server::default()
            };
            t.next_sysid += 1;
            Ok(sysid)
        })
        .await
    }

    async fn start_primary(&self, epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        self.act(START, Some(epoch), |t, id| {
            let next = t.next_timeline;
            let s = me(t, id);
            if !s.has_data || s.running {
                return Err(failed("pg_ctl", "no stopped data directory to start"));
            }
            if s.disk_full {
                return Err(no_space("pg_ctl"));
            }
            if s.damaged {
                return Err(failed("pg_ctl", "PANIC: could not locate a valid checkpoint record"));
            }
            if s.role == Some(DbRole::Standby) {
                // Started without standby.signal: it leaves recovery on a
                // new timeline, as a promotion does.
                s.forks.push(Fork { timeline: TimelineId(s.timeline), switch_lsn: Lsn(s.lsn) });
                s.timeline = next;
                t.next_timeline += 1;
            }
            let s = me(t, id);
            s.running = true;
            s.crashed = false;
            s.role = Some(DbRole::Primary);
            s.upstream = None;
            Ok(())
        })
        .await
    }

    async fn start_standby(&self, upstream: Option<&Upstream>, epoch: Epoch, _t: Duration) -> Result<(), DbError> {
        let up = upstream.map(|u| self.source_id(u)).transpose()?;
        self.act(START, Some(epoch), |t, id| {
            let s = me(t, id);
            if !s.has_data || s.running {
                return Err(failed("pg_ctl", "no stopped data directory to start"));
            }
            if s.disk_full {
                return Err(no_space("pg_ctl"));
            }
            if s.damaged {
                return Err(failed("pg_ctl", "PANIC: could not locate a valid checkpoint record"));
            }
            s.running = true;
            s.crashed = false;
            s.role = Some(DbRole::Standby);
            s.upstream = up;
            s.streaming = false;
            s.standby_settings();
            Ok(())
        })
        .await
    }

    async fn follow(&self, upstream: &Upstream, epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        let up = self.source_id(upstream)?;
        self.act(QUICK, Some(epoch), |t, id| {
            let s = me(t, id);
            if !(s.running && s.role == Some(DbRole::Standby)) {
                return Err(failed("pg_ctl", "not a running standby"));
            }
            s.upstream = Some(up);
            s.streaming = false;
            s.standby_settings();
            Ok(())
        })
        .await
    }

    async fn promote(&self, epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        self.act(START, Some(epoch), |t, id| {
            let next = t.next_timeline;
            let s = me(t, id);
            if !(s.running && s.role == Some(DbRole::Standby)) {
                return Err(failed("pg_ctl", "server is not in standby mode"));
            }
            s.forks.push(Fork { timeline: TimelineId(s.timeline), switch_lsn: Lsn(s.lsn) });
            s.timeline = next;
            s.role = Some(DbRole::Primary);
            s.upstream = None;
            s.streaming = false;
            t.next_timeline += 1;
            Ok(())
        })
        .await
    }

    async fn stop(&self, mode: StopMode, _epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        let reach = Arc::clone(&self.reach);
        self.act(QUICK, None, move |t, id| {
            let s = me(t, id).clone();
            if s.running && mode == StopMode::Fast && s.role == Some(DbRole::Primary) {
                // A clean stop ships all WAL to the standbys streaming it.
                for (sid, st) in t.servers.iter_mut() {
                    if st.upstream == Some(id) && st.streaming && st.timeline == s.timeline && reach(id, *sid) {
                        st.lsn = s.lsn;
                    }
                }
            }
            let s = me(t, id);
            if s.running {
                s.clean_shutdown = mode == StopMode::Fast;
            }
            s.running = false;
            s.streaming = false;
            Ok(())
        })
        .await
    }

    async fn rewind(&self, source: &Upstream, epoch: Epoch, _timeout: Duration) -> Result<RewindReport, DbError> {
        let from = self.source_id(source)?;
        let reach = Arc::clone(&self.reach);
        tokio::time::sleep(COPY).await;
        self.act(QUICK, Some(epoch), move |t, id| {
            let src = source_of(t, id, from, &reach, "pg_rewind")?;
            let s = me(t, id);
            if s.running {
                return Err(failed("pg_rewind", "target server must be shut down cleanly"));
            }
            // The adapter's marker, written once the source answered, just
            // before pg_rewind runs; removed when it succeeded.
            s.rewind_unfinished = true;
            if s.disk_full {
                return Err(no_space("pg_rewind"));
            }
            // A directory an earlier pg_rewind left part-way is not one it
            // can finish: PostgreSQL's documentation asks for a new backup.
            if s.rewind_breaks || s.damaged {
                s.rewind_breaks = false;
                s.damaged = true;
                return Err(failed("pg_rewind", "fatal: could not write file: Input/output error"));
            }
            if !s.has_data || s.system_identifier != src.system_identifier {
                return Err(failed("pg_rewind", "source and target clusters are from different systems"));
            }
            let Some((timeline, at)) = s.diverged_at(&src) else {
                return Err(failed(
                    "pg_rewind",
                    "could not find common ancestor of the source and target cluster's timelines",
                ));
            };
            s.timeline = src.timeline;
            s.forks = src.forks.clone();
            s.lsn = src.lsn;
            s.role = Some(DbRole::Standby);
            s.clean_shutdown = true;
            s.rewind_unfinished = false;
            s.standby_settings();
            Ok(RewindReport { diverged_at: Some(Lsn(at)), diverged_timeline: Some(TimelineId(timeline)) })
        })
        .await
    }

    async fn rebuild(&self, source: &Upstream, epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        let from = self.source_id(source)?;
        let reach = Arc::clone(&self.reach);
        tokio::time::sleep(COPY).await;
        self.act(QUICK, Some(epoch), move |t, id| {
            let src = source_of(t, id, from, &reach, "pg_basebackup")?;
            let s = me(t, id);
            // The adapter stops a running server itself (immediate) before
            // it sets the directory aside (seed 26999: the model refused,
            // and a standby started under a lease it then lost was never
            // rebuilt).
            if s.running {
                s.running = false;
                s.clean_shutdown = false;
                s.streaming = false;
            }
            if s.disk_full {
                return Err(no_space("pg_basebackup"));
            }
            *s = Server {
                name: s.name.clone(),
                has_data: true,
                system_identifier: src.system_identifier,
                expected_sysid: s.expected_sysid,
                role: Some(DbRole::Standby),
                timeline: src.timeline,
                forks: src.forks.clone(),
                lsn: src.lsn,
                read_only: true,
                clean_shutdown: true,
                epoch_high: s.epoch_high,
                ..Server::default()
            };
            Ok(())
        })
        .await
    }

    async fn set_synchronous_standbys(
        &self,
        names: &[String],
        quorum: u32,
        epoch: Epoch,
        _t: Duration,
    ) -> Result<(), DbError> {
        let names = names.to_vec();
        self.act(QUICK, Some(epoch), move |t, id| {
            let s = me(t, id);
            s.sync_quorum = (!names.is_empty()).then_some(quorum);
            s.sync_names = Some(names);
            Ok(())
        })
        .await
    }

    async fn set_replication_slots(&self, slots: &[String], epoch: Epoch, _t: Duration) -> Result<(), DbError> {
        let slots = slots.to_vec();
        self.act(QUICK, Some(epoch), move |t, id| {
            me(t, id).slots = slots;
            Ok(())
        })
        .await
    }

    async fn reload(&self, _timeout: Duration) -> Result<(), DbError> {
        tokio::time::sleep(QUICK).await;
        Ok(())
    }

    async fn set_read_only(&self, read_only: bool, epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        self.act(QUICK, (!read_only).then_some(epoch), move |t, id| {
            me(t, id).read_only = read_only;
            Ok(())
        })
        .await
    }

    async fn hold_commits(&self, held: bool, epoch: Epoch, _timeout: Duration) -> Result<(), DbError> {
        self.act(QUICK, (!held).then_some(epoch), move |t, id| {
            me(t, id).commits_held = held;
            Ok(())
        })
        .await
    }

    async fn end_of_wal(&self, _timeout: Duration) -> Result<Option<Lsn>, DbError> {
        self.act(QUICK, None, |t, id| {
            let s = me(t, id);
            Ok(s.has_data.then_some(Lsn(s.lsn)))
        })
        .await
    }

    async fn commits_between(&self, timeline: TimelineId, from: Lsn, to: Lsn, _t: Duration) -> Result<u64, DbError> {
        self.act(QUICK, None, move |t, id| {
            Ok(t.acked
                .iter()
                .filter(|a| a.node == id && a.timeline == timeline.0 && from.0 < a.lsn && a.lsn <= to.0)
                .count() as u64)
        })
        .await
    }

    fn promotion_signalled(&self) -> bool {
        false
    }
}
