//! `[schema]` and `[schema_registry]` loading.

use super::test_support::{MINIMAL, parse_in};
use super::*;
use crate::registry::RegistryAuth;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn parse_with(extra: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    parse_in(&format!("{MINIMAL}\n{extra}"), &repo(), env)
}

fn error_of(extra: &str, env: &[(&str, &str)]) -> String {
    parse_with(extra, env)
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn no_registry_by_default() {
    let config = parse_with("", &[]).unwrap();
    assert!(config.schema_registry.is_none());
    assert_eq!(config.schema.format, WireFormat::Auto);
}

#[test]
fn registry_with_basic_auth_from_user_info() {
    let config = parse_with(
        r#"
[schema]
avro_schema_file = "schemas/generator.avsc"
[schema_registry]
url = "https://registry.example:8081/"
basic_auth_user_info = "sink:s3cret:with-colon"
"#,
        &[("KIS_SCHEMA_REGISTRY__TIMEOUT_MS", "2500")],
    )
    .unwrap();
    let registry = config.schema_registry.clone().expect("registry configured");
    assert_eq!(registry.url.as_str(), "https://registry.example:8081/");
    assert_eq!(registry.timeout, Duration::from_millis(2500));
    let RegistryAuth::Basic { username, password } = &registry.auth else {
        panic!("basic auth expected, got {:?}", registry.auth);
    };
    assert_eq!(username, "sink");
    assert_eq!(password.expose(), "s3cret:with-colon");
    assert!(config.schema.avro_schema.is_some());
    // Secrets stay out of check-config output and Debug.
    let shown = format!("{}{:?}", config.effective_toml(), registry);
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn bearer_token_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let config = parse_with(
        &format!(
            "[schema_registry]\nurl = \"http://127.0.0.1:8081\"\nbearer_token_file = {:?}\n",
            token.display().to_string()
        ),
        &[],
    )
    .unwrap();
    assert_eq!(
        config.schema_registry.unwrap().auth,
        RegistryAuth::Bearer(Secret::new("tok-123"))
    );
}

#[test]
fn registry_mistakes_are_named() {
    let cases: &[(&str, &str)] = &[
        (
            "[schema_registry]\nurl = \"http://user:pw@registry:8081\"",
            "schema_registry.url: must not contain credentials",
        ),
        (
            "[schema_registry]\nurl = \"ftp://registry\"",
            "schema_registry.url: must be an http",
        ),
        (
            "[schema_registry]\nbearer_token = \"t\"",
            "schema_registry.url: is required",
        ),
        (
            "[schema_registry]\nurl = \"http://r\"\nbearer_token = \"t\"\nbasic_auth_user_info = \"a:b\"",
            "not both",
        ),
        (
            "[schema_registry]\nurl = \"http://r\"\nbasic_auth_user_info = \"no-colon\"",
            "must be `user:password`",
        ),
        (
            "[schema_registry]\nurl = \"http://r\"\nca_file = \"schemas/generator.avsc\"",
            "schema_registry.ca_file",
        ),
        (
            "[schema_registry]\nurl = \"http://r\"\nretry_initial_backoff_ms = 0",
            "retry_initial_backoff_ms: must be at least 1",
        ),
        (
            "[schema_registry]\nurl = \"http://r\"\ntimeouts_ms = 1",
            "unknown field `timeouts_ms`",
        ),
    ];
    for (extra, expected) in cases {
        let message = error_of(extra, &[]);
        assert!(message.contains(expected), "{extra}: {message}");
        assert!(!message.contains("pw@"), "{message}");
    }
}

#[test]
fn schema_mistakes_are_named() {
    let cases: &[(&str, &str)] = &[
        (
            "[schema]\nformat = \"protobuf\"",
            "schema.format: `protobuf` is not one of auto, json, confluent, avro",
        ),
        (
            "[schema]\nformat = \"avro\"",
            "schema.avro_schema_file: is required with format = \"avro\"",
        ),
        (
            "[schema]\nformat = \"avro_single_object\"",
            "schema.avro_schema_file: is required",
        ),
        (
            "[schema]\navro_schema_file = \"schemas/generator.schema.json\"",
            "is not a valid Avro schema",
        ),
        (
            "[schema]\navro_schema_file = \"schemas/missing.avsc\"",
            "cannot read",
        ),
        (
            "[schema]\njson_schema_file = \"schemas/generator.schema.json\"\nvalidate_registry_json_locally = true",
            "needs both schema.json_schema_file and schema_registry.url",
        ),
    ];
    for (extra, expected) in cases {
        let message = error_of(extra, &[]);
        assert!(message.contains(expected), "{extra}: {message}");
    }
}

#[test]
fn every_format_name_loads() {
    for (name, format) in [
        ("auto", WireFormat::Auto),
        ("json", WireFormat::Json),
        ("confluent", WireFormat::Confluent),
        ("confluent_json", WireFormat::Confluent),
        ("avro", WireFormat::Avro),
        ("avro_single_object", WireFormat::AvroSingleObject),
    ] {
        let config = parse_with(
            "[schema]\navro_schema_file = \"schemas/generator.avsc\"",
            &[("KIS_SCHEMA__FORMAT", name)],
        )
        .unwrap();
        assert_eq!(config.schema.format, format, "{name}");
        assert!(config.schema.decoder(false).is_ok());
    }
}
