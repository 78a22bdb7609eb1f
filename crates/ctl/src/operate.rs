//! The operator commands: send a request to any agent (it reaches the
//! Raft leader), then follow the operation through the history until it
//! ends, printing each committed step. Never a false success: when the CLI
//! cannot tell, it says the operation is still in progress and how to
//! follow it.

use haraft_core::ops::{OperateReply, OperateRequest, Request};
use haraft_core::status::HistoryItem;
use haraft_proto::admin::OperateRequest as OperateProto;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

/// Exit code when the outcome is not known yet (the operation continues).
pub const EXIT_IN_PROGRESS: u8 = 3;

/// How an operator command ended, for the exit code.
pub enum Ended {
    Done,
    Failed(String),
    InProgress(String),
}

/// Who asks, for the history: `user@host`.
pub fn caller() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    if host.is_empty() { user } else { format!("{user}@{host}") }
}

/// How long a request waits for a Raft leader when agents answer but none
/// knows a reachable leader (an election after the leader died).
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Why one endpoint did not take a request.
enum Failure {
    /// It answered that no Raft leader is known or reachable: the request
    /// reached no leader, so asking again is safe.
    NoLeader(String),
    /// Anything else (unreachable agent, a refusal, no answer in time:
    /// the request may have been delivered).
    Other(String),
    /// Refused for the caller's credentials or a malformed request: every
    /// member would answer the same.
    Final(String),
}

/// Sends a request to the first endpoint that answers. While the agents
/// answer that no leader is reachable (an election), asks again for up to
/// `LEADER_WAIT`.
pub async fn send(endpoints: &[String], timeout: Duration, request: &OperateRequest) -> Result<OperateReply, String> {
    send_noting(endpoints, timeout, request).await.map(|(reply, _)| reply)
}

