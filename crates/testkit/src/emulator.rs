//! What the emulations of other engines' tools (og-emul, dm-emul) share:
//! a `bin_dir` of wrapper scripts an adapter runs like the real tools.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Creates `dir/bin/` with one wrapper script per tool, each running the
/// multi-call binary `emulator` (`emulator TOOL ARGS...`), readable and
/// executable by every user (the database runs as another OS user than
/// the tests); returns `dir/bin`.
pub fn tools_dir(dir: &Path, emulator: &str, tools: &[&str]) -> std::io::Result<PathBuf> {
    let emul = crate::procs::binary(emulator);
    let emul = std::fs::canonicalize(&emul).unwrap_or(emul);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    for tool in tools {
        let path = bin.join(tool);
        std::fs::write(&path, format!("#!/bin/sh\nexec '{}' {tool} \"$@\"\n", emul.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(bin)
}
