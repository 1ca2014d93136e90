//! Wire formats: a [`Reading`] becomes the bytes of a Kafka record value.
//!
//! | format | valid value | as written by |
//! |---|---|---|
//! | `json` | JSON text | any JSON producer |
//! | `json-sr` | `0x00`, 4-byte big-endian schema id, JSON text | Confluent's `JSONSerializer` |
//! | `avro-sr` | `0x00`, 4-byte big-endian schema id, Avro binary datum | Confluent's `AvroSerializer` |
//! | `avro` | Avro binary datum, no framing | a producer sharing the schema out of band |
//!
//! # What "invalid" means in each format
//! JSON text carries its field names and types, so a JSON record can be well-formed and still
//! violate the JSON Schema (a missing field, a string instead of a number). An Avro datum carries
//! neither: it is the field values in schema order, so bytes that decode with the schema *are*
//! a record of that schema, and no encoded Avro record can violate it. Avro goes wrong on the
//! wire instead: bytes that do not decode (truncated, garbage, another serializer's output), a
//! frame with the wrong magic byte, or a schema id the registry does not know, which a
//! registry-aware consumer cannot resolve. One fault survives every encoding: an empty
//! `generatorID` is schema-valid, and the sink's mapping refuses it as an empty tag value.

use apache_avro::types::Record;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::fleet::{Reading, Sample};

/// The Confluent wire format's magic byte.
pub const CONFLUENT_MAGIC: u8 = 0x00;
/// The first byte of [`Fault::WrongMagic`] values. Not `0x01`: newer Confluent clients read a
/// leading `0x01` as a 16-byte schema GUID, which would make this fault an unknown-GUID one.
pub const WRONG_MAGIC: u8 = 0x02;

/// The wire format of simulated record values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain JSON text.
    Json,
    /// Confluent-framed JSON, the schema registered as JSON Schema.
    JsonSr,
    /// Confluent-framed Avro binary, the schema registered as Avro.
    AvroSr,
    /// Avro binary datum without framing.
    Avro,
}

impl Format {
    /// Whether the format registers its schema and frames values with the id.
    pub fn uses_registry(self) -> bool {
        matches!(self, Format::JsonSr | Format::AvroSr)
    }

    /// Whether the values are Avro (else JSON).
    pub fn is_avro(self) -> bool {
        matches!(self, Format::AvroSr | Format::Avro)
    }

    /// The kinds of damage done to invalid records, in the order they come up.
    pub fn faults(self) -> &'static [Fault] {
        match self {
            Format::Json => JSON_FAULTS,
            Format::JsonSr => JSON_SR_FAULTS,
            Format::AvroSr => AVRO_SR_FAULTS,
            Format::Avro => AVRO_FAULTS,
        }
    }
}

/// A way a record value is made invalid on purpose, each one a mistake real producers make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// JSON text cut off mid-document.
    BrokenJson,
    /// JSON without the required `fuel` field.
    MissingField,
    /// JSON with `"fuel": "low"`, a string where the schema wants a number.
    WrongType,
    /// JSON with a bare `NaN` token, which some JSON encoders write and JSON forbids.
    NanToken,
    /// A schema-valid record with an empty `generatorID`, refused by the sink's mapping.
    EmptyGeneratorId,
    /// An Avro datum cut short, as by a producer that lost the end of its buffer.
    TruncatedDatum,
    /// Random bytes whose first varint is a 4 KiB string length, longer than the whole value,
    /// so no Avro decoder can take them for a record.
    Garbage,
    /// The JSON text of the reading on an Avro topic (a producer with the wrong serializer).
    /// Its first byte `{` reads as a negative Avro string length.
    JsonText,
    /// A Confluent frame whose first byte is [`WRONG_MAGIC`] instead of `0x00`: a framing
    /// version no consumer knows.
    WrongMagic,
    /// A well-formed frame with a schema id the registry does not know.
    UnregisteredSchemaId,
    /// A value shorter than the 5-byte Confluent header.
    TruncatedFrame,
}

const JSON_FAULTS: &[Fault] = &[
    Fault::BrokenJson,
    Fault::MissingField,
    Fault::WrongType,
    Fault::NanToken,
    Fault::EmptyGeneratorId,
];
const JSON_SR_FAULTS: &[Fault] = &[
    Fault::BrokenJson,
    Fault::MissingField,
    Fault::WrongType,
    Fault::NanToken,
    Fault::EmptyGeneratorId,
    Fault::WrongMagic,
    Fault::UnregisteredSchemaId,
    Fault::TruncatedFrame,
];
const AVRO_SR_FAULTS: &[Fault] = &[
    Fault::TruncatedDatum,
    Fault::Garbage,
    Fault::UnregisteredSchemaId,
    Fault::WrongMagic,
    Fault::TruncatedFrame,
    Fault::EmptyGeneratorId,
];
const AVRO_FAULTS: &[Fault] = &[
    Fault::TruncatedDatum,
    Fault::Garbage,
    Fault::JsonText,
    Fault::EmptyGeneratorId,
];

