//! Small disks for disk-full scenarios: a tmpfs mounted over a directory
//! (the tests run as root), filled to the last byte and freed again.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A tmpfs mounted at `path`; unmounted (lazily, so even while busy) when
/// dropped. Drop the cluster using it first.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts `size_mb` of tmpfs at `path` (created if missing), owned by
    /// `owner` (uid, gid) with mode 0700, as a PostgreSQL data directory
    /// must be.
    pub fn mount(path: &Path, size_mb: u64, owner: Option<(u32, u32)>) -> Tmpfs {
        // Directories created here belong to `owner`, as the rest of the tree.
        let missing: Vec<PathBuf> = path.ancestors().take_while(|p| !p.exists()).map(Path::to_path_buf).collect();
        std::fs::create_dir_all(path).expect("create the mount point");
        if let Some((uid, gid)) = owner {
            for dir in &missing {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown the mount point");
            }
        }
        let mut options = format!("size={size_mb}m,mode=0700");
        if let Some((uid, gid)) = owner {
            options.push_str(&format!(",uid={uid},gid={gid}"));
        }
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs at {} failed (the disk-full tests need root)", path.display());
        Tmpfs { path: path.to_path_buf() }
    }

    /// Fills the filesystem to the last byte with a file in it; returns
    /// the file, which `free` removes.
    pub fn fill(&self) -> PathBuf {
        let file = self.path.join("haraft-test-fill");
        let mut f = std::fs::File::create(&file).expect("create the fill file");
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
        file
    }

    /// Removes the fill file (if nothing else removed it already).
    pub fn free(&self, file: &Path) {
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("removing {}: {e}", file.display()),
            _ => {}
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
