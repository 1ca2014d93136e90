//! What decoding hands to mapping: a record's values, seen the same way whether the record was
//! parsed into a generic [`serde_json::Value`] or read flat into one slot per top-level key
//! ([`crate::decode::flat`]). The mapping reads both through [`Fields`] and coerces one
//! [`Scalar`] type, so the rules for tags, fields and timestamps exist once.

use std::cell::Cell;

use serde_json::{Map, Number, Value};

use crate::line_protocol::FloatText;
use crate::map::FieldPath;

/// One value of a record as the mapping sees it. Arrays and objects are never written, so only
/// their JSON type is kept (error messages name it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// JSON `null`.
    Null,
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number, with its text when a flat record wrote it as line protocol writes it.
    Number(&'a Number, Option<FloatText<'a>>),
    /// A JSON string.
    String(&'a str),
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

impl<'a> Scalar<'a> {
    /// The view of a generic JSON value.
    pub fn of(value: &'a Value) -> Self {
        match value {
            Value::Null => Scalar::Null,
            Value::Bool(flag) => Scalar::Bool(*flag),
            Value::Number(number) => Scalar::Number(number, None),
            Value::String(text) => Scalar::String(text),
            Value::Array(_) => Scalar::Array,
            Value::Object(_) => Scalar::Object,
        }
    }

    /// The JSON type's name, for error messages.
    pub fn json_type(self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "boolean",
            Scalar::Number(..) => "number",
            Scalar::String(_) => "string",
            Scalar::Array => "array",
            Scalar::Object => "object",
        }
    }
}

/// A decoded record, as the mapping reads it.
pub trait Fields<'a>: Copy {
    /// The record's JSON type when it is not an object (the mapping refuses those).
    fn non_object(self) -> Option<&'static str>;

    /// The value at `path`; `None` when it is absent.
    fn get(self, path: &FieldPath) -> Option<Scalar<'a>>;

    /// The whole object, for the keys the mapping does not name (`extra_fields`). A flat
    /// record has none: it is only read for mappings that ignore such keys.
    fn object(self) -> Option<&'a Map<String, Value>>;
}

impl<'a> Fields<'a> for &'a Value {
    fn non_object(self) -> Option<&'static str> {
        (!self.is_object()).then(|| Scalar::of(self).json_type())
    }

    fn get(self, path: &FieldPath) -> Option<Scalar<'a>> {
        path.lookup(self).map(Scalar::of)
    }

    fn object(self) -> Option<&'a Map<String, Value>> {
        self.as_object()
    }
}

/// What a flat record holds for one key: a scalar (a record with an array or object where
/// the mapping or the schema looks is read the generic way).
#[derive(Debug, Clone, PartialEq)]
pub enum Slot<'r> {
    /// The key is not in the record.
    Absent,
    /// JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number, with its text when that is what line protocol writes for it as a float.
    Number(Number, Option<FloatText<'r>>),
    /// A string without escapes, borrowed from the payload.
    String(&'r str),
}

/// The slots of a [`FlatRecord`], one per key. Held inline up to a typical record's keys: a
/// heap allocation and its release, per record, would cost more than the record's mapping.
pub type Slots<'r> = smallvec::SmallVec<[Slot<'r>; INLINE_SLOTS]>;

/// Keys a [`FlatRecord`] holds without allocating (the generator record has six).
pub const INLINE_SLOTS: usize = 8;

/// `count` empty slots, to be filled as a record is read.
pub fn absent_slots<'r>(count: usize) -> Slots<'r> {
    if count <= INLINE_SLOTS {
        // The buffer is written at once, where `smallvec!` clones one slot in per key through
        // a call; the slots past `count` are never read and hold nothing to drop.
        Slots::from_buf_and_len([const { Slot::Absent }; INLINE_SLOTS], count)
    } else {
        smallvec::smallvec![Slot::Absent; count]
    }
}

/// A JSON object read flat: one [`Slot`] per key of a fixed list, the keys the mapping reads
/// and the schema's checks name. Built by [`crate::decode::flat::FlatLayout::read`].
#[derive(Debug)]
pub struct FlatRecord<'r> {
    keys: &'r [String],
    slots: Slots<'r>,
    /// The key after the last one looked up: the mapping looks keys up in the order they are
    /// listed, so this is usually the next one asked for, found with one comparison.
    next: Cell<usize>,
}

impl<'r> FlatRecord<'r> {
    /// A record of `slots`, one per key of `keys`, in order.
    pub fn new(keys: &'r [String], slots: Slots<'r>) -> Self {
        debug_assert_eq!(keys.len(), slots.len());
        Self {
            keys,
            slots,
            next: Cell::new(0),
        }
    }

