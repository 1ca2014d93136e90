//! Avro straight to JSON: a writer schema compiled once into a small tree of decoding steps,
//! which reads a datum's bytes directly into the [`serde_json::Value`] the mapping reads.
//!
//! The generic path ([`super::avro`]) first builds an `apache_avro::types::Value` (cloning every
//! field name, boxing every union branch), then converts it. That costs several times the
//! decoding itself, so when no schema resolution is needed this module does both in one pass.
//!
//! It must give exactly what the generic path gives, errors included, because which path reads
//! a record is an implementation detail. So it mirrors `apache_avro::decode` step by step:
//! - decoding errors are built from the same `apache_avro::error::Details` variants, so their
//!   messages are the same by construction;
//! - apache-avro's tolerance of a truncated datum is kept: a boolean, a union index or a string
//!   body cut off by the end of the datum reads as `null` (and a cut-off string consumes the rest);
//! - the conversion errors ([`AvroError::NonFinite`], [`AvroError::Unsupported`]) come after
//!   decoding and the left-over check, as they do when conversion is a second pass: the first
//!   one in document order is kept and reported only once the whole datum decoded cleanly;
//! - map entries repeating a key replace the earlier value, and the earlier value's conversion
//!   error with it, as apache-avro's `HashMap` does.
//!
//! It differs only where the generic path allocates what the wire claims: every length and
//! count is checked against the bytes left before anything is reserved, so a huge length prefix
//! costs nothing (the generic path allocates up to `max_allocation_bytes`, 512 MiB by default,
//! before finding the bytes missing), and nesting deeper than [`MAX_DEPTH`] (possible only with
//! recursive schemas) is an error instead of a stack overflow.
//!
//! Schemas it does not cover (`big-decimal`, whose decoding apache-avro keeps private) are
//! reported by [`Program::compile`] as such, and the caller keeps the generic path for them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{ErrorKind, Read};

use apache_avro::Schema;
use apache_avro::error::Details;
use apache_avro::schema::{
    DecimalSchema, InnerDecimalSchema, Name, NamespaceRef, RecordSchema, ResolvedSchema, UuidSchema,
};
use apache_avro::types::{Value as AvroValue, ValueKind};
use serde_json::{Map, Number, Value};

use super::avro::{AvroError, ParsedSchema, left_over, pointer_or_root, push_pointer_token};

pub mod flat;

/// Deepest nesting of containers (records, arrays, maps, unions) a datum may have. Only a
/// recursive schema lets a datum nest deeper than the schema's own text, and such a datum is
/// refused rather than allowed to exhaust the stack (the generic path has no bound). JSON
/// records meet the same bound: serde_json refuses documents nested deeper than 128 levels.
pub const MAX_DEPTH: usize = 128;

/// Index of a node in [`Program::nodes`].
type NodeId = usize;

/// A writer schema compiled for direct decoding into JSON.
#[derive(Debug)]
pub struct Program {
    nodes: Vec<Node>,
    root: NodeId,
    /// apache-avro's allocation limit, which bounds lengths and collection sizes on its path and
    /// so here too (its errors name it). It is a process-wide value that cannot change once read.
    max_allocation: usize,
}

/// One decoding step.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    /// `int`, `date`, `time-millis`.
    Int,
    /// `long` and its logical types (times and timestamps).
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(Box<[String]>),
    UuidString,
    UuidBytes,
    UuidFixed(usize),
    DecimalBytes,
    DecimalFixed(usize),
    Duration(usize),
    Array(NodeId),
    Map(NodeId),
    Union(Box<[NodeId]>),
    Record(Box<Record>),
    /// A named reference the writer's named schemas do not define: an error when reached, as
    /// on the generic path (which looks names up per record).
    Unresolved(Name),
    /// Stands for a named schema while its body is compiled (recursion); never left in a
    /// finished program.
    Pending,
}

