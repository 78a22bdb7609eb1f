//! The faults a seed injects and what each one schedules for later
//! (a restart, a resumed process, an operator's resume, a heal).

use crate::cluster::{Cluster, crash_db};
use crate::net::Link;
use crate::rng::Rng;
use haraft_core::ops::Order;
use haraft_core::{Command, NodeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// The faults a run may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Crash,
    PowerLoss,
    Partition,
    OneWay,
    Flap,
    Loss,
    Delay,
    DbCrash,
    DiskFull,
    FailedRewind,
    Pause,
    Switchover,
    Failover,
    Maintenance,
}

impl Fault {
    pub const ALL: [Fault; 14] = [
        Fault::Crash,
        Fault::PowerLoss,
        Fault::Partition,
        Fault::OneWay,
        Fault::Flap,
        Fault::Loss,
        Fault::Delay,
        Fault::DbCrash,
        Fault::DiskFull,
        Fault::FailedRewind,
        Fault::Pause,
        Fault::Switchover,
        Fault::Failover,
        Fault::Maintenance,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::PowerLoss => "power-loss",
            Fault::Partition => "partition",
            Fault::OneWay => "one-way",
            Fault::Flap => "flap",
            Fault::Loss => "loss",
            Fault::Delay => "delay",
            Fault::DbCrash => "db-crash",
            Fault::DiskFull => "disk-full",
            Fault::FailedRewind => "failed-rewind",
            Fault::Pause => "pause",
            Fault::Switchover => "switchover",
            Fault::Failover => "failover",
            Fault::Maintenance => "maintenance",
        }
    }

    pub fn parse(word: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == word)
    }
}

/// Something a fault leaves to happen later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    /// The crashed host comes back.
    Restart(u64),
    /// The paused agent process runs again (SIGCONT).
    Resume(u64),
    /// Space is freed on the member's data directory's file system.
    DiskFreed(u64),
    /// The operator ends the maintenance pause (`checked`: it saw the
    /// cluster resumed once and looks again).
    OperatorResume { checked: bool },
}

/// A partition of one member that comes and goes until the network heals.
#[derive(Clone, Copy, Debug)]
pub struct Flap {
    pub node: u64,
    pub cut: bool,
    pub next_toggle: u64,
}

/// What the run keeps between faults.
#[derive(Default)]
pub struct Schedule {
    pub later: Vec<(u64, Later)>,
    pub heal_at: Option<u64>,
    pub flap: Option<Flap>,
    /// The fate of the operator's pause order, until the cluster resumed.
    pub pause_order: Option<Arc<AtomicU8>>,
}

/// The default lease ttl (the simulated members run the default lease
/// timing): pauses run from well under it to three times it.
const TTL_MS: u64 = haraft_core::Timing::DEFAULT.lease_ttl_ms;

/// How long a flapping link stays in one state: from a few heartbeats to a
/// few election timeouts.
pub const FLAP_MS: (u64, u64) = (100, 2000);

/// Cuts (or joins) member `node` from every other member, both ways.
pub fn isolate(cluster: &Cluster, node: u64, cut: bool) {
    let n = cluster.nodes.len() as u64;
    for o in (1..=n).filter(|o| *o != node) {
        cluster.router.set_link(node, o, Link { cut, ..Link::default() });
        cluster.router.set_link(o, node, Link { cut, ..Link::default() });
    }
}

/// The member that is the Raft leader now (running, not paused), if any.
fn leader(cluster: &Cluster) -> Option<u64> {
    cluster.nodes.iter().find_map(|n| {
        let agent = n.agent.as_ref()?;
        let leads = agent.raft().metrics().borrow().state == openraft::ServerState::Leader;
        (leads && !cluster.router.paused(n.id)).then_some(n.id)
    })
}

/// The operator's order, sent to the Raft leader as `haraftctl` does
/// (members do not forward operator orders), without waiting for it.
/// Returns the leader it went to and the order's fate (`IN_FLIGHT`, then
/// `DECIDED` or `FAILED`).
fn order(cluster: &Cluster, order: Order) -> Option<(u64, Arc<AtomicU8>)> {
    let via = leader(cluster)?;
    let agent = cluster.nodes[via as usize - 1].agent.as_ref()?;
    let command = Command::Operator { order, by: "sim".into(), at_unix_ms: haraft_agent::clock::now_unix_ms() };
    let shared = Arc::clone(&agent.shared);
    let fate = Arc::new(AtomicU8::new(IN_FLIGHT));
    let set = Arc::clone(&fate);
    tokio::spawn(async move {
        let decided = shared.propose(command).await.is_ok();
        set.store(if decided { DECIDED } else { FAILED }, Ordering::Relaxed);
    });
    Some((via, fate))
}

