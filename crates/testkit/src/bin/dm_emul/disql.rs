//! `disql [-S] [-L] USER/PASSWORD@HOST:PORT -e "statement"`: one statement
//! against a running dmserver, found by PORT through its control socket
//! (HOST is printed, not used: instances are local). The login banner
//! unless -S, then the result rows or DM's `[-CODE]:message`; exit code 0,
//! or 1 on any failure.

use crate::common::{self, DmErr};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The longest one statement may take: an OPEN waits for PostgreSQL
/// (pg::PG_WAIT, twice when it promotes) plus a margin.
const REQUEST_LIMIT: Duration = Duration::from_secs(180);

struct Args {
    silent: bool,
    user: String,
    pwd: String,
    host: String,
    port: u16,
    stmt: Option<String>,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        silent: false,
        user: "SYSDBA".into(),
        pwd: "SYSDBA".into(),
        host: "LOCALHOST".into(),
        port: 5236,
        stmt: None,
    };
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "-S" | "-s" => a.silent = true,
            "-L" | "-l" => {}
            "-e" | "-E" => {
                i += 1;
                a.stmt = Some(argv.get(i).cloned().ok_or("-e needs a statement")?);
            }
            logon => {
                let (user, rest) = logon.split_once('/').ok_or_else(|| format!("invalid logon [{logon}]"))?;
                let (pwd, server) = rest.rsplit_once('@').unwrap_or((rest, "LOCALHOST:5236"));
                let (host, port) = server.rsplit_once(':').unwrap_or((server, "5236"));
                a.user = user.to_owned();
                a.pwd = pwd.trim_matches(|c| c == '"' || c == '\'').to_owned();
                a.host = host.to_owned();
                a.port = port.parse().map_err(|_| format!("invalid port [{port}]"))?;
            }
        }
        i += 1;
    }
    Ok(a)
}

/// Sends one request; Ok(body) or Err(the error line).
fn request(a: &Args, text: &str) -> Result<String, String> {
    let connect_err = || DmErr::Connect.line("Create SOCKET connection failure.");
    let mut s = UnixStream::connect(common::socket_path(a.port)).map_err(|_| connect_err())?;
    s.set_read_timeout(Some(REQUEST_LIMIT)).map_err(|_| connect_err())?;
    let one_line = text.replace(['\n', '\r'], " ");
    s.write_all(format!("{}\n{}\n{one_line}\n", a.user, a.pwd).as_bytes()).map_err(|_| connect_err())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|_| DmErr::Connect.line("Network communication exception."))?;
    match reply.split_once('\n') {
        Some(("OK", body)) => Ok(body.to_owned()),
        Some(("ERR", line)) => Err(line.trim_end().to_owned()),
        _ => Err(DmErr::Connect.line("Network communication exception.")),
    }
}

pub fn main(argv: &[String]) -> i32 {
    let a = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            println!("{e}");
            println!("usage: disql [-S] USER/PASSWORD@HOST:PORT -e \"statement\"");
            return 1;
        }
    };
    let started = Instant::now();
    match request(&a, "\u{1}LOGIN") {
        Ok(state) => {
            if !a.silent {
                let (mode, status) = state.split_once(' ').unwrap_or((&state, ""));
                println!(
                    "Server[{}:{}]:mode is {}, state is {}",
                    a.host,
                    a.port,
                    mode.to_ascii_lowercase(),
                    status.to_ascii_lowercase()
                );
                println!("login used time : {:.3}(ms)", started.elapsed().as_secs_f64() * 1000.0);
                println!("disql V8 (dm-emul)");
            }
        }
        Err(line) => {
            println!("{line}");
            return 1;
        }
    }
    let Some(stmt) = a.stmt.clone() else {
        return 0;
    };
    let started = Instant::now();
    match request(&a, &stmt) {
        Ok(body) => {
            if body.is_empty() {
                println!("executed successfully");
            } else {
                print!("{body}");
                println!();
            }
            println!("used time: {:.3}(ms). Execute id is 0.", started.elapsed().as_secs_f64() * 1000.0);
            0
        }
        Err(line) => {
            println!("{line}");
            1
        }
    }
}
