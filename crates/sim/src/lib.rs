//! haraft's cluster simulator: the real agents (`haraft_agent::embedded`:
//! the same Raft, driver, database side and admin service as the daemon)
//! over the simulated sides of each seam, on one paused-time tokio runtime
//! per seed, with faults injected from the seed and invariants checked
//! every 5 virtual milliseconds.
//!
//! - [`model`]: PostgreSQL servers as data (timelines, WAL positions,
//!   streaming, synchronous commit); [`adapter`]: the `Database` trait over it
//! - [`net`]: the router (Raft and admin calls; cut, loss, delay, duplicates)
//! - [`cluster`]: members started, crashed, restarted; the simulated fence guard
//! - [`faults`]: the faults a seed injects and what each schedules for later
//! - [`run`]: one seed: the writing client, the checker, the trace
//!
//! What it must never do: change how an agent decides or acts. Anything
//! the agent needs from the world comes through a seam it also has in
//! production; the simulator only provides the other side.

pub mod adapter;
pub mod cluster;
pub mod faults;
pub mod model;
pub mod net;
pub mod rng;
pub mod run;
