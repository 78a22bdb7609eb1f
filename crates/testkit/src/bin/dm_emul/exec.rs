//! What each statement does to the instance: DM's state rules decided
//! here, PostgreSQL moved accordingly (pg.rs).

use crate::common::{self, DmErr, lsn_int, psql, psql_value};
use crate::ini;
use crate::pg::{self, Upstream};
use crate::server::{Server, Status};
use crate::stmt::{self, Mode, Stmt, View};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long after an archive was set INVALID the primary's watcher
/// restores it: the seed's INST_RECOVER_TIME after a switchover (3 s).
const RECOVER_DELAY: Duration = Duration::from_secs(3);

type Answer = Result<String, String>;

fn status_err(msg: &str) -> String {
    DmErr::Status.line(msg)
}

impl Server {
    pub fn execute(&mut self, text: &str) -> Answer {
        let stmt = stmt::parse(text).map_err(|e| DmErr::Syntax.line(&e))?;
        match stmt {
            Stmt::Select { cols, view } => {
                let rows = self.view_rows(view);
                let (cols, rows) = stmt::project(view, &cols, rows)
                    .map_err(|c| DmErr::Column.line(&format!("Invalid column name [{c}]")))?;
                Ok(stmt::table(&cols, &rows))
            }
            Stmt::Mount => {
                if self.status == Status::Mount {
                    return Err(status_err("Invalid database status: already MOUNT"));
                }
                self.mount();
                Ok(String::new())
            }
            Stmt::Open { force } => self.open(force),
            Stmt::SetMode(m) => {
                if self.status != Status::Mount {
                    return Err(status_err("Invalid database status: the mode changes only in MOUNT"));
                }
                if self.watched() && self.alter_mode_status == 0 {
                    return Err(DmErr::AlterModeStatus.line(
                        "Dmwatcher is active, or current configuration(ALTER_MODE_STATUS) not allowed to alter database",
                    ));
                }
                self.state.mode = m;
                self.save()?;
                self.log(&format!("mode set to {}", m.word()));
                Ok(String::new())
            }
            Stmt::SetPara { scope, name, value } => {
                if !(0..=2).contains(&scope) {
                    return Err(DmErr::Syntax.line("Invalid parameter scope"));
                }
                if scope <= 1 && name == "ALTER_MODE_STATUS" {
                    self.alter_mode_status =
                        value.parse().map_err(|_| DmErr::Syntax.line("Invalid parameter value"))?;
                }
                if scope >= 1 {
                    ini::set_key(&self.inst.join("dm.ini"), &name, &value)
                        .map_err(|e| DmErr::Pg.line(&e.to_string()))?;
                }
                Ok(String::new())
            }
            Stmt::SetGlobalDwStatus(from, to) => {
                // Recorded only: the codes are not public (see dameng.md).
                self.dw_status = (from, to);
                Ok(String::new())
            }
            Stmt::ApplyKeepPkg => self.apply_keep_pkg(),
            Stmt::SetArchStatus { valid } => {
                self.state.arch_invalid = !valid;
                self.arch_invalid_since = (!valid).then(Instant::now);
                self.save()?;
                Ok(String::new())
            }
            Stmt::Backup { dir } => self.backup(&dir),
            Stmt::Shutdown { abort } => {
                self.save_lsn();
                if let Some(mut child) = self.pg.take() {
                    pg::stop(&mut child, abort);
                }
                self.exit = true;
                Ok(String::new())
            }
            Stmt::Other(sql) => {
                if self.status != Status::Open {
                    return Err(status_err("Invalid database status: objects are accessible only when OPEN"));
                }
                let rows = psql(self.port, &self.state.pwd, &sql, true).map_err(|e| DmErr::Pg.line(&e))?;
                match rows.split_first() {
                    Some((header, rows)) => Ok(stmt::table(header, rows)),
                    None => Ok(String::new()),
                }
            }
        }
    }

