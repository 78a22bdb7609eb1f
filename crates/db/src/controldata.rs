//! Parsing `pg_controldata` output: what a stopped data directory says
//! about itself.

use haraft_core::{Lsn, TimelineId};

/// The `Database cluster state` line of pg_control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    Starting,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
}

impl ClusterState {
    /// True when the directory was stopped cleanly (no crash recovery
    /// needed before pg_rewind may use it).
    pub fn clean(self) -> bool {
        matches!(self, ClusterState::ShutDown | ClusterState::ShutDownInRecovery)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlData {
    pub system_identifier: u64,
    pub state: ClusterState,
    pub checkpoint_lsn: Lsn,
    pub timeline: TimelineId,
    /// Set on a standby that stopped mid-recovery.
    pub min_recovery_end: Option<Lsn>,
    /// The timeline of `min_recovery_end`.
    pub min_recovery_timeline: Option<TimelineId>,
}

impl ControlData {
    /// The furthest position this directory is known to hold, with its
    /// timeline as one consistent pair: the minimum recovery point of a
    /// standby that stopped mid-recovery, else the last checkpoint. (The
    /// checkpoint's timeline lags a timeline switch on a standby, so it must
    /// not be paired with a later position.)
    pub fn position(&self) -> (TimelineId, Lsn) {
        match (self.min_recovery_end, self.min_recovery_timeline) {
            (Some(lsn), Some(t)) if lsn > self.checkpoint_lsn => (t, lsn),
            _ => (self.timeline, self.checkpoint_lsn),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("pg_controldata output lacks or garbles {field:?}")]
pub struct ParseError {
    pub field: &'static str,
}

fn field<'a>(text: &'a str, name: &'static str) -> Result<&'a str, ParseError> {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')).map(str::trim))
        .ok_or(ParseError { field: name })
}

pub fn parse(text: &str) -> Result<ControlData, ParseError> {
    let err = |field| ParseError { field };
    let system_identifier =
        field(text, "Database system identifier")?.parse().map_err(|_| err("Database system identifier"))?;
    let state = match field(text, "Database cluster state")? {
        "starting up" => ClusterState::Starting,
        "shut down" => ClusterState::ShutDown,
        "shut down in recovery" => ClusterState::ShutDownInRecovery,
        "shutting down" => ClusterState::ShuttingDown,
        "in crash recovery" => ClusterState::InCrashRecovery,
        "in archive recovery" => ClusterState::InArchiveRecovery,
        "in production" => ClusterState::InProduction,
        _ => return Err(err("Database cluster state")),
    };
    let checkpoint_lsn =
        Lsn::parse(field(text, "Latest checkpoint location")?).ok_or(err("Latest checkpoint location"))?;
    let timeline = TimelineId(
        field(text, "Latest checkpoint's TimeLineID")?.parse().map_err(|_| err("Latest checkpoint's TimeLineID"))?,
    );
    let min_recovery_end = match field(text, "Minimum recovery ending location") {
        Ok(v) => Lsn::parse(v).filter(|l| l.0 != 0),
        Err(_) => None,
    };
    let min_recovery_timeline = field(text, "Min recovery ending loc's timeline")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|t| *t != 0)
        .map(TimelineId);
    Ok(ControlData { system_identifier, state, checkpoint_lsn, timeline, min_recovery_end, min_recovery_timeline })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7311234567890123456
Database cluster state:               shut down in recovery
pg_control last modified:             Sat 21 Nov 2026 07:50:01 AM UTC
Latest checkpoint location:           0/3000060
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
Minimum recovery ending location:     0/3000108
Min recovery ending loc's timeline:   2
";

    #[test]
    fn parses_the_fields_haraft_uses() {
        let c = parse(SAMPLE).unwrap();
        assert_eq!(c.system_identifier, 7311234567890123456);
        assert_eq!(c.state, ClusterState::ShutDownInRecovery);
        assert!(c.state.clean());
        assert_eq!(c.checkpoint_lsn, Lsn(0x3000060));
        assert_eq!(c.timeline, TimelineId(2));
        assert_eq!(c.min_recovery_end, Some(Lsn(0x3000108)));
        assert_eq!(c.position(), (TimelineId(2), Lsn(0x3000108)));
        // A checkpoint on timeline 1 and a recovery point on timeline 2: the
        // pair is the recovery point's.
        let c = parse(
            &SAMPLE.replace("Latest checkpoint's TimeLineID:       2", "Latest checkpoint's TimeLineID:       1"),
        )
        .unwrap();
        assert_eq!(c.position(), (TimelineId(2), Lsn(0x3000108)));
    }

    #[test]
    fn in_production_is_unclean_and_garbage_is_an_error() {
        let c = parse(&SAMPLE.replace("shut down in recovery", "in production")).unwrap();
        assert!(!c.state.clean());
        assert_eq!(parse("nothing here").unwrap_err().field, "Database system identifier");
        assert_eq!(parse(&SAMPLE.replace("0/3000060", "zz")).unwrap_err().field, "Latest checkpoint location");
    }
}
