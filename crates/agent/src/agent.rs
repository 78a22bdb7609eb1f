//! Starting and stopping one agent: store, Raft, gRPC server, event loop.

use crate::admin::AdminService;
use crate::config::{Config, DbEngine};
use crate::driver::{self, AgentEvent};
use crate::shared::{LeaseView, Shared};
use anyhow::{Context, bail};
use haraft_core::{ClusterState, NodeId};
use haraft_raft::identity::{Identity, StoreId};
use haraft_raft::integrity::{self, Expect, Verdict};
use haraft_raft::network::{NetworkFactory, NetworkFaults};
use haraft_raft::server::RaftService;
use haraft_raft::store::{self, Layout};
use haraft_raft::types::RaftMetrics;
use haraft_raft::{Raft, RaftNode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Entries between snapshots. Four renewals a second (the default timing)
/// make ~14,400 entries an hour; a snapshot every 5000 (~21 minutes idle)
/// keeps the log (and a restart's replay) small.
const SNAPSHOT_EVERY_ENTRIES: u64 = 5000;

/// How long a clean shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct AgentHandle {
    pub node: NodeId,
    /// The address the gRPC server actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    /// The REST API, when `rest.listen` is set.
    rest: Option<JoinHandle<()>>,
    driver: JoinHandle<()>,
    events: broadcast::Sender<AgentEvent>,
    guards: Option<Guards>,
}

/// The two fence guards: a thread in this process and a separate process
/// (`haraft --fence-guard`) that outlives a frozen or killed agent.
struct Guards {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    /// Left running on a clean stop: while the fence file holds this
    /// agent's deadline, PostgreSQL stays guarded.
    _process: std::process::Child,
}

impl Guards {
    fn start(fence: std::path::PathBuf) -> anyhow::Result<Guards> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = crate::fence::spawn_thread(fence.clone(), Arc::clone(&stop));
        let exe = std::env::current_exe().context("finding the haraft binary for the fence guard")?;
        use std::os::unix::process::CommandExt;
        // Its own process group: a signal to the agent's group (Ctrl-C, a
        // supervisor's kill) does not take the guard down with it.
        let process = std::process::Command::new(exe)
            .arg("--fence-guard")
            .arg(&fence)
            .arg("--agent-pid")
            .arg(std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the fence guard process")?;
        let pid_file = fence.with_file_name("guard.pid");
        std::fs::write(&pid_file, format!("{}\n", process.id()))
            .with_context(|| format!("writing {}", pid_file.display()))?;
        Ok(Guards { stop, thread, _process: process })
    }
}

impl AgentHandle {
    pub fn faults(&self) -> &NetworkFaults {
        &self.shared.faults
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.events.subscribe()
    }

    pub fn state(&self) -> Arc<ClusterState> {
        self.shared.state()
    }

    pub fn lease(&self) -> LeaseView {
        *self.shared.lease_view.borrow()
    }

    pub fn raft_metrics(&self) -> RaftMetrics {
        self.shared.metrics()
    }

    /// Resolves when Raft stopped on its own (a storage or other fatal
    /// error), with the reason. The daemon exits on it so that its
    /// supervisor restarts it.
    pub async fn fatal(&self) -> String {
        haraft_raft::stopped::stopped(&self.shared.raft).await
    }

    /// Stops the loop, the server and Raft, and releases the data dir.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let _ = self.driver.await;
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.server).await;
        if let Some(rest) = self.rest {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, rest).await;
        }
        self.shared.raft.shutdown().await.map_err(|e| anyhow::anyhow!("stopping raft: {e}"))?;
        if let Some(g) = self.guards {
            g.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = g.thread.join();
        }
        Ok(())
    }
}

/// This member's database side over `db`, having taken over a fence file
/// armed by an earlier agent.
pub(crate) fn db_side<D: haraft_db::Database>(
    config: &Config,
    pg: &crate::config::PgSettings,
    db: D,
) -> crate::database::DbSide<D> {
    let mut side = crate::database::DbSide::new(config, pg.clone(), Arc::new(db));
    side.adopt_fence();
    side
}

pub(crate) fn raft_config(config: &Config) -> anyhow::Result<openraft::Config> {
    let c = openraft::Config {
        cluster_name: config.cluster.clone(),
        heartbeat_interval: config.raft.heartbeat_interval_ms,
        election_timeout_min: config.raft.election_timeout_min_ms,
        election_timeout_max: config.raft.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
        max_in_snapshot_log_to_keep: 1000,
        ..Default::default()
    };
    c.validate().context("raft settings")
}

