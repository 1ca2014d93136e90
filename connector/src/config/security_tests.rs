//! Security settings: Kafka SASL/TLS keys and their combinations, HTTPS options of InfluxDB and
//! the Schema Registry, and that no secret is ever printed.

use super::test_support::{MINIMAL, parse_in};
use super::*;

/// A directory with the test certificate, key and a password file, plus a CA bundle copy.
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata");
    for file in ["client.pem", "client.key"] {
        std::fs::copy(testdata.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::copy(testdata.join("client.pem"), dir.path().join("ca.pem")).unwrap();
    std::fs::write(dir.path().join("sasl-password"), "file-s3cret\n").unwrap();
    std::fs::write(dir.path().join("not-pem.txt"), "hello").unwrap();
    dir
}

fn with_kafka(extra: &str) -> String {
    MINIMAL.replace(
        "topics = [\"emergency_generator\"]",
        &format!("topics = [\"emergency_generator\"]\n{extra}"),
    )
}

fn kafka_error(extra: &str, dir: &Path) -> String {
    parse_in(&with_kafka(extra), dir, &[])
        .map(|_| ())
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn sasl_ssl_with_scram_reaches_every_client_and_is_never_printed() {
    let dir = fixtures();
    let config = parse_in(
        &with_kafka(
            r#"security_protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "sink"
sasl_password_file = "sasl-password"
ssl_ca_file = "ca.pem""#,
        ),
        dir.path(),
        &[],
    )
    .unwrap();
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    for client in [
        config.kafka.consumer_config(),
        config.kafka.dead_letter_producer_config(),
        config.kafka.producer_config(),
    ] {
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(client.get("sasl.username"), Some("sink"));
        assert_eq!(client.get("sasl.password"), Some("file-s3cret"));
        assert_eq!(client.get("ssl.ca.location"), Some(ca.as_str()));
    }
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let printed = config.effective_toml();
    assert!(!printed.contains("file-s3cret"), "{printed}");
    assert!(
        printed.contains("sasl_password = \"<redacted>\""),
        "{printed}"
    );
    assert!(!format!("{config:?}").contains("file-s3cret"));
    assert_eq!(config.kafka.secret_values(), vec!["file-s3cret".to_owned()]);
}

#[test]
fn sasl_plain_from_the_environment_for_a_managed_cluster() {
    let dir = fixtures();
    let config = parse_in(
        MINIMAL,
        dir.path(),
        &[
            ("KIS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
            ("KIS_KAFKA__SASL_MECHANISM", "PLAIN"),
            ("KIS_KAFKA__SASL_USERNAME", "API_KEY"),
            ("KIS_KAFKA__SASL_PASSWORD", "api-s3cret"),
        ],
    )
    .unwrap();
    let consumer = config.kafka.consumer_config();
    assert_eq!(consumer.get("sasl.mechanism"), Some("PLAIN"));
    assert_eq!(consumer.get("sasl.password"), Some("api-s3cret"));
    // The system roots: no CA location is set.
    assert_eq!(consumer.get("ssl.ca.location"), None);
    assert!(!config.effective_toml().contains("api-s3cret"));
}

#[test]
fn mutual_tls_to_the_brokers() {
    let dir = fixtures();
    let config = parse_in(
        &with_kafka(
            r#"security_protocol = "SSL"
ssl_ca_file = "ca.pem"
ssl_certificate_file = "client.pem"
ssl_key_file = "client.key"
ssl_key_password = "key-s3cret""#,
        ),
        dir.path(),
        &[],
    )
    .unwrap();
    let consumer = config.kafka.consumer_config();
    assert!(
        consumer
            .get("ssl.certificate.location")
            .is_some_and(|path| path.ends_with("client.pem"))
    );
    assert!(
        consumer
            .get("ssl.key.location")
            .is_some_and(|path| path.ends_with("client.key"))
    );
    assert_eq!(consumer.get("ssl.key.password"), Some("key-s3cret"));
    assert!(!config.effective_toml().contains("key-s3cret"));
}

#[test]
fn bad_kafka_security_combinations_are_refused_with_the_key_at_fault() {
    let dir = fixtures();
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"sasl_mechanism = "PLAIN""#,
            "kafka.sasl_mechanism:",
            "only used with security_protocol SASL_SSL or SASL_PLAINTEXT, not PLAINTEXT",
        ),
        (
            r#"security_protocol = "SASL_SSL""#,
            "kafka.sasl_mechanism:",
            "is required with security_protocol = SASL_SSL",
        ),
        (
            r#"security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-256""#,
            "kafka.sasl_username:",
            "is required with sasl_mechanism = SCRAM-SHA-256",
        ),
        (
            r#"security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-256"
sasl_username = "sink""#,
            "kafka.sasl_password:",
            "is required",
        ),
        (
            r#"security_protocol = "SASL_SSL"
sasl_mechanism = "GSSAPI""#,
            "kafka.sasl_mechanism:",
            "GSSAPI/Kerberos is not built in",
        ),
        (
            r#"security_protocol = "TLS""#,
            "kafka.security_protocol:",
            "is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        (
            r#"sasl_username = "sink"
sasl_password = "x""#,
            "kafka.sasl_username:",
            "only used with security_protocol SASL_SSL or SASL_PLAINTEXT",
        ),
        (
            r#"security_protocol = "SSL"
ssl_ca_file = "missing.pem""#,
            "kafka.ssl_ca_file:",
            "missing.pem",
        ),
        (
            r#"security_protocol = "SSL"
ssl_ca_file = "not-pem.txt""#,
            "kafka.ssl_ca_file:",
            "is not a PEM file",
        ),
        (
            r#"ssl_ca_file = "ca.pem""#,
            "kafka.ssl_ca_file:",
            "only used with security_protocol SSL or SASL_SSL, not PLAINTEXT",
        ),
        (
            r#"security_protocol = "SSL"
ssl_certificate_file = "client.pem""#,
            "kafka.ssl_key_file:",
            "is required when kafka.ssl_certificate_file is set",
        ),
        (
            r#"security_protocol = "SSL"
ssl_key_password = "x""#,
            "kafka.ssl_key_password:",
            "only used with kafka.ssl_key_file",
        ),
        (
            r#"security_protocol = "SASL_SSL"
sasl_mechanism = "OAUTHBEARER""#,
            "kafka.properties.\"sasl.oauthbearer.method\":",
            "OAUTHBEARER needs sasl.oauthbearer.method = \"oidc\"",
        ),
        (
            r#"security_protocol = "SASL_SSL"
sasl_mechanism = "PLAIN"
sasl_username = "a"
sasl_password = "b"
sasl_password_file = "sasl-password""#,
            "kafka.sasl_password_file:",
            "not both",
        ),
        (
            r#"security_protocol = "SASL_SSL"
[kafka.properties]
"security.protocol" = "SSL""#,
            "kafka.security_protocol:",
            "set either kafka.security_protocol or kafka.properties.\"security.protocol\", not both",
        ),
        (
            r#"[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "sink""#,
            "kafka.sasl_password:",
            "is required",
        ),
    ];
    for (extra, key, message) in cases {
        let error = kafka_error(extra, dir.path());
        assert!(
            error.starts_with(key) && error.contains(message),
            "{extra}\n→ {error}"
        );
    }
}

#[test]
fn oauthbearer_with_oidc_client_credentials() {
    let dir = fixtures();
    let config = parse_in(
        &with_kafka(
            r#"security_protocol = "SASL_SSL"
sasl_mechanism = "OAUTHBEARER"
[kafka.properties]
"sasl.oauthbearer.method" = "oidc"
"sasl.oauthbearer.client.id" = "sink"
"sasl.oauthbearer.client.secret" = "oidc-s3cret"
"sasl.oauthbearer.token.endpoint.url" = "https://idp.example/token""#,
        ),
        dir.path(),
        &[],
    )
    .unwrap();
    assert_eq!(
        config.kafka.consumer_config().get("sasl.mechanism"),
        Some("OAUTHBEARER")
    );
    assert!(!config.effective_toml().contains("oidc-s3cret"));
    assert_eq!(config.kafka.secret_values(), vec!["oidc-s3cret".to_owned()]);
}

#[test]
fn risky_but_legal_kafka_setups_are_warned_about() {
    let dir = fixtures();
    let config = parse_in(
        &with_kafka(
            r#"security_protocol = "SASL_PLAINTEXT"
sasl_mechanism = "PLAIN"
sasl_username = "sink"
sasl_password = "x""#,
        ),
        dir.path(),
        &[],
    )
    .unwrap();
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].contains("SASL PLAIN sends the password as it is"));
    assert!(!config.warnings[0].contains("\"x\""));
}

