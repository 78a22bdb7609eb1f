//! `haraftctl`: the admin CLI. Reads the cluster's state from any agent.

mod client;
mod demo;
mod dsn;
mod generate;
mod gs_om;
mod operate;

pub(crate) use client::{Ask, TLS, TOKEN, call_error, connect, fetch, is_transport_failure, read_token, request};

use clap::{CommandFactory, Parser, Subcommand};
use haraft_core::ops::Request;
use haraft_core::status::{ClusterHealth, ClusterStatus, HistoryItem, MemberRole, MemberState, RaftRole, bytes};
use std::process::ExitCode;
use std::time::Duration;

/// haraftctl: look at and steer a haraft cluster.
///
/// Any one reachable agent is enough: it forwards to the Raft leader and
/// probes the other members itself.
///
/// Examples:
///   haraftctl status                      # the table, from the local demo cluster
///   haraftctl --endpoints db1:7001,db2:7001 status --json
///   haraftctl status --format gs_om       # as openGauss's gs_om -t status --detail
///
/// Exit codes: 0 success, 1 the cluster could not be reached, refused, or
/// the operation failed, 2 bad arguments, 3 the operation is still in
/// progress (its outcome is not known yet: follow it).
#[derive(Parser)]
#[command(name = "haraftctl", version, about, long_about, verbatim_doc_comment)]
struct Args {
    /// Agents to ask, HOST:PORT[,HOST:PORT...]: their node.listen
    /// addresses. Tried in order until one answers.
    #[arg(
        long,
        env = "HARAFTCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
        global = true
    )]
    endpoints: Vec<String>,

    /// How long to wait for one endpoint before trying the next.
    #[arg(long, default_value_t = 5000, global = true, value_name = "MS")]
    timeout_ms: u64,

    /// The cluster CA (PEM), for a cluster with [tls]: connect over TLS
    /// and check each agent's certificate against it and the endpoint's
    /// host. Needs --cert-file and --key-file (the operator's certificate).
    #[arg(long, env = "HARAFTCTL_CA_FILE", global = true, value_name = "FILE", requires_all = ["cert_file", "key_file"])]
    ca_file: Option<std::path::PathBuf>,
    /// This operator's certificate (PEM), signed by the cluster CA.
    #[arg(long, env = "HARAFTCTL_CERT_FILE", global = true, value_name = "FILE", requires = "ca_file")]
    cert_file: Option<std::path::PathBuf>,
    /// Its private key (PEM, not readable by others).
    #[arg(long, env = "HARAFTCTL_KEY_FILE", global = true, value_name = "FILE", requires = "ca_file")]
    key_file: Option<std::path::PathBuf>,

    /// A file whose first line is a token of the cluster (auth.admin_token_file
    /// or auth.read_token_file on the agents); not readable by others.
    #[arg(long, env = "HARAFTCTL_TOKEN_FILE", global = true, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the cluster: Raft leader, term, commit index, the primary and
    /// its epoch, and every member's Raft role and reachability.
    #[command(visible_alias = "list")]
    Status {
        /// Print the status document as JSON (stable: fields are only ever
        /// added). See the README for every field. Same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// table: the human table. json: the status document (as --json).
        /// gs_om: the blocks of openGauss's `gs_om -t status --detail`
        /// (cluster state, then every datanode on one line), for any engine.
        #[arg(long, value_enum, default_value = "table")]
        format: StatusFormat,
        /// Show it again every SECONDS (default 2) until Ctrl-C; with
        /// --json (--format json), one document per line.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2", value_parser = watch_seconds)]
        watch: Option<f64>,
    },
    /// List what happened to the cluster: epochs granted (with who was
    /// eligible and why not), lapses, releases, rewinds and rebuilds, and
    /// every operator operation with who asked, its steps and outcome.
    History {
        #[command(subcommand)]
        command: Option<HistoryCommand>,
        /// Print the history as a JSON array (stable: fields are only ever
        /// added). See the README for every field.
        #[arg(long)]
        json: bool,
        /// Show it again every SECONDS (default 2) until Ctrl-C.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2", value_parser = watch_seconds)]
        watch: Option<f64>,
    },
    /// Print a libpq multi-host connection string (postgresql://...) that
    /// finds the primary (or a replica) by itself after a failover.
    Dsn {
        #[arg(long, value_enum, default_value = "primary")]
        role: dsn::Role,
        #[arg(long, default_value = "postgres")]
        user: String,
        #[arg(long, default_value = "postgres")]
        dbname: String,
        /// Print {"dsn": ..., "role": ...} instead.
        #[arg(long)]
        json: bool,
    },
    /// Start a local demo cluster: agents and real PostgreSQL servers on
    /// 127.0.0.1 in a temporary directory; Ctrl-C stops all of it. Uses
    /// ports 7001-7003, 5441-5443 and 8001-8003 when free (haraftctl's
    /// default endpoints), other free ports otherwise. As root, PostgreSQL
    /// runs as the postgres OS user.
    Demo {
        /// Keep the cluster's data here (it stays after Ctrl-C) instead of
        /// a temporary directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Keep the temporary directory after Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Print a shell completion script: bash, zsh, fish, elvish or
    /// powershell, e.g.
    ///   source <(haraftctl completions bash)
    /// (the Debian package installs them where each shell looks).
    #[command(verbatim_doc_comment)]
    Completions {
        #[arg(value_enum)]
        shell: generate::Shell,
    },
    /// Write the man pages (haraftctl.1 and one per subcommand, e.g.
    /// haraftctl-switchover.1) into DIR, e.g. for a build from source:
    ///   haraftctl man --dir ~/.local/share/man/man1
    /// (the Debian package ships them).
    #[command(verbatim_doc_comment)]
    Man {
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
    },
    /// Planned switchover: the primary stops cleanly, the target gets the
    /// next epoch once it has all of the primary's WAL, promotes, and the
    /// old primary follows it. Nothing committed is lost. Each step is
    /// printed as it commits; exit 0 only when done.
    Switchover {
        /// The current primary (checked: refused if it is not).
        #[arg(long, value_name = "NAME")]
        from: Option<String>,
        /// The member to promote; without it the best candidate is chosen
        /// and named.
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
        /// Run later: 2026-11-21T14:30:00Z, "2026-11-21 14:30" (UTC), or
        /// +90s, +15m, +2h. Checked again at that time; skipped (and
        /// recorded so) if its preconditions do not hold then.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Do not ask for confirmation; also run while the cluster is paused.
        #[arg(long)]
        force: bool,
        /// Cancel the scheduled switchover, or the running one before its
        /// old primary stopped.
        #[arg(long, conflicts_with_all = ["from", "to", "at"])]
        cancel: bool,
        /// Give up following after this many seconds (the switchover
        /// continues; exit code 3).
        #[arg(long, default_value_t = 180, value_name = "SECONDS")]
        wait: u64,
    },
    /// Promote NAME in a cluster without a healthy primary. Refused while
    /// a healthy primary holds the lease (use switchover).
    Failover {
        #[arg(long, value_name = "NAME")]
        to: String,
        /// Do not ask for confirmation; also run while the cluster is paused.
        #[arg(long)]
        force: bool,
        /// Promote it even if it may miss acknowledged writes (lagging, not
        /// a synchronous standby, on an older timeline). Recorded in the history.
        #[arg(long)]
        allow_data_loss: bool,
        #[arg(long, default_value_t = 120, value_name = "SECONDS")]
        wait: u64,
    },
    /// Rebuild a replica: rewind from the primary (a base backup if that
    /// fails), or a fresh base backup with --full (the old data directory
    /// is kept aside). Refused on the primary.
    Rebuild {
        name: String,
        #[arg(long)]
        full: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value_t = 900, value_name = "SECONDS")]
        wait: u64,
    },
    /// Restart PostgreSQL on NAME cleanly; the primary keeps its lease.
    Restart {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        wait: u64,
    },
    /// Maintenance mode: no automatic failover and no automatic actions on
    /// databases (fencing still happens). Shown in status.
    Pause,
    /// Leave maintenance mode.
    Resume,
    /// The cluster-wide settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Add or remove a member of the cluster (Raft group and database).
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Follow operation ID (from the history) until it ends.
    Follow {
        id: u64,
        #[arg(long, default_value_t = 180, value_name = "SECONDS")]
        wait: u64,
    },
}

