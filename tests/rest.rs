//! The REST API of real agents managing real PostgreSQL 15: the health
//! endpoints' status codes on a primary, replicas, a stopped and a fenced
//! node (a cut-off primary says 503 on /primary before any other member
//! says 200), the documents, Prometheus metrics, and callbacks.

use haraft_testkit::check::{history, members, primary_id, wait_normal, wait_status};
use haraft_testkit::http::{self, Reply};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::{prom, wait_for};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ENDPOINTS: [&str; 7] = ["/primary", "/replica", "/read-only", "/leader", "/health", "/liveness", "/readiness"];

async fn get(c: &ProcCluster, id: u64, path: &str) -> Reply {
    let address = &c.rest[id as usize - 1];
    http::get(address, path).await.unwrap_or_else(|e| panic!("node{id} {path}: {e}"))
}

async fn codes(c: &ProcCluster, id: u64) -> Vec<u16> {
    let mut out = Vec::new();
    for path in ENDPOINTS {
        out.push(get(c, id, path).await.status);
    }
    out
}

/// Waits until node `id` answers `expected` on every endpoint in ENDPOINTS
/// (observations lag the database by up to half a second).
async fn wait_codes(c: &ProcCluster, id: u64, what: &str, expected: [u16; 7]) {
    let start = Instant::now();
    loop {
        let got = codes(c, id).await;
        if got == expected {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what}: node{id} answers {got:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metrics_of(reply: &Reply) -> Vec<prom::Sample> {
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    prom::parse(&reply.body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{}", reply.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_documents_and_metrics_by_role() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let status = wait_normal(&c, "bootstrap").await;
    let primary = primary_id(&status).unwrap();
    let replicas: Vec<u64> = (1..=3).filter(|i| *i != primary).collect();

    //                                   pri  rep  ro   lead hlth live ready
    wait_codes(&c, primary, "primary", [200, 503, 200, 200, 200, 200, 200]).await;
    for r in &replicas {
        wait_codes(&c, *r, "streaming replica", [503, 200, 200, 503, 200, 200, 200]).await;
    }
    // HAProxy's httpchk often uses OPTIONS or HEAD: the same codes, and
    // Patroni's older names answer too.
    for (id, code) in [(primary, 200), (replicas[0], 503)] {
        for (method, path) in
            [("HEAD", "/primary"), ("OPTIONS", "/primary"), ("GET", "/master"), ("GET", "/read-write")]
        {
            let reply = http::request(&c.rest[id as usize - 1], method, path).await.unwrap();
            assert_eq!(reply.status, code, "{method} {path} on node{id}");
        }
    }
    // The body says who and why, for people.
    let body = get(&c, primary, "/primary").await.json();
    assert_eq!((body["role"].as_str(), body["node"].as_str()), (Some("primary"), Some(&*format!("node{primary}"))));
    assert!(body["lease_valid_for_ms"].as_u64().is_some_and(|ms| ms > 0), "{body}");
    assert!(body["why"].as_str().unwrap().contains("writable primary"), "{body}");
    let body = get(&c, replicas[0], "/primary").await.json();
    assert_eq!(body["status"], 503);
    assert_eq!(body["why"], "not the primary: holds no valid lease");
    // Lag limits: generous passes, zero is refused only with a lag, a
    // malformed one is a 400 that says what to write.
    assert_eq!(get(&c, replicas[0], "/replica?lag=1TB").await.status, 200);
    assert_eq!(get(&c, replicas[0], "/readiness?lag=16MB").await.status, 200);
    let bad = get(&c, replicas[0], "/replica?lag=lots").await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("lag=\"lots\" is not a size"), "{}", bad.body);
    let missing = get(&c, primary, "/primaryy").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().starts_with("no endpoint /primaryy: use one of /primary"));
    let post = http::request(&c.rest[0], "POST", "/primary").await.unwrap();
    assert_eq!(post.status, 405);

    // /cluster is `haraftctl status --json`; /history is `history --json`.
    for id in 1..=3 {
        let doc = get(&c, id, "/cluster").await.json();
        assert_eq!(primary_id(&doc), Some(primary), "{doc}");
        assert_eq!(members(&doc).len(), 3);
        assert_eq!(doc["answered_by"], status["answered_by"], "followers answer with the Raft leader's view");
        let history = get(&c, id, "/history").await.json();
        assert!(history.as_array().unwrap().iter().any(|h| h["event"] == "bootstrapped"), "{history}");
    }

    // haraftctl dsn: every member, the primary first.
    let (code, dsn, err) = c.ctl(&["dsn"]);
    assert_eq!(code, 0, "{err}");
    let pg = c.pg.as_ref().unwrap();
    let primary_host = format!("postgresql://postgres@127.0.0.1:{},", pg.ports[primary as usize - 1]);
    assert!(dsn.trim().starts_with(&primary_host), "{dsn}");
    assert!(dsn.trim().ends_with("/postgres?target_session_attrs=read-write"), "{dsn}");

    // Metrics parse as Prometheus text and say the same as the checks.
    let epoch = status["epoch"].as_u64().unwrap() as f64;
    for id in 1..=3 {
        let samples = metrics_of(&get(&c, id, "/metrics").await);
        let v = |name: &str, labels: &[(&str, &str)]| prom::value(&samples, name, labels);
        let is_primary = if id == primary { 1.0 } else { 0.0 };
        assert_eq!(v("haraft_primary", &[]), Some(is_primary), "node{id}");
        assert_eq!(v("haraft_role", &[("role", "primary")]), Some(is_primary), "node{id}");
        assert_eq!(v("haraft_role", &[("role", "replica")]), Some(1.0 - is_primary), "node{id}");
        assert_eq!(v("haraft_epoch", &[]), Some(epoch));
        assert_eq!(v("haraft_postgres_running", &[]), Some(1.0));
        assert_eq!(v("haraft_postgres_timeline", &[]), Some(1.0));
        assert!(v("haraft_raft_term", &[]).is_some_and(|t| t >= 1.0));
        assert!(v("haraft_raft_leader_id", &[]).is_some_and(|l| (1.0..=3.0).contains(&l)));
        assert!(v("haraft_loop_duration_seconds_count", &[]).is_some_and(|n| n > 10.0));
        assert_eq!(v("haraft_failovers_total", &[]), Some(0.0));
        assert!(samples.iter().any(|s| s.name == "haraft_last_decision_info"), "node{id}: no decision yet");
        let lease_left = v("haraft_lease_remaining_seconds", &[]).unwrap();
        assert_eq!(lease_left > 0.0, id == primary, "node{id}: lease remaining {lease_left}");
        if id != primary {
            assert!(v("haraft_replication_lag_bytes", &[]).is_some(), "node{id}: a replica reports its lag");
        }
    }

    // A stopped node: in maintenance mode nothing restarts a replica's
    // PostgreSQL killed under it.
    let (code, _, err) = c.ctl(&["pause"]);
    assert_eq!(code, 0, "{err}");
    let stopped = replicas[1];
    assert!(c.kill_postgres(stopped) > 0, "no PostgreSQL process on node{stopped}");
    wait_codes(&c, stopped, "stopped replica", [503, 503, 503, 503, 503, 200, 503]).await;
    let samples = metrics_of(&get(&c, stopped, "/metrics").await);
    assert_eq!(prom::value(&samples, "haraft_role", &[("role", "stopped")]), Some(1.0));
    assert_eq!(prom::value(&samples, "haraft_paused", &[]), Some(1.0));
    let (code, _, err) = c.ctl(&["resume"]);
    assert_eq!(code, 0, "{err}");
    wait_codes(&c, stopped, "replica started again", [503, 200, 200, 503, 200, 200, 200]).await;
}

/// Polls `/primary` on every node every 20 ms and records who said 200
/// when, until stopped.
struct PrimaryWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, u64, u16)>>,
}

