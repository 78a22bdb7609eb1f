//! `haraft-bench load [--seconds N]`: a 3-node cluster under both cores
//! saturated — one busy loop per core in its own process, plus pgbench
//! (4 clients) against the primary — while a writer inserts every 10 ms.
//! Counts failovers (epochs granted during the run), self-fences (leases
//! that lapsed or were released) and the longest gap between two
//! acknowledged writes. The goal: 0, 0 and under 1 s. The agents run at
//! `--agent-nice` (-5 by default, as the shipped unit's `Nice=`: run as
//! root), their PostgreSQL at 0 (the agent starts it so).

use crate::{Args, normal, primary_of, runtime, wait_until};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::writer::{self, Writer};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Processes the load started, each in its own process group; killed
/// (the whole group) when dropped.
struct Load(Vec<Child>);

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SAFETY: kill(2) on a process group this bench created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

fn spawn(command: &mut Command) -> Result<Child, String> {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    command.spawn().map_err(|e| format!("starting {command:?}: {e}"))
}

/// A process's nice value (`/proc/PID/stat`, field 19).
fn nice_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(16)?.parse().ok()
}

/// History entries of `kinds` after log index `after`.
fn count(history: &[serde_json::Value], after: u64, kinds: &[&str]) -> usize {
    history
        .iter()
        .filter(|e| e["log_index"].as_u64().is_some_and(|i| i > after))
        .filter(|e| e["event"].as_str().is_some_and(|k| kinds.contains(&k)))
        .count()
}

fn history(c: &ProcCluster) -> Result<Vec<serde_json::Value>, String> {
    let (code, out, err) = c.ctl(&["history", "--json"]);
    if code != 0 {
        return Err(format!("haraftctl history: {err}"));
    }
    serde_json::from_str(&out).map_err(|e| format!("history is not JSON: {e}"))
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let runtime = runtime()?;
    let mut c = ProcCluster::with_postgres(3, &args.extra(""));
    c.start_all();
    let renice = |c: &ProcCluster| (1..=3).map(|id| c.renice_agent(id, args.agent_nice)).sum::<usize>();
    if args.agent_nice != 0 && renice(&c) == 0 {
        return Err(format!("cannot set the agents to nice {} (run as root, or --agent-nice 0)", args.agent_nice));
    }
    let limit = Duration::from_secs(120);
    wait_until("a normal cluster", limit, || c.status().is_some_and(|s| normal(&s)))?;
    if args.agent_nice != 0 {
        renice(&c);
    }
    let server_nice: Vec<Option<i32>> =
        (1..=3).map(|id| haraft_db::procs::postmaster_pid(&c.pgdata(id)).and_then(|pid| nice_of(pid as u32))).collect();
    let status = c.status().ok_or("no status")?;
    let primary = primary_of(&status).ok_or("no primary")?;
    let epoch = status["epoch"].as_u64().unwrap_or(0);
    let pg = c.pg.as_ref().ok_or("no PostgreSQL")?;
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let port = ports[primary as usize - 1].to_string();
    let pgbench = "/usr/lib/postgresql/15/bin/pgbench";
    let conn = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "postgres"];
    let init = Command::new(pgbench)
        .arg("-i")
        .arg("-q")
        .args(conn)
        .env("PGPASSWORD", &password)
        .output()
        .map_err(|e| format!("pgbench -i: {e}"))?;
    if !init.status.success() {
        return Err(format!("pgbench -i failed: {}", String::from_utf8_lossy(&init.stderr)));
    }
    let last_index = history(&c)?.iter().filter_map(|e| e["log_index"].as_u64()).max().unwrap_or(0);
    let w = runtime.block_on(Writer::start(
        &ports,
        &password,
        Duration::from_millis(10),
        Duration::from_secs(args.seconds + 60),
    ));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut load = Load(Vec::new());
    for _ in 0..cores {
        load.0.push(spawn(Command::new("sh").args(["-c", "while :; do :; done"]))?);
    }
    let seconds = args.seconds.to_string();
    load.0.push(spawn(
        Command::new(pgbench).args(["-c", "4", "-j", "2", "-T", &seconds]).args(conn).env("PGPASSWORD", &password),
    )?);
    eprintln!("load: {cores} busy loops and pgbench (4 clients) for {} s", args.seconds);
    std::thread::sleep(Duration::from_secs(args.seconds));
    drop(load);
    let acks = runtime.block_on(w.stop());
    let end = c.status().ok_or("no status after the load")?;
    let failovers = end["epoch"].as_u64().unwrap_or(0).saturating_sub(epoch);
    let h = history(&c)?;
    let self_fences = count(&h, last_index, &["lapsed", "released"]);
    let gap = writer::longest_gap(&acks).map_or(0.0, |g| g.as_secs_f64());
    let report = serde_json::json!({
        "bench": "load",
        "seconds": args.seconds,
        "agent_nice": args.agent_nice,
        "postgres_nice": server_nice,
        "busy_loops": cores,
        "pgbench_clients": 4,
        "failovers": failovers,
        "self_fences": self_fences,
        "longest_write_gap_s": gap,
        "acknowledged_writes": acks.len(),
    });
    println!("{report}");
    println!(
        "load ({} s, {cores} busy loops + pgbench, agents at nice {}): {failovers} failovers, {self_fences} self-fences, longest gap between acknowledged writes {gap:.2} s ({} writes)",
        args.seconds,
        args.agent_nice,
        acks.len()
    );
    Ok(())
}
