//! Nemesis: random faults from the matrix for a while (seeded, so a run
//! can be replayed), then heal, wait for convergence and check everything
//! a scenario checks. Used by `haraft-nemesis` and by a short CI test.

use crate::chaos::{Chaos, Fault, Traffic};
use crate::check::{normal, primary_id};
use crate::procs::ProcCluster;
use crate::writer::{self, Writer};
use std::time::{Duration, Instant};

/// xorshift64*: small, seedable, good enough to pick faults.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub seed: u64,
    pub seconds: u64,
    pub synchronous_mode: bool,
    /// What was done, in order, with when (seconds from the start).
    pub faults: Vec<String>,
    pub acknowledged: usize,
    pub lost: usize,
    pub overlapping: bool,
    pub first_epoch: u64,
    pub last_epoch: u64,
    /// Grants during the run (epoch increase).
    pub promotions: u64,
    pub converged: bool,
    /// Every invariant broken, in words; empty when the run passed.
    pub violations: Vec<String>,
    /// When it failed: the last lines of every node's log.
    pub logs: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

const NODES: u64 = 3;

/// Runs the nemesis against a fresh 3-node cluster with chaos proxies.
pub async fn run(seed: u64, seconds: u64, synchronous: bool) -> Report {
    let extra = if synchronous { "[failover]\nsynchronous_mode = true\n" } else { "" };
    let (mut c, chaos) = ProcCluster::with_chaos(NODES as usize, extra).await;
    c.start_all();
    let mut report = Report {
        seed,
        seconds,
        synchronous_mode: synchronous,
        faults: Vec::new(),
        acknowledged: 0,
        lost: 0,
        overlapping: false,
        first_epoch: 0,
        last_epoch: 0,
        promotions: 0,
        converged: false,
        violations: Vec::new(),
        logs: String::new(),
    };
    let Some(start) = wait_converged(&c, Duration::from_secs(90)).await else {
        report.violations.push("the cluster did not bootstrap".into());
        return report;
    };
    report.first_epoch = start["epoch"].as_u64().unwrap_or(0);
    let pg = c.pg.as_ref().expect("postgres cluster");
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(seconds + 300)).await;
    let mut rng = Rng::new(seed);
    let began = Instant::now();
    let mut last_epoch = report.first_epoch;
    while began.elapsed() < Duration::from_secs(seconds) {
        let node = rng.below(NODES) + 1;
        let other = (node + rng.below(NODES - 1)) % NODES + 1;
        let hold = Duration::from_millis(500 + rng.below(4500));
        let at = began.elapsed().as_secs_f64();
        let what = match rng.below(7) {
            0 => {
                chaos.isolate(node);
                format!("isolate node{node}")
            }
            1 => {
                chaos.cut_one_way(node, other);
                format!("node{node} cannot reach node{other}")
            }
            2 => {
                chaos.around(node, Traffic::Raft, Fault::Garble);
                format!("garble peer traffic around node{node}")
            }
            3 => {
                c.kill_host(node);
                format!("kill -9 host node{node}")
            }
            4 => {
                if c.is_running(node) {
                    c.kill_agent_only(node);
                }
                format!("kill -9 the agent of node{node}")
            }
            5 => {
                c.freeze_host(node, true);
                format!("freeze host node{node}")
            }
            _ => {
                let out =
                    c.ctl_command(&["switchover", "--to", &format!("node{node}"), "--force", "--wait", "20"]).output();
                let code = out.map(|o| o.status.code().unwrap_or(-1)).unwrap_or(-1);
                format!("switchover to node{node} (haraftctl exit {code})")
            }
        };
        report.faults.push(format!("{at:6.1} s  {what} for {:.1} s", hold.as_secs_f64()));
        tokio::time::sleep(hold).await;
        undo(&mut c, &chaos);
        // Epochs never decrease (as seen by whoever answers).
        if let Some(e) = c.status().and_then(|s| s["epoch"].as_u64()) {
            if e < last_epoch {
                report.violations.push(format!("epoch went from {last_epoch} back to {e}"));
            }
            last_epoch = last_epoch.max(e);
        }
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
    }
    undo(&mut c, &chaos);
    let end = wait_converged(&c, Duration::from_secs(120)).await;
    report.converged = end.is_some();
    if let Some(s) = &end {
        report.last_epoch = s["epoch"].as_u64().unwrap_or(0);
        if report.last_epoch < last_epoch {
            report.violations.push(format!("epoch went from {last_epoch} back to {}", report.last_epoch));
        }
    } else {
        report.violations.push(format!("did not converge within 120 s of healing: {:?}", c.status()));
    }
    report.promotions = report.last_epoch.saturating_sub(report.first_epoch);
    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    report.acknowledged = acks.len();
    report.lost = writer::lost(&acks, &committed).len();
    let overlaps = writer::overlapping(&acks);
    report.overlapping = !overlaps.is_empty();
    if report.overlapping {
        report
            .violations
            .push(format!("two primaries acknowledged writes in overlapping time: {}", overlaps.join("; ")));
    }
    if synchronous && report.lost > 0 {
        report.violations.push(format!("{} acknowledged writes lost in synchronous mode", report.lost));
    }
    for i in 1..=NODES {
        if c.log(i).contains("panicked") {
            report.violations.push(format!("node{i}'s agent panicked"));
        }
    }
    if !report.violations.is_empty() {
        for i in 1..=NODES {
            let log = c.log(i);
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            report.logs.push_str(&format!("--- node{i} (last lines)\n"));
            for line in tail.into_iter().rev() {
                report.logs.push_str(line);
                report.logs.push('\n');
            }
        }
    }
    report
}

/// Heals every link, thaws and restarts every node.
fn undo(c: &mut ProcCluster, chaos: &Chaos) {
    chaos.heal();
    for id in 1..=NODES {
        c.freeze_host(id, false);
        if c.exited(id) || !c.is_running(id) {
            c.start(id);
        }
    }
}

async fn wait_converged(c: &ProcCluster, limit: Duration) -> Option<serde_json::Value> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = c.status().filter(|s| normal(s) && primary_id(s).is_some()) {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}
