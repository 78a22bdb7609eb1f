//! The highest epoch that has acted on this database, kept in a file
//! outside the data directory (which a rebuild replaces). An action with an
//! older epoch is refused: a deposed agent's late decision cannot touch the
//! database.

use crate::DbError;
use haraft_core::Epoch;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct EpochGuard {
    path: PathBuf,
}

impl EpochGuard {
    pub fn new(dir: &Path) -> EpochGuard {
        EpochGuard { path: dir.join("db-epoch") }
    }

    /// The file it keeps the highest epoch in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: std::io::Error) -> DbError {
        DbError::Io { path: self.path.display().to_string(), message: e.to_string() }
    }

    pub fn highest(&self) -> Result<Epoch, DbError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse().map(Epoch).map_err(|_| DbError::Io {
                path: self.path.display().to_string(),
                message: format!(
                    "not an epoch: {:?}; remove the file only if you know no older agent is running",
                    text.trim()
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Epoch(0)),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Records `epoch` (durably) unless an newer one already acted.
    pub fn authorise(&self, epoch: Epoch) -> Result<(), DbError> {
        let highest = self.highest()?;
        if epoch < highest {
            return Err(DbError::StaleEpoch { given: epoch, highest });
        }
        if epoch > highest {
            let tmp = self.path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp).map_err(|e| self.io(e))?;
            writeln!(f, "{}", epoch.0).map_err(|e| self.io(e))?;
            f.sync_all().map_err(|e| self.io(e))?;
            std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_epochs_are_refused_equal_and_newer_pass() {
        let dir = tempfile::tempdir().unwrap();
        let g = EpochGuard::new(dir.path());
        assert_eq!(g.highest().unwrap(), Epoch(0));
        g.authorise(Epoch(3)).unwrap();
        g.authorise(Epoch(3)).unwrap();
        assert_eq!(g.authorise(Epoch(2)), Err(DbError::StaleEpoch { given: Epoch(2), highest: Epoch(3) }));
        g.authorise(Epoch(4)).unwrap();
        // Survives a new guard on the same directory (a restart).
        assert_eq!(EpochGuard::new(dir.path()).highest().unwrap(), Epoch(4));
        std::fs::write(dir.path().join("db-epoch"), "garbage").unwrap();
        assert!(matches!(g.highest(), Err(DbError::Io { .. })));
    }
}
