//! `haraft-sim`: runs seeds of the cluster simulator and reports every
//! violated invariant with the seed that replays it.

use anyhow::bail;
use clap::Parser;
use haraft_sim::run::{Fault, Setup, run};

#[derive(Parser)]
#[command(name = "haraft-sim", about = "Deterministic simulation of haraft clusters under seeded faults")]
struct Args {
    /// How many seeds to run (seed-base … seed-base+N−1).
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// The first seed; any 64-bit number.
    #[arg(long, default_value_t = 0)]
    seed_base: u64,
    /// Replays this one seed (with --trace, prints its event trace).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    trace: bool,
    /// Comma-separated faults, "all" or "none": crash, power-loss,
    /// partition, one-way, flap, loss, delay, db-crash, disk-full,
    /// failed-rewind, pause, switchover, failover, maintenance.
    #[arg(long, default_value = "all")]
    faults: String,
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    #[arg(long)]
    synchronous: bool,
    /// Virtual seconds of faults per seed.
    #[arg(long, default_value_t = 60)]
    fault_seconds: u64,
    /// Virtual seconds the cluster has to converge after the faults.
    #[arg(long, default_value_t = 30)]
    converge_seconds: u64,
}

fn parse_faults(list: &str) -> anyhow::Result<Vec<Fault>> {
    if list == "all" {
        return Ok(Fault::ALL.to_vec());
    }
    if list == "none" || list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|w| {
            Fault::parse(w.trim()).ok_or_else(|| {
                let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                anyhow::anyhow!("unknown fault {w:?}: use all, none or a list of {}", known.join(", "))
            })
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if ![3, 5, 7].contains(&args.nodes) {
        bail!("--nodes {} is not supported: use 3, 5 or 7", args.nodes);
    }
    if args.seed.is_none() && args.seeds == 0 {
        bail!("--seeds 0 runs nothing: give at least one seed");
    }
    if std::env::var_os("HARAFT_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_env("HARAFT_LOG");
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
    let setup = Setup {
        nodes: args.nodes,
        synchronous: args.synchronous,
        faults: parse_faults(&args.faults)?,
        fault_seconds: args.fault_seconds,
        converge_seconds: args.converge_seconds,
    };
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (0..args.seeds).map(|i| args.seed_base.wrapping_add(i)).collect(),
    };
    let started = std::time::Instant::now();
    let mut violations = Vec::new();
    let mut simulated_ms = 0u64;
    for seed in &seeds {
        let outcome = run(*seed, &setup)?;
        simulated_ms += outcome.simulated_ms;
        if args.trace {
            for line in &outcome.trace {
                println!("{line}");
            }
            println!("trace hash {:016x}", outcome.trace_hash);
        }
        if let Some(v) = outcome.violation {
            eprintln!("seed {seed}: {v}");
            violations.push(serde_json::json!({ "seed": seed, "invariant": v }));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let simulated = simulated_ms as f64 / 1000.0;
    let report = serde_json::json!({
        "seeds": seeds.len(),
        "violations": violations,
        "simulated_seconds": simulated,
        "wall_seconds": wall,
    });
    println!("{report}");
    println!(
        "{} seeds, {} violations, {:.0} simulated s in {:.1} wall s ({:.0} simulated s per wall s)",
        seeds.len(),
        violations.len(),
        simulated,
        wall,
        simulated / wall.max(1e-9)
    );
    if !violations.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
