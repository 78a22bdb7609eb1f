//! Both sides of the lease contract (DESIGN.md, "The lease, exactly"):
//! the Raft leader's expiry timer and the holder's keeper. Time comes in as
//! `now`; nothing here reads a clock.

use crate::db::DbPosition;
use crate::ids::{BootTime, NodeId, RenewalSeq};
use crate::state::{Command, Effect, Lease, Outcome};
use crate::timing::Timing;

/// The expiry timer. Only its firing, on the Raft leader, may lapse a lease.
///
/// Every member keeps one: it restarts at `now + ttl` whenever the lease
/// the member applied changes (a renewal, a grant, a lapse), never earlier,
/// and a member elected leader goes on with it. A lapse that takes effect
/// is therefore decided a ttl after the member applied the newest renewal,
/// after that renewal's `t_send`, so after the holder's own deadline; a
/// timer that fires on a renewal the new leader has not caught up with
/// proposes a lapse the newer renewal makes stale (see ARCHITECTURE.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryTimer {
    watching: Option<Lease>,
    expires_at: BootTime,
}

impl ExpiryTimer {
    /// A timer watching `lease` from `now`.
    pub fn start(lease: Option<Lease>, now: BootTime, ttl_ms: u64) -> ExpiryTimer {
        ExpiryTimer { watching: lease, expires_at: now.plus_ms(ttl_ms) }
    }

    /// Feeds the applied lease; restarts the timer when it changed.
    /// Returns true when it restarted.
    pub fn observe(&mut self, lease: Option<Lease>, now: BootTime, ttl_ms: u64) -> bool {
        if lease == self.watching {
            return false;
        }
        *self = ExpiryTimer::start(lease, now, ttl_ms);
        true
    }

    /// The watched lease, if its timer has fired.
    pub fn expired(&self, now: BootTime) -> Option<Lease> {
        match self.watching {
            Some(lease) if now >= self.expires_at => Some(lease),
            _ => None,
        }
    }

    pub fn remaining_ms(&self, now: BootTime) -> u64 {
        now.ms_until(self.expires_at)
    }

    /// When the timer fires, while it watches a lease.
    pub fn fires_at(&self) -> Option<BootTime> {
        self.watching.map(|_| self.expires_at)
    }

    pub fn watching(&self) -> Option<Lease> {
        self.watching
    }
}

/// What the holder knows about its own lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLease {
    pub lease: Lease,
    /// Valid until this point on the holder's own clock; `None` until the
    /// first renewal of this epoch committed.
    pub valid_until: Option<BootTime>,
}

/// The holder's side: when to renew, and until when the lease is valid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseKeeper {
    held: Option<HeldLease>,
    in_flight: bool,
    next_attempt: BootTime,
    /// When the answer of the latest committed renewal of the held epoch
    /// arrived (this node's clock): what the commit guard counts from.
    confirmed_at: Option<BootTime>,
}

/// The commit guard: when the holder's renewals stop committing, its
/// database stops acknowledging commits long before the lease deadline.
///
/// A renewal commits about every `renew_interval_ms`. When none has been
/// confirmed for `renew_interval_ms + margin_ms`, the holder cannot tell
/// whether it is cut off; until its deadline it still holds the lease, but
/// every commit it acknowledges from then on may be one a new primary
/// never sees (asynchronous replication). Engaged, commits wait (they are
/// neither acknowledged nor refused); the next confirmed renewal lifts it,
/// and the fence at the deadline ends the waiting sessions with an error.
/// It cannot hold back a commit acknowledged before it engaged: after a
/// cut, at most `renew_interval_ms + margin_ms` of acknowledgements (plus
/// the shell's reaction) may still be lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitGuard {
    /// Past the renewal interval, how long a confirmed renewal may be late
    /// before commits are held; 0 turns the guard off.
    pub margin_ms: u64,
}

