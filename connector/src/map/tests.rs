use super::*;
use crate::line_protocol::{self, FieldValue};
use proptest::prelude::*;
use serde_json::{Value, json};

fn at(timestamp_ms: Option<i64>) -> KafkaContext<'static> {
    KafkaContext {
        topic: "emergency_generator",
        partition: 0,
        offset: 0,
        timestamp_ms,
        key: None,
        headers: &NoHeaders,
    }
}

fn path(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap()
}

fn float(name: &str) -> Field {
    Field::new(name, path(name), FieldType::Float)
}

fn tag(name: &str, source: TagSource) -> Tag {
    Tag {
        name: name.to_owned(),
        source,
    }
}

fn key_tag(name: &str) -> Tag {
    tag(name, TagSource::Path(path(name)))
}

fn fixed(name: &str) -> Measurement {
    Measurement::Fixed(name.to_owned())
}

fn generator_mapping() -> Mapping {
    Mapping::new(
        fixed("generator"),
        vec![key_tag("generatorID")],
        ["lat", "lon", "temperature", "pressure", "fuel"]
            .map(float)
            .to_vec(),
        TimestampSource::Kafka,
    )
}

fn generator_record() -> Value {
    json!({"generatorID": "gen-7", "lat": 51.5, "lon": -0.12, "temperature": 36.2, "pressure": 1.02, "fuel": 400})
}

