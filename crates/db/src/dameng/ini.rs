//! DM's configuration files as haraft writes them, rendered and read back
//! purely: `dmmal.ini` (the MAL system: every instance haraft names),
//! `dmarch.ini` (archives: REALTIME ones name instances redo goes to or
//! comes from, one LOCAL) and keys of `dm.ini`. Keys are case-insensitive
//! and `#` starts a comment, as in DM's public deployment examples.

use crate::Upstream;
use std::path::Path;

/// `MAL_CHECK_INTERVAL` and `MAL_CONN_FAIL_INTERVAL` in seconds: a dead
/// peer is noticed in 5 s, the values of DM's public deployment examples.
const MAL_INTERVAL_S: u32 = 5;

/// The MAL port of an instance whose client port is `port`: by haraft's
/// convention port + 1 (as openGauss's HA port), its watcher port + 2.
/// haraft's `Upstream` carries only the client port.
pub fn mal_port(port: u16) -> u16 {
    port.saturating_add(1)
}

pub fn mal_dw_port(port: u16) -> u16 {
    port.saturating_add(2)
}

/// `dmmal.ini` naming this instance first, then every other one (peers
/// and the upstream, each once, by name).
pub fn dmmal(me: &Upstream, others: &[&Upstream]) -> String {
    let mut text = format!(
        "# Written by haraft before every start; edits are overwritten.\n\
         MAL_CHECK_INTERVAL = {MAL_INTERVAL_S}\nMAL_CONN_FAIL_INTERVAL = {MAL_INTERVAL_S}\n"
    );
    let mut seen: Vec<&str> = Vec::new();
    for u in std::iter::once(me).chain(others.iter().copied()) {
        if seen.contains(&u.name.as_str()) {
            continue;
        }
        seen.push(&u.name);
        text.push_str(&format!(
            "\n[MAL_INST{}]\nMAL_INST_NAME = {}\nMAL_HOST = {}\nMAL_PORT = {}\nMAL_INST_HOST = {}\n\
             MAL_INST_PORT = {}\nMAL_DW_PORT = {}\n",
            seen.len(),
            u.name,
            u.host,
            mal_port(u.port),
            u.host,
            u.port,
            mal_dw_port(u.port)
        ));
    }
    text
}

/// `dmarch.ini`: one REALTIME archive per name in `realtime` (a primary:
/// every peer; a standby: its upstream only), and the LOCAL archive in
/// `local_dir`.
pub fn dmarch(realtime: &[&str], local_dir: &Path) -> String {
    let mut text = String::from("# Written by haraft before every start; edits are overwritten.\n");
    for (i, name) in realtime.iter().enumerate() {
        text.push_str(&format!("\n[ARCHIVE_REALTIME{}]\nARCH_TYPE = REALTIME\nARCH_DEST = {name}\n", i + 1));
    }
    // 128 MB files, 1 GB kept: the values of DM's public examples.
    text.push_str(&format!(
        "\n[ARCHIVE_LOCAL1]\nARCH_TYPE = LOCAL\nARCH_DEST = {}\nARCH_FILE_SIZE = 128\nARCH_SPACE_LIMIT = 1024\n",
        local_dir.display()
    ));
    text
}

/// `(group, key, value)` of every `KEY = value` line, keys upper case;
/// the group is "" before the first `[NAME]`.
fn entries(text: &str) -> Vec<(String, String, String)> {
    let mut group = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            group = name.trim().to_ascii_uppercase();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((group.clone(), k.trim().to_ascii_uppercase(), v.trim().to_string()));
        }
    }
    out
}

/// The upstream a standby's files name: its only REALTIME archive's
/// destination, at the host and client port `dmmal.ini` gives it.
pub fn upstream(dmmal: &str, dmarch: &str) -> Option<Upstream> {
    let arch = entries(dmarch);
    let dests: Vec<&str> = arch
        .iter()
        .filter(|(g, k, _)| g.starts_with("ARCHIVE_REALTIME") && k == "ARCH_DEST")
        .map(|(_, _, v)| v.as_str())
        .collect();
    let [dest] = dests.as_slice() else { return None };
    let mal = entries(dmmal);
    let group = mal.iter().find(|(_, k, v)| k == "MAL_INST_NAME" && v == dest).map(|(g, _, _)| g.clone())?;
    let key = |name: &str| mal.iter().find(|(g, k, _)| *g == group && k == name).map(|(_, _, v)| v.clone());
    Some(Upstream { name: dest.to_string(), host: key("MAL_INST_HOST")?, port: key("MAL_INST_PORT")?.parse().ok()? })
}

/// `dm.ini` with `KEY = value` set: the key's line replaced, or appended.
pub fn set_key(text: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    let mut found = false;
    for line in text.lines() {
        let k = line.split('#').next().unwrap_or("").split('=').next().unwrap_or("").trim();
        if !found && line.contains('=') && k.eq_ignore_ascii_case(key) {
            out.push_str(&format!("{key} = {value}\n"));
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, port: u16) -> Upstream {
        Upstream { name: name.into(), host: "10.0.0.1".into(), port }
    }

    #[test]
    fn a_standby_names_its_upstream_and_reads_it_back() {
        let (me, n1, n3) = (up("node2", 5236), up("node1", 6236), up("node3", 7236));
        let mal = dmmal(&me, &[&n1, &n3, &n1]);
        assert_eq!(mal.matches("MAL_INST_NAME").count(), 3, "{mal}");
        assert!(mal.contains("[MAL_INST2]\nMAL_INST_NAME = node1\nMAL_HOST = 10.0.0.1\nMAL_PORT = 6237\n"), "{mal}");
        let arch = dmarch(&["node1"], Path::new("/d/arch"));
        assert_eq!(upstream(&mal, &arch), Some(n1));
        // A primary's files name every peer: no single upstream.
        assert_eq!(upstream(&mal, &dmarch(&["node1", "node3"], Path::new("/d/arch"))), None);
        assert_eq!(upstream(&mal, &dmarch(&[], Path::new("/d/arch"))), None);
        assert_eq!(upstream(&mal, &dmarch(&["nobody"], Path::new("/d/arch"))), None);
    }

    #[test]
    fn dm_ini_keys_are_set_once() {
        let text = "INSTANCE_NAME = a\nalter_mode_status = 0 # watcher\nPORT_NUM = 1\n";
        let set = set_key(text, "ALTER_MODE_STATUS", "1");
        assert_eq!(set, "INSTANCE_NAME = a\nALTER_MODE_STATUS = 1\nPORT_NUM = 1\n");
        assert_eq!(set_key(&set, "MAL_INI", "1"), format!("{set}MAL_INI = 1\n"));
    }
}
