//! The simulator in CI: one seed replays bit for bit, and a fixed,
//! bounded seed set of 3-member clusters under every fault finds no
//! violation. Long seed sets: see README ("Simulation").

use haraft_sim::run::{Fault, Setup, run};

fn setup(synchronous: bool) -> Setup {
    Setup { nodes: 3, synchronous, faults: faults(synchronous), fault_seconds: 20, converge_seconds: 20 }
}

/// Every fault asynchronously. Synchronous mode keeps the faults its set
/// passed before the operator's orders reached the Raft leader: with
/// switchovers and failovers that take effect, and with pauses, disk full
/// and failed rewinds, synchronous clusters do not always converge
/// (`open_synchronous_findings` below; the simulator's report lists them).
fn faults(synchronous: bool) -> Vec<Fault> {
    if !synchronous {
        return Fault::ALL.to_vec();
    }
    use Fault::*;
    vec![Crash, PowerLoss, Partition, OneWay, Loss, Delay, DbCrash]
}

#[test]
fn one_seed_gives_the_same_trace_every_run() {
    let a = run(11, &setup(false)).expect("seed 11 runs");
    let b = run(11, &setup(false)).expect("seed 11 runs again");
    assert!(a.trace.len() > 3, "a run with faults leaves a trace: {:?}", a.trace);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.trace_hash, b.trace_hash);
    let other = run(12, &setup(false)).expect("seed 12 runs");
    assert_ne!(a.trace_hash, other.trace_hash, "another seed makes another schedule");
}

/// Runs `seeds` and lists every violation.
fn violations(seeds: std::ops::Range<u64>, synchronous: bool) -> Vec<String> {
    let mut found = Vec::new();
    for seed in seeds {
        let outcome = run(seed, &setup(synchronous)).expect("a seed runs");
        if let Some(v) = outcome.violation {
            found.push(format!("seed {seed} (synchronous: {synchronous}): {v}"));
        }
    }
    found
}

/// 210 seeds asynchronous (here) and 50 synchronous (below), 40 virtual
/// seconds each: together 125 s of a debug build with this machine loaded
/// to 5, 94 s of CPU (measured 2026-12-07; two tests so that each stays
/// inside nextest's 180 s limit on a loaded machine).
#[test]
fn fixed_seed_set_finds_no_violation() {
    let found = violations(0..210, false);
    assert!(found.is_empty(), "replay with haraft-sim --seed S --trace: {found:#?}");
}

#[test]
fn fixed_synchronous_seed_set_finds_no_violation() {
    let found = violations(1000..1050, true);
    assert!(found.is_empty(), "replay with haraft-sim --seed S --synchronous --trace: {found:#?}");
}

/// Seeds that once found a violation, each with the setup that found it
/// (the command's defaults: 3 members, every fault, 60 + 30 virtual s).
#[test]
fn seeds_that_found_bugs_stay_fixed() {
    let cli =
        Setup { nodes: 3, synchronous: false, faults: Fault::ALL.to_vec(), fault_seconds: 60, converge_seconds: 30 };
    // 54: a rebuild's back-off, earned while its source was cut off, held
    // the member for 33 s after a new primary was reachable
    // (core::backoff now holds only retries against the same source).
    // 105116: the same back-off kept counting failures against the old
    // source, so the first failure against the new primary (tried while it
    // was starting) waited 34 s (it now counts per source).
    for seed in [54, 105116] {
        let outcome = run(seed, &cli).expect("a seed runs");
        assert_eq!(outcome.violation, None, "replay with haraft-sim --seed {seed} --trace");
    }
}

/// Synchronous-mode seeds that do not converge today, each with the
/// faults that show it. Run with `--ignored` while fixing them; when one
/// passes, move it into `seeds_that_found_bugs_stay_fixed`.
#[test]
#[ignore = "open findings in synchronous mode (issue 15)"]
fn open_synchronous_findings() {
    let with = |faults: &[&str]| Setup {
        nodes: 3,
        synchronous: true,
        faults: faults.iter().map(|f| Fault::parse(f).expect("a known fault")).collect(),
        fault_seconds: 60,
        converge_seconds: 30,
    };
    // 5001: an operator failover to a member that is not a synchronous
    // standby is accepted, the holder releases its lease, the failover is
    // then refused, and no member (the former primary included) is
    // eligible any more: no primary until --allow-data-loss.
    let failover = with(&["failover", "db-crash"]);
    // 1013 (20 + 20 s): after a switchover the primary idles in
    // "waiting-for-synchronous-standby" with both standbys streaming.
    let switchover = Setup {
        fault_seconds: 20,
        converge_seconds: 20,
        ..with(&["crash", "power-loss", "partition", "one-way", "loss", "delay", "db-crash", "switchover"])
    };
    let mut failing = Vec::new();
    for (seed, setup) in [(5001, &failover), (1013, &switchover)] {
        if let Some(v) = run(seed, setup).expect("a seed runs").violation {
            failing.push(format!("seed {seed}: {v}"));
        }
    }
    assert!(failing.is_empty(), "{failing:#?}");
}
