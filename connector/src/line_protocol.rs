//! InfluxDB line protocol encoding: a [`Point`] becomes one line of bytes.
//!
//! Pure and deterministic: the same point always encodes to the same bytes, tags in the
//! order given (the mapping sorts them by key, as InfluxDB recommends) and fields in
//! configuration order. Escaping follows the line protocol reference and InfluxData's own
//! builder: measurement escapes `,` and space; tag keys, tag values and field keys escape `,`,
//! `=` and space; every escaped element also escapes `\` so a trailing backslash can never
//! swallow the delimiter after it. String field values are written in double quotes with `"`
//! and `\` escaped, which is all the reference allows there. Line breaks cannot be escaped
//! anywhere, and InfluxDB's parsers refuse unquoted elements ending in a backslash, so such
//! elements are rejected rather than written as a line InfluxDB would refuse.
//!
//! Field types are written as the reference spells them: floats without a suffix (`1.5`,
//! `400`), signed integers with `i` (`400i`), unsigned integers with `u` (`400u`), booleans as
//! `true`/`false`, strings quoted (`"on"`).

use std::borrow::Cow;

use crate::reject::{Rejection, Stage, truncate_message};

/// One InfluxDB point, borrowing from the record it was mapped from.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    /// Measurement name: borrowed from the mapping or the record, owned when rendered from a
    /// template.
    pub measurement: Cow<'a, str>,
    /// Tag key and value pairs, in the order they are written.
    pub tags: Vec<(&'a str, Cow<'a, str>)>,
    /// Fields, in the order they are written.
    pub fields: Vec<(&'a str, FieldValue<'a>)>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
}

/// A field value with its line protocol type. InfluxDB fixes a field's type by the first value
/// written to it, so the type is chosen by the mapping, never guessed from the text.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A 64-bit float, written without a suffix (`1.5`, `400`).
    Float(f64),
    /// A 64-bit float together with the text a record gave it in, which is the very text
    /// [`FieldValue::Float`] writes for it: written as that text, without formatting the number
    /// again. Most readings arrive this way from flat JSON records.
    FloatText(f64, FloatText<'a>),
    /// A signed 64-bit integer, written with an `i` suffix (`400i`).
    Integer(i64),
    /// An unsigned 64-bit integer, written with a `u` suffix (`400u`). InfluxDB 1.x refuses
    /// these; 2.x and 3.x store them.
    Unsigned(u64),
    /// A boolean, written `true` or `false`.
    Boolean(bool),
    /// A string, written in double quotes with `"` and `\` escaped.
    String(Cow<'a, str>),
}

impl FieldValue<'_> {
    /// The value of a float field, with or without its text.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            FieldValue::Float(number) | FieldValue::FloatText(number, _) => Some(*number),
            _ => None,
        }
    }
}

/// The JSON text of a number that is exactly what line protocol writes for it as a float
/// (`51.47`, `-0.12`, `400`), so the encoder can copy it.
///
/// That holds for a plain decimal (no exponent, no trailing zero after the point) of at most
/// [`FloatText::MAX_DIGITS`] digits: any two such decimals are different doubles, so the text
/// is the one shortest text that reads back to its double, which is what [`FieldValue::Float`]
/// writes (`Display`'s text, never with an exponent). `1.50`, `1e3` or a 17-digit decimal are
/// refused: their float is formatted as usual.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FloatText<'a>(&'a [u8]);

impl<'a> FloatText<'a> {
    /// Most digits a text may have: 15 significant decimal digits always survive a round trip
    /// through a double (`f64::DIGITS`). Leading zeros count too, which keeps every such
    /// text's magnitude between 10^-15 and 10^15, inside the normal doubles.
    pub const MAX_DIGITS: usize = f64::DIGITS as usize;

    /// `text` when it is such a decimal (its value is then what JSON reads from it); `None`
    /// otherwise.
    pub fn of_json(text: &'a [u8]) -> Option<Self> {
        let unsigned = text.strip_prefix(b"-").unwrap_or(text);
        let (whole, fraction) = match unsigned.iter().position(|&byte| byte == b'.') {
            Some(point) => (&unsigned[..point], Some(&unsigned[point + 1..])),
            None => (unsigned, None),
        };
        let plain = |digits: &[u8]| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
        let whole_ok = plain(whole) && (whole.len() == 1 || whole[0] != b'0');
        let fraction_ok =
            fraction.is_none_or(|digits| plain(digits) && digits.last() != Some(&b'0'));
        let digits = whole.len() + fraction.map_or(0, <[u8]>::len);
        (whole_ok && fraction_ok && digits <= Self::MAX_DIGITS).then_some(FloatText(text))
    }