    /// OPEN: NORMAL and PRIMARY become a writable PostgreSQL (promoted if
    /// it was in recovery: a new timeline); STANDBY streams from its
    /// upstream. Without FORCE it is refused while the archive is INVALID.
    pub fn open(&mut self, force: bool) -> Answer {
        if self.status == Status::Open {
            return Err(status_err("Invalid database status: already OPEN"));
        }
        if !force && self.state.arch_invalid && self.state.mode != Mode::Normal {
            return Err(DmErr::ArchInvalid.line("Archive status is INVALID, use ALTER DATABASE OPEN FORCE"));
        }
        let upstream = match self.state.mode {
            Mode::Standby => {
                let u = self.upstream().ok_or_else(|| {
                    status_err(
                        "no primary to stream from: dmarch.ini REALTIME destination or another dmmal.ini instance",
                    )
                })?;
                pg::set_standby_signal(&self.inst).map_err(|e| DmErr::Pg.line(&e.to_string()))?;
                Some(u)
            }
            Mode::Normal | Mode::Primary => None,
        };
        let mut child =
            pg::start(&self.inst, self.port, &self.state.pwd, upstream.as_ref()).map_err(|e| DmErr::Pg.line(&e))?;
        let ready = pg::wait_ready(&mut child, self.port, &self.state.pwd).and_then(|()| {
            if self.state.mode != Mode::Standby && pg::has_standby_signal(&self.inst) {
                pg::promote(self.port, &self.state.pwd)
            } else {
                Ok(())
            }
        });
        if let Err(e) = ready {
            pg::stop(&mut child, true);
            return Err(DmErr::Pg.line(&e));
        }
        self.pg = Some(child);
        self.status = Status::Open;
        if force && self.state.mode == Mode::Standby {
            // A standby's realtime archives are invalid by rule; FORCE
            // clears its own flag.
            self.state.arch_invalid = false;
            self.arch_invalid_since = None;
            self.save()?;
        }
        self.log("SYSTEM IS READY.");
        Ok(String::new())
    }

    /// MOUNT: PostgreSQL stops (fast: a streaming standby receives all
    /// WAL up to the shutdown checkpoint first), so nothing can be read or
    /// written; its last position is kept for V$RLOG.
    pub fn mount(&mut self) {
        self.save_lsn();
        if let Some(mut child) = self.pg.take() {
            pg::stop(&mut child, false);
        }
        self.status = Status::Mount;
        self.log("database mounted");
    }

    pub fn save_lsn(&mut self) {
        if let Some(cur) = self.lsns().map(|l| l[3]) {
            self.state.lsn = Some(cur);
            let _ = self.save();
        }
    }

    /// On a STANDBY: waits until everything received was replayed.
    fn apply_keep_pkg(&mut self) -> Answer {
        if self.state.mode != Mode::Standby {
            return Err(DmErr::NotStandby.line("SP_APPLY_KEEP_PKG is valid only on a STANDBY"));
        }
        if self.pg.is_none() {
            return Ok(String::new());
        }
        let sql = "SELECT pg_last_wal_replay_lsn() >= coalesce(pg_last_wal_receive_lsn(), '0/0')";
        if common::wait_until(pg::PG_WAIT, || psql_value(self.port, &self.state.pwd, sql).as_deref() == Some("t")) {
            Ok(String::new())
        } else {
            Err(DmErr::Pg.line("redo apply did not catch up with what was received"))
        }
    }

    /// Where a STANDBY streams from: its dmarch.ini REALTIME destination
    /// when there is exactly one, else the only other dmmal.ini instance;
    /// its host and client port come from dmmal.ini.
    fn upstream(&self) -> Option<Upstream> {
        let mal = ini::mal_insts(&self.inst);
        let realtime: Vec<String> =
            ini::archives(&self.inst).into_iter().filter(|(t, _)| t == "REALTIME").map(|(_, d)| d).collect();
        let others: Vec<&ini::MalInst> = mal.iter().filter(|m| m.name != self.name).collect();
        let peer = match (realtime.as_slice(), others.as_slice()) {
            ([dest], _) => mal.iter().find(|m| &m.name == dest)?,
            (_, [only]) => *only,
            _ => return None,
        };
        Some(Upstream { host: peer.inst_host.clone(), port: peer.inst_port, app_name: self.name.clone() })
    }

