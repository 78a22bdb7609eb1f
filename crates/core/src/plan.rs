//! The cluster planner: runs on the Raft leader, decides which command (if
//! any) the cluster needs next. Being leader gives it no authority: what it
//! proposes only counts once committed, and `apply` rejects it if stale.

use crate::ids::{BootTime, NodeId};
use crate::lease::ExpiryTimer;
use crate::state::{ClusterState, Command, Lease, Operation};
use crate::timing::Timing;
use std::collections::BTreeSet;
use std::fmt;

pub struct PlanInput<'a> {
    pub state: &'a ClusterState,
    /// The cluster name from this node's configuration, for `Initialize`.
    pub cluster: &'a str,
    /// The settings from this node's configuration, for `Initialize`.
    pub initial_timing: Timing,
    /// The leader's expiry timer, already fed the applied lease.
    pub timer: &'a ExpiryTimer,
    pub now: BootTime,
    /// Members that answered a fresh probe; `None` when not probed yet.
    pub live: Option<&'a BTreeSet<NodeId>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Propose(Command),
    /// Ask every member whether it is alive, then plan again with `live`.
    ProbeMembers,
    Wait,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    ClusterUninitialized,
    NoMembers,
    LeaseValid {
        holder: NodeId,
        remaining_ms: u64,
    },
    /// The timer watches an older lease than the applied one; the shell feeds
    /// it before the next plan.
    TimerBehindState,
    LeaseExpired {
        lease: Lease,
    },
    NoPrimaryNeedsProbe,
    NoPrimaryAssigned,
    LeaseLapsed {
        previous: NodeId,
    },
    NoLiveMember,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub step: Step,
    pub reason: Reason,
}