/// What the commit guard's shell must do now: hold a running primary's
/// commits (`Some((true, current))`: holding is never refused on an
/// epoch), release a guard in force for the lease holder of `holder`
/// (`Some((false, holder))`; without a valid lease the server is being
/// stopped anyway), or nothing. `held` is what is in force.
pub fn guard_change(
    hold: bool,
    held: bool,
    running_primary: bool,
    holder: Option<crate::ids::Epoch>,
    current: crate::ids::Epoch,
) -> Option<(bool, crate::ids::Epoch)> {
    match (hold, held, holder) {
        (true, false, _) if running_primary => Some((true, current)),
        (false, true, Some(epoch)) => Some((false, epoch)),
        _ => None,
    }
}

impl CommitGuard {
    /// When commits are held, for a renewal last confirmed at `confirmed_at`.
    pub fn engages_at(&self, confirmed_at: BootTime, timing: &Timing) -> Option<BootTime> {
        (self.margin_ms > 0).then(|| confirmed_at.plus_ms(timing.renew_interval_ms + self.margin_ms))
    }
}

/// Why the keeper did what it did, for the one log line per decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeeperReason {
    /// The committed state names this node: renew at once to make it valid.
    LeaseGranted,
    RenewalDue,
    /// The committed state no longer names this node.
    LeaseLost,
}

impl LeaseKeeper {
    /// The lease this node holds and may act on at `now`, if any.
    pub fn valid(&self, now: BootTime) -> Option<HeldLease> {
        self.held.filter(|h| matches!(h.valid_until, Some(t) if now < t))
    }

    /// What the keeper knows, valid or not (for status).
    pub fn held(&self) -> Option<HeldLease> {
        self.held
    }

    /// Whether the holder's commits must be held at `now`: it holds a lease
    /// that a renewal made valid, and no renewal was confirmed since the
    /// guard's engage time. Never for a node that holds no lease (its
    /// database takes no writes) nor before the first renewal of an epoch
    /// (its database is still read-only).
    pub fn commits_held(&self, now: BootTime, timing: &Timing, guard: CommitGuard) -> bool {
        if self.held.is_none_or(|h| h.valid_until.is_none()) {
            return false;
        }
        self.confirmed_at.and_then(|t| guard.engages_at(t, timing)).is_some_and(|at| now >= at)
    }

    /// The next instant after `now` at which `tick`, `valid` or
    /// `commits_held` can answer differently without an answer arriving or
    /// the applied lease changing: the next renewal attempt (unless one is
    /// in flight), the end of validity, and when the commit guard engages.
    /// A shell that steps at these instants (and on every event) misses
    /// nothing.
    pub fn next_due(&self, now: BootTime, timing: &Timing, guard: CommitGuard) -> Option<BootTime> {
        let held = self.held?;
        let attempt = (!self.in_flight).then_some(self.next_attempt);
        let engages = self.confirmed_at.and_then(|t| guard.engages_at(t, timing));
        [attempt, held.valid_until, engages].into_iter().flatten().filter(|t| *t > now).min()
    }

    /// When the last renewal was confirmed, for the guard's log line.
    pub fn confirmed_at(&self) -> Option<BootTime> {
        self.confirmed_at
    }

    /// One step: given the applied lease and `now`, maybe a renewal to
    /// propose. At most one renewal is in flight. `position` is this node's
    /// database position, sent with the renewal so that the cluster knows
    /// how far the primary got.
    pub fn tick(
        &mut self,
        me: NodeId,
        applied: Option<Lease>,
        now: BootTime,
        position: Option<DbPosition>,
    ) -> Option<(Option<Command>, KeeperReason)> {
        let mine = applied.filter(|l| l.holder == me);
        let Some(applied) = mine else {
            self.confirmed_at = None;
            if self.held.take().is_some() {
                return Some((None, KeeperReason::LeaseLost));
            }
            return None;
        };
        let mut reason = KeeperReason::RenewalDue;
        match self.held.as_mut() {
            Some(h) if h.lease.epoch == applied.epoch => {
                // Our own answers may be ahead of the applied copy.
                h.lease.renewal = h.lease.renewal.max(applied.renewal);
            }
            _ => {
                self.held = Some(HeldLease { lease: applied, valid_until: None });
                self.next_attempt = now;
                self.confirmed_at = None;
                reason = KeeperReason::LeaseGranted;
            }
        }
        if self.in_flight || now < self.next_attempt {
            return None;
        }
        let lease = self.held.expect("set above").lease;
        self.in_flight = true;
        Some((Some(Command::Renew { holder: me, epoch: lease.epoch, renewal: lease.renewal, position }), reason))
    }

