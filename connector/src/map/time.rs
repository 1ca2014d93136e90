//! A point's timestamp: from Kafka or from the record, and the same-millisecond collision rule.

use super::error::MapError;
use super::path::FieldPath;
use crate::record::{Fields, Scalar};

/// Unit of a numeric timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds; a fraction is allowed (`1700000000.123`).
    Seconds,
    /// Milliseconds; a fraction is allowed (`1700000000123.5`).
    Millis,
    /// Microseconds; integers only.
    Micros,
    /// Nanoseconds; integers only.
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
    /// A string record field in RFC 3339 form with an offset: `2026-11-25T05:00:00.123Z`,
    /// `2026-11-25T06:00:00+01:00`; up to nanosecond precision.
    Rfc3339 {
        /// Where the timestamp is.
        path: FieldPath,
    },
}

impl TimestampSource {
    /// The record path the timestamp is read from, if any.
    pub fn path(&self) -> Option<&FieldPath> {
        match self {
            TimestampSource::Kafka => None,
            TimestampSource::Field { path, .. } | TimestampSource::Rfc3339 { path } => Some(path),
        }
    }

    /// The point's time in nanoseconds since the Unix epoch.
    pub(super) fn timestamp_ns<'a>(
        &self,
        record: impl Fields<'a>,
        kafka_timestamp_ms: Option<i64>,
    ) -> Result<i64, MapError> {
        match self {
            TimestampSource::Kafka => {
                let millis = kafka_timestamp_ms.ok_or(MapError::MissingKafkaTimestamp)?;
                millis
                    .checked_mul(TimeUnit::Millis.nanos())
                    .ok_or(MapError::MissingKafkaTimestamp)
            }
            TimestampSource::Field { path, unit } => {
                numeric(lookup(path, record)?, *unit).map_err(|reason| invalid(path, reason))
            }
            TimestampSource::Rfc3339 { path } => {
                rfc3339(lookup(path, record)?).map_err(|reason| invalid(path, reason))
            }
        }
    }

    /// Where the timestamp comes from, as error messages name it.
    fn describe(&self) -> String {
        self.path()
            .map_or_else(|| "(kafka)".to_owned(), ToString::to_string)
    }
}

fn invalid(path: &FieldPath, reason: String) -> MapError {
    MapError::InvalidTimestamp {
        path: path.to_string(),
        reason,
    }
}

fn lookup<'a>(path: &FieldPath, record: impl Fields<'a>) -> Result<Scalar<'a>, MapError> {
    match record.get(path) {
        None | Some(Scalar::Null) => Err(invalid(path, "missing from the record".into())),
        Some(value) => Ok(value),
    }
}

/// Largest magnitude of a microsecond count that still fits in i64 nanoseconds.
const MAX_MICROS: f64 = (i64::MAX / 1_000) as f64;
/// 2^63: `i64::MAX as f64` rounds up to it, so it is an exclusive bound.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

