//! The member's identity record, `data_dir/haraft.identity`: which cluster
//! and member the Raft store under `data_dir/raft` belongs to, the store's
//! random id, and when it was created. Written once, atomically (temp file,
//! fsync, rename, fsync of the directory), before the member ever takes
//! part in Raft; read at every start.
//!
//! It lives at the root of `data_dir`, outside the store's directory, so
//! that deleting `data_dir/raft` (the commonest "cleanup") reads as a member
//! that lost its Raft state, never as a new member.
//!
//! The format is text an operator can read, with a checksum line so that a
//! hand edit or a damaged byte is refused rather than believed.

use std::fmt;
use std::io::Write;
use std::path::Path;

/// The identity file's own format number (not the codec's).
const FORMAT: u32 = 1;

/// A store's random id: 128 bits, shown as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreId(pub u128);

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster: String,
    pub node: u64,
    pub store: StoreId,
    /// Wall-clock time of creation, for the operator only (never compared).
    pub created_unix_ms: u64,
}

impl Identity {
    /// The file's text: comment, fields, and a CRC-32 of the field lines.
    pub fn render(&self) -> String {
        let fields = self.fields();
        format!(
            "# haraft member identity: ties data_dir/raft to this member. Written once;\n\
             # never edit it or copy it to another member (README: \"A member's Raft store was damaged\").\n\
             {fields}checksum = {:08x}\n",
            crc32fast::hash(fields.as_bytes())
        )
    }

    fn fields(&self) -> String {
        format!(
            "format = {FORMAT}\ncluster = {}\nnode = {}\nstore = {}\ncreated_unix_ms = {}\n",
            self.cluster, self.node, self.store, self.created_unix_ms
        )
    }

    /// Parses the file's text; the error says what is wrong in one line.
    pub fn parse(text: &str) -> Result<Identity, String> {
        let mut fields = String::new();
        let (mut format, mut cluster, mut node, mut store, mut created, mut checksum) =
            (None, None, None, None, None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(" = ") else {
                return Err(format!("line {} is not `key = value`", n + 1));
            };
            if checksum.is_some() {
                return Err(format!("line {}: nothing may follow the checksum", n + 1));
            }
            let slot = match key {
                "format" => &mut format,
                "cluster" => &mut cluster,
                "node" => &mut node,
                "store" => &mut store,
                "created_unix_ms" => &mut created,
                "checksum" => &mut checksum,
                other => return Err(format!("line {}: unknown field {other:?}", n + 1)),
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(format!("line {}: {key} given twice", n + 1));
            }
            if key != "checksum" {
                fields.push_str(line);
                fields.push('\n');
            }
        }
        let need = |v: Option<String>, key: &str| v.ok_or_else(|| format!("no {key} line"));
        let checksum = need(checksum, "checksum")?;
        if u32::from_str_radix(&checksum, 16).ok() != Some(crc32fast::hash(fields.as_bytes())) {
            return Err("it fails its checksum: it was edited or damaged".into());
        }
        let number = |v: String, key: &str| v.parse::<u64>().map_err(|_| format!("{key} {v:?} is not a number"));
        let format = number(need(format, "format")?, "format")?;
        if format != u64::from(FORMAT) {
            return Err(format!(
                "format {format}, this haraft reads format {FORMAT}: written by another haraft version"
            ));
        }
        let store = need(store, "store")?;
        let store = (store.len() == 32)
            .then(|| u128::from_str_radix(&store, 16).ok())
            .flatten()
            .ok_or_else(|| format!("store {store:?} is not 32 hex digits"))?;
        let cluster = need(cluster, "cluster")?;
        if cluster.is_empty() {
            return Err("the cluster name is empty".into());
        }
        Ok(Identity {
            cluster,
            node: number(need(node, "node")?, "node")?,
            store: StoreId(store),
            created_unix_ms: number(need(created, "created_unix_ms")?, "created_unix_ms")?,
        })
    }

    /// Writes the record to `path` atomically and durably.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Identity {
        Identity { cluster: "prod-eu".into(), node: 3, store: StoreId(0xabc), created_unix_ms: 1_764_000_000_000 }
    }

    #[test]
    fn round_trips() {
        assert_eq!(Identity::parse(&sample().render()), Ok(sample()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haraft.identity");
        sample().write(&path).unwrap();
        assert_eq!(Identity::parse(&std::fs::read_to_string(&path).unwrap()), Ok(sample()));
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn edits_and_damage_are_refused_with_a_reason() {
        let text = sample().render();
        let check = |text: String, want: &str| {
            let err = Identity::parse(&text).unwrap_err();
            assert!(err.contains(want), "expected {want:?} in {err:?}");
        };
        check(text.replace("node = 3", "node = 2"), "checksum");
        check(text.replace("checksum", "chksum"), "unknown field");
        check(text.lines().filter(|l| !l.starts_with("checksum")).collect::<Vec<_>>().join("\n"), "no checksum");
        check(format!("{text}node = 4\n"), "nothing may follow");
        check(text.replace("store = ", "junk\nstore = "), "not `key = value`");
        check(String::new(), "no checksum");
    }

    #[test]
    fn every_flipped_bit_of_a_field_is_detected() {
        let text = sample().render();
        let start = text.find("format").unwrap();
        for i in start..text.len() {
            for bit in 0..8 {
                let mut bytes = text.as_bytes().to_vec();
                bytes[i] ^= 1 << bit;
                if let Ok(t) = String::from_utf8(bytes) {
                    // A flip that only changes a value's case or trailing
                    // space may still parse; it must then parse to the same.
                    if let Ok(id) = Identity::parse(&t) {
                        assert_eq!(id, sample(), "byte {i} bit {bit} changed the identity unnoticed");
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = Identity::parse(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Identity::parse(&String::from_utf8_lossy(&bytes));
        }
    }
}
