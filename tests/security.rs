//! Mutual TLS between agents and for haraftctl (lease-only agents, real
//! processes): a TLS cluster forms; haraftctl without the CA, with a
//! certificate of another CA, or with a private key others may read is
//! refused; a member presenting another member's certificate is refused
//! by the others.

use haraft_testkit::procs::ProcCluster;
use haraft_testkit::tls::TestCa;
use haraft_testkit::wait_for;
use serde_json::Value;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(40);

fn healthy(status: &Value) -> bool {
    status["primary"].is_string()
        && status["members"].as_array().is_some_and(|m| m.iter().all(|m| m["reachable"] == true))
}

/// haraftctl with exactly these TLS flags (none: plaintext).
fn ctl_with(c: &ProcCluster, tls: &[String], args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(haraft_testkit::procs::binary("haraftctl"))
        .args(tls)
        .args(["--endpoints", &c.endpoints(), "--timeout-ms", "2000"])
        .args(args)
        .output()
        .expect("run haraftctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_forms_and_refuses_plaintext_and_foreign_certificates() {
    let (mut c, _ca) = ProcCluster::new_tls(3, "");
    c.start_all();
    let status = wait_for("a healthy TLS cluster", LIMIT, || c.status().filter(healthy)).await;
    assert_eq!(status["members"].as_array().unwrap().len(), 3);

    // Plaintext against TLS agents: refused, and said so.
    let (code, _, err) = ctl_with(&c, &[], &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a cluster with [tls] needs --ca-file, --cert-file and --key-file"), "{err}");
    let (code, _, err) = ctl_with(&c, &[], &["pause"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a cluster with [tls] needs --ca-file"), "{err}");
    // A certificate from another CA: refused by the agents, whose
    // certificates haraftctl cannot verify with that CA either.
    let other = TestCa::new(c.dir.path(), "other").issue("operator");
    let (code, _, err) = ctl_with(&c, &other.ctl_args(), &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    // The right CA but an operator certificate of the other CA.
    let mut mixed = c.ctl_tls.clone();
    mixed[3] = other.cert.display().to_string();
    mixed[5] = other.key.display().to_string();
    let (code, _, err) = ctl_with(&c, &mixed, &["status"]);
    assert_eq!(code, 1, "{err}");
    // A private key others may read is refused before connecting.
    let loose = c.dir.path().join("loose.key");
    std::fs::copy(&c.ctl_tls[5], &loose).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut with_loose = c.ctl_tls.clone();
    with_loose[5] = loose.display().to_string();
    let (code, _, err) = ctl_with(&c, &with_loose, &["status"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is readable by other users (mode 644): chmod 600 it"), "{err}");
    // --ca-file without a certificate is an argument error.
    let (code, _, err) = ctl_with(&c, &c.ctl_tls[..2], &["status"]);
    assert_eq!(code, 2, "{err}");
    // The agent refuses the same key at start, naming the file.
    let text = std::fs::read_to_string(&c.nodes[0].config).unwrap();
    let key_line = text.lines().find(|l| l.starts_with("key_file")).unwrap().to_string();
    let bad = text.replace(&key_line, &format!("key_file = \"{}\"", loose.display()));
    let path = c.dir.path().join("loose-key.toml");
    std::fs::write(&path, bad).unwrap();
    let out = std::process::Command::new(haraft_testkit::procs::binary("haraft"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("tls: ") && err.contains("loose.key is readable by other users"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_using_another_members_certificate_is_refused() {
    let (mut c, ca) = ProcCluster::new_tls(3, "");
    // node3 presents node2's (valid, same-CA) certificate.
    let node2 = ca.issue("node2");
    let text = std::fs::read_to_string(&c.nodes[2].config).unwrap();
    let start = text.find("[tls]").unwrap();
    std::fs::write(&c.nodes[2].config, format!("{}{}", &text[..start], node2.section())).unwrap();
    c.start_all();
    // node1 and node2 form the cluster; node3 never joins it.
    let status =
        wait_for("nodes 1 and 2 serving", LIMIT, || c.status_via(&[1, 2]).filter(|s| s["primary"].is_string())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = c.status_via(&[1, 2]).unwrap_or(status);
    let node3 = status["members"].as_array().unwrap().iter().find(|m| m["name"] == "node3").unwrap().clone();
    assert_eq!(node3["reachable"], false, "node3 with node2's certificate was accepted: {status}");
    assert_ne!(status["primary"], "node3");
    // The members say why: node3's messages speak for node3 with a
    // certificate that names node2.
    let logs = format!("{}{}", c.log(1), c.log(2));
    assert!(
        logs.contains("refused a request whose certificate does not name the member it speaks for"),
        "no refusal logged:\n{logs}"
    );
}

fn secret_file(c: &ProcCluster, name: &str, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = c.dir.path().join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn operations_in_history(c: &ProcCluster, tls: &[String], token: Option<&std::path::Path>) -> Vec<Value> {
    let mut args: Vec<String> = tls.to_vec();
    if let Some(t) = token {
        args.extend(["--token-file".to_string(), t.display().to_string()]);
    }
    let (code, out, err) = ctl_with(c, &args, &["history", "--json"]);
    assert_eq!(code, 0, "{err}");
    let history: Vec<Value> = serde_json::from_str(&out).unwrap();
    history.into_iter().filter(|h| h["event"] == "operation-requested").collect()
}

/// The history's audit entries (requests that became no operation).
fn requests_in_history(c: &ProcCluster, tls: &[String]) -> Vec<Value> {
    let (code, out, err) = ctl_with(c, tls, &["history", "--json"]);
    assert_eq!(code, 0, "{err}");
    let history: Vec<Value> = serde_json::from_str(&out).unwrap();
    history.into_iter().filter(|h| h["event"].as_str().is_some_and(|e| e.starts_with("request-"))).collect()
}

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const READ_TOKEN: &str = "read-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_who_may_change_the_cluster_and_the_history_names_them() {
    let (mut c, ca) = ProcCluster::new_tls(
        3,
        "[auth]\nadmin_names = [\"admin\"]\nadmin_token_file = \"admin.token\"\nread_token_file = \"read.token\"\n",
    );
    let admin_token = secret_file(&c, "admin.token", ADMIN_TOKEN);
    let read_token = secret_file(&c, "read.token", READ_TOKEN);
    let wrong_token = secret_file(&c, "wrong.token", "not-a-token-of-this-cluster");
    c.start_all();
    wait_for("a healthy TLS cluster", LIMIT, || c.status().filter(healthy)).await;
    let operator = c.ctl_tls.clone(); // a certificate without the admin role
    let admin = ca.issue("admin").ctl_args();
    let with_token = |tls: &[String], token: &std::path::Path| {
        let mut a = tls.to_vec();
        a.extend(["--token-file".to_string(), token.display().to_string()]);
        a
    };

    // Read role: reads, but changes nothing.
    assert_eq!(ctl_with(&c, &operator, &["status"]).0, 0);
    let (code, _, err) = ctl_with(&c, &operator, &["pause"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a certificate without the admin role may read but not change the cluster"), "{err}");
    let (code, _, err) = ctl_with(&c, &operator, &["switchover", "--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("may read but not change the cluster"), "{err}");
    let (code, _, err) = ctl_with(&c, &with_token(&operator, &read_token), &["pause"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the read token may read but not change the cluster"), "{err}");
    let (code, _, err) = ctl_with(&c, &with_token(&operator, &wrong_token), &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the token given matches no token of this cluster"), "{err}");
    assert!(!err.contains("not-a-token"), "the token was echoed: {err}");
    assert!(operations_in_history(&c, &operator, None).is_empty(), "a refused request started an operation");
    // Each refusal of an authenticated caller is audited: who, what, why.
    // (The wrong token authenticates no one and is only logged.)
    let refused =
        wait_for("three audited refusals", LIMIT, || Some(requests_in_history(&c, &operator)).filter(|r| r.len() >= 3))
            .await;
    assert_eq!(refused.len(), 3, "{refused:?}");
    let expect = [
        ("a certificate without the admin role (", "pause"),
        ("a certificate without the admin role (", "switchover (force)"),
        ("the read token (", "pause"),
    ];
    for (entry, (by, what)) in refused.iter().zip(expect) {
        assert_eq!(entry["event"], "request-refused", "{entry}");
        assert!(entry["by"].as_str().unwrap().starts_with(by), "{entry}");
        assert!(entry["detail"].as_str().unwrap().contains(&format!(": {what};")), "{entry}");
        assert!(entry["result"].as_str().unwrap().contains("may read but not change the cluster"), "{entry}");
        assert!(entry["at_unix_ms"].as_u64().is_some(), "{entry}");
    }

    // Admin role, by certificate and by token; the history says who.
    let (code, out, err) = ctl_with(&c, &admin, &["pause"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = ctl_with(&c, &with_token(&operator, &admin_token), &["resume"]);
    assert_eq!(code, 0, "{out}{err}");
    let ops = operations_in_history(&c, &operator, None);
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(ops[0]["by"].as_str().unwrap().starts_with("certificate admin ("), "{ops:?}");
    assert!(ops[1]["by"].as_str().unwrap().starts_with("the admin token ("), "{ops:?}");
    // An admin's request that its checks refuse is audited too; the plan
    // shown before a confirmation (a dry run) is not: it asks for nothing.
    let (code, _, err) = ctl_with(&c, &admin, &["switchover", "--to", "node9", "--force"]);
    assert_eq!(code, 1, "{err}");
    // (Here the dry run itself is refused: these agents run no PostgreSQL.)
    let (code, out, err) = ctl_with(&c, &admin, &["switchover", "--to", "node2"]);
    assert_eq!(code, 1, "{out}{err}");
    let refused = wait_for("the admin's refused switchover audited", LIMIT, || {
        Some(requests_in_history(&c, &operator)).filter(|r| r.len() >= 4)
    })
    .await;
    let last = &refused[3];
    assert!(last["by"].as_str().unwrap().starts_with("certificate admin ("), "{last}");
    assert!(last["detail"].as_str().unwrap().contains(": switchover to node9 (force);"), "{last}");
    assert!(last["result"].as_str().unwrap().contains("unknown member \"node9\""), "{last}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(requests_in_history(&c, &operator).len(), 4, "a dry run was audited");
    // No secret in any log.
    let logs: String = (1..=3).map(|i| c.log(i)).collect();
    for secret in [ADMIN_TOKEN, READ_TOKEN, "not-a-token-of-this-cluster"] {
        assert!(!logs.contains(secret), "a token reached an agent log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_alone_protect_a_plaintext_cluster() {
    let mut c = ProcCluster::new(3, "[auth]\nadmin_token_file = \"admin.token\"\nread_token_file = \"read.token\"\n");
    let admin_token = secret_file(&c, "admin.token", ADMIN_TOKEN);
    let read_token = secret_file(&c, "read.token", READ_TOKEN);
    c.start_all();
    let token_args = |t: &std::path::Path| vec!["--token-file".to_string(), t.display().to_string()];
    wait_for("the cluster serving", LIMIT, || {
        let (code, out, _) = ctl_with(&c, &token_args(&read_token), &["status", "--json"]);
        (code == 0).then(|| serde_json::from_str::<Value>(&out).ok()).flatten().filter(healthy)
    })
    .await;
    let (code, _, err) = ctl_with(&c, &[], &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no credential: this cluster requires"), "{err}");
    let (code, _, err) = ctl_with(&c, &token_args(&read_token), &["pause"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("may read but not change the cluster"), "{err}");
    let (code, out, err) = ctl_with(&c, &token_args(&admin_token), &["pause"]);
    assert_eq!(code, 0, "{out}{err}");
    let ops = operations_in_history(&c, &[], Some(&admin_token));
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(ops[0]["by"].as_str().unwrap().starts_with("the admin token ("), "{ops:?}");
    // A token file others may read is refused by haraftctl and the agents.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&admin_token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = ctl_with(&c, &token_args(&admin_token), &["status"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is readable by other users (mode 644): chmod 600 it"), "{err}");
    let out = std::process::Command::new(haraft_testkit::procs::binary("haraft"))
        .arg("--check-config")
        .arg(&c.nodes[0].config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("auth.admin_token_file") && err.contains("readable by other users"), "{err}");
}

/// config/tls/: the shipped example with mutual TLS and roles (real
/// PostgreSQL): it forms a cluster; the reader certificate reads but may
/// not change it, the admin certificate may; no password reaches a log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_tls_configs_form_a_cluster_only_the_admin_certificate_may_change() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
    let files: Vec<std::path::PathBuf> = (1..=3).map(|i| format!("tls/node{i}.toml").into()).collect();
    let mut c = ProcCluster::from_tree(&root, &files);
    let certs = c.dir.path().join("config/tls/certs");
    let as_who = |who: &str| -> Vec<String> {
        ["ca.crt", &format!("{who}.crt"), &format!("{who}.key")]
            .iter()
            .zip(["--ca-file", "--cert-file", "--key-file"])
            .flat_map(|(file, flag)| [flag.to_string(), certs.join(file).display().to_string()])
            .collect()
    };
    c.ctl_tls = as_who("admin");
    c.start_all();
    haraft_testkit::check::wait_normal(&c, "the TLS example cluster bootstrapped").await;
    let (code, _, err) = ctl_with(&c, &as_who("reader"), &["status"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl_with(&c, &as_who("reader"), &["pause"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("may read but not change the cluster"), "{err}");
    for request in ["pause", "resume"] {
        let (code, out, err) = ctl_with(&c, &c.ctl_tls, &[request]);
        assert_eq!(code, 0, "{request}: {out}{err}");
    }
    // The REST API serves HTTPS with the node's certificate (rest.tls).
    let primary = haraft_testkit::check::primary_id(&c.status().expect("status")).expect("a primary");
    let rest = &c.rest[primary as usize - 1];
    let curl = |scheme: &str| {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert"])
            .arg(certs.join("ca.crt"))
            .arg(format!("{scheme}://{rest}/primary"))
            .output()
            .expect("curl (apt-get install curl)")
    };
    let https = curl("https");
    assert_eq!(String::from_utf8_lossy(&https.stdout), "200", "{https:?}");
    let plain = curl("http");
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200", "plain HTTP answered: {plain:?}");
    let logs: String = (1..=3).map(|i| c.log(i)).collect();
    for password in ["demo-superuser-password", "demo-replication-password"] {
        assert!(!logs.contains(password), "a password reached an agent log");
    }
}
