//! Decode and validate: a Kafka record value becomes a JSON document that satisfies its schema.
//!
//! [`framing`] takes the record apart (which wire format, which schema); this module then reads
//! the payload with that schema:
//! - plain JSON, validated against the local JSON Schema when one is configured;
//! - registry-framed JSON Schema records (Confluent's `JSONSerializer`), validated against the
//!   registry's schema, compiled once per id (and optionally also against the local one);
//! - registry-framed Avro records (`AvroSerializer`), read with the writer schema from the
//!   registry and resolved to the local reader schema when one is configured;
//! - raw Avro and Avro single-object encoding, with local schemas.
//!
//! Records the mapping can read flat (top-level keys only) first try the fast path,
//! [`Decoder::read_flat`]: [`flat`] for JSON, [`FlatAvro`] for Avro records of scalars. It
//! reads only the keys the mapping wants, never rejects, and leaves whatever it is not sure of
//! to the generic decoding, which stays the reference and explains every rejection.
//!
//! Registry schemas are fetched by [`crate::registry`]; this module only holds what was
//! fetched. A record whose schema is not known yet comes back as
//! [`DecodeFailure::NeedsSchema`]: not a bad record, just one that must wait.

pub mod avro;
mod avro_direct;
pub mod flat;
pub mod framing;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Instant;

use serde_json::Value;

pub use self::avro::{AvroError, AvroReader, ParsedSchema};
pub use self::avro_direct::flat::FlatAvro;
use self::flat::{FlatLayout, FlatSchema};
pub use self::framing::{Envelope, SchemaKey, VALUE_SCHEMA_ID_HEADER};
use crate::record::FlatRecord;
use crate::reject::{Rejection, Stage, truncate_message};

/// How record values are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Detect per record: a schema-id header or a leading `0x00` means Schema Registry framing,
    /// `0xC3 0x01` Avro single-object encoding, anything else plain JSON.
    Auto,
    /// Plain JSON only.
    Json,
    /// Schema Registry framing only (prefix or header form), JSON Schema or Avro.
    Confluent,
    /// Raw Avro datums written with the local Avro schema.
    Avro,
    /// Avro single-object encoding only.
    AvroSingleObject,
}

impl WireFormat {
    /// The accepted `[schema] format` values.
    pub const NAMES: &'static str = "auto, json, confluent, avro, avro_single_object";

    /// Parses the `[schema] format` value (`confluent_json` is the earlier name of `confluent`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(WireFormat::Auto),
            "json" => Some(WireFormat::Json),
            "confluent" | "confluent_json" => Some(WireFormat::Confluent),
            "avro" => Some(WireFormat::Avro),
            "avro_single_object" => Some(WireFormat::AvroSingleObject),
            _ => None,
        }
    }
}

/// Schema violations listed in one rejection; the rest are counted.
const MAX_VIOLATIONS_LISTED: usize = 5;

/// A decoded record value.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The JSON document.
    pub value: Value,
    /// The registry schema the record named, when it named one.
    pub schema: Option<SchemaKey>,
}

