//! `[kafka]` security keys: they become librdkafka properties, shared by the consumer and the
//! dead-letter producer, after the checks librdkafka itself would only make at connect time
//! (or never: a SASL mechanism with a PLAINTEXT protocol is silently unused).

use std::collections::BTreeMap;
use std::path::Path;

use super::raw::RawKafka;
use super::{ConfigError, invalid, read_bytes, secret};

const PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// SASL mechanisms this build of librdkafka has. GSSAPI (Kerberos) needs Cyrus SASL, which is
/// not built in.
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// Adds the security keys of `kafka` to `properties` (the pass-through ones, already copied),
/// checking the combination of both. Returns warnings for legal but risky setups.
pub(super) fn apply(
    kafka: &mut RawKafka,
    properties: &mut BTreeMap<String, String>,
    base_dir: &Path,
) -> Result<Vec<String>, ConfigError> {
    let sasl_password = secret(
        &mut kafka.sasl_password,
        &kafka.sasl_password_file,
        "kafka.sasl_password",
        base_dir,
    )?;
    let ssl_key_password = secret(
        &mut kafka.ssl_key_password,
        &kafka.ssl_key_password_file,
        "kafka.ssl_key_password",
        base_dir,
    )?;
    // Each first-class key that is set: the properties that mean the same (the first is the one
    // it sets; setting one of them as well is ambiguous) and the value.
    let mut set: Vec<(&str, &[&str], String)> = Vec::new();
    if let Some(protocol) = &kafka.security_protocol {
        let upper = protocol.trim().to_ascii_uppercase();
        if !PROTOCOLS.contains(&upper.as_str()) {
            return Err(invalid(
                "kafka.security_protocol",
                format!("`{protocol}` is not one of {}", PROTOCOLS.join(", ")),
            ));
        }
        set.push(("kafka.security_protocol", &["security.protocol"], upper));
    }
    if let Some(mechanism) = &kafka.sasl_mechanism {
        set.push((
            "kafka.sasl_mechanism",
            &["sasl.mechanism", "sasl.mechanisms"],
            mechanism.trim().to_ascii_uppercase(),
        ));
    }
    if let Some(username) = &kafka.sasl_username {
        if username.is_empty() {
            return Err(invalid("kafka.sasl_username", "must not be empty"));
        }
        set.push(("kafka.sasl_username", &["sasl.username"], username.clone()));
    }
    if let Some(password) = &sasl_password {
        set.push((
            "kafka.sasl_password",
            &["sasl.password"],
            password.expose().to_owned(),
        ));
    }
    for (key, file, properties) in [
        (
            "kafka.ssl_ca_file",
            &kafka.ssl_ca_file,
            &["ssl.ca.location", "ssl.ca.pem"],
        ),
        (
            "kafka.ssl_certificate_file",
            &kafka.ssl_certificate_file,
            &["ssl.certificate.location", "ssl.certificate.pem"],
        ),
        (
            "kafka.ssl_key_file",
            &kafka.ssl_key_file,
            &["ssl.key.location", "ssl.key.pem"],
        ),
    ] {
        if let Some(file) = file {
            let (path, pem) = read_bytes(key, base_dir, file)?;
            if !looks_like_pem(&pem) {
                return Err(invalid(
                    key,
                    format!("{} is not a PEM file (no -----BEGIN line)", path.display()),
                ));
            }
            // librdkafka reads the file itself, relative to its own working directory.
            set.push((key, properties, path.to_string_lossy().into_owned()));
        }
    }
    if let Some(password) = &ssl_key_password {
        set.push((
            "kafka.ssl_key_password",
            &["ssl.key.password"],
            password.expose().to_owned(),
        ));
    }
    for (key, names, value) in set {
        if let Some(name) = names.iter().find(|name| properties.contains_key(**name)) {
            return Err(invalid(
                key,
                format!("set either {key} or kafka.properties.\"{name}\", not both"),
            ));
        }
        properties.insert(names[0].to_owned(), value);
    }
    check_combination(properties)
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|window| window == b"-----BEGIN ")
}