    /// `text`, which the caller found to be such a decimal while reading it (checked again in
    /// debug builds).
    pub(crate) fn from_checked(text: &'a [u8]) -> Self {
        debug_assert!(
            Self::of_json(text).is_some(),
            "not a float text: {:?}",
            String::from_utf8_lossy(text)
        );
        FloatText(text)
    }

    /// The text.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl std::fmt::Debug for FloatText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FloatText({})", String::from_utf8_lossy(self.0))
    }
}

/// Why a point cannot be written as line protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineProtocolError {
    /// The measurement name is empty.
    #[error("measurement name is empty")]
    EmptyMeasurement,
    /// A tag or field key is empty.
    #[error("{element} key is empty")]
    EmptyKey {
        /// `tag` or `field`.
        element: &'static str,
    },
    /// A tag value is empty; InfluxDB rejects `key=` with nothing after it.
    #[error("tag `{key}` has an empty value")]
    EmptyTagValue {
        /// The tag key.
        key: String,
    },
    /// A point needs at least one field.
    #[error("point has no fields")]
    NoFields,
    /// NaN and infinities have no line protocol representation.
    #[error("field `{key}` is {value}, which InfluxDB cannot store")]
    NonFiniteField {
        /// The field key.
        key: String,
        /// The offending value.
        value: f64,
    },
    /// InfluxDB's parsers reject any element ending in a backslash, escaped or not.
    #[error(
        "{element} `{text}` ends with a backslash, which InfluxDB's line protocol parsers reject"
    )]
    TrailingBackslash {
        /// Which element: measurement, tag key, tag value, field key.
        element: &'static str,
        /// The element.
        text: String,
    },
    /// Line breaks cannot be escaped in line protocol.
    #[error("{element} `{text}` contains a line break, which line protocol cannot carry")]
    LineBreak {
        /// Which element: measurement, tag key, tag value, field key, field value.
        element: &'static str,
        /// The element, with line breaks shown as `\n`.
        text: String,
    },
}

impl LineProtocolError {
    /// The dead-letter explanation: an unwritable point is a mapping problem.
    pub fn rejection(&self) -> Rejection {
        let reason = match self {
            LineProtocolError::EmptyMeasurement => "EmptyMeasurement",
            LineProtocolError::EmptyKey { .. } => "EmptyKey",
            LineProtocolError::EmptyTagValue { .. } => "EmptyTagValue",
            LineProtocolError::NoFields => "NoFields",
            LineProtocolError::NonFiniteField { .. } => "NonFiniteField",
            LineProtocolError::LineBreak { .. } => "LineBreak",
            LineProtocolError::TrailingBackslash { .. } => "TrailingBackslash",
        };
        Rejection {
            stage: Stage::Map,
            reason,
            message: truncate_message(self.to_string()),
        }
    }
}

const MEASUREMENT: Element = Element::new("measurement", b", \\");
const TAG_KEY: Element = Element::new("tag key", KEY_SPECIALS);
const TAG_VALUE: Element = Element::new("tag value", KEY_SPECIALS);
const FIELD_KEY: Element = Element::new("field key", KEY_SPECIALS);
const FIELD_STRING: Element = Element::new("field value", b"\"\\");
const KEY_SPECIALS: &[u8] = b",= \\";

// What a byte is in one kind of element.
const PLAIN: u8 = 0;
const ESCAPED: u8 = 1;
const LINE_BREAK: u8 = 2;

/// One kind of element (measurement, tag key, …): its name in errors, and a table saying of
/// each byte whether it is written as is, escaped, or cannot be written (a line break). One
/// lookup per byte checks and escapes in the same pass, since every byte of every line passes
/// through here.
struct Element {
    name: &'static str,
    bytes: [u8; 256],
}

impl Element {
    const fn new(name: &'static str, escaped: &[u8]) -> Self {
        let mut bytes = [PLAIN; 256];
        let mut index = 0;
        while index < escaped.len() {
            bytes[escaped[index] as usize] = ESCAPED;
            index += 1;
        }
        bytes[b'\n' as usize] = LINE_BREAK;
        bytes[b'\r' as usize] = LINE_BREAK;
        Self { name, bytes }
    }

    /// Appends `text` escaped, or refuses it if it holds a line break (then `out` may hold
    /// part of it; [`encode`] truncates).
    #[inline]
    fn write(&self, text: &str, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
        let bytes = text.as_bytes();
        if bytes
            .iter()
            .all(|&byte| self.bytes[usize::from(byte)] == PLAIN)
        {
            out.extend_from_slice(bytes);
            return Ok(());
        }
        self.write_escaping(text, out)
    }

