//! `gs_ctl build`: make this data directory a standby of the peer in
//! replconninfo1, incrementally (pg_rewind) or in full (pg_basebackup).

use crate::common::{self, Endpoint, pg_bin, psql, run, running_pid};
use crate::conf::{self, Mode, OgConf};
use crate::ctl::{self, Ctx};
use crate::state::{self, DbState, GaussState, ServerMode};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Eq)]
enum BuildMode {
    Auto,
    Full,
    Incremental,
}

pub fn build(ctx: &Ctx) -> i32 {
    // An unknown -b value leaves the default, auto (as gs_ctl's getopt).
    let mode = match ctx.opts.build_mode.as_deref() {
        Some("full") => BuildMode::Full,
        Some("incremental") => BuildMode::Incremental,
        _ => BuildMode::Auto,
    };
    let what = if mode == BuildMode::Full { "full build" } else { "incremental build" };
    ctx.log(&format!("gs_ctl {what} ,datadir is {}", ctx.data()));
    let conf = match OgConf::read(&ctx.datadir) {
        Ok(c) => c,
        Err(e) => {
            ctx.log(&e);
            return 1;
        }
    };
    let Some(peer) = conf.replconninfos().into_iter().next() else {
        ctx.log("could not connect to server.");
        ctx.log("replconninfo1 names no peer to build from (og-emul)");
        return 1;
    };
    set_build_pid(ctx, std::process::id());
    if running_pid(&ctx.datadir).is_some() {
        let role = match crate::query::local_role(ctx) {
            ServerMode::Unknown => state::read_state(&ctx.datadir).mode(),
            r => r,
        };
        if role != ServerMode::Standby && role != ServerMode::CascadeStandby {
            ctx.log(&format!("The local server run as {},build cannot be executed.", role.word()));
            return 1;
        }
        let how = if mode == BuildMode::Full { "immediate" } else { "fast" };
        if ctl::stop_server(ctx, how, true) != 0 {
            return 1;
        }
    }
    let source = Endpoint { host: Some(peer.remote_host.clone()), port: Some(peer.service_port()) };
    let ok = match mode {
        BuildMode::Full => full(ctx, &conf, &source),
        BuildMode::Incremental => incremental(ctx, &conf, &source),
        BuildMode::Auto => {
            incremental(ctx, &conf, &source) || {
                ctx.log("inc build failed, change to full build.");
                full(ctx, &conf, &source)
            }
        }
    };
    if !ok {
        return 1;
    }
    let started = ctl::start_server(ctx, Mode::Standby, false).is_ok();
    set_build_pid(ctx, 0);
    if started { 0 } else { 1 }
}

/// `set_build_pid`: gs_build.pid holds the building gs_ctl's PID, 0 after.
fn set_build_pid(ctx: &Ctx, pid: u32) {
    let path = ctx.datadir.join("gs_build.pid");
    let p = path.display();
    if std::fs::write(&path, format!("{pid}\n")).is_ok() {
        ctx.log(&format!("fopen build pid file \"{p}\" success"));
        ctx.log(&format!("fprintf build pid file \"{p}\" success"));
        ctx.log(&format!("fsync build pid file \"{p}\" success"));
    }
}

/// The files a build keeps (the configuration, the emulation's own state,
/// the term), with their contents.
struct Kept(Vec<(PathBuf, Vec<u8>)>);

fn keep(ctx: &Ctx, conf: &OgConf) -> Kept {
    let mut paths: Vec<PathBuf> = conf.files.clone();
    for name in ["pg_hba.conf", "pg_ident.conf", "term_file", "gaussdb.state"] {
        paths.push(ctx.datadir.join(name));
    }
    if let Ok(entries) = std::fs::read_dir(ctx.datadir.join("og_emul")) {
        paths.extend(entries.flatten().map(|e| e.path()));
    }
    Kept(paths.into_iter().filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b))).collect())
}

fn restore(ctx: &Ctx, kept: &Kept) {
    for (path, bytes) in &kept.0 {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(path, bytes);
    }
    // openGauss data directories name their WAL directory pg_xlog.
    let xlog = ctx.datadir.join("pg_xlog");
    if std::fs::symlink_metadata(&xlog).map(|m| !m.file_type().is_symlink()).unwrap_or(false) {
        let _ = std::fs::remove_dir_all(&xlog);
    }
    if std::fs::symlink_metadata(&xlog).is_err() {
        let _ = std::os::unix::fs::symlink("pg_wal", &xlog);
    }
}

fn show(ctx: &Ctx, progname: &str, out: &std::process::Output) {
    for line in common::lines_of(out) {
        let line = line.strip_prefix("pg_rewind: ").or_else(|| line.strip_prefix("pg_basebackup: ")).unwrap_or(&line);
        common::log(&ctx.node, progname, line);
    }
}

fn incremental(ctx: &Ctx, conf: &OgConf, source: &Endpoint) -> bool {
    let kept = keep(ctx, conf);
    let ok = rewind(ctx, source);
    restore(ctx, &kept);
    if !ok {
        ctx.log("inc build failed.");
    }
    ok
}

