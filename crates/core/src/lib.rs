//! haraft's pure decisions.
//!
//! What it is for: the replicated [`ClusterState`] and the [`Command`]s that
//! change it ([`ClusterState::apply`]), the lease arithmetic and both sides of
//! the lease contract ([`lease`]), the planner that runs on the Raft leader
//! ([`plan`]), the status document ([`status`]), and the cluster feature
//! level that lets members of two releases work together ([`features`]).
//!
//! What it must never do: I/O, clock reads, tokio, openraft, sled or tonic.
//! Time comes in as an argument ([`BootTime`]); rejections are values.

pub mod adopt;
pub mod auth;
pub mod backoff;
pub mod db;
pub mod dm_switchover;
pub mod features;
pub mod health;
pub mod history;
pub mod ids;
pub mod lease;
pub mod loss;
pub mod members;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod reconcile;
pub mod state;
pub mod status;
pub mod sync;
pub mod timing;
pub mod verdicts;
pub mod words;

pub use db::{DbMember, DbPosition, DbRole, DbStatus, Engine, Fork, Replica, slot_name};
pub use features::FeatureLevel;
pub use ids::{BootTime, Epoch, Lsn, NodeId, RenewalSeq, TimelineId};
pub use state::{
    ClusterState, Command, DataOrigin, Effect, HistoryEntry, HistoryEvent, Lease, Member, NodeEvent, OpEvent,
    Operation, Outcome, Rejected, Verdict,
};
pub use timing::{Policy, Timing, TimingError};