fn with_influx(url: &str, extra: &str) -> String {
    MINIMAL
        .replace(
            "url = \"http://localhost:8086\"",
            &format!("url = \"{url}\""),
        )
        .replace(
            "database = \"generators\"",
            &format!("database = \"generators\"\n{extra}"),
        )
}

#[test]
fn influxdb_over_https_with_a_private_ca_and_a_client_certificate() {
    let dir = fixtures();
    let config = parse_in(
        &with_influx(
            "https://influx.example:8086",
            r#"username = "sink"
password_file = "sasl-password"
ca_file = "ca.pem"
client_certificate_file = "client.pem"
client_key_file = "client.key""#,
        ),
        dir.path(),
        &[],
    )
    .unwrap();
    assert!(config.influxdb.tls.ca_pem.is_some());
    assert!(config.influxdb.tls.client_identity.is_some());
    assert!(!config.influxdb.tls.insecure_skip_verify);
    assert!(config.warnings.is_empty());
    let debug = format!("{:?}", config.influxdb);
    assert!(
        !debug.contains("PRIVATE KEY") && !debug.contains("file-s3cret"),
        "{debug}"
    );
    // The writer builds its client with them.
    crate::write::InfluxWriter::new(
        &config.influxdb,
        std::sync::Arc::new(crate::metrics::Telemetry::new()),
    )
    .unwrap();
}

