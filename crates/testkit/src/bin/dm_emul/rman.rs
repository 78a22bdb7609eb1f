//! `dmrman CTLSTMT="..."`: the offline backup/restore pair DM's public
//! deployment guides use to make a standby (BACKUP DATABASE '<ini>' ...
//! BACKUPSET '<dir>'; RESTORE DATABASE '<ini>' FROM BACKUPSET '<dir>';
//! RECOVER DATABASE '<ini>' FROM BACKUPSET '<dir>' | UPDATE DB_MAGIC).
//! A backup set is `<dir>/pgdata` (a copy of the PostgreSQL directory, or
//! pg_basebackup's for the online `BACKUP DATABASE` through disql) and
//! `<dir>/dm_emul_backupset` (the source instance and its SYSDBA
//! password, which the restored database has, as in DM).

use crate::common::{self, copy_tree};
use crate::dminit::key_values;
use crate::state::State;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const INFO: &str = "dm_emul_backupset";

pub fn write_set_info(dir: &Path, source: &Path, pwd: &str) -> Result<(), String> {
    let path = dir.join(INFO);
    std::fs::write(&path, format!("SOURCE={}\nPWD={pwd}\n", source.display())).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())
}

fn set_pwd(dir: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(dir.join(INFO)).map_err(|e| format!("[{}] is not a backup set: {e}", dir.display()))?;
    text.lines().find_map(|l| l.strip_prefix("PWD=")).map(str::to_owned).ok_or_else(|| "backup set has no PWD".into())
}

/// The quoted strings of a statement, in order.
fn quoted(text: &str) -> Vec<String> {
    text.split('\'').skip(1).step_by(2).map(str::to_owned).collect()
}

pub fn main(argv: &[String]) -> i32 {
    println!("dmrman V8");
    let stmt = match key_values(argv) {
        Ok(kv) => kv.get("CTLSTMT").cloned(),
        Err(e) => {
            println!("{e}");
            return 1;
        }
    };
    let Some(stmt) = stmt else {
        println!("dm-emul's dmrman runs only CTLSTMT=\"...\" (no interactive mode)");
        return 1;
    };
    println!("RMAN> {stmt}");
    let started = std::time::Instant::now();
    match run(&stmt) {
        Ok(done) => {
            println!("{done}");
            println!("time used: {:.3}(ms)", started.elapsed().as_secs_f64() * 1000.0);
            0
        }
        Err(e) => {
            println!("{e}");
            1
        }
    }
}

fn run(stmt: &str) -> Result<&'static str, String> {
    let upper = stmt.to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    let q = quoted(stmt);
    let inst_of = |ini: &str| -> Result<PathBuf, String> {
        let p = std::fs::canonicalize(ini).map_err(|e| format!("[-8003]:ini file [{ini}] not found: {e}"))?;
        let inst = p.parent().ok_or("ini file has no directory")?.to_path_buf();
        if let Some(pid) = common::running_server(&inst) {
            return Err(format!("[-8004]:the database is running (dmserver pid {pid}): dmrman works offline"));
        }
        Ok(inst)
    };
    match (words.first().copied(), words.get(1).copied()) {
        (Some("BACKUP"), Some("DATABASE")) if upper.contains("BACKUPSET") && q.len() == 2 => {
            let inst = inst_of(&q[0])?;
            let dir = Path::new(&q[1]);
            if dir.join("pgdata").exists() {
                return Err(format!("[-8005]:backup set [{}] already exists", dir.display()));
            }
            let state = State::read(&inst).map_err(|e| e.to_string())?;
            copy_tree(&common::pgdata(&inst), &dir.join("pgdata")).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(dir.join("pgdata").join("postmaster.pid"));
            write_set_info(dir, &inst, &state.pwd)?;
            Ok("backup successfully!")
        }
        (Some("RESTORE"), Some("DATABASE")) if upper.contains("FROM BACKUPSET") && q.len() == 2 => {
            let inst = inst_of(&q[0])?;
            let dir = Path::new(&q[1]);
            let pwd = set_pwd(dir)?;
            let target = common::pgdata(&inst);
            let staging = common::emul_dir(&inst).join("pgdata.restoring");
            let _ = std::fs::remove_dir_all(&staging);
            copy_tree(&dir.join("pgdata"), &staging).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(staging.join("postmaster.pid"));
            if target.exists() {
                std::fs::remove_dir_all(&target).map_err(|e| e.to_string())?;
            }
            std::fs::rename(&staging, &target).map_err(|e| e.to_string())?;
            let mut state = State::read(&inst).map_err(|e| e.to_string())?;
            state.pwd = pwd;
            state.lsn = None;
            state.arch_invalid = false;
            state.write(&inst).map_err(|e| e.to_string())?;
            Ok("restore successfully.")
        }
        (Some("RECOVER"), Some("DATABASE")) if !q.is_empty() => {
            // The restored PostgreSQL replays its WAL when it starts; there
            // is nothing left to do here (DB_MAGIC has no equivalent).
            inst_of(&q[0])?;
            Ok("recover successfully!")
        }
        _ => Err(format!("[-2007]:Syntax error: dm-emul's dmrman does not support [{stmt}]")),
    }
}
