//! The fast path for the common JSON record: a flat object whose keys the mapping reads
//! directly, under a JSON Schema made of per-key rules (types, bounds, lengths, string enums,
//! `required`, `additionalProperties`), like the generator schema.
//!
//! Parsing into a [`serde_json::Value`] allocates every key and string of the record into a
//! tree, which the mapping then searches and the validator walks; about two thirds of a JSON
//! record's cost. Here a small tokenizer reads the payload once into one [`Slot`] per key of a
//! fixed list (strings stay borrowed from the payload) and the schema's rules, compiled once
//! into [`FlatSchema`], are checked on the slots. A number whose text is the one line protocol
//! writes for it (a [`FloatText`], like most readings) keeps that text, for the encoder to copy.
//!
//! The fast path never rejects a record and never accepts one the generic path would refuse:
//! whatever it is not sure of (a value a rule refuses, a key given twice, an unknown key under
//! `additionalProperties: false`, a number too large to compare exactly, an escape in a
//! string, an array or nested object, a JSON syntax error)
//! makes [`FlatLayout::read`] return `None`, and the record goes the generic way, which
//! validates it with `jsonschema` and explains the rejection. A schema with any keyword outside
//! the subset does not compile ([`FlatSchema::compile`] returns `None`): all its records go the
//! generic way. A property test checks both paths agree on random records.

use serde_json::{Number, Value};

use crate::line_protocol::FloatText;
use crate::record::{FlatRecord, Slot, absent_slots, index_from};

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
        match slot {
            Slot::Absent => true,
            // An `enum` (of strings only) admits nothing but one of its strings.
            _ if self.one_of_strings.is_some() && !matches!(slot, Slot::String(_)) => false,
            Slot::Null => self.types.has(Types::NULL),
            Slot::Bool(_) => self.types.has(Types::BOOLEAN),
            Slot::Number(number, _) => self.admits_number(number),
            Slot::String(text) => self.admits_string(text),
        }
    }

    fn admits_string(&self, text: &str) -> bool {
        if !self.types.has(Types::STRING)
            || self
                .one_of_strings
                .as_ref()
                .is_some_and(|allowed| !allowed.iter().any(|one| one == text))
        {
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
        let Some(value) = exact_f64(number) else {
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
    exact_f64(value.as_number()?)
}

/// The number as a float, when that is exact: every float, and integers within ±2^53.
fn exact_f64(number: &Number) -> Option<f64> {
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
    /// Whether keys the schema has no rule for may appear: under `additionalProperties: false`
    /// only its properties may, even where the mapping reads another key.
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
        Some(FlatLayout {
            rules: keys.iter().map(rule).collect(),
            required: keys
                .iter()
                .map(|key| schema.is_some_and(|schema| schema.required.contains(key)))
                .collect(),
            additional_allowed: schema.is_none_or(|schema| schema.additional_allowed),
            keys,
        })
    }

    /// Reads `json` flat, or `None` when the generic path must take it (see the module
    /// documentation).
    pub fn read<'r>(&'r self, json: &'r [u8]) -> Option<FlatRecord<'r>> {
        let mut slots = absent_slots(self.keys.len());
        self.read_object(&mut Cursor { bytes: json, at: 0 }, &mut slots)?;
        let valid = slots.iter().enumerate().all(|(index, slot)| {
            let rule = self.rules[index].as_ref();
            match slot {
                Slot::Absent => !self.required[index],
                _ => rule.map_or(self.additional_allowed, |rule| rule.admits(slot)),
            }
        });
        valid.then(|| FlatRecord::new(&self.keys, slots))
    }

    /// Reads the one top-level object, and nothing but whitespace after it, into `slots`.
    fn read_object<'r>(&self, cursor: &mut Cursor<'r>, slots: &mut [Slot<'r>]) -> Option<()> {
        cursor.skip_whitespace();
        cursor.eat(b'{')?;
        cursor.skip_whitespace();
        if cursor.eat(b'}').is_none() {
            // Records of one producer list their keys in one order, usually the layout's.
            let mut expected = 0;
            loop {
                cursor.skip_whitespace();
                let key = cursor.raw_string()?;
                cursor.skip_whitespace();
                cursor.eat(b':')?;
                cursor.skip_whitespace();
                let value = cursor.scalar()?;
                // A key equal to a known one is valid UTF-8 as it is; any other is checked.
                let index = index_from(&self.keys, key, expected);
                if index.is_none() {
                    std::str::from_utf8(key).ok()?;
                }
                match index {
                    Some(index) => {
                        expected = index + 1;
                        let kept = slots.get_mut(index)?;
                        // The generic path keeps the last of a repeated key; let it.
                        if !matches!(kept, Slot::Absent) {
                            return None;
                        }
                        *kept = value;
                    }
                    None if self.additional_allowed => {}
                    None => return None,
                }
                cursor.skip_whitespace();
                if cursor.eat(b',').is_none() {
                    cursor.eat(b'}')?;
                    break;
                }
            }
        }
        cursor.skip_whitespace();
        cursor.at_end().then_some(())
    }
}

/// Where a string's text stops: the first `"`, `\\` or control character in `bytes`.
///
/// Every string of every record passes through here (a uuid key alone is 36 bytes), so eight
/// bytes are tested at a time, with the classic has-zero-byte test on machine words. That test
/// flags the lowest matching byte exactly (a borrow only runs upwards, so only bytes above it
/// can be flagged falsely), which gives the stop's position without a byte-by-byte search.
/// Only the last few bytes of the payload, fewer than a word, are searched byte by byte.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `word` below `limit` (at most 0x80), the lowest exactly.
    let below = |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGHS;
    let holds = |word: u64, byte: u8| below(word ^ (ONES * u64::from(byte)), 1);
    let mut start = 0;
    while let Some(chunk) = bytes.get(start..).and_then(<[u8]>::first_chunk::<8>) {
        // Little-endian, so that the lowest bit is the first byte on any machine.
        let word = u64::from_le_bytes(*chunk);
        let stops = below(word, 0x20) | holds(word, b'"') | holds(word, b'\\');
        if stops != 0 {
            return Some(start + (stops.trailing_zeros() / 8) as usize);
        }
        start += 8;
    }
    let stops = |byte: u8| byte == b'"' || byte == b'\\' || byte < 0x20;
    let position = bytes.get(start..)?.iter().position(|&byte| stops(byte))?;
    Some(start + position)
}

