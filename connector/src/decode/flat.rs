//! The fast path for the common JSON record: a flat object whose keys the mapping reads
//! directly, under a JSON Schema made of per-key rules (types, bounds, lengths, string enums,
//! `required`, `additionalProperties`), like the generator schema.
//!
//! Parsing into a [`serde_json::Value`] allocates every key and string of the record into a
//! tree, which the mapping then searches and the validator walks; about two thirds of a JSON
//! record's cost. Here the payload is read once into one [`Slot`] per key of a fixed list
//! (strings stay borrowed from the payload) and the schema's rules, compiled once into
//! [`FlatSchema`], are checked on the slots.
//!
//! The fast path never rejects a record and never accepts one the generic path would refuse:
//! whatever it is not sure of (a value a rule refuses, a key given twice, an unknown key under
//! `additionalProperties: false`, a number too large to compare exactly, a JSON syntax error)
//! makes [`FlatLayout::read`] return `None`, and the record goes the generic way, which
//! validates it with `jsonschema` and explains the rejection. A schema with any keyword outside
//! the subset does not compile ([`FlatSchema::compile`] returns `None`): all its records go the
//! generic way. A property test checks both paths agree on random records.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::record::{FlatRecord, Slot};

/// A flat record is read for at most this many keys: each key of the payload is found by a
/// linear search of the list.
const MAX_KEYS: usize = 32;

/// Integers beyond ±2^53 are not compared with a float bound: the fast path would have to round.
const EXACT_INTEGER: u64 = 1 << 53;

/// Keywords that only annotate a schema: they never make a value invalid.
const ANNOTATIONS: [&str; 10] = [
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// A JSON Schema compiled to per-key rules: the subset the fast path checks itself.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatSchema {
    properties: Vec<(String, Rule)>,
    required: Vec<String>,
    additional_allowed: bool,
}

/// The JSON types a [`Rule`] admits, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Types(u8);

impl Types {
    const NULL: u8 = 1;
    const BOOLEAN: u8 = 1 << 1;
    const INTEGER: u8 = 1 << 2;
    const NUMBER: u8 = 1 << 3;
    const STRING: u8 = 1 << 4;
    const ARRAY: u8 = 1 << 5;
    const OBJECT: u8 = 1 << 6;
    const ANY: Types = Types(0x7f);

    fn named(name: &str) -> Option<u8> {
        Some(match name {
            "null" => Self::NULL,
            "boolean" => Self::BOOLEAN,
            "integer" => Self::INTEGER,
            "number" => Self::NUMBER,
            "string" => Self::STRING,
            "array" => Self::ARRAY,
            "object" => Self::OBJECT,
            _ => return None,
        })
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// What a property's schema demands of its value.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    types: Types,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    /// `enum`, when every value in it is a string.
    one_of_strings: Option<Vec<String>>,
}

impl Rule {
    const ANY: Rule = Rule {
        types: Types::ANY,
        minimum: None,
        maximum: None,
        exclusive_minimum: None,
        exclusive_maximum: None,
        min_length: None,
        max_length: None,
        one_of_strings: None,
    };

