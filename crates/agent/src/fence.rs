//! The fence guard: stops PostgreSQL when the lease deadline passes without
//! a renewal, independently of the agent's event loop.
//!
//! The agent writes the fence file on every renewal: `armed DEADLINE PGDATA
//! OWNER` (DEADLINE in CLOCK_BOOTTIME milliseconds, OWNER the agent's PID),
//! or `disarmed`. Two guards read it, sleeping until its deadline (at most
//! 200 ms at a time): a thread inside the agent
//! and a small separate process (`haraft --fence-guard FILE`), so that a
//! frozen or killed agent still fences. At the deadline they kill the
//! postmaster and every child of it (SIGKILL, by PID) and rewrite the file
//! as `fenced`.

use crate::clock::boottime;
use haraft_core::BootTime;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest a guard sleeps between looks at the file. It wakes at the
/// armed deadline itself (fencing then waits only for scheduling); this
/// bound covers a file rewritten meanwhile with an earlier deadline (not
/// written by haraft's agent, whose deadlines only move later within a
/// lease, but cheap to cover), well inside the demote budget. Before, both
/// guards read the file every 20 ms: 100 reads a second per member.
const LONGEST_SLEEP: Duration = Duration::from_millis(200);

/// How long to sleep after a look at the file: until its armed deadline,
/// at most `LONGEST_SLEEP`; at least a millisecond.
pub fn sleep_after(state: Option<&FenceState>, now: BootTime) -> Duration {
    let until_deadline = match state {
        Some(FenceState::Armed { deadline, .. }) => Duration::from_millis(now.ms_until(*deadline)),
        _ => LONGEST_SLEEP,
    };
    until_deadline.clamp(Duration::from_millis(1), LONGEST_SLEEP)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceState {
    Armed { deadline: BootTime, pgdata: PathBuf, owner: u32 },
    Disarmed,
    Fenced,
}

impl FenceState {
    fn parse(text: &str) -> Option<FenceState> {
        let mut words = text.split_whitespace();
        match words.next()? {
            "armed" => {
                let deadline = BootTime(words.next()?.parse().ok()?);
                let pgdata = PathBuf::from(words.next()?);
                let owner = words.next()?.parse().ok()?;
                Some(FenceState::Armed { deadline, pgdata, owner })
            }
            "disarmed" => Some(FenceState::Disarmed),
            "fenced" => Some(FenceState::Fenced),
            _ => None,
        }
    }

    fn render(&self) -> String {
        match self {
            FenceState::Armed { deadline, pgdata, owner } => {
                format!("armed {} {} {owner}\n", deadline.0, pgdata.display())
            }
            FenceState::Disarmed => "disarmed\n".into(),
            FenceState::Fenced => "fenced\n".into(),
        }
    }
}

pub fn read(path: &Path) -> Option<FenceState> {
    FenceState::parse(&std::fs::read_to_string(path).ok()?)
}

/// Replaces the file atomically (a guard never reads half a line).
pub fn write(path: &Path, state: &FenceState) -> std::io::Result<()> {
    // One temporary file per writer: the agent and its guards may write at
    // the same moment, and a shared one would be renamed from under one.
    let tmp = path.with_extension(
        format!("tmp.{}.{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""),
    );
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(state.render().as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// One look at the file; fences when an armed deadline has passed.
/// Returns whether it fenced and how long to sleep before the next look.
pub fn check_once(path: &Path) -> (bool, Duration) {
    let state = read(path);
    let now = boottime();
    match &state {
        Some(FenceState::Armed { deadline, pgdata, .. }) if now >= *deadline => {
            let killed = haraft_db::procs::signal_server(pgdata, libc::SIGKILL);
            let _ = write(path, &FenceState::Fenced);
            eprintln!(
                "haraft fence guard: lease deadline passed without renewal: killed {killed} database server processes of {}",
                pgdata.display()
            );
            (true, LONGEST_SLEEP)
        }
        other => (false, sleep_after(other.as_ref(), now)),
    }
}

/// The in-agent guard thread. Runs until `stop` is set.
pub fn spawn_thread(path: PathBuf, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("fence-guard".into())
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (_, sleep) = check_once(&path);
                std::thread::sleep(sleep);
            }
        })
        .expect("spawning the fence guard thread")
}

/// The separate guard process's loop. It exits when its agent is gone and
/// the file no longer holds an armed deadline of that agent (a restarted
/// agent starts its own guard).
pub fn run_process(path: &Path, agent: u32) {
    loop {
        let (_, sleep) = check_once(path);
        if !alive(agent) {
            match read(path) {
                Some(FenceState::Armed { owner, .. }) if owner == agent => {}
                _ => return,
            }
        }
        std::thread::sleep(sleep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fence");
        let armed = FenceState::Armed { deadline: BootTime(123), pgdata: PathBuf::from("/x/pgdata"), owner: 42 };
        for s in [armed, FenceState::Disarmed, FenceState::Fenced] {
            write(&p, &s).unwrap();
            assert_eq!(read(&p), Some(s));
        }
        std::fs::write(&p, "armed soon").unwrap();
        assert_eq!(read(&p), None);
        assert!(!check_once(&p).0, "garbage never fences");
    }

    #[test]
    fn fences_only_after_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path().join("pgdata");
        std::fs::create_dir(&pgdata).unwrap();
        // A postmaster's working directory is its data directory: without
        // it the PID is taken for a reused one and never signalled.
        let mut server = std::process::Command::new("/bin/sleep").arg("30").current_dir(&pgdata).spawn().unwrap();
        std::fs::write(pgdata.join("postmaster.pid"), format!("{}\n", server.id())).unwrap();
        let p = dir.path().join("fence");
        let future = FenceState::Armed { deadline: boottime().plus_ms(60_000), pgdata: pgdata.clone(), owner: 1 };
        write(&p, &future).unwrap();
        assert!(!check_once(&p).0);
        assert!(alive(server.id()));
        write(&p, &FenceState::Armed { deadline: BootTime(boottime().0 - 1), pgdata, owner: 1 }).unwrap();
        assert!(check_once(&p).0);
        server.wait().unwrap();
        assert_eq!(read(&p), Some(FenceState::Fenced));
        assert!(!check_once(&p).0, "fences once");
    }

    #[test]
    fn guards_sleep_until_the_deadline_and_never_longer_than_the_bound() {
        let now = BootTime(1_000);
        let armed = |at: u64| FenceState::Armed { deadline: BootTime(at), pgdata: PathBuf::from("/x"), owner: 1 };
        assert_eq!(sleep_after(Some(&armed(1_050)), now), Duration::from_millis(50));
        assert_eq!(sleep_after(Some(&armed(61_000)), now), LONGEST_SLEEP);
        assert_eq!(sleep_after(Some(&armed(900)), now), Duration::from_millis(1), "past: look again at once");
        assert_eq!(sleep_after(Some(&FenceState::Disarmed), now), LONGEST_SLEEP);
        assert_eq!(sleep_after(None, now), LONGEST_SLEEP);
    }
}
