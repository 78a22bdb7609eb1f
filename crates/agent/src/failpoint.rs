//! Crash points for the end-to-end tests: with
//! `HARAFT_FAILPOINTS=name[,name...]` in its environment, the agent exits
//! at once (no cleanup, like a kill -9 of the agent alone) when it reaches
//! a named point. The tests use them to crash an agent at an exact step of
//! a workflow. Without the variable each check is a read of a cached
//! empty list.
//!
//! With `HARAFT_FAILPOINT_ONCE=FILE` as well, a point fires only if FILE
//! does not exist yet, and creates it: armed on every member, it crashes
//! only the first to reach it.
//!
//! Points: `before-switchover-demoted` (old primary, stopped, about to give
//! the lease up), `before-switchover-promote` (target, granted, about to
//! promote), `before-switchover-grant` (Raft leader, about to grant the
//! target its epoch), `before-switchover-promoted` (target, promoted,
//! about to report it), `before-switchover-rejoined` (old primary,
//! streaming from the target, about to report it), `before-dm-snapshot`,
//! `before-dm-old-mounted`, `before-dm-target-mounted`,
//! `before-dm-old-standby`, `before-dm-target-opened`,
//! `before-dm-old-reopened` (a Dameng switchover step's statements ran,
//! its report is about to be proposed), `before-promote`,
//! `before-rewind`, `before-rebuild` (any member, about to carry out that
//! action, whatever asked for it).

use std::sync::OnceLock;

static POINTS: OnceLock<Vec<String>> = OnceLock::new();

/// Exits the process if `name` is set.
pub fn hit(name: &str) {
    let points = POINTS.get_or_init(|| {
        std::env::var("HARAFT_FAILPOINTS")
            .map(|v| v.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default()
    });
    if points.iter().any(|p| p == name) {
        if let Ok(once) = std::env::var("HARAFT_FAILPOINT_ONCE") {
            // create_new: exactly one process wins.
            if std::fs::OpenOptions::new().write(true).create_new(true).open(&once).is_err() {
                return;
            }
        }
        eprintln!("haraft: failpoint {name} reached: exiting now");
        std::process::exit(86);
    }
}
