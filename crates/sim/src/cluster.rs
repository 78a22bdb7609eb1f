//! One simulated cluster: real agents (`haraft_agent::embedded`) over the
//! in-memory store, the router and the model databases, each with a
//! simulated fence guard; crash and restart of a member.

use crate::adapter::{ModelDb, Reach};
use crate::model::{Servers, host_of};
use crate::net::{Router, SimNetwork, SimPeers};
use haraft_agent::embedded::{self, EmbeddedAgent, Parts};
use haraft_agent::fence::{self, FenceState};
use haraft_raft::memstore::MemDisk;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A simulated fsync of the Raft store: sled's flush plus fdatasync on
/// these machines' disks takes 1–5 ms.
const SYNC_DELAY: Duration = Duration::from_millis(2);

pub struct Node {
    pub id: u64,
    pub config: haraft_agent::config::Config,
    pub disk: MemDisk,
    pub agent: Option<EmbeddedAgent>,
    guard: Option<JoinHandle<()>>,
    /// The current life's flag, shared with its database adapter.
    alive: Arc<std::sync::atomic::AtomicBool>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub router: Router,
    pub servers: Servers,
}

/// Member `id`'s configuration: the reference timing, fast Raft timers
/// spread per member (openraft draws election timeouts from an unseeded
/// generator, so each member gets a fixed one from the seed instead).
fn node_config(dir: &std::path::Path, id: u64, n: u64, election_ms: u64, synchronous: bool) -> anyhow::Result<String> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let secret = dir.join("secret");
    std::fs::write(&secret, "sim\n")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    for tool in ["pg_ctl", "initdb", "postgres", "pg_controldata", "pg_rewind", "pg_basebackup"] {
        std::fs::write(bin.join(tool), "")?;
    }
    let data = dir.join(format!("node{id}"));
    // The agent's data directory holds the real fence file the database
    // side writes and the simulated guard reads.
    std::fs::create_dir_all(&data)?;
    let mut text = format!(
        "[cluster]\nname = \"sim\"\n\n[node]\nid = {id}\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:1\"\n\n",
        data.display()
    );
    for m in 1..=n {
        text.push_str(&format!("[[member]]\nid = {m}\nname = \"node{m}\"\naddress = \"sim-node{m}:7000\"\n\n"));
    }
    text.push_str(&format!(
        "[raft]\nelection_timeout_min_ms = {election_ms}\nelection_timeout_max_ms = {}\n\n",
        election_ms + 1
    ));
    text.push_str(&format!(
        "[postgresql]\nlisten = \"{}:5432\"\nbin_dir = \"{}\"\ndata_dir = \"{}\"\nsuperuser_password_file = \"{}\"\nreplication_password_file = \"{}\"\n\n",
        host_of(id),
        bin.display(),
        data.join("pgdata").display(),
        secret.display(),
        secret.display()
    ));
    if synchronous {
        text.push_str("[failover]\nsynchronous_mode = \"on\"\n");
    }
    Ok(text)
}

impl Cluster {
    pub fn new(n: u64, synchronous: bool, router: Router, election_ms: &[u64]) -> anyhow::Result<Cluster> {
        // The fence file is real and written with fdatasync on every lease
        // renewal: on tmpfs that costs no disk flush (and needs no disk).
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).or_else(|_| tempfile::tempdir())?
        } else {
            tempfile::tempdir()?
        };
        let ids: Vec<u64> = (1..=n).collect();
        let mut nodes = Vec::new();
        for id in &ids {
            let text = node_config(dir.path(), *id, n, election_ms[*id as usize - 1], synchronous)?;
            let config = haraft_agent::config::parse(&format!("node{id}.toml"), &text)
                .map_err(|e| anyhow::anyhow!("simulated member {id}'s config: {e}"))?;
            nodes.push(Node {
                id: *id,
                config,
                disk: MemDisk::new(SYNC_DELAY),
                agent: None,
                guard: None,
                alive: Default::default(),
            });
        }
        Ok(Cluster { dir, nodes, router, servers: Servers::new(&ids) })
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    pub fn running(&self, id: u64) -> bool {
        self.nodes[id as usize - 1].agent.is_some()
    }

    pub async fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let router = self.router.clone();
        let servers = self.servers.clone();
        let node = self.node(id);
        if node.agent.is_some() {
            return Ok(());
        }
        let opened = node.disk.open();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        node.alive = Arc::clone(&alive);
        let reach_router = router.clone();
        let reach: Reach = Arc::new(move |a, b| reach_router.reachable(a, b));
        let parts = Parts {
            network: SimNetwork { cluster: "sim".into(), me: id, router: router.clone() },
            log: opened.log,
            state_machine: opened.state_machine,
            applied: opened.applied,
            committed: opened.committed,
            peers: Arc::new(SimPeers { me: id, router: router.clone() }),
            db: Some(ModelDb { id, servers: servers.clone(), reach, alive: Arc::clone(&alive) }),
            gate: router.gate(id),
        };
        let agent = embedded::start(node.config.clone(), parts).await?;
        router.register(id, agent.raft_service(), agent.admin_service());
        node.guard = agent.fence_path.clone().map(|path| tokio::spawn(guard(path, id, servers)));
        node.agent = Some(agent);
        Ok(())
    }

    /// The host goes down: the agent, its guard and its database stop at
    /// once; with `lose_unsynced`, as in a power loss.
    pub async fn crash(&mut self, id: u64, lose_unsynced: bool) {
        self.router.unregister(id);
        // A paused process dies too; the next life runs.
        self.router.set_running(id, true);
        let node = self.node(id);
        node.alive.store(false, std::sync::atomic::Ordering::SeqCst);
        if let Some(g) = node.guard.take() {
            g.abort();
        }
        if let Some(agent) = node.agent.take() {
            let _ = agent.shutdown().await;
        }
        node.disk.crash(lose_unsynced);
        crash_db(&self.servers, id);
    }
}

/// The database server stops without a clean shutdown.
pub fn crash_db(servers: &Servers, id: u64) {
    if let Some(s) = servers.lock().servers.get_mut(&id)
        && s.running
    {
        s.running = false;
        s.clean_shutdown = false;
        s.streaming = false;
    }
}

/// The simulated fence guard: what `fence::check_once` does, with the
/// model's immediate stop in place of killing processes, and the real
/// guards' schedule (`fence::sleep_after`: until the armed deadline, at
/// most 200 ms between looks).
async fn guard(path: std::path::PathBuf, id: u64, servers: Servers) {
    loop {
        let state = fence::read(&path);
        let now = haraft_agent::clock::boottime();
        let sleep = match &state {
            Some(FenceState::Armed { deadline, .. }) if now >= *deadline => {
                crash_db(&servers, id);
                let _ = fence::write(&path, &FenceState::Fenced);
                tracing::warn!(
                    node = id,
                    "simulated fence guard: lease deadline passed without renewal: stopped the database"
                );
                fence::sleep_after(None, now)
            }
            other => fence::sleep_after(other.as_ref(), now),
        };
        tokio::time::sleep(sleep).await;
    }
}
