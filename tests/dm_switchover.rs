//! Dameng's switchover under haraft (`core::dm_switchover`): three agents
//! on dm-emul (DM8's tools emulated over PostgreSQL 15; see
//! crates/testkit/src/bin/dm_emul for what it follows and where it cannot
//! be faithful).
//!
//! - a switchover under a writer: every acknowledged write kept, no two
//!   servers acknowledging writes at once, never two instances OPEN in
//!   PRIMARY mode (sampled through disql), and `haraftctl history` reading
//!   like the seed's monitor log, one line per step with its node;
//! - a crash (exit, like kill -9 of the agent alone) of whichever agent
//!   reaches each DM step's report, restarted at once: the switchover is
//!   resumed or rolled back, the same checks hold.

use haraft_testkit::check::{history, logs, primary_id, wait_normal};
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::writer::{self, Writer};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(20);
const WRITER_LIMIT: Duration = Duration::from_secs(240);

fn name(id: u64) -> String {
    format!("node{id}")
}

/// Samples every instance's `V$INSTANCE` through disql until stopped; a
/// violation is two instances seen OPEN in PRIMARY mode in one round and
/// both still so when looked at again after it (so that the two were
/// OPEN PRIMARY at the same moment).
struct OpenPrimaries {
    stop: Arc<AtomicBool>,
    task: std::thread::JoinHandle<(usize, Vec<String>)>,
}

fn open_primary(disql: &std::path::Path, password: &str, port: u16) -> bool {
    let logon = format!("SYSDBA/{password}@127.0.0.1:{port}");
    let out =
        std::process::Command::new(disql).args(["-S", &logon, "-e", "SELECT MODE$, STATUS$ FROM V$INSTANCE"]).output();
    let Ok(out) = out else { return false };
    let Ok(t) = haraft_db::dameng::disql::parse_table(&String::from_utf8_lossy(&out.stdout)) else { return false };
    t.value(0, "MODE$") == Some("PRIMARY") && t.value(0, "STATUS$") == Some("OPEN")
}

impl OpenPrimaries {
    fn start(c: &ProcCluster) -> OpenPrimaries {
        let pg = c.pg.as_ref().unwrap();
        let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
        let disql = c.dir.path().join("dameng/bin/disql");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = std::thread::spawn(move || {
            let (mut rounds, mut violations) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let first: Vec<u16> = ports.iter().copied().filter(|p| open_primary(&disql, &password, *p)).collect();
                if first.len() > 1 {
                    let again: Vec<u16> =
                        first.iter().copied().filter(|p| open_primary(&disql, &password, *p)).collect();
                    if again.len() > 1 {
                        violations.push(format!("ports {again:?} OPEN PRIMARY together"));
                    }
                }
                rounds += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (rounds, violations)
        });
        OpenPrimaries { stop, task }
    }

    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.join().expect("the sampler")
    }
}

/// The history entries of operation `id`.
fn operation(c: &ProcCluster, id: u64) -> Vec<Value> {
    history(c).into_iter().filter(|h| h["operation"].as_u64() == Some(id)).collect()
}

fn printed_id(out: &str) -> u64 {
    let tail = out.split("(operation ").nth(1).unwrap_or_else(|| panic!("no operation id in {out:?}"));
    tail.split(')').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no operation id in {out:?}"))
}

fn ended(entries: &[Value]) -> Option<String> {
    entries.iter().find_map(|h| {
        let e = h["event"].as_str().unwrap_or("");
        (e.starts_with("operation-") && e != "operation-requested" && e != "operation-step").then(|| e.to_string())
    })
}

/// `haraftctl history`'s lines about the switchover (text, as an operator reads it).
fn history_text(c: &ProcCluster) -> String {
    let (code, out, err) = c.ctl(&["history"]);
    assert_eq!(code, 0, "haraftctl history: {err}");
    out
}