/// A record's fields in wire order, and how to bring them into key order.
#[derive(Debug)]
struct Record {
    fields: Box<[Field]>,
    /// Swaps that turn the fields, decoded in wire order, into a stable sort by name. A JSON
    /// object is a B-tree: built from sorted entries it is filled in one pass, where inserting
    /// entries one by one costs a search and a node insertion each (about twice the
    /// instructions; cloning a prepared object costs as much again, in key copies).
    sorting_swaps: Box<[(usize, usize)]>,
}

#[derive(Debug)]
struct Field {
    name: Box<str>,
    node: NodeId,
}

impl Record {
    fn new(fields: Vec<Field>) -> Self {
        // Where each field belongs in name order (stable: a repeated name keeps wire order, so
        // the last one wins, as inserting in wire order would have it).
        let mut sorted: Vec<usize> = (0..fields.len()).collect();
        sorted.sort_by(|&left, &right| fields[left].name.cmp(&fields[right].name));
        // Replay a selection sort into that order as swaps, to repeat on each record's entries.
        let mut current: Vec<usize> = (0..fields.len()).collect();
        let mut swaps = Vec::new();
        for (target, &wanted) in sorted.iter().enumerate() {
            if let Some(found) = current.iter().position(|&field| field == wanted)
                && found != target
            {
                current.swap(target, found);
                swaps.push((target, found));
            }
        }
        Record {
            fields: fields.into_boxed_slice(),
            sorting_swaps: swaps.into_boxed_slice(),
        }
    }
}

/// Why a schema cannot be compiled: it needs the generic path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A type this module does not decode itself.
    #[error("Avro {0} is read by the generic decoder")]
    NotCovered(&'static str),
}

impl Program {
    /// Compiles `writer`, resolving its named references the way the generic reader does (with
    /// the schemas its references name, `writer.named`).
    pub fn compile(writer: ParsedSchema) -> Result<Self, CompileError> {
        // The generic reader is built with exactly these names (`writer_schemata`), so a
        // reference resolves here if and only if it resolves there.
        let resolved = ResolvedSchema::new_with_schemata(writer.schemata())
            .map_err(|_| CompileError::NotCovered("schema with conflicting named types"))?;
        let mut compiler = Compiler {
            names: resolved.get_names(),
            nodes: Vec::new(),
            by_name: HashMap::new(),
        };
        let root = compiler.compile(writer.schema, None)?;
        Ok(Program {
            nodes: compiler.nodes,
            root,
            max_allocation: apache_avro::util::max_allocation_bytes(
                apache_avro::util::DEFAULT_MAX_ALLOCATION_BYTES,
            ),
        })
    }

    /// Decodes one datum, which must use every byte, into JSON.
    pub fn read(&self, datum: &[u8]) -> Result<Value, AvroError> {
        let mut input = datum;
        let mut state = State {
            deferred: None,
            depth: 0,
        };
        let value = self
            .value(self.root, &mut input, &Path::ROOT, &mut state)
            .map_err(|Invalid(message)| AvroError::Invalid(message))?;
        if !input.is_empty() {
            return Err(left_over(input.len()));
        }
        match state.deferred {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }

    /// Decodes the value of node `id`. Containers recurse through here, so this frame stays
    /// small: scalars, and the errors whose details are large, are decoded in frames of their
    /// own that are not on the recursion's stack.
    fn value(
        &self,
        id: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        state: &mut State,
    ) -> Result<Value, Invalid> {
        let Some(node) = self.nodes.get(id) else {
            return Err(inconsistent());
        };
        match node {
            Node::Record(record) => {
                state.enter()?;
                let record = self.record(record, input, path, state)?;
                state.depth -= 1;
                Ok(record)
            }
            Node::Array(item) => {
                state.enter()?;
                let array = self.array(*item, input, path, state)?;
                state.depth -= 1;
                Ok(array)
            }
            Node::Map(item) => {
                state.enter()?;
                let map = self.map(*item, input, path, state)?;
                state.depth -= 1;
                Ok(map)
            }
            Node::Union(variants) => {
                let Some(variant) = union_variant(variants, input)? else {
                    return Ok(Value::Null);
                };
                state.enter()?;
                let value = self.value(variant, input, path, state)?;
                state.depth -= 1;
                Ok(value)
            }
            // The commonest scalars are read here rather than a call away (their errors are
            // built in closures, whose frames are not on the recursion's stack).
            Node::Double => {
                let bytes = take_array::<8>(input)
                    .ok_or_else(|| Invalid::from(Details::ReadDouble(eof())))?;
                Ok(state.finite(f64::from_le_bytes(bytes), path))
            }
            Node::Long => Ok(Value::from(read_long(input)?)),
            Node::Int => Ok(Value::from(read_int(input)?)),
            Node::String => Ok(match self.string(input)? {
                Some(text) => Value::String(text.to_owned()),
                None => Value::Null,
            }),
            Node::Null => Ok(Value::Null),
            scalar => self.scalar(scalar, input, path, state),
        }
    }

    fn record(
        &self,
        record: &Record,
        input: &mut &[u8],
        path: &Path<'_>,
        state: &mut State,
    ) -> Result<Value, Invalid> {
        let mut entries = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let field_path = Path {
                parent: Some(path),
                segment: Segment::Key(&field.name),
            };
            let value = self.value(field.node, input, &field_path, state)?;
            entries.push((String::from(&*field.name), value));
        }
        // In bounds: the swaps were made for exactly this many fields.
        for &(left, right) in &record.sorting_swaps {
            entries.swap(left, right);
        }
        // Sorted already, so the B-tree's own sort only confirms it (and reuses this buffer).
        Ok(Value::Object(Map::from_iter(entries)))
    }

