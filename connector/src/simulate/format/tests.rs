use apache_avro::types::Value as Avro;

use super::*;
use crate::simulate::fleet::Fleet;
use crate::simulate::{GENERATOR_AVRO_SCHEMA, GENERATOR_JSON_SCHEMA};

const FRAMING: Framing = Framing {
    schema_id: 0x0102_0304,
    unregistered_id: 1_000_007,
};

fn avro_schema() -> apache_avro::Schema {
    apache_avro::Schema::parse_str(GENERATOR_AVRO_SCHEMA).unwrap()
}

fn reading(fault: Option<u64>) -> Reading {
    Reading {
        sample: Sample {
            generator_id: "gen-7".into(),
            lat: 51.5,
            lon: -0.12,
            temperature: 36.2,
            pressure: 1.02,
            fuel: 400.5,
        },
        timestamp_ms: 1_700_000_000_123,
        fault,
    }
}

/// Decodes a whole Avro datum with generator.avsc, as a strict consumer would: every byte must
/// belong to the record.
fn decode_avro(datum: &[u8]) -> Result<Vec<(String, Avro)>, String> {
    let mut rest = datum;
    let schema = avro_schema();
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .and_then(|reader| reader.read_value(&mut rest))
        .map_err(|error| error.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the record", rest.len()));
    }
    match value {
        Avro::Record(fields) => Ok(fields),
        other => Err(format!("not a record: {other:?}")),
    }
}

/// A Confluent frame's schema id and payload, checked like a registry-aware consumer that knows
/// only `FRAMING.schema_id`.
fn unframe(value: &[u8]) -> Result<&[u8], String> {
    let (&magic, rest) = value.split_first().ok_or("empty value")?;
    if magic != CONFLUENT_MAGIC {
        return Err(format!("magic byte 0x{magic:02x}"));
    }
    let id = rest
        .get(..4)
        .and_then(|id| <[u8; 4]>::try_from(id).ok())
        .map(u32::from_be_bytes)
        .ok_or("frame shorter than its header")?;
    if id != FRAMING.schema_id {
        return Err(format!("schema id {id} not registered"));
    }
    Ok(rest.get(4..).unwrap_or_default())
}

/// Parses JSON text and validates it against generator.schema.json, as Confluent's
/// `JSONDeserializer` does. Self-contained rather than the sink's decoder, whose API is its own.
fn decode_json(text: &[u8]) -> Result<serde_json::Value, String> {
    let schema: serde_json::Value = serde_json::from_str(GENERATOR_JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|error| error.to_string())?;
    let first_violation = validator.iter_errors(&value).next().map(|e| e.to_string());
    match first_violation {
        None => Ok(value),
        Some(error) => Err(error),
    }
}

/// The fault number that selects `fault` in `format`.
fn sequence_of(format: Format, fault: Fault) -> u64 {
    let faults = format.faults();
    let index = faults.iter().position(|f| *f == fault).unwrap();
    // A full cycle later, to show the choice is periodic, not just the first few records.
    (faults.len() + index) as u64
}

#[test]
fn frames_are_magic_then_big_endian_id_then_payload() {
    assert_eq!(
        frame(0x0102_0304, b"{}"),
        [0x00, 0x01, 0x02, 0x03, 0x04, b'{', b'}']
    );
    assert_eq!(frame(1, &[]), [0x00, 0, 0, 0, 1]);
    assert_eq!(frame(u32::MAX, &[9]), [0x00, 0xff, 0xff, 0xff, 0xff, 9]);
}

#[test]
fn json_sr_values_are_framed_schema_valid_json() {
    let value = Encoder::json_sr(FRAMING).encode(&reading(None)).unwrap();
    assert_eq!(value.get(..5), Some(&[0x00, 0x01, 0x02, 0x03, 0x04][..]));
    let decoded = unframe(&value).and_then(decode_json).unwrap();
    assert_eq!(decoded["generatorID"], "gen-7");
    assert_eq!(decoded["fuel"], 400.5);
    let plain = Encoder::json().encode(&reading(None)).unwrap();
    assert_eq!(
        value.get(5..),
        Some(&plain[..]),
        "framing adds only the header"
    );
}

