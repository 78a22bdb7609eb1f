//! og-emul: openGauss's command surface (`gs_initdb`, `gs_ctl`,
//! `pg_controldata`, `pg_xlogdump`) emulated over a real PostgreSQL 15, so
//! that haraft's openGauss adapter can be tested with real servers.
//! Invoked as `og-emul TOOL ARGS...` (testkit's `opengauss::tools_dir`
//! writes one wrapper script per tool).
//!
//! Formats and messages follow openGauss 7.0.0-RC2 (openGauss-server
//! commit 7e1fc94a, 2025-08-01): src/bin/pg_ctl/pg_ctl.cpp (do_start,
//! do_stop, do_restart, do_reload, do_status, do_failover, do_notify,
//! do_query, display_query, do_build, do_build_stop, do_actual_build,
//! do_incremental_build, set_build_pid, get_runmode, main's option and
//! verb parsing), src/bin/pg_ctl/streamutil.cpp (exe_sql: the query rows),
//! src/bin/pg_rewind/logging.cpp (the `[time][pid][node][prog]: ` line),
//! src/bin/initdb/initdb.cpp (options, node name rules, messages),
//! src/include/replication/replicainternal.h (GaussState, the bytes of
//! gaussdb.state), src/common/backend/catalog/builtin_funcs.ini and
//! system_views.sql (the SQL surface's names and columns),
//! src/common/backend/utils/misc/guc-file.l (an unknown parameter).
//!
//! Where it cannot be faithful:
//! - There is no separate HA listener: a peer's replication connection
//!   goes to its service port, `remoteport - 1` of replconninfo1 (the
//!   openGauss convention haraft follows); only replconninfo1 is used.
//! - PostgreSQL never reads the openGauss-view files: every start and
//!   reload generates DATADIR/og_emul/{postgresql,pg_hba,pg_ident}.conf.
//!   openGauss-only parameters are dropped (conf.rs `OPENGAUSS_ONLY`:
//!   replconninfo1..8, cross_cluster_replconninfo*, pgxc_node_name,
//!   most_available_sync, password_encryption_type, enable_data_replicate,
//!   catchup2normal_wait_time, keep_sync_window, enable_slot_log, dcf_*
//!   and others), so they have no effect; most_available_sync is shown
//!   in sync_most_available only. unix_socket_directory,
//!   wal_keep_segments and wal_level = hot_standby are translated, hba
//!   `sha256` becomes `scram-sha-256` (other openGauss methods, e.g.
//!   `sm3`, are passed through and fail). `include_dir` is not followed.
//! - A standby streams through a physical slot named `haraft_<node>`
//!   (primary_slot_name) that must exist on the primary; openGauss's
//!   walsender would create its own.
//! - Settings openGauss would reject (PostgreSQL-only ones such as
//!   primary_conninfo, primary_slot_name, restore_command,
//!   wal_keep_size) make `start` fail with the server's messages before
//!   anything starts; at `reload` they are reported and the previous
//!   generated configuration stays (a reload does not fail).
//! - gaussdb.state is written by og-emul at start, stop-less transitions,
//!   failover and build, not continuously by the server: a standby's
//!   db_state there is `Need repair` from its start on, whatever it
//!   streams later. `gs_ctl query` reads it only when the server runs but
//!   refuses connections, as gs_ctl does; with no PID file it exits 1.
//! - db_state comes from pg_stat_wal_receiver: `Normal` when streaming,
//!   else `Need repair` (`Connecting...` while the walreceiver starts,
//!   `Disconnected` otherwise; `WAL segment removed` and `Timeline not
//!   matched` are not told apart). `Starting`, `Wait promoting`,
//!   `Promoting`, `Demoting`, `Catchup` never appear.
//! - `Pending` is a server in recovery without primary_conninfo;
//!   `notify -M standby` adds it (reload), `-M primary` promotes;
//!   `cascade_standby` is treated as `standby`.
//! - Walsender/receiver rows: catchup_start/catchup_end are NULL; a
//!   receiver's sender_* positions are the last position the primary
//!   reported (latest_end_lsn); sync_percent compares absolute positions;
//!   the channel's local side is replconninfo1's localhost (else the first
//!   listen address) and the service port, not the HA port.
//! - The shadows of PostgreSQL-only functions fail with SQLSTATE 42883
//!   and `function NAME(ARGTYPES) does not exist` naming their declared
//!   argument types (an untyped literal argument would say `unknown` on a
//!   real server). They live in og_compat, first on the configured
//!   search_path: a session that sets its own search_path sees
//!   PostgreSQL's functions (pg_rewind, pg_basebackup and walreceiver do,
//!   by secure search paths or the replication protocol).
//! - `switchover` is refused (exit 1): haraft never calls it.
//! - Auto build (`build` without `-b`) tries the incremental build once,
//!   not three times, then full. An incremental build runs pg_rewind; the
//!   source's pg_xlog alias (a directory seen through SQL) is copied and
//!   replaced by the symlink again. Builds keep the configuration files in
//!   memory while the directory is rewritten.
//! - gs_ctl's own connections (user, password, -U/-P) are replaced by
//!   PGUSER and PGPASSFILE from the environment; `-T term` is ignored and
//!   terms come from term_file + 1.
//! - `start` without `-M` starts a primary (Normal without peers); without
//!   `-l` the server's output goes to DATADIR/og_emul/postmaster.log.
//! - Output lines go to stdout; PostgreSQL's pg_ctl, pg_rewind and
//!   pg_basebackup produce the work and their lines are re-printed with
//!   openGauss's prefix.
//! - pg_controldata and pg_xlogdump are PostgreSQL 15's pg_controldata
//!   and pg_waldump: the fields and record formats are PostgreSQL's.

mod build;
mod common;
mod conf;
mod ctl;
mod initdb;
mod query;
mod roles;
mod sql;
mod state;

use std::os::unix::process::CommandExt;
use std::process::Command;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: og-emul gs_initdb|gs_ctl|pg_controldata|pg_xlogdump ARGS...");
        std::process::exit(1);
    }
    let tool = args.remove(0);
    let code = match tool.as_str() {
        "gs_initdb" => initdb::main(&args),
        "gs_ctl" => ctl::main(&args),
        "pg_controldata" => passthrough("pg_controldata", &args),
        "pg_xlogdump" => passthrough("pg_waldump", &args),
        other => {
            eprintln!("og-emul: unknown tool {other:?}");
            1
        }
    };
    std::process::exit(code);
}

/// Runs PostgreSQL's tool in place of this process; a `pg_xlog` path
/// component is read as `pg_wal` (the alias is a symlink, this only
/// keeps messages naming the real directory).
fn passthrough(tool: &str, args: &[String]) -> i32 {
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.ends_with("/pg_xlog") || a.contains("/pg_xlog/") {
                a.replacen("/pg_xlog", "/pg_wal", 1)
            } else {
                a.clone()
            }
        })
        .collect();
    let err = Command::new(common::pg_bin(tool)).args(&args).exec();
    eprintln!("og-emul: could not run {tool}: {err}");
    1
}
