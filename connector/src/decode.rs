//! Decode and validate: a Kafka record value becomes a JSON document that satisfies the schema.
//!
//! Wire formats, detected per record (or forced by `[schema] format`):
//! - plain JSON text;
//! - Confluent framing: byte `0x00`, a 4-byte big-endian schema id, then JSON text, as written
//!   by Confluent's `JSONSerializer`. The framed JSON is validated against the local schema.

use serde_json::Value;

use crate::reject::{Rejection, Stage, truncate_message};

/// How record values are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Detect per record: a leading `0x00` means Confluent framing, anything else plain JSON.
    Auto,
    /// Plain JSON only.
    Json,
    /// Confluent-framed JSON only.
    ConfluentJson,
}

impl WireFormat {
    /// Parses the `[schema] format` value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(WireFormat::Auto),
            "json" => Some(WireFormat::Json),
            "confluent_json" => Some(WireFormat::ConfluentJson),
            _ => None,
        }
    }
}

/// The Confluent wire format's magic byte.
const CONFLUENT_MAGIC: u8 = 0;
/// Magic byte plus the 4-byte schema id.
const CONFLUENT_HEADER_LEN: usize = 5;
/// Schema violations listed in one rejection; the rest are counted.
const MAX_VIOLATIONS_LISTED: usize = 5;

/// A decoded record value.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The JSON document.
    pub value: Value,
    /// The schema id from the Confluent frame, when the record had one.
    pub schema_id: Option<u32>,
}

/// Why a value could not be decoded or validated.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value or an empty one (a tombstone, say).
    #[error("record value is empty")]
    EmptyValue,
    /// A Confluent frame shorter than its 5-byte header.
    #[error("Confluent-framed value is {length} bytes long, shorter than the 5-byte header")]
    TruncatedFrame {
        /// Length of the value.
        length: usize,
    },
    /// `format = "confluent_json"` but the value does not start with the magic byte.
    #[error("expected Confluent framing (first byte 0x00), found first byte 0x{first_byte:02x}")]
    NotConfluentFramed {
        /// The first byte found.
        first_byte: u8,
    },
    /// The payload is not JSON.
    #[error("value is not valid JSON{}: {source}", schema_context(*schema_id))]
    InvalidJson {
        /// The parser's complaint, with line and column.
        source: serde_json::Error,
        /// Schema id of the frame, if any.
        schema_id: Option<u32>,
    },
    /// The payload violates the JSON Schema.
    #[error("value violates the JSON Schema{}: {violations}", schema_context(*schema_id))]
    SchemaViolation {
        /// The violations, `; `-separated, each with its JSON Pointer.
        violations: String,
        /// Schema id of the frame, if any.
        schema_id: Option<u32>,
    },
}

fn schema_context(schema_id: Option<u32>) -> String {
    schema_id.map_or_else(String::new, |id| format!(" (Confluent schema id {id})"))
}

impl DecodeError {
    /// The dead-letter explanation for this error.
    pub fn rejection(&self) -> Rejection {
        let (stage, reason) = match self {
            DecodeError::EmptyValue => (Stage::Decode, "EmptyValue"),
            DecodeError::TruncatedFrame { .. } => (Stage::Decode, "TruncatedFrame"),
            DecodeError::NotConfluentFramed { .. } => (Stage::Decode, "NotConfluentFramed"),
            DecodeError::InvalidJson { .. } => (Stage::Decode, "InvalidJson"),
            DecodeError::SchemaViolation { .. } => (Stage::Validate, "SchemaViolation"),
        };
        Rejection {
            stage,
            reason,
            message: truncate_message(self.to_string()),
        }
    }
}

/// Decodes and validates record values. Built once; the schema is compiled once.
pub struct Decoder {
    format: WireFormat,
    validator: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("format", &self.format)
            .field("validates", &self.validator.is_some())
            .finish()
    }
}

impl Decoder {
    /// A decoder for `format`, validating against `schema` when given.
    pub fn new(format: WireFormat, schema: Option<&Value>) -> Result<Self, String> {
        let validator = schema
            .map(|schema| jsonschema::validator_for(schema).map_err(|error| error.to_string()))
            .transpose()?;
        Ok(Self { format, validator })
    }

    /// Decodes one record value.
    pub fn decode(&self, payload: Option<&[u8]>) -> Result<Decoded, DecodeError> {
        let payload = payload.unwrap_or_default();
        let Some(&first_byte) = payload.first() else {
            return Err(DecodeError::EmptyValue);
        };
        let framed = match self.format {
            WireFormat::Json => false,
            WireFormat::Auto => first_byte == CONFLUENT_MAGIC,
            WireFormat::ConfluentJson if first_byte == CONFLUENT_MAGIC => true,
            WireFormat::ConfluentJson => {
                return Err(DecodeError::NotConfluentFramed { first_byte });
            }
        };
        let (json, schema_id) = if framed {
            let (Some(id), Some(json)) = (
                payload.get(1..CONFLUENT_HEADER_LEN),
                payload.get(CONFLUENT_HEADER_LEN..),
            ) else {
                return Err(DecodeError::TruncatedFrame {
                    length: payload.len(),
                });
            };
            let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
            (json, Some(id))
        } else {
            (payload, None)
        };
        let value: Value = serde_json::from_slice(json)
            .map_err(|source| DecodeError::InvalidJson { source, schema_id })?;
        self.validate(&value, schema_id)?;
        Ok(Decoded { value, schema_id })
    }

