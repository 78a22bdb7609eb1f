//! The database boundary: the `Database` trait (observe and act on the
//! local database, every action carrying the epoch that authorises it and
//! an explicit timeout) and its adapters, PostgreSQL first.
//!
//! What it must never do: decide. It reports observations and carries out
//! one action at a time; `haraft_core`'s reconciler chooses the action.
//!
//! Empty until the PostgreSQL issue: the foundation has no database yet,
//! and nothing depends on this crate.
