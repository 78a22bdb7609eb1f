//! A writer that inserts unique ids through a libpq-style multi-host
//! connection with `target_session_attrs=read-write`, recording every
//! acknowledged id with the server that acknowledged it and when; and the
//! checkers that read those records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Ack {
    pub id: i64,
    /// The port of the server that acknowledged the commit.
    pub port: u16,
    /// The server's timeline when it took the write: every promotion
    /// starts a new one, so (port, timeline) names one primary's tenure.
    pub timeline: u32,
    pub at: Instant,
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    /// Writes a server refused as read-only: a write that reached a
    /// standby (only possible through a proxy, which may route anywhere).
    refused_read_only: Arc<AtomicUsize>,
    last_port: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<Vec<Ack>>,
}

fn config(ports: &[u16], password: &str, read_write: bool) -> tokio_postgres::Config {
    config_as("postgres", ports, password, read_write)
}

fn config_as(user: &str, ports: &[u16], password: &str, read_write: bool) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    for p in ports {
        c.host("127.0.0.1").port(*p);
    }
    c.user(user).password(password).dbname("postgres").connect_timeout(Duration::from_secs(1));
    if read_write {
        c.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    }
    c
}

async fn connect(c: &tokio_postgres::Config) -> Option<tokio_postgres::Client> {
    let (client, conn) =
        tokio::time::timeout(Duration::from_secs(3), c.connect(tokio_postgres::NoTls)).await.ok()?.ok()?;
    tokio::spawn(conn);
    Some(client)
}

impl Writer {
    /// Creates the table (through whichever server is writable) and starts
    /// writing one row every `every` until stopped, for at most `limit`.
    pub async fn start(ports: &[u16], password: &str, every: Duration, limit: Duration) -> Writer {
        let c = config(ports, password, true);
        let client = Writer::create_table(&c).await.expect("a writable server for the writer's table");
        Writer::start_with(c, Some(client), 1, every, limit, false)
    }

    /// `start` as another database user (dm-emul's servers know SYSDBA).
    pub async fn start_as(user: &str, ports: &[u16], password: &str, every: Duration, limit: Duration) -> Writer {
        let c = config_as(user, ports, password, true);
        let client = Writer::create_table(&c).await.expect("a writable server for the writer's table");
        Writer::start_with(c, Some(client), 1, every, limit, false)
    }

    /// Like `start`, through one address (a proxy such as HAProxy) that
    /// decides where writes go: no `target_session_attrs`, so a write the
    /// proxy sends to a standby is refused there and counted. `None` while
    /// the proxy reaches no primary to create the table on.
    pub async fn through(port: u16, password: &str, every: Duration, limit: Duration) -> Option<Writer> {
        let c = config(&[port], password, false);
        let client = Writer::create_table(&c).await?;
        Some(Writer::start_with(c, Some(client), 1, every, limit, false))
    }

    /// A writer bound to one server, whatever its role, as a client that
    /// ignores roles would be: ids from `first_id`, the table created
    /// elsewhere first. Refused and failed writes are retried on a new
    /// connection.
    pub fn direct(port: u16, password: &str, first_id: i64, every: Duration, limit: Duration) -> Writer {
        Writer::start_with(config(&[port], password, false), None, first_id, every, limit, true)
    }

    async fn create_table(c: &tokio_postgres::Config) -> Option<tokio_postgres::Client> {
        let client = connect(c).await?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
            .await
            .ok()?;
        Some(client)
    }

    fn start_with(
        c: tokio_postgres::Config,
        client: Option<tokio_postgres::Client>,
        first_id: i64,
        every: Duration,
        limit: Duration,
        direct: bool,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let refused_read_only = Arc::new(AtomicUsize::new(0));
        let refused = Arc::clone(&refused_read_only);
        let last_port = Arc::new(AtomicU16::new(0));
        let last = Arc::clone(&last_port);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut acks = Vec::new();
            let mut next_id = first_id;
            let mut client = client;
            while !flag.load(Ordering::Relaxed) && started.elapsed() < limit {
                let Some(cl) = client.as_ref() else {
                    client = connect(&c).await;
                    if client.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                };
                let id = next_id;
                next_id += 1;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
                // Schema-qualified: on og-emul's servers the PostgreSQL
                // names are hidden behind openGauss's (the test client
                // reads the timeline of the PostgreSQL underneath).
                let insert = cl.query_one(
                    "INSERT INTO writes (id) VALUES ($1) RETURNING inet_server_port(), \
                     substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8)",
                    &params,
                );
                match tokio::time::timeout(Duration::from_secs(2), insert).await {
                    Ok(Ok(row)) => {
                        let port: i32 = row.get(0);
                        let timeline = u32::from_str_radix(row.get::<_, &str>(1), 16).expect("a WAL file name");
                        acks.push(Ack { id, port: port as u16, timeline, at: Instant::now() });
                        last.store(port as u16, Ordering::Relaxed);
                        tokio::time::sleep(every).await;
                    }
                    Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        // Through a proxy the next connection may reach
                        // another server; a direct one keeps its server.
                        if !direct {
                            client = None;
                        }
                        tokio::time::sleep(every).await;
                    }
                    // Unacknowledged: it may or may not have committed;
                    // only acknowledged ids are checked.
                    _ => client = None,
                }
            }
            acks
        });
        Writer { stop, refused_read_only, last_port, task }
    }

    /// The port of the server that acknowledged the latest write.
    pub fn last_port(&self) -> Option<u16> {
        Some(self.last_port.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    pub fn refused_read_only(&self) -> usize {
        self.refused_read_only.load(Ordering::Relaxed)
    }

    pub async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task")
    }
}

