//! The agent's configuration file: parsed into a raw struct that refuses
//! unknown keys, then validated into a typed `Config`. Every rule has its
//! own error variant carrying the key and the numbers; nothing is adjusted.

use haraft_core::sync::SyncMode;
use haraft_core::{DbMember, Member, NodeId, Policy, Timing, TimingError};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: RawCluster,
    node: RawNode,
    #[serde(default)]
    member: Vec<RawMember>,
    #[serde(default)]
    lease: RawLease,
    #[serde(default)]
    raft: RawRaft,
    #[serde(default)]
    log: RawLog,
    postgresql: Option<RawPostgres>,
    opengauss: Option<RawPostgres>,
    dameng: Option<RawPostgres>,
    #[serde(default)]
    failover: RawFailover,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    rest: RawRest,
    #[serde(default)]
    callbacks: RawCallbacks,
    tls: Option<RawTls>,
    #[serde(default)]
    auth: RawAuth,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    admin_names: Vec<String>,
    admin_token_file: Option<PathBuf>,
    read_token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRest {
    listen: Option<String>,
    #[serde(default)]
    tls: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCallbacks {
    on_start: Option<String>,
    on_stop: Option<String>,
    on_role_change: Option<String>,
    timeout_ms: u64,
}

impl Default for RawCallbacks {
    fn default() -> Self {
        RawCallbacks { on_start: None, on_stop: None, on_role_change: None, timeout_ms: DEFAULT_CALLBACK_TIMEOUT_MS }
    }
}

/// A callback notifies (a DNS update, a page, a log line); ten seconds is
/// plenty for that and short enough that a hung script is noticed.
const DEFAULT_CALLBACK_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    /// By member name: where this node connects to reach that member, when
    /// not at its advertised addresses.
    #[serde(default)]
    dial: std::collections::BTreeMap<String, RawDial>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDial {
    raft: Option<String>,
    postgresql: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    bin_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: String,
    connect_address: Option<String>,
    /// Default: the engine's own (`DbEngine::default_superuser`).
    superuser: Option<String>,
    superuser_password_file: Option<PathBuf>,
    #[serde(default = "default_replication_user")]
    replication_user: String,
    replication_password_file: Option<PathBuf>,
    #[serde(default)]
    nofailover: bool,
    #[serde(default = "default_priority")]
    priority: u32,
    #[serde(default = "default_stream_timeout_ms")]
    stream_timeout_ms: u64,
    #[serde(default = "default_start_timeout_ms")]
    start_timeout_ms: u64,
    #[serde(default = "default_rebuild_timeout_ms")]
    rebuild_timeout_ms: u64,
    #[serde(default = "default_keep_aside")]
    keep_aside: usize,
    #[serde(default = "default_initdb_locale")]
    initdb_locale: String,
    #[serde(default = "default_initdb_encoding")]
    initdb_encoding: String,
    #[serde(default = "default_commit_guard_margin_ms")]
    commit_guard_margin_ms: u64,
}

fn default_replication_user() -> String {
    "replicator".into()
}
fn default_priority() -> u32 {
    1
}
/// A standby that has not streamed for 10 s although the primary is up is
/// stuck (typically on a diverged timeline): long enough for a reconnect
/// and a timeline switch, short enough to rejoin within seconds.
fn default_stream_timeout_ms() -> u64 {
    10_000
}
/// pg_ctl start/stop/promote and pg_rewind on a small database take well
/// under a few seconds; 60 s leaves room for crash recovery.
fn default_start_timeout_ms() -> u64 {
    60_000
}
/// A base backup copies the whole database: 10 minutes by default.
fn default_rebuild_timeout_ms() -> u64 {
    600_000
}
fn default_keep_aside() -> usize {
    2
}
/// The bootstrap's locale is haraft's choice, never the agent's inherited
/// `LANG`/`LC_*` (which differ between a shell, systemd and cron): C
/// ordering (byte order, no collation changes on glibc upgrades) with
/// UTF-8 text.
fn default_initdb_locale() -> String {
    "C.UTF-8".into()
}
fn default_initdb_encoding() -> String {
    "UTF8".into()
}
/// How late a renewal may be confirmed before the holder's commits are
/// held: above the renewals' commit latency with room for a loaded host
/// (the driver notices a due renewal within a 50 ms tick; a commit takes a
/// few ms on a LAN), while keeping acknowledgements after a cut within
/// 0.7 s at the default 500 ms interval.
fn default_commit_guard_margin_ms() -> u64 {
    150
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFailover {
    maximum_lag_on_failover_bytes: u64,
    primary_start_timeout_ms: u64,
    rebuild_on_rewind_failure: bool,
    synchronous_mode: RawSyncMode,
    synchronous_node_count: u32,
    synchronous_strict: bool,
}

/// `synchronous_mode = true|false` (as before quorum mode) or
/// `"off"|"on"|"quorum"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSyncMode {
    Bool(bool),
    Word(String),
}

impl Default for RawFailover {
    fn default() -> Self {
        let p = Policy::default();
        RawFailover {
            maximum_lag_on_failover_bytes: p.maximum_lag_on_failover_bytes,
            primary_start_timeout_ms: p.primary_start_timeout_ms,
            rebuild_on_rewind_failure: p.rebuild_on_rewind_failure,
            synchronous_mode: RawSyncMode::Word(p.synchronous_mode.word().to_string()),
            synchronous_node_count: p.synchronous_node_count,
            synchronous_strict: p.synchronous_strict,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: u64,
    data_dir: PathBuf,
    listen: Option<String>,
    #[serde(default)]
    join: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: u64,
    name: String,
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLease {
    ttl_ms: u64,
    renew_interval_ms: u64,
    clock_drift_ppm: u64,
    demote_budget_ms: u64,
}

impl Default for RawLease {
    fn default() -> Self {
        let t = Timing::default();
        RawLease {
            ttl_ms: t.lease_ttl_ms,
            renew_interval_ms: t.renew_interval_ms,
            clock_drift_ppm: t.clock_drift_ppm,
            demote_budget_ms: t.demote_budget_ms,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRaft {
    heartbeat_interval_ms: u64,
    election_timeout_min_ms: u64,
    election_timeout_max_ms: u64,
    write_timeout_ms: u64,
}

impl Default for RawRaft {
    fn default() -> Self {
        let r = RaftTiming::default();
        RawRaft {
            heartbeat_interval_ms: r.heartbeat_interval_ms,
            election_timeout_min_ms: r.election_timeout_min_ms,
            election_timeout_max_ms: r.election_timeout_max_ms,
            write_timeout_ms: r.write_timeout_ms,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { level: "info".to_string() }
    }
}

/// Raft timing of this node (not replicated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Bound on every Raft write and linearizable read, including forwarding.
    pub write_timeout_ms: u64,
}

impl Default for RaftTiming {
    /// openraft 0.9 followers neither elect nor vote for
    /// election_timeout_max after the last heartbeat (its leader lease) and
    /// then wait an election timeout: with 0.2-0.4 s a leader that stops is
    /// replaced 0.6-0.8 s after its last heartbeat, inside the lease
    /// holder's 1.187 s validity less a renewal interval, so a primary
    /// whose renewal went to a dead or frozen leader renews with the new
    /// one in time (tests/faults.rs, frozen Raft leader). Heartbeats every
    /// 100 ms: a follower hears six before it may start an election. Each
    /// heartbeat costs CPU on every member (measured: 150 -> 50 ms added
    /// 0.5-0.8 % of a core per agent), hence not faster. A 2 s write
    /// timeout covers an election.
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            write_timeout_ms: 2000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub cluster: String,
    pub node: NodeId,
    pub node_name: String,
    pub listen: SocketAddr,
    /// As written; relative paths resolve against the working directory.
    pub data_dir: PathBuf,
    pub members: Vec<Member>,
    /// Joins a running cluster (`haraftctl member add`) instead of forming
    /// one from `members`: never initializes Raft.
    pub join: bool,
    pub timing: Timing,
    pub raft: RaftTiming,
    pub log_level: String,
    pub policy: Policy,
    /// The local PostgreSQL; `None` for a lease-only member.
    pub postgres: Option<PgSettings>,
    /// How this node reaches other members when not at their advertised
    /// addresses (NAT, a proxy; the fault tests route every link through
    /// one).
    pub dial: Dial,
    /// Where the REST health API listens; `None`: no REST API.
    pub rest_listen: Option<SocketAddr>,
    /// The REST API serves HTTPS with the `[tls]` certificate.
    pub rest_tls: bool,
    /// Mutual TLS for every gRPC connection; `None`: plaintext.
    pub tls: Option<TlsSetting>,
    pub auth: Auth,
    pub callbacks: Callbacks,
}

/// `[auth]`: who has which role. Authorization is on when TLS or a token
/// is configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    /// Certificate names (DNS subject alternative names) with the admin role.
    pub admin_names: Vec<String>,
    pub admin_token: Option<Secret>,
    pub read_token: Option<Secret>,
}

/// `[tls]`: the files (what configs compare by) and what was read from them.
#[derive(Clone, Debug)]
pub struct TlsSetting {
    pub files: haraft_raft::tls::TlsFiles,
    pub loaded: std::sync::Arc<haraft_raft::tls::Tls>,
}

impl PartialEq for TlsSetting {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
    }
}

impl Eq for TlsSetting {}

/// Commands run when the local PostgreSQL starts, stops or changes role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callbacks {
    /// Program and arguments (split on whitespace, no shell) per event.
    pub on_start: Option<Vec<String>>,
    pub on_stop: Option<Vec<String>>,
    pub on_role_change: Option<Vec<String>>,
    pub timeout_ms: u64,
}

impl Callbacks {
    pub fn command(&self, event: haraft_core::health::CallbackEvent) -> Option<&[String]> {
        use haraft_core::health::CallbackEvent::*;
        match event {
            OnStart => self.on_start.as_deref(),
            OnStop => self.on_stop.as_deref(),
            OnRoleChange => self.on_role_change.as_deref(),
        }
    }
}

/// Per-member address overrides for this node's outgoing connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dial {
    pub raft: std::collections::BTreeMap<NodeId, String>,
    pub postgresql: std::collections::BTreeMap<NodeId, String>,
}

/// A password read from a file or the environment. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which database server a member manages: the config section that
/// describes it (`[postgresql]`, `[opengauss]` or `[dameng]`, exactly one)
/// says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbEngine {
    Postgres,
    OpenGauss,
    Dameng,
}

impl DbEngine {
    /// The config section.
    pub fn section(self) -> &'static str {
        match self {
            DbEngine::Postgres => "postgresql",
            DbEngine::OpenGauss => "opengauss",
            DbEngine::Dameng => "dameng",
        }
    }

    /// The superuser when the section names none: DM's is SYSDBA.
    pub fn default_superuser(self) -> &'static str {
        match self {
            DbEngine::Postgres | DbEngine::OpenGauss => "postgres",
            DbEngine::Dameng => "SYSDBA",
        }
    }

    /// The data directory's name under `node.data_dir` when the section
    /// names none (for DM: the instance directory, its DB_NAME).
    pub fn default_data_dir_name(self) -> &'static str {
        match self {
            DbEngine::Postgres | DbEngine::OpenGauss => "pgdata",
            DbEngine::Dameng => "DAMENG",
        }
    }

    /// The tools the adapter runs, which `bin_dir` must hold.
    pub fn tools(self) -> &'static [&'static str] {
        match self {
            DbEngine::Postgres => &["pg_ctl", "initdb", "postgres", "pg_controldata", "pg_rewind", "pg_basebackup"],
            DbEngine::OpenGauss => haraft_db::opengauss::TOOLS,
            DbEngine::Dameng => haraft_db::dameng::TOOLS,
        }
    }
}

