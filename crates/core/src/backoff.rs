//! Back-off for database actions that fail again and again (a base backup
//! refused for a wrong password, a start that cannot bind its port): the
//! wait after the n-th failure in a row doubles from one second to ten
//! seconds, spread by jitter so that members failing for the same cause
//! do not retry in step. What failed, how often and when it is tried next
//! is shown per member in the status ([`FailingAction`]).

use crate::ids::{BootTime, NodeId};
use crate::reconcile::Action;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The wait after the first failure.
pub const FIRST_MS: u64 = 1000;
/// The longest wait: Patroni's `loop_wait` (10 s), the pace at which it
/// retries whatever failed. It was five minutes; the simulator found
/// members held down for up to that long after the cause had gone (a
/// source cut off, a full disk, a primary's start: seeds 101105, 103534,
/// 105517), when the retries it saved cost a refused connection or a
/// failed `pg_ctl start` each (a few milliseconds and one log line). The
/// back-off is there against tight loops, not to give up: a cause that
/// lasts (a wrong password) is shown in the status, and retried at this
/// pace until someone fixes it.
pub const CAP_MS: u64 = 10 * 1000;

/// How long to wait after the `failures`-th failure in a row: `FIRST_MS`
/// doubled per earlier failure, at most `CAP_MS`, then moved by up to a
/// fifth either way by `jitter` (any number; the shell draws it at random).
pub fn delay_ms(failures: u32, jitter: u64) -> u64 {
    let doublings = failures.saturating_sub(1).min(20);
    let base = FIRST_MS.saturating_mul(1 << doublings).min(CAP_MS);
    let spread = base / 5;
    base - spread + jitter % (2 * spread + 1)
}

/// One kind of action that keeps failing, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingAction {
    /// The action's kind: `rebuild`, `rewind`, `start-standby`, ...
    pub action: String,
    /// Its last error, on one line.
    pub error: String,
    /// Failures in a row.
    pub count: u32,
    /// Wall-clock milliseconds (Unix) of the next try.
    pub next_try_unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Failures {
    error: String,
    count: u32,
    /// The member the failed action depended on (its source or upstream).
    peer: Option<NodeId>,
    next_at: BootTime,
    next_unix_ms: u64,
}

/// The failures of each kind of action since it last succeeded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    by_kind: BTreeMap<&'static str, Failures>,
}

impl Backoff {
    /// Records an action's result: success forgets its kind's failures, a
    /// failure counts one more and sets the next try. Proposals and fencing
    /// are not counted: they never wait (a proposal that failed for want of
    /// a quorum must go through the moment the quorum is back).
    pub fn record(&mut self, action: &Action, result: Result<(), &str>, now: BootTime, now_unix_ms: u64, jitter: u64) {
        if !backs_off(action) {
            return;
        }
        let kind = action.kind();
        match result {
            Ok(()) => {
                self.by_kind.remove(kind);
            }
            Err(error) => {
                // Failures against another source or upstream do not count
                // (simulator seed 105116: a rebuild that failed five times
                // against a cut-off primary waited 34 s after its first
                // failure against the new one, tried while it was starting).
                let peer = peer_of(action);
                let count = self.by_kind.get(kind).filter(|f| f.peer == peer).map_or(0, |f| f.count) + 1;
                let wait = delay_ms(count, jitter);
                let error = one_line(error);
                let failures =
                    Failures { error, count, peer, next_at: now.plus_ms(wait), next_unix_ms: now_unix_ms + wait };
                self.by_kind.insert(kind, failures);
            }
        }
    }

    /// Whether `action` may run now. An operator's rebuild or restart
    /// always may, and forgets every failure: whatever follows it is tried
    /// at once too. Other kinds wait for their next try, unless they now
    /// depend on another member than the one they failed against: a rebuild
    /// that failed while its source was cut off says nothing about a new
    /// primary (found by the simulator, seed 54: a member waited out a
    /// 33 s back-off earned against the old primary after the faults had
    /// healed and a new one was streaming).
    pub fn admit(&mut self, action: &Action, now: BootTime) -> bool {
        if matches!(action, Action::Restart { .. } | Action::Reinit { .. }) {
            self.by_kind.clear();
        }
        !backs_off(action)
            || self.by_kind.get(action.kind()).is_none_or(|f| now >= f.next_at || f.peer != peer_of(action))
    }

    /// The reconciler's decision this pass: in a healthy state (a
    /// streaming replica, the holder's primary) nothing is failing any
    /// more, whatever route led there.
    pub fn decided(&mut self, action: &Action, reason: &crate::reconcile::Reason) {
        use crate::reconcile::Reason;
        if *action == Action::Idle && matches!(reason, Reason::Streaming | Reason::PrimaryWithLease) {
            self.by_kind.clear();
        }
    }

    /// The failures of `action`'s kind, if it is failing.
    pub fn failing(&self, action: &Action) -> Option<FailingAction> {
        let kind = action.kind();
        self.by_kind.get(kind).map(|f| view(kind, f))
    }

    /// The kind that failed most often in a row (the latest next try
    /// among equals), for the status.
    pub fn worst(&self) -> Option<FailingAction> {
        let (kind, f) = self.by_kind.iter().max_by_key(|(_, f)| (f.count, f.next_unix_ms))?;
        Some(view(kind, f))
    }
}

fn view(kind: &str, f: &Failures) -> FailingAction {
    FailingAction { action: kind.to_string(), error: f.error.clone(), count: f.count, next_try_unix_ms: f.next_unix_ms }
}