/// Why a value could not be decoded or validated.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value or an empty one (a tombstone, say).
    #[error("record value is empty")]
    EmptyValue,
    /// A frame shorter than its header.
    #[error("framed value is {length} bytes long, shorter than its header")]
    TruncatedFrame {
        /// Length of the value.
        length: usize,
    },
    /// `format = "confluent"` but the value has neither the prefix nor the header.
    #[error(
        "expected Schema Registry framing (first byte 0x00 or a `__value_schema_id` header), found first byte 0x{first_byte:02x}"
    )]
    NotConfluentFramed {
        /// The first byte found.
        first_byte: u8,
    },
    /// `format = "avro_single_object"` but the value lacks the `C3 01` marker.
    #[error("expected Avro single-object encoding (C3 01), found {first_bytes:02x?}")]
    NotSingleObject {
        /// The first bytes found.
        first_bytes: Vec<u8>,
    },
    /// A `__value_schema_id` header that is neither `0x01` + GUID nor `0x00` + id.
    #[error(
        "the `__value_schema_id` header ({length} bytes, first byte {first_byte:02x?}) is neither 0x01 + 16-byte GUID nor 0x00 + 4-byte id"
    )]
    InvalidSchemaIdHeader {
        /// Header length.
        length: usize,
        /// Its first byte.
        first_byte: Option<u8>,
    },
    /// The registry does not know the schema the record names.
    #[error("the Schema Registry has no {key} (HTTP 404); register it, then replay this record")]
    UnknownSchema {
        /// The schema named.
        key: SchemaKey,
    },
    /// The registry's schema cannot be used (Protobuf, or it does not compile).
    #[error("{key} from the Schema Registry cannot be used: {message}")]
    UnusableSchema {
        /// The schema named.
        key: SchemaKey,
        /// Why.
        message: String,
    },
    /// Single-object encoding with a fingerprint no local schema has.
    #[error(
        "no local Avro schema has fingerprint {fingerprint:02x?} (schema.avro_schema_file, schema.avro_writer_schema_files)"
    )]
    UnknownFingerprint {
        /// The fingerprint's wire bytes.
        fingerprint: [u8; 8],
    },
    /// `format = "avro"` without `schema.avro_schema_file` (the configuration prevents it).
    #[error("raw Avro needs a local schema: set schema.avro_schema_file")]
    NoLocalAvroSchema,
    /// A Confluent-framed payload that is not JSON while no registry is configured.
    #[error(
        "value is Confluent-framed ({key}) but not JSON: {source}; Avro records need [schema_registry] url"
    )]
    FramedWithoutRegistry {
        /// The schema named.
        key: SchemaKey,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// The payload starts with a byte no JSON text, Confluent frame or single-object datum
    /// starts with: most likely another encoding on the topic.
    #[error(
        "value is not JSON, nor Schema Registry or Avro single-object framed (first byte 0x{first_byte:02x}); if the topic carries raw Avro, set schema.format = \"avro\""
    )]
    UnrecognisedBytes {
        /// The first byte.
        first_byte: u8,
    },
    /// The payload is not JSON.
    #[error("value is not valid JSON{}: {source}", schema_context(schema.as_ref()))]
    InvalidJson {
        /// The parser's complaint, with line and column.
        source: serde_json::Error,
        /// The registry schema the record named, if any.
        schema: Option<SchemaKey>,
    },
    /// The payload violates the JSON Schema.
    #[error("value violates the {which}JSON Schema{}: {violations}", schema_context(schema.as_ref()))]
    SchemaViolation {
        /// The violations, `; `-separated, each with its JSON Pointer.
        violations: String,
        /// The registry schema the record named, if any.
        schema: Option<SchemaKey>,
        /// `"local "` when the local schema refused a registry-framed record, else empty.
        which: &'static str,
    },
    /// The payload is not Avro written with its writer schema, or has no JSON form.
    #[error("Avro value{} cannot be read: {source}", schema_context(schema.as_ref()))]
    Avro {
        /// What went wrong.
        source: AvroError,
        /// The registry schema the record named, if any.
        schema: Option<SchemaKey>,
    },
}

fn schema_context(schema: Option<&SchemaKey>) -> String {
    schema.map_or_else(String::new, |key| format!(" ({key})"))
}