    /// [`Element::write`] for text that needs escaping or holds a line break: rare, and kept
    /// out of line so that the common case inlines.
    #[cold]
    #[inline(never)]
    fn write_escaping(&self, text: &str, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
        for &byte in text.as_bytes() {
            // Every special byte is ASCII, so this never splits a UTF-8 sequence.
            match self.bytes[usize::from(byte)] {
                PLAIN => {}
                ESCAPED => out.push(b'\\'),
                _ => {
                    return Err(LineProtocolError::LineBreak {
                        element: self.name,
                        text: text.replace('\n', "\\n").replace('\r', "\\r"),
                    });
                }
            }
            out.push(byte);
        }
        Ok(())
    }

    /// [`Element::write`] for an unquoted element, which InfluxDB's parsers refuse when it
    /// ends in a backslash, escaped or not.
    #[inline]
    fn write_unquoted(&self, text: &str, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
        if text.ends_with('\\') {
            return Err(self.trailing_backslash(text));
        }
        self.write(text, out)
    }

    #[cold]
    fn trailing_backslash(&self, text: &str) -> LineProtocolError {
        LineProtocolError::TrailingBackslash {
            element: self.name,
            text: text.to_owned(),
        }
    }
}

/// Appends `point` as one line (ending in `\n`) to `out`.
///
/// Nothing is appended when the point is rejected, so a batch buffer never holds half a line.
pub fn encode(point: &Point<'_>, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
    let start = out.len();
    let written = write_line(point, out);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Writes the line, checking each element as it goes, in the order the elements appear.
fn write_line(point: &Point<'_>, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
    write_measurement(&point.measurement, out)?;
    for (key, value) in &point.tags {
        write_tag_key(key, out)?;
        write_tag_value(key, value, out)?;
    }
    if point.fields.is_empty() {
        return Err(LineProtocolError::NoFields);
    }
    for (index, (key, value)) in point.fields.iter().enumerate() {
        out.push(if index == 0 { b' ' } else { b',' });
        write_field_key(key, out)?;
        write_field_value(key, value, out)?;
    }
    write_timestamp(point.timestamp_ns, out);
    Ok(())
}

// The pieces of a line, in the order they are written. [`encode`] writes a [`Point`] with them;
// [`crate::map::FlatLine`] writes a flat record's line with the same pieces, its keys written
// once when the mapping is compiled. On an error `out` may hold part of the piece: the caller
// truncates.

/// Writes the measurement name.
pub(crate) fn write_measurement(name: &str, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
    if name.is_empty() {
        return Err(LineProtocolError::EmptyMeasurement);
    }
    MEASUREMENT.write_unquoted(name, out)
}

/// Writes `,key=`, the start of a tag.
pub(crate) fn write_tag_key(key: &str, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
    if key.is_empty() {
        return Err(LineProtocolError::EmptyKey { element: "tag" });
    }
    out.push(b',');
    TAG_KEY.write_unquoted(key, out)?;
    out.push(b'=');
    Ok(())
}

/// Writes the value of the tag `key`.
pub(crate) fn write_tag_value(
    key: &str,
    value: &str,
    out: &mut Vec<u8>,
) -> Result<(), LineProtocolError> {
    if value.is_empty() {
        return Err(LineProtocolError::EmptyTagValue {
            key: key.to_owned(),
        });
    }
    TAG_VALUE.write_unquoted(value, out)
}

/// Writes `key=`, a field's start after its separator (a space before the first field, a
/// comma before the others).
pub(crate) fn write_field_key(key: &str, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
    if key.is_empty() {
        return Err(LineProtocolError::EmptyKey { element: "field" });
    }
    FIELD_KEY.write_unquoted(key, out)?;
    out.push(b'=');
    Ok(())
}

/// Writes the value of the field `key`.
pub(crate) fn write_field_value(
    key: &str,
    value: &FieldValue<'_>,
    out: &mut Vec<u8>,
) -> Result<(), LineProtocolError> {
    match value {
        FieldValue::Float(number) if !number.is_finite() => {
            return Err(LineProtocolError::NonFiniteField {
                key: key.to_owned(),
                value: *number,
            });
        }
        // `Display` for f64 prints the shortest text that parses back to the same value and
        // never uses an exponent; without an `i` suffix line protocol reads it as a float.
        FieldValue::Float(number) => write_float(*number, out),
        FieldValue::FloatText(_, text) => out.extend_from_slice(text.as_bytes()),
        FieldValue::Integer(number) => {
            out.extend_from_slice(itoa::Buffer::new().format(*number).as_bytes());
            out.push(b'i');
        }
        FieldValue::Unsigned(number) => {
            out.extend_from_slice(itoa::Buffer::new().format(*number).as_bytes());
            out.push(b'u');
        }
        FieldValue::Boolean(flag) => {
            out.extend_from_slice(if *flag { b"true" } else { b"false" });
        }
        // Inside quotes a trailing backslash is escaped like any other, so only line breaks
        // are unrepresentable.
        FieldValue::String(text) => {
            out.push(b'"');
            FIELD_STRING.write(text, out)?;
            out.push(b'"');
        }
    }
    Ok(())
}

/// Writes ` timestamp` and the line's end.
pub(crate) fn write_timestamp(timestamp_ns: i64, out: &mut Vec<u8>) {
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(timestamp_ns).as_bytes());
    out.push(b'\n');
}

