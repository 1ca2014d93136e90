//! Avro records read flat: a record of scalar fields decoded straight into the
//! [`FlatRecord`] slots the mapping reads, without building a JSON object.
//!
//! On the direct path a generator record costs an object of six entries (each key copied), its
//! lookups by key and its drop, several times the decoding itself. A writer schema whose root
//! is a record of scalars (`null`, `boolean`, `int`, `long`, `float`, `double`, `string`,
//! enums and unions of these, with their logical types read as the direct path reads them) is
//! compiled once more, for the mapping's keys, into one step per field.
//!
//! Like the JSON fast path it never rejects: whatever is not a clean datum (a decoding error, a
//! datum cut short that apache-avro would read as null, a NaN or infinity, bytes left over)
//! makes [`FlatAvro::read`] return `None`, and the record goes the direct or generic path,
//! which gives the reason. What it does return is what [`Program::read`] gives, key by key.

use serde_json::Number;

use super::{Node, NodeId, Program, read_int, read_long, take, take_array};
use crate::record::{FlatRecord, Slot, absent_slots};

/// A writer schema's record compiled for the keys a mapping reads.
#[derive(Debug, Clone)]
pub struct FlatAvro {
    /// The mapping's keys, the record's slots.
    keys: Vec<String>,
    /// The record's fields in wire order.
    fields: Box<[FieldStep]>,
}

/// How one field is read, and where its value goes.
#[derive(Debug, Clone)]
struct FieldStep {
    step: Step,
    /// The slot of the field's name, when the mapping reads it.
    slot: Option<usize>,
}

#[derive(Debug, Clone)]
enum Step {
    Scalar(Scalar),
    /// A union's branches, by index.
    Union(Box<[Scalar]>),
}

#[derive(Debug, Clone)]
enum Scalar {
    Null,
    Boolean,
    /// `int`, `date`, `time-millis`.
    Int,
    /// `long` and the times and timestamps stored in one.
    Long,
    Float,
    Double,
    String,
    Enum(Box<[String]>),
}

impl Program {
    /// The flat reader of this program for a mapping that reads `keys` (see
    /// [`Mapping::flat_keys`](crate::map::Mapping::flat_keys)); `None` unless the root is a
    /// record of scalars with distinct field names.
    pub fn flat(&self, keys: &[String]) -> Option<FlatAvro> {
        let Some(Node::Record(record)) = self.nodes.get(self.root) else {
            return None;
        };
        let mut fields = Vec::with_capacity(record.fields.len());
        for (index, field) in record.fields.iter().enumerate() {
            if record.fields[..index]
                .iter()
                .any(|earlier| earlier.name == field.name)
            {
                return None;
            }
            let step = match self.nodes.get(field.node)? {
                Node::Union(variants) => Step::Union(
                    variants
                        .iter()
                        .map(|&variant| self.flat_scalar(variant))
                        .collect::<Option<_>>()?,
                ),
                _ => Step::Scalar(self.flat_scalar(field.node)?),
            };
            fields.push(FieldStep {
                step,
                slot: keys.iter().position(|key| **key == *field.name),
            });
        }
        Some(FlatAvro {
            keys: keys.to_vec(),
            fields: fields.into_boxed_slice(),
        })
    }

    fn flat_scalar(&self, id: NodeId) -> Option<Scalar> {
        Some(match self.nodes.get(id)? {
            Node::Null => Scalar::Null,
            Node::Boolean => Scalar::Boolean,
            Node::Int => Scalar::Int,
            Node::Long => Scalar::Long,
            Node::Float => Scalar::Float,
            Node::Double => Scalar::Double,
            Node::String => Scalar::String,
            Node::Enum(symbols) => Scalar::Enum(symbols.clone()),
            _ => return None,
        })
    }
}

impl FlatAvro {
    /// Reads `datum`, which must be a clean datum of the schema using every byte; `None`
    /// sends it the other way (see the module documentation).
    pub fn read<'r>(&'r self, datum: &'r [u8]) -> Option<FlatRecord<'r>> {
        let mut input = datum;
        let mut slots = absent_slots(self.keys.len());
        for field in &self.fields {
            let scalar = match &field.step {
                Step::Scalar(scalar) => scalar,
                Step::Union(branches) => {
                    branches.get(usize::try_from(read_long(&mut input).ok()?).ok()?)?
                }
            };
            let value = read_scalar(scalar, &mut input)?;
            if let Some(slot) = field.slot {
                *slots.get_mut(slot)? = value;
            }
        }
        input.is_empty().then(|| FlatRecord::new(&self.keys, slots))
    }
}

/// One scalar, converted as [`Program::read`] converts it.
fn read_scalar<'r>(scalar: &'r Scalar, input: &mut &'r [u8]) -> Option<Slot<'r>> {
    Some(match scalar {
        Scalar::Null => Slot::Null,
        Scalar::Boolean => {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            match byte {
                0 => Slot::Bool(false),
                1 => Slot::Bool(true),
                _ => return None,
            }
        }
        // Binary numbers have no text to copy.
        Scalar::Int => Slot::Number(Number::from(read_int(input).ok()?), None),
        Scalar::Long => Slot::Number(Number::from(read_long(input).ok()?), None),
        Scalar::Float => Slot::Number(
            Number::from_f64(f64::from(f32::from_le_bytes(take_array::<4>(input)?)))?,
            None,
        ),
        Scalar::Double => Slot::Number(
            Number::from_f64(f64::from_le_bytes(take_array::<8>(input)?))?,
            None,
        ),
        Scalar::String => {
            let length = usize::try_from(read_long(input).ok()?).ok()?;
            Slot::String(std::str::from_utf8(take(input, length)?).ok()?)
        }
        Scalar::Enum(symbols) => {
            let index = usize::try_from(read_int(input).ok()?).ok()?;
            Slot::String(symbols.get(index)?)
        }
    })
}