impl DecodeError {
    /// The dead-letter explanation for this error.
    pub fn rejection(&self) -> Rejection {
        let (stage, reason) = match self {
            DecodeError::EmptyValue => (Stage::Decode, "EmptyValue"),
            DecodeError::TruncatedFrame { .. } => (Stage::Decode, "TruncatedFrame"),
            DecodeError::NotConfluentFramed { .. } => (Stage::Decode, "NotConfluentFramed"),
            DecodeError::NotSingleObject { .. } => (Stage::Decode, "NotSingleObject"),
            DecodeError::InvalidSchemaIdHeader { .. } => (Stage::Decode, "InvalidSchemaIdHeader"),
            DecodeError::UnknownSchema { .. } => (Stage::Decode, "UnknownSchema"),
            DecodeError::UnusableSchema { .. } => (Stage::Decode, "UnusableSchema"),
            DecodeError::UnknownFingerprint { .. } => (Stage::Decode, "UnknownFingerprint"),
            DecodeError::NoLocalAvroSchema => (Stage::Decode, "NoLocalAvroSchema"),
            DecodeError::InvalidJson { .. }
            | DecodeError::FramedWithoutRegistry { .. }
            | DecodeError::UnrecognisedBytes { .. } => (Stage::Decode, "InvalidJson"),
            DecodeError::SchemaViolation { .. } => (Stage::Validate, "SchemaViolation"),
            DecodeError::Avro { source, .. } => match source {
                AvroError::Invalid(_) => (Stage::Decode, "InvalidAvro"),
                AvroError::NonFinite { .. } => (Stage::Decode, "NonFiniteNumber"),
                AvroError::Unsupported { .. } => (Stage::Decode, "UnsupportedAvroValue"),
            },
        };
        Rejection {
            stage,
            reason,
            message: truncate_message(self.to_string()),
        }
    }
}

/// Why a record was not decoded.
#[derive(Debug)]
pub enum DecodeFailure {
    /// The record is bad: dead-letter it with this reason.
    Rejected(DecodeError),
    /// The record names a registry schema not fetched yet: fetch it, then decode again.
    NeedsSchema(SchemaKey),
}

impl From<DecodeError> for DecodeFailure {
    fn from(error: DecodeError) -> Self {
        DecodeFailure::Rejected(error)
    }
}

/// A schema from the registry, compiled once.
pub enum RegistrySchema {
    /// A JSON Schema, compiled; also as per-key rules when it is made only of those (the
    /// fast path, [`flat`]).
    Json(jsonschema::Validator, Option<FlatSchema>),
    /// An Avro writer schema, prepared for reading (and resolving to the reader schema).
    Avro(AvroReader),
}

impl std::fmt::Debug for RegistrySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RegistrySchema::Json(..) => "RegistrySchema::Json",
            RegistrySchema::Avro(_) => "RegistrySchema::Avro",
        })
    }
}

/// A schema the registry returned, with the schemas its references name (depth first, each
/// once), before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSchema {
    /// `schemaType` (absent means Avro, as in Confluent's API).
    pub schema_type: Option<String>,
    /// The schema text.
    pub schema: String,
    /// Referenced schemas: (reference name, schema text).
    pub references: Vec<(String, String)>,
}

impl RegistrySchema {
    /// Compiles a fetched schema; Avro ones resolve to `reader` when given.
    pub fn compile(fetched: &FetchedSchema, reader: Option<ParsedSchema>) -> Result<Self, String> {
        match fetched.schema_type.as_deref().unwrap_or("AVRO") {
            "AVRO" => {
                let texts: Vec<String> = fetched
                    .references
                    .iter()
                    .map(|(_, text)| text.clone())
                    .collect();
                let writer = avro::parse_schema(&fetched.schema, &texts)
                    .map_err(|error| format!("not a valid Avro schema: {error}"))?;
                AvroReader::new(writer, reader)
                    .map(RegistrySchema::Avro)
                    .map_err(|error| format!("cannot resolve to the local reader schema: {error}"))
            }
            "JSON" => {
                let (validator, flat) =
                    compile_json_schema(&fetched.schema, &fetched.references)
                        .map_err(|error| format!("not a usable JSON Schema: {error}"))?;
                Ok(RegistrySchema::Json(validator, flat))
            }
            other => Err(format!(
                "schema type {other} is not supported (JSON and AVRO are)"
            )),
        }
    }
}