    /// Compiles a property's schema; `None` for anything outside the subset.
    fn compile(schema: &Value) -> Option<Rule> {
        let schema = match schema {
            Value::Bool(true) => return Some(Rule::ANY),
            Value::Object(schema) => schema,
            _ => return None,
        };
        let mut rule = Rule::ANY;
        for (keyword, value) in schema {
            match keyword.as_str() {
                "type" => rule.types = compile_types(value)?,
                "minimum" => rule.minimum = Some(exact_bound(value)?),
                "maximum" => rule.maximum = Some(exact_bound(value)?),
                // Draft 4's boolean form is not a number: refused here.
                "exclusiveMinimum" => rule.exclusive_minimum = Some(exact_bound(value)?),
                "exclusiveMaximum" => rule.exclusive_maximum = Some(exact_bound(value)?),
                "minLength" => rule.min_length = Some(value.as_u64()?),
                "maxLength" => rule.max_length = Some(value.as_u64()?),
                "enum" => {
                    let strings = value
                        .as_array()?
                        .iter()
                        .map(|item| item.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()?;
                    rule.one_of_strings = Some(strings);
                }
                other if ANNOTATIONS.contains(&other) => {}
                _ => return None,
            }
        }
        Some(rule)
    }

    /// Whether `slot` certainly satisfies the rule; `false` also when unsure.
    fn admits(&self, slot: &Slot<'_>) -> bool {
        if *slot == Slot::Absent {
            return true;
        }
        if let Some(allowed) = &self.one_of_strings {
            return matches!(slot, Slot::String(text) if allowed.iter().any(|one| one == text))
                && self.admits_string(slot);
        }
        match slot {
            Slot::Absent => true,
            Slot::Null => self.types.has(Types::NULL),
            Slot::Bool(_) => self.types.has(Types::BOOLEAN),
            Slot::Number(number) => self.admits_number(number),
            Slot::String(_) => self.admits_string(slot),
            Slot::Array => self.types.has(Types::ARRAY),
            Slot::Object => self.types.has(Types::OBJECT),
        }
    }

    fn admits_string(&self, slot: &Slot<'_>) -> bool {
        let Slot::String(text) = slot else {
            return false;
        };
        if !self.types.has(Types::STRING) {
            return false;
        }
        if self.min_length.is_none() && self.max_length.is_none() {
            return true;
        }
        // JSON Schema counts code points, not bytes.
        let length = text.chars().count() as u64;
        self.min_length.is_none_or(|min| length >= min)
            && self.max_length.is_none_or(|max| length <= max)
    }

    fn admits_number(&self, number: &Number) -> bool {
        let integer = number.is_u64() || number.is_i64();
        // A float with no fraction is an integer to JSON Schema; whether `1.0` passes an
        // `integer`-only rule is left to the generic path.
        let typed = self.types.has(Types::NUMBER) || (integer && self.types.has(Types::INTEGER));
        if !typed {
            return false;
        }
        let bounded = self.minimum.is_some()
            || self.maximum.is_some()
            || self.exclusive_minimum.is_some()
            || self.exclusive_maximum.is_some();
        if !bounded {
            return true;
        }
        let exact = match (number.as_u64(), number.as_i64()) {
            (Some(whole), _) => whole <= EXACT_INTEGER,
            (None, Some(whole)) => whole.unsigned_abs() <= EXACT_INTEGER,
            (None, None) => true,
        };
        let Some(value) = number.as_f64().filter(|_| exact) else {
            return false;
        };
        self.minimum.is_none_or(|min| value >= min)
            && self.maximum.is_none_or(|max| value <= max)
            && self.exclusive_minimum.is_none_or(|min| value > min)
            && self.exclusive_maximum.is_none_or(|max| value < max)
    }
}

fn compile_types(value: &Value) -> Option<Types> {
    match value {
        Value::String(name) => Types::named(name).map(Types),
        Value::Array(names) => names
            .iter()
            .try_fold(0u8, |bits, name| Some(bits | Types::named(name.as_str()?)?))
            .map(Types),
        _ => None,
    }
}

/// A numeric bound that compares exactly with every value the fast path compares it with.
fn exact_bound(value: &Value) -> Option<f64> {
    let number = value.as_number()?;
    let exact = match (number.as_u64(), number.as_i64()) {
        (Some(whole), _) => whole <= EXACT_INTEGER,
        (None, Some(whole)) => whole.unsigned_abs() <= EXACT_INTEGER,
        (None, None) => true,
    };
    number.as_f64().filter(|_| exact)
}

impl FlatSchema {
    /// Compiles `schema` when it is an object schema made only of per-key rules; `None`
    /// otherwise (`$ref`, `allOf`, `pattern`, `format`, nested `properties`, …).
    pub fn compile(schema: &Value) -> Option<FlatSchema> {
        let schema = schema.as_object()?;
        let mut flat = FlatSchema {
            properties: Vec::new(),
            required: Vec::new(),
            additional_allowed: true,
        };
        for (keyword, value) in schema {
            match keyword.as_str() {
                "type" if value == "object" => {}
                "properties" => {
                    for (key, property) in value.as_object()? {
                        flat.properties
                            .push((key.clone(), Rule::compile(property)?));
                    }
                }
                "required" => {
                    for key in value.as_array()? {
                        flat.required.push(key.as_str()?.to_owned());
                    }
                }
                "additionalProperties" => flat.additional_allowed = value.as_bool()?,
                // Definitions only matter through `$ref`, which no rule may hold.
                "definitions" | "$defs" => {}
                other if ANNOTATIONS.contains(&other) => {}
                _ => return None,
            }
        }
        Some(flat)
    }
}

/// The keys a flat record is read for, and the checks it must pass, fixed once per mapping and
/// schema.
#[derive(Debug, Clone)]
pub struct FlatLayout {
    keys: Vec<String>,
    /// Per key: its schema rule, if the schema has one.
    rules: Vec<Option<Rule>>,
    /// Per key: whether the schema requires it.
    required: Vec<bool>,
    /// Per key: whether the record may hold it. Under `additionalProperties: false` only the
    /// schema's properties may appear, even where the mapping reads another key.
    allowed: Vec<bool>,
    /// Whether keys outside `keys` may appear.
    additional_allowed: bool,
}

impl FlatLayout {
    /// The layout for a mapping that reads `mapping_keys` (see
    /// [`Mapping::flat_keys`](crate::map::Mapping::flat_keys)), checked against `schema`
    /// (`None`: no schema to check). `None` when there are too many keys for the fast path.
    pub fn new(mapping_keys: Vec<String>, schema: Option<&FlatSchema>) -> Option<FlatLayout> {
        let mut keys = mapping_keys;
        if let Some(schema) = schema {
            let named = schema
                .properties
                .iter()
                .map(|(key, _)| key)
                .chain(&schema.required);
            for key in named {
                if !keys.contains(key) {
                    keys.push(key.clone());
                }
            }
        }
        if keys.len() > MAX_KEYS {
            return None;
        }
        let rule = |key: &String| {
            schema.and_then(|schema| {
                schema
                    .properties
                    .iter()
                    .find(|(named, _)| named == key)
                    .map(|(_, rule)| rule.clone())
            })
        };
        let additional_allowed = schema.is_none_or(|schema| schema.additional_allowed);
        let rules: Vec<Option<Rule>> = keys.iter().map(rule).collect();
        Some(FlatLayout {
            allowed: rules
                .iter()
                .map(|rule| additional_allowed || rule.is_some())
                .collect(),
            rules,
            required: keys
                .iter()
                .map(|key| schema.is_some_and(|schema| schema.required.contains(key)))
                .collect(),
            additional_allowed,
            keys,
        })
    }

