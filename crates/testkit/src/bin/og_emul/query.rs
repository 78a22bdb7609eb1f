//! `gs_ctl query` and the local role gs_ctl asks the server for.

use crate::common::{self, Endpoint, pid_file, pid_in_file, print, psql, running_pid};
use crate::conf::OgConf;
use crate::ctl::Ctx;
use crate::state::{self, ServerMode};

const ROLE_SQL: &str = "select local_role from pg_stat_get_stream_replications();";

fn endpoint(ctx: &Ctx) -> Endpoint {
    OgConf::read(&ctx.datadir).map(|c| c.local_endpoint()).unwrap_or(Endpoint { host: None, port: None })
}

/// The server's `local_role`, Unknown when it cannot be asked.
pub fn local_role(ctx: &Ctx) -> ServerMode {
    match psql(&endpoint(ctx), "postgres", ROLE_SQL, false) {
        Ok(rows) => rows.first().and_then(|r| r.first()).map_or(ServerMode::Unknown, |s| ServerMode::from_word(s)),
        Err(_) => ServerMode::Unknown,
    }
}

/// `get_runmode`: the server's answer, else gaussdb.state's.
pub fn run_mode(ctx: &Ctx) -> ServerMode {
    match psql(&endpoint(ctx), "postgres", ROLE_SQL, false) {
        Ok(rows) => rows.first().and_then(|r| r.first()).map_or(ServerMode::Unknown, |s| ServerMode::from_word(s)),
        Err(_) => {
            ctx.log("Getting state from gaussdb.state!");
            state::read_state(&ctx.datadir).mode()
        }
    }
}

const TITLES: [&str; 3] = ["HA state:", "Senders info:", "Receiver info:"];

/// The three queries of `do_query`, verbatim.
const QUERIES: [&str; 3] = [
    "SELECT local_role,static_connections,db_state,detail_information FROM pg_stat_get_stream_replications();",
    "SELECT sender_pid,local_role,peer_role,peer_state, state,sender_sent_location,sender_write_location, \
     sender_flush_location,sender_replay_location, receiver_received_location,receiver_write_location, \
     receiver_flush_location,receiver_replay_location, sync_percent,sync_state,sync_priority, \
     sync_most_available,channel FROM pg_stat_get_wal_senders();",
    "SELECT receiver_pid,local_role,peer_role,peer_state, state,sender_sent_location,sender_write_location, \
     sender_flush_location,sender_replay_location, receiver_received_location,receiver_write_location, \
     receiver_flush_location,receiver_replay_location, sync_percent,channel FROM pg_stat_get_wal_receiver();",
];

pub fn query(ctx: &Ctx) -> i32 {
    ctx.log(&format!("gs_ctl query ,datadir is {} ", ctx.data()));
    let Some(pid) = pid_in_file(&ctx.datadir) else {
        ctx.log(&format!(" PID file \"{}\" does not exist", pid_file(&ctx.datadir)));
        ctx.log("Is server running?");
        return 1;
    };
    if running_pid(&ctx.datadir).is_none() {
        ctx.log(&format!(" could not connect to the local server, the postmaster process {pid} is not running"));
        return 1;
    }
    let at = endpoint(ctx);
    if let Err(e) = psql(&at, "postgres", "SELECT 1", false) {
        display_down(ctx, &e);
        return 0;
    }
    for (title, sql) in TITLES.iter().zip(QUERIES) {
        print(&format!(" {title:<20}\n"));
        match psql(&at, "postgres", sql, true) {
            Ok(rows) if rows.len() <= 1 => print("No information \n"),
            Ok(rows) => {
                let names = &rows[0];
                for row in &rows[1..] {
                    for (name, value) in names.iter().zip(row) {
                        print(&format!("\t{name:<30} : {value}\n"));
                    }
                    print("\n");
                }
            }
            Err(_) => common::log(&ctx.node, "gs_ctl", "exc_sql failed."),
        }
    }
    0
}

/// `display_query`: the state file's view when the server cannot be
/// reached (the libpq error as the detail).
fn display_down(_ctx: &Ctx, error: &str) {
    let state = state::read_state(&_ctx.datadir);
    let detail = if error.is_empty() { "Access denied" } else { error };
    print(" HA state:\n");
    print(&format!("        {:<30}: {}\n", "local_role", state.mode().word()));
    print(&format!("        {:<30}: {}\n", "static_connections", state.conn_num));
    print(&format!("        {:<30}: {}\n", "db_state", state.state_word()));
    print(&format!("        {:<30}: {}\n", "detail_information", detail));
    print(&format!("        {:<30}: {}\n", "sync_mode", if state.sync_stat { "Sync" } else { "Async" }));
    print("\n");
    print(" Senders info:\n        No information\n");
    print(" Receiver info:\n        No information\n");
}
