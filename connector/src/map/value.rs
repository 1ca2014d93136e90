//! JSON values → typed line protocol values: the field type coercions and tag text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Number;

use super::error::MapError;
use super::path::FieldPath;
use crate::line_protocol::{FieldValue, FloatText};
use crate::record::Scalar;

/// The line protocol type a field is written as (`type` in a field entry).
///
/// InfluxDB fixes a field's type with the first value written to it and refuses later values of
/// another type, so the type is configured, never guessed per record (except with `auto`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Any JSON number, written as a float: `400` and `400.5` never conflict (the default).
    #[default]
    Float,
    /// A JSON integer, or a float without a fraction (`400.0`), written with an `i` suffix.
    Integer,
    /// A non-negative JSON integer, or such a float without a fraction, written with a `u`
    /// suffix. InfluxDB 1.x refuses unsigned fields; 2.x and 3.x store them.
    Unsigned,
    /// A JSON boolean.
    Boolean,
    /// A JSON string; numbers and booleans are written as their JSON text.
    String,
    /// Follows the JSON type: number → float, boolean → boolean, string → string.
    Auto,
}

impl FieldType {
    /// Every type.
    pub const ALL: [FieldType; 6] = [
        FieldType::Float,
        FieldType::Integer,
        FieldType::Unsigned,
        FieldType::Boolean,
        FieldType::String,
        FieldType::Auto,
    ];

    /// The name used in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
            FieldType::Auto => "auto",
        }
    }
}

/// Converts a present, non-null value to `kind`, or says why it cannot be.
pub(super) fn coerce<'a>(
    value: Scalar<'a>,
    kind: FieldType,
    path: &FieldPath,
) -> Result<FieldValue<'a>, MapError> {
    let wrong_type = |expected: &'static str| MapError::WrongFieldType {
        path: path.to_string(),
        expected,
        found: value.json_type(),
    };
    match kind {
        FieldType::Float => match value {
            Scalar::Number(number, text) => Ok(float(number, text)),
            _ => Err(non_numeric(value, path)),
        },
        FieldType::Integer | FieldType::Unsigned => {
            let Scalar::Number(number, _) = value else {
                return Err(non_numeric(value, path));
            };
            let converted = if kind == FieldType::Integer {
                as_integer(number).map(FieldValue::Integer)
            } else {
                as_unsigned(number).map(FieldValue::Unsigned)
            };
            converted.ok_or_else(|| MapError::NotAnInteger {
                path: path.to_string(),
                value: number.to_string(),
                expected: if kind == FieldType::Integer {
                    "a signed 64-bit integer"
                } else {
                    "an unsigned 64-bit integer"
                },
            })
        }
        FieldType::Boolean => match value {
            Scalar::Bool(flag) => Ok(FieldValue::Boolean(flag)),
            _ => Err(wrong_type("a boolean")),
        },
        FieldType::String => match value {
            Scalar::String(text) => Ok(FieldValue::String(Cow::Borrowed(text))),
            Scalar::Number(number, _) => Ok(FieldValue::String(Cow::Owned(number.to_string()))),
            Scalar::Bool(flag) => Ok(FieldValue::String(Cow::Borrowed(bool_text(flag)))),
            _ => Err(wrong_type("a string, number or boolean")),
        },
        FieldType::Auto => auto(value).ok_or_else(|| wrong_type("a number, boolean or string")),
    }
}

/// `auto` typing: number → float, boolean → boolean, string → string; anything else has no
/// field value (extra fields skip it, a configured `auto` field rejects it).
pub(super) fn auto(value: Scalar<'_>) -> Option<FieldValue<'_>> {
    match value {
        Scalar::Number(number, text) => Some(float(number, text)),
        Scalar::Bool(flag) => Some(FieldValue::Boolean(flag)),
        Scalar::String(text) => Some(FieldValue::String(Cow::Borrowed(text))),
        Scalar::Null | Scalar::Array | Scalar::Object => None,
    }
}

/// The text of a scalar (a tag value, or a measurement taken from the record): strings as they
/// are, numbers and booleans as their JSON text. `Err` carries the JSON type of anything else.
pub(super) fn scalar_text(value: Scalar<'_>) -> Result<Cow<'_, str>, &'static str> {
    match value {
        Scalar::String(text) => Ok(Cow::Borrowed(text)),
        Scalar::Number(number, _) => Ok(Cow::Owned(number.to_string())),
        Scalar::Bool(flag) => Ok(Cow::Borrowed(bool_text(flag))),
        other => Err(other.json_type()),
    }
}

fn bool_text(flag: bool) -> &'static str {
    if flag { "true" } else { "false" }
}

