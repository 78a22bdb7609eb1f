//! `haraft-bench`: measures a 3-node loopback cluster of real `haraft`
//! processes and prints one JSON object and one human line.
//!
//! `haraft-bench [lease]`:
//! - renewal commit latency (p50/p99): the holder's own measurement from
//!   proposing a renewal to seeing it applied, over `--seconds` of renewals
//!   every `--renew-interval-ms` (more samples than the default 1 s);
//! - idle RSS of each agent, from /proc/PID/status, after `--idle-seconds`
//!   of a cluster with default settings.
//!
//! `haraft-bench failover [--iterations N] [--synchronous] [--nodes 3|5|7]
//! [--primary-is-leader] [--via-haproxy]`: N times, kill -9
//! the primary host (agent, fence guard, PostgreSQL) under a writer and
//! measure the seconds until the writer succeeds on the new primary, the
//! acknowledged writes lost, and the seconds until the restarted old node
//! streams again. Needs PostgreSQL 15 and, as root, the postgres OS user.
//!
//! `haraft-bench switchover [--iterations N] [--synchronous] [--nodes N]
//! [--via-haproxy]`: N times,
//! `haraftctl switchover --to <next member> --force` under a writer
//! (every 10 ms); measures the write unavailability (from the last write
//! acknowledged by the old primary to the first by the new one), the
//! switchover's total duration (until haraftctl reports done: the old
//! primary streams from the new one), the time until every member
//! streams from the new primary, and acknowledged writes lost.
//! `--via-haproxy`: the writer goes through the shipped
//! `deploy/haproxy.cfg` (HAProxy started in front of the cluster);
//! `--haproxy-config FILE`: through another config of the same shape.
//!
//! `haraft-bench bootstrap [--iterations N] [--nodes N]`: see
//! `bootstrap.rs`. `haraft-bench load [--seconds N]`: see `load.rs`.
//!
//! `haraft-bench partition-primary [--iterations N] [--synchronous]`: see
//! `partition.rs`.
//!
//! `haraft-bench idle [--seconds N]`: see `idle.rs`.
//!
//! `haraft-bench wake-floor [--seconds N]`: what one thread wake-up costs
//! on this machine; see `wakes.rs`.
//!
//! `haraft-bench upgrade --from COMMIT | --from-bin-dir DIR`: a rolling
//! upgrade from a previous build under a writer; see `upgrade.rs`.
//!
//! Build with `cargo build --release --workspace`, then run
//! `target/release/haraft-bench`.

mod bootstrap;
mod failover;
mod idle;
mod load;
mod partition;
mod upgrade;
mod wakes;

use haraft_testkit::procs::ProcCluster;
use std::time::{Duration, Instant};

struct Args {
    failover: bool,
    switchover: bool,
    partition: bool,
    idle: bool,
    wake_floor: bool,
    bootstrap: bool,
    load: bool,
    /// Cluster size for failover, switchover and bootstrap.
    nodes: usize,
    /// The writer goes through HAProxy with the shipped config.
    via_haproxy: bool,
    /// load: the agents' nice value, as the shipped unit's `Nice=` sets it.
    agent_nice: i32,
    /// partition-primary: with the commit guard off, for comparison.
    no_commit_guard: bool,
    iterations: u64,
    synchronous: bool,
    seconds: u64,
    renew_interval_ms: u64,
    idle_seconds: u64,
    /// failover: switch over to the Raft leader first, so that every kill
    /// takes the primary and the leader at once.
    primary_is_leader: bool,
    /// upgrade: the previous build, a commit or (true) a directory of binaries.
    upgrade_from: Option<(String, bool)>,
    /// `--config FILE`: TOML appended to every node's config (e.g. a
    /// `[lease]` and `[raft]` section to measure other timing).
    config: String,
}

