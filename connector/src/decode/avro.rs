//! Avro: reading a datum with its writer schema, resolving it to the optional reader schema, and
//! turning the result into the JSON document the mapping reads.
//!
//! Schemas live as long as the process: registry schemas are cached by id for its life and local
//! ones are loaded once, so they are leaked to `'static`, which lets one prepared
//! [`AvroReader`] per schema be built once and shared, instead of resolving names per record.
//!
//! When no resolution is needed (no reader schema, or the writer's own), the reader decodes
//! with a program compiled from the writer schema (`decode/avro_direct.rs`), straight into JSON,
//! in about half the instructions; the generic path here remains for resolution and for the few
//! schemas the program does not cover, and gives the same results.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as AvroValue;
use serde_json::{Map, Number, Value};

use super::avro_direct::Program;
use super::avro_direct::flat::FlatAvro;

/// Why an Avro datum could not become a JSON document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvroError {
    /// The bytes do not decode with the writer schema (truncated, wrong schema, garbage), or the
    /// value does not resolve to the reader schema.
    #[error("{0}")]
    Invalid(String),
    /// A float or double that JSON and InfluxDB cannot hold.
    #[error("at {path}: {value} is not a finite number")]
    NonFinite {
        /// JSON Pointer of the value.
        path: String,
        /// `NaN`, `inf` or `-inf`.
        value: String,
    },
    /// A value with no JSON form the mapping could use.
    #[error("at {path}: Avro {kind} values are not supported")]
    Unsupported {
        /// JSON Pointer of the value.
        path: String,
        /// The Avro type.
        kind: &'static str,
    },
}

/// Parses a schema and the schemas it references, for the life of the process.
pub fn parse_schema(text: &str, references: &[String]) -> Result<ParsedSchema, String> {
    let (schema, named) = if references.is_empty() {
        (Schema::parse_str(text), Vec::new())
    } else {
        match Schema::parse_str_with_list(text, references) {
            Ok((schema, named)) => (Ok(schema), named),
            Err(error) => (Err(error), Vec::new()),
        }
    };
    let schema = schema.map_err(|error| error.to_string())?;
    Ok(ParsedSchema {
        schema: Box::leak(Box::new(schema)),
        named: Box::leak(named.into_boxed_slice()),
    })
}

/// A parsed Avro schema with the named schemas it references.
#[derive(Debug, Clone, Copy)]
pub struct ParsedSchema {
    /// The schema.
    pub schema: &'static Schema,
    /// The schemas its references name.
    pub named: &'static [Schema],
}

impl ParsedSchema {
    /// Every schema whose named types a datum of this one may refer to: the referenced ones
    /// and the schema itself. Without itself, a second use of a type it defines (an enum on
    /// two fields) is an unresolved reference on every record.
    pub fn schemata(&self) -> Vec<&'static Schema> {
        self.named.iter().chain([self.schema]).collect()
    }

    /// The CRC-64-AVRO (Rabin) fingerprint as single-object encoding writes it (little-endian).
    pub fn single_object_fingerprint(&self) -> [u8; 8] {
        let fingerprint = self.schema.fingerprint::<apache_avro::rabin::Rabin>();
        let mut bytes = [0u8; 8];
        for (slot, byte) in bytes.iter_mut().zip(fingerprint.bytes.iter()) {
            *slot = *byte;
        }
        bytes
    }
}

/// Reads datums written with one writer schema, resolved to an optional reader schema.
pub struct AvroReader {
    /// apache-avro's reader: the path for resolution, and for schemas `direct` does not cover.
    reader: GenericDatumReader<'static>,
    /// The writer schema compiled for decoding straight into JSON, when nothing is resolved.
    direct: Option<Program>,
}

impl std::fmt::Debug for AvroReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroReader")
            .field("direct", &self.direct.is_some())
            .finish_non_exhaustive()
    }
}