/// Compiles a JSON Schema whose `$ref`s may name the given referenced schemas, and, without
/// references, its per-key rules when it has only those.
fn compile_json_schema(
    text: &str,
    references: &[(String, String)],
) -> Result<(jsonschema::Validator, Option<FlatSchema>), String> {
    let schema: Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
    if references.is_empty() {
        let validator = jsonschema::validator_for(&schema).map_err(|error| error.to_string())?;
        return Ok((validator, FlatSchema::compile(&schema)));
    }
    let mut registry = jsonschema::Registry::new();
    for (name, text) in references {
        let contents: Value =
            serde_json::from_str(text).map_err(|error| format!("reference {name}: {error}"))?;
        // Confluent names a reference by the `$ref` text; a relative one resolves against the
        // default base URI.
        let uri = if name.contains(':') {
            name.clone()
        } else {
            format!("json-schema:///{}", name.trim_start_matches('/'))
        };
        registry = registry
            .add(uri, contents)
            .map_err(|error| format!("reference {name}: {error}"))?;
    }
    let registry = registry.prepare().map_err(|error| error.to_string())?;
    jsonschema::options()
        .with_registry(&registry)
        .build(&schema)
        .map(|validator| (validator, None))
        .map_err(|error| error.to_string())
}

/// What is known about a registry schema.
#[derive(Debug)]
pub enum CachedSchema {
    /// Fetched and compiled; kept for the life of the process (ids never change meaning).
    Ready(RegistrySchema),
    /// The registry answered 404; records naming it are dead-lettered until `ask_again_at`,
    /// when the registry is asked again (the schema may have been registered since).
    NotFound {
        /// When to ask again.
        ask_again_at: Instant,
    },
    /// Fetched but unusable; permanent.
    Unusable(String),
}

/// Hashing for the schema lookups every framed record makes (registry ids and GUIDs, Avro
/// fingerprints): SipHash of a 4-byte id costs more than the rest of the lookup, and these keys
/// are not chosen freely (only keys the registry or the configuration produced are stored).
/// The seed is random per map all the same, so colliding ids cannot be worked out in advance.
#[derive(Debug, Clone, Copy)]
pub struct KeyHashing {
    seed: u64,
}

