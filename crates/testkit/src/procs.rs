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

/// The superuser password of test clusters (also in config/secrets for
/// the shipped example).
const SUPERUSER_PASSWORD: &str = "demo-superuser-password";

/// Ports for a cluster: bound, then released when this returns, so the
/// agents can bind them. They are drawn at random below the kernel's
/// ephemeral range when it leaves room (from 10000 up to it): a port that
/// port 0 hands out is in that range, and any outgoing connection on the
/// host (a writer, a gRPC client) may take it between this call and the
/// agent's bind. The fault matrix once lost a run to that ("binding
/// rest.listen ...: Address already in use").
pub fn free_ports(n: usize) -> Vec<u16> {
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let mut listeners = Vec::new();
    if ephemeral_low > LOW + 1000 {
        let span = ephemeral_low - LOW;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut x = (nanos as u64) ^ (u64::from(std::process::id()) << 32) | 1;
        // Bounded: after this many taken ports, fall back to port 0.
        for _ in 0..(n * 50) {
            if listeners.len() == n {
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = (LOW + (x % u64::from(span)) as u32) as u16;
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                listeners.push(l);
            }
        }
    }
    while listeners.len() < n {
        listeners.push(std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0"));
    }
    listeners.iter().map(|l| l.local_addr().expect("bound").port()).collect()
}

pub struct Node {
    pub id: u64,
    /// Its `node.data_dir`, relative to the cluster directory (the agents'
    /// working directory): where its PostgreSQL and fence guard are found.
    pub data: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// Every process group this node's agents ran in.
    groups: Vec<i32>,
    /// The `haraft` it runs from its next start: this build's unless set
    /// (the upgrade bench runs a previous release's).
    pub haraft: Option<PathBuf>,
}

impl Node {
    /// Node `id` of the cluster in `dir`, not started; its log is
    /// `dir/nodeID.log`.
    fn new(dir: &Path, id: u64, config: PathBuf, data: PathBuf) -> Node {
        Node { id, config, data, log: dir.join(format!("node{id}.log")), child: None, groups: Vec::new(), haraft: None }
    }

    /// The `node.data_dir` the testkit's own configs give node `id`.
    fn default_data(id: u64) -> PathBuf {
        PathBuf::from(format!("data/node{id}"))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct ProcCluster {
    pub dir: tempfile::TempDir,
    pub addresses: Vec<String>,
    /// Each node's REST API address (nodes with PostgreSQL only).
    pub rest: Vec<String>,
    /// haraftctl's TLS flags for a cluster with `[tls]` (empty otherwise).
    pub ctl_tls: Vec<String>,
    pub nodes: Vec<Node>,
    /// Set when the nodes manage PostgreSQL.
    pub pg: Option<PgNodes>,
}

/// The PostgreSQL side of a test cluster.
pub struct PgNodes {
    pub ports: Vec<u16>,
    pub superuser_password: String,
    /// The OS user agents run as when the tests run as root.
    pub run_as: Option<(u32, u32)>,
}

/// Copies `from` into `to` recursively; private files (`*.key`, anything
/// under a `secrets` directory) become mode 600.
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).expect("create copy dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy file");
            let private = dst.extension().is_some_and(|e| e == "key")
                || dst.parent().and_then(|p| p.file_name()).is_some_and(|d| d == "secrets");
            if private {
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            }
        }
    }
}