fn rewind(ctx: &Ctx, source: &Endpoint) -> bool {
    // pg_rewind refuses a target that was not shut down cleanly and would
    // run a single-user server on the openGauss-view configuration; finish
    // crash recovery here, on the generated one.
    if !cleanly_shut_down(&ctx.datadir) {
        let term = state::read_term(&ctx.datadir);
        if conf::generate(&ctx.datadir, Mode::Standby, term, false).is_err() {
            ctx.log("could not generate the configuration for crash recovery");
            return false;
        }
        let _ = std::fs::remove_file(ctx.datadir.join("standby.signal"));
        let mut single = Command::new(pg_bin("postgres"));
        single
            .args(["--single", "-F", "-D"])
            .arg(&ctx.datadir)
            .arg("-c")
            .arg(format!("config_file={}", ctx.datadir.join("og_emul").join("postgresql.conf").display()));
        single.arg("template1");
        match run(&mut single) {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                show(ctx, "gs_ctl", &o);
                ctx.log("crash recovery before the rewind failed");
                return false;
            }
            Err(e) => {
                ctx.log(&format!("could not run postgres --single: {e}"));
                return false;
            }
        }
    }
    // The source's control file names its newest timeline only after a
    // checkpoint; pg_rewind reads it from there.
    if let Err(e) = psql(source, "postgres", "CHECKPOINT", false) {
        ctx.log("could not connect to server.");
        ctx.log(&e);
        return false;
    }
    // pg_rewind would stop on a symlink where the source (read through
    // SQL, which follows links) has a directory; the alias is put back by
    // restore().
    let _ = std::fs::remove_file(ctx.datadir.join("pg_xlog"));
    let mut cmd = Command::new(pg_bin("pg_rewind"));
    cmd.arg("--target-pgdata").arg(&ctx.datadir).arg(format!("--source-server={}", conninfo(source)));
    let out = match run(&mut cmd) {
        Ok(o) => o,
        Err(e) => {
            ctx.log(&format!("could not run pg_rewind: {e}"));
            return false;
        }
    };
    show(ctx, "gs_rewind", &out);
    out.status.success()
}

fn conninfo(source: &Endpoint) -> String {
    let mut s = format!("host={} port={}", source.host.as_deref().unwrap_or("127.0.0.1"), source.port.unwrap_or(5432));
    if let Ok(u) = std::env::var("PGUSER") {
        s.push_str(&format!(" user={u}"));
    }
    s.push_str(" dbname=postgres connect_timeout=5");
    s
}

fn cleanly_shut_down(datadir: &Path) -> bool {
    let out = run(Command::new(pg_bin("pg_controldata")).arg("-D").arg(datadir));
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout).lines().any(|l| {
            l.starts_with("Database cluster state:")
                && (l.ends_with("shut down") || l.ends_with("shut down in recovery"))
        })
    })
    .unwrap_or(false)
}

fn full(ctx: &Ctx, conf: &OgConf, source: &Endpoint) -> bool {
    if let Ok(cwd) = std::env::current_dir() {
        ctx.log(&format!("current workdir is ({}).", cwd.display()));
    }
    let kept = keep(ctx, conf);
    let peers = conf.replconninfos().len();
    let mut building = GaussState::new(ServerMode::Standby, peers, DbState::Building);
    building.build_mode = 2; // FULL_BUILD
    state::write_state(&ctx.datadir, building);
    ctx.log(
        "set gaussdb state file when full build build:db state(BUILDING_STATE), server mode(STANDBY_MODE), build mode(FULL_BUILD).",
    );
    let ok = basebackup(ctx, source);
    restore(ctx, &kept);
    if !ok {
        ctx.log(&format!("full build failed({}).", ctx.data()));
        return false;
    }
    state::write_state(&ctx.datadir, GaussState::new(ServerMode::Standby, peers, DbState::Starting));
    ctx.log(&format!("full build build completed({}).", ctx.data()));
    true
}

fn basebackup(ctx: &Ctx, source: &Endpoint) -> bool {
    let entries = match std::fs::read_dir(&ctx.datadir) {
        Ok(e) => e,
        Err(e) => {
            ctx.log(&format!("could not open directory \"{}\": {e}", ctx.data()));
            return false;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let removed = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if let Err(e) = removed {
            ctx.log(&format!("could not remove \"{}\": {e}", path.display()));
            return false;
        }
    }
    let mut cmd = Command::new(pg_bin("pg_basebackup"));
    cmd.arg("-D").arg(&ctx.datadir).args(["-X", "stream", "-c", "fast", "--no-password"]);
    cmd.args(["-h", source.host.as_deref().unwrap_or("127.0.0.1"), "-p", &source.port.unwrap_or(5432).to_string()]);
    if let Ok(u) = std::env::var("PGUSER") {
        cmd.args(["-U", &u]);
    }
    cmd.env("PGCONNECT_TIMEOUT", "5");
    let out = match run(&mut cmd) {
        Ok(o) => o,
        Err(e) => {
            ctx.log(&format!("could not run pg_basebackup: {e}"));
            return false;
        }
    };
    show(ctx, "gs_ctl", &out);
    out.status.success()
}
