//! The simulator in CI: one seed replays bit for bit, and a fixed,
//! bounded seed set of 3-member clusters under every fault finds no
//! violation. Long seed sets: see README ("Simulation").

use haraft_sim::run::{Fault, Setup, run};

fn setup(synchronous: bool) -> Setup {
    Setup { nodes: 3, synchronous, faults: Fault::ALL.to_vec(), fault_seconds: 20, converge_seconds: 20 }
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

/// 80 seeds asynchronous and 20 synchronous, 40 virtual seconds each:
/// about a minute of a debug build on one core of this machine.
#[test]
fn fixed_seed_set_finds_no_violation() {
    let mut violations = Vec::new();
    for (seeds, synchronous) in [(0..80u64, false), (1000..1020u64, true)] {
        for seed in seeds {
            let outcome = run(seed, &setup(synchronous)).expect("a seed runs");
            if let Some(v) = outcome.violation {
                violations.push(format!("seed {seed} (synchronous: {synchronous}): {v}"));
            }
        }
    }
    assert!(violations.is_empty(), "replay with haraft-sim --seed S --trace: {violations:#?}");
}
