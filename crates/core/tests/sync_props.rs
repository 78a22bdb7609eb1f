//! Synchronous replication against a model of the WAL: random commits,
//! standbys flushing at random, targets changing at random (mode, count,
//! health), the setting and the state moved only by `sync::next_step`.
//! After every event: each acknowledged commit is on at least the state's
//! quorum of the state's members, and any failover `sync::eligible` allows
//! picks (the most advanced member that answered) holds every
//! acknowledged commit.

use haraft_core::NodeId;
use haraft_core::sync::{SyncMode, SyncSet, SyncStep, eligible, next_step, target};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const MEMBERS: u64 = 5;

#[derive(Clone, Debug)]
enum Event {
    /// The primary writes a commit (acknowledged once the setting is met).
    Commit,
    /// A standby flushes up to the head, or part of the way.
    Flush { member: u64, all: bool },
    /// A standby becomes (un)healthy.
    Health { member: u64, healthy: bool },
    /// The operator changes the mode or count.
    Policy { mode: u8, count: u32, strict: bool },
    /// The primary takes one synchronous step.
    Step,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Commit),
        3 => (1..=MEMBERS, any::<bool>()).prop_map(|(member, all)| Event::Flush { member, all }),
        1 => (1..=MEMBERS, any::<bool>()).prop_map(|(member, healthy)| Event::Health { member, healthy }),
        1 => (0u8..3, 1u32..4, any::<bool>()).prop_map(|(mode, count, strict)| Event::Policy { mode, count, strict }),
        4 => Just(Event::Step),
    ]
}

struct World {
    head: u64,
    flushed: BTreeMap<NodeId, u64>,
    healthy: BTreeSet<NodeId>,
    acked: Vec<u64>,
    pending: Vec<u64>,
    setting: SyncSet,
    state: SyncSet,
    mode: SyncMode,
    count: u32,
    strict: bool,
}

impl World {
    fn holders(&self, lsn: u64, set: &SyncSet) -> usize {
        set.members.iter().filter(|m| self.flushed.get(m).copied().unwrap_or(0) >= lsn).count()
    }

    /// PostgreSQL releases a waiting commit once the current setting is met.
    fn release(&mut self) {
        let setting = self.setting.clone();
        let (done, waiting): (Vec<u64>, Vec<u64>) =
            self.pending.iter().partition(|lsn| self.holders(**lsn, &setting) >= setting.quorum as usize);
        self.acked.extend(done);
        self.pending = waiting;
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for lsn in &self.acked {
            prop_assert!(
                self.holders(*lsn, &self.state) >= self.state.quorum as usize,
                "commit {lsn} is on fewer than the state's quorum: state {:?}, setting {:?}, flushed {:?}",
                self.state,
                self.setting,
                self.flushed
            );
        }
        // Every subset of the state's members that may answer.
        let members: Vec<NodeId> = self.state.members.iter().copied().collect();
        for mask in 0u32..(1 << members.len()) {
            let answered: BTreeSet<NodeId> =
                members.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, m)| *m).collect();
            if let Ok(candidates) = eligible(&self.state, &|m| answered.contains(&m)) {
                let Some(best) = candidates.iter().map(|m| self.flushed[m]).max() else { continue };
                for lsn in &self.acked {
                    prop_assert!(best >= *lsn, "failover with {answered:?} answering would lose commit {lsn}");
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_acknowledged_commit_is_lost_by_any_allowed_failover(events in prop::collection::vec(event(), 1..120)) {
        let ids: Vec<NodeId> = (1..=MEMBERS).map(NodeId).collect();
        let mut w = World {
            head: 0,
            flushed: ids.iter().map(|id| (*id, 0)).collect(),
            healthy: ids.iter().copied().collect(),
            acked: Vec::new(),
            pending: Vec::new(),
            setting: SyncSet::default(),
            state: SyncSet::default(),
            mode: SyncMode::On,
            count: 1,
            strict: false,
        };
        for e in events {
            match e {
                Event::Commit => {
                    w.head += 1;
                    w.pending.push(w.head);
                }
                Event::Flush { member, all } => {
                    let f = w.flushed.get_mut(&NodeId(member)).unwrap();
                    *f = if all { w.head } else { (*f + 1).min(w.head) };
                }
                Event::Health { member, healthy } => {
                    if healthy { w.healthy.insert(NodeId(member)); } else { w.healthy.remove(&NodeId(member)); }
                }
                Event::Policy { mode, count, strict } => {
                    w.mode = [SyncMode::Off, SyncMode::On, SyncMode::Quorum][mode as usize];
                    w.count = count;
                    w.strict = strict;
                }
                Event::Step => {
                    let healthy: Vec<NodeId> = w.healthy.iter().copied().collect();
                    let goal = target(w.mode, w.count, w.strict, &w.state.members, &healthy, None);
                    let head = w.head;
                    let flushed = w.flushed.clone();
                    let caught_up = |m: NodeId| flushed.get(&m).is_some_and(|f| *f == head);
                    match next_step(&w.setting, &w.state, &goal, &caught_up) {
                        Some(SyncStep::Setting(s)) => w.setting = s,
                        Some(SyncStep::State(s)) => w.state = s,
                        Some(SyncStep::Wait) | None => {}
                    }
                }
            }
            w.release();
            w.check()?;
        }
    }
}
