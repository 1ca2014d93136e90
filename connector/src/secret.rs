//! A string that must never be shown: tokens, passwords, SASL credentials.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every redacted secret looks like in output.
pub const REDACTED: &str = "<redacted>";

/// A secret value. `Debug`, `Display` and `Serialize` all print [`REDACTED`], so a secret
/// can sit in any configuration struct that is logged or printed without leaking.
/// The only way to the value is [`Secret::expose`], which is greppable on purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it (an HTTP header, a client config).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Whether a librdkafka property holds a credential: passwords (`sasl.password`,
/// `ssl.key.password`, `ssl.keystore.password`), secrets (`sasl.oauthbearer.client.secret`),
/// an inline private key (`ssl.key.pem`) or OAUTHBEARER's unsecured-JWT settings
/// (`sasl.oauthbearer.config`). Such values are shown as [`REDACTED`] wherever the
/// configuration is printed.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.ends_with("password")
        || name.ends_with("secret")
        || matches!(name.as_str(), "ssl.key.pem" | "sasl.oauthbearer.config")
}

/// A librdkafka property's value as it may be shown: [`REDACTED`] for a credential.
pub fn shown_property_value<'a>(name: &str, value: &'a str) -> &'a str {
    if is_secret_property(name) {
        REDACTED
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_properties_are_recognised() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
            "SASL.PASSWORD",
        ] {
            assert!(is_secret_property(name), "{name}");
            assert_eq!(shown_property_value(name, "hunter2"), REDACTED);
        }
        for name in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret_property(name), "{name}");
            assert_eq!(shown_property_value(name, "x"), "x");
        }
    }

    #[test]
    fn never_prints_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(secret.expose(), "hunter2");
    }
}
