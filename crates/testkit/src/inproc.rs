//! Several agents in one process, each with its own data dir and a real
//! gRPC listener on 127.0.0.1 port 0.

use crate::node_config;
use haraft_agent::config::Config;
use haraft_agent::{AgentHandle, start};
use haraft_core::{ClusterState, NodeId};
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    configs: Vec<Config>,
    agents: Vec<Option<AgentHandle>>,
}

impl Cluster {
    /// Starts `n` agents; `extra` is appended to every node's config (e.g. a
    /// `[lease]` section).
    pub async fn start(n: usize, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind port 0"));
        }
        let addresses: Vec<String> = listeners.iter().map(|l| l.local_addr().expect("bound").to_string()).collect();
        let mut configs = Vec::new();
        for id in 1..=n as u64 {
            let text = node_config("test", id, &dir.path().join(format!("node{id}")), &addresses, extra);
            configs.push(haraft_agent::config::parse(&format!("node{id}.toml"), &text).expect("test config is valid"));
        }
        let mut agents = Vec::new();
        for (config, listener) in configs.iter().zip(listeners) {
            agents.push(Some(start(config.clone(), Some(listener)).await.expect("agent starts")));
        }
        Cluster { dir, configs, agents }
    }

    pub fn size(&self) -> usize {
        self.configs.len()
    }

    /// The running agent with this id (1-based).
    pub fn agent(&self, id: u64) -> &AgentHandle {
        self.agents[id as usize - 1].as_ref().expect("agent is running")
    }

    pub fn running(&self) -> impl Iterator<Item = &AgentHandle> {
        self.agents.iter().flatten()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.agents[id as usize - 1].is_some()
    }

    /// Stops one agent cleanly; its data dir stays.
    pub async fn stop(&mut self, id: u64) {
        if let Some(a) = self.agents[id as usize - 1].take() {
            a.shutdown().await.expect("agent stops");
        }
    }

    /// Starts a stopped agent again on its old address and data dir.
    pub async fn restart(&mut self, id: u64) {
        self.try_restart(id).await.expect("agent restarts");
    }

    /// `restart`, returning the agent's refusal instead of panicking.
    pub async fn try_restart(&mut self, id: u64) -> Result<(), String> {
        let config = self.configs[id as usize - 1].clone();
        let listener = TcpListener::bind(config.listen).await.expect("rebind the node's port");
        self.agents[id as usize - 1] = Some(start(config, Some(listener)).await.map_err(|e| format!("{e:#}"))?);
        Ok(())
    }

    /// Node `id`'s `node.data_dir`.
    pub fn data_dir(&self, id: u64) -> std::path::PathBuf {
        self.configs[id as usize - 1].data_dir.clone()
    }

    /// The Raft leader that the running agents agree on.
    pub fn leader(&self) -> Option<NodeId> {
        let mut leaders = self.running().map(|a| a.raft_metrics().current_leader);
        let first = leaders.next()??;
        let agree = leaders.all(|l| l == Some(first));
        (agree && self.is_running(first)).then_some(NodeId(first))
    }

    /// The applied state of the most advanced running agent.
    pub fn state(&self) -> Arc<ClusterState> {
        self.running()
            .map(|a| a.state())
            .max_by_key(|s| (s.epoch, s.lease.map(|l| l.renewal)))
            .expect("an agent is running")
    }

    /// The running node whose own clock says its lease is valid.
    pub fn valid_holders(&self) -> Vec<NodeId> {
        self.running().filter(|a| a.lease().valid_until.is_some()).map(|a| a.node).collect()
    }

    pub async fn shutdown(mut self) {
        for id in 1..=self.size() as u64 {
            self.stop(id).await;
        }
    }
}
