use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::decode::flat::FlatLayout;
use crate::line_protocol::Point;
use crate::map::{
    Collisions, ExtraFields, Field, FieldPath, FieldType, HeaderLookup, NoHeaders, Tag, TagSource,
    TimeUnit, TimestampSource,
};

fn key(name: &str) -> FieldPath {
    FieldPath::Key(name.to_owned())
}

fn generator_mapping() -> Mapping {
    Mapping::new(
        Measurement::Fixed("generator".into()),
        vec![Tag {
            name: "generatorID".into(),
            source: TagSource::Path(key("generatorID")),
        }],
        ["lat", "lon", "temperature", "pressure", "fuel"]
            .map(|name| Field::new(name, key(name), FieldType::Float))
            .to_vec(),
        TimestampSource::Kafka,
    )
}

fn kafka(topic: &str) -> KafkaContext<'_> {
    KafkaContext {
        topic,
        partition: 3,
        offset: 1207,
        timestamp_ms: Some(1_700_000_000_000),
        key: None,
        headers: &NoHeaders,
    }
}

/// `map` and `encode`'s line for `record`, or `None` when either refuses it.
fn point_line(mapping: &Mapping, record: &Value, kafka: KafkaContext<'_>) -> Option<Vec<u8>> {
    let point = mapping.map(record, kafka).ok()?;
    let mut out = Vec::new();
    line_protocol::encode(&point, &mut out).ok()?;
    Some(out)
}

#[test]
fn a_generator_reading_is_written_as_its_point_is() {
    let mapping = generator_mapping();
    let line = FlatLine::new(mapping.clone()).expect("the generator mapping maps flat records");
    let text = br#"{"fuel":400,"generatorID":"gen 7","lat":51.47,"lon":-0.12,"pressure":1.50,"temperature":36.2}"#;
    let layout = FlatLayout::new(line.keys().to_vec(), None).unwrap();
    let record = layout.read(text).unwrap();
    let mut out = b"earlier line\n".to_vec();
    let point = line.write(&record, kafka("t"), &mut out).expect("written");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "earlier line\ngenerator,generatorID=gen\\ 7 lat=51.47,lon=-0.12,temperature=36.2,\
         pressure=1.5,fuel=400 1700000000000000000\n"
    );
    assert_eq!(point.tag("generatorID"), Some("gen 7"));
    assert_eq!(point.float_field("fuel"), Some(400.0));
    assert_eq!(point.float_field("generatorID"), None);
    assert_eq!(point.timestamp_ns(), 1_700_000_000_000_000_000);
    let generic: Value = serde_json::from_slice(text).unwrap();
    let expected = point_line(&mapping, &generic, kafka("t")).unwrap();
    let mut again = Vec::new();
    line.write(&record, kafka("t"), &mut again).unwrap();
    assert_eq!(again, expected);
}

#[test]
fn a_record_the_mapping_refuses_writes_nothing() {
    let line = FlatLine::new(generator_mapping()).unwrap();
    let layout = FlatLayout::new(line.keys().to_vec(), None).unwrap();
    for text in [
        // No fuel: a required field is missing.
        r#"{"generatorID":"g","lat":1,"lon":2,"temperature":3,"pressure":4}"#,
        // A string where a float goes.
        r#"{"generatorID":"g","lat":"north","lon":2,"temperature":3,"pressure":4,"fuel":5}"#,
        // An empty tag value.
        r#"{"generatorID":"","lat":1,"lon":2,"temperature":3,"pressure":4,"fuel":5}"#,
        // A null tag.
        r#"{"generatorID":null,"lat":1,"lon":2,"temperature":3,"pressure":4,"fuel":5}"#,
    ] {
        let record = layout.read(text.as_bytes()).expect(text);
        let mut out = b"kept\n".to_vec();
        assert!(
            line.write(&record, kafka("t"), &mut out).is_none(),
            "{text}"
        );
        assert_eq!(out, b"kept\n", "{text}");
    }
}