impl PrimaryWatch {
    fn start(rest: Vec<String>) -> PrimaryWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let limit = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < limit {
                for (i, address) in rest.iter().enumerate() {
                    if let Ok(r) = http::get(address, "/primary").await {
                        seen.push((Instant::now(), i as u64 + 1, r.status));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        });
        PrimaryWatch { stop, task }
    }

    async fn stop(self) -> Vec<(Instant, u64, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("watch task")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_primary_says_503_on_primary_before_any_other_node_says_200() {
    let (mut c, chaos) = ProcCluster::with_chaos(3, "").await;
    c.start_all();
    let first = primary_id(&wait_normal(&c, "bootstrap").await).unwrap();
    wait_codes(&c, first, "primary", [200, 503, 200, 200, 200, 200, 200]).await;
    let watch = PrimaryWatch::start(c.rest.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Cut off from the other agents and replicas (Raft and replication);
    // its REST API and PostgreSQL stay reachable, as for a load balancer
    // on its side of the partition.
    chaos.isolate(first);
    let majority: Vec<u64> = (1..=3).filter(|i| *i != first).collect();
    let second = wait_for("a new primary on the majority side", Duration::from_secs(60), || {
        c.status_via(&majority).and_then(|s| primary_id(&s).filter(|p| *p != first))
    })
    .await;
    // The fenced node: no lease, PostgreSQL stopped by the fence or, once
    // it looked again, started as a standby that cannot stream.
    let fenced = get(&c, first, "/primary").await;
    assert_eq!(fenced.status, 503, "{}", fenced.body);
    assert_eq!(get(&c, first, "/leader").await.status, 503);
    assert_eq!(get(&c, first, "/replica").await.status, 503, "a cut-off node streams from nobody");
    let start = Instant::now();
    while get(&c, second, "/primary").await.status != 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "node{second} never said 200 on /primary");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = watch.stop().await;
    chaos.heal();

    let last_old = seen.iter().filter(|(_, n, s)| *n == first && *s == 200).map(|(t, _, _)| *t).max();
    let first_new = seen.iter().filter(|(_, n, s)| *n != first && *s == 200).map(|(t, _, _)| *t).min();
    let (Some(last_old), Some(first_new)) = (last_old, first_new) else {
        panic!("the watch saw no 200 from the old ({last_old:?}) or from a new primary ({first_new:?})");
    };
    assert!(
        last_old < first_new,
        "node{first} still said 200 on /primary {:?} after node{second} first did",
        last_old - first_new
    );
    eprintln!(
        "/primary: node{first} last said 200 {:?} before node{second} first did",
        first_new.duration_since(last_old)
    );
    let healed = wait_normal(&c, "the old primary back as a replica").await;
    assert_eq!(primary_id(&healed), Some(second));
    wait_codes(&c, first, "old primary as a replica", [503, 200, 200, 503, 200, 200, 200]).await;
    let samples = metrics_of(&get(&c, second, "/metrics").await);
    let counts = ["haraft_failovers_total", "haraft_switchovers_total"].map(|m| prom::value(&samples, m, &[]));
    assert_eq!(counts, [Some(1.0), Some(0.0)], "failovers, switchovers; the history: {:#?}", history(&c));
}

/// A callback script: appends its arguments to `out`, one line a call.
fn script(c: &ProcCluster, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = c.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_run_on_start_stop_and_role_change_and_a_hung_one_is_killed() {
    let mut c = ProcCluster::with_postgres(3, "");
    let log = c.dir.path().join("callbacks.log");
    // The line also shows what of the agent's environment reached it.
    let record = script(
        &c,
        "record.sh",
        &format!(
            "echo \"$HARAFT_NODE $* [event=$HARAFT_EVENT pgpassword=${{PGPASSWORD-unset}}]\" >> {}",
            log.display()
        ),
    );
    // on_stop also hangs, holding a child: both are killed after 1 s.
    let hang = script(
        &c,
        "hang.sh",
        &format!(
            "echo \"$HARAFT_NODE $*\" >> {}\nsleep 300 &\necho $! > {}/hung-child.$$\nwait",
            log.display(),
            c.dir.path().display()
        ),
    );
    for node in &c.nodes {
        let mut text = std::fs::read_to_string(&node.config).unwrap();
        text.push_str(&format!(
            "\n[callbacks]\non_start = \"{record}\"\non_role_change = \"{record}\"\non_stop = \"{hang}\"\ntimeout_ms = 1000\n"
        ));
        std::fs::write(&node.config, text).unwrap();
    }
    let (uid, gid) = c.pg.as_ref().unwrap().run_as.unwrap_or((0, 0));
    if uid != 0 {
        std::fs::write(&log, "").unwrap();
        std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::chown(c.dir.path(), Some(uid), Some(gid)).unwrap();
    }
    for id in 1..=3 {
        c.start_with_env(id, &[("PGPASSWORD", "an-operators-own")]);
    }
    let status = wait_normal(&c, "bootstrap").await;
    let old = primary_id(&status).unwrap();
    let target = (1..=3).find(|i| *i != old).unwrap();
    let (code, out, err) = c.ctl(&["switchover", "--to", &format!("node{target}"), "--force"]);
    assert_eq!(code, 0, "switchover failed: {out}{err}");
    wait_status(&c, "switchover done, old primary streaming", |s| {
        primary_id(s) == Some(target) && haraft_testkit::check::normal(s)
    })
    .await;
    let lines = wait_for("callback lines", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let promoted = text.contains(&format!("node{target} on_role_change primary 2 test"));
        let back = text.contains(&format!("node{old} on_start replica 2 test"));
        (promoted && back).then_some(text)
    })
    .await;
    // Callbacks get a minimal environment of their own, not the agent's.
    assert!(lines.contains("[event=on_role_change pgpassword=unset]"), "{lines}");
    assert!(!lines.contains("an-operators-own"), "the agent's environment reached a callback: {lines}");
    // The old primary stopped cleanly (before or after the grant was
    // applied there) and came back as a replica.
    let stopped = |epoch| format!("node{old} on_stop stopped {epoch} test");
    assert!(lines.contains(&stopped(1)) || lines.contains(&stopped(2)), "{lines}");
    let killed = wait_for("the hung on_stop callback killed", Duration::from_secs(15), || {
        let log = c.log(old);
        log.contains("killed after 1000 ms").then_some(log)
    })
    .await;
    assert!(killed.contains("hang.sh on_stop stopped"), "{killed}");
    // Its child went with it: the process group was killed. Every on_stop
    // hangs, and one that started later (another member's stop) is killed
    // a timeout after its start: each child is gone within a bound.
    let alive_children = || -> Vec<String> {
        std::fs::read_dir(c.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("hung-child."))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|pid| pid.trim().to_string())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().starts_with("sleep")
            })
            .collect()
    };
    let started = std::time::Instant::now();
    while !alive_children().is_empty() && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alive = alive_children();
    assert!(
        alive.is_empty(),
        "hung callbacks' children {alive:?} still run 5 s later; callbacks run:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The switchover was not held up by the hung callback: it is done and
    // the history says so.
    let history = history(&c);
    assert!(history.iter().any(|h: &Value| h["event"] == "operation-done"), "{history:?}");
}
