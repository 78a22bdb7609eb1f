//! openGauss's tools for tests, emulated over PostgreSQL 15 by the
//! `og-emul` binary (see its main.rs for what it follows and where it
//! cannot be faithful).

use std::path::{Path, PathBuf};

/// The openGauss version whose formats and messages og-emul follows.
pub const EMULATED_VERSION: &str = "openGauss 7.0.0-RC2 (openGauss-server 7e1fc94a, 2025-08-01)";

/// The tools og-emul provides.
pub const TOOLS: [&str; 4] = ["gs_initdb", "gs_ctl", "pg_controldata", "pg_xlogdump"];

/// Creates `dir/bin/` with one wrapper script per tool running og-emul
/// (`emulator::tools_dir`); returns `dir/bin`.
pub fn tools_dir(dir: &Path) -> std::io::Result<PathBuf> {
    crate::emulator::tools_dir(dir, "og-emul", &TOOLS)
}