fn numeric(value: Scalar<'_>, unit: TimeUnit) -> Result<i64, String> {
    let Scalar::Number(number, _) = value else {
        return Err(format!(
            "is a JSON {}, expected a number of {}",
            value.json_type(),
            unit_name(unit)
        ));
    };
    let out_of_range = || format!("{number} is outside the range InfluxDB can store");
    if let Some(whole) = number.as_i64() {
        return whole.checked_mul(unit.nanos()).ok_or_else(out_of_range);
    }
    if number.is_u64() {
        return Err(out_of_range());
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    let micros_per_unit = match unit {
        TimeUnit::Seconds => 1e6,
        TimeUnit::Millis => 1e3,
        TimeUnit::Micros | TimeUnit::Nanos if float.fract() == 0.0 => {
            // An integral float such as `1.7e15`: exact, so take it as the integer it is.
            let scaled = float * unit.nanos() as f64;
            return if (-TWO_POW_63..TWO_POW_63).contains(&scaled) {
                Ok(scaled as i64)
            } else {
                Err(out_of_range())
            };
        }
        TimeUnit::Micros | TimeUnit::Nanos => {
            return Err(format!(
                "{number} has a fraction; {} timestamps must be integers",
                unit_name(unit)
            ));
        }
    };
    // An f64 near today's epoch in seconds resolves about a quarter of a microsecond, so
    // rounding to the microsecond gives back what the producer wrote (`1700000000.123` →
    // ...123000000 ns) instead of binary noise in the nanoseconds.
    let micros = (float * micros_per_unit).round();
    if micros.is_finite() && micros.abs() < MAX_MICROS {
        Ok(micros as i64 * 1_000)
    } else {
        Err(out_of_range())
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Seconds => "seconds",
        TimeUnit::Millis => "milliseconds",
        TimeUnit::Micros => "microseconds",
        TimeUnit::Nanos => "nanoseconds",
    }
}

fn rfc3339(value: Scalar<'_>) -> Result<i64, String> {
    let Scalar::String(text) = value else {
        return Err(format!(
            "is a JSON {}, expected an RFC 3339 string such as 2026-11-25T05:00:00.123Z",
            value.json_type()
        ));
    };
    let timestamp: jiff::Timestamp = text.parse().map_err(|error| {
        format!("`{text}` is not an RFC 3339 timestamp with an offset (such as 2026-11-25T05:00:00.123Z): {error}")
    })?;
    i64::try_from(timestamp.as_nanosecond())
        .map_err(|_| format!("`{text}` is outside the range InfluxDB can store (1677 to 2262)"))
}

/// What happens when two different records map to the same measurement, tags and millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collisions {
    /// InfluxDB keeps the later point (its own rule for identical series and time).
    Overwrite,
    /// Both are kept: the sub-millisecond nanoseconds carry `(offset mod 1000) * 1000 +
    /// (partition mod 1000)`. A replay of the same record still lands on the same nanosecond, so
    /// the effect stays idempotent; two records collide only if one partition holds more than
    /// 1000 records of one series within one millisecond. A timestamp that already has digits
    /// below the millisecond is refused rather than silently changed.
    Keep,
}

