//! The direct decoder against the generic path: random datums of representative schemas,
//! encoded by apache-avro, then truncated, extended, corrupted or replaced by garbage, must give
//! the same JSON or the same error both ways.

use std::collections::HashMap;

use apache_avro::schema::{Name, ResolvedSchema, UuidSchema};
use apache_avro::types::Value as AvroValue;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Schema};
use proptest::prelude::*;
use proptest::strategy::Union as OneOf;
use serde_json::json;

use super::*;
use crate::decode::avro::{AvroReader, generator_datum, parse_schema};
use crate::map::FieldPath;
use crate::record::{Fields, Scalar};

const GENERATOR: &str = include_str!("../../../../schemas/generator.avsc");

/// Every primitive, named and complex type, nested, with unions of null.
const KITCHEN_SINK: &str = r#"{"type": "record", "name": "Reading", "namespace": "test.sink",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "flag", "type": "boolean"},
    {"name": "count", "type": "int"},
    {"name": "total", "type": "long"},
    {"name": "ratio", "type": "float"},
    {"name": "value", "type": "double"},
    {"name": "raw", "type": "bytes"},
    {"name": "nothing", "type": "null"},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
    {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["OFF", "ON", "FAULT"]}},
    {"name": "site", "type": ["null", "string"]},
    {"name": "level", "type": ["null", "double", "string", "boolean"]},
    {"name": "location", "type": {"type": "record", "name": "Location", "namespace": "geo",
      "fields": [{"name": "lat", "type": "double"}, {"name": "lon", "type": "double"},
                 {"name": "fix", "type": ["null", {"type": "record", "name": "Fix",
                   "fields": [{"name": "satellites", "type": "int"}, {"name": "hdop", "type": "float"}]}]}]}},
    {"name": "samples", "type": {"type": "array", "items": "double"}},
    {"name": "tags", "type": {"type": "map", "values": "string"}},
    {"name": "events", "type": {"type": "array", "items": {"type": "record", "name": "Event",
      "fields": [{"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                 {"name": "note", "type": ["null", "string"]}]}}},
    {"name": "limits", "type": {"type": "map", "values": {"type": "array", "items": "long"}}},
    {"name": "nested", "type": {"type": "array", "items": {"type": "map", "values": ["null", "int"]}}}
  ]}"#;

/// Logical types with a JSON form.
const LOGICAL: &str = r#"{"type": "record", "name": "Times", "fields": [
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "tu", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "tsn", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
    {"name": "ltm", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "ltu", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
    {"name": "ltn", "type": {"type": "long", "logicalType": "local-timestamp-nanos"}},
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "fid", "type": {"type": "fixed", "name": "Fid", "size": 16, "logicalType": "uuid"}},
    {"name": "maybe", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]}
  ]}"#;

/// Decimals and durations, which have no JSON form the mapping could use.
const UNSUPPORTED: &str = r#"{"type": "record", "name": "Money", "fields": [
    {"name": "temperature", "type": "double"},
    {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}]},
    {"name": "fixed_amount", "type": ["null", {"type": "fixed", "name": "Amt", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4}]},
    {"name": "wait", "type": ["null", {"type": "fixed", "name": "Wait", "size": 12, "logicalType": "duration"}]},
    {"name": "after", "type": "float"}
  ]}"#;

/// A recursive type, reached through a reference to another schema.
const LIST_NODE: &str = r#"{"type": "record", "name": "Node", "namespace": "list", "fields": [
    {"name": "value", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]}"#;
const LIST: &str = r#"{"type": "record", "name": "List", "fields": [
    {"name": "name", "type": "string"}, {"name": "head", "type": ["null", "list.Node"]}]}"#;

/// A named type used twice in one schema: the second use is a reference to the first.
const REUSED_NAME: &str = r#"{"type": "record", "name": "Pair", "fields": [
    {"name": "first", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
    {"name": "second", "type": ["null", "Colour"]}]}"#;

/// A record of every scalar the flat reader takes: primitives, logical types stored in them,
/// enums and unions of scalars.
const FLAT: &str = r#"{"type": "record", "name": "Flat", "fields": [
    {"name": "id", "type": "string"},
    {"name": "flag", "type": "boolean"},
    {"name": "count", "type": "int"},
    {"name": "total", "type": "long"},
    {"name": "ratio", "type": "float"},
    {"name": "value", "type": "double"},
    {"name": "nothing", "type": "null"},
    {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["OFF", "ON", "FAULT"]}},
    {"name": "site", "type": ["null", "string"]},
    {"name": "level", "type": ["null", "double", "string", "boolean", "long"]},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "last", "type": ["null", "State"]}
  ]}"#;

