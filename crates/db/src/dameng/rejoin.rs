//! How a DM instance rejoins: a new copy of the source (online backup,
//! dminit, dmrman restore), and the identity haraft gives a new database.

use super::{Dameng, IDENTITY_FILE, IDENTITY_TABLE};
use crate::local::io_err;
use crate::{Database, DbError, StopMode, Upstream, exec};
use haraft_core::Epoch;
use std::time::Duration;

impl Dameng {
    /// A new copy of `source` in a fresh instance: online backup on the
    /// source, dminit, restore, recover; left stopped.
    pub(super) async fn restore_from(&self, source: &Upstream, epoch: Epoch, timeout: Duration) -> Result<(), DbError> {
        let c = &self.l.cfg;
        let stmt = format!("SELECT ID FROM {IDENTITY_TABLE}");
        let source_id = self.table_at(&source.host, source.port, &stmt, timeout).await?.number(0, "ID");
        let expected = *self.l.expected_system_id.lock().expect("never poisoned");
        if let (Some(expected), Some(found)) = (expected, source_id)
            && expected != found
        {
            return Err(DbError::Unexpected(format!(
                "rebuild refused: {} holds database {found}, this cluster's is {expected}",
                source.name
            )));
        }
        let Some(source_id) = source_id else {
            return Err(DbError::Unexpected(format!("{} has no {IDENTITY_TABLE}: not a haraft database", source.name)));
        };
        if let Some(pid) = self.server_pid() {
            self.stop(StopMode::Immediate, epoch, timeout).await?;
            self.wait_exit(pid, timeout).await?;
        }
        let marker = self.l.begin_rebuild(epoch)?;
        // The source's dmserver writes the set (see the module doc).
        let backups = self.state_file("backup");
        if backups.exists() {
            std::fs::remove_dir_all(&backups).map_err(|e| io_err(&backups, e))?;
        }
        self.l.make_dir(&backups)?;
        let set = backups.join("full");
        let stmt = format!("BACKUP DATABASE FULL BACKUPSET '{}'", set.display());
        self.disql_at(&source.host, source.port, &stmt, timeout).await?;
        self.dminit(timeout).await?;
        let ini = self.dm_ini().display().to_string();
        for ctl in [
            format!("RESTORE DATABASE '{ini}' FROM BACKUPSET '{}'", set.display()),
            format!("RECOVER DATABASE '{ini}' FROM BACKUPSET '{}'", set.display()),
            format!("RECOVER DATABASE '{ini}' UPDATE DB_MAGIC"),
        ] {
            exec::run(&self.l.bin("dmrman"), [format!("CTLSTMT={ctl}")], &[], c.run_as, timeout).await?;
        }
        self.l.write_file(&c.data_dir.join(IDENTITY_FILE), &format!("{source_id}\n"))?;
        self.record_mode(true)?;
        self.record_stop(true)?;
        let _ = std::fs::remove_file(self.state_file("dameng-position"));
        std::fs::remove_dir_all(&backups).map_err(|e| io_err(&backups, e))?;
        std::fs::remove_file(&marker).map_err(|e| io_err(&marker, e))
    }
}

/// A new system identifier: seconds and microseconds since the epoch and
/// the PID, as PostgreSQL's initdb draws one, in 63 bits (DM's BIGINT).
pub(super) fn new_identity() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let id = (now.as_secs() << 32) | (u64::from(now.subsec_micros()) << 12) | u64::from(std::process::id() & 0xFFF);
    id & (i64::MAX as u64)
}
