//! Talking to agents: one admin client per endpoint (TLS and token as
//! given on the command line), and reads raced across the endpoints.

use haraft_proto::admin::admin_client::AdminClient;
use haraft_proto::admin::{HistoryRequest, StatusRequest};
use std::time::Duration;

/// Which document to ask an agent for.
#[derive(Clone, Copy)]
pub(crate) enum Ask {
    Status,
    History,
}

/// An admin client for one endpoint, connected within `timeout`.
pub(crate) async fn connect(
    endpoint: &str,
    timeout: Duration,
) -> Result<AdminClient<tonic::transport::Channel>, String> {
    let scheme = if TLS.get().is_some() { "https" } else { "http" };
    let mut target = tonic::transport::Endpoint::from_shared(format!("{scheme}://{endpoint}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout);
    if let Some(tls) = TLS.get() {
        // The agent's certificate must be valid for the host as typed.
        let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h).trim_matches(['[', ']']);
        target = target.tls_config(tls.client(host)).map_err(|e| format!("tls: {e}"))?;
    }
    let channel = target.connect().await.map_err(|e| {
        // The innermost cause says what went wrong (refused, a certificate
        // from another CA, a plaintext agent...).
        let mut cause: &dyn std::error::Error = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        format!("cannot connect: {cause}")
    })?;
    Ok(AdminClient::new(channel))
}

/// What a failed call says, with what to do when the agent speaks TLS and
/// haraftctl was not given the cluster's certificates (tonic reports that
/// as an HTTP/2 protocol error).
pub(crate) fn call_error(status: &tonic::Status) -> String {
    let message = status.message();
    if TLS.get().is_none() && is_transport_failure(status) {
        return format!(
            "the agent accepted the connection but not plaintext gRPC ({message}): a cluster with [tls] needs --ca-file, --cert-file and --key-file"
        );
    }
    message.to_string()
}

/// A failure of the connection itself (tonic's words), not an answer the
/// agent gave: a TLS agent drops a plaintext client this way.
pub(crate) fn is_transport_failure(status: &tonic::Status) -> bool {
    let m = status.message();
    m.contains("h2 protocol error") || m.contains("transport error")
}

/// The bearer token from --token-file, set once at start.
pub(crate) static TOKEN: std::sync::OnceLock<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
    std::sync::OnceLock::new();

pub(crate) fn read_token(
    path: &std::path::Path,
) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read --token-file {shown}: {e}"))?;
    if let Some(mode) = haraft_raft::tls::open_to_others(path) {
        return Err(format!("--token-file {shown} is readable by other users (mode {mode:o}): chmod 600 it"));
    }
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(format!("--token-file {shown} is empty: its first line is the token"));
    }
    format!("Bearer {token}")
        .parse()
        .map_err(|_| format!("--token-file {shown}: the token has characters a header cannot carry"))
}

/// `message` as a request carrying the token, when one was given.
pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = TOKEN.get() {
        request.metadata_mut().insert("authorization", token.clone());
    }
    request
}

/// The TLS material from --ca-file/--cert-file/--key-file, set once at start.
pub(crate) static TLS: std::sync::OnceLock<haraft_raft::tls::Tls> = std::sync::OnceLock::new();

/// How long each endpoint gets before the next one is asked as well: an
/// agent answers status in well under this on a healthy cluster, so the
/// others are asked only when one hangs (a frozen host), and a hung first
/// endpoint costs this, not the whole timeout.
const HEAD_START: Duration = Duration::from_millis(250);

/// How long a status that names no Raft leader waits for one that does
/// from the other endpoints: an election takes well under a second.
const PARTIAL_GRACE: Duration = Duration::from_millis(1500);

/// A document from the first endpoint that answers. Endpoints are asked
/// in order, each with a head start of [`HEAD_START`] over the next, and
/// concurrently once asked; the first answer that speaks for the Raft
/// leader wins (a leaderless status only if none does).
pub(crate) async fn fetch(endpoints: &[String], timeout: Duration, ask: Ask) -> Result<String, String> {
    let mut set = tokio::task::JoinSet::new();
    for (i, endpoint) in endpoints.iter().cloned().enumerate() {
        set.spawn(async move {
            tokio::time::sleep(HEAD_START * i as u32).await;
            let attempt = async {
                let mut client = connect(&endpoint, timeout).await?;
                let json = match ask {
                    Ask::Status => {
                        client.status(request(StatusRequest { local_only: false })).await.map(|r| r.into_inner().json)
                    }
                    Ask::History => {
                        client.history(request(HistoryRequest { local_only: false })).await.map(|r| r.into_inner().json)
                    }
                };
                json.map_err(|s| call_error(&s))
            };
            let answer = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(json)) => Ok(json),
                Ok(Err(e)) => Err(format!("{endpoint}: {e}")),
                Err(_) => Err(format!("{endpoint}: no answer within {} ms", timeout.as_millis())),
            };
            (i, answer)
        });
    }
    let mut failures = Vec::new();
    // A status from an agent that knows no Raft leader (one waiting to be
    // added, cut off, or in the middle of an election) is its own partial
    // view: kept, and any agent that speaks for the leader within
    // `PARTIAL_GRACE` wins over it; a hung endpoint is not waited out for
    // it (CI: the two live agents were between leaders, and status waited
    // 20 s for the frozen third).
    let mut partial = None;
    let mut grace_ends = None;
    loop {
        let joined = match grace_ends {
            Some(end) => match tokio::time::timeout_at(end, set.join_next()).await {
                Ok(joined) => joined,
                Err(_) => break,
            },
            None => set.join_next().await,
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok((_, Ok(json))) if matches!(ask, Ask::History) || knows_leader(&json) => return Ok(json),
            Ok((_, Ok(json))) => {
                partial = partial.or(Some(json));
                grace_ends = grace_ends.or(Some(tokio::time::Instant::now() + PARTIAL_GRACE));
            }
            Ok((i, Err(e))) => failures.push((i, e)),
            Err(e) => failures.push((usize::MAX, format!("a request task failed: {e}"))),
        }
    }
    set.abort_all();
    if let Some(json) = partial {
        return Ok(json);
    }
    failures.sort();
    Err(format!(
        "no endpoint answered ({}): check that the agents run and that --endpoints (or HARAFTCTL_ENDPOINTS) lists their node.listen addresses",
        failures.into_iter().map(|(_, e)| e).collect::<Vec<_>>().join("; ")
    ))
}

/// Whether a status document names a Raft leader.
fn knows_leader(json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(json).is_ok_and(|v| v["leader"].is_string())
}