/// Schemas that are not records.
const ROOTS: [&str; 5] = [
    r#"["null", "double"]"#,
    r#"{"type": "array", "items": "float"}"#,
    r#"{"type": "map", "values": "double"}"#,
    r#""string""#,
    r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#,
];

/// A schema under test: its text, its references, and what reads and writes it.
struct Case {
    schema: ParsedSchema,
    reader: AvroReader,
}

fn case(text: &str, references: &[&str]) -> Case {
    let references: Vec<String> = references.iter().map(|text| (*text).to_owned()).collect();
    let schema = parse_schema(text, &references).unwrap();
    let reader = AvroReader::new(schema, None).unwrap();
    assert!(reader.is_direct(), "{text} should decode directly");
    Case { schema, reader }
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        case(GENERATOR, &[]),
        case(KITCHEN_SINK, &[]),
        case(LOGICAL, &[]),
        case(UNSUPPORTED, &[]),
        case(LIST, &[LIST_NODE]),
        case(REUSED_NAME, &[]),
        case(FLAT, &[]),
    ];
    cases.extend(ROOTS.iter().map(|text| case(text, &[])));
    cases
}

impl Case {
    /// Every schema the datum may name, for writing: the referenced ones first, as names must
    /// be defined before they are used.
    fn schemata(&self) -> Vec<&'static Schema> {
        let mut schemata: Vec<&'static Schema> = self.schema.named.iter().collect();
        schemata.push(self.schema.schema);
        schemata
    }

    fn encode(&self, value: &AvroValue) -> Vec<u8> {
        apache_avro::writer::datum::GenericDatumWriter::builder(self.schema.schema)
            .schemata(self.schemata())
            .unwrap()
            .build()
            .unwrap()
            .write_value_to_vec(value.clone())
            .unwrap_or_else(|error| panic!("encoding {value:?}: {error}"))
    }

    fn values(&self) -> BoxedStrategy<AvroValue> {
        let resolved = ResolvedSchema::new_with_schemata(self.schemata()).unwrap();
        strategy(self.schema.schema, resolved.get_names(), None, 0, false)
    }
}

