//! End-to-end with the real binaries: the shipped config/ files start a
//! cluster that `haraftctl status --json` describes; a killed holder is
//! replaced; bad input to either binary is refused with one clear line.

use haraft_testkit::procs::{ProcCluster, binary};
use haraft_testkit::wait_for;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(40);

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// One leader, three voters, a primary and an epoch: the "done" check.
fn healthy(status: &Value) -> bool {
    let members = status["members"].as_array().map(Vec::as_slice).unwrap_or_default();
    status["leader"].is_string()
        && status["primary"].is_string()
        && status["epoch"].as_u64().is_some_and(|e| e >= 1)
        && members.len() == 3
        && members.iter().all(|m| m["voter"] == Value::Bool(true) && m["reachable"] == Value::Bool(true))
        && members.iter().filter(|m| m["raft_role"] == "leader").count() == 1
        && status["lease"]["valid_for_ms"].is_u64()
        && status["cluster_state"] == "Normal"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_configs_form_a_cluster_that_survives_a_killed_primary() {
    let files: Vec<PathBuf> = (1..=3).map(|i| repo_file(&format!("config/node{i}.toml"))).collect();
    let mut c = ProcCluster::from_files(&files);
    c.start_all();
    let status = wait_for("a healthy cluster", LIMIT, || c.status().filter(healthy)).await;
    for key in ["cluster", "leader", "term", "epoch", "primary", "members", "commit_index"] {
        assert!(status.get(key).is_some(), "status --json lacks {key}: {status}");
    }
    assert_eq!(status["cluster"], "demo");
    for m in status["members"].as_array().unwrap() {
        for key in ["name", "id", "raft_role", "reachable"] {
            assert!(m.get(key).is_some(), "member lacks {key}: {m}");
        }
    }
    // Relative data paths resolved against the agents' working directory.
    assert!(c.dir.path().join("data/node1/raft/db").is_file());

    // The example manages PostgreSQL: one primary, two streaming replicas.
    let roles: Vec<&str> = status["members"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "primary").count(), 1, "{status}");
    assert_eq!(roles.iter().filter(|r| **r == "replica").count(), 2, "{status}");

    // The table names the same leader and primary.
    let (code, table, _) = c.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(table.contains(&format!("Raft leader:  {}", status["leader"].as_str().unwrap())), "{table}");
    assert!(table.contains(&format!("Primary:      {}", status["primary"].as_str().unwrap())), "{table}");

    // kill -9 of the primary's agent (not its PostgreSQL, not its fence
    // guard): the lease lapses, the guard fences PostgreSQL, the next epoch
    // goes to another member.
    let primary = status["primary"].as_str().unwrap().to_string();
    let primary_id = primary.trim_start_matches("node").parse::<u64>().unwrap();
    let epoch = status["epoch"].as_u64().unwrap();
    c.kill(primary_id);
    let after = wait_for("the next epoch", LIMIT, || {
        c.status().filter(|s| {
            s["epoch"].as_u64() == Some(epoch + 1) && s["primary"].is_string() && s["lease"]["valid_for_ms"].is_u64()
        })
    })
    .await;
    assert_ne!(after["primary"].as_str().unwrap(), primary);

    // It rejoins from its data dir with no call, as a follower.
    c.start(primary_id);
    let healed = wait_for("all three back", LIMIT, || c.status().filter(healthy)).await;
    assert_eq!(healed["epoch"].as_u64(), Some(epoch + 1));

    // SIGTERM stops every agent cleanly.
    for id in 1..=3 {
        let exit = c.terminate(id);
        assert!(exit.success(), "node{id} exited with {exit}: {}", c.log(id));
        assert!(c.log(id).contains("stopped cleanly"), "node{id} log: {}", c.log(id));
        assert!(!c.log(id).contains("panicked"), "node{id} panicked: {}", c.log(id));
    }
}

fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary(bin)).args(args).output().expect("run binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A refusal: non-zero exit, exactly one line on stderr mentioning `text`.
fn assert_refused((code, _, err): (i32, String, String), expected_code: i32, text: &str) {
    assert_eq!(code, expected_code, "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(text), "{err:?} lacks {text:?}");
}

#[test]
fn shipped_configs_pass_check_config() {
    // A copy, with the example password files made private as the README
    // says (git checks them out readable by all, which the agent refuses).
    let files: Vec<PathBuf> = (1..=3).map(|i| repo_file(&format!("config/node{i}.toml"))).collect();
    let c = ProcCluster::from_files(&files);
    for (i, node) in c.nodes.iter().enumerate() {
        let (code, out, err) = run("haraft", &["--check-config", node.config.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("node node{} id {}", i + 1, i + 1)), "{out}");
        assert!(out.contains("initdb --locale=C.UTF-8 --encoding=UTF8"), "{out}");
    }
    let (code, _, err) = run("haraft", &["--check-config", files[0].to_str().unwrap()]);
    if code != 0 {
        assert!(err.contains("is readable by other users") && err.contains("chmod 600"), "{err}");
    }
}

#[test]
fn bad_configs_are_refused_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(repo_file("config/node1.toml")).unwrap();
    let cases = [
        (base.replace("[node]\n", "[node]\ncolour = \"blue\"\n"), "unknown field `colour`"),
        (format!("{base}\n[lease]\nttl_ms = 600\n"), "lease.ttl_ms = 600 is too short"),
        (base.replace("id = 3\n", "id = 2\n"), "member id 2 appears more than once"),
        (base.replace("[cluster]", "[cluster"), "node1.toml:"),
        (
            base.replace("[postgresql]\n", "[postgresql]\ninitdb_locale = \"en_US; rm -rf /\"\n"),
            "postgresql.initdb_locale = \"en_US; rm -rf /\" is not a locale",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}-node1.toml"));
        std::fs::write(&path, text).unwrap();
        assert_refused(run("haraft", &["--check-config", path.to_str().unwrap()]), 2, expected);
        // The daemon refuses the same file before doing anything.
        assert_refused(run("haraft", &["--config", path.to_str().unwrap()]), 2, expected);
    }
    assert_refused(
        run("haraft", &["--check-config", "/nonexistent/haraft.toml"]),
        2,
        "cannot read config file /nonexistent/haraft.toml",
    );
}

#[test]
fn a_data_dir_of_another_cluster_is_refused() {
    let mut c = ProcCluster::new(3, "");
    c.start_all();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(wait_for("cluster initialized", LIMIT, || c.status().filter(|s| s["epoch"].as_u64() >= Some(1))));
    c.terminate(1);
    // Same data dir, other cluster name.
    let config = std::fs::read_to_string(&c.nodes[0].config).unwrap().replace("name = \"test\"", "name = \"other\"");
    let path = c.dir.path().join("other.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary("haraft")).arg("--config").arg(&path).current_dir(c.dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to cluster \"test\" but the config names cluster \"other\""), "{err}");
}

