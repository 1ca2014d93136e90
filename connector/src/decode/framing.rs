//! Framing: how a record says which schema wrote it, read from its bytes and headers alone.
//!
//! | form | bytes | schema |
//! |---|---|---|
//! | Confluent prefix | `0x00`, 4-byte big-endian schema id, payload | registry, by id |
//! | Confluent header | header `__value_schema_id` = `0x01` + 16-byte GUID (or `0x00` + id), payload unprefixed | registry, by GUID (or id) |
//! | Avro single-object | `0xC3 0x01`, 8-byte little-endian CRC-64-AVRO fingerprint, Avro datum | local, by fingerprint |
//! | raw Avro | Avro datum | the local Avro schema |
//! | plain JSON | JSON text | the local JSON Schema, if any |
//!
//! Raw Avro has no marker, so it is never guessed: it needs `format = "avro"`.

use std::fmt;

use super::{DecodeError, WireFormat};

/// The header in which current Confluent serializers can carry the value's schema id.
pub const VALUE_SCHEMA_ID_HEADER: &str = "__value_schema_id";

/// First byte of a Confluent prefix (and of an id-form schema-id header).
const CONFLUENT_MAGIC_ID: u8 = 0;
/// First byte of a GUID-form schema-id header.
const CONFLUENT_MAGIC_GUID: u8 = 1;
/// Magic byte plus the 4-byte schema id.
const CONFLUENT_PREFIX_LEN: usize = 5;
/// The two-byte marker of Avro single-object encoding.
const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
/// Marker plus the 8-byte fingerprint.
const SINGLE_OBJECT_HEADER_LEN: usize = 10;

/// How a registry names a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKey {
    /// The registry's integer id (`GET /schemas/ids/{id}`).
    Id(u32),
    /// The registry's GUID (`GET /schemas/guids/{guid}`).
    Guid(uuid::Uuid),
}

impl fmt::Display for SchemaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaKey::Id(id) => write!(f, "schema id {id}"),
            SchemaKey::Guid(guid) => write!(f, "schema GUID {guid}"),
        }
    }
}

/// A record value with its framing taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// JSON text, no schema named.
    Json(&'a [u8]),
    /// A payload written with a registry schema.
    Registry {
        /// Which schema.
        key: SchemaKey,
        /// The payload after the prefix (or all of it, with the header form).
        body: &'a [u8],
    },
    /// An Avro datum written with the local Avro schema.
    RawAvro(&'a [u8]),
    /// An Avro datum in single-object encoding.
    SingleObject {
        /// The writer schema's CRC-64-AVRO (Rabin) fingerprint, as the 8 bytes on the wire.
        fingerprint: [u8; 8],
        /// The datum.
        body: &'a [u8],
    },
}

/// Takes a record apart: `payload` is its value, `schema_header` the value of its
/// [`VALUE_SCHEMA_ID_HEADER`] header, if present.
pub fn parse<'a>(
    format: WireFormat,
    payload: Option<&'a [u8]>,
    schema_header: Option<&[u8]>,
) -> Result<Envelope<'a>, DecodeError> {
    let payload = payload.unwrap_or_default();
    let Some(&first_byte) = payload.first() else {
        return Err(DecodeError::EmptyValue);
    };
    let registry_framed = |payload: &'a [u8]| -> Result<Envelope<'a>, DecodeError> {
        if let Some(header) = schema_header {
            return Ok(Envelope::Registry {
                key: parse_schema_id_header(header)?,
                body: payload,
            });
        }
        parse_confluent_prefix(payload)
    };
    match format {
        WireFormat::Json => Ok(Envelope::Json(payload)),
        WireFormat::Avro => Ok(Envelope::RawAvro(payload)),
        WireFormat::AvroSingleObject => parse_single_object(payload),
        WireFormat::Confluent => {
            if schema_header.is_none() && first_byte != CONFLUENT_MAGIC_ID {
                return Err(DecodeError::NotConfluentFramed { first_byte });
            }
            registry_framed(payload)
        }
        WireFormat::Auto => {
            if schema_header.is_some() || first_byte == CONFLUENT_MAGIC_ID {
                registry_framed(payload)
            } else if payload.starts_with(&SINGLE_OBJECT_MARKER) {
                parse_single_object(payload)
            } else {
                Ok(Envelope::Json(payload))
            }
        }
    }
}

fn parse_confluent_prefix(payload: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    match (
        payload.get(1..CONFLUENT_PREFIX_LEN),
        payload.get(CONFLUENT_PREFIX_LEN..),
    ) {
        (Some(&[a, b, c, d]), Some(body)) => Ok(Envelope::Registry {
            key: SchemaKey::Id(u32::from_be_bytes([a, b, c, d])),
            body,
        }),
        _ => Err(DecodeError::TruncatedFrame {
            length: payload.len(),
        }),
    }
}

fn parse_single_object(payload: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    if !payload.starts_with(&SINGLE_OBJECT_MARKER) {
        return Err(DecodeError::NotSingleObject {
            first_bytes: payload.iter().take(2).copied().collect(),
        });
    }
    let fingerprint = payload
        .get(2..SINGLE_OBJECT_HEADER_LEN)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .ok_or(DecodeError::TruncatedFrame {
            length: payload.len(),
        })?;
    Ok(Envelope::SingleObject {
        fingerprint,
        body: &payload[SINGLE_OBJECT_HEADER_LEN..],
    })
}

