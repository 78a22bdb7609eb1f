//! `gs_ctl`: its options, and the verbs that start, stop, signal and
//! promote a server (query and build have their own files).

use crate::common::{self, pg_bin, pid_file, print, run, running_pid};
use crate::conf::{self, Mode, OgConf};
use crate::state::{self, DbState, GaussState, ServerMode};
use std::path::PathBuf;
use std::process::Command;

/// gs_ctl's DEFAULT_WAIT, in seconds.
const DEFAULT_WAIT_SECS: u64 = 60;

#[derive(Default)]
pub struct Opts {
    pub verb: Option<String>,
    pub datadir: Option<PathBuf>,
    pub server_mode: Option<String>,
    pub shutdown_mode: Option<String>,
    pub build_mode: Option<String>,
    pub no_wait: bool,
    pub wait_secs: Option<u64>,
    pub log_file: Option<PathBuf>,
    pub recv_timeout_secs: Option<u64>,
}

pub struct Ctx {
    pub datadir: PathBuf,
    pub node: String,
    pub opts: Opts,
}

impl Ctx {
    pub fn log(&self, msg: &str) {
        common::log(&self.node, "gs_ctl", msg);
    }

    pub fn wait_secs(&self) -> u64 {
        self.opts.wait_secs.unwrap_or(DEFAULT_WAIT_SECS)
    }

    pub fn data(&self) -> String {
        self.datadir.display().to_string()
    }
}

fn parse(argv: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_str();
        if !arg.starts_with('-') {
            if o.verb.is_some() {
                return Err(format!(" too many command-line arguments (first is \"{arg}\")"));
            }
            o.verb = Some(arg.to_owned());
            i += 1;
            continue;
        }
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_owned(), Some(v.to_owned())),
            _ if arg.len() > 2 && !arg.starts_with("--") => (arg[..2].to_owned(), Some(arg[2..].to_owned())),
            _ => (arg.to_owned(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            argv.get(i)
                .cloned()
                .ok_or_else(|| format!(" option requires an argument -- '{}'", key.trim_start_matches('-')))
        };
        let secs = |v: String| v.parse::<u64>().map_err(|_| format!(" invalid value \"{v}\""));
        match key.as_str() {
            "-D" | "--pgdata" => o.datadir = Some(PathBuf::from(value()?)),
            "-M" => o.server_mode = Some(value()?),
            "-m" | "--mode" => o.shutdown_mode = Some(value()?),
            "-b" => o.build_mode = Some(value()?),
            "-t" | "--timeout" => o.wait_secs = Some(secs(value()?)?),
            "-r" => o.recv_timeout_secs = Some(secs(value()?)?),
            "-l" | "--log" => o.log_file = Some(PathBuf::from(value()?)),
            "-w" => o.no_wait = false,
            "-W" => o.no_wait = true,
            // Accepted and without effect here: silent mode, user and
            // password (the emulation uses PGUSER / PGPASSFILE), term,
            // cluster type, connector, quiet build, server options.
            "-s" | "-q" => {}
            "-U" | "-P" | "-T" | "-Z" | "-C" | "-o" => {
                value()?;
            }
            _ => return Err(format!(" invalid option -- '{}'", key.trim_start_matches('-'))),
        }
        i += 1;
    }
    Ok(o)
}

pub fn main(argv: &[String]) -> i32 {
    let opts = match parse(argv) {
        Ok(o) => o,
        Err(e) => {
            common::log("", "gs_ctl", &e);
            print("Try \"gs_ctl --help\" for more information.\n");
            return 1;
        }
    };
    let Some(verb) = opts.verb.clone() else {
        common::log("", "gs_ctl", " no operation specified");
        print("Try \"gs_ctl --help\" for more information.\n");
        return 1;
    };
    let known = ["start", "stop", "restart", "reload", "status", "failover", "switchover", "notify", "query", "build"];
    if !known.contains(&verb.as_str()) {
        common::log("", "gs_ctl", &format!(" unrecognized operation mode \"{verb}\""));
        print("Try \"gs_ctl --help\" for more information.\n");
        return 1;
    }
    let Some(datadir) = opts.datadir.clone().or_else(|| std::env::var("PGDATA").ok().map(PathBuf::from)) else {
        common::log("", "gs_ctl", " no database directory specified and environment variable PGDATA unset");
        print("Try \"gs_ctl --help\" for more information.\n");
        return 1;
    };
    let datadir = std::fs::canonicalize(&datadir).unwrap_or(datadir);
    let node = OgConf::read(&datadir).map(|c| c.node_name()).unwrap_or_default();
    let ctx = Ctx { datadir, node, opts };
    match verb.as_str() {
        "start" => start(&ctx),
        "stop" => stop(&ctx),
        "restart" => restart(&ctx),
        "reload" => reload(&ctx),
        "status" => status(&ctx),
        "failover" => crate::roles::failover(&ctx),
        "switchover" => {
            ctx.log(&format!("gs_ctl switchover ,datadir is {} ", ctx.data()));
            ctx.log(" switchover is not implemented by this emulation (og-emul): use failover");
            1
        }
        "notify" => crate::roles::notify(&ctx),
        "query" => crate::query::query(&ctx),
        "build" => crate::build::build(&ctx),
        _ => unreachable!("verbs checked above"),
    }
}

