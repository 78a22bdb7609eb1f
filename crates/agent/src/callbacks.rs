//! Operator callbacks: a configured program run when the local PostgreSQL
//! starts, stops or changes role, with the event, the new role, the epoch
//! and the cluster name appended as arguments.
//!
//! A callback never holds anything up: it runs in its own task and its own
//! process group, the agent never waits for it, and it is killed (with
//! whatever it started) when it outlives `callbacks.timeout_ms`.

use crate::config::Callbacks;
use haraft_core::health::CallbackEvent;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

/// How much of a failed callback's output goes to the log (its end).
const OUTPUT_TAIL_CHARS: usize = 400;

/// How long to collect a finished callback's output.
const OUTPUT_WAIT: Duration = Duration::from_secs(1);

/// The search path a callback gets: the agent's own `PATH` may be that of
/// an operator's shell, a systemd unit or cron.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A callback's whole environment: nothing inherited from the agent but
/// `HOME` (where a script keeps its own files), so that an operator's
/// exported `PGPASSWORD`, `LD_PRELOAD` or locale never reaches it; the
/// facts also given as arguments under `HARAFT_*` names.
pub fn environment(node: &str, cluster: &str, event: CallbackEvent, role: &str, epoch: u64) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), PATH.to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        ("HARAFT_NODE".to_string(), node.to_string()),
        ("HARAFT_CLUSTER".to_string(), cluster.to_string()),
        ("HARAFT_EVENT".to_string(), event.name().to_string()),
        ("HARAFT_ROLE".to_string(), role.to_string()),
        ("HARAFT_EPOCH".to_string(), epoch.to_string()),
    ];
    if let Some(home) = std::env::var_os("HOME").and_then(|h| h.into_string().ok()) {
        env.push(("HOME".to_string(), home));
    }
    env
}

/// Starts the callback for `event` if one is configured; returns at once.
pub fn spawn(callbacks: &Callbacks, node: &str, cluster: &str, event: CallbackEvent, role: &str, epoch: u64) {
    let Some(words) = callbacks.command(event) else { return };
    let (program, args) = words.split_first().expect("validated: a callback names a program");
    // An operator's program runs at the database's priority, not the
    // lease path's (see `haraft_db::exec::child_nice`).
    let mut std_command = std::process::Command::new(program);
    haraft_db::exec::at_child_priority(&mut std_command);
    let mut command = tokio::process::Command::from(std_command);
    command
        .args(args)
        .args([event.name(), role, &epoch.to_string(), cluster])
        .env_clear()
        .envs(environment(node, cluster, event, role, epoch))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let timeout = Duration::from_millis(callbacks.timeout_ms);
    let node = node.to_string();
    let shown = format!("{} {} {role} {epoch} {cluster}", words.join(" "), event.name());
    tokio::spawn(async move {
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %node, "callback {shown} could not start: {e}");
                return;
            }
        };
        let output = read_both(child.stdout.take(), child.stderr.take());
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => tracing::info!(node = %node, "callback {shown} done"),
            Ok(Ok(status)) => {
                let how = match (status.code(), status.signal()) {
                    (Some(code), _) => format!("exit code {code}"),
                    (None, Some(signal)) => format!("signal {signal}"),
                    (None, None) => "unknown status".to_string(),
                };
                // Whatever it started may hold the pipes open: do not wait long.
                let text =
                    tokio::time::timeout(OUTPUT_WAIT, output).await.ok().and_then(Result::ok).unwrap_or_default();
                let tail: String =
                    text.chars().rev().take(OUTPUT_TAIL_CHARS).collect::<Vec<_>>().into_iter().rev().collect();
                tracing::warn!(node = %node, "callback {shown} failed with {how}: {}", tail.trim());
            }
            Ok(Err(e)) => tracing::warn!(node = %node, "callback {shown}: {e}"),
            Err(_) => {
                // Not reaped yet, so its pid (and group id) is still ours:
                // the group takes whatever it started along.
                if let Some(group) = child.id() {
                    // SAFETY: kill(2) on the process group this callback leads.
                    unsafe { libc::kill(-(group as i32), libc::SIGKILL) };
                }
                let _ = child.wait().await;
                tracing::warn!(node = %node, "callback {shown} killed after {} ms", timeout.as_millis());
            }
        }
    });
}

/// Collects a callback's stderr then stdout, for the log when it fails.
fn read_both(
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
) -> tokio::task::JoinHandle<String> {
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(mut p) = stdout {
                let _ = p.read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(mut p) = stderr {
                let _ = p.read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        err.extend_from_slice(&out);
        String::from_utf8_lossy(&err).into_owned()
    })
}
