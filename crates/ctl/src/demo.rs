//! `haraftctl demo`: a 3-node cluster with real PostgreSQL on this machine,
//! in one directory, stopped (every agent, fence guard and PostgreSQL
//! server it started) on Ctrl-C.

use haraft_core::status::{ClusterHealth, ClusterStatus};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the cluster may take to form and bootstrap: initdb and two
/// base backups take ~15 s here; a slow disk gets plenty more.
const READY_LIMIT: Duration = Duration::from_secs(180);

/// How long an agent, then a PostgreSQL server, may take to stop before it
/// is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);

pub struct Options {
    pub dir: Option<PathBuf>,
    pub nodes: u64,
    pub keep: bool,
}

/// The default demo ports (those config/ and haraftctl's default
/// endpoints use), or free ones when any is taken.
fn ports(nodes: u64) -> (Vec<u16>, bool) {
    let defaults: Vec<u16> = (0..nodes as u16).flat_map(|i| [7001 + i, 5441 + i, 8001 + i]).collect();
    let free = |p: &u16| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok();
    if defaults.iter().all(free) {
        return (defaults, true);
    }
    let listeners: Vec<_> = (0..3 * nodes).filter_map(|_| std::net::TcpListener::bind("127.0.0.1:0").ok()).collect();
    (listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.port()).collect(), false)
}

fn config_text(id: u64, nodes: u64, ports: &[u16]) -> String {
    let port = |node: u64, kind: usize| ports[(node as usize - 1) * 3 + kind];
    let mut text = format!(
        "# haraftctl demo: node{id}\n[cluster]\nname = \"demo\"\n\n[node]\nid = {id}\ndata_dir = \"data/node{id}\"\n\n\
         [rest]\nlisten = \"127.0.0.1:{}\"\n\n",
        port(id, 2)
    );
    for m in 1..=nodes {
        text.push_str(&format!("[[member]]\nid = {m}\nname = \"node{m}\"\naddress = \"127.0.0.1:{}\"\n\n", port(m, 0)));
    }
    text.push_str(&format!(
        "[postgresql]\nlisten = \"127.0.0.1:{}\"\nsuperuser_password_file = \"secrets/superuser\"\n\
         replication_password_file = \"secrets/replication\"\n",
        port(id, 1)
    ));
    text
}

/// The `haraft` agent binary: beside this one, else on PATH.
fn agent_binary() -> Result<PathBuf, String> {
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("haraft")));
    if let Some(b) = beside.filter(|b| b.is_file()) {
        return Ok(b);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("haraft")).find(|b| b.is_file()))
        .ok_or_else(|| "the haraft agent binary is neither beside haraftctl nor on PATH: install it".to_string())
}

struct Node {
    id: u64,
    child: Option<Child>,
}

/// Everything the demo started; stops it all when dropped.
struct Demo {
    dir: PathBuf,
    remove_dir: bool,
    nodes: Vec<Node>,
}

impl Demo {
    fn pgdata(&self, id: u64) -> PathBuf {
        self.dir.join(format!("data/node{id}/pgdata"))
    }

