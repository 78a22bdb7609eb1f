//! Dameng DM8's tools for tests, emulated over PostgreSQL 15 by the
//! `dm-emul` binary (see its main.rs for the contract, what it follows
//! and where it cannot be faithful).

use std::path::{Path, PathBuf};

/// The DM version whose behaviour dm-emul follows.
pub const EMULATED_VERSION: &str = "DM Database Server 64 V8 (DB Version 0x7000c), from public pages";

/// The tools dm-emul provides.
pub const TOOLS: [&str; 4] = ["dminit", "dmserver", "disql", "dmrman"];

/// Creates `dir/bin/` with one wrapper script per tool running dm-emul
/// (`emulator::tools_dir`); returns `dir/bin`.
pub fn tools_dir(dir: &Path) -> std::io::Result<PathBuf> {
    crate::emulator::tools_dir(dir, "dm-emul", &TOOLS)
}
