use super::*;
use influxdb_line_protocol::{FieldValue as Parsed, parse_lines};
use proptest::prelude::*;

fn rules() -> AlertRules {
    AlertRules {
        id_tag: "generatorID".into(),
        fuel_field: "fuel".into(),
        thresholds: Thresholds::new(200.0, 100.0).unwrap(),
        overrides: vec![
            Override {
                tag: "site".into(),
                value: "north".into(),
                thresholds: Thresholds::new(300.0, 150.0).unwrap(),
            },
            Override {
                tag: "site".into(),
                value: "north".into(),
                thresholds: Thresholds::new(900.0, 800.0).unwrap(),
            },
            Override {
                tag: "generatorID".into(),
                value: "big-1".into(),
                thresholds: Thresholds::new(500.0, 250.0).unwrap(),
            },
        ],
        measurement: "generator_alerts".into(),
        max_generators: 10,
    }
}

fn point<'a>(tags: Vec<(&'a str, &'a str)>, fuel: FieldValue<'a>) -> Point<'a> {
    Point {
        measurement: Cow::Borrowed("generator"),
        tags: tags
            .into_iter()
            .map(|(key, value)| (key, Cow::Borrowed(value)))
            .collect(),
        fields: vec![("temperature", FieldValue::Float(40.0)), ("fuel", fuel)],
        timestamp_ns: 1_700_000_000_123_000_000,
    }
}

fn alert_line(rules: &AlertRules, point: &Point<'_>) -> Option<String> {
    let reading = rules.reading(point)?;
    let alert = reading.alert()?;
    let mut out = Vec::new();
    rules.encode(&alert, &mut out).expect("encodes");
    Some(String::from_utf8(out).expect("utf-8"))
}

#[test]
fn levels_at_the_boundaries() {
    let thresholds = Thresholds::new(200.0, 100.0).unwrap();
    let cases = [
        (0.0, Some(Level::Critical)),
        (-5.0, Some(Level::Critical)),
        (99.99, Some(Level::Critical)),
        // At the critical threshold it is not below it: a warning.
        (100.0, Some(Level::Warn)),
        (199.99, Some(Level::Warn)),
        // At the warn threshold: fine.
        (200.0, None),
        (1e6, None),
        (f64::NAN, None),
    ];
    for (fuel, level) in cases {
        assert_eq!(thresholds.level(fuel), level, "fuel {fuel}");
    }
}

#[test]
fn thresholds_must_be_finite_and_ordered() {
    assert_eq!(
        Thresholds::new(f64::NAN, 1.0).unwrap_err().level(),
        Level::Warn
    );
    assert!(matches!(
        Thresholds::new(10.0, f64::NEG_INFINITY),
        Err(ThresholdError::NotFinite {
            level: Level::Critical,
            ..
        })
    ));
    assert_eq!(
        Thresholds::new(100.0, 100.0),
        Err(ThresholdError::NotOrdered {
            warn: 100.0,
            critical: 100.0
        })
    );
    assert!(Thresholds::new(100.0, 200.0).is_err());
    let ok = Thresholds::new(0.5, -1.0).unwrap();
    assert_eq!((ok.get(Level::Warn), ok.get(Level::Critical)), (0.5, -1.0));
}

#[test]
fn golden_alert_lines() {
    let rules = rules();
    assert_eq!(
        alert_line(
            &rules,
            &point(vec![("generatorID", "gen-7")], FieldValue::Float(150.25))
        )
        .as_deref(),
        Some(
            "generator_alerts,generator=gen-7,level=warn fuel=150.25,threshold=200 1700000000123000000\n"
        )
    );
    assert_eq!(
        alert_line(
            &rules,
            &point(vec![("generatorID", "gen 7,a=b")], FieldValue::Float(0.0))
        )
        .as_deref(),
        Some(
            "generator_alerts,generator=gen\\ 7\\,a\\=b,level=critical fuel=0,threshold=100 1700000000123000000\n"
        )
    );
    assert_eq!(
        alert_line(
            &rules,
            &point(vec![("generatorID", "gen-7")], FieldValue::Float(200.0))
        ),
        None
    );
}

#[test]
fn the_first_matching_override_wins() {
    let rules = rules();
    // site=north: 300/150 (the first of the two north rules).
    let north = point(
        vec![("generatorID", "g"), ("site", "north")],
        FieldValue::Float(250.0),
    );
    let reading = rules.reading(&north).unwrap();
    assert_eq!(reading.thresholds, Thresholds::new(300.0, 150.0).unwrap());
    let alert = reading.alert().unwrap();
    assert_eq!((alert.level, alert.threshold), (Level::Warn, 300.0));
    // The same fuel elsewhere raises nothing.
    let south = point(
        vec![("generatorID", "g"), ("site", "south")],
        FieldValue::Float(250.0),
    );
    assert_eq!(rules.reading(&south).unwrap().alert(), None);
    // An override may match the id tag itself.
    let big = point(vec![("generatorID", "big-1")], FieldValue::Float(240.0));
    let alert = rules.reading(&big).unwrap().alert().unwrap();
    assert_eq!((alert.level, alert.threshold), (Level::Critical, 250.0));
    // Tag values match exactly, keys too.
    let near = point(
        vec![("generatorID", "g"), ("Site", "north")],
        FieldValue::Float(250.0),
    );
    assert_eq!(rules.reading(&near).unwrap().thresholds, rules.thresholds);
}

