//! What an instance keeps across dmserver runs (DM keeps it in its
//! control file): the mode, the SYSDBA password the emulation connects
//! with, whether the archive was set INVALID, and the last LSN seen before
//! PostgreSQL was stopped (V$RLOG in MOUNT). `INST/dm_emul/state`, mode
//! 0600, `KEY=value` lines.

use crate::stmt::Mode;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub mode: Mode,
    pub pwd: String,
    pub arch_invalid: bool,
    pub lsn: Option<u64>,
}

impl State {
    pub fn read(inst: &Path) -> std::io::Result<State> {
        let text = std::fs::read_to_string(crate::common::emul_dir(inst).join("state"))?;
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).map(str::to_owned);
        Ok(State {
            mode: get("MODE").as_deref().and_then(Mode::parse).unwrap_or(Mode::Normal),
            pwd: get("PWD").unwrap_or_default(),
            arch_invalid: get("ARCH_INVALID").as_deref() == Some("1"),
            lsn: get("LSN").and_then(|v| v.parse().ok()),
        })
    }

    pub fn write(&self, inst: &Path) -> std::io::Result<()> {
        let dir = crate::common::emul_dir(inst);
        let tmp = dir.join("state.tmp");
        let mut text =
            format!("MODE={}\nPWD={}\nARCH_INVALID={}\n", self.mode.word(), self.pwd, u8::from(self.arch_invalid));
        if let Some(l) = self.lsn {
            text.push_str(&format!("LSN={l}\n"));
        }
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, dir.join("state"))
    }
}
