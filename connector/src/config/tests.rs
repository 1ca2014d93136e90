use super::test_support::{MINIMAL, parse_in};
use super::*;

fn parse_with(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    parse_in(text, Path::new("."), env)
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
                topic: "emergency_generator",
                partition: 0,
                offset: 0,
                timestamp_ms: Some(1),
                key: None,
                headers: &crate::map::NoHeaders,
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

/// A SASL password passed through `[kafka.properties]` (from the environment, as the Helm chart
/// sets it) reaches librdkafka but never `check-config` output or `Debug`.
#[test]
fn credential_properties_are_never_printed() {
    let config = parse_with(
        MINIMAL,
        &[
            ("KIS_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "SASL_SSL"),
            ("KIS_KAFKA__PROPERTIES__SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KIS_KAFKA__PROPERTIES__SASL_USERNAME", "sink"),
            ("KIS_KAFKA__PROPERTIES__SASL_PASSWORD", "kafka-s3cret"),
            ("KIS_KAFKA__PROPERTIES__SSL_KEYSTORE_PASSWORD", "key-s3cret"),
        ],
    )
    .unwrap();
    assert_eq!(
        config
            .kafka
            .properties
            .get("sasl.password")
            .map(String::as_str),
        Some("kafka-s3cret")
    );
    let printed = config.effective_toml();
    let debug = format!("{config:?}");
    for shown in [&printed, &debug] {
        assert!(!shown.contains("kafka-s3cret"), "{shown}");
        assert!(!shown.contains("key-s3cret"), "{shown}");
        assert!(shown.contains("sink"), "{shown}");
    }
    assert!(printed.contains(crate::secret::REDACTED), "{printed}");
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

/// Maps `record` with the configuration's mapping and encodes it; the line or the error.
fn line_for(
    config: &Config,
    record: serde_json::Value,
    kafka: crate::map::KafkaContext<'_>,
) -> Result<String, String> {
    let point = config
        .mapping
        .map(&record, kafka)
        .map_err(|error| error.to_string())?;
    let mut out = Vec::new();
    crate::line_protocol::encode(&point, &mut out).map_err(|error| error.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

fn kafka_at<'a>(
    key: Option<&'a [u8]>,
    headers: &'a dyn crate::map::HeaderLookup,
) -> crate::map::KafkaContext<'a> {
    crate::map::KafkaContext {
        topic: "sensors",
        partition: 0,
        offset: 0,
        timestamp_ms: Some(1_000),
        key,
        headers,
    }
}

const EVERY_SHAPE: &str = r#"
[mapping]
measurement = "kafka_{topic}"
tags = [
    "generatorID",
    "/meta/region",
    { name = "site", path = "/meta/site" },
    { name = "fleet", value = "north" },
    { name = "partition_key", from = "key" },
    { name = "topic", from = "topic" },
    { name = "source", header = "source-system" },
    { header = "tenant" },
]
fields = [
    "fuel",
    "/readings/0/value",
    { name = "temp_c", path = "/readings/1/value", type = "float" },
    { name = "count", type = "integer" },
    { path = "/stats/max", type = "unsigned" },
    { name = "running", type = "boolean" },
    { name = "state", path = "/meta/state", type = "string" },
    { name = "note", type = "auto", optional = true },
]
extra_fields = "include"
ignore = ["debug"]

[mapping.timestamp]
source = "field"
field = "/meta/time"
unit = "rfc3339"
collisions = "keep"
"#;

fn every_shape_record() -> serde_json::Value {
    serde_json::json!({
        "generatorID": "gen-7",
        "fuel": 400,
        "count": 3,
        "running": true,
        "readings": [{"value": 1.5}, {"value": 21}],
        "stats": {"max": 9},
        "meta": {"region": "eu", "site": "s1", "state": "ok", "time": "2026-11-25T05:00:00.123Z"},
        "extra": "yes",
        "debug": "no"
    })
}

#[test]
fn mapping_entries_in_every_shape() {
    let config = parse(&format!("{MINIMAL}\n{EVERY_SHAPE}")).unwrap();
    let headers = [
        ("source-system", b"erp".as_slice()),
        ("tenant", b"acme".as_slice()),
    ];
    assert_eq!(
        line_for(
            &config,
            every_shape_record(),
            kafka_at(Some(b"k1"), &headers)
        )
        .unwrap(),
        "kafka_sensors,fleet=north,generatorID=gen-7,partition_key=k1,region=eu,site=s1,\
         source=erp,tenant=acme,topic=sensors \
         fuel=400,value=1.5,temp_c=21,count=3i,max=9u,running=true,state=\"ok\",extra=\"yes\" \
         1795582800123000000\n"
    );
    // The effective configuration prints every shape back, and reads back to the same mapping.
    let printed = config.effective_toml();
    let again = parse(&printed).unwrap_or_else(|error| panic!("{error}\n{printed}"));
    assert_eq!(
        line_for(
            &again,
            every_shape_record(),
            kafka_at(Some(b"k1"), &headers)
        ),
        line_for(
            &config,
            every_shape_record(),
            kafka_at(Some(b"k1"), &headers)
        )
    );
}

#[test]
fn the_default_mapping_prints_its_measurement() {
    let printed = parse(MINIMAL).unwrap().effective_toml();
    assert!(printed.contains("measurement = \"generator\""), "{printed}");
    parse(&printed).unwrap();
}

#[test]
fn mapping_mistakes_are_named_with_the_entry() {
    let cases: &[(&str, &str)] = &[
        (
            "tags = [{ name = \"x\" }]",
            "mapping.tags[0]: a tag takes its value from exactly one of path, value (a constant), from (\"key\" or \"topic\") or header; none is set",
        ),
        (
            "tags = [\"a\", { name = \"x\", path = \"a\", value = \"b\" }]",
            "mapping.tags[1]: a tag takes its value from exactly one of path, value (a constant), from (\"key\" or \"topic\") or header; path and value are set",
        ),
        ("tags = [{ nmae = \"x\" }]", "unknown field `nmae`"),
        ("tags = [{ nmae = \"x\" }]", "mapping.tags[0]"),
        (
            "tags = [{ name = \"x\", from = \"kee\" }]",
            "mapping.tags[0].from: unknown variant `kee`",
        ),
        (
            "tags = [{ value = \"north\" }]",
            "mapping.tags[0]: a tag with value = \"...\" needs a name",
        ),
        (
            "tags = [{ from = \"key\" }]",
            "mapping.tags[0]: a tag with from = \"key\" needs a name",
        ),
        (
            "tags = [{ name = \"site\", value = \"\" }]",
            "mapping.tags[0].value: the constant tag value must not be empty",
        ),
        (
            "tags = [{ name = \"site\", value = \"a\\\\\" }]",
            "mapping.tags[0].value: the constant tag value `a\\` ends with a backslash",
        ),
        (
            "tags = [{ name = \"h\", header = \"\" }]",
            "mapping.tags[0].header",
        ),
        (
            "tags = [{ name = \"s\", path = \"/a~2\" }]",
            "mapping.tags[0].path: `/a~2`",
        ),
        (
            "tags = [\"a\", { name = \"a\", value = \"x\" }]",
            "mapping.tags: `a` is listed twice",
        ),
        (
            "tags = [\"/x/site\", \"/y/site\"]",
            "mapping.tags: `site` is listed twice",
        ),
        (
            "tags = [{ name = \"\", value = \"x\" }]",
            "mapping.tags[0]: the tag name must not be empty",
        ),
        (
            "fields = [{ type = \"integer\" }]",
            "mapping.fields[0]: a field needs a path, a name, or both",
        ),
        (
            "fields = [{ name = \"x\", type = \"int\" }]",
            "mapping.fields[0].type: unknown variant `int`",
        ),
        (
            "fields = [{ name = \"x\", optional = \"yes\" }]",
            "mapping.fields[0].optional",
        ),
        (
            "fields = [\"a\", \"/b/a\"]",
            "mapping.fields: `a` is listed twice",
        ),
        (
            "fields = [3]",
            "mapping.fields[0]: invalid type: integer `3`, expected a record path",
        ),
        (
            "fields = [\"/a~2\"]",
            "mapping.fields[0]: `/a~2`: `/a~2` is not a JSON Pointer",
        ),
        (
            "fields = [{ name = \"a\\nb\" }]",
            "mapping.fields[0]: the field name `a\nb` contains a line break",
        ),
        (
            "fields = 5",
            "mapping.fields: invalid type: integer `5`, expected an array of entries",
        ),
        (
            "measurement = \"{topc}\"",
            "mapping.measurement: `{topc}` has a brace",
        ),
        (
            "measurement = \"\"",
            "mapping.measurement: must be non-empty",
        ),
        (
            "measurement = \"m\"\nmeasurement_field = \"/type\"",
            "mapping.measurement_field: set either mapping.measurement or mapping.measurement_field, not both",
        ),
        ("measurement_field = \"/\"", "mapping.measurement_field"),
        (
            "ignore = [\"debug\"]",
            "mapping.ignore: only applies with extra_fields = \"include\" or \"reject\"",
        ),
        (
            "extra_fields = \"all\"",
            "mapping.extra_fields: unknown variant `all`",
        ),
        (
            "extra_fields = \"reject\"\nignore = [\"fuel\"]",
            "mapping.ignore: `fuel` is read by the mapping",
        ),
        (
            "fields = []\nextra_fields = \"reject\"",
            "mapping.fields: needs at least one field",
        ),
        (
            "[mapping.timestamp]\nsource = \"field\"\nfield = \"t\"\nunit = \"days\"",
            "mapping.timestamp.unit: `days` is not one of s, ms, us, ns, rfc3339",
        ),
        (
            "[mapping.timestamp]\nsource = \"field\"\nfield = \"t\"\nunit = \"us\"\ncollisions = \"keep\"",
            "needs a timestamp in s or ms (or rfc3339",
        ),
    ];
    for (mapping, expected) in cases {
        let section = if mapping.starts_with('[') {
            ""
        } else {
            "[mapping]\n"
        };
        let message = error_of(&format!("{MINIMAL}\n{section}{mapping}\n"), &[]);
        assert!(message.contains(expected), "for {mapping:?}: {message}");
        assert!(
            !message.contains("\nin `"),
            "the key is named once: {message}"
        );
    }
}

#[test]
fn mapping_shapes_that_are_accepted() {
    let accepted = [
        "fields = []\nextra_fields = \"include\"",
        "extra_fields = \"include\"\nignore = [\"debug\", \"raw\"]",
        "extra_fields = \"reject\"\nignore = \"debug,raw\"",
        "measurement_field = \"/type\"",
        "measurement = \"{topic}\"",
        "tags = []",
        "[mapping.timestamp]\nsource = \"field\"\nfield = \"/meta/time\"\nunit = \"rfc3339\"\ncollisions = \"keep\"",
        "[mapping.timestamp]\nsource = \"field\"\nfield = \"t\"\nunit = \"s\"\ncollisions = \"keep\"",
    ];
    for mapping in accepted {
        let section = if mapping.starts_with('[') {
            ""
        } else {
            "[mapping]\n"
        };
        parse(&format!("{MINIMAL}\n{section}{mapping}\n"))
            .unwrap_or_else(|error| panic!("{mapping:?}: {error}"));
    }
}

#[test]
fn environment_overrides_the_mapping_with_simple_strings_and_arrays() {
    let config = parse_with(
        MINIMAL,
        &[
            ("KIS_MAPPING__MEASUREMENT", "{topic}"),
            ("KIS_MAPPING__TAGS", "site, /meta/rack"),
            ("KIS_MAPPING__FIELDS", "a,/x/b"),
            ("KIS_MAPPING__EXTRA_FIELDS", "include"),
            ("KIS_MAPPING__IGNORE", "debug"),
        ],
    )
    .unwrap();
    let record = serde_json::json!({"site": "n", "meta": {"rack": 4}, "a": 1, "x": {"b": 2}, "c": true, "debug": 1});
    assert_eq!(
        line_for(&config, record, kafka_at(None, &crate::map::NoHeaders)).unwrap(),
        "sensors,rack=4,site=n a=1,b=2,c=true 1000000000\n"
    );
    let config = parse_with(
        MINIMAL,
        &[
            ("KIS_MAPPING__TAGS", r#"[{ name = "k", from = "key" }]"#),
            (
                "KIS_MAPPING__FIELDS",
                r#"["a", { name = "n", type = "integer" }]"#,
            ),
        ],
    )
    .unwrap();
    let record = serde_json::json!({"a": 1, "n": 2});
    assert_eq!(
        line_for(
            &config,
            record,
            kafka_at(Some(b"key-1"), &crate::map::NoHeaders)
        )
        .unwrap(),
        "generator,k=key-1 a=1,n=2i 1000000000\n"
    );
    let message = error_of(MINIMAL, &[("KIS_MAPPING__EXTRA_FIELDS", "everything")]);
    assert!(message.starts_with("mapping.extra_fields:"), "{message}");
    assert!(message.contains("KIS_MAPPING__EXTRA_FIELDS"), "{message}");
}

/// The fenced blocks of one `#### Example:` section of the README, in order.
fn readme_example(title: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let heading = format!("#### Example: {title}\n");
    let start = readme
        .find(&heading)
        .unwrap_or_else(|| panic!("no {heading:?}"))
        + heading.len();
    let section = &readme[start..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| {
            block
                .split_once('\n')
                .map_or("", |(_, body)| body)
                .to_owned()
        })
        .collect()
}

#[test]
fn readme_mapping_examples_write_the_lines_they_show() {
    let generator = readme_example("the generator default");
    let config = parse(&format!("{MINIMAL}\n{}", generator[0])).unwrap();
    assert_eq!(
        line_for(&config, serde_json::json!({"generatorID": "gen-7", "lat": 51.5, "lon": -0.12, "temperature": 36.2, "pressure": 1.02, "fuel": 400}), crate::map::KafkaContext { timestamp_ms: Some(1_700_000_000_123), ..kafka_at(None, &crate::map::NoHeaders) }).unwrap(),
        "generator,generatorID=gen-7 lat=51.5,lon=-0.12,temperature=36.2,pressure=1.02,fuel=400 1700000000123000000\n"
    );
    let nested = readme_example("a nested record");
    let config = parse(&format!("{MINIMAL}\n{}", nested[0])).unwrap();
    let headers = [("source-system", b"erp".as_slice())];
    assert_eq!(
        line_for(
            &config,
            serde_json::from_str(&nested[1]).unwrap(),
            kafka_at(Some(b"dev-9"), &headers)
        )
        .unwrap(),
        nested[2]
    );
    let include = readme_example("`extra_fields = \"include\"`");
    let config = parse(&format!("{MINIMAL}\n{}", include[0])).unwrap();
    assert_eq!(
        line_for(
            &config,
            serde_json::from_str(&include[1]).unwrap(),
            kafka_at(None, &crate::map::NoHeaders)
        )
        .unwrap(),
        include[2]
    );
}
