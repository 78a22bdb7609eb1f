//! What both adapters of the PostgreSQL family (PostgreSQL, openGauss: a
//! PostgreSQL 9.2 fork) do alike: haraft's own files about the database
//! (state directory, passfile, epoch guard, directories kept aside), the
//! identity check, the connection for queries, replication slots and the
//! settings haraft last chose. Every tool call and every setting's name is
//! the adapters' own.

use crate::controldata::{self, ControlData};
use crate::epoch_guard::EpochGuard;
use crate::exec::{self, RunAs};
use crate::{DbError, Upstream};
use haraft_core::{Epoch, Lsn, TimelineId};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

mod settings_file;
mod sql;

pub(crate) use settings_file::READ_ONLY_SETTING;

/// How long the adapter waits for a killed server's last processes to let
/// go of its shared memory segment before it forgets the segment.
const SHMEM_RELEASE_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct PgConfig {
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    /// haraft's own files about this database: epoch guard, passfile, log,
    /// directories kept aside by rebuilds. Outside `data_dir`.
    pub state_dir: PathBuf,
    /// `listen_addresses`.
    pub listen_addresses: String,
    /// How the agent (and the other members) reach this server.
    pub host: String,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub superuser: String,
    pub superuser_password: String,
    pub replication_user: String,
    pub replication_password: String,
    /// The file `replication_password` was read from, read again (first
    /// line) each time the passfile is written; `None` when it came from
    /// the environment.
    pub replication_password_file: Option<PathBuf>,
    /// This member's name: its `application_name` upstream, its slot name.
    pub application_name: String,
    pub run_as: Option<RunAs>,
    /// How many directories set aside by rebuilds to keep (oldest go first).
    pub keep_aside: usize,
    /// `initdb --locale` and `--encoding` at bootstrap: never the agent's
    /// inherited `LANG`/`LC_*`.
    pub initdb_locale: String,
    pub initdb_encoding: String,
}

/// The shared part of an adapter: its configuration, epoch guard, the
/// expected system identifier and the settings haraft last chose.
pub(crate) struct Local {
    pub(crate) cfg: PgConfig,
    pub(crate) guard: EpochGuard,
    pub(crate) expected_system_id: Mutex<Option<u64>>,
    pub(crate) settings: Mutex<Settings>,
    /// The connection observations reuse (opening one costs a server
    /// process and a password exchange, twice a second); dropped when it
    /// closes or a query on it fails.
    client: Mutex<Option<std::sync::Arc<tokio_postgres::Client>>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) upstream: Option<Upstream>,
    /// The other members' databases (see `Database::set_peers`).
    pub(crate) peers: Vec<Upstream>,
    pub(crate) synchronous: Vec<String>,
    /// How many of `synchronous` confirm each commit.
    pub(crate) synchronous_quorum: u32,
    /// New transactions are read-write by default: only while this member
    /// holds the lease (see `set_read_only`).
    pub(crate) writable: bool,
    /// The commit guard: commits wait (see `hold_commits`).
    pub(crate) commits_held: bool,
}

/// Whole seconds for a tool's own `-t`, rounded up, at least 1.
pub(crate) fn secs(timeout: Duration) -> String {
    timeout.as_secs().max(1).to_string()
}

pub(crate) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> DbError {
    DbError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// A timeline history file: one `TLI<tab>LSN<tab>reason` line per earlier
/// timeline, the LSN where it ended. Unreadable lines are skipped.
pub fn parse_timeline_history(text: &str) -> Vec<haraft_core::Fork> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let timeline = TimelineId(words.next()?.parse().ok()?);
            let switch_lsn = Lsn::parse(words.next()?)?;
            Some(haraft_core::Fork { timeline, switch_lsn })
        })
        .collect()
}

/// A `synchronous_standby_names` that haraft wrote, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncSetting {
    /// The member names (without the commit guard's).
    pub names: Vec<String>,
    /// How many of them confirm each commit; `None` while the commit
    /// guard holds commits (all of them and the guard must confirm).
    pub quorum: Option<u32>,
    /// The commit guard is in the list: commits wait.
    pub commits_held: bool,
}