    /// Reads `json` flat, or `None` when the generic path must take it (see the module
    /// documentation).
    pub fn read<'r>(&'r self, json: &'r [u8]) -> Option<FlatRecord<'r>> {
        let mut slots = vec![Slot::Absent; self.keys.len()];
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        deserializer
            .deserialize_map(ObjectVisitor {
                layout: self,
                slots: &mut slots,
            })
            .ok()?;
        deserializer.end().ok()?;
        let valid = slots.iter().enumerate().all(|(index, slot)| {
            let present = *slot != Slot::Absent;
            (present || !self.required[index])
                && (!present || self.allowed[index])
                && self.rules[index]
                    .as_ref()
                    .is_none_or(|rule| rule.admits(slot))
        });
        valid.then(|| FlatRecord::new(&self.keys, slots))
    }

    fn index_of(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|known| known == key)
    }
}

/// Why the fast path stopped reading; never shown (the generic path explains the record).
#[derive(Debug)]
struct NotFlat;

impl fmt::Display for NotFlat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a flat record")
    }
}

/// Fills the slots from the top-level object.
struct ObjectVisitor<'l, 's, 'r> {
    layout: &'l FlatLayout,
    slots: &'s mut Vec<Slot<'r>>,
}

impl<'de: 'r, 'r> Visitor<'de> for ObjectVisitor<'_, '_, 'r> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed {
            layout: self.layout,
        })? {
            match key {
                Some(index) => {
                    let slot = map.next_value_seed(SlotSeed)?;
                    let Some(kept) = self.slots.get_mut(index) else {
                        return Err(serde::de::Error::custom(NotFlat));
                    };
                    // The generic path keeps the last of a repeated key; let it.
                    if *kept != Slot::Absent {
                        return Err(serde::de::Error::custom(NotFlat));
                    }
                    *kept = slot;
                }
                None if self.layout.additional_allowed => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => return Err(serde::de::Error::custom(NotFlat)),
            }
        }
        Ok(())
    }
}

/// Finds a key's slot (`None`: a key the layout does not read).
struct KeySeed<'l> {
    layout: &'l FlatLayout,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.layout.index_of(key))
    }
}

/// Reads one value into a slot: scalars kept, arrays and objects checked and skipped.
struct SlotSeed;

impl<'de> DeserializeSeed<'de> for SlotSeed {
    type Value = Slot<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SlotSeed {
    type Value = Slot<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, flag: bool) -> Result<Self::Value, E> {
        Ok(Slot::Bool(flag))
    }

    fn visit_u64<E>(self, whole: u64) -> Result<Self::Value, E> {
        Ok(Slot::Number(whole.into()))
    }

    fn visit_i64<E>(self, whole: i64) -> Result<Self::Value, E> {
        Ok(Slot::Number(whole.into()))
    }

    fn visit_f64<E>(self, float: f64) -> Result<Self::Value, E> {
        // As `serde_json::Value` does: a float with no JSON form is null.
        Ok(Number::from_f64(float).map_or(Slot::Null, Slot::Number))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Slot::String(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Slot::String(Cow::Owned(text.to_owned())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Slot::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Slot::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Slot::Object)
    }
}

#[cfg(test)]
mod tests;
