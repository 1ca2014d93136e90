use super::*;

const MINIMAL: &str = r#"
[kafka]
brokers = ["localhost:9092"]
group_id = "sink"
topics = ["emergency_generator"]

[influxdb]
api = "v1"
url = "http://localhost:8086"
database = "generators"
"#;

fn parse_with(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()));
    Config::parse(text, Path::new("test.toml"), Path::new("."), env)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, &[])
}

fn error_of(text: &str, env: &[(&str, &str)]) -> String {
    parse_with(text, env)
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn minimal_config_gets_generator_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.kafka.topics, vec!["emergency_generator"]);
    assert_eq!(config.batch.max_records, 5000);
    assert_eq!(config.batch.max_bytes, 1 << 20);
    assert_eq!(config.batch.linger, Duration::from_millis(100));
    assert_eq!(config.dead_letter.topic_template, "{topic}.dlq");
    assert_eq!(config.dead_letter.policy, InvalidRecordPolicy::DeadLetter);
    assert!(config.influxdb.gzip);
    assert_eq!(
        config.influxdb.api,
        InfluxApi::V1 {
            database: "generators".into(),
            retention_policy: None
        }
    );
    let record = serde_json::json!({"generatorID": "g", "lat": 1, "lon": 2, "temperature": 3, "pressure": 4, "fuel": 5});
    let point = config
        .mapping
        .map(
            &record,
            crate::map::KafkaContext {
                timestamp_ms: Some(1),
                partition: 0,
                offset: 0,
            },
        )
        .unwrap();
    assert_eq!(point.measurement, "generator");
    assert_eq!(point.fields.len(), 5);
}

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config");
    for name in ["local.toml", "reference.toml"] {
        let path = root.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        Config::parse(&text, &path, &root, Vec::new())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
}

#[test]
fn unknown_keys_are_named() {
    let text = format!("{MINIMAL}\n[batch]\nmax_recods = 5\n");
    let message = error_of(&text, &[]);
    assert!(message.starts_with("batch"), "{message}");
    assert!(message.contains("max_recods"), "{message}");
    assert!(error_of(&format!("{MINIMAL}\n[bogus]\n"), &[]).contains("bogus"));
}

#[test]
fn missing_required_keys_are_named() {
    let message = error_of("[influxdb]\nurl = \"http://x:1\"\n", &[]);
    assert!(message.contains("kafka"), "{message}");
    let without_group = MINIMAL.replace("group_id = \"sink\"\n", "");
    assert!(error_of(&without_group, &[]).contains("group_id"));
}

#[test]
fn bad_values_are_named_with_the_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "[batch]\nmax_records = 0",
            "batch.max_records: must be at least 1",
        ),
        ("[batch]\nmax_records = \"many\"", "batch.max_records"),
        ("[batch]\nlinger_ms = -1", "batch.linger_ms"),
        ("[schema]\nformat = \"xml\"", "schema.format"),
        (
            "[schema]\njson_schema_file = \"/nonexistent.json\"",
            "schema.json_schema_file: cannot read",
        ),
        (
            "[mapping]\nfields = []",
            "mapping.fields: needs at least one field",
        ),
        (
            "[mapping]\ntags = [\"fuel\"]",
            "mapping.fields: `fuel` is also a tag",
        ),
        (
            "[mapping.timestamp]\nsource = \"field\"",
            "mapping.timestamp.field: is required",
        ),
        (
            "[mapping.timestamp]\nsource = \"field\"\nfield = \"t\"\nunit = \"days\"",
            "mapping.timestamp.unit",
        ),
        ("[dead_letter]\ntopic = \"{topic}\"", "dead_letter.topic"),
        ("[dead_letter]\ntopic = \"bad topic\"", "dead_letter.topic"),
        ("[metrics]\nlisten = \"nowhere\"", "metrics.listen"),
        ("[log]\nformat = \"xml\"", "log.format"),
        (
            "[influxdb]\nwrite_concurrency = 0",
            "influxdb.write_concurrency: must be between 1 and 64",
        ),
        ("[dead_letter]\npolicy = \"ignore\"", "dead_letter.policy"),
        (
            "[mapping.timestamp]\ncollisions = \"merge\"",
            "mapping.timestamp.collisions",
        ),
        (
            "[mapping.timestamp]\nsource = \"field\"\nfield = \"t\"\nunit = \"ns\"\ncollisions = \"keep\"",
            "needs a timestamp in s or ms",
        ),
        (
            "[kafka.properties]\n\"enable.auto.offset.store\" = \"true\"",
            "kafka.properties.\"enable.auto.offset.store\"",
        ),
    ];
    for (extra, expected) in cases {
        // Sections already present in MINIMAL are merged by appending keys to them.
        let text = merge(MINIMAL, extra);
        let message = error_of(&text, &[]);
        assert!(message.contains(expected), "for {extra:?}: {message}");
    }
}

/// Appends `extra` to `base`, folding a `[kafka…]` or `[influxdb]` header into the existing table.
fn merge(base: &str, extra: &str) -> String {
    if let Some(rest) = extra.strip_prefix("[influxdb]\n") {
        return base.replace("[influxdb]\n", &format!("[influxdb]\n{rest}\n"));
    }
    format!("{base}\n{extra}\n")
}