    /// The answer to the renewal sent at `t_send`: `Some(outcome)` when it was
    /// committed and applied, `None` when it failed or timed out (which
    /// extends nothing). `now` is when the answer arrived.
    pub fn on_answer(&mut self, t_send: BootTime, now: BootTime, answer: Option<&Outcome>, timing: &Timing) {
        self.in_flight = false;
        let Some(held) = self.held.as_mut() else {
            return;
        };
        match answer {
            Some(Outcome::Applied(Effect::Renewed { epoch, renewal })) if *epoch == held.lease.epoch => {
                let deadline = timing.holder_deadline(t_send);
                held.valid_until = Some(held.valid_until.map_or(deadline, |t| t.max(deadline)));
                held.lease.renewal = held.lease.renewal.max(*renewal);
                self.next_attempt = t_send.plus_ms(timing.renew_interval_ms);
                self.confirmed_at = Some(self.confirmed_at.map_or(now, |t| t.max(now)));
            }
            Some(Outcome::Rejected(crate::state::Rejected::StaleRenewal { current, .. })) => {
                // Our count was behind (e.g. an answer we never received): use
                // the committed one and try again soon.
                held.lease.renewal = held.lease.renewal.max(*current);
                self.next_attempt = now.plus_ms(timing.retry_interval_ms());
            }
            Some(_) => {
                // Not the holder any more (or a stale epoch): the lease is gone.
                // The next tick sees the new state; stop claiming validity now.
                held.valid_until = None;
                self.next_attempt = now.plus_ms(timing.retry_interval_ms());
            }
            None => self.next_attempt = now.plus_ms(timing.retry_interval_ms()),
        }
    }

    /// Used by tests: the renewal count the keeper will propose next.
    pub fn next_renewal(&self) -> Option<RenewalSeq> {
        self.held.map(|h| h.lease.renewal)
    }
}

