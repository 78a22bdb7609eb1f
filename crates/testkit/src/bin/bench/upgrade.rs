//! `haraft-bench upgrade --from COMMIT | --from-bin-dir DIR`: a rolling
//! upgrade under a writer. A 3-node cluster with PostgreSQL starts on the
//! previous build; each replica host's agent is stopped (SIGTERM, as
//! `systemctl stop`: PostgreSQL and the fence guard keep running) and
//! started again on this build; then the primary is switched over to an
//! upgraded member and its host upgraded last. Reports the grants (the
//! one planned switchover is expected, anything more is a failover),
//! acknowledged writes lost, write unavailability inside and outside the
//! switchover, and when the cluster's feature level was raised.
//!
//! `--from COMMIT` builds that commit once (`git archive` of this
//! repository, `cargo build --release`, minutes) into
//! `target/upgrade/COMMIT/` and reuses it afterwards; `--from-bin-dir DIR`
//! takes a directory holding a previous build's `haraft` instead (this
//! build's own `target/release` exercises the procedure against itself).
//! This build's binaries are the ones next to `haraft-bench`.

use crate::{normal, primary_of, runtime, wait_until};
use haraft_testkit::procs::{ProcCluster, binary};
use haraft_testkit::writer::{self, Ack, Writer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A pause in acknowledged writes longer than this counts as
/// unavailability: the writer writes every 10 ms, and on this 2-core
/// machine a busy moment delays one write by up to ~100 ms.
const GAP_COUNTED: Duration = Duration::from_millis(250);

/// How long the leader may take to raise the feature level once every
/// member runs this build: it checks every 5 s (agent `features.rs`).
const RAISE_WITHIN: Duration = Duration::from_secs(20);

pub fn run(from: &str, from_is_dir: bool) -> Result<(), String> {
    let old = if from_is_dir { PathBuf::from(from).join("haraft") } else { build_commit(from)? };
    // Absolute: the agents start in the cluster's directory.
    let old =
        std::fs::canonicalize(&old).map_err(|e| format!("no haraft at {}: {e}: build it first", old.display()))?;
    let new = binary("haraft");
    let runtime = runtime()?;
    let limit = Duration::from_secs(120);
    let mut c = ProcCluster::with_postgres(3, "");
    for node in &mut c.nodes {
        node.haraft = Some(old.clone());
    }
    c.start_all();
    let result = upgrade(&mut c, &new, &runtime, limit);
    if result.is_err() {
        crate::print_logs(&c, 40);
    }
    let report = result?;
    println!("{report}");
    let level = match report["feature_level_raised_after_s"].as_f64() {
        Some(s) => format!(
            "feature level {} -> {} raised {s:.1} s after the last member was upgraded",
            report["feature_level_before"], report["feature_level_after"]
        ),
        None => format!("feature level {} throughout (the previous build knew it)", report["feature_level_after"]),
    };
    println!(
        "rolling upgrade from {from}: {} grants (1 expected: the planned switchover), lost {} of {} acknowledged writes; writes unavailable {:.3} s during the switchover, {:.3} s outside it (gaps over {} ms); {level}",
        report["grants"],
        report["lost_acknowledged_writes"],
        report["acknowledged_writes"],
        report["switchover_unavailability_s"].as_f64().unwrap_or(f64::NAN),
        report["unavailability_outside_switchover_s"].as_f64().unwrap_or(f64::NAN),
        GAP_COUNTED.as_millis(),
    );
    let clean = report["grants"] == 1
        && report["lost_acknowledged_writes"] == 0
        && report["unavailability_outside_switchover_s"].as_f64() == Some(0.0);
    if clean {
        Ok(())
    } else {
        crate::print_logs(&c, 80);
        Err("the upgrade was not clean: see the report and the logs above".into())
    }
}

fn upgrade(
    c: &mut ProcCluster,
    new: &Path,
    runtime: &tokio::runtime::Runtime,
    limit: Duration,
) -> Result<serde_json::Value, String> {
    wait_until("a normal cluster on the previous build", limit, || c.status().is_some_and(|s| normal(&s)))?;
    let before = c.status().ok_or("no status")?;
    // A 0.1 leader's status has no feature level: 0.1 is level 0.
    let (epoch_before, level_before) =
        (before["epoch"].as_u64().unwrap_or(0), before["feature_level"].as_u64().unwrap_or(0));
    let versions_before = versions(&before);
    let primary = primary_of(&before).ok_or("no primary")?;
    let pg = c.pg.as_ref().expect("a cluster with PostgreSQL");
    let (ports, password) = (pg.ports.clone(), pg.superuser_password.clone());
    let w = runtime.block_on(Writer::start(&ports, &password, Duration::from_millis(10), Duration::from_secs(600)));
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));

    // What was being done when, to place each pause in writes.
    let mut steps = vec![(started, "writing on the previous build".to_string())];
    // Replica hosts first, one at a time, each back to normal before the next.
    let replicas: Vec<u64> = (1..=3).filter(|id| *id != primary).collect();
    for &id in &replicas {
        steps.push((Instant::now(), format!("replacing node{id}'s agent (a replica{})", leader_note(c, id))));
        replace_agent(c, id, new, limit)?;
        steps.push((Instant::now(), format!("writing after node{id}'s replacement")));
        // Writes go on in the mixed cluster for a while.
        std::thread::sleep(Duration::from_secs(3));
    }
    // The primary's host: switch over to an upgraded member first.
    let target = replicas[0];
    let switch_started = Instant::now();
    steps.push((switch_started, format!("switchover node{primary} -> node{target}")));
    let out = c
        .ctl_command(&["switchover", "--to", &format!("node{target}"), "--force"])
        .output()
        .map_err(|e| format!("running haraftctl: {e}"))?;
    let switch_ended = Instant::now();
    if !out.status.success() {
        return Err(format!(
            "switchover to node{target} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    steps.push((switch_ended, "after the switchover".to_string()));
    wait_until("a normal cluster after the switchover", limit, || c.status().is_some_and(|s| normal(&s)))?;
    steps.push((
        Instant::now(),
        format!("replacing node{primary}'s agent (the old primary's host{})", leader_note(c, primary)),
    ));
    replace_agent(c, primary, new, limit)?;
    let last_upgraded = Instant::now();
    steps.push((last_upgraded, "writing, every member on the new build".to_string()));
    // (Already at this build's level when the previous build is this one.)
    let supported = u64::from(haraft_core::FeatureLevel::SUPPORTED.0);
    let raised_after = if level_before < supported {
        wait_until("the feature level raised", RAISE_WITHIN, || {
            c.status().is_some_and(|s| s["feature_level"].as_u64() == Some(supported))
        })?;
        Some(last_upgraded.elapsed().as_secs_f64())
    } else {
        None
    };
    // Writes go on at the new level for a while.
    std::thread::sleep(Duration::from_secs(3));
    let after = c.status().ok_or("no status")?;
    let acks = runtime.block_on(w.stop());
    let committed = runtime.block_on(writer::committed_ids(&ports, &password));
    let lost = writer::lost(&acks, &committed).len();
    let (during, outside, pauses) = unavailability(&acks, switch_started, switch_ended, started, &steps);
    Ok(serde_json::json!({
        "bench": "upgrade",
        "versions_before": versions_before,
        "versions_after": versions(&after),
        "grants": after["epoch"].as_u64().unwrap_or(0).saturating_sub(epoch_before),
        "lost_acknowledged_writes": lost,
        "acknowledged_writes": acks.len(),
        "switchover_unavailability_s": during,
        "unavailability_outside_switchover_s": outside,
        "pauses": pauses,
        "steps": steps
            .iter()
            .map(|(at, what)| serde_json::json!({"at_s": at.saturating_duration_since(started).as_secs_f64(), "what": what}))
            .collect::<Vec<_>>(),
        "switchover_s": (switch_ended - switch_started).as_secs_f64(),
        "feature_level_before": level_before,
        "feature_level_after": after["feature_level"],
        "feature_level_raised_after_s": raised_after,
        "seconds": started.elapsed().as_secs_f64(),
        "cluster_state_after": after["cluster_state"],
    }))
}

/// Stops node `id`'s agent as a package upgrade does and starts `new` in
/// its place; waits until the cluster is normal again with it.
fn replace_agent(c: &mut ProcCluster, id: u64, new: &Path, limit: Duration) -> Result<(), String> {
    let stopped = Instant::now();
    c.terminate(id);
    c.nodes[id as usize - 1].haraft = Some(new.to_path_buf());
    c.start(id);
    // A status answered by a Raft leader of the previous build carries no
    // versions (0.1 does not know them): then its being reachable again
    // (the old agent has exited) is what says the new one runs.
    wait_until(&format!("node{id} back on the new build"), limit, || {
        c.status().is_some_and(|s| {
            let member = &s["members"][id as usize - 1];
            normal(&s)
                && member["reachable"] == true
                && member["version"].as_str().is_none_or(|v| v == env!("CARGO_PKG_VERSION"))
        })
    })?;
    eprintln!("node{id}: agent replaced, cluster normal again after {:.2} s", stopped.elapsed().as_secs_f64());
    Ok(())
}

/// ", the Raft leader" when node `id` leads Raft.
fn leader_note(c: &ProcCluster, id: u64) -> &'static str {
    let leader = c.status().and_then(|s| s["leader_id"].as_u64());
    if leader == Some(id) { ", the Raft leader" } else { "" }
}

/// Each member's haraft release as status shows it (`null`: 0.1, which
/// does not say).
fn versions(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["members"].as_array().map(|m| m.iter().map(|m| m["version"].clone()).collect()).unwrap_or_default()
}

/// Seconds without an acknowledged write (pauses over [`GAP_COUNTED`]),
/// overlapping the switchover and outside it, and each pause: when (from
/// `started`), how long, and during which step.
fn unavailability(
    acks: &[Ack],
    switch_started: Instant,
    switch_ended: Instant,
    started: Instant,
    steps: &[(Instant, String)],
) -> (f64, f64, Vec<serde_json::Value>) {
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    let (mut during, mut outside, mut pauses) = (0.0, 0.0, Vec::new());
    for pair in times.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let gap = b - a;
        if gap <= GAP_COUNTED {
            continue;
        }
        if a < switch_ended && b > switch_started {
            during += gap.as_secs_f64();
        } else {
            outside += gap.as_secs_f64();
        }
        let step = steps.iter().rev().find(|(at, _)| *at <= a).map_or("", |(_, what)| what.as_str());
        pauses.push(serde_json::json!({
            "at_s": a.saturating_duration_since(started).as_secs_f64(),
            "seconds": gap.as_secs_f64(),
            "during": step,
        }));
    }
    (during, outside, pauses)
}

