//! Dameng DM8's tools for tests, emulated over PostgreSQL 15 by the
//! `dm-emul` binary (see its main.rs for the contract, what it follows
//! and where it cannot be faithful).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The DM version whose behaviour dm-emul follows.
pub const EMULATED_VERSION: &str = "DM Database Server 64 V8 (DB Version 0x7000c), from public pages";

/// The tools dm-emul provides.
pub const TOOLS: [&str; 4] = ["dminit", "dmserver", "disql", "dmrman"];

/// Creates `dir/bin/` with one wrapper script per tool, each running
/// dm-emul, readable and executable by every user (the database runs as
/// another OS user than the tests); returns `dir/bin`.
pub fn tools_dir(dir: &Path) -> std::io::Result<PathBuf> {
    let emul = crate::procs::binary("dm-emul");
    let emul = std::fs::canonicalize(&emul).unwrap_or(emul);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    for tool in TOOLS {
        let path = bin.join(tool);
        std::fs::write(&path, format!("#!/bin/sh\nexec '{}' {tool} \"$@\"\n", emul.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(bin)
}