#[test]
fn avro_values_round_trip_through_generator_avsc() {
    let raw = Encoder::avro(GENERATOR_AVRO_SCHEMA, "avsc", None).unwrap();
    let framed = Encoder::avro(GENERATOR_AVRO_SCHEMA, "avsc", Some(FRAMING)).unwrap();
    let mut fleet = Fleet::new(4, 3, 0.0);
    for _ in 0..500 {
        let reading = fleet.next_reading(0);
        let datum = raw.encode(&reading).unwrap();
        let value = framed.encode(&reading).unwrap();
        assert_eq!(value.get(..5), Some(&frame(FRAMING.schema_id, &[])[..]));
        assert_eq!(
            value.get(5..),
            Some(&datum[..]),
            "framing adds only the header"
        );
        let sample = &reading.sample;
        let expected = vec![
            (
                "generatorID".to_owned(),
                Avro::String(sample.generator_id.clone()),
            ),
            ("lat".to_owned(), Avro::Double(sample.lat)),
            ("lon".to_owned(), Avro::Double(sample.lon)),
            ("temperature".to_owned(), Avro::Double(sample.temperature)),
            ("pressure".to_owned(), Avro::Double(sample.pressure)),
            ("fuel".to_owned(), Avro::Double(sample.fuel)),
        ];
        assert_eq!(decode_avro(&datum).unwrap(), expected);
    }
}

#[test]
fn avro_datum_bytes_are_exact() {
    let datum = Encoder::avro(GENERATOR_AVRO_SCHEMA, "avsc", None)
        .unwrap()
        .encode(&reading(None))
        .unwrap();
    let mut expected = vec![10]; // zig-zag varint of the string length 5
    expected.extend_from_slice(b"gen-7");
    for number in [51.5f64, -0.12, 36.2, 1.02, 400.5] {
        expected.extend_from_slice(&number.to_le_bytes());
    }
    assert_eq!(datum, expected);
}

#[test]
fn every_fault_of_a_format_comes_up_in_turn() {
    for format in [Format::Json, Format::JsonSr, Format::AvroSr, Format::Avro] {
        let faults = format.faults();
        let seen: Vec<Fault> = (1..=faults.len() as u64 * 2)
            .map(|sequence| faults[(sequence % faults.len() as u64) as usize])
            .collect();
        for fault in faults {
            assert!(seen.contains(fault), "{format:?} never produces {fault:?}");
        }
    }
}

#[test]
fn avro_faults_are_really_invalid() {
    let encoder = Encoder::avro(GENERATOR_AVRO_SCHEMA, "avsc", None).unwrap();
    for &fault in Format::Avro.faults() {
        let value = encoder
            .encode(&reading(Some(sequence_of(Format::Avro, fault))))
            .unwrap();
        match (fault, decode_avro(&value)) {
            (Fault::EmptyGeneratorId, Ok(fields)) => {
                assert_eq!(
                    fields[0],
                    ("generatorID".into(), Avro::String(String::new()))
                );
            }
            (Fault::EmptyGeneratorId, Err(error)) => panic!("{fault:?} must decode: {error}"),
            (_, Ok(fields)) => panic!("{fault:?} decoded as {fields:?}"),
            (_, Err(_)) => {}
        }
    }
}

#[test]
fn avro_sr_faults_are_really_invalid() {
    let encoder = Encoder::avro(GENERATOR_AVRO_SCHEMA, "avsc", Some(FRAMING)).unwrap();
    for &fault in Format::AvroSr.faults() {
        let value = encoder
            .encode(&reading(Some(sequence_of(Format::AvroSr, fault))))
            .unwrap();
        let outcome = unframe(&value).and_then(decode_avro);
        match (fault, outcome) {
            (Fault::EmptyGeneratorId, Ok(fields)) => {
                assert_eq!(
                    fields[0],
                    ("generatorID".into(), Avro::String(String::new()))
                );
            }
            (Fault::EmptyGeneratorId, Err(error)) => panic!("{fault:?} must decode: {error}"),
            (_, Ok(fields)) => panic!("{fault:?} decoded as {fields:?}"),
            (_, Err(_)) => {}
        }
    }
}