/// Checks the effective security properties, whichever way they were set.
fn check_combination(properties: &BTreeMap<String, String>) -> Result<Vec<String>, ConfigError> {
    let get = |name: &str| properties.get(name).map(String::as_str);
    let protocol = get("security.protocol")
        .unwrap_or("PLAINTEXT")
        .to_ascii_uppercase();
    if !PROTOCOLS.contains(&protocol.as_str()) {
        return Err(invalid(
            "kafka.properties.\"security.protocol\"",
            format!("`{protocol}` is not one of {}", PROTOCOLS.join(", ")),
        ));
    }
    let sasl = protocol.starts_with("SASL_");
    let tls = protocol == "SSL" || protocol == "SASL_SSL";
    let mechanism = get("sasl.mechanism")
        .or_else(|| get("sasl.mechanisms"))
        .map(str::to_ascii_uppercase);
    let username = get("sasl.username");
    let password = get("sasl.password");
    let mut warnings = Vec::new();

    match (&mechanism, sasl) {
        (Some(mechanism), false) => {
            return Err(invalid(
                "kafka.sasl_mechanism",
                format!(
                    "{mechanism} is only used with security_protocol SASL_SSL or SASL_PLAINTEXT, not {protocol}"
                ),
            ));
        }
        (None, true) => {
            return Err(invalid(
                "kafka.sasl_mechanism",
                format!(
                    "is required with security_protocol = {protocol}: one of {} (librdkafka's default, GSSAPI, is not built in)",
                    MECHANISMS.join(", ")
                ),
            ));
        }
        _ => {}
    }
    if !sasl && (username.is_some() || password.is_some()) {
        return Err(invalid(
            "kafka.sasl_username",
            format!(
                "SASL credentials are only used with security_protocol SASL_SSL or SASL_PLAINTEXT, not {protocol}"
            ),
        ));
    }
    if let Some(mechanism) = &mechanism {
        if !MECHANISMS.contains(&mechanism.as_str()) {
            return Err(invalid(
                "kafka.sasl_mechanism",
                format!(
                    "`{mechanism}` is not one of {} (GSSAPI/Kerberos is not built in)",
                    MECHANISMS.join(", ")
                ),
            ));
        }
        if mechanism == "OAUTHBEARER" {
            check_oauthbearer(properties, username.is_some() || password.is_some())?;
        } else {
            match (username, password) {
                (Some(_), Some(_)) => {}
                (None, _) => {
                    return Err(invalid(
                        "kafka.sasl_username",
                        format!("is required with sasl_mechanism = {mechanism}"),
                    ));
                }
                (Some(_), None) => {
                    return Err(invalid(
                        "kafka.sasl_password",
                        format!(
                            "is required with sasl_mechanism = {mechanism} (or sasl_password_file)"
                        ),
                    ));
                }
            }
            if !tls {
                warnings.push(format!(
                    "kafka.security_protocol = {protocol}: Kafka traffic is not encrypted{}; use SASL_SSL unless this network is trusted",
                    if mechanism == "PLAIN" {
                        ", and SASL PLAIN sends the password as it is"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    if !tls {
        for (property, key) in [
            ("ssl.ca.location", "kafka.ssl_ca_file"),
            ("ssl.ca.pem", "kafka.ssl_ca_file"),
            ("ssl.certificate.location", "kafka.ssl_certificate_file"),
            ("ssl.certificate.pem", "kafka.ssl_certificate_file"),
            ("ssl.key.location", "kafka.ssl_key_file"),
            ("ssl.key.pem", "kafka.ssl_key_file"),
        ] {
            if properties.contains_key(property) {
                return Err(invalid(
                    key,
                    format!("is only used with security_protocol SSL or SASL_SSL, not {protocol}"),
                ));
            }
        }
    }
    let certificate =
        get("ssl.certificate.location").is_some() || get("ssl.certificate.pem").is_some();
    let key = get("ssl.key.location").is_some() || get("ssl.key.pem").is_some();
    match (certificate, key) {
        (true, false) => {
            return Err(invalid(
                "kafka.ssl_key_file",
                "is required when kafka.ssl_certificate_file is set",
            ));
        }
        (false, true) => {
            return Err(invalid(
                "kafka.ssl_certificate_file",
                "is required when kafka.ssl_key_file is set",
            ));
        }
        _ => {}
    }
    if get("ssl.key.password").is_some() && !key {
        return Err(invalid(
            "kafka.ssl_key_password",
            "is only used with kafka.ssl_key_file",
        ));
    }
    if get("enable.ssl.certificate.verification")
        .is_some_and(|value| value.eq_ignore_ascii_case("false"))
    {
        warnings.push(
            "kafka.properties.\"enable.ssl.certificate.verification\" = false: the brokers' certificates are NOT checked; set kafka.ssl_ca_file instead".into(),
        );
    }
    Ok(warnings)
}

/// OAUTHBEARER needs a token source librdkafka has: OIDC client credentials, or (for tests)
/// its unsecured JWT.
fn check_oauthbearer(
    properties: &BTreeMap<String, String>,
    has_password: bool,
) -> Result<(), ConfigError> {
    if has_password {
        return Err(invalid(
            "kafka.sasl_username",
            "is not used with sasl_mechanism = OAUTHBEARER (set the sasl.oauthbearer.* properties)",
        ));
    }
    let method = properties
        .get("sasl.oauthbearer.method")
        .map(|method| method.to_ascii_lowercase());
    if method.as_deref() == Some("oidc") {
        for required in [
            "sasl.oauthbearer.client.id",
            "sasl.oauthbearer.token.endpoint.url",
        ] {
            if !properties.contains_key(required) {
                return Err(invalid(
                    format!("kafka.properties.\"{required}\""),
                    "is required with sasl.oauthbearer.method = oidc",
                ));
            }
        }
        return Ok(());
    }
    let unsecured = properties
        .get("enable.sasl.oauthbearer.unsecure.jwt")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    if !unsecured {
        return Err(invalid(
            "kafka.properties.\"sasl.oauthbearer.method\"",
            "OAUTHBEARER needs sasl.oauthbearer.method = \"oidc\" with sasl.oauthbearer.client.id, sasl.oauthbearer.client.secret and sasl.oauthbearer.token.endpoint.url (or, for tests only, enable.sasl.oauthbearer.unsecure.jwt = \"true\")",
        ));
    }
    Ok(())
}
