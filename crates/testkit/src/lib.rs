//! Real multi-node haraft clusters on loopback, for tests and benchmarks.
//!
//! What it is for: [`inproc`] runs several agents in one process over real
//! gRPC (fast, one clock, fault injection by handle); [`procs`] runs the
//! real `haraft` binary per node, each in its own process group, for
//! end-to-end tests and the benchmark.
//!
//! What it must never do: touch a process it did not start, or leave one
//! running: every cluster stops what it started when dropped.

pub mod chaos;
pub mod check;
pub mod dameng;
pub mod disk;
pub mod emulator;
pub mod haproxy;
pub mod http;
pub mod inproc;
pub mod nemesis;
pub mod opengauss;
pub mod procs;
pub mod prom;
pub mod tls;
pub mod writer;

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The config text of one node of a loopback cluster.
pub fn node_config(cluster: &str, id: u64, data_dir: &std::path::Path, addresses: &[String], extra: &str) -> String {
    let mut text =
        format!("[cluster]\nname = \"{cluster}\"\n\n[node]\nid = {id}\ndata_dir = \"{}\"\n\n", data_dir.display());
    for (i, a) in addresses.iter().enumerate() {
        text.push_str(&format!("[[member]]\nid = {}\nname = \"node{}\"\naddress = \"{a}\"\n\n", i + 1, i + 1));
    }
    text.push_str(extra);
    text
}

/// Sends agent logs to the test's captured output (shown for failing
/// tests). Level from `HARAFT_LOG`, default info for haraft crates.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HARAFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=off,haraft_agent=info,haraft_raft=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
