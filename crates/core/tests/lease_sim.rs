//! A pure simulation of the lease contract: one holder's `LeaseKeeper`,
//! two members that can lead, each with its own `ExpiryTimer` fed by the
//! lease changes it applies (the follower some random time after the
//! leader), and the committed state; random commit and answer delays, lost
//! renewals, leader changes (the new leader goes on with its own timer,
//! not a full ttl from its election), and a holder whose clock runs slower
//! than real time by up to the drift bound. The safety rule, checked
//! every simulated step: a lapse takes effect only when the holder no
//! longer considers its lease valid by its own clock.

use haraft_core::lease::{ExpiryTimer, LeaseKeeper};
use haraft_core::*;
use proptest::prelude::*;

const ME: NodeId = NodeId(1);
const OTHER: NodeId = NodeId(2);
const STEP_MS: u64 = 10;
const WRITE_TIMEOUT_MS: u64 = 2000;
const PPM: u64 = 1_000_000;

#[derive(Clone, Debug)]
struct Delivery {
    /// From sending to being committed (applied at the leader); `None`: lost.
    commit_ms: Option<u64>,
    /// From being applied to the answer reaching the holder; `None`: the
    /// answer is lost and the holder times out.
    answer_ms: Option<u64>,
    /// How much later the other member applies it.
    follower_lag_ms: u64,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (prop::option::weighted(0.8, 0u64..2500), prop::option::weighted(0.9, 0u64..2500), 0u64..1500)
        .prop_map(|(commit_ms, answer_ms, follower_lag_ms)| Delivery { commit_ms, answer_ms, follower_lag_ms })
}

struct InFlight {
    t_send: BootTime,
    command: Command,
    applies_at: Option<BootTime>,
    answered_at: BootTime,
    outcome: Option<Outcome>,
    follower_lag_ms: u64,
}

/// A member that may lead: the lease as it has applied it, and its timer.
struct Member {
    /// (when it applies, the lease after that entry), in log order.
    pending: Vec<(BootTime, Option<Lease>)>,
    last_apply: BootTime,
    timer: ExpiryTimer,
}

impl Member {
    fn new(lease: Option<Lease>, ttl: u64) -> Member {
        Member { pending: Vec::new(), last_apply: BootTime(0), timer: ExpiryTimer::start(lease, BootTime(0), ttl) }
    }

    /// An entry committed now, applied here at `at` (never before an
    /// earlier entry: log order).
    fn committed(&mut self, at: BootTime, lease: Option<Lease>) {
        let at = at.max(self.last_apply);
        self.last_apply = at;
        self.pending.push((at, lease));
    }

    fn step(&mut self, now: BootTime, ttl: u64) {
        while let Some((at, lease)) = self.pending.first().copied() {
            if at > now {
                break;
            }
            self.pending.remove(0);
            self.timer.observe(lease, now, ttl);
        }
    }
}

/// The holder's clock at real time `now`: slower by `drift_ppm`, the worst
/// case the drift bound allows (its lease then lasts longest in real time).
fn holder_clock(now: BootTime, drift_ppm: u64) -> BootTime {
    BootTime(now.0 * (PPM - drift_ppm) / PPM)
}

