//! Waiting for Raft to stop on its own (a storage or other fatal error), so
//! that the daemon can exit and let its supervisor restart it.
//!
//! The wait is on openraft's server metrics (role, vote, leader,
//! membership), which change a few times a day, not on its full metrics,
//! which change with every heartbeat answer: a waiter on those would be
//! woken 20–30 times a second for nothing (the daemon's main thread was,
//! until 2026-12-07). Raft's core drops the server metrics' sender when it
//! stops, and sets the reason in the full metrics before it does.

use crate::types::Raft;

/// Resolves when `raft` has stopped, with the reason.
pub async fn stopped(raft: &Raft) -> String {
    let mut server = raft.server_metrics();
    loop {
        if let Err(e) = &raft.metrics().borrow().running_state {
            return e.to_string();
        }
        if server.changed().await.is_err() {
            return match &raft.metrics().borrow().running_state {
                Err(e) => e.to_string(),
                Ok(()) => "raft's core ended without giving a reason".to_string(),
            };
        }
    }
}
