//! Why a record cannot become a point.

use crate::reject::{Rejection, Stage, truncate_message};

/// Why a record cannot become a point. Every variant names the path (or the Kafka key or
/// header) that failed, and [`MapError::rejection`] gives each a stable reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    /// The record is valid JSON but not an object.
    #[error("record is a JSON {found}, expected an object")]
    NotAnObject {
        /// JSON type found.
        found: &'static str,
    },
    /// `extra_fields = "reject"` and the record has a top-level key the mapping neither reads
    /// nor ignores.
    #[error(
        "record key `{key}` is not in the mapping (extra_fields = \"reject\"); map it or add it to `ignore`"
    )]
    UnexpectedKey {
        /// The unexpected top-level key.
        key: String,
    },
    /// `measurement_field` is absent or null.
    #[error("measurement field `{path}` is missing from the record")]
    MissingMeasurement {
        /// Configured path.
        path: String,
    },
    /// `measurement_field` is an object or array.
    #[error(
        "measurement field `{path}` is a JSON {found}; a measurement must be a string, number or boolean"
    )]
    UnsupportedMeasurementValue {
        /// Configured path.
        path: String,
        /// JSON type found.
        found: &'static str,
    },
    /// A tag taken from the record is absent or null.
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
    /// A tag takes the Kafka key and the record has none.
    #[error("tag `{tag}` takes the Kafka key, and the record has none")]
    MissingKafkaKey {
        /// The tag's name.
        tag: String,
    },
    /// A tag takes a Kafka header the record does not carry (or carries without a value).
    #[error("tag `{tag}` takes Kafka header `{header}`, which the record does not carry")]
    MissingHeader {
        /// The tag's name.
        tag: String,
        /// The header's name.
        header: String,
    },
    /// The Kafka key or header a tag takes is not UTF-8 text.
    #[error("tag `{tag}`: {origin} is not valid UTF-8")]
    TagNotUtf8 {
        /// The tag's name.
        tag: String,
        /// Where the bytes came from: ``the Kafka key`` or ``Kafka header `name` ``.
        origin: String,
    },
    /// A configured field is absent or null (and not `optional`).
    #[error("field `{path}` is missing from the record")]
    MissingField {
        /// Configured path.
        path: String,
    },
    /// A `float`, `integer` or `unsigned` field is not a number.
    #[error("field `{path}` is a JSON {found}, expected a number")]
    NonNumericField {
        /// Configured path.
        path: String,
        /// JSON type found.
        found: &'static str,
    },
    /// An `integer` or `unsigned` field is a number that type cannot hold: a fraction, a
    /// negative unsigned, or out of range.
    #[error("field `{path}` is {value}, which is not {expected}")]
    NotAnInteger {
        /// Configured path.
        path: String,
        /// The number as written in the record.
        value: String,
        /// `a signed 64-bit integer` or `an unsigned 64-bit integer`.
        expected: &'static str,
    },
    /// A `boolean`, `string` or `auto` field holds a JSON type that type does not take.
    #[error("field `{path}` is a JSON {found}, expected {expected}")]
    WrongFieldType {
        /// Configured path.
        path: String,
        /// What the configured type takes.
        expected: &'static str,
        /// JSON type found.
        found: &'static str,
    },
    /// No field resulted: every configured field is optional and absent, and with
    /// `extra_fields = "include"` the record has no other usable key. InfluxDB points need one.
    #[error(
        "the record yields no field: configured fields are absent and no other top-level key holds a number, boolean or string"
    )]
    NoFields,
    /// `source = "kafka"` but the record carries no timestamp.
    #[error("the Kafka record has no timestamp and the mapping takes the time from it")]
    MissingKafkaTimestamp,
    /// The timestamp field is absent, of the wrong type, unparsable or out of range.
    #[error("timestamp field `{path}`: {reason}")]
    InvalidTimestamp {
        /// Configured path (`(kafka)` for the Kafka timestamp).
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl MapError {
    /// The dead-letter explanation for this error; `reason` is the variant name and never
    /// changes, so alerts and dashboards can key on it.
    pub fn rejection(&self) -> Rejection {
        let reason = match self {
            MapError::NotAnObject { .. } => "NotAnObject",
            MapError::UnexpectedKey { .. } => "UnexpectedKey",
            MapError::MissingMeasurement { .. } => "MissingMeasurement",
            MapError::UnsupportedMeasurementValue { .. } => "UnsupportedMeasurementValue",
            MapError::MissingTag { .. } => "MissingTag",
            MapError::UnsupportedTagValue { .. } => "UnsupportedTagValue",
            MapError::MissingKafkaKey { .. } => "MissingKafkaKey",
            MapError::MissingHeader { .. } => "MissingHeader",
            MapError::TagNotUtf8 { .. } => "TagNotUtf8",
            MapError::MissingField { .. } => "MissingField",
            MapError::NonNumericField { .. } => "NonNumericField",
            MapError::NotAnInteger { .. } => "NotAnInteger",
            MapError::WrongFieldType { .. } => "WrongFieldType",
            MapError::NoFields => "NoFields",
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