/// `FIRST n (n names)` and `ANY k (names)` as haraft writes them (names
/// double-quoted), or empty; `None` for any other form.
pub fn parse_synchronous_standby_names(text: &str) -> Option<SyncSetting> {
    let text = text.trim();
    if text.is_empty() {
        return Some(SyncSetting { names: Vec::new(), quorum: Some(0), commits_held: false });
    }
    let (any, rest) = match (text.strip_prefix("FIRST "), text.strip_prefix("ANY ")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return None,
    };
    let (count, list) = rest.split_once(' ')?;
    let count: usize = count.parse().ok()?;
    let list = list.trim().strip_prefix('(')?.strip_suffix(')')?;
    let mut names = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut name = String::new();
        loop {
            match chars.next()? {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    name.push('"');
                }
                '"' => break,
                c => name.push(c),
            }
        }
        names.push(name);
    }
    let before = names.len();
    names.retain(|n| n != COMMIT_GUARD_NAME);
    let commits_held = names.len() != before;
    match (any, commits_held) {
        // Held: every name and the guard.
        (false, true) if count == before => Some(SyncSetting { names, quorum: None, commits_held }),
        (false, false) if count == before => Some(SyncSetting { quorum: Some(count as u32), names, commits_held }),
        (true, false) if (1..before).contains(&count) => {
            Some(SyncSetting { quorum: Some(count as u32), names, commits_held })
        }
        _ => None,
    }
}

/// The standby the commit guard adds to `synchronous_standby_names`: no
/// member can have this name (member names have no spaces), so no standby
/// ever confirms for it and every commit waits.
pub const COMMIT_GUARD_NAME: &str = "haraft commit guard";

/// The text of `synchronous_standby_names` for a set of members, `quorum`
/// of which confirm each commit: `FIRST n` naming all n when every one
/// must, `ANY k` otherwise. With `commits_held`, every member and the
/// commit guard's name must confirm: commits wait for a confirmation that
/// never comes.
pub fn synchronous_standby_names(names: &[String], quorum: u32, commits_held: bool) -> String {
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    if commits_held {
        all.push(COMMIT_GUARD_NAME);
    }
    if all.is_empty() {
        return String::new();
    }
    let list: Vec<String> = all.iter().map(|n| quote_ident(n)).collect();
    let quorum = quorum as usize;
    if commits_held || quorum == 0 || quorum >= names.len() {
        format!("FIRST {} ({})", all.len(), list.join(", "))
    } else {
        format!("ANY {quorum} ({})", list.join(", "))
    }
}

impl Local {
    pub(crate) fn new(cfg: PgConfig) -> Local {
        let guard = EpochGuard::new(&cfg.state_dir);
        Local {
            cfg,
            guard,
            expected_system_id: Mutex::new(None),
            settings: Mutex::new(Settings::default()),
            client: Mutex::new(None),
        }
    }

    pub(crate) fn expect_system_identifier(&self, id: u64) {
        *self.expected_system_id.lock().expect("never poisoned") = Some(id);
    }

