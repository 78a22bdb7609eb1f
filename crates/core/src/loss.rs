//! What a rejoin threw away: the WAL a rewind discarded, how exactly that
//! is known, how many transactions committed in it, and which of those
//! discards operators have not acknowledged yet. Writes acknowledged to
//! clients in that WAL are lost; the history and the status say so.

use crate::ids::{Lsn, TimelineId};
use crate::state::{HistoryEntry, HistoryEvent, NodeEvent};
use crate::words::bytes;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One rewind's account of what it discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discard {
    /// Where the member's WAL left the new primary's history (`None`: no
    /// divergence; pg_rewind had nothing to do).
    pub diverged_at: Option<Lsn>,
    /// The member's timeline that diverged.
    pub timeline: Option<TimelineId>,
    /// Where the member's own WAL ended before the rewind; `None` when
    /// neither the data directory nor an observation told.
    pub discarded_to: Option<Lsn>,
    /// `discarded_to` is where the valid WAL on disk ends (read from the
    /// data directory), not only the last observed write position: with
    /// `false` at least that much was discarded, perhaps more.
    pub end_known: bool,
    /// Transactions that committed in the discarded range (their commit
    /// records counted before the rewind); `None` when not counted.
    pub commits: Option<u64>,
}

impl Discard {
    /// What a `NodeEvent::Rewound` entry (written before the account) says:
    /// its end was the last known position, nothing was counted.
    pub fn before_account(
        diverged_at: Option<Lsn>,
        timeline: Option<TimelineId>,
        discarded_to: Option<Lsn>,
    ) -> Discard {
        Discard { diverged_at, timeline, discarded_to, end_known: false, commits: None }
    }

    /// Bytes of WAL discarded, as far as known.
    pub fn discarded_bytes(&self) -> Option<u64> {
        match (self.diverged_at, self.discarded_to) {
            (Some(from), Some(to)) => Some(from.bytes_until(to)),
            _ => None,
        }
    }

    /// Whether anything acknowledged may have been lost: WAL was discarded,
    /// or a divergence whose end is unknown.
    pub fn may_have_lost(&self) -> bool {
        match (self.diverged_at, self.discarded_bytes()) {
            (None, _) => false,
            (Some(_), Some(b)) => b > 0 || !self.end_known || self.commits.is_some_and(|c| c > 0),
            (Some(_), None) => true,
        }
    }

    /// In words, after "NODE rewound: ".
    pub fn words(&self) -> String {
        let Some(from) = self.diverged_at else { return "no rewind was needed".into() };
        let commits = match self.commits {
            Some(1) => ", 1 committed transaction".to_string(),
            Some(n) => format!(", {n} committed transactions"),
            None => String::new(),
        };
        match (self.discarded_to, self.end_known) {
            (Some(to), true) if to <= from => format!("diverged at {from}; nothing written past it was discarded"),
            (Some(to), true) => {
                format!("diverged at {from}; discarded {from}–{to} ({} of WAL{commits})", bytes(from.bytes_until(to)))
            }
            (Some(to), false) => format!(
                "diverged at {from}; discarded at least {from}–{to} (at least {} of WAL{commits}; its end is the last position known)",
                bytes(from.bytes_until(to))
            ),
            (None, _) => {
                format!("diverged at {from}; discarded everything it wrote past it (how much could not be read)")
            }
        }
    }
}

/// The discard an entry records, old or new form.
pub fn discard_of(event: &HistoryEvent) -> Option<Discard> {
    match event {
        HistoryEvent::Node { event: NodeEvent::RewoundAccounted { discard }, .. } => Some(*discard),
        HistoryEvent::Node { event: NodeEvent::RebuiltAccounted { discard, .. }, .. } => Some(*discard),
        HistoryEvent::Node { event: NodeEvent::Rewound { diverged_at, timeline, discarded_to }, .. } => {
            Some(Discard::before_account(*diverged_at, *timeline, *discarded_to))
        }
        _ => None,
    }
}

