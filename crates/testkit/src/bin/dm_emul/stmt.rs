//! The statements dm-emul understands, parsed purely from text, and
//! disql's result table. Anything else is `Stmt::Other` and goes to the
//! PostgreSQL underneath when the instance is OPEN.

/// DM's database modes (V$INSTANCE.MODE$).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Primary,
    Standby,
}

impl Mode {
    pub fn word(self) -> &'static str {
        match self {
            Mode::Normal => "NORMAL",
            Mode::Primary => "PRIMARY",
            Mode::Standby => "STANDBY",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "NORMAL" => Some(Mode::Normal),
            "PRIMARY" => Some(Mode::Primary),
            "STANDBY" => Some(Mode::Standby),
            _ => None,
        }
    }
}

/// The dynamic views the emulation answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Instance,
    ArchStatus,
    Rlog,
}

impl View {
    /// Its columns, in DM's order as far as public posts show them.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            View::Instance => &["INSTANCE_NAME", "MODE$", "STATUS$"],
            View::ArchStatus => &["ARCH_TYPE", "ARCH_DEST", "ARCH_STATUS", "ARCH_SRC"],
            View::Rlog => &["CKPT_LSN", "FILE_LSN", "FLUSH_LSN", "CUR_LSN"],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    /// `SELECT cols FROM V$...` (`cols` empty for `*`).
    Select {
        cols: Vec<String>,
        view: View,
    },
    Mount,
    Open {
        force: bool,
    },
    SetMode(Mode),
    SetPara {
        scope: i64,
        name: String,
        value: String,
    },
    SetGlobalDwStatus(i64, i64),
    ApplyKeepPkg,
    /// `SP_SET_ARCH_STATUS('VALID'|'INVALID')`: the emulation's own name.
    SetArchStatus {
        valid: bool,
    },
    /// `BACKUP DATABASE [FULL] [TO name] BACKUPSET 'dir'` (online).
    Backup {
        dir: String,
    },
    Shutdown {
        abort: bool,
    },
    Other(String),
}

/// Parses one statement (case-insensitive, optional trailing `;`), or
/// returns DM's syntax error text for a known statement written wrong.
pub fn parse(text: &str) -> Result<Stmt, String> {
    let text = text.trim().trim_end_matches(';').trim();
    let words: Vec<String> = text.split_whitespace().map(str::to_ascii_uppercase).collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["ALTER", "DATABASE", "MOUNT"] => return Ok(Stmt::Mount),
        ["ALTER", "DATABASE", "OPEN"] => return Ok(Stmt::Open { force: false }),
        ["ALTER", "DATABASE", "OPEN", "FORCE"] => return Ok(Stmt::Open { force: true }),
        ["ALTER", "DATABASE", m] if Mode::parse(m).is_some() => {
            return Ok(Stmt::SetMode(Mode::parse(m).expect("checked")));
        }
        ["ALTER", "DATABASE", ..] if w.len() <= 4 => return Err("Syntax error".into()),
        ["SHUTDOWN", "IMMEDIATE"] => return Ok(Stmt::Shutdown { abort: false }),
        ["SHUTDOWN", "ABORT"] => return Ok(Stmt::Shutdown { abort: true }),
        ["BACKUP", "DATABASE", ..] => {
            let dir = quoted_after(text, "BACKUPSET").ok_or("Syntax error")?;
            return Ok(Stmt::Backup { dir });
        }
        ["SELECT", ..] => {
            if let Some(s) = select(text)? {
                return Ok(s);
            }
        }
        _ => {}
    }
    let call = text.strip_prefix("CALL ").or_else(|| text.strip_prefix("call ")).unwrap_or(text).trim();
    if let Some((name, args)) = call.split_once('(') {
        let name = name.trim().to_ascii_uppercase();
        let known = ["SP_SET_PARA_VALUE", "SP_SET_GLOBAL_DW_STATUS", "SP_APPLY_KEEP_PKG", "SP_SET_ARCH_STATUS"];
        if !known.contains(&name.as_str()) {
            return Ok(Stmt::Other(text.to_owned()));
        }
        let args = args.trim_end().strip_suffix(')').ok_or("Syntax error")?;
        let args: Vec<String> =
            args.split(',').map(|a| a.trim().trim_matches('\'').to_owned()).filter(|a| !a.is_empty()).collect();
        let int = |i: usize| args.get(i).and_then(|a| a.parse::<i64>().ok()).ok_or("Syntax error");
        match name.as_str() {
            "SP_SET_PARA_VALUE" if args.len() == 3 => {
                return Ok(Stmt::SetPara {
                    scope: int(0)?,
                    name: args[1].to_ascii_uppercase(),
                    value: args[2].clone(),
                });
            }
            "SP_SET_GLOBAL_DW_STATUS" if args.len() == 2 => return Ok(Stmt::SetGlobalDwStatus(int(0)?, int(1)?)),
            "SP_APPLY_KEEP_PKG" if args.is_empty() => return Ok(Stmt::ApplyKeepPkg),
            "SP_SET_ARCH_STATUS" if args.len() == 1 => match args[0].to_ascii_uppercase().as_str() {
                "VALID" => return Ok(Stmt::SetArchStatus { valid: true }),
                "INVALID" => return Ok(Stmt::SetArchStatus { valid: false }),
                _ => return Err("Syntax error".into()),
            },
            "SP_SET_PARA_VALUE" | "SP_SET_GLOBAL_DW_STATUS" | "SP_APPLY_KEEP_PKG" | "SP_SET_ARCH_STATUS" => {
                return Err("Syntax error".into());
            }
            _ => {}
        }
    }
    Ok(Stmt::Other(text.to_owned()))
}