/// Random values of `schema`. `in_map`: no value that fails conversion, because which of
/// several failing map entries the generic path reports depends on `HashMap` order.
fn strategy(
    schema: &Schema,
    names: &HashMap<Name, &Schema>,
    namespace: Option<&str>,
    depth: usize,
    in_map: bool,
) -> BoxedStrategy<AvroValue> {
    // Deep enough to nest every type, shallow enough for recursive types to end.
    let deep = depth >= 4;
    match schema {
        Schema::Null => Just(AvroValue::Null).boxed(),
        Schema::Boolean => any::<bool>().prop_map(AvroValue::Boolean).boxed(),
        Schema::Int => small_or_any_i32().prop_map(AvroValue::Int).boxed(),
        Schema::Long => small_or_any_i64().prop_map(AvroValue::Long).boxed(),
        Schema::Date => small_or_any_i32().prop_map(AvroValue::Date).boxed(),
        Schema::TimeMillis => small_or_any_i32().prop_map(AvroValue::TimeMillis).boxed(),
        Schema::TimeMicros => small_or_any_i64().prop_map(AvroValue::TimeMicros).boxed(),
        Schema::TimestampMillis => small_or_any_i64()
            .prop_map(AvroValue::TimestampMillis)
            .boxed(),
        Schema::TimestampMicros => small_or_any_i64()
            .prop_map(AvroValue::TimestampMicros)
            .boxed(),
        Schema::TimestampNanos => small_or_any_i64()
            .prop_map(AvroValue::TimestampNanos)
            .boxed(),
        Schema::LocalTimestampMillis => small_or_any_i64()
            .prop_map(AvroValue::LocalTimestampMillis)
            .boxed(),
        Schema::LocalTimestampMicros => small_or_any_i64()
            .prop_map(AvroValue::LocalTimestampMicros)
            .boxed(),
        Schema::LocalTimestampNanos => small_or_any_i64()
            .prop_map(AvroValue::LocalTimestampNanos)
            .boxed(),
        Schema::Float => {
            if in_map {
                finite_f32().prop_map(AvroValue::Float).boxed()
            } else {
                prop_oneof![
                    8 => finite_f32(),
                    1 => Just(f32::NAN),
                    1 => prop_oneof![Just(f32::INFINITY), Just(f32::NEG_INFINITY)],
                ]
                .prop_map(AvroValue::Float)
                .boxed()
            }
        }
        Schema::Double => {
            if in_map {
                finite_f64().prop_map(AvroValue::Double).boxed()
            } else {
                prop_oneof![
                    8 => finite_f64(),
                    1 => Just(f64::NAN),
                    1 => prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
                ]
                .prop_map(AvroValue::Double)
                .boxed()
            }
        }
        Schema::Bytes => proptest::collection::vec(any::<u8>(), 0..12)
            .prop_map(AvroValue::Bytes)
            .boxed(),
        Schema::String => text().prop_map(AvroValue::String).boxed(),
        Schema::Fixed(fixed) => {
            let size = fixed.size;
            proptest::collection::vec(any::<u8>(), size)
                .prop_map(move |bytes| AvroValue::Fixed(size, bytes))
                .boxed()
        }
        Schema::Enum(schema) => {
            let symbols = schema.symbols.clone();
            (0..symbols.len())
                .prop_map(move |index| AvroValue::Enum(index as u32, symbols[index].clone()))
                .boxed()
        }
        Schema::Uuid(_) => any::<u128>()
            .prop_map(|bits| AvroValue::Uuid(apache_avro::Uuid::from_u128(bits)))
            .boxed(),
        Schema::Decimal(decimal) => {
            let size = match &decimal.inner {
                apache_avro::schema::InnerDecimalSchema::Fixed(fixed) => fixed.size,
                apache_avro::schema::InnerDecimalSchema::Bytes => 5,
            };
            proptest::collection::vec(any::<u8>(), size)
                .prop_map(|bytes| AvroValue::Decimal(Decimal::from(bytes)))
                .boxed()
        }
        Schema::Duration(_) => any::<(u32, u32, u32)>()
            .prop_map(|(months, days, millis)| {
                AvroValue::Duration(Duration::new(
                    Months::new(months),
                    Days::new(days),
                    Millis::new(millis),
                ))
            })
            .boxed(),
        Schema::BigDecimal => unreachable!("not among the test schemas"),
        Schema::Array(array) => {
            let items = strategy(&array.items, names, namespace, depth + 1, in_map);
            let length = if deep { 0..1 } else { 0..4 };
            proptest::collection::vec(items, length)
                .prop_map(AvroValue::Array)
                .boxed()
        }
        Schema::Map(map) => {
            let values = strategy(&map.types, names, namespace, depth + 1, true);
            let length = if deep { 0..1 } else { 0..4 };
            // Keys with `/` and `~`, which JSON Pointers escape.
            proptest::collection::hash_map("[a-c/~]{0,3}", values, length)
                .prop_map(AvroValue::Map)
                .boxed()
        }
        Schema::Union(union) => {
            let variants: Vec<BoxedStrategy<AvroValue>> = union
                .variants()
                .iter()
                .enumerate()
                .filter(|(_, variant)| !deep || matches!(variant, Schema::Null))
                .map(|(index, variant)| {
                    strategy(variant, names, namespace, depth + 1, in_map)
                        .prop_map(move |value| AvroValue::Union(index as u32, Box::new(value)))
                        .boxed()
                })
                .collect();
            OneOf::new(variants).boxed()
        }
        Schema::Record(record) => {
            let qualified = record.name.fully_qualified_name(namespace);
            let inner = qualified.namespace();
            let fields: Vec<(String, BoxedStrategy<AvroValue>)> = record
                .fields
                .iter()
                .map(|field| {
                    (
                        field.name.clone(),
                        strategy(&field.schema, names, inner, depth + 1, in_map),
                    )
                })
                .collect();
            let (names, values): (Vec<String>, Vec<_>) = fields.into_iter().unzip();
            values
                .prop_map(move |values| {
                    AvroValue::Record(names.iter().cloned().zip(values).collect())
                })
                .boxed()
        }
        Schema::Ref { name } => {
            let qualified = name.fully_qualified_name(namespace);
            let target = names
                .get(qualified.as_ref())
                .unwrap_or_else(|| panic!("{qualified:?} is not defined"));
            strategy(target, names, qualified.namespace(), depth + 1, in_map)
        }
    }
}

fn small_or_any_i32() -> impl Strategy<Value = i32> {
    prop_oneof![-300..300i32, any::<i32>()]
}

fn small_or_any_i64() -> impl Strategy<Value = i64> {
    prop_oneof![-300..300i64, any::<i64>()]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

fn finite_f32() -> impl Strategy<Value = f32> {
    use proptest::num::f32::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9 ]{0,10}", ".{0,6}"]
}

