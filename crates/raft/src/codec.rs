//! Every stored record and every opaque wire payload is one format-version
//! byte, bincode (2.x, serde), and a CRC-32 of both. bincode happily decodes
//! bytes of another type, so the version byte and the full-length check are
//! what catch a record from another haraft version; the checksum catches a
//! record whose bytes changed on disk or on the wire, which bincode would
//! otherwise read as another valid value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bump when any stored or transported type changes its encoding.
pub const FORMAT_VERSION: u8 = 6;

/// The CRC-32 (IEEE) at the end of every record.
const CHECKSUM_BYTES: usize = 4;

/// No single record or message legitimately comes near this; it bounds what
/// a garbled length prefix can make the decoder allocate.
const LIMIT_BYTES: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT_BYTES>()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error(
        "{what} has format version {found}, this haraft reads version {FORMAT_VERSION}: it was written by an incompatible haraft version"
    )]
    Version { what: &'static str, found: u8 },
    #[error("{what} is garbled: {detail}")]
    Garbled { what: &'static str, detail: String },
    #[error("{what} fails its checksum: its bytes changed after it was written")]
    Checksum { what: &'static str },
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Encoding plain serde data into a Vec cannot fail; a failure here is a
    // bug in a type's Serialize impl.
    out.extend(bincode::serde::encode_to_vec(value, config()).expect("serde data encodes into a Vec"));
    let sum = crc32fast::hash(&out);
    out.extend(sum.to_le_bytes());
    out
}

/// Decodes a record named `what` (used in the error).
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    let Some((&version, _)) = bytes.split_first() else {
        return Err(CodecError::Empty { what });
    };
    // The version first: a record of another haraft version may have no
    // checksum, and "written by an incompatible version" is what to say.
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { what, found: version });
    }
    if bytes.len() < 1 + CHECKSUM_BYTES {
        return Err(CodecError::Garbled { what, detail: format!("{} bytes is too short for a record", bytes.len()) });
    }
    let (signed, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let sum = u32::from_le_bytes(sum.try_into().expect("split at 4 bytes from the end"));
    if crc32fast::hash(signed) != sum {
        return Err(CodecError::Checksum { what });
    }
    let body = &signed[1..];
    let (value, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Garbled { what, detail: e.to_string() })?;
    if used != body.len() {
        return Err(CodecError::Garbled { what, detail: format!("{} trailing bytes", body.len() - used) });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use haraft_core::{Command, Epoch, NodeId, RenewalSeq};

    #[test]
    fn round_trip() {
        let c = Command::Renew { holder: NodeId(2), epoch: Epoch(7), renewal: RenewalSeq(9), position: None };
        assert_eq!(decode::<Command>("command", &encode(&c)), Ok(c));
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
        bytes[0] = 7;
        let err = decode::<Command>("command", &bytes).unwrap_err();
        assert_eq!(err, CodecError::Version { what: "command", found: 7 });
        assert!(err.to_string().contains("format version 7"));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(matches!(decode::<Command>("command", &[]), Err(CodecError::Empty { .. })));
        assert!(matches!(decode::<Command>("command", &[FORMAT_VERSION, 200]), Err(CodecError::Garbled { .. })));
        assert!(matches!(
            decode::<Command>("command", &[FORMAT_VERSION, 200, 1, 2, 3]),
            Err(CodecError::Checksum { .. })
        ));
        // Well signed but not a whole value, or more than one.
        assert!(matches!(decode::<Command>("command", &signed(&[200, 1, 2])), Err(CodecError::Garbled { .. })));
        let mut body = encode(&Epoch(3))[1..].to_vec();
        body.truncate(body.len() - CHECKSUM_BYTES);
        body.push(0);
        assert!(matches!(decode::<Epoch>("epoch", &signed(&body)), Err(CodecError::Garbled { .. })));
    }

    /// A record with the current version and a valid checksum around `body`.
    fn signed(body: &[u8]) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        out.extend(body);
        let sum = crc32fast::hash(&out);
        out.extend(sum.to_le_bytes());
        out
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec length of u64::MAX (varint 0xFD + 8 bytes) must fail cleanly.
        let bytes = signed(&[0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(decode::<Vec<u64>>("list", &bytes).is_err());
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
            let body = signed(&bytes);
            let _ = decode::<Command>("command", &body);
            let _ = decode::<crate::types::Entry>("entry", &body);
            let _ = decode::<Option<crate::types::LogId>>("log id", &body);
            let _ = decode::<haraft_core::ClusterState>("state", &body);
        }
    }

    #[test]
    fn every_single_flipped_bit_is_detected() {
        let c = Command::Renew { holder: NodeId(2), epoch: Epoch(7), renewal: RenewalSeq(9), position: None };
        let bytes = encode(&c);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode::<Command>("command", &damaged).is_err(), "bit {bit} flipped went unnoticed");
        }
    }
}
