//! `haraft-bench partition-primary [--iterations N] [--synchronous]`: N
//! times, cut the primary off from the other members (every Raft and
//! replication link through the chaos proxies; clients still reach every
//! PostgreSQL directly) under a writer every 10 ms, until a new primary
//! takes writes; heal, and wait for the old one to stream. Measures the
//! writes the old primary acknowledged after the cut and the last of them
//! (what the commit guard bounds), the acknowledged writes lost, and the
//! time to the new primary's first acknowledged write.

use crate::{Args, median, primary_of, spread, wait_until};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::writer::{self, Writer};
use std::time::{Duration, Instant};

pub fn run(args: &Args) -> Result<(), String> {
    let runtime = crate::runtime()?;
    let extra = if args.synchronous { "[failover]\nsynchronous_mode = true\n" } else { "" };
    let (mut c, chaos) = runtime.block_on(ProcCluster::with_chaos(3, &args.extra(extra)));
    if args.no_commit_guard {
        for node in &c.nodes {
            let text = std::fs::read_to_string(&node.config).map_err(|e| e.to_string())?;
            let text = text.replace("[postgresql]\n", "[postgresql]\ncommit_guard_margin_ms = 0\n");
            std::fs::write(&node.config, text).map_err(|e| e.to_string())?;
        }
    }
    c.start_all();
    let result = iterations(args, &c, &chaos, &runtime);
    if result.is_err() {
        crate::print_logs(&c, 40);
    }
    result
}

fn normal(c: &ProcCluster, synchronous: bool) -> bool {
    c.status().is_some_and(|s| {
        s["cluster_state"] == "Normal"
            && (!synchronous || s["members"].as_array().is_some_and(|m| m.iter().any(|m| m["synchronous"] == true)))
    })
}

fn iterations(
    args: &Args,
    c: &ProcCluster,
    chaos: &haraft_testkit::chaos::Chaos,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let limit = Duration::from_secs(120);
    let pg = c.pg.as_ref().expect("postgres cluster");
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let (mut after_cut, mut last_after_cut, mut lost_all, mut first_new) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut acked_total = 0usize;
    for i in 0..args.iterations {
        wait_until("a normal cluster", limit, || normal(c, args.synchronous))?;
        let old = c.status().and_then(|s| primary_of(&s)).ok_or("no primary")?;
        let majority: Vec<u64> = (1..=3).filter(|n| *n != old).collect();
        let w = runtime.block_on(Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(300)));
        std::thread::sleep(Duration::from_secs(2));
        let cut = Instant::now();
        chaos.isolate(old);
        let old_port = ports[old as usize - 1];
        wait_until("a new primary on the majority side", limit, || {
            c.status_via(&majority).and_then(|s| primary_of(&s)).is_some_and(|p| p != old)
        })?;
        // Let the writer reach the new primary, then heal.
        std::thread::sleep(Duration::from_secs(3));
        chaos.heal();
        wait_until("the old primary streaming", limit, || normal(c, args.synchronous))?;
        let acks = runtime.block_on(w.stop());
        let committed = runtime.block_on(writer::committed_ids(&ports, &password));
        let late: Vec<f64> =
            acks.iter().filter(|a| a.port == old_port && a.at > cut).map(|a| (a.at - cut).as_secs_f64()).collect();
        let last = late.iter().copied().fold(0.0, f64::max);
        let new_first = acks
            .iter()
            .filter(|a| a.port != old_port && a.at > cut)
            .map(|a| (a.at - cut).as_secs_f64())
            .fold(f64::INFINITY, f64::min);
        if !new_first.is_finite() {
            return Err("the writer never reached the new primary".into());
        }
        let lost = writer::lost(&acks, &committed).len();
        eprintln!(
            "iteration {}: node{old} cut off: {} writes acknowledged by it after the cut, the last after {last:.3} s; lost {lost}; the new primary's first write after {new_first:.2} s",
            i + 1,
            late.len()
        );
        after_cut.push(late.len() as f64);
        last_after_cut.push(last);
        lost_all.push(lost as f64);
        first_new.push(new_first);
        acked_total += acks.len();
        let _ = runtime.block_on(crate::failover::drop_writes(&ports, &password));
    }
    let (_, last_med, last_max) = spread(&last_after_cut);
    let (lost_min, lost_med, lost_max) = spread(&lost_all);
    let (new_min, new_med, new_max) = spread(&first_new);
    let report = serde_json::json!({
        "bench": "partition-primary",
        "iterations": args.iterations,
        "synchronous_mode": args.synchronous,
        "commit_guard": !args.no_commit_guard,
        "acknowledged_by_old_primary_after_cut": {"median": median(after_cut.clone()), "all": after_cut},
        "last_old_primary_ack_after_cut_s": {"median": last_med, "max": last_max, "all": last_after_cut},
        "lost_acknowledged_writes": {"min": lost_min, "median": lost_med, "max": lost_max, "all": lost_all},
        "new_primary_first_write_s": {"min": new_min, "median": new_med, "max": new_max, "all": first_new},
        "acknowledged_writes": acked_total,
    });
    println!("{report}");
    println!(
        "partition of the primary ({} mode, commit guard {}, {} runs): its last acknowledgement after the cut median {last_med:.3} s, max {last_max:.3} s; lost writes median {lost_med}, max {lost_max}; the new primary's first write after a median {new_med:.2} s (max {new_max:.2})",
        if args.synchronous { "synchronous" } else { "asynchronous" },
        if args.no_commit_guard { "off" } else { "on" },
        args.iterations,
    );
    Ok(())
}