impl AvroReader {
    /// A reader for `writer`'s datums, resolved to `reader` when given.
    pub fn new(writer: ParsedSchema, reader: Option<ParsedSchema>) -> Result<Self, String> {
        // Resolving a datum to the schema it was written with changes nothing but costs a map
        // of field names per record; producers mostly write with the reader schema itself.
        let reader = reader.filter(|reader| !same_schema(writer, *reader));
        let builder = GenericDatumReader::builder(writer.schema)
            .writer_schemata(writer.schemata())
            .map_err(|error| error.to_string())?;
        let built = match reader {
            Some(reader) => builder
                .reader_schema(reader.schema)
                .reader_schemata(reader.schemata())
                .map_err(|error| error.to_string())?
                .build(),
            None => builder.build(),
        };
        // Decided once per schema: a schema the program does not cover keeps the generic path
        // for every record, never some records one way and some the other.
        let direct = match reader {
            Some(_) => None,
            None => match Program::compile(writer) {
                Ok(program) => Some(program),
                Err(reason) => {
                    tracing::debug!(%reason, "Avro records of this schema take the generic decoder");
                    None
                }
            },
        };
        Ok(Self {
            reader: built.map_err(|error| error.to_string())?,
            direct,
        })
    }

    /// Decodes one datum, which must use every byte, into JSON.
    pub fn read(&self, datum: &[u8]) -> Result<Value, AvroError> {
        match &self.direct {
            Some(program) => program.read(datum),
            None => self.read_generic(datum),
        }
    }

    /// The flat reader for a mapping that reads `keys`, when records are decoded directly and
    /// the schema is a record of scalars (see [`FlatAvro`]).
    pub fn flat(&self, keys: &[String]) -> Option<FlatAvro> {
        self.direct.as_ref()?.flat(keys)
    }

    /// Whether records are decoded by the compiled program rather than the generic reader.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Decodes one datum with apache-avro's generic reader (and resolution), then converts the
    /// value to JSON: what [`AvroReader::read`] does when it cannot decode directly, and what
    /// the direct decoder is tested against.
    pub fn read_generic(&self, datum: &[u8]) -> Result<Value, AvroError> {
        let mut rest = datum;
        let value = self
            .reader
            .read_value(&mut rest)
            .map_err(|error| AvroError::Invalid(error.to_string()))?;
        if !rest.is_empty() {
            return Err(left_over(rest.len()));
        }
        let mut path = String::new();
        to_json(value, &mut path)
    }
}

/// The error for bytes left after the datum. They mean it was written with another schema;
/// decoding it anyway would produce plausible, wrong values.
pub(super) fn left_over(bytes: usize) -> AvroError {
    AvroError::Invalid(format!(
        "{bytes} bytes left over after the record: written with a different schema?"
    ))
}

/// Whether two schemas are the same in every respect resolution looks at (names, types,
/// logical types, defaults, aliases), as apache-avro itself represents them. Schemas with
/// references are never taken as the same: their named types would have to match too.
fn same_schema(writer: ParsedSchema, reader: ParsedSchema) -> bool {
    if !writer.named.is_empty() || !reader.named.is_empty() {
        return false;
    }
    match (
        serde_json::to_value(writer.schema),
        serde_json::to_value(reader.schema),
    ) {
        (Ok(writer), Ok(reader)) => writer == reader,
        _ => false,
    }
}