    /// [CKPT_LSN, FILE_LSN, FLUSH_LSN, CUR_LSN] from the running server.
    fn lsns(&self) -> Option<[u64; 4]> {
        self.pg.as_ref()?;
        let sql = "SELECT CASE WHEN pg_is_in_recovery() THEN \
            concat_ws(',', (pg_control_checkpoint()).redo_lsn, pg_last_wal_replay_lsn(), \
              coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), pg_last_wal_replay_lsn()) \
            ELSE concat_ws(',', (pg_control_checkpoint()).redo_lsn, pg_current_wal_flush_lsn(), \
              pg_current_wal_flush_lsn(), pg_current_wal_insert_lsn()) END";
        let text = psql_value(self.port, &self.state.pwd, sql)?;
        let v: Vec<u64> = text.split(',').filter_map(lsn_int).collect();
        v.try_into().ok()
    }

    fn streaming(&self, dest: &str) -> bool {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{}' AND state = 'streaming'",
            dest.replace('\'', "''")
        );
        self.pg.is_some() && psql_value(self.port, &self.state.pwd, &sql).is_some_and(|n| n != "0")
    }

    /// The primary watcher's recovery: once RECOVER_DELAY passed since the
    /// archive was set INVALID and every realtime standby streams again,
    /// the archive is VALID again.
    /// RECOVER_DELAY passed since the archive was set INVALID (or it was
    /// set by an earlier dmserver run).
    fn recovery_due(&self) -> bool {
        self.arch_invalid_since.is_none_or(|t| t.elapsed() >= RECOVER_DELAY)
    }

    pub fn watcher_recovery(&mut self) {
        let due = self.recovery_due();
        if !self.state.arch_invalid || !due || self.state.mode != Mode::Primary || self.status != Status::Open {
            return;
        }
        let dests: Vec<String> =
            ini::archives(&self.inst).into_iter().filter(|(t, _)| t == "REALTIME").map(|(_, d)| d).collect();
        if !dests.is_empty() && dests.iter().all(|d| self.streaming(d)) {
            self.state.arch_invalid = false;
            self.arch_invalid_since = None;
            let _ = self.save();
            self.log("archive recovered: VALID");
        }
    }

    fn view_rows(&mut self, view: View) -> Vec<Vec<String>> {
        match view {
            View::Instance => {
                vec![vec![self.name.clone(), self.state.mode.word().into(), self.status.word().into()]]
            }
            View::ArchStatus => {
                self.watcher_recovery();
                let primary_open = self.state.mode == Mode::Primary && self.status == Status::Open;
                // The watcher recovers each standby on its own: once the
                // delay passed, a destination that streams is VALID even
                // while another one is still being recovered.
                let recovered = !self.state.arch_invalid || self.recovery_due();
                ini::archives(&self.inst)
                    .into_iter()
                    .map(|(kind, dest)| {
                        let valid = kind == "LOCAL" || (primary_open && recovered && self.streaming(&dest));
                        let st = if valid { "VALID" } else { "INVALID" };
                        vec![kind, dest, st.into(), self.name.clone()]
                    })
                    .collect()
            }
            View::Rlog => {
                let l = self.lsns().unwrap_or([self.state.lsn.unwrap_or(0); 4]);
                vec![l.iter().map(u64::to_string).collect()]
            }
        }
    }

    /// Online `BACKUP DATABASE ... BACKUPSET 'dir'`: pg_basebackup of the
    /// running server into dir/pgdata, plus the set's description.
    fn backup(&mut self, dir: &str) -> Answer {
        if self.status != Status::Open {
            return Err(status_err("Invalid database status: online backup needs OPEN"));
        }
        let out = common::run(
            Command::new(common::pg_bin("pg_basebackup"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "SYSDBA", "-X", "stream", "-c", "fast"])
                .arg("-D")
                .arg(std::path::Path::new(dir).join("pgdata"))
                .env("PGPASSWORD", &self.state.pwd),
        )
        .map_err(|e| DmErr::Pg.line(&e.to_string()))?;
        if !out.status.success() {
            return Err(DmErr::Pg.line(String::from_utf8_lossy(&out.stderr).trim()));
        }
        crate::rman::write_set_info(std::path::Path::new(dir), &self.inst, &self.state.pwd)
            .map_err(|e| DmErr::Pg.line(&e))?;
        Ok(String::new())
    }
}
