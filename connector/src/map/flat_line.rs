//! A flat record's line, written straight from its slots.
//!
//! [`Mapping::map`] builds a [`Point`](crate::line_protocol::Point) (two vectors per record,
//! each value converted and looked up by name), and the encoder then walks it, escaping the same
//! tag and field keys on every line. For the common record, read flat
//! ([`crate::decode::flat`]), that costs more than reading it did. [`FlatLine`] writes the line
//! from the record itself: keys escaped once, when the mapping is compiled, values taken from
//! their slots by position, with the mapping's own rules ([`tag_value`], [`value::coerce`], the
//! timestamp source and collision rule) and the encoder's own pieces
//! ([`line_protocol::write_tag_value`], …). So the line is byte for byte the one `map` and
//! `encode` write, which a property test checks.
//!
//! It never rejects: whatever `map` or `encode` would refuse makes [`FlatLine::write`] return
//! `None` with nothing written, and the record goes the generic way, which explains the
//! rejection.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::{KafkaContext, Mapping, Measurement, tag_value, value};
use crate::alerts::MappedPoint;
use crate::line_protocol::{self, FieldValue, LineProtocolError, Piece};
use crate::record::{FlatRecord, Scalar};

/// Tags a [`FlatPoint`] holds without allocating.
const INLINE_TAGS: usize = 4;

/// A mapping compiled to write flat records' lines (see the module documentation).
#[derive(Debug, Clone)]
pub struct FlatLine {
    mapping: Mapping,
    /// The keys a flat record is read for ([`Mapping::flat_keys`]).
    keys: Vec<String>,
    /// The measurement, escaped, when it is the same for every record.
    measurement: Option<Piece>,
    /// Per tag of the mapping, in its order: `,key=`, escaped.
    tag_starts: Vec<Piece>,
    /// Per field of the mapping, in its order.
    field_starts: Vec<FieldStart>,
}

/// What a field's part of a line starts with, and where its value is.
#[derive(Debug, Clone)]
struct FieldStart {
    /// ` key=`, escaped: the line's first field.
    first: Piece,
    /// `,key=`, escaped: any later field.
    later: Piece,
    /// The position of the key the field reads in [`FlatLine::keys`], which is its slot in a
    /// flat record.
    slot: usize,
}

