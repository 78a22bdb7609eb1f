//! `haraft-bench`: measures a 3-node loopback cluster of real `haraft`
//! processes and prints one JSON object and one human line.
//!
//! - renewal commit latency (p50/p99): the holder's own measurement from
//!   proposing a renewal to seeing it applied, over `--seconds` of renewals
//!   every `--renew-interval-ms` (more samples than the default 1 s);
//! - idle RSS of each agent, from /proc/PID/status, after `--idle-seconds`
//!   of a cluster with default settings.
//!
//! Build with `cargo build --release --workspace`, then run
//! `target/release/haraft-bench`.

use haraft_testkit::procs::ProcCluster;
use std::time::{Duration, Instant};

struct Args {
    seconds: u64,
    renew_interval_ms: u64,
    idle_seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { seconds: 30, renew_interval_ms: 100, idle_seconds: 20 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name} takes a whole number, got {v:?}"))
        };
        match flag.as_str() {
            "--seconds" => args.seconds = value("--seconds")?,
            "--renew-interval-ms" => args.renew_interval_ms = value("--renew-interval-ms")?,
            "--idle-seconds" => args.idle_seconds = value("--idle-seconds")?,
            "--help" | "-h" => {
                println!("haraft-bench [--seconds N (30)] [--renew-interval-ms N (100)] [--idle-seconds N (20)]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}: see --help")),
        }
    }
    Ok(args)
}

fn wait_healthy(c: &ProcCluster, limit: Duration) -> Result<serde_json::Value, String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = c.status()
            && s["primary"].is_string()
            && s["lease"]["valid_for_ms"].is_u64()
            && s["leader"].is_string()
        {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("cluster not healthy within {limit:?}"))
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or(format!("no VmRSS for pid {pid}"))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("haraft-bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("haraft-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    // Phase 1: idle RSS with default settings.
    let mut idle = ProcCluster::new(3, "");
    idle.start_all();
    wait_healthy(&idle, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    let rss: Vec<u64> =
        (1..=3).map(|id| rss_kib(idle.nodes[id - 1].pid().expect("running"))).collect::<Result<_, _>>()?;
    drop(idle);

    // Phase 2: renewal commit latency.
    let lease = format!("[lease]\nrenew_interval_ms = {}\n", args.renew_interval_ms);
    let mut c = ProcCluster::new(3, &lease);
    c.start_all();
    wait_healthy(&c, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(args.seconds));
    let status = wait_healthy(&c, Duration::from_secs(10))?;
    let latency = &status["lease"]["renewal_latency"];
    let (p50, p99, max, samples) = (
        latency["p50_us"].as_u64().ok_or("holder reported no renewal latency")?,
        latency["p99_us"].as_u64().unwrap_or(0),
        latency["max_us"].as_u64().unwrap_or(0),
        latency["samples"].as_u64().unwrap_or(0),
    );
    let rss_max = *rss.iter().max().expect("three agents");
    let report = serde_json::json!({
        "bench": "lease-renewal",
        "nodes": 3,
        "renew_interval_ms": args.renew_interval_ms,
        "renewal_commit_latency_us": {"p50": p50, "p99": p99, "max": max, "samples": samples},
        "idle_rss_kib": rss,
        "idle_rss_kib_max": rss_max,
        "idle_seconds": args.idle_seconds,
    });
    println!("{report}");
    println!(
        "renewal commit latency p50 {:.2} ms, p99 {:.2} ms (max {:.2} ms, {samples} renewals); idle agent RSS max {:.1} MB ({} kB each)",
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
        rss_max as f64 / 1024.0,
        rss.iter().map(u64::to_string).collect::<Vec<_>>().join("/")
    );
    Ok(())
}
