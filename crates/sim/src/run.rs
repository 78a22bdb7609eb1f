//! One seed: a cluster, a fault schedule, a writing client and the
//! invariant checker, all on one paused-time tokio runtime.

use crate::cluster::Cluster;
use crate::faults::{Schedule, due, inject};
use crate::model::{Acked, WRITE_BYTES};
use crate::net::Router;
use crate::rng::Rng;
use haraft_core::Epoch;
use std::cell::{Cell, RefCell};
use std::time::Duration;

pub use crate::faults::Fault;

#[derive(Clone, Debug)]
pub struct Setup {
    pub nodes: u64,
    pub synchronous: bool,
    pub faults: Vec<Fault>,
    /// Virtual seconds with faults, then the same rules without new ones.
    pub fault_seconds: u64,
    /// How long after the last fault healed the cluster has to converge.
    pub converge_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub seed: u64,
    /// The first invariant violated, in words.
    pub violation: Option<String>,
    pub simulated_ms: u64,
    pub trace_hash: u64,
    pub trace: Vec<String>,
}

thread_local! {
    static START: Cell<Option<tokio::time::Instant>> = const { Cell::new(None) };
    static RNG: RefCell<Rng> = RefCell::new(Rng::new(0));
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Virtual milliseconds since the run began.
pub fn virtual_ms() -> u64 {
    START.with(|s| s.get().map_or(0, |t| t.elapsed().as_millis() as u64))
}

/// The agents' clock seam, pointed at this thread's run. Boot time starts
/// at an hour so that no member reads a zero.
fn install_clock() {
    haraft_agent::clock::redirect(haraft_agent::clock::Source {
        boottime: || haraft_core::BootTime(3_600_000 + virtual_ms()),
        unix_ms: || 1_700_000_000_000 + virtual_ms(),
        random_u64: || RNG.with(|r| r.borrow_mut().next_u64()),
    });
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_run = START.with(|s| s.get().is_some());
        if in_run {
            PANICS.with(|p| p.borrow_mut().push(info.to_string().lines().next().unwrap_or("").to_string()));
        }
        if !in_run || std::env::var_os("HARAFT_SIM_PANIC_TRACE").is_some() {
            default(info);
        }
    }));
}

struct Trace {
    lines: Vec<String>,
    violation: Option<String>,
}

impl Trace {
    fn note(&mut self, line: String) {
        self.lines.push(format!("{:>8} {line}", virtual_ms()));
    }

    fn violate(&mut self, what: String) {
        self.note(format!("VIOLATION {what}"));
        if self.violation.is_none() {
            self.violation = Some(format!("at {} ms: {what}", virtual_ms()));
        }
    }
}

/// FNV-1a: stable across machines and Rust versions.
fn hash(lines: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lines.iter().flat_map(|l| l.bytes().chain([b'\n'])) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Runs one seed to the end on a fresh paused-time runtime.
pub fn run(seed: u64, setup: &Setup) -> anyhow::Result<Outcome> {
    static CLOCK: std::sync::Once = std::sync::Once::new();
    CLOCK.call_once(install_clock);
    RNG.with(|r| *r.borrow_mut() = Rng::new(seed.wrapping_mul(3)));
    PANICS.with(|p| p.borrow_mut().clear());
    let rt = runtime(seed)?;
    let outcome = rt.block_on(async {
        START.with(|s| s.set(Some(tokio::time::Instant::now())));
        drive(seed, setup).await
    });
    START.with(|s| s.set(None));
    rt.shutdown_background();
    outcome
}

/// The paused-time, single-thread runtime one seed runs on. Every
/// unbiased `select!` (openraft's replication back-off has one) draws from
/// the runtime's generator: seeded here from `seed` when built with
/// `--cfg tokio_unstable` (.cargo/config.toml), else from the process.
pub fn runtime(seed: u64) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    #[cfg(not(tokio_unstable))]
    let _ = seed;
    builder.build()
}

/// The longest a fault injected before `fault_seconds` may still be
/// healing after it (the longest fault lasts 15 s; an operator's resume
/// is retried every second until applied).
const NEVER_QUIET_MS: u64 = 60_000;

/// How often the checker looks at every member and database.
const CHECK_EVERY: Duration = Duration::from_millis(5);
/// How often the client tries a write on every writable database.
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// How long the client waits for a synchronous commit to be confirmed.
const COMMIT_WAIT: Duration = Duration::from_secs(2);

