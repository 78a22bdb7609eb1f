//! Raising the cluster's feature level (`haraft_core::features` decides):
//! on the Raft leader, while the level in force is below what this build
//! knows, probe every member now and then and propose `SetFeatureLevel`
//! once every one of them runs a build that reads the higher level.
//!
//! A task of its own rather than a step of the driver's planner: it
//! decides nothing about leases or databases, runs once per upgrade, and
//! must never delay a renewal or a failover.

use crate::shared::Shared;
use haraft_core::features::{FeatureLevel, LevelReport, next_level};
use haraft_core::{Command, Outcome};
use openraft::ServerState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the leader looks: an upgrade is rare and nothing waits for
/// the raise (the cluster works at the lower level meanwhile), so a few
/// seconds after the last member's upgrade is soon enough, and the probes
/// (one per member) stop once the level is the highest this build knows.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Runs until `shutdown`.
pub async fn raise_when_every_member_can(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            // Biased: no draw from the runtime's unseeded generator.
            biased;
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let current = shared.state().feature_level;
        let metrics = shared.metrics();
        let leading = metrics.state == ServerState::Leader && metrics.current_leader == Some(shared.me().0);
        if current >= FeatureLevel::SUPPORTED || !leading || shared.state().cluster.is_empty() {
            continue;
        }
        let reports: Vec<LevelReport> =
            shared.probe_all().await.into_iter().map(|(id, probe)| (id, probe.ok().map(|p| p.feature_level))).collect();
        let Some(to) = next_level(current, &reports) else {
            tracing::debug!(node = %shared.config.node_name, level = %current, ?reports, "feature level stays: not every member reads a higher one");
            continue;
        };
        let command = Command::SetFeatureLevel { from: current, to, at_unix_ms: crate::clock::now_unix_ms() };
        match shared.propose_here(command).await {
            Ok(Outcome::Applied(_)) => {
                tracing::info!(node = %shared.config.node_name, from = %current, to = %to, "feature level raised: every member runs a build that reads it")
            }
            // Another leader's raise got there first, or the level moved.
            Ok(Outcome::Rejected(why)) => {
                tracing::debug!(node = %shared.config.node_name, "feature level not raised: {why}")
            }
            Err(e) => {
                tracing::warn!(node = %shared.config.node_name, error = %e, "proposing the feature level raise failed; retrying")
            }
        }
    }
}