impl Collisions {
    /// Applies the rule to a point's time for the record at `partition`/`offset`.
    pub(super) fn apply(
        self,
        timestamp_ns: i64,
        source: &TimestampSource,
        partition: i32,
        offset: i64,
    ) -> Result<i64, MapError> {
        if self == Collisions::Overwrite {
            return Ok(timestamp_ns);
        }
        let invalid = |reason: &str| MapError::InvalidTimestamp {
            path: source.describe(),
            reason: reason.into(),
        };
        if timestamp_ns.rem_euclid(1_000_000) != 0 {
            return Err(invalid(
                "has digits below the millisecond, which collisions = \"keep\" uses for the record's Kafka position",
            ));
        }
        let below_millisecond =
            offset.rem_euclid(1000) * 1000 + i64::from(partition).rem_euclid(1000);
        timestamp_ns
            .checked_add(below_millisecond)
            .ok_or_else(|| invalid("outside the range InfluxDB can store"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn field(path: &str, unit: TimeUnit) -> TimestampSource {
        TimestampSource::Field {
            path: FieldPath::parse(path).unwrap(),
            unit,
        }
    }

    fn at(source: &TimestampSource, record: Value) -> Result<i64, String> {
        source
            .timestamp_ns(&record, None)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn numeric_fields_in_each_unit() {
        use TimeUnit::*;
        let cases: &[(TimeUnit, Value, i64)] = &[
            (Seconds, json!(1_700_000_000), 1_700_000_000_000_000_000),
            (Seconds, json!(1_700_000_000.123), 1_700_000_000_123_000_000),
            (
                Seconds,
                json!(1_700_000_000.123456),
                1_700_000_000_123_456_000,
            ),
            (Seconds, json!(-1.5), -1_500_000_000),
            (
                Millis,
                json!(1_700_000_000_123_i64),
                1_700_000_000_123_000_000,
            ),
            (
                Millis,
                json!(1_700_000_000_123.5),
                1_700_000_000_123_500_000,
            ),
            (
                Micros,
                json!(1_700_000_000_123_456_i64),
                1_700_000_000_123_456_000,
            ),
            (Micros, json!(1.7e15), 1_700_000_000_000_000_000),
            (
                Nanos,
                json!(1_700_000_000_123_456_789_i64),
                1_700_000_000_123_456_789,
            ),
            (Nanos, json!(0), 0),
        ];
        for (unit, value, expected) in cases {
            assert_eq!(
                at(&field("/meta/t", *unit), json!({"meta": {"t": value}})),
                Ok(*expected),
                "{value} {unit:?}"
            );
        }
    }

    #[test]
    fn numeric_fields_reject_with_the_path() {
        use TimeUnit::*;
        let cases: &[(TimeUnit, Value, &str)] = &[
            (Seconds, json!(i64::MAX), "is outside the range"),
            (Seconds, json!(u64::MAX), "is outside the range"),
            (Seconds, json!(1e300), "is outside the range"),
            (Nanos, json!(1e300), "is outside the range"),
            (
                Micros,
                json!(1.5),
                "1.5 has a fraction; microseconds timestamps must be integers",
            ),
            (Nanos, json!(1.5), "has a fraction"),
            (
                Millis,
                json!("1700000000123"),
                "is a JSON string, expected a number of milliseconds",
            ),
            (Millis, json!(null), "missing from the record"),
        ];
        for (unit, value, expected) in cases {
            let error = at(&field("t", *unit), json!({"t": value})).unwrap_err();
            assert!(error.starts_with("timestamp field `t`: "), "{error}");
            assert!(error.contains(expected), "{value} {unit:?}: {error}");
        }
        let error = at(&field("/a/b", Millis), json!({"a": 1})).unwrap_err();
        assert_eq!(error, "timestamp field `/a/b`: missing from the record");
    }

    #[test]
    fn rfc3339_strings_with_an_offset() {
        let source = TimestampSource::Rfc3339 {
            path: FieldPath::parse("time").unwrap(),
        };
        let cases = [
            ("2026-11-25T05:00:00Z", 1_795_582_800_000_000_000),
            ("2026-11-25T05:00:00.123Z", 1_795_582_800_123_000_000),
            (
                "2026-11-25T06:00:00.123456789+01:00",
                1_795_582_800_123_456_789,
            ),
            ("2026-11-25T00:30:00-04:30", 1_795_582_800_000_000_000),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999Z", -1_000_000),
        ];
        for (text, expected) in cases {
            assert_eq!(at(&source, json!({"time": text})), Ok(expected), "{text}");
        }
        for (value, expected) in [
            (
                json!("2026-11-25T05:00:00"),
                "is not an RFC 3339 timestamp with an offset",
            ),
            (json!("yesterday"), "is not an RFC 3339 timestamp"),
            (
                json!("2300-01-01T00:00:00Z"),
                "outside the range InfluxDB can store",
            ),
            (
                json!(1_700_000_000),
                "is a JSON number, expected an RFC 3339 string",
            ),
        ] {
            let error = at(&source, json!({"time": value})).unwrap_err();
            assert!(error.starts_with("timestamp field `time`: "), "{error}");
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn kafka_timestamp() {
        assert_eq!(
            TimestampSource::Kafka.timestamp_ns(&json!({}), Some(1_700_000_000_123)),
            Ok(1_700_000_000_123_000_000)
        );
        assert_eq!(
            TimestampSource::Kafka.timestamp_ns(&json!({}), None),
            Err(MapError::MissingKafkaTimestamp)
        );
    }

    #[test]
    fn keep_refuses_times_finer_than_a_millisecond() {
        let source = field("t", TimeUnit::Millis);
        assert_eq!(
            Collisions::Keep.apply(5_000_000, &source, 3, 42),
            Ok(5_042_003)
        );
        assert_eq!(
            Collisions::Keep.apply(-5_000_000, &source, 3, 42),
            Ok(-4_957_997)
        );
        let error = Collisions::Keep
            .apply(5_000_001, &source, 3, 42)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("timestamp field `t`: has digits below"),
            "{error}"
        );
        assert_eq!(
            Collisions::Overwrite.apply(5_000_001, &source, 3, 42),
            Ok(5_000_001)
        );
    }
}
