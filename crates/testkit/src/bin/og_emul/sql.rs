//! The openGauss SQL surface, in schema `og_compat` (first on every
//! server's search_path), installed by gs_initdb into template1 and
//! postgres. Names and result columns follow openGauss's
//! builtin_funcs.ini and system_views.sql; values come from PostgreSQL's
//! own views. Every function pins its own search_path to pg_catalog so it
//! never sees the shadows below.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Statements, each ended by `;` and a blank line (single-user mode's
/// `-j` terminator), so no statement contains a blank line.
pub const SURFACE: &str = r#"
CREATE SCHEMA og_compat;

GRANT USAGE ON SCHEMA og_compat TO PUBLIC;

CREATE FUNCTION og_compat.pg_current_xlog_location() RETURNS text LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog
AS $$ SELECT pg_catalog.pg_current_wal_lsn()::text $$;

CREATE FUNCTION og_compat.pg_last_xlog_receive_location() RETURNS text LANGUAGE sql VOLATILE SET search_path = pg_catalog
AS $$ SELECT pg_catalog.pg_last_wal_receive_lsn()::text $$;

CREATE FUNCTION og_compat.pg_last_xlog_replay_location(OUT term text, OUT lsn text) LANGUAGE sql VOLATILE SET search_path = pg_catalog
AS $$ SELECT pg_catalog.current_setting('og_emul.term', true), pg_catalog.pg_last_wal_replay_lsn()::text $$;

CREATE FUNCTION og_compat.pg_xlog_location_diff(text, text) RETURNS numeric LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog
AS $$ SELECT pg_catalog.pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn) $$;

