//! The shipped HAProxy config (`deploy/haproxy.cfg`, embedded at build
//! time) run in front of a test cluster: its three server lines pointed
//! at the cluster's PostgreSQL servers and REST APIs, its two ports on
//! free loopback ports. Used by `tests/haproxy.rs` and `haraft-bench
//! ... --via-haproxy`.

use crate::procs::{ProcCluster, free_ports};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

const SHIPPED: &str = include_str!("../../../deploy/haproxy.cfg");

/// HAProxy, in its own process group, killed when dropped.
pub struct Haproxy {
    child: Child,
    pub write_port: u16,
    pub read_port: u16,
}

impl Haproxy {
    /// Starts HAProxy with the shipped config for the first three members
    /// of `c` (a cluster with PostgreSQL and REST APIs).
    pub fn start(c: &ProcCluster) -> Result<Haproxy, String> {
        let pg = c.pg.as_ref().ok_or("HAProxy needs a cluster managing PostgreSQL")?;
        let ports = free_ports(2);
        // Another config to measure (haraft-bench --haproxy-config FILE):
        // the same three server lines and two binds are rewritten.
        let config = match std::env::var_os("HARAFT_HAPROXY_CONFIG") {
            Some(path) => std::fs::read_to_string(&path)
                .map_err(|e| format!("HAProxy config {}: {e}", std::path::Path::new(&path).display()))?,
            None => SHIPPED.to_string(),
        };
        let mut text = String::new();
        for line in config.lines() {
            let mut line = line.replace("bind *:5000", &format!("bind 127.0.0.1:{}", ports[0]));
            line = line.replace("bind *:5001", &format!("bind 127.0.0.1:{}", ports[1]));
            for i in 1..=3usize.min(c.rest.len()) {
                let rest_port = c.rest[i - 1].rsplit(':').next().unwrap_or_default();
                line = line.replace(
                    &format!("10.0.0.1{i}:5432 maxconn 400 check port 8008"),
                    &format!("127.0.0.1:{} maxconn 400 check port {rest_port}", pg.ports[i - 1]),
                );
            }
            text.push_str(&line);
            text.push('\n');
        }
        if text.contains("10.0.0.1") {
            return Err(format!("a server line of deploy/haproxy.cfg was not rewritten:\n{text}"));
        }
        let config = c.dir.path().join("haproxy.cfg");
        std::fs::write(&config, text).map_err(|e| format!("writing {}: {e}", config.display()))?;
        let binary = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("haproxy is not installed: apt-get install haproxy (.ci/run installs it)")?;
        let check = Command::new(binary).arg("-c").arg("-f").arg(&config).output().map_err(|e| e.to_string())?;
        if !check.status.success() {
            return Err(format!("haproxy refuses the config: {}", String::from_utf8_lossy(&check.stderr)));
        }
        let log_path = c.dir.path().join("haproxy.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting haproxy: {e}"))?;
        Ok(Haproxy { child, write_port: ports[0], read_port: ports[1] })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this Haproxy created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
