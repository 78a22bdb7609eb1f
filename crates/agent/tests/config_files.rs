//! The files in config/ parse, validate, and the reference documents the
//! defaults exactly.

use haraft_agent::config::{RaftTiming, load};
use haraft_core::{NodeId, Timing};
use std::path::PathBuf;

fn repo_config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// config/ copied to a temporary directory with its example password
/// files made private: git checks files out readable by all, and the agent
/// refuses a password file others can read (the README says to chmod).
fn config_copy() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_config_dir()).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    for entry in std::fs::read_dir(repo_config_dir().join("secrets")).unwrap().flatten() {
        let to = dir.path().join("secrets").join(entry.file_name());
        std::fs::copy(entry.path(), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    dir
}

#[test]
fn node_files_parse_and_form_one_cluster() {
    let copy = config_copy();
    let config_dir = || copy.path().to_path_buf();
    let configs: Vec<_> = (1..=3).map(|i| load(&config_dir().join(format!("node{i}.toml"))).expect("valid")).collect();
    for (i, c) in configs.iter().enumerate() {
        assert_eq!(c.node, NodeId(i as u64 + 1));
        assert_eq!(c.cluster, "demo");
        assert_eq!(c.members, configs[0].members, "member lists differ");
        assert_eq!(c.listen.to_string(), format!("127.0.0.1:{}", 7001 + i));
        assert!(c.data_dir.is_relative(), "relative data dirs make the example runnable from any directory");
        let pg = c.postgres.as_ref().expect("the example manages PostgreSQL");
        assert_eq!(pg.listen.to_string(), format!("127.0.0.1:{}", 5441 + i));
        assert_eq!(c.rest_listen.map(|a| a.to_string()), Some(format!("127.0.0.1:{}", 8001 + i)));
    }
}

#[test]
fn reference_parses_and_matches_the_defaults() {
    let copy = config_copy();
    let config_dir = || copy.path().to_path_buf();
    let c = load(&config_dir().join("reference.toml")).expect("reference is valid");
    assert_eq!(c.timing, Timing::default());
    assert_eq!(c.raft, RaftTiming::default());
    assert_eq!(c.log_level, "info");
    assert_eq!(c.policy, haraft_core::Policy::default());
    let pg = c.postgres.expect("the reference documents [postgresql]");
    assert_eq!(pg.superuser_password.0, "demo-superuser-password");
    assert_eq!(
        (pg.stream_timeout_ms, pg.start_timeout_ms, pg.rebuild_timeout_ms, pg.keep_aside),
        (10_000, 60_000, 600_000, 2)
    );
    assert!(!pg.nofailover);
    assert_eq!(pg.priority, 1);
    assert_eq!(c.rest_listen, Some("127.0.0.1:8001".parse().unwrap()));
    assert_eq!(c.callbacks, haraft_agent::config::Callbacks { timeout_ms: 10_000, ..Default::default() });
    let node1 = load(&config_dir().join("node1.toml")).unwrap();
    assert_eq!(c.members, node1.members);
}

/// deploy/hosts/: three hosts' files, valid once their password files
/// exist, forming one cluster with the REST API on every interface.
#[test]
fn deploy_host_files_parse_and_form_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["superuser.password", "replication.password"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.path().join(f), "secret\n").unwrap();
        std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let configs: Vec<_> = (1..=3)
        .map(|i| {
            let path = repo_config_dir().join(format!("../deploy/hosts/db{i}.toml"));
            let text = std::fs::read_to_string(&path).expect("read deploy host file");
            let text = text.replace("/etc/haraft/", &format!("{}/", dir.path().display()));
            haraft_agent::config::parse(&path.display().to_string(), &text).expect("valid")
        })
        .collect();
    for (i, c) in configs.iter().enumerate() {
        assert_eq!(c.node, NodeId(i as u64 + 1));
        assert_eq!(c.members, configs[0].members);
        assert_eq!(c.rest_listen, Some("0.0.0.0:8008".parse().unwrap()));
        assert_eq!(c.policy.synchronous_mode, haraft_core::sync::SyncMode::On);
        let pg = c.postgres.as_ref().unwrap();
        assert_eq!(pg.connect_address, format!("10.0.0.1{}:5432", i + 1));
    }
}

#[test]
fn a_password_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let copy = config_copy();
    let secret = copy.path().join("secrets/superuser");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load(&copy.path().join("node1.toml")).unwrap_err().to_string();
    assert!(e.contains("secrets/superuser is readable by other users (mode 644): chmod 600 it"), "{e}");
    assert!(!e.contains("demo-superuser-password"), "the password is in the error: {e}");
}
