//! The processes of a running PostgreSQL server, by PID: the postmaster
//! named in `postmaster.pid`, and every process whose parent it is. Each
//! backend calls setsid, so signalling a process group would miss them.
//! A server that keeps no `postmaster.pid` (DM's dmserver) is the one
//! whose PID its adapter recorded in [`SERVER_PID_FILE`].

use std::path::Path;
use std::time::{Duration, Instant};

/// The postmaster's PID, if `postmaster.pid` names a live process that
/// runs in this data directory (a postmaster's working directory is its
/// data directory). After a crash the file stays behind and its PID may
/// be reused by any other process, even another server's backend: such a
/// PID is not this server's, and is never signalled.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return None;
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let dir = std::fs::canonicalize(data_dir).ok()?;
    (cwd == dir).then_some(pid)
}

/// The port `postmaster.pid` records (its fourth line).
pub fn postmaster_port(data_dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().nth(3)?.trim().parse().ok()
}

/// The file in the data directory where an adapter whose server keeps no
/// `postmaster.pid` (DM's dmserver) records the PID of the server it
/// spawned, so that the fence finds it by the data directory alone.
pub const SERVER_PID_FILE: &str = "haraft-server.pid";

/// The PID in `SERVER_PID_FILE`, if it names a live process whose command
/// line names a file in this data directory (dmserver is started with
/// `DATA_DIR/dm.ini`). A PID from a stale file may belong to anything now,
/// and a zombie has no command line: neither is the server.
pub fn recorded_server_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join(SERVER_PID_FILE)).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let dir = std::fs::canonicalize(data_dir).ok()?;
    let prefix = format!("{}/", dir.display());
    cmdline.split(|b| *b == 0).any(|arg| arg.starts_with(prefix.as_bytes())).then_some(pid)
}

/// The parent PID of `pid`, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The postmaster and its children.
pub fn server_pids(data_dir: &Path) -> Vec<i32> {
    let Some(postmaster) = postmaster_pid(data_dir) else { return Vec::new() };
    let mut pids = vec![postmaster];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                && parent_of(pid) == Some(postmaster)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// The fence guard process of the agent whose data directory is
/// `node_dir`: the PID in its `guard.pid`, if that PID still runs a fence
/// guard (a PID from a stale file may belong to anything now).
pub fn fence_guard_pid(node_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(node_dir.join("guard.pid")).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline).contains("--fence-guard").then_some(pid)
}

/// Removes the System V shared memory segment that a dead postmaster of
/// `data_dir` left behind, as named on line 7 of `postmaster.pid`
/// ("key id"). PostgreSQL removes it itself at its next start in the same
/// directory; a directory that is set aside or deleted after a kill -9
/// would otherwise leak it for good, and the host runs out of segments
/// (SHMMNI, 4096 by default: "could not create shared memory segment: No
/// space left on device"). Nothing is removed while the postmaster runs or
/// any process is still attached (it waits up to `wait` for a just-killed
/// server's processes to go), or when the segment's key differs from the
/// file's (the id was reused). Returns whether one was removed.
pub fn release_stale_shmem(data_dir: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        match try_release_shmem(data_dir) {
            Some(true) => return true,
            Some(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}

/// One attempt: `None` when there is no such segment (or no file naming
/// one), `Some(false)` while it is still in use, `Some(true)` once removed.
fn try_release_shmem(data_dir: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut fields = text.lines().nth(6)?.split_whitespace();
    let key: i64 = fields.next()?.parse().ok()?;
    let id: i32 = fields.next()?.parse().ok()?;
    // SAFETY: shmid_ds is plain data; IPC_STAT fills it or fails.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } != 0 || i64::from(ds.shm_perm.__key) != key {
        return None;
    }
    if postmaster_pid(data_dir).is_some() || ds.shm_nattch != 0 {
        return Some(false);
    }
    // SAFETY: removes the segment just checked to be this directory's and
    // unattached.
    Some(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } == 0)
}

/// Sends `signal` to the postmaster and its children, or else to the
/// server recorded in [`SERVER_PID_FILE`] alone: such a server takes its
/// own processes down (DM's dmserver is one process; dm-emul's PostgreSQL
/// gets SIGQUIT when its dmserver dies, which ends every backend, where a
/// SIGKILL of the postmaster would leave them running). Returns how many.
pub fn signal_server(data_dir: &Path, signal: i32) -> usize {
    let mut pids = server_pids(data_dir);
    if pids.is_empty() {
        pids.extend(recorded_server_pid(data_dir));
    }
    for &pid in &pids {
        // SAFETY: plain kill(2) on PIDs just read from this server's files.
        unsafe { libc::kill(pid, signal) };
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pid_file_means_no_server() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        std::fs::write(dir.path().join("postmaster.pid"), "garbage\n").unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        assert!(server_pids(dir.path()).is_empty());
    }

    #[test]
    fn a_live_process_elsewhere_is_a_reused_pid_not_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let mut other = std::process::Command::new("sleep").arg("30").current_dir(elsewhere.path()).spawn().unwrap();
        std::fs::write(dir.path().join("postmaster.pid"), format!("{}\n/data\n", other.id())).unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        assert_eq!(signal_server(dir.path(), libc::SIGKILL), 0, "a reused PID was signalled");
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn a_recorded_server_is_found_by_its_command_line_alone() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().canonicalize().unwrap().join("dm.ini");
        std::fs::write(&ini, "").unwrap();
        // `sh -c SCRIPT NAME ARG`: ARG (the ini file) is in its command line.
        use std::os::unix::process::CommandExt;
        // Its own process group: the `sleep` child outlives the shell's
        // SIGKILL and is killed with the group at the end.
        let mut server = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 10 & wait", "dmserver"])
            .arg(&ini)
            .stdout(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut elsewhere = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        std::fs::write(dir.path().join(SERVER_PID_FILE), format!("{}\n", elsewhere.id())).unwrap();
        assert_eq!(recorded_server_pid(dir.path()), None, "a process that names another directory");
        assert_eq!(signal_server(dir.path(), libc::SIGKILL), 0);
        std::fs::write(dir.path().join(SERVER_PID_FILE), format!("{}\n", server.id())).unwrap();
        assert_eq!(recorded_server_pid(dir.path()), Some(server.id() as i32));
        assert_eq!(signal_server(dir.path(), libc::SIGKILL), 1, "the server alone, not its children");
        server.wait().unwrap();
        assert_eq!(recorded_server_pid(dir.path()), None, "gone");
        // SAFETY: the process group this test created.
        unsafe { libc::kill(-(server.id() as i32), libc::SIGKILL) };
        elsewhere.kill().unwrap();
        elsewhere.wait().unwrap();
    }

    #[test]
    fn finds_a_live_process_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & wait"])
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        std::fs::write(dir.path().join("postmaster.pid"), format!("{}\n/data\n", child.id())).unwrap();
        let start = std::time::Instant::now();
        let mut pids = server_pids(dir.path());
        while pids.len() < 2 && start.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            pids = server_pids(dir.path());
        }
        assert_eq!(pids.len(), 2, "{pids:?}");
        assert_eq!(signal_server(dir.path(), libc::SIGKILL), 2);
        child.wait().unwrap();
    }
}
