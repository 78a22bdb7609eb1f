//! A model of PostgreSQL servers (behaviour of PostgreSQL 16 as the
//! `postgres` adapter drives it), one per simulated member, all in one
//! [`Servers`] table so that streaming, rewind and base backup can look
//! at the upstream.
//!
//! What it keeps per server: whether a data directory exists and its
//! system identifier, running or not and how it stopped, role, timeline
//! and the forks of its history, the end of its WAL, its upstream,
//! `default_transaction_read_only`, the commit guard, synchronous standby
//! names and quorum, slots, and the highest epoch that acted on it.
//!
//! Where it cannot be faithful: WAL is a position, not records (a write is
//! identified by its timeline and end position); timeline ids are unique
//! across the cluster (PostgreSQL picks the highest it knows plus one, so
//! two servers promoted apart can pick the same id); streaming moves in
//! fixed steps on the replication tick; no crash recovery time, no
//! checkpoints, no disk space, no archive.

use haraft_core::{DbRole, DbStatus, Epoch, Fork, Lsn, Replica, TimelineId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Bytes a standby catches up per replication tick.
pub const STREAM_STEP: u64 = 64 * 1024;
/// Bytes one client write adds to the WAL.
pub const WRITE_BYTES: u64 = 128;

#[derive(Clone, Debug, Default)]
pub struct Server {
    pub name: String,
    pub has_data: bool,
    pub system_identifier: Option<u64>,
    pub expected_sysid: Option<u64>,
    pub running: bool,
    pub clean_shutdown: bool,
    pub role: Option<DbRole>,
    pub timeline: u32,
    pub forks: Vec<Fork>,
    pub lsn: u64,
    pub upstream: Option<u64>,
    pub streaming: bool,
    pub read_only: bool,
    pub commits_held: bool,
    pub sync_names: Option<Vec<String>>,
    pub sync_quorum: Option<u32>,
    pub slots: Vec<String>,
    pub epoch_high: Epoch,
    /// The data directory is on a host that crashed: the server is down
    /// until the agent starts it again.
    pub crashed: bool,
    /// The file system of the data directory is full: the server stopped
    /// (PostgreSQL PANICs when it cannot write WAL) and nothing that
    /// writes there (start, pg_rewind, pg_basebackup, initdb) succeeds
    /// until space is freed.
    pub disk_full: bool,
    /// The next pg_rewind fails part-way (I/O error, killed), leaving the
    /// data directory `damaged`, as PostgreSQL's documentation warns.
    pub rewind_breaks: bool,
    /// A data directory a failed pg_rewind left behind: it does not start;
    /// only a new base backup replaces it.
    pub damaged: bool,
    /// The adapter's marker beside the data directory (`rewind-in-progress`
    /// in its state directory): a pg_rewind started and has not succeeded
    /// since, nor a base backup replaced the directory. It outlives the
    /// agent, as the file does.
    pub rewind_unfinished: bool,
}

impl Server {
    /// Takes client writes: a running primary, read-write by default, its
    /// commits not held.
    pub fn accepts_writes(&self) -> bool {
        self.running && self.role == Some(DbRole::Primary) && !self.read_only && !self.commits_held
    }

    /// Holds the write at (`timeline`, `lsn`) in its history.
    pub fn holds(&self, timeline: u32, lsn: u64) -> bool {
        if !self.has_data {
            return false;
        }
        if self.timeline == timeline {
            return lsn <= self.lsn;
        }
        self.forks.iter().any(|f| f.timeline.0 == timeline && lsn <= f.switch_lsn.0)
    }

    /// Where the history of timeline `timeline` ends on this server
    /// (`None`: never on it; `u64::MAX`: still current).
    fn end_of_timeline(&self, timeline: u32) -> Option<u64> {
        if self.timeline == timeline {
            return Some(u64::MAX);
        }
        self.forks.iter().find(|f| f.timeline.0 == timeline).map(|f| f.switch_lsn.0)
    }

    /// Whether this server's WAL is a prefix of `up`'s history.
    pub fn can_follow(&self, up: &Server) -> bool {
        let Some(end) = up.end_of_timeline(self.timeline) else { return false };
        let limit = if end == u64::MAX { up.lsn } else { end };
        self.system_identifier == up.system_identifier && self.lsn <= limit
    }

    /// Where this server's history and `source`'s part: the end of the
    /// newest timeline both hold, as far as both hold it.
    pub fn diverged_at(&self, source: &Server) -> Option<(u32, u64)> {
        let mine = self.forks.iter().map(|f| (f.timeline.0, f.switch_lsn.0)).chain([(self.timeline, self.lsn)]);
        mine.filter_map(|(tl, end)| {
            let theirs = source.end_of_timeline(tl)?;
            let theirs = if theirs == u64::MAX { source.lsn } else { theirs };
            Some((tl, end.min(theirs)))
        })
        .next_back()
    }

    /// What the adapter writes into the settings of a standby: no
    /// synchronous standbys, no commits held (`postgres::write_settings`).
    pub fn standby_settings(&mut self) {
        self.sync_names = None;
        self.sync_quorum = None;
        self.commits_held = false;
    }

    pub fn status(&self) -> DbStatus {
        let mut s = DbStatus { has_data: self.has_data, running: self.running, ..DbStatus::default() };
        if !self.has_data {
            return s;
        }
        s.role = self.role;
        s.timeline = Some(TimelineId(self.timeline));
        s.lsn = Some(Lsn(self.lsn));
        s.replayed_lsn = Some(Lsn(self.lsn));
        s.system_identifier = self.system_identifier;
        s.clean_shutdown = (!self.running).then_some(self.clean_shutdown);
        s.read_only_default = Some(self.read_only);
        s.commits_held = self.commits_held && self.running;
        s.rewind_unfinished = self.rewind_unfinished;
        if self.running && self.role == Some(DbRole::Standby) && self.streaming {
            s.streaming_from = self.upstream.map(|u| format!("{}:5432", host_of(u)));
        }
        if self.running && self.role == Some(DbRole::Primary) {
            // haraft's settings file always sets `synchronous_standby_names`
            // (empty until a set is written), which the adapter reads as no
            // names and quorum 0. (Reporting `None`, "not haraft's
            // setting", made every primary leave its synchronous setting
            // alone: no set ever formed, and a synchronous switchover waited
            // for its target to join one (seed 1013).)
            s.synchronous_names = Some(self.sync_names.clone().unwrap_or_default());
            s.synchronous_quorum = if self.commits_held { None } else { Some(self.sync_quorum.unwrap_or(0)) };
            s.slots = Some(self.slots.clone());
            s.forks = Some(self.forks.clone());
        }
        s
    }
}

/// The host name of member `id`'s database (its `postgresql.listen`).
pub fn host_of(id: u64) -> String {
    format!("10.0.0.{id}")
}

pub fn id_of_host(host: &str) -> Option<u64> {
    host.strip_prefix("10.0.0.")?.parse().ok()
}

/// A client write the database acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub node: u64,
    pub timeline: u32,
    pub lsn: u64,
    pub epoch: Epoch,
}

