//! `haraftctl`: the admin CLI. Reads the cluster's state from any agent.

mod args;
mod client;
mod demo;
mod dsn;
mod generate;
mod gs_om;
mod operate;
mod table;

pub(crate) use client::{Ask, TLS, TOKEN, call_error, connect, fetch, is_transport_failure, read_token, request};

use args::{Args, Command, ConfigCommand, HistoryCommand, MemberCommand, StatusFormat};
use clap::{CommandFactory, Parser};
use haraft_core::ops::Request;
use haraft_core::status::{ClusterStatus, HistoryItem, utc};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args = Args::parse();
    for e in &args.endpoints {
        if !valid_endpoint(e) {
            eprintln!("haraftctl: bad endpoint {e:?} in --endpoints: expected HOST:PORT, e.g. 127.0.0.1:7001");
            return ExitCode::from(2);
        }
    }
    if let (Some(ca), Some(cert), Some(key)) = (&args.ca_file, &args.cert_file, &args.key_file) {
        let files = haraft_raft::tls::TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() };
        match haraft_raft::tls::Tls::load(&files) {
            Ok(tls) => {
                let _ = TLS.set(tls);
            }
            Err(e) => {
                eprintln!("haraftctl: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &args.token_file {
        match read_token(path) {
            Ok(token) => {
                let _ = TOKEN.set(token);
            }
            Err(e) => {
                eprintln!("haraftctl: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("haraftctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let endpoints = &args.endpoints;
    let now_unix_ms = now_unix_ms();
    let secs = Duration::from_secs;
    let operation = match args.command {
        Command::Status { json, format, watch } => {
            let format = if json { StatusFormat::Json } else { format };
            return exit(runtime.block_on(watching(watch, || status(endpoints, timeout, format, watch.is_some()))));
        }
        Command::History { command: Some(HistoryCommand::Ack), .. } => {
            runtime.block_on(operate::run(endpoints, timeout, Request::AcknowledgeLoss, false, secs(30)))
        }
        Command::History { command: None, json, watch } => {
            return exit(runtime.block_on(watching(watch, || history(endpoints, timeout, json))));
        }
        Command::Dsn { role, user, dbname, json } => {
            return exit(runtime.block_on(print_dsn(endpoints, timeout, role, &user, &dbname, json)));
        }
        Command::Demo { dir, nodes, keep } => {
            return exit(runtime.block_on(demo::run(demo::Options { dir, nodes, keep })));
        }
        Command::Completions { shell } => {
            use std::io::Write;
            let script = generate::completions(&Args::command(), shell);
            if let Err(e) = std::io::stdout().write_all(&script) {
                eprintln!("haraftctl: writing the completion script: {e}");
                return ExitCode::FAILURE;
            }
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => {
            return match generate::man_pages(&Args::command(), &dir) {
                Ok(files) => {
                    println!("{}: {}", dir.display(), files.join(" "));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("haraftctl: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Config { command: ConfigCommand::Show { json } } => {
            return exit(runtime.block_on(config_show(endpoints, timeout, json)));
        }
        Command::Follow { id, wait } => runtime.block_on(operate::follow(endpoints, timeout, id, secs(wait))),
        Command::Switchover { cancel: true, .. } => {
            runtime.block_on(operate::run(endpoints, timeout, Request::CancelSwitchover, false, secs(30)))
        }
        Command::Switchover { from, to, at, force, wait, cancel: false } => {
            let at_unix_ms = match at.map(|a| operate::parse_at(&a, now_unix_ms)).transpose() {
                Ok(at) => at,
                Err(e) => {
                    eprintln!("haraftctl: {e}");
                    return ExitCode::from(2);
                }
            };
            let request = Request::Switchover { from, to, at_unix_ms, force };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(wait)))
        }
        Command::Failover { to, force, allow_data_loss, wait } => {
            let request = Request::Failover { to, allow_data_loss, force };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(wait)))
        }
        Command::Rebuild { name, full, force, wait } => {
            let request = Request::Rebuild { node: name, full };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(wait)))
        }
        Command::Restart { name, force, wait } => {
            runtime.block_on(operate::run(endpoints, timeout, Request::Restart { node: name }, !force, secs(wait)))
        }
        Command::Member { command: MemberCommand::Add { name, id, address, force } } => {
            let request = Request::AddMember { id, name, address };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(0)))
        }
        Command::Member { command: MemberCommand::Remove { name, force } } => {
            let request = Request::RemoveMember { node: name };
            runtime.block_on(operate::run(endpoints, timeout, request, !force, secs(0)))
        }
        Command::Member { command: MemberCommand::Replace { name, id, address, force } } => {
            runtime.block_on(operate::replace(endpoints, timeout, name, id, address, force))
        }
        Command::Pause => runtime.block_on(operate::run(endpoints, timeout, Request::Pause, false, secs(30))),
        Command::Resume => runtime.block_on(operate::run(endpoints, timeout, Request::Resume, false, secs(30))),
        Command::Config { command: ConfigCommand::Set { changes } } => {
            let mut pairs = Vec::new();
            for c in changes {
                match c.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => pairs.push((k.trim().to_string(), v.to_string())),
                    _ => {
                        eprintln!("haraftctl: {c:?} is not KEY=VALUE, e.g. failover.synchronous_mode=true");
                        return ExitCode::from(2);
                    }
                }
            }
            runtime.block_on(operate::run(endpoints, timeout, Request::SetConfig { changes: pairs }, false, secs(30)))
        }
    };
    match operation {
        Ok(operate::Ended::Done) => ExitCode::SUCCESS,
        Ok(operate::Ended::Failed(why)) => {
            eprintln!("haraftctl: {why}");
            ExitCode::FAILURE
        }
        Ok(operate::Ended::InProgress(why)) => {
            eprintln!("haraftctl: {why}");
            ExitCode::from(operate::EXIT_IN_PROGRESS)
        }
        Err(e) => {
            eprintln!("haraftctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("haraftctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn config_show(endpoints: &[String], timeout: Duration, json: bool) -> Result<(), String> {
    let document = fetch(endpoints, timeout, Ask::Status).await?;
    let status: ClusterStatus =
        serde_json::from_str(&document).map_err(|e| format!("agent sent unreadable status: {e}"))?;
    if json {
        let value = serde_json::json!({ "settings": status.settings, "pending_settings": status.pending_settings });
        println!("{}", serde_json::to_string_pretty(&value).expect("a JSON value always prints"));
        return Ok(());
    }
    for (k, v) in &status.settings {
        match status.pending_settings.get(k) {
            Some(next) => println!("{k} = {v}  (set to {next}: takes effect with the next epoch)"),
            None => println!("{k} = {v}"),
        }
    }
    Ok(())
}

fn valid_endpoint(e: &str) -> bool {
    match e.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// Runs `show` once, or every `watch` seconds (clearing the screen) until
/// Ctrl-C, which ends it with success; a failed look is shown and retried.
async fn watching<F: Future<Output = Result<(), String>>>(
    watch: Option<f64>,
    mut show: impl FnMut() -> F,
) -> Result<(), String> {
    let Some(seconds) = watch else { return show().await };
    let every = Duration::from_secs_f64(seconds);
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("listening for Ctrl-C: {e}"))?;
    loop {
        if let Err(e) = show().await {
            println!("{}  haraftctl: {e}", utc(now_unix_ms()));
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = interrupt.recv() => return Ok(()),
        }
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn print_dsn(
    endpoints: &[String],
    timeout: Duration,
    role: dsn::Role,
    user: &str,
    dbname: &str,
    json: bool,
) -> Result<(), String> {
    let document = fetch(endpoints, timeout, Ask::Status).await?;
    let status: ClusterStatus =
        serde_json::from_str(&document).map_err(|e| format!("agent sent unreadable status: {e}"))?;
    let dsn = dsn::dsn(&status, role, user, dbname)?;
    if json {
        let role = format!("{role:?}").to_lowercase();
        println!("{}", serde_json::json!({ "dsn": dsn, "role": role }));
    } else {
        println!("{dsn}");
    }
    Ok(())
}

async fn status(endpoints: &[String], timeout: Duration, format: StatusFormat, watch: bool) -> Result<(), String> {
    let document = fetch(endpoints, timeout, Ask::Status).await?;
    if format == StatusFormat::Json {
        // Print what the agent sent (pretty, or one line a document when
        // watching), so fields added by a newer agent pass through.
        let value: serde_json::Value =
            serde_json::from_str(&document).map_err(|e| format!("agent sent unreadable status: {e}"))?;
        let text = if watch { value.to_string() } else { serde_json::to_string_pretty(&value).expect("prints") };
        println!("{text}");
        return Ok(());
    }
    if watch {
        // Clear the screen and show when this was taken.
        println!("\x1b[2J\x1b[H{}  (Ctrl-C ends the watch)", utc(now_unix_ms()));
    }
    let status: ClusterStatus =
        serde_json::from_str(&document).map_err(|e| format!("agent sent unreadable status: {e}"))?;
    match format {
        StatusFormat::Table => print!("{}", table::render(&status)),
        StatusFormat::GsOm => print!("{}", gs_om::render(&status)),
        // Printed as the agent sent it, above.
        StatusFormat::Json => {}
    }
    Ok(())
}

async fn history(endpoints: &[String], timeout: Duration, json: bool) -> Result<(), String> {
    let document = fetch(endpoints, timeout, Ask::History).await?;
    if json {
        let value: serde_json::Value =
            serde_json::from_str(&document).map_err(|e| format!("agent sent an unreadable history: {e}"))?;
        println!("{}", serde_json::to_string_pretty(&value).expect("a JSON value always prints"));
        return Ok(());
    }
    let items: Vec<HistoryItem> =
        serde_json::from_str(&document).map_err(|e| format!("agent sent an unreadable history: {e}"))?;
    print!("{}", table::render_history(&items));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_format_is_parsed() {
        let format = |args: &[&str]| match Args::try_parse_from(["haraftctl", "status"].iter().chain(args)) {
            Ok(Args { command: Command::Status { json, format, .. }, .. }) => Ok((json, format)),
            Ok(_) => panic!("not status"),
            Err(e) => Err(e.kind()),
        };
        assert_eq!(format(&[]), Ok((false, StatusFormat::Table)));
        assert_eq!(format(&["--format", "gs_om"]), Ok((false, StatusFormat::GsOm)));
        assert_eq!(format(&["--format=json"]), Ok((false, StatusFormat::Json)));
        assert_eq!(format(&["--json"]), Ok((true, StatusFormat::Table)));
        assert_eq!(format(&["--format", "gs-om"]), Err(clap::error::ErrorKind::InvalidValue));
        assert_eq!(format(&["--json", "--format", "gs_om"]), Err(clap::error::ErrorKind::ArgumentConflict));
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(valid_endpoint("127.0.0.1:7001"));
        assert!(valid_endpoint("db1.example:7001"));
        assert!(!valid_endpoint("127.0.0.1"));
        assert!(!valid_endpoint(":7001"));
        assert!(!valid_endpoint("h:0"));
        assert!(!valid_endpoint("http://h:1"));
    }
}
