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
//! `haraft-bench failover [--iterations N] [--synchronous]`: N times, kill -9
//! the primary host (agent, fence guard, PostgreSQL) under a writer and
//! measure the seconds until the writer succeeds on the new primary, the
//! acknowledged writes lost, and the seconds until the restarted old node
//! streams again. Needs PostgreSQL 15 and, as root, the postgres OS user.
//!
//! `haraft-bench switchover [--iterations N] [--synchronous]`: N times,
//! `haraftctl switchover --to <next member> --force` under a writer
//! (every 10 ms); measures the write unavailability (from the last write
//! acknowledged by the old primary to the first by the new one), the
//! switchover's total duration (until haraftctl reports done: the old
//! primary streams from the new one), and acknowledged writes lost.
//!
//! `haraft-bench partition-primary [--iterations N] [--synchronous]`: see
//! `partition.rs`.
//!
//! `haraft-bench idle [--seconds N]`: see `idle.rs`.
//!
//! `haraft-bench upgrade --from COMMIT | --from-bin-dir DIR`: a rolling
//! upgrade from a previous build under a writer; see `upgrade.rs`.
//!
//! Build with `cargo build --release --workspace`, then run
//! `target/release/haraft-bench`.

mod idle;
mod partition;
mod upgrade;

use haraft_testkit::procs::ProcCluster;
use std::time::{Duration, Instant};

