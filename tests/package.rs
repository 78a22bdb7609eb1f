//! The Debian package (`deploy/debian/build.sh` makes
//! `target/debian/haraft_*.deb`; `.ci/run` builds it before the tests):
//! installed with apt-get, its files in place (binaries, unit, reference
//! config, man pages that render, completions that complete), one instance
//! of `haraft@.service` run with a one-node PostgreSQL 15 cluster until
//! `haraftctl status` shows a primary, then removed and purged with nothing
//! of it left.
//!
//! The instance runs through systemd when systemd runs this host, else
//! through the unit's own `ExecStartPre`/`ExecStart` lines as its `User=`
//! in its `WorkingDirectory=` (the sandboxing options apply only under
//! systemd). Without a built package, or not as root, it is skipped with
//! the reason printed; with `HARAFT_REQUIRE_PACKAGE` set (CI) a missing
//! package fails it.

use haraft_testkit::procs::free_ports;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const UNIT: &str = "/usr/lib/systemd/system/haraft@.service";
/// initdb, the first start and the first lease on a loaded 2-core host.
const PRIMARY_LIMIT: Duration = Duration::from_secs(120);

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed ({}):\n{text}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The newest `haraft_*.deb` cargo-deb wrote for this workspace.
fn built_package() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(target.join("debian"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("haraft_") && n.ends_with(".deb"))
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    debs.sort();
    debs.pop().map(|(_, p)| p)
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", "haraft"]).stdout.starts_with(b"install ok installed")
}

/// What the test started or wrote, undone on every exit, panics included:
/// the agent (by PID, its own process group), its fence guard (by the PID
/// in guard.pid), its PostgreSQL (by postmaster.pid), the test's files.
struct Instance {
    name: String,
    state_dir: PathBuf,
    agent: Option<Child>,
    systemd: bool,
    files: Vec<PathBuf>,
}

impl Instance {
    fn node_dir(&self) -> PathBuf {
        self.state_dir.join("data")
    }

    fn pgdata(&self) -> PathBuf {
        self.node_dir().join("pgdata")
    }

    /// Stops the agent (SIGTERM, then SIGKILL after the unit's 15 s), its
    /// guard and its PostgreSQL (which outlive an agent by design).
    fn stop(&mut self) {
        if self.systemd {
            let _ = run("systemctl", &["stop", &format!("haraft@{}.service", self.name)]);
        }
        if let Some(mut child) = self.agent.take() {
            // SAFETY: the agent's own PID, started by this test.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: the agent's own process group (it may have exited).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        if let Some(pid) = haraft_db::procs::fence_guard_pid(&self.node_dir()) {
            // SAFETY: the guard's PID from its own guard.pid, checked to be a guard.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let pgdata = self.pgdata();
        if haraft_db::procs::postmaster_pid(&pgdata).is_some() {
            haraft_db::procs::signal_server(&pgdata, libc::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while haraft_db::procs::postmaster_pid(&pgdata).is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            haraft_db::procs::signal_server(&pgdata, libc::SIGKILL);
            haraft_db::procs::release_stale_shmem(&pgdata, Duration::from_secs(5));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir(Path::new("/etc/haraft/secrets"));
        let _ = std::fs::remove_dir_all(&self.state_dir);
        let _ = std::fs::remove_dir(Path::new("/var/lib/haraft"));
        if installed() {
            let _ = run("apt-get", &["purge", "-y", "haraft"]);
        }
    }
}

/// `KEY=` lines of the installed unit's `[Service]`, `%i` replaced.
fn unit_values(unit: &str, key: &str, instance: &str) -> Vec<String> {
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(|v| v.replace("%i", instance)).collect()
}

fn check_files(package_files: &str) {
    for path in [
        "/usr/bin/haraft",
        "/usr/bin/haraftctl",
        UNIT,
        "/etc/haraft/reference.toml",
        "/usr/share/man/man1/haraft.1.gz",
        "/usr/share/man/man1/haraftctl.1.gz",
        "/usr/share/bash-completion/completions/haraftctl",
        "/usr/share/zsh/vendor-completions/_haraftctl",
        "/usr/share/fish/vendor_completions.d/haraftctl.fish",
        "/usr/share/elvish/lib/haraftctl.elv",
        "/usr/share/haraft/completions/haraftctl.ps1",
    ] {
        assert!(package_files.lines().any(|l| l == path), "dpkg -L haraft lacks {path}:\n{package_files}");
        assert!(Path::new(path).is_file(), "{path} is listed but not installed");
    }
    // A page per subcommand haraftctl --help lists, nested ones too.
    let help = ok("/usr/bin/haraftctl", &["--help"]);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command's name starts a line; its description's own lines are
        // indented further.
        .filter(|l| !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15 && commands.contains(&"switchover"), "{help}");
    for c in commands.iter().map(|c| c.to_string()).chain(["member-add".into(), "history-ack".into()]) {
        let page = format!("/usr/share/man/man1/haraftctl-{c}.1.gz");
        assert!(package_files.lines().any(|l| l == page), "no man page for haraftctl {c}: {page}");
    }
    // The pages render (man -l reads the compressed roff).
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        for (page, words) in [
            ("haraftctl-switchover", &["haraftctl-switchover", "--to", "--force"][..]),
            ("haraft", &["haraft", "--check-config", "/etc/haraft/CLUSTER.toml"][..]),
        ] {
            let out = Command::new("man")
                .args(["-l", &format!("/usr/share/man/man1/{page}.1.gz")])
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "200")
                .output()
                .expect("man");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "man -l {page}: {}", String::from_utf8_lossy(&out.stderr));
            // man may hyphenate or mark up words: compare without those.
            let plain = text.replace("\u{2010}", "-").replace('\u{2212}', "-");
            for w in words {
                assert!(plain.contains(w), "man {page} lacks {w}:\n{plain}");
            }
        }
    } else {
        println!("man is not installed: the pages are checked to be roff only");
        let out =
            Command::new("sh").args(["-c", "gzip -dc /usr/share/man/man1/haraftctl.1.gz"]).output().expect("gzip");
        assert!(String::from_utf8_lossy(&out.stdout).contains(".TH haraftctl 1"), "not a man page");
    }
    // The installed bash completion completes a subcommand.
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "source /usr/share/bash-completion/completions/haraftctl; COMP_WORDS=(haraftctl switch); COMP_CWORD=1; \
             _haraftctl haraftctl switch haraftctl; echo \"${COMPREPLY[@]}\"",
        )
        .output()
        .expect("bash");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "switchover");
}

