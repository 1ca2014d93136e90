//! Mapping: a decoded record becomes an InfluxDB [`Point`].
//!
//! The mapping is compiled once from `[mapping]` and applied per record. It is pure: the point
//! depends only on the record and its Kafka timestamp, never on the clock, so replaying a record
//! rewrites the identical point and InfluxDB keeps one copy.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use crate::line_protocol::{FieldValue, Point};
use crate::reject::{Rejection, Stage, truncate_message};

/// Where a value sits in a record: a top-level key, or a JSON Pointer (`/meta/site`, `/readings/0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    /// A top-level key of the record object.
    Key(String),
    /// An RFC 6901 JSON Pointer.
    Pointer(String),
}

impl FieldPath {
    /// Parses a configured path: text starting with `/` is a JSON Pointer, anything else a key.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a field path cannot be empty".into());
        }
        if text.starts_with('/') {
            if text.len() == 1 {
                return Err("`/` points at the whole record, not at a field".into());
            }
            Ok(FieldPath::Pointer(text.to_owned()))
        } else {
            Ok(FieldPath::Key(text.to_owned()))
        }
    }

    /// The name a tag or field gets when written: the key, or the pointer's last token unescaped.
    pub fn default_name(&self) -> String {
        match self {
            FieldPath::Key(key) => key.clone(),
            FieldPath::Pointer(pointer) => pointer
                .rsplit('/')
                .next()
                .unwrap_or(pointer)
                .replace("~1", "/")
                .replace("~0", "~"),
        }
    }

    fn lookup<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        match self {
            FieldPath::Key(key) => record.get(key),
            FieldPath::Pointer(pointer) => record.pointer(pointer),
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Key(key) | FieldPath::Pointer(key) => f.write_str(key),
        }
    }
}

/// Unit of a numeric timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl TimeUnit {
    /// Parses `s`, `ms`, `us` or `ns`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "s" => Some(TimeUnit::Seconds),
            "ms" => Some(TimeUnit::Millis),
            "us" => Some(TimeUnit::Micros),
            "ns" => Some(TimeUnit::Nanos),
            _ => None,
        }
    }

    fn nanos(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Millis => 1_000_000,
            TimeUnit::Micros => 1_000,
            TimeUnit::Nanos => 1,
        }
    }
}

/// Where a point's timestamp comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampSource {
    /// The Kafka record's timestamp (milliseconds).
    Kafka,
    /// A numeric record field in the given unit.
    Field {
        /// Where the timestamp is.
        path: FieldPath,
        /// Its unit.
        unit: TimeUnit,
    },
}

/// Where a record sits in Kafka; the mapping reads its timestamp, and its position when
/// same-millisecond collisions are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaContext {
    /// The Kafka timestamp in milliseconds, if the record has one.
    pub timestamp_ms: Option<i64>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// What happens when two different records map to the same measurement, tags and millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collisions {
    /// InfluxDB keeps the later point (its own rule for identical series and time).
    Overwrite,
    /// Both are kept: the sub-millisecond nanoseconds carry `(offset mod 1000) * 1000 +
    /// (partition mod 1000)`. A replay of the same record still lands on the same nanosecond, so
    /// the effect stays idempotent; two records collide only if one partition holds more than
    /// 1000 records of one series within one millisecond.
    Keep,
}

/// The compiled `[mapping]`.
#[derive(Debug, Clone)]
pub struct Mapping {
    measurement: String,
    /// Sorted by tag key, the order InfluxDB stores series keys in.
    tags: Vec<(String, FieldPath)>,
    fields: Vec<(String, FieldPath)>,
    timestamp: TimestampSource,
    collisions: Collisions,
}