/// Why a value cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The Avro schema does not parse.
    #[error("{origin} is not a valid Avro schema: {source}")]
    AvroSchema {
        /// Where the schema came from.
        origin: String,
        /// The parser's complaint.
        source: apache_avro::Error,
    },
    /// The Avro schema is not a record, so a reading cannot be written with it.
    #[error("{origin} is not an Avro record schema")]
    NotARecord {
        /// Where the schema came from.
        origin: String,
    },
    /// A reading does not fit the Avro schema (field names or types differ).
    #[error("{origin} does not accept a generator reading: {source}")]
    AvroEncode {
        /// Where the schema came from.
        origin: String,
        /// The encoder's complaint.
        source: apache_avro::Error,
    },
    /// The JSON Schema does not parse or compile.
    #[error("{origin} is not a valid JSON Schema: {reason}")]
    JsonSchema {
        /// Where the schema came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A valid reading violates the JSON Schema, which Confluent's serializer would refuse.
    #[error("{origin} rejects a valid generator reading: {reason}")]
    JsonSchemaRejects {
        /// Where the schema came from.
        origin: String,
        /// The first violation.
        reason: String,
    },
}

/// Byte `0x00`, the 4-byte big-endian `schema_id`, then `payload`: the Confluent wire format.
pub fn frame(schema_id: u32, payload: &[u8]) -> Vec<u8> {
    frame_with_magic(CONFLUENT_MAGIC, schema_id, payload)
}

fn frame_with_magic(magic: u8, schema_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(5 + payload.len());
    value.push(magic);
    value.extend_from_slice(&schema_id.to_be_bytes());
    value.extend_from_slice(payload);
    value
}

/// The schema ids a framed format writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// The id the registry gave the value schema.
    pub schema_id: u32,
    /// An id the registry does not know, for [`Fault::UnregisteredSchemaId`].
    pub unregistered_id: u32,
}

/// How the body of a value is written.
#[derive(Debug)]
enum Body {
    Json,
    Avro {
        schema: Box<apache_avro::Schema>,
        origin: String,
    },
}

/// Turns readings into record values of one [`Format`].
#[derive(Debug)]
pub struct Encoder {
    format: Format,
    body: Body,
    framing: Option<Framing>,
}

impl Encoder {
    /// Plain JSON text.
    pub fn json() -> Self {
        Self {
            format: Format::Json,
            body: Body::Json,
            framing: None,
        }
    }

    /// Confluent-framed JSON.
    pub fn json_sr(framing: Framing) -> Self {
        Self {
            format: Format::JsonSr,
            body: Body::Json,
            framing: Some(framing),
        }
    }

    /// Avro binary with `schema` (Avro schema text from `origin`); framed when `framing` is
    /// given. A reading is encoded once here, so a schema that cannot hold one fails now.
    pub fn avro(schema: &str, origin: &str, framing: Option<Framing>) -> Result<Self, FormatError> {
        let parsed =
            apache_avro::Schema::parse_str(schema).map_err(|source| FormatError::AvroSchema {
                origin: origin.to_owned(),
                source,
            })?;
        let encoder = Self {
            format: if framing.is_some() {
                Format::AvroSr
            } else {
                Format::Avro
            },
            body: Body::Avro {
                schema: Box::new(parsed),
                origin: origin.to_owned(),
            },
            framing,
        };
        encoder.body(&probe_sample())?;
        Ok(encoder)
    }

    /// The format written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The framing, for the framed formats.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// The record value for `reading`: valid, or damaged in the way its fault number selects.
    pub fn encode(&self, reading: &Reading) -> Result<Vec<u8>, FormatError> {
        let Some(sequence) = reading.fault else {
            let body = self.body(&reading.sample)?;
            return Ok(self.framed(&body));
        };
        let faults = self.format.faults();
        // Lists are non-empty constants; the modulo cycles through every kind in turn.
        let fault = faults[(sequence % faults.len() as u64) as usize];
        self.damaged(fault, sequence, &reading.sample)
    }

    /// The body with the registered id in front, or alone when unframed.
    fn framed(&self, body: &[u8]) -> Vec<u8> {
        match self.framing {
            Some(framing) => frame(framing.schema_id, body),
            None => body.to_vec(),
        }
    }

    /// The valid body (JSON text or Avro datum) of `sample`.
    fn body(&self, sample: &Sample) -> Result<Vec<u8>, FormatError> {
        match &self.body {
            Body::Json => Ok(json_text(sample).into_bytes()),
            Body::Avro { schema, origin } => avro_datum(schema, origin, sample),
        }
    }