/// Writes a finite float as `Display` does: the shortest text that parses back to the same
/// value, never with an exponent, `400` rather than `400.0`. (When two shortest texts are
/// exactly as close, Ryū may pick the other one in the last digit; it parses to the same value.)
///
/// `Display` goes through the formatting machinery, which costs more than the rest of a line.
/// Ryū prints the same shortest digits several times faster, in plain notation as long as the
/// decimal exponent stays small, so it serves that range (every realistic reading) and
/// `Display` the rest; its `.0` suffix for whole numbers is dropped.
fn write_float(number: f64, out: &mut Vec<u8>) {
    if write_short_decimal(number, out) {
        return;
    }
    let magnitude = number.abs();
    if number == 0.0 || (PLAIN_RYU_MIN..PLAIN_RYU_END).contains(&magnitude) {
        let mut buffer = ryu::Buffer::new();
        let text = buffer.format_finite(number);
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
    } else {
        use std::io::Write as _;
        let _ = write!(out, "{number}");
    }
}

/// Most sensor readings have a few decimals (`51.47`, `1013.2`, `37`). Such a number is
/// exactly `n / 10^k` for an integer `n` and `k ≤ SHORT_DECIMALS_MAX`; it is then written as
/// the integer `n` with the point put back, without Ryū's shortest-digits search.
///
/// Why that is `Display`'s text: IEEE division is correctly rounded, so `m / 10^K == number`
/// (`K` being `SHORT_DECIMALS_MAX`) means the decimal `m·10^-K` parses back to `number`. Below
/// `SHORT_DECIMAL_LIMIT` two doubles are less than `10^-K / 2` apart, so no other decimal with
/// `K` or fewer places parses to `number`: that decimal with its trailing zeros dropped is the
/// unique shortest text, which `Display` prints. One multiply, round and divide at `K` places
/// find it for every `k ≤ K` at once (`n / 10^k` is the same rational as `n·10^(K-k) / 10^K`,
/// and `number · 10^K` is far closer to that integer than half a unit), instead of one try per
/// `k`: a division costs more than the rest of the check. Zero keeps the general path (`-0`).
fn write_short_decimal(number: f64, out: &mut Vec<u8>) -> bool {
    if number == 0.0 || number.abs() >= SHORT_DECIMAL_LIMIT {
        return false;
    }
    let scaled = round_half_away(number * SHORT_DECIMAL_SCALE);
    if scaled / SHORT_DECIMAL_SCALE != number {
        return false;
    }
    // |scaled| < 1e9 · 10^4, well inside i64 and exact as an f64.
    let scaled = scaled as i64;
    let magnitude = scaled.unsigned_abs();
    let (Ok(mut whole), Ok(fraction)) = (
        u32::try_from(magnitude / SHORT_DECIMAL_UNITS),
        u32::try_from(magnitude % SHORT_DECIMAL_UNITS),
    ) else {
        return false;
    };
    // The text is made from its last character to its first, each shifted in below the others,
    // so that the first ends in the lowest byte: the little-endian bytes of `text` are the
    // characters in order, whatever their count. At most a sign, 9 digits, a point and 4
    // decimals: they fit.
    //
    // First the four decimals, tenths first. The zeros they end with are not written (`51.47`,
    // not `51.4700`), and with them the point when all four are zeros.
    let [tenths, hundredths] = DIGIT_PAIRS[(fraction / 100 % 100) as usize];
    let [thousandths, ten_thousandths] = DIGIT_PAIRS[(fraction % 100) as usize];
    let decimals = u32::from_le_bytes([tenths, hundredths, thousandths, ten_thousandths]);
    let places =
        SHORT_DECIMALS_MAX - (decimals - u32::from_le_bytes([b'0'; 4])).leading_zeros() / 8;
    let (mut text, mut len) = match places {
        0 => (0u128, 0),
        _ => {
            let written = decimals & (u32::MAX >> (32 - 8 * places));
            (
                (u128::from(written) << 8) | u128::from(b'.'),
                places as usize + 1,
            )
        }
    };
    loop {
        if whole < 10 {
            text = (text << 8) | u128::from(b'0' + whole as u8);
            len += 1;
            break;
        }
        text = (text << 16) | u128::from(u16::from_le_bytes(DIGIT_PAIRS[(whole % 100) as usize]));
        len += 2;
        whole /= 100;
        if whole == 0 {
            break;
        }
    }
    if scaled < 0 {
        text = (text << 8) | u128::from(b'-');
        len += 1;
    }
    extend_padded(out, &text.to_le_bytes(), len);
    true
}