fn start(ctx: &Ctx) -> i32 {
    ctx.log(&format!("gs_ctl started,datadir is {} ", ctx.data()));
    if running_pid(&ctx.datadir).is_some() {
        ctx.log(" another server might be running; Please use the restart command");
        return 0;
    }
    let mode = match ctx.opts.server_mode.as_deref() {
        None => Mode::Primary,
        Some(m) => match Mode::parse(m) {
            Some(mode) => mode,
            None => {
                // gaussdb itself refuses the mode (postmaster.cpp) and
                // gs_ctl sees a server that never answered.
                let line = "FATAL:  the options of -M is not recognized";
                server_log(ctx, &[line.to_owned()]);
                return could_not_start(ctx);
            }
        },
    };
    match start_server(ctx, mode, false) {
        Ok(true) => 0,
        Ok(false) => 0,
        Err(()) => 1,
    }
}

/// Writes lines the real server would have logged: to the log file when
/// one was given, and to stdout (where gs_ctl's caller sees a server's
/// early errors).
fn server_log(ctx: &Ctx, lines: &[String]) {
    for l in lines {
        println!("{l}");
    }
    if let Some(f) = &ctx.opts.log_file {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(f) {
            for l in lines {
                let _ = writeln!(file, "{l}");
            }
        }
    }
}

fn could_not_start(ctx: &Ctx) -> i32 {
    ctx.log("waiting for server to start...");
    print("\n");
    ctx.log("stopped waiting");
    ctx.log("could not start server\nExamine the log output.");
    1
}

/// Generates the configuration for `mode` and starts the server: `Ok(true)`
/// once it accepts connections, `Ok(false)` when still starting at the
/// timeout (gs_ctl then exits 0), `Err` when it could not start.
pub fn start_server(ctx: &Ctx, mode: Mode, forced_primary: bool) -> Result<bool, ()> {
    let term = state::read_term(&ctx.datadir);
    let conf = match conf::generate(&ctx.datadir, mode, term, forced_primary) {
        Ok(c) => c,
        Err(conf::ConfError(lines)) => {
            server_log(ctx, &lines);
            could_not_start(ctx);
            return Err(());
        }
    };
    let _ = state::write_mode(&ctx.datadir, mode, forced_primary);
    let signal = ctx.datadir.join("standby.signal");
    let _ = if mode == Mode::Primary { std::fs::remove_file(&signal) } else { std::fs::write(&signal, "") };
    let server_mode = match mode {
        Mode::Primary if conf.replconninfos().is_empty() && !forced_primary => ServerMode::Normal,
        Mode::Primary => ServerMode::Primary,
        Mode::Standby => ServerMode::Standby,
        Mode::Pending => ServerMode::Pending,
    };
    let peers = conf.replconninfos().len();
    state::write_state(&ctx.datadir, GaussState::new(server_mode, peers, DbState::Starting));
    let mut cmd = Command::new(pg_bin("pg_ctl"));
    cmd.arg("start")
        .arg("-D")
        .arg(&ctx.datadir)
        .arg("-o")
        .arg(format!("-c config_file={}", ctx.datadir.join("og_emul").join("postgresql.conf").display()));
    if ctx.opts.no_wait {
        cmd.arg("-W");
    } else {
        cmd.args(["-w", "-t", &ctx.wait_secs().to_string()]);
    }
    // Without -l the server's output would hold pg_ctl's pipes (and this
    // process) open: it goes to og_emul/postmaster.log instead.
    let log_file = ctx.opts.log_file.clone().unwrap_or_else(|| ctx.datadir.join("og_emul").join("postmaster.log"));
    cmd.arg("-l").arg(log_file);
    if ctx.opts.no_wait {
        let ok = run(&mut cmd).map(|o| o.status.success()).unwrap_or(false);
        ctx.log("server starting");
        return if ok { Ok(false) } else { Err(()) };
    }
    ctx.log("waiting for server to start...");
    let out = match run(&mut cmd) {
        Ok(o) => o,
        Err(e) => {
            ctx.log(&format!("could not run pg_ctl: {e}"));
            return Err(());
        }
    };
    print("\n");
    if out.status.success() {
        let db_state = if mode == Mode::Standby { DbState::NeedRepair } else { DbState::Normal };
        state::write_state(&ctx.datadir, GaussState::new(server_mode, peers, db_state));
        ctx.log(" done");
        ctx.log(&format!("server started ({})", ctx.data()));
        return Ok(true);
    }
    let text = common::lines_of(&out).join("\n");
    if text.contains("did not start in time") {
        ctx.log("stopped waiting");
        ctx.log("server is still starting up");
        return Ok(false);
    }
    ctx.log("stopped waiting");
    ctx.log("could not start server\nExamine the log output.");
    Err(())
}

