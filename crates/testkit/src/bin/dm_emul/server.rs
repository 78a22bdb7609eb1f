//! `dmserver INST/dm.ini [mount]`: the instance, in the foreground. It
//! owns the PostgreSQL underneath (see pg.rs), answers disql on its
//! control socket one statement at a time, and exits when told to
//! (SIGTERM/SIGINT: stop PostgreSQL fast; SHUTDOWN IMMEDIATE|ABORT), or
//! when PostgreSQL dies under it (the instance is gone, as a crashed
//! dmserver is).

use crate::common::{self, DmErr};
use crate::ini;
use crate::pg;
use crate::state::State;
use crate::stmt::Mode;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// V$INSTANCE.STATUS$ values the emulation has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Mount,
    Open,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Mount => "MOUNT",
            Status::Open => "OPEN",
        }
    }
}

pub struct Server {
    pub inst: PathBuf,
    pub name: String,
    pub port: u16,
    pub state: State,
    pub status: Status,
    pub pg: Option<Child>,
    /// ALTER_MODE_STATUS in memory (dm.ini's value at start, default 1).
    pub alter_mode_status: i64,
    /// When the archive was last set INVALID (the watcher's recovery
    /// restores VALID only after RECOVER_DELAY).
    pub arch_invalid_since: Option<Instant>,
    pub dw_status: (i64, i64),
    /// Set by SHUTDOWN: exit after answering.
    pub exit: bool,
}

impl Server {
    pub fn log(&self, msg: &str) {
        println!("{} [{}] {msg}", common::now_text(), self.name);
    }

    pub fn save(&self) -> Result<(), String> {
        self.state.write(&self.inst).map_err(|e| format!("writing state: {e}"))
    }

    /// Whether a watcher is configured (DM's MAL system: dmmal.ini).
    pub fn watched(&self) -> bool {
        self.inst.join("dmmal.ini").exists()
    }
}

pub fn main(argv: &[String]) -> i32 {
    let mut ini_path = None;
    let mut mount = false;
    for a in argv {
        match a.to_ascii_lowercase().as_str() {
            "mount" => mount = true,
            _ => ini_path = Some(PathBuf::from(a.strip_prefix("path=").or(a.strip_prefix("PATH=")).unwrap_or(a))),
        }
    }
    let Some(ini_path) = ini_path else {
        println!("usage: dmserver INST/dm.ini [mount]");
        return 1;
    };
    let ini_path = std::fs::canonicalize(&ini_path).unwrap_or(ini_path);
    let inst = ini_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let dm_ini = match ini::read_flat(&ini_path) {
        Ok(g) => g,
        Err(e) => {
            println!("ini file path [{}] not exist or can not be read: {e}", ini_path.display());
            return 1;
        }
    };
    let name = dm_ini.get("INSTANCE_NAME").unwrap_or("DMSERVER").to_owned();
    let Some(port) = dm_ini.get("PORT_NUM").and_then(|p| p.parse::<u16>().ok()) else {
        println!("PORT_NUM missing or invalid in {}", ini_path.display());
        return 1;
    };
    let state = match State::read(&inst) {
        Ok(s) => s,
        Err(e) => {
            println!("{} is not a dm-emul instance (dminit first): {e}", inst.display());
            return 1;
        }
    };
    if let Some(pid) = common::running_server(&inst) {
        println!("another dmserver (pid {pid}) is running on {}", inst.display());
        return 1;
    }
    let sock = common::socket_path(port);
    if UnixStream::connect(&sock).is_ok() {
        println!("port {port} is used by another dm-emul instance ({})", sock.display());
        return 1;
    }
    let _ = std::fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            println!("cannot listen on {}: {e}", sock.display());
            return 1;
        }
    };
    // disql may run as another OS user than the instance.
    let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777));
    let pid_path = common::pid_path(&inst);
    if let Err(e) = std::fs::write(&pid_path, format!("{}\n", std::process::id())) {
        println!("writing {}: {e}", pid_path.display());
        return 1;
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let h = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGTERM, h);
        libc::signal(libc::SIGINT, h);
    }
    let mut srv = Server {
        alter_mode_status: dm_ini.get("ALTER_MODE_STATUS").and_then(|v| v.parse().ok()).unwrap_or(1),
        arch_invalid_since: state.arch_invalid.then(Instant::now),
        inst,
        name,
        port,
        state,
        status: Status::Mount,
        pg: None,
        dw_status: (0, 0),
        exit: false,
    };
    println!("DM Database Server 64 V8 (dm-emul over PostgreSQL 15) startup...");
    srv.log(&format!("mode is {}, pid {}", srv.state.mode.word(), std::process::id()));
    // DM's rule: PRIMARY and STANDBY always start to MOUNT; NORMAL opens
    // unless `mount` was given.
    let code = if srv.state.mode == Mode::Normal && !mount {
        match srv.open(true) {
            Ok(_) => serve(&mut srv, &listener),
            Err(e) => {
                srv.log(&format!("open failed: {e}"));
                1
            }
        }
    } else {
        srv.log("database mounted");
        serve(&mut srv, &listener)
    };
    if let Some(mut child) = srv.pg.take() {
        pg::stop(&mut child, false);
    }
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&pid_path);
    srv.log("dmserver exits");
    code
}

/// The main loop: everything runs on this (the main) thread, so the
/// postmaster's parent-death signal follows this process's life.
fn serve(srv: &mut Server, listener: &UnixListener) -> i32 {
    if listener.set_nonblocking(true).is_err() {
        return 1;
    }
    let mut last_tick = Instant::now();
    loop {
        if STOP.load(Ordering::SeqCst) {
            srv.log("stop signal received, shutting down");
            srv.save_lsn();
            return 0;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                handle(srv, stream);
                if srv.exit {
                    return 0;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                srv.log(&format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(child) = srv.pg.as_mut()
            && let Ok(Some(st)) = child.try_wait()
        {
            srv.pg = None;
            srv.log(&format!("postgres exited unexpectedly ({st}): the instance is down"));
            return 1;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            srv.watcher_recovery();
        }
    }
}

/// One disql request: three lines (user, password, statement); the
/// answer is `OK` or `ERR`, then the text to print.
fn handle(srv: &mut Server, stream: UnixStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut lines = [String::new(), String::new(), String::new()];
    for l in &mut lines {
        if reader.read_line(l).is_err() {
            return;
        }
    }
    let [user, pwd, text] = lines.map(|l| l.trim_end_matches('\n').to_owned());
    let answer = if !user.eq_ignore_ascii_case("SYSDBA") || pwd != srv.state.pwd {
        Err(DmErr::Login.line("Invalid username or password"))
    } else if text == "\u{1}LOGIN" {
        Ok(format!("{} {}", srv.state.mode.word(), srv.status.word()))
    } else {
        srv.log(&format!("execute: {text}"));
        let r = srv.execute(&text);
        if let Err(e) = &r {
            srv.log(&format!("failed: {e}"));
        }
        r
    };
    let reply = match answer {
        Ok(body) => format!("OK\n{body}"),
        Err(line) => format!("ERR\n{line}"),
    };
    let mut w = &stream;
    let _ = w.write_all(reply.as_bytes());
}