async fn drive(seed: u64, setup: &Setup) -> anyhow::Result<Outcome> {
    let mut rng = Rng::new(seed);
    // The default range (`RaftTiming`), one fixed draw per member.
    let election: Vec<u64> = (0..setup.nodes).map(|_| rng.range(200, 400)).collect();
    let router = Router::new(Rng::new(seed.wrapping_add(1)));
    let mut cluster = Cluster::new(setup.nodes, setup.synchronous, router.clone(), &election)?;
    let mut trace = Trace { lines: Vec::new(), violation: None };
    for id in 1..=setup.nodes {
        cluster.start(id).await?;
    }
    let fault_end = setup.fault_seconds * 1000;
    // The cluster has `converge_seconds` from when the last fault healed
    // (a crashed member restarted, the network healed, space freed, the
    // operator's resume applied), not from `fault_seconds`: a fault
    // injected just before then lasts up to 15 s longer (seed 101105: a
    // disk full until 74 s left 16 s, not 30). The run ends at the latest
    // `NEVER_QUIET_MS` after the faults' time if they never all healed.
    let converge_ms = setup.converge_seconds * 1000;
    let mut quiet_since: Option<u64> = None;
    let mut next_fault = rng.range(2000, 6000);
    let mut next_write = 0;
    let mut schedule = Schedule::default();
    let mut epochs: Vec<Epoch> = vec![Epoch(0); setup.nodes as usize];
    let mut max_epoch = Epoch(0);
    let mut converged_at = None;
    let mut pending: Vec<(Acked, u64)> = Vec::new();
    let mut writable_before: Vec<u64> = Vec::new();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let now = virtual_ms();
        let end = quiet_since.map_or(fault_end + NEVER_QUIET_MS + converge_ms, |q| q + converge_ms);
        if now >= end || trace.violation.is_some() {
            break;
        }
        // Heal, resume and restart on schedule.
        let restarted = due(&mut cluster, &mut schedule, &mut |l| trace.note(l), &mut rng, now).await;
        for id in restarted {
            trace.note(format!("restart node{id}"));
            // A new life replays its log from what its store kept (after a
            // power loss: its last snapshot), so its applied epoch starts
            // lower; the check holds within each life, and the database
            // itself refuses every action of an epoch older than one that
            // already acted on it (`ModelDb::act`, like the epoch guard).
            epochs[id as usize - 1] = Epoch(0);
            if let Err(e) = cluster.start(id).await {
                trace.violate(format!("node{id} did not restart: {e:#}"));
            }
        }
        if now < fault_end && now >= next_fault && !setup.faults.is_empty() && schedule.heal_at.is_none() {
            let fault = setup.faults[rng.range(0, setup.faults.len() as u64 - 1) as usize];
            inject(fault, &mut cluster, &mut rng, &mut |l| trace.note(l), &mut schedule, now).await;
            next_fault = now + rng.range(1000, 8000);
        }
        cluster.servers.replicate(&|a, b| router.reachable(a, b));

        // The client: one write on every database that takes writes.
        if now >= next_write {
            next_write = now + WRITE_EVERY.as_millis() as u64;
            let mut t = cluster.servers.lock();
            for (id, s) in t.servers.iter_mut().filter(|(_, s)| s.accepts_writes()) {
                s.lsn += WRITE_BYTES;
                pending.push((Acked { node: *id, timeline: s.timeline, lsn: s.lsn, epoch: s.epoch_high }, now));
            }
        }
        let mut still = Vec::new();
        for (w, since) in pending.drain(..) {
            let alive = cluster
                .servers
                .lock()
                .servers
                .get(&w.node)
                .is_some_and(|s| s.running && s.timeline == w.timeline && !s.commits_held);
            if alive && cluster.servers.commit_confirmed(w.node, w.timeline, w.lsn) {
                cluster.servers.lock().acked.push(w);
            } else if alive && now - since < COMMIT_WAIT.as_millis() as u64 {
                still.push((w, since));
            }
        }
        pending = still;

        // Invariants, every check.
        let writable: Vec<u64> =
            cluster.servers.lock().servers.iter().filter(|(_, s)| s.accepts_writes()).map(|(id, _)| *id).collect();
        if writable != writable_before {
            trace.note(format!("writable {writable:?}"));
            writable_before = writable.clone();
        }
        if writable.len() > 1 {
            trace.violate(format!("two databases accept writes: {writable:?}"));
        }
        for node in &cluster.nodes {
            let Some(agent) = &node.agent else { continue };
            let state = agent.shared.state();
            let i = node.id as usize - 1;
            if state.epoch < epochs[i] {
                trace.violate(format!("node{} applied epoch {} after epoch {}", node.id, state.epoch, epochs[i]));
            }
            epochs[i] = state.epoch;
            if state.epoch > max_epoch {
                max_epoch = state.epoch;
                let holder = state.lease.map(|l| l.holder);
                trace.note(format!("epoch {max_epoch} granted to {holder:?}"));
                let t = cluster.servers.lock();
                for id in
                    t.servers.iter().filter(|(_, s)| s.accepts_writes() && s.epoch_high < max_epoch).map(|(id, _)| id)
                {
                    trace.violate(format!("epoch {max_epoch} granted while node{id} still took writes"));
                }
            }
        }
        let panics = PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()));
        if let Some(p) = panics.first() {
            trace.violate(format!("panic: {p}"));
        }
        let quiet = now >= fault_end && schedule.heal_at.is_none() && schedule.later.is_empty();
        if quiet && quiet_since.is_none() {
            quiet_since = Some(now);
        }
        if quiet && converged_at.is_none() && converged(&cluster, &writable) {
            converged_at = Some(now);
            trace.note("converged".into());
        }
    }
    if trace.violation.is_none() {
        if quiet_since.is_none() {
            trace.violate(format!(
                "the faults did not all heal within {} s after the last one was injected",
                NEVER_QUIET_MS / 1000
            ));
        } else if converged_at.is_none() {
            let servers = describe(&cluster);
            trace.violate(format!(
                "no convergence within {} s after the faults ended: {servers}",
                setup.converge_seconds
            ));
        } else if setup.synchronous {
            check_acked(&cluster, &mut trace);
        }
    }
    let simulated_ms = virtual_ms();
    for id in 1..=setup.nodes {
        if let Some(agent) = cluster.nodes[id as usize - 1].agent.take() {
            let _ = agent.shutdown().await;
        }
    }
    Ok(Outcome { seed, violation: trace.violation, simulated_ms, trace_hash: hash(&trace.lines), trace: trace.lines })
}