/// Converts a decoded Avro value into JSON: records and maps become objects, unions their
/// branch, enums their symbol, bytes and fixed a string of code points 0-255 (Avro's own JSON
/// encoding), logical types their underlying number. `path` is the JSON Pointer so far.
fn to_json(value: AvroValue, path: &mut String) -> Result<Value, AvroError> {
    Ok(match value {
        AvroValue::Null => Value::Null,
        AvroValue::Boolean(flag) => Value::Bool(flag),
        AvroValue::Int(number) | AvroValue::Date(number) | AvroValue::TimeMillis(number) => {
            Value::from(number)
        }
        AvroValue::Long(number)
        | AvroValue::TimeMicros(number)
        | AvroValue::TimestampMillis(number)
        | AvroValue::TimestampMicros(number)
        | AvroValue::TimestampNanos(number)
        | AvroValue::LocalTimestampMillis(number)
        | AvroValue::LocalTimestampMicros(number)
        | AvroValue::LocalTimestampNanos(number) => Value::from(number),
        AvroValue::Float(number) => finite(f64::from(number), path)?,
        AvroValue::Double(number) => finite(number, path)?,
        AvroValue::Bytes(bytes) | AvroValue::Fixed(_, bytes) => {
            Value::String(bytes.iter().map(|&byte| char::from(byte)).collect())
        }
        AvroValue::String(text) | AvroValue::Enum(_, text) => Value::String(text),
        AvroValue::Uuid(uuid) => Value::String(uuid.to_string()),
        AvroValue::BigDecimal(decimal) => Value::String(decimal.to_string()),
        AvroValue::Union(_, inner) => to_json(*inner, path)?,
        AvroValue::Array(items) => {
            let mut array = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let length = path.len();
                path.push('/');
                path.push_str(itoa::Buffer::new().format(index));
                array.push(to_json(item, path)?);
                path.truncate(length);
            }
            Value::Array(array)
        }
        AvroValue::Map(entries) => object(entries.into_iter(), path)?,
        AvroValue::Record(fields) => object(fields.into_iter(), path)?,
        AvroValue::Decimal(_) => return Err(unsupported(path, "decimal")),
        AvroValue::Duration(_) => return Err(unsupported(path, "duration")),
    })
}

fn object(
    entries: impl Iterator<Item = (String, AvroValue)>,
    path: &mut String,
) -> Result<Value, AvroError> {
    let mut object = Map::new();
    for (key, value) in entries {
        let length = path.len();
        push_pointer_token(path, &key);
        let value = to_json(value, path)?;
        path.truncate(length);
        object.insert(key, value);
    }
    Ok(Value::Object(object))
}

/// Appends `/key` to a JSON Pointer, escaping `~` and `/` (RFC 6901) without allocating: on the
/// generic path this runs for every field of every record, the pointer only for the rare error
/// message.
pub(super) fn push_pointer_token(path: &mut String, key: &str) {
    path.push('/');
    if !key.bytes().any(|byte| byte == b'~' || byte == b'/') {
        path.push_str(key);
        return;
    }
    for character in key.chars() {
        match character {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            other => path.push(other),
        }
    }
}

fn finite(number: f64, path: &str) -> Result<Value, AvroError> {
    Number::from_f64(number)
        .map(Value::Number)
        .ok_or_else(|| AvroError::NonFinite {
            path: pointer_or_root(path),
            value: number.to_string(),
        })
}

fn unsupported(path: &str, kind: &'static str) -> AvroError {
    AvroError::Unsupported {
        path: pointer_or_root(path),
        kind,
    }
}

pub(super) fn pointer_or_root(path: &str) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        path.to_owned()
    }
}

/// Encodes one datum the way producers do (tests).
#[cfg(test)]
pub(crate) fn encode_datum(
    schema: &Schema,
    value: impl Into<AvroValue>,
) -> apache_avro::AvroResult<Vec<u8>> {
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()?
        .write_value_to_vec(value)
}

