//! `haraft-bench failover` and `switchover`: see main.rs.

use crate::{
    Args, median, normal, p95, primary_of, print_logs, rss_kib, runtime, slower_than_asked, spread, wait_ready,
    wait_until,
};
use haraft_testkit::haproxy::Haproxy;
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::writer::{self, Writer};
use std::time::{Duration, Instant};

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let runtime = runtime()?;
    let extra = if args.synchronous { "[failover]\nsynchronous_mode = true\n" } else { "" };
    let mut c = ProcCluster::with_postgres(args.nodes, &args.extra(extra));
    c.start_all();
    let proxy = if args.via_haproxy { Some(Haproxy::start(&c)?) } else { None };
    let through = proxy.as_ref().map(|p| p.write_port);
    let result = if args.switchover {
        switchover_iterations(args, &mut c, &runtime, through)
    } else {
        failover_iterations(args, &mut c, &runtime, through)
    };
    if result.is_err() {
        print_logs(&c, 40);
    }
    result
}

/// A writer every 10 ms: through HAProxy's write port when `through`,
/// else over a multi-host connection to every member.
fn start_writer(
    runtime: &tokio::runtime::Runtime,
    ports: &[u16],
    password: &str,
    through: Option<u16>,
) -> Result<Writer, String> {
    let (every, limit) = (Duration::from_millis(10), Duration::from_secs(300));
    let Some(port) = through else {
        return Ok(runtime.block_on(Writer::start(ports, password, every, limit)));
    };
    let start = Instant::now();
    loop {
        if let Some(w) = runtime.block_on(Writer::through(port, password, every, limit)) {
            return Ok(w);
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err("HAProxy reached no primary within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn failover_iterations(
    args: &Args,
    c: &mut ProcCluster,
    runtime: &tokio::runtime::Runtime,
    through: Option<u16>,
) -> Result<(), String> {
    let limit = Duration::from_secs(120);
    let (mut resumed, mut rejoined, mut lost_total, mut acked_total) = (Vec::new(), Vec::new(), 0usize, 0usize);
    // The agents' memory while they manage PostgreSQL, once settled.
    wait_until("a normal cluster", limit, || c.status().is_some_and(|s| normal(&s)))?;
    std::thread::sleep(Duration::from_secs(5));
    let rss: Vec<u64> =
        (1..=args.nodes).map(|id| rss_kib(c.nodes[id - 1].pid().expect("running"))).collect::<Result<_, _>>()?;
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
        let w = start_writer(runtime, &ports, &password, through)?;
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
    let resumed_p95 = p95(&resumed);
    let report = serde_json::json!({
        "bench": "failover",
        "iterations": args.iterations,
        "nodes": args.nodes,
        "via_haproxy": through.is_some(),
        "synchronous_mode": args.synchronous,
        "writes_resumed_s": {"min": min, "median": med, "p95": resumed_p95, "max": max, "all": resumed},
        "old_node_streaming_again_s": {"median": median(rejoined.clone()), "all": rejoined},
        "lost_acknowledged_writes": lost_total,
        "acknowledged_writes": acked_total,
        "agent_rss_kib_managing_postgres": rss,
        "primary_was_raft_leader": was_leader,
    });
    println!("{report}");
    let leader_kills = was_leader.iter().filter(|l| **l).count();
    println!(
        "failover (kill -9 of the primary host, {} nodes, {} iterations{}{}, the primary also the Raft leader in {leader_kills}): writes resumed after min {min:.2} s, median {:.2} s, p95 {resumed_p95:.2} s, max {max:.2} s; lost {lost_total} of {acked_total} acknowledged writes; old node streaming again after a median {:.2} s; agent RSS {} kB",
        args.nodes,
        args.iterations,
        if args.synchronous { ", synchronous mode" } else { "" },
        if through.is_some() { ", through HAProxy" } else { "" },
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

fn switchover_iterations(
    args: &Args,
    c: &mut ProcCluster,
    runtime: &tokio::runtime::Runtime,
    through: Option<u16>,
) -> Result<(), String> {
    let limit = Duration::from_secs(120);
    let mut all_streaming = Vec::new();
    let (mut gaps, mut totals, mut lost_total, mut acked_total) = (Vec::new(), Vec::new(), 0usize, 0usize);
    let pg = c.pg.as_ref().expect("postgres cluster");
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    for i in 0..args.iterations {
        wait_ready(c, args, limit)?;
        let old = c.status().and_then(|s| primary_of(&s)).ok_or("no primary")?;
        let target = old % args.nodes as u64 + 1;
        let w = start_writer(runtime, &ports, &password, through)?;
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
        // Back to full redundancy: every member streams from the new primary.
        wait_until("every member streaming from the new primary", limit, || {
            c.status().is_some_and(|s| normal(&s) && primary_of(&s) == Some(target))
        })?;
        let streaming = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(1));
        let acks = runtime.block_on(w.stop());
        let committed = runtime.block_on(writer::committed_ids(&ports, &password));
        let gap = writer::switch_gap(&acks, ports[old as usize - 1])
            .ok_or("the writer never reached the new primary")?
            .as_secs_f64();
        let lost = writer::lost(&acks, &committed).len();
        eprintln!(
            "iteration {}: node{old} -> node{target}: writes unavailable {gap:.3} s, switchover done in {total:.2} s, every member streaming after {streaming:.2} s, lost {lost}",
            i + 1
        );
        if slower_than_asked(gap) {
            print_logs(c, 60);
        }
        gaps.push(gap);
        totals.push(total);
        all_streaming.push(streaming);
        lost_total += lost;
        acked_total += acks.len();
        let _ = runtime.block_on(drop_writes(&ports, &password));
    }
    let (min, med, max) = spread(&gaps);
    let streaming_p95 = p95(&all_streaming);
    let held = runtime.block_on(commit_guard_engaged(c))?;
    let report = serde_json::json!({
        "bench": "switchover",
        "iterations": args.iterations,
        "nodes": args.nodes,
        "via_haproxy": through.is_some(),
        "synchronous_mode": args.synchronous,
        "write_unavailability_s": {"min": min, "median": med, "p95": p95(&gaps), "max": max, "all": gaps},
        "all_streaming_s": {"median": median(all_streaming.clone()), "p95": streaming_p95, "all": all_streaming},
        "total_duration_s": {"median": median(totals.clone()), "all": totals},
        "lost_acknowledged_writes": lost_total,
        "acknowledged_writes": acked_total,
        "commit_guard_engaged": held,
    });
    println!("{report}");
    println!(
        "switchover ({} mode, {} nodes, {} runs{}): write unavailability median {:.3} s (min {min:.3}, max {max:.3}); done in median {:.2} s; every member streaming from the new primary after p95 {streaming_p95:.2} s; lost {lost_total} of {acked_total} acknowledged writes; commit guard engaged {held} times",
        if args.synchronous { "synchronous" } else { "asynchronous" },
        args.nodes,
        args.iterations,
        if through.is_some() { ", through HAProxy" } else { "" },
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

pub(crate) async fn drop_writes(ports: &[u16], password: &str) -> Result<(), String> {
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