/// The line a mapping writes for `record`, or the mapping's error message.
fn line_of(mapping: &Mapping, record: &Value, kafka: KafkaContext<'_>) -> Result<String, String> {
    let point = mapping
        .map(record, kafka)
        .map_err(|error| error.to_string())?;
    let mut out = Vec::new();
    line_protocol::encode(&point, &mut out).map_err(|error| error.to_string())?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

#[test]
fn maps_the_generator_record_with_the_kafka_timestamp() {
    let mapping = generator_mapping();
    let record = generator_record();
    let point = mapping.map(&record, at(Some(1_700_000_000_123))).unwrap();
    assert_eq!(point.measurement, "generator");
    assert_eq!(point.tags, vec![("generatorID", Cow::Borrowed("gen-7"))]);
    assert_eq!(
        point.fields,
        [
            ("lat", 51.5),
            ("lon", -0.12),
            ("temperature", 36.2),
            ("pressure", 1.02),
            ("fuel", 400.0)
        ]
        .map(|(name, value)| (name, FieldValue::Float(value)))
    );
    assert_eq!(point.timestamp_ns, 1_700_000_000_123_000_000);
    assert_eq!(
        line_of(&mapping, &record, at(Some(1_700_000_000_123))).unwrap(),
        "generator,generatorID=gen-7 lat=51.5,lon=-0.12,temperature=36.2,pressure=1.02,fuel=400 1700000000123000000\n"
    );
}

#[test]
fn same_record_same_point() {
    let mapping = generator_mapping();
    let record = generator_record();
    assert_eq!(
        mapping.map(&record, at(Some(5))).unwrap(),
        mapping.map(&record, at(Some(5))).unwrap()
    );
}

#[test]
fn tags_are_sorted_by_key_whatever_their_source() {
    let mapping = Mapping::new(
        fixed("m"),
        vec![
            key_tag("z"),
            tag("b_site", TagSource::Constant("north".into())),
            key_tag("a"),
            tag("c_key", TagSource::KafkaKey),
        ],
        vec![float("v")],
        TimestampSource::Kafka,
    );
    let record = json!({"z": "1", "a": 2, "v": 1});
    let kafka = KafkaContext {
        key: Some(b"k-1"),
        ..at(Some(0))
    };
    let point = mapping.map(&record, kafka).unwrap();
    assert_eq!(
        point.tags,
        vec![
            ("a", Cow::Borrowed("2")),
            ("b_site", Cow::Borrowed("north")),
            ("c_key", Cow::Borrowed("k-1")),
            ("z", Cow::Borrowed("1"))
        ]
    );
}

#[test]
fn rejects_with_the_path_that_failed() {
    let mapping = generator_mapping();
    let cases = [
        (json!([1, 2]), "record is a JSON array, expected an object"),
        (
            json!({"lat": 1}),
            "tag `generatorID` is missing from the record",
        ),
        (
            json!({"generatorID": {"id": 1}}),
            "tag `generatorID` is a JSON object; tags must be strings, numbers or booleans",
        ),
        (
            json!({"generatorID": "g", "lat": 1, "lon": 1, "temperature": 1, "pressure": 1}),
            "field `fuel` is missing from the record",
        ),
        (
            json!({"generatorID": "g", "lat": 1, "lon": 1, "temperature": 1, "pressure": 1, "fuel": null}),
            "field `fuel` is missing from the record",
        ),
        (
            json!({"generatorID": "g", "lat": 1, "lon": 1, "temperature": 1, "pressure": 1, "fuel": "low"}),
            "field `fuel` is a JSON string, expected a number",
        ),
    ];
    for (record, message) in cases {
        assert_eq!(
            mapping.map(&record, at(Some(0))).unwrap_err().to_string(),
            message,
            "{record}"
        );
    }
    assert_eq!(
        mapping.map(&generator_record(), at(None)).unwrap_err(),
        MapError::MissingKafkaTimestamp
    );
}

/// The README's nested-record example.
fn nested_mapping() -> Mapping {
    Mapping::new(
        fixed("sensor"),
        vec![
            tag("site", TagSource::Path(path("/meta/site"))),
            tag("region", TagSource::Constant("eu-west".into())),
        ],
        vec![
            Field::new("temp_c", path("/readings/0/value"), FieldType::Float),
            Field::new("humidity", path("/readings/1/value"), FieldType::Float),
            Field::new("count", path("/stats/count"), FieldType::Integer),
            Field::new("ok", path("ok"), FieldType::Boolean),
            Field::new("state", path("/meta/state"), FieldType::String),
        ],
        TimestampSource::Rfc3339 { path: path("time") },
    )
}

#[test]
fn nested_records_with_renames_types_and_an_rfc3339_time() {
    let record = json!({
        "time": "2026-11-25T05:00:00.123Z",
        "meta": {"site": "north", "state": "running \"hot\""},
        "readings": [{"value": 21.5}, {"value": 40}],
        "stats": {"count": 12.0},
        "ok": true
    });
    assert_eq!(
        line_of(&nested_mapping(), &record, at(None)).unwrap(),
        "sensor,region=eu-west,site=north temp_c=21.5,humidity=40,count=12i,ok=true,\
         state=\"running \\\"hot\\\"\" 1795582800123000000\n"
    );
    let short = json!({"time": "2026-11-25T05:00:00Z", "meta": {"site": "n", "state": "s"}, "readings": [{"value": 1}], "stats": {"count": 1}, "ok": false});
    assert_eq!(
        line_of(&nested_mapping(), &short, at(None)).unwrap_err(),
        "field `/readings/1/value` is missing from the record"
    );
}

#[test]
fn optional_fields_are_left_out_when_absent() {
    let mapping = Mapping::new(
        fixed("m"),
        vec![],
        vec![
            float("a"),
            Field {
                optional: true,
                ..Field::new("b", path("/x/b"), FieldType::Integer)
            },
        ],
        TimestampSource::Kafka,
    );
    assert_eq!(
        line_of(&mapping, &json!({"a": 1, "x": {"b": null}}), at(Some(1))).unwrap(),
        "m a=1 1000000\n"
    );
    assert_eq!(
        line_of(&mapping, &json!({"a": 1, "x": {"b": 2}}), at(Some(1))).unwrap(),
        "m a=1,b=2i 1000000\n"
    );
    // Present but of the wrong type is still an error.
    assert_eq!(
        line_of(&mapping, &json!({"a": 1, "x": {"b": "2"}}), at(Some(1))).unwrap_err(),
        "field `/x/b` is a JSON string, expected a number"
    );
    let only_optional = Mapping::new(
        fixed("m"),
        vec![],
        vec![Field {
            optional: true,
            ..float("a")
        }],
        TimestampSource::Kafka,
    );
    assert_eq!(
        only_optional.map(&json!({}), at(Some(1))),
        Err(MapError::NoFields)
    );
}

#[test]
fn tags_from_the_kafka_key_topic_and_headers() {
    let mapping = Mapping::new(
        fixed("m"),
        vec![
            tag("partition_key", TagSource::KafkaKey),
            tag("source", TagSource::Header("source-system".into())),
            tag("topic", TagSource::KafkaTopic),
        ],
        vec![float("v")],
        TimestampSource::Kafka,
    );
    let record = json!({"v": 1});
    let headers = [
        ("source-system", b"old".as_slice()),
        ("other", b"x".as_slice()),
        ("source-system", b"erp 2".as_slice()),
    ];
    let bad_header = [("source-system", [0xc3].as_slice())];
    let kafka = KafkaContext {
        key: Some(b"gen-7"),
        headers: &headers,
        ..at(Some(1))
    };
    // The last header of a repeated name wins; values are escaped like any tag value.
    assert_eq!(
        line_of(&mapping, &record, kafka).unwrap(),
        "m,partition_key=gen-7,source=erp\\ 2,topic=emergency_generator v=1 1000000\n"
    );
    let cases: Vec<(KafkaContext<'_>, &str)> = vec![
        (
            KafkaContext { key: None, ..kafka },
            "tag `partition_key` takes the Kafka key, and the record has none",
        ),
        (
            KafkaContext {
                key: Some(&[0xff, 0xfe]),
                ..kafka
            },
            "tag `partition_key`: the Kafka key is not valid UTF-8",
        ),
        (
            KafkaContext {
                headers: &NoHeaders,
                ..kafka
            },
            "tag `source` takes Kafka header `source-system`, which the record does not carry",
        ),
        (
            KafkaContext {
                headers: &bad_header,
                ..kafka
            },
            "tag `source`: Kafka header `source-system` is not valid UTF-8",
        ),
    ];
    for (kafka, message) in cases {
        assert_eq!(line_of(&mapping, &record, kafka).unwrap_err(), message);
    }
    // An empty key is an empty tag value, which line protocol cannot carry.
    let empty = KafkaContext {
        key: Some(b""),
        ..kafka
    };
    assert_eq!(
        line_of(&mapping, &record, empty).unwrap_err(),
        "tag `partition_key` has an empty value"
    );
}

#[test]
fn measurement_fixed_from_the_topic_or_from_a_field() {
    let with = |measurement: Measurement| {
        Mapping::new(
            measurement,
            vec![],
            vec![float("v")],
            TimestampSource::Kafka,
        )
    };
    let record = json!({"v": 1, "type": "boiler", "meta": {"kind": 7}, "obj": {}});
    let measurement_of = |mapping: &Mapping| {
        mapping
            .map(&record, at(Some(1)))
            .map(|point| point.measurement.into_owned())
            .map_err(|error| error.to_string())
    };
    assert_eq!(measurement_of(&with(fixed("m"))), Ok("m".into()));
    let topic = with(Measurement::parse("{topic}").unwrap());
    let point = topic.map(&record, at(Some(1))).unwrap();
    assert!(matches!(
        point.measurement,
        Cow::Borrowed("emergency_generator")
    ));
    assert_eq!(
        measurement_of(&with(Measurement::parse("kafka_{topic}_{topic}").unwrap())),
        Ok("kafka_emergency_generator_emergency_generator".into())
    );
    assert_eq!(
        measurement_of(&with(Measurement::Field(path("type")))),
        Ok("boiler".into())
    );
    assert_eq!(
        measurement_of(&with(Measurement::Field(path("/meta/kind")))),
        Ok("7".into())
    );
    assert_eq!(
        measurement_of(&with(Measurement::Field(path("/meta/type")))),
        Err("measurement field `/meta/type` is missing from the record".into())
    );
    assert_eq!(
        measurement_of(&with(Measurement::Field(path("obj")))),
        Err("measurement field `obj` is a JSON object; a measurement must be a string, number or boolean".into())
    );
}

#[test]
fn measurement_templates_are_checked() {
    assert_eq!(
        Measurement::parse("generator"),
        Ok(Measurement::Fixed("generator".into()))
    );
    assert_eq!(
        Measurement::parse("{topic}"),
        Ok(Measurement::Template("{topic}".into()))
    );
    for bad in ["", "a\nb", "{topc}", "x{topic", "{topic}}", "m\\"] {
        assert!(Measurement::parse(bad).is_err(), "{bad:?}");
    }
}

fn include_mapping(ignore: &[&str]) -> Mapping {
    Mapping::new(
        Measurement::Field(path("type")),
        vec![
            key_tag("device"),
            tag("site", TagSource::Path(path("/meta/site"))),
            tag("level", TagSource::Constant("x".into())),
        ],
        vec![Field::new("temp", path("temperature"), FieldType::Float)],
        TimestampSource::Field {
            path: path("ts"),
            unit: TimeUnit::Millis,
        },
    )
    .with_extra_fields(
        ExtraFields::Include,
        ignore.iter().map(|key| key.to_string()).collect(),
    )
}

#[test]
fn extra_fields_include_writes_the_other_scalars_with_auto_types() {
    let record = json!({
        "type": "sensor", "device": "d1", "meta": {"site": "n"}, "ts": 5,
        "temperature": 21, "humidity": 40, "on": true, "mode": "eco",
        "nothing": null, "list": [1], "nested": {"a": 1},
        "level": 3, "temp": 99, "debug": "x", "time": "2026-11-25T05:00:00Z"
    });
    // Extras follow the configured fields in key order; `level` and `temp` are configured
    // names, `debug` is ignored, `time` is refused by InfluxDB, and the keys read by the mapping
    // are not repeated.
    assert_eq!(
        line_of(&include_mapping(&["debug"]), &record, at(None)).unwrap(),
        "sensor,device=d1,level=x,site=n temp=21,humidity=40,mode=\"eco\",on=true 5000000\n"
    );
    let nothing_usable = json!({"meta": {"site": "n"}, "list": [1, 2], "none": null});
    let without_configured = Mapping::new(fixed("m"), vec![], vec![], TimestampSource::Kafka)
        .with_extra_fields(ExtraFields::Include, vec![]);
    assert_eq!(
        without_configured.map(&nothing_usable, at(Some(1))),
        Err(MapError::NoFields)
    );
    assert_eq!(
        line_of(
            &without_configured,
            &json!({"a": 1.5, "b": "x"}),
            at(Some(1))
        )
        .unwrap(),
        "m a=1.5,b=\"x\" 1000000\n"
    );
}

#[test]
fn extra_fields_reject_names_the_unexpected_key() {
    let mapping = Mapping::new(
        fixed("m"),
        vec![tag("site", TagSource::Path(path("/meta/site")))],
        vec![float("v")],
        TimestampSource::Rfc3339 { path: path("time") },
    )
    .with_extra_fields(ExtraFields::Reject, vec!["debug".into()]);
    let good = json!({"v": 1, "meta": {"site": "n", "anything": 1}, "time": "1970-01-01T00:00:01Z", "debug": {}});
    assert_eq!(
        line_of(&mapping, &good, at(None)).unwrap(),
        "m,site=n v=1 1000000000\n"
    );
    let bad = json!({"v": 1, "meta": {"site": "n"}, "time": "1970-01-01T00:00:01Z", "surprise": 1});
    let error = mapping.map(&bad, at(None)).unwrap_err();
    assert_eq!(
        error,
        MapError::UnexpectedKey {
            key: "surprise".into()
        }
    );
    assert_eq!(error.rejection().reason, "UnexpectedKey");
    assert!(error.to_string().contains("record key `surprise`"));
    // The default ignores extra keys.
    let ignore = generator_mapping();
    let mut record = generator_record();
    record["surprise"] = json!(1);
    assert!(ignore.map(&record, at(Some(1))).is_ok());
}

#[test]
fn typed_fields_through_the_mapping() {
    let mapping = Mapping::new(
        fixed("m"),
        vec![],
        vec![
            Field::new("f", path("n"), FieldType::Float),
            Field::new("i", path("n"), FieldType::Integer),
            Field::new("u", path("n"), FieldType::Unsigned),
            Field::new("s", path("n"), FieldType::String),
            Field::new("a", path("n"), FieldType::Auto),
            Field::new("b", path("flag"), FieldType::Boolean),
            Field::new("t", path("flag"), FieldType::String),
        ],
        TimestampSource::Kafka,
    );
    assert_eq!(
        line_of(&mapping, &json!({"n": 400, "flag": false}), at(Some(1))).unwrap(),
        "m f=400,i=400i,u=400u,s=\"400\",a=400,b=false,t=\"false\" 1000000\n"
    );
    assert_eq!(
        line_of(&mapping, &json!({"n": -1, "flag": false}), at(Some(1))).unwrap_err(),
        "field `n` is -1, which is not an unsigned 64-bit integer"
    );
}

#[test]
fn timestamp_from_a_field_through_the_mapping() {
    let with = |source| Mapping::new(fixed("m"), vec![], vec![float("v")], source);
    let record = json!({"v": 1, "meta": {"t": 1_700_000_000}, "f": 1.5});
    let stamp = |mapping: Mapping| {
        mapping
            .map(&record, at(None))
            .map(|point| point.timestamp_ns)
    };
    assert_eq!(
        stamp(with(TimestampSource::Field {
            path: path("/meta/t"),
            unit: TimeUnit::Seconds
        })),
        Ok(1_700_000_000_000_000_000)
    );
    assert_eq!(
        stamp(with(TimestampSource::Field {
            path: path("f"),
            unit: TimeUnit::Millis
        })),
        Ok(1_500_000)
    );
    assert!(matches!(
        stamp(with(TimestampSource::Field {
            path: path("missing"),
            unit: TimeUnit::Seconds
        })),
        Err(MapError::InvalidTimestamp { .. })
    ));
}

#[test]
fn collisions_keep_tells_same_millisecond_records_apart_idempotently() {
    let keep = generator_mapping().with_collisions(Collisions::Keep);
    let record = generator_record();
    let stamp = |partition, offset| {
        keep.map(
            &record,
            KafkaContext {
                partition,
                offset,
                ..at(Some(1_000))
            },
        )
        .unwrap()
        .timestamp_ns
    };
    assert_eq!(stamp(0, 0), 1_000_000_000);
    assert_eq!(stamp(3, 1_234_567), 1_000_567_003);
    // Replays land on the same nanosecond; neighbours in the same millisecond do not collide.
    assert_eq!(stamp(3, 42), stamp(3, 42));
    let mut seen = std::collections::HashSet::new();
    for partition in 0..12 {
        for offset in 5_000..5_900 {
            assert!(
                seen.insert(stamp(partition, offset)),
                "{partition}/{offset}"
            );
        }
    }
    assert!(
        seen.iter()
            .all(|ns| (1_000_000_000..1_001_000_000).contains(ns))
    );
    // The default keeps InfluxDB's rule: same series and time overwrite.
    assert_eq!(
        generator_mapping()
            .map(
                &record,
                KafkaContext {
                    partition: 3,
                    offset: 9,
                    ..at(Some(1_000))
                }
            )
            .unwrap()
            .timestamp_ns,
        1_000_000_000
    );
    // An RFC 3339 time with microseconds cannot be kept apart without changing it.
    let rfc = Mapping::new(
        fixed("m"),
        vec![],
        vec![float("v")],
        TimestampSource::Rfc3339 { path: path("t") },
    )
    .with_collisions(Collisions::Keep);
    assert!(
        rfc.map(&json!({"v": 1, "t": "2026-11-25T05:00:00.123Z"}), at(None))
            .is_ok()
    );
    assert_eq!(
        rfc.map(
            &json!({"v": 1, "t": "2026-11-25T05:00:00.123456Z"}),
            at(None)
        )
        .unwrap_err()
        .rejection()
        .reason,
        "InvalidTimestamp"
    );
}

#[test]
fn every_rejection_reason_is_the_variant_name_and_distinct() {
    let errors = [
        MapError::NotAnObject { found: "array" },
        MapError::UnexpectedKey { key: "k".into() },
        MapError::MissingMeasurement { path: "p".into() },
        MapError::UnsupportedMeasurementValue {
            path: "p".into(),
            found: "array",
        },
        MapError::MissingTag { path: "p".into() },
        MapError::UnsupportedTagValue {
            path: "p".into(),
            found: "array",
        },
        MapError::MissingKafkaKey { tag: "t".into() },
        MapError::MissingHeader {
            tag: "t".into(),
            header: "h".into(),
        },
        MapError::TagNotUtf8 {
            tag: "t".into(),
            origin: "the Kafka key".into(),
        },
        MapError::MissingField { path: "p".into() },
        MapError::NonNumericField {
            path: "p".into(),
            found: "string",
        },
        MapError::NotAnInteger {
            path: "p".into(),
            value: "1.5".into(),
            expected: "a signed 64-bit integer",
        },
        MapError::WrongFieldType {
            path: "p".into(),
            expected: "a boolean",
            found: "number",
        },
        MapError::NoFields,
        MapError::MissingKafkaTimestamp,
        MapError::InvalidTimestamp {
            path: "p".into(),
            reason: "r".into(),
        },
    ];
    let mut reasons = std::collections::HashSet::new();
    for error in &errors {
        let rejection = error.rejection();
        assert_eq!(rejection.stage, crate::reject::Stage::Map);
        let variant = format!("{error:?}");
        assert!(
            variant.starts_with(rejection.reason),
            "{variant} has reason {}",
            rejection.reason
        );
        assert!(reasons.insert(rejection.reason), "{}", rejection.reason);
    }
}

/// Text rich in what line protocol escapes, sometimes unrepresentable (line breaks, a
/// trailing backslash, empty).
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z ,=\\\\\"é\\n{}_-]{0,8}").expect("regex")
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (proptest::num::f64::NORMAL | proptest::num::f64::ZERO).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..3)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn record() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    proptest::collection::btree_map(text(), json_value(), 0..6)
        .prop_map(|map| map.into_iter().collect())
}

