//! The shipped HAProxy config (deploy/haproxy.cfg) in front of real agents
//! and PostgreSQL 15: writes through its primary port resume after a
//! failover (primary host killed) and a switchover, never reach a
//! non-primary, and none acknowledged is lost (synchronous mode); reads
//! through its replica port reach only standbys.

use haraft_testkit::check::{LIMIT, normal, primary_id, wait_normal, wait_status};
use haraft_testkit::haproxy::Haproxy;
use haraft_testkit::procs::ProcCluster;
use haraft_testkit::wait_for;
use haraft_testkit::writer::{self, Writer};
use std::time::Duration;

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
    let proxy = Haproxy::start(&c).expect("HAProxy with the shipped config");
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
