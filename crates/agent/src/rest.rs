//! The REST API: Patroni-compatible health checks for HAProxy and
//! Kubernetes, the status and history documents, Prometheus metrics.
//!
//! Every health answer is decided by `core::health` from this member's own
//! facts read at the request: its lease deadline on its own clock, its last
//! observation of PostgreSQL. It never answers from the leader's copy.

use crate::clock::boottime;
use crate::shared::Shared;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on};
use haraft_core::health::{self, Check, LocalFacts};
use haraft_core::metrics::{self, MetricsFacts};
use openraft::ServerState;
use std::sync::Arc;

/// The health endpoints and what each asks. `/master` is the name older
/// Patroni HAProxy configs use for `/primary`.
const HEALTH: [(&str, Kind); 10] = [
    ("/primary", Kind::Primary),
    ("/master", Kind::Primary),
    ("/read-write", Kind::Primary),
    ("/replica", Kind::Replica),
    ("/read-only", Kind::ReadOnly),
    ("/leader", Kind::Leader),
    ("/health", Kind::Health),
    ("/liveness", Kind::Liveness),
    ("/readiness", Kind::Readiness),
    ("/", Kind::Primary),
];

/// An endpoint before its query is read (the lag limit).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Primary,
    Replica,
    ReadOnly,
    Leader,
    Health,
    Liveness,
    Readiness,
}

pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    let methods = MethodFilter::GET.or(MethodFilter::HEAD).or(MethodFilter::OPTIONS);
    for (path, kind) in HEALTH {
        router = router.route(path, on(methods, move |s: State<Arc<Shared>>, q: RawQuery| health_check(s, q, kind)));
    }
    router
        .route("/cluster", get(cluster))
        .route("/history", get(history))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(shared)
}

/// Serves the API on `listener` until `stop` changes: HTTPS when `tls` is
/// given (rest.tls), plain HTTP otherwise.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let app = router(shared);
    let Some(tls) = tls else {
        let stopped = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::error!(error = %e, "rest server stopped");
        }
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "rest: accept failed");
                    continue;
                }
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A handshake that does not finish in time is dropped.
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "rest: tls handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
        });
    }
}

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// This member's facts at this moment.
pub fn local_facts(shared: &Shared) -> LocalFacts {
    let now = boottime();
    let lease = *shared.lease_view.borrow();
    let state = shared.state();
    let db = shared.db_status.lock().expect("never poisoned").clone();
    let lease_valid_for_ms = lease.valid_for_ms(now);
    LocalFacts {
        lease_valid_for_ms,
        lease_epoch: lease.epoch.filter(|_| lease_valid_for_ms.is_some()),
        streaming_from_primary: db.as_ref().is_some_and(|d| health::streams_from_primary(&state, d)),
        db,
        manages_db: shared.config.postgres.is_some(),
        primary_lsn: state.primary_position.map(|p| p.lsn),
        loop_age_ms: shared.loop_stats.age_ms(now),
        ttl_ms: state.config.unwrap_or(shared.config.timing).lease_ttl_ms,
    }
}

/// The `lag` query parameter (`?lag=16MB`); other parameters are ignored,
/// as Patroni ignores the tag filters it does not know.
fn lag_limit(query: Option<&str>) -> Result<Option<u64>, String> {
    let Some(query) = query else { return Ok(None) };
    match query.split('&').find_map(|pair| pair.strip_prefix("lag=")) {
        Some(value) => health::parse_lag(&percent_decode(value)).map(Some),
        None => Ok(None),
    }
}

/// `%XX` and `+` decoding of one query value (HAProxy sends them plain;
/// a hand-typed curl may not).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn health_check(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery, kind: Kind) -> Response {
    let max_lag_bytes = match lag_limit(query.as_deref()) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let check = match kind {
        Kind::Primary => Check::Primary,
        Kind::Replica => Check::Replica { max_lag_bytes },
        Kind::ReadOnly => Check::ReadOnly { max_lag_bytes },
        Kind::Leader => Check::Leader,
        Kind::Health => Check::Health,
        Kind::Liveness => Check::Liveness,
        Kind::Readiness => Check::Readiness { max_lag_bytes },
    };
    let facts = local_facts(&shared);
    let answer = health::check(check, &facts);
    let body = health::node_health(&shared.config.cluster, &shared.config.node_name, &facts, &answer);
    let code = if answer.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(code, serde_json::to_string(&body).expect("a health body always encodes"))
}

async fn cluster(State(shared): State<Arc<Shared>>) -> Response {
    match crate::admin::status_document(&shared, false, None).await {
        Ok(doc) => json(StatusCode::OK, doc),
        Err(s) => error(StatusCode::SERVICE_UNAVAILABLE, s.message()),
    }
}

async fn history(State(shared): State<Arc<Shared>>) -> Response {
    match crate::admin::history_document(&shared, false, None).await {
        Ok(doc) => json(StatusCode::OK, doc),
        Err(s) => error(StatusCode::SERVICE_UNAVAILABLE, s.message()),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let state = shared.state();
    let raft = shared.metrics();
    let (loop_buckets, loop_sum_seconds, loop_count) = shared.loop_stats.histogram();
    let facts = MetricsFacts {
        cluster: shared.config.cluster.clone(),
        node: shared.config.node_name.clone(),
        local: local_facts(&shared),
        epoch: state.epoch.0,
        raft_term: raft.current_term,
        raft_leader: raft.current_leader,
        raft_is_leader: raft.state == ServerState::Leader,
        raft_commit_index: *shared.committed.borrow(),
        raft_applied_index: raft.last_applied.map(|l| l.index),
        paused: state.paused,
        transitions: shared.transitions.lock().expect("never poisoned").clone(),
        last_decision: shared.last_decision.lock().expect("never poisoned").clone(),
        outside_promotions: shared.outside_promotions.load(std::sync::atomic::Ordering::Relaxed),
        discarded_wal_bytes: shared.discarded_wal_bytes.load(std::sync::atomic::Ordering::Relaxed),
        actions: shared
            .action_counts
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|((kind, outcome), n)| (kind.to_string(), outcome.to_string(), *n))
            .collect(),
        loop_buckets,
        loop_sum_seconds,
        loop_count,
    };
    let mut response = metrics::metrics_text(&facts).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let paths: Vec<&str> = HEALTH.iter().map(|(p, _)| *p).filter(|p| *p != "/").collect();
    let message = format!("no endpoint {}: use one of {}, /cluster, /history, /metrics", uri.path(), paths.join(", "));
    error(StatusCode::NOT_FOUND, &message)
}

fn json(code: StatusCode, body: String) -> Response {
    let mut response = (code, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(code: StatusCode, message: &str) -> Response {
    json(code, serde_json::json!({ "error": message }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_query() {
        assert_eq!(lag_limit(None), Ok(None));
        assert_eq!(lag_limit(Some("tag_x=1")), Ok(None));
        assert_eq!(lag_limit(Some("lag=16MB")), Ok(Some(16 << 20)));
        assert_eq!(lag_limit(Some("a=b&lag=1%20kB")), Ok(Some(1024)));
        assert!(lag_limit(Some("lag=lots")).unwrap_err().contains("lag=\"lots\" is not a size"));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("é%é1"), "é%é1");
    }
}
