//! Reading `haraftctl status --json` in tests: who is primary, whether the
//! cluster converged, and bounded waits that fail with every node's log.

use crate::procs::ProcCluster;
use serde_json::Value;
use std::time::Duration;

/// How long a PostgreSQL test waits for any one state.
pub const LIMIT: Duration = Duration::from_secs(90);

pub fn members(s: &Value) -> Vec<Value> {
    s["members"].as_array().cloned().unwrap_or_default()
}

/// The one member whose database is a primary, if exactly one is.
pub fn primary_id(s: &Value) -> Option<u64> {
    let m = members(s);
    let primaries: Vec<&Value> = m.iter().filter(|m| m["role"] == "primary").collect();
    (primaries.len() == 1).then(|| primaries[0]["id"].as_u64()).flatten()
}

/// One primary holding a valid lease, every other member streaming from it.
pub fn normal(s: &Value) -> bool {
    s["cluster_state"] == "Normal"
        && primary_id(s).is_some()
        && members(s).iter().filter(|m| m["state"] == "streaming").count() == members(s).len() - 1
        && caught_up(s)
}

/// Every replica within the default `maximum_lag_on_failover` of the
/// primary, so a switchover may pick it. A replica streams before it has
/// caught up: right after a bootstrap one reported streaming exactly a
/// WAL segment (16 MiB) behind, and a switchover to it was refused (CI).
pub fn caught_up(s: &Value) -> bool {
    let limit = haraft_core::timing::Policy::default().maximum_lag_on_failover_bytes;
    members(s).iter().all(|m| m["lag_bytes"].as_u64().is_none_or(|lag| lag <= limit))
}

/// Every node's log, for a failure message.
pub fn logs(c: &ProcCluster) -> String {
    (1..=c.nodes.len() as u64).map(|i| format!("--- node{i}\n{}", c.log(i))).collect::<Vec<_>>().join("\n")
}

/// Waits (bounded) for a status that satisfies `ok`; on timeout, fails
/// with the last status and every node's log.
pub async fn wait_status(c: &ProcCluster, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = c.status().filter(|s| ok(s)) {
            return s;
        }
        if start.elapsed() > LIMIT {
            panic!("timed out waiting for {what}: last status {:?}\n{}", c.status(), logs(c));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn wait_normal(c: &ProcCluster, what: &str) -> Value {
    wait_status(c, what, normal).await
}

/// `haraftctl history --json`, parsed.
pub fn history(c: &ProcCluster) -> Vec<Value> {
    let (code, out, err) = c.ctl(&["history", "--json"]);
    assert_eq!(code, 0, "haraftctl history failed: {err}");
    serde_json::from_str(&out).expect("history is JSON")
}

/// One scenario run's numbers, for `scripts/fault-matrix`: a line
/// `FAULT-REPORT {json}` on stderr (shown with `--no-capture`).
/// `fencing_gap`: from the old primary's last acknowledged write to the new
/// primary's first (None without a change of primary).
pub fn report(scenario: &str, fencing_gap: Option<Duration>, lost: usize, promotions: u64) {
    let line = serde_json::json!({
        "scenario": scenario,
        "fencing_gap_ms": fencing_gap.map(|g| g.as_millis() as u64),
        "lost": lost,
        "promotions": promotions,
    });
    eprintln!("FAULT-REPORT {line}");
}
