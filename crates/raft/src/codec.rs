//! Every stored record and every opaque wire payload is one format byte,
//! a body in that format, and a CRC-32 of both. The format byte says how
//! to read the body ([`Format`]); the checksum catches a record whose bytes
//! changed on disk or on the wire, which a decoder would otherwise read as
//! another valid value; the full-length check catches a body of another
//! type.
//!
//! Compatibility (ARCHITECTURE.md, "Upgrades and compatibility"): a build
//! reads every format listed in [`Format`], and writes the one its
//! cluster's feature level allows ([`Format::for_level`], kept per member
//! in a [`WriteFormat`]), so that a member of the previous release, or a
//! host rolled back to it, reads everything until the last member runs
//! the new build and the leader raises the level.

use haraft_core::FeatureLevel;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// How a record's body is encoded; the record's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Format {
    /// haraft 0.1: bincode 2 (serde, standard configuration) of the types
    /// as they were in 0.1. bincode is not self-describing: a field added
    /// to any type changes the encoding, so reading this format needs the
    /// 0.1 shape of every type that changed since (see
    /// `store::state::ClusterStateV6`). Written only below feature level 1.
    Bincode6 = 6,
    /// CBOR (RFC 8949, by ciborium) of the serde types: structs are maps by
    /// field name, enum variants are named. A field added with
    /// `#[serde(default)]` is read by older builds (they skip it) and
    /// newer ones (they default it); a new enum variant is refused by
    /// older builds, so it is only written once the feature level that
    /// introduces it is in force.
    Cbor7 = 7,
}

impl Format {
    /// The newest format this build writes.
    pub const NEWEST: Format = Format::Cbor7;

    /// The format a member writes while its applied state is at `level`.
    pub fn for_level(level: FeatureLevel) -> Format {
        if level >= FeatureLevel::CBOR_RECORDS { Format::Cbor7 } else { Format::Bincode6 }
    }

    fn from_byte(byte: u8) -> Option<Format> {
        match byte {
            6 => Some(Format::Bincode6),
            7 => Some(Format::Cbor7),
            _ => None,
        }
    }
}

/// The format byte of `bytes`, if it is one this build reads.
pub fn format_of(bytes: &[u8]) -> Option<Format> {
    bytes.first().copied().and_then(Format::from_byte)
}

/// The format this member writes in, shared by its store (which sets it
/// from every applied state), its Raft transport and its admin service.
#[derive(Clone, Debug)]
pub struct WriteFormat(Arc<AtomicU8>);

impl WriteFormat {
    pub fn new(format: Format) -> WriteFormat {
        WriteFormat(Arc::new(AtomicU8::new(format as u8)))
    }

    pub fn get(&self) -> Format {
        Format::from_byte(self.0.load(Ordering::Acquire)).expect("only a Format is ever stored")
    }

    pub fn set(&self, format: Format) {
        self.0.store(format as u8, Ordering::Release);
    }
}

/// The CRC-32 (IEEE) at the end of every record.
const CHECKSUM_BYTES: usize = 4;

/// No single record or message legitimately comes near this; it bounds what
/// a garbled length prefix can make the decoder allocate.
const LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// How deep a CBOR body may nest: haraft's types nest a few levels; this
/// bounds the stack a crafted body can make the decoder use.
const CBOR_DEPTH: usize = 64;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT_BYTES>()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} has format version {found}, this haraft reads versions 6 and 7: {}", version_hint(*.found))]
    Version { what: &'static str, found: u8 },
    #[error("{what} is garbled: {detail}")]
    Garbled { what: &'static str, detail: String },
    #[error("{what} fails its checksum: its bytes changed after it was written")]
    Checksum { what: &'static str },
}

/// What to do about a record of format `found`, which this build cannot read.
pub fn version_hint(found: u8) -> &'static str {
    if found > Format::NEWEST as u8 {
        "it was written by a newer haraft; run that release (or a later one) on this member"
    } else {
        "it was written by a development build before haraft 0.1, whose records no release reads"
    }
}

/// Encodes `value` in the newest format.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(Format::NEWEST, value)
}

/// Encodes `value` in `format`. The caller makes sure the value has the
/// shape that format's readers expect (see [`Format::Bincode6`]).
pub fn encode_as<T: Serialize>(format: Format, value: &T) -> Vec<u8> {
    let mut out = vec![format as u8];
    // Encoding plain serde data into a Vec cannot fail; a failure here is a
    // bug in a type's Serialize impl.
    match format {
        Format::Bincode6 => {
            out.extend(bincode::serde::encode_to_vec(value, bincode_config()).expect("serde data encodes into a Vec"))
        }
        Format::Cbor7 => ciborium::ser::into_writer(value, &mut out).expect("serde data encodes into a Vec"),
    }
    let sum = crc32fast::hash(&out);
    out.extend(sum.to_le_bytes());
    out
}