    fn scalar(
        &self,
        node: &Node,
        input: &mut &[u8],
        path: &Path<'_>,
        state: &mut State,
    ) -> Result<Value, Invalid> {
        Ok(match node {
            Node::Boolean => match input.split_first() {
                Some((&byte, rest)) => {
                    *input = rest;
                    match byte {
                        0 => Value::Bool(false),
                        1 => Value::Bool(true),
                        other => return Err(Details::BoolValue(other).into()),
                    }
                }
                // apache-avro reads a boolean cut off by the end of the datum as null.
                None => Value::Null,
            },
            Node::Float => {
                let bytes = take_array::<4>(input).ok_or_else(|| Details::ReadFloat(eof()))?;
                let number = f32::from_le_bytes(bytes);
                state.finite(f64::from(number), path)
            }
            Node::Bytes => Value::String(latin1(self.bytes(input)?)),
            Node::Fixed(size) => Value::String(latin1(fixed(input, *size)?)),
            Node::Enum(symbols) => {
                let raw_index = read_int(input)?;
                let index = usize::try_from(raw_index)
                    .map_err(|error| Details::ConvertI32ToUsize(error, raw_index))?;
                match symbols.get(index) {
                    Some(symbol) => Value::String(symbol.clone()),
                    None => {
                        return Err(Details::GetEnumValue {
                            index,
                            nsymbols: symbols.len(),
                        }
                        .into());
                    }
                }
            }
            Node::UuidString => {
                let Some(text) = self.string(input)? else {
                    // apache-avro: a cut-off uuid string is an error, not a null, and one made
                    // from the error kind alone (so its message differs from a short read's).
                    return Err(Details::ReadBytes(ErrorKind::UnexpectedEof.into()).into());
                };
                let uuid = apache_avro::Uuid::parse_str(text).map_err(Details::ConvertStrToUuid)?;
                Value::String(uuid.to_string())
            }
            Node::UuidBytes => {
                let uuid = apache_avro::Uuid::from_slice(self.bytes(input)?)
                    .map_err(Details::ConvertSliceToUuid)?;
                Value::String(uuid.to_string())
            }
            Node::UuidFixed(size) => {
                let bytes = fixed(input, *size)?;
                if *size != 16 {
                    return Err(Details::ConvertFixedToUuid(*size).into());
                }
                let uuid =
                    apache_avro::Uuid::from_slice(bytes).map_err(Details::ConvertSliceToUuid)?;
                Value::String(uuid.to_string())
            }
            Node::DecimalBytes => {
                self.bytes(input)?;
                state.unsupported(path, "decimal")
            }
            Node::DecimalFixed(size) => {
                fixed(input, *size)?;
                state.unsupported(path, "decimal")
            }
            Node::Duration(size) => {
                if *size != 12 {
                    return Err(Details::CompareFixedSizes { size: 12, n: *size }.into());
                }
                take_array::<12>(input).ok_or_else(|| Details::ReadDuration(eof()))?;
                state.unsupported(path, "duration")
            }
            Node::Unresolved(name) => {
                return Err(Details::SchemaResolutionError(name.clone()).into());
            }
            // Read by `value`.
            Node::Null
            | Node::Int
            | Node::Long
            | Node::Double
            | Node::String
            | Node::Record(_)
            | Node::Array(_)
            | Node::Map(_)
            | Node::Union(_)
            | Node::Pending => return Err(inconsistent()),
        })
    }

