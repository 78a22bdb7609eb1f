//! `haraft-nemesis [--seconds N (120)] [--seed N (from the clock)] [--async]`:
//! random faults from the fault matrix (partitions, one-way cuts, garbled
//! peer traffic, kill -9 of a host or an agent, frozen hosts, switchovers)
//! against a 3-node cluster managing PostgreSQL 15 with a writer every
//! 10 ms; then heals, waits for convergence and checks: no overlapping
//! acknowledged writes, none lost (synchronous mode, the default), epochs
//! never decrease, no agent panicked. Prints the JSON report, one human
//! line, and the seed to replay it; exits 1 if an invariant broke.

use haraft_testkit::nemesis;

fn main() {
    let mut seconds = 120;
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs());
    let mut synchronous = true;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut number = |name: &str| -> u64 {
            let value = args.next().unwrap_or_default();
            value.parse().unwrap_or_else(|_| {
                eprintln!("haraft-nemesis: {name} takes a whole number, got {value:?}");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--seconds" => seconds = number("--seconds"),
            "--seed" => seed = number("--seed"),
            "--async" => synchronous = false,
            "--help" | "-h" => {
                println!("haraft-nemesis [--seconds N (120)] [--seed N] [--async]");
                return;
            }
            other => {
                eprintln!("haraft-nemesis: unknown argument {other:?}: see --help");
                std::process::exit(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let Ok(runtime) = runtime else {
        eprintln!("haraft-nemesis: cannot start the async runtime");
        std::process::exit(1);
    };
    let report = runtime.block_on(nemesis::run(seed, seconds, synchronous));
    for f in &report.faults {
        eprintln!("{f}");
    }
    println!("{}", serde_json::to_string(&report).expect("a report serializes"));
    println!(
        "nemesis seed {seed}, {seconds} s, {} faults: {}; {} acknowledged writes, {} lost, {} promotions; replay with --seed {seed}",
        report.faults.len(),
        if report.passed() { "passed".to_string() } else { format!("FAILED: {}", report.violations.join("; ")) },
        report.acknowledged,
        report.lost,
        report.promotions,
    );
    if !report.passed() {
        std::process::exit(1);
    }
}
