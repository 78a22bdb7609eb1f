//! The files openGauss keeps beside the data: `gaussdb.state` (the
//! server's last known role and state, read by `gs_ctl query` when it
//! cannot connect), `term_file`, and the emulation's own memory of the
//! mode a server was started in (`og_emul/mode`).

use crate::conf::Mode;
use std::path::Path;

/// `ServerMode` of openGauss's replicainternal.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMode {
    Unknown = 0,
    Normal = 1,
    Primary = 2,
    Standby = 3,
    CascadeStandby = 4,
    Pending = 5,
}

impl ServerMode {
    /// `get_localrole_string` / `get_string_by_mode`.
    pub fn word(self) -> &'static str {
        match self {
            ServerMode::Unknown => "Unknown",
            ServerMode::Normal => "Normal",
            ServerMode::Primary => "Primary",
            ServerMode::Standby => "Standby",
            ServerMode::CascadeStandby => "Cascade Standby",
            ServerMode::Pending => "Pending",
        }
    }

    pub fn from_word(s: &str) -> ServerMode {
        match s.trim() {
            "Normal" => ServerMode::Normal,
            "Primary" => ServerMode::Primary,
            "Standby" => ServerMode::Standby,
            "Cascade Standby" => ServerMode::CascadeStandby,
            "Pending" => ServerMode::Pending,
            _ => ServerMode::Unknown,
        }
    }

    fn from_i32(v: i32) -> ServerMode {
        match v {
            1 => ServerMode::Normal,
            2 => ServerMode::Primary,
            3 => ServerMode::Standby,
            4 => ServerMode::CascadeStandby,
            5 => ServerMode::Pending,
            _ => ServerMode::Unknown,
        }
    }
}

/// `DbState` of openGauss's replicainternal.h (the values the emulation
/// writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbState {
    Normal = 1,
    NeedRepair = 2,
    Starting = 3,
    Building = 7,
}

fn state_word(v: i32) -> &'static str {
    // get_string_by_state in pg_ctl.cpp.
    match v {
        1 => "Normal",
        2 => "Need repair",
        3 => "Starting",
        4 => "Wait promoting",
        5 => "Demoting",
        6 => "Promoting",
        7 => "Building",
        8 => "Catchup",
        9 => "Coredump",
        _ => "Unknown",
    }
}

/// `GaussState` as gaussdb writes it: the C struct's bytes on x86-64
/// (72 bytes: mode, conn_num, state, sync_stat, lsn, term, build_info
/// {build_mode, total_done, total_size, process_schedule, estimated_time},
/// ha_rebuild_reason, current_connect_idx).
#[derive(Clone, Copy, Debug, Default)]
pub struct GaussState {
    pub mode: i32,
    pub conn_num: i32,
    pub state: i32,
    pub sync_stat: bool,
    pub term: u64,
    pub build_mode: i32,
}

impl GaussState {
    pub fn new(mode: ServerMode, conn_num: usize, state: DbState) -> GaussState {
        GaussState { mode: mode as i32, conn_num: conn_num as i32, state: state as i32, ..Default::default() }
    }

    pub fn mode(&self) -> ServerMode {
        ServerMode::from_i32(self.mode)
    }

    pub fn state_word(&self) -> &'static str {
        state_word(self.state)
    }

    fn to_bytes(self) -> [u8; 72] {
        let mut b = [0u8; 72];
        b[0..4].copy_from_slice(&self.mode.to_ne_bytes());
        b[4..8].copy_from_slice(&self.conn_num.to_ne_bytes());
        b[8..12].copy_from_slice(&self.state.to_ne_bytes());
        b[12] = u8::from(self.sync_stat);
        b[24..32].copy_from_slice(&self.term.to_ne_bytes());
        b[32..36].copy_from_slice(&self.build_mode.to_ne_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<GaussState> {
        if b.len() < 72 {
            return None;
        }
        let i = |o: usize| i32::from_ne_bytes(b[o..o + 4].try_into().expect("four bytes"));
        Some(GaussState {
            mode: i(0),
            conn_num: i(4),
            state: i(8),
            sync_stat: b[12] != 0,
            term: u64::from_ne_bytes(b[24..32].try_into().expect("eight bytes")),
            build_mode: i(32),
        })
    }
}

pub fn write_state(datadir: &Path, state: GaussState) {
    // gaussdb writes a temporary file and renames it; so does this.
    let tmp = datadir.join("gaussdb.state.temp");
    if std::fs::write(&tmp, state.to_bytes()).is_ok() {
        let _ = std::fs::rename(&tmp, datadir.join("gaussdb.state"));
    }
}

/// `ReadDBStateFile`: zeroes (Unknown) when missing or short.
pub fn read_state(datadir: &Path) -> GaussState {
    std::fs::read(datadir.join("gaussdb.state")).ok().and_then(|b| GaussState::from_bytes(&b)).unwrap_or_default()
}

/// The term in `term_file` (a native uint32, as gs_ctl fwrites it).
pub fn read_term(datadir: &Path) -> u32 {
    std::fs::read(datadir.join("term_file"))
        .ok()
        .and_then(|b| b.get(0..4).map(|s| u32::from_ne_bytes(s.try_into().expect("four bytes"))))
        .unwrap_or(0)
}

pub fn write_term(datadir: &Path, term: u32) -> std::io::Result<()> {
    std::fs::write(datadir.join("term_file"), term.to_ne_bytes())
}

/// The mode the server was last started or notified in, and whether it
/// was notified to primary from Normal (so it reports Primary without
/// peers).
pub fn read_mode(datadir: &Path) -> (Mode, bool) {
    let text = std::fs::read_to_string(datadir.join("og_emul").join("mode")).unwrap_or_default();
    let mut words = text.split_whitespace();
    let mode = words.next().and_then(Mode::parse).unwrap_or(Mode::Primary);
    (mode, words.next() == Some("forced"))
}

pub fn write_mode(datadir: &Path, mode: Mode, forced_primary: bool) -> std::io::Result<()> {
    let dir = datadir.join("og_emul");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("mode"), format!("{}{}\n", mode.word(), if forced_primary { " forced" } else { "" }))
}