pub fn plan(input: &PlanInput) -> Plan {
    let state = input.state;
    if state.config.is_none() {
        let command = Command::Initialize { cluster: input.cluster.to_string(), config: input.initial_timing };
        return Plan { step: Step::Propose(command), reason: Reason::ClusterUninitialized };
    }
    if state.members.is_empty() {
        return Plan { step: Step::Wait, reason: Reason::NoMembers };
    }
    if let Some(lease) = state.lease {
        if input.timer.watching() != Some(lease) {
            return Plan { step: Step::Wait, reason: Reason::TimerBehindState };
        }
        return match input.timer.expired(input.now) {
            Some(expired) => Plan {
                step: Step::Propose(Command::Lapse {
                    holder: expired.holder,
                    epoch: expired.epoch,
                    renewal: expired.renewal,
                }),
                reason: Reason::LeaseExpired { lease: expired },
            },
            None => Plan {
                step: Step::Wait,
                reason: Reason::LeaseValid { holder: lease.holder, remaining_ms: input.timer.remaining_ms(input.now) },
            },
        };
    }
    let Some(live) = input.live else {
        return Plan { step: Step::ProbeMembers, reason: Reason::NoPrimaryNeedsProbe };
    };
    let previous = state.operation.as_ref().map(|op| match op {
        Operation::Failover { from, .. } => *from,
    });
    let candidates: Vec<NodeId> = state.members.keys().copied().filter(|id| live.contains(id)).collect();
    // Prefer the lowest id that is not the member whose lease just lapsed; it
    // may take the lease again only when no other member is alive.
    // (The PostgreSQL-aware choice replaces this with the PostgreSQL issue.)
    let chosen = candidates.iter().copied().find(|id| Some(*id) != previous).or_else(|| candidates.first().copied());
    match chosen {
        None => Plan { step: Step::Wait, reason: Reason::NoLiveMember },
        Some(holder) => Plan {
            step: Step::Propose(Command::Grant { holder, epoch: state.epoch.next() }),
            reason: match previous {
                Some(previous) => Reason::LeaseLapsed { previous },
                None => Reason::NoPrimaryAssigned,
            },
        },
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ClusterUninitialized => write!(f, "cluster-uninitialized"),
            Reason::NoMembers => write!(f, "no-members"),
            Reason::LeaseValid { holder, remaining_ms } => {
                write!(f, "lease-valid holder={holder} expires_in_ms={remaining_ms}")
            }
            Reason::TimerBehindState => write!(f, "timer-behind-state"),
            Reason::LeaseExpired { lease } => {
                write!(f, "lease-expired holder={} epoch={} renewal={}", lease.holder, lease.epoch, lease.renewal)
            }
            Reason::NoPrimaryNeedsProbe => write!(f, "no-primary-probing-members"),
            Reason::NoPrimaryAssigned => write!(f, "no-primary-assigned"),
            Reason::LeaseLapsed { previous } => write!(f, "lease-lapsed previous={previous}"),
            Reason::NoLiveMember => write!(f, "no-live-member"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, RenewalSeq};
    use crate::state::Member;

    fn state(members: &[u64]) -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(1, &Command::Initialize { cluster: "c".into(), config: Timing::default() });
        let members = members
            .iter()
            .map(|&i| Member { id: NodeId(i), name: format!("node{i}"), address: format!("127.0.0.1:{i}") })
            .collect();
        s.apply(2, &Command::SetMembers { members });
        s
    }

    fn live(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().map(|&i| NodeId(i)).collect()
    }

    /// One case: state, timer, now, live set → expected step.
    fn check(state: &ClusterState, timer: &ExpiryTimer, now: u64, live: Option<&BTreeSet<NodeId>>, expected: Step) {
        let input =
            PlanInput { state, cluster: "c", initial_timing: Timing::default(), timer, now: BootTime(now), live };
        assert_eq!(plan(&input).step, expected);
    }

    #[test]
    fn uninitialized_cluster_is_initialized_first() {
        let s = ClusterState::default();
        let t = ExpiryTimer::start(None, BootTime(0), 3000);
        check(&s, &t, 0, None, Step::Propose(Command::Initialize { cluster: "c".into(), config: Timing::default() }));
    }

    #[test]
    fn first_grant_goes_to_lowest_live_id_at_epoch_one() {
        let s = state(&[1, 2, 3]);
        let t = ExpiryTimer::start(None, BootTime(0), 3000);
        check(&s, &t, 0, None, Step::ProbeMembers);
        check(&s, &t, 0, Some(&live(&[1, 2, 3])), Step::Propose(Command::Grant { holder: NodeId(1), epoch: Epoch(1) }));
        check(&s, &t, 0, Some(&live(&[2, 3])), Step::Propose(Command::Grant { holder: NodeId(2), epoch: Epoch(1) }));
        check(&s, &t, 0, Some(&live(&[])), Step::Wait);
    }

    #[test]
    fn held_lease_lapses_only_when_the_timer_fired() {
        let mut s = state(&[1, 2, 3]);
        s.apply(3, &Command::Grant { holder: NodeId(1), epoch: Epoch(1) });
        let l = s.lease.unwrap();
        let t = ExpiryTimer::start(Some(l), BootTime(100), 3000);
        check(&s, &t, 3099, Some(&live(&[2, 3])), Step::Wait);
        check(
            &s,
            &t,
            3100,
            None,
            Step::Propose(Command::Lapse { holder: NodeId(1), epoch: Epoch(1), renewal: RenewalSeq(0) }),
        );
        // A timer that watches an older lease never lapses the newer one.
        let old = ExpiryTimer::start(Some(Lease { renewal: RenewalSeq(7), ..l }), BootTime(0), 1);
        check(&s, &old, 10_000, None, Step::Wait);
    }

    #[test]
    fn after_a_lapse_another_member_gets_the_next_epoch() {
        let mut s = state(&[1, 2, 3]);
        s.apply(3, &Command::Grant { holder: NodeId(1), epoch: Epoch(1) });
        s.apply(4, &Command::Lapse { holder: NodeId(1), epoch: Epoch(1), renewal: RenewalSeq(0) });
        let t = ExpiryTimer::start(None, BootTime(0), 3000);
        check(&s, &t, 0, Some(&live(&[1, 2, 3])), Step::Propose(Command::Grant { holder: NodeId(2), epoch: Epoch(2) }));
        check(&s, &t, 0, Some(&live(&[1, 3])), Step::Propose(Command::Grant { holder: NodeId(3), epoch: Epoch(2) }));
        // Only the old holder is alive: it may take the lease back, at a new epoch.
        check(&s, &t, 0, Some(&live(&[1])), Step::Propose(Command::Grant { holder: NodeId(1), epoch: Epoch(2) }));
    }
}