/// Reads a `__value_schema_id` header: `0x01` + 16-byte GUID, or `0x00` + 4-byte id. Protobuf
/// message indexes may follow; they are left to the schema type check, which refuses Protobuf.
fn parse_schema_id_header(header: &[u8]) -> Result<SchemaKey, DecodeError> {
    match header {
        [CONFLUENT_MAGIC_GUID, rest @ ..] if rest.len() >= 16 => {
            let mut guid = [0u8; 16];
            guid.copy_from_slice(&rest[..16]);
            Ok(SchemaKey::Guid(uuid::Uuid::from_bytes(guid)))
        }
        [CONFLUENT_MAGIC_ID, a, b, c, d, ..] => {
            Ok(SchemaKey::Id(u32::from_be_bytes([*a, *b, *c, *d])))
        }
        _ => Err(DecodeError::InvalidSchemaIdHeader {
            length: header.len(),
            first_byte: header.first().copied(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GUID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ];

    fn guid_header() -> Vec<u8> {
        let mut header = vec![1];
        header.extend_from_slice(&GUID);
        header
    }

    #[test]
    fn confluent_prefix_is_big_endian() {
        let payload = [0, 0, 0, 1, 2, b'{', b'}'];
        assert_eq!(
            parse(WireFormat::Auto, Some(&payload), None).unwrap(),
            Envelope::Registry {
                key: SchemaKey::Id(258),
                body: b"{}"
            }
        );
        assert_eq!(
            parse(WireFormat::Confluent, Some(&payload), None).unwrap(),
            parse(WireFormat::Auto, Some(&payload), None).unwrap()
        );
    }

    #[test]
    fn header_form_names_the_schema_by_guid_and_leaves_the_payload_whole() {
        let payload = b"\x0cgen-7";
        let envelope = parse(WireFormat::Auto, Some(payload), Some(&guid_header())).unwrap();
        assert_eq!(
            envelope,
            Envelope::Registry {
                key: SchemaKey::Guid(uuid::Uuid::from_bytes(GUID)),
                body: payload
            }
        );
        // A payload starting with 0x00 is not a prefix when the header names the schema.
        let envelope = parse(
            WireFormat::Confluent,
            Some(&[0, 1, 2]),
            Some(&[0, 0, 0, 0, 9]),
        );
        assert_eq!(
            envelope.unwrap(),
            Envelope::Registry {
                key: SchemaKey::Id(9),
                body: &[0, 1, 2]
            }
        );
    }

    #[test]
    fn single_object_fingerprint_is_kept_as_wire_bytes() {
        let mut payload = vec![0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8];
        payload.extend_from_slice(b"datum");
        for format in [WireFormat::Auto, WireFormat::AvroSingleObject] {
            assert_eq!(
                parse(format, Some(&payload), None).unwrap(),
                Envelope::SingleObject {
                    fingerprint: [1, 2, 3, 4, 5, 6, 7, 8],
                    body: b"datum"
                }
            );
        }
    }

    #[test]
    fn plain_json_and_raw_avro() {
        assert_eq!(
            parse(WireFormat::Auto, Some(b"{}"), None).unwrap(),
            Envelope::Json(b"{}")
        );
        assert_eq!(
            parse(WireFormat::Json, Some(&[0, 1]), None).unwrap(),
            Envelope::Json(&[0, 1])
        );
        // Raw Avro may start with any byte, 0x00 and 0xC3 included.
        assert_eq!(
            parse(WireFormat::Avro, Some(&[0, 1]), None).unwrap(),
            Envelope::RawAvro(&[0, 1])
        );
    }

    /// Format, payload, schema-id header, expected reason.
    type Case = (WireFormat, Vec<u8>, Option<Vec<u8>>, &'static str);

    #[test]
    fn malformed_framing_is_rejected_with_a_reason() {
        let cases: Vec<Case> = vec![
            (WireFormat::Auto, vec![], None, "EmptyValue"),
            (WireFormat::Auto, vec![0, 0, 1], None, "TruncatedFrame"),
            (
                WireFormat::Auto,
                vec![0xC3, 0x01, 1],
                None,
                "TruncatedFrame",
            ),
            (
                WireFormat::Confluent,
                b"{}".to_vec(),
                None,
                "NotConfluentFramed",
            ),
            (
                WireFormat::AvroSingleObject,
                b"{}".to_vec(),
                None,
                "NotSingleObject",
            ),
            (
                WireFormat::Auto,
                b"{}".to_vec(),
                Some(vec![2, 0]),
                "InvalidSchemaIdHeader",
            ),
            (
                WireFormat::Auto,
                b"{}".to_vec(),
                Some(vec![1, 0, 0]),
                "InvalidSchemaIdHeader",
            ),
            (
                WireFormat::Auto,
                b"{}".to_vec(),
                Some(vec![]),
                "InvalidSchemaIdHeader",
            ),
        ];
        for (format, payload, header, reason) in cases {
            let error = parse(format, Some(&payload), header.as_deref()).unwrap_err();
            assert_eq!(error.rejection().reason, reason, "{payload:?} {header:?}");
            assert!(!error.to_string().is_empty());
        }
        assert!(matches!(
            parse(WireFormat::Auto, None, None),
            Err(DecodeError::EmptyValue)
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            header in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        ) {
            for format in [WireFormat::Auto, WireFormat::Json, WireFormat::Confluent,
                           WireFormat::Avro, WireFormat::AvroSingleObject] {
                let _ = parse(format, Some(&payload), header.as_deref());
            }
        }

        #[test]
        fn every_prefixed_id_round_trips(id in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut payload = vec![0];
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&body);
            prop_assert_eq!(
                parse(WireFormat::Auto, Some(&payload), None).unwrap(),
                Envelope::Registry { key: SchemaKey::Id(id), body: &body }
            );
        }
    }
}
