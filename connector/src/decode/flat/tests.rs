use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::line_protocol;
use crate::map::{
    Field, FieldPath, FieldType, FlatLine, KafkaContext, Mapping, Measurement, NoHeaders, Tag,
    TagSource, TimestampSource,
};

fn generator_schema() -> Value {
    serde_json::from_str(include_str!("../../../../schemas/generator.schema.json")).unwrap()
}

fn layout(schema: &Value, keys: &[&str]) -> FlatLayout {
    let schema = FlatSchema::compile(schema).expect("schema in the subset");
    FlatLayout::new(
        keys.iter().map(|key| (*key).to_owned()).collect(),
        Some(&schema),
    )
    .expect("layout")
}

/// The keys the generator mapping reads.
const GENERATOR_KEYS: [&str; 6] = [
    "fuel",
    "generatorID",
    "lat",
    "lon",
    "pressure",
    "temperature",
];

/// The generator schema's layout for the generator mapping.
fn generator_layout() -> FlatLayout {
    layout(&generator_schema(), &GENERATOR_KEYS)
}

fn kafka() -> KafkaContext<'static> {
    KafkaContext {
        topic: "t",
        partition: 0,
        offset: 7,
        timestamp_ms: Some(1_700_000_000_000),
        key: None,
        headers: &NoHeaders,
    }
}

#[test]
fn the_generator_schema_compiles_and_a_reading_reads_flat() {
    let layout = generator_layout();
    let json = br#"{"generatorID":"g-1","lat":51.5,"lon":-0.12,"temperature":71.25,"pressure":1013,"fuel":42.5,"note":"x"}"#;
    let record = layout.read(json).expect("flat");
    assert_eq!(record.slot("generatorID"), Some(&Slot::String("g-1")));
    assert_eq!(
        record.slot("pressure"),
        Some(&Slot::Number(1013.into(), FloatText::of_json(b"1013")))
    );
    assert_eq!(record.slot("note"), None, "not read: ignored");
}

#[test]
fn whatever_the_generic_path_must_judge_is_declined() {
    let layout = generator_layout();
    let reading = |fuel: &str| {
        format!(
            r#"{{"generatorID":"g","lat":1,"lon":2,"temperature":3,"pressure":4,"fuel":{fuel}}}"#
        )
    };
    assert!(layout.read(reading("5").as_bytes()).is_some());
    for declined in [
        reading("\"5\""),                       // wrong type
        reading("null"),                        // null where a number is required
        reading("5,\"fuel\":6"),                // a key twice
        reading("5} trailing"),                 // not one JSON value
        reading("5").replace("\"lat\":1,", ""), // a required key missing
        "[1]".to_owned(),                       // not an object
        "{\"generatorID\":".to_owned(),         // truncated
    ] {
        assert!(layout.read(declined.as_bytes()).is_none(), "{declined}");
    }
}