#[test]
fn only_mappings_of_top_level_keys_that_ignore_other_keys_compile() {
    assert!(
        FlatLine::new(generator_mapping().with_extra_fields(ExtraFields::Include, vec![]))
            .is_none()
    );
    assert!(
        FlatLine::new(generator_mapping().with_extra_fields(ExtraFields::Reject, vec![])).is_none()
    );
    let nested = Mapping::new(
        Measurement::Fixed("m".into()),
        vec![],
        vec![Field::new(
            "x",
            FieldPath::parse("/a/b").unwrap(),
            FieldType::Float,
        )],
        TimestampSource::Kafka,
    );
    assert!(FlatLine::new(nested).is_none());
    // A key no line can carry: every record is refused, the generic way.
    let unwritable = Mapping::new(
        Measurement::Fixed("m".into()),
        vec![],
        vec![Field::new("x\\", key("x"), FieldType::Float)],
        TimestampSource::Kafka,
    );
    assert!(FlatLine::new(unwritable).is_none());
    let line = FlatLine::new(generator_mapping()).unwrap();
    assert_eq!(Some(line.keys().to_vec()), generator_mapping().flat_keys());
}

/// Record keys: some need escaping as tag or field keys; `t` holds timestamps.
const KEYS: [&str; 5] = ["a", "b c", "d,e", "f=g", "t"];

/// JSON value text the flat tokenizer reads (strings without escapes).
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("\"\"".to_owned()),
        "[a-z ,=é]{1,6}".prop_map(|text| format!("\"{text}\"")),
        Just("\"2026-11-25T05:00:00.123Z\"".to_owned()),
        Just("\"2026-11-25T05:00:00.1234567+01:00\"".to_owned()),
        Just("1700000000000".to_owned()),
        Just("1700000000.5".to_owned()),
        Just("-0".to_owned()),
        Just("1.50".to_owned()),
        Just("1e3".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("-9223372036854775808".to_owned()),
        (-1_000_000i64..1_000_000).prop_map(|n| n.to_string()),
        (-100_000i64..100_000).prop_map(|n| format!("{:.2}", n as f64 / 100.0)),
        (-1e6f64..1e6).prop_map(|f| format!("{f}")),
    ]
}

/// A flat record's text: each key at most once, in any order.
fn record_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::option::weighted(0.8, value_text()), KEYS.len())
        .prop_flat_map(|values| {
            let entries: Vec<String> = KEYS
                .iter()
                .zip(values)
                .filter_map(|(key, value)| value.map(|value| format!("\"{key}\":{value}")))
                .collect();
            Just(entries).prop_shuffle()
        })
        .prop_map(|entries| format!("{{{}}}", entries.join(",")))
}

fn record_key() -> impl Strategy<Value = FieldPath> {
    prop::sample::select(KEYS.to_vec()).prop_map(key)
}

fn measurement() -> impl Strategy<Value = Measurement> {
    prop_oneof![
        Just(Measurement::Fixed("m".into())),
        Just(Measurement::Fixed("gen erator,x".into())),
        // Longer than one block of a line's pieces.
        Just(Measurement::Fixed(
            "generator telemetry, fleet=north".into()
        )),
        Just(Measurement::Template("{topic}".into())),
        Just(Measurement::Template("kafka.{topic}".into())),
        record_key().prop_map(Measurement::Field),
    ]
}

fn tag_source() -> impl Strategy<Value = TagSource> {
    prop_oneof![
        4 => record_key().prop_map(TagSource::Path),
        1 => prop::sample::select(vec!["c", "c d", "", "x\\"])
            .prop_map(|value| TagSource::Constant(value.to_owned())),
        1 => Just(TagSource::KafkaTopic),
        1 => Just(TagSource::KafkaKey),
        1 => Just(TagSource::Header("h".into())),
    ]
}

/// Tag names to map: some to escape, and one longer than a block of a line's pieces.
const TAG_NAMES: [&str; 5] = ["ta", "t b", "t=c", "id", "a tag key, longer than a block"];

/// Field names to map, likewise.
const FIELD_NAMES: [&str; 5] = ["fa", "f b", "f,c", "fuel", "fuel_level_percent"];