/// The keys a mapping might read of `case`: every field and one the schema lacks, or every
/// other field (the rest are decoded and skipped). Empty for a root that is not a record.
fn key_sets(case: &Case) -> [Vec<String>; 2] {
    let Schema::Record(record) = case.schema.schema else {
        return [Vec::new(), Vec::new()];
    };
    let names: Vec<String> = record
        .fields
        .iter()
        .map(|field| field.name.clone())
        .collect();
    let mut all = names.clone();
    all.push("absent".to_owned());
    [all, names.into_iter().step_by(2).collect()]
}

/// What the flat reader takes of `datum` is what the direct decoder gives, key by key: the
/// same scalar, numbers of the same kind and bits.
fn assert_flat_agrees(case: &Case, datum: &[u8], direct: &Result<Value, AvroError>) {
    for keys in key_sets(case) {
        let Some(flat) = case.reader.flat(&keys) else {
            continue;
        };
        let Some(record) = flat.read(datum) else {
            continue;
        };
        let Ok(object) = direct else {
            panic!("flat reader took {datum:02x?}, which decodes to {direct:?}");
        };
        for key in &keys {
            let path = FieldPath::Key(key.clone());
            let (taken, expected) = ((&record).get(&path), Fields::get(object, &path));
            assert_eq!(taken, expected, "key {key} of {datum:02x?}");
            if let (Some(Scalar::Number(taken, _)), Some(Scalar::Number(expected, _))) =
                (taken, expected)
            {
                assert_eq!(
                    (
                        taken.as_f64().map(f64::to_bits),
                        taken.is_u64(),
                        taken.is_i64()
                    ),
                    (
                        expected.as_f64().map(f64::to_bits),
                        expected.is_u64(),
                        expected.is_i64()
                    ),
                    "key {key} of {datum:02x?}"
                );
            }
        }
    }
}

/// A clean datum of a flat schema is taken flat.
fn assert_flat_takes_clean(case: &Case, datum: &[u8]) {
    if case.reader.read(datum).is_err() {
        return;
    }
    for keys in key_sets(case) {
        if let Some(flat) = case.reader.flat(&keys) {
            assert!(flat.read(datum).is_some(), "{datum:02x?} not taken flat");
        }
    }
}

/// The direct decoder gives what the generic path gives for `datum`, and the flat reader, for
/// schemas it takes, agrees.
fn assert_same(case: &Case, datum: &[u8]) {
    let direct = case.reader.read(datum);
    assert_flat_agrees(case, datum, &direct);
    let generic = case.reader.read_generic(datum);
    if direct == generic {
        return;
    }
    // Corrupted bytes can make several entries of one map fail conversion; the generic path
    // then reports whichever its HashMap yields first, so ask it again a few times.
    let conversion = |result: &Result<Value, AvroError>| {
        matches!(
            result,
            Err(AvroError::NonFinite { .. } | AvroError::Unsupported { .. })
        )
    };
    if conversion(&direct) && conversion(&generic) {
        for _ in 0..64 {
            if case.reader.read_generic(datum) == direct {
                return;
            }
        }
    }
    panic!(
        "datum {datum:02x?} of {:?}:\n direct: {direct:?}\ngeneric: {generic:?}",
        case.schema.schema
    );
}

/// Checks `datum` and what truncating, extending and corrupting it gives.
fn assert_same_mutated(case: &Case, datum: &[u8], position: usize, byte: u8) {
    assert_same(case, datum);
    for length in 0..datum.len() {
        assert_same(case, &datum[..length]);
    }
    let mut longer = datum.to_vec();
    longer.push(byte);
    assert_same(case, &longer);
    if !datum.is_empty() {
        let mut corrupted = datum.to_vec();
        corrupted[position % datum.len()] = byte;
        assert_same(case, &corrupted);
        corrupted[position % datum.len()] ^= 0x80;
        assert_same(case, &corrupted);
    }
}

/// One random valid datum of one of the test schemas, with a position and byte to corrupt.
fn datums() -> impl Strategy<Value = (usize, AvroValue, usize, u8)> {
    let cases = cases();
    let strategies: Vec<BoxedStrategy<(usize, AvroValue)>> = cases
        .iter()
        .enumerate()
        .map(|(index, case)| case.values().prop_map(move |value| (index, value)).boxed())
        .collect();
    (OneOf::new(strategies), any::<usize>(), any::<u8>())
        .prop_map(|((index, value), position, byte)| (index, value, position, byte))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Valid datums of every test schema, and every truncation and a few corruptions of them.
    #[test]
    fn direct_decoding_matches_the_generic_path((index, value, position, byte) in datums()) {
        let cases = cases();
        let case = &cases[index];
        let datum = case.encode(&value);
        assert_flat_takes_clean(case, &datum);
        assert_same_mutated(case, &datum, position, byte);
    }

    /// Bytes that were never Avro.
    #[test]
    fn garbage_decodes_the_same_way(
        index in any::<usize>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        let cases = cases();
        assert_same(&cases[index % cases.len()], &garbage);
    }
}

