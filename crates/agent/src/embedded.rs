//! One agent inside another process's world: the same Raft, driver,
//! database side and admin service as [`crate::agent::start`], but with
//! the Raft network, the Raft store, the calls to other members and the
//! database handed in, and no sockets, files outside `node.data_dir`,
//! threads or child processes of its own. `haraft-sim` runs whole clusters
//! so, under virtual time. The fence guard is the embedder's: it reads the
//! fence file at [`EmbeddedAgent::fence_path`] and stops the database at an
//! armed deadline, as the guard thread and process do.

use crate::admin::AdminService;
use crate::config::Config;
use crate::driver::{self, AgentEvent};
use crate::shared::{LeaseView, PeerCalls, Peers, Shared};
use anyhow::Context;
use haraft_core::NodeId;
use haraft_raft::network::NetworkFaults;
use haraft_raft::server::RaftService;
use haraft_raft::store::Applied;
use haraft_raft::{Raft, TypeConfig};
use openraft::network::RaftNetworkFactory;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// What the embedder provides in place of the daemon's sled store, tonic
/// network and database adapter.
pub struct Parts<N, L, S, D> {
    pub network: N,
    pub log: L,
    pub state_machine: S,
    /// What the state machine publishes after every applied batch.
    pub applied: watch::Receiver<Applied>,
    /// The committed index the log store publishes.
    pub committed: watch::Receiver<Option<u64>>,
    pub peers: Arc<dyn PeerCalls>,
    /// The local database; `None` for a voter without one.
    pub db: Option<D>,
    /// Whether the process runs: `Gate::open()`, or one the embedder closes
    /// to pause the agent (its network side is the embedder's to hold).
    pub gate: driver::Gate,
}

pub struct EmbeddedAgent {
    pub node: NodeId,
    pub shared: Arc<Shared>,
    /// The fence file the database side keeps armed with the lease deadline.
    pub fence_path: Option<PathBuf>,
    raft_service: Arc<RaftService>,
    admin_service: Arc<AdminService>,
    shutdown: watch::Sender<bool>,
    driver: JoinHandle<()>,
    events: broadcast::Sender<AgentEvent>,
}

impl EmbeddedAgent {
    /// The receiving side of this agent's Raft transport.
    pub fn raft_service(&self) -> Arc<RaftService> {
        Arc::clone(&self.raft_service)
    }

    /// The receiving side of this agent's admin API.
    pub fn admin_service(&self) -> Arc<AdminService> {
        Arc::clone(&self.admin_service)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.events.subscribe()
    }

    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// Stops the loop and Raft (a clean stop). An embedder simulating a
    /// crash aborts the agent's tasks instead and drops this handle.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let _ = self.driver.await;
        self.shared.raft.shutdown().await.map_err(|e| anyhow::anyhow!("stopping raft: {e}"))
    }
}

/// Starts an agent over `parts`: Raft, joining the configured membership
/// when its store is pristine, and the driver with its database side.
pub async fn start<N, L, S, D>(config: Config, parts: Parts<N, L, S, D>) -> anyhow::Result<EmbeddedAgent>
where
    N: RaftNetworkFactory<TypeConfig>,
    L: RaftLogStorage<TypeConfig>,
    S: RaftStateMachine<TypeConfig>,
    D: haraft_db::Database,
{
    let faults = NetworkFaults::default();
    let raft_config = Arc::new(crate::agent::raft_config(&config)?);
    let raft = Raft::new(config.node.0, raft_config, parts.network, parts.log, parts.state_machine)
        .await
        .context("starting raft")?;
    let (lease_tx, lease_rx) = watch::channel(LeaseView::default());
    let mut shared =
        Shared::new(config.clone(), raft.clone(), parts.applied, parts.committed, lease_rx, faults.clone());
    shared.peers = Peers::Calls(parts.peers);
    let shared = Arc::new(shared);
    let raft_service = Arc::new(RaftService::plain(
        raft.clone(),
        &config.cluster,
        config.node.0,
        faults,
        false,
        config.members.iter().map(|m| (m.id.0, m.name.clone())).collect(),
        // Every simulated member runs this build: replies in the newest
        // format (the feature level's switch is not simulated).
        haraft_raft::codec::WriteFormat::new(haraft_raft::codec::Format::NEWEST),
    ));
    let admin_service = Arc::new(AdminService::plain(Arc::clone(&shared)));
    crate::agent::join_if_pristine(&config, &raft).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (events, _) = broadcast::channel(1024);
    let (driver, fence_path) = match (&config.postgres, parts.db) {
        (Some(pg), Some(db)) => {
            let side = crate::agent::db_side(&config, pg, db);
            let fence = side.fence_path().clone();
            let run = driver::run(Arc::clone(&shared), Some(side), lease_tx, events.clone(), shutdown_rx, parts.gate);
            (tokio::spawn(run), Some(fence))
        }
        _ => {
            let run = driver::run::<D>(Arc::clone(&shared), None, lease_tx, events.clone(), shutdown_rx, parts.gate);
            (tokio::spawn(run), None)
        }
    };
    Ok(EmbeddedAgent {
        node: config.node,
        shared,
        fence_path,
        raft_service,
        admin_service,
        shutdown: shutdown_tx,
        driver,
        events,
    })
}