struct Args {
    failover: bool,
    switchover: bool,
    partition: bool,
    idle: bool,
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
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        failover: false,
        switchover: false,
        partition: false,
        idle: false,
        no_commit_guard: false,
        iterations: 5,
        synchronous: false,
        seconds: 30,
        renew_interval_ms: 100,
        idle_seconds: 20,
        primary_is_leader: false,
        upgrade_from: None,
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
        Some("idle") => {
            args.idle = true;
            args.seconds = 600;
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
            "--seconds" => args.seconds = value("--seconds")?,
            "--renew-interval-ms" => args.renew_interval_ms = value("--renew-interval-ms")?,
            "--idle-seconds" => args.idle_seconds = value("--idle-seconds")?,
            "--iterations" => args.iterations = value("--iterations")?.max(1),
            "--synchronous" => args.synchronous = true,
            "--primary-is-leader" => args.primary_is_leader = true,
            "--no-commit-guard" => args.no_commit_guard = true,
            "--help" | "-h" => {
                println!(
                    "haraft-bench [lease] [--seconds N (30)] [--renew-interval-ms N (100)] [--idle-seconds N (20)]"
                );
                println!("haraft-bench failover [--iterations N (5)] [--synchronous] [--primary-is-leader]");
                println!("haraft-bench switchover [--iterations N (5)] [--synchronous]");
                println!("haraft-bench partition-primary [--iterations N (5)] [--synchronous] [--no-commit-guard]");
                println!("haraft-bench idle [--seconds N (600)]");
                println!("haraft-bench upgrade --from COMMIT | --from-bin-dir DIR");
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
    } else if args.failover || args.switchover {
        failover(&args)
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

/// (min, median, max) of the samples.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (min, median(v.to_vec()), max)
}

fn failover(args: &Args) -> Result<(), String> {
    let runtime = runtime()?;
    let extra = if args.synchronous { "[failover]\nsynchronous_mode = true\n" } else { "" };
    let mut c = ProcCluster::with_postgres(3, extra);
    c.start_all();
    let result = if args.switchover {
        switchover_iterations(args, &mut c, &runtime)
    } else {
        failover_iterations(args, &mut c, &runtime)
    };
    if result.is_err() {
        print_logs(&c, 40);
    }
    result
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

fn failover_iterations(args: &Args, c: &mut ProcCluster, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    use haraft_testkit::writer::{self, Writer};
    let limit = Duration::from_secs(120);
    let (mut resumed, mut rejoined, mut lost_total, mut acked_total) = (Vec::new(), Vec::new(), 0usize, 0usize);
    // The agents' memory while they manage PostgreSQL, once settled.
    wait_until("a normal cluster", limit, || c.status().is_some_and(|s| normal(&s)))?;
    std::thread::sleep(Duration::from_secs(5));
    let rss: Vec<u64> = (1..=3).map(|id| rss_kib(c.nodes[id - 1].pid().expect("running"))).collect::<Result<_, _>>()?;
    let pg = c.pg.as_ref().expect("postgres cluster");
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let mut was_leader = Vec::new();
    for i in 0..args.iterations {
        wait_ready(c, args, limit)?;
        if args.primary_is_leader {
            primary_to_leader(c, args, limit)?;
        }
        let status = c.status().ok_or("no status")?;
        let old = primary_of(&status).ok_or("no primary")?;
        let w = runtime.block_on(Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(300)));
        std::thread::sleep(Duration::from_secs(2));
        // Whether the kill takes the Raft leader too (then an election
        // comes first), as the cluster says just before it.
        let leader = c.status().and_then(|s| s["leader"].as_str().map(str::to_string));
        was_leader.push(leader.as_deref() == Some(format!("node{old}").as_str()));
        let killed_at = Instant::now();
        let killed_wall = std::time::SystemTime::now();
        c.kill_host(old);
        let old_port = ports[old as usize - 1];
        wait_until("a new primary", limit, || c.status().and_then(|s| primary_of(&s)).is_some_and(|p| p != old))?;
        // Let the writer reach the new primary, then bring the old node back.
        std::thread::sleep(Duration::from_secs(3));
        let restarted_at = Instant::now();
        c.start(old);
        wait_until("the old node streaming", limit, || {
            c.status().is_some_and(|s| s["members"][old as usize - 1]["state"] == "streaming")
        })?;
        let rejoin = restarted_at.elapsed().as_secs_f64();
        let acks = runtime.block_on(w.stop());
        let committed = runtime.block_on(writer::committed_ids(&ports, &password));
        let first_new = acks
            .iter()
            .filter(|a| a.port != old_port && a.at > killed_at)
            .map(|a| a.at)
            .min()
            .ok_or("the writer never reached the new primary")?;
        let resume = (first_new - killed_at).as_secs_f64();
        let lost = writer::lost(&acks, &committed).len();
        eprintln!(
            "iteration {}: writes resumed after {resume:.2} s, lost {lost}, old node streaming {rejoin:.2} s after restart{}",
            i + 1,
            if was_leader[i as usize] { " (the primary was also the Raft leader)" } else { "" }
        );
        if slower_than_asked(resume) {
            let ms = killed_wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()) % 86_400_000;
            eprintln!(
                "node{old} killed at {:02}:{:02}:{:02}.{:03}Z",
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            );
            print_logs(c, 60);
        }
        resumed.push(resume);
        rejoined.push(rejoin);
        lost_total += lost;
        acked_total += acks.len();
        runtime.block_on(async { tokio::task::yield_now().await });
        // A fresh table for the next iteration.
        let _ = runtime.block_on(drop_writes(&ports, &password));
    }
    let (min, med, max) = spread(&resumed);
    let report = serde_json::json!({
        "bench": "failover",
        "iterations": args.iterations,
        "synchronous_mode": args.synchronous,
        "writes_resumed_s": {"min": min, "median": med, "max": max, "all": resumed},
        "old_node_streaming_again_s": {"median": median(rejoined.clone()), "all": rejoined},
        "lost_acknowledged_writes": lost_total,
        "acknowledged_writes": acked_total,
        "agent_rss_kib_managing_postgres": rss,
        "primary_was_raft_leader": was_leader,
    });
    println!("{report}");
    let leader_kills = was_leader.iter().filter(|l| **l).count();
    println!(
        "failover (kill -9 of the primary host, {} iterations{}, the primary also the Raft leader in {leader_kills}): writes resumed after min {min:.2} s, median {:.2} s, max {max:.2} s; lost {lost_total} of {acked_total} acknowledged writes; old node streaming again after a median {:.2} s; agent RSS {} kB",
        args.iterations,
        if args.synchronous { ", synchronous mode" } else { "" },
        report["writes_resumed_s"]["median"].as_f64().unwrap_or(0.0),
        report["old_node_streaming_again_s"]["median"].as_f64().unwrap_or(0.0),
        rss.iter().map(u64::to_string).collect::<Vec<_>>().join("/"),
    );
    Ok(())
}

/// Switches over to the Raft leader when the primary is another member.
fn primary_to_leader(c: &ProcCluster, args: &Args, limit: Duration) -> Result<(), String> {
    let status = c.status().ok_or("no status")?;
    let leader = status["leader"].as_str().ok_or("no Raft leader")?.to_string();
    if primary_of(&status).map(|p| format!("node{p}")) == Some(leader.clone()) {
        return Ok(());
    }
    let out = c
        .ctl_command(&["switchover", "--to", &leader, "--force"])
        .output()
        .map_err(|e| format!("running haraftctl: {e}"))?;
    if !out.status.success() {
        return Err(format!("switchover to the Raft leader {leader} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    wait_ready(c, args, limit)
}

fn switchover_iterations(args: &Args, c: &mut ProcCluster, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    use haraft_testkit::writer::{self, Writer};
    let limit = Duration::from_secs(120);
    let (mut gaps, mut totals, mut lost_total, mut acked_total) = (Vec::new(), Vec::new(), 0usize, 0usize);
    let pg = c.pg.as_ref().expect("postgres cluster");
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    for i in 0..args.iterations {
        wait_ready(c, args, limit)?;
        let old = c.status().and_then(|s| primary_of(&s)).ok_or("no primary")?;
        let target = old % 3 + 1;
        let w = runtime.block_on(Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(300)));
        std::thread::sleep(Duration::from_secs(2));
        let started = Instant::now();
        let out = c
            .ctl_command(&["switchover", "--to", &format!("node{target}"), "--force"])
            .output()
            .map_err(|e| format!("running haraftctl: {e}"))?;
        let total = started.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!(
                "switchover {} failed: {}{}",
                i + 1,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
        let acks = runtime.block_on(w.stop());
        let committed = runtime.block_on(writer::committed_ids(&ports, &password));
        let gap = writer::switch_gap(&acks, ports[old as usize - 1])
            .ok_or("the writer never reached the new primary")?
            .as_secs_f64();
        let lost = writer::lost(&acks, &committed).len();
        eprintln!(
            "iteration {}: node{old} -> node{target}: writes unavailable {gap:.3} s, switchover done in {total:.2} s, lost {lost}",
            i + 1
        );
        if slower_than_asked(gap) {
            print_logs(c, 60);
        }
        gaps.push(gap);
        totals.push(total);
        lost_total += lost;
        acked_total += acks.len();
        let _ = runtime.block_on(drop_writes(&ports, &password));
    }
    let (min, med, max) = spread(&gaps);
    let held = runtime.block_on(commit_guard_engaged(c))?;
    let report = serde_json::json!({
        "bench": "switchover",
        "iterations": args.iterations,
        "synchronous_mode": args.synchronous,
        "write_unavailability_s": {"min": min, "median": med, "max": max, "all": gaps},
        "total_duration_s": {"median": median(totals.clone()), "all": totals},
        "lost_acknowledged_writes": lost_total,
        "acknowledged_writes": acked_total,
        "commit_guard_engaged": held,
    });
    println!("{report}");
    println!(
        "switchover ({} mode, {} runs): write unavailability median {:.3} s (min {min:.3}, max {max:.3}); done in median {:.2} s; lost {lost_total} of {acked_total} acknowledged writes; commit guard engaged {held} times",
        if args.synchronous { "synchronous" } else { "asynchronous" },
        args.iterations,
        med,
        median(totals),
    );
    Ok(())
}

/// How many times the members' commit guards held commits (bootstrap
/// included), by their `/metrics`.
async fn commit_guard_engaged(c: &ProcCluster) -> Result<f64, String> {
    let mut total = 0.0;
    for address in &c.rest {
        let reply = haraft_testkit::http::get(address, "/metrics").await?;
        let samples = haraft_testkit::prom::parse(&reply.body)?;
        let labels = [("action", "hold-commits"), ("outcome", "ok")];
        total += haraft_testkit::prom::value(&samples, "haraft_database_actions_total", &labels).unwrap_or(0.0);
    }
    Ok(total)
}

async fn drop_writes(ports: &[u16], password: &str) -> Result<(), String> {
    let mut c = tokio_postgres::Config::new();
    for p in ports {
        c.host("127.0.0.1").port(*p);
    }
    c.user("postgres")
        .password(password)
        .dbname("postgres")
        .target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    let (client, conn) = c.connect(tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    client.batch_execute("DROP TABLE IF EXISTS writes").await.map_err(|e| e.to_string())
}