/// The local database's settings, whichever the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgSettings {
    pub engine: DbEngine,
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Where PostgreSQL listens.
    pub listen: SocketAddr,
    /// host:port where the other members and clients reach it.
    pub connect_address: String,
    pub superuser: String,
    pub superuser_password: Secret,
    pub replication_user: String,
    pub replication_password: Secret,
    /// Where the replication password came from, when from a file: read
    /// again before every base backup and standby start, so that a fixed
    /// or rotated password needs no agent restart.
    pub replication_password_file: Option<PathBuf>,
    pub nofailover: bool,
    pub priority: u32,
    pub stream_timeout_ms: u64,
    pub start_timeout_ms: u64,
    pub rebuild_timeout_ms: u64,
    pub keep_aside: usize,
    /// `initdb --locale` at bootstrap (only the first primary runs initdb;
    /// the others copy its database, locale included).
    pub initdb_locale: String,
    /// `initdb --encoding` at bootstrap.
    pub initdb_encoding: String,
    /// The commit guard holds the primary's commits when no renewal was
    /// confirmed for the renewal interval plus this; 0: never.
    pub commit_guard_margin_ms: u64,
}

impl PgSettings {
    pub fn registration(&self) -> DbMember {
        DbMember { address: self.connect_address.clone(), nofailover: self.nofailover, priority: self.priority }
    }
}