/// `SELECT a, b FROM V$X` on one of the emulated views; None for any
/// other SELECT.
fn select(text: &str) -> Result<Option<Stmt>, String> {
    let upper = text.to_ascii_uppercase();
    let Some(from) = upper.find(" FROM ") else { return Ok(None) };
    let rest: Vec<&str> = upper[from + 6..].split_whitespace().collect();
    let view = match rest.as_slice() {
        ["V$INSTANCE"] => View::Instance,
        ["V$ARCH_STATUS"] => View::ArchStatus,
        ["V$RLOG"] => View::Rlog,
        _ => return Ok(None),
    };
    let cols_text = upper[6..from].trim();
    let cols: Vec<String> =
        if cols_text == "*" { Vec::new() } else { cols_text.split(',').map(|c| c.trim().to_owned()).collect() };
    if cols.iter().any(String::is_empty) {
        return Err("Syntax error".into());
    }
    Ok(Some(Stmt::Select { cols, view }))
}

/// The text between quotes after `keyword`.
fn quoted_after(text: &str, keyword: &str) -> Option<String> {
    let at = text.to_ascii_uppercase().find(keyword)? + keyword.len();
    let rest = &text[at..];
    let start = rest.find('\'')? + 1;
    let len = rest[start..].find('\'')?;
    Some(rest[start..start + len].to_owned())
}

/// Projects view rows (all columns, in `View::columns` order) onto the
/// selected columns; Err names the first unknown column.
pub fn project(view: View, cols: &[String], rows: Vec<Vec<String>>) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let all = view.columns();
    if cols.is_empty() {
        return Ok((all.iter().map(|c| (*c).to_owned()).collect(), rows));
    }
    let mut idx = Vec::new();
    for c in cols {
        idx.push(all.iter().position(|a| a == c).ok_or_else(|| c.clone())?);
    }
    let rows = rows.into_iter().map(|r| idx.iter().map(|&i| r[i].clone()).collect()).collect();
    Ok((cols.to_vec(), rows))
}

/// disql's result: a `LINEID` column, then the columns padded to their
/// widest value, a dashed line, one line per row.
pub fn table(cols: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = cols.iter().map(|c| c.chars().count()).collect();
    for r in rows {
        for (w, v) in widths.iter_mut().zip(r) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |first: &str, vals: &mut dyn Iterator<Item = String>| -> String {
        let mut s = format!("{first:<10}");
        for (v, w) in vals.zip(&widths) {
            s.push(' ');
            s.push_str(&format!("{v:<w$}"));
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line("LINEID", &mut cols.iter().cloned());
    out.push_str(&line("----------", &mut widths.iter().map(|w| "-".repeat(*w))));
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&line(&(i + 1).to_string(), &mut r.iter().cloned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        assert_eq!(parse("alter database open force;"), Ok(Stmt::Open { force: true }));
        assert_eq!(parse("ALTER DATABASE standby"), Ok(Stmt::SetMode(Mode::Standby)));
        assert_eq!(parse("ALTER DATABASE sideways"), Err("Syntax error".into()));
        assert_eq!(
            parse("SP_SET_PARA_VALUE(1, 'ALTER_MODE_STATUS', 1)"),
            Ok(Stmt::SetPara { scope: 1, name: "ALTER_MODE_STATUS".into(), value: "1".into() })
        );
        assert_eq!(parse("call SP_SET_GLOBAL_DW_STATUS(0, 6);"), Ok(Stmt::SetGlobalDwStatus(0, 6)));
        assert_eq!(parse("SP_APPLY_KEEP_PKG()"), Ok(Stmt::ApplyKeepPkg));
        assert_eq!(parse("SP_SET_ARCH_STATUS('INVALID')"), Ok(Stmt::SetArchStatus { valid: false }));
        assert_eq!(
            parse("select mode$, status$ from v$instance"),
            Ok(Stmt::Select { cols: vec!["MODE$".into(), "STATUS$".into()], view: View::Instance })
        );
        assert_eq!(parse("BACKUP DATABASE FULL BACKUPSET '/b/x'"), Ok(Stmt::Backup { dir: "/b/x".into() }));
        assert_eq!(parse("SELECT 1"), Ok(Stmt::Other("SELECT 1".into())));
        assert_eq!(parse("SELECT count(*) FROM t"), Ok(Stmt::Other("SELECT count(*) FROM t".into())));
    }

    #[test]
    fn projection_and_table() {
        let (c, r) =
            project(View::Instance, &["STATUS$".into()], vec![vec!["I".into(), "P".into(), "OPEN".into()]]).unwrap();
        assert_eq!(table(&c, &r), "LINEID     STATUS$\n---------- -------\n1          OPEN\n");
        assert_eq!(project(View::Rlog, &["X".into()], vec![]).unwrap_err(), "X");
    }
}
