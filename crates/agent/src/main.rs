//! `haraft`: the agent daemon. One per database host.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// haraft agent: keeps one writable primary per cluster through a Raft
/// group of agents, one per database host.
///
/// Start every member listed in the config; the cluster forms by itself.
/// A restarted agent rejoins from its data directory.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Configuration file (TOML). Relative paths inside it resolve against
    /// the working directory.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["check_config", "fence_guard"],
        conflicts_with = "check_config"
    )]
    config: Option<PathBuf>,

    /// Validate a configuration file, print a summary and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,

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
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("haraft: {e}");
                ExitCode::from(2)
            }
        };
    }
    let path = args.config.expect("clap requires --config without --check-config");
    let config = match haraft_agent::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("haraft: {e}");
            return ExitCode::from(2);
        }
    };
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