/// The unit as systemd reads it: no unknown keys, binaries and man pages present.
fn verify_unit() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        println!("systemd-analyze is not installed: the unit is not verified");
        return;
    }
    let out = run("systemd-analyze", &["verify", UNIT]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify {UNIT}:\n{text}");
}

/// Writes a password file as an operator would: only postgres reads it.
fn secret(path: &Path, text: &str, uid: u32, gid: u32) {
    std::fs::write(path, format!("{text}\n")).expect("password file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
}

fn status(endpoint: &str) -> Option<serde_json::Value> {
    let out = run("/usr/bin/haraftctl", &["--endpoints", endpoint, "--timeout-ms", "2000", "status", "--json"]);
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn the_debian_package_installs_runs_an_instance_and_is_removed_cleanly() {
    let Some(deb) = built_package() else {
        assert!(
            std::env::var_os("HARAFT_REQUIRE_PACKAGE").is_none(),
            "HARAFT_REQUIRE_PACKAGE is set but no target/debian/haraft_*.deb exists: run deploy/debian/build.sh"
        );
        println!("SKIPPED: no target/debian/haraft_*.deb: build it with deploy/debian/build.sh (.ci/run does)");
        return;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: installing {} needs root (apt-get install)", deb.display());
        return;
    }
    if installed() && std::env::var_os("HARAFT_REQUIRE_PACKAGE").is_none() {
        println!("SKIPPED: haraft is installed on this host and the test would purge it: remove it first");
        return;
    }
    let pg = haraft_db::RunAs::user("postgres").expect("the postgres OS user (apt-get install postgresql-15)");
    let name = format!("pkgtest{}", std::process::id());
    let mut instance = Instance {
        name: name.clone(),
        state_dir: PathBuf::from(format!("/var/lib/haraft/{name}")),
        agent: None,
        systemd: Path::new("/run/systemd/system").is_dir(),
        files: Vec::new(),
    };

    // Recommends (postgresql) would need the network; PostgreSQL 15 is here.
    ok("apt-get", &["install", "-y", "--no-install-recommends", &deb.display().to_string()]);
    let package_files = ok("dpkg", &["-L", "haraft"]);
    check_files(&package_files);
    verify_unit();

    // The reference config validates once its password files exist, as
    // the README's install steps make them.
    std::fs::create_dir_all("/etc/haraft/secrets").expect("secrets dir");
    std::fs::set_permissions("/etc/haraft/secrets", std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown("/etc/haraft/secrets", Some(pg.uid), Some(pg.gid)).expect("chown");
    for (file, text) in [("superuser", "pkg-superuser-secret"), ("replication", "pkg-replication-secret")] {
        let path = PathBuf::from(format!("/etc/haraft/secrets/{file}"));
        secret(&path, text, pg.uid, pg.gid);
        instance.files.push(path);
    }
    let checked = ok("/usr/bin/haraft", &["--check-config", "/etc/haraft/reference.toml"]);
    assert!(checked.contains("reference.toml: ok"), "{checked}");

    // A one-node cluster: its Raft data and PostgreSQL 15 data directory
    // under the instance's state directory (data/ and data/pgdata/).
    let ports = free_ports(3);
    let endpoint = format!("127.0.0.1:{}", ports[0]);
    let bin_dir = "/usr/lib/postgresql/15/bin";
    let config = format!(
        "[cluster]\nname = \"{name}\"\n\n[node]\nid = 1\ndata_dir = \"data\"\n\n[rest]\nlisten = \"127.0.0.1:{}\"\n\n\
         [[member]]\nid = 1\nname = \"node1\"\naddress = \"{endpoint}\"\n\n[postgresql]\nlisten = \"127.0.0.1:{}\"\n\
         bin_dir = \"{bin_dir}\"\nsuperuser_password_file = \"secrets/superuser\"\n\
         replication_password_file = \"secrets/replication\"\n",
        ports[1], ports[2]
    );
    let config_path = PathBuf::from(format!("/etc/haraft/{name}.toml"));
    std::fs::write(&config_path, config).expect("instance config");
    instance.files.push(config_path);

    let unit = std::fs::read_to_string(UNIT).expect("installed unit");
    if instance.systemd {
        ok("systemctl", &["start", &format!("haraft@{name}.service")]);
    } else {
        println!("no systemd on this host: running the unit's ExecStartPre and ExecStart lines as its User=");
        assert_eq!(unit_values(&unit, "User", &name), ["postgres"], "the unit runs as the database OS user");
        let workdir = PathBuf::from(&unit_values(&unit, "WorkingDirectory", &name)[0]);
        assert_eq!(workdir, instance.state_dir, "WorkingDirectory is the StateDirectory");
        // What StateDirectory= makes under systemd.
        std::fs::create_dir_all(&workdir).expect("state dir");
        std::fs::set_permissions(&workdir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(&workdir, Some(pg.uid), Some(pg.gid)).expect("chown");
        let command = |line: &str| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let mut c = Command::new(words[0]);
            c.args(&words[1..]).current_dir(&workdir).uid(pg.uid).gid(pg.gid).env("HOME", &workdir);
            c
        };
        for pre in unit_values(&unit, "ExecStartPre", &name) {
            let out = command(&pre).output().expect("ExecStartPre");
            assert!(out.status.success(), "{pre}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let start = &unit_values(&unit, "ExecStart", &name)[0];
        let log = std::fs::File::create(workdir.join("agent.log")).expect("agent log");
        let child = command(start).process_group(0).stderr(log).spawn().expect("ExecStart");
        instance.agent = Some(child);
    }

    let deadline = Instant::now() + PRIMARY_LIMIT;
    loop {
        let s = status(&endpoint);
        if s.as_ref().is_some_and(|s| s["primary"] == "node1" && s["members"][0]["role"] == "primary") {
            break;
        }
        if let Some(child) = instance.agent.as_mut()
            && let Ok(Some(exit)) = child.try_wait()
        {
            let log = std::fs::read_to_string(instance.state_dir.join("agent.log")).unwrap_or_default();
            panic!("the agent exited ({exit}) before a primary was up:\n{log}");
        }
        assert!(Instant::now() < deadline, "no primary within {PRIMARY_LIMIT:?}; last status: {s:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let table = ok("/usr/bin/haraftctl", &["--endpoints", &endpoint, "status"]);
    assert!(table.contains("Primary:      node1 (epoch 1"), "{table}");

    instance.stop();
    assert!(status(&endpoint).is_none(), "the agent still answers after it was stopped");

    ok("apt-get", &["remove", "-y", "haraft"]);
    for gone in ["/usr/bin/haraft", "/usr/bin/haraftctl", UNIT, "/usr/share/man/man1/haraftctl.1.gz"] {
        assert!(!Path::new(gone).exists(), "{gone} is left after apt-get remove");
    }
    assert!(Path::new("/etc/haraft/reference.toml").is_file(), "remove keeps conffiles until purge");
    for f in std::mem::take(&mut instance.files) {
        std::fs::remove_file(&f).expect("the test's own files");
    }
    std::fs::remove_dir("/etc/haraft/secrets").expect("the test's secrets dir");
    ok("apt-get", &["purge", "-y", "haraft"]);
    assert!(!Path::new("/etc/haraft").exists(), "/etc/haraft is left after apt-get purge");
    assert!(!installed(), "dpkg still lists haraft as installed");
    for line in package_files.lines().filter(|l| !l.is_empty()) {
        let p = Path::new(line);
        // Shared directories (/usr/share/man/man1, ...) stay, the package's files go.
        assert!(!p.exists() || p.is_dir() && !line.contains("haraft"), "{line} is left after apt-get purge");
    }
}
