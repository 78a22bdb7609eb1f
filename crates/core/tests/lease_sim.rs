//! A pure simulation of the lease contract: one holder's `LeaseKeeper`, the
//! Raft leader's `ExpiryTimer` and the committed state, with random commit
//! and answer delays, lost renewals and leader changes, on one clock
//! (drift 0). The safety rule, checked every simulated millisecond-step:
//! whenever the leader's timer says the lease may lapse, the holder no
//! longer considers it valid.

use haraft_core::lease::{ExpiryTimer, LeaseKeeper};
use haraft_core::*;
use proptest::prelude::*;

const ME: NodeId = NodeId(1);
const OTHER: NodeId = NodeId(2);
const STEP_MS: u64 = 10;
const WRITE_TIMEOUT_MS: u64 = 2000;

#[derive(Clone, Debug)]
struct Delivery {
    /// From sending to being applied at the leader; `None`: lost.
    commit_ms: Option<u64>,
    /// From being applied to the answer reaching the holder; `None`: the
    /// answer is lost and the holder times out.
    answer_ms: Option<u64>,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (prop::option::weighted(0.8, 0u64..2500), prop::option::weighted(0.9, 0u64..2500))
        .prop_map(|(commit_ms, answer_ms)| Delivery { commit_ms, answer_ms })
}

struct InFlight {
    t_send: BootTime,
    command: Command,
    applies_at: Option<BootTime>,
    answered_at: BootTime,
    outcome: Option<Outcome>,
}

/// Returns how many times the lease lapsed.
fn simulate(deliveries: &[Delivery], leader_changes: &[u64], timing: Timing) -> Result<u64, TestCaseError> {
    let ttl = timing.lease_ttl_ms;
    let mut state = ClusterState::default();
    state.apply(1, &Command::Initialize { cluster: "sim".into(), config: timing, policy: Policy::default() });
    let members = [ME, OTHER].map(|id| Member { id, name: format!("n{}", id.0), address: String::new() }).to_vec();
    state.apply(2, &Command::SetMembers { members });
    state.apply(3, &Command::Grant { holder: ME, epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
    let mut index = 4;
    let mut keeper = LeaseKeeper::default();
    let mut timer = ExpiryTimer::start(state.lease, BootTime(0), ttl);
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut next_delivery = 0;
    let mut now = BootTime(0);
    let mut lapses = 0;
    let end = BootTime(30_000);
    while now < end {
        // Leader changes: the new leader restarts the timer at now + ttl.
        if leader_changes.iter().any(|&t| t / STEP_MS == now.0 / STEP_MS) {
            timer = ExpiryTimer::start(state.lease, now, ttl);
        }
        // Renewals reach the leader and are applied.
        for f in in_flight.iter_mut() {
            if f.applies_at == Some(now) {
                f.outcome = Some(state.apply(index, &f.command));
                index += 1;
                timer.observe(state.lease, now, ttl);
            }
        }
        // Answers reach the holder (or it gives up).
        in_flight.retain(|f| {
            if f.answered_at == now {
                keeper.on_answer(f.t_send, now, f.outcome.as_ref(), &timing);
                return false;
            }
            true
        });
        // The safety rule.
        if let Some(expired) = timer.expired(now) {
            prop_assert!(
                keeper.valid(now).is_none(),
                "at {now:?} the leader may lapse {expired:?} but the holder is valid until {:?}",
                keeper.valid(now).and_then(|h| h.valid_until)
            );
            if state.apply(
                index,
                &Command::Lapse {
                    holder: expired.holder,
                    epoch: expired.epoch,
                    renewal: expired.renewal,
                    at_unix_ms: 0,
                },
            ) == Outcome::Applied(Effect::Lapsed { holder: expired.holder, epoch: expired.epoch })
            {
                lapses += 1;
                index += 1;
                let next = state.epoch.next();
                state.apply(index, &Command::Grant { holder: OTHER, epoch: next, verdicts: vec![], at_unix_ms: 0 });
                index += 1;
                timer.observe(state.lease, now, ttl);
            }
        }
        // The holder renews.
        if let Some((Some(command), _)) = keeper.tick(ME, state.lease, now, None) {
            let d = deliveries
                .get(next_delivery % deliveries.len().max(1))
                .cloned()
                .unwrap_or(Delivery { commit_ms: Some(5), answer_ms: Some(5) });
            next_delivery += 1;
            let round = |ms: u64| ms / STEP_MS * STEP_MS;
            let applies_at = d.commit_ms.map(|c| now.plus_ms(round(c) + STEP_MS));
            let answered_at = match (applies_at, d.answer_ms) {
                (Some(a), Some(r)) if a.0 + round(r) < now.0 + WRITE_TIMEOUT_MS => a.plus_ms(round(r) + STEP_MS),
                _ => now.plus_ms(WRITE_TIMEOUT_MS),
            };
            in_flight.push(InFlight { t_send: now, command, applies_at, answered_at, outcome: None });
        }
        now = now.plus_ms(STEP_MS);
    }
    Ok(lapses)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_leader_never_may_lapse_a_lease_the_holder_still_considers_valid(
        deliveries in prop::collection::vec(delivery(), 1..40),
        leader_changes in prop::collection::vec(0u64..30_000, 0..6),
        demote_budget_ms in 0u64..1000,
    ) {
        let timing = Timing { demote_budget_ms, ..Timing::default() };
        prop_assume!(timing.validate().is_ok());
        simulate(&deliveries, &leader_changes, timing)?;
    }
}

#[test]
fn a_healthy_holder_is_never_lapsed() {
    // Fast, reliable delivery: the lease must survive the whole run.
    let fast = vec![Delivery { commit_ms: Some(3), answer_ms: Some(2) }];
    assert_eq!(simulate(&fast, &[100, 5000], Timing::default()).unwrap(), 0);
    // Nothing delivered: the lease lapses (and so does every later grant to
    // the other member, which this simulation never renews).
    let lost = vec![Delivery { commit_ms: None, answer_ms: None }];
    assert!(simulate(&lost, &[], Timing::default()).unwrap() >= 1);
}