fn program(text: &str) -> Program {
    Program::compile(parse_schema(text, &[]).unwrap()).unwrap()
}

/// Avro's zig-zag varint.
fn long(value: i64) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if zigzag < 0x80 {
            bytes.push(zigzag as u8);
            return bytes;
        }
        bytes.push((zigzag as u8 & 0x7F) | 0x80);
        zigzag >>= 7;
    }
}

#[test]
fn generator_records_decode_to_the_documents_the_mapping_reads() {
    let generator = case(GENERATOR, &[]);
    let datum = generator_datum(generator.schema.schema, "gen-7", 400.5);
    assert_eq!(
        generator.reader.read(&datum).unwrap(),
        json!({"generatorID": "gen-7", "lat": 51.5, "lon": -0.12, "temperature": 36.2,
               "pressure": 1.02, "fuel": 400.5})
    );
}

/// A length or count prefix far beyond the datum is refused at once, without allocating what it
/// claims, with the generic path's message.
#[test]
fn huge_lengths_are_invalid_without_allocating() {
    let bytes = case(r#""bytes""#, &[]);
    for length in [1i64 << 28, 1 << 40, i64::MAX] {
        let datum = long(length);
        let error = bytes.reader.read(&datum).unwrap_err();
        assert!(matches!(error, AvroError::Invalid(_)), "{error:?}");
        if length <= 1 << 28 {
            // Within apache-avro's allocation limit the generic path allocates and fails; beyond
            // it, it refuses as this does. Both give the same message.
            assert_eq!(error, bytes.reader.read_generic(&datum).unwrap_err());
        } else {
            assert!(error.to_string().contains("Unable to allocate"), "{error}");
            assert_eq!(error, bytes.reader.read_generic(&datum).unwrap_err());
        }
    }
    let negative = long(-5);
    assert_eq!(
        bytes.reader.read(&negative),
        bytes.reader.read_generic(&negative)
    );

    let array = case(r#"{"type": "array", "items": "double"}"#, &[]);
    for count in [1i64 << 20, 1 << 26, 1 << 40, -(1 << 40), i64::MIN] {
        let mut datum = long(count);
        datum.extend_from_slice(&[0; 3]);
        let error = array.reader.read(&datum).unwrap_err();
        assert!(matches!(error, AvroError::Invalid(_)), "{error:?}");
        assert_eq!(error, array.reader.read_generic(&datum).unwrap_err());
    }
    let map = case(r#"{"type": "map", "values": "string"}"#, &[]);
    let mut datum = long(1 << 40);
    datum.push(2);
    assert!(
        matches!(map.reader.read(&datum), Err(AvroError::Invalid(m)) if m.contains("allocate"))
    );
    // A string cut off by the end of the datum is null on the generic path (apache-avro), even
    // when its length is huge; so it is here, without the allocation.
    let string = case(r#"["null", "string"]"#, &[]);
    let mut datum = vec![2];
    datum.extend(long(1 << 28));
    datum.extend_from_slice(b"abc");
    assert_eq!(string.reader.read(&datum).unwrap(), Value::Null);
    assert_eq!(string.reader.read_generic(&datum).unwrap(), Value::Null);
}

#[test]
fn trailing_bytes_are_refused_as_before() {
    let generator = program(GENERATOR);
    let mut datum = long(1);
    datum.push(b'g');
    datum.extend_from_slice(&[0; 5 * 8]);
    assert!(generator.read(&datum).is_ok());
    datum.extend_from_slice(&[7, 7]);
    assert_eq!(
        generator.read(&datum).unwrap_err().to_string(),
        "2 bytes left over after the record: written with a different schema?"
    );
}

/// Conversion errors carry the JSON Pointer of the value, escaped, and come after decoding
/// errors and left-over bytes, as when conversion was a second pass.
#[test]
fn conversion_errors_name_their_path_and_wait_for_decoding() {
    let schema = r#"{"type": "record", "name": "R", "fields": [
        {"name": "m", "type": {"type": "map", "values": {"type": "array", "items": "float"}}},
        {"name": "d", "type": "double"}]}"#;
    let reader = case(schema, &[]).reader;
    let nan = f32::NAN.to_le_bytes();
    // m = {"a/b~c": [1.0, NaN]}, d = inf
    let mut datum = long(1);
    datum.extend(long(5));
    datum.extend_from_slice(b"a/b~c");
    datum.extend(long(2));
    datum.extend_from_slice(&1.0f32.to_le_bytes());
    datum.extend_from_slice(&nan);
    datum.extend(long(0));
    datum.extend(long(0));
    datum.extend_from_slice(&f64::INFINITY.to_le_bytes());
    let error = reader.read(&datum).unwrap_err();
    assert_eq!(
        error.to_string(),
        "at /m/a~1b~0c/1: NaN is not a finite number"
    );
    assert_eq!(error, reader.read_generic(&datum).unwrap_err());
    // The same with a byte too many: the left-over bytes are the error.
    datum.push(0);
    let error = reader.read(&datum).unwrap_err();
    assert!(matches!(&error, AvroError::Invalid(m) if m.contains("left over")));
    assert_eq!(error, reader.read_generic(&datum).unwrap_err());
    // Cut short inside `d`: decoding fails, and that is the error.
    datum.truncate(datum.len() - 3);
    let error = reader.read(&datum).unwrap_err();
    assert!(matches!(&error, AvroError::Invalid(m) if m.contains("double")));
    assert_eq!(error, reader.read_generic(&datum).unwrap_err());

    let root = case(r#""float""#, &[]).reader;
    let error = root.read(&f32::NEG_INFINITY.to_le_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "at /: -inf is not a finite number");

    let unsupported = case(UNSUPPORTED, &[]).reader;
    let mut datum = 1.5f64.to_le_bytes().to_vec();
    datum.extend(long(0));
    datum.extend(long(1));
    datum.extend_from_slice(&[0; 8]);
    datum.extend(long(0));
    datum.extend_from_slice(&0.5f32.to_le_bytes());
    let error = unsupported.read(&datum).unwrap_err();
    assert_eq!(
        error.to_string(),
        "at /fixed_amount: Avro decimal values are not supported"
    );
    assert_eq!(error, unsupported.read_generic(&datum).unwrap_err());
}

/// apache-avro keeps the last of repeated map keys, and converts only what it kept.
#[test]
fn a_repeated_map_key_replaces_the_entry_and_its_error() {
    let reader = case(r#"{"type": "map", "values": "double"}"#, &[]).reader;
    let entry = |key: &str, value: f64| {
        let mut bytes = long(key.len() as i64);
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
        bytes
    };
    // {"k": NaN, "k": 1.0}: the NaN is replaced.
    let mut datum = long(2);
    datum.extend(entry("k", f64::NAN));
    datum.extend(entry("k", 1.0));
    datum.extend(long(0));
    assert_eq!(reader.read(&datum).unwrap(), json!({"k": 1.0}));
    assert_eq!(reader.read_generic(&datum).unwrap(), json!({"k": 1.0}));
    // {"k": 1.0} then, in a second block, {"k": inf}: the infinity stays.
    let mut datum = long(1);
    datum.extend(entry("k", 1.0));
    datum.extend(long(-1));
    datum.extend(long(9));
    datum.extend(entry("k", f64::INFINITY));
    datum.extend(long(0));
    let error = reader.read(&datum).unwrap_err();
    assert_eq!(error.to_string(), "at /k: inf is not a finite number");
    assert_eq!(error, reader.read_generic(&datum).unwrap_err());
    // Two failing keys: the generic path reports either; this reports the smaller key.
    let mut datum = long(2);
    datum.extend(entry("b", f64::NAN));
    datum.extend(entry("a", f64::NAN));
    datum.extend(long(0));
    assert_eq!(
        reader.read(&datum).unwrap_err().to_string(),
        "at /a: NaN is not a finite number"
    );
}

/// What apache-avro reads from a datum cut short, the direct decoder reads too: a boolean, a
/// union index or a string body cut off is null, anything else is an error.
#[test]
fn truncation_keeps_apache_avros_reading() {
    let schema = r#"{"type": "record", "name": "T", "fields": [
        {"name": "s", "type": "string"}, {"name": "b", "type": "boolean"},
        {"name": "u", "type": ["long", "null"]}]}"#;
    let reader = case(schema, &[]).reader;
    let datum = [long(3), b"abc".to_vec(), vec![1], long(0), long(5)].concat();
    assert_eq!(
        reader.read(&datum).unwrap(),
        json!({"s": "abc", "b": true, "u": 5})
    );
    for length in 0..datum.len() {
        let cut = &datum[..length];
        assert_eq!(
            reader.read(cut),
            reader.read_generic(cut),
            "cut at {length}"
        );
    }
    // Cut inside the string: every field is null.
    assert_eq!(
        reader.read(&datum[..2]).unwrap(),
        json!({"s": null, "b": null, "u": null})
    );
}

#[test]
fn varints_overflow_and_end_as_apache_avro_reads_them() {
    let reader = case(r#""long""#, &[]).reader;
    for datum in [
        vec![0x80; 9],
        vec![0x80; 10],
        vec![0x80; 11],
        [vec![0xFF; 9], vec![0x01]].concat(),
        [vec![0xFF; 9], vec![0x7F]].concat(),
        vec![],
    ] {
        assert_eq!(
            reader.read(&datum),
            reader.read_generic(&datum),
            "{datum:02x?}"
        );
    }
    let union = case(r#"["null", "long"]"#, &[]).reader;
    for datum in [
        vec![0x80],
        vec![0x80; 10],
        vec![0x03],
        vec![0x04],
        vec![0x01],
    ] {
        assert_eq!(
            union.read(&datum),
            union.read_generic(&datum),
            "{datum:02x?}"
        );
    }
    let int = case(r#""int""#, &[]).reader;
    let datum = long(i64::from(i32::MAX) + 1);
    assert_eq!(int.read(&datum), int.read_generic(&datum));
    let enumeration = case(r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#, &[]).reader;
    for datum in [long(1), long(-1), long(1 << 40)] {
        assert_eq!(enumeration.read(&datum), enumeration.read_generic(&datum));
    }
    let uuid = case(LOGICAL, &[]).reader;
    let mut datum = [0u8; 9].to_vec();
    datum.extend(long(3));
    datum.extend_from_slice(b"xyz");
    assert_eq!(uuid.read(&datum), uuid.read_generic(&datum));
    // A uuid string cut off: apache-avro's error for it has its own wording.
    let cut = [0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let error = uuid.read(&cut).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Failed to read bytes: unexpected end of file"
    );
    assert_eq!(error, uuid.read_generic(&cut).unwrap_err());
}

/// A recursive schema decodes through its cycle, but not deeper than the stack allows.
#[test]
fn recursion_is_followed_and_bounded() {
    let list = case(LIST, &[LIST_NODE]);
    // name "l", head = Node(1) -> Node(2) -> null
    let datum = [
        long(1),
        b"l".to_vec(),
        long(1),
        long(1),
        long(1),
        long(2),
        long(0),
    ]
    .concat();
    let value = list.reader.read(&datum).unwrap();
    assert_eq!(
        value,
        json!({"name": "l", "head": {"value": 1, "next": {"value": 2, "next": null}}})
    );
    assert_eq!(value, list.reader.read_generic(&datum).unwrap());
    let mut deep = [long(1), b"l".to_vec()].concat();
    for _ in 0..MAX_DEPTH {
        deep.extend(long(1));
        deep.extend(long(7));
    }
    deep.extend(long(0));
    let error = list.reader.read(&deep).unwrap_err();
    assert!(
        matches!(&error, AvroError::Invalid(m) if m.contains("nested")),
        "{error}"
    );
}

#[test]
fn big_decimal_keeps_the_generic_path() {
    let schema = parse_schema(r#"{"type": "bytes", "logicalType": "big-decimal"}"#, &[]).unwrap();
    assert_eq!(
        Program::compile(schema).unwrap_err(),
        CompileError::NotCovered("big-decimal")
    );
    assert!(!AvroReader::new(schema, None).unwrap().is_direct());
}

#[test]
fn resolution_keeps_the_generic_path() {
    let writer = parse_schema(GENERATOR, &[]).unwrap();
    let reader = parse_schema(
        r#"{"type": "record", "name": "Generator", "namespace": "io.kafka_influx_sink.generator",
            "fields": [{"name": "fuel", "type": "double"}]}"#,
        &[],
    )
    .unwrap();
    assert!(!AvroReader::new(writer, Some(reader)).unwrap().is_direct());
    assert!(AvroReader::new(writer, Some(writer)).unwrap().is_direct());
}

#[test]
fn uuids_and_fixed_bytes_read_as_before() {
    let uuid = case(r#"{"type": "string", "logicalType": "uuid"}"#, &[]).reader;
    let text = "0E3D3C8C-6B1B-4C50-8B1A-000000000001";
    let datum = [long(text.len() as i64), text.as_bytes().to_vec()].concat();
    assert_eq!(
        uuid.read(&datum).unwrap(),
        json!("0e3d3c8c-6b1b-4c50-8b1a-000000000001")
    );
    assert_eq!(uuid.read(&datum), uuid.read_generic(&datum));
    let fixed = case(r#"{"type": "fixed", "name": "F", "size": 3}"#, &[]).reader;
    assert_eq!(
        fixed.read(&[0, 0x7F, 0xFF]).unwrap(),
        json!("\u{0}\u{7f}\u{ff}")
    );
    assert_eq!(
        case(
            r#"{"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}"#,
            &[]
        )
        .reader
        .read(&[0xAB; 16])
        .unwrap(),
        json!("abababab-abab-abab-abab-abababababab")
    );
    let not_utf8 = case(r#""string""#, &[]).reader;
    let datum = [long(2), vec![0xC3, 0x28]].concat();
    assert_eq!(
        not_utf8.read(&datum).unwrap_err().to_string(),
        "Invalid utf-8 string"
    );
    assert_eq!(not_utf8.read(&datum), not_utf8.read_generic(&datum));
}

#[test]
fn uuid_schema_kinds_are_compiled() {
    // Keep the match in `build` honest: every kind the parser produces has a node.
    let fixed = parse_schema(
        r#"{"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}"#,
        &[],
    )
    .unwrap();
    assert!(matches!(fixed.schema, Schema::Uuid(UuidSchema::Fixed(_))));
    assert!(Program::compile(fixed).is_ok());
}

#[test]
fn records_of_scalars_are_read_flat_and_others_are_not() {
    let keys = |names: &[&str]| {
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>()
    };
    for text in [GENERATOR, FLAT, REUSED_NAME] {
        assert!(
            case(text, &[]).reader.flat(&keys(&["id"])).is_some(),
            "{text}"
        );
    }
    // Nested records, arrays, maps, bytes, uuids, decimals, and roots that are not records.
    for text in [KITCHEN_SINK, LOGICAL, UNSUPPORTED]
        .into_iter()
        .chain(ROOTS)
    {
        assert!(
            case(text, &[]).reader.flat(&keys(&["id"])).is_none(),
            "{text}"
        );
    }
    assert!(
        case(LIST, &[LIST_NODE])
            .reader
            .flat(&keys(&["name"]))
            .is_none()
    );
}

#[test]
fn a_generator_record_read_flat_holds_what_the_mapping_reads() {
    let generator = case(GENERATOR, &[]);
    let datum = generator_datum(generator.schema.schema, "gen-7", 400.5);
    let keys: Vec<String> = ["generatorID", "fuel", "site"].map(str::to_owned).to_vec();
    let flat = generator.reader.flat(&keys).unwrap();
    let read = flat.read(&datum).unwrap();
    let get = |key: &str| (&read).get(&FieldPath::Key(key.to_owned()));
    assert_eq!(get("generatorID"), Some(Scalar::String("gen-7")));
    assert_eq!(
        get("fuel"),
        Some(Scalar::Number(&Number::from_f64(400.5).unwrap(), None))
    );
    assert_eq!(get("site"), None);
    // Bytes left over, a cut-off datum and a NaN all go the other way.
    assert!(flat.read(&[datum.as_slice(), &[0]].concat()).is_none());
    assert!(flat.read(&datum[..datum.len() - 1]).is_none());
    let nan = generator_datum(generator.schema.schema, "gen-7", f64::NAN);
    assert!(flat.read(&nan).is_none());
    assert!(matches!(
        generator.reader.read(&nan),
        Err(AvroError::NonFinite { .. })
    ));
}
/// A schema's second use of a type it defines itself is a reference to it. Both paths once
/// refused every such record as an unresolved reference, with registry references or without.
#[test]
fn a_named_type_used_twice_decodes_on_both_paths() {
    // first: GREEN (index 1); second: the union's `Colour` branch, RED.
    let datum = [2u8, 2, 0];
    let expected = json!({"first": "GREEN", "second": "RED"});
    let reused = case(REUSED_NAME, &[]);
    assert_eq!(reused.reader.read(&datum).unwrap(), expected);
    assert_eq!(reused.reader.read_generic(&datum).unwrap(), expected);
    let with_reference = r#"{"type": "record", "name": "Pair", "fields": [
        {"name": "first", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
        {"name": "second", "type": ["null", "Colour"]},
        {"name": "head", "type": ["null", "list.Node"]}]}"#;
    let referencing = case(with_reference, &[LIST_NODE]);
    let datum = [2u8, 2, 0, 0];
    let expected = json!({"first": "GREEN", "second": "RED", "head": null});
    assert_eq!(referencing.reader.read(&datum).unwrap(), expected);
    assert_eq!(referencing.reader.read_generic(&datum).unwrap(), expected);
}