    fn array(
        &self,
        item: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        state: &mut State,
    ) -> Result<Value, Invalid> {
        let mut items = Vec::new();
        loop {
            let count = self.block_count(input)?;
            if count == 0 {
                break;
            }
            let total = items
                .len()
                .checked_add(count)
                .ok_or(Details::IntegerOverflow)?;
            self.collection_limit(total, size_of::<AvroValue>())?;
            // Never reserve more than the bytes left could hold; items of zero width (nulls)
            // grow the vector as they are read, within the limit just checked.
            items.reserve(count.min(input.len()));
            for _ in 0..count {
                let index = items.len();
                let item_path = Path {
                    parent: Some(path),
                    segment: Segment::Index(index),
                };
                items.push(self.value(item, input, &item_path, state)?);
            }
        }
        Ok(Value::Array(items))
    }

    fn map(
        &self,
        item: NodeId,
        input: &mut &[u8],
        path: &Path<'_>,
        state: &mut State,
    ) -> Result<Value, Invalid> {
        let mut object = Map::new();
        // A repeated key replaces the earlier entry, conversion error and all, so errors are
        // kept per key until the map is complete; the map's own, if any, takes its turn in
        // document order after what came before it.
        let earlier = state.deferred.take();
        let mut errors: Vec<(String, AvroError)> = Vec::new();
        loop {
            let count = self.block_count(input)?;
            if count == 0 {
                break;
            }
            // apache-avro counts the distinct keys so far, as its map holds them.
            let total = object
                .len()
                .checked_add(count)
                .ok_or(Details::IntegerOverflow)?;
            self.collection_limit(total, size_of::<(String, AvroValue)>())?;
            for _ in 0..count {
                let key = match self.string(input)? {
                    Some(key) => key.to_owned(),
                    None => return Err(Details::MapKeyType(ValueKind::Null).into()),
                };
                let entry_path = Path {
                    parent: Some(path),
                    segment: Segment::Key(&key),
                };
                let value = self.value(item, input, &entry_path, state)?;
                if let Some(error) = state.deferred.take() {
                    errors.retain(|(earlier_key, _)| *earlier_key != key);
                    errors.push((key.clone(), error));
                } else if !errors.is_empty() {
                    errors.retain(|(earlier_key, _)| *earlier_key != key);
                }
                object.insert(key, value);
            }
        }
        // apache-avro's map is a HashMap, so which of several failing entries the generic path
        // reports is arbitrary; the one with the smallest key is as good and reproducible.
        errors.sort_by(|(left, _), (right, _)| left.cmp(right));
        state.deferred = earlier.or_else(|| errors.into_iter().next().map(|(_, error)| error));
        Ok(Value::Object(object))
    }

    /// A block count of an array or map (0 ends it), as apache-avro's `decode_seq_len` reads
    /// it: a negative count is followed by the block's size in bytes, which is skipped.
    fn block_count(&self, input: &mut &[u8]) -> Result<usize, Invalid> {
        let raw = read_long(input)?;
        let count = match raw {
            0 => return Ok(0),
            negative if negative < 0 => {
                read_long(input)?;
                negative.checked_neg().ok_or(Details::IntegerOverflow)?
            }
            positive => positive,
        };
        let count =
            usize::try_from(count).map_err(|error| Details::ConvertI64ToUsize(error, raw))?;
        self.allocation_limit(count)?;
        Ok(count)
    }

