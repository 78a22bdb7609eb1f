//! `haraft-bench bootstrap [--iterations N] [--nodes N]`: N times, a new
//! cluster of real agents managing PostgreSQL 15 started from nothing
//! (every agent at once); measures the seconds from the start until one
//! primary holds the lease and every other member streams from it (status
//! `Normal`: replicas base-backed up, slots in place).

use crate::{Args, median, normal, p95, spread, wait_until};
use haraft_testkit::procs::ProcCluster;
use std::time::{Duration, Instant};

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let mut ready = Vec::new();
    for i in 0..args.iterations {
        let mut c = ProcCluster::with_postgres(args.nodes, &args.extra(""));
        let started = Instant::now();
        c.start_all();
        let result = wait_until("one primary and every replica streaming", Duration::from_secs(120), || {
            c.status().is_some_and(|s| normal(&s))
        });
        if let Err(e) = result {
            crate::print_logs(&c, 40);
            return Err(e);
        }
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("iteration {}: {} nodes ready after {seconds:.2} s", i + 1, args.nodes);
        if crate::slower_than_asked(seconds) {
            crate::print_logs(&c, 60);
        }
        ready.push(seconds);
    }
    let (min, med, max) = spread(&ready);
    let ready_p95 = p95(&ready);
    let report = serde_json::json!({
        "bench": "bootstrap",
        "nodes": args.nodes,
        "iterations": args.iterations,
        "ready_s": {"min": min, "median": med, "p95": ready_p95, "max": max, "all": ready},
    });
    println!("{report}");
    println!(
        "bootstrap ({} nodes, {} runs): one primary and every replica streaming after median {:.2} s, p95 {ready_p95:.2} s (min {min:.2}, max {max:.2})",
        args.nodes,
        args.iterations,
        median(ready.clone())
    );
    Ok(())
}