/// Why a record cannot become a point. Every variant names the path that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    /// The record is valid JSON but not an object.
    #[error("record is a JSON {found}, expected an object")]
    NotAnObject {
        /// JSON type found.
        found: &'static str,
    },
    /// A configured tag is absent or null.
    #[error("tag `{path}` is missing from the record")]
    MissingTag {
        /// Configured path.
        path: String,
    },
    /// A tag value is an object or array.
    #[error("tag `{path}` is a JSON {found}; tags must be strings, numbers or booleans")]
    UnsupportedTagValue {
        /// Configured path.
        path: String,
        /// JSON type found.
        found: &'static str,
    },
    /// A configured field is absent or null.
    #[error("field `{path}` is missing from the record")]
    MissingField {
        /// Configured path.
        path: String,
    },
    /// A configured field is not a number.
    #[error("field `{path}` is a JSON {found}, expected a number")]
    NonNumericField {
        /// Configured path.
        path: String,
        /// JSON type found.
        found: &'static str,
    },
    /// `source = "kafka"` but the record carries no timestamp.
    #[error("the Kafka record has no timestamp and the mapping takes the time from it")]
    MissingKafkaTimestamp,
    /// The timestamp field is absent, not a number, or out of range.
    #[error("timestamp field `{path}`: {reason}")]
    InvalidTimestamp {
        /// Configured path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl MapError {
    /// The dead-letter explanation for this error.
    pub fn rejection(&self) -> Rejection {
        let reason = match self {
            MapError::NotAnObject { .. } => "NotAnObject",
            MapError::MissingTag { .. } => "MissingTag",
            MapError::UnsupportedTagValue { .. } => "UnsupportedTagValue",
            MapError::MissingField { .. } => "MissingField",
            MapError::NonNumericField { .. } => "NonNumericField",
            MapError::MissingKafkaTimestamp => "MissingKafkaTimestamp",
            MapError::InvalidTimestamp { .. } => "InvalidTimestamp",
        };
        Rejection {
            stage: Stage::Map,
            reason,
            message: truncate_message(self.to_string()),
        }
    }
}

impl Mapping {
    /// Compiles a mapping; `tags` and `fields` are (name written, path in the record).
    pub fn new(
        measurement: String,
        mut tags: Vec<(String, FieldPath)>,
        fields: Vec<(String, FieldPath)>,
        timestamp: TimestampSource,
    ) -> Self {
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            measurement,
            tags,
            fields,
            timestamp,
            collisions: Collisions::Overwrite,
        }
    }

    /// Sets the collision rule. `Keep` needs a timestamp no finer than milliseconds (checked
    /// by the configuration).
    pub fn with_collisions(mut self, collisions: Collisions) -> Self {
        self.collisions = collisions;
        self
    }

    /// Maps one record consumed at `kafka`.
    pub fn map<'a>(
        &'a self,
        record: &'a Value,
        kafka: KafkaContext,
    ) -> Result<Point<'a>, MapError> {
        if !record.is_object() {
            return Err(MapError::NotAnObject {
                found: json_type(record),
            });
        }
        let mut tags = Vec::with_capacity(self.tags.len());
        for (name, path) in &self.tags {
            let value = match path.lookup(record) {
                None | Some(Value::Null) => {
                    return Err(MapError::MissingTag {
                        path: path.to_string(),
                    });
                }
                Some(Value::String(text)) => Cow::Borrowed(text.as_str()),
                Some(Value::Number(number)) => Cow::Owned(number.to_string()),
                Some(Value::Bool(flag)) => Cow::Owned(flag.to_string()),
                Some(other) => {
                    return Err(MapError::UnsupportedTagValue {
                        path: path.to_string(),
                        found: json_type(other),
                    });
                }
            };
            tags.push((name.as_str(), value));
        }
        let mut fields = Vec::with_capacity(self.fields.len());
        for (name, path) in &self.fields {
            let value = match path.lookup(record) {
                None | Some(Value::Null) => {
                    return Err(MapError::MissingField {
                        path: path.to_string(),
                    });
                }
                // Every number becomes a float, so `400` and `400.5` never conflict in InfluxDB.
                Some(Value::Number(number)) => {
                    FieldValue::Float(number.as_f64().unwrap_or(f64::NAN))
                }
                Some(other) => {
                    return Err(MapError::NonNumericField {
                        path: path.to_string(),
                        found: json_type(other),
                    });
                }
            };
            fields.push((name.as_str(), value));
        }
        let mut timestamp_ns = self.timestamp_ns(record, kafka.timestamp_ms)?;
        if self.collisions == Collisions::Keep {
            let below_millisecond =
                kafka.offset.rem_euclid(1000) * 1000 + i64::from(kafka.partition).rem_euclid(1000);
            timestamp_ns = timestamp_ns.checked_add(below_millisecond).ok_or_else(|| {
                MapError::InvalidTimestamp {
                    path: "(kafka)".into(),
                    reason: "outside the range InfluxDB can store".into(),
                }
            })?;
        }
        Ok(Point {
            measurement: Cow::Borrowed(&self.measurement),
            tags,
            fields,
            timestamp_ns,
        })
    }

    fn timestamp_ns(
        &self,
        record: &Value,
        kafka_timestamp_ms: Option<i64>,
    ) -> Result<i64, MapError> {
        match &self.timestamp {
            TimestampSource::Kafka => {
                let millis = kafka_timestamp_ms.ok_or(MapError::MissingKafkaTimestamp)?;
                millis
                    .checked_mul(TimeUnit::Millis.nanos())
                    .ok_or(MapError::MissingKafkaTimestamp)
            }
            TimestampSource::Field { path, unit } => {
                let invalid = |reason: String| MapError::InvalidTimestamp {
                    path: path.to_string(),
                    reason,
                };
                let value = path
                    .lookup(record)
                    .ok_or_else(|| invalid("missing from the record".into()))?;
                let Value::Number(number) = value else {
                    return Err(invalid(format!(
                        "is a JSON {}, expected a number",
                        json_type(value)
                    )));
                };
                let out_of_range =
                    || invalid(format!("{number} is outside the range InfluxDB can store"));
                if let Some(whole) = number.as_i64() {
                    whole.checked_mul(unit.nanos()).ok_or_else(out_of_range)
                } else {
                    let scaled = number.as_f64().unwrap_or(f64::NAN) * unit.nanos() as f64;
                    // i64::MAX as f64 rounds up to 2^63, so the upper bound is exclusive.
                    if scaled.is_finite() && scaled >= i64::MIN as f64 && scaled < i64::MAX as f64 {
                        Ok(scaled.round() as i64)
                    } else {
                        Err(out_of_range())
                    }
                }
            }
        }
    }
}

