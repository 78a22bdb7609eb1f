//! `haraft-bench idle [--seconds N (600)]`: a steady 3-node cluster with
//! PostgreSQL and default settings, nothing happening: each agent's CPU
//! (agent process plus its fence guard process, utime + stime from
//! /proc/PID/stat over the window) as a percentage of one core, and its
//! RSS at the end; and each agent's thread wake-ups a second (context
//! switches of its threads, by thread name; the guard's under "guard"),
//! the count that sets an idle agent's CPU (see `wakes.rs`). PostgreSQL's
//! own processes are not counted.

use crate::wakes::{rates, switches};
use crate::{Args, rss_kib, wait_healthy};
use haraft_testkit::procs::ProcCluster;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // "pid (comm) state ppid ...": fields after the comm; utime and stime
    // are the 14th and 15th fields of the whole line.
    let after = &stat[stat.rfind(')').ok_or("no comm in stat")? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or(format!("short stat for {pid}"));
    Ok(field(11)? + field(12)?)
}

pub fn run(args: &Args) -> Result<(), String> {
    let mut c = ProcCluster::with_postgres(3, &args.extra(""));
    c.start_all();
    wait_healthy(&c, Duration::from_secs(120))?;
    // Let bootstrap, base backups and the first checkpoints settle.
    std::thread::sleep(Duration::from_secs(10));
    let pids: Vec<(i32, i32)> = (1..=3u64)
        .map(|id| {
            let agent = c.nodes[id as usize - 1].pid().ok_or("agent not running")? as i32;
            let node_dir = c.dir.path().join(&c.nodes[id as usize - 1].data);
            let guard = haraft_db::procs::fence_guard_pid(&node_dir).ok_or(format!("node{id}: no fence guard"))?;
            Ok((agent, guard))
        })
        .collect::<Result<_, String>>()?;
    let before: Vec<u64> =
        pids.iter().map(|(a, g)| Ok(cpu_ticks(*a)? + cpu_ticks(*g)?)).collect::<Result<_, String>>()?;
    let switches_before: Vec<_> = pids.iter().map(|(a, g)| agent_switches(*a, *g)).collect::<Result<_, String>>()?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let elapsed = start.elapsed().as_secs_f64();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut percent = Vec::new();
    let mut rss = Vec::new();
    let mut wakes = Vec::new();
    for (((a, g), b), sb) in pids.iter().zip(&before).zip(&switches_before) {
        let used = (cpu_ticks(*a)? + cpu_ticks(*g)?).saturating_sub(*b) as f64 / hz;
        percent.push((used / elapsed * 1000.0).round() / 10.0);
        rss.push(rss_kib(*a as u32)?);
        wakes.push(rates(sb, &agent_switches(*a, *g)?, elapsed));
    }
    let totals: Vec<f64> = wakes.iter().map(|w| w.values().sum::<f64>().round()).collect();
    let status = c.status().ok_or("no status at the end")?;
    let epoch = status["epoch"].as_u64();
    let json = serde_json::json!({
        "bench": "idle",
        "seconds": args.seconds,
        "cpu_percent_of_one_core": percent,
        "rss_kib": rss,
        "wakes_per_second": totals,
        "wakes_per_second_by_thread": wakes,
        "epoch_at_end": epoch,
    });
    println!("{json}");
    let max = percent.iter().cloned().fold(0.0, f64::max);
    println!(
        "idle {}s: agent+guard CPU {:?} % of one core (max {max}), RSS {:?} kB, thread wake-ups {:?} a second; \
         epoch at end {:?} (1: no failover)",
        args.seconds, percent, rss, totals, epoch
    );
    Ok(())
}

/// The agent's context switches by thread name, and its guard's (a
/// separate process) under "guard".
fn agent_switches(agent: i32, guard: i32) -> Result<BTreeMap<String, u64>, String> {
    let mut all = switches(agent)?;
    all.insert("guard".into(), switches(guard)?.values().sum());
    Ok(all)
}