impl FlatLine {
    /// Compiles `mapping` for flat records; `None` when it cannot map them (see
    /// [`Mapping::flat_keys`]) or when its fixed measurement or a tag or field key cannot be
    /// written (the configuration refuses such names; records would go the generic way).
    pub fn new(mapping: Mapping) -> Option<FlatLine> {
        let keys = mapping.flat_keys()?;
        let measurement = match &mapping.measurement {
            Measurement::Fixed(name) => Some(piece(b"", line_protocol::write_measurement, name)?),
            Measurement::Template(_) | Measurement::Field(_) => None,
        };
        let tag_starts = mapping
            .tags
            .iter()
            .map(|tag| piece(b"", line_protocol::write_tag_key, &tag.name))
            .collect::<Option<Vec<_>>>()?;
        let field_starts = mapping
            .fields
            .iter()
            .map(|field| {
                let key = field.path.top_level_key();
                let write = line_protocol::write_field_key;
                Some(FieldStart {
                    first: piece(b" ", write, &field.name)?,
                    later: piece(b",", write, &field.name)?,
                    slot: keys.iter().position(|read| *read == key)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(FlatLine {
            mapping,
            keys,
            measurement,
            tag_starts,
            field_starts,
        })
    }

    /// The keys a flat record must be read for, in order: [`Mapping::flat_keys`].
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Appends the line of `record`, consumed at `kafka`, to `out`: the line
    /// [`Mapping::map`] and [`line_protocol::encode`] write. `None`, with nothing appended,
    /// when they would refuse the record.
    pub fn write<'a, 'r>(
        &'a self,
        record: &'a FlatRecord<'r>,
        kafka: KafkaContext<'a>,
        out: &mut Vec<u8>,
    ) -> Option<FlatPoint<'a, 'r>> {
        let start = out.len();
        let written = self.write_line(record, kafka, out);
        if written.is_none() {
            out.truncate(start);
        }
        written
    }

    fn write_line<'a, 'r>(
        &'a self,
        record: &'a FlatRecord<'r>,
        kafka: KafkaContext<'a>,
        out: &mut Vec<u8>,
    ) -> Option<FlatPoint<'a, 'r>> {
        // Every flat reader lays a record out with the mapping's keys first.
        debug_assert!(record.keys().starts_with(&self.keys));
        let mapping = &self.mapping;
        match &self.measurement {
            Some(escaped) => escaped.write(out),
            None => {
                let name = mapping.measurement(record, kafka.topic).ok()?;
                line_protocol::write_measurement(&name, out).ok()?;
            }
        }
        let mut tags = SmallVec::new();
        for (tag, start) in mapping.tags.iter().zip(&self.tag_starts) {
            let value = tag_value(tag, record, &kafka).ok()?;
            start.write(out);
            line_protocol::write_tag_value(&tag.name, &value, out).ok()?;
            tags.push((tag.name.as_str(), value));
        }
        let mut first_field = true;
        for (field, start) in mapping.fields.iter().zip(&self.field_starts) {
            let value = match record.value_at(start.slot) {
                None | Some(Scalar::Null) if field.optional => continue,
                None | Some(Scalar::Null) => return None,
                Some(value) => value,
            };
            if first_field {
                start.first.write(out);
                first_field = false;
            } else {
                start.later.write(out);
            }
            // Most readings are floats, written without `coerce`'s error path; a number read
            // with its text is copied as it is.
            match value::float_field(value, field.kind) {
                Some(FieldValue::FloatText(_, text)) => out.extend_from_slice(text.as_bytes()),
                Some(float) => line_protocol::write_field_value(&field.name, &float, out).ok()?,
                None => {
                    let value = value::coerce(value, field.kind, &field.path).ok()?;
                    line_protocol::write_field_value(&field.name, &value, out).ok()?;
                }
            }
        }
        // No field was written: `map` refuses such a record.
        if first_field {
            return None;
        }
        let timestamp_ns = mapping
            .timestamp
            .timestamp_ns(record, kafka.timestamp_ms)
            .ok()?;
        let timestamp_ns = mapping
            .collisions
            .apply(
                timestamp_ns,
                &mapping.timestamp,
                kafka.partition,
                kafka.offset,
            )
            .ok()?;
        line_protocol::write_timestamp(timestamp_ns, out);
        Some(FlatPoint {
            line: self,
            record,
            tags,
            timestamp_ns,
        })
    }
}

/// `prefix`, then `name` written by `write`: a piece of every line, escaped once.
fn piece(
    prefix: &[u8],
    write: impl Fn(&str, &mut Vec<u8>) -> Result<(), LineProtocolError>,
    name: &str,
) -> Option<Piece> {
    let mut bytes = prefix.to_vec();
    write(name, &mut bytes).ok()?;
    Some(Piece::new(&bytes))
}

/// A flat record's written line, as the fuel alerts read it.
#[derive(Debug)]
pub struct FlatPoint<'a, 'r> {
    line: &'a FlatLine,
    record: &'a FlatRecord<'r>,
    /// Tag keys and values, in the mapping's order.
    tags: SmallVec<[(&'a str, Cow<'a, str>); INLINE_TAGS]>,
    timestamp_ns: i64,
}

impl MappedPoint for FlatPoint<'_, '_> {
    fn tags(&self) -> &[(&str, Cow<'_, str>)] {
        &self.tags
    }

    fn float_field(&self, key: &str) -> Option<f64> {
        // Looked up when asked, not kept for every field: alerts ask for one.
        let fields = self.line.mapping.fields.iter().zip(&self.line.field_starts);
        fields
            .filter(|(field, _)| field.name == key)
            .find_map(|(field, start)| {
                value::float_field(self.record.value_at(start.slot)?, field.kind)?.as_float()
            })
    }

    fn timestamp_ns(&self) -> i64 {
        self.timestamp_ns
    }
}

#[cfg(test)]
mod tests;
