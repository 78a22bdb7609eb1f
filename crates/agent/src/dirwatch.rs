//! Wakes the event loop when a file appears in or leaves the database's
//! data directory (Linux inotify): a promote request (`promote`,
//! `pg_ctl promote`, `pg_promote()`, openGauss's `failover`/`switchover`
//! files), `standby.signal` removed, `postmaster.pid` written. The loop
//! then looks at the directory (`Database::promotion_signalled`) at once,
//! instead of polling it with a few `stat()` calls every 50 ms.
//!
//! The data directory may not exist yet (before bootstrap) and is replaced
//! by a rebuild, so the parent directory is watched too and the data
//! directory's watch is added again after every event. When inotify is not
//! available the loop falls back to polling (`DbSide::next_due`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;

/// An inotify instance watching a data directory and its parent.
pub struct DirWatch {
    fd: AsyncFd<OwnedFd>,
    data_dir: CString,
}

const DIR_MASK: u32 = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;

impl DirWatch {
    /// Watches `data_dir` (if it exists) and its parent (which must).
    pub fn new(data_dir: &Path) -> std::io::Result<DirWatch> {
        let parent = absolute_parent(data_dir)?;
        // SAFETY: inotify_init1 takes flags only; the result is checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        add_watch(owned.as_raw_fd(), &c_path(&parent)?, DIR_MASK)?;
        let data_dir = c_path(data_dir)?;
        // Absent until bootstrap: added again after every event.
        let _ = add_watch(owned.as_raw_fd(), &data_dir, DIR_MASK);
        // SAFETY: the OwnedFd keeps the descriptor open, and the same, for
        // as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(DirWatch { fd, data_dir })
    }

    /// (Re)adds the data directory's watch: a directory created or
    /// replaced since gets one; the same directory keeps its watch.
    fn watch_data_dir(&self) {
        let _ = add_watch(self.fd.get_ref().as_raw_fd(), &self.data_dir, DIR_MASK);
    }

    /// Waits for the next batch of events (their content does not matter:
    /// the loop looks at the directory itself).
    pub async fn changed(&self) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let mut guard = self.fd.readable().await?;
            let read = guard.try_io(|fd| {
                // SAFETY: reads into a buffer of the given length.
                let n = unsafe { libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
            });
            match read {
                Ok(Ok(_)) => {
                    self.watch_data_dir();
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

fn absolute_parent(data_dir: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(data_dir)?;
    Ok(absolute.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf))
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

fn add_watch(fd: i32, path: &CString, mask: u32) -> std::io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Waits for a wake, then takes every wake left of the same change.
    async fn wakes(w: &DirWatch) -> bool {
        let woke = tokio::time::timeout(Duration::from_secs(2), w.changed()).await.is_ok_and(|r| r.is_ok());
        while tokio::time::timeout(Duration::from_millis(50), w.changed()).await.is_ok() {}
        woke
    }

    #[tokio::test]
    async fn wakes_for_files_in_a_data_directory_created_and_replaced_later() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("pgdata");
        let w = DirWatch::new(&data).unwrap();
        std::fs::create_dir(&data).unwrap();
        assert!(wakes(&w).await, "the data directory created");
        std::fs::write(data.join("standby.signal"), "").unwrap();
        assert!(wakes(&w).await, "a file created in it");
        std::fs::remove_file(data.join("standby.signal")).unwrap();
        assert!(wakes(&w).await, "a file removed from it");
        // A rebuild moves the directory aside and makes a new one.
        std::fs::rename(&data, root.path().join("pgdata.old")).unwrap();
        assert!(wakes(&w).await);
        std::fs::create_dir(&data).unwrap();
        assert!(wakes(&w).await);
        std::fs::write(data.join("promote"), "").unwrap();
        assert!(wakes(&w).await, "a file in the new directory");
        // Written to, not created or removed: no wake.
        std::fs::write(data.join("promote"), "again").unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(200), w.changed()).await.is_err());
    }

    #[test]
    fn a_missing_parent_is_an_error() {
        assert!(DirWatch::new(Path::new("/nonexistent-haraft-dir/pgdata")).is_err());
    }
}