#[test]
fn influxdb_api_requirements() {
    let v2 = MINIMAL.replace("api = \"v1\"", "api = \"v2\"");
    assert!(error_of(&v2, &[]).contains("influxdb.org: is required with api = \"v2\""));
    let message = error_of(
        &v2,
        &[("KIS_INFLUXDB__ORG", "acme"), ("KIS_INFLUXDB__BUCKET", "b")],
    );
    assert!(message.contains("influxdb.token"), "{message}");
    let config = parse_with(
        &v2,
        &[
            ("KIS_INFLUXDB__ORG", "acme"),
            ("KIS_INFLUXDB__BUCKET", "b"),
            ("KIS_INFLUXDB__TOKEN", "t0k"),
        ],
    )
    .unwrap();
    assert_eq!(config.influxdb.auth, InfluxAuth::Token(Secret::new("t0k")));
    assert!(error_of(MINIMAL, &[("KIS_INFLUXDB__USERNAME", "u")]).contains("influxdb.password"));
    assert!(
        error_of(MINIMAL, &[("KIS_INFLUXDB__URL", "http://u:p@host:8086")])
            .contains("must not contain credentials")
    );
    assert!(error_of(MINIMAL, &[("KIS_INFLUXDB__API", "v9")]).contains("influxdb.api"));
}

#[test]
fn environment_overrides_every_level_and_accepts_text_numbers() {
    let config = parse_with(
        MINIMAL,
        &[
            ("KIS_BATCH__MAX_RECORDS", "1000"),
            ("KIS_INFLUXDB__GZIP", "false"),
            ("KIS_KAFKA__TOPICS", "a, b"),
            ("KIS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000"),
            ("KIS_MAPPING__TIMESTAMP__SOURCE", "field"),
            ("KIS_MAPPING__TIMESTAMP__FIELD", "ts"),
            ("KIS_MAPPING__TIMESTAMP__UNIT", "ms"),
            // Not configuration: no double underscore.
            ("KIS_STACK_DIR", "/tmp"),
            ("OTHER__THING", "x"),
        ],
    )
    .unwrap();
    assert_eq!(config.batch.max_records, 1000);
    assert!(!config.influxdb.gzip);
    assert_eq!(config.kafka.topics, vec!["a", "b"]);
    assert_eq!(
        config
            .kafka
            .properties
            .get("session.timeout.ms")
            .map(String::as_str),
        Some("6000")
    );
}

#[test]
fn environment_lists_as_toml_arrays_and_secrets_stay_text() {
    let config = parse_with(
        MINIMAL,
        &[
            ("KIS_KAFKA__TOPICS", r#"["x", "y"]"#),
            ("KIS_INFLUXDB__USERNAME", "u"),
            ("KIS_INFLUXDB__PASSWORD", "123"),
        ],
    )
    .unwrap();
    assert_eq!(config.kafka.topics, vec!["x", "y"]);
    let InfluxAuth::Basic { password, .. } = &config.influxdb.auth else {
        panic!("expected basic auth");
    };
    assert_eq!(password.expose(), "123");
}

#[test]
fn environment_errors_name_the_variable() {
    let message = error_of(MINIMAL, &[("KIS_BATCH__MAX_RECORDS", "lots")]);
    assert!(message.starts_with("batch.max_records:"), "{message}");
    assert!(message.contains("KIS_BATCH__MAX_RECORDS"), "{message}");
    let message = error_of(MINIMAL, &[("KIS_BATCH__MAX_RECS", "5")]);
    assert!(message.contains("max_recs"), "{message}");
    assert!(error_of(MINIMAL, &[("KIS_KAFKA__GROUP_ID__X", "5")]).contains("kafka.group_id"));
}

#[test]
fn secrets_come_from_files_and_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "file-s3cret\n").unwrap();
    let text = MINIMAL.replace(
        "api = \"v1\"",
        "api = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken_file = \"token\"",
    );
    let config = Config::parse(&text, &dir.path().join("c.toml"), dir.path(), Vec::new()).unwrap();
    assert_eq!(
        config.influxdb.auth,
        InfluxAuth::Token(Secret::new("file-s3cret"))
    );
    let printed = config.effective_toml();
    assert!(!printed.contains("file-s3cret"), "{printed}");
    assert!(printed.contains(crate::secret::REDACTED), "{printed}");
    assert!(!format!("{config:?}").contains("file-s3cret"));

    let with_password = parse_with(
        MINIMAL,
        &[
            ("KIS_INFLUXDB__USERNAME", "u"),
            ("KIS_INFLUXDB__PASSWORD", "pa55word"),
        ],
    )
    .unwrap();
    assert!(!with_password.effective_toml().contains("pa55word"));
    assert!(!format!("{with_password:?}").contains("pa55word"));

    let both = text.replace("token_file", "token = \"x\"\ntoken_file");
    let error = Config::parse(&both, &dir.path().join("c.toml"), dir.path(), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("either influxdb.token or influxdb.token_file"),
        "{error}"
    );
}

#[test]
fn syntax_errors_point_at_the_file() {
    let message = error_of("[kafka\n", &[]);
    assert!(message.contains("test.toml is not valid TOML"), "{message}");
}
