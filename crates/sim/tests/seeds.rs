//! The simulator in CI: one seed replays bit for bit, and a fixed,
//! bounded seed set of 3-member clusters under every fault finds no
//! violation. Long seed sets: see README ("Simulation").

use haraft_sim::run::{Fault, Setup, run};

fn setup(synchronous: bool) -> Setup {
    Setup { nodes: 3, synchronous, faults: faults(synchronous), fault_seconds: 20, converge_seconds: 20 }
}

/// Every fault, asynchronous and synchronous. (Synchronous mode ran
/// seven faults until the model's primaries reported haraft's synchronous
/// setting as the adapter reads it: before, no synchronous set ever formed,
/// and with switchovers, failovers, pauses, full disks and failed rewinds
/// synchronous clusters did not always converge.)
fn faults(_synchronous: bool) -> Vec<Fault> {
    Fault::ALL.to_vec()
}

#[test]
fn one_seed_gives_the_same_trace_every_run() {
    let a = run(11, &setup(false)).expect("seed 11 runs");
    let b = run(11, &setup(false)).expect("seed 11 runs again");
    assert!(a.trace.len() > 3, "a run with faults leaves a trace: {:?}", a.trace);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.trace_hash, b.trace_hash);
    // Seeds whose two runs differed before tokio's generator was seeded
    // (release, 60 + 30 s, 2026-12-07): 188, 200, 204, 206, 216. At this
    // test's shorter setup they may not differ unseeded; the test below
    // shows the seeding itself.
    for seed in [188, 200, 204, 206, 216] {
        let first = run(seed, &setup(false)).expect("the seed runs");
        let second = run(seed, &setup(false)).expect("the seed runs again");
        assert_eq!(first.trace, second.trace, "seed {seed} ran differently twice");
    }
    let other = run(12, &setup(false)).expect("seed 12 runs");
    assert_ne!(a.trace_hash, other.trace_hash, "another seed makes another schedule");
}

/// The branches 64 unbiased `select!`s of two ready futures take on the
/// runtime of `seed`, as bits.
fn select_choices(seed: u64) -> u64 {
    let rt = haraft_sim::run::runtime(seed).expect("a runtime");
    rt.block_on(async {
        let mut bits = 0u64;
        for i in 0..64 {
            let taken = tokio::select! {
                _ = std::future::ready(()) => 0u64,
                _ = std::future::ready(()) => 1,
            };
            bits |= taken << i;
        }
        bits
    })
}