fn non_numeric(value: Scalar<'_>, path: &FieldPath) -> MapError {
    MapError::NonNumericField {
        path: path.to_string(),
        found: value.json_type(),
    }
}

/// What [`coerce`] makes of `value` for a field of `kind` when that is a float, the value of
/// most readings; `None` for anything else, which `coerce` converts or refuses. Every record's
/// fields and its fuel alert go through it: `coerce`'s `Result`, whose error carries strings,
/// was about a tenth of a flat Avro record's instructions.
pub(super) fn float_field(value: Scalar<'_>, kind: FieldType) -> Option<FieldValue<'_>> {
    match (kind, value) {
        (FieldType::Float | FieldType::Auto, Scalar::Number(number, text)) => {
            Some(float(number, text))
        }
        _ => None,
    }
}

/// A float field: with the number's text when the record gave it in the text line protocol
/// writes, so that the encoder copies it.
fn float<'a>(number: &Number, text: Option<FloatText<'a>>) -> FieldValue<'a> {
    match text {
        Some(text) => FieldValue::FloatText(as_float(number), text),
        None => FieldValue::Float(as_float(number)),
    }
}

fn as_float(number: &Number) -> f64 {
    // Without serde_json's arbitrary_precision every number has an f64 view; NaN would be
    // refused by the encoder, never written.
    number.as_f64().unwrap_or(f64::NAN)
}

/// 2^63 and 2^64 as floats: `i64::MAX as f64` rounds up to 2^63, so the bounds are exclusive.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

fn as_integer(number: &Number) -> Option<i64> {
    if let Some(whole) = number.as_i64() {
        return Some(whole);
    }
    if number.is_u64() {
        // Above i64::MAX.
        return None;
    }
    let float = number.as_f64()?;
    (float.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&float)).then_some(float as i64)
}

