//! `haraftctl demo`: starts a 3-node cluster with real PostgreSQL, prints
//! how to reach it, and on Ctrl-C stops every process it started.

use haraft_testkit::http;
use haraft_testkit::procs::binary;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The demo process (its own process group); interrupted when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGINT) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Processes whose command line mentions `needle` (read-only scan of /proc).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(format!("{pid}: {text}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_a_cluster_and_ctrl_c_stops_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let dir_text = dir.display().to_string();
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(binary("haraftctl"))
        .args(["demo", "--dir", &dir_text])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start haraftctl demo");
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
    // Read its output on a thread until it says how to stop it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut out = String::new();
    let start = Instant::now();
    while !out.contains("Ctrl-C stops the cluster") {
        assert!(start.elapsed() < Duration::from_secs(150), "the demo never became ready:\n{out}");
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    assert!(out.contains("ready after"), "{out}");
    assert!(out.contains("primary") && out.contains("streaming"), "the status table is shown:\n{out}");
    let dsn = out.lines().find_map(|l| l.trim().strip_prefix("psql '")).expect("a psql line").trim_end_matches('\'');
    assert!(dsn.starts_with("postgresql://postgres@127.0.0.1:") && dsn.ends_with("target_session_attrs=read-write"));
    // The endpoints it printed (default ports, or an export line).
    let endpoints = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("HARAFTCTL_ENDPOINTS=")?.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into());
    let status =
        Command::new(binary("haraftctl")).args(["--endpoints", &endpoints, "status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON from the demo cluster");
    assert_eq!(status["cluster_state"], "Normal", "{status}");
    // The same cluster as openGauss's gs_om draws it.
    let gs_om = Command::new(binary("haraftctl"))
        .args(["--endpoints", &endpoints, "status", "--format", "gs_om"])
        .output()
        .unwrap();
    let gs_om = String::from_utf8_lossy(&gs_om.stdout);
    assert!(gs_om.contains("cluster_state   : Normal\n") && gs_om.contains(" P Primary Normal"), "{gs_om}");
    let rest = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("curl -s http://")?.split('/').next().map(str::to_string))
        .expect("a curl line");
    let health = http::get(&rest, "/health").await.expect("the demo's REST API");
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(!processes_mentioning(&dir_text).is_empty(), "the demo's processes name its directory");

    // Ctrl-C: everything it started stops, and it says so.
    // SAFETY: kill(2) on the demo's own process group.
    unsafe { libc::kill(-(demo.0.id() as i32), libc::SIGINT) };
    let mut demo = demo;
    let start = Instant::now();
    let code = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(start.elapsed() < Duration::from_secs(90), "the demo did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("stopped; the data stays in {dir_text}")), "{out}");
    let left = processes_mentioning(&dir_text);
    assert!(left.is_empty(), "processes left running after Ctrl-C:\n{}", left.join("\n"));
    for id in 1..=3 {
        let pid_file = dir.join(format!("data/node{id}/pgdata/postmaster.pid"));
        assert!(!pid_file.exists(), "node{id}'s PostgreSQL did not shut down cleanly");
    }
}