/// Powers of ten a float's significand is scaled by exactly once (see [`Cursor::number`]).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The powers of ten a `u64` holds: a run of up to 19 digits is appended with one of them.
const POW10_U64: [u64; 20] = {
    let mut powers = [1u64; 20];
    let mut index = 1;
    while index < powers.len() {
        powers[index] = powers[index - 1] * 10;
        index += 1;
    }
    powers
};

/// A position in a JSON payload. The tokenizer takes the JSON a flat record is made of:
/// strings without escapes, numbers, `true`, `false` and `null`. Anything else (an escape, an
/// array, a nested object, a number it cannot convert exactly) ends the fast path.
struct Cursor<'r> {
    bytes: &'r [u8],
    at: usize,
}

impl<'r> Cursor<'r> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn digit(&mut self) -> Option<u8> {
        let digit = self.peek().filter(u8::is_ascii_digit)?;
        self.at += 1;
        Some(digit - b'0')
    }

    /// Appends the digits that follow to `significand`; how many there were, or `None` when
    /// it overflows.
    ///
    /// The first 19 digits cannot overflow on their own: they are read without a check per
    /// digit and appended with one multiplication, which overflows exactly when appending
    /// them one by one would. Any further digits are appended one by one, checked.
    // Inlined for the same reason as `raw_string`: numbers are short, a call costs as much.
    #[inline(always)]
    fn digits_into(&mut self, significand: &mut u64) -> Option<i64> {
        let mut run: u64 = 0;
        let mut count = 0;
        for &byte in self.bytes.get(self.at..)?.iter().take(POW10_U64.len() - 1) {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            run = run * 10 + u64::from(digit);
            count += 1;
        }
        self.at += count;
        *significand = significand
            .checked_mul(*POW10_U64.get(count)?)?
            .checked_add(run)?;
        while let Some(digit) = self.digit() {
            *significand = significand.checked_mul(10)?.checked_add(u64::from(digit))?;
            count += 1;
        }
        i64::try_from(count).ok()
    }

    /// A string without escapes, checked as UTF-8 as the generic parser checks it.
    fn string(&mut self) -> Option<&'r str> {
        std::str::from_utf8(self.raw_string()?).ok()
    }

    /// The bytes of a string without escapes or control characters, not checked as UTF-8.
    // Inlined into the object loop, which calls it for every key: a call per key costs about
    // as much as the search itself.
    #[inline(always)]
    fn raw_string(&mut self) -> Option<&'r [u8]> {
        self.eat(b'"')?;
        let rest = self.bytes.get(self.at..)?;
        let length = string_stop(rest)?;
        if rest[length] != b'"' {
            return None;
        }
        self.at += length + 1;
        Some(&rest[..length])
    }

    fn literal(&mut self, word: &[u8], slot: Slot<'r>) -> Option<Slot<'r>> {
        if !self.bytes.get(self.at..)?.starts_with(word) {
            return None;
        }
        self.at += word.len();
        Some(slot)
    }

    fn scalar(&mut self) -> Option<Slot<'r>> {
        match self.peek()? {
            b'"' => self.string().map(Slot::String),
            b't' => self.literal(b"true", Slot::Bool(true)),
            b'f' => self.literal(b"false", Slot::Bool(false)),
            b'n' => self.literal(b"null", Slot::Null),
            b'-' | b'0'..=b'9' => self.number_with_text(),
            _ => None,
        }
    }

    /// A number, with its text when line protocol writes the number as that text.
    fn number_with_text(&mut self) -> Option<Slot<'r>> {
        let start = self.at;
        let (number, shortest) = self.number()?;
        let text = if shortest {
            Some(FloatText::from_checked(self.bytes.get(start..self.at)?))
        } else {
            None
        };
        Some(Slot::Number(number, text))
    }

    /// A JSON number as `serde_json` reads it: a whole number without a fraction or exponent
    /// is a `u64`, or an `i64` when negative (`-0`, and below `i64::MIN`, a float); anything
    /// else a float. A float is taken only when its significand is below 2^53 and its decimal
    /// exponent within ±22: then both factors are exact and one multiplication or division
    /// rounds correctly, as `serde_json` does. Every other number is left to the generic path.
    ///
    /// With it, whether its text is a [`FloatText`], from what reading it found out anyway
    /// (the rule of [`FloatText::of_json`], which would read the text again).
    fn number(&mut self) -> Option<(Number, bool)> {
        let negative = self.eat(b'-').is_some();
        let first = self.digit()?;
        let mut significand = u64::from(first);
        let mut digits: i64 = 1;
        // A leading zero stands alone; `01` fails where the object expects `,` or `}`.
        if first != 0 {
            digits += self.digits_into(&mut significand)?;
        }
        let mut exponent: i64 = 0;
        let mut float = false;
        let mut trailing_zero = false;
        if self.eat(b'.').is_some() {
            float = true;
            let fraction = self.digits_into(&mut significand)?;
            if fraction == 0 {
                return None;
            }
            exponent -= fraction;
            digits += fraction;
            trailing_zero = self.bytes.get(self.at - 1) == Some(&b'0');
        }
        let mut shortest = !trailing_zero && digits <= FloatText::MAX_DIGITS as i64;
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            float = true;
            shortest = false;
            let negative_exponent = match self.peek() {
                Some(b'-') => {
                    self.at += 1;
                    true
                }
                Some(b'+') => {
                    self.at += 1;
                    false
                }
                _ => false,
            };
            let mut written: i64 = i64::from(self.digit()?);
            while let Some(digit) = self.digit() {
                // Far beyond ±22, where the fast path stops anyway; no overflow below it.
                if written > 1_000 {
                    return None;
                }
                written = written * 10 + i64::from(digit);
            }
            exponent += if negative_exponent { -written } else { written };
        }
        if !float {
            if !negative {
                return Some((Number::from(significand), shortest));
            }
            // `serde_json`: the two's complement negation, a float when it is not negative.
            let negated = (significand as i64).wrapping_neg();
            let number = if negated < 0 {
                Number::from(negated)
            } else {
                Number::from_f64(-(significand as f64))?
            };
            return Some((number, shortest));
        }
        let scale = POW10.get(usize::try_from(exponent.unsigned_abs()).ok()?)?;
        if significand > EXACT_INTEGER {
            return None;
        }
        let magnitude = if exponent < 0 {
            significand as f64 / scale
        } else {
            significand as f64 * scale
        };
        let number = Number::from_f64(if negative { -magnitude } else { magnitude })?;
        Some((number, shortest))
    }
}

#[cfg(test)]
mod tests;
