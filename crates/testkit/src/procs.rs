//! Real `haraft` processes, one process group per node, on loopback.

use crate::node_config;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Finds a binary built by this workspace: `$HARAFT_BIN_DIR/name`, or next
/// to (or one directory above) the running executable, which is where
/// cargo puts test and bench binaries.
pub fn binary(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("HARAFT_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe has a directory").to_path_buf();
    for _ in 0..2 {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
        dir = match dir.parent() {
            Some(p) => p.to_path_buf(),
            None => break,
        };
    }
    panic!("binary {name} not found near {}: build the workspace first (cargo build --workspace)", exe.display());
}

/// Ports for a cluster: bound to port 0 and released, so the agents can
/// bind them (a race with another process is possible but not on a test
/// machine's loopback in practice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("bound").port()).collect()
}

pub struct Node {
    pub id: u64,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct ProcCluster {
    pub dir: tempfile::TempDir,
    pub addresses: Vec<String>,
    pub nodes: Vec<Node>,
}

impl ProcCluster {
    /// Writes configs for `n` nodes (data dirs relative to the cluster dir,
    /// which is the agents' working directory) without starting them.
    pub fn new(n: usize, extra: &str) -> ProcCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let addresses: Vec<String> = free_ports(n).into_iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let nodes = (1..=n as u64)
            .map(|id| {
                let config = dir.path().join(format!("node{id}.toml"));
                let text = node_config("test", id, Path::new(&format!("data/node{id}")), &addresses, extra);
                std::fs::write(&config, text).expect("write config");
                Node { id, config, log: dir.path().join(format!("node{id}.log")), child: None }
            })
            .collect();
        ProcCluster { dir, addresses, nodes }
    }

    /// A cluster from existing config files whose member addresses are
    /// rewritten to free ports (each `127.0.0.1:700N` becomes a free port).
    pub fn from_files(files: &[PathBuf]) -> ProcCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(files.len());
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let nodes = files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let mut text = std::fs::read_to_string(file).expect("read config");
                for (j, a) in addresses.iter().enumerate() {
                    text = text.replace(&format!("127.0.0.1:{}", 7001 + j), a);
                }
                let config = dir.path().join(format!("node{}.toml", i + 1));
                std::fs::write(&config, text).expect("write config");
                Node { id: i as u64 + 1, config, log: dir.path().join(format!("node{}.log", i + 1)), child: None }
            })
            .collect();
        ProcCluster { dir, addresses, nodes }
    }

    pub fn endpoints(&self) -> String {
        self.addresses.join(",")
    }

    /// Starts node `id` in its own process group, logging to its log file.
    pub fn start(&mut self, id: u64) {
        let node = &mut self.nodes[id as usize - 1];
        assert!(node.child.is_none(), "node {id} already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).expect("open log");
        let child = Command::new(binary("haraft"))
            .arg("--config")
            .arg(&node.config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn haraft");
        node.child = Some(child);
    }

    pub fn start_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.start(id);
        }
    }

    /// Sends `signal` to node `id`'s process group and waits for it to exit.
    /// Returns the exit status.
    pub fn signal_and_wait(&mut self, id: u64, signal: i32) -> std::process::ExitStatus {
        let node = &mut self.nodes[id as usize - 1];
        let mut child = node.child.take().expect("node is running");
        // SAFETY: kill(2) with a negative pid signals the process group we
        // created for this child (process_group(0) makes its pid the pgid).
        unsafe { libc::kill(-(child.id() as i32), signal) };
        child.wait().expect("wait for haraft")
    }

    pub fn kill(&mut self, id: u64) {
        self.signal_and_wait(id, libc::SIGKILL);
    }

    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        self.signal_and_wait(id, libc::SIGTERM)
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes[id as usize - 1].child.is_some()
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[id as usize - 1].log).unwrap_or_default()
    }

    /// Runs `haraftctl --endpoints <all> ARGS`, returning (exit code, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(binary("haraftctl"))
            .arg("--endpoints")
            .arg(self.endpoints())
            .args(args)
            .output()
            .expect("run haraftctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// `haraftctl status --json`, parsed, if it answered.
    pub fn status(&self) -> Option<serde_json::Value> {
        let (code, out, _) = self.ctl(&["--timeout-ms", "3000", "status", "--json"]);
        if code != 0 {
            return None;
        }
        serde_json::from_str(&out).ok()
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // SAFETY: signals only the process group this cluster created.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
            }
        }
    }
}