/// A piece of line protocol that a compiled mapping writes on every line (`generator`,
/// `,generatorID=`, ` fuel=`), held so that it is written with a copy of a fixed size (see
/// [`extend_padded`]).
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    /// The first [`PIECE_HEAD`] bytes, padded: most keys, with their `,` and `=`, fit.
    head: [u8; PIECE_HEAD],
    /// How many bytes of `head` are the piece's.
    head_len: usize,
    /// The bytes after the head, if any.
    tail: Box<[u8]>,
}

/// The bytes a [`Piece`] copies at a fixed size.
const PIECE_HEAD: usize = 16;

impl Piece {
    /// The piece that writes `bytes`.
    pub(crate) fn new(bytes: &[u8]) -> Piece {
        let (head_bytes, tail) = bytes.split_at(bytes.len().min(PIECE_HEAD));
        let mut head = [0; PIECE_HEAD];
        head[..head_bytes.len()].copy_from_slice(head_bytes);
        Piece {
            head,
            head_len: head_bytes.len(),
            tail: tail.into(),
        }
    }

    /// Appends the piece's bytes to `out`.
    #[inline(always)]
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        extend_padded(out, &self.head, self.head_len);
        if !self.tail.is_empty() {
            out.extend_from_slice(&self.tail);
        }
    }
}

/// Appends the first `len` bytes of `padded`. Copying a whole array of a size known when
/// compiling takes a few moves; copying a slice of any other length is a call to `memcpy`,
/// which costs more than the copy itself for the few bytes a piece of a line has.
#[inline(always)]
fn extend_padded<const N: usize>(out: &mut Vec<u8>, padded: &[u8; N], len: usize) {
    let start = out.len();
    out.extend_from_slice(padded);
    out.truncate(start + len.min(N));
}

/// `x.round()` for `|x| < 2^52`, without the libm call `round` is on the baseline x86-64
/// target (no SSE4.1): the truncation is exact in that range, and so is the fraction it leaves.
fn round_half_away(x: f64) -> f64 {
    let whole = x as i64 as f64;
    let fraction = x - whole;
    if fraction >= 0.5 {
        whole + 1.0
    } else if fraction <= -0.5 {
        whole - 1.0
    } else {
        whole
    }
}

/// Most decimals a reading takes the short path with (see [`write_short_decimal`]).
const SHORT_DECIMALS_MAX: u32 = 4;

/// `10^SHORT_DECIMALS_MAX`.
const SHORT_DECIMAL_UNITS: u64 = 10u64.pow(SHORT_DECIMALS_MAX);

/// `SHORT_DECIMAL_UNITS` as an f64, which holds it exactly.
const SHORT_DECIMAL_SCALE: f64 = SHORT_DECIMAL_UNITS as f64;

// The decimals are written as the four bytes of a `u32`.
const _: () = assert!(SHORT_DECIMALS_MAX == 4);

/// `00` to `99`, each as its two digits.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0; 2]; 100];
    let mut pair = 0;
    while pair < 100 {
        pairs[pair] = [b'0' + (pair / 10) as u8, b'0' + (pair % 10) as u8];
        pair += 1;
    }
    pairs
};

/// Largest magnitude for the short path: doubles below it are under `2^-22` apart, far less than
/// half of `10^-SHORT_DECIMALS_MAX`.
const SHORT_DECIMAL_LIMIT: f64 = 1e9;

/// Ryū writes magnitudes from 1e-5 up to (not including) 1e16 without an exponent; the range
/// used stays inside that with a margin on each side.
const PLAIN_RYU_MIN: f64 = 1e-4;
const PLAIN_RYU_END: f64 = 1e15;

#[cfg(test)]
mod tests {
    use super::*;
    use influxdb_line_protocol::{FieldValue as Parsed, parse_lines};
    use proptest::prelude::*;

    fn line(point: &Point<'_>) -> String {
        let mut out = Vec::new();
        encode(point, &mut out).expect("encodes");
        String::from_utf8(out).expect("utf-8")
    }