impl Config {
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    Parse { path: String, line: usize, message: String },
    #[error("cluster.name must be 1-64 characters of letters, digits, '-', '_' or '.', got {name:?}")]
    BadClusterName { name: String },
    #[error("no [[member]] entries: list every member of the cluster, this node included")]
    NoMembers,
    #[error("member id {id} appears more than once: every [[member]] needs its own id")]
    DuplicateMemberId { id: u64 },
    #[error("member name {name:?} appears more than once: every [[member]] needs its own name")]
    DuplicateMemberName { name: String },
    #[error("member address {address} appears more than once: every [[member]] needs its own address")]
    DuplicateMemberAddress { address: String },
    #[error("member name {name:?} is not valid: use 1-64 letters, digits, '-', '_' or '.'")]
    BadMemberName { name: String },
    #[error("member {name:?} address {address:?} is not host:port")]
    BadMemberAddress { name: String, address: String },
    #[error("network.dial.{name}: no member is named {name:?}: use a name from the [[member]] list")]
    DialUnknownMember { name: String },
    #[error("network.dial.{name}.{key} = {value:?} is not HOST:PORT")]
    BadDialAddress { name: String, key: &'static str, value: String },
    #[error("node.id = {id} is not one of the [[member]] ids ({ids}): add this node to the member list or fix node.id")]
    NodeNotMember { id: u64, ids: String },
    #[error("node.listen = {value:?} is not an ip:port address")]
    BadListen { value: String },
    #[error("node.listen is not set and this member's address {address:?} is not an ip:port to bind: set node.listen")]
    ListenNeeded { address: String },
    #[error("node.data_dir is empty: set a directory for this node's Raft data")]
    EmptyDataDir,
    #[error("{0}")]
    Lease(TimingError),
    #[error(
        "raft.heartbeat_interval_ms = {heartbeat} must be below raft.election_timeout_min_ms = {min}: followers would start elections between heartbeats"
    )]
    HeartbeatTooSlow { heartbeat: u64, min: u64 },
    #[error(
        "raft.election_timeout_min_ms = {min} must be below raft.election_timeout_max_ms = {max}: the gap spreads candidates apart"
    )]
    ElectionRange { min: u64, max: u64 },
    #[error("raft.heartbeat_interval_ms must be at least 1")]
    HeartbeatZero,
    #[error(
        "raft.write_timeout_ms = {write_timeout} must be at least raft.election_timeout_max_ms = {max}: a write must survive one election"
    )]
    WriteTimeoutTooShort { write_timeout: u64, max: u64 },
    #[error("log.level = {level:?} is not one of error, warn, info, debug, trace")]
    BadLogLevel { level: String },
    #[error("{section}.listen = {value:?} is not an ip:port address")]
    BadPgListen { section: &'static str, value: String },
    #[error("{section}.connect_address = {value:?} is not host:port")]
    BadPgConnect { section: &'static str, value: String },
    #[error("{section}.{key} = {value:?} is not a valid role name: use letters, digits and '_'")]
    BadRoleName { section: &'static str, key: &'static str, value: String },
    #[error(
        "no {what} password: set {section}.{key} (a file, relative to the config file's directory) or the {env} environment variable"
    )]
    MissingPassword { section: &'static str, what: &'static str, key: &'static str, env: &'static str },
    #[error("cannot read {section}.{key} {path}: {message}")]
    PasswordFile { section: &'static str, key: &'static str, path: String, message: String },
    #[error(
        "{section}.{key} {path} is readable by other users (mode {mode:o}): chmod 600 it, a password file must stay private"
    )]
    PasswordFileReadable { section: &'static str, key: &'static str, path: String, mode: u32 },
    #[error("{section}.{key} {path} is empty")]
    EmptyPassword { section: &'static str, key: &'static str, path: String },
    #[error(
        "postgresql.bin_dir: no PostgreSQL server binaries found in {tried}: install PostgreSQL or set postgresql.bin_dir"
    )]
    NoPgBinaries { tried: String },
    #[error(
        "{section}.bin_dir = {path}: {missing} not found there: point it at the directory holding the server's tools"
    )]
    BadPgBinDir { section: &'static str, path: String, missing: String },
    #[error("{section}.{key} must be at least {min}, got {value}")]
    TooSmall { section: &'static str, key: &'static str, value: u64, min: u64 },
    #[error(
        "{section}.{key} = {value:?} is not a locale or encoding name: use letters, digits, '.', '_', '-' or '@' (e.g. C.UTF-8, en_US.UTF-8, UTF8)"
    )]
    BadLocale { section: &'static str, key: &'static str, value: String },
    #[error("failover.synchronous_mode = {value:?} is not one of off, on, quorum (or true, false)")]
    BadSyncMode { value: String },
    #[error("failover.synchronous_node_count = {value} must be between 1 and {max}")]
    BadSyncCount { value: u32, max: u32 },
    #[error("{section}.bin_dir is not set: name the directory holding {tools} (e.g. {example})")]
    NoBinDir { section: &'static str, tools: String, example: &'static str },
    #[error("{sections} are set: a member manages one database, keep the section of its engine")]
    TwoEngines { sections: String },
    #[error("rest.listen = {value:?} is not an ip:port address (e.g. 0.0.0.0:8008)")]
    BadRestListen { value: String },
    #[error("callbacks.{key} is empty: name a program (and arguments), or remove the key")]
    EmptyCallback { key: &'static str },
    #[error("callbacks.{key} = {value:?}: {program} is not an absolute path: name the program by its full path")]
    CallbackNotAbsolute { key: &'static str, value: String, program: String },
    #[error("callbacks.timeout_ms must be between 100 and 600000, got {value}")]
    CallbackTimeout { value: u64 },
    #[error("tls: {0}")]
    Tls(haraft_raft::tls::TlsError),
    #[error("rest.tls = true needs a [tls] section: the REST API serves the node's certificate")]
    RestTlsWithoutTls,
    #[error("auth.admin_names needs [tls]: certificate names mean nothing without client certificates")]
    AdminNamesWithoutTls,
    #[error("auth.{key} {path}: {message}")]
    TokenFile { key: &'static str, path: String, message: String },
}

use haraft_core::ids::{is_host_port as host_port, valid_name};

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: shown.clone(), message: e.to_string() })?;
    parse(&shown, &text)
}