#[test]
fn influxdb_tls_options_need_https_and_complete_pairs() {
    let dir = fixtures();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "http://influx:8086",
            r#"ca_file = "ca.pem""#,
            "influxdb.url:",
            "must be an https:// URL",
        ),
        (
            "http://influx:8086",
            "insecure_skip_verify = true",
            "influxdb.url:",
            "must be an https:// URL",
        ),
        (
            "https://influx:8086",
            r#"client_certificate_file = "client.pem""#,
            "influxdb.client_key_file:",
            "is required",
        ),
        (
            "https://influx:8086",
            r#"client_key_file = "client.key""#,
            "influxdb.client_certificate_file:",
            "is required",
        ),
        (
            "https://influx:8086",
            r#"ca_file = "not-pem.txt""#,
            "influxdb.ca_file:",
            "holds no PEM certificate",
        ),
        (
            "https://influx:8086",
            r#"ca_file = "missing.pem""#,
            "influxdb.ca_file:",
            "cannot read",
        ),
        (
            "https://influx:8086",
            r#"client_certificate_file = "client.pem"
client_key_file = "not-pem.txt""#,
            "influxdb.client_certificate_file:",
            "are not a usable PEM certificate and private key",
        ),
        (
            "https://user:pw@influx:8086",
            "",
            "influxdb.url:",
            "must not contain credentials",
        ),
    ];
    for (url, extra, key, message) in cases {
        let error = parse_in(&with_influx(url, extra), dir.path(), &[])
            .map(|_| ())
            .expect_err("should be refused")
            .to_string();
        assert!(
            error.starts_with(key) && error.contains(message),
            "{url} {extra}\n→ {error}"
        );
        assert!(!error.contains("pw@"), "{error}");
    }
}

#[test]
fn skipping_verification_is_an_explicit_warned_opt_in() {
    let dir = fixtures();
    let config = parse_in(
        &with_influx("https://influx:8086", "insecure_skip_verify = true"),
        dir.path(),
        &[],
    )
    .unwrap();
    assert!(config.influxdb.tls.insecure_skip_verify);
    assert_eq!(config.warnings.len(), 1);
    assert!(config.warnings[0].contains("NOT checked"));
}

#[test]
fn schema_registry_client_certificate() {
    let dir = fixtures();
    let text = format!(
        "{MINIMAL}\n[schema_registry]\nurl = \"https://registry:8081\"\nbasic_auth_user_info = \"sink:reg-s3cret\"\nca_file = \"ca.pem\"\nclient_certificate_file = \"client.pem\"\nclient_key_file = \"client.key\"\n"
    );
    let config = parse_in(&text, dir.path(), &[]).unwrap();
    let registry = config.schema_registry.clone().unwrap();
    assert!(registry.tls.ca_pem.is_some() && registry.tls.client_identity.is_some());
    assert!(!config.effective_toml().contains("reg-s3cret"));
    assert!(!format!("{config:?}").contains("reg-s3cret"));
    let http = text.replace("https://registry", "http://registry");
    let error = parse_in(&http, dir.path(), &[])
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("schema_registry.url:"), "{error}");
}

/// Each file in `config/examples` passes `check-config` once its mounted files exist (the
/// examples name absolute paths, which are re-rooted under a temporary directory here) and
/// its secrets are set in the environment, as the file's comments say.
#[test]
fn shipped_security_examples_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let root = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"/etc/", &format!("\"{}/etc/", root.path().display()));
        for line in text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
        {
            let Some((_, value)) = line.split_once(" = \"") else {
                continue;
            };
            let file = Path::new(value.trim_end_matches('"'));
            if !file.starts_with(root.path()) {
                continue;
            }
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            let name = file.file_name().unwrap().to_string_lossy();
            if name.ends_with(".key") {
                std::fs::copy(testdata.join("client.key"), file).unwrap();
            } else if name.ends_with(".crt") {
                std::fs::copy(testdata.join("client.pem"), file).unwrap();
            } else {
                std::fs::write(file, "s3cret\n").unwrap();
            }
        }
        let env = [
            ("KIS_KAFKA__SASL_USERNAME", "API_KEY"),
            ("KIS_KAFKA__SASL_PASSWORD", "api-s3cret"),
            ("KIS_INFLUXDB__TOKEN", "token-s3cret"),
            (
                "KIS_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO",
                "reg:reg-s3cret",
            ),
        ];
        // Only the variables a file's comments name apply to it.
        let env: Vec<(&str, &str)> = env
            .into_iter()
            .filter(|(name, _)| text.contains(name))
            .collect();
        let config = parse_in(&text, root.path(), &env)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(
            config.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            config.warnings
        );
        let printed = config.effective_toml();
        for (name, value) in &env {
            if !name.ends_with("USERNAME") {
                assert!(!printed.contains(value), "{}: {printed}", path.display());
            }
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} examples found");
}
