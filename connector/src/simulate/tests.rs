use super::*;
use crate::decode::{Decoder, WireFormat};

fn json_decoder() -> Decoder {
    let schema: serde_json::Value = serde_json::from_str(GENERATOR_JSON_SCHEMA).unwrap();
    Decoder::new(WireFormat::Auto, Some(&schema)).unwrap()
}

#[test]
fn valid_json_readings_match_the_schema() {
    let decoder = json_decoder();
    let encoder = Encoder::json();
    let mut fleet = Fleet::new(3, 7, 0.0);
    for _ in 0..3000 {
        let reading = fleet.next_reading(1_000);
        let value = encoder.encode(&reading).unwrap();
        let decoded = decoder.decode(Some(&value)).expect("valid reading");
        assert_eq!(decoded.value["fuel"].as_f64(), Some(reading.sample.fuel));
    }
}

#[test]
fn invalid_json_readings_are_rejected_and_the_ratio_holds() {
    let decoder = json_decoder();
    let encoder = Encoder::json();
    let mut fleet = Fleet::new(5, 1, 0.2);
    let readings: Vec<Reading> = (0..5000).map(|_| fleet.next_reading(0)).collect();
    let invalid: Vec<&Reading> = readings.iter().filter(|r| r.is_invalid()).collect();
    assert!((800..1200).contains(&invalid.len()), "{}", invalid.len());
    for reading in invalid {
        let value = encoder.encode(reading).unwrap();
        // The empty-generatorID kind passes the schema and is rejected by the mapping.
        if let Ok(decoded) = decoder.decode(Some(&value)) {
            assert_eq!(decoded.value["generatorID"], "");
        }
    }
}

/// The default format's bytes must not change: demos and suites count on them.
#[test]
fn json_values_are_what_the_simulator_always_wrote() {
    let reading = Reading {
        sample: format::probe_sample(),
        timestamp_ms: 0,
        fault: None,
    };
    let value = Encoder::json().encode(&reading).unwrap();
    assert_eq!(
        String::from_utf8(value).unwrap(),
        r#"{"fuel":400.0,"generatorID":"gen-1","lat":51.5,"lon":-0.12,"pressure":1.02,"temperature":36.2}"#
    );
}

#[test]
fn the_built_in_schemas_are_accepted() {
    format::check_json_schema(GENERATOR_JSON_SCHEMA, "json").unwrap();
    Encoder::avro(GENERATOR_AVRO_SCHEMA, "avsc", None).unwrap();
}

#[tokio::test]
async fn a_registry_format_without_a_registry_is_refused() {
    let options = SimulateOptions {
        topic: "t".into(),
        generators: 1,
        rate: 0.0,
        limit: Limit::Count(1),
        key: KeyMode::Uuid,
        invalid_ratio: 0.0,
        seed: 1,
        format: FormatOptions {
            format: Format::AvroSr,
            ..FormatOptions::default()
        },
    };
    let error = prepare_encoder(&options, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        SimulateError::RegistryMissing(Format::AvroSr)
    ));
}

#[tokio::test]
async fn an_unreadable_schema_file_names_the_file() {
    let options = SimulateOptions {
        topic: "t".into(),
        generators: 1,
        rate: 0.0,
        limit: Limit::Count(1),
        key: KeyMode::Uuid,
        invalid_ratio: 0.0,
        seed: 1,
        format: FormatOptions {
            format: Format::Avro,
            schema_file: Some("/nonexistent/generator.avsc".into()),
            registry: None,
        },
    };
    let error = prepare_encoder(&options, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/generator.avsc"),
        "{error}"
    );
}
