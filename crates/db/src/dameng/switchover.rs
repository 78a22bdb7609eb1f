//! Dameng's switchover steps (`haraft_core::dm_switchover`), each the
//! statements the seed's monitor had the instance run at that step, and
//! the observation of a server in MOUNT those steps are judged by.
//!
//! Each step is idempotent: an agent that crashed after the statements
//! and before its step was committed runs it again on restart, and finds
//! the instance already where the step leaves it.

use super::{Dameng, Instance};
use crate::{DbError, DbStatus, Upstream};
use haraft_core::dm_switchover::DmAction;
use haraft_core::{Epoch, Lsn};
use std::time::Duration;

impl Dameng {
    /// A server in MOUNT: its mode, and where its redo stands (V$RLOG
    /// answers in MOUNT: the position it stopped writing or applying at).
    pub(super) async fn in_mount(&self, instance: &Instance, timeout: Duration) -> DbStatus {
        let at = self.rlog_position(timeout).await;
        if let Some(l) = at {
            self.record_position(l);
        }
        let seen = self.not_serving(instance.role(), true);
        DbStatus { mounted: true, lsn: at.or(seen.lsn), replayed_lsn: at.or(seen.replayed_lsn), ..seen }
    }

    async fn rlog_position(&self, timeout: Duration) -> Option<Lsn> {
        let t = self.table("SELECT CUR_LSN FROM V$RLOG", timeout).await.ok()?;
        t.number(0, "CUR_LSN").filter(|l| *l > 0).map(Lsn)
    }

    /// A statement the seed's monitor runs that haraft does not depend
    /// on: `SP_SET_GLOBAL_DW_STATUS` (its codes are not public) and the
    /// archive status (dm-emul's `SP_SET_ARCH_STATUS`; DM's watcher sets
    /// it internally). A failure is logged, not fatal.
    async fn best_effort(&self, stmt: &str, timeout: Duration) {
        if let Err(e) = self.disql(stmt, timeout).await {
            tracing::warn!("DM switchover: {stmt} failed, going on without it: {e}");
        }
    }

    fn refused(action: DmAction, now: &Instance, needs: &str) -> DbError {
        DbError::Unexpected(format!(
            "DM switchover step {action} refused: the instance is {} {}, the step needs {needs}",
            now.mode, now.status
        ))
    }

    pub(super) async fn switchover_step(
        &self,
        action: DmAction,
        upstream: Option<&Upstream>,
        epoch: Epoch,
        timeout: Duration,
    ) -> Result<(), DbError> {
        self.l.guard.authorise(epoch)?;
        if self.server_pid().is_none() {
            return Err(DbError::Unexpected(format!("DM switchover step {action} refused: dmserver is not running")));
        }
        let now = self.instance(timeout).await?;
        match action {
            DmAction::MountOld => {
                if !now.open() {
                    return Ok(());
                }
                if now.mode != "PRIMARY" {
                    return Err(Self::refused(action, &now, "an OPEN PRIMARY"));
                }
                self.best_effort("SP_SET_GLOBAL_DW_STATUS(0, 6)", timeout).await;
                self.disql("ALTER DATABASE MOUNT", timeout).await?;
            }
            DmAction::ApplyAndMount => {
                if now.mode != "STANDBY" {
                    return Err(Self::refused(action, &now, "a STANDBY"));
                }
                if now.open() {
                    self.best_effort("SP_SET_GLOBAL_DW_STATUS(0, 6)", timeout).await;
                    self.disql("SP_APPLY_KEEP_PKG()", timeout).await?;
                    self.disql("ALTER DATABASE MOUNT", timeout).await?;
                }
            }
            DmAction::SetStandby => {
                if now.open() {
                    return Err(Self::refused(action, &now, "MOUNT (a mode changes only in MOUNT)"));
                }
                if now.mode != "STANDBY" {
                    self.set_mode("STANDBY", timeout).await?;
                }
                self.record_mode(true)?;
            }
            DmAction::OpenPrimary => {
                if now.open() && now.mode == "PRIMARY" {
                    return Ok(());
                }
                if now.open() {
                    return Err(Self::refused(action, &now, "MOUNT (a mode changes only in MOUNT)"));
                }
                self.l.settings.lock().expect("never poisoned").upstream = None;
                self.write_peers_config(None)?;
                if now.mode != "PRIMARY" {
                    self.set_mode("PRIMARY", timeout).await?;
                }
                self.record_mode(false)?;
                self.best_effort("SP_SET_ARCH_STATUS('INVALID')", timeout).await;
                self.disql("ALTER DATABASE OPEN FORCE", timeout).await?;
                self.best_effort("SP_SET_GLOBAL_DW_STATUS(6, 0)", timeout).await;
            }
            DmAction::OpenStandby { .. } => {
                let Some(up) = upstream else {
                    return Err(DbError::Unexpected(format!("DM switchover step {action}: no upstream given")));
                };
                if now.mode != "STANDBY" {
                    return Err(Self::refused(action, &now, "STANDBY mode"));
                }
                if now.open() {
                    return Ok(());
                }
                self.l.settings.lock().expect("never poisoned").upstream = Some(up.clone());
                self.write_peers_config(Some(up))?;
                self.record_mode(true)?;
                self.disql("ALTER DATABASE OPEN FORCE", timeout).await?;
                self.best_effort("SP_SET_GLOBAL_DW_STATUS(6, 0)", timeout).await;
            }
        }
        Ok(())
    }
}