/// Returns how many times the lease lapsed.
fn simulate(
    deliveries: &[Delivery],
    leader_changes: &[u64],
    timing: Timing,
    drift_ppm: u64,
) -> Result<u64, TestCaseError> {
    let ttl = timing.lease_ttl_ms;
    let mut state = ClusterState::default();
    state.apply(1, &Command::Initialize { cluster: "sim".into(), config: timing, policy: Policy::default() });
    let members = [ME, OTHER].map(|id| haraft_core::Member { id, name: format!("n{}", id.0), address: String::new() });
    state.apply(2, &Command::SetMembers { members: members.to_vec() });
    state.apply(3, &Command::Grant { holder: ME, epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
    let mut index = 4;
    let mut keeper = LeaseKeeper::default();
    // Member 0 leads first; a leader change hands over to the other.
    let mut nodes = [Member::new(state.lease, ttl), Member::new(state.lease, ttl)];
    let mut leader = 0usize;
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut next_delivery = 0;
    let mut now = BootTime(0);
    let mut lapses = 0;
    let end = BootTime(30_000);
    while now < end {
        let mine = holder_clock(now, drift_ppm);
        if leader_changes.iter().any(|&t| t / STEP_MS == now.0 / STEP_MS) {
            leader = 1 - leader;
        }
        // Renewals are committed; each member applies them in its time.
        for f in in_flight.iter_mut() {
            if f.applies_at == Some(now) {
                f.outcome = Some(state.apply(index, &f.command));
                index += 1;
                nodes[leader].committed(now, state.lease);
                nodes[1 - leader].committed(now.plus_ms(f.follower_lag_ms), state.lease);
            }
        }
        for n in nodes.iter_mut() {
            n.step(now, ttl);
        }
        // Answers reach the holder (or it gives up).
        in_flight.retain(|f| {
            if f.answered_at == now {
                keeper.on_answer(holder_clock(f.t_send, drift_ppm), mine, f.outcome.as_ref(), &timing);
                return false;
            }
            true
        });
        // The leader's timer may fire on a lease it has not caught up
        // with: the lapse is a compare-and-set against the committed log,
        // and only one that takes effect must find the holder invalid.
        if let Some(expired) = nodes[leader].timer.expired(now) {
            let lapse = Command::Lapse {
                holder: expired.holder,
                epoch: expired.epoch,
                renewal: expired.renewal,
                at_unix_ms: 0,
            };
            if state.apply(index, &lapse)
                == Outcome::Applied(Effect::Lapsed { holder: expired.holder, epoch: expired.epoch })
            {
                prop_assert!(
                    keeper.valid(mine).is_none(),
                    "at {now:?} a lapse of {expired:?} took effect but the holder is valid until {:?} (its clock {mine:?})",
                    keeper.valid(mine).and_then(|h| h.valid_until)
                );
                lapses += 1;
                index += 1;
                let next = state.epoch.next();
                state.apply(index, &Command::Grant { holder: OTHER, epoch: next, verdicts: vec![], at_unix_ms: 0 });
                index += 1;
                for n in nodes.iter_mut() {
                    n.committed(now, state.lease);
                    n.step(now, ttl);
                }
            }
        }
        // The holder renews.
        if let Some((Some(command), _)) = keeper.tick(ME, state.lease, mine, None) {
            let d = deliveries.get(next_delivery % deliveries.len().max(1)).cloned().unwrap_or(Delivery {
                commit_ms: Some(5),
                answer_ms: Some(5),
                follower_lag_ms: 0,
            });
            next_delivery += 1;
            let round = |ms: u64| ms / STEP_MS * STEP_MS;
            let applies_at = d.commit_ms.map(|c| now.plus_ms(round(c) + STEP_MS));
            let answered_at = match (applies_at, d.answer_ms) {
                (Some(a), Some(r)) if a.0 + round(r) < now.0 + WRITE_TIMEOUT_MS => a.plus_ms(round(r) + STEP_MS),
                _ => now.plus_ms(WRITE_TIMEOUT_MS),
            };
            let follower_lag_ms = round(d.follower_lag_ms);
            in_flight.push(InFlight { t_send: now, command, applies_at, answered_at, outcome: None, follower_lag_ms });
        }
        now = now.plus_ms(STEP_MS);
    }
    Ok(lapses)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_lapse_takes_effect_only_after_the_holder_stopped_considering_its_lease_valid(
        deliveries in prop::collection::vec(delivery(), 1..40),
        leader_changes in prop::collection::vec(0u64..30_000, 0..6),
        demote_budget_ms in 0u64..1000,
        drift_ppm in prop_oneof![Just(0u64), Just(Timing::default().clock_drift_ppm), 0u64..=Timing::default().clock_drift_ppm],
    ) {
        let timing = Timing { demote_budget_ms, ..Timing::default() };
        prop_assume!(timing.validate().is_ok());
        simulate(&deliveries, &leader_changes, timing, drift_ppm)?;
    }
}

#[test]
fn a_healthy_holder_is_never_lapsed() {
    // Fast, reliable delivery: the lease must survive the whole run, leader
    // changes and a slow holder clock included.
    let fast = vec![Delivery { commit_ms: Some(3), answer_ms: Some(2), follower_lag_ms: 40 }];
    assert_eq!(simulate(&fast, &[100, 5000], Timing::default(), 10_000).unwrap(), 0);
    // Nothing delivered: the lease lapses (and so does every later grant to
    // the other member, which this simulation never renews).
    let lost = vec![Delivery { commit_ms: None, answer_ms: None, follower_lag_ms: 0 }];
    assert!(simulate(&lost, &[], Timing::default(), 0).unwrap() >= 1);
}

/// Without the drift allowance in the holder's deadline, a holder whose
/// clock runs slow would outlive the lapse: the simulation catches it.
#[test]
fn a_slow_holder_clock_beyond_the_bound_is_caught() {
    let timing = Timing { clock_drift_ppm: 0, demote_budget_ms: 0, ..Timing::default() };
    // Every renewal committed; the answers stop after the first few.
    let mut d: Vec<Delivery> =
        (0..3).map(|_| Delivery { commit_ms: Some(0), answer_ms: Some(0), follower_lag_ms: 0 }).collect();
    d.extend((0..40).map(|_| Delivery { commit_ms: None, answer_ms: None, follower_lag_ms: 0 }));
    assert!(simulate(&d, &[], timing, 0).is_ok(), "no drift: safe");
    assert!(simulate(&d, &[], timing, 200_000).is_err(), "a 20% slow holder clock without an allowance must be caught");
}
