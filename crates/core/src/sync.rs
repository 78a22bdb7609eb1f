//! Synchronous replication, pure: which standbys commits wait for, and in
//! which order the setting (`synchronous_standby_names`) and the replicated
//! state may change so that a failover never loses an acknowledged commit.
//!
//! A **sync set** is members `S` and a quorum `q`: every acknowledged commit
//! is on at least `q` members of `S`. `FIRST n (all n names)` is `q = |S|`
//! (mode `on`), `ANY k (names)` is `q = k` (mode `quorum`); both are the
//! same rule, so one proof covers both and every change between them.
//!
//! - **Failover** (`eligible`): a candidate from `S` is chosen only when the
//!   members of `S` that answered are at least `|S| - q + 1` (they then
//!   intersect every `q` members holding a commit), and it is the one with
//!   the highest received LSN among them (WAL is one history: whoever is
//!   furthest holds what any of them holds).
//! - **The state is safe** when for every acknowledged commit `c`,
//!   `|holders(c) ∩ S_state| >= q_state`. Commits acknowledged under the
//!   current setting are on `q_set` members of `S_set`, of which at least
//!   `q_set - |S_set \ S_state|` are in the state's set: hence
//!   `q_state <= q_set - |S_set \ S_state|` (`covers`). Commits acknowledged
//!   earlier are on the members they were on, and on every member that has
//!   caught up since (streaming and confirming): a state change must keep
//!   `q' <= max(q_state - |S_state \ S'| + |caught-up added|, |caught-up S'|)`.
//! - **Steps** (`next_step`): towards the target, the state first when that
//!   is safe, else the setting, else the setting waits for the union of
//!   everything (always safe) until the state can move. Growing `on` goes
//!   setting first, growing `quorum` state first, shrinking the other way
//!   round: the rule decides, not the mode.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// `failover.synchronous_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SyncMode {
    /// Asynchronous replication.
    #[default]
    Off,
    /// `synchronous_node_count` standbys, every one confirms every commit
    /// (`FIRST k (...)` naming exactly those k).
    On,
    /// Every healthy standby is in the set; any `synchronous_node_count`
    /// of them confirm each commit (`ANY k (...)`).
    Quorum,
}

impl SyncMode {
    pub fn is_on(self) -> bool {
        self != SyncMode::Off
    }

    pub fn word(self) -> &'static str {
        match self {
            SyncMode::Off => "off",
            SyncMode::On => "on",
            SyncMode::Quorum => "quorum",
        }
    }

    /// `off`/`false`, `on`/`true`, `quorum`.
    pub fn parse(text: &str) -> Option<SyncMode> {
        match text {
            "off" | "false" => Some(SyncMode::Off),
            "on" | "true" => Some(SyncMode::On),
            "quorum" => Some(SyncMode::Quorum),
            _ => None,
        }
    }
}

/// Members and how many of them hold (or must confirm) every commit.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncSet {
    pub members: BTreeSet<NodeId>,
    pub quorum: u32,
}

impl SyncSet {
    pub fn new(members: BTreeSet<NodeId>, quorum: u32) -> SyncSet {
        SyncSet { members, quorum }
    }

    /// Every member must confirm (`FIRST n` naming all n).
    pub fn all(members: BTreeSet<NodeId>) -> SyncSet {
        let quorum = members.len() as u32;
        SyncSet { members, quorum }
    }

    /// How many of its members must answer before one may be promoted:
    /// `|S| - q + 1`; `None` when no number of answers is enough (a quorum
    /// of 0 over members guarantees nothing).
    pub fn answers_needed(&self) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return Some(0);
        }
        (self.quorum >= 1 && self.quorum as usize <= n).then(|| n - self.quorum as usize + 1)
    }
}

/// Commits acknowledged under `setting` are on at least `state.quorum`
/// members of `state.members`.
pub fn covers(setting: &SyncSet, state: &SyncSet) -> bool {
    if state.quorum == 0 {
        // Guarantees nothing, so nothing can break it.
        return true;
    }
    let outside = setting.members.difference(&state.members).count() as i64;
    i64::from(state.quorum) <= i64::from(setting.quorum) - outside
}

/// Moving the state from `state` to `next` under `setting` keeps every
/// acknowledged commit (see the module doc); `caught_up` says which
/// members hold everything acknowledged so far.
pub fn state_change_safe(
    setting: &SyncSet,
    state: &SyncSet,
    next: &SyncSet,
    caught_up: &dyn Fn(NodeId) -> bool,
) -> bool {
    if !covers(setting, next) {
        return false;
    }
    let left = state.members.difference(&next.members).count() as i64;
    let added_caught_up = next.members.difference(&state.members).filter(|m| caught_up(**m)).count() as i64;
    let all_caught_up = next.members.iter().filter(|m| caught_up(**m)).count() as i64;
    let bound = (i64::from(state.quorum) - left + added_caught_up).max(all_caught_up);
    i64::from(next.quorum) <= bound
}