    fn stop(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        // Agents first (SIGTERM: a clean stop), so nothing restarts the
        // databases stopped next.
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else { continue };
            // SAFETY: kill(2) on the process group created for this agent.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
            if !wait_child(&mut child, STOP_LIMIT) {
                // SAFETY: as above.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                notes.push(format!("node{} agent killed after {STOP_LIMIT:?}", node.id));
            }
        }
        // PostgreSQL: fast shutdown (SIGINT to the postmaster), bounded.
        for id in self.nodes.iter().map(|n| n.id).collect::<Vec<_>>() {
            let pgdata = self.pgdata(id);
            if let Some(pid) = haraft_db::procs::postmaster_pid(&pgdata) {
                // SAFETY: the postmaster PID from this node's postmaster.pid.
                unsafe { libc::kill(pid, libc::SIGINT) };
                let start = Instant::now();
                while haraft_db::procs::postmaster_pid(&pgdata).is_some() && start.elapsed() < STOP_LIMIT {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if haraft_db::procs::signal_server(&pgdata, libc::SIGKILL) > 0 {
                    notes.push(format!("node{id} PostgreSQL killed after {STOP_LIMIT:?}"));
                    haraft_db::procs::release_stale_shmem(&pgdata, STOP_LIMIT);
                }
            }
            // The fence guard ignores SIGTERM by design; it has nothing
            // left to guard.
            if let Some(pid) = haraft_db::procs::fence_guard_pid(&self.dir.join(format!("data/node{id}"))) {
                // SAFETY: the guard PID its agent wrote, checked to be a guard.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        notes
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Who the database processes run as: this user, or `postgres` for root
/// (PostgreSQL refuses root).
fn run_as() -> Result<Option<haraft_db::RunAs>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    haraft_db::RunAs::user("postgres").map(Some).map_err(|e| {
        format!("running as root, the demo runs PostgreSQL as the postgres OS user, but: {e}: create that user or run as another")
    })
}

/// One line saying how far the cluster got.
fn progress(status: Option<&ClusterStatus>, started: Instant) -> String {
    let t = started.elapsed().as_secs();
    match status {
        None => format!("[{t:>3} s] waiting for the agents to answer"),
        Some(s) => {
            let members: Vec<String> = s
                .members
                .iter()
                .map(|m| {
                    let word = |v: serde_json::Value| v.as_str().unwrap_or("?").to_string();
                    let what = match (&m.action, m.db_address.is_some()) {
                        (Some(a), _) => a.clone(),
                        (None, true) => {
                            let role = serde_json::to_value(m.role).map(word).unwrap_or_default();
                            let state = serde_json::to_value(m.state).map(word).unwrap_or_default();
                            if role == state { role } else { format!("{role}, {state}") }
                        }
                        (None, false) => "starting".to_string(),
                    };
                    format!("{}: {what}", m.name)
                })
                .collect();
            format!("[{t:>3} s] {}", members.join(", "))
        }
    }
}

pub async fn run(options: Options) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listen before starting anything: from here on, Ctrl-C stops what
    // was started instead of killing haraftctl and leaving it running.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("listening for Ctrl-C: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("listening for SIGTERM: {e}"))?;
    if !(1..=9).contains(&options.nodes) {
        return Err(format!("--nodes {} is out of range: use 1 to 9 (3 is the usual demo)", options.nodes));
    }
    let agent = agent_binary()?;
    let run_as = run_as()?;
    let (dir, remove_dir) = match &options.dir {
        Some(d) => {
            if d.join("node1.toml").exists() {
                return Err(format!("{} already holds a demo: remove it or pick another --dir", d.display()));
            }
            (d.clone(), false)
        }
        None => (std::env::temp_dir().join(format!("haraft-demo-{}", std::process::id())), !options.keep),
    };
    std::fs::create_dir_all(dir.join("secrets")).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let dir = std::path::absolute(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (ports, defaults) = ports(options.nodes);
    for (file, secret) in [("superuser", "demo-superuser-password"), ("replication", "demo-replication-password")] {
        write_private(&dir.join("secrets").join(file), &format!("{secret}\n"))?;
    }
    for id in 1..=options.nodes {
        std::fs::write(dir.join(format!("node{id}.toml")), config_text(id, options.nodes, &ports))
            .map_err(|e| format!("writing node{id}.toml: {e}"))?;
    }
    if let Some(r) = &run_as {
        r.chown_tree(&dir).map_err(|e| format!("giving {} to the postgres user: {e}", dir.display()))?;
    }
    let mut demo = Demo { dir: dir.clone(), remove_dir, nodes: Vec::new() };
    for id in 1..=options.nodes {
        let log = std::fs::File::create(dir.join(format!("node{id}.log"))).map_err(|e| format!("node{id}.log: {e}"))?;
        if let Some(r) = &run_as {
            r.chown(&dir.join(format!("node{id}.log"))).map_err(|e| format!("node{id}.log: {e}"))?;
        }
        let mut command = Command::new(&agent);
        command
            .arg("--config")
            .arg(dir.join(format!("node{id}.toml")))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0);
        if let Some(r) = &run_as {
            command.uid(r.uid).gid(r.gid);
        }
        let child = command.spawn().map_err(|e| format!("starting {}: {e}", agent.display()))?;
        demo.nodes.push(Node { id, child: Some(child) });
    }
    let endpoints: Vec<String> = (0..options.nodes as usize).map(|i| format!("127.0.0.1:{}", ports[i * 3])).collect();
    println!("haraft demo: {} nodes with PostgreSQL in {}", options.nodes, dir.display());

    let ready = match wait_ready(&mut demo, &endpoints, &mut interrupt).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            println!("\nstopping (interrupted while starting)");
            return Ok(());
        }
        Err(e) => {
            // Keep what explains the failure.
            demo.remove_dir = false;
            return Err(format!("{e} (logs in {})", dir.display()));
        }
    };
    print!("{}", crate::table::render(&ready));