    /// A length prefix (bytes, strings), checked as apache-avro's `decode_len` checks it.
    fn length(&self, input: &mut &[u8]) -> Result<usize, Invalid> {
        let raw = read_long(input)?;
        let length =
            usize::try_from(raw).map_err(|error| Details::ConvertI64ToUsize(error, raw))?;
        self.allocation_limit(length)?;
        Ok(length)
    }

    fn allocation_limit(&self, length: usize) -> Result<(), Invalid> {
        if length <= self.max_allocation {
            Ok(())
        } else {
            Err(Details::MemoryAllocation {
                desired: Some(length),
                maximum: self.max_allocation,
            }
            .into())
        }
    }

    /// apache-avro bounds a collection by the size its own values would take, so the same
    /// arithmetic is done here to refuse exactly what it refuses.
    fn collection_limit(&self, items: usize, item_size: usize) -> Result<(), Invalid> {
        let desired = items
            .checked_mul(item_size)
            .ok_or(Details::IntegerOverflow)?;
        self.allocation_limit(desired)
    }

    fn bytes<'a>(&self, input: &mut &'a [u8]) -> Result<&'a [u8], Invalid> {
        let length = self.length(input)?;
        take(input, length).ok_or_else(|| Details::ReadBytes(eof()).into())
    }

    /// A string, or `None` when the datum ends inside it: apache-avro reads that as null, having
    /// consumed the rest of the datum.
    fn string<'a>(&self, input: &mut &'a [u8]) -> Result<Option<&'a str>, Invalid> {
        let length = self.length(input)?;
        let Some(bytes) = take(input, length) else {
            *input = &[];
            return Ok(None);
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Some(text)),
            // The error apache-avro wraps is the owned-string kind; only the failure path pays
            // for the copy that makes one.
            Err(_) => match String::from_utf8(bytes.to_vec()) {
                Err(error) => Err(Details::ConvertToUtf8(error).into()),
                Ok(_) => Err(Invalid::new("Invalid utf-8 string")),
            },
        }
    }
}

/// Decoding state threaded through one datum.
struct State {
    /// The first conversion error, reported only if the whole datum decodes.
    deferred: Option<AvroError>,
    depth: usize,
}

impl State {
    fn enter(&mut self) -> Result<(), Invalid> {
        if self.depth >= MAX_DEPTH {
            return Err(Invalid(format!(
                "the Avro value is nested more than {MAX_DEPTH} levels deep"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn finite(&mut self, number: f64, path: &Path<'_>) -> Value {
        match Number::from_f64(number) {
            Some(number) => Value::Number(number),
            None => {
                if self.deferred.is_none() {
                    self.deferred = Some(AvroError::NonFinite {
                        path: path.render(),
                        value: number.to_string(),
                    });
                }
                Value::Null
            }
        }
    }

    fn unsupported(&mut self, path: &Path<'_>, kind: &'static str) -> Value {
        if self.deferred.is_none() {
            self.deferred = Some(AvroError::Unsupported {
                path: path.render(),
                kind,
            });
        }
        Value::Null
    }
}

/// A decoding error's message, as [`AvroError::Invalid`] carries it.
struct Invalid(String);

impl Invalid {
    fn new(message: &str) -> Self {
        Invalid(message.to_owned())
    }
}

impl From<Details> for Invalid {
    fn from(details: Details) -> Self {
        Invalid(apache_avro::Error::new(details).to_string())
    }
}

/// Where a value sits, as a chain of stack frames: free to extend per field, and rendered as a
/// JSON Pointer only for an error message.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl Path<'_> {
    const ROOT: Path<'static> = Path {
        parent: None,
        segment: Segment::Root,
    };

    fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut at = Some(self);
        while let Some(path) = at {
            segments.push(&path.segment);
            at = path.parent;
        }
        let mut pointer = String::new();
        for segment in segments.into_iter().rev() {
            match segment {
                Segment::Root => {}
                Segment::Key(key) => push_pointer_token(&mut pointer, key),
                Segment::Index(index) => {
                    pointer.push('/');
                    pointer.push_str(itoa::Buffer::new().format(*index));
                }
            }
        }
        pointer_or_root(&pointer)
    }
}

/// The schema compiler: one node per schema position, one per named schema reached by
/// reference (so recursive references become cycles in the node graph).
struct Compiler<'s> {
    names: &'s HashMap<Name, &'s Schema>,
    nodes: Vec<Node>,
    by_name: HashMap<Name, NodeId>,
}

impl Compiler<'_> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Compiles `schema` met in `namespace`, the enclosing namespace apache-avro's decoder
    /// would carry at that point (a record's own, or a reference's).
    fn compile(
        &mut self,
        schema: &Schema,
        namespace: NamespaceRef,
    ) -> Result<NodeId, CompileError> {
        if let Schema::Ref { name } = schema {
            return self.reference(name.fully_qualified_name(namespace));
        }
        let node = self.build(schema, namespace)?;
        Ok(self.push(node))
    }