/// Parses and validates config text; `path` names it in errors.
pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let mut message = e.message().trim().replace('\n', " ");
        // Name the key: a type error alone does not say which one.
        if let Some(written) = text.lines().nth(line.wrapping_sub(1)).map(str::trim).filter(|l| l.contains('=')) {
            message = format!("{message} (in `{}`)", written.chars().take(80).collect::<String>());
        }
        ConfigError::Parse { path: path.to_string(), line, message }
    })?;
    let base = Path::new(path).parent().map(Path::to_path_buf).unwrap_or_default();
    validate(raw, &base, &|name| std::env::var(name).ok())
}

/// Reads a password from `file` (relative to `base`) or from `env`.
fn password(
    section: &'static str,
    file: &Option<PathBuf>,
    key: &'static str,
    env: &'static str,
    what: &'static str,
    base: &Path,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let value = match file {
        Some(f) => {
            let path = if f.is_absolute() { f.clone() } else { base.join(f) };
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::PasswordFile {
                section,
                key,
                path: shown.clone(),
                message: e.to_string(),
            })?;
            if let Some(mode) = haraft_raft::tls::open_to_others(&path) {
                return Err(ConfigError::PasswordFileReadable { section, key, path: shown, mode });
            }
            let first = text.lines().next().unwrap_or("").to_string();
            if first.is_empty() {
                return Err(ConfigError::EmptyPassword { section, key, path: shown });
            }
            first
        }
        None => {
            getenv(env).filter(|v| !v.is_empty()).ok_or(ConfigError::MissingPassword { section, what, key, env })?
        }
    };
    Ok(Secret(value))
}