/// `send`, and whether an earlier attempt failed in a way that may have
/// delivered the request (the answer lost, not the request).
async fn send_noting(
    endpoints: &[String],
    timeout: Duration,
    request: &OperateRequest,
) -> Result<(OperateReply, bool), String> {
    let json = serde_json::to_string(request).map_err(|e| format!("encoding the request: {e}"))?;
    let started = std::time::Instant::now();
    let mut maybe_delivered = false;
    loop {
        let mut failures = Vec::new();
        let mut leaderless = false;
        for endpoint in endpoints {
            let attempt = async {
                let mut client = crate::connect(endpoint, timeout).await.map_err(Failure::Other)?;
                let reply = client
                    .operate(crate::request(OperateProto { json: json.clone(), forwarded: false }))
                    .await
                    .map_err(|s| match s.code() {
                        tonic::Code::Unavailable if !crate::is_transport_failure(&s) => {
                            Failure::NoLeader(s.message().to_string())
                        }
                        // Every member would answer the same: ask no other.
                        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated | tonic::Code::InvalidArgument => {
                            Failure::Final(crate::call_error(&s))
                        }
                        _ => Failure::Other(crate::call_error(&s)),
                    })?;
                serde_json::from_str::<OperateReply>(&reply.into_inner().json)
                    .map_err(|e| Failure::Other(format!("agent sent an unreadable reply: {e}")))
            };
            // The leader probes every member and commits: allow it three timeouts.
            match tokio::time::timeout(timeout * 3, attempt).await {
                Ok(Ok(reply)) => return Ok((reply, maybe_delivered)),
                Ok(Err(Failure::NoLeader(e))) => {
                    leaderless = true;
                    failures.push(format!("{endpoint}: {e}"));
                }
                Ok(Err(Failure::Final(e))) => return Err(format!("{endpoint}: {e}")),
                Ok(Err(Failure::Other(e))) => {
                    maybe_delivered = true;
                    failures.push(format!("{endpoint}: {e}"));
                }
                Err(_) => {
                    maybe_delivered = true;
                    failures.push(format!("{endpoint}: no answer within {} ms", (timeout * 3).as_millis()));
                }
            }
        }
        if leaderless && started.elapsed() < LEADER_WAIT {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let waited =
            if leaderless { format!(" (waited {} s for a Raft leader)", LEADER_WAIT.as_secs()) } else { String::new() };
        return Err(format!(
            "no endpoint answered{waited} ({}): check that the agents run and that --endpoints lists their node.listen addresses",
            failures.join("; ")
        ));
    }
}

/// What the leader's refusal says while an operation runs
/// (`core::ops`, "another operation is in progress: ...").
const IN_PROGRESS: &str = "another operation is in progress";

/// How far the agents' wall clocks may be behind this host's when an
/// operation's history entry is matched to this request.
const CLOCK_SKEW_MS: u64 = 10_000;

/// The operation this caller asked for since `sent_at_unix_ms`, if the
/// newest operation requested is one: `by` as sent, or as the agent
/// prefixes it with the verified identity ("IDENTITY (by)").
fn own_operation(history: &[HistoryItem], by: &str, sent_at_unix_ms: u64) -> Option<u64> {
    let newest = history.iter().rfind(|i| i.event == "operation-requested")?;
    let ours = newest.by.as_deref().is_some_and(|b| b == by || b.ends_with(&format!("({by})")));
    let recent = newest.at_unix_ms.is_some_and(|at| at + CLOCK_SKEW_MS >= sent_at_unix_ms);
    if ours && recent { newest.operation } else { None }
}

/// Prints every candidate's check.
fn print_candidates(reply: &OperateReply) {
    for c in &reply.candidates {
        let mark = if c.ok { "ok" } else { "no" };
        let lag = c.lag_bytes.map(|l| format!(" (lag {l} bytes)")).unwrap_or_default();
        let why = if c.reasons.is_empty() { String::new() } else { format!(": {}", c.reasons.join(", ")) };
        println!("  {:<12} {mark}{lag}{why}", c.node);
    }
}

/// Asks "Proceed? [y/N]" on the terminal.
fn confirm(question: &str) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err("standard input is not a terminal, so nothing can be confirmed: add --force to go ahead".into());
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Runs one operator request: the plan and a confirmation when asked for,
/// then the request, then (for operations with steps) following it.
pub async fn run(
    endpoints: &[String],
    timeout: Duration,
    mut request: Request,
    confirm_first: bool,
    follow_for: Duration,
) -> Result<Ended, String> {
    let by = caller();
    if confirm_first {
        let plan =
            send(endpoints, timeout, &OperateRequest { request: request.clone(), by: by.clone(), dry_run: true })
                .await?;
        print_candidates(&plan);
        if plan.refused {
            return Ok(Ended::Failed(format!("refused: {}", plan.message)));
        }
        println!("Plan: {}", plan.message);
        if !confirm("Proceed?")? {
            return Ok(Ended::Failed("not confirmed: nothing was changed".into()));
        }
        // Run exactly the plan that was shown.
        if let (Request::Switchover { to, .. }, Some(target)) = (&mut request, plan.target) {
            *to = Some(target);
        }
    }
    let sent_at = crate::now_unix_ms();
    let (reply, maybe_delivered) =
        send_noting(endpoints, timeout, &OperateRequest { request: request.clone(), by: by.clone(), dry_run: false })
            .await?;
    if !reply.accepted {
        // An attempt whose answer was lost may have started the operation
        // this one is refused for: follow it rather than say "refused".
        if maybe_delivered && reply.message.contains(IN_PROGRESS) {
            let history = crate::fetch(endpoints, timeout, crate::Ask::History).await?;
            let items: Vec<HistoryItem> =
                serde_json::from_str(&history).map_err(|e| format!("agent sent an unreadable history: {e}"))?;
            if let Some(id) = own_operation(&items, &by, sent_at) {
                println!("an earlier attempt of this request was accepted (operation {id}); its answer was lost");
                return follow(endpoints, timeout, id, follow_for).await;
            }
        }
        if !confirm_first {
            print_candidates(&reply);
        }
        return Ok(Ended::Failed(format!("refused: {}", reply.message)));
    }
    if matches!(request, Request::AddMember { .. } | Request::RemoveMember { .. }) {
        // Done when accepted: the membership change has committed.
        println!("{}", reply.message);
        return Ok(Ended::Done);
    }
    let Some(id) = reply.id else {
        return Ok(Ended::Failed("the agent accepted the request without an operation id".into()));
    };
    println!("{} (operation {id})", reply.message);
    if matches!(request, Request::Switchover { at_unix_ms: Some(_), .. }) {
        println!("scheduled: haraftctl status shows it; haraftctl switchover --cancel cancels it");
        return Ok(Ended::Done);
    }
    follow(endpoints, timeout, id, follow_for).await
}

/// `member replace`: the old id out (`member remove`, with its checks),
/// then the same name and address in under `id` (`member add`). A member
/// that lost its Raft state comes back only as a new member: never under
/// the id whose votes and acknowledgements it forgot.
pub async fn replace(
    endpoints: &[String],
    timeout: Duration,
    name: String,
    id: u64,
    address: Option<String>,
    force: bool,
) -> Result<Ended, String> {
    let status = crate::fetch(endpoints, timeout, crate::Ask::Status).await?;
    let status: serde_json::Value = serde_json::from_str(&status).map_err(|e| format!("reading status: {e}"))?;
    let current = status["members"].as_array().and_then(|ms| ms.iter().find(|m| m["name"] == name.as_str()));
    let old_id = current.and_then(|m| m["id"].as_u64());
    let address = match (address, current.and_then(|m| m["address"].as_str())) {
        (Some(a), _) => a,
        (None, Some(a)) => a.to_string(),
        (None, None) => {
            return Err(format!(
                "{name} is not a member now: give the address of its new agent with --address HOST:PORT"
            ));
        }
    };
    if old_id == Some(id) {
        return Err(format!("{name} has id {id} already: a replacement needs an id no member ever had"));
    }
    if let Some(old) = old_id {
        println!("Replacing {name}: id {old} leaves the cluster, then {name} at {address} joins as id {id}");
        match run(endpoints, timeout, Request::RemoveMember { node: name.clone() }, !force, Duration::ZERO).await? {
            Ended::Done => {}
            other => return Ok(other),
        }
    }
    // The removal is committed; the add is asked without a second question.
    run(endpoints, timeout, Request::AddMember { id, name, address }, false, Duration::ZERO).await
}

/// Follows operation `id` in the history until it ends, `limit` passes,
/// the agents stop answering for that long, or Ctrl-C.
pub async fn follow(endpoints: &[String], timeout: Duration, id: u64, limit: Duration) -> Result<Ended, String> {
    let started = Instant::now();
    let mut printed = std::collections::BTreeSet::new();
    let mut requested_at: Option<u64> = None;
    let mut last_error: Option<String> = None;
    let still = |why: &str| {
        Ended::InProgress(format!(
            "{why}: operation {id} is still in progress; follow it with: haraftctl follow {id} (or haraftctl status)"
        ))
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let fetched = tokio::select! {
            _ = &mut ctrl_c => return Ok(still("stopped following (Ctrl-C); the operation was not cancelled")),
            r = crate::fetch(endpoints, timeout, crate::Ask::History) => r,
        };
        let items: Vec<HistoryItem> = match fetched.and_then(|j| serde_json::from_str(&j).map_err(|e| e.to_string())) {
            Ok(items) => {
                last_error = None;
                items
            }
            Err(e) => {
                // Said once per distinct failure, not every poll.
                if last_error.as_ref() != Some(&e) {
                    eprintln!("haraftctl: cannot read the history right now ({e}); trying again");
                    last_error = Some(e);
                }
                Vec::new()
            }
        };
        for item in items.iter().filter(|i| i.operation == Some(id)) {
            if !printed.insert((item.log_index, item.event.clone(), item.detail.clone())) {
                continue;
            }
            if item.event == "operation-requested" {
                requested_at = item.at_unix_ms;
            }
            let elapsed = match (item.at_unix_ms, requested_at) {
                (Some(at), Some(from)) => at.saturating_sub(from) as f64 / 1000.0,
                _ => started.elapsed().as_secs_f64(),
            };
            println!("[{elapsed:>6.2} s] {}", item.detail);
            match item.event.as_str() {
                "operation-done" => return Ok(Ended::Done),
                "operation-failed" | "operation-rolled-back" | "operation-cancelled" | "operation-skipped" => {
                    return Ok(Ended::Failed(item.detail.clone()));
                }
                _ => {}
            }
        }
        if started.elapsed() > limit {
            return Ok(still(&format!("no outcome within {} s", limit.as_secs())));
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(still("stopped following (Ctrl-C); the operation was not cancelled")),
            _ = tokio::time::sleep(Duration::from_millis(150)) => {}
        }
    }
}

/// `--at`: `2026-11-21T14:30:00Z`, `2026-11-21 14:30` (UTC), or `+90s`,
/// `+15m`, `+2h` from now.
pub fn parse_at(text: &str, now_unix_ms: u64) -> Result<u64, String> {
    let bad = || {
        format!("--at {text:?}: expected a UTC time like 2026-11-21T14:30:00Z or 2026-11-21 14:30, or +90s, +15m, +2h")
    };
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('+') {
        let split = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (n, unit) = rest.split_at(split);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" | "" => n,
            "m" => n * 60,
            "h" => n * 3600,
            _ => return Err(bad()),
        };
        return Ok(now_unix_ms + secs * 1000);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' ']).ok_or_else(bad)?;
    let d: Vec<i64> = date.split('-').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let t: Vec<i64> = time.split(':').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let (&[y, mo, day], [h, mi, rest @ ..]) = (d.as_slice(), t.as_slice()) else { return Err(bad()) };
    let s = match rest {
        [] => 0,
        [s] => *s,
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&day)
        || !(0..24).contains(h)
        || !(0..60).contains(mi)
        || !(0..60).contains(&s)
    {
        return Err(bad());
    }
    // days from civil (proleptic Gregorian), the inverse of status::utc.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    u64::try_from(secs).map(|s| s * 1000).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(id: u64, by: &str, at: u64) -> HistoryItem {
        serde_json::from_value(serde_json::json!({
            "log_index": id * 10, "at_unix_ms": at, "event": "operation-requested", "node": null, "epoch": null,
            "timeline": null, "lsn": null, "detail": "", "verdicts": [], "operation": id, "by": by,
        }))
        .expect("a history item")
    }

    #[test]
    fn a_lost_answer_is_matched_to_the_newest_operation_only_when_it_is_this_callers() {
        let sent = 1_000_000;
        let history = vec![requested(3, "ops@db1", sent - 60_000), requested(4, "me@host", sent + 40)];
        assert_eq!(own_operation(&history, "me@host", sent), Some(4));
        // With credentials the agent names the verified identity first.
        let history = vec![requested(5, "token:admin (me@host)", sent + 40)];
        assert_eq!(own_operation(&history, "me@host", sent), Some(5));
        // Another operator's, or this caller's from long before: refused
        // as the agent said.
        assert_eq!(own_operation(&[requested(6, "ops@db1", sent + 40)], "me@host", sent), None);
        assert_eq!(own_operation(&[requested(7, "me@host", sent - 60_000)], "me@host", sent), None);
        // Only the newest request counts (the one in progress).
        let history = vec![requested(8, "me@host", sent + 10), requested(9, "ops@db1", sent + 20)];
        assert_eq!(own_operation(&history, "me@host", sent), None);
        assert_eq!(own_operation(&[], "me@host", sent), None);
    }

    #[test]
    fn at_times_parse_and_round_trip_with_utc() {
        let now = 1_795_261_445_000;
        assert_eq!(parse_at("+90s", now), Ok(now + 90_000));
        assert_eq!(parse_at("+15m", now), Ok(now + 900_000));
        assert_eq!(parse_at("+2h", now), Ok(now + 7_200_000));
        let at = parse_at("2026-11-21T11:44:05Z", now).unwrap();
        assert_eq!(haraft_core::status::utc(at), "2026-11-21 11:44:05");
        assert_eq!(parse_at("2024-02-29 00:00", now).map(haraft_core::status::utc), Ok("2024-02-29 00:00:00".into()));
        for bad in ["tomorrow", "+5d", "2026-13-01T00:00", "2026-11-21T25:00", "2026-11-21", "+"] {
            assert!(parse_at(bad, now).is_err(), "{bad}");
        }
    }
}