/// The runtime a seed runs on picks `select!` branches from that seed
/// alone: two runtimes of one seed pick alike, of another seed otherwise
/// (unseeded, each runtime would draw from the process and differ).
#[test]
fn the_runtime_of_a_seed_picks_select_branches_from_it() {
    assert_eq!(select_choices(7), select_choices(7), "built without --cfg tokio_unstable? See .cargo/config.toml");
    assert_ne!(select_choices(7), select_choices(8));
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

/// 210 seeds asynchronous (here, in two tests) and 50 synchronous (below),
/// 40 virtual seconds each (more where a fault heals late): 65 s and 17 s
/// of CPU in a debug build, 98 s and 26 s with this machine loaded to 5-9
/// (measured 2026-12-07 on the commit that made synchronous sets form in
/// the model and started the convergence bound at the last heal). On a
/// machine shared with two simulator processes and a release build the
/// 210 took 276 s of nextest's 300 s limit, hence two halves.
#[test]
fn fixed_seed_set_finds_no_violation() {
    let found = violations(0..105, false);
    assert!(found.is_empty(), "replay with haraft-sim --seed S --trace: {found:#?}");
}

#[test]
fn fixed_seed_set_second_half_finds_no_violation() {
    let found = violations(105..210, false);
    assert!(found.is_empty(), "replay with haraft-sim --seed S --trace: {found:#?}");
}

#[test]
fn fixed_synchronous_seed_set_finds_no_violation() {
    let found = violations(1000..1050, true);
    assert!(found.is_empty(), "replay with haraft-sim --seed S --synchronous --trace: {found:#?}");
}

/// Seeds that once found a violation, each with the setup that found it
/// (the command's defaults: 3 members, every fault, 60 + 30 virtual s,
/// unless said). ARCHITECTURE.md ("Simulation", findings) has each
/// diagnosis.
#[test]
fn seeds_that_found_bugs_stay_fixed() {
    let cli =
        Setup { nodes: 3, synchronous: false, faults: Fault::ALL.to_vec(), fault_seconds: 60, converge_seconds: 30 };
    // 54, 105116: a rebuild's back-off earned against a cut-off source
    // held the member after a new primary was reachable (it now holds only
    // retries against the same source, counted per source).
    // 100271, 105131 and most of the 10,000-seed run's open seeds: a
    // directory left part-way by a failed pg_rewind, after an agent
    // restart, was started again and again (the adapter's marker now says
    // so, and it is rebuilt).
    // 101105, 103534, 105517: back-offs of up to 5 min outlived the cut-off
    // source, the full disk or the primary's failed start (now 10 s).
    // 101359, 103260, 108549: the simulated operator never resumed a
    // cluster whose pause order timed out yet was applied.
    // 101105 also: the convergence bound ran from fault-seconds, not from
    // when the last fault healed.
    // 4037, 7649, 11211: a start the agent began just before its host
    // crashed landed afterwards (the model let a dead host's pg_ctl finish;
    // the database then ran writable with no agent and no guard).
    // 26999: a running standby due for a rebuild was refused by the model's
    // pg_basebackup ("the target's server is running"); the adapter stops
    // it first, and now the model does too.
    // 44468, 75591: the most advanced member's data directory was left part-way
    // by a failed pg_rewind (the disk was full); the leader, which did not
    // know, granted it the lease, it released it at once, and so on a
    // thousand times (probes now carry the marker; verdicts skip it).
    // 54, then every seed of the 10,000-seed run (docs/sim-run.json) that
    // did not converge: 24 s of CPU in a debug build.
    let asynchronous = [
        4037, 7649, 11211, 26999, 44468, 75591, 54, 100271, 101105, 101133, 101359, 101450, 102447, 102467, 102529,
        102949, 103260, 103534, 103569, 104867, 105116, 105131, 105487, 105517, 105912, 105932, 105988, 106000, 106651,
        107959, 108280, 108549, 108556, 109506, 109961,
    ];
    let mut failing = Vec::new();
    for seed in asynchronous {
        if let Some(v) = run(seed, &cli).expect("a seed runs").violation {
            failing.push(format!("seed {seed}: {v}"));
        }
    }
    let synchronous = |faults: &[&str], fault_seconds, converge_seconds| Setup {
        nodes: 3,
        synchronous: true,
        faults: faults.iter().map(|f| Fault::parse(f).expect("a known fault")).collect(),
        fault_seconds,
        converge_seconds,
    };
    // 5001: an operator's failover refused after the holder released the
    // lease for it left nobody eligible (it now fails over from the holder).
    // 1013: after a switchover the primary idled in
    // "waiting-for-synchronous-standby" (the model's setting read as not
    // haraft's, so no synchronous set ever formed).
    let seven = ["crash", "power-loss", "partition", "one-way", "loss", "delay", "db-crash"];
    let with_switchover: Vec<&str> = seven.iter().copied().chain(["switchover"]).collect();
    for (seed, setup) in
        [(5001, synchronous(&["failover", "db-crash"], 60, 30)), (1013, synchronous(&with_switchover, 20, 20))]
    {
        if let Some(v) = run(seed, &setup).expect("a seed runs").violation {
            failing.push(format!("seed {seed} (synchronous): {v}"));
        }
    }
    assert!(failing.is_empty(), "replay with haraft-sim --seed S --trace: {failing:#?}");
}