#[test]
fn escapes_arrays_and_nested_objects_go_the_generic_way() {
    let layout = FlatLayout::new(vec!["id".into()], None).unwrap();
    assert!(layout.read(br#"{"id":"ab","x":1}"#).is_some());
    for declined in [
        r#"{"id":"a\"b"}"#,
        r#"{"id":"ab","x":[1]}"#,
        r#"{"id":"ab","x":{"k":1}}"#,
        r#"{"id\u0041":"ab"}"#,
    ] {
        assert!(layout.read(declined.as_bytes()).is_none(), "{declined}");
    }
    // Not UTF-8, in a key it does not read or in a value: serde_json refuses both.
    assert!(layout.read(b"{\"id\":\"ab\",\"\xff\":1}").is_none());
    assert!(layout.read(b"{\"id\":\"a\xc3\"}").is_none());
    assert!(serde_json::from_slice::<Value>(b"{\"id\":\"ab\",\"\xff\":1}").is_err());
}

#[test]
fn numbers_read_as_serde_json_reads_them() {
    let layout = FlatLayout::new(vec!["n".into()], None).unwrap();
    for text in [
        "0",
        "-0",
        "7",
        "-7",
        "18446744073709551615",
        "-9223372036854775808",
        "-9223372036854775809",
        "0.5",
        "-0.0",
        "51.4731",
        "1e3",
        "1E-3",
        "2.5e+2",
        "123456.789e-2",
        "900719925474.5",
        "1e22",
        "1e-22",
        "9999999999999999999",
        "10000000000000000000",
        "-1000000000000000000",
        "0.0000000000000000001",
        "0.00000000000000000001",
        "45035996273.70490",
        "1e0022",
    ] {
        let json = format!(r#"{{"n":{text}}}"#);
        let record = layout
            .read(json.as_bytes())
            .unwrap_or_else(|| panic!("{text}"));
        let expected: Value = serde_json::from_str(text).unwrap();
        let Some(Slot::Number(number, copied)) = record.slot("n") else {
            panic!("{text}: not a number");
        };
        // Kept only when it is line protocol's own text for the number.
        assert_eq!(
            copied.map(|copied| copied.as_bytes()),
            FloatText::of_json(text.as_bytes()).map(|own| own.as_bytes()),
            "{text}"
        );
        assert_eq!(Value::Number(number.clone()), expected, "{text}");
        // Also the same kind of number (u64, i64 or f64), which decides the field types.
        assert_eq!(number.is_f64(), expected.is_f64(), "{text}");
        assert_eq!(
            number.as_f64().map(f64::to_bits),
            expected.as_f64().map(f64::to_bits),
            "{text}"
        );
    }
    for declined in [
        "01",
        "1.",
        ".5",
        "+1",
        "-",
        "1e",
        "1e+",
        "18446744073709551616",
        "9007199254740992.0",
        "1e23",
        "1e-23",
        "0.1e-22",
        "--1",
        "1.5.5",
        "99999999999999999999",
        "123456789012345678901",
        "1234567890.123456789",
        "1.00000000000000000000",
        "100000000000000000000e-2",
    ] {
        let json = format!(r#"{{"n":{declined}}}"#);
        assert!(layout.read(json.as_bytes()).is_none(), "{declined}");
    }
}

#[test]
fn additional_properties_false_also_binds_keys_only_the_mapping_reads() {
    let schema = json!({
        "type": "object",
        "properties": {"a": {"type": "number"}},
        "additionalProperties": false
    });
    let layout = layout(&schema, &["a", "b"]);
    assert!(layout.read(br#"{"a":1}"#).is_some());
    assert!(
        layout.read(br#"{"a":1,"b":2}"#).is_none(),
        "b is additional"
    );
    assert!(
        layout.read(br#"{"a":1,"c":2}"#).is_none(),
        "c is additional"
    );
}

#[test]
fn rules_check_bounds_lengths_and_string_enums() {
    let schema = json!({
        "type": "object",
        "properties": {
            "n": {"type": "number", "minimum": 0, "exclusiveMaximum": 100},
            "i": {"type": "integer", "maximum": 10},
            "s": {"type": "string", "minLength": 2, "maxLength": 3},
            "e": {"enum": ["on", "off"]}
        }
    });
    let layout = layout(&schema, &["n"]);
    for (json, flat) in [
        (r#"{"n":0}"#, true),
        (r#"{"n":-0.5}"#, false),
        (r#"{"n":100}"#, false),
        (r#"{"n":99.9}"#, true),
        (r#"{"i":10}"#, true),
        (r#"{"i":11}"#, false),
        (r#"{"i":1.0}"#, false), // an integer to JSON Schema: the generic path decides
        (r#"{"s":"éé"}"#, true), // two code points, four bytes
        (r#"{"s":"a"}"#, false),
        (r#"{"s":"abcd"}"#, false),
        (r#"{"e":"on"}"#, true),
        (r#"{"e":"no"}"#, false),
        (r#"{"e":1}"#, false),
        (r#"{}"#, true),                      // an enum'd key may be absent
        (r#"{"n":9007199254740993}"#, false), // beyond 2^53: not compared approximately
    ] {
        assert_eq!(layout.read(json.as_bytes()).is_some(), flat, "{json}");
    }
}

#[test]
fn schemas_outside_the_subset_do_not_compile() {
    for schema in [
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}}),
        json!({"type": "object", "properties": {"a": {"type": "string", "format": "date-time"}}}),
        json!({"type": "object", "properties": {"a": {"$ref": "#/definitions/x"}}}),
        json!({"type": "object", "properties": {"a": {"type": "number", "exclusiveMinimum": true}}}),
        json!({"type": "object", "properties": {"a": {"type": "number", "multipleOf": 2}}}),
        json!({"type": "object", "properties": {"a": {"enum": ["x", 1]}}}),
        json!({"type": "object", "properties": {"a": false}}),
        json!({"type": "object", "allOf": [{"required": ["a"]}]}),
        json!({"type": "object", "additionalProperties": {"type": "number"}}),
        json!({"type": "object", "patternProperties": {"^x": {}}}),
        json!({"type": "array"}),
        json!({"type": "object", "properties": {"a": {"type": "number", "maximum": 18446744073709551615u64}}}),
    ] {
        assert_eq!(FlatSchema::compile(&schema), None, "{schema}");
    }
}

#[test]
fn the_generic_mapping_rules_apply_to_flat_records() {
    let mapping = Mapping::new(
        Measurement::Fixed("m".into()),
        vec![Tag {
            name: "id".into(),
            source: TagSource::Path(FieldPath::Key("id".into())),
        }],
        vec![Field::new(
            "v",
            FieldPath::Key("v".into()),
            FieldType::Integer,
        )],
        TimestampSource::Kafka,
    );
    let keys = mapping.flat_keys().expect("flat mapping");
    let layout = FlatLayout::new(keys, None).unwrap();
    let record = layout.read(br#"{"id":12,"v":1.5}"#).unwrap();
    let error = mapping.map(&record, kafka()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "field `v` is 1.5, which is not a signed 64-bit integer"
    );
}

// --- Property: the fast path agrees with the generic one. ---

const KEYS: [&str; 5] = ["a", "b", "c", "d", "z"];

fn rule() -> impl Strategy<Value = Value> {
    let types = prop::sample::subsequence(
        vec!["null", "boolean", "integer", "number", "string"],
        3..=5,
    );
    let bound = prop_oneof![
        Just(json!(0)),
        Just(json!(-2.5)),
        Just(json!(10)),
        Just(json!(1e3))
    ];
    (
        types,
        prop::option::weighted(0.25, bound.clone()),
        prop::option::weighted(0.25, bound.clone()),
        prop::option::weighted(0.25, bound),
        prop::option::weighted(0.25, 0u64..4),
        prop::option::weighted(0.25, 0u64..4),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(types, min, max, xmin, min_len, max_len, enumerated)| {
            let mut rule = serde_json::Map::new();
            rule.insert("type".into(), json!(types));
            if let Some(min) = min {
                rule.insert("minimum".into(), min);
            }
            if let Some(max) = max {
                rule.insert("maximum".into(), max);
            }
            if let Some(xmin) = xmin {
                rule.insert("exclusiveMinimum".into(), xmin);
            }
            if let Some(min_len) = min_len {
                rule.insert("minLength".into(), json!(min_len));
            }
            if let Some(max_len) = max_len {
                rule.insert("maxLength".into(), json!(max_len));
            }
            if enumerated {
                rule.insert("enum".into(), json!(["x", "yy", "é"]));
            }
            rule.insert("description".into(), json!("annotated"));
            Value::Object(rule)
        })
}

fn schema() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(prop::option::of(rule()), 4),
        prop::sample::subsequence(KEYS.to_vec(), 0..=2),
        prop::option::of(prop::bool::weighted(0.7)),
    )
        .prop_map(|(rules, required, additional)| {
            let properties: serde_json::Map<String, Value> = KEYS
                .iter()
                .zip(rules)
                .filter_map(|(key, rule)| rule.map(|rule| ((*key).to_owned(), rule)))
                .collect();
            let mut schema = json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": properties,
                "required": required,
            });
            if let Some(additional) = additional {
                schema["additionalProperties"] = json!(additional);
            }
            schema
        })
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("0".to_owned()),
        Just("-0.0".to_owned()),
        Just("1.0".to_owned()),
        Just("10".to_owned()),
        Just("-2.5".to_owned()),
        Just("1000".to_owned()),
        Just("1e3".to_owned()),
        Just("9007199254740993".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("1e300".to_owned()),
        Just(r#""x""#.to_owned()),
        Just(r#""yy""#.to_owned()),
        Just(r#""é""#.to_owned()),
        Just(r#""""#.to_owned()),
        Just(r#""a\"b\\c""#.to_owned()),
        Just(r#""\u00e9""#.to_owned()),
        Just("[1,{\"k\":[]}]".to_owned()),
        Just("1e-5".to_owned()),
        Just("123.456e2".to_owned()),
        Just("-1.5E+3".to_owned()),
        Just("0.1".to_owned()),
        Just("01".to_owned()),
        Just("1.".to_owned()),
        Just("-".to_owned()),
        Just("+1".to_owned()),
        Just("1e400".to_owned()),
        Just("tru".to_owned()),
        Just("nulll".to_owned()),
        Just("\"\u{1}\"".to_owned()),
        Just("\"\u{7f}é€😀\"".to_owned()),
        Just("{\"k\":1}".to_owned()),
        Just("-0".to_owned()),
        Just("51.47".to_owned()),
        Just("123456789012345".to_owned()),
        Just("1234567890123456".to_owned()),
        Just("0.00000000000001".to_owned()),
        (-1_000_000i64..1_000_000).prop_map(|n| n.to_string()),
        (-1e6f64..1e6).prop_map(|f| format!("{f}")),
        // Readings with two decimals, now and then a trailing zero (`51.40`): the encoder
        // copies the text of the first kind and formats the second.
        (-100_000i64..100_000).prop_map(|n| format!("{:.2}", n as f64 / 100.0)),
    ]
}

/// JSON object text: each key at most once, now and then one repeated, cut short or followed
/// by garbage.
fn record_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::option::weighted(0.7, value_text()), KEYS.len()),
        prop::option::weighted(0.05, (prop::sample::select(KEYS.to_vec()), value_text())),
        prop::sample::select(vec!["", "", "", "", "", "", " \n", "x", "}"]),
        prop::bool::weighted(0.03),
        prop::sample::select(vec![",", ",", ", ", " ,\n\t", ",,"]),
    )
        .prop_map(|(values, repeated, tail, cut, separator)| {
            let mut entries: Vec<String> = KEYS
                .iter()
                .zip(values)
                .filter_map(|(key, value)| value.map(|value| format!("\"{key}\":{value}")))
                .collect();
            if let Some((key, value)) = repeated {
                entries.push(format!("\"{key}\":{value}"));
            }
            let mut text = format!("{{{}}}{tail}", entries.join(separator));
            if cut {
                let mut half = text.len() / 2;
                while !text.is_char_boundary(half) {
                    half -= 1;
                }
                text.truncate(half);
            }
            text
        })
}

fn field_kind() -> impl Strategy<Value = FieldType> {
    prop::sample::select(FieldType::ALL.to_vec())
}

fn mapping() -> impl Strategy<Value = Mapping> {
    (
        prop::collection::vec((field_kind(), prop::bool::weighted(0.8)), 3),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(kinds, tagged)| {
            let tags = if tagged {
                vec![Tag {
                    name: "a".into(),
                    source: TagSource::Path(FieldPath::Key("a".into())),
                }]
            } else {
                Vec::new()
            };
            let fields = ["b", "c", "d"]
                .iter()
                .zip(kinds)
                .map(|(key, (kind, optional))| Field {
                    optional,
                    ..Field::new(*key, FieldPath::Key((*key).into()), kind)
                })
                .collect();
            Mapping::new(
                Measurement::Fixed("m".into()),
                tags,
                fields,
                TimestampSource::Kafka,
            )
        })
}

fn line(point: &line_protocol::Point<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding errors (say, an empty tag value) are the same for both paths' points.
    let _ = line_protocol::encode(point, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8000))]

    /// A record the fast path takes is valid under `jsonschema`, and maps to the same line as
    /// its generic `Value` does.
    #[test]
    fn flat_records_are_valid_and_map_as_generic_ones(
        schema in schema(),
        mapping in mapping(),
        text in record_text(),
    ) {
        let flat_schema = FlatSchema::compile(&schema);
        prop_assert!(flat_schema.is_some(), "generated schemas are in the subset: {schema}");
        let layout = FlatLayout::new(mapping.flat_keys().unwrap(), flat_schema.as_ref()).unwrap();
        let Some(record) = layout.read(text.as_bytes()) else {
            return Ok(());
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|error| TestCaseError::fail(format!("flat but not JSON: {text}: {error}")))?;
        let validator = jsonschema::validator_for(&schema).unwrap();
        prop_assert!(validator.is_valid(&value), "flat but invalid: {text} under {schema}");
        if let Ok(point) = mapping.map(&record, kafka()) {
            let generic = mapping.map(&value, kafka());
            prop_assert!(generic.is_ok(), "flat maps, generic refuses: {text}: {generic:?}");
            let generic = generic.unwrap();
            prop_assert_eq!(line(&point), line(&generic), "{}", text);
        }
        // The line the sink writes from the flat record, laid out as the sink lays it out (the
        // mapping's keys, then the schema's).
        let flat_line = FlatLine::new(mapping.clone()).unwrap();
        let mut written = Vec::new();
        let _ = flat_line.write(&record, kafka(), &mut written);
        let generic = mapping.map(&value, kafka()).map(|point| line(&point)).unwrap_or_default();
        prop_assert_eq!(written, generic, "{}", text);
    }
}

fn scalar_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        (-1e7f64..1e7).prop_map(|f| json!((f * 1e4).round() / 1e4)),
        "[a-zA-Z0-9 é€😀_.:-]{0,12}".prop_map(Value::String),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever serde_json writes (compact or pretty) of a flat object, the tokenizer reads
    /// to the values serde_json reads back, or leaves to the generic path.
    #[test]
    fn the_tokenizer_reads_what_serde_json_writes(
        object in prop::collection::btree_map("[a-e]", scalar_value(), 0..6),
        pretty in any::<bool>(),
    ) {
        let value = Value::Object(object.clone().into_iter().collect());
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        let keys: Vec<String> = object.keys().cloned().collect();
        let layout = FlatLayout::new(keys, None).unwrap();
        let Some(record) = layout.read(text.as_bytes()) else {
            // Only numbers beyond the exact range may be declined.
            let read_back: Value = serde_json::from_str(&text).unwrap();
            let inexact = read_back.as_object().unwrap().values().any(Value::is_f64);
            prop_assert!(inexact, "declined without a float in it: {}", text);
            return Ok(());
        };
        let read_back: Value = serde_json::from_str(&text).unwrap();
        for (key, expected) in read_back.as_object().unwrap() {
            let slot = record.slot(key).unwrap();
            let got = match slot {
                Slot::Absent => None,
                Slot::Null => Some(Value::Null),
                Slot::Bool(flag) => Some(Value::Bool(*flag)),
                Slot::Number(number, _) => Some(Value::Number(number.clone())),
                Slot::String(text) => Some(Value::String((*text).to_owned())),
            };
            prop_assert_eq!(got.as_ref(), Some(expected), "{}", text);
            if let (Slot::Number(number, _), Value::Number(wanted)) = (slot, expected) {
                prop_assert_eq!(number.is_f64(), wanted.is_f64());
                prop_assert_eq!(number.as_f64().map(f64::to_bits), wanted.as_f64().map(f64::to_bits));
            }
        }
    }
}

fn registry_decoder(validate_locally: bool) -> crate::decode::Decoder {
    use crate::decode::{
        CachedSchema, Decoder, FetchedSchema, RegistrySchema, SchemaKey, WireFormat,
    };
    let fetched = FetchedSchema {
        schema_type: Some("JSON".into()),
        schema: include_str!("../../../../schemas/generator.schema.json").into(),
        references: vec![],
    };
    let schema = RegistrySchema::compile(&fetched, None).expect("compiles");
    assert!(
        matches!(schema, RegistrySchema::Json(_, Some(_))),
        "per-key rules"
    );
    let mut decoder = Decoder::new(WireFormat::Confluent, Some(&generator_schema()))
        .unwrap()
        .with_registry(validate_locally);
    // Learnt before the mapping's keys are known, as a test or a restart may do.
    decoder.learn(SchemaKey::Id(7), CachedSchema::Ready(schema));
    decoder.with_flat_keys(GENERATOR_KEYS.map(str::to_owned).to_vec())
}

fn confluent_framed(id: u32, body: &str) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(body.as_bytes());
    framed
}

#[test]
fn registry_framed_json_reads_flat_under_its_schema() {
    use crate::decode::SchemaKey;
    let decoder = registry_decoder(false);
    let reading = r#"{"generatorID":"g","lat":1,"lon":2,"temperature":3,"pressure":4,"fuel":5}"#;
    let framed = confluent_framed(7, reading);
    let (record, schema) = decoder.read_flat(Some(&framed), None).expect("flat");
    assert_eq!(schema, Some(SchemaKey::Id(7)));
    assert_eq!(record.slot("generatorID"), Some(&Slot::String("g")));
    // An id not learnt yet, and a record its schema refuses, go the generic way.
    assert!(
        decoder
            .read_flat(Some(&confluent_framed(8, reading)), None)
            .is_none()
    );
    let refused = reading.replace("\"fuel\":5", "\"fuel\":\"5\"");
    assert!(
        decoder
            .read_flat(Some(&confluent_framed(7, &refused)), None)
            .is_none()
    );
}

#[test]
fn registry_json_also_checked_locally_goes_the_generic_way() {
    let decoder = registry_decoder(true);
    let reading = r#"{"generatorID":"g","lat":1,"lon":2,"temperature":3,"pressure":4,"fuel":5}"#;
    assert!(
        decoder
            .read_flat(Some(&confluent_framed(7, reading)), None)
            .is_none()
    );
}

#[test]
fn registry_avro_reads_flat_and_a_nan_goes_the_generic_way_with_its_reason() {
    use crate::decode::avro::generator_datum;
    use crate::decode::{
        CachedSchema, DecodeFailure, Decoder, FetchedSchema, RegistrySchema, SchemaKey, WireFormat,
    };
    let text = include_str!("../../../../schemas/generator.avsc");
    let fetched = FetchedSchema {
        schema_type: Some("AVRO".into()),
        schema: text.into(),
        references: vec![],
    };
    let schema = RegistrySchema::compile(&fetched, None).expect("compiles");
    let mut decoder = Decoder::new(WireFormat::Confluent, None)
        .unwrap()
        .with_registry(false)
        .with_flat_keys(GENERATOR_KEYS.map(str::to_owned).to_vec());
    decoder.learn(SchemaKey::Id(9), CachedSchema::Ready(schema));
    let avro_schema = apache_avro::Schema::parse_str(text).unwrap();
    let datum = |fuel: f64| {
        let mut framed = vec![0, 0, 0, 0, 9];
        framed.extend(generator_datum(&avro_schema, "gen-7", fuel));
        framed
    };
    let good = datum(400.5);
    let (record, key) = decoder.read_flat(Some(&good), None).expect("flat");
    assert_eq!(key, Some(SchemaKey::Id(9)));
    assert_eq!(record.slot("generatorID"), Some(&Slot::String("gen-7")));
    assert_eq!(
        record.slot("fuel"),
        Some(&Slot::Number(Number::from_f64(400.5).unwrap(), None))
    );
    let nan = datum(f64::NAN);
    assert!(decoder.read_flat(Some(&nan), None).is_none());
    match decoder.decode_with_header(Some(&nan), None) {
        Err(DecodeFailure::Rejected(error)) => {
            assert!(error.to_string().contains("fuel"), "{error}")
        }
        other => panic!("NaN decoded as {other:?}"),
    }
}

/// A JSON number's text: up to 22 digits before and after the point, and an exponent.
fn number_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,21}"],
        prop::option::of("[0-9]{1,22}"),
        prop::option::of(("[eE]", "[+-]?", "[0-9]{1,3}")),
    )
        .prop_map(|(negative, whole, fraction, exponent)| {
            let mut text = if negative {
                "-".to_owned()
            } else {
                String::new()
            };
            text.push_str(&whole);
            if let Some(fraction) = fraction {
                text.push('.');
                text.push_str(&fraction);
            }
            if let Some((e, sign, digits)) = exponent {
                text.push_str(&format!("{e}{sign}{digits}"));
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any number the tokenizer reads, it reads as `serde_json` does (the same kind of number,
    /// the same bits); one `serde_json` refuses it leaves to the generic path; a whole number
    /// of up to 19 digits it always reads.
    #[test]
    fn numbers_of_any_length_read_as_serde_json_reads_them(text in number_text()) {
        let layout = FlatLayout::new(vec!["n".into()], None).unwrap();
        let json = format!(r#"{{"n":{text}}}"#);
        let Ok(expected) = serde_json::from_str::<Value>(&text) else {
            // Beyond a float's range: the generic path explains that.
            prop_assert!(layout.read(json.as_bytes()).is_none(), "{}", text);
            return Ok(());
        };
        match layout.read(json.as_bytes()) {
            Some(record) => {
                let Some(Slot::Number(number, _)) = record.slot("n") else {
                    panic!("{text}: not a number");
                };
                prop_assert_eq!(&Value::Number(number.clone()), &expected, "{}", text);
                prop_assert_eq!(number.is_f64(), expected.is_f64(), "{}", text);
                prop_assert_eq!(
                    number.as_f64().map(f64::to_bits),
                    expected.as_f64().map(f64::to_bits),
                    "{}",
                    text
                );
            }
            None => {
                let whole = text.trim_start_matches('-');
                let short_whole = whole.len() <= 19 && whole.bytes().all(|byte| byte.is_ascii_digit());
                prop_assert!(!short_whole, "a whole number declined: {}", text);
            }
        }
    }
}

proptest! {
    /// The word-at-a-time search stops where a byte-by-byte one does, wherever the stop is
    /// (bytes weighted towards the three stops and their neighbours, to hit every lane).
    #[test]
    fn a_string_stops_where_a_byte_by_byte_search_stops(
        bytes in prop::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                1 => prop::sample::select(vec![b'"', b'\\', 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x00, 0x7f, 0x80, 0xff]),
            ],
            0..40,
        ),
    ) {
        let expected = bytes.iter().position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20);
        prop_assert_eq!(string_stop(&bytes), expected, "{:?}", bytes);
    }
}

#[test]
fn a_string_stops_at_the_first_stop_in_any_lane() {
    for stop in [b'"', b'\\', b'\n', 0x00, 0x1f] {
        for at in 0..20 {
            let mut bytes = vec![b'a'; 20];
            bytes[at] = stop;
            assert_eq!(string_stop(&bytes), Some(at), "{stop:#x} at {at}");
        }
    }
    assert_eq!(string_stop(&[0x20; 17]), None, "space and above are text");
    assert_eq!(
        string_stop("é€😀abcdefgh".as_bytes()),
        None,
        "UTF-8 is text"
    );
}