CREATE FUNCTION og_compat.pg_stat_get_stream_replications(OUT local_role text, OUT static_connections integer, OUT db_state text, OUT detail_information text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog AS $$
DECLARE
  mode text := coalesce(current_setting('og_emul.mode', true), 'primary');
  peers integer := coalesce(nullif(current_setting('og_emul.static_connections', true), ''), '0')::integer;
  forced boolean := coalesce(current_setting('og_emul.forced_primary', true), 'off') = 'on';
  rcv text;
BEGIN
  static_connections := peers;
  IF NOT pg_is_in_recovery() THEN
    local_role := CASE WHEN peers > 0 OR forced THEN 'Primary' ELSE 'Normal' END;
    db_state := 'Normal';
    detail_information := 'Normal';
  ELSIF mode = 'pending' THEN
    local_role := 'Pending';
    db_state := 'Normal';
    detail_information := 'Normal';
  ELSE
    local_role := 'Standby';
    SELECT status INTO rcv FROM pg_stat_wal_receiver LIMIT 1;
    IF rcv = 'streaming' THEN
      db_state := 'Normal';
      detail_information := 'Normal';
    ELSIF rcv IS NOT NULL AND rcv IN ('starting', 'waiting') THEN
      db_state := 'Need repair';
      detail_information := 'Connecting...';
    ELSE
      db_state := 'Need repair';
      detail_information := 'Disconnected';
    END IF;
  END IF;
  RETURN;
END $$;

CREATE FUNCTION og_compat._og_capitalize(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog
AS $$ SELECT upper(substr($1, 1, 1)) || substr($1, 2) $$;

CREATE FUNCTION og_compat._og_percent(done pg_lsn, target pg_lsn) RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog
AS $$ SELECT CASE WHEN done IS NULL OR target IS NULL THEN '0%' WHEN done >= target THEN '100%'
  WHEN target = '0/0'::pg_lsn THEN '100%'
  ELSE least(99, floor(100 * pg_wal_lsn_diff(done, '0/0') / pg_wal_lsn_diff(target, '0/0')))::int::text || '%' END $$;

CREATE FUNCTION og_compat.pg_stat_get_wal_senders(OUT pid bigint, OUT sender_pid integer, OUT local_role text, OUT peer_role text,
  OUT peer_state text, OUT state text, OUT catchup_start timestamptz, OUT catchup_end timestamptz,
  OUT sender_sent_location text, OUT sender_write_location text, OUT sender_flush_location text, OUT sender_replay_location text,
  OUT receiver_received_location text, OUT receiver_write_location text, OUT receiver_flush_location text,
  OUT receiver_replay_location text, OUT sync_percent text, OUT sync_state text, OUT sync_priority integer,
  OUT sync_most_available text, OUT channel text)
RETURNS SETOF record LANGUAGE sql VOLATILE SET search_path = pg_catalog AS $$
  WITH me AS (
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS cur,
           CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END AS flushed,
           CASE WHEN pg_is_in_recovery() THEN 'Standby' ELSE 'Primary' END AS role)
  SELECT r.pid::bigint, r.pid, me.role,
         CASE WHEN me.role = 'Standby' THEN 'Cascade Standby' ELSE 'Standby' END, 'Normal',
         og_compat._og_capitalize(r.state), NULL::timestamptz, NULL::timestamptz,
         r.sent_lsn::text, me.cur::text, me.flushed::text, me.flushed::text,
         r.write_lsn::text, r.write_lsn::text, r.flush_lsn::text, r.replay_lsn::text,
         og_compat._og_percent(r.flush_lsn, me.flushed),
         og_compat._og_capitalize(r.sync_state), r.sync_priority,
         coalesce(current_setting('og_emul.most_available_sync', true), 'Off'),
         coalesce(current_setting('og_emul.local_host', true), '127.0.0.1') || ':' || current_setting('port')
           || '-->' || coalesce(host(r.client_addr), 'local') || ':' || coalesce(r.client_port, -1)::text
  FROM pg_stat_replication r, me
$$;

CREATE FUNCTION og_compat.pg_stat_get_wal_receiver(OUT receiver_pid integer, OUT local_role text, OUT peer_role text,
  OUT peer_state text, OUT state text, OUT sender_sent_location text, OUT sender_write_location text,
  OUT sender_flush_location text, OUT sender_replay_location text, OUT receiver_received_location text,
  OUT receiver_write_location text, OUT receiver_flush_location text, OUT receiver_replay_location text,
  OUT sync_percent text, OUT channel text)
RETURNS SETOF record LANGUAGE sql VOLATILE SET search_path = pg_catalog AS $$
  SELECT w.pid, 'Standby', 'Primary', 'Normal', og_compat._og_capitalize(w.status),
         w.latest_end_lsn::text, w.latest_end_lsn::text, w.latest_end_lsn::text, w.latest_end_lsn::text,
         w.written_lsn::text, w.written_lsn::text, w.flushed_lsn::text, pg_last_wal_replay_lsn()::text,
         og_compat._og_percent(w.flushed_lsn, w.latest_end_lsn),
         coalesce(current_setting('og_emul.local_host', true), '127.0.0.1') || ':' || current_setting('port')
           || '<--' || coalesce(w.sender_host, '') || ':' || coalesce(w.sender_port, -1)::text
  FROM pg_stat_wal_receiver w
  WHERE w.pid IS NOT NULL
$$;

CREATE VIEW og_compat.pg_stat_replication AS
  SELECT s.pid, s.usesysid, s.usename, s.application_name, s.client_addr, s.client_hostname, s.client_port,
         s.backend_start, w.state, w.sender_sent_location, w.receiver_write_location, w.receiver_flush_location,
         w.receiver_replay_location, w.sync_priority, w.sync_state
  FROM pg_catalog.pg_stat_activity s JOIN og_compat.pg_stat_get_wal_senders() w ON s.pid = w.pid;

CREATE FUNCTION og_compat.pg_create_physical_replication_slot(slot_name name, dummy_standby boolean, OUT slotname text, OUT xlog_position text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog AS $$
  SELECT s.slot_name::text, s.lsn::text FROM pg_catalog.pg_create_physical_replication_slot(slot_name, true, false) s
$$;

CREATE FUNCTION og_compat._og_no_function(signature text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = '42883', MESSAGE = format('function %s does not exist', signature),
    HINT = 'No function matches the given name and argument types. You might need to add explicit type casts.';
END $$;

CREATE FUNCTION og_compat._og_no_relation(name text) RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = '42P01', MESSAGE = format('relation "%s" does not exist', name);
END $$;

CREATE VIEW og_compat.pg_stat_wal_receiver AS
  SELECT * FROM og_compat._og_no_relation('pg_stat_wal_receiver') AS t(pid integer, status text,
    receive_start_lsn pg_lsn, receive_start_tli integer, written_lsn pg_lsn, flushed_lsn pg_lsn, received_tli integer,
    last_msg_send_time timestamptz, last_msg_receipt_time timestamptz, latest_end_lsn pg_lsn,
    latest_end_time timestamptz, slot_name text, sender_host text, sender_port integer, conninfo text);
"#;

/// PostgreSQL-only functions openGauss does not have, with every argument
/// list PostgreSQL 15 accepts and its result shape (so a query naming
/// their columns still parses): each shadow fails as a missing function.
const SHADOWED: &[(&str, &[&str], &str)] = &[
    ("pg_promote", &["", "boolean", "boolean, integer"], "RETURNS boolean"),
    ("pg_current_wal_lsn", &[""], "RETURNS pg_lsn"),
    ("pg_current_wal_flush_lsn", &[""], "RETURNS pg_lsn"),
    ("pg_current_wal_insert_lsn", &[""], "RETURNS pg_lsn"),
    ("pg_last_wal_receive_lsn", &[""], "RETURNS pg_lsn"),
    ("pg_last_wal_replay_lsn", &[""], "RETURNS pg_lsn"),
    ("pg_wal_lsn_diff", &["pg_lsn, pg_lsn"], "RETURNS numeric"),
    ("pg_walfile_name", &["pg_lsn"], "RETURNS text"),
    ("pg_ls_waldir", &[""], "OUT name text, OUT size bigint, OUT modification timestamptz) RETURNS SETOF record"),
    (
        "pg_control_system",
        &[""],
        "OUT pg_control_version integer, OUT catalog_version_no integer, OUT system_identifier bigint, \
         OUT pg_control_last_modified timestamptz) RETURNS record",
    ),
    (
        "pg_control_checkpoint",
        &[""],
        "OUT checkpoint_lsn pg_lsn, OUT redo_lsn pg_lsn, OUT redo_wal_file text, OUT timeline_id integer, \
         OUT prev_timeline_id integer, OUT full_page_writes boolean, OUT next_xid text, OUT next_oid oid, \
         OUT next_multixact_id xid, OUT next_multi_offset xid, OUT oldest_xid xid, OUT oldest_xid_dbid oid, \
         OUT oldest_active_xid xid, OUT oldest_multi_xid xid, OUT oldest_multi_dbid oid, \
         OUT oldest_commit_ts_xid xid, OUT newest_commit_ts_xid xid, OUT checkpoint_time timestamptz) RETURNS record",
    ),
    ("pg_wal_replay_pause", &[""], "RETURNS void"),
    ("pg_wal_replay_resume", &[""], "RETURNS void"),
];

/// The whole script: the surface, then one shadow per signature.
pub fn script() -> String {
    let mut s = SURFACE.to_owned();
    for (name, signatures, shape) in SHADOWED {
        for args in *signatures {
            // A shape starting with OUT continues the argument list.
            let head = match shape.strip_prefix("RETURNS ") {
                Some(ret) => format!("{name}({args}) RETURNS {ret}"),
                None => format!("{name}({args}{}{shape}", if args.is_empty() { "" } else { ", " }),
            };
            let tail = if shape.contains("SETOF") || shape.ends_with("void") { "RETURN;" } else { "RETURN NULL;" };
            let tail = if shape.starts_with("OUT") && !shape.contains("SETOF") { "RETURN;" } else { tail };
            s.push_str(&format!(
                "\nCREATE FUNCTION og_compat.{head} LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog AS $$ \
                 BEGIN PERFORM og_compat._og_no_function('{name}({args})'); {tail} END $$;\n\n"
            ));
        }
    }
    s
}

/// Installs the surface into `dbname` with a single-user backend (the
/// server is not running during gs_initdb).
pub fn install(datadir: &Path, dbname: &str) -> Result<(), String> {
    let mut child = Command::new(crate::common::pg_bin("postgres"))
        .args(["--single", "-j", "-F", "-c", "search_path=pg_catalog", "-D"])
        .arg(datadir)
        .arg(dbname)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running postgres --single: {e}"))?;
    let script = script();
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .map_err(|e| format!("writing the SQL surface: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("waiting for postgres --single: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || text.contains("ERROR:") {
        return Err(format!("installing the openGauss SQL surface into {dbname} failed:\n{text}"));
    }
    Ok(())
}