    /// The value a setting has in haraft's settings file (`haraft.conf`):
    /// `None` without the file or the setting.
    pub(crate) fn settings_file_value(&self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.cfg.data_dir.join("haraft.conf")).ok()?;
        text.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    }

    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.cfg.bin_dir.join(name)
    }

    pub(crate) fn passfile(&self) -> PathBuf {
        self.cfg.state_dir.join("pgpass")
    }

    pub(crate) fn log_file(&self) -> PathBuf {
        self.cfg.state_dir.join("postgresql.log")
    }

    pub(crate) fn has_data(&self) -> bool {
        self.cfg.data_dir.join("PG_VERSION").is_file()
    }

    /// Creates `dir` (0700) owned by the database user.
    pub(crate) fn make_dir(&self, dir: &Path) -> Result<(), DbError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))?;
        if let Some(r) = self.cfg.run_as {
            r.chown(dir).map_err(|e| io_err(dir, e))?;
        }
        Ok(())
    }

    /// Writes a file (0600) owned by the database user.
    pub(crate) fn write_file(&self, path: &Path, text: &str) -> Result<(), DbError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).map_err(|e| io_err(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io_err(path, e))?;
        if let Some(r) = self.cfg.run_as {
            r.chown(path).map_err(|e| io_err(path, e))?;
        }
        Ok(())
    }

    /// The replication password now: its file's first line when it has
    /// one that is readable and not empty, else the one configured.
    pub(crate) fn replication_password(&self) -> String {
        let from_file = self.cfg.replication_password_file.as_ref().and_then(|f| {
            let text = std::fs::read_to_string(f)
                .map_err(|e| tracing::warn!(path = %f.display(), "cannot read the replication password file again ({e}): using the one read at start"))
                .ok()?;
            text.lines().next().filter(|l| !l.is_empty()).map(str::to_string)
        });
        from_file.unwrap_or_else(|| self.cfg.replication_password.clone())
    }

    pub(crate) fn prepare_state_dir(&self) -> Result<(), DbError> {
        self.make_dir(&self.cfg.state_dir)?;
        self.make_dir(&self.cfg.socket_dir)?;
        // libpq's passfile: host:port:database:user:password, ':' and '\' escaped.
        let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
        let text = format!(
            "*:*:*:{}:{}\n*:*:*:{}:{}\n",
            esc(&self.cfg.replication_user),
            esc(&self.replication_password()),
            esc(&self.cfg.superuser),
            esc(&self.cfg.superuser_password)
        );
        self.write_file(&self.passfile(), &text)
    }

    pub(crate) async fn controldata(&self, timeout: Duration) -> Result<ControlData, DbError> {
        let out =
            exec::run(&self.bin("pg_controldata"), [&self.cfg.data_dir], &[("LC_ALL", "C")], self.cfg.run_as, timeout)
                .await?;
        controldata::parse(&out.stdout).map_err(|e| DbError::Unexpected(e.to_string()))
    }

    /// Refuses a data directory of another database.
    pub(crate) async fn check_identity(&self, timeout: Duration) -> Result<(), DbError> {
        let Some(expected) = *self.expected_system_id.lock().expect("never poisoned") else { return Ok(()) };
        if !self.has_data() {
            return Ok(());
        }
        let found = self.controldata(timeout).await?.system_identifier;
        if found != expected {
            return Err(DbError::ForeignDataDir { path: self.cfg.data_dir.display().to_string(), found, expected });
        }
        Ok(())
    }

    /// Removes the System V segment a killed server left (see
    /// [`crate::procs::release_stale_shmem`]), waiting a moment for its
    /// orphaned backends to let go, off the async worker threads.
    pub(crate) async fn release_dead_servers_shmem(&self) {
        let dir = self.cfg.data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || crate::procs::release_stale_shmem(&dir, SHMEM_RELEASE_WAIT)).await;
    }

    /// A server runs in the data directory: its `postmaster.pid` names a
    /// live process working there (`procs::postmaster_pid`; a look at two
    /// files, where `pg_ctl status` cost a process twice a second). A file
    /// whose PID is another process now (after a crash) would also stop
    /// the next start: it is removed, and the dead server's shared memory
    /// segment it names released first.
    pub(crate) async fn server_running(&self) -> Result<bool, DbError> {
        let d = &self.cfg.data_dir;
        if crate::procs::postmaster_pid(d).is_some() {
            return Ok(true);
        }
        let pidfile = d.join("postmaster.pid");
        if pidfile.exists() {
            self.release_dead_servers_shmem().await;
            tracing::warn!(path = %pidfile.display(), "stale postmaster.pid (its PID is another process now): removed");
            match std::fs::remove_file(&pidfile) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&pidfile, e)),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Removes everything inside the data directory (the directory stays:
    /// it may be a mount point).
    pub(crate) fn clear_data_dir(&self) -> Result<(), DbError> {
        for entry in std::fs::read_dir(&self.cfg.data_dir).map_err(|e| io_err(&self.cfg.data_dir, e))? {
            let path = entry.map_err(|e| io_err(&self.cfg.data_dir, e))?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }

    /// Says that the data directory is a copy a rebuild is making: present
    /// from before the copy starts until it is complete.
    pub(crate) fn rebuild_marker(&self) -> PathBuf {
        self.cfg.state_dir.join("rebuild-in-progress")
    }

    /// Before a rebuild copies data in: an earlier rebuild's unfinished
    /// copy is removed, never kept aside (repeated failures cannot push the
    /// real former data directory out of the kept ones); otherwise the
    /// directory is kept aside. Then the marker says a copy is being made;
    /// returns it (removed when the copy is complete, or by the next start).
    pub(crate) fn begin_rebuild(&self, epoch: Epoch) -> Result<PathBuf, DbError> {
        let marker = self.rebuild_marker();
        let data = &self.cfg.data_dir;
        if marker.exists() && data.exists() {
            tracing::info!(data_dir = %data.display(), "removing an unfinished copy of an earlier rebuild");
            self.clear_data_dir()?;
        } else if let Some(aside) = self.set_aside(epoch)? {
            tracing::info!(aside = %aside.display(), "old data directory kept aside");
        }
        self.write_file(&marker, &format!("{}\n", data.display()))?;
        Ok(marker)
    }

    /// Says that a rewind started on the data directory and has not
    /// completed: present from just before the rewind tool runs until it
    /// succeeded or a rebuild replaced the directory. A rewind that fails
    /// part-way can leave a directory that does not start, or worse, one
    /// that starts inconsistent; PostgreSQL's documentation asks for a new
    /// base backup then. On disk, so that an agent that restarts in
    /// between knows it (it is not cleared by a start).
    pub(crate) fn rewind_marker(&self) -> PathBuf {
        self.cfg.state_dir.join("rewind-in-progress")
    }

    /// Just before the rewind tool runs.
    pub(crate) fn begin_rewind(&self) -> Result<(), DbError> {
        let marker = self.rewind_marker();
        self.write_file(&marker, &format!("{}\n", self.cfg.data_dir.display()))
    }

    /// The rewind completed, or a rebuild replaced the directory.
    pub(crate) fn end_rewind(&self) -> Result<(), DbError> {
        let marker = self.rewind_marker();
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&marker, e)),
            _ => Ok(()),
        }
    }

    /// A rewind of the data directory started and did not complete.
    pub(crate) fn rewind_unfinished(&self) -> bool {
        self.rewind_marker().exists()
    }

    /// A server started from the data directory: it is no unfinished copy
    /// (if an operator put data there after a failed rebuild, it is theirs).
    pub(crate) fn end_rebuild(&self) -> Result<(), DbError> {
        let marker = self.rebuild_marker();
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&marker, e)),
            _ => Ok(()),
        }
    }

    /// The other members' databases (`Database::set_peers`).
    pub(crate) fn set_peers(&self, peers: &[Upstream]) {
        self.settings.lock().expect("never poisoned").peers = peers.to_vec();
    }

    /// Moves the data directory aside (for a rebuild) and prunes old ones.
    pub(crate) fn set_aside(&self, epoch: Epoch) -> Result<Option<PathBuf>, DbError> {
        if !self.cfg.data_dir.exists() {
            return Ok(None);
        }
        let aside_root = self.cfg.state_dir.join("aside");
        std::fs::create_dir_all(&aside_root).map_err(|e| io_err(&aside_root, e))?;
        let mut n = 0;
        let target = loop {
            let candidate = aside_root.join(format!("epoch{:08}-{n}", epoch.0));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        match std::fs::rename(&self.cfg.data_dir, &target) {
            Ok(()) => {}
            // The data directory is a mount point or on another filesystem
            // than the state directory (a dedicated volume, as production
            // often has): it cannot be moved aside, and copying it could
            // need as much space again. Its contents are removed instead.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::EBUSY)) => {
                tracing::warn!(
                    data_dir = %self.cfg.data_dir.display(),
                    "the data directory is a mount point or on another filesystem than {}: its contents are removed, not kept aside",
                    aside_root.display()
                );
                self.clear_data_dir()?;
                return Ok(None);
            }
            Err(e) => return Err(io_err(&self.cfg.data_dir, e)),
        }
        let mut kept: Vec<PathBuf> = std::fs::read_dir(&aside_root)
            .map_err(|e| io_err(&aside_root, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        kept.sort();
        while kept.len() > self.cfg.keep_aside {
            let oldest = kept.remove(0);
            std::fs::remove_dir_all(&oldest).map_err(|e| io_err(&oldest, e))?;
        }
        Ok(Some(target))
    }

    /// The end of a stopped server's WAL (see `Database::end_of_wal`),
    /// read with `tool` (pg_waldump, or openGauss's pg_xlogdump) from
    /// the WAL directory `wal_dir`.
    pub(crate) async fn end_of_wal(
        &self,
        tool: &str,
        wal_dir: &str,
        timeout: Duration,
    ) -> Result<Option<Lsn>, DbError> {
        let pg_wal = self.cfg.data_dir.join(wal_dir);
        let segments = crate::wal::segments_newest_first(&pg_wal).map_err(|e| io_err(&pg_wal, e))?;
        let waldump = |args: Vec<std::ffi::OsString>| async move {
            // pg_waldump stops with an error where the valid WAL ends.
            match exec::run(&self.bin(tool), args, &[("LC_ALL", "C")], self.cfg.run_as, timeout).await {
                Ok(out) => Ok((out.stdout, out.stderr)),
                Err(DbError::CommandFailed { stderr_tail, .. }) => Ok((String::new(), stderr_tail)),
                Err(e) => Err(e),
            }
        };
        for segment in segments {
            let (_, stderr) = waldump(vec!["--quiet".into(), segment.clone().into()]).await?;
            let Some((last, next)) = crate::wal::waldump_stop(&stderr) else { continue };
            if next.is_some() {
                return Ok(next);
            }
            // The reason names no position: the end of that last record.
            let timeline = crate::wal::segment_timeline(&segment).unwrap_or(1).to_string();
            let args = ["--path".into(), pg_wal.clone().into(), "--timeline".into(), timeline.into()];
            let mut args: Vec<std::ffi::OsString> = args.into();
            args.extend(["--start".into(), last.to_string().into(), "--limit".into(), "1".into()]);
            let (stdout, _) = waldump(args).await?;
            return Ok(Some(crate::wal::record_end(&stdout).unwrap_or(last)));
        }
        Ok(None)
    }

    /// Commit records in a stopped server's WAL of `timeline` from
    /// `from` to `to` (see `Database::commits_between`).
    pub(crate) async fn commits_between(
        &self,
        tool: &str,
        wal_dir: &str,
        (timeline, from, to): (TimelineId, Lsn, Lsn),
        timeout: Duration,
    ) -> Result<u64, DbError> {
        let pg_wal = self.cfg.data_dir.join(wal_dir);
        let args: Vec<std::ffi::OsString> = vec![
            "--path".into(),
            pg_wal.into(),
            "--timeline".into(),
            timeline.0.to_string().into(),
            "--start".into(),
            from.to_string().into(),
            "--end".into(),
            to.to_string().into(),
            "--rmgr=Transaction".into(),
        ];
        // `to` must lie within the valid WAL (`end_of_wal`): past it
        // pg_waldump fails and nothing is counted.
        let out = exec::run(&self.bin(tool), args, &[("LC_ALL", "C")], self.cfg.run_as, timeout).await?;
        Ok(crate::wal::commit_records(&out.stdout))
    }
}
