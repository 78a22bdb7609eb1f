//! The SQL side of the shared adapter part: the kept connection to the
//! local server, queries under a timeout that forget it when they fail,
//! a checkpoint on a rewind source, and haraft's replication slots.

use super::Local;
use crate::{DbError, Upstream};
use std::future::Future;
use std::time::Duration;

impl Local {
    /// The kept connection to the local server, or a new one.
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<std::sync::Arc<tokio_postgres::Client>, DbError> {
        let kept = self.client.lock().expect("never poisoned").clone();
        if let Some(client) = kept.filter(|c| !c.is_closed()) {
            return Ok(client);
        }
        let client = std::sync::Arc::new(self.open(timeout).await?);
        *self.client.lock().expect("never poisoned") = Some(std::sync::Arc::clone(&client));
        Ok(client)
    }

    /// Drops the kept connection (a query on it failed or timed out: the
    /// next one may queue behind what hangs there).
    pub(crate) fn forget_connection(&self) {
        *self.client.lock().expect("never poisoned") = None;
    }

    /// `work` (queries on the kept connection) under `timeout`; when it
    /// fails or times out the kept connection is dropped, since what hangs
    /// on it would hold up the next query. `what` names the work in the
    /// timeout's error ("querying PostgreSQL").
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        timeout: Duration,
        work: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Timeout { what: what.into(), after: timeout }),
        };
        if result.is_err() {
            self.forget_connection();
        }
        result
    }

    /// How haraft connects as the superuser to the server at `host:port`.
    fn superuser_config(&self, host: &str, port: u16, timeout: Duration) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .user(&self.cfg.superuser)
            .password(&self.cfg.superuser_password)
            .dbname("postgres")
            .application_name("haraft")
            .connect_timeout(timeout);
        config
    }

    /// A new connection to the local server.
    pub(crate) async fn open(&self, timeout: Duration) -> Result<tokio_postgres::Client, DbError> {
        let config = self.superuser_config(&self.cfg.host, self.cfg.port, timeout);
        let connect = config.connect(tokio_postgres::NoTls);
        let (client, connection) = match tokio::time::timeout(timeout, connect).await {
            Err(_) => return Err(DbError::Timeout { what: "connecting to PostgreSQL".into(), after: timeout }),
            Ok(Err(e))
                if e.as_db_error()
                    .is_some_and(|d| *d.code() == tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW) =>
            {
                return Err(DbError::NotAcceptingConnections(DbError::query(&e).to_string()));
            }
            Ok(Err(e)) => return Err(DbError::query(&e)),
            Ok(Ok(pair)) => pair,
        };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Asks the rewind source for a checkpoint, so that its control file
    /// names its current timeline (see `promote`).
    pub(crate) async fn checkpoint_source(&self, source: &Upstream, timeout: Duration) -> Result<(), DbError> {
        let config = self.superuser_config(&source.host, source.port, timeout);
        let work = async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| DbError::query(&e))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client.batch_execute("CHECKPOINT").await.map_err(|e| DbError::query(&e))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Timeout { what: format!("a checkpoint on {}", source.name), after: timeout }),
        }
    }

    /// Makes haraft's physical slots exactly `slots` (see
    /// `Database::set_replication_slots`); `create` is the engine's call
    /// that creates one reserved physical slot named `$1`.
    pub(crate) async fn sync_slots(&self, slots: &[String], create: &str, timeout: Duration) -> Result<(), DbError> {
        let client = self.connect(timeout).await?;
        let q = |e: tokio_postgres::Error| DbError::query(&e);
        let work = async {
            let existing = client
                .query(
                    "SELECT slot_name::text, active FROM pg_replication_slots
                      WHERE slot_type = 'physical' AND slot_name LIKE 'haraft\\_%'",
                    &[],
                )
                .await
                .map_err(q)?;
            for row in &existing {
                let (name, active): (String, bool) = (row.get(0), row.get(1));
                if !slots.contains(&name) && !active {
                    client.execute("SELECT pg_drop_replication_slot($1)", &[&name]).await.map_err(q)?;
                }
            }
            for name in slots {
                if !existing.iter().any(|r| r.get::<_, String>(0) == *name) {
                    client.execute(create, &[name]).await.map_err(q)?;
                }
            }
            Ok(())
        };
        self.timed("setting replication slots", timeout, work).await
    }
}
