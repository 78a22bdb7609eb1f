//! The openGauss view of the configuration (DATADIR/postgresql.conf and
//! what it includes, DATADIR/pg_hba.conf) and its translation into the
//! real PostgreSQL 15 configuration under DATADIR/og_emul/.

use crate::common::Endpoint;
use std::path::{Path, PathBuf};

/// One `name = value` line of the openGauss view.
#[derive(Clone, Debug)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

/// Every setting of the openGauss view in file order (includes expanded
/// in place), and every file that was read.
#[derive(Debug, Default)]
pub struct OgConf {
    pub settings: Vec<Setting>,
    pub files: Vec<PathBuf>,
}

/// openGauss-only parameters PostgreSQL 15 rejects, dropped from the
/// generated configuration (their meaning, where the emulation needs it,
/// is read from the openGauss view instead).
const OPENGAUSS_ONLY: &[&str] = &[
    "pgxc_node_name",
    "most_available_sync",
    "password_encryption_type",
    "enable_data_replicate",
    "catchup2normal_wait_time",
    "keep_sync_window",
    "enable_slot_log",
    "replication_type",
    "available_zone",
    "sync_config_strategy",
    "enable_mix_replication",
    "data_replicate_buffer_size",
    "walsender_max_send_size",
    "recovery_max_workers",
    "enable_double_write",
    "enable_incremental_checkpoint",
    "incremental_checkpoint_timeout",
    "pagewriter_sleep",
    "session_timeout",
    "enable_thread_pool",
    "local_bind_address",
    "ha_module_debug",
    "enable_dcf",
];

/// Prefixes of openGauss-only parameter families, dropped likewise.
const OPENGAUSS_ONLY_PREFIXES: &[&str] = &["replconninfo", "cross_cluster_replconninfo", "dcf_"];

/// PostgreSQL-only parameters: openGauss does not know them, so a server
/// would refuse to start on them ("unrecognized configuration parameter").
const POSTGRES_ONLY: &[&str] = &[
    "primary_conninfo",
    "primary_slot_name",
    "restore_command",
    "archive_cleanup_command",
    "recovery_end_command",
    "promote_trigger_file",
    "recovery_target",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_timeline",
    "wal_keep_size",
    "wal_receiver_create_temp_slot",
    "unix_socket_directories",
    "hba_file",
    "ident_file",
    "config_file",
];

impl OgConf {
    /// Reads DATADIR/postgresql.conf, following `include` and
    /// `include_if_exists` relative to the including file.
    pub fn read(datadir: &Path) -> Result<OgConf, String> {
        let mut conf = OgConf::default();
        let main = datadir.join("postgresql.conf");
        if !main.is_file() {
            return Err(format!("{} cannot be opened.", main.display()));
        }
        conf.read_file(&main, true, 0)?;
        Ok(conf)
    }

    fn read_file(&mut self, path: &Path, required: bool, depth: usize) -> Result<(), String> {
        if depth > 10 {
            return Err(format!(
                "could not open configuration file \"{}\": maximum nesting depth exceeded",
                path.display()
            ));
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(_) if !required => return Ok(()),
            Err(e) => return Err(format!("could not open configuration file \"{}\": {e}", path.display())),
        };
        self.files.push(path.to_path_buf());
        for (i, raw) in text.lines().enumerate() {
            let Some((name, value)) = parse_line(raw) else { continue };
            let relative = |v: &str| {
                let p = Path::new(v);
                if p.is_absolute() { p.to_path_buf() } else { path.parent().unwrap_or(Path::new("/")).join(p) }
            };
            match name.as_str() {
                "include" => self.read_file(&relative(&value), true, depth + 1)?,
                "include_if_exists" => self.read_file(&relative(&value), false, depth + 1)?,
                _ => self.settings.push(Setting { name, value, file: path.to_path_buf(), line: i + 1 }),
            }
        }
        Ok(())
    }

    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings.iter().rev().find(|s| s.name == name).map(|s| s.value.as_str())
    }

    pub fn node_name(&self) -> String {
        self.get("pgxc_node_name").unwrap_or("").to_owned()
    }

    /// The non-empty `replconninfoN` values, N = 1..8, in order.
    pub fn replconninfos(&self) -> Vec<ReplConnInfo> {
        (1..=8).filter_map(|n| self.get(&format!("replconninfo{n}")).and_then(ReplConnInfo::parse)).collect()
    }

    /// How psql reaches the local server: its socket directory (else
    /// libpq's default) and port.
    pub fn local_endpoint(&self) -> Endpoint {
        let host = self.get("unix_socket_directory").filter(|s| !s.is_empty()).map(str::to_owned);
        Endpoint { host, port: self.get("port").and_then(|p| p.parse().ok()) }
    }
}