fn shutdown_flag(mode: &str) -> Option<&'static str> {
    match mode {
        "f" | "fast" => Some("fast"),
        "i" | "immediate" => Some("immediate"),
        _ => None,
    }
}

fn stop(ctx: &Ctx) -> i32 {
    ctx.log(&format!("gs_ctl stopped ,datadir is {} ", ctx.data()));
    let requested = ctx.opts.shutdown_mode.as_deref().unwrap_or("fast");
    let Some(mode) = shutdown_flag(requested) else {
        ctx.log(&format!(" unrecognized shutdown mode \"{requested}\""));
        print("Try \"gs_ctl --help\" for more information.\n");
        return 1;
    };
    stop_server(ctx, mode, !ctx.opts.no_wait)
}

/// `do_stop`: 0 when stopped (or, in immediate mode, nothing to stop).
pub fn stop_server(ctx: &Ctx, mode: &str, wait: bool) -> i32 {
    if running_pid(&ctx.datadir).is_none() {
        ctx.log(&format!(" PID file \"{}\" does not exist.", pid_file(&ctx.datadir)));
        ctx.log("Is server running?");
        return if mode == "immediate" { 0 } else { 1 };
    }
    let mut cmd = Command::new(pg_bin("pg_ctl"));
    cmd.arg("stop").arg("-D").arg(&ctx.datadir).args(["-m", mode]);
    if !wait {
        cmd.arg("-W");
        let _ = run(&mut cmd);
        print("server shutting down\n");
        return 0;
    }
    cmd.args(["-w", "-t", &ctx.wait_secs().to_string()]);
    print("waiting for server to shut down...");
    let ok = run(&mut cmd).map(|o| o.status.success()).unwrap_or(false);
    if !ok && running_pid(&ctx.datadir).is_some() {
        if mode == "immediate" {
            return 0;
        }
        print(" failed\n");
        ctx.log(&format!(" server does not shut down ({})", ctx.data()));
        return 1;
    }
    print(". done\nserver stopped\n");
    0
}

fn restart(ctx: &Ctx) -> i32 {
    ctx.log(&format!("gs_ctl restarted ,datadir is {} ", ctx.data()));
    let requested = ctx.opts.shutdown_mode.as_deref().unwrap_or("fast");
    let Some(flag) = shutdown_flag(requested) else {
        ctx.log(&format!(" unrecognized shutdown mode \"{requested}\""));
        return 1;
    };
    if running_pid(&ctx.datadir).is_some() {
        if stop_server(ctx, flag, true) != 0 {
            return 1;
        }
    } else {
        ctx.log("Is server running?");
        ctx.log("starting server anyway");
    }
    let (previous, forced) = state::read_mode(&ctx.datadir);
    let mode = match ctx.opts.server_mode.as_deref() {
        None => previous,
        Some(m) => match Mode::parse(m) {
            Some(mode) => mode,
            None => {
                server_log(ctx, &["FATAL:  the options of -M is not recognized".to_owned()]);
                return could_not_start(ctx);
            }
        },
    };
    match start_server(ctx, mode, forced && mode == Mode::Primary) {
        Ok(_) => 0,
        Err(()) => 1,
    }
}

/// Regenerates the configuration for the server's current mode and
/// signals it. A configuration openGauss would reject is reported the
/// way the server logs it and not applied (a reload does not fail).
pub fn regenerate_and_reload(ctx: &Ctx) -> bool {
    let (mode, forced) = state::read_mode(&ctx.datadir);
    let term = state::read_term(&ctx.datadir);
    if let Err(conf::ConfError(lines)) = conf::generate(&ctx.datadir, mode, term, forced) {
        for l in lines {
            println!("{}", l.replace("FATAL:", "LOG:"));
        }
    }
    let mut cmd = Command::new(pg_bin("pg_ctl"));
    cmd.arg("reload").arg("-D").arg(&ctx.datadir);
    run(&mut cmd).map(|o| o.status.success()).unwrap_or(false)
}

fn reload(ctx: &Ctx) -> i32 {
    ctx.log(&format!("gs_ctl reload ,datadir is {} ", ctx.data()));
    if running_pid(&ctx.datadir).is_none() {
        ctx.log(&format!(" PID file \"{}\" does not exist", pid_file(&ctx.datadir)));
        ctx.log("Is server running?");
        return 1;
    }
    if !regenerate_and_reload(ctx) {
        ctx.log(" could not send reload signal");
        return 1;
    }
    print("server signaled\n");
    0
}

fn status(ctx: &Ctx) -> i32 {
    ctx.log(&format!("gs_ctl status,datadir is {} ", ctx.data()));
    match running_pid(&ctx.datadir) {
        Some(pid) => {
            print(&format!("gs_ctl: server is running (PID: {pid})\n"));
            if let Ok(opts) = std::fs::read_to_string(ctx.datadir.join("postmaster.opts")) {
                print(&opts);
            }
            0
        }
        None => {
            print("no server running\n");
            3
        }
    }
}