/// The newest PostgreSQL server installation in Debian's layout.
fn detect_bin_dir() -> Result<PathBuf, ConfigError> {
    let candidates: Vec<PathBuf> =
        (13..=18).rev().map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"))).collect();
    candidates.iter().find(|d| d.join("pg_ctl").is_file()).cloned().ok_or_else(|| ConfigError::NoPgBinaries {
        tried: candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}

fn valid_role(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_postgres(
    engine: DbEngine,
    raw: RawPostgres,
    data_dir: &Path,
    base: &Path,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<PgSettings, ConfigError> {
    let section = engine.section();
    let listen: SocketAddr =
        raw.listen.parse().map_err(|_| ConfigError::BadPgListen { section, value: raw.listen.clone() })?;
    let connect_address = raw.connect_address.unwrap_or_else(|| raw.listen.clone());
    if !host_port(&connect_address) {
        return Err(ConfigError::BadPgConnect { section, value: connect_address });
    }
    let superuser = raw.superuser.unwrap_or_else(|| engine.default_superuser().to_string());
    for (key, value) in [("superuser", &superuser), ("replication_user", &raw.replication_user)] {
        if !valid_role(value) {
            return Err(ConfigError::BadRoleName { section, key, value: value.clone() });
        }
    }
    let bin_dir = match (raw.bin_dir, engine) {
        (Some(d), _) => {
            let missing: Vec<&str> = engine.tools().iter().copied().filter(|t| !d.join(t).is_file()).collect();
            if !missing.is_empty() {
                let (path, missing) = (d.display().to_string(), missing.join(", "));
                return Err(ConfigError::BadPgBinDir { section, path, missing });
            }
            d
        }
        (None, DbEngine::Postgres) => detect_bin_dir()?,
        (None, DbEngine::OpenGauss | DbEngine::Dameng) => {
            let example = if engine == DbEngine::Dameng { "/opt/dmdbms/bin" } else { "$GAUSSHOME/bin" };
            return Err(ConfigError::NoBinDir { section, tools: engine.tools().join(", "), example });
        }
    };
    for (key, value, min) in [
        ("stream_timeout_ms", raw.stream_timeout_ms, 1000),
        ("start_timeout_ms", raw.start_timeout_ms, 1000),
        ("rebuild_timeout_ms", raw.rebuild_timeout_ms, 1000),
    ] {
        if value < min {
            return Err(ConfigError::TooSmall { section, key, value, min });
        }
    }
    for (key, value) in [("initdb_locale", &raw.initdb_locale), ("initdb_encoding", &raw.initdb_encoding)] {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
        if value.is_empty() || value.len() > 64 || !value.chars().all(allowed) {
            return Err(ConfigError::BadLocale { section, key, value: value.clone() });
        }
    }
    Ok(PgSettings {
        engine,
        bin_dir,
        data_dir: raw.data_dir.unwrap_or_else(|| data_dir.join(engine.default_data_dir_name())),
        listen,
        connect_address,
        superuser,
        superuser_password: password(
            section,
            &raw.superuser_password_file,
            "superuser_password_file",
            "HARAFT_SUPERUSER_PASSWORD",
            "superuser",
            base,
            getenv,
        )?,
        replication_user: raw.replication_user,
        replication_password: password(
            section,
            &raw.replication_password_file,
            "replication_password_file",
            "HARAFT_REPLICATION_PASSWORD",
            "replication",
            base,
            getenv,
        )?,
        replication_password_file: raw
            .replication_password_file
            .as_ref()
            .map(|f| if f.is_absolute() { f.clone() } else { base.join(f) }),
        nofailover: raw.nofailover,
        priority: raw.priority,
        stream_timeout_ms: raw.stream_timeout_ms,
        start_timeout_ms: raw.start_timeout_ms,
        rebuild_timeout_ms: raw.rebuild_timeout_ms,
        keep_aside: raw.keep_aside,
        initdb_locale: raw.initdb_locale,
        initdb_encoding: raw.initdb_encoding,
        commit_guard_margin_ms: raw.commit_guard_margin_ms,
    })
}

fn validate(raw: RawConfig, base: &Path, getenv: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if !valid_name(&raw.cluster.name) {
        return Err(ConfigError::BadClusterName { name: raw.cluster.name });
    }
    if raw.member.is_empty() {
        return Err(ConfigError::NoMembers);
    }
    let (mut ids, mut names, mut addresses) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for m in &raw.member {
        if !ids.insert(m.id) {
            return Err(ConfigError::DuplicateMemberId { id: m.id });
        }
        if !valid_name(&m.name) {
            return Err(ConfigError::BadMemberName { name: m.name.clone() });
        }
        if !names.insert(m.name.clone()) {
            return Err(ConfigError::DuplicateMemberName { name: m.name.clone() });
        }
        if !host_port(&m.address) {
            return Err(ConfigError::BadMemberAddress { name: m.name.clone(), address: m.address.clone() });
        }
        if !addresses.insert(m.address.clone()) {
            return Err(ConfigError::DuplicateMemberAddress { address: m.address.clone() });
        }
    }
    let Some(me) = raw.member.iter().find(|m| m.id == raw.node.id) else {
        let ids = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        return Err(ConfigError::NodeNotMember { id: raw.node.id, ids });
    };
    let listen = match &raw.node.listen {
        Some(value) => value.parse().map_err(|_| ConfigError::BadListen { value: value.clone() })?,
        None => me.address.parse().map_err(|_| ConfigError::ListenNeeded { address: me.address.clone() })?,
    };
    if raw.node.data_dir.as_os_str().is_empty() {
        return Err(ConfigError::EmptyDataDir);
    }
    let timing = Timing {
        lease_ttl_ms: raw.lease.ttl_ms,
        renew_interval_ms: raw.lease.renew_interval_ms,
        clock_drift_ppm: raw.lease.clock_drift_ppm,
        demote_budget_ms: raw.lease.demote_budget_ms,
    }
    .validate()
    .map_err(ConfigError::Lease)?;
    let r = &raw.raft;
    if r.heartbeat_interval_ms == 0 {
        return Err(ConfigError::HeartbeatZero);
    }
    if r.heartbeat_interval_ms >= r.election_timeout_min_ms {
        return Err(ConfigError::HeartbeatTooSlow {
            heartbeat: r.heartbeat_interval_ms,
            min: r.election_timeout_min_ms,
        });
    }
    if r.election_timeout_min_ms >= r.election_timeout_max_ms {
        return Err(ConfigError::ElectionRange { min: r.election_timeout_min_ms, max: r.election_timeout_max_ms });
    }
    if r.write_timeout_ms < r.election_timeout_max_ms {
        return Err(ConfigError::WriteTimeoutTooShort {
            write_timeout: r.write_timeout_ms,
            max: r.election_timeout_max_ms,
        });
    }
    if !matches!(raw.log.level.as_str(), "error" | "warn" | "info" | "debug" | "trace") {
        return Err(ConfigError::BadLogLevel { level: raw.log.level });
    }
    let mut sections: Vec<(DbEngine, RawPostgres)> =
        [(DbEngine::Postgres, raw.postgresql), (DbEngine::OpenGauss, raw.opengauss), (DbEngine::Dameng, raw.dameng)]
            .into_iter()
            .filter_map(|(engine, section)| Some((engine, section?)))
            .collect();
    let postgres = match sections.len() {
        0 => None,
        1 => {
            let (engine, section) = sections.pop().expect("one section");
            Some(validate_postgres(engine, section, &raw.node.data_dir, base, getenv)?)
        }
        n => {
            let names: Vec<String> = sections.iter().map(|(e, _)| format!("[{}]", e.section())).collect();
            let sections = if n == 2 {
                format!("both {} and {}", names[0], names[1])
            } else {
                format!("{} and {}", names[..n - 1].join(", "), names[n - 1])
            };
            return Err(ConfigError::TwoEngines { sections });
        }
    };
    let mut dial = Dial::default();
    for (name, d) in &raw.network.dial {
        let member = raw.member.iter().find(|m| &m.name == name);
        let Some(member) = member else { return Err(ConfigError::DialUnknownMember { name: name.clone() }) };
        for (key, value, map) in
            [("raft", &d.raft, &mut dial.raft), ("postgresql", &d.postgresql, &mut dial.postgresql)]
        {
            if let Some(v) = value {
                if !host_port(v) {
                    return Err(ConfigError::BadDialAddress { name: name.clone(), key, value: v.clone() });
                }
                map.insert(NodeId(member.id), v.clone());
            }
        }
    }
    let rest_listen = match &raw.rest.listen {
        Some(value) => Some(value.parse().map_err(|_| ConfigError::BadRestListen { value: value.clone() })?),
        None => None,
    };
    let callbacks = validate_callbacks(&raw.callbacks)?;
    let tls = match &raw.tls {
        Some(t) => {
            // Relative to the config file's directory, like password files.
            let at = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base.join(p) };
            let files = haraft_raft::tls::TlsFiles { ca: at(&t.ca_file), cert: at(&t.cert_file), key: at(&t.key_file) };
            let loaded = std::sync::Arc::new(haraft_raft::tls::Tls::load(&files).map_err(ConfigError::Tls)?);
            Some(TlsSetting { files, loaded })
        }
        None => None,
    };
    let auth = validate_auth(&raw.auth, base, tls.is_some())?;
    if raw.rest.tls && tls.is_none() {
        return Err(ConfigError::RestTlsWithoutTls);
    }
    let synchronous_mode = match &raw.failover.synchronous_mode {
        RawSyncMode::Bool(true) => SyncMode::On,
        RawSyncMode::Bool(false) => SyncMode::Off,
        RawSyncMode::Word(w) => SyncMode::parse(w).ok_or_else(|| ConfigError::BadSyncMode { value: w.clone() })?,
    };
    let count = raw.failover.synchronous_node_count;
    if !(1..=haraft_core::ops::MAX_SYNC_NODES).contains(&count) {
        return Err(ConfigError::BadSyncCount { value: count, max: haraft_core::ops::MAX_SYNC_NODES });
    }
    let policy = Policy {
        maximum_lag_on_failover_bytes: raw.failover.maximum_lag_on_failover_bytes,
        primary_start_timeout_ms: raw.failover.primary_start_timeout_ms,
        rebuild_on_rewind_failure: raw.failover.rebuild_on_rewind_failure,
        synchronous_mode,
        synchronous_node_count: count,
        synchronous_strict: raw.failover.synchronous_strict,
    };
    Ok(Config {
        cluster: raw.cluster.name,
        node: NodeId(raw.node.id),
        node_name: me.name.clone(),
        join: raw.node.join,
        listen,
        data_dir: raw.node.data_dir,
        members: raw
            .member
            .iter()
            .map(|m| Member { id: NodeId(m.id), name: m.name.clone(), address: m.address.clone() })
            .collect(),
        timing,
        raft: RaftTiming {
            heartbeat_interval_ms: r.heartbeat_interval_ms,
            election_timeout_min_ms: r.election_timeout_min_ms,
            election_timeout_max_ms: r.election_timeout_max_ms,
            write_timeout_ms: r.write_timeout_ms,
        },
        log_level: raw.log.level,
        policy,
        postgres,
        dial,
        rest_listen,
        rest_tls: raw.rest.tls,
        callbacks,
        tls,
        auth,
    })
}

fn validate_auth(raw: &RawAuth, base: &Path, tls: bool) -> Result<Auth, ConfigError> {
    if !raw.admin_names.is_empty() && !tls {
        return Err(ConfigError::AdminNamesWithoutTls);
    }
    let token = |key: &'static str, file: &Option<PathBuf>| -> Result<Option<Secret>, ConfigError> {
        let Some(f) = file else { return Ok(None) };
        let path = if f.is_absolute() { f.clone() } else { base.join(f) };
        let shown = path.display().to_string();
        let fail = |message: String| ConfigError::TokenFile { key, path: shown.clone(), message };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        if let Some(mode) = haraft_raft::tls::open_to_others(&path) {
            return Err(fail(format!("readable by other users (mode {mode:o}): chmod 600 it")));
        }
        let first = text.lines().next().unwrap_or("").trim().to_string();
        if first.len() < 16 {
            return Err(fail("the token (first line) is shorter than 16 characters: use a long random one".into()));
        }
        Ok(Some(Secret(first)))
    };
    Ok(Auth {
        admin_names: raw.admin_names.clone(),
        admin_token: token("admin_token_file", &raw.admin_token_file)?,
        read_token: token("read_token_file", &raw.read_token_file)?,
    })
}

fn validate_callbacks(raw: &RawCallbacks) -> Result<Callbacks, ConfigError> {
    if !(100..=600_000).contains(&raw.timeout_ms) {
        return Err(ConfigError::CallbackTimeout { value: raw.timeout_ms });
    }
    let command = |key: &'static str, value: &Option<String>| -> Result<Option<Vec<String>>, ConfigError> {
        let Some(value) = value else { return Ok(None) };
        let words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        let Some(program) = words.first() else { return Err(ConfigError::EmptyCallback { key }) };
        // The agent's working directory is no place to look a program up:
        // a full path runs the same program however the agent was started.
        if !Path::new(program).is_absolute() {
            return Err(ConfigError::CallbackNotAbsolute { key, value: value.clone(), program: program.clone() });
        }
        Ok(Some(words))
    };
    Ok(Callbacks {
        on_start: command("on_start", &raw.on_start)?,
        on_stop: command("on_stop", &raw.on_stop)?,
        on_role_change: command("on_role_change", &raw.on_role_change)?,
        timeout_ms: raw.timeout_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[cluster]
name = "demo"

[node]
id = 2
data_dir = "data/node2"

[[member]]
id = 1
name = "node1"
address = "127.0.0.1:7001"

[[member]]
id = 2
name = "node2"
address = "127.0.0.1:7002"

[[member]]
id = 3
name = "node3"
address = "127.0.0.1:7003"
"#;

    fn err(extra: &str) -> String {
        let text = format!("{BASE}\n{extra}");
        match parse("test.toml", &text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => {
                let s = e.to_string();
                assert!(!s.contains('\n'), "error spans lines: {s}");
                s
            }
        }
    }

    /// One case: base text with `replace` applied must fail mentioning `expected`.
    fn check_replaced(from: &str, to: &str, expected: &str) {
        let text = BASE.replacen(from, to, 1);
        let e = parse("test.toml", &text).expect_err("accepted").to_string();
        assert!(e.contains(expected), "{e:?} lacks {expected:?}");
        assert!(!e.contains('\n'), "error spans lines: {e}");
    }

    #[test]
    fn base_parses_with_defaults() {
        let c = parse("test.toml", BASE).unwrap();
        assert_eq!(c.node, NodeId(2));
        assert_eq!(c.node_name, "node2");
        assert_eq!(c.listen, "127.0.0.1:7002".parse().unwrap());
        assert_eq!(c.timing, Timing::default());
        assert_eq!(c.raft, RaftTiming::default());
        assert_eq!(c.members.len(), 3);
        assert!(!c.join);
        let joining = parse("test.toml", &BASE.replacen("[node]\n", "[node]\njoin = true\n", 1)).unwrap();
        assert!(joining.join);
        check_replaced("[node]\n", "[node]\njoin = \"yes\"\n", "join");
    }

    #[test]
    fn dial_overrides_name_members_and_addresses() {
        let c = parse("test.toml", &format!("{BASE}\n[network.dial.node3]\nraft = \"127.0.0.1:17003\"\n")).unwrap();
        assert_eq!(c.dial.raft.get(&NodeId(3)).map(String::as_str), Some("127.0.0.1:17003"));
        assert!(c.dial.postgresql.is_empty());
        let e = err("[network.dial.node9]\nraft = \"127.0.0.1:1\"\n");
        assert!(e.contains("network.dial.node9: no member is named"), "{e}");
        let e = err("[network.dial.node3]\npostgresql = \"nowhere\"\n");
        assert!(e.contains("network.dial.node3.postgresql = \"nowhere\" is not HOST:PORT"), "{e}");
        let e = err("[network.dial.node3]\nssh = \"x:1\"\n");
        assert!(e.contains("ssh"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = err("[lease]\nttl_ms = 3000\nttl_sec = 3\n");
        assert!(e.contains("ttl_sec"), "{e}");
        assert!(e.starts_with("test.toml:"), "{e}");
    }

    #[test]
    fn unsafe_timing_is_refused_not_adjusted() {
        let e = err("[lease]\nttl_ms = 1500\nrenew_interval_ms = 1000\n");
        assert!(e.contains("lease.ttl_ms = 1500 is too short"), "{e}");
        assert!(e.contains("at least 2122"), "{e}");
        let e = err("[raft]\nheartbeat_interval_ms = 600\n");
        assert!(e.contains("raft.heartbeat_interval_ms = 600"), "{e}");
        let e = err("[raft]\nelection_timeout_min_ms = 1000\n");
        assert!(e.contains("election_timeout_min_ms = 1000"), "{e}");
        let e = err("[raft]\nwrite_timeout_ms = 100\n");
        assert!(e.contains("write_timeout_ms = 100"), "{e}");
    }

    #[test]
    fn member_list_rules() {
        check_replaced("id = 3", "id = 1", "member id 1 appears more than once");
        check_replaced("name = \"node3\"", "name = \"node1\"", "member name \"node1\" appears more than once");
        check_replaced("127.0.0.1:7003", "127.0.0.1:7001", "address 127.0.0.1:7001 appears more than once");
        check_replaced("127.0.0.1:7003", "127.0.0.1", "is not host:port");
        check_replaced(
            "id = 2\ndata_dir",
            "id = 9\ndata_dir",
            "node.id = 9 is not one of the [[member]] ids (1, 2, 3)",
        );
        check_replaced("name = \"demo\"", "name = \"a b\"", "cluster.name");
        check_replaced("data_dir = \"data/node2\"", "data_dir = \"\"", "node.data_dir is empty");
        check_replaced(
            "data_dir = \"data/node2\"",
            "data_dir = \"d\"\nlisten = \"nowhere\"",
            "node.listen = \"nowhere\"",
        );
        check_replaced("name = \"demo\"", "name = \"demo\"\nport = 1", "port");
        check_replaced("id = 2\ndata_dir", "id = \"two\"\ndata_dir", "test.toml:6: invalid type");
    }

    #[test]
    fn hostname_member_needs_listen() {
        let text = BASE.replace("127.0.0.1:7002", "db2.example:7002");
        let e = parse("t.toml", &text).unwrap_err();
        assert!(matches!(e, ConfigError::ListenNeeded { .. }), "{e}");
        let text = text.replace("data_dir = \"data/node2\"", "data_dir = \"data/node2\"\nlisten = \"0.0.0.0:7002\"");
        assert_eq!(parse("t.toml", &text).unwrap().listen, "0.0.0.0:7002".parse().unwrap());
    }

    #[test]
    fn rest_and_callbacks() {
        let c = parse("test.toml", BASE).unwrap();
        assert_eq!(c.rest_listen, None);
        assert_eq!(c.callbacks, Callbacks { timeout_ms: 10_000, ..Callbacks::default() });
        let text = format!(
            "{BASE}\n[rest]\nlisten = \"0.0.0.0:8008\"\n[callbacks]\non_role_change = \"/usr/local/bin/notify --quiet\"\ntimeout_ms = 500\n"
        );
        let c = parse("test.toml", &text).unwrap();
        assert_eq!(c.rest_listen, Some("0.0.0.0:8008".parse().unwrap()));
        assert_eq!(c.callbacks.on_role_change, Some(vec!["/usr/local/bin/notify".to_string(), "--quiet".to_string()]));
        assert_eq!(c.callbacks.timeout_ms, 500);
        assert!(err("[rest]\nlisten = \"8008\"\n").contains("rest.listen = \"8008\" is not an ip:port"));
        assert!(err("[rest]\nport = 8008\n").contains("port"));
        assert!(
            err("[rest]\nlisten = \"127.0.0.1:8008\"\ntls = true\n").contains("rest.tls = true needs a [tls] section")
        );
        assert!(err("[callbacks]\non_stop = \"  \"\n").contains("callbacks.on_stop is empty"));
        let e = err("[callbacks]\non_start = \"notify.sh start\"\n");
        assert!(e.contains("callbacks.on_start = \"notify.sh start\": notify.sh is not an absolute path"), "{e}");
        assert!(err("[callbacks]\ntimeout_ms = 0\n").contains("callbacks.timeout_ms must be between 100 and 600000"));
        assert!(err("[callbacks]\non_promote = \"/bin/true\"\n").contains("on_promote"));
    }

    #[test]
    fn bad_log_level() {
        assert!(err("[log]\nlevel = \"loud\"\n").contains("log.level = \"loud\""));
    }

    /// `text` (BASE plus `extra`) validated with both passwords in the
    /// environment.
    fn with_passwords(extra: &str) -> Result<Config, String> {
        let text = format!("{BASE}\n{extra}");
        let raw: RawConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        let env = |name: &str| name.ends_with("_PASSWORD").then(|| "secret".to_string());
        validate(raw, Path::new("."), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn exactly_one_engine_and_its_tools() {
        let tools = tempfile::tempdir().unwrap();
        let dir = tools.path().display().to_string();
        let og = format!("[opengauss]\nbin_dir = \"{dir}\"\nlisten = \"127.0.0.1:6432\"\n");
        let e = with_passwords(&og).unwrap_err();
        assert!(e.contains(&format!("opengauss.bin_dir = {dir}: gs_ctl, gs_initdb, pg_controldata not found")), "{e}");
        for t in ["gs_ctl", "gs_initdb"] {
            std::fs::write(tools.path().join(t), "").unwrap();
        }
        let e = with_passwords(&og).unwrap_err();
        assert!(e.contains(": pg_controldata not found"), "{e}");
        std::fs::write(tools.path().join("pg_controldata"), "").unwrap();
        let c = with_passwords(&og).unwrap();
        assert_eq!(c.postgres.as_ref().unwrap().engine, DbEngine::OpenGauss);
        let e = with_passwords("[opengauss]\nlisten = \"127.0.0.1:6432\"\n").unwrap_err();
        assert!(e.contains("opengauss.bin_dir is not set"), "{e}");
        let e = with_passwords(&format!("{og}[postgresql]\nlisten = \"127.0.0.1:5432\"\n")).unwrap_err();
        assert!(e.contains("both [postgresql] and [opengauss] are set"), "{e}");
        let e = with_passwords(&format!("{og}superuser = \"a b\"\n")).unwrap_err();
        assert!(e.contains("opengauss.superuser = \"a b\" is not a valid role name"), "{e}");
    }

    #[test]
    fn a_dameng_section_and_its_tools() {
        let tools = tempfile::tempdir().unwrap();
        let dir = tools.path().display().to_string();
        let dm = format!("[dameng]\nbin_dir = \"{dir}\"\nlisten = \"127.0.0.1:5236\"\n");
        let e = with_passwords(&dm).unwrap_err();
        assert!(e.contains(&format!("dameng.bin_dir = {dir}: dminit, dmserver, disql, dmrman not found")), "{e}");
        for t in haraft_db::dameng::TOOLS {
            std::fs::write(tools.path().join(t), "").unwrap();
        }
        let pg = with_passwords(&dm).unwrap().postgres.unwrap();
        assert_eq!(pg.engine, DbEngine::Dameng);
        assert_eq!(pg.superuser, "SYSDBA", "DM's superuser by default");
        assert!(pg.data_dir.ends_with("DAMENG"), "{}", pg.data_dir.display());
        let named = with_passwords(&format!("{dm}superuser = \"DBA2\"\n")).unwrap().postgres.unwrap();
        assert_eq!(named.superuser, "DBA2");
        let e = with_passwords("[dameng]\nlisten = \"127.0.0.1:5236\"\n").unwrap_err();
        assert!(e.contains("dameng.bin_dir is not set: name the directory holding dminit, dmserver"), "{e}");
        let og = "[opengauss]\nlisten = \"127.0.0.1:6432\"\n";
        let e = with_passwords(&format!("{dm}{og}")).unwrap_err();
        assert!(e.contains("both [opengauss] and [dameng] are set"), "{e}");
        let e = with_passwords(&format!("{dm}{og}[postgresql]\nlisten = \"127.0.0.1:5432\"\n")).unwrap_err();
        assert!(e.contains("[postgresql], [opengauss] and [dameng] are set"), "{e}");
        // The other engines keep their superuser.
        assert_eq!(
            with_passwords("[postgresql]\nlisten = \"127.0.0.1:5432\"\n").unwrap().postgres.unwrap().superuser,
            "postgres"
        );
    }

    #[test]
    fn synchronous_modes() {
        let mode = |text: &str| with_passwords(&format!("[failover]\n{text}\n")).map(|c| c.policy);
        assert_eq!(mode("synchronous_mode = true").unwrap().synchronous_mode, SyncMode::On);
        assert_eq!(mode("synchronous_mode = false").unwrap().synchronous_mode, SyncMode::Off);
        let p = mode("synchronous_mode = \"quorum\"\nsynchronous_node_count = 2\nsynchronous_strict = true").unwrap();
        assert_eq!((p.synchronous_mode, p.synchronous_node_count, p.synchronous_strict), (SyncMode::Quorum, 2, true));
        let e = mode("synchronous_mode = \"sometimes\"").unwrap_err();
        assert!(e.contains("failover.synchronous_mode = \"sometimes\" is not one of off, on, quorum"), "{e}");
        let e = mode("synchronous_node_count = 0").unwrap_err();
        assert!(e.contains("failover.synchronous_node_count = 0 must be between 1 and"), "{e}");
    }
}
