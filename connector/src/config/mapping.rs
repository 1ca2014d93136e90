//! `[mapping]` → a compiled [`Mapping`]: every name, path, type and rule checked once, so a
//! mistake stops the sink at start-up instead of dead-lettering every record.

use super::raw::{Entry, EntryList, RawField, RawMapping, RawTag, TagFrom};
use super::{ConfigError, invalid};
use crate::map::{
    Collisions, ExtraFields, Field, FieldPath, FieldType, Mapping, Measurement, RESERVED_KEY, Tag,
    TagSource, TimeUnit, TimestampSource,
};

/// The measurement used when neither `measurement` nor `measurement_field` is set.
const DEFAULT_MEASUREMENT: &str = "generator";

/// Builds the mapping; fills in the default measurement so the effective configuration shows it.
pub(super) fn build(raw: &mut RawMapping) -> Result<Mapping, ConfigError> {
    let measurement = match (&raw.measurement, &raw.measurement_field) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "mapping.measurement_field",
                "set either mapping.measurement or mapping.measurement_field, not both: a record \
                 without the field is dead-lettered, never written under a fallback name",
            ));
        }
        (None, Some(field)) => Measurement::Field(
            FieldPath::parse(field).map_err(|error| invalid("mapping.measurement_field", error))?,
        ),
        (measurement, None) => {
            let text = measurement.as_deref().unwrap_or(DEFAULT_MEASUREMENT);
            let parsed =
                Measurement::parse(text).map_err(|error| invalid("mapping.measurement", error))?;
            raw.measurement = Some(text.to_owned());
            parsed
        }
    };
    let tags = build_tags(&raw.tags)?;
    let fields = build_fields(&raw.fields)?;
    if let Some(tag) = tags
        .iter()
        .find(|tag| fields.iter().any(|field| field.name == tag.name))
    {
        return Err(invalid(
            "mapping.fields",
            format!(
                "`{}` is also a tag; InfluxDB rejects a key used as both",
                tag.name
            ),
        ));
    }
    if fields.is_empty() && raw.extra_fields != ExtraFields::Include {
        return Err(invalid(
            "mapping.fields",
            "needs at least one field: InfluxDB points must have one (or set extra_fields = \"include\")",
        ));
    }
    let (timestamp, collisions) = build_timestamp(raw)?;
    let mapping = Mapping::new(measurement, tags, fields, timestamp).with_collisions(collisions);
    let ignore = raw
        .ignore
        .as_ref()
        .map(|list| list.items())
        .unwrap_or_default();
    if !ignore.is_empty() && raw.extra_fields == ExtraFields::Ignore {
        return Err(invalid(
            "mapping.ignore",
            "only applies with extra_fields = \"include\" or \"reject\"; with the default \
             (\"ignore\") every key the mapping does not read is ignored already",
        ));
    }
    // Ignoring a key the mapping reads would silently do nothing; say so.
    if let Some(key) = ignore.iter().find(|key| mapping.reads_key(key)) {
        return Err(invalid(
            "mapping.ignore",
            format!("`{key}` is read by the mapping; ignore lists keys it does not read"),
        ));
    }
    Ok(mapping.with_extra_fields(raw.extra_fields, ignore))
}

/// `mapping.tags[2]` for an array entry, `mapping.tags` for a comma-separated string.
fn entry_key<T>(list: &EntryList<T>, section: &str, index: usize) -> String {
    match list {
        EntryList::List(_) => format!("mapping.{section}[{index}]"),
        EntryList::Joined(_) => format!("mapping.{section}"),
    }
}

fn parse_path(key: &str, text: &str) -> Result<FieldPath, ConfigError> {
    FieldPath::parse(text).map_err(|error| invalid(key, format!("`{text}`: {error}")))
}