#[test]
fn haraftctl_refuses_bad_endpoints_and_reports_unreachable_ones() {
    // Ports bound by nobody: take free ones and let them go.
    let ports = haraft_testkit::procs::free_ports(2);
    let endpoints = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
    let result = run("haraftctl", &["--endpoints", &endpoints, "--timeout-ms", "1000", "status"]);
    assert_refused(result, 1, "no endpoint answered");
    assert_refused(run("haraftctl", &["--endpoints", "localhost", "status"]), 2, "bad endpoint \"localhost\"");
    let (code, _, err) = run("haraftctl", &["stauts"]);
    assert_eq!(code, 2, "{err}");
    let (code, help, _) = run("haraftctl", &["--help"]);
    assert_eq!(code, 0);
    for word in ["status", "--endpoints", "HARAFTCTL_ENDPOINTS", "Exit codes", "demo", "dsn", "completions"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    // Argument errors are clap's: the first line says what is wrong.
    for (args, text) in [
        (&["status", "--watch", "0"][..], "\"0\" is not a refresh interval"),
        (&["dsn", "--role", "leader"][..], "invalid value 'leader'"),
        (&["completions", "tcsh"][..], "invalid value 'tcsh'"),
    ] {
        let (code, _, err) = run("haraftctl", args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.lines().next().unwrap_or("").contains(text), "{args:?}: {err}");
    }
    assert_refused(run("haraftctl", &["demo", "--nodes", "0"]), 1, "--nodes 0 is out of range");
}

/// `haraftctl completions bash` (clap_complete), loaded into bash,
/// completes subcommands and each subcommand's flags from the CLI's own
/// definition.
#[test]
fn haraftctl_completions_complete_subcommands_and_flags() {
    let (code, script, err) = run("haraftctl", &["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    let complete = |words: &str| {
        let cword = words.split(' ').count() - 1;
        // As bash calls a completion function: the command, the word being
        // completed and the one before it.
        let program = format!(
            "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; \
             _haraftctl haraftctl \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             echo \"${{COMPREPLY[@]}}\""
        );
        let out = Command::new("bash").arg("-c").arg(program).output().expect("bash");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let words = complete("haraftctl member ''");
    let subcommands: Vec<&str> = words.split(' ').filter(|w| !w.starts_with('-')).collect();
    assert_eq!(subcommands, ["add", "remove", "replace"], "{words}");
    assert_eq!(complete("haraftctl member add db4 --a"), "--address");
    assert_eq!(complete("haraftctl switchover --to node2 --f"), "--from --force");
    // Global flags after a subcommand, too.
    assert_eq!(complete("haraftctl history --end"), "--endpoints");
    assert_eq!(complete("haraftctl member add db4 --tok"), "--token-file");
    assert!(complete("haraftctl ''").split(' ').any(|w| w == "demo"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, text, _) = run("haraftctl", &["completions", shell]);
        assert!(code == 0 && text.contains("switchover"), "{shell}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_raft_leader_process_elects_another_and_keeps_a_primary() {
    let mut c = ProcCluster::new(3, "");
    c.start_all();
    let status = wait_for("a healthy cluster", LIMIT, || c.status().filter(healthy)).await;
    let leader = status["leader_id"].as_u64().unwrap();
    let (primary, epoch) = (status["primary"].as_str().unwrap().to_string(), status["epoch"].as_u64().unwrap());
    c.kill(leader);
    // An operator request right after the leader died waits for the
    // election instead of failing on the dead leader.
    for request in ["pause", "resume"] {
        let (code, out, err) = c.ctl(&[request]);
        assert_eq!(code, 0, "haraftctl {request} right after the leader died: {out}{err}");
    }
    let after = wait_for("a new leader and a valid lease", LIMIT, || {
        c.status()
            .filter(|s| s["leader_id"].as_u64().is_some_and(|l| l != leader) && s["lease"]["valid_for_ms"].is_u64())
    })
    .await;
    if primary == format!("node{leader}") {
        // The primary went down with the leader: a new epoch elsewhere.
        let after = wait_for("the next epoch", LIMIT, || {
            c.status().filter(|s| s["epoch"].as_u64() > Some(epoch) && s["lease"]["valid_for_ms"].is_u64())
        })
        .await;
        assert_ne!(after["primary"].as_str().unwrap(), primary);
    } else {
        // The primary lives and keeps its lease through the election.
        assert_eq!(after["primary"].as_str().unwrap(), primary, "{after}");
        assert_eq!(after["epoch"].as_u64(), Some(epoch), "{after}");
    }
    for id in (1..=3).filter(|&i| i != leader) {
        assert!(!c.log(id).contains("panicked"), "node{id}: {}", c.log(id));
    }
}

/// deploy/gen-tls.sh: a CA, per-host certificates with the host's name and
/// IP, an operator certificate; all verify against the CA; a second run
/// refuses to replace the CA; bad arguments exit 2.
#[test]
fn deploy_gen_tls_issues_certificates_the_ca_verifies() {
    let script = repo_file("deploy/gen-tls.sh");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tls");
    let run = |args: &[&str]| Command::new(&script).args(args).output().expect("run gen-tls.sh");
    let first = run(&[out.to_str().unwrap(), "db1=10.0.0.11", "db2=10.0.0.12"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    for name in ["db1", "db2", "admin", "reader"] {
        let cert = out.join(format!("{name}.crt"));
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(out.join("ca.crt"))
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(verify.status.success(), "{name}: {}", String::from_utf8_lossy(&verify.stdout));
        let key = std::fs::metadata(out.join(format!("{name}.key"))).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600, "{name}.key is readable by others");
    }
    let san = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(out.join("db2.crt"))
        .output()
        .unwrap();
    let san = String::from_utf8_lossy(&san.stdout);
    assert!(san.contains("DNS:db2") && san.contains("IP Address:10.0.0.12"), "{san}");
    let ca = std::fs::read(out.join("ca.crt")).unwrap();
    let again = run(&[out.to_str().unwrap(), "db3=10.0.0.13"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to replace the cluster CA"));
    assert_eq!(std::fs::read(out.join("ca.crt")).unwrap(), ca, "the CA changed");
    let bad = run(&[dir.path().join("other").to_str().unwrap(), "db1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad host db1: write NAME=IP"));
}

/// A REST port in use stops the agent at start with a last line naming
/// the key (it is bound before the database side and the fence guards
/// start, so nothing is left behind).
#[test]
fn a_rest_port_in_use_is_refused_at_start() {
    let c = ProcCluster::new(3, "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let config = std::fs::read_to_string(&c.nodes[0].config).unwrap() + &format!("\n[rest]\nlisten = \"{address}\"\n");
    let path = c.dir.path().join("rest-taken.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary("haraft")).arg("--config").arg(&path).current_dir(c.dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(last.contains(&format!("binding rest.listen {address}")), "{err}");
}

/// A hung member (its agent SIGSTOPped) first or last in the endpoint
/// list: status still answers from the others, the hung member marked
/// unreachable, without waiting out the per-endpoint timeout (20 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haraftctl_status_answers_when_a_member_hangs_whatever_the_endpoint_order() {
    let mut c = ProcCluster::new(3, "");
    c.start_all();
    let status = wait_for("a healthy cluster", LIMIT, || c.status().filter(|s| s["leader"].is_string())).await;
    let leader = status["leader"].as_str().unwrap().to_string();
    let hung = (1..=3).find(|i| format!("node{i}") != leader).unwrap();
    c.freeze_agent(hung, true);
    let mut orders = vec![c.addresses.clone()];
    let mut first = c.addresses.clone();
    first.retain(|a| a != &c.addresses[hung as usize - 1]);
    first.insert(0, c.addresses[hung as usize - 1].clone());
    orders.push(first.clone());
    first.rotate_left(1);
    orders.push(first);
    for endpoints in orders {
        let started = std::time::Instant::now();
        let out = Command::new(binary("haraftctl"))
            .args(["--endpoints", &endpoints.join(","), "--timeout-ms", "20000", "status", "--json"])
            .output()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(0), "{endpoints:?}: {}", String::from_utf8_lossy(&out.stderr));
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = s["members"].as_array().unwrap().iter().find(|m| m["id"] == hung).cloned().unwrap();
        assert_eq!(m["reachable"], false, "{m}");
        // Asked one after another, the hung first endpoint would cost 20 s.
        assert!(took < Duration::from_secs(10), "{endpoints:?}: status took {took:?}");
        eprintln!("status with node{hung} hung, endpoints {endpoints:?}: {took:?}");
    }
    c.freeze_agent(hung, false);
}
