//! dm-emul: Dameng DM8's instance and command surface (`dminit`,
//! `dmserver`, `disql`, `dmrman`) emulated over a real PostgreSQL 15, so
//! that haraft's DM adapter can be tested with real servers. Invoked as
//! `dm-emul TOOL ARGS...` (testkit's `dameng::tools_dir` writes one
//! wrapper script per tool).
//!
//! Behaviour follows DM8 (V8, "DB Version: 0x7000c") as public pages
//! show it (DM's manuals are proprietary): /work/shared/reference/dameng.md
//! and the seed 003 (a switchover step by step); dmmal.ini, dmarch.ini,
//! dm.ini keys and dminit/dmrman usage from public deployment guides
//! (blog.csdn.net/weixin_52843944/article/details/119537178,
//! blog.csdn.net/qq_40135088/article/details/129047665,
//! blog.csdn.net/yzydba913390358/article/details/120218577); modes and
//! statuses (only MOUNT changes a mode; PRIMARY/STANDBY start to MOUNT;
//! OPEN <-> MOUNT) from e-com-net.com/article/1641740204920332288.htm,
//! blog.csdn.net/weixin_52843944/article/details/118182179 and
//! www.cpky.cn/p/11638.html; `ALTER DATABASE ... OPEN [FORCE]` grammar
//! from blog.youkuaiyun.com/SGsmallghost/article/details/150071945; disql's
//! banner and result layout from
//! blog.csdn.net/revenco_li/article/details/121227835.
//!
//! # The contract (what the adapter does)
//! - An instance directory INST = PATH/DB_NAME holds `dm.ini`
//!   (INSTANCE_NAME, PORT_NUM, ALTER_MODE_STATUS, others kept and
//!   ignored), `dmmal.ini` (written by the adapter: `[MAL_INSTn]` with
//!   MAL_INST_NAME, MAL_HOST, MAL_PORT, MAL_INST_HOST, MAL_INST_PORT = the
//!   instance's client port) and `dmarch.ini` (written by the adapter:
//!   `[ARCHIVE_REALTIMEn]` ARCH_TYPE = REALTIME, ARCH_DEST = peer instance
//!   name; `[ARCHIVE_LOCAL1]`). The emulation's own files are in
//!   INST/dm_emul: `state` (mode, SYSDBA password, archive flag, last
//!   LSN), `pgdata` (PostgreSQL), `dmserver.pid`, `postgres.log`,
//!   `pg_hba.conf`.
//! - `dminit PATH= DB_NAME= INSTANCE_NAME= PORT_NUM= SYSDBA_PWD=`
//!   (case-insensitive keys) creates INST in mode NORMAL; an existing
//!   instance is refused.
//! - `dmserver INST/dm.ini [mount]` runs in the foreground as the instance
//!   and writes INST/dm_emul/dmserver.pid. NORMAL opens; PRIMARY and
//!   STANDBY (or `mount`) stay in MOUNT. SIGTERM/SIGINT stop it (PostgreSQL
//!   fast); SIGKILL kills PostgreSQL with it (below).
//! - `disql [-S] SYSDBA/PWD@HOST:PORT -e "statement"` runs one statement:
//!   `SELECT cols|* FROM V$INSTANCE | V$ARCH_STATUS | V$RLOG`;
//!   `ALTER DATABASE MOUNT | OPEN | OPEN FORCE | PRIMARY | STANDBY |
//!   NORMAL`; `SP_SET_PARA_VALUE(scope, 'NAME', value)`;
//!   `SP_SET_GLOBAL_DW_STATUS(a, b)`; `SP_APPLY_KEEP_PKG()`;
//!   `SP_SET_ARCH_STATUS('INVALID'|'VALID')`; `BACKUP DATABASE [FULL]
//!   BACKUPSET 'dir'`; `SHUTDOWN IMMEDIATE | ABORT`; anything else goes
//!   to PostgreSQL as SYSDBA when OPEN.
//! - `dmrman CTLSTMT="BACKUP DATABASE 'INST/dm.ini' [FULL] BACKUPSET
//!   'dir'"` (offline), `"RESTORE DATABASE 'INST/dm.ini' FROM BACKUPSET
//!   'dir'"`, `"RECOVER DATABASE 'INST/dm.ini' FROM BACKUPSET 'dir'"`,
//!   `"RECOVER DATABASE 'INST/dm.ini' UPDATE DB_MAGIC"` (dmserver
//!   stopped). A standby is made by: online BACKUP on the primary (disql),
//!   RESTORE (+ RECOVER) into the new instance, `dmserver ... mount`,
//!   `ALTER DATABASE STANDBY`, `ALTER DATABASE OPEN FORCE`.
//!
//! # State rules
//! - Modes change only in MOUNT; with a dmmal.ini present (a watched
//!   instance) only while ALTER_MODE_STATUS is 1 in memory (dm.ini's value
//!   at start, default 1; SP_SET_PARA_VALUE scope 0/1 sets memory, 1/2
//!   dm.ini).
//! - MOUNT stops PostgreSQL (fast), so no connection other than disql's
//!   control socket works: MOUNT refuses every application connection.
//! - OPEN of NORMAL or PRIMARY: a writable PostgreSQL; one that was in
//!   recovery is promoted (new timeline). OPEN of STANDBY: PostgreSQL in
//!   recovery streaming from the dmarch.ini REALTIME destination if there
//!   is exactly one, else from the only other dmmal.ini instance, at its
//!   MAL_INST_HOST:MAL_INST_PORT, announcing its INSTANCE_NAME as
//!   application_name. It does not wait for streaming to begin.
//! - V$ARCH_STATUS: LOCAL is VALID; REALTIME to D is VALID only on an OPEN
//!   PRIMARY whose PostgreSQL streams to D and whose archive is not
//!   flagged INVALID. `SP_SET_ARCH_STATUS('INVALID')` flags it; the
//!   watcher's recovery (emulated inside dmserver, checked every second)
//!   makes each destination that streams VALID again 3 s later (the
//!   seed's INST_RECOVER_TIME after a switchover; the seed shows one
//!   standby, so recovering each on its own is an assumption) and clears
//!   the flag once every REALTIME destination streams. OPEN without
//!   FORCE of a PRIMARY or STANDBY whose archive is flagged INVALID is
//!   refused; OPEN FORCE of a STANDBY clears its flag.
//! - V$RLOG: integer LSNs ((hi << 32) | lo of PostgreSQL's): on a primary
//!   CUR_LSN = insert position, FILE_LSN = FLUSH_LSN = flushed WAL; on a
//!   standby CUR_LSN = FILE_LSN = replayed, FLUSH_LSN = received; CKPT_LSN =
//!   the last checkpoint's redo. In MOUNT all four are the CUR_LSN saved
//!   when PostgreSQL stopped (0 when never known).
//! - SP_APPLY_KEEP_PKG(): on a STANDBY waits (60 s at most) until replay
//!   reached what was received; elsewhere an error.
//!
//! # Where it cannot be faithful
//! - Error codes: -70028 (connection), -2501 (login), -2007 (syntax),
//!   -2111 (column) are from public posts; -720 with its text is from
//!   memory of public posts, not verified here; -6100 (wrong status),
//!   -6101 (archive INVALID, OPEN refused), -6102 (not a standby) and
//!   -20000 (PostgreSQL's own error, its message after it) are chosen by
//!   the emulation: no public source gave them. dmrman's -8003..-8005 too.
//! - `SP_SET_ARCH_STATUS` is an assumption: DM's watcher sets archives
//!   invalid internally and no public statement for it was found. The
//!   rule that OPEN without FORCE is refused while the archive is INVALID
//!   is also an assumption (the monitor always uses OPEN FORCE there).
//! - disql finds the instance by PORT only (the control socket
//!   `$DM_EMUL_RUN_DIR|/tmp/dm_emul.PORT.sock`): HOST is not used, so
//!   only local instances are reachable; a statement is one line; the
//!   result layout is DM's English one, `Execute id` is always 0; errors go
//!   to stdout with exit code 1. `-S` hides the login banner only.
//! - Application connections go straight to PostgreSQL on PORT_NUM (its
//!   protocol, not DM's); SYSDBA is PostgreSQL's superuser "SYSDBA".
//!   STANDBY refuses writes with PostgreSQL's error, through disql as
//!   -20000.
//! - No MAL or watcher ports are opened: MAL_HOST/MAL_PORT are read and
//!   ignored; redo travels by PostgreSQL streaming replication to the
//!   peer's client port, without a slot (wal_keep_size = 512MB).
//! - REALTIME archiving is asynchronous here (DM's is synchronous and
//!   suspends the primary when sending fails); the primary never blocks.
//! - SUSPEND, AFTER REDO, TIMELY/ASYNC archives' semantics, OGUID, DSC and
//!   MPP are absent; SP_SET_GLOBAL_DW_STATUS is recorded only;
//!   V$ARCH_STATUS.ARCH_SRC is the instance's own name.
//! - Supervision: dmserver spawns `postgres` directly as its child with
//!   PR_SET_PDEATHSIG = SIGQUIT (checked against a parent that died before
//!   the prctl), from the main thread (the signal follows the thread that
//!   forked), and never leaves its process group. SIGKILL of dmserver thus
//!   makes the postmaster shut down immediately: no new connections, every
//!   backend terminated. If PostgreSQL dies under dmserver, dmserver exits
//!   1 (the instance is down); it never restarts it.
//! - dmrman has no interactive mode and no incremental sets; RECOVER is a
//!   no-op (PostgreSQL replays at start); a backup set is a PostgreSQL
//!   directory and carries the SYSDBA password (the restored instance
//!   uses the source's, as a restored DM database has the source's users).
//! - dminit ignores PAGE_SIZE, CHARSET, CASE_SENSITIVE and the rest; DM's
//!   "first start may not be MOUNT" rule is not enforced.

mod common;
mod disql;
mod dminit;
mod exec;
mod ini;
mod pg;
mod rman;
mod server;
mod state;
mod stmt;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: dm-emul dminit|dmserver|disql|dmrman ARGS...");
        std::process::exit(1);
    }
    let tool = args.remove(0);
    let code = match tool.as_str() {
        "dminit" => dminit::main(&args),
        "dmserver" => server::main(&args),
        "disql" => disql::main(&args),
        "dmrman" => rman::main(&args),
        other => {
            eprintln!("dm-emul: unknown tool {other:?}");
            1
        }
    };
    std::process::exit(code);
}