/// The seed's statements, in order, in the history text.
fn assert_reads_like_the_seed(text: &str, from: u64, to: u64) {
    let (from, to) = (name(from), name(to));
    let order = [
        format!("{from}: switchover begins"),
        format!("{from}: SP_SET_GLOBAL_DW_STATUS(0, 6), ALTER DATABASE MOUNT"),
        format!("{to}: SP_SET_GLOBAL_DW_STATUS(0, 6), SP_APPLY_KEEP_PKG()"),
        format!("{from}: ALTER DATABASE STANDBY"),
        format!("{to} granted epoch"),
        format!("{to}: ALTER DATABASE PRIMARY, archives INVALID, ALTER DATABASE OPEN FORCE"),
        format!("{from}: ALTER DATABASE OPEN FORCE as STANDBY of {to}"),
    ];
    let mut at = 0;
    for line in &order {
        let found = text[at..].find(line.as_str()).unwrap_or_else(|| panic!("{line:?} not (in order) in:\n{text}"));
        at += found + line.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_switchover_under_a_writer_loses_nothing_and_reads_like_the_seed() {
    let mut c = ProcCluster::with_dameng(3, "");
    c.start_all();
    let s = wait_normal(&c, "bootstrap on DM: one OPEN PRIMARY, two streaming STANDBYs").await;
    let from = primary_id(&s).unwrap();
    let to = (1..=3).find(|i| *i != from).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start_as("SYSDBA", &ports, &password, EVERY, WRITER_LIMIT).await;
    let sampler = OpenPrimaries::start(&c);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    let (code, out, err) = c.ctl(&["switchover", "--to", &name(to), "--force", "--wait", "90"]);
    let took = started.elapsed();
    assert_eq!(code, 0, "switchover: {out}{err}\n{}", logs(&c));
    let id = printed_id(&out);
    eprintln!("haraftctl switchover said:\n{out}");
    let end = wait_normal(&c, "converged after the switchover").await;
    assert_eq!(primary_id(&end), Some(to), "{end}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acks = w.stop().await;
    let (rounds, violations) = sampler.stop();
    let committed = writer::committed_ids_as("SYSDBA", &ports, &password).await;
    writer::assert_no_overlap(&acks, "DM switchover");
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "lost {} acknowledged writes: {lost:?}", lost.len());
    assert!(violations.is_empty(), "two OPEN primaries: {violations:?}");
    assert!(rounds > 10, "the OPEN PRIMARY sampler ran only {rounds} rounds");
    assert_eq!(ended(&operation(&c, id)).as_deref(), Some("operation-done"));
    let text = history_text(&c);
    assert_reads_like_the_seed(&text, from, to);
    let old_port = ports[from as usize - 1];
    let gap = writer::switch_gap(&acks, old_port);
    eprintln!(
        "DM-SWITCHOVER node{from} -> node{to}: write unavailability {} ms (last write on the old primary to the first on the new), \
         switchover command {} ms, {} acks, none lost, {rounds} OPEN-PRIMARY samples, none with two",
        gap.map_or(-1, |g| g.as_millis() as i64),
        took.as_millis(),
        acks.len()
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&format!("{id}"))).collect();
    eprintln!("haraftctl history of operation {id}:\n{}", lines.join("\n"));
}

/// Crash whichever agent reaches `point` (armed on every member, fired
/// once), restart it at once (as systemd would), or with `stay_down` only
/// after the CLI answered, while the CLI follows the switchover; the
/// cluster converges with one primary, nothing acknowledged lost, no two
/// primaries at once, and the switchover done or rolled back, as the CLI
/// says. Returns the outcome and the old primary.
async fn crash_at(point: &str, stay_down: bool) -> (Option<String>, u64, Value) {
    let mut c = ProcCluster::with_dameng(3, "");
    let once = c.dir.path().join("failpoint-fired").display().to_string();
    for id in 1..=3 {
        c.start_with_env(id, &[("HARAFT_FAILPOINTS", point), ("HARAFT_FAILPOINT_ONCE", &once)]);
    }
    let s = wait_normal(&c, "bootstrap on DM").await;
    let from = primary_id(&s).unwrap();
    let to = (1..=3).find(|i| *i != from).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = Writer::start_as("SYSDBA", &ports, &password, EVERY, WRITER_LIMIT).await;
    let sampler = OpenPrimaries::start(&c);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut command = c.ctl_command(&["switchover", "--to", &name(to), "--force", "--wait", "120"]);
    let cli = tokio::task::spawn_blocking(move || command.output());
    let mut crashed = Vec::new();
    while !cli.is_finished() {
        for i in 1..=3 {
            if !crashed.contains(&i) && c.exited(i) {
                crashed.push(i);
                if !stay_down {
                    c.start(i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cli = cli.await.unwrap().unwrap();
    let (code, out) = (cli.status.code().unwrap_or(-1), String::from_utf8_lossy(&cli.stdout).to_string());
    let err = String::from_utf8_lossy(&cli.stderr).to_string();
    if stay_down {
        for i in crashed.clone() {
            c.start(i);
        }
    }
    for i in 1..=3 {
        if c.exited(i) {
            if !crashed.contains(&i) {
                crashed.push(i);
            }
            c.start(i);
        }
    }
    assert!(!crashed.is_empty(), "no agent reached failpoint {point}:\n{out}\n{err}\n{}", logs(&c));
    eprintln!("CLI exit {code}\nstdout: {out}\nstderr: {err}");
    let id = printed_id(&out);
    let end = wait_normal(&c, "converged after the crash").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acks = w.stop().await;
    let (_, violations) = sampler.stop();
    let committed = writer::committed_ids_as("SYSDBA", &ports, &password).await;
    writer::assert_no_overlap(&acks, point);
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "{point}: lost {} acknowledged writes: {lost:?}", lost.len());
    assert!(violations.is_empty(), "{point}: two OPEN primaries: {violations:?}");
    let outcome = ended(&operation(&c, id));
    let now = primary_id(&end).unwrap();
    match outcome.as_deref() {
        Some("operation-done") => assert_eq!((code, now), (0, to), "{point}: done\n{out}{err}"),
        Some("operation-rolled-back") => assert_eq!(code, 1, "{point}: rolled back\n{out}{err}"),
        other => {
            panic!("{point}: neither resumed to done nor rolled back: {other:?}\n{out}\n{err}\n{}", history_text(&c))
        }
    }
    eprintln!(
        "DM-CRASH {point}: crashed {crashed:?} (old primary node{from}, target node{to}); CLI exit {code}; {outcome:?}; \
         primary now node{now}; {} acks, none lost, never two OPEN primaries",
        acks.len()
    );
    (outcome, from, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_primary_crashes_after_its_snapshot() {
    crash_at("before-dm-snapshot", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_primary_crashes_in_mount_before_reporting_it() {
    crash_at("before-dm-old-mounted", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_crashes_after_applying_the_kept_redo() {
    crash_at("before-dm-target-mounted", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_primary_crashes_as_standby_before_giving_the_lease_up() {
    crash_at("before-dm-old-standby", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_crashes_before_granting_the_target() {
    crash_at("before-switchover-grant", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_crashes_open_as_primary_before_reporting_it() {
    crash_at("before-dm-target-opened", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_primary_crashes_streaming_before_reporting_it() {
    crash_at("before-dm-old-reopened", false).await;
}

/// The target's agent dies after applying the kept redo and stays down:
/// the old primary, still holding its lease in MOUNT, reopens as PRIMARY
/// under its own epoch when the step times out (rolled back), and the
/// writes go on there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_stays_down_rolls_the_switchover_back_under_the_old_epoch() {
    let (outcome, from, end) = crash_at("before-dm-target-mounted", true).await;
    assert_eq!(outcome.as_deref(), Some("operation-rolled-back"));
    assert_eq!(primary_id(&end), Some(from), "{end}");
    assert_eq!(end["epoch"], 1, "rolled back under the old primary's own epoch: {end}");
}