#[derive(Default)]
pub struct Table {
    pub servers: BTreeMap<u64, Server>,
    /// The next timeline id a promotion takes.
    pub next_timeline: u32,
    pub next_sysid: u64,
    pub acked: Vec<Acked>,
}

/// Every member's database server, shared by the model adapters, the
/// replication tick, the client and the checker.
#[derive(Clone, Default)]
pub struct Servers(pub Arc<Mutex<Table>>);

impl Servers {
    pub fn new(ids: &[u64]) -> Servers {
        let mut t = Table { next_timeline: 2, next_sysid: 7_000_000_000_000_000_001, ..Table::default() };
        for id in ids {
            t.servers.insert(*id, Server { name: format!("node{id}"), ..Server::default() });
        }
        Servers(Arc::new(Mutex::new(t)))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().expect("the model lock is never held across a panic")
    }

    /// One replication tick: every running standby with a reachable,
    /// running upstream whose history it is on catches up by a step;
    /// primaries learn who streams from them. `reachable(from, to)` says
    /// whether the network carries `from`'s WAL to `to`.
    pub fn replicate(&self, reachable: &dyn Fn(u64, u64) -> bool) {
        let mut t = self.lock();
        // Every standby moves against its upstream as it was before this
        // step (decided first, applied after), without copying the table:
        // this runs every checker step.
        // (standby, streaming, new WAL end, new timeline and history)
        type Move = (u64, bool, u64, Option<(u32, Vec<Fork>)>);
        let mut moves: Vec<Move> = Vec::new();
        for (id, s) in t.servers.iter() {
            let follows = s.running && s.role == Some(DbRole::Standby);
            let up = s.upstream.filter(|_| follows).and_then(|u| t.servers.get(&u).map(|up| (u, up)));
            let Some((_, up)) =
                up.filter(|(u, up)| up.running && up.has_data && reachable(*u, *id) && s.can_follow(up))
            else {
                if s.streaming {
                    moves.push((*id, false, s.lsn, None));
                }
                continue;
            };
            let lsn = up.lsn.min(s.lsn + STREAM_STEP);
            let switch = (s.timeline != up.timeline && lsn >= up.end_of_timeline(s.timeline).unwrap_or(0))
                .then(|| (up.timeline, up.forks.clone()));
            moves.push((*id, true, lsn, switch));
        }
        for (id, streaming, lsn, switch) in moves {
            let Some(s) = t.servers.get_mut(&id) else { continue };
            s.streaming = streaming;
            s.lsn = lsn;
            if let Some((timeline, forks)) = switch {
                s.timeline = timeline;
                s.forks = forks;
            }
        }
    }