    /// The slot of `key`, if the record was read for that key.
    pub fn slot(&self, key: &str) -> Option<&Slot<'r>> {
        let index = index_from(self.keys, key, self.next.get())?;
        self.next.set(index + 1);
        self.slots.get(index)
    }

    /// The keys the record was read for, in order. They start with
    /// [`Mapping::flat_keys`](crate::map::Mapping::flat_keys), so a mapping finds its own keys'
    /// values by position ([`FlatRecord::value_at`]) instead of by name.
    pub fn keys(&self) -> &'r [String] {
        self.keys
    }

    /// The value of the key at `index` of [`FlatRecord::keys`]; `None` when it is absent.
    pub fn value_at(&self, index: usize) -> Option<Scalar<'_>> {
        self.slots.get(index).and_then(Slot::scalar)
    }
}

impl<'r> Slot<'r> {
    /// The value the slot holds, `None` when the key is absent.
    fn scalar(&self) -> Option<Scalar<'_>> {
        match self {
            Slot::Absent => None,
            Slot::Null => Some(Scalar::Null),
            Slot::Bool(flag) => Some(Scalar::Bool(*flag)),
            Slot::Number(number, text) => Some(Scalar::Number(number, *text)),
            Slot::String(text) => Some(Scalar::String(text)),
        }
    }
}

/// The position of `key` in `keys`, trying `guess` first.
pub(crate) fn index_from(keys: &[String], key: impl AsRef<[u8]>, guess: usize) -> Option<usize> {
    let key = key.as_ref();
    match keys.get(guess) {
        Some(known) if same_key(known.as_bytes(), key) => Some(guess),
        _ => keys
            .iter()
            .position(|known| same_key(known.as_bytes(), key)),
    }
}

/// Whether two keys are the same bytes. Every key of every flat record is looked up this way,
/// and keys are short: a key of up to 16 bytes is compared as two overlapping windows, which
/// cover all its bytes, instead of through a call to `memcmp` (as `==` on slices does).
fn same_key(known: &[u8], key: &[u8]) -> bool {
    let length = key.len();
    if known.len() != length {
        return false;
    }
    match length {
        0 => true,
        1..=3 => {
            known.first() == key.first()
                && known.get(length / 2) == key.get(length / 2)
                && known.last() == key.last()
        }
        4..=7 => {
            known.first_chunk::<4>() == key.first_chunk::<4>()
                && known.last_chunk::<4>() == key.last_chunk::<4>()
        }
        8..=16 => {
            known.first_chunk::<8>() == key.first_chunk::<8>()
                && known.last_chunk::<8>() == key.last_chunk::<8>()
        }
        _ => known == key,
    }
}

impl<'a, 'r: 'a> Fields<'a> for &'a FlatRecord<'r> {
    fn non_object(self) -> Option<&'static str> {
        None
    }

    fn get(self, path: &FieldPath) -> Option<Scalar<'a>> {
        let FieldPath::Key(key) = path else {
            return None;
        };
        self.slot(key)?.scalar()
    }

    fn object(self) -> Option<&'a Map<String, Value>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Keys of every length the windows treat differently, over few letters so that many
    /// share a prefix or a suffix.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"ab\xff".to_vec()), 0..24)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn keys_are_the_same_exactly_when_their_bytes_are(
            known in key(),
            other in key(),
            changed in any::<prop::sample::Index>(),
            to in prop::sample::select(b"ab\xff".to_vec()),
        ) {
            prop_assert_eq!(same_key(&known, &other), known == other);
            prop_assert!(same_key(&known, &known));
            // The same key with one byte changed, wherever that byte is.
            if !known.is_empty() {
                let mut near = known.clone();
                let at = changed.index(near.len());
                near[at] = to;
                prop_assert_eq!(same_key(&known, &near), known == near, "{:?} {:?}", known, near);
            }
        }
    }

    #[test]
    fn a_key_is_found_by_its_bytes_from_any_guess() {
        let keys: Vec<String> = [
            "lat",
            "lon",
            "fuel",
            "generatorID",
            "temperature",
            "pressure",
        ]
        .map(String::from)
        .to_vec();
        for (index, key) in keys.iter().enumerate() {
            for guess in 0..=keys.len() {
                assert_eq!(
                    index_from(&keys, key, guess),
                    Some(index),
                    "{key} from {guess}"
                );
            }
        }
        assert_eq!(index_from(&keys, "lot", 0), None);
        assert_eq!(index_from(&keys, "temperaturE", 4), None);
        assert_eq!(index_from(&keys, "", 0), None);
    }
}
