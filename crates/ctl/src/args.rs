//! The command line: every subcommand and option, as clap reads them
//! (and as `haraftctl --help` and the man page show them).

use crate::{dsn, generate};
use clap::{Parser, Subcommand};

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
pub(crate) struct Args {
    /// Agents to ask, HOST:PORT[,HOST:PORT...]: their node.listen
    /// addresses. Tried in order until one answers.
    #[arg(
        long,
        env = "HARAFTCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
        global = true
    )]
    pub(crate) endpoints: Vec<String>,

    /// How long to wait for one endpoint before trying the next.
    #[arg(long, default_value_t = 5000, global = true, value_name = "MS")]
    pub(crate) timeout_ms: u64,

    /// The cluster CA (PEM), for a cluster with [tls]: connect over TLS
    /// and check each agent's certificate against it and the endpoint's
    /// host. Needs --cert-file and --key-file (the operator's certificate).
    #[arg(long, env = "HARAFTCTL_CA_FILE", global = true, value_name = "FILE", requires_all = ["cert_file", "key_file"])]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// This operator's certificate (PEM), signed by the cluster CA.
    #[arg(long, env = "HARAFTCTL_CERT_FILE", global = true, value_name = "FILE", requires = "ca_file")]
    pub(crate) cert_file: Option<std::path::PathBuf>,
    /// Its private key (PEM, not readable by others).
    #[arg(long, env = "HARAFTCTL_KEY_FILE", global = true, value_name = "FILE", requires = "ca_file")]
    pub(crate) key_file: Option<std::path::PathBuf>,

    /// A file whose first line is a token of the cluster (auth.admin_token_file
    /// or auth.read_token_file on the agents); not readable by others.
    #[arg(long, env = "HARAFTCTL_TOKEN_FILE", global = true, value_name = "FILE")]
    pub(crate) token_file: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum StatusFormat {
    Table,
    Json,
    #[value(name = "gs_om")]
    GsOm,
}

#[derive(Subcommand)]
pub(crate) enum HistoryCommand {
    /// Acknowledge the rewinds that discarded writes (the WARNING lines of
    /// haraftctl status): once the lost writes are dealt with, status
    /// stops warning about them. Later discards warn again.
    Ack,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
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
pub(crate) enum MemberCommand {
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

fn watch_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?} is not a refresh interval: give seconds between 0.1 and 3600, e.g. 2")),
    }
}