/// A generator reading with this id and fuel level, encoded with `schema` (tests).
#[cfg(test)]
pub(crate) fn generator_datum(schema: &Schema, id: &str, fuel: f64) -> Vec<u8> {
    let mut record = apache_avro::types::Record::new(schema)
        .unwrap_or_else(|| panic!("not a record schema: {schema:?}"));
    record.put("generatorID", id);
    record.put("lat", 51.5);
    record.put("lon", -0.12);
    record.put("temperature", 36.2);
    record.put("pressure", 1.02);
    record.put("fuel", fuel);
    encode_datum(schema, record).unwrap_or_else(|error| panic!("encoding a reading: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Record;
    use serde_json::json;

    const GENERATOR: &str = include_str!("../../../schemas/generator.avsc");

    fn parsed(text: &str) -> ParsedSchema {
        parse_schema(text, &[]).unwrap()
    }

    #[test]
    fn decodes_a_generator_record_to_json() {
        let schema = parsed(GENERATOR);
        let reader = AvroReader::new(schema, None).unwrap();
        let value = reader
            .read(&generator_datum(schema.schema, "gen-7", 400.5))
            .unwrap();
        assert_eq!(
            value,
            json!({"generatorID": "gen-7", "lat": 51.5, "lon": -0.12, "temperature": 36.2,
                   "pressure": 1.02, "fuel": 400.5})
        );
    }

    #[test]
    fn left_over_bytes_and_truncation_are_invalid() {
        let schema = parsed(GENERATOR);
        let reader = AvroReader::new(schema, None).unwrap();
        let mut datum = generator_datum(schema.schema, "gen-7", 1.0);
        datum.push(0);
        assert!(
            matches!(reader.read(&datum), Err(AvroError::Invalid(m)) if m.contains("left over"))
        );
        datum.truncate(datum.len() - 5);
        assert!(matches!(reader.read(&datum), Err(AvroError::Invalid(_))));
        assert!(matches!(reader.read(&[]), Err(AvroError::Invalid(_))));
    }

    #[test]
    fn nan_is_refused_with_its_path() {
        let schema = parsed(GENERATOR);
        let reader = AvroReader::new(schema, None).unwrap();
        let error = reader
            .read(&generator_datum(schema.schema, "gen-7", f64::NAN))
            .unwrap_err();
        assert_eq!(
            error,
            AvroError::NonFinite {
                path: "/fuel".into(),
                value: "NaN".into()
            }
        );
    }

    #[test]
    fn a_reader_schema_equal_to_the_writer_is_not_resolved_to() {
        let generator = parsed(GENERATOR);
        assert!(same_schema(generator, parsed(GENERATOR)));
        // Same canonical form, but a logical type, a default or a doc differ: resolved.
        let long =
            parsed(r#"{"type": "record", "name": "R", "fields": [{"name": "t", "type": "long"}]}"#);
        let timestamp = parsed(
            r#"{"type": "record", "name": "R", "fields": [{"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#,
        );
        let defaulted = parsed(
            r#"{"type": "record", "name": "R", "fields": [{"name": "t", "type": "long", "default": 0}]}"#,
        );
        assert!(!same_schema(long, timestamp));
        assert!(!same_schema(long, defaulted));
        let datum = generator_datum(generator.schema, "gen-7", 400.5);
        let resolved = AvroReader::new(generator, Some(parsed(GENERATOR))).unwrap();
        let plain = AvroReader::new(generator, None).unwrap();
        assert_eq!(resolved.read(&datum).unwrap(), plain.read(&datum).unwrap());
    }

    /// A producer that adds an optional field, widens float to double and int to long keeps
    /// working against an older reader schema, and an older writer against a newer reader
    /// (the new field takes its default).
    #[test]
    fn schema_evolution_resolves_to_the_reader_schema() {
        let old = parsed(
            r#"{"type": "record", "name": "G", "fields": [
                {"name": "id", "type": "string"},
                {"name": "fuel", "type": "float"},
                {"name": "count", "type": "int"}]}"#,
        );
        let new = parsed(
            r#"{"type": "record", "name": "G", "fields": [
                {"name": "id", "type": "string"},
                {"name": "fuel", "type": "double"},
                {"name": "count", "type": "long"},
                {"name": "site", "type": ["null", "string"], "default": null}]}"#,
        );
        let mut record = Record::new(old.schema).unwrap();
        record.put("id", "g1");
        record.put("fuel", 12.5f32);
        record.put("count", 3i32);
        let old_datum = encode_datum(old.schema, record).unwrap();
        let value = AvroReader::new(old, Some(new))
            .unwrap()
            .read(&old_datum)
            .unwrap();
        assert_eq!(
            value,
            json!({"id": "g1", "fuel": 12.5, "count": 3, "site": null})
        );

        let mut record = Record::new(new.schema).unwrap();
        record.put("id", "g2");
        record.put("fuel", 7.25f64);
        record.put("count", 4i64);
        record.put(
            "site",
            AvroValue::Union(1, Box::new(AvroValue::String("north".into()))),
        );
        let new_datum = encode_datum(new.schema, record).unwrap();
        // A newer writer read with the newer schema as reader keeps its new field.
        let value = AvroReader::new(new, Some(new))
            .unwrap()
            .read(&new_datum)
            .unwrap();
        assert_eq!(
            value,
            json!({"id": "g2", "fuel": 7.25, "count": 4, "site": "north"})
        );
    }

    #[test]
    fn references_resolve_named_types() {
        let address = r#"{"type": "record", "name": "Location", "namespace": "geo",
            "fields": [{"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}]}"#;
        let main = parse_schema(
            r#"{"type": "record", "name": "G", "fields": [
                {"name": "id", "type": "string"}, {"name": "at", "type": "geo.Location"}]}"#,
            &[address.to_owned()],
        )
        .unwrap();
        let location = parsed(address);
        let mut at = Record::new(location.schema).unwrap();
        at.put("lat", 1.5);
        at.put("lon", 2.5);
        let datum = {
            let mut bytes = Vec::new();
            bytes.extend(encode_datum(&Schema::String, AvroValue::String("g".into())).unwrap());
            bytes.extend(encode_datum(location.schema, at).unwrap());
            bytes
        };
        let value = AvroReader::new(main, None).unwrap().read(&datum).unwrap();
        assert_eq!(value, json!({"id": "g", "at": {"lat": 1.5, "lon": 2.5}}));
    }

    #[test]
    fn every_avro_type_has_a_json_form_or_a_reason() {
        let mut path = String::new();
        let value = to_json(
            AvroValue::Record(vec![
                ("b".into(), AvroValue::Bytes(vec![0, 255])),
                ("e".into(), AvroValue::Enum(1, "ON".into())),
                ("t".into(), AvroValue::TimestampMillis(1_700_000_000_000)),
                (
                    "a/x".into(),
                    AvroValue::Array(vec![AvroValue::Null, AvroValue::Boolean(true)]),
                ),
            ]),
            &mut path,
        )
        .unwrap();
        assert_eq!(
            value,
            json!({"b": "\u{0}\u{ff}", "e": "ON", "t": 1_700_000_000_000i64, "a/x": [null, true]})
        );
        let error = to_json(
            AvroValue::Record(vec![(
                "list".into(),
                AvroValue::Array(vec![AvroValue::Float(f32::INFINITY)]),
            )]),
            &mut String::new(),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "at /list/0: inf is not a finite number");
        let error = to_json(
            AvroValue::Map(
                [("a/b~c".to_owned(), AvroValue::Double(f64::NAN))]
                    .into_iter()
                    .collect(),
            ),
            &mut String::new(),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "at /a~1b~0c: NaN is not a finite number");
    }

    #[test]
    fn single_object_fingerprint_matches_the_spec_encoding() {
        // Avro's spec: the fingerprint of the schema "int" is 0x7275d51a3f395c8f as a 64-bit
        // number, written little-endian after the marker.
        let fingerprint = parsed(r#""int""#).single_object_fingerprint();
        assert_eq!(u64::from_le_bytes(fingerprint), 0x7275_d51a_3f39_5c8f);
    }
}