#[test]
fn avro_sr_faults_fail_where_they_should() {
    let encoder = Encoder::avro(GENERATOR_AVRO_SCHEMA, "avsc", Some(FRAMING)).unwrap();
    let value = |fault| {
        encoder
            .encode(&reading(Some(sequence_of(Format::AvroSr, fault))))
            .unwrap()
    };
    assert_eq!(value(Fault::WrongMagic).first(), Some(&WRONG_MAGIC));
    assert_eq!(
        value(Fault::UnregisteredSchemaId).get(..5),
        Some(&frame(FRAMING.unregistered_id, &[])[..])
    );
    assert_eq!(value(Fault::TruncatedFrame), [0x00, 0x01, 0x02]);
    // The frame is right; the datum is what is broken.
    for fault in [Fault::TruncatedDatum, Fault::Garbage] {
        let datum = unframe(&value(fault)).unwrap().to_vec();
        assert!(decode_avro(&datum).is_err(), "{fault:?}");
    }
}

#[test]
fn json_faults_are_really_invalid() {
    for (format, encoder) in [
        (Format::Json, Encoder::json()),
        (Format::JsonSr, Encoder::json_sr(FRAMING)),
    ] {
        for &fault in format.faults() {
            let value = encoder
                .encode(&reading(Some(sequence_of(format, fault))))
                .unwrap();
            let outcome = match format {
                Format::JsonSr => unframe(&value).and_then(decode_json),
                _ => decode_json(&value),
            };
            match (fault, outcome) {
                (Fault::EmptyGeneratorId, Ok(decoded)) => {
                    assert_eq!(decoded["generatorID"], "")
                }
                (Fault::EmptyGeneratorId, Err(error)) => {
                    panic!("{format:?} {fault:?} must decode: {error}")
                }
                (_, Ok(decoded)) => panic!("{format:?} {fault:?} decoded as {decoded}"),
                (_, Err(_)) => {}
            }
        }
    }
}

#[test]
fn garbage_is_seeded_and_always_claims_more_bytes_than_it_has() {
    for sequence in 0..200 {
        let bytes = garbage(sequence);
        assert_eq!(bytes, garbage(sequence));
        assert_eq!(bytes.get(..2), Some(&[0x80, 0x40][..]));
        assert!(bytes.len() < 4096 + 2);
    }
}

#[test]
fn unusable_avro_schemas_fail_at_start_up() {
    let error = Encoder::avro("{not json", "bad.avsc", None).unwrap_err();
    assert!(matches!(error, FormatError::AvroSchema { .. }), "{error}");
    let error = Encoder::avro(r#""string""#, "string.avsc", None).unwrap_err();
    assert!(matches!(error, FormatError::NotARecord { .. }), "{error}");
    let missing_fuel = GENERATOR_AVRO_SCHEMA.replace(r#""name": "fuel""#, r#""name": "level""#);
    let error = Encoder::avro(&missing_fuel, "renamed.avsc", None).unwrap_err();
    assert!(matches!(error, FormatError::AvroEncode { .. }), "{error}");
    assert!(error.to_string().contains("renamed.avsc"), "{error}");
}

#[test]
fn json_schemas_that_reject_a_reading_fail_at_start_up() {
    let error = check_json_schema("[", "bad.json").unwrap_err();
    assert!(matches!(error, FormatError::JsonSchema { .. }), "{error}");
    let stricter = GENERATOR_JSON_SCHEMA.replace(r#""fuel"]"#, r#""fuel", "serial"]"#);
    assert_ne!(stricter, GENERATOR_JSON_SCHEMA);
    let error = check_json_schema(&stricter, "stricter.json").unwrap_err();
    assert!(
        matches!(error, FormatError::JsonSchemaRejects { .. }),
        "{error}"
    );
}