fn mapping() -> impl Strategy<Value = Mapping> {
    let tags = prop::sample::subsequence(TAG_NAMES.to_vec(), 0..=3)
        .prop_flat_map(|names| {
            let count = names.len();
            (Just(names), prop::collection::vec(tag_source(), count))
        })
        .prop_map(|(names, sources)| {
            names
                .into_iter()
                .zip(sources)
                .map(|(name, source)| Tag {
                    name: name.to_owned(),
                    source,
                })
                .collect::<Vec<_>>()
        });
    let fields = prop::sample::subsequence(FIELD_NAMES.to_vec(), 1..=4)
        .prop_flat_map(|names| {
            let count = names.len();
            (
                Just(names),
                prop::collection::vec(
                    (
                        record_key(),
                        prop::sample::select(FieldType::ALL.to_vec()),
                        prop::bool::weighted(0.4),
                    ),
                    count,
                ),
            )
        })
        .prop_map(|(names, fields)| {
            names
                .into_iter()
                .zip(fields)
                .map(|(name, (path, kind, optional))| Field {
                    optional,
                    ..Field::new(name, path, kind)
                })
                .collect::<Vec<_>>()
        });
    let timestamp = prop_oneof![
        2 => Just(TimestampSource::Kafka),
        1 => prop::sample::select(vec![TimeUnit::Seconds, TimeUnit::Millis, TimeUnit::Nanos])
            .prop_map(|unit| TimestampSource::Field { path: key("t"), unit }),
        1 => Just(TimestampSource::Rfc3339 { path: key("t") }),
    ];
    (
        measurement(),
        tags,
        fields,
        timestamp,
        prop::sample::select(vec![Collisions::Overwrite, Collisions::Keep]),
    )
        .prop_map(|(measurement, tags, fields, timestamp, collisions)| {
            Mapping::new(measurement, tags, fields, timestamp).with_collisions(collisions)
        })
}

/// What alerts read of `point`, for every name the mapping writes.
fn alert_view(point: &impl MappedPoint, mapping: &Mapping) -> Vec<String> {
    let tags = mapping
        .tags
        .iter()
        .map(|tag| format!("tag {}: {:?}", tag.name, point.tag(&tag.name)));
    let fields = mapping.fields.iter().map(|field| {
        format!(
            "field {}: {:?}",
            field.name,
            point.float_field(&field.name).map(f64::to_bits)
        )
    });
    tags.chain(fields)
        .chain([format!("time {}", point.timestamp_ns())])
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6000))]

    /// The line of a flat record is byte for byte the line `map` and `encode` write for its
    /// generic `Value`, or nothing when they refuse the record; alerts read the same of both.
    #[test]
    fn a_flat_line_is_the_line_of_the_mapped_point(
        mapping in mapping(),
        text in record_text(),
        topic in prop::sample::select(vec!["t", "a b", "x,y", ""]),
        kafka_key in prop::option::of(prop::sample::select(vec![b"k".to_vec(), b"k 1".to_vec(), vec![0xff], vec![]])),
        header in prop::option::of(prop::sample::select(vec![b"v".to_vec(), b"v,w".to_vec(), vec![0xc3]])),
        timestamp_ms in prop::option::weighted(0.95, prop::sample::select(vec![1_700_000_000_000i64, -5, i64::MAX])),
    ) {
        let Some(line) = FlatLine::new(mapping.clone()) else {
            // Generated names are all writable and every path is a top-level key.
            return Err(TestCaseError::fail(format!("not compiled: {mapping:?}")));
        };
        let layout = FlatLayout::new(line.keys().to_vec(), None).unwrap();
        let Some(record) = layout.read(text.as_bytes()) else {
            // Numbers the tokenizer cannot convert exactly go the generic way.
            return Ok(());
        };
        let headers = [("h", header.as_deref().unwrap_or_default())];
        let kafka = KafkaContext {
            topic,
            partition: 3,
            offset: 1207,
            timestamp_ms,
            key: kafka_key.as_deref(),
            headers: if header.is_some() { &headers as &dyn HeaderLookup } else { &NoHeaders },
        };
        let generic: Value = serde_json::from_str(&text).unwrap();
        let point: Option<Point<'_>> = mapping.map(&generic, kafka).ok().filter(|point| {
            line_protocol::encode(point, &mut Vec::new()).is_ok()
        });
        let mut out = b"before\n".to_vec();
        let flat = line.write(&record, kafka, &mut out);
        match (&point, &flat) {
            (None, None) => prop_assert_eq!(&out, b"before\n", "{}", text),
            (Some(point), Some(flat)) => {
                let mut expected = b"before\n".to_vec();
                line_protocol::encode(point, &mut expected).unwrap();
                prop_assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&expected),
                    "{}",
                    text
                );
                prop_assert_eq!(alert_view(flat, &mapping), alert_view(point, &mapping), "{}", text);
            }
            _ => {
                return Err(TestCaseError::fail(format!(
                    "the point path wrote {:?}, the flat line {:?}, for {text}",
                    point.is_some(),
                    flat.is_some()
                )));
            }
        }
    }
}