    /// The node for a schema other than a reference (its children compiled first).
    fn build(&mut self, schema: &Schema, namespace: NamespaceRef) -> Result<Node, CompileError> {
        Ok(match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Node::Int,
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Fixed(fixed) => Node::Fixed(fixed.size),
            Schema::Enum(schema) => Node::Enum(schema.symbols.clone().into_boxed_slice()),
            Schema::Uuid(UuidSchema::String) => Node::UuidString,
            Schema::Uuid(UuidSchema::Bytes) => Node::UuidBytes,
            Schema::Uuid(UuidSchema::Fixed(fixed)) => Node::UuidFixed(fixed.size),
            Schema::Decimal(DecimalSchema { inner, .. }) => match inner {
                InnerDecimalSchema::Bytes => Node::DecimalBytes,
                InnerDecimalSchema::Fixed(fixed) => Node::DecimalFixed(fixed.size),
            },
            Schema::Duration(fixed) => Node::Duration(fixed.size),
            Schema::BigDecimal => return Err(CompileError::NotCovered("big-decimal")),
            Schema::Array(array) => Node::Array(self.compile(&array.items, namespace)?),
            Schema::Map(map) => Node::Map(self.compile(&map.types, namespace)?),
            Schema::Union(union) => {
                let variants = union
                    .variants()
                    .iter()
                    .map(|variant| self.compile(variant, namespace))
                    .collect::<Result<Vec<_>, _>>()?;
                Node::Union(variants.into_boxed_slice())
            }
            Schema::Record(RecordSchema { name, fields, .. }) => {
                let qualified = name.fully_qualified_name(namespace);
                let inner = qualified.namespace();
                let fields = fields
                    .iter()
                    .map(|field| {
                        Ok(Field {
                            name: field.name.as_str().into(),
                            node: self.compile(&field.schema, inner)?,
                        })
                    })
                    .collect::<Result<Vec<_>, CompileError>>()?;
                Node::Record(Box::new(Record::new(fields)))
            }
            Schema::Ref { .. } => return Err(CompileError::NotCovered("reference to a reference")),
        })
    }

    /// The node a named reference stands for: compiled once per name, so that a recursive
    /// schema becomes a cycle rather than an endless tree.
    fn reference(&mut self, name: Cow<'_, Name>) -> Result<NodeId, CompileError> {
        if let Some(&id) = self.by_name.get(name.as_ref()) {
            return Ok(id);
        }
        let names = self.names;
        let Some(&schema) = names.get(name.as_ref()) else {
            return Ok(self.push(Node::Unresolved(name.into_owned())));
        };
        // Reserve the node first: the body may refer back to it.
        let id = self.push(Node::Pending);
        self.by_name.insert(name.clone().into_owned(), id);
        let node = self.build(schema, name.namespace())?;
        if let Some(slot) = self.nodes.get_mut(id) {
            *slot = node;
        }
        Ok(id)
    }
}

enum Varint {
    Eof,
    Overflow,
}