/// The next change towards `target`, one at a time, each safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// Write this setting (and wait to observe it in effect).
    Setting(SyncSet),
    /// Commit this set to the replicated state.
    State(SyncSet),
    /// Nothing can move safely yet: members must catch up.
    Wait,
}

/// `None` when setting and state both are the target.
pub fn next_step(
    setting: &SyncSet,
    state: &SyncSet,
    target: &SyncSet,
    caught_up: &dyn Fn(NodeId) -> bool,
) -> Option<SyncStep> {
    // A setting that does not cover the state (written by an earlier agent,
    // or changed by hand) is repaired first: every member of both confirms.
    if !covers(setting, state) {
        return Some(SyncStep::Setting(SyncSet::all(&setting.members | &state.members)));
    }
    // The state moves first when the setting already covers the target
    // (it may still wait for members to catch up).
    let state_may_move = state != target && covers(setting, target);
    if state_may_move && state_change_safe(setting, state, target, caught_up) {
        return Some(SyncStep::State(target.clone()));
    }
    if setting != target && covers(target, state) {
        return Some(SyncStep::Setting(target.clone()));
    }
    if state == target {
        return None;
    }
    if state_may_move {
        return Some(SyncStep::Wait);
    }
    // Neither may move first: the state lets go of its set (always safe;
    // until it names the target, a failover may promote only the previous
    // holder), then the setting moves, then the state follows. Commits stay
    // as protected as the setting says throughout.
    Some(SyncStep::State(SyncSet::default()))
}

/// What the set should be. `healthy`: standbys that stream and may be
/// promoted, in order of preference; `current`: the state's set (kept
/// where healthy, so the set does not move for nothing; kept even where
/// not healthy in strict mode, so that commits wait rather than run with
/// fewer than `count` confirmations); `prefer`: a switchover target that
/// must be in an `on` set.
pub fn target(
    mode: SyncMode,
    count: u32,
    strict: bool,
    current: &BTreeSet<NodeId>,
    healthy: &[NodeId],
    prefer: Option<NodeId>,
) -> SyncSet {
    let count = count.max(1) as usize;
    match mode {
        SyncMode::Off => SyncSet::default(),
        SyncMode::On => {
            let mut chosen: Vec<NodeId> = Vec::new();
            if let Some(p) = prefer.filter(|p| healthy.contains(p)) {
                chosen.push(p);
            }
            let kept = healthy.iter().filter(|h| current.contains(h));
            for id in kept.chain(healthy.iter()) {
                if chosen.len() < count && !chosen.contains(id) {
                    chosen.push(*id);
                }
            }
            if strict {
                for id in current {
                    if chosen.len() < count && !chosen.contains(id) {
                        chosen.push(*id);
                    }
                }
            }
            SyncSet::all(chosen.into_iter().collect())
        }
        SyncMode::Quorum => {
            let mut members: BTreeSet<NodeId> = healthy.iter().copied().collect();
            if strict {
                for id in current {
                    if members.len() < count {
                        members.insert(*id);
                    }
                }
            }
            let quorum = count.min(members.len()) as u32;
            SyncSet::new(members, quorum)
        }
    }
}