/// One `replconninfoN`: the peer to replicate from.
#[derive(Clone, Debug)]
pub struct ReplConnInfo {
    pub local_host: String,
    pub remote_host: String,
    /// The peer's HA port; its service port is one less (the openGauss
    /// convention haraft follows).
    pub remote_port: u16,
}

impl ReplConnInfo {
    fn parse(text: &str) -> Option<ReplConnInfo> {
        let field =
            |k: &str| text.split_whitespace().find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=').map(str::to_owned));
        Some(ReplConnInfo {
            local_host: field("localhost").unwrap_or_default(),
            remote_host: field("remotehost")?,
            remote_port: field("remoteport")?.parse().ok()?,
        })
    }

    /// The peer's service port, where the emulation connects.
    pub fn service_port(&self) -> u16 {
        self.remote_port.saturating_sub(1)
    }
}

/// `name = value` (or `name value`) with comments and quotes removed;
/// names lowercased as the GUC machinery compares them.
fn parse_line(raw: &str) -> Option<(String, String)> {
    let line = raw.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let name = line[..name_end].to_lowercase();
    let mut rest = line[name_end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let value = if let Some(q) = rest.strip_prefix('\'') {
        let mut v = String::new();
        let mut chars = q.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    v.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        v.push(n);
                    }
                }
                c => v.push(c),
            }
        }
        v
    } else {
        rest.split(|c: char| c.is_whitespace() || c == '#').next().unwrap_or("").to_owned()
    };
    Some((name, value))
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// How the server is to run, as `gs_ctl start -M` (or notify) said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Primary,
    Standby,
    Pending,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "primary" => Some(Mode::Primary),
            "standby" => Some(Mode::Standby),
            "pending" => Some(Mode::Pending),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Mode::Primary => "primary",
            Mode::Standby => "standby",
            Mode::Pending => "pending",
        }
    }
}

/// A translation failure: the lines openGauss's server would log for it.
pub struct ConfError(pub Vec<String>);

