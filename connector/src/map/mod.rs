//! Mapping: a decoded record becomes an InfluxDB [`Point`].
//!
//! The mapping is compiled once from `[mapping]` and applied per record. It is pure: the point
//! depends only on the record and where it sits in Kafka (topic, key, headers, timestamp,
//! partition, offset), never on the clock, so replaying a record rewrites the identical point
//! and InfluxDB keeps one copy.
//!
//! Per record it allocates the tag and field vectors and the text of numbers written as tags
//! or strings; names, constant tags and the tag order are fixed when the mapping is compiled.
//!
//! - [`path`]: top-level keys and JSON Pointers into nested objects and arrays.
//! - [`value`]: the field types and how JSON values convert to them.
//! - [`time`]: the timestamp sources and the collision rule.
//! - [`error`]: [`MapError`], one variant and one stable dead-letter reason per failure.
//! - [`flat_line`]: [`FlatLine`], the mapping writing a flat record's line straight from its
//!   slots, without a `Point`.

pub mod error;
pub mod flat_line;
pub mod path;
pub mod time;
pub mod value;

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::line_protocol::Point;
use crate::record::{Fields, Scalar};

pub use error::MapError;
pub use flat_line::{FlatLine, FlatPoint};
pub use path::{FieldPath, json_type};
pub use time::{Collisions, TimeUnit, TimestampSource};
pub use value::FieldType;

/// Finds a Kafka header's value by name. The pipeline implements it over rdkafka's headers so
/// this module stays free of Kafka client types; a lookup must not allocate.
pub trait HeaderLookup {
    /// The value of the header named `name`: the last one when the name repeats (Kafka allows
    /// that; Kafka Connect's `lastWithName` reads the same one). `None` when absent or null.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// A record without headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn header(&self, _name: &str) -> Option<&[u8]> {
        None
    }
}

/// Headers given as name and value pairs (tests, tools).
impl<const N: usize> HeaderLookup for [(&str, &[u8]); N] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .rev()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    }
}

/// Where a record sits in Kafka and what it carries besides its value: the mapping reads its
/// topic, key, headers and timestamp, and its position when same-millisecond collisions are
/// kept apart.
#[derive(Clone, Copy)]
pub struct KafkaContext<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The Kafka timestamp in milliseconds, if the record has one.
    pub timestamp_ms: Option<i64>,
    /// The record's key, if it has one.
    pub key: Option<&'a [u8]>,
    /// The record's headers.
    pub headers: &'a dyn HeaderLookup,
}

impl fmt::Debug for KafkaContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaContext")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Where a point's measurement comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measurement {
    /// The same name for every point.
    Fixed(String),
    /// A name in which every `{topic}` is replaced by the record's topic.
    Template(String),
    /// The value at a path in the record (a string, number or boolean); a record without it
    /// is rejected.
    Field(FieldPath),
}

/// The placeholder a measurement template replaces.
pub const TOPIC_PLACEHOLDER: &str = "{topic}";

impl Measurement {
    /// Parses a configured name: with `{topic}` in it a template, otherwise fixed. Any other
    /// brace is refused, so a misspelt placeholder cannot become part of every name.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.contains(['\n', '\r']) {
            return Err("must be non-empty and on one line".into());
        }
        if text.ends_with('\\') {
            return Err("must not end with a backslash: InfluxDB's parsers refuse that".into());
        }
        let rest = text.replace(TOPIC_PLACEHOLDER, "");
        if rest.contains(['{', '}']) {
            return Err(format!(
                "`{text}` has a brace that is not part of {TOPIC_PLACEHOLDER}, the only placeholder"
            ));
        }
        if rest.len() == text.len() {
            Ok(Measurement::Fixed(text.to_owned()))
        } else {
            Ok(Measurement::Template(text.to_owned()))
        }
    }
}

/// Where a tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagSource {
    /// A value in the record: a string, number or boolean.
    Path(FieldPath),
    /// The same value on every point.
    Constant(String),
    /// The Kafka record key, as UTF-8 text.
    KafkaKey,
    /// The topic the record was read from.
    KafkaTopic,
    /// A Kafka header's value, as UTF-8 text.
    Header(String),
}

/// A configured tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag key written.
    pub name: String,
    /// Where its value comes from.
    pub source: TagSource,
}

/// A configured field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field key written.
    pub name: String,
    /// Where its value is in the record.
    pub path: FieldPath,
    /// The type it is written as.
    pub kind: FieldType,
    /// When absent or null the field is left out instead of rejecting the record.
    pub optional: bool,
}

impl Field {
    /// A required field of type `kind`.
    pub fn new(name: impl Into<String>, path: FieldPath, kind: FieldType) -> Self {
        Self {
            name: name.into(),
            path,
            kind,
            optional: false,
        }
    }
}

/// The key InfluxDB refuses as a tag or field key: it names the timestamp column.
pub const RESERVED_KEY: &str = "time";

