//! Reading a stopped server's WAL for what it holds: where its newest
//! timeline's last valid record ends, found with `pg_waldump`. A rewind
//! discards everything from the divergence point to there, so the history
//! can name every write a former (or self-promoted) primary loses, not
//! only the position last observed while it ran.

use haraft_core::Lsn;
use std::path::{Path, PathBuf};

/// How many segments, newest first, are tried before giving up: recycled
/// segments (renamed ahead of use, holding old WAL) come first and hold
/// no valid record.
const SEGMENTS_TRIED: usize = 4;

/// The WAL segment files in `pg_wal`, newest timeline and segment first.
pub fn segments_newest_first(pg_wal: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut names: Vec<String> = std::fs::read_dir(pg_wal)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()))
        .collect();
    // Timeline, then log and segment number: hex names of fixed width
    // sort as the numbers do.
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names.into_iter().take(SEGMENTS_TRIED).map(|n| pg_wal.join(n)).collect())
}

/// What the error that ends a `pg_waldump` run says: the start of the
/// last record it read, and where the next one would have started when
/// the reason names it (`invalid record length at 0/1518048`). `None`
/// when it read no record (a recycled or empty segment).
pub fn waldump_stop(stderr: &str) -> Option<(Lsn, Option<Lsn>)> {
    // "pg_waldump: error: error in WAL record at 0/1517E98: invalid record
    // length at 0/1518048: wanted 24, got 0"
    let rest = stderr.split("error in WAL record at ").nth(1)?;
    let (last, reason) = rest.split_once(": ")?;
    let last = Lsn::parse(last)?;
    let next = reason.contains(" at ").then(|| reason.rsplit(" at ").next()).flatten().and_then(|tail| {
        Lsn::parse(tail.split(|c: char| c == ':' || c == ',' || c == '|' || c.is_whitespace()).next()?)
    });
    Some((last, next))
}

/// The end of the first record `pg_waldump` printed: its start plus its
/// total length.
pub fn record_end(stdout: &str) -> Option<Lsn> {
    // "rmgr: Heap len (rec/tot): 59/ 59, tx: 724, lsn: 0/01517E58, prev ..."
    stdout.lines().find_map(|line| {
        let lsn = Lsn::parse(line.split("lsn: ").nth(1)?.split(',').next()?)?;
        let tot: u64 =
            line.split("len (rec/tot):").nth(1)?.split(',').next()?.split('/').nth(1)?.trim().parse().ok()?;
        Some(Lsn(lsn.0 + tot))
    })
}

/// How many transactions committed in `pg_waldump --rmgr=Transaction`
/// output: its `COMMIT` records (not `COMMIT_PREPARED`'s prepare, not
/// `ABORT`), each acknowledged to a client unless it failed on the way.
pub fn commit_records(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter(|l| l.starts_with("rmgr: Transaction"))
        .filter(|l| l.split("desc: ").nth(1).is_some_and(|d| d.starts_with("COMMIT")))
        .count() as u64
}

/// The timeline of a segment file's name (its first 8 hex digits).
pub fn segment_timeline(segment: &Path) -> Option<u32> {
    let name = segment.file_name()?.to_str()?;
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

/// `servers diverged at WAL location 0/3000148 on timeline 1` in a
/// rewind's output (pg_rewind's line, which an incremental build prints).
pub fn diverged_at(text: &str) -> (Option<haraft_core::Lsn>, Option<haraft_core::TimelineId>) {
    let Some(rest) = text.split("servers diverged at WAL location ").nth(1) else { return (None, None) };
    let mut words = rest.split_whitespace();
    let lsn = words.next().and_then(haraft_core::Lsn::parse);
    let timeline = words.nth(2).and_then(|t| t.trim_end_matches('.').parse().ok()).map(haraft_core::TimelineId);
    (lsn, timeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_names_the_last_record_and_where_the_next_would_start() {
        let err =
            "pg_waldump: error: error in WAL record at 0/1517E98: invalid record length at 0/1518048: wanted 24, got 0";
        assert_eq!(waldump_stop(err), Some((Lsn(0x1517E98), Lsn::parse("0/1518048"))));
        let prev_link =
            "pg_waldump: error: error in WAL record at 0/1517E98: record with incorrect prev-link 0/0 at 0/1518048";
        assert_eq!(waldump_stop(prev_link), Some((Lsn(0x1517E98), Lsn::parse("0/1518048"))));
        let pageaddr = "pg_waldump: error: error in WAL record at 0/1517E98: unexpected pageaddr 0/500000 in log segment 000000010000000000000002, offset 0";
        assert_eq!(waldump_stop(pageaddr), Some((Lsn(0x1517E98), None)));
    }

    #[test]
    fn commits_are_counted_from_transaction_records() {
        let out = "rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/01A2B3C8, prev 0/01A2B390, desc: COMMIT 2026-12-06 21:02:03.123456 UTC\n\
                   rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/01A2B400, prev 0/01A2B3C8, desc: ABORT 2026-12-06 21:02:03.2 UTC\n\
                   rmgr: Transaction len (rec/tot):    130/   130, tx:        737, lsn: 0/01A2B480, prev 0/01A2B400, desc: COMMIT_PREPARED 5: 2026-12-06 21:02:04 UTC\n\
                   rmgr: Heap        len (rec/tot):     59/    59, tx:        738, lsn: 0/01A2B500, prev 0/01A2B480, desc: INSERT off 3 flags 0x00\n";
        assert_eq!(commit_records(out), 2);
        assert_eq!(commit_records(""), 0);
    }

    #[test]
    fn no_record_read_means_nothing_known() {
        assert_eq!(waldump_stop("pg_waldump: error: could not find a valid record after 0/2000000"), None);
        assert_eq!(waldump_stop("error in WAL record at zz: x at 0/1"), None);
        assert_eq!(waldump_stop(""), None);
    }

    #[test]
    fn a_record_ends_at_its_start_plus_its_total_length() {
        let line = "rmgr: Transaction len (rec/tot):    405/   405, tx:        724, lsn: 0/01517E98, prev 0/01517E58, desc: COMMIT";
        assert_eq!(record_end(line), Some(Lsn(0x1517E98 + 405)));
        assert_eq!(record_end("garbage\nlsn: zz\n"), None);
        assert_eq!(segment_timeline(Path::new("/x/000000020000000000000001")), Some(2));
    }

    #[test]
    fn segments_are_tried_newest_timeline_first_and_other_files_ignored() {
        let dir = std::env::temp_dir().join(format!("haraft-wal-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("archive_status")).unwrap();
        for name in [
            "000000010000000000000003",
            "000000020000000000000002",
            "000000020000000000000001",
            "00000002.history",
            "000000020000000000000002.partial",
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let names: Vec<String> = segments_newest_first(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["000000020000000000000002", "000000020000000000000001", "000000010000000000000003"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_divergence_of_a_rewind_is_read() {
        let (lsn, tl) = diverged_at("...\nservers diverged at WAL location 0/3000148 on timeline 1\nrewinding\n");
        assert_eq!(lsn.map(|l| l.to_string()), Some("0/3000148".into()));
        assert_eq!(tl, Some(haraft_core::TimelineId(1)));
        assert_eq!(diverged_at("no rewind required"), (None, None));
    }
}