/// The ids present on the writable server now.
pub async fn committed_ids(ports: &[u16], password: &str) -> Vec<i64> {
    committed_ids_as("postgres", ports, password).await
}

/// `committed_ids` as another database user.
pub async fn committed_ids_as(user: &str, ports: &[u16], password: &str) -> Vec<i64> {
    let client = connect(&config_as(user, ports, password, true)).await.expect("a writable server to read back from");
    client
        .query("SELECT id FROM writes ORDER BY id", &[])
        .await
        .expect("read writes")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Acknowledged ids missing from `committed`.
pub fn lost(acks: &[Ack], committed: &[i64]) -> Vec<i64> {
    let have: std::collections::BTreeSet<i64> = committed.iter().copied().collect();
    acks.iter().map(|a| a.id).filter(|id| !have.contains(id)).collect()
}

/// Primaries that acknowledged writes in overlapping time. A tenure is a
/// (server, timeline): every promotion starts a new timeline, and a server
/// may be primary again later on a newer one. In acknowledgement order
/// each tenure must be one contiguous run and timelines never go back.
/// Returns, in words, every tenure that broke this.
pub fn overlapping(acks: &[Ack]) -> Vec<String> {
    let mut sorted: Vec<&Ack> = acks.iter().collect();
    sorted.sort_by_key(|a| a.at);
    let mut seen = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    let mut current: Option<(u16, u32)> = None;
    for a in sorted {
        let tenure = (a.port, a.timeline);
        if current == Some(tenure) {
            continue;
        }
        if !seen.insert(tenure) {
            bad.push(format!(
                "port {} on timeline {} acknowledged id {} again after another primary",
                a.port, a.timeline, a.id
            ));
        } else if let Some((port, timeline)) = current.filter(|(_, t)| *t > a.timeline) {
            bad.push(format!(
                "port {} on timeline {} acknowledged id {} after port {port} on newer timeline {timeline}",
                a.port, a.timeline, a.id
            ));
        }
        current = Some(tenure);
    }
    bad
}

/// Fails (naming every offending tenure) when primaries acknowledged
/// writes in overlapping time; `what` says which run.
pub fn assert_no_overlap(acks: &[Ack], what: &str) {
    let bad = overlapping(acks);
    assert!(bad.is_empty(), "{what}: two primaries acknowledged writes in overlapping time: {}", bad.join("; "));
}

/// The gap between the last acknowledgement by `old` and the first by any
/// other server after it: how long writes were unavailable.
pub fn switch_gap(acks: &[Ack], old: u16) -> Option<Duration> {
    let last_old = acks.iter().filter(|a| a.port == old).map(|a| a.at).max()?;
    let first_new = acks.iter().filter(|a| a.port != old && a.at > last_old).map(|a| a.at).min()?;
    Some(first_new - last_old)
}

/// The longest of the gaps at every change of acknowledging server (each
/// an old primary's last acknowledgement to the next primary's first).
pub fn longest_switch_gap(acks: &[Ack]) -> Option<Duration> {
    let mut sorted: Vec<&Ack> = acks.iter().collect();
    sorted.sort_by_key(|a| a.at);
    sorted.windows(2).filter(|w| w[0].port != w[1].port).map(|w| w[1].at - w[0].at).max()
}

/// The longest pause between two consecutive acknowledgements: how long
/// commits were blocked at worst.
pub fn longest_gap(acks: &[Ack]) -> Option<Duration> {
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    times.windows(2).map(|w| w[1] - w[0]).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkers() {
        let t0 = Instant::now();
        let ack = |id, port, ms| Ack {
            id,
            port,
            timeline: if port == 5001 { 1 } else { 2 },
            at: t0 + Duration::from_millis(ms),
        };
        let acks = vec![ack(1, 5001, 0), ack(2, 5001, 10), ack(4, 5002, 500), ack(5, 5002, 510)];
        assert!(overlapping(&acks).is_empty());
        assert_eq!(switch_gap(&acks, 5001), Some(Duration::from_millis(490)));
        assert_eq!(lost(&acks, &[1, 2, 4]), vec![5]);
        assert_eq!(longest_gap(&acks), Some(Duration::from_millis(490)));
        let mut two = acks.clone();
        two.extend([ack(7, 5003, 1500), ack(8, 5003, 1510)]);
        assert_eq!(longest_switch_gap(&two), Some(Duration::from_millis(990)));
        assert_eq!(longest_switch_gap(&acks[..2]), None);
        // The old primary acknowledging again on its old timeline: overlap.
        let mut bad = acks.clone();
        bad.push(ack(6, 5001, 520));
        assert_eq!(overlapping(&bad).len(), 1, "{:?}", overlapping(&bad));
        // The old primary promoted again later (a newer timeline): fine.
        let mut back = acks.clone();
        back.push(Ack { id: 6, port: 5001, timeline: 3, at: t0 + Duration::from_millis(900) });
        assert!(overlapping(&back).is_empty(), "{:?}", overlapping(&back));
        // A newer tenure's server acknowledged, then an older timeline.
        let mut older = vec![ack(1, 5002, 0)];
        older.push(Ack { id: 2, port: 5003, timeline: 1, at: t0 + Duration::from_millis(10) });
        assert_eq!(overlapping(&older).len(), 1, "{:?}", overlapping(&older));
    }
}