const IN_FLIGHT: u8 = 0;
const DECIDED: u8 = 1;
const FAILED: u8 = 2;

/// Injects `fault` at `now`, noting it in `note`.
pub async fn inject(
    fault: Fault,
    cluster: &mut Cluster,
    rng: &mut Rng,
    note: &mut dyn FnMut(String),
    schedule: &mut Schedule,
    now: u64,
) {
    let n = cluster.nodes.len() as u64;
    let id = rng.range(1, n);
    let other = 1 + (id + rng.range(0, n - 2)) % n;
    match fault {
        Fault::Crash | Fault::PowerLoss => {
            if !cluster.running(id) {
                return;
            }
            let lose = fault == Fault::PowerLoss;
            let down = rng.range(500, 10_000);
            note(format!("{} node{id} for {down} ms", fault.name()));
            cluster.crash(id, lose).await;
            schedule.later.push((now + down, Later::Restart(id)));
        }
        Fault::Partition | Fault::OneWay | Fault::Flap | Fault::Loss | Fault::Delay => {
            let lasting = rng.range(1000, 15_000);
            schedule.heal_at = Some(now + lasting);
            match fault {
                Fault::Partition => {
                    note(format!("partition node{id} for {lasting} ms"));
                    isolate(cluster, id, true);
                }
                Fault::Flap => {
                    note(format!("partition node{id} on and off for {lasting} ms"));
                    isolate(cluster, id, true);
                    let next_toggle = now + rng.range(FLAP_MS.0, FLAP_MS.1);
                    schedule.flap = Some(Flap { node: id, cut: true, next_toggle });
                }
                Fault::OneWay => {
                    note(format!("cut node{id} -> node{other} for {lasting} ms"));
                    cluster.router.set_link(id, other, Link { cut: true, ..Link::default() });
                }
                Fault::Loss => {
                    let percent = rng.range(10, 60);
                    note(format!("lose {percent}% and duplicate 5% of all messages for {lasting} ms"));
                    for (a, b) in (1..=n).flat_map(|a| (1..=n).map(move |b| (a, b))).filter(|(a, b)| a != b) {
                        let link = Link { loss_percent: percent, duplicate_percent: 5, ..Link::default() };
                        cluster.router.set_link(a, b, link);
                    }
                }
                _ => {
                    let ms = rng.range(50, 1500);
                    note(format!("delay node{id} <-> node{other} by {ms} ms for {lasting} ms"));
                    cluster.router.set_link(id, other, Link { extra_delay_ms: ms, ..Link::default() });
                    cluster.router.set_link(other, id, Link { extra_delay_ms: ms, ..Link::default() });
                }
            }
        }
        Fault::DbCrash => {
            note(format!("database of node{id} crashes"));
            crash_db(&cluster.servers, id);
        }
        Fault::DiskFull => {
            let full = rng.range(1000, 15_000);
            note(format!("the data directory of node{id} is full for {full} ms"));
            crash_db(&cluster.servers, id);
            if let Some(s) = cluster.servers.lock().servers.get_mut(&id) {
                s.disk_full = true;
            }
            schedule.later.push((now + full, Later::DiskFreed(id)));
        }
        Fault::FailedRewind => {
            note(format!("the next pg_rewind on node{id} fails part-way"));
            if let Some(s) = cluster.servers.lock().servers.get_mut(&id) {
                s.rewind_breaks = true;
            }
        }
        Fault::Pause => {
            if !cluster.running(id) || cluster.router.paused(id) {
                return;
            }
            let paused = rng.range(TTL_MS / 5, 3 * TTL_MS);
            note(format!("pause the agent of node{id} for {paused} ms"));
            cluster.router.set_running(id, false);
            schedule.later.push((now + paused, Later::Resume(id)));
        }
        Fault::Switchover => {
            let Some(state) = leader_state(cluster) else { return };
            let Some(lease) = state.lease else { return };
            let to = if lease.holder.0 == id { NodeId(other) } else { NodeId(id) };
            let switchover =
                Order::Switchover { from: lease.holder, to, epoch: lease.epoch, at_unix_ms: None, force: false };
            if let Some((via, _)) = order(cluster, switchover) {
                note(format!("operator asks node{via} for a switchover {} -> {to}", lease.holder));
            }
        }
        Fault::Failover => {
            if let Some((via, _)) = order(cluster, Order::Failover { to: NodeId(id), allow_data_loss: false }) {
                note(format!("operator asks node{via} for a failover to node{id}"));
            }
        }
        Fault::Maintenance => {
            if schedule.pause_order.is_some() {
                return;
            }
            let lasting = rng.range(500, 10_000);
            if let Some((via, fate)) = order(cluster, Order::Pause) {
                note(format!("operator pauses the cluster through node{via} for {lasting} ms"));
                schedule.pause_order = Some(fate);
                schedule.later.push((now + lasting, Later::OperatorResume { checked: false }));
            }
        }
    }
}