/// What happens to top-level record keys the mapping does not read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtraFields {
    /// They are not written (the default).
    #[default]
    Ignore,
    /// Each one holding a number, boolean or string becomes a field with `auto` typing; nulls,
    /// objects and arrays are skipped, and so are keys listed in `ignore`, keys named like a
    /// configured tag or field, and `time`, which InfluxDB refuses as a field key.
    Include,
    /// A record with such a key (not listed in `ignore`) is rejected, naming the key.
    Reject,
}

/// The compiled `[mapping]`.
#[derive(Debug, Clone)]
pub struct Mapping {
    measurement: Measurement,
    /// Sorted by tag key, the order InfluxDB stores series keys in.
    tags: Vec<Tag>,
    fields: Vec<Field>,
    timestamp: TimestampSource,
    collisions: Collisions,
    extra_fields: ExtraFields,
    /// Sorted top-level keys the mapping reads or is told to ignore: never extra fields.
    known_keys: Vec<String>,
    /// Sorted names of configured tags and fields: an extra field of that name would clash.
    names: Vec<String>,
}

impl Mapping {
    /// Compiles a mapping. The configuration has checked that names are unique, non-empty and
    /// representable, and that at least one field can result.
    pub fn new(
        measurement: Measurement,
        mut tags: Vec<Tag>,
        fields: Vec<Field>,
        timestamp: TimestampSource,
    ) -> Self {
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        let mut names: Vec<String> = tags
            .iter()
            .map(|tag| tag.name.clone())
            .chain(fields.iter().map(|field| field.name.clone()))
            .collect();
        names.sort();
        let mut mapping = Self {
            measurement,
            tags,
            fields,
            timestamp,
            collisions: Collisions::Overwrite,
            extra_fields: ExtraFields::Ignore,
            known_keys: Vec::new(),
            names,
        };
        mapping.known_keys = mapping.read_keys();
        mapping
    }

    /// Sets the collision rule. `Keep` needs a timestamp no finer than milliseconds (checked
    /// by the configuration, and per record for RFC 3339 and fractional times).
    pub fn with_collisions(mut self, collisions: Collisions) -> Self {
        self.collisions = collisions;
        self
    }

    /// Sets what happens to top-level keys the mapping does not read; `ignore` lists keys that
    /// are neither written (`Include`) nor rejected (`Reject`).
    pub fn with_extra_fields(mut self, extra_fields: ExtraFields, ignore: Vec<String>) -> Self {
        self.extra_fields = extra_fields;
        let mut known = self.read_keys();
        known.extend(ignore);
        known.sort();
        known.dedup();
        self.known_keys = known;
        self
    }

    /// Whether points carry a tag with key `name`.
    pub fn writes_tag(&self, name: &str) -> bool {
        self.tags.iter().any(|tag| tag.name == name)
    }

    /// Whether points may carry a field with key `name`: a configured one, or any with
    /// `extra_fields = "include"`.
    pub fn may_write_field(&self, name: &str) -> bool {
        self.extra_fields == ExtraFields::Include
            || self.fields.iter().any(|field| field.name == name)
    }

    /// Whether the measurement, a tag, a field or the timestamp reads top-level key `key`
    /// (directly, or as the first step of a JSON Pointer).
    pub fn reads_key(&self, key: &str) -> bool {
        self.read_keys().iter().any(|read| read == key)
    }

    /// The keys a flat record must be read for, when this mapping can map one: every path it
    /// reads is a top-level key, and keys it does not read are ignored (`extra_fields =
    /// "ignore"`). `None` when it needs the whole object.
    ///
    /// They come in the order [`Mapping::map`] looks them up (measurement, tags, fields,
    /// timestamp), which is also the order a producer usually writes them in: a
    /// [`FlatRecord`](crate::record::FlatRecord) tries the key after the last one found first.
    pub fn flat_keys(&self) -> Option<Vec<String>> {
        let flat = self.extra_fields == ExtraFields::Ignore
            && self
                .read_paths()
                .all(|path| matches!(path, FieldPath::Key(_)));
        flat.then(|| {
            let mut keys: Vec<String> = Vec::new();
            for key in self.read_paths().map(FieldPath::top_level_key) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys
        })
    }

    /// The paths the measurement, tags, fields and timestamp read.
    fn read_paths(&self) -> impl Iterator<Item = &FieldPath> {
        let measurement = match &self.measurement {
            Measurement::Field(path) => Some(path),
            Measurement::Fixed(_) | Measurement::Template(_) => None,
        };
        let tags = self.tags.iter().filter_map(|tag| match &tag.source {
            TagSource::Path(path) => Some(path),
            _ => None,
        });
        measurement
            .into_iter()
            .chain(tags)
            .chain(self.fields.iter().map(|field| &field.path))
            .chain(self.timestamp.path())
    }