    let env = if defaults { String::new() } else { format!("HARAFTCTL_ENDPOINTS={} ", endpoints.join(",")) };
    let dsn = crate::dsn::dsn(&ready, crate::dsn::Role::Primary, "postgres", "postgres")?;
    println!("\nConnect (password demo-superuser-password; libpq finds the primary):");
    println!("  psql '{dsn}'");
    println!("Try, in another terminal:");
    println!("  {env}haraftctl status --watch");
    println!("  {env}haraftctl switchover");
    println!("  curl -s http://127.0.0.1:{}/primary; curl -s http://127.0.0.1:{}/metrics", ports[2], ports[2]);
    println!("Logs: {}/node*.log", dir.display());
    println!("Ctrl-C stops the cluster (every agent and PostgreSQL server).");
    let _ = std::io::stdout().flush();

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = term.recv() => {}
    }
    println!("\nstopping the demo cluster");
    let notes = demo.stop();
    for n in &notes {
        println!("  {n}");
    }
    if remove_dir {
        println!("stopped; removed {}", dir.display());
    } else {
        println!("stopped; the data stays in {}", dir.display());
    }
    Ok(())
}

/// Shows progress until the cluster is Normal (its status), Ctrl-C (None),
/// an agent exits or the time is up (why).
async fn wait_ready(
    demo: &mut Demo,
    endpoints: &[String],
    interrupt: &mut tokio::signal::unix::Signal,
) -> Result<Option<ClusterStatus>, String> {
    let started = Instant::now();
    let mut last_line = String::new();
    loop {
        let status = crate::fetch(endpoints, Duration::from_secs(2), crate::Ask::Status)
            .await
            .ok()
            .and_then(|d| serde_json::from_str::<ClusterStatus>(&d).ok());
        let line = progress(status.as_ref(), started);
        if line != last_line {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
            last_line = line;
        }
        if let Some(s) = status.filter(|s| s.cluster_state == ClusterHealth::Normal) {
            println!("\r\x1b[2Kready after {:.0} s\n", started.elapsed().as_secs_f64());
            return Ok(Some(s));
        }
        for node in &mut demo.nodes {
            if let Some(Ok(Some(exit))) = node.child.as_mut().map(Child::try_wait) {
                node.child = None;
                let log = std::fs::read_to_string(demo.dir.join(format!("node{}.log", node.id))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!("node{} stopped ({exit}); its log ends:\n{}", node.id, tail.join("\n")));
            }
        }
        if started.elapsed() > READY_LIMIT {
            return Err(format!("the cluster did not become Normal within {READY_LIMIT:?}"));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = interrupt.recv() => return Ok(None),
        }
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}