/// The state as the current Raft leader applied it.
fn leader_state(cluster: &Cluster) -> Option<std::sync::Arc<haraft_core::ClusterState>> {
    let id = leader(cluster)?;
    Some(cluster.nodes[id as usize - 1].agent.as_ref()?.shared.state())
}

/// Runs what is due at `now`: restarts, resumed processes, the operator's
/// resume, flapping links and the heal. Returns the members restarted.
pub async fn due(
    cluster: &mut Cluster,
    schedule: &mut Schedule,
    note: &mut dyn FnMut(String),
    rng: &mut Rng,
    now: u64,
) -> Vec<u64> {
    if schedule.heal_at.is_some_and(|t| now >= t) {
        cluster.router.heal_all();
        schedule.heal_at = None;
        schedule.flap = None;
        note("heal network".into());
    }
    if let Some(flap) = &mut schedule.flap
        && now >= flap.next_toggle
    {
        flap.cut = !flap.cut;
        flap.next_toggle = now + rng.range(FLAP_MS.0, FLAP_MS.1);
        let (node, cut) = (flap.node, flap.cut);
        isolate(cluster, node, cut);
    }
    let due: Vec<Later> = schedule.later.iter().filter(|(t, _)| now >= *t).map(|(_, l)| *l).collect();
    schedule.later.retain(|(t, _)| now < *t);
    let mut restarted = Vec::new();
    for later in due {
        match later {
            Later::Restart(id) => restarted.push(id),
            Later::DiskFreed(id) => {
                note(format!("space freed on node{id}"));
                if let Some(s) = cluster.servers.lock().servers.get_mut(&id) {
                    s.disk_full = false;
                }
            }
            Later::Resume(id) => {
                note(format!("the agent of node{id} runs again"));
                cluster.router.set_running(id, true);
            }
            Later::OperatorResume { checked } => {
                // Once the pause order is decided or failed, until the Raft
                // leader's state says resumed, again every second (a
                // proposal can be lost, or find no leader). A pause order
                // that failed (timed out) may still be committed, even
                // after the state first read resumed (a later leader holds
                // it): the operator looks at the status, as with haraftctl,
                // rather than trusting the error, and looks again 10 s after
                // it first read resumed (seeds 101359, 103260: a pause
                // applied after its proposal timed out was never resumed).
                let fate = schedule.pause_order.as_ref().map_or(FAILED, |f| f.load(Ordering::Relaxed));
                let paused = leader_state(cluster).map(|s| s.paused);
                if fate != IN_FLIGHT && paused == Some(false) {
                    if checked {
                        note("the cluster is resumed".into());
                        schedule.pause_order = None;
                    } else {
                        schedule.later.push((now + 10_000, Later::OperatorResume { checked: true }));
                    }
                    continue;
                }
                if fate != IN_FLIGHT
                    && paused == Some(true)
                    && let Some((via, _)) = order(cluster, Order::Resume)
                {
                    note(format!("operator resumes the cluster through node{via}"));
                }
                schedule.later.push((now + 1000, Later::OperatorResume { checked: false }));
            }
        }
    }
    restarted
}