fn unrepresentable_key(key: &str) -> bool {
    key.is_empty() || key.ends_with('\\') || key.contains('\n')
}

proptest! {
    #[test]
    fn extra_fields_include_round_trips_through_influxdatas_parser(
        object in record(),
        topic in "[a-z._-]{1,10}",
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
    ) {
        let mapping = Mapping::new(
            Measurement::parse("kafka.{topic}").unwrap(),
            vec![
                tag("src", TagSource::Constant("kafka".into())),
                tag("topic", TagSource::KafkaTopic),
            ],
            vec![],
            TimestampSource::Kafka,
        )
        .with_extra_fields(ExtraFields::Include, vec![]);
        let record = Value::Object(object.clone());
        let kafka = KafkaContext { topic: &topic, key: key.as_deref(), ..at(Some(1_700_000_000_000)) };
        let expected: Vec<(&String, FieldValue<'_>)> = object
            .iter()
            .filter(|(key, _)| !["src", "topic", "time"].contains(&key.as_str()))
            .filter_map(|(key, value)| value::auto(crate::record::Scalar::of(value)).map(|value| (key, value)))
            .collect();
        let point = match mapping.map(&record, kafka) {
            Err(MapError::NoFields) => {
                prop_assert!(expected.is_empty());
                return Ok(());
            }
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
            Ok(point) => point,
        };
        let mut out = Vec::new();
        let unrepresentable = expected.iter().any(|(key, value)| {
            unrepresentable_key(key)
                || matches!(value, FieldValue::String(text) if text.contains('\n'))
        });
        match line_protocol::encode(&point, &mut out) {
            Err(error) => {
                prop_assert!(unrepresentable, "{error} for {point:?}");
                prop_assert!(out.is_empty());
                return Ok(());
            }
            Ok(()) => prop_assert!(!unrepresentable, "{point:?} encoded"),
        }
        let text = String::from_utf8(out).expect("utf-8");
        let parsed = influxdb_line_protocol::parse_lines(&text)
            .next()
            .expect("a line")
            .map_err(|error| TestCaseError::fail(format!("{error} in {text:?}")))?;
        prop_assert_eq!(parsed.series.measurement.to_string(), format!("kafka.{topic}"));
        let tags = parsed.series.tag_set.expect("tags");
        prop_assert_eq!(tags.len(), 2);
        prop_assert_eq!(parsed.field_set.len(), expected.len());
        for ((parsed_key, parsed_value), (key, value)) in parsed.field_set.iter().zip(&expected) {
            prop_assert_eq!(&parsed_key.to_string(), *key);
            let same = match (parsed_value, value) {
                (influxdb_line_protocol::FieldValue::F64(a), FieldValue::Float(b)) => a == b,
                (influxdb_line_protocol::FieldValue::Boolean(a), FieldValue::Boolean(b)) => a == b,
                (influxdb_line_protocol::FieldValue::String(a), FieldValue::String(b)) => a.as_str() == b.as_ref(),
                _ => false,
            };
            prop_assert!(same, "{:?} read back as {:?} from {:?}", value, parsed_value, text);
        }
        prop_assert_eq!(parsed.timestamp, Some(1_700_000_000_000_000_000));
    }

    #[test]
    fn random_paths_and_types_never_panic(
        object in record(),
        paths in proptest::collection::vec("(/[a-z0-9~-]{0,3}){1,3}|[a-z]{1,3}", 1..4),
        kinds in proptest::collection::vec(0..6usize, 4),
        extra in 0..3usize,
    ) {
        const KINDS: [FieldType; 6] = [
            FieldType::Float, FieldType::Integer, FieldType::Unsigned,
            FieldType::Boolean, FieldType::String, FieldType::Auto,
        ];
        let parsed: Vec<FieldPath> = paths.iter().filter_map(|text| FieldPath::parse(text).ok()).collect();
        prop_assume!(!parsed.is_empty());
        let fields = parsed
            .iter()
            .enumerate()
            .map(|(index, path)| Field {
                optional: index % 2 == 1,
                ..Field::new(format!("f{index}"), path.clone(), KINDS[kinds[index]])
            })
            .collect();
        let extra = [ExtraFields::Ignore, ExtraFields::Include, ExtraFields::Reject][extra];
        let mapping = Mapping::new(
            Measurement::Field(parsed[0].clone()),
            vec![tag("t", TagSource::Path(parsed[parsed.len() - 1].clone()))],
            fields,
            TimestampSource::Rfc3339 { path: parsed[0].clone() },
        )
        .with_extra_fields(extra, vec![]);
        let record = Value::Object(object);
        if let Ok(point) = mapping.map(&record, at(None)) {
            let _ = line_protocol::encode(&point, &mut Vec::new());
        }
    }
}
