//! `[alerts]` loading.

use super::test_support::{MINIMAL, parse_in};
use super::*;
use crate::alerts::{AlertRules, Level, Override, Thresholds};

fn parse_with(extra: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    parse_in(&format!("{MINIMAL}\n{extra}"), Path::new("."), env)
}

fn rules(extra: &str) -> AlertRules {
    parse_with(extra, &[])
        .unwrap_or_else(|error| panic!("{error}"))
        .alerts
        .expect("alerts enabled")
}

fn error_of(extra: &str) -> String {
    parse_with(extra, &[])
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn on_by_default_for_the_generator_fleet() {
    assert_eq!(
        rules(""),
        AlertRules {
            id_tag: "generatorID".into(),
            fuel_field: "fuel".into(),
            thresholds: Thresholds::new(200.0, 100.0).unwrap(),
            overrides: vec![],
            measurement: "generator_alerts".into(),
            max_generators: 10_000,
        }
    );
    let effective = parse_with("", &[]).unwrap().effective_toml();
    assert!(effective.contains("[alerts]"), "{effective}");
    assert!(effective.contains("warn = 200.0"), "{effective}");
}

#[test]
fn every_key_and_overrides_in_order() {
    let rules = rules(
        r#"
[alerts]
id_tag = "gid"
fuel_field = "level"
warn = 250
critical = 50.5
measurement = "low_fuel"
max_generators = 3

[[alerts.overrides]]
tag = "site"
value = "north"
warn = 300
critical = 100

[[alerts.overrides]]
tag = "gid"
value = "big-1"
critical = 20
"#,
    );
    assert_eq!(
        (
            rules.id_tag.as_str(),
            rules.fuel_field.as_str(),
            rules.measurement.as_str(),
            rules.max_generators
        ),
        ("gid", "level", "low_fuel", 3)
    );
    assert_eq!(rules.thresholds, Thresholds::new(250.0, 50.5).unwrap());
    assert_eq!(
        rules.overrides,
        vec![
            Override {
                tag: "site".into(),
                value: "north".into(),
                thresholds: Thresholds::new(300.0, 100.0).unwrap(),
            },
            // critical only: warn stays the default.
            Override {
                tag: "gid".into(),
                value: "big-1".into(),
                thresholds: Thresholds::new(250.0, 20.0).unwrap(),
            },
        ]
    );
}

#[test]
fn disabled_means_no_rules_but_still_checked() {
    assert!(
        parse_with("[alerts]\nenabled = false\n", &[])
            .unwrap()
            .alerts
            .is_none()
    );
    assert!(
        parse_with("", &[("KIS_ALERTS__ENABLED", "false")])
            .unwrap()
            .alerts
            .is_none()
    );
    assert!(
        error_of("[alerts]\nenabled = false\nwarn = 1\ncritical = 2\n")
            .starts_with("alerts.critical:")
    );
}

#[test]
fn environment_overrides_set_thresholds() {
    let config = parse_with(
        "",
        &[
            ("KIS_ALERTS__WARN", "300"),
            ("KIS_ALERTS__CRITICAL", "99.5"),
        ],
    )
    .unwrap();
    let alerts = config.alerts.unwrap();
    assert_eq!(
        (
            alerts.thresholds.get(Level::Warn),
            alerts.thresholds.get(Level::Critical)
        ),
        (300.0, 99.5)
    );
    let message = parse_with("", &[("KIS_ALERTS__WARN", "nan")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "alerts.warn: is NaN; a threshold must be a finite number"
    );
    let message = parse_with("", &[("KIS_ALERTS__WARN", "low")])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("alerts.warn:")
            && message.contains("KIS_ALERTS__WARN")
            && message.contains("`low`"),
        "{message}"
    );
}

#[test]
fn mistakes_name_the_key() {
    let cases = [
        (
            "[alerts]\nwarn = 100\ncritical = 100\n",
            "alerts.critical: critical (100) must be below warn (100)",
        ),
        (
            "[alerts]\ncritical = 300\n",
            "alerts.critical: critical (300) must be below warn (200)",
        ),
        (
            "[alerts]\nwarn = inf\n",
            "alerts.warn: is inf; a threshold must be a finite number",
        ),
        (
            "[alerts]\ncritical = -inf\n",
            "alerts.critical: is -inf; a threshold must be a finite number",
        ),
        (
            "[alerts]\nid_tag = \"\"\n",
            "alerts.id_tag: must be the tag naming the generator",
        ),
        (
            "[alerts]\nfuel_field = \"\"\n",
            "alerts.fuel_field: must be the field holding the fuel level",
        ),
        (
            "[alerts]\nmax_generators = 0\n",
            "alerts.max_generators: must be at least 1",
        ),
        (
            "[alerts]\nmax_generators = -1\n",
            "alerts.max_generators: `-1` is not a valid usize",
        ),
        (
            "[alerts]\nmeasurement = \"\"\n",
            "alerts.measurement: must be non-empty",
        ),
        (
            "[alerts]\nmeasurement = \"generator\"\n",
            "alerts.measurement: `generator` is also mapping.measurement",
        ),
        (
            "[alerts]\nmeasurement = \"{topic}_alerts\"\n",
            "alerts.measurement: must be a fixed name",
        ),
        (
            "[alerts]\nmeasurement = \"a\\\\\"\n",
            "alerts.measurement: must not end with a backslash",
        ),
        (
            "[alerts]\nwarning = 3\n",
            "alerts.warning: unknown field `warning`",
        ),
        (
            "[[alerts.overrides]]\ntag = \"site\"\nvalue = \"north\"\n",
            "alerts.overrides[0]: sets neither warn nor critical",
        ),
        (
            "[[alerts.overrides]]\ntag = \"\"\nvalue = \"north\"\nwarn = 1\ncritical = 0\n",
            "alerts.overrides[0].tag: must be a tag key",
        ),
        (
            "[[alerts.overrides]]\ntag = \"site\"\nvalue = \"\"\nwarn = 300\n",
            "alerts.overrides[0].value: must not be empty",
        ),
        (
            "[[alerts.overrides]]\ntag = \"site\"\nwarn = 300\n",
            "alerts.overrides[0]: missing field `value`",
        ),
        (
            "[[alerts.overrides]]\ntag = \"site\"\nvalue = \"n\"\nwarn = 300\nwarm = 1\n",
            "alerts.overrides[0].warm: unknown field `warm`",
        ),
        (
            "[[alerts.overrides]]\ntag = \"site\"\nvalue = \"n\"\nwarn = 50\n",
            "alerts.overrides[0].warn: critical (100) must be below warn (50) (critical is alerts.critical: this override does not set it)",
        ),
        (
            "[[alerts.overrides]]\ntag = \"site\"\nvalue = \"n\"\ncritical = 250\n",
            "alerts.overrides[0].critical: critical (250) must be below warn (200) (warn is alerts.warn: this override does not set it)",
        ),
        (
            "[[alerts.overrides]]\ntag = \"site\"\nvalue = \"n\"\nwarn = nan\n",
            "alerts.overrides[0].warn: is NaN",
        ),
        (
            "[[alerts.overrides]]\ntag = \"site\"\nvalue = \"n\"\nwarn = 300\n\n[[alerts.overrides]]\ntag = \"x\"\nvalue = \"y\"\nwarn = 300\n\n[[alerts.overrides]]\ntag = \"site\"\nvalue = \"n\"\nwarn = 400\n",
            "alerts.overrides[2]: matches site=n like alerts.overrides[0], which comes first and wins",
        ),
    ];
    for (extra, expected) in cases {
        let message = error_of(extra);
        assert!(
            message.starts_with(expected),
            "for\n{extra}\ngot:      {message}\nexpected: {expected}…"
        );
    }
}

#[test]
fn the_measurement_may_match_a_template_or_field_measurement() {
    // Only a fixed readings measurement can be compared; a template names other measurements.
    for mapping in [
        "[mapping]\nmeasurement = \"{topic}\"\n",
        "[mapping]\nmeasurement_field = \"kind\"\n",
    ] {
        assert_eq!(rules(mapping).measurement, "generator_alerts");
    }
}

#[test]
fn the_reference_documents_the_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let path = root.join("reference.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let reference = Config::parse(&text, &path, &root, Vec::new()).unwrap();
    assert_eq!(reference.alerts, Some(rules("")));
}