/// How `haraftctl status` prints the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StatusFormat {
    Table,
    Json,
    #[value(name = "gs_om")]
    GsOm,
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Acknowledge the rewinds that discarded writes (the WARNING lines of
    /// haraftctl status): once the lost writes are dealt with, status
    /// stops warning about them. Later discards warn again.
    Ack,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings by their config-file keys.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Change settings, e.g. failover.synchronous_mode=true
    /// failover.maximum_lag_on_failover=16MB lease.ttl_ms=3000. Validated
    /// before being proposed; lease timing takes effect with the next epoch.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        changes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Add a member whose agent runs with node.join = true: it receives the
    /// Raft log as a learner, becomes a voter once caught up, then copies
    /// the database from the primary and streams. Run again to finish an
    /// add that left it a learner.
    Add {
        /// Its name (as in its config's [[member]] entry).
        name: String,
        /// Its id: one no member of this cluster ever had.
        #[arg(long)]
        id: u64,
        /// host:port of its agent's gRPC listener.
        #[arg(long, value_name = "HOST:PORT")]
        address: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Remove a member. Refused for a primary that holds a valid lease
    /// (switch over first), a member taking part in an operation, and in
    /// synchronous mode for a synchronous standby while no primary holds a
    /// lease. Its agent stops its PostgreSQL once it learns of it.
    Remove {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Replace a member whose Raft store was damaged or lost: its old id
    /// leaves the cluster (remove) and the same name and address come back
    /// under a new id (add), as a learner until caught up, then a voter. On
    /// its host first: haraft --retire-store, then node.id = NEW_ID and
    /// join = true in its config, then start its agent. Its database is
    /// kept if it is the cluster's. Run again to finish a replace that
    /// stopped half-way.
    Replace {
        name: String,
        /// Its new id: one no member of this cluster ever had.
        #[arg(long)]
        id: u64,
        /// host:port of its agent's gRPC listener (default: the address
        /// the member has now; needed when the old id is already removed).
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    for e in &args.endpoints {
        if !valid_endpoint(e) {
            eprintln!("haraftctl: bad endpoint {e:?} in --endpoints: expected HOST:PORT, e.g. 127.0.0.1:7001");
            return ExitCode::from(2);
        }
    }
    if let (Some(ca), Some(cert), Some(key)) = (&args.ca_file, &args.cert_file, &args.key_file) {
        let files = haraft_raft::tls::TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() };
        match haraft_raft::tls::Tls::load(&files) {
            Ok(tls) => {
                let _ = TLS.set(tls);
            }
            Err(e) => {
                eprintln!("haraftctl: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &args.token_file {
        match read_token(path) {
            Ok(token) => {
                let _ = TOKEN.set(token);
            }
            Err(e) => {
                eprintln!("haraftctl: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("haraftctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let endpoints = &args.endpoints;
    let now_unix_ms = now_unix_ms();
    let secs = Duration::from_secs;
    let operation = match args.command {
        Command::Status { json, format, watch } => {
            let format = if json { StatusFormat::Json } else { format };
            return exit(runtime.block_on(watching(watch, || status(endpoints, timeout, format, watch.is_some()))));
        }
        Command::History { command: Some(HistoryCommand::Ack), .. } => {
            runtime.block_on(operate::run(endpoints, timeout, Request::AcknowledgeLoss, false, secs(30)))
        }
        Command::History { command: None, json, watch } => {
            return exit(runtime.block_on(watching(watch, || history(endpoints, timeout, json))));
        }
        Command::Dsn { role, user, dbname, json } => {
            return exit(runtime.block_on(print_dsn(endpoints, timeout, role, &user, &dbname, json)));
        }
        Command::Demo { dir, nodes, keep } => {
            return exit(runtime.block_on(demo::run(demo::Options { dir, nodes, keep })));
        }
        Command::Completions { shell } => {
            use std::io::Write;
            let script = generate::completions(&Args::command(), shell);
            if let Err(e) = std::io::stdout().write_all(&script) {
                eprintln!("haraftctl: writing the completion script: {e}");
                return ExitCode::FAILURE;
            }
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => {
            return match generate::man_pages(&Args::command(), &dir) {
                Ok(files) => {
                    println!("{}: {}", dir.display(), files.join(" "));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("haraftctl: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Config { command: ConfigCommand::Show { json } } => {
            return exit(runtime.block_on(config_show(endpoints, timeout, json)));
        }
        Command::Follow { id, wait } => runtime.block_on(operate::follow(endpoints, timeout, id, secs(wait))),
        Command::Switchover { cancel: true, .. } => {
            runtime.block_on(operate::run(endpoints, timeout, Request::CancelSwitchover, false, secs(30)))
        }
        Command::Switchover { from, to, at, force, wait, cancel: false } => {
            let at_unix_ms = match at.map(|a| operate::parse_at(&a, now_unix_ms)).transpose() {
                Ok(at) => at,
                Err(e) => {
                    eprintln!("haraftctl: {e}");
                    return ExitCode::from(2);
                }
            };
            let request = Request::Switchover { from, to, at_unix_ms, force };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(wait)))
        }
        Command::Failover { to, force, allow_data_loss, wait } => {
            let request = Request::Failover { to, allow_data_loss, force };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(wait)))
        }
        Command::Rebuild { name, full, force, wait } => {
            let request = Request::Rebuild { node: name, full };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(wait)))
        }
        Command::Restart { name, force, wait } => {
            runtime.block_on(operate::run(endpoints, timeout, Request::Restart { node: name }, !force, secs(wait)))
        }
        Command::Member { command: MemberCommand::Add { name, id, address, force } } => {
            let request = Request::AddMember { id, name, address };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(0)))
        }
        Command::Member { command: MemberCommand::Remove { name, force } } => {
            let request = Request::RemoveMember { node: name };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(0)))
        }
        Command::Member { command: MemberCommand::Replace { name, id, address, force } } => {
            runtime.block_on(operate::replace(endpoints, timeout, name, id, address, force))
        }
        Command::Pause => runtime.block_on(operate::run(endpoints, timeout, Request::Pause, false, secs(30))),
        Command::Resume => runtime.block_on(operate::run(endpoints, timeout, Request::Resume, false, secs(30))),
        Command::Config { command: ConfigCommand::Set { changes } } => {
            let mut pairs = Vec::new();
            for c in changes {
                match c.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => pairs.push((k.trim().to_string(), v.to_string())),
                    _ => {
                        eprintln!("haraftctl: {c:?} is not KEY=VALUE, e.g. failover.synchronous_mode=true");
                        return ExitCode::from(2);
                    }
                }
            }
            runtime.block_on(operate::run(endpoints, timeout, Request::SetConfig { changes: pairs }, false, secs(30)))
        }
    };
    match operation {
        Ok(operate::Ended::Done) => ExitCode::SUCCESS,
        Ok(operate::Ended::Failed(why)) => {
            eprintln!("haraftctl: {why}");
            ExitCode::FAILURE
        }
        Ok(operate::Ended::InProgress(why)) => {
            eprintln!("haraftctl: {why}");
            ExitCode::from(operate::EXIT_IN_PROGRESS)
        }
        Err(e) => {
            eprintln!("haraftctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("haraftctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn config_show(endpoints: &[String], timeout: Duration, json: bool) -> Result<(), String> {
    let document = fetch(endpoints, timeout, Ask::Status).await?;
    let status: ClusterStatus =
        serde_json::from_str(&document).map_err(|e| format!("agent sent unreadable status: {e}"))?;
    if json {
        let value = serde_json::json!({ "settings": status.settings, "pending_settings": status.pending_settings });
        println!("{}", serde_json::to_string_pretty(&value).expect("a JSON value always prints"));
        return Ok(());
    }
    for (k, v) in &status.settings {
        match status.pending_settings.get(k) {
            Some(next) => println!("{k} = {v}  (set to {next}: takes effect with the next epoch)"),
            None => println!("{k} = {v}"),
        }
    }
    Ok(())
}

fn valid_endpoint(e: &str) -> bool {
    match e.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// Runs `show` once, or every `watch` seconds (clearing the screen) until
/// Ctrl-C, which ends it with success; a failed look is shown and retried.
async fn watching<F: Future<Output = Result<(), String>>>(
    watch: Option<f64>,
    mut show: impl FnMut() -> F,
) -> Result<(), String> {
    let Some(seconds) = watch else { return show().await };
    let every = Duration::from_secs_f64(seconds);
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("listening for Ctrl-C: {e}"))?;
    loop {
        if let Err(e) = show().await {
            println!("{}  haraftctl: {e}", utc(now_unix_ms()));
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = interrupt.recv() => return Ok(()),
        }
    }
}

fn watch_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?} is not a refresh interval: give seconds between 0.1 and 3600, e.g. 2")),
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn print_dsn(
    endpoints: &[String],
    timeout: Duration,
    role: dsn::Role,
    user: &str,
    dbname: &str,
    json: bool,
) -> Result<(), String> {
    let document = fetch(endpoints, timeout, Ask::Status).await?;
    let status: ClusterStatus =
        serde_json::from_str(&document).map_err(|e| format!("agent sent unreadable status: {e}"))?;
    let dsn = dsn::dsn(&status, role, user, dbname)?;
    if json {
        let role = format!("{role:?}").to_lowercase();
        println!("{}", serde_json::json!({ "dsn": dsn, "role": role }));
    } else {
        println!("{dsn}");
    }
    Ok(())
}

async fn status(endpoints: &[String], timeout: Duration, format: StatusFormat, watch: bool) -> Result<(), String> {
    let document = fetch(endpoints, timeout, Ask::Status).await?;
    if format == StatusFormat::Json {
        // Print what the agent sent (pretty, or one line a document when
        // watching), so fields added by a newer agent pass through.
        let value: serde_json::Value =
            serde_json::from_str(&document).map_err(|e| format!("agent sent unreadable status: {e}"))?;
        let text = if watch { value.to_string() } else { serde_json::to_string_pretty(&value).expect("prints") };
        println!("{text}");
        return Ok(());
    }
    if watch {
        // Clear the screen and show when this was taken.
        println!("\x1b[2J\x1b[H{}  (Ctrl-C ends the watch)", utc(now_unix_ms()));
    }
    let status: ClusterStatus =
        serde_json::from_str(&document).map_err(|e| format!("agent sent unreadable status: {e}"))?;
    match format {
        StatusFormat::Table => print!("{}", render(&status)),
        StatusFormat::GsOm => print!("{}", gs_om::render(&status)),
        // Printed as the agent sent it, above.
        StatusFormat::Json => {}
    }
    Ok(())
}

async fn history(endpoints: &[String], timeout: Duration, json: bool) -> Result<(), String> {
    let document = fetch(endpoints, timeout, Ask::History).await?;
    if json {
        let value: serde_json::Value =
            serde_json::from_str(&document).map_err(|e| format!("agent sent an unreadable history: {e}"))?;
        println!("{}", serde_json::to_string_pretty(&value).expect("a JSON value always prints"));
        return Ok(());
    }
    let items: Vec<HistoryItem> =
        serde_json::from_str(&document).map_err(|e| format!("agent sent an unreadable history: {e}"))?;
    print!("{}", render_history(&items));
    Ok(())
}

use haraft_core::status::utc;

fn render_history(items: &[HistoryItem]) -> String {
    let mut out = String::new();
    for i in items {
        let at = i.at_unix_ms.map_or_else(|| "-".repeat(19), utc);
        out.push_str(&format!("{at}  #{:<6} {:<15} {}\n", i.log_index, i.event, i.detail));
        for v in &i.verdicts {
            let mark = if v.eligible { "eligible" } else { "not eligible" };
            out.push_str(&format!("{:29}{}: {mark}: {}\n", "", v.node, v.why));
        }
    }
    if items.is_empty() {
        out.push_str("no history yet\n");
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn role(r: RaftRole) -> &'static str {
    match r {
        RaftRole::Leader => "leader",
        RaftRole::Follower => "follower",
        RaftRole::Candidate => "candidate",
        RaftRole::Learner => "learner",
        RaftRole::Shutdown => "shutdown",
        RaftRole::Unknown => "?",
    }
}

fn member_role(r: MemberRole) -> &'static str {
    match r {
        MemberRole::Primary => "primary",
        MemberRole::Replica => "replica",
        MemberRole::Stopped => "stopped",
        MemberRole::Unknown => "unknown",
    }
}

fn member_state(s: MemberState) -> &'static str {
    match s {
        MemberState::Running => "running",
        MemberState::Streaming => "streaming",
        MemberState::CatchingUp => "catching up",
        MemberState::NeedsRewind => "needs rewind",
        MemberState::Rebuilding => "rebuilding",
        MemberState::Stopped => "stopped",
        MemberState::Unreachable => "unreachable",
        MemberState::NoDatabase => "no database",
        MemberState::ForeignData => "foreign data",
    }
}

/// The human table: a header of cluster facts, one row per member, then
/// warnings in plain words.
pub(crate) fn render(s: &ClusterStatus) -> String {
    let mut out = String::new();
    let leader = match &s.leader {
        Some(l) => format!("{l} (term {})", s.term),
        None => format!("none (term {})", s.term),
    };
    let primary = match (&s.primary, &s.lease) {
        (Some(p), Some(l)) => match l.valid_for_ms {
            Some(ms) => format!("{p} (epoch {}, lease valid for {ms} ms)", l.epoch),
            None => format!("{p} (epoch {}, lease not confirmed by the holder)", l.epoch),
        },
        _ => format!("none (last epoch {})", s.epoch),
    };
    let commit = s.commit_index.map_or("-".to_string(), |c| c.to_string());
    let health = match s.cluster_state {
        ClusterHealth::Normal => "Normal",
        ClusterHealth::Degraded => "Degraded",
        ClusterHealth::Unavailable => "Unavailable",
    };
    out.push_str(&format!("Cluster:      {} ({health})\n", s.cluster));
    out.push_str(&format!("Raft leader:  {leader}, commit index {commit}\n"));
    out.push_str(&format!("Primary:      {primary}\n"));
    if let Some(r) = s.lease.as_ref().and_then(|l| l.renewal_latency) {
        out.push_str(&format!(
            "Renewals:     commit latency p50 {:.1} ms, p99 {:.1} ms over the last {}\n",
            r.p50_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0,
            r.samples
        ));
    }
    if let Some(sync) = &s.synchronous {
        out.push_str(&format!("Synchronous:  {sync}\n"));
    }
    if let Some(op) = &s.operation {
        let id = s.operation_id.map(|id| format!(" (operation {id}: haraftctl follow {id})")).unwrap_or_default();
        out.push_str(&format!("In progress:  {op}{id}\n"));
    }
    if let Some(scheduled) = &s.scheduled {
        out.push_str(&format!("Scheduled:    {scheduled}\n"));
    }
    for task in &s.tasks {
        out.push_str(&format!("Task:         {task}\n"));
    }
    if s.paused {
        out.push_str("Paused:       yes: no automatic failover or actions (haraftctl resume)\n");
    }
    let view = if s.consistent {
        "the Raft leader, confirmed by a quorum"
    } else {
        "its own copy (not confirmed by a quorum)"
    };
    out.push_str(&format!("Features:     level {}{}\n", s.feature_level, versions_in_words(s)));
    out.push_str(&format!("Answered by:  {}, from {view}\n\n", s.answered_by));

    let header = [
        "MEMBER",
        "ID",
        "VERSION",
        "RAFT",
        "VOTER",
        "REACHABLE",
        "ROLE",
        "STATE",
        "DB ADDRESS",
        "TL",
        "LSN",
        "LAG",
        "NOTE",
    ];
    let rows: Vec<[String; 13]> = s
        .members
        .iter()
        .map(|m| {
            let mut notes = Vec::new();
            if s.primary.as_deref() == Some(m.name.as_str()) {
                notes.push(format!("lease holder, epoch {}", s.epoch));
            }
            if m.synchronous {
                notes.push("synchronous standby".to_string());
            }
            if let Some(a) = &m.action {
                notes.push(format!("doing: {a}"));
            }
            if let Some(e) = &m.error {
                notes.push(e.clone());
            }
            let dash = || "-".to_string();
            [
                m.name.clone(),
                m.id.to_string(),
                member_version(s, m),
                role(m.raft_role).to_string(),
                yes_no(m.voter).to_string(),
                yes_no(m.reachable).to_string(),
                member_role(m.role).to_string(),
                member_state(m.state).to_string(),
                m.db_address.clone().unwrap_or_else(dash),
                m.timeline.map_or_else(dash, |t| t.to_string()),
                m.lsn.clone().unwrap_or_else(dash),
                m.lag_bytes.map_or_else(dash, bytes),
                notes.join("; "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    out.push_str(&line(header.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    // Notes are sentences: under the table, one line a member.
    let noted: Vec<(&str, &str)> =
        s.members.iter().filter_map(|m| Some((m.name.as_str(), m.note.as_deref()?))).collect();
    if !noted.is_empty() {
        out.push('\n');
        for (name, note) in noted {
            out.push_str(&format!("{name}: {note}\n"));
        }
    }

    let mut warnings = Vec::new();
    for m in &s.members {
        if let Some(level) = m.feature_level.filter(|l| *l < s.feature_level) {
            warnings.push(format!(
                "{} runs haraft {} (feature level {level}), which cannot read this cluster's records (level {}): upgrade it",
                m.name,
                member_version(s, m),
                s.feature_level
            ));
        }
    }
    if s.leader.is_none() {
        warnings.push(
            "no Raft leader: no lease can be renewed or granted until a majority of members reach each other"
                .to_string(),
        );
    }
    let down: Vec<&str> = s.members.iter().filter(|m| !m.reachable).map(|m| m.name.as_str()).collect();
    if !down.is_empty() {
        warnings.push(format!("unreachable: {}", down.join(", ")));
    }
    if s.primary.is_none() {
        warnings.push("no primary holds the lease".to_string());
    }
    if s.paused {
        warnings.push("paused: a failed primary is not replaced until haraftctl resume".to_string());
    }
    let primaries: Vec<&str> =
        s.members.iter().filter(|m| m.role == MemberRole::Primary).map(|m| m.name.as_str()).collect();
    if primaries.len() > 1 {
        warnings.push(format!(
            "{} run a primary: only the lease holder's takes writes (the others are read-only by default), \
             and their agents fence them at once",
            primaries.join(" and ")
        ));
    }
    if let Some(blocked) = &s.writes_blocked {
        warnings.push(format!("writes blocked: {blocked}"));
    }
    for loss in &s.unacknowledged_losses {
        warnings.push(format!(
            "{loss}: writes acknowledged there are lost; see haraftctl history, then haraftctl history ack"
        ));
    }
    for m in &s.members {
        if let Some(f) = &m.failing {
            let times = if f.count == 1 { "once".to_string() } else { format!("{} times in a row", f.count) };
            warnings.push(format!(
                "{}: {} failed {times}: {}; next try at {} (haraftctl rebuild/restart {} tries at once)",
                m.name,
                f.action,
                f.error,
                utc(f.next_try_unix_ms),
                m.name
            ));
        }
    }
    for w in warnings {
        out.push_str(&format!("\nWARNING: {w}"));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A member's haraft release for the table: haraft 0.1 does not say it,
/// and a status document built by a 0.1 leader carries no versions at all
/// (then they are unknown: `?`).
fn member_version(s: &ClusterStatus, m: &haraft_core::status::MemberStatus) -> String {
    let reported = s.members.iter().any(|m| m.version.is_some());
    match (&m.version, m.reachable) {
        (Some(v), _) => v.clone(),
        (None, true) if reported => "0.1".to_string(),
        (None, true) => "?".to_string(),
        (None, false) => "-".to_string(),
    }
}

/// After the feature level: whether members run different releases, and
/// what raises the level.
fn versions_in_words(s: &ClusterStatus) -> String {
    if !s.members.iter().any(|m| m.version.is_some()) {
        return " (answered by a Raft leader running haraft 0.1, which does not report versions)".to_string();
    }
    let reachable: Vec<_> = s.members.iter().filter(|m| m.reachable).collect();
    let mut versions: Vec<String> = reachable.iter().map(|m| member_version(s, m)).collect();
    versions.sort();
    versions.dedup();
    let readable = reachable.iter().filter_map(|m| m.feature_level).min();
    match (versions.len(), readable) {
        (0 | 1, Some(r)) if r > s.feature_level && reachable.len() == s.members.len() => {
            format!(" (every member reads {r}: the Raft leader raises it within seconds)")
        }
        (0 | 1, _) => String::new(),
        _ => format!(
            " (members run {}: an upgrade in progress; the level is raised once every member reads a higher one)",
            versions.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haraft_core::status::{LeaseStatus, MemberStatus};

    fn member(name: &str, id: u64, role: RaftRole, reachable: bool) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            id,
            address: format!("127.0.0.1:700{id}"),
            raft_role: role,
            voter: true,
            reachable,
            term: reachable.then_some(3),
            applied_index: reachable.then_some(40),
            error: (!reachable).then(|| "connection refused".to_string()),
            role: if reachable { MemberRole::Replica } else { MemberRole::Unknown },
            state: if reachable { MemberState::Streaming } else { MemberState::Unreachable },
            db_address: Some(format!("127.0.0.1:540{id}")),
            timeline: reachable.then_some(2),
            lsn: reachable.then(|| "0/3000060".to_string()),
            lag_bytes: reachable.then_some(2048),
            action: None,
            failing: None,
            synchronous: false,
            note: None,
            version: reachable.then(|| "0.2.0".to_string()),
            feature_level: reachable.then_some(1),
        }
    }

    #[test]
    fn versions_during_an_upgrade() {
        let base = |members: Vec<MemberStatus>, level: u32| ClusterStatus {
            members,
            feature_level: level,
            ..serde_json::from_value(serde_json::json!({
                "cluster": "c", "answered_by": "node1", "consistent": true, "leader": "node1", "leader_id": 1,
                "term": 1, "commit_index": 1, "epoch": 1, "primary": null, "lease": null, "operation": null,
                "cluster_state": "Normal", "members": [],
            }))
            .expect("a status document")
        };
        let old = |name: &str, id: u64| MemberStatus {
            version: None,
            feature_level: Some(0),
            ..member(name, id, RaftRole::Follower, true)
        };
        // Mid-upgrade, answered by an upgraded leader.
        let t = render(&base(vec![member("node1", 1, RaftRole::Leader, true), old("node2", 2)], 0));
        assert!(t.contains("Features:     level 0 (members run 0.1, 0.2.0: an upgrade in progress"), "{t}");
        assert!(t.contains("node2   2   0.1 "), "{t}");
        // Every member upgraded, the raise due.
        let t = render(&base(
            vec![member("node1", 1, RaftRole::Leader, true), member("node2", 2, RaftRole::Follower, true)],
            0,
        ));
        assert!(t.contains("level 0 (every member reads 1: the Raft leader raises it within seconds)"), "{t}");
        // Answered by a 0.1 leader: nothing is known of versions.
        let t = render(&base(vec![old("node1", 1), old("node2", 2)], 0));
        assert!(t.contains("answered by a Raft leader running haraft 0.1"), "{t}");
        assert!(t.contains("node2   2   ?"), "{t}");
        // A member below the level in force (rolled back after the raise).
        let t = render(&base(vec![member("node1", 1, RaftRole::Leader, true), old("node2", 2)], 1));
        assert!(t.contains("WARNING: node2 runs haraft 0.1 (feature level 0), which cannot read this cluster's records (level 1): upgrade it"), "{t}");
    }

    #[test]
    fn table_names_leader_primary_and_unreachable() {
        let s = ClusterStatus {
            cluster: "demo".into(),
            answered_by: "node2".into(),
            consistent: true,
            leader: Some("node2".into()),
            leader_id: Some(2),
            term: 3,
            commit_index: Some(40),
            epoch: 4,
            primary: Some("node1".into()),
            lease: Some(LeaseStatus {
                holder: "node1".into(),
                holder_id: 1,
                epoch: 4,
                renewal: 9,
                valid_for_ms: Some(2100),
                renewal_latency: None,
            }),
            operation: Some("switchover 41 from node1 to node3: stopping node1 cleanly".into()),
            operation_id: Some(41),
            paused: true,
            scheduled: None,
            tasks: vec!["restart on node3 (operation 40, asked by ops@db1)".into()],
            settings: Default::default(),
            pending_settings: Default::default(),
            unacknowledged_losses: vec!["node3 rewound (log index 30): diverged at 0/100; discarded 0/100–0/180 (128 B of WAL, 1 committed transaction)".into()],
            synchronous: Some("quorum mode (node count 2): any 2 of node2, node3, node4 confirm each commit".into()),
            writes_blocked: Some("strict synchronous mode: 2 synchronous standbys must confirm each commit and 1 stream".into()),
            members: vec![
                member("node1", 1, RaftRole::Follower, true),
                MemberStatus {
                    failing: Some(haraft_core::backoff::FailingAction {
                        action: "rebuild".into(),
                        error: "pg_basebackup failed: password authentication failed".into(),
                        count: 4,
                        next_try_unix_ms: 1_795_261_445_000,
                    }),
                    ..member("node2", 2, RaftRole::Leader, true)
                },
                member("node3", 3, RaftRole::Unknown, false),
            ],
            feature_level: 1,
            cluster_state: ClusterHealth::Degraded,
        };
        let t = render(&s);
        assert!(t.contains("Features:     level 1\n"), "{t}");
        assert!(t.contains("node1   1   0.2.0    follower"), "{t}");
        assert!(t.contains("Raft leader:  node2 (term 3), commit index 40"), "{t}");
        assert!(t.contains("Primary:      node1 (epoch 4, lease valid for 2100 ms)"), "{t}");
        assert!(t.contains("lease holder, epoch 4"), "{t}");
        assert!(t.contains("Cluster:      demo (Degraded)"), "{t}");
        assert!(t.contains("streaming") && t.contains("2.0 KiB"), "{t}");
        assert!(t.contains("WARNING: unreachable: node3"), "{t}");
        assert!(
            t.contains(
                "WARNING: node2: rebuild failed 4 times in a row: pg_basebackup failed: password authentication failed; \
                 next try at 2026-11-21 11:44:05"
            ),
            "{t}"
        );
        assert!(
            t.contains("In progress:  switchover 41 from node1 to node3: stopping node1 cleanly (operation 41"),
            "{t}"
        );
        assert!(t.contains("Task:         restart on node3"), "{t}");
        assert!(
            t.contains("WARNING: node3 rewound (log index 30): diverged at 0/100; discarded 0/100–0/180 (128 B of WAL, 1 committed transaction): writes acknowledged there are lost; see haraftctl history, then haraftctl history ack"),
            "{t}"
        );
        assert!(t.contains("Paused:       yes"), "{t}");
        assert!(
            t.contains("Synchronous:  quorum mode (node count 2): any 2 of node2, node3, node4 confirm each commit"),
            "{t}"
        );
        assert!(t.contains("WARNING: writes blocked: strict synchronous mode: 2 synchronous standbys"), "{t}");
        let row = t.lines().find(|l| l.starts_with("node3")).unwrap();
        assert!(row.contains("connection refused") && row.contains("unreachable"), "{row}");
        assert!(!t.contains("run a primary"), "{t}");
        // A second member running a primary (promoted by hand) is named.
        let mut two = s.clone();
        two.members[0].role = MemberRole::Primary;
        two.members[1].role = MemberRole::Primary;
        let t = render(&two);
        assert!(t.contains("WARNING: node1 and node2 run a primary: only the lease holder's takes writes"), "{t}");
        // A member's note is a sentence under the table; its state a word.
        let mut foreign = s.clone();
        foreign.members[1].state = MemberState::ForeignData;
        foreign.members[1].note = Some("holds another database (system identifier 9, this cluster's is 7)".into());
        let t = render(&foreign);
        assert!(t.contains("foreign data"), "{t}");
        assert!(t.contains("\nnode2: holds another database (system identifier 9, this cluster's is 7)\n"), "{t}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_261_445_000), "2026-11-21 11:44:05");
        assert_eq!(utc(1_709_164_800_000), "2024-02-29 00:00:00");
    }

    #[test]
    fn status_format_is_parsed() {
        let format = |args: &[&str]| match Args::try_parse_from(["haraftctl", "status"].iter().chain(args)) {
            Ok(Args { command: Command::Status { json, format, .. }, .. }) => Ok((json, format)),
            Ok(_) => panic!("not status"),
            Err(e) => Err(e.kind()),
        };
        assert_eq!(format(&[]), Ok((false, StatusFormat::Table)));
        assert_eq!(format(&["--format", "gs_om"]), Ok((false, StatusFormat::GsOm)));
        assert_eq!(format(&["--format=json"]), Ok((false, StatusFormat::Json)));
        assert_eq!(format(&["--json"]), Ok((true, StatusFormat::Table)));
        assert_eq!(format(&["--format", "gs-om"]), Err(clap::error::ErrorKind::InvalidValue));
        assert_eq!(format(&["--json", "--format", "gs_om"]), Err(clap::error::ErrorKind::ArgumentConflict));
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(valid_endpoint("127.0.0.1:7001"));
        assert!(valid_endpoint("db1.example:7001"));
        assert!(!valid_endpoint("127.0.0.1"));
        assert!(!valid_endpoint(":7001"));
        assert!(!valid_endpoint("h:0"));
        assert!(!valid_endpoint("http://h:1"));
    }
}