/// One primary taking writes and every other member's database a running
/// standby streaming from it.
fn converged(cluster: &Cluster, writable: &[u64]) -> bool {
    let [primary] = writable else { return false };
    let t = cluster.servers.lock();
    t.servers
        .iter()
        .filter(|(id, _)| *id != primary)
        .all(|(_, s)| s.running && s.streaming && s.upstream == Some(*primary))
}

/// Each database in a few words, for a failed convergence.
fn describe(cluster: &Cluster) -> String {
    let t = cluster.servers.lock();
    let words: Vec<String> = t
        .servers
        .iter()
        .map(|(id, s)| {
            let state = match (s.running, s.role) {
                (false, _) => "stopped".to_string(),
                (true, role) => format!("{role:?}").to_lowercase(),
            };
            let up = s.upstream.map_or(String::new(), |u| format!(" from node{u}"));
            let streaming = if s.streaming { " streaming" } else { "" };
            format!("node{id} {state}{up}{streaming} timeline {} lsn {:X}", s.timeline, s.lsn)
        })
        .collect();
    words.join("; ")
}

/// Every write acknowledged in synchronous mode is in the final primary's
/// history.
fn check_acked(cluster: &Cluster, trace: &mut Trace) {
    let t = cluster.servers.lock();
    let Some(primary) = t.servers.values().find(|s| s.accepts_writes()) else { return };
    if let Some(lost) = t.acked.iter().find(|a| !primary.holds(a.timeline, a.lsn)) {
        let lost = *lost;
        let count = t.acked.iter().filter(|a| !primary.holds(a.timeline, a.lsn)).count();
        drop(t);
        trace.violate(format!(
            "{count} acknowledged synchronous writes lost, first on node{} timeline {} lsn {:X} (epoch {})",
            lost.node, lost.timeline, lost.lsn, lost.epoch
        ));
    }
}