/// Reads a union's branch index: `None` when the datum ends in it, which apache-avro reads as
/// null, having consumed what there was of the index.
fn union_variant(variants: &[NodeId], input: &mut &[u8]) -> Result<Option<NodeId>, Invalid> {
    let index = match read_varint(input) {
        Ok(raw) => zag(raw),
        Err(Varint::Eof) => {
            *input = &[];
            return Ok(None);
        }
        Err(Varint::Overflow) => return Err(Details::IntegerOverflow.into()),
    };
    let variant = usize::try_from(index)
        .ok()
        .and_then(|position| variants.get(position));
    match variant {
        Some(&variant) => Ok(Some(variant)),
        None => Err(union_index_error(index, variants.len())),
    }
}

#[cold]
fn union_index_error(index: i64, variants: usize) -> Invalid {
    match usize::try_from(index) {
        Err(error) => Details::ConvertI64ToUsize(error, index).into(),
        Ok(_) => Details::GetUnionVariant {
            index,
            num_variants: variants,
        }
        .into(),
    }
}

#[cold]
fn inconsistent() -> Invalid {
    Invalid::new("the compiled Avro schema is inconsistent")
}

/// A variable-length integer, as apache-avro's `decode_variable` reads it (at most 10 bytes;
/// bits beyond 64 are dropped).
#[inline]
fn read_varint(input: &mut &[u8]) -> Result<u64, Varint> {
    let mut value = 0u64;
    for (position, &byte) in input.iter().enumerate() {
        if position > 9 {
            return Err(Varint::Overflow);
        }
        value |= u64::from(byte & 0x7F) << (position * 7);
        if byte & 0x80 == 0 {
            *input = &input[position + 1..];
            return Ok(value);
        }
    }
    // Every byte left continues the number: ten of them overflow before an eleventh is
    // wanted, fewer run out.
    if input.len() >= 10 {
        return Err(Varint::Overflow);
    }
    Err(Varint::Eof)
}

#[inline]
fn zag(raw: u64) -> i64 {
    if raw & 1 == 0 {
        (raw >> 1) as i64
    } else {
        !(raw >> 1) as i64
    }
}

#[inline]
fn read_long(input: &mut &[u8]) -> Result<i64, Invalid> {
    match read_varint(input) {
        Ok(raw) => Ok(zag(raw)),
        Err(error) => Err(varint_error(error)),
    }
}

#[cold]
fn varint_error(error: Varint) -> Invalid {
    match error {
        Varint::Eof => Details::ReadVariableIntegerBytes(eof()).into(),
        Varint::Overflow => Details::IntegerOverflow.into(),
    }
}

#[inline]
fn read_int(input: &mut &[u8]) -> Result<i32, Invalid> {
    let long = read_long(input)?;
    i32::try_from(long).map_err(|error| int_error(error, long))
}

#[cold]
fn int_error(error: std::num::TryFromIntError, long: i64) -> Invalid {
    Details::ZagI32(error, long).into()
}

#[inline]
fn take<'a>(input: &mut &'a [u8], length: usize) -> Option<&'a [u8]> {
    if length > input.len() {
        return None;
    }
    let (head, rest) = input.split_at(length);
    *input = rest;
    Some(head)
}

#[inline]
fn take_array<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = input.split_first_chunk::<N>()?;
    *input = rest;
    Some(*head)
}

fn fixed<'a>(input: &mut &'a [u8], size: usize) -> Result<&'a [u8], Invalid> {
    take(input, size).ok_or_else(|| Details::ReadFixed(eof(), size).into())
}

/// Bytes and fixed as Avro's JSON encoding writes them: one code point (0-255) per byte.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| char::from(byte)).collect()
}

/// The error reading past the end of a byte slice gives, which apache-avro's messages quote.
fn eof() -> std::io::Error {
    let mut empty: &[u8] = &[];
    match empty.read_exact(&mut [0u8]) {
        Err(error) => error,
        Ok(()) => std::io::Error::from(ErrorKind::UnexpectedEof),
    }
}

#[cfg(test)]
mod tests;
