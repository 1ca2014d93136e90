//! Where a value sits in a record: a top-level key or an RFC 6901 JSON Pointer.

use std::fmt;

use serde_json::Value;

/// Where a value sits in a record: a top-level key, or a JSON Pointer (`/meta/site`,
/// `/readings/0/value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    /// A top-level key of the record object.
    Key(String),
    /// An RFC 6901 JSON Pointer; array elements are addressed by index (`/readings/0`).
    Pointer(String),
}

impl FieldPath {
    /// Parses a configured path: text starting with `/` is a JSON Pointer, anything else a key.
    ///
    /// In a pointer `~` must be escaped as `~0` and a `/` inside a key as `~1`; a lone `~` is
    /// refused here rather than silently matching nothing in every record.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a field path cannot be empty".into());
        }
        let Some(tokens) = text.strip_prefix('/') else {
            return Ok(FieldPath::Key(text.to_owned()));
        };
        if tokens.is_empty() {
            return Err("`/` points at the whole record, not at a field".into());
        }
        let mut chars = tokens.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "`{text}` is not a JSON Pointer: `~` must be written `~0`, and `/` inside a key `~1`"
                ));
            }
        }
        Ok(FieldPath::Pointer(text.to_owned()))
    }

    /// The name a tag or field gets when written: the key, or the pointer's last token unescaped.
    pub fn default_name(&self) -> String {
        match self {
            FieldPath::Key(key) => key.clone(),
            FieldPath::Pointer(pointer) => unescape(pointer.rsplit('/').next().unwrap_or(pointer)),
        }
    }

    /// The top-level record key this path starts at: the key itself, or the pointer's first
    /// token unescaped. `extra_fields` uses it to know which keys the mapping already reads.
    pub fn top_level_key(&self) -> String {
        match self {
            FieldPath::Key(key) => key.clone(),
            FieldPath::Pointer(pointer) => {
                let tokens = pointer.strip_prefix('/').unwrap_or(pointer);
                unescape(tokens.split('/').next().unwrap_or(tokens))
            }
        }
    }

    /// The value at this path; `None` when any step is missing or of the wrong kind.
    pub fn lookup<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        match self {
            FieldPath::Key(key) => record.get(key),
            FieldPath::Pointer(pointer) => record.pointer(pointer),
        }
    }
}

/// Undoes RFC 6901 escaping of one token; `~1` first, as the RFC prescribes.
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Key(key) | FieldPath::Pointer(key) => f.write_str(key),
        }
    }
}

/// The JSON type name of a value, for error messages.
pub fn json_type(value: &Value) -> &'static str {
    crate::record::Scalar::of(value).json_type()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn parses_keys_and_pointers() {
        assert_eq!(
            FieldPath::parse("fuel").unwrap(),
            FieldPath::Key("fuel".into())
        );
        assert_eq!(
            FieldPath::parse("/a~1b/c~0d").unwrap().default_name(),
            "c~d"
        );
        assert_eq!(
            FieldPath::parse("/a~1b/c~0d").unwrap().top_level_key(),
            "a/b"
        );
        assert_eq!(FieldPath::parse("fuel").unwrap().top_level_key(), "fuel");
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse("/").is_err());
        assert!(FieldPath::parse("/a~2").is_err());
        assert!(FieldPath::parse("/a~").is_err());
        // Outside a pointer `~` is an ordinary character of a key.
        assert_eq!(FieldPath::parse("a~").unwrap(), FieldPath::Key("a~".into()));
    }

    #[test]
    fn pointers_reach_into_nested_objects_and_arrays() {
        let record = json!({
            "meta": {"site": "north", "a/b": {"~": 7}},
            "readings": [{"value": 1.5}, {"value": 2}],
            "flat": 3
        });
        let at = |path: &str| FieldPath::parse(path).unwrap().lookup(&record).cloned();
        assert_eq!(at("/meta/site"), Some(json!("north")));
        assert_eq!(at("/meta/a~1b/~0"), Some(json!(7)));
        assert_eq!(at("/readings/0/value"), Some(json!(1.5)));
        assert_eq!(at("/readings/1/value"), Some(json!(2)));
        assert_eq!(at("/readings/2/value"), None);
        assert_eq!(at("/readings/-/value"), None);
        assert_eq!(
            at("/readings/01/value"),
            None,
            "leading zeros are not indexes"
        );
        assert_eq!(at("/flat/0"), None);
        assert_eq!(at("flat"), Some(json!(3)));
        // A key is never read as a pointer, even if it contains slashes.
        assert_eq!(at("meta/site"), None);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z0-9~/]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z0-9~/]{0,3}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_paths_never_panic(path in "[/a-z0-9~.-]{0,12}", record in json_value()) {
            if let Ok(parsed) = FieldPath::parse(&path) {
                let _ = parsed.lookup(&record);
                let _ = parsed.default_name();
                let _ = parsed.top_level_key();
                prop_assert_eq!(parsed.to_string(), path);
            }
        }
    }
}