fn as_unsigned(number: &Number) -> Option<u64> {
    if let Some(whole) = number.as_u64() {
        return Some(whole);
    }
    if number.is_i64() {
        // Negative.
        return None;
    }
    let float = number.as_f64()?;
    // `-0.0` is within the range and becomes 0.
    (float.fract() == 0.0 && (0.0..TWO_POW_64).contains(&float)).then_some(float as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn coerced(value: Value, kind: FieldType) -> Result<FieldValue<'static>, String> {
        let path = FieldPath::Key("x".into());
        coerce(Scalar::of(&value), kind, &path)
            .map(|value| match value {
                FieldValue::String(text) => FieldValue::String(Cow::Owned(text.into_owned())),
                FieldValue::Float(v) | FieldValue::FloatText(v, _) => FieldValue::Float(v),
                FieldValue::Integer(v) => FieldValue::Integer(v),
                FieldValue::Unsigned(v) => FieldValue::Unsigned(v),
                FieldValue::Boolean(v) => FieldValue::Boolean(v),
            })
            .map_err(|error| error.to_string())
    }

    fn text(value: &str) -> FieldValue<'static> {
        FieldValue::String(Cow::Owned(value.to_owned()))
    }

    #[test]
    fn float_field_is_what_coerce_makes_of_a_float_and_nothing_else() {
        let values = [
            json!(51.47),
            json!(400),
            json!(-7),
            json!(u64::MAX),
            json!(1e300),
            json!(true),
            json!("51.47"),
            Value::Null,
            json!([1.5]),
            json!({"a": 1.5}),
        ];
        let read_text = Number::from_f64(51.47).expect("finite");
        let text = FloatText::of_json(b"51.47").expect("a float text");
        let scalars = values
            .iter()
            .map(Scalar::of)
            .chain([Scalar::Number(&read_text, Some(text))]);
        let path = FieldPath::Key("x".into());
        for scalar in scalars {
            for kind in FieldType::ALL {
                let coerced = coerce(scalar, kind, &path)
                    .ok()
                    .filter(|value| value.as_float().is_some());
                assert_eq!(float_field(scalar, kind), coerced, "{kind:?} of {scalar:?}");
            }
        }
    }

    #[test]
    fn each_type_accepts_what_it_documents() {
        use FieldType::*;
        let ok: Vec<(Value, FieldType, FieldValue<'static>)> = vec![
            (json!(400), Float, FieldValue::Float(400.0)),
            (json!(400.5), Float, FieldValue::Float(400.5)),
            (json!(u64::MAX), Float, FieldValue::Float(u64::MAX as f64)),
            (json!(-7), Integer, FieldValue::Integer(-7)),
            (json!(400.0), Integer, FieldValue::Integer(400)),
            (json!(-0.0), Integer, FieldValue::Integer(0)),
            (json!(i64::MIN), Integer, FieldValue::Integer(i64::MIN)),
            (json!(-TWO_POW_63), Integer, FieldValue::Integer(i64::MIN)),
            (json!(u64::MAX), Unsigned, FieldValue::Unsigned(u64::MAX)),
            (json!(3.0), Unsigned, FieldValue::Unsigned(3)),
            (json!(-0.0), Unsigned, FieldValue::Unsigned(0)),
            (json!(true), Boolean, FieldValue::Boolean(true)),
            (json!("on"), String, text("on")),
            (json!(1.5), String, text("1.5")),
            (json!(12), String, text("12")),
            (json!(false), String, text("false")),
            (json!(2), Auto, FieldValue::Float(2.0)),
            (json!(true), Auto, FieldValue::Boolean(true)),
            (json!("x"), Auto, text("x")),
        ];
        for (value, kind, expected) in ok {
            assert_eq!(
                coerced(value.clone(), kind),
                Ok(expected),
                "{value} as {kind:?}"
            );
        }
    }

    #[test]
    fn each_type_rejects_with_the_path() {
        use FieldType::*;
        let rejected: Vec<(Value, FieldType, &str)> = vec![
            (
                json!("1"),
                Float,
                "field `x` is a JSON string, expected a number",
            ),
            (
                json!(true),
                Integer,
                "field `x` is a JSON boolean, expected a number",
            ),
            (
                json!(1.5),
                Integer,
                "field `x` is 1.5, which is not a signed 64-bit integer",
            ),
            (
                json!(u64::MAX),
                Integer,
                "field `x` is 18446744073709551615, which is not a signed 64-bit integer",
            ),
            (
                json!(1e19),
                Integer,
                "field `x` is 1e+19, which is not a signed 64-bit integer",
            ),
            (
                json!(-1),
                Unsigned,
                "field `x` is -1, which is not an unsigned 64-bit integer",
            ),
            (
                json!(0.5),
                Unsigned,
                "field `x` is 0.5, which is not an unsigned 64-bit integer",
            ),
            (
                json!(1),
                Boolean,
                "field `x` is a JSON number, expected a boolean",
            ),
            (
                json!("true"),
                Boolean,
                "field `x` is a JSON string, expected a boolean",
            ),
            (
                json!([1]),
                String,
                "field `x` is a JSON array, expected a string, number or boolean",
            ),
            (
                json!({"a": 1}),
                Auto,
                "field `x` is a JSON object, expected a number, boolean or string",
            ),
        ];
        for (value, kind, message) in rejected {
            assert_eq!(
                coerced(value.clone(), kind),
                Err(message.to_owned()),
                "{value} as {kind:?}"
            );
        }
    }

    #[test]
    fn scalar_text_and_auto() {
        assert_eq!(scalar_text(Scalar::of(&json!("a"))), Ok(Cow::Borrowed("a")));
        assert_eq!(scalar_text(Scalar::of(&json!(2))), Ok(Cow::Borrowed("2")));
        assert_eq!(
            scalar_text(Scalar::of(&json!(true))),
            Ok(Cow::Borrowed("true"))
        );
        assert_eq!(scalar_text(Scalar::of(&json!([]))), Err("array"));
        assert_eq!(auto(Scalar::of(&json!(null))), None);
        assert_eq!(auto(Scalar::of(&json!({}))), None);
    }

    #[test]
    fn type_names_match_the_configuration_spelling() {
        for kind in FieldType::ALL {
            let parsed: FieldType =
                serde_json::from_value(Value::String(kind.as_str().into())).unwrap();
            assert_eq!(parsed, kind);
        }
    }
}