    fn generator_point() -> Point<'static> {
        Point {
            measurement: Cow::Borrowed("generator"),
            tags: vec![("generatorID", Cow::Borrowed("gen-7"))],
            fields: vec![
                ("fuel", FieldValue::Float(400.0)),
                ("temperature", FieldValue::Float(36.2)),
                ("lat", FieldValue::Float(-0.12)),
            ],
            timestamp_ns: 1_700_000_000_123_000_000,
        }
    }

    #[test]
    fn golden_generator_line() {
        assert_eq!(
            line(&generator_point()),
            "generator,generatorID=gen-7 fuel=400,temperature=36.2,lat=-0.12 1700000000123000000\n"
        );
    }

    #[test]
    fn golden_line_with_every_field_type() {
        let point = Point {
            measurement: Cow::Borrowed("m"),
            tags: vec![],
            fields: vec![
                ("f", FieldValue::Float(-1.5)),
                ("i", FieldValue::Integer(i64::MIN)),
                ("u", FieldValue::Unsigned(u64::MAX)),
                ("t", FieldValue::Boolean(true)),
                ("n", FieldValue::Boolean(false)),
                (
                    "s",
                    FieldValue::String(Cow::Borrowed(r#"say "hi", a=b \ c\"#)),
                ),
                ("e", FieldValue::String(Cow::Borrowed(""))),
            ],
            timestamp_ns: -1,
        };
        assert_eq!(
            line(&point),
            "m f=-1.5,i=-9223372036854775808i,u=18446744073709551615u,t=true,n=false,\
             s=\"say \\\"hi\\\", a=b \\\\ c\\\\\",e=\"\" -1\n"
        );
    }

    #[test]
    fn escapes_each_element_by_its_own_rules() {
        let point = Point {
            measurement: Cow::Borrowed("my meas,ure=ment"),
            tags: vec![("tag key,=", Cow::Borrowed("va lue,=\\x"))],
            fields: vec![("field key,=", FieldValue::Float(1.5))],
            timestamp_ns: 1,
        };
        assert_eq!(
            line(&point),
            "my\\ meas\\,ure=ment,tag\\ key\\,\\==va\\ lue\\,\\=\\\\x field\\ key\\,\\==1.5 1\n"
        );
    }

    #[test]
    fn integral_floats_are_written_without_suffix() {
        let mut point = generator_point();
        point.fields = vec![("fuel", FieldValue::Float(400.0))];
        assert!(line(&point).contains(" fuel=400 "));
        let text = line(&point);
        let parsed = parse_lines(&text).next().unwrap().unwrap();
        assert_eq!(parsed.field_set[0].1, Parsed::F64(400.0));
    }

    #[test]
    fn a_float_with_its_text_is_written_as_that_text() {
        let mut point = generator_point();
        let text = FloatText::of_json(b"-0.12").expect("shortest");
        point.fields = vec![("lat", FieldValue::FloatText(-0.12, text))];
        assert!(line(&point).contains(" lat=-0.12 "));
        assert_eq!(point.fields[0].1.as_float(), Some(-0.12));
    }

    #[test]
    fn only_plain_shortest_decimals_are_float_texts() {
        for kept in [
            "0",
            "-0",
            "7",
            "400",
            "-0.12",
            "51.47",
            "0.000001",
            "123456789012345",
            "-12345678.9012345",
            "0.00000000000001",
        ] {
            assert!(FloatText::of_json(kept.as_bytes()).is_some(), "{kept}");
            assert_float_text_is_written(kept);
        }
        for refused in [
            "",
            "-",
            "1.50",
            "1.0",
            "-0.0",
            "1.",
            ".5",
            "01",
            "-01.5",
            "1e3",
            "1E3",
            "+1",
            "1234567890123456",
            "0.000000000000001",
            "12345678901234.56",
            "1,5",
            " 1",
            "--1",
        ] {
            assert!(
                FloatText::of_json(refused.as_bytes()).is_none(),
                "{refused}"
            );
        }
    }

    /// A text taken as a [`FloatText`] is what [`write_float`] writes for the value JSON reads
    /// from it.
    fn assert_float_text_is_written(text: &str) {
        let value: f64 = text.parse().expect("a decimal");
        let mut written = Vec::new();
        write_float(value, &mut written);
        assert_eq!(String::from_utf8(written).expect("utf-8"), text);
    }

    #[test]
    fn rejects_what_line_protocol_cannot_carry_and_appends_nothing() {
        let cases: Vec<(Point<'static>, LineProtocolError)> = vec![
            (
                Point {
                    measurement: Cow::Borrowed(""),
                    ..generator_point()
                },
                LineProtocolError::EmptyMeasurement,
            ),
            (
                Point {
                    tags: vec![("generatorID", Cow::Borrowed(""))],
                    ..generator_point()
                },
                LineProtocolError::EmptyTagValue {
                    key: "generatorID".into(),
                },
            ),
            (
                Point {
                    tags: vec![("generatorID", Cow::Borrowed("a\nb"))],
                    ..generator_point()
                },
                LineProtocolError::LineBreak {
                    element: "tag value",
                    text: "a\\nb".into(),
                },
            ),
            (
                Point {
                    fields: vec![("note", FieldValue::String(Cow::Borrowed("a\r\nb")))],
                    ..generator_point()
                },
                LineProtocolError::LineBreak {
                    element: "field value",
                    text: "a\\r\\nb".into(),
                },
            ),
            (
                Point {
                    fields: vec![("fuel", FieldValue::Float(f64::NAN))],
                    ..generator_point()
                },
                LineProtocolError::NonFiniteField {
                    key: "fuel".into(),
                    value: f64::NAN,
                },
            ),
            (
                Point {
                    fields: vec![],
                    ..generator_point()
                },
                LineProtocolError::NoFields,
            ),
        ];
        for (point, expected) in cases {
            let mut out = b"previous line\n".to_vec();
            let error = encode(&point, &mut out).expect_err("must be rejected");
            // NaN != NaN, so compare the messages.
            assert_eq!(error.to_string(), expected.to_string());
            assert_eq!(out, b"previous line\n", "nothing appended for {point:?}");
        }
        let mut out = Vec::new();
        let infinite = Point {
            fields: vec![("fuel", FieldValue::Float(f64::INFINITY))],
            ..generator_point()
        };
        assert!(matches!(
            encode(&infinite, &mut out),
            Err(LineProtocolError::NonFiniteField { .. })
        ));
    }

    fn element() -> impl Strategy<Value = String> {
        // Printable text rich in the characters that need escaping, no line breaks.
        proptest::string::string_regex("[a-zA-Z0-9 ,=\\\\\"'_.:/é-]{1,12}").expect("regex")
    }

    /// A field value of any type; strings may be empty and end in a backslash.
    fn field_value() -> impl Strategy<Value = FieldValue<'static>> {
        prop_oneof![
            (proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL)
                .prop_map(FieldValue::Float),
            any::<i64>().prop_map(FieldValue::Integer),
            any::<u64>().prop_map(FieldValue::Unsigned),
            any::<bool>().prop_map(FieldValue::Boolean),
            proptest::string::string_regex("[a-z \\t,=\\\\\"'é{}]{0,12}")
                .expect("regex")
                .prop_map(|text| FieldValue::String(Cow::Owned(text))),
        ]
    }

    /// What InfluxData's parser must read back for `value`.
    fn same_value(parsed: &Parsed<'_>, value: &FieldValue<'_>) -> bool {
        match (parsed, value) {
            (Parsed::F64(a), FieldValue::Float(b)) => a == b,
            (Parsed::I64(a), FieldValue::Integer(b)) => a == b,
            (Parsed::U64(a), FieldValue::Unsigned(b)) => a == b,
            (Parsed::Boolean(a), FieldValue::Boolean(b)) => a == b,
            (Parsed::String(a), FieldValue::String(b)) => a.as_str() == b.as_ref(),
            _ => false,
        }
    }

    /// `write_float` must print what `Display` prints, in Ryū's range and outside it. The one
    /// allowed difference: when the value lies exactly halfway between two shortest texts
    /// (`689073495646.53125` between `…5312` and `…5313`), Ryū and `Display` break the tie
    /// differently; both texts are as short and parse back to the same value.
    fn assert_float_text(number: f64) {
        let mut fast = Vec::new();
        write_float(number, &mut fast);
        let fast = String::from_utf8(fast).expect("ASCII");
        let display = number.to_string();
        if fast != display {
            assert_eq!(
                fast.len(),
                display.len(),
                "for {number:e}: {fast} vs {display}"
            );
            assert_eq!(
                fast.parse::<f64>().ok(),
                Some(number),
                "for {number:e}: {fast}"
            );
            let (fast_head, display_head) =
                (&fast[..fast.len() - 1], &display[..display.len() - 1]);
            assert_eq!(
                fast_head, display_head,
                "for {number:e}: more than the last digit differs"
            );
        }
    }

    #[test]
    fn exact_ties_between_two_shortest_texts_may_differ_in_the_last_digit() {
        assert_float_text(6.890734956465313e11);
    }

    #[test]
    fn floats_print_as_display_does_at_the_edges() {
        for number in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            400.0,
            400.5,
            0.1,
            1e-4,
            9.999_999_999_999_999e-5,
            1e-5,
            1e-7,
            1e15,
            999_999_999_999_999.9,
            1e16,
            1e21,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            123_456_789.123_456_78,
            51.47,
            -0.05,
            1013.25,
            0.0001,
            0.00015,
            999_999_999.999_9,
            1e9,
            1e9 + 0.5,
            0.1 + 0.2,
            37.000_01,
        ] {
            assert_float_text(number);
        }
    }

    #[test]
    fn round_half_away_rounds_halves_away_from_zero() {
        for (x, rounded) in [
            (0.5, 1.0),
            (-0.5, -1.0),
            (2.5, 3.0),
            (-2.5, -3.0),
            (0.49999999999999994, 0.0),
            (5146.999999999999, 5147.0),
            (4503599627370495.5, 4503599627370496.0),
            (-4503599627370495.5, -4503599627370496.0),
        ] {
            assert_eq!(round_half_away(x), rounded, "{x}");
            assert_eq!(x.round(), rounded, "{x}");
        }
    }

    proptest! {
        #[test]
        fn round_half_away_is_round_below_2_pow_52(
            x in -4503599627370496.0f64..4503599627370496.0,
            scale in prop::sample::select(vec![1.0, 1e-4, 1e-9]),
        ) {
            let x = x * scale;
            prop_assert_eq!(round_half_away(x), x.round(), "{}", x);
        }

        #[test]
        fn floats_print_as_display_does(bits in any::<u64>()) {
            let number = f64::from_bits(bits);
            prop_assume!(number.is_finite());
            assert_float_text(number);
        }

        /// Whatever decimal text is taken as a [`FloatText`] is the text [`write_float`] writes
        /// for its value: readings of a few decimals, long ones, and `Display`'s own texts.
        #[test]
        fn float_texts_are_what_write_float_writes(
            text in prop_oneof![
                "-?(0|[1-9][0-9]{0,16})(\\.[0-9]{1,17})?",
                "-?[1-9][0-9]{0,6}\\.[0-9]{1,3}",
                any::<f64>().prop_filter("finite", |value| value.is_finite())
                    .prop_map(|value| value.to_string()),
            ],
        ) {
            if FloatText::of_json(text.as_bytes()).is_some() {
                assert_float_text_is_written(&text);
            }
        }

        #[test]
        fn readings_print_as_display_does(number in -1e6f64..1e6) {
            assert_float_text(number);
        }

        /// A piece is written as its bytes, whatever its length and whatever came before.
        #[test]
        fn a_piece_writes_its_bytes(
            before in proptest::collection::vec(any::<u8>(), 0..40),
            bytes in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let mut out = before.clone();
            Piece::new(&bytes).write(&mut out);
            prop_assert_eq!(out, [before, bytes].concat());
        }

        /// Readings with a few decimals take the short path; its text must be `Display`'s,
        /// up to and around the path's limits, and with fewer digits than decimals (`0.05`).
        #[test]
        fn short_decimals_print_as_display_does(
            digits in prop_oneof![-(1e13 as i64)..(1e13 as i64), -100_000i64..100_000],
            decimals in 0u32..=6,
        ) {
            let number = digits as f64 / 10f64.powi(decimals as i32);
            assert_float_text(number);
            assert_float_text(number.next_up());
            assert_float_text(number.next_down());
        }

        #[test]
        fn round_trips_through_influxdatas_parser(
            measurement in element(),
            tag_key in element(),
            tag_value in element(),
            field_key in element(),
            values in proptest::collection::vec(field_value(), 1..5),
            timestamp_ns in any::<i64>(),
        ) {
            // Keys starting with `_` or `#` mean something else to some parsers; the escaping,
            // not key policy, is under test here.
            prop_assume!(!measurement.starts_with('#'));
            // Distinct keys: the field key under test, then numbered ones.
            let keys: Vec<String> = (0..values.len())
                .map(|index| if index == 0 { field_key.clone() } else { format!("{field_key}{index}x") })
                .collect();
            let point = Point {
                measurement: Cow::Borrowed(measurement.as_str()),
                tags: vec![(&tag_key, Cow::Borrowed(tag_value.as_str()))],
                fields: keys.iter().map(String::as_str).zip(values.iter().cloned()).collect(),
                timestamp_ns,
            };
            let unrepresentable = [&measurement, &tag_key, &tag_value, &field_key].iter().any(|text| text.ends_with('\\'));
            if unrepresentable {
                let rejected = matches!(encode(&point, &mut Vec::new()), Err(LineProtocolError::TrailingBackslash { .. }));
                prop_assert!(rejected);
                return Ok(());
            }
            let text = line(&point);
            let parsed: Vec<_> = parse_lines(&text).collect();
            prop_assert_eq!(parsed.len(), 1, "one line for {:?}", text);
            let parsed = parsed.into_iter().next().unwrap().map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
            prop_assert_eq!(parsed.series.measurement.to_string(), measurement);
            let tags = parsed.series.tag_set.expect("tags");
            prop_assert_eq!(tags[0].0.to_string(), tag_key);
            prop_assert_eq!(tags[0].1.to_string(), tag_value);
            prop_assert_eq!(parsed.field_set.len(), values.len());
            for ((parsed_key, parsed_value), (key, value)) in parsed.field_set.iter().zip(keys.iter().zip(&values)) {
                prop_assert_eq!(&parsed_key.to_string(), key);
                prop_assert!(same_value(parsed_value, value), "{:?} read back as {:?} from {:?}", value, parsed_value, text);
            }
            prop_assert_eq!(parsed.timestamp, Some(timestamp_ns));
        }
    }
}
