use std::time::{Duration, Instant};

use apache_avro::types::{Record, Value as AvroValue};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::decode::avro::{encode_datum, generator_datum};

const GENERATOR_AVSC: &str = include_str!("../../../schemas/generator.avsc");

fn generator_schema() -> Value {
    serde_json::from_str(include_str!("../../../schemas/generator.schema.json")).unwrap()
}

fn decoder(format: WireFormat) -> Decoder {
    Decoder::new(format, Some(&generator_schema())).unwrap()
}

const VALID: &str = r#"{"generatorID": "gen-7", "lat": 51.5, "lon": -0.12, "temperature": 36.2, "pressure": 1.02, "fuel": 400.0}"#;

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn rejected(result: Result<Decoded, DecodeFailure>) -> DecodeError {
    match result {
        Err(DecodeFailure::Rejected(error)) => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn fetched(schema_type: Option<&str>, schema: &str) -> FetchedSchema {
    FetchedSchema {
        schema_type: schema_type.map(str::to_owned),
        schema: schema.to_owned(),
        references: Vec::new(),
    }
}

fn registry_decoder(local_json: bool) -> Decoder {
    let local = LocalAvro::new(Some(GENERATOR_AVSC), &[]).unwrap();
    let mut decoder = decoder(WireFormat::Auto)
        .with_local_avro(local)
        .with_registry(local_json);
    let json_schema = RegistrySchema::compile(
        &fetched(Some("JSON"), &generator_schema().to_string()),
        None,
    )
    .unwrap();
    decoder.learn(SchemaKey::Id(1), CachedSchema::Ready(json_schema));
    let avro_schema =
        RegistrySchema::compile(&fetched(None, GENERATOR_AVSC), decoder.reader_schema()).unwrap();
    decoder.learn(SchemaKey::Id(2), CachedSchema::Ready(avro_schema));
    decoder
}

#[test]
fn plain_and_confluent_framed_json_without_a_registry() {
    let decoded = decoder(WireFormat::Auto)
        .decode(Some(VALID.as_bytes()))
        .unwrap();
    assert_eq!(decoded.schema, None);
    assert_eq!(decoded.value["generatorID"], json!("gen-7"));
    let decoded = decoder(WireFormat::Auto)
        .decode(Some(&framed(258, VALID.as_bytes())))
        .unwrap();
    assert_eq!(decoded.schema, Some(SchemaKey::Id(258)));
    assert_eq!(decoded.value["fuel"], json!(400.0));
    assert!(
        decoder(WireFormat::Confluent)
            .decode(Some(&framed(1, VALID.as_bytes())))
            .is_ok()
    );
    // Avro framed for a registry the sink was not told about: the reason says what to set.
    let error = rejected(decoder(WireFormat::Auto).decode(Some(&framed(3, &[0x0c, 0x01]))));
    assert_eq!(error.rejection().reason, "InvalidJson");
    assert!(
        error.to_string().contains("[schema_registry] url"),
        "{error}"
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
        (vec![0xc3, 0x01, 0xff], Stage::Decode, "TruncatedFrame"),
        (
            vec![0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0],
            Stage::Decode,
            "UnknownFingerprint",
        ),
        (framed(9, b"not json"), Stage::Decode, "InvalidJson"),
        (
            br#"{"generatorID": "g"}"#.to_vec(),
            Stage::Validate,
            "SchemaViolation",
        ),
        (b"[1, 2]".to_vec(), Stage::Validate, "SchemaViolation"),
    ];
    for (payload, stage, reason) in cases {
        let rejection = rejected(auto.decode(Some(&payload))).rejection();
        assert_eq!(
            (rejection.stage, rejection.reason),
            (stage, reason),
            "{payload:?}"
        );
        assert!(!rejection.message.is_empty());
    }
    assert!(matches!(
        auto.decode(None),
        Err(DecodeFailure::Rejected(DecodeError::EmptyValue))
    ));
    assert!(matches!(
        rejected(decoder(WireFormat::Confluent).decode(Some(VALID.as_bytes()))),
        DecodeError::NotConfluentFramed { first_byte: b'{' }
    ));
    assert!(matches!(
        rejected(decoder(WireFormat::Json).decode(Some(&framed(1, VALID.as_bytes())))),
        DecodeError::UnrecognisedBytes { first_byte: 0 }
    ));
    assert_eq!(
        rejected(decoder(WireFormat::Avro).decode(Some(&[2, 0])))
            .rejection()
            .reason,
        "NoLocalAvroSchema"
    );
}

#[test]
fn schema_violation_names_the_field_and_the_schema_id() {
    let wrong_type = VALID.replace("400.0", "\"low\"");
    let message =
        rejected(decoder(WireFormat::Auto).decode(Some(&framed(7, wrong_type.as_bytes()))))
            .to_string();
    assert!(message.contains("at /fuel"), "{message}");
    assert!(message.contains("schema id 7"), "{message}");
}

#[test]
fn without_a_schema_any_json_passes() {
    let decoder = Decoder::new(WireFormat::Auto, None).unwrap();
    assert!(decoder.decode(Some(b"{\"anything\": true}")).is_ok());
}

#[test]
fn registry_json_is_validated_with_the_registry_schema() {
    let decoder = registry_decoder(false);
    let decoded = decoder.decode(Some(&framed(1, VALID.as_bytes()))).unwrap();
    assert_eq!(decoded.schema, Some(SchemaKey::Id(1)));
    assert_eq!(decoded.value["fuel"], json!(400.0));
    let missing_fuel =
        r#"{"generatorID": "g", "lat": 1, "lon": 1, "temperature": 1, "pressure": 1}"#;
    let error = rejected(decoder.decode(Some(&framed(1, missing_fuel.as_bytes()))));
    assert_eq!(error.rejection().reason, "SchemaViolation");
    assert!(error.to_string().contains("schema id 1"), "{error}");
}

#[test]
fn registry_json_can_also_be_validated_locally() {
    let mut decoder = registry_decoder(true);
    // The registry's schema allows anything; the local one still requires every reading.
    let open = RegistrySchema::compile(&fetched(Some("JSON"), "{}"), None).unwrap();
    decoder.learn(SchemaKey::Id(5), CachedSchema::Ready(open));
    let error = rejected(decoder.decode(Some(&framed(5, br#"{"generatorID": "g"}"#))));
    assert!(error.to_string().contains("local JSON Schema"), "{error}");
    let decoder = {
        let mut plain = registry_decoder(false);
        plain.learn(
            SchemaKey::Id(5),
            CachedSchema::Ready(
                RegistrySchema::compile(&fetched(Some("JSON"), "{}"), None).unwrap(),
            ),
        );
        plain
    };
    assert!(
        decoder
            .decode(Some(&framed(5, br#"{"generatorID": "g"}"#)))
            .is_ok()
    );
}

#[test]
fn registry_avro_is_read_with_the_writer_schema() {
    let decoder = registry_decoder(false);
    let schema = apache_avro::Schema::parse_str(GENERATOR_AVSC).unwrap();
    let datum = generator_datum(&schema, "gen-9", 12.5);
    let decoded = decoder.decode(Some(&framed(2, &datum))).unwrap();
    assert_eq!(
        decoded.value,
        json!({"generatorID": "gen-9", "lat": 51.5, "lon": -0.12, "temperature": 36.2,
               "pressure": 1.02, "fuel": 12.5})
    );
    // The same datum named by GUID in a header, payload unprefixed.
    let guid = uuid::Uuid::from_u128(0x1234);
    let mut decoder = decoder;
    decoder.learn(
        SchemaKey::Guid(guid),
        CachedSchema::Ready(
            RegistrySchema::compile(&fetched(Some("AVRO"), GENERATOR_AVSC), None).unwrap(),
        ),
    );
    let mut header = vec![1];
    header.extend_from_slice(guid.as_bytes());
    let decoded = decoder
        .decode_with_header(Some(&datum), Some(&header))
        .unwrap();
    assert_eq!(decoded.value["generatorID"], json!("gen-9"));
    assert_eq!(decoded.schema, Some(SchemaKey::Guid(guid)));
    // A JSON payload framed with the Avro schema's id is not Avro.
    let error = rejected(decoder.decode(Some(&framed(2, VALID.as_bytes()))));
    assert_eq!(error.rejection().reason, "InvalidAvro");
}

/// A producer adding an optional field (and widening float to double) mid-stream keeps
/// flowing: the new writer schema resolves to the local reader schema.
#[test]
fn evolved_writer_resolves_to_the_local_reader_schema() {
    let mut decoder = registry_decoder(false);
    let evolved = GENERATOR_AVSC
        .replace(
            r#"{"name": "fuel", "type": "double", "doc": "fuel"}"#,
            r#"{"name": "fuel", "type": "double", "doc": "fuel"},
               {"name": "site", "type": ["null", "string"], "default": null}"#,
        )
        .replace(
            r#""name": "pressure", "type": "double""#,
            r#""name": "pressure", "type": "float""#,
        );
    assert_ne!(evolved, GENERATOR_AVSC);
    let compiled =
        RegistrySchema::compile(&fetched(None, &evolved), decoder.reader_schema()).unwrap();
    decoder.learn(SchemaKey::Id(3), CachedSchema::Ready(compiled));
    let writer = apache_avro::Schema::parse_str(&evolved).unwrap();
    let mut record = Record::new(&writer).unwrap();
    record.put("generatorID", "gen-1");
    record.put("lat", 1.0);
    record.put("lon", 2.0);
    record.put("temperature", 3.0);
    record.put("pressure", 1.5f32);
    record.put("fuel", 4.0);
    record.put(
        "site",
        AvroValue::Union(1, Box::new(AvroValue::String("north".into()))),
    );
    let datum = encode_datum(&writer, record).unwrap();
    let decoded = decoder.decode(Some(&framed(3, &datum))).unwrap();
    assert_eq!(
        decoded.value,
        json!({"generatorID": "gen-1", "lat": 1.0, "lon": 2.0, "temperature": 3.0,
               "pressure": 1.5, "fuel": 4.0})
    );
}

#[test]
fn unknown_and_unusable_schemas() {
    let mut decoder = registry_decoder(false);
    assert!(matches!(
        decoder.decode(Some(&framed(77, b"{}"))),
        Err(DecodeFailure::NeedsSchema(SchemaKey::Id(77)))
    ));
    decoder.learn(
        SchemaKey::Id(77),
        CachedSchema::NotFound {
            ask_again_at: Instant::now() + Duration::from_secs(60),
        },
    );
    let error = rejected(decoder.decode(Some(&framed(77, b"{}"))));
    assert_eq!(error.rejection().reason, "UnknownSchema");
    assert!(error.to_string().contains("schema id 77"), "{error}");
    // Once the wait is over the registry is asked again.
    decoder.learn(
        SchemaKey::Id(77),
        CachedSchema::NotFound {
            ask_again_at: Instant::now(),
        },
    );
    assert!(matches!(
        decoder.decode(Some(&framed(77, b"{}"))),
        Err(DecodeFailure::NeedsSchema(SchemaKey::Id(77)))
    ));
    let protobuf =
        RegistrySchema::compile(&fetched(Some("PROTOBUF"), "syntax = \"proto3\";"), None);
    let message = protobuf.unwrap_err();
    assert!(message.contains("PROTOBUF"), "{message}");
    decoder.learn(SchemaKey::Id(8), CachedSchema::Unusable(message));
    let error = rejected(decoder.decode(Some(&framed(8, b"\x08\x01"))));
    assert_eq!(error.rejection().reason, "UnusableSchema");
    assert!(RegistrySchema::compile(&fetched(None, "{\"type\": \"nope\"}"), None).is_err());
    assert!(RegistrySchema::compile(&fetched(Some("JSON"), "not json"), None).is_err());
}

#[test]
fn json_schema_references_resolve() {
    let schema = FetchedSchema {
        schema_type: Some("JSON".into()),
        schema: r##"{"type": "object", "properties": {"at": {"$ref": "location.json"}},
                     "required": ["at"]}"##
            .into(),
        references: vec![(
            "location.json".into(),
            r#"{"type": "object", "required": ["lat"], "properties": {"lat": {"type": "number"}}}"#
                .into(),
        )],
    };
    let Ok(RegistrySchema::Json(validator, None)) = RegistrySchema::compile(&schema, None) else {
        panic!("the schema compiles");
    };
    assert!(validator.is_valid(&json!({"at": {"lat": 1.0}})));
    assert!(!validator.is_valid(&json!({"at": {"lat": "north"}})));
}

#[test]
fn raw_avro_and_single_object_use_local_schemas() {
    let evolved = GENERATOR_AVSC.replace(
        r#"{"name": "fuel", "type": "double", "doc": "fuel"}"#,
        r#"{"name": "fuel", "type": "double", "doc": "fuel"},
           {"name": "site", "type": "string", "default": "none"}"#,
    );
    let local = LocalAvro::new(Some(GENERATOR_AVSC), std::slice::from_ref(&evolved)).unwrap();
    let schema = apache_avro::Schema::parse_str(GENERATOR_AVSC).unwrap();
    let datum = generator_datum(&schema, "gen-3", 99.0);

    let raw = Decoder::new(WireFormat::Avro, None)
        .unwrap()
        .with_local_avro(LocalAvro::new(Some(GENERATOR_AVSC), &[]).unwrap());
    assert_eq!(raw.decode(Some(&datum)).unwrap().value["fuel"], json!(99.0));
    assert_eq!(
        rejected(raw.decode(Some(&datum[..datum.len() - 3])))
            .rejection()
            .reason,
        "InvalidAvro"
    );

    let single = Decoder::new(WireFormat::Auto, None)
        .unwrap()
        .with_local_avro(local);
    let mut payload = vec![0xC3, 0x01];
    payload.extend_from_slice(&parse_fingerprint(&schema));
    payload.extend_from_slice(&datum);
    assert_eq!(
        single.decode(Some(&payload)).unwrap().value["generatorID"],
        json!("gen-3")
    );
    // A datum written with the additional writer schema resolves to the reader schema.
    let writer = apache_avro::Schema::parse_str(&evolved).unwrap();
    let mut record = Record::new(&writer).unwrap();
    for (name, value) in [
        ("lat", 1.0),
        ("lon", 2.0),
        ("temperature", 3.0),
        ("pressure", 4.0),
        ("fuel", 5.0),
    ] {
        record.put(name, value);
    }
    record.put("generatorID", "gen-4");
    record.put("site", "north");
    let mut payload = vec![0xC3, 0x01];
    payload.extend_from_slice(&parse_fingerprint(&writer));
    payload.extend(encode_datum(&writer, record).unwrap());
    let value = single.decode(Some(&payload)).unwrap().value;
    assert_eq!(value["generatorID"], json!("gen-4"));
    assert_eq!(value.get("site"), None);
}

fn parse_fingerprint(schema: &apache_avro::Schema) -> [u8; 8] {
    let bytes = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
    <[u8; 8]>::try_from(bytes.as_slice()).unwrap()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let decoder = registry_decoder(true);
        let _ = decoder.decode(Some(&bytes));
        let _ = decoder.decode(Some(&framed(2, &bytes)));
        let _ = decoder.decode(Some(&framed(1, &bytes)));
        let _ = decoder.decode_with_header(Some(&bytes), Some(&[0, 0, 0, 0, 2]));
        let _ = self::decoder(WireFormat::Confluent).decode(Some(&bytes));
    }

    /// Every generator reading survives Avro encoding and registry framing unchanged.
    #[test]
    fn avro_round_trips_generator_readings(
        id in "[a-z0-9-]{1,20}",
        fuel in -1.0e6f64..1.0e6,
        registry_id in 1u32..1000,
    ) {
        let mut decoder = registry_decoder(false);
        let compiled = RegistrySchema::compile(&fetched(None, GENERATOR_AVSC), None).unwrap();
        decoder.learn(SchemaKey::Id(registry_id), CachedSchema::Ready(compiled));
        let schema = apache_avro::Schema::parse_str(GENERATOR_AVSC).unwrap();
        let decoded = decoder
            .decode(Some(&framed(registry_id, &generator_datum(&schema, &id, fuel))))
            .unwrap();
        prop_assert_eq!(&decoded.value["generatorID"], &json!(id));
        prop_assert_eq!(decoded.value["fuel"].as_f64(), Some(fuel));
    }
}

/// The schema lookups' hasher keeps every kind of key apart and finds what was stored.
#[test]
fn schema_keys_hash_apart() {
    let mut decoder = decoder(WireFormat::Auto).with_registry(false);
    for id in 0..2000u32 {
        decoder.learn(
            SchemaKey::Id(id),
            CachedSchema::Unusable(format!("id {id}")),
        );
    }
    let guid = uuid::Uuid::from_u128(7);
    decoder.learn(SchemaKey::Guid(guid), CachedSchema::Unusable("guid".into()));
    for id in [0u32, 7, 1999] {
        match decoder.schemas.get(&SchemaKey::Id(id)) {
            Some(CachedSchema::Unusable(message)) => assert_eq!(message, &format!("id {id}")),
            other => panic!("id {id}: {other:?}"),
        }
    }
    assert!(matches!(
        decoder.schemas.get(&SchemaKey::Guid(guid)),
        Some(CachedSchema::Unusable(message)) if message == "guid"
    ));
    assert!(!decoder.schemas.contains_key(&SchemaKey::Id(2000)));
    let hashing = KeyHashing::default();
    let hash = |bytes: &[u8]| {
        let mut hasher = hashing.build_hasher();
        hasher.write(bytes);
        hasher.finish()
    };
    assert_eq!(hash(b"ab"), hash(b"ab"));
    assert_ne!(hash(b"ab"), hash(b"ab\0"));
    assert_ne!(hash(&[0; 8]), hash(&[0; 16]));
}