#[test]
fn points_without_the_tag_or_a_float_fuel_are_no_readings() {
    let rules = rules();
    let cases = [
        point(vec![("site", "north")], FieldValue::Float(1.0)),
        point(vec![("generatorid", "g")], FieldValue::Float(1.0)),
        point(vec![("generatorID", "g")], FieldValue::Integer(1)),
        point(vec![("generatorID", "g")], FieldValue::Unsigned(1)),
        point(
            vec![("generatorID", "g")],
            FieldValue::String(Cow::Borrowed("1")),
        ),
        point(vec![("generatorID", "g")], FieldValue::Boolean(false)),
        point(vec![("generatorID", "g")], FieldValue::Float(f64::NAN)),
        point(
            vec![("generatorID", "g")],
            FieldValue::Float(f64::NEG_INFINITY),
        ),
    ];
    for case in &cases {
        assert_eq!(rules.reading(case), None, "{case:?}");
    }
    // A point without the fuel field at all.
    let mut no_fuel = point(vec![("generatorID", "g")], FieldValue::Float(1.0));
    no_fuel.fields.truncate(1);
    assert_eq!(rules.reading(&no_fuel), None);
    // The names are the written ones: another field name is followed.
    let renamed = AlertRules {
        fuel_field: "temperature".into(),
        ..rules
    };
    let any = point(vec![("generatorID", "g")], FieldValue::Float(1.0));
    let reading = renamed.reading(&any).unwrap();
    assert_eq!(reading.fuel, 40.0);
}

fn tag_value() -> impl Strategy<Value = String> {
    // Representable tag values rich in characters that need escaping.
    proptest::string::string_regex("[a-zA-Z0-9 ,=\\\\\"'_.:é-]{0,11}[a-zA-Z0-9 ,=\"'_.:é-]")
        .expect("regex")
}

proptest! {
    /// Whatever the fuel (NaN and infinities included) and thresholds: the level follows the
    /// rule, no alert carries a non-finite number, and every alert encodes to a line
    /// InfluxData's parser reads back exactly.
    #[test]
    fn alerts_follow_the_rule_and_always_encode(
        fuel in any::<f64>(),
        warn in -1e6f64..1e6,
        gap in 1e-3f64..1e6,
        generator in tag_value(),
        timestamp_ns in any::<i64>(),
    ) {
        let critical = warn - gap;
        prop_assume!(critical < warn);
        let rules = AlertRules {
            thresholds: Thresholds::new(warn, critical).unwrap(),
            overrides: vec![],
            ..rules()
        };
        let mut point = point(vec![("generatorID", generator.as_str())], FieldValue::Float(fuel));
        point.timestamp_ns = timestamp_ns;
        let reading = rules.reading(&point);
        prop_assert_eq!(reading.is_some(), fuel.is_finite());
        let Some(reading) = reading else { return Ok(()) };
        let expected = if fuel < critical {
            Some(Level::Critical)
        } else if fuel < warn {
            Some(Level::Warn)
        } else {
            None
        };
        let alert = reading.alert();
        prop_assert_eq!(alert.map(|alert| alert.level), expected);
        let Some(alert) = alert else { return Ok(()) };
        prop_assert!(alert.fuel.is_finite() && alert.threshold.is_finite());
        prop_assert!(alert.fuel < alert.threshold);
        let mut out = Vec::new();
        prop_assert!(rules.encode(&alert, &mut out).is_ok());
        let text = String::from_utf8(out).unwrap();
        let parsed: Vec<_> = parse_lines(&text).collect();
        prop_assert_eq!(parsed.len(), 1);
        let parsed = parsed.into_iter().next().unwrap().map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        prop_assert_eq!(parsed.series.measurement.to_string(), "generator_alerts");
        let tags: Vec<(String, String)> = parsed
            .series
            .tag_set
            .unwrap_or_default()
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        prop_assert_eq!(tags, vec![
            ("generator".to_owned(), generator.clone()),
            ("level".to_owned(), alert.level.as_str().to_owned()),
        ]);
        prop_assert_eq!(parsed.field_set.len(), 2);
        prop_assert_eq!(&parsed.field_set[0].1, &Parsed::F64(fuel));
        prop_assert_eq!(&parsed.field_set[1].1, &Parsed::F64(alert.threshold));
        prop_assert_eq!(parsed.timestamp, Some(timestamp_ns));
    }
}