/// Tag keys, field keys and constant tag values must be writable on every point.
fn check_writable(key: &str, what: &str, text: &str) -> Result<(), ConfigError> {
    if text.is_empty() {
        return Err(invalid(key, format!("the {what} must not be empty")));
    }
    if text.contains(['\n', '\r']) {
        return Err(invalid(
            key,
            format!("the {what} `{text}` contains a line break, which line protocol cannot carry"),
        ));
    }
    if text.ends_with('\\') {
        return Err(invalid(
            key,
            format!("the {what} `{text}` ends with a backslash, which InfluxDB's parsers refuse"),
        ));
    }
    Ok(())
}

/// InfluxDB refuses a tag or field key `time` (1.x: "invalid field name"), so every point
/// would be refused; say so at start-up instead.
fn check_not_time(key: &str, name: &str) -> Result<(), ConfigError> {
    if name == RESERVED_KEY {
        return Err(invalid(
            key,
            "InfluxDB refuses a tag or field named `time`; give it another name, e.g. { name = \"event_time\", path = \"time\" }",
        ));
    }
    Ok(())
}

fn check_unique<'n>(
    section: &str,
    names: impl Iterator<Item = &'n String>,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&String> = Vec::new();
    for name in names {
        if seen.contains(&name) {
            return Err(invalid(
                format!("mapping.{section}"),
                format!("`{name}` is listed twice"),
            ));
        }
        seen.push(name);
    }
    Ok(())
}

fn build_tags(list: &EntryList<RawTag>) -> Result<Vec<Tag>, ConfigError> {
    let mut tags = Vec::new();
    for (index, entry) in list.entries().into_iter().enumerate() {
        let key = entry_key(list, "tags", index);
        let tag = match entry {
            Entry::Path(text) => {
                let path = parse_path(&key, &text)?;
                Tag {
                    name: path.default_name(),
                    source: TagSource::Path(path),
                }
            }
            Entry::Table(table) => build_tag(&key, table)?,
        };
        check_writable(&key, "tag name", &tag.name)?;
        check_not_time(&key, &tag.name)?;
        tags.push(tag);
    }
    check_unique("tags", tags.iter().map(|tag| &tag.name))?;
    Ok(tags)
}

fn build_tag(key: &str, table: RawTag) -> Result<Tag, ConfigError> {
    let RawTag {
        name,
        path,
        value,
        from,
        header,
    } = table;
    let given: Vec<&str> = [
        ("path", path.is_some()),
        ("value", value.is_some()),
        ("from", from.is_some()),
        ("header", header.is_some()),
    ]
    .into_iter()
    .filter_map(|(option, set)| set.then_some(option))
    .collect();
    if given.len() != 1 {
        let found = if given.is_empty() {
            "none is set".to_owned()
        } else {
            format!("{} are set", given.join(" and "))
        };
        return Err(invalid(
            key,
            format!(
                "a tag takes its value from exactly one of path, value (a constant), from (\"key\" \
                 or \"topic\") or header; {found}"
            ),
        ));
    }
    let required_name = |what: &str| {
        name.clone().ok_or_else(|| {
            invalid(
                key,
                format!("a tag with {what} needs a name, e.g. {{ name = \"site\", {what} }}"),
            )
        })
    };
    let (name, source) = if let Some(text) = path {
        let path = parse_path(&format!("{key}.path"), &text)?;
        (
            name.clone().unwrap_or_else(|| path.default_name()),
            TagSource::Path(path),
        )
    } else if let Some(value) = value {
        check_writable(&format!("{key}.value"), "constant tag value", &value)?;
        (
            required_name("value = \"...\"")?,
            TagSource::Constant(value),
        )
    } else if let Some(from) = from {
        match from {
            TagFrom::Key => (required_name("from = \"key\"")?, TagSource::KafkaKey),
            TagFrom::Topic => (required_name("from = \"topic\"")?, TagSource::KafkaTopic),
        }
    } else if let Some(header) = header {
        if header.is_empty() {
            return Err(invalid(
                format!("{key}.header"),
                "the header name must not be empty",
            ));
        }
        (
            name.clone().unwrap_or_else(|| header.clone()),
            TagSource::Header(header),
        )
    } else {
        // Counted above; kept so the chain is total without a panic.
        return Err(invalid(
            key,
            "a tag needs one of path, value, from or header",
        ));
    };
    Ok(Tag { name, source })
}