/// Opens this member's Raft store if [`integrity`] finds it whole and its
/// own, creates a new member's, or refuses (before anything joins Raft or
/// any file changes) with the one line that says what is wrong and what to do.
fn open_store(config: &Config) -> anyhow::Result<store::Opened> {
    let layout = Layout::new(&config.data_dir);
    let expect = Expect {
        cluster: config.cluster.clone(),
        node: config.node.0,
        join: config.join,
        managed_db: crate::database::managed_database(config),
    };
    let opened = match integrity::judge(&integrity::inspect(&layout), &expect) {
        Verdict::Refuse(reason) => {
            tell_members_of_refusal(config, &reason);
            bail!("refusing to start: {reason}")
        }
        Verdict::Open => store::open(&layout)?,
        Verdict::Finish(identity) => store::create(&layout, &identity)?,
        Verdict::Create => {
            let identity = Identity {
                cluster: config.cluster.clone(),
                node: config.node.0,
                store: StoreId(random_u128().context("drawing a random store id")?),
                created_unix_ms: crate::clock::now_unix_ms(),
            };
            tracing::info!(node = %config.node_name, store = %identity.store, data_dir = %config.data_dir.display(), "new member: created its identity and raft store");
            store::create(&layout, &identity)?
        }
    };
    Ok(opened)
}

/// How long a refusing agent tries to tell the other members why.
const REFUSAL_NOTICE_BOUND: Duration = Duration::from_secs(2);

/// Tells every other member (best effort, bounded) why this agent refused
/// to start, so that their status shows it; runs before Raft exists, on a
/// runtime of its own so that it can be called from the synchronous check.
fn tell_members_of_refusal(config: &Config, reason: &str) {
    let notices: Vec<_> = config
        .members
        .iter()
        .filter(|m| m.id != config.node)
        .map(|m| {
            let address = config.dial.raft.get(&m.id).cloned().unwrap_or_else(|| m.address.clone());
            let notice = haraft_proto::admin::RefusalNotice {
                cluster: config.cluster.clone(),
                target: m.id.0,
                from: config.node.0,
                reason: reason.to_string(),
            };
            (address, m.name.clone(), notice)
        })
        .collect();
    let tls = config.tls.as_ref().map(|t| Arc::clone(&t.loaded));
    let send = async move {
        let mut set = tokio::task::JoinSet::new();
        for (address, name, notice) in notices {
            let tls = tls.clone();
            set.spawn(async move {
                let channel = haraft_raft::network::lazy_channel(&address, tls.as_deref().map(|t| (t, name.as_str())))
                    .map_err(|e| e.to_string())?;
                let mut client = haraft_proto::admin::admin_client::AdminClient::new(channel);
                client.refused(notice).await.map(|_| ()).map_err(|e| e.message().to_string())
            });
        }
        let _ = tokio::time::timeout(REFUSAL_NOTICE_BOUND, async { while set.join_next().await.is_some() {} }).await;
    };
    // `start` runs inside the agent's runtime: a nested one must run on a
    // thread of its own.
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(send);
        }
    })
    .join();
}

fn random_u128() -> std::io::Result<u128> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u128::from_le_bytes(bytes))
}

/// Starts an agent bound to `config.listen`. With `listener` the caller
/// passes an already bound socket (tests bind port 0 first).
pub async fn start(config: Config, listener: Option<tokio::net::TcpListener>) -> anyhow::Result<AgentHandle> {
    let (log_store, sm_store, applied) = open_store(&config)?;
    {
        let state = applied.borrow();
        if !state.state.cluster.is_empty() && state.state.cluster != config.cluster {
            bail!(
                "data directory {} belongs to cluster {:?} but the config names cluster {:?}: point node.data_dir elsewhere or fix cluster.name",
                config.data_dir.display(),
                state.state.cluster,
                config.cluster
            );
        }
    }
    let committed = log_store.committed();
    let write_format = log_store.write_format();
    let faults = NetworkFaults::default();
    let dial = config.dial.raft.iter().map(|(id, a)| (id.0, a.clone())).collect();
    let tls = config.tls.as_ref().map(|t| Arc::clone(&t.loaded));
    let network =
        NetworkFactory::new(&config.cluster, config.node.0, faults.clone(), dial, tls.clone(), write_format.clone());
    let raft = Raft::new(config.node.0, Arc::new(raft_config(&config)?), network, log_store, sm_store)
        .await
        .context("starting raft")?;

    let listener = match listener {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding node.listen {}", config.listen))?,
    };
    let local_addr = listener.local_addr()?;
    // Bound before anything else starts (the database side, the fence
    // guards): a port in use stops the agent with nothing left behind.
    let rest_listener = match config.rest_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding rest.listen {address}: is another agent or service using it?"))?,
        ),
        None => None,
    };

    let (lease_tx, lease_rx) = watch::channel(LeaseView::default());
    let shared = Arc::new(Shared::new(config.clone(), raft.clone(), applied, committed, lease_rx, faults.clone()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (events, _) = broadcast::channel(1024);

    let server = {
        let mut stop = shutdown_rx.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            builder = builder.tls_config(tls.server()).context("tls: the certificate or key file is not usable")?;
        }
        let router = builder
            .add_service(RaftService::new(
                raft.clone(),
                &config.cluster,
                config.node.0,
                faults,
                tls.is_some(),
                config.members.iter().map(|m| (m.id.0, m.name.clone())).collect(),
                write_format,
            ))
            .add_service(AdminService::new(Arc::clone(&shared)));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::error!(error = %e, "grpc server stopped");
            }
        })
    };

    join_if_pristine(&config, &raft).await?;

    // SAFETY: geteuid has no preconditions.
    if config.postgres.is_some() && unsafe { libc::geteuid() } == 0 {
        bail!(
            "haraft manages a PostgreSQL-family database, which refuses to run as root: run the agent as the database OS user (e.g. postgres)"
        );
    }
    let rest = match rest_listener {
        Some(listener) => {
            tracing::info!(node = %config.node_name, listen = %listener.local_addr()?, "rest api started");
            let https = match (config.rest_tls, &config.tls) {
                (true, Some(t)) => Some(t.loaded.https_server().map_err(|e| anyhow::anyhow!("rest.tls: {e}"))?),
                _ => None,
            };
            Some(tokio::spawn(crate::rest::serve(listener, Arc::clone(&shared), shutdown_rx.clone(), https)))
        }
        None => None,
    };
    tokio::spawn(crate::features::raise_when_every_member_can(Arc::clone(&shared), shutdown_rx.clone()));
    let start = DriverStart { shared: Arc::clone(&shared), lease_tx, events: events.clone(), shutdown: shutdown_rx };
    let (driver, guards) = match &config.postgres {
        Some(pg) => {
            let cfg = crate::database::db_config(&config, pg);
            match pg.engine {
                DbEngine::Postgres => start.with_db(&config, pg, haraft_db::postgres::Postgres::new(cfg))?,
                DbEngine::OpenGauss => start.with_db(&config, pg, haraft_db::opengauss::OpenGauss::new(cfg))?,
                DbEngine::Dameng => start.with_db(&config, pg, haraft_db::dameng::Dameng::new(cfg))?,
            }
        }
        None => (start.without_db(), None),
    };
    tracing::info!(node = %config.node_name, id = config.node.0, cluster = %config.cluster, listen = %local_addr, "agent started");
    Ok(AgentHandle {
        node: config.node,
        local_addr,
        shared,
        shutdown: shutdown_tx,
        server,
        rest,
        driver,
        events,
        guards,
    })
}

