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
