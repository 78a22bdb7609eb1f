//! DM's INI files as the adapter writes them: `dm.ini` (`KEY = value`
//! lines, `#` comments), `dmmal.ini` (`[MAL_INSTn]` groups) and
//! `dmarch.ini` (`[ARCHIVE_...]` groups), and the emulation's own state.
//! Keys are case-insensitive (stored upper case); a `#` starts a comment
//! anywhere on a line, as in the public deployment examples.

use std::collections::BTreeMap;
use std::path::Path;

/// One `[NAME]` group (the unnamed first group is "") and its keys.
#[derive(Clone, Debug, Default)]
pub struct Group {
    pub name: String,
    pub keys: BTreeMap<String, String>,
}

impl Group {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(&key.to_ascii_uppercase()).map(String::as_str)
    }
}

pub fn parse(text: &str) -> Vec<Group> {
    let mut groups = vec![Group::default()];
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            groups.push(Group { name: name.trim().to_ascii_uppercase(), keys: BTreeMap::new() });
        } else if let Some((k, v)) = line.split_once('=') {
            let last = groups.last_mut().expect("at least the unnamed group");
            last.keys.insert(k.trim().to_ascii_uppercase(), v.trim().to_owned());
        }
    }
    groups
}

pub fn read(path: &Path) -> std::io::Result<Vec<Group>> {
    Ok(parse(&std::fs::read_to_string(path)?))
}

/// The unnamed group of `dm.ini` (it has no groups).
pub fn read_flat(path: &Path) -> std::io::Result<Group> {
    let mut all = Group::default();
    for g in read(path)? {
        all.keys.extend(g.keys);
    }
    Ok(all)
}

/// Sets `KEY = value` in a flat INI file, replacing the key's line or
/// appending one (what DM's SP_SET_PARA_VALUE with scope 1 or 2 does).
pub fn set_key(path: &Path, key: &str, value: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut out = String::new();
    let mut found = false;
    for line in text.lines() {
        let k = line.split('#').next().unwrap_or("").split('=').next().unwrap_or("").trim();
        if line.contains('=') && k.eq_ignore_ascii_case(key) && !found {
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
    let tmp = path.with_extension("ini.tmp");
    std::fs::write(&tmp, out)?;
    std::fs::rename(&tmp, path)
}

/// One instance of `dmmal.ini`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalInst {
    pub name: String,
    pub inst_host: String,
    pub inst_port: u16,
}

pub fn mal_insts(inst: &Path) -> Vec<MalInst> {
    read(&inst.join("dmmal.ini"))
        .unwrap_or_default()
        .into_iter()
        .filter(|g| g.name.starts_with("MAL_INST"))
        .filter_map(|g| {
            Some(MalInst {
                name: g.get("MAL_INST_NAME")?.to_owned(),
                inst_host: g.get("MAL_INST_HOST")?.to_owned(),
                inst_port: g.get("MAL_INST_PORT")?.parse().ok()?,
            })
        })
        .collect()
}

/// One archive of `dmarch.ini`: (ARCH_TYPE, ARCH_DEST), in file order.
pub fn archives(inst: &Path) -> Vec<(String, String)> {
    read(&inst.join("dmarch.ini"))
        .unwrap_or_default()
        .into_iter()
        .filter(|g| g.name.starts_with("ARCHIVE_"))
        .filter_map(|g| Some((g.get("ARCH_TYPE")?.to_ascii_uppercase(), g.get("ARCH_DEST")?.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keys_and_comments() {
        let g = parse("A = 1 # c\n[mal_inst1]\nMAL_INST_NAME = X\nmal_inst_port=5\n");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].get("a"), Some("1"));
        assert_eq!(g[1].name, "MAL_INST1");
        assert_eq!(g[1].get("MAL_INST_PORT"), Some("5"));
    }
}
