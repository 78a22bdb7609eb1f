//! disql's output, read purely: result tables and DM's error lines.
//!
//! The layout is DM8's English one (as dm-emul prints it, from public
//! posts): a `LINEID` header with the column names, a dashed line, one
//! line per row numbered from 1, then a blank line and `used time: ...`.
//! Errors are one line `[-CODE]:message` on stdout (disql exits 1).

/// One statement's result: column names (upper case) and rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The value of `column` in row `row`, if both exist.
    pub fn value(&self, row: usize, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c.eq_ignore_ascii_case(column))?;
        self.rows.get(row)?.get(i).map(String::as_str)
    }

    /// An integer value (DM's LSNs are integers).
    pub fn number(&self, row: usize, column: &str) -> Option<u64> {
        self.value(row, column)?.trim().parse().ok()
    }
}

/// A DM error line, `[-70028]:Create SOCKET connection failure.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmError {
    pub code: i32,
    pub message: String,
}

/// DM's code for a failed client connection (the server is not up, or
/// does not answer yet).
pub const CONNECT_FAILED: i32 = -70028;

/// The first error line in disql's output.
pub fn error(text: &str) -> Option<DmError> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix('[')?;
        let (code, message) = rest.split_once(']')?;
        let code: i32 = code.parse().ok().filter(|c| *c < 0)?;
        Some(DmError { code, message: message.trim_start_matches(':').trim().to_string() })
    })
}

/// The result table of disql's output. Values are separated by blanks;
/// the last column takes the rest of its line (so it alone may hold
/// blanks: queries put a path last). A NULL prints as nothing and would
/// shift the values after it: the adapter's queries select none.
pub fn parse_table(text: &str) -> Result<Table, String> {
    let mut lines = text.lines().skip_while(|l| !l.trim_start().starts_with("LINEID"));
    let header = lines.next().ok_or_else(|| format!("no result table in disql's output: {:?}", tail(text)))?;
    let columns: Vec<String> = header.split_whitespace().skip(1).map(str::to_ascii_uppercase).collect();
    if columns.is_empty() {
        return Err(format!("a result table without columns: {header:?}"));
    }
    match lines.next() {
        Some(l) if l.trim_start().starts_with("---") => {}
        other => return Err(format!("no dashed line under the header, found {other:?}")),
    }
    let mut rows = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with("used time") {
            break;
        }
        rows.push(split_row(line, columns.len()).ok_or_else(|| format!("a row that is not numbered: {line:?}"))?);
    }
    Ok(Table { columns, rows })
}

/// `n` values after the line number; the last takes the rest.
fn split_row(line: &str, n: usize) -> Option<Vec<String>> {
    let (number, mut rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    number.parse::<u64>().ok()?;
    let mut values = Vec::with_capacity(n);
    for _ in 1..n {
        rest = rest.trim_start();
        let (value, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        values.push(value.to_string());
        rest = after;
    }
    values.push(rest.trim().to_string());
    Some(values)
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_table() {
        let out = "LINEID     INSTANCE_NAME MODE$   STATUS$\n---------- ------------- ------- -------\n\
                   1          node1         PRIMARY OPEN\n\nused time: 0.412(ms). Execute id is 0.\n";
        let t = parse_table(out).unwrap();
        assert_eq!(t.columns, ["INSTANCE_NAME", "MODE$", "STATUS$"]);
        assert_eq!(t.value(0, "mode$"), Some("PRIMARY"));
        assert_eq!(t.value(0, "STATUS$"), Some("OPEN"));
        assert_eq!(t.value(1, "STATUS$"), None);
    }

    #[test]
    fn numbers_many_rows_and_a_last_column_with_blanks() {
        let out = "LINEID     ARCH_TYPE ARCH_STATUS ARCH_DEST\n---------- --------- ----------- ---------\n\
                   1          REALTIME  VALID       node2\n2          LOCAL     VALID       /srv/dm arch/x\n";
        let t = parse_table(out).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.value(1, "ARCH_DEST"), Some("/srv/dm arch/x"));
        let rlog = "LINEID     CUR_LSN\n---------- -------\n1          83886080\n";
        assert_eq!(parse_table(rlog).unwrap().number(0, "CUR_LSN"), Some(83_886_080));
        let empty = parse_table("LINEID     ID\n---------- --\n\nused time: 1(ms)\n").unwrap();
        assert!(empty.rows.is_empty());
    }

    #[test]
    fn errors_and_garbage() {
        assert_eq!(
            error("[-70028]:Create SOCKET connection failure.\n"),
            Some(DmError { code: CONNECT_FAILED, message: "Create SOCKET connection failure.".into() })
        );
        assert_eq!(error("[-2501]:Invalid username or password").map(|e| e.code), Some(-2501));
        assert_eq!(error("LINEID x\n[1] not an error"), None);
        assert!(parse_table("executed successfully\n").is_err());
        assert!(parse_table("LINEID     A\nno dashes\n").is_err());
        assert!(parse_table("LINEID     A\n---------- -\nx          1\n").is_err());
    }
}
