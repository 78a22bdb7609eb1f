//! A member's Raft store damaged, lost or swapped while its agent is
//! stopped, with real agents and real PostgreSQL: the agent refuses to
//! start with a line naming the problem and changes nothing, the other two
//! keep one primary and take writes throughout, and the documented
//! recovery (retire the store, a new id, member replace) brings the member
//! back as a voter whose PostgreSQL streams, without a rebuild.

use haraft_raft::store::Layout;
use haraft_testkit::check::{logs, primary_id, wait_normal, wait_status};
use haraft_testkit::procs::{ProcCluster, binary};
use haraft_testkit::writer::{self, Writer};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Raft parts of a data directory (the store, identity and mark) and
/// their bytes; the database beside them changes on its own.
fn raft_bytes(layout: &Layout) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![layout.raft_dir()];
    for file in [layout.identity(), layout.acked()] {
        if let Ok(bytes) = std::fs::read(&file) {
            out.insert(file, bytes);
        }
    }
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Puts exactly `saved` back as the Raft parts of `layout`.
fn restore(layout: &Layout, saved: &BTreeMap<PathBuf, Vec<u8>>) {
    let _ = std::fs::remove_dir_all(layout.raft_dir());
    let _ = std::fs::remove_file(layout.identity());
    let _ = std::fs::remove_file(layout.acked());
    for (path, bytes) in saved {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// Runs `haraft` for node `id` once, as the database user, and returns
/// its exit code and stderr; an agent still running after 30 s started on
/// what it should have refused, and is killed.
fn run_agent(c: &ProcCluster, id: u64, args: &[&str]) -> (Option<i32>, String) {
    let node = &c.nodes[id as usize - 1];
    let mut cmd = Command::new(binary("haraft"));
    cmd.args(args)
        .arg("--config")
        .arg(&node.config)
        .current_dir(c.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some((uid, gid)) = c.pg.as_ref().and_then(|p| p.run_as) {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().expect("spawn haraft");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            // SAFETY: kill(2) on the process group this child leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("node{id}'s agent did not refuse to start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
}

/// sled keeps its records at the start of its preallocated data file.
fn records_end(data: &[u8]) -> usize {
    data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_stops_its_member_and_the_documented_recovery_brings_it_back() {
    let mut c = ProcCluster::with_postgres(3, "");
    c.start_all();
    let first = primary_id(&wait_normal(&c, "bootstrap").await).unwrap();
    let victim = (1..=3).find(|&i| i != first).unwrap();
    let other = (1..=3).find(|&i| i != first && i != victim).unwrap();
    let pg = c.pg.as_ref().unwrap();
    let run_as = pg.run_as;
    let w = Writer::start(&pg.ports, &pg.superuser_password, Duration::from_millis(20), Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.terminate(victim);
    let layout = Layout::new(&c.dir.path().join(&c.nodes[victim as usize - 1].data));
    let whole = raft_bytes(&layout);
    let mark = haraft_raft::acked::parse(&whole[&layout.acked()]).expect("a readable mark");
    let check = Command::new(binary("haraft")).arg("--check-store").arg(&layout.data_dir).output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "--check-store refused a whole store: {said}");
    assert!(said.contains("verdict: whole") && said.contains("passes its checksum"), "{said}");
    let db = layout.raft_dir().join("db");

    let db = &db;
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let flip_vote: Damage = Box::new(|| {
        let mut data = std::fs::read(db).unwrap();
        // In the format of the feature level it was written at (format 6
        // until the leader raised the level, 7 after).
        let vote = mark.vote.expect("the member voted");
        use haraft_raft::codec::{Format, encode_as};
        let mut found = false;
        for vote in [encode_as(Format::Bincode6, &vote), encode_as(Format::Cbor7, &vote)] {
            // sled may keep older, dead copies of a record: change a byte of
            // every copy, so that the one it reads is changed too.
            let copies: Vec<usize> =
                (0..data.len().saturating_sub(vote.len())).filter(|&i| data[i..i + vote.len()] == vote[..]).collect();
            found |= !copies.is_empty();
            for at in copies {
                data[at + vote.len() / 2] ^= 0x10;
            }
        }
        assert!(found, "the vote is not in sled's file");
        std::fs::write(db, data).unwrap();
    });
    let cut = |fraction: f64| -> Damage {
        Box::new(move || {
            let end = records_end(&std::fs::read(db).unwrap());
            let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
            f.set_len((end as f64 * fraction) as u64).unwrap();
        })
    };
    let foreign_dir = c.dir.path().join(&c.nodes[other as usize - 1].data).join("raft");
    let cases: Vec<(&str, Damage, String)> = vec![
        ("a changed byte", flip_vote, "raft".into()),
        ("the data file cut to half", cut(0.5), "it lost entries".into()),
        ("the data file cut to four fifths", cut(0.8), "it lost entries".into()),
        (
            "the store deleted, the identity kept",
            Box::new(|| std::fs::remove_dir_all(layout.raft_dir()).unwrap()),
            "it lost its Raft state".into(),
        ),
        (
            "every Raft file deleted, the database kept",
            Box::new(|| {
                std::fs::remove_dir_all(layout.raft_dir()).unwrap();
                std::fs::remove_file(layout.identity()).unwrap();
                std::fs::remove_file(layout.acked()).unwrap();
            }),
            "haraft managed a database here".into(),
        ),
        (
            "the identity deleted, the store kept",
            Box::new(|| std::fs::remove_file(layout.identity()).unwrap()),
            "haraft.identity is missing".into(),
        ),
        (
            "another member's store copied in",
            Box::new(|| {
                std::fs::remove_dir_all(layout.raft_dir()).unwrap();
                copy_tree(&foreign_dir, &layout.raft_dir());
            }),
            format!("belongs to node {other}"),
        ),
    ];
    for (what, damage, expected) in &cases {
        restore(&layout, &whole);
        damage();
        // What this root test wrote becomes the database user's, as the agent's own files are.
        if let Some((uid, gid)) = run_as {
            let owner = haraft_db::RunAs { uid, gid };
            if layout.raft_dir().exists() {
                owner.chown_tree(&layout.raft_dir()).unwrap();
            }
            for path in [layout.identity(), layout.acked()].iter().filter(|p| p.exists()) {
                owner.chown(path).unwrap();
            }
        }
        let before = raft_bytes(&layout);
        let (code, out) = run_agent(&c, victim, &[]);
        assert_eq!(code, Some(1), "{what}: the agent did not refuse to start: {out}");
        let line = out.lines().find(|l| l.contains("refusing to start")).unwrap_or_else(|| panic!("{what}: {out}"));
        assert!(line.contains(expected.as_str()), "{what}: expected {expected:?} in: {line}");
        assert_eq!(raft_bytes(&layout), before, "{what}: the refused start changed the Raft files");
        // `--check-store` says the same, offline.
        let check = Command::new(binary("haraft")).arg("--check-store").arg(&layout.data_dir).output().unwrap();
        assert_eq!(check.status.code(), Some(1), "{what}: --check-store passed a damaged store");
        eprintln!("{what}: {line}");
    }
    // The other two kept one primary and took writes throughout.
    let two = wait_status(&c, "one primary among the other two", |s| primary_id(s).is_some_and(|p| p != victim)).await;
    assert!(two["cluster_state"] != "Unavailable", "{two}");
    // Status says why the member is unreachable: its agent told the others.
    let member = two["members"].as_array().unwrap().iter().find(|m| m["id"] == victim).cloned().unwrap();
    let error = member["error"].as_str().unwrap_or_default();
    assert!(member["reachable"] == false && error.contains("its agent refused to start"), "{member}");
    assert!(error.contains(&format!("belongs to node {other}")), "not the last refusal: {error}");
    let (_, text, _) = c.ctl(&["status"]);
    assert!(text.contains("refused to start"), "{text}");

    // The documented recovery, from the last damage (a foreign store).
    let (code, out) = run_agent(&c, victim, &["--retire-store"]);
    assert_eq!(code, Some(0), "--retire-store: {out}");
    assert!(out.contains("haraftctl member replace"), "{out}");
    let name = format!("node{victim}");
    let new_id = 4;
    let config = &c.nodes[victim as usize - 1].config;
    let text = std::fs::read_to_string(config).unwrap();
    let text = text
        .replacen(&format!("[node]\nid = {victim}\n"), &format!("[node]\nid = {new_id}\njoin = true\n"), 1)
        .replacen(&format!("id = {victim}\nname = \"{name}\""), &format!("id = {new_id}\nname = \"{name}\""), 1);
    std::fs::write(config, text).unwrap();
    let log_before = c.log(victim).len();
    c.start(victim);
    let (code, out, err) = c.ctl(&["member", "replace", &name, "--id", &new_id.to_string(), "--force"]);
    assert_eq!(code, 0, "member replace: {out}{err}\n{}", logs(&c));
    let end = wait_normal(&c, "the replaced member streaming").await;
    let ids: Vec<u64> = end["members"].as_array().unwrap().iter().filter_map(|m| m["id"].as_u64()).collect();
    assert!(ids.contains(&new_id) && !ids.contains(&victim) && ids.len() == 3, "members {ids:?}: {end}");
    let log = c.log(victim)[log_before..].to_string();
    assert!(!log.to_lowercase().contains("rebuil"), "the replaced member's database was rebuilt:\n{log}");

    let acks = w.stop().await;
    let pg = c.pg.as_ref().unwrap();
    let committed = writer::committed_ids(&pg.ports, &pg.superuser_password).await;
    writer::assert_no_overlap(&acks, "the writer");
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "{} acknowledged writes lost: {lost:?}", lost.len());
    assert!(!logs(&c).contains("panicked"), "a panic in an agent log:\n{}", logs(&c));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
