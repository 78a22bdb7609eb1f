//! The shipped HAProxy config (deploy/haproxy.cfg) in front of real agents
//! and PostgreSQL 15: writes through its primary port resume after a
//! failover (primary host killed) and a switchover, never reach a
//! non-primary, and none acknowledged is lost (synchronous mode); reads
//! through its replica port reach only standbys.

use haraft_testkit::check::{LIMIT, normal, primary_id, wait_normal, wait_status};
use haraft_testkit::procs::{ProcCluster, free_ports};
use haraft_testkit::wait_for;
use haraft_testkit::writer::{self, Writer};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// HAProxy, in its own process group, stopped when dropped.
struct Haproxy {
    child: Child,
    pub write_port: u16,
    pub read_port: u16,
}

impl Haproxy {
    /// Starts HAProxy with deploy/haproxy.cfg, its three servers pointed
    /// at the cluster's PostgreSQL servers and REST APIs.
    fn start(c: &ProcCluster) -> Haproxy {
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/haproxy.cfg"))
            .expect("deploy/haproxy.cfg");
        let pg = c.pg.as_ref().expect("postgres cluster");
        let ports = free_ports(2);
        let mut text = String::new();
        for line in shipped.lines() {
            let mut line = line.replace("bind *:5000", &format!("bind 127.0.0.1:{}", ports[0]));
            line = line.replace("bind *:5001", &format!("bind 127.0.0.1:{}", ports[1]));
            for i in 1..=3usize {
                let rest_port = c.rest[i - 1].rsplit(':').next().expect("host:port");
                line = line.replace(
                    &format!("10.0.0.1{i}:5432 maxconn 400 check port 8008"),
                    &format!("127.0.0.1:{} maxconn 400 check port {rest_port}", pg.ports[i - 1]),
                );
            }
            text.push_str(&line);
            text.push('\n');
        }
        assert!(!text.contains("10.0.0.1"), "a server line of deploy/haproxy.cfg was not rewritten:\n{text}");
        let config = c.dir.path().join("haproxy.cfg");
        std::fs::write(&config, text).expect("write haproxy.cfg");
        let binary = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("haproxy is not installed: apt-get install haproxy (.ci/run installs it)");
        let check = Command::new(binary).arg("-c").arg("-f").arg(&config).output().expect("run haproxy -c");
        assert!(check.status.success(), "haproxy refuses the config: {}", String::from_utf8_lossy(&check.stderr));
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(c.dir.path().join("haproxy.log")).expect("haproxy log");
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start haproxy");
        Haproxy { child, write_port: ports[0], read_port: ports[1] }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created for HAProxy.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Whether a connection through the replica port lands on a standby.
async fn read_lands_on_standby(port: u16, password: &str) -> Option<bool> {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(port).user("postgres").password(password).dbname("postgres");
    config.connect_timeout(Duration::from_secs(2));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(conn);
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await.ok()?;
    Some(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_haproxy_follow_a_failover_and_a_switchover_and_never_reach_a_standby() {
    let mut c = ProcCluster::with_postgres(3, "[failover]\nsynchronous_mode = true\n");
    c.start_all();
    let first = primary_id(&wait_normal(&c, "bootstrap").await).unwrap();
    let proxy = Haproxy::start(&c);
    let (ports, password) = {
        let pg = c.pg.as_ref().unwrap();
        (pg.ports.clone(), pg.superuser_password.clone())
    };
    // HAProxy needs one check round to find the primary.
    let w = wait_for_writer(proxy.write_port, &password).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    c.kill_host(first);
    let second =
        wait_for("a new primary", LIMIT, || c.status().and_then(|s| primary_id(&s).filter(|p| *p != first))).await;
    wait_for_acks_on(&w, ports[second as usize - 1]).await;

    // The old host back; then a planned switchover to the third member.
    c.start(first);
    wait_normal(&c, "the old primary streaming again").await;
    let third = (1..=3).find(|i| *i != first && *i != second).unwrap();
    let (code, out, err) = c.ctl(&["switchover", "--to", &format!("node{third}"), "--force"]);
    assert_eq!(code, 0, "switchover failed: {out}{err}");
    wait_status(&c, "switchover done", |s| primary_id(s) == Some(third) && normal(s)).await;
    wait_for_acks_on(&w, ports[third as usize - 1]).await;

    // Reads through the replica port land on standbys only. Right after the
    // switchover HAProxy may still have every replica marked down (each
    // briefly stopped streaming while it followed the new primary): wait
    // for one, then every read must reach a standby. And the new primary,
    // a replica until the switchover, stays in the replica pool until two
    // of HAProxy's checks a second apart failed (deploy/haproxy.cfg: `inter
    // 1s fall 2`; CI once read from it within that window): that long is
    // waited out first.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let start = std::time::Instant::now();
    let mut reads = 0;
    while reads < 10 {
        match read_lands_on_standby(proxy.read_port, &password).await {
            Some(standby) => {
                assert!(standby, "a read through the replica port reached the primary");
                reads += 1;
            }
            None => {
                assert!(start.elapsed() < Duration::from_secs(30), "no replica reachable for reads through HAProxy");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    let refused = w.refused_read_only();
    let acks = w.stop().await;
    let committed = writer::committed_ids(&ports, &password).await;
    let lost = writer::lost(&acks, &committed);
    assert!(lost.is_empty(), "lost {} acknowledged writes through HAProxy: {lost:?}", lost.len());
    assert_eq!(refused, 0, "{refused} writes reached a standby through HAProxy's primary port");
    writer::assert_no_overlap(&acks, "writes through HAProxy");
    let failover_gap =
        writer::switch_gap(&acks, ports[first as usize - 1]).expect("writes moved off the first primary");
    let switchover_gap =
        writer::switch_gap(&acks, ports[second as usize - 1]).expect("writes moved off the second primary");
    eprintln!(
        "through HAProxy: {} acks, none lost, none refused; writes resumed {failover_gap:?} after the failover and {switchover_gap:?} after the switchover",
        acks.len()
    );
    drop(proxy);
}

async fn wait_for_writer(port: u16, password: &str) -> Writer {
    let start = std::time::Instant::now();
    loop {
        // The writer creates its table through the proxy: it needs a primary.
        if let Some(w) = Writer::through(port, password, Duration::from_millis(10), Duration::from_secs(180)).await {
            return w;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no writable primary through HAProxy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the latest acknowledged write came from the server on `port`.
async fn wait_for_acks_on(w: &Writer, port: u16) {
    let what = format!("writes through HAProxy acknowledged by the server on port {port}");
    wait_for(&what, LIMIT, || (w.last_port() == Some(port)).then_some(())).await;
}
