//! `haraft`: the agent daemon. One per database host.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// haraft agent: keeps one writable primary per cluster through a Raft
/// group of agents, one per database host.
///
/// Start every member listed in the config; the cluster forms by itself.
/// A restarted agent rejoins from its data directory.
///
/// From the Debian package, one instance runs per cluster under systemd as
/// the postgres user: `systemctl enable --now haraft@CLUSTER` reads
/// /etc/haraft/CLUSTER.toml (every key: /etc/haraft/reference.toml).
/// haraftctl(1) shows and steers the cluster.
#[derive(Parser)]
#[command(name = "haraft", version)]
struct Args {
    /// Configuration file (TOML). Relative paths inside it resolve against
    /// the working directory.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["check_config", "fence_guard", "check_store", "man_dir"],
        conflicts_with_all = ["check_config", "check_store"]
    )]
    config: Option<PathBuf>,

    /// Validate a configuration file, print a summary and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,

    /// With --check-config: list what haraft would change to adopt the
    /// PostgreSQL server already running in the config's data directory
    /// (README: "Moving a cluster under haraft"). Changes nothing; exit 1
    /// when something must be fixed first.
    #[arg(long, requires = "check_config")]
    adopt: bool,

    /// Check a stopped member's Raft state offline: DIR is its
    /// node.data_dir. Prints its identity, acknowledged mark and store
    /// (last log id, vote, any record failing its checksum); exit 0 when
    /// the agent would start on it, 1 when it would refuse.
    #[arg(long, value_name = "DIR")]
    check_store: Option<PathBuf>,

    /// With --config: set this stopped member's Raft state aside (into
    /// node.data_dir/retired-TIME/) so that it can be replaced by a new
    /// member with a new node.id that keeps its database. README: "A
    /// member's Raft store was damaged".
    #[arg(long, requires = "config")]
    retire_store: bool,

    /// Build step: write the man page haraft.1 into DIR (the Debian
    /// package ships it) and exit.
    #[arg(long, value_name = "DIR", hide = true, conflicts_with_all = ["config", "check_config", "check_store"])]
    man_dir: Option<PathBuf>,

    /// Internal: run as the fence guard process on this fence file.
    #[arg(long, value_name = "FILE", hide = true, requires = "agent_pid")]
    fence_guard: Option<PathBuf>,

    /// Internal: the agent the fence guard serves.
    #[arg(long, value_name = "PID", hide = true)]
    agent_pid: Option<u32>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let (Some(fence), Some(agent)) = (&args.fence_guard, args.agent_pid) {
        // The guard must outlive a Ctrl-C or SIGTERM aimed at the agent's
        // process group: only SIGKILL (or its agent's handover) ends it.
        // SAFETY: setting signal dispositions to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
        haraft_agent::fence::run_process(fence, agent);
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = &args.man_dir {
        return write_man_page(dir);
    }
    if let Some(path) = args.check_config {
        return match haraft_agent::config::load(&path) {
            Ok(c) => {
                println!(
                    "{}: ok (cluster {}, node {} id {}, {} members, lease ttl {} ms, renew every {} ms)",
                    path.display(),
                    c.cluster,
                    c.node_name,
                    c.node,
                    c.members.len(),
                    c.timing.lease_ttl_ms,
                    c.timing.renew_interval_ms
                );
                if let Some(pg) = &c.postgres {
                    let locale = format!("--locale={} --encoding={}", pg.initdb_locale, pg.initdb_encoding);
                    let init = match pg.engine {
                        haraft_agent::config::DbEngine::Postgres => format!("initdb {locale}"),
                        haraft_agent::config::DbEngine::OpenGauss => format!("gs_initdb {locale}"),
                        // dminit's defaults: haraft passes no locale to it.
                        haraft_agent::config::DbEngine::Dameng => "dminit".to_string(),
                    };
                    println!(
                        "{}: data {}, tools {}, {init} (bootstrap only; the other members copy it)",
                        pg.engine.section(),
                        pg.data_dir.display(),
                        pg.bin_dir.display(),
                    );
                }
                if args.adopt {
                    return check_adoption(&c);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("haraft: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(dir) = args.check_store {
        return check_store(&dir);
    }
    let path = args.config.expect("clap requires --config without --check-config");
    let config = match haraft_agent::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("haraft: {e}");
            return ExitCode::from(2);
        }
    };
    if args.retire_store {
        let layout = haraft_raft::store::Layout::new(&config.data_dir);
        let now = haraft_agent::clock::now_unix_ms();
        return match haraft_raft::integrity::retire(&layout, &config.cluster, config.node.0, now) {
            Ok(to) => {
                println!(
                    "{}'s Raft state (node {}) is set aside in {}; its database stays.\nNext: give {} a new node.id that no member ever had and join = true in {}, start its agent, then run: haraftctl member replace {} --id NEW_ID",
                    config.node_name,
                    config.node,
                    to.display(),
                    config.node_name,
                    path.display(),
                    config.node_name
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("haraft: --retire-store: {e}");
                ExitCode::from(2)
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("HARAFT_LOG")
        // openraft logs every failed connection to an absent peer as an
        // error, twice a second: noise at 3 a.m. Its fatal errors stop Raft,
        // which the agent logs itself and exits on. HARAFT_LOG=openraft=info
        // brings its logs back for debugging.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!(
                "warn,openraft=off,haraft={0},haraft_agent={0},haraft_raft={0}",
                config.log_level
            ))
        });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if let Some(nice) = haraft_db::exec::own_nice().filter(|n| *n < 0) {
        tracing::info!(
            "running at nice {nice} (the unit's Nice=): the lease path is favoured; the database and the tools start at nice {}",
            haraft_db::exec::child_nice().unwrap_or(nice)
        );
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("haraft: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("haraft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `haraft --man-dir DIR`: haraft.1 from the arguments' own definition
/// (clap_mangen leaves the hidden ones out).
fn write_man_page(dir: &std::path::Path) -> ExitCode {
    use clap::CommandFactory;
    let page = clap_mangen::Man::new(Args::command());
    let written = std::fs::create_dir_all(dir).and_then(|()| page.generate_to(dir));
    match written {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("haraft: writing the man page into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// `haraft --check-store DIR`.
/// `--check-config --adopt`: what adopting the running cluster changes
/// in this member's data directory, read-only.
fn check_adoption(c: &haraft_agent::config::Config) -> ExitCode {
    let Some(pg) = c.postgres.as_ref().filter(|pg| pg.engine == haraft_agent::config::DbEngine::Postgres) else {
        eprintln!(
            "haraft: --adopt: haraft adopts running PostgreSQL clusters only: the config needs a [postgresql] section"
        );
        return ExitCode::from(2);
    };
    let cfg = haraft_agent::database::db_config(c, pg);
    let others: Vec<String> = c.members.iter().filter(|m| m.id != c.node).map(|m| m.name.clone()).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("haraft: --adopt: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(haraft_db::pg_adopt::report(cfg, &others, Duration::from_secs(5))) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("haraft: --adopt: {e}");
            return ExitCode::from(2);
        }
    };
    for (heading, lines) in [
        ("found", &report.found),
        ("haraft will", &report.changes),
        ("note", &report.notes),
        ("fix first", &report.problems),
    ] {
        for line in lines {
            println!("{heading}: {line}");
        }
    }
    if report.problems.is_empty() {
        println!("nothing was changed; start the agents on every member to adopt the cluster");
        ExitCode::SUCCESS
    } else {
        println!("nothing was changed; fix the above, then check again");
        ExitCode::from(1)
    }
}

fn check_store(dir: &std::path::Path) -> ExitCode {
    use haraft_raft::integrity::{self, Expect, Found, Verdict};
    // DIR may also be the store directory itself (data_dir/raft).
    let data_dir = if dir.join("conf").is_file() && dir.file_name().is_some_and(|n| n == "raft") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let findings = integrity::inspect(&haraft_raft::store::Layout::new(data_dir));
    for line in integrity::describe(&findings) {
        println!("{line}");
    }
    // Judged as the member its identity names (no config here: the ids
    // are checked against each other, not against a config).
    let expect = match &findings.identity {
        Found::Present(i) => Expect { cluster: i.cluster.clone(), node: i.node, join: false, managed_db: None },
        _ => Expect { cluster: String::new(), node: 0, join: false, managed_db: None },
    };
    match integrity::judge(&findings, &expect) {
        Verdict::Open => {
            println!("verdict: whole: the agent would start on it");
            ExitCode::SUCCESS
        }
        Verdict::Finish(_) => {
            println!("verdict: created but never took part in Raft: the agent would finish creating it");
            ExitCode::SUCCESS
        }
        Verdict::Create => {
            println!("verdict: no Raft state here: an agent would start as a new member");
            ExitCode::from(1)
        }
        Verdict::Refuse(reason) => {
            println!("verdict: REFUSED: {reason}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: haraft_agent::config::Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let agent = haraft_agent::start(config, None).await?;
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        reason = agent.fatal() => {
            tracing::error!("raft stopped: {reason}; exiting so that the supervisor restarts this agent");
            let _ = agent.shutdown().await;
            anyhow::bail!("raft stopped: {reason}");
        }
    };
    tracing::info!("{which} received: shutting down");
    agent.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}