impl Args {
    /// The extra config of every node: the bench's own lines, then `--config`'s.
    fn extra(&self, own: &str) -> String {
        format!("{own}\n{}", self.config)
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        failover: false,
        switchover: false,
        partition: false,
        idle: false,
        wake_floor: false,
        bootstrap: false,
        load: false,
        nodes: 3,
        via_haproxy: false,
        agent_nice: -5,
        no_commit_guard: false,
        iterations: 5,
        synchronous: false,
        seconds: 30,
        renew_interval_ms: 100,
        idle_seconds: 20,
        primary_is_leader: false,
        upgrade_from: None,
        config: String::new(),
    };
    let mut upgrade = false;
    let mut it = std::env::args().skip(1).peekable();
    match it.peek().map(String::as_str) {
        Some("failover") => {
            args.failover = true;
            it.next();
        }
        Some("switchover") => {
            args.switchover = true;
            it.next();
        }
        Some("partition-primary") => {
            args.partition = true;
            it.next();
        }
        Some("lease") => {
            it.next();
        }
        Some("bootstrap") => {
            args.bootstrap = true;
            it.next();
        }
        Some("load") => {
            args.load = true;
            args.seconds = 600;
            it.next();
        }
        Some("idle") => {
            args.idle = true;
            args.seconds = 600;
            it.next();
        }
        Some("wake-floor") => {
            args.wake_floor = true;
            it.next();
        }
        Some("upgrade") => {
            upgrade = true;
            it.next();
        }
        _ => {}
    }
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name} takes a whole number, got {v:?}"))
        };
        match flag.as_str() {
            "--from" | "--from-bin-dir" => {
                let v = it.next().ok_or(format!("{flag} needs a value"))?;
                args.upgrade_from = Some((v, flag == "--from-bin-dir"));
            }
            "--config" => {
                let file = it.next().ok_or("--config needs a file")?;
                args.config = std::fs::read_to_string(&file)
                    .map_err(|e| format!("--config {file}: {e}: give a readable TOML file"))?;
                if let Err(e) = args.config.parse::<toml::Table>() {
                    return Err(format!("--config {file} is not TOML: {e}"));
                }
            }
            "--seconds" => args.seconds = value("--seconds")?,
            "--renew-interval-ms" => args.renew_interval_ms = value("--renew-interval-ms")?,
            "--idle-seconds" => args.idle_seconds = value("--idle-seconds")?,
            "--iterations" => args.iterations = value("--iterations")?.max(1),
            "--synchronous" => args.synchronous = true,
            "--primary-is-leader" => args.primary_is_leader = true,
            "--no-commit-guard" => args.no_commit_guard = true,
            "--via-haproxy" => args.via_haproxy = true,
            "--haproxy-config" => {
                let file = it.next().ok_or("--haproxy-config needs a file")?;
                if !std::path::Path::new(&file).is_file() {
                    return Err(format!(
                        "--haproxy-config {file}: no such file: give an HAProxy config shaped like deploy/haproxy.cfg"
                    ));
                }
                // Read by testkit::haproxy when it starts HAProxy.
                // SAFETY: set before any thread is started.
                unsafe { std::env::set_var("HARAFT_HAPROXY_CONFIG", &file) };
                args.via_haproxy = true;
            }
            "--agent-nice" => {
                let v = it.next().ok_or("--agent-nice needs a value")?;
                args.agent_nice = match v.parse::<i32>() {
                    Ok(n) if (-20..=19).contains(&n) => n,
                    _ => return Err(format!("--agent-nice takes -20 to 19, got {v:?}")),
                };
            }
            "--nodes" => {
                args.nodes = match value("--nodes")? {
                    n @ (3 | 5 | 7) => n as usize,
                    n => return Err(format!("--nodes takes 3, 5 or 7, got {n}")),
                }
            }
            "--help" | "-h" => {
                println!(
                    "haraft-bench [lease] [--seconds N (30)] [--renew-interval-ms N (100)] [--idle-seconds N (20)]"
                );
                println!(
                    "haraft-bench failover [--iterations N (5)] [--synchronous] [--primary-is-leader] [--nodes 3|5|7] [--via-haproxy]"
                );
                println!(
                    "haraft-bench switchover [--iterations N (5)] [--synchronous] [--nodes 3|5|7] [--via-haproxy] [--haproxy-config FILE]"
                );
                println!("haraft-bench bootstrap [--iterations N (5)] [--nodes 3|5|7]");
                println!("haraft-bench load [--seconds N (600)] [--agent-nice N (-5, as the shipped unit)]");
                println!("haraft-bench partition-primary [--iterations N (5)] [--synchronous] [--no-commit-guard]");
                println!("haraft-bench idle [--seconds N (600)]");
                println!("haraft-bench wake-floor [--seconds N (30)]");
                println!("haraft-bench upgrade --from COMMIT | --from-bin-dir DIR");
                println!("every command but upgrade: [--config FILE] (TOML appended to each node's config)");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}: see --help")),
        }
    }
    if upgrade && args.upgrade_from.is_none() {
        return Err("upgrade needs --from COMMIT or --from-bin-dir DIR (the previous build)".into());
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
    let result = if let Some((from, is_dir)) = &args.upgrade_from {
        upgrade::run(from, *is_dir)
    } else if args.partition {
        partition::run(&args)
    } else if args.idle {
        idle::run(&args)
    } else if args.wake_floor {
        wakes::floor(&args)
    } else if args.bootstrap {
        bootstrap::run(&args)
    } else if args.load {
        load::run(&args)
    } else if args.failover || args.switchover {
        failover::run(&args)
    } else {
        run(&args)
    };
    if let Err(e) = result {
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn primary_of(s: &serde_json::Value) -> Option<u64> {
    let members = s["members"].as_array()?;
    let p: Vec<&serde_json::Value> = members.iter().filter(|m| m["role"] == "primary").collect();
    (p.len() == 1).then(|| p[0]["id"].as_u64()).flatten()
}

fn normal(s: &serde_json::Value) -> bool {
    s["cluster_state"] == "Normal"
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A normal cluster (with a synchronous standby in synchronous mode).
fn wait_ready(c: &ProcCluster, args: &Args, limit: Duration) -> Result<(), String> {
    wait_until("a normal cluster", limit, || {
        c.status().is_some_and(|s| {
            normal(&s)
                && (!args.synchronous
                    || s["members"].as_array().is_some_and(|m| m.iter().any(|m| m["synchronous"] == true)))
        })
    })
}

/// The nearest-rank 95th percentile of the samples.
fn p95(v: &[f64]) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (95 * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// (min, median, max) of the samples.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (min, median(v.to_vec()), max)
}

/// The bench's tokio runtime: two workers, as the machine has two cores.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())
}

/// `HARAFT_BENCH_LOGS=SECONDS`: a run slower than that gets every node's
/// log printed.
fn slower_than_asked(seconds: f64) -> bool {
    std::env::var("HARAFT_BENCH_LOGS").ok().and_then(|v| v.parse::<f64>().ok()).is_some_and(|s| seconds > s)
}

/// The last `lines` lines of every node's log, to stderr.
fn print_logs(c: &ProcCluster, lines: usize) {
    for id in 1..=c.nodes.len() as u64 {
        let log = c.log(id);
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        eprintln!("--- node{id} (last lines)");
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}