/// Writes DATADIR/og_emul/{postgresql.conf,pg_hba.conf,pg_ident.conf}
/// for a server running in `mode` at `term`. `forced_primary` is a node
/// notified to primary without replication peers.
pub fn generate(datadir: &Path, mode: Mode, term: u32, forced_primary: bool) -> Result<OgConf, ConfError> {
    let conf = OgConf::read(datadir).map_err(|e| ConfError(vec![format!("FATAL:  {e}")]))?;
    let dir = datadir.join("og_emul");
    let mut out = String::from("# Generated by og-emul from the openGauss view of this data directory; do not edit.\n");
    let mut errors = Vec::new();
    for s in &conf.settings {
        let name = s.name.as_str();
        if POSTGRES_ONLY.contains(&name) {
            errors.push(format!(
                "LOG:  unrecognized configuration parameter \"{name}\" in file \"{}\" line {}",
                s.file.display(),
                s.line
            ));
            if errors.len() == 1 {
                errors.push(format!("FATAL:  configuration file \"{}\" contains errors", s.file.display()));
            }
            continue;
        }
        if OPENGAUSS_ONLY.contains(&name) || OPENGAUSS_ONLY_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let line = match name {
            "unix_socket_directory" => format!("unix_socket_directories = {}", quote(&s.value)),
            "wal_keep_segments" => {
                let n: u64 = s.value.parse().unwrap_or(0);
                format!("wal_keep_size = '{}MB'", n * 16)
            }
            "wal_level" if s.value == "hot_standby" || s.value == "archive" => "wal_level = 'replica'".to_owned(),
            _ => format!("{name} = {}", quote(&s.value)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    if !errors.is_empty() {
        // Keep the FATAL line last, as the server prints it.
        let fatal = errors.remove(1);
        errors.push(fatal);
        return Err(ConfError(errors));
    }
    let node = conf.node_name();
    let peers = conf.replconninfos();
    let d = datadir.display();
    out.push_str("\n# What the emulation itself needs.\n");
    out.push_str(&format!("hba_file = '{d}/og_emul/pg_hba.conf'\nident_file = '{d}/og_emul/pg_ident.conf'\n"));
    out.push_str("wal_log_hints = on\n");
    out.push_str("search_path = 'og_compat, pg_catalog, \"$user\", public'\n");
    out.push_str("wal_retrieve_retry_interval = '250ms'\nrecovery_target_timeline = 'latest'\n");
    out.push_str(&format!("og_emul.mode = '{}'\n", mode.word()));
    out.push_str(&format!("og_emul.forced_primary = '{}'\n", if forced_primary { "on" } else { "off" }));
    out.push_str(&format!("og_emul.node_name = {}\n", quote(&node)));
    out.push_str(&format!("og_emul.static_connections = '{}'\n", peers.len()));
    out.push_str(&format!("og_emul.term = '{term}'\n"));
    let most_available = matches!(conf.get("most_available_sync"), Some("on" | "true" | "1" | "yes"));
    out.push_str(&format!("og_emul.most_available_sync = '{}'\n", if most_available { "On" } else { "Off" }));
    let local_host = peers
        .first()
        .map(|p| p.local_host.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| conf.get("listen_addresses").map(|l| l.split(',').next().unwrap_or("").trim().to_owned()))
        .filter(|h| !h.is_empty() && h != "*")
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    out.push_str(&format!("og_emul.local_host = {}\n", quote(&local_host)));
    if let (Mode::Standby, Some(peer)) = (mode, peers.first()) {
        out.push_str(&format!("primary_conninfo = {}\n", quote(&primary_conninfo(peer, &node))));
        out.push_str(&format!("primary_slot_name = {}\n", quote(&slot_name(&node))));
    }
    let write = |name: &str, text: &str| -> Result<(), ConfError> {
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(name), text))
            .map_err(|e| ConfError(vec![format!("FATAL:  could not write \"{}/{name}\": {e}", dir.display())]))
    };
    write("postgresql.conf", &out)?;
    let hba = std::fs::read_to_string(datadir.join("pg_hba.conf")).unwrap_or_default();
    write("pg_hba.conf", &translate_hba(&hba))?;
    let ident = std::fs::read_to_string(datadir.join("pg_ident.conf")).unwrap_or_default();
    write("pg_ident.conf", &ident)?;
    Ok(conf)
}

/// `primary_conninfo` for replicating from `peer`: its service port,
/// the adapter's PGUSER and PGPASSFILE.
pub fn primary_conninfo(peer: &ReplConnInfo, node: &str) -> String {
    let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut s = format!("host={} port={}", q(&peer.remote_host), peer.service_port());
    if let Ok(user) = std::env::var("PGUSER") {
        s.push_str(&format!(" user={}", q(&user)));
    }
    s.push_str(&format!(" application_name={}", q(node)));
    if let Ok(pass) = std::env::var("PGPASSFILE") {
        s.push_str(&format!(" passfile={}", q(&pass)));
    }
    s.push_str(" connect_timeout=2");
    s
}

/// The slot a standby named `node` streams from: `haraft_` + the name
/// lowercased, anything but ASCII letters and digits as `_`.
pub fn slot_name(node: &str) -> String {
    let tail: String =
        node.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    format!("haraft_{tail}")
}

/// openGauss's `sha256` method is PostgreSQL's `scram-sha-256`.
fn translate_hba(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let (body, comment) = match line.find('#') {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let words: Vec<&str> =
            body.split_whitespace().map(|w| if w == "sha256" { "scram-sha-256" } else { w }).collect();
        out.push_str(&words.join(" "));
        if !comment.is_empty() {
            if !words.is_empty() {
                out.push(' ');
            }
            out.push_str(comment);
        }
        out.push('\n');
    }
    out
}
