//! The verbs that change a server's role: `gs_ctl failover` and
//! `gs_ctl notify`.

use crate::common::{pg_bin, pid_file, print, run, running_pid};
use crate::conf::{Mode, OgConf};
use crate::ctl::{Ctx, regenerate_and_reload};
use crate::state::{self, DbState, GaussState, ServerMode};
use std::process::Command;

/// Waits up to `secs` for the server to leave recovery.
fn wait_promoted(ctx: &Ctx, secs: u64) -> bool {
    let start = std::time::Instant::now();
    loop {
        if crate::query::local_role(ctx) == ServerMode::Primary || crate::query::local_role(ctx) == ServerMode::Normal {
            return true;
        }
        if start.elapsed().as_secs() >= secs {
            return false;
        }
        print(".");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Promotes a server in recovery and records it as primary.
fn promote(ctx: &Ctx, forced_primary: bool) -> bool {
    let mut cmd = Command::new(pg_bin("pg_ctl"));
    cmd.arg("promote").arg("-D").arg(&ctx.datadir).args(["-W"]);
    let _ = run(&mut cmd);
    let _ = state::write_mode(&ctx.datadir, Mode::Primary, forced_primary);
    let promoted = wait_promoted(ctx, ctx.wait_secs());
    if promoted {
        let _ = std::fs::remove_file(ctx.datadir.join("standby.signal"));
        // The primary's configuration: no primary_conninfo, the new term.
        regenerate_and_reload(ctx);
        let peers = OgConf::read(&ctx.datadir).map(|c| c.replconninfos().len()).unwrap_or(0);
        let role = if peers > 0 || forced_primary { ServerMode::Primary } else { ServerMode::Normal };
        state::write_state(&ctx.datadir, GaussState::new(role, peers, DbState::Normal));
    }
    promoted
}

pub fn failover(ctx: &Ctx) -> i32 {
    ctx.log(&format!("gs_ctl failover ,datadir is {} ", ctx.data()));
    let term = state::read_term(&ctx.datadir) + 1;
    ctx.log(&format!("failover term ({term})"));
    if state::write_term(&ctx.datadir, term).is_err() {
        ctx.log("could not open file successfully");
        return 1;
    }
    if running_pid(&ctx.datadir).is_none() {
        ctx.log(&format!(" PID file \"{}\" does not exist", pid_file(&ctx.datadir)));
        ctx.log(" Is server running?");
        return 1;
    }
    match crate::query::run_mode(ctx) {
        ServerMode::Primary => {
            ctx.log(&format!(" failover completed ({})", ctx.data()));
            return 0;
        }
        ServerMode::Unknown => {
            ctx.log(" cannot failover server:server mode is unknown");
            return 1;
        }
        ServerMode::Standby | ServerMode::CascadeStandby => {}
        ServerMode::Normal | ServerMode::Pending => {
            ctx.log(" cannot failover server; server is not in standby or cascade standby mode");
            return 1;
        }
    }
    if ctx.opts.no_wait {
        ctx.log(" server starting failover");
        let mut cmd = Command::new(pg_bin("pg_ctl"));
        cmd.arg("promote").arg("-D").arg(&ctx.datadir).arg("-W");
        let _ = run(&mut cmd);
        let _ = state::write_mode(&ctx.datadir, Mode::Primary, false);
        return 0;
    }
    ctx.log(" waiting for server to failover...");
    let promoted = promote(ctx, false);
    print("\n");
    if !promoted {
        ctx.log(&format!(
            " failover timeout after {} seconds. please manually check the cluster status or backtrack log.",
            ctx.wait_secs()
        ));
        ctx.log(&format!(" failover failed ({})", ctx.data()));
        return 1;
    }
    ctx.log(" done");
    ctx.log(&format!(" failover completed ({})", ctx.data()));
    0
}

pub fn notify(ctx: &Ctx) -> i32 {
    ctx.log(&format!("gs_ctl notify ,datadir is {} ", ctx.data()));
    let Some(requested) = ctx.opts.server_mode.clone() else {
        ctx.log("the parameter of notify must be specified");
        return 1;
    };
    if running_pid(&ctx.datadir).is_none() {
        ctx.log(&format!(" PID file \"{}\" does not exist", pid_file(&ctx.datadir)));
        print("Is server running?\n");
        return 1;
    }
    let target = match requested.as_str() {
        "primary" => ServerMode::Primary,
        "standby" => ServerMode::Standby,
        "cascade_standby" => ServerMode::CascadeStandby,
        _ => {
            ctx.log(" the parameter of notify is not recognized");
            return 1;
        }
    };
    let current = crate::query::run_mode(ctx);
    if current == ServerMode::Unknown {
        ctx.log(" cannot notify server: server mode is unknown");
        return 1;
    }
    if current != ServerMode::Pending && !(current == ServerMode::Normal && target == ServerMode::Primary) {
        ctx.log(" only support notify server in pending mode; or notify server to primary in normal mode");
        return 1;
    }
    if target == ServerMode::Primary {
        let term = state::read_term(&ctx.datadir) + 1;
        ctx.log(&format!("notify primary term ({term})"));
        if let Err(e) = state::write_term(&ctx.datadir, term) {
            ctx.log(&format!("failed to open file \"{}/term_file\": {e}", ctx.data()));
            return 1;
        }
    }
    ctx.log("waiting for server to response...");
    let reached = match target {
        ServerMode::Primary if current == ServerMode::Normal => {
            let _ = state::write_mode(&ctx.datadir, Mode::Primary, true);
            regenerate_and_reload(ctx);
            wait_role(ctx, ServerMode::Primary)
        }
        ServerMode::Primary => promote(ctx, true) && wait_role(ctx, ServerMode::Primary),
        // A cascade standby is a standby of the emulation (caveat).
        _ => {
            let _ = state::write_mode(&ctx.datadir, Mode::Standby, false);
            regenerate_and_reload(ctx);
            wait_role(ctx, ServerMode::Standby)
        }
    };
    print(" ");
    if !reached {
        ctx.log("failed");
        ctx.log(&format!(
            " notify server failed, notify {}, current is {}",
            target.word(),
            crate::query::run_mode(ctx).word()
        ));
        return 1;
    }
    ctx.log("done");
    ctx.log(&format!("notify server completed, mode change to {}", target.word()));
    0
}

/// Waits for the server to report `role` (a reload is applied
/// asynchronously).
fn wait_role(ctx: &Ctx, role: ServerMode) -> bool {
    let start = std::time::Instant::now();
    loop {
        if crate::query::local_role(ctx) == role {
            return true;
        }
        if start.elapsed().as_secs() >= ctx.wait_secs() {
            return false;
        }
        print(".");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