/// What the member did that discarded the WAL: "rewound" or "rebuilt".
pub fn discarded_by(event: &HistoryEvent) -> &'static str {
    match event {
        HistoryEvent::Node { event: NodeEvent::RebuiltAccounted { .. }, .. } => "rebuilt",
        _ => "rewound",
    }
}

/// The rewinds (and rebuilds) since the last acknowledgement that may have lost
/// acknowledged writes, oldest first.
pub fn unacknowledged(history: &VecDeque<HistoryEntry>) -> Vec<&HistoryEntry> {
    let start =
        history.iter().rposition(|e| matches!(e.event, HistoryEvent::LossAcknowledged { .. })).map_or(0, |i| i + 1);
    history.range(start..).filter(|e| discard_of(&e.event).is_some_and(|d| d.may_have_lost())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn discard(from: u64, to: Option<u64>, end_known: bool, commits: Option<u64>) -> Discard {
        Discard {
            diverged_at: Some(Lsn(from)),
            timeline: Some(TimelineId(2)),
            discarded_to: to.map(Lsn),
            end_known,
            commits,
        }
    }

    #[test]
    fn words_say_how_much_and_how_exactly_never_nothing_when_unknown() {
        assert_eq!(
            discard(0x3000100, Some(0x3012A40), true, Some(12)).words(),
            "diverged at 0/3000100; discarded 0/3000100–0/3012A40 (74.3 KiB of WAL, 12 committed transactions)"
        );
        assert_eq!(
            discard(0x100, Some(0x180), false, None).words(),
            "diverged at 0/100; discarded at least 0/100–0/180 (at least 128 B of WAL; its end is the last position known)"
        );
        assert_eq!(
            discard(0x100, Some(0x100), true, Some(0)).words(),
            "diverged at 0/100; nothing written past it was discarded"
        );
        assert!(discard(0x100, None, false, None).words().contains("how much could not be read"));
        let none = Discard { diverged_at: None, ..discard(0, None, true, None) };
        assert_eq!(none.words(), "no rewind was needed");
        assert!(!none.may_have_lost());
        assert!(!discard(0x100, Some(0x100), true, Some(0)).may_have_lost());
        assert!(discard(0x100, Some(0x100), false, None).may_have_lost(), "an unknown end may hide writes");
        assert!(discard(0x100, Some(0x101), true, None).may_have_lost());
    }

    #[test]
    fn an_acknowledgement_covers_every_earlier_discard_and_no_later_one() {
        let rewound = |i: u64, d: Discard| HistoryEntry {
            log_index: i,
            at_unix_ms: 0,
            event: HistoryEvent::Node { node: NodeId(1), event: NodeEvent::RewoundAccounted { discard: d } },
        };
        let old = HistoryEntry {
            log_index: 2,
            at_unix_ms: 0,
            event: HistoryEvent::Node {
                node: NodeId(2),
                event: NodeEvent::Rewound { diverged_at: Some(Lsn(1)), timeline: None, discarded_to: Some(Lsn(9)) },
            },
        };
        let ack =
            HistoryEntry { log_index: 5, at_unix_ms: 0, event: HistoryEvent::LossAcknowledged { by: "op".into() } };
        let mut h: VecDeque<HistoryEntry> = VecDeque::new();
        h.push_back(rewound(1, discard(0x100, Some(0x200), true, Some(3))));
        h.push_back(old);
        h.push_back(rewound(3, discard(0x100, Some(0x100), true, Some(0))));
        assert_eq!(unacknowledged(&h).iter().map(|e| e.log_index).collect::<Vec<_>>(), vec![1, 2]);
        h.push_back(ack);
        assert!(unacknowledged(&h).is_empty());
        h.push_back(rewound(6, discard(0x300, Some(0x380), false, None)));
        assert_eq!(unacknowledged(&h).iter().map(|e| e.log_index).collect::<Vec<_>>(), vec![6]);
    }
}