impl Default for KeyHashing {
    fn default() -> Self {
        KeyHashing {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for KeyHashing {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

/// The hasher [`KeyHashing`] builds: a multiply-rotate mix per word, and a full avalanche at
/// the end, since the table takes its bucket from the low bits and its tags from the high ones.
#[derive(Debug, Clone)]
pub struct KeyHasher(u64);

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(31);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab" and "ab\0" apart.
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    fn write_isize(&mut self, value: isize) {
        self.mix(value as u64);
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's finaliser.
        let mut hash = self.0;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^ (hash >> 33)
    }
}

/// Local Avro schemas: the reader schema, and writer schemas by fingerprint.
#[derive(Debug, Default)]
pub struct LocalAvro {
    /// The reader schema (`schema.avro_schema_file`).
    pub reader: Option<ParsedSchema>,
    /// Readers for single-object encoding, by the writer's fingerprint wire bytes.
    pub by_fingerprint: HashMap<[u8; 8], AvroReader, KeyHashing>,
    /// Reader for raw datums (the reader schema as its own writer).
    pub raw: Option<AvroReader>,
}

impl LocalAvro {
    /// Loads the reader schema and further writer schemas (texts).
    pub fn new(reader: Option<&str>, writers: &[String]) -> Result<Self, String> {
        let reader = reader
            .map(|text| avro::parse_schema(text, &[]))
            .transpose()?;
        let mut local = LocalAvro {
            reader,
            ..LocalAvro::default()
        };
        if let Some(parsed) = reader {
            local.raw = Some(AvroReader::new(parsed, None)?);
            local.by_fingerprint.insert(
                parsed.single_object_fingerprint(),
                AvroReader::new(parsed, None)?,
            );
        }
        for text in writers {
            let writer = avro::parse_schema(text, &[])?;
            local.by_fingerprint.insert(
                writer.single_object_fingerprint(),
                AvroReader::new(writer, reader)?,
            );
        }
        Ok(local)
    }
}

/// The fast path's reader for one registry schema.
#[derive(Debug)]
enum FlatReader {
    Json(FlatLayout),
    Avro(FlatAvro),
}

impl FlatReader {
    fn read<'r>(&'r self, body: &'r [u8]) -> Option<FlatRecord<'r>> {
        match self {
            FlatReader::Json(layout) => layout.read(body),
            FlatReader::Avro(avro) => avro.read(body),
        }
    }
}

/// The fast path's readers for the local Avro schemas, built from [`LocalAvro`].
#[derive(Debug, Default)]
struct LocalFlatAvro {
    raw: Option<FlatAvro>,
    by_fingerprint: HashMap<[u8; 8], FlatAvro, KeyHashing>,
}

impl LocalFlatAvro {
    fn new(local: &LocalAvro, keys: &[String]) -> Self {
        LocalFlatAvro {
            raw: local.raw.as_ref().and_then(|reader| reader.flat(keys)),
            by_fingerprint: local
                .by_fingerprint
                .iter()
                .filter_map(|(fingerprint, reader)| Some((*fingerprint, reader.flat(keys)?)))
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.raw.is_none() && self.by_fingerprint.is_empty()
    }
}

/// Decodes and validates record values. Built once; local schemas are compiled once, and
/// registry schemas once per id as they are learnt.
pub struct Decoder {
    format: WireFormat,
    local_json: Option<jsonschema::Validator>,
    /// The local JSON Schema as per-key rules, when it is made only of those.
    local_flat_schema: Option<FlatSchema>,
    /// How plain JSON records are read on the fast path; `None`: always the generic way.
    flat: Option<FlatLayout>,
    /// The keys the mapping reads, when it can map a flat record.
    flat_keys: Option<Vec<String>>,
    /// How registry-framed records of each schema are read on the fast path.
    registry_flat: HashMap<SchemaKey, FlatReader, KeyHashing>,
    /// How raw and single-object Avro records are read on the fast path.
    local_flat_avro: LocalFlatAvro,
    validate_registry_json_locally: bool,
    local_avro: LocalAvro,
    /// Without a registry, a Confluent-framed payload is read as JSON and validated locally.
    registry: bool,
    schemas: HashMap<SchemaKey, CachedSchema, KeyHashing>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("format", &self.format)
            .field("validates", &self.local_json.is_some())
            .field("flat", &self.flat.is_some())
            .field("registry", &self.registry)
            .field("schemas", &self.schemas.len())
            .finish()
    }
}

impl Decoder {
    /// A decoder for `format`, validating JSON against `schema` when given.
    pub fn new(format: WireFormat, schema: Option<&Value>) -> Result<Self, String> {
        let local_json = schema
            .map(|schema| jsonschema::validator_for(schema).map_err(|error| error.to_string()))
            .transpose()?;
        Ok(Self {
            format,
            local_json,
            local_flat_schema: schema.and_then(FlatSchema::compile),
            flat: None,
            flat_keys: None,
            registry_flat: HashMap::default(),
            local_flat_avro: LocalFlatAvro::default(),
            validate_registry_json_locally: false,
            local_avro: LocalAvro::default(),
            registry: false,
            schemas: HashMap::default(),
        })
    }

    /// Reads records on the fast path for a mapping that reads `mapping_keys` (see
    /// [`Mapping::flat_keys`](crate::map::Mapping::flat_keys)): plain JSON ([`flat`]) when the
    /// local JSON Schema, if any, compiles to per-key rules; registry-framed JSON likewise;
    /// Avro ([`FlatAvro`]) when the writer schema is a record of scalars decoded directly.
    pub fn with_flat_keys(mut self, mapping_keys: Vec<String>) -> Self {
        // Avro formats are never plain JSON: no record would take that layout.
        if !matches!(self.format, WireFormat::Avro | WireFormat::AvroSingleObject) {
            self.flat = match (&self.local_json, &self.local_flat_schema) {
                (None, _) => FlatLayout::new(mapping_keys.clone(), None),
                (Some(_), Some(schema)) => FlatLayout::new(mapping_keys.clone(), Some(schema)),
                (Some(_), None) => None,
            };
        }
        self.local_flat_avro = LocalFlatAvro::new(&self.local_avro, &mapping_keys);
        self.flat_keys = Some(mapping_keys);
        let learnt: Vec<(SchemaKey, FlatReader)> = self
            .schemas
            .iter()
            .filter_map(|(key, schema)| Some((*key, self.registry_layout(schema)?)))
            .collect();
        self.registry_flat.extend(learnt);
        self
    }

    /// Reads a record on the fast path, with the registry schema it was read with if it is
    /// registry-framed; `None` when it must be decoded the generic way
    /// ([`Decoder::decode_with_header`]): a registry schema not learnt yet, no fast path for
    /// this mapping and schema, or a record the fast path is not sure of.
    pub fn read_flat<'r>(
        &'r self,
        payload: Option<&'r [u8]>,
        schema_header: Option<&[u8]>,
    ) -> Option<(FlatRecord<'r>, Option<SchemaKey>)> {
        if self.flat.is_none() && self.registry_flat.is_empty() && self.local_flat_avro.is_empty() {
            return None;
        }
        match framing::parse(self.format, payload, schema_header).ok()? {
            Envelope::Json(json) => Some((self.flat.as_ref()?.read(json)?, None)),
            Envelope::Registry { key, body } if self.registry => {
                Some((self.registry_flat.get(&key)?.read(body)?, Some(key)))
            }
            Envelope::Registry { .. } => None,
            Envelope::RawAvro(datum) => {
                Some((self.local_flat_avro.raw.as_ref()?.read(datum)?, None))
            }
            Envelope::SingleObject { fingerprint, body } => Some((
                self.local_flat_avro
                    .by_fingerprint
                    .get(&fingerprint)?
                    .read(body)?,
                None,
            )),
        }
    }

    /// Reads Avro with these local schemas.
    pub fn with_local_avro(mut self, local_avro: LocalAvro) -> Self {
        self.local_avro = local_avro;
        if let Some(keys) = &self.flat_keys {
            self.local_flat_avro = LocalFlatAvro::new(&self.local_avro, keys);
        }
        self
    }

    /// Takes registry schemas for framed records; `validate_locally` also applies the local
    /// JSON Schema to registry-framed JSON records.
    pub fn with_registry(mut self, validate_locally: bool) -> Self {
        self.registry = true;
        self.validate_registry_json_locally = validate_locally;
        self
    }

    /// The local Avro reader schema, which registry Avro schemas resolve to.
    pub fn reader_schema(&self) -> Option<ParsedSchema> {
        self.local_avro.reader
    }

    /// Records what the registry said about `key`.
    pub fn learn(&mut self, key: SchemaKey, schema: CachedSchema) {
        match self.registry_layout(&schema) {
            Some(layout) => self.registry_flat.insert(key, layout),
            None => self.registry_flat.remove(&key),
        };
        self.schemas.insert(key, schema);
    }

    /// The fast path's reader for records framed with `schema`, if it has one. A JSON layout
    /// checks one schema: when the local one applies too, such records go the generic way.
    fn registry_layout(&self, schema: &CachedSchema) -> Option<FlatReader> {
        match (schema, &self.flat_keys) {
            (CachedSchema::Ready(RegistrySchema::Json(_, Some(rules))), Some(keys))
                if !self.validate_registry_json_locally =>
            {
                FlatLayout::new(keys.clone(), Some(rules)).map(FlatReader::Json)
            }
            (CachedSchema::Ready(RegistrySchema::Avro(reader)), Some(keys)) => {
                reader.flat(keys).map(FlatReader::Avro)
            }
            _ => None,
        }
    }

    /// Decodes one record value without a schema-id header.
    pub fn decode(&self, payload: Option<&[u8]>) -> Result<Decoded, DecodeFailure> {
        self.decode_with_header(payload, None)
    }

    /// Decodes one record value; `schema_header` is its `__value_schema_id` header.
    pub fn decode_with_header(
        &self,
        payload: Option<&[u8]>,
        schema_header: Option<&[u8]>,
    ) -> Result<Decoded, DecodeFailure> {
        match framing::parse(self.format, payload, schema_header)? {
            Envelope::Json(json) => {
                let value = parse_json(json, None).map_err(|error| match json.first() {
                    Some(&first_byte) if !may_start_json(first_byte) => {
                        DecodeError::UnrecognisedBytes { first_byte }
                    }
                    _ => error,
                })?;
                if let Some(local) = &self.local_json {
                    validate(local, &value, None, "")?;
                }
                Ok(Decoded {
                    value,
                    schema: None,
                })
            }
            Envelope::Registry { key, body } if !self.registry => {
                // No registry to ask: the framed payload is taken as JSON under the local schema.
                let value = serde_json::from_slice(body)
                    .map_err(|source| DecodeError::FramedWithoutRegistry { key, source })?;
                if let Some(local) = &self.local_json {
                    validate(local, &value, Some(key), "")?;
                }
                Ok(Decoded {
                    value,
                    schema: Some(key),
                })
            }
            Envelope::Registry { key, body } => {
                let value = match self.schemas.get(&key) {
                    None => return Err(DecodeFailure::NeedsSchema(key)),
                    Some(CachedSchema::NotFound { ask_again_at }) => {
                        if Instant::now() >= *ask_again_at {
                            return Err(DecodeFailure::NeedsSchema(key));
                        }
                        return Err(DecodeError::UnknownSchema { key }.into());
                    }
                    Some(CachedSchema::Unusable(message)) => {
                        return Err(DecodeError::UnusableSchema {
                            key,
                            message: message.clone(),
                        }
                        .into());
                    }
                    Some(CachedSchema::Ready(RegistrySchema::Avro(reader))) => {
                        read_avro(reader, body, Some(key))?
                    }
                    Some(CachedSchema::Ready(RegistrySchema::Json(validator, _))) => {
                        let value = parse_json(body, Some(key))?;
                        validate(validator, &value, Some(key), "")?;
                        if self.validate_registry_json_locally
                            && let Some(local) = &self.local_json
                        {
                            validate(local, &value, Some(key), "local ")?;
                        }
                        value
                    }
                };
                Ok(Decoded {
                    value,
                    schema: Some(key),
                })
            }
            Envelope::RawAvro(datum) => match &self.local_avro.raw {
                Some(reader) => Ok(Decoded {
                    value: read_avro(reader, datum, None)?,
                    schema: None,
                }),
                None => Err(DecodeError::NoLocalAvroSchema.into()),
            },
            Envelope::SingleObject { fingerprint, body } => {
                match self.local_avro.by_fingerprint.get(&fingerprint) {
                    Some(reader) => Ok(Decoded {
                        value: read_avro(reader, body, None)?,
                        schema: None,
                    }),
                    None => Err(DecodeError::UnknownFingerprint { fingerprint }.into()),
                }
            }
        }
    }
}

/// Whether a JSON text can start with this byte (whitespace, a value, or a UTF-8 BOM).
fn may_start_json(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'[' | b'"' | b'-' | b'0'
            ..=b'9' | b't' | b'f' | b'n' | 0xEF
    )
}

fn parse_json(bytes: &[u8], schema: Option<SchemaKey>) -> Result<Value, DecodeError> {
    serde_json::from_slice(bytes).map_err(|source| DecodeError::InvalidJson { source, schema })
}

fn read_avro(
    reader: &AvroReader,
    datum: &[u8],
    schema: Option<SchemaKey>,
) -> Result<Value, DecodeError> {
    reader
        .read(datum)
        .map_err(|source| DecodeError::Avro { source, schema })
}

fn validate(
    validator: &jsonschema::Validator,
    value: &Value,
    schema: Option<SchemaKey>,
    which: &'static str,
) -> Result<(), DecodeError> {
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
        schema,
        which,
    })
}

#[cfg(test)]
mod tests;