/// The member an action reads from or follows, where it has one.
fn peer_of(action: &Action) -> Option<NodeId> {
    match action {
        Action::Rewind { source, .. } | Action::Rebuild { source, .. } => Some(*source),
        Action::StartStandby { upstream, .. } => *upstream,
        Action::Follow { upstream, .. } => Some(*upstream),
        Action::Idle
        | Action::Propose(_)
        | Action::Bootstrap { .. }
        | Action::StartPrimary { .. }
        | Action::Promote { .. }
        | Action::Stop { .. }
        | Action::SetSynchronous { .. }
        | Action::SetReadOnly { .. }
        | Action::SetSlots { .. }
        | Action::Restart { .. }
        | Action::Reinit { .. }
        | Action::DmStep { .. } => None,
    }
}

fn backs_off(action: &Action) -> bool {
    !matches!(action, Action::Stop { immediate: true } | Action::Propose(_) | Action::Idle)
}

/// An error on one line, at most 300 characters.
fn one_line(error: &str) -> String {
    let line = error.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= 300 { line } else { line.chars().take(299).chain(['…']).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, NodeId};

    #[test]
    fn waits_double_from_a_second_to_five_minutes_within_a_fifth() {
        let mut last = 0;
        for n in 1..=30 {
            let base = (FIRST_MS << (n - 1).min(20)).min(CAP_MS);
            for jitter in [0, 1, 7, u64::MAX / 3, u64::MAX] {
                let d = delay_ms(n, jitter);
                assert!(d >= base - base / 5 && d <= base + base / 5, "n={n} jitter={jitter}: {d}");
            }
            assert!(delay_ms(n, 0) >= last, "never shorter after more failures");
            last = delay_ms(n, 0);
        }
        assert_eq!(delay_ms(1, 0), 800);
        assert_eq!(delay_ms(40, u64::MAX), CAP_MS - CAP_MS / 5 + u64::MAX % (2 * (CAP_MS / 5) + 1));
    }

    #[test]
    fn failures_count_per_kind_and_success_or_an_operator_resets_them() {
        let rebuild = Action::Rebuild { source: NodeId(1), epoch: Epoch(1) };
        let start = Action::StartStandby { upstream: Some(NodeId(1)), epoch: Epoch(1) };
        let mut b = Backoff::default();
        let t = BootTime;
        b.record(&rebuild, Err("pg_basebackup failed:\n password authentication failed"), t(0), 5000, 0);
        assert!(!b.admit(&rebuild, t(500)));
        assert!(b.admit(&start, t(500)), "another kind is not held");
        assert!(b.admit(&rebuild, t(800)));
        b.record(&rebuild, Err("again"), t(800), 5800, 0);
        let worst = b.worst().unwrap();
        assert_eq!((worst.action.as_str(), worst.error.as_str(), worst.count), ("rebuild", "again", 2));
        assert_eq!(worst.next_try_unix_ms, 5800 + 1600);
        assert!(!b.admit(&rebuild, t(2000)));
        let from_another = Action::Rebuild { source: NodeId(3), epoch: Epoch(2) };
        assert!(b.admit(&from_another, t(2000)), "failures against one source do not hold another");
        assert!(!b.admit(&Action::Rebuild { source: NodeId(1), epoch: Epoch(2) }, t(2000)), "same source, held");
        b.record(&from_another, Err("refused"), t(2000), 7000, 0);
        assert_eq!(b.worst().unwrap().count, 1, "counting starts again against another source");
        assert!(b.admit(&from_another, t(2800)), "after the first wait, not the third");
        // Fencing never waits, whatever failed before.
        let fence = Action::Stop { immediate: true };
        b.record(&fence, Err("pg_ctl stop failed"), t(2000), 7000, 0);
        assert!(b.admit(&fence, t(2001)));
        let propose = Action::Propose(crate::Command::Register {
            node: NodeId(2),
            db: crate::DbMember { address: "h:1".into(), nofailover: false, priority: 1 },
        });
        b.record(&propose, Err("no quorum"), t(2000), 7000, 0);
        assert!(b.admit(&propose, t(2001)));
        assert_eq!(b.worst().unwrap().action, "rebuild");
        b.record(&rebuild, Ok(()), t(3000), 8000, 0);
        assert!(b.admit(&rebuild, t(3001)));
        b.record(&start, Err("x"), t(3000), 8000, 0);
        assert_eq!(b.failing(&start).map(|f| f.count), Some(1));
        assert!(!b.admit(&start, t(3001)));
        // An operator's rebuild runs at once and forgets every failure.
        let operator = Action::Reinit { id: 7, source: NodeId(1), epoch: Epoch(1), full: true };
        b.record(&operator, Err("pg_basebackup failed"), t(3000), 8000, 0);
        assert!(b.admit(&operator, t(3001)));
        assert_eq!(b.worst(), None);
        assert!(b.admit(&start, t(3001)));
        // A member that reached a healthy state another way fails nothing.
        b.record(&start, Err("x"), t(3000), 8000, 0);
        b.decided(&Action::Idle, &crate::reconcile::Reason::ConnectingToPrimary);
        assert!(b.worst().is_some(), "waiting is not healthy");
        b.decided(&Action::Idle, &crate::reconcile::Reason::Streaming);
        assert_eq!(b.worst(), None);
        assert_eq!(one_line(&"é".repeat(400)).chars().count(), 300);
    }
}