/// A test node's `[postgresql]` section (loopback port, the shared
/// secrets) and its REST API's `[rest]` section.
fn pg_section(port: u16, rest: &str) -> String {
    format!(
        "[postgresql]\nlisten = \"127.0.0.1:{port}\"\nsuperuser_password_file = \"secrets/superuser\"\nreplication_password_file = \"secrets/replication\"\n\n[rest]\nlisten = \"{rest}\"\n\n"
    )
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
                let data = Node::default_data(id);
                std::fs::write(&config, node_config("test", id, &data, &addresses, extra)).expect("write config");
                Node::new(dir.path(), id, config, data)
            })
            .collect();
        ProcCluster { dir, addresses, rest: Vec::new(), ctl_tls: Vec::new(), nodes, pg: None }
    }

    /// `new` with mutual TLS: a test CA in the cluster directory, a
    /// certificate per member (`nodeN`) in its `[tls]` section, and an
    /// `operator` certificate for haraftctl. Returns the CA to issue more.
    pub fn new_tls(n: usize, extra: &str) -> (ProcCluster, crate::tls::TestCa) {
        let mut c = ProcCluster::new(n, extra);
        let ca = crate::tls::TestCa::new(c.dir.path(), "cluster");
        for node in &c.nodes {
            let files = ca.issue(&format!("node{}", node.id));
            let mut text = std::fs::read_to_string(&node.config).expect("read config");
            text.push_str(&format!("\n{}", files.section()));
            std::fs::write(&node.config, text).expect("write config");
        }
        c.ctl_tls = ca.issue("operator").ctl_args();
        (c, ca)
    }

    /// Writes configs for `n` nodes that each manage a PostgreSQL server
    /// (ports on loopback, data under the cluster dir), without starting
    /// them. When the tests run as root, the directory belongs to the
    /// `postgres` OS user and the agents run as that user.
    pub fn with_postgres(n: usize, extra: &str) -> ProcCluster {
        let mut c = ProcCluster::new(0, "");
        let dir = c.dir.path().to_path_buf();
        let ports = free_ports(3 * n);
        let addresses: Vec<String> = ports[..n].iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let pg_ports = ports[n..2 * n].to_vec();
        let rest: Vec<String> = ports[2 * n..].iter().map(|p| format!("127.0.0.1:{p}")).collect();
        std::fs::create_dir_all(dir.join("secrets")).expect("secrets dir");
        for (file, secret) in [("superuser", SUPERUSER_PASSWORD), ("replication", "test-replication-secret")] {
            std::fs::write(dir.join("secrets").join(file), format!("{secret}\n")).expect("write password file");
        }
        c.nodes = (1..=n as u64)
            .map(|id| {
                let config = dir.join(format!("node{id}.toml"));
                let pg = pg_section(pg_ports[id as usize - 1], &rest[id as usize - 1]);
                let data = Node::default_data(id);
                let text = node_config("test", id, &data, &addresses, &format!("{pg}{extra}"));
                std::fs::write(&config, text).expect("write config");
                Node::new(&dir, id, config, data)
            })
            .collect();
        c.addresses = addresses;
        c.rest = rest;
        c.hand_to_database_user(pg_ports);
        c
    }

    /// `with_postgres`, each node's database an openGauss one
    /// (`[opengauss]`), its tools emulated over PostgreSQL 15 by og-emul
    /// (in the cluster directory's `opengauss/bin`).
    pub fn with_opengauss(n: usize, extra: &str) -> ProcCluster {
        let c = ProcCluster::with_postgres(n, extra);
        let bin = crate::opengauss::tools_dir(&c.dir.path().join("opengauss")).expect("og-emul's tools");
        for node in &c.nodes {
            let text = std::fs::read_to_string(&node.config).expect("read config");
            let section = format!("[opengauss]\nbin_dir = \"{}\"\n", bin.display());
            std::fs::write(&node.config, text.replacen("[postgresql]\n", &section, 1)).expect("write config");
        }
        c
    }

    /// `with_postgres`, each node's database a Dameng DM8 one
    /// (`[dameng]`), its tools emulated over PostgreSQL 15 by dm-emul (in
    /// the cluster directory's `dameng/bin`). Applications connect to a
    /// node's port as `SYSDBA` with the superuser password.
    pub fn with_dameng(n: usize, extra: &str) -> ProcCluster {
        let c = ProcCluster::with_postgres(n, extra);
        let bin = crate::dameng::tools_dir(&c.dir.path().join("dameng")).expect("dm-emul's tools");
        for node in &c.nodes {
            let text = std::fs::read_to_string(&node.config).expect("read config");
            let section = format!("[dameng]\nbin_dir = \"{}\"\n", bin.display());
            std::fs::write(&node.config, text.replacen("[postgresql]\n", &section, 1)).expect("write config");
        }
        c
    }

    /// openGauss's `gs_ctl` (og-emul's) with `args` on node `id`'s data
    /// directory, as the database OS user.
    pub fn gs_ctl(&self, id: u64, args: &[&str]) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(self.dir.path().join("opengauss/bin/gs_ctl"));
        command.args(args).arg("-D").arg(self.pgdata(id)).env("PGUSER", "postgres");
        if let Some((uid, gid)) = self.pg.as_ref().and_then(|p| p.run_as) {
            command.uid(uid).gid(gid);
        }
        command.output().expect("run gs_ctl")
    }

    /// Writes the config of one more node that joins the running cluster
    /// (`node.join = true`: `haraftctl member add` makes it a member), with
    /// its own PostgreSQL; returns its id (named `node{id}`). Not started.
    pub fn add_joining_node(&mut self, extra: &str) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let ports = free_ports(3);
        self.addresses.push(format!("127.0.0.1:{}", ports[0]));
        self.rest.push(format!("127.0.0.1:{}", ports[2]));
        let rest = self.rest.last().expect("just pushed").clone();
        let pg = self.pg.as_mut().expect("a postgres cluster");
        pg.ports.push(ports[1]);
        let text = node_config(
            "test",
            id,
            &Node::default_data(id),
            &self.addresses,
            &format!("{}{extra}", pg_section(ports[1], &rest)),
        )
        .replacen("[node]\n", "[node]\njoin = true\n", 1);
        let config = self.dir.path().join(format!("node{id}.toml"));
        std::fs::write(&config, text).expect("write config");
        if let Some((uid, gid)) = pg.run_as {
            std::os::unix::fs::chown(&config, Some(uid), Some(gid)).expect("chown config");
        }
        self.nodes.push(Node::new(self.dir.path(), id, config, Node::default_data(id)));
        id
    }

    /// `with_postgres`, with every link between nodes (Raft/admin and
    /// replication, each direction) through a chaos proxy, written into
    /// each node's config as `[network.dial.NAME]`. Call it inside a tokio
    /// runtime: the proxies run on it.
    pub async fn with_chaos(n: usize, extra: &str) -> (ProcCluster, crate::chaos::Chaos) {
        use crate::chaos::{Chaos, Link, Traffic};
        let c = ProcCluster::with_postgres(n, extra);
        let pg_ports = c.pg.as_ref().expect("postgres cluster").ports.clone();
        // A proxy must not take a port chosen for an agent or a PostgreSQL
        // server that has not bound it yet.
        let mut reserved = pg_ports.clone();
        reserved.extend(c.addresses.iter().chain(&c.rest).filter_map(|a| a.rsplit(':').next()?.parse::<u16>().ok()));
        let mut links = std::collections::BTreeMap::new();
        for from in 1..=n as u64 {
            let mut dial = String::new();
            for to in (1..=n as u64).filter(|t| *t != from) {
                let raft_target = c.addresses[to as usize - 1].parse().expect("member address");
                let pg_target = format!("127.0.0.1:{}", pg_ports[to as usize - 1]).parse().expect("pg address");
                let raft = Link::start(raft_target, &reserved).await;
                let pg = Link::start(pg_target, &reserved).await;
                dial.push_str(&format!(
                    "\n[network.dial.node{to}]\nraft = \"{}\"\npostgresql = \"{}\"\n",
                    raft.listen, pg.listen
                ));
                links.insert((from, to, Traffic::Raft), raft);
                links.insert((from, to, Traffic::Replication), pg);
            }
            let config = &c.nodes[from as usize - 1].config;
            let mut text = std::fs::read_to_string(config).expect("read config");
            text.push_str(&dial);
            std::fs::write(config, text).expect("write config");
        }
        (c, Chaos { links })
    }

    /// Makes the cluster directory the database user's (when running as
    /// root) and records the PostgreSQL side.
    fn hand_to_database_user(&mut self, pg_ports: Vec<u16>) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.path().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod cluster dir");
        // SAFETY: geteuid has no preconditions.
        let run_as = if unsafe { libc::geteuid() } == 0 {
            let r = haraft_db::RunAs::user("postgres").expect("tests that run as root need the postgres OS user");
            Some((r.uid, r.gid))
        } else {
            None
        };
        let secrets = dir.join("secrets");
        for entry in std::fs::read_dir(&secrets).into_iter().flatten().flatten() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600)).expect("chmod secret");
        }
        if let Some((uid, gid)) = run_as {
            for path in [dir.clone(), secrets.clone()] {
                for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    std::os::unix::fs::chown(entry.path(), Some(uid), Some(gid)).expect("chown");
                }
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).ok();
            }
        }
        self.pg = Some(PgNodes { ports: pg_ports, superuser_password: SUPERUSER_PASSWORD.to_string(), run_as });
    }

    /// A cluster from existing config files (the shipped config/): each
    /// `127.0.0.1:700N` (Raft), `127.0.0.1:544N` (PostgreSQL) and
    /// `127.0.0.1:800N` (REST) becomes a free port. The files' directory is
    /// copied whole (secrets, certificates) into the cluster directory.
    pub fn from_files(files: &[PathBuf]) -> ProcCluster {
        let root = files.first().and_then(|f| f.parent()).expect("config files in a directory");
        let rel: Vec<PathBuf> =
            files.iter().map(|f| f.strip_prefix(root).expect("files in one directory").to_path_buf()).collect();
        ProcCluster::from_tree(root, &rel)
    }

    /// `from_files` for files at `rel` paths below `root` (e.g. `tls/node1.toml`
    /// below `config/`), copying `root` whole so that paths between its
    /// files (`../secrets/superuser`) hold. Key (`*.key`) and `secrets/`
    /// files become mode 600 (git checks them out 644, which agents refuse).
    pub fn from_tree(root: &Path, rel: &[PathBuf]) -> ProcCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let copy = dir.path().join("config");
        copy_tree(root, &copy);
        let n = rel.len();
        let ports = free_ports(3 * n);
        let addresses: Vec<String> = ports[..n].iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let pg_ports = ports[n..2 * n].to_vec();
        let rest: Vec<String> = ports[2 * n..].iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut has_pg = false;
        let nodes = rel
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let config = copy.join(file);
                let mut text = std::fs::read_to_string(&config).expect("read config");
                for j in 0..n {
                    text = text.replace(&format!("127.0.0.1:{}", 7001 + j), &addresses[j]);
                    text = text.replace(&format!("127.0.0.1:{}", 5441 + j), &format!("127.0.0.1:{}", pg_ports[j]));
                    text = text.replace(&format!("127.0.0.1:{}", 8001 + j), &rest[j]);
                }
                has_pg |= text.contains("[postgresql]");
                std::fs::write(&config, &text).expect("write config");
                // Cleanup finds the node's PostgreSQL and guard by it.
                let data = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("data_dir = \"")?.strip_suffix('"').map(PathBuf::from))
                    .expect("the config names node.data_dir");
                Node::new(dir.path(), i as u64 + 1, config, data)
            })
            .collect();
        let mut c = ProcCluster { dir, addresses, rest, ctl_tls: Vec::new(), nodes, pg: None };
        if has_pg {
            c.hand_to_database_user(pg_ports);
            if let Some((uid, gid)) = c.pg.as_ref().and_then(|p| p.run_as) {
                haraft_db::RunAs { uid, gid }.chown_tree(&copy).expect("chown the config copy");
            }
        }
        c
    }

    pub fn endpoints(&self) -> String {
        self.addresses.join(",")
    }

    /// Starts node `id` in its own process group, logging to its log file.
    pub fn start(&mut self, id: u64) {
        self.start_with_env(id, &[]);
    }

    /// `start` with extra environment variables (e.g. `HARAFT_FAILPOINTS`).
    pub fn start_with_env(&mut self, id: u64, env: &[(&str, &str)]) {
        let node = &mut self.nodes[id as usize - 1];
        assert!(node.child.is_none(), "node {id} already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).expect("open log");
        let mut command = Command::new(node.haraft.clone().unwrap_or_else(|| binary("haraft")));
        command
            .arg("--config")
            .arg(&node.config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .envs(env.iter().copied())
            .process_group(0);
        if let Some((uid, gid)) = self.pg.as_ref().and_then(|p| p.run_as) {
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().expect("spawn haraft");
        node.groups.push(child.id() as i32);
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

    /// Whether node `id`'s agent exited on its own (reaping it): a
    /// failpoint fired or it stopped on a fatal error.
    pub fn exited(&mut self, id: u64) -> bool {
        let node = &mut self.nodes[id as usize - 1];
        match node.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => {
                node.child = None;
                true
            }
            _ => false,
        }
    }

    pub fn kill(&mut self, id: u64) {
        self.signal_and_wait(id, libc::SIGKILL);
    }

    /// The node's PostgreSQL data directory.
    pub fn pgdata(&self, id: u64) -> PathBuf {
        self.dir.path().join(&self.nodes[id as usize - 1].data).join("pgdata")
    }

    /// kill -9 of the whole host: the agent's process group (agent and
    /// fence guard) and every PostgreSQL process of the node, by PID.
    pub fn kill_host(&mut self, id: u64) {
        let pg = haraft_db::procs::server_pids(&self.pgdata(id));
        for pid in pg {
            // SAFETY: PIDs read from this node's postmaster.pid and /proc.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if self.is_running(id) {
            self.kill(id);
        }
        self.kill_guard(id);
        for &group in &self.nodes[id as usize - 1].groups {
            // SAFETY: a process group this cluster created (the guard may live on).
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }

    /// kill -9 of the node's fence guard process (its own process group;
    /// its PID is in guard.pid beside the fence file).
    pub fn kill_guard(&self, id: u64) {
        if let Some(pid) = haraft_db::procs::fence_guard_pid(&self.dir.path().join(&self.nodes[id as usize - 1].data)) {
            // SAFETY: the guard's own PID, written by the agent this cluster
            // started and checked to be a guard.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Sets every thread of node `id`'s agent and fence guard to `nice`, as
    /// a unit's `Nice=` would have started them (a raised priority needs
    /// root: the tests' runner). Returns how many threads.
    pub fn renice_agent(&self, id: u64, nice: i32) -> usize {
        let node_dir = self.dir.path().join(&self.nodes[id as usize - 1].data);
        let pids = self.nodes[id as usize - 1].pid().map(|p| p as i32).into_iter();
        let mut count = 0;
        for pid in pids.chain(haraft_db::procs::fence_guard_pid(&node_dir)) {
            for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
                // SAFETY: setpriority on a thread of a process this cluster started.
                if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } == 0 {
                    count += 1;
                }
            }
        }
        count
    }

    /// kill -9 of the node's PostgreSQL only. Returns how many processes.
    pub fn kill_postgres(&self, id: u64) -> usize {
        haraft_db::procs::signal_server(&self.pgdata(id), libc::SIGKILL)
    }

    /// kill -9 of the agent process only (its fence guard lives on).
    pub fn kill_agent_only(&mut self, id: u64) {
        let node = &mut self.nodes[id as usize - 1];
        let mut child = node.child.take().expect("node is running");
        // SAFETY: the agent's own PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
    }

    /// SIGSTOP (or SIGCONT) every process of the host: agent group and
    /// PostgreSQL.
    pub fn freeze_host(&self, id: u64, frozen: bool) {
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        for &group in &self.nodes[id as usize - 1].groups {
            // SAFETY: a process group this cluster created.
            unsafe { libc::kill(-group, signal) };
        }
        haraft_db::procs::signal_server(&self.pgdata(id), signal);
    }

    /// SIGSTOP (or SIGCONT) the agent process only.
    pub fn freeze_agent(&self, id: u64, frozen: bool) {
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        if let Some(pid) = self.nodes[id as usize - 1].pid() {
            // SAFETY: the agent's own PID.
            unsafe { libc::kill(pid as i32, signal) };
        }
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

    /// `haraftctl --endpoints <all> ARGS`, not started yet.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("haraftctl"));
        command.args(&self.ctl_tls).arg("--endpoints").arg(self.endpoints()).args(args);
        command
    }

    /// Runs `haraftctl --endpoints <all> ARGS`, returning (exit code, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.ctl_command(args).output().expect("run haraftctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// `haraftctl status --json` asked only of nodes `ids` (e.g. the
    /// majority side of a partition), parsed, if one answered.
    pub fn status_via(&self, ids: &[u64]) -> Option<serde_json::Value> {
        let endpoints: Vec<&str> = ids.iter().map(|i| self.addresses[*i as usize - 1].as_str()).collect();
        let out = Command::new(binary("haraftctl"))
            .args(&self.ctl_tls)
            .args(["--endpoints", &endpoints.join(","), "--timeout-ms", "3000", "status", "--json"])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
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
        for id in 1..=self.nodes.len() as u64 {
            self.kill_host(id);
        }
        for node in &mut self.nodes {
            for &group in &node.groups {
                // SAFETY: signals only process groups this cluster created.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
        }
        // The killed servers' shared memory segments outlive them, and the
        // temporary directory that names them is deleted next.
        for id in 1..=self.nodes.len() as u64 {
            haraft_db::procs::release_stale_shmem(&self.pgdata(id), std::time::Duration::from_secs(5));
        }
    }
}
