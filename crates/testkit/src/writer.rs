//! A writer that inserts unique ids through a libpq-style multi-host
//! connection with `target_session_attrs=read-write`, recording every
//! acknowledged id with the server that acknowledged it and when; and the
//! checkers that read those records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Ack {
    pub id: i64,
    /// The port of the server that acknowledged the commit.
    pub port: u16,
    pub at: Instant,
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Ack>>,
}

fn config(ports: &[u16], password: &str, read_write: bool) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    for p in ports {
        c.host("127.0.0.1").port(*p);
    }
    c.user("postgres").password(password).dbname("postgres").connect_timeout(Duration::from_secs(1));
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
        let client = connect(&c).await.expect("a writable server for the writer's table");
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
            .await
            .expect("create the writer's table");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut acks = Vec::new();
            let mut next_id = 1i64;
            let mut client = Some(client);
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
                let insert = cl.query_one("INSERT INTO writes (id) VALUES ($1) RETURNING inet_server_port()", &params);
                match tokio::time::timeout(Duration::from_secs(2), insert).await {
                    Ok(Ok(row)) => {
                        let port: i32 = row.get(0);
                        acks.push(Ack { id, port: port as u16, at: Instant::now() });
                        tokio::time::sleep(every).await;
                    }
                    // Unacknowledged: it may or may not have committed;
                    // only acknowledged ids are checked.
                    _ => client = None,
                }
            }
            acks
        });
        Writer { stop, task }
    }

    pub async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task")
    }
}

/// The ids present on the writable server now.
pub async fn committed_ids(ports: &[u16], password: &str) -> Vec<i64> {
    let client = connect(&config(ports, password, true)).await.expect("a writable server to read back from");
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

/// Servers that acknowledged writes in overlapping time: in acknowledgement
/// order, each server must appear in one contiguous run. Returns the ports
/// that came back after another server had acknowledged.
pub fn overlapping(acks: &[Ack]) -> Vec<u16> {
    let mut sorted: Vec<&Ack> = acks.iter().collect();
    sorted.sort_by_key(|a| a.at);
    let mut seen = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    let mut current = None;
    for a in sorted {
        if current != Some(a.port) {
            if !seen.insert(a.port) {
                bad.push(a.port);
            }
            current = Some(a.port);
        }
    }
    bad
}

/// The gap between the last acknowledgement by `old` and the first by any
/// other server after it: how long writes were unavailable.
pub fn switch_gap(acks: &[Ack], old: u16) -> Option<Duration> {
    let last_old = acks.iter().filter(|a| a.port == old).map(|a| a.at).max()?;
    let first_new = acks.iter().filter(|a| a.port != old && a.at > last_old).map(|a| a.at).min()?;
    Some(first_new - last_old)
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
        let ack = |id, port, ms| Ack { id, port, at: t0 + Duration::from_millis(ms) };
        let acks = vec![ack(1, 5001, 0), ack(2, 5001, 10), ack(4, 5002, 500), ack(5, 5002, 510)];
        assert!(overlapping(&acks).is_empty());
        assert_eq!(switch_gap(&acks, 5001), Some(Duration::from_millis(490)));
        assert_eq!(lost(&acks, &[1, 2, 4]), vec![5]);
        assert_eq!(longest_gap(&acks), Some(Duration::from_millis(490)));
        let mut bad = acks.clone();
        bad.push(ack(6, 5001, 520));
        assert_eq!(overlapping(&bad), vec![5001]);
    }
}