    /// The top-level keys the measurement, tags, fields and timestamp read, sorted.
    fn read_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.read_paths().map(FieldPath::top_level_key).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Maps one record consumed at `kafka`: a generic `&Value`, or a
    /// [`FlatRecord`](crate::record::FlatRecord) read for [`Mapping::flat_keys`].
    pub fn map<'a>(
        &'a self,
        record: impl Fields<'a>,
        kafka: KafkaContext<'a>,
    ) -> Result<Point<'a>, MapError> {
        if let Some(found) = record.non_object() {
            return Err(MapError::NotAnObject { found });
        }
        // Only a generic record has keys beyond the mapping's: `flat_keys` is `None` unless
        // they are ignored.
        let object = match (self.extra_fields, record.object()) {
            (ExtraFields::Ignore, _) => None,
            (_, Some(object)) => Some(object),
            (_, None) => {
                return Err(MapError::NotAnObject {
                    found: "flat record",
                });
            }
        };
        if self.extra_fields == ExtraFields::Reject {
            if let Some(key) = object
                .into_iter()
                .flat_map(|object| object.keys())
                .find(|key| !self.is_known(key))
            {
                return Err(MapError::UnexpectedKey { key: key.clone() });
            }
        }
        let measurement = self.measurement(record, kafka.topic)?;
        let mut tags = Vec::with_capacity(self.tags.len());
        for tag in &self.tags {
            tags.push((tag.name.as_str(), tag_value(tag, record, &kafka)?));
        }
        let extra = object.map_or(0, |object| object.len());
        let mut fields = Vec::with_capacity(self.fields.len() + extra);
        for field in &self.fields {
            match record.get(&field.path) {
                None | Some(Scalar::Null) if field.optional => {}
                None | Some(Scalar::Null) => {
                    return Err(MapError::MissingField {
                        path: field.path.to_string(),
                    });
                }
                Some(value) => fields.push((
                    field.name.as_str(),
                    value::coerce(value, field.kind, &field.path)?,
                )),
            }
        }
        if let (ExtraFields::Include, Some(object)) = (self.extra_fields, object) {
            for (key, value) in object {
                if self.is_known(key)
                    || self.names.binary_search(key).is_ok()
                    || key == RESERVED_KEY
                {
                    continue;
                }
                if let Some(value) = value::auto(Scalar::of(value)) {
                    fields.push((key.as_str(), value));
                }
            }
        }
        if fields.is_empty() {
            return Err(MapError::NoFields);
        }
        let timestamp_ns = self.timestamp.timestamp_ns(record, kafka.timestamp_ms)?;
        let timestamp_ns =
            self.collisions
                .apply(timestamp_ns, &self.timestamp, kafka.partition, kafka.offset)?;
        Ok(Point {
            measurement,
            tags,
            fields,
            timestamp_ns,
        })
    }

    fn is_known(&self, key: &str) -> bool {
        self.known_keys
            .binary_search_by(|known| known.as_str().cmp(key))
            .is_ok()
    }

    fn measurement<'a>(
        &'a self,
        record: impl Fields<'a>,
        topic: &'a str,
    ) -> Result<Cow<'a, str>, MapError> {
        match &self.measurement {
            Measurement::Fixed(name) => Ok(Cow::Borrowed(name)),
            // The common case, `{topic}` alone, borrows the topic instead of allocating.
            Measurement::Template(template) if template == TOPIC_PLACEHOLDER => {
                Ok(Cow::Borrowed(topic))
            }
            Measurement::Template(template) => {
                Ok(Cow::Owned(template.replace(TOPIC_PLACEHOLDER, topic)))
            }
            Measurement::Field(path) => match record.get(path) {
                None | Some(Scalar::Null) => Err(MapError::MissingMeasurement {
                    path: path.to_string(),
                }),
                Some(value) => value::scalar_text(value).map_err(|found| {
                    MapError::UnsupportedMeasurementValue {
                        path: path.to_string(),
                        found,
                    }
                }),
            },
        }
    }
}

/// A tag's value for one record.
fn tag_value<'a>(
    tag: &'a Tag,
    record: impl Fields<'a>,
    kafka: &KafkaContext<'a>,
) -> Result<Cow<'a, str>, MapError> {
    let utf8 = |bytes: &'a [u8], origin: &dyn Fn() -> String| {
        std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|_| MapError::TagNotUtf8 {
                tag: tag.name.clone(),
                origin: origin(),
            })
    };
    match &tag.source {
        TagSource::Path(path) => match record.get(path) {
            None | Some(Scalar::Null) => Err(MapError::MissingTag {
                path: path.to_string(),
            }),
            Some(value) => {
                value::scalar_text(value).map_err(|found| MapError::UnsupportedTagValue {
                    path: path.to_string(),
                    found,
                })
            }
        },
        TagSource::Constant(value) => Ok(Cow::Borrowed(value)),
        TagSource::KafkaTopic => Ok(Cow::Borrowed(kafka.topic)),
        TagSource::KafkaKey => {
            let key = kafka.key.ok_or_else(|| MapError::MissingKafkaKey {
                tag: tag.name.clone(),
            })?;
            utf8(key, &|| "the Kafka key".to_owned())
        }
        TagSource::Header(header) => {
            let value = kafka
                .headers
                .header(header)
                .ok_or_else(|| MapError::MissingHeader {
                    tag: tag.name.clone(),
                    header: header.clone(),
                })?;
            utf8(value, &|| format!("Kafka header `{header}`"))
        }
    }
}

#[cfg(test)]
mod tests;