    fn validate(&self, value: &Value, schema_id: Option<u32>) -> Result<(), DecodeError> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        if validator.is_valid(value) {
            return Ok(());
        }
        let mut listed = Vec::new();
        let mut total = 0usize;
        for error in validator.iter_errors(value) {
            total += 1;
            if listed.len() < MAX_VIOLATIONS_LISTED {
                let path = error.instance_path().as_str();
                let at = if path.is_empty() { "/" } else { path };
                listed.push(truncate_message(format!("at {at}: {error}")));
            }
        }
        let mut violations = listed.join("; ");
        if total > listed.len() {
            violations.push_str(&format!("; and {} more", total - listed.len()));
        }
        Err(DecodeError::SchemaViolation {
            violations,
            schema_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn generator_schema() -> Value {
        serde_json::from_str(include_str!("../../schemas/generator.schema.json")).unwrap()
    }

    fn decoder(format: WireFormat) -> Decoder {
        Decoder::new(format, Some(&generator_schema())).unwrap()
    }

    const VALID: &str = r#"{"generatorID": "gen-7", "lat": 51.5, "lon": -0.12, "temperature": 36.2, "pressure": 1.02, "fuel": 400.0}"#;

    fn framed(id: u32, json: &str) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(json.as_bytes());
        bytes
    }

    #[test]
    fn plain_and_confluent_framed_json() {
        let decoded = decoder(WireFormat::Auto)
            .decode(Some(VALID.as_bytes()))
            .unwrap();
        assert_eq!(decoded.schema_id, None);
        assert_eq!(decoded.value["generatorID"], json!("gen-7"));
        let decoded = decoder(WireFormat::Auto)
            .decode(Some(&framed(258, VALID)))
            .unwrap();
        assert_eq!(decoded.schema_id, Some(258));
        assert_eq!(decoded.value["fuel"], json!(400.0));
        assert!(
            decoder(WireFormat::ConfluentJson)
                .decode(Some(&framed(1, VALID)))
                .is_ok()
        );
    }

    #[test]
    fn rejections_name_stage_and_reason() {
        let auto = decoder(WireFormat::Auto);
        let cases: Vec<(Vec<u8>, Stage, &str)> = vec![
            (vec![], Stage::Decode, "EmptyValue"),
            (vec![0, 0, 1], Stage::Decode, "TruncatedFrame"),
            (
                b"{\"generatorID\": \"g\", \"fuel\": NaN}".to_vec(),
                Stage::Decode,
                "InvalidJson",
            ),
            (b"{\"generatorID\": ".to_vec(), Stage::Decode, "InvalidJson"),
            (vec![0xc3, 0x01, 0xff], Stage::Decode, "InvalidJson"),
            (framed(9, "not json"), Stage::Decode, "InvalidJson"),
            (
                br#"{"generatorID": "g"}"#.to_vec(),
                Stage::Validate,
                "SchemaViolation",
            ),
            (b"[1, 2]".to_vec(), Stage::Validate, "SchemaViolation"),
        ];
        for (payload, stage, reason) in cases {
            let rejection = auto.decode(Some(&payload)).unwrap_err().rejection();
            assert_eq!(
                (rejection.stage, rejection.reason),
                (stage, reason),
                "{payload:?}"
            );
            assert!(!rejection.message.is_empty());
        }
        assert!(matches!(auto.decode(None), Err(DecodeError::EmptyValue)));
        assert!(matches!(
            decoder(WireFormat::ConfluentJson).decode(Some(VALID.as_bytes())),
            Err(DecodeError::NotConfluentFramed { first_byte: b'{' })
        ));
        assert!(matches!(
            decoder(WireFormat::Json).decode(Some(&framed(1, VALID))),
            Err(DecodeError::InvalidJson { .. })
        ));
    }

    #[test]
    fn schema_violation_names_the_field_and_the_schema_id() {
        let wrong_type = VALID.replace("400.0", "\"low\"");
        let message = decoder(WireFormat::Auto)
            .decode(Some(&framed(7, &wrong_type)))
            .unwrap_err()
            .to_string();
        assert!(message.contains("at /fuel"), "{message}");
        assert!(message.contains("schema id 7"), "{message}");
    }

    #[test]
    fn without_a_schema_any_json_passes() {
        let decoder = Decoder::new(WireFormat::Auto, None).unwrap();
        assert!(decoder.decode(Some(b"{\"anything\": true}")).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decoder(WireFormat::Auto).decode(Some(&bytes));
            let _ = decoder(WireFormat::ConfluentJson).decode(Some(&bytes));
        }
    }
}
