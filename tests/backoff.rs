//! A database action that keeps failing backs off, says why, and recovers
//! once the cause is gone: real agents and PostgreSQL 15, a replica whose
//! replication password is wrong (the base backup is refused every time).

use haraft_testkit::check::{logs, members, primary_id, wait_normal, wait_status};
use haraft_testkit::http;
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::prom;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The member whose password is wrong; `nofailover`, so that it never
/// bootstraps the cluster with its own password.
const BROKEN: u64 = 3;
/// How long the failing attempts are counted.
const WATCH: Duration = Duration::from_secs(20);

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

fn failing_of(s: &Value, id: u64) -> Option<Value> {
    members(s).into_iter().find(|m| m["id"] == id).map(|m| m["failing"].clone()).filter(|f| !f.is_null())
}

/// Failed rebuilds so far, by the broken member's log (one warning each).
fn rebuild_attempts(c: &ProcCluster) -> usize {
    c.log(BROKEN).lines().filter(|l| l.contains("in a row, next try in") && l.contains(": rebuild ")).count()
}

/// Writes the broken member's own replication password file (mode 600,
/// owned by the database user like the shared one).
fn write_password(c: &ProcCluster, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = c.dir.path().join("secrets").join("replication-broken");
    std::fs::write(&path, format!("{secret}\n")).expect("write password file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    if let Some((uid, gid)) = c.pg.as_ref().and_then(|p| p.run_as) {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_refused_for_a_wrong_password_backs_off_says_why_and_recovers() {
    let mut c = ProcCluster::with_postgres(3, "");
    let path = c.nodes[BROKEN as usize - 1].config.clone();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[postgresql]\n", "[postgresql]\nnofailover = true\n")
        .replace("\"secrets/replication\"", "\"secrets/replication-broken\"");
    std::fs::write(&path, text).unwrap();
    write_password(&c, "not-the-replication-password");
    c.start_all();

    // The other two form the cluster; the broken member fails its copy.
    let s = wait_status(&c, "a primary and a failing rebuild", |s| {
        primary_id(s).is_some() && failing_of(s, BROKEN).is_some_and(|f| f["action"] == "rebuild")
    })
    .await;
    assert_ne!(primary_id(&s), Some(BROKEN));
    let first = rebuild_attempts(&c);
    tokio::time::sleep(WATCH).await;
    let attempts = rebuild_attempts(&c) - first;
    // Without back-off it tried about once a second (20 in the window);
    // doubling from 1 s allows 5 and jitter one more.
    assert!((1..=6).contains(&attempts), "{attempts} rebuild attempts in {WATCH:?}\n{}", logs(&c));

    // Status (haraftctl and REST) names the action, the error, the count
    // and a next try in the future; the counter agrees.
    let s = c.status().expect("status");
    let failing = failing_of(&s, BROKEN).unwrap_or_else(|| panic!("no failing action in {s}"));
    let error = failing["error"].as_str().unwrap_or_default();
    assert!(error.contains("password authentication failed"), "{failing}");
    assert!(!error.contains('\n'), "{failing}");
    let count = failing["count"].as_u64().unwrap();
    assert!(count >= 3, "{failing}");
    let next_try = failing["next_try_unix_ms"].as_u64().unwrap();
    assert!(next_try > now_unix_ms(), "the next try lies in the past: {failing}");
    let (code, table, _) = c.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(table.contains("rebuild failed") && table.contains("password authentication failed"), "{table}");
    let rest = http::get(&c.rest[0], "/cluster").await.expect("REST /cluster");
    assert!(failing_of(&rest.json(), BROKEN).is_some_and(|f| f["action"] == "rebuild"), "{}", rest.body);
    let metrics = http::get(&c.rest[BROKEN as usize - 1], "/metrics").await.expect("REST /metrics");
    let samples = prom::parse(&metrics.body).expect("Prometheus text");
    let failed =
        prom::value(&samples, "haraft_database_actions_total", &[("action", "rebuild"), ("outcome", "failed")]);
    assert!(failed.is_some_and(|n| n >= count as f64), "{}", metrics.body);

    // Fixed, and asked for: the operator's rebuild runs at once, whatever
    // the back-off had scheduled, copies and streams; nothing is failing.
    write_password(&c, "test-replication-secret");
    let operator_runs = operator_tasks(&c);
    let (code, out, err) = c.ctl(&["rebuild", &format!("node{BROKEN}"), "--force"]);
    assert_eq!(code, 0, "{out}{err}\n{}", logs(&c));
    let s = wait_normal(&c, "the broken member streaming after the fix").await;
    assert!(failing_of(&s, BROKEN).is_none(), "still failing after it recovered: {s}");
    assert!(operator_tasks(&c) > operator_runs, "the operator's rebuild never ran\n{}", logs(&c));
}

/// Database actions the broken member ran for an operator's request.
fn operator_tasks(c: &ProcCluster) -> usize {
    c.log(BROKEN).matches("because operator-task").count()
}