/// A pristine store joins the static membership. Every listed member
/// may do this: openraft accepts the same initial membership from
/// several nodes, and a node with any Raft state skips it.
pub(crate) async fn join_if_pristine(config: &Config, raft: &Raft) -> anyhow::Result<()> {
    let initialized = raft.is_initialized().await.context("reading raft state")?;
    if !initialized && config.join {
        tracing::info!(
            node = %config.node_name,
            "node.join = true: waiting to be added; on a member run: haraftctl member add {} --id {} --address {}",
            config.node_name,
            config.node.0,
            config.member(config.node).map_or("?", |m| m.address.as_str())
        );
    }
    if !initialized && !config.join {
        let members: BTreeMap<u64, RaftNode> = config
            .members
            .iter()
            .map(|m| (m.id.0, RaftNode { name: m.name.clone(), address: m.address.clone() }))
            .collect();
        // Local only (it waits for the membership entry to be flushed here,
        // not for a quorum), but bounded like every other Raft call.
        let timeout = Duration::from_millis(config.raft.write_timeout_ms);
        match tokio::time::timeout(timeout, raft.initialize(members)).await {
            Ok(Ok(())) => {
                tracing::info!(node = %config.node_name, "pristine data dir: started Raft with the member list from the config")
            }
            Ok(Err(e)) => tracing::info!(node = %config.node_name, "not initializing: {e}"),
            Err(_) => bail!("initializing raft did not finish within {} ms", config.raft.write_timeout_ms),
        }
    }
    Ok(())
}

/// What the driver is started with, whichever the database engine.
struct DriverStart {
    shared: Arc<Shared>,
    lease_tx: watch::Sender<LeaseView>,
    events: tokio::sync::broadcast::Sender<AgentEvent>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl DriverStart {
    /// The driver with this member's database side over `db`, and the
    /// fence guards of its fence file.
    fn with_db<D: haraft_db::Database>(
        self,
        config: &Config,
        pg: &crate::config::PgSettings,
        db: D,
    ) -> anyhow::Result<(tokio::task::JoinHandle<()>, Option<Guards>)> {
        let mut side = db_side(config, pg, db);
        // A promote request in the data directory wakes the loop.
        side.dir_watched = true;
        let guards = Guards::start(side.fence_path().clone())?;
        let driver = tokio::spawn(driver::run(
            self.shared,
            Some(side),
            self.lease_tx,
            self.events,
            self.shutdown,
            driver::Gate::open(),
        ));
        Ok((driver, Some(guards)))
    }

    /// A member without a database (a Raft voter only); the type names no
    /// adapter that ever runs.
    fn without_db(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(driver::run::<haraft_db::postgres::Postgres>(
            self.shared,
            None,
            self.lease_tx,
            self.events,
            self.shutdown,
            driver::Gate::open(),
        ))
    }
}