    /// Who streams from `primary`, by name, and whether each counts as
    /// synchronous (named, streaming, caught up within a step).
    pub fn replicas_of(&self, primary: u64) -> Vec<Replica> {
        let t = self.lock();
        let Some(p) = t.servers.get(&primary) else { return Vec::new() };
        let names = p.sync_names.clone().unwrap_or_default();
        t.servers
            .values()
            .filter(|s| s.running && s.role == Some(DbRole::Standby) && s.upstream == Some(primary) && s.streaming)
            .map(|s| Replica { name: s.name.clone(), streaming: true, sync: names.contains(&s.name) })
            .collect()
    }

    /// Whether a commit at `lsn` on `primary` is confirmed by its
    /// synchronous standbys (always, without synchronous names).
    pub fn commit_confirmed(&self, primary: u64, timeline: u32, lsn: u64) -> bool {
        let t = self.lock();
        let Some(p) = t.servers.get(&primary) else { return false };
        let (Some(names), Some(quorum)) = (&p.sync_names, p.sync_quorum) else { return true };
        if names.is_empty() || quorum == 0 {
            return true;
        }
        let confirmed = t
            .servers
            .values()
            .filter(|s| names.contains(&s.name) && s.upstream == Some(primary) && s.streaming)
            .filter(|s| s.timeline == timeline && s.lsn >= lsn)
            .count();
        confirmed as u32 >= quorum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(timeline: u32, lsn: u64, forks: &[(u32, u64)]) -> Server {
        Server {
            has_data: true,
            system_identifier: Some(1),
            timeline,
            lsn,
            forks: forks.iter().map(|(t, l)| Fork { timeline: TimelineId(*t), switch_lsn: Lsn(*l) }).collect(),
            ..Server::default()
        }
    }

    #[test]
    fn a_standby_follows_only_a_history_it_is_on() {
        let primary = server(2, 500, &[(1, 300)]);
        assert!(server(1, 300, &[]).can_follow(&primary), "at the switch point of the old timeline");
        assert!(server(2, 400, &[(1, 300)]).can_follow(&primary));
        assert!(!server(1, 350, &[]).can_follow(&primary), "wrote past the switch point: needs a rewind");
        assert!(!server(3, 10, &[(1, 5)]).can_follow(&primary), "a timeline the primary never had");
        let mut foreign = server(1, 100, &[]);
        foreign.system_identifier = Some(2);
        assert!(!foreign.can_follow(&primary), "another system");
    }

    #[test]
    fn writes_survive_only_on_the_history_that_holds_them() {
        let s = server(3, 900, &[(1, 300), (2, 600)]);
        assert!(s.holds(1, 300) && s.holds(2, 600) && s.holds(3, 900));
        assert!(!s.holds(1, 301) && !s.holds(2, 601) && !s.holds(3, 901) && !s.holds(4, 1));
        assert_eq!(server(1, 350, &[]).diverged_at(&server(2, 500, &[(1, 300)])), Some((1, 300)));
    }

    #[test]
    fn a_synchronous_commit_needs_its_quorum_streaming_and_caught_up() {
        let servers = Servers::new(&[1, 2]);
        {
            let mut t = servers.lock();
            let p = t.servers.get_mut(&1).expect("node 1");
            *p = Server { name: "node1".into(), running: true, role: Some(DbRole::Primary), ..server(1, 500, &[]) };
            p.sync_names = Some(vec!["node2".into()]);
            p.sync_quorum = Some(1);
            let s = t.servers.get_mut(&2).expect("node 2");
            *s = Server { name: "node2".into(), running: true, role: Some(DbRole::Standby), ..server(1, 100, &[]) };
            s.upstream = Some(1);
        }
        assert!(!servers.commit_confirmed(1, 1, 500), "the standby has not received it");
        servers.replicate(&|_, _| true);
        assert!(servers.commit_confirmed(1, 1, 500), "streamed and caught up");
        servers.lock().servers.get_mut(&2).expect("node 2").lsn = 100;
        servers.replicate(&|_, _| false);
        assert!(!servers.commit_confirmed(1, 1, 500), "cut off: not streaming");
    }
}