/// Why no member of the set may be promoted, or `Ok` with the members
/// that answered (the candidates). `answered`: members that answered with
/// an observation of their database.
pub fn eligible(set: &SyncSet, answered: &dyn Fn(NodeId) -> bool) -> Result<BTreeSet<NodeId>, String> {
    let heard: BTreeSet<NodeId> = set.members.iter().copied().filter(|m| answered(*m)).collect();
    match set.answers_needed() {
        Some(need) if heard.len() >= need => Ok(heard),
        Some(need) => Err(format!(
            "{} of the {} synchronous standbys answered, {need} must (any {} of them hold each commit)",
            heard.len(),
            set.members.len(),
            set.quorum
        )),
        None => Err(format!(
            "the synchronous set ({} members) records a quorum of {}: no answer is enough",
            set.members.len(),
            set.quorum
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64], quorum: u32) -> SyncSet {
        SyncSet::new(ids.iter().map(|i| NodeId(*i)).collect(), quorum)
    }

    fn all_caught_up(_: NodeId) -> bool {
        true
    }

    #[test]
    fn growing_on_goes_setting_first_and_quorum_state_first() {
        // on: {2} -> {2,3}
        let (setting, state, target) = (set(&[2], 1), set(&[2], 1), set(&[2, 3], 2));
        assert_eq!(next_step(&setting, &state, &target, &all_caught_up), Some(SyncStep::Setting(target.clone())));
        assert_eq!(next_step(&target, &state, &target, &all_caught_up), Some(SyncStep::State(target.clone())));
        assert_eq!(next_step(&target, &target, &target, &all_caught_up), None);
        // quorum 1 of {2,3} -> 1 of {2,3,4}
        let (setting, state, target) = (set(&[2, 3], 1), set(&[2, 3], 1), set(&[2, 3, 4], 1));
        assert_eq!(next_step(&setting, &state, &target, &all_caught_up), Some(SyncStep::State(target.clone())));
        assert_eq!(next_step(&setting, &target, &target, &all_caught_up), Some(SyncStep::Setting(target.clone())));
    }

    #[test]
    fn shrinking_quorum_goes_setting_first_and_waits_for_catch_up() {
        // 2 of {2,3,4}; 4 is gone.
        let (setting, state, target) = (set(&[2, 3, 4], 2), set(&[2, 3, 4], 2), set(&[2, 3], 2));
        assert_eq!(next_step(&setting, &state, &target, &all_caught_up), Some(SyncStep::Setting(target.clone())));
        // A commit acknowledged by {4, 2} before: 3 must have caught up
        // before the state may name {2,3} with quorum 2.
        let only_2 = |m: NodeId| m == NodeId(2);
        assert_eq!(next_step(&target, &state, &target, &only_2), Some(SyncStep::Wait));
        assert_eq!(next_step(&target, &state, &target, &all_caught_up), Some(SyncStep::State(target.clone())));
    }

    #[test]
    fn quorum_to_on_and_a_replaced_standby_go_through_an_empty_state() {
        let empty = SyncSet::default();
        let (setting, state, target) = (set(&[2, 3, 4], 2), set(&[2, 3, 4], 2), set(&[2], 1));
        assert_eq!(next_step(&setting, &state, &target, &all_caught_up), Some(SyncStep::State(empty.clone())));
        assert_eq!(next_step(&setting, &empty, &target, &all_caught_up), Some(SyncStep::Setting(target.clone())));
        assert_eq!(next_step(&target, &empty, &target, &all_caught_up), Some(SyncStep::State(target.clone())));
        // on: {1} stops streaming, {3} replaces it.
        let (setting, state, target) = (set(&[1], 1), set(&[1], 1), set(&[3], 1));
        assert_eq!(next_step(&setting, &state, &target, &all_caught_up), Some(SyncStep::State(empty)));
    }

    #[test]
    fn a_new_primary_builds_its_set_from_nothing() {
        let empty = SyncSet::default();
        let target = set(&[2, 3, 4], 2);
        assert_eq!(next_step(&empty, &empty, &target, &all_caught_up), Some(SyncStep::Setting(target.clone())));
        let only_2 = |m: NodeId| m == NodeId(2);
        assert_eq!(next_step(&target, &empty, &target, &only_2), Some(SyncStep::Wait));
        assert_eq!(next_step(&target, &empty, &target, &all_caught_up), Some(SyncStep::State(target.clone())));
    }

    #[test]
    fn a_setting_that_does_not_cover_the_state_is_repaired_first() {
        let (setting, state) = (set(&[], 0), set(&[2, 3], 2));
        assert_eq!(next_step(&setting, &state, &state, &all_caught_up), Some(SyncStep::Setting(set(&[2, 3], 2))));
    }

    #[test]
    fn answers_needed_intersect_every_quorum() {
        assert_eq!(set(&[2, 3, 4, 5], 2).answers_needed(), Some(3));
        assert_eq!(set(&[2], 1).answers_needed(), Some(1));
        assert_eq!(set(&[], 0).answers_needed(), Some(0));
        assert_eq!(set(&[2, 3], 0).answers_needed(), None);
        let e = eligible(&set(&[2, 3, 4, 5], 2), &|m| m == NodeId(2) || m == NodeId(3)).unwrap_err();
        assert!(e.contains("2 of the 4 synchronous standbys answered, 3 must"), "{e}");
    }

    #[test]
    fn targets() {
        let healthy = [NodeId(3), NodeId(4), NodeId(5)];
        let current: BTreeSet<NodeId> = [NodeId(4), NodeId(9)].into();
        assert_eq!(target(SyncMode::On, 2, false, &current, &healthy, None), set(&[3, 4], 2));
        assert_eq!(target(SyncMode::On, 1, false, &current, &healthy, Some(NodeId(5))), set(&[5], 1));
        assert_eq!(target(SyncMode::On, 3, true, &current, &[NodeId(4)], None), set(&[4, 9], 2));
        assert_eq!(target(SyncMode::Quorum, 2, false, &current, &healthy, None), set(&[3, 4, 5], 2));
        assert_eq!(target(SyncMode::Quorum, 2, false, &current, &[NodeId(3)], None), set(&[3], 1));
        assert_eq!(target(SyncMode::Quorum, 2, true, &current, &[NodeId(3)], None), set(&[3, 4], 2));
        assert_eq!(target(SyncMode::Off, 2, true, &current, &healthy, None), SyncSet::default());
    }
}