/// Builds `commit` of this repository once, into `target/upgrade/COMMIT`
/// (`git archive`, then `cargo build --release --locked` of the agent and
/// haraftctl); returns its `haraft`.
fn build_commit(commit: &str) -> Result<PathBuf, String> {
    let top = output(Command::new("git").args(["rev-parse", "--show-toplevel"]))?;
    let full = output(Command::new("git").args(["rev-parse", "--verify", &format!("{commit}^{{commit}}")]))?;
    let short = &full[..full.len().min(12)];
    let dir = Path::new(top.trim()).join("target/upgrade").join(short);
    let built = dir.join("target/release/haraft");
    if built.is_file() {
        return Ok(built);
    }
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| format!("creating {}: {e}", src.display()))?;
    eprintln!("building {short} into {} (once; minutes)", dir.display());
    let archive = Command::new("sh")
        .arg("-c")
        .arg(format!("git archive {full} | tar -x -C '{}'", src.display()))
        .status()
        .map_err(|e| format!("git archive: {e}"))?;
    if !archive.success() {
        return Err(format!("git archive {full} failed"));
    }
    let build = Command::new("cargo")
        .args(["build", "--release", "--locked", "-p", "haraft-agent", "-p", "haraft-ctl", "--target-dir"])
        .arg(dir.join("target"))
        .current_dir(&src)
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !build.success() {
        return Err(format!("building {short} failed"));
    }
    Ok(built)
}

fn output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