impl std::fmt::Display for KeeperReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeeperReason::LeaseGranted => "lease-granted",
            KeeperReason::RenewalDue => "renewal-due",
            KeeperReason::LeaseLost => "lease-lost",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Epoch;
    use crate::state::Rejected;

    const ME: NodeId = NodeId(2);
    /// Round numbers for the arithmetic below: validity 3000 x 0.99 - 500 = 2470.
    const TIMING: Timing =
        Timing { lease_ttl_ms: 3000, renew_interval_ms: 1000, clock_drift_ppm: 10_000, demote_budget_ms: 500 };

    fn lease(epoch: u64, renewal: u64) -> Lease {
        Lease { holder: ME, epoch: Epoch(epoch), renewal: RenewalSeq(renewal) }
    }

    fn renewed(epoch: u64, renewal: u64) -> Outcome {
        Outcome::Applied(Effect::Renewed { epoch: Epoch(epoch), renewal: RenewalSeq(renewal) })
    }

    #[test]
    fn timer_fires_only_a_full_ttl_after_the_last_change() {
        let l = lease(1, 0);
        let mut t = ExpiryTimer::start(Some(l), BootTime(1000), 3000);
        assert_eq!(t.expired(BootTime(3999)), None);
        assert_eq!(t.expired(BootTime(4000)), Some(l));
        // A renewal applied at 3500 restarts it.
        assert!(t.observe(Some(lease(1, 1)), BootTime(3500), 3000));
        assert_eq!(t.expired(BootTime(6499)), None);
        assert_eq!(t.expired(BootTime(6500)), Some(lease(1, 1)));
        // Observing the same lease again does not restart it.
        assert!(!t.observe(Some(lease(1, 1)), BootTime(6000), 3000));
        assert_eq!(t.remaining_ms(BootTime(6000)), 500);
    }

    #[test]
    fn keeper_next_due_names_every_instant_its_answers_change() {
        let guard = CommitGuard { margin_ms: 200 };
        let mut k = LeaseKeeper::default();
        assert_eq!(k.next_due(BootTime(0), &TIMING, guard), None, "no lease: nothing due");
        k.tick(ME, Some(lease(1, 0)), BootTime(0), None);
        assert_eq!(k.next_due(BootTime(0), &TIMING, guard), None, "in flight, not valid yet: the answer wakes");
        k.on_answer(BootTime(0), BootTime(10), Some(&renewed(1, 1)), &TIMING);
        // No answer arrives any more: every change of what the keeper says
        // (a renewal due, commits held, validity over) happens at an
        // instant that next_due named one millisecond before.
        let says = |t: BootTime| {
            (
                k.clone().tick(ME, Some(lease(1, 1)), t, None).is_some(),
                k.valid(t).is_some(),
                k.commits_held(t, &TIMING, guard),
            )
        };
        let mut changes = 0;
        for t in 11..4000u64 {
            if says(BootTime(t)) != says(BootTime(t - 1)) {
                changes += 1;
                assert_eq!(k.next_due(BootTime(t - 1), &TIMING, guard), Some(BootTime(t)), "at {t}");
            }
        }
        // The renewal due at 1000, the guard at 10 + 1000 + 200, validity
        // over at 2470.
        assert_eq!(changes, 3);
        assert_eq!(k.next_due(BootTime(2470), &TIMING, guard), None, "everything past");
    }

    #[test]
    fn timer_fires_at_is_when_expired_starts_answering() {
        let t = ExpiryTimer::start(Some(lease(1, 0)), BootTime(100), 3000);
        assert_eq!(t.fires_at(), Some(BootTime(3100)));
        assert!(t.expired(BootTime(3099)).is_none() && t.expired(BootTime(3100)).is_some());
        assert_eq!(ExpiryTimer::start(None, BootTime(0), 10).fires_at(), None);
    }

    #[test]
    fn timer_without_lease_never_fires() {
        let t = ExpiryTimer::start(None, BootTime(0), 10);
        assert_eq!(t.expired(BootTime(1_000_000)), None);
    }

    #[test]
    fn keeper_is_not_valid_before_its_first_renewal() {
        let timing = TIMING;
        let mut k = LeaseKeeper::default();
        let step = k.tick(ME, Some(lease(3, 0)), BootTime(100), None);
        assert_eq!(
            step,
            Some((
                Some(Command::Renew { holder: ME, epoch: Epoch(3), renewal: RenewalSeq(0), position: None }),
                KeeperReason::LeaseGranted
            ))
        );
        assert_eq!(k.valid(BootTime(100)), None);
        k.on_answer(BootTime(100), BootTime(110), Some(&renewed(3, 1)), &timing);
        assert_eq!(k.valid(BootTime(110)).and_then(|h| h.valid_until), Some(BootTime(2570)));
        assert_eq!(k.valid(BootTime(2570)), None, "valid strictly before the deadline");
    }

    #[test]
    fn keeper_renews_once_per_interval_with_one_in_flight() {
        let timing = TIMING;
        let mut k = LeaseKeeper::default();
        assert!(k.tick(ME, Some(lease(1, 0)), BootTime(0), None).is_some());
        assert_eq!(k.tick(ME, Some(lease(1, 0)), BootTime(50), None), None, "one in flight");
        k.on_answer(BootTime(0), BootTime(20), Some(&renewed(1, 1)), &timing);
        assert_eq!(k.tick(ME, Some(lease(1, 0)), BootTime(999), None), None);
        let step = k.tick(ME, Some(lease(1, 0)), BootTime(1000), None);
        assert_eq!(
            step,
            Some((
                Some(Command::Renew { holder: ME, epoch: Epoch(1), renewal: RenewalSeq(1), position: None }),
                KeeperReason::RenewalDue
            )),
            "uses its own newer count, not the lagging applied copy"
        );
    }

    #[test]
    fn failed_renewal_extends_nothing_and_retries_soon() {
        let timing = TIMING;
        let mut k = LeaseKeeper::default();
        k.tick(ME, Some(lease(1, 0)), BootTime(0), None);
        k.on_answer(BootTime(0), BootTime(10), Some(&renewed(1, 1)), &timing);
        k.tick(ME, Some(lease(1, 1)), BootTime(1000), None);
        k.on_answer(BootTime(1000), BootTime(3000), None, &timing);
        assert_eq!(k.valid(BootTime(2469)).and_then(|h| h.valid_until), Some(BootTime(2470)));
        assert_eq!(k.valid(BootTime(2470)), None);
        assert_eq!(k.tick(ME, Some(lease(1, 1)), BootTime(3249), None), None);
        assert!(k.tick(ME, Some(lease(1, 1)), BootTime(3250), None).is_some());
    }

    #[test]
    fn stale_renewal_answer_adopts_the_committed_count() {
        let timing = TIMING;
        let mut k = LeaseKeeper::default();
        k.tick(ME, Some(lease(1, 0)), BootTime(0), None);
        let stale = Outcome::Rejected(Rejected::StaleRenewal { proposed: RenewalSeq(0), current: RenewalSeq(4) });
        k.on_answer(BootTime(0), BootTime(10), Some(&stale), &timing);
        assert_eq!(k.next_renewal(), Some(RenewalSeq(4)));
        assert_eq!(k.valid(BootTime(10)), None);
    }

    #[test]
    fn losing_the_lease_in_state_drops_it() {
        let timing = TIMING;
        let mut k = LeaseKeeper::default();
        k.tick(ME, Some(lease(1, 0)), BootTime(0), None);
        k.on_answer(BootTime(0), BootTime(10), Some(&renewed(1, 1)), &timing);
        let other = Lease { holder: NodeId(9), epoch: Epoch(2), renewal: RenewalSeq(0) };
        assert_eq!(k.tick(ME, Some(other), BootTime(20), None), Some((None, KeeperReason::LeaseLost)));
        assert_eq!(k.valid(BootTime(20)), None);
        assert_eq!(k.tick(ME, Some(other), BootTime(30), None), None, "said once");
    }

    #[test]
    fn commits_are_held_when_a_renewal_is_late_and_released_by_the_next() {
        let timing = TIMING;
        let guard = CommitGuard { margin_ms: 150 };
        let mut k = LeaseKeeper::default();
        k.tick(ME, Some(lease(1, 0)), BootTime(0), None);
        assert!(!k.commits_held(BootTime(5000), &timing, guard), "never before the first renewal");
        k.on_answer(BootTime(0), BootTime(10), Some(&renewed(1, 1)), &timing);
        // Confirmed at 10: held from 10 + 1000 + 150.
        assert!(!k.commits_held(BootTime(1159), &timing, guard));
        assert!(k.commits_held(BootTime(1160), &timing, guard));
        // A failed renewal releases nothing; the next confirmed one does.
        k.tick(ME, Some(lease(1, 1)), BootTime(1000), None);
        k.on_answer(BootTime(1000), BootTime(1900), None, &timing);
        assert!(k.commits_held(BootTime(1900), &timing, guard));
        k.tick(ME, Some(lease(1, 1)), BootTime(2000), None);
        k.on_answer(BootTime(2000), BootTime(2030), Some(&renewed(1, 2)), &timing);
        assert!(!k.commits_held(BootTime(2030), &timing, guard));
        assert!(k.commits_held(BootTime(3180), &timing, guard));
        // Still held past the deadline (the fence's business then).
        assert!(k.commits_held(BootTime(9000), &timing, guard));
        // Off, it never holds.
        assert!(!k.commits_held(BootTime(9000), &timing, CommitGuard { margin_ms: 0 }));
    }

    #[test]
    fn commits_are_not_held_by_a_node_that_lost_or_changed_its_lease() {
        let timing = TIMING;
        let guard = CommitGuard { margin_ms: 150 };
        let mut k = LeaseKeeper::default();
        k.tick(ME, Some(lease(1, 0)), BootTime(0), None);
        k.on_answer(BootTime(0), BootTime(10), Some(&renewed(1, 1)), &timing);
        let other = Lease { holder: NodeId(9), epoch: Epoch(2), renewal: RenewalSeq(0) };
        k.tick(ME, Some(other), BootTime(20), None);
        assert!(!k.commits_held(BootTime(5000), &timing, guard), "not the holder");
        // Granted a new epoch later: nothing counts before its own renewal.
        k.tick(ME, Some(lease(3, 0)), BootTime(6000), None);
        assert!(!k.commits_held(BootTime(9000), &timing, guard));
        k.on_answer(BootTime(6000), BootTime(6010), Some(&renewed(3, 1)), &timing);
        assert!(!k.commits_held(BootTime(7159), &timing, guard));
        assert!(k.commits_held(BootTime(7160), &timing, guard));
    }

    /// Over random schedules of renewal answers: commits are held exactly
    /// when the holder's latest confirmation is older than interval +
    /// margin, and never by a node that holds no lease.
    #[test]
    fn the_guard_follows_the_latest_confirmation_over_random_schedules() {
        use proptest::prelude::*;
        let timing = TIMING;
        let strategy = proptest::collection::vec((1u64..1500, any::<bool>(), 0u64..400), 1..40);
        proptest!(|(steps in strategy, margin in 1u64..600)| {
            let guard = CommitGuard { margin_ms: margin };
            let mut k = LeaseKeeper::default();
            let mut now = 0u64;
            let mut confirmed: Option<u64> = None;
            let mut renewal = 0u64;
            k.tick(ME, Some(lease(1, 0)), BootTime(now), None);
            for (wait, ok, latency) in steps {
                now += wait;
                let t_send = now;
                now += latency;
                let answer = ok.then(|| renewed(1, renewal + 1));
                k.on_answer(BootTime(t_send), BootTime(now), answer.as_ref(), &timing);
                if ok {
                    renewal += 1;
                    confirmed = Some(now);
                }
                k.tick(ME, Some(lease(1, renewal)), BootTime(now), None);
                for probe in [now, now + timing.renew_interval_ms + margin - 1, now + timing.renew_interval_ms + margin] {
                    let expected = confirmed.is_some_and(|c| probe >= c + timing.renew_interval_ms + margin);
                    prop_assert_eq!(k.commits_held(BootTime(probe), &timing, guard), expected);
                }
            }
        });
    }

    #[test]
    fn the_guard_holds_a_running_primary_and_releases_only_for_the_holder() {
        let (holder, now) = (Some(Epoch(4)), Epoch(5));
        assert_eq!(guard_change(false, false, true, holder, now), None);
        assert_eq!(guard_change(true, false, true, holder, now), Some((true, Epoch(5))));
        assert_eq!(guard_change(true, false, true, None, now), Some((true, Epoch(5))), "holding needs no lease");
        assert_eq!(guard_change(true, false, false, holder, now), None, "a standby has no commits to hold");
        assert_eq!(guard_change(true, true, true, holder, now), None, "already held");
        assert_eq!(guard_change(false, true, true, holder, now), Some((false, Epoch(4))));
        assert_eq!(guard_change(false, true, true, None, now), None, "only the holder releases");
    }

    #[test]
    fn rejection_as_not_holder_drops_validity_at_once() {
        let timing = TIMING;
        let mut k = LeaseKeeper::default();
        k.tick(ME, Some(lease(1, 0)), BootTime(0), None);
        k.on_answer(BootTime(0), BootTime(10), Some(&renewed(1, 1)), &timing);
        k.tick(ME, Some(lease(1, 1)), BootTime(1000), None);
        k.on_answer(BootTime(1000), BootTime(1010), Some(&Outcome::Rejected(Rejected::LeaseVacant)), &timing);
        assert_eq!(k.valid(BootTime(1010)), None);
    }
}
