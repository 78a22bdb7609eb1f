//! `gs_initdb`: PostgreSQL's initdb, then what makes the directory an
//! openGauss one (pgxc_node_name, the pg_xlog name, the SQL surface).

use crate::common::{pg_bin, run};
use std::path::PathBuf;
use std::process::Command;

/// PGXC_NODENAME_LENGTH in openGauss.
const NODENAME_MAX: usize = 64;

#[derive(Default)]
struct Args {
    datadir: Option<PathBuf>,
    nodename: Option<String>,
    username: Option<String>,
    pwfile: Option<String>,
    password: Option<String>,
    encoding: Option<String>,
    locale: Option<String>,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_str();
        // `--name=value`, `--name value`, `-Xvalue` or `-X value`.
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_owned(), Some(v.to_owned())),
            _ if arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") => {
                (arg[..2].to_owned(), Some(arg[2..].to_owned()))
            }
            _ => (arg.to_owned(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            argv.get(i).cloned().ok_or_else(|| format!("gs_initdb: option '{key}' requires an argument"))
        };
        match key.as_str() {
            "-D" | "--pgdata" => a.datadir = Some(PathBuf::from(value()?)),
            "--nodename" => a.nodename = Some(value()?),
            "-U" | "--username" => a.username = Some(value()?),
            "--pwfile" => a.pwfile = Some(value()?),
            "-w" | "--pwpasswd" => a.password = Some(value()?),
            "-E" | "--encoding" => a.encoding = Some(value()?),
            "--locale" => a.locale = Some(value()?),
            _ => return Err(format!("gs_initdb: unrecognized option '{arg}'")),
        }
        i += 1;
    }
    Ok(a)
}

/// `is_valid_nodename` of initdb.cpp.
fn valid_nodename(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NODENAME_MAX
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_lowercase() || (i > 0 && (c.is_ascii_digit() || c == '#' || c == '$')))
}

pub fn main(argv: &[String]) -> i32 {
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nTry \"gs_initdb --help\" for more information.");
            return 1;
        }
    };
    let Some(datadir) = args.datadir.clone().or_else(|| std::env::var("PGDATA").ok().map(PathBuf::from)) else {
        eprintln!("gs_initdb: no data directory specified");
        return 1;
    };
    let Some(nodename) = args.nodename.clone() else {
        eprintln!("gs_initdb: openGauss node name is mandatory\nTry \"gs_initdb --help\" for more information.");
        return 1;
    };
    if !valid_nodename(&nodename) {
        eprintln!(
            "gs_initdb: openGauss node name:{nodename} is invalid.\nThe node name must consist of lowercase letters \
             (a-z), underscores (_), special characters #, digits (0-9), or dollar ($).\nThe node name must start \
             with a lowercase letter (a-z), or an underscore (_).\nThe max length of nodename is {NODENAME_MAX}."
        );
        return 1;
    }
    match init(&datadir, &nodename, &args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gs_initdb: {e}");
            1
        }
    }
}

fn init(datadir: &std::path::Path, nodename: &str, args: &Args) -> Result<(), String> {
    let mut cmd = Command::new(pg_bin("initdb"));
    cmd.arg("-D").arg(datadir).args(["-A", "scram-sha-256"]);
    if let Some(u) = &args.username {
        cmd.args(["-U", u]);
    }
    if let Some(e) = &args.encoding {
        cmd.args(["-E", e]);
    }
    if let Some(l) = &args.locale {
        cmd.arg(format!("--locale={l}"));
    }
    // A password given on the command line reaches initdb through a
    // private file, as initdb takes no password argument.
    let mut temp_pwfile = None;
    if let Some(f) = &args.pwfile {
        cmd.arg(format!("--pwfile={f}"));
    } else if let Some(p) = &args.password {
        let path = std::env::temp_dir().join(format!("og-emul-pw-{}", std::process::id()));
        std::fs::write(&path, format!("{p}\n")).map_err(|e| format!("writing a password file: {e}"))?;
        cmd.arg(format!("--pwfile={}", path.display()));
        temp_pwfile = Some(path);
    }
    let out = run(&mut cmd).map_err(|e| format!("running initdb: {e}"));
    if let Some(p) = temp_pwfile {
        let _ = std::fs::remove_file(p);
    }
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().take_while(|l| !l.starts_with("Success.")) {
        println!("{line}");
    }
    if !out.status.success() {
        return Err(format!("initdb failed:\n{}", String::from_utf8_lossy(&out.stderr).trim_end()));
    }
    for db in ["template1", "postgres"] {
        crate::sql::install(datadir, db)?;
    }
    let conf = datadir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).map_err(|e| format!("reading {}: {e}", conf.display()))?;
    text.push_str(&format!("pgxc_node_name = '{}'\n", nodename.replace('\'', "''")));
    std::fs::write(&conf, text).map_err(|e| format!("writing {}: {e}", conf.display()))?;
    std::os::unix::fs::symlink("pg_wal", datadir.join("pg_xlog")).map_err(|e| format!("creating pg_xlog: {e}"))?;
    std::fs::create_dir_all(datadir.join("og_emul")).map_err(|e| format!("creating og_emul: {e}"))?;
    println!(
        "Success. You can now start the database server of single node using:\n\n    gaussdb -D {d} --single_node\nor\n    gs_ctl start -D {d} -Z single_node -l logfile\n",
        d = datadir.display()
    );
    Ok(())
}