fn build_fields(list: &EntryList<RawField>) -> Result<Vec<Field>, ConfigError> {
    let mut fields = Vec::new();
    for (index, entry) in list.entries().into_iter().enumerate() {
        let key = entry_key(list, "fields", index);
        let field = match entry {
            Entry::Path(text) => {
                let path = parse_path(&key, &text)?;
                Field::new(path.default_name(), path, FieldType::Float)
            }
            Entry::Table(RawField {
                name,
                path,
                kind,
                optional,
            }) => {
                let path = match (&path, &name) {
                    (Some(text), _) => parse_path(&format!("{key}.path"), text)?,
                    // `{ name = "count", type = "integer" }` types a top-level key in place.
                    (None, Some(name)) => FieldPath::Key(name.clone()),
                    (None, None) => {
                        return Err(invalid(
                            key,
                            "a field needs a path, a name, or both, e.g. { name = \"temp_c\", path = \"/readings/temperature\" }",
                        ));
                    }
                };
                Field {
                    name: name.unwrap_or_else(|| path.default_name()),
                    path,
                    kind: kind.unwrap_or_default(),
                    optional: optional.unwrap_or(false),
                }
            }
        };
        check_writable(&key, "field name", &field.name)?;
        check_not_time(&key, &field.name)?;
        fields.push(field);
    }
    check_unique("fields", fields.iter().map(|field| &field.name))?;
    Ok(fields)
}

fn build_timestamp(raw: &RawMapping) -> Result<(TimestampSource, Collisions), ConfigError> {
    let timestamp = &raw.timestamp;
    let source = match timestamp.source.as_deref().unwrap_or("kafka") {
        "kafka" => {
            if timestamp.field.is_some() || timestamp.unit.is_some() {
                return Err(invalid(
                    "mapping.timestamp",
                    "`field` and `unit` only apply with source = \"field\"",
                ));
            }
            TimestampSource::Kafka
        }
        "field" => {
            let field = timestamp.field.as_deref().ok_or_else(|| {
                invalid(
                    "mapping.timestamp.field",
                    "is required with source = \"field\"",
                )
            })?;
            let path = FieldPath::parse(field)
                .map_err(|error| invalid("mapping.timestamp.field", error))?;
            let unit_text = timestamp.unit.as_deref().ok_or_else(|| {
                invalid(
                    "mapping.timestamp.unit",
                    "is required with source = \"field\" (s, ms, us, ns or rfc3339)",
                )
            })?;
            if unit_text == "rfc3339" {
                TimestampSource::Rfc3339 { path }
            } else {
                let unit = TimeUnit::parse(unit_text).ok_or_else(|| {
                    invalid(
                        "mapping.timestamp.unit",
                        format!("`{unit_text}` is not one of s, ms, us, ns, rfc3339"),
                    )
                })?;
                TimestampSource::Field { path, unit }
            }
        }
        other => {
            return Err(invalid(
                "mapping.timestamp.source",
                format!("`{other}` is neither `kafka` nor `field`"),
            ));
        }
    };
    let collisions = match timestamp.collisions.as_deref().unwrap_or("overwrite") {
        "overwrite" => Collisions::Overwrite,
        "keep" => {
            let fine = matches!(
                &source,
                TimestampSource::Field {
                    unit: TimeUnit::Micros | TimeUnit::Nanos,
                    ..
                }
            );
            if fine {
                return Err(invalid(
                    "mapping.timestamp.collisions",
                    "\"keep\" uses the nanoseconds below the millisecond, so it needs a timestamp \
                     in s or ms (or rfc3339, where a time finer than a millisecond is then \
                     dead-lettered)",
                ));
            }
            Collisions::Keep
        }
        other => {
            return Err(invalid(
                "mapping.timestamp.collisions",
                format!("`{other}` is neither `overwrite` nor `keep`"),
            ));
        }
    };
    Ok((source, collisions))
}