    fn damaged(
        &self,
        fault: Fault,
        sequence: u64,
        sample: &Sample,
    ) -> Result<Vec<u8>, FormatError> {
        let id = &sample.generator_id;
        let fuel = sample.fuel;
        let value = match fault {
            Fault::BrokenJson => {
                self.framed(format!(r#"{{"generatorID": "{id}", "fuel": "#).as_bytes())
            }
            Fault::MissingField => self.framed(
                format!(
                    r#"{{"generatorID": "{id}", "lat": 51.5, "lon": -0.1, "temperature": 35.0, "pressure": 1.0}}"#
                )
                .as_bytes(),
            ),
            Fault::WrongType => self.framed(
                format!(
                    r#"{{"generatorID": "{id}", "lat": 51.5, "lon": -0.1, "temperature": 35.0, "pressure": 1.0, "fuel": "low"}}"#
                )
                .as_bytes(),
            ),
            Fault::NanToken => self.framed(
                format!(
                    r#"{{"generatorID": "{id}", "lat": 51.5, "lon": -0.1, "temperature": NaN, "pressure": 1.0, "fuel": {fuel}}}"#
                )
                .as_bytes(),
            ),
            Fault::EmptyGeneratorId => {
                let body = self.body(&Sample {
                    generator_id: String::new(),
                    ..sample.clone()
                })?;
                self.framed(&body)
            }
            Fault::TruncatedDatum => {
                let body = self.body(sample)?;
                // Any strict prefix fails: decoding a datum reads exactly its bytes, in order.
                let cut = body.get(..body.len() / 2).unwrap_or_default();
                self.framed(cut)
            }
            Fault::Garbage => self.framed(&garbage(sequence)),
            Fault::JsonText => json_text(sample).into_bytes(),
            Fault::WrongMagic => {
                let body = self.body(sample)?;
                let id = self.framing.map_or(0, |framing| framing.schema_id);
                frame_with_magic(WRONG_MAGIC, id, &body)
            }
            Fault::UnregisteredSchemaId => {
                let body = self.body(sample)?;
                let id = self.framing.map_or(0, |framing| framing.unregistered_id);
                frame(id, &body)
            }
            Fault::TruncatedFrame => {
                let id = self.framing.map_or(0, |framing| framing.schema_id);
                let header = frame(id, &[]);
                header.get(..3).unwrap_or_default().to_vec()
            }
        };
        Ok(value)
    }
}

/// Checks that `schema` (JSON Schema text from `origin`) compiles and accepts a valid reading,
/// as Confluent's `JSONSerializer` validates each value before writing it.
pub fn check_json_schema(schema: &str, origin: &str) -> Result<(), FormatError> {
    let invalid = |reason: String| FormatError::JsonSchema {
        origin: origin.to_owned(),
        reason,
    };
    let schema: serde_json::Value =
        serde_json::from_str(schema).map_err(|error| invalid(error.to_string()))?;
    let validator =
        jsonschema::validator_for(&schema).map_err(|error| invalid(error.to_string()))?;
    let sample = json_text(&probe_sample());
    let sample: serde_json::Value =
        serde_json::from_str(&sample).map_err(|error| invalid(error.to_string()))?;
    match validator.iter_errors(&sample).next() {
        None => Ok(()),
        Some(error) => Err(FormatError::JsonSchemaRejects {
            origin: origin.to_owned(),
            reason: format!("at {:?}: {error}", error.instance_path().as_str()),
        }),
    }
}

/// The reading as JSON text; keys in `serde_json`'s (sorted) order, as the simulator always
/// wrote them.
fn json_text(sample: &Sample) -> String {
    json!({
        "generatorID": sample.generator_id,
        "lat": sample.lat,
        "lon": sample.lon,
        "temperature": sample.temperature,
        "pressure": sample.pressure,
        "fuel": sample.fuel,
    })
    .to_string()
}

/// The reading as an Avro binary datum (no container header, no framing).
fn avro_datum(
    schema: &apache_avro::Schema,
    origin: &str,
    sample: &Sample,
) -> Result<Vec<u8>, FormatError> {
    let mut record = Record::new(schema).ok_or_else(|| FormatError::NotARecord {
        origin: origin.to_owned(),
    })?;
    record.put("generatorID", sample.generator_id.as_str());
    record.put("lat", sample.lat);
    record.put("lon", sample.lon);
    record.put("temperature", sample.temperature);
    record.put("pressure", sample.pressure);
    record.put("fuel", sample.fuel);
    // The writer validates the record against the schema before encoding it.
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(record))
        .map_err(|source| FormatError::AvroEncode {
            origin: origin.to_owned(),
            source,
        })
}

/// A reading for checking, at start-up, that a schema can hold one.
pub fn probe_sample() -> Sample {
    Sample {
        generator_id: "gen-1".into(),
        lat: 51.5,
        lon: -0.12,
        temperature: 36.2,
        pressure: 1.02,
        fuel: 400.0,
    }
}

/// Seeded random bytes led by the varint of string length 4096 (zig-zag 8192: `0x80 0x40`),
/// longer than the value, so every Avro decoder runs out of bytes.
fn garbage(sequence: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(sequence);
    let length = rng.random_range(6..38);
    let mut bytes = vec![0x80, 0x40];
    bytes.extend((0..length).map(|_| rng.random::<u8>()));
    bytes
}

#[cfg(test)]
mod tests;