/// Decodes a record named `what` (used in the error), in any format this
/// build reads, into `T` as it is now: right for every type whose shape did
/// not change since 0.1 (the others decode [`Format::Bincode6`] into their
/// 0.1 shape: [`decode_body`]).
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    let (format, body) = checked_body(what, bytes)?;
    decode_body(what, format, body)
}

/// The format and body of a record whose checksum holds.
pub fn checked_body<'a>(what: &'static str, bytes: &'a [u8]) -> Result<(Format, &'a [u8]), CodecError> {
    let Some((&version, _)) = bytes.split_first() else {
        return Err(CodecError::Empty { what });
    };
    // The version first: a record of an unknown format may have no
    // checksum, and "written by a newer version" is what to say.
    let Some(format) = Format::from_byte(version) else {
        return Err(CodecError::Version { what, found: version });
    };
    if bytes.len() < 1 + CHECKSUM_BYTES {
        return Err(CodecError::Garbled { what, detail: format!("{} bytes is too short for a record", bytes.len()) });
    }
    if bytes.len() > LIMIT_BYTES {
        return Err(CodecError::Garbled {
            what,
            detail: format!("{} bytes is over the {LIMIT_BYTES} limit", bytes.len()),
        });
    }
    let (signed, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let sum = u32::from_le_bytes(sum.try_into().expect("split at 4 bytes from the end"));
    if crc32fast::hash(signed) != sum {
        return Err(CodecError::Checksum { what });
    }
    Ok((format, &signed[1..]))
}

/// Decodes a whole `body` of `format` into `T`.
pub fn decode_body<T: DeserializeOwned>(what: &'static str, format: Format, body: &[u8]) -> Result<T, CodecError> {
    let garbled = |detail: String| CodecError::Garbled { what, detail };
    let (value, left) = match format {
        Format::Bincode6 => {
            let (value, used) =
                bincode::serde::decode_from_slice(body, bincode_config()).map_err(|e| garbled(e.to_string()))?;
            (value, body.len() - used)
        }
        Format::Cbor7 => {
            let mut rest = body;
            let value = ciborium::de::from_reader_with_recursion_limit(&mut rest, CBOR_DEPTH)
                .map_err(|e| garbled(cbor_error(e)))?;
            (value, rest.len())
        }
    };
    if left != 0 {
        return Err(garbled(format!("{left} trailing bytes")));
    }
    Ok(value)
}

/// ciborium's errors in one line, without its Debug noise.
fn cbor_error<E: std::fmt::Debug>(e: ciborium::de::Error<E>) -> String {
    match e {
        ciborium::de::Error::Io(e) => format!("cut short ({e:?})"),
        ciborium::de::Error::Syntax(at) => format!("not CBOR at byte {at}"),
        ciborium::de::Error::Semantic(at, msg) => match at {
            Some(at) => format!("{msg} at byte {at}"),
            None => msg,
        },
        ciborium::de::Error::RecursionLimitExceeded => format!("nested deeper than {CBOR_DEPTH}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haraft_core::{Command, Epoch, NodeId, RenewalSeq};

    const FORMATS: [Format; 2] = [Format::Bincode6, Format::Cbor7];

    #[test]
    fn round_trip() {
        let c = Command::Renew { holder: NodeId(2), epoch: Epoch(7), renewal: RenewalSeq(9), position: None };
        for format in FORMATS {
            assert_eq!(decode::<Command>("command", &encode_as(format, &c)), Ok(c.clone()));
        }
        let c = Command::Audit {
            node: NodeId(3),
            what: "switchover to node2".into(),
            by: "certificate reader (ops@db1)".into(),
            refused: true,
            result: "the read role cannot switch over".into(),
            at_unix_ms: 1_700_000_000_000,
        };
        assert_eq!(decode::<Command>("command", &encode(&c)), Ok(c));
    }

    #[test]
    fn other_version_is_refused() {
        let mut bytes = encode(&Command::Grant { holder: NodeId(1), epoch: Epoch(1), verdicts: vec![], at_unix_ms: 0 });
        for unknown in [0, 5, 8, 255] {
            bytes[0] = unknown;
            let err = decode::<Command>("command", &bytes).unwrap_err();
            assert_eq!(err, CodecError::Version { what: "command", found: unknown });
            assert!(err.to_string().contains(&format!("format version {unknown}")));
        }
    }

    /// A type as the previous release had it, and as the next has it.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Before {
        a: u64,
        kind: Kind,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct After {
        a: u64,
        kind: Kind,
        #[serde(default)]
        added: Vec<String>,
        optional: Option<u32>,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Kind {
        Old { x: u32 },
        New,
    }

    #[test]
    fn in_format_7_an_added_field_is_read_by_both_releases() {
        let before = Before { a: 3, kind: Kind::Old { x: 1 } };
        let after: After = decode("record", &encode(&before)).unwrap();
        assert_eq!(after, After { a: 3, kind: Kind::Old { x: 1 }, added: vec![], optional: None });
        let after = After { a: 4, kind: Kind::Old { x: 2 }, added: vec!["n".into()], optional: Some(9) };
        assert_eq!(decode::<Before>("record", &encode(&after)), Ok(Before { a: 4, kind: Kind::Old { x: 2 } }));
        // In format 6 (bincode) neither holds: why 0.1's shapes are kept.
        assert!(decode::<After>("record", &encode_as(Format::Bincode6, &before)).is_err());
        assert!(decode::<Before>("record", &encode_as(Format::Bincode6, &after)).is_err());
    }

    #[test]
    fn a_variant_the_reader_does_not_know_is_refused_not_misread() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum OldKind {
            Old { x: u32 },
        }
        let err = decode::<OldKind>("record", &encode(&Kind::New)).unwrap_err();
        assert!(matches!(err, CodecError::Garbled { .. }), "{err}");
        assert!(err.to_string().contains("New"), "{err}");
    }

    #[test]
    fn the_write_format_follows_the_feature_level() {
        use haraft_core::FeatureLevel;
        assert_eq!(Format::for_level(FeatureLevel::V0_1), Format::Bincode6);
        assert_eq!(Format::for_level(FeatureLevel::CBOR_RECORDS), Format::Cbor7);
        assert_eq!(Format::for_level(FeatureLevel::SUPPORTED), Format::NEWEST);
        let shared = WriteFormat::new(Format::Bincode6);
        shared.clone().set(Format::Cbor7);
        assert_eq!(shared.get(), Format::Cbor7);
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(matches!(decode::<Command>("command", &[]), Err(CodecError::Empty { .. })));
        for format in FORMATS {
            let v = format as u8;
            assert!(matches!(decode::<Command>("command", &[v, 200]), Err(CodecError::Garbled { .. })));
            assert!(matches!(decode::<Command>("command", &[v, 200, 1, 2, 3]), Err(CodecError::Checksum { .. })));
            // Well signed but not a whole value, or more than one.
            assert!(matches!(
                decode::<Command>("command", &signed_as(format, &[0xa1, 200, 1, 2])),
                Err(CodecError::Garbled { .. })
            ));
            let mut body = encode_as(format, &Epoch(3))[1..].to_vec();
            body.truncate(body.len() - CHECKSUM_BYTES);
            body.push(0);
            assert!(matches!(decode::<Epoch>("epoch", &signed_as(format, &body)), Err(CodecError::Garbled { .. })));
        }
    }

    /// A record of the newest format with a valid checksum around `body`.
    fn signed(body: &[u8]) -> Vec<u8> {
        signed_as(Format::NEWEST, body)
    }

    fn signed_as(format: Format, body: &[u8]) -> Vec<u8> {
        let mut out = vec![format as u8];
        out.extend(body);
        let sum = crc32fast::hash(&out);
        out.extend(sum.to_le_bytes());
        out
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec length of u64::MAX (varint 0xFD + 8 bytes) must fail cleanly.
        let bytes = signed_as(Format::Bincode6, &[0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(decode::<Vec<u64>>("list", &bytes).is_err());
        // CBOR: an array, a text and a byte string of 2^64-1 items.
        for major in [0x9b, 0x7b, 0x5b] {
            let bytes = signed(&[major, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
            assert!(decode::<Vec<u64>>("list", &bytes).is_err());
            assert!(decode::<String>("text", &bytes).is_err());
        }
        // Nesting deeper than any haraft type: refused, no stack overflow.
        let deep = signed(&[0x81; 100_000]);
        assert!(decode::<haraft_core::ClusterState>("state", &deep).is_err());
        assert!(decode::<Command>("command", &deep).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Arbitrary bytes, and arbitrary bodies under a valid version and
        /// checksum (so that bincode itself is fed garbage), never panic
        /// the decoder of any stored or transported type.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode::<Command>("command", &bytes);
            let _ = decode::<crate::types::Entry>("entry", &bytes);
            let _ = decode::<crate::types::Vote>("vote", &bytes);
            let _ = decode::<haraft_core::ClusterState>("state", &bytes);
            for format in FORMATS {
                let body = signed_as(format, &bytes);
                let _ = decode::<Command>("command", &body);
                let _ = decode::<crate::types::Entry>("entry", &body);
                let _ = decode::<Option<crate::types::LogId>>("log id", &body);
                let _ = decode::<haraft_core::ClusterState>("state", &body);
                let _ = decode::<haraft_core::DbStatus>("database status", &body);
            }
        }
    }

    #[test]
    fn every_single_flipped_bit_is_detected() {
        let c = Command::Renew { holder: NodeId(2), epoch: Epoch(7), renewal: RenewalSeq(9), position: None };
        for format in FORMATS {
            let bytes = encode_as(format, &c);
            for bit in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                assert!(decode::<Command>("command", &damaged).is_err(), "bit {bit} flipped went unnoticed");
            }
        }
    }
}
