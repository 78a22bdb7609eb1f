//! `dminit PATH=... DB_NAME=... INSTANCE_NAME=... PORT_NUM=... SYSDBA_PWD=...`:
//! creates the instance directory PATH/DB_NAME with dm.ini and the
//! PostgreSQL underneath (superuser SYSDBA, scram), in mode NORMAL.

use crate::common::{self, pg_bin, run};
use crate::state::State;
use crate::stmt::Mode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// dminit's defaults as DM8's public pages list them.
const DEFAULTS: [(&str, &str); 4] =
    [("DB_NAME", "DAMENG"), ("INSTANCE_NAME", "DMSERVER"), ("PORT_NUM", "5236"), ("SYSDBA_PWD", "SYSDBA")];

/// DM's `KEY=value` arguments, keys upper-cased.
pub fn key_values(argv: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for a in argv {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("invalid parameter [{a}]"))?;
        m.insert(k.trim().to_ascii_uppercase(), v.trim().trim_matches('"').to_owned());
    }
    Ok(m)
}

pub fn main(argv: &[String]) -> i32 {
    println!("initdb V8");
    println!("db version: 0x7000c");
    let mut args = match key_values(argv) {
        Ok(a) => a,
        Err(e) => {
            println!("{e}");
            return 1;
        }
    };
    for (k, v) in DEFAULTS {
        args.entry(k.into()).or_insert_with(|| v.into());
    }
    let Some(path) = args.get("PATH") else {
        println!("PATH must be given (dm-emul has no default installation directory)");
        return 1;
    };
    let inst = Path::new(path).join(&args["DB_NAME"]);
    let Ok(port) = args["PORT_NUM"].parse::<u16>() else {
        println!("invalid PORT_NUM [{}]", args["PORT_NUM"]);
        return 1;
    };
    if inst.join("dm.ini").exists() || common::pgdata(&inst).exists() {
        println!("Database [{}] already exists, dminit refuses to overwrite it", inst.display());
        return 1;
    }
    match create(&inst, &args, port) {
        Ok(()) => {
            println!(" log file path: {}", inst.join(format!("{}01.log", args["DB_NAME"])).display());
            println!(" log file path: {}", inst.join(format!("{}02.log", args["DB_NAME"])).display());
            println!("write to dir [{}].", inst.display());
            println!("create dm database success. {}", common::now_text());
            0
        }
        Err(e) => {
            println!("create dm database fail: {e}");
            1
        }
    }
}

fn create(inst: &Path, args: &BTreeMap<String, String>, port: u16) -> Result<(), String> {
    let emul = common::emul_dir(inst);
    std::fs::create_dir_all(&emul).map_err(|e| format!("creating {}: {e}", emul.display()))?;
    let pwfile: PathBuf = emul.join("pwfile");
    std::fs::write(&pwfile, format!("{}\n", args["SYSDBA_PWD"])).map_err(|e| e.to_string())?;
    let out = run(Command::new(pg_bin("initdb"))
        .arg("-D")
        .arg(common::pgdata(inst))
        .args(["-U", "SYSDBA", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        .arg(format!("--pwfile={}", pwfile.display())))
    .map_err(|e| format!("running initdb: {e}"))?;
    let _ = std::fs::remove_file(&pwfile);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let ini = format!(
        "# dm.ini written by dminit (dm-emul)\nINSTANCE_NAME = {}\nPORT_NUM = {port}\nCTL_PATH = {}\nSYSTEM_PATH = {}\n\
         MAL_INI = 0\nARCH_INI = 0\n",
        args["INSTANCE_NAME"],
        inst.join("dm.ctl").display(),
        inst.display()
    );
    std::fs::write(inst.join("dm.ini"), ini).map_err(|e| e.to_string())?;
    let state = State { mode: Mode::Normal, pwd: args["SYSDBA_PWD"].clone(), arch_invalid: false, lsn: None };
    state.write(inst).map_err(|e| e.to_string())
}