/// The JSON type name of a value, for error messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(timestamp_ms: Option<i64>) -> KafkaContext {
        KafkaContext {
            timestamp_ms,
            partition: 0,
            offset: 0,
        }
    }

    fn key(name: &str) -> (String, FieldPath) {
        (name.to_owned(), FieldPath::Key(name.to_owned()))
    }

    fn generator_mapping() -> Mapping {
        Mapping::new(
            "generator".into(),
            vec![key("generatorID")],
            ["lat", "lon", "temperature", "pressure", "fuel"]
                .map(key)
                .to_vec(),
            TimestampSource::Kafka,
        )
    }

    fn generator_record() -> Value {
        json!({"generatorID": "gen-7", "lat": 51.5, "lon": -0.12, "temperature": 36.2, "pressure": 1.02, "fuel": 400})
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
    fn tags_are_sorted_by_key() {
        let mapping = Mapping::new(
            "m".into(),
            vec![key("z"), key("a")],
            vec![key("v")],
            TimestampSource::Kafka,
        );
        let record = json!({"z": "1", "a": 2, "v": 1});
        let point = mapping.map(&record, at(Some(0))).unwrap();
        assert_eq!(
            point.tags,
            vec![("a", Cow::Borrowed("2")), ("z", Cow::Borrowed("1"))]
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

    #[test]
    fn timestamp_from_a_field_in_each_unit() {
        let record = json!({"v": 1, "meta": {"t": 1_700_000_000}, "f": 1.5});
        let with = |path: &str, unit| {
            Mapping::new(
                "m".into(),
                vec![],
                vec![key("v")],
                TimestampSource::Field {
                    path: FieldPath::parse(path).unwrap(),
                    unit,
                },
            )
        };
        assert_eq!(
            with("/meta/t", TimeUnit::Seconds)
                .map(&record, at(None))
                .unwrap()
                .timestamp_ns,
            1_700_000_000_000_000_000
        );
        assert_eq!(
            with("/meta/t", TimeUnit::Nanos)
                .map(&record, at(None))
                .unwrap()
                .timestamp_ns,
            1_700_000_000
        );
        assert_eq!(
            with("f", TimeUnit::Millis)
                .map(&record, at(None))
                .unwrap()
                .timestamp_ns,
            1_500_000
        );
        let overflow = json!({"v": 1, "t": i64::MAX});
        assert!(matches!(
            with("t", TimeUnit::Seconds).map(&overflow, at(None)),
            Err(MapError::InvalidTimestamp { .. })
        ));
        assert!(matches!(
            with("missing", TimeUnit::Seconds).map(&record, at(None)),
            Err(MapError::InvalidTimestamp { .. })
        ));
    }

    #[test]
    fn field_paths() {
        assert_eq!(
            FieldPath::parse("fuel").unwrap(),
            FieldPath::Key("fuel".into())
        );
        assert_eq!(
            FieldPath::parse("/a~1b/c~0d").unwrap().default_name(),
            "c~d"
        );
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse("/").is_err());
    }

    #[test]
    fn collisions_keep_tells_same_millisecond_records_apart_idempotently() {
        let keep = generator_mapping().with_collisions(Collisions::Keep);
        let record = generator_record();
        let stamp = |partition, offset| {
            keep.map(
                &record,
                KafkaContext {
                    timestamp_ms: Some(1_000),
                    partition,
                    offset,
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
                        timestamp_ms: Some(1_000),
                        partition: 3,
                        offset: 9
                    }
                )
                .unwrap()
                .timestamp_ns,
            1_000_000_000
        );
    }
}
