//! Configuration: one TOML file, overridden by environment variables, validated once.
//!
//! Loading has two phases. [`raw`] is the file as written (parsed, unknown keys rejected);
//! [`Config`] is the validated, built form: compiled mapping, parsed URLs, secrets read from
//! their files. Code after [`Config::load`] may assume every value is valid.
//!
//! # Environment variables
//! `KIS_<SECTION>__<KEY>=value` overrides `<key>` in `[<section>]`; each `__` descends one level
//! (`KIS_MAPPING__TIMESTAMP__SOURCE=field`). Names are matched lower-cased. Under
//! `[kafka.properties]` single underscores become dots, because librdkafka property names never
//! contain underscores: `KIS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS=6000` sets
//! `session.timeout.ms`. Lists are written as a TOML array (`KIS_KAFKA__TOPICS='["a", "b"]'`)
//! or as comma-separated text (`KIS_KAFKA__TOPICS=a,b`). Only variables containing `__` are
//! configuration, so other `KIS_` variables (used by scripts) are left alone.

mod alerts;
mod kafka_security;
mod mapping;
pub mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use crate::alerts::AlertRules;
use crate::batch::BatchPolicy;
use crate::dead_letter::{DeadLetterSettings, InvalidRecordPolicy};
use crate::decode::{Decoder, LocalAvro, WireFormat};
use crate::map::Mapping;
use crate::registry::{RegistryAuth, RegistrySettings};
use crate::secret::Secret;
use crate::source::KafkaSettings;
use crate::tls::{ClientIdentity, HttpTls};
use crate::write::{Backoff, InfluxApi, InfluxAuth, InfluxSettings};
use raw::RawConfig;

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "KIS_";

/// librdkafka properties the sink sets itself; overriding them would break the delivery guarantee
/// or duplicate a first-class key.
const MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use kafka.brokers"),
    ("group.id", "use kafka.group_id"),
    ("auto.offset.reset", "use kafka.auto_offset_reset"),
    ("auto.commit.interval.ms", "use kafka.commit_interval_ms"),
    (
        "enable.auto.offset.store",
        "the sink stores offsets itself, only after a record is durable",
    ),
    (
        "enable.auto.commit",
        "the sink commits only stored (durable) offsets and must control committing",
    ),
];

/// A configuration problem, always naming the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown, missing or has a bad value.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `batch.max_records`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A `tracing` filter directive, e.g. `info`.
    pub filter: String,
    /// Output format.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Schema settings.
#[derive(Debug, Clone)]
pub struct SchemaSettings {
    /// Wire format.
    pub format: WireFormat,
    /// The local JSON Schema, if configured.
    pub json_schema: Option<Value>,
    /// Also validate registry-framed JSON against the local JSON Schema.
    pub validate_registry_json_locally: bool,
    /// The local Avro reader schema (text), if configured.
    pub avro_schema: Option<String>,
    /// Further Avro writer schemas (texts) for single-object encoding.
    pub avro_writer_schemas: Vec<String>,
}

impl SchemaSettings {
    /// The decoder these settings describe (schemas compile; checked when loading).
    pub fn decoder(&self, registry: bool) -> Result<Decoder, String> {
        let local_avro = LocalAvro::new(self.avro_schema.as_deref(), &self.avro_writer_schemas)?;
        let decoder =
            Decoder::new(self.format, self.json_schema.as_ref())?.with_local_avro(local_avro);
        Ok(if registry {
            decoder.with_registry(self.validate_registry_json_locally)
        } else {
            decoder
        })
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Source.
    pub kafka: KafkaSettings,
    /// Decoding and validation.
    pub schema: SchemaSettings,
    /// The Schema Registry, if configured.
    pub schema_registry: Option<RegistrySettings>,
    /// Record → point.
    pub mapping: Mapping,
    /// Destination.
    pub influxdb: InfluxSettings,
    /// Flush policy.
    pub batch: BatchPolicy,
    /// Dead-letter topic and the policy for invalid records.
    pub dead_letter: DeadLetterSettings,
    /// Fuel alerts, when enabled.
    pub alerts: Option<AlertRules>,
    /// Metrics and health endpoint address, when enabled.
    pub metrics_listen: Option<SocketAddr>,
    /// Logging.
    pub log: LogSettings,
    /// Longest graceful shutdown.
    pub shutdown_timeout: Duration,
    /// Legal but risky settings (no TLS with SASL, unverified certificates), for
    /// `check-config` and the start-up log.
    pub warnings: Vec<String>,
    effective: RawConfig,
}

impl Config {
    /// Loads `path`, applies the process's `KIS_…__…` environment variables and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base_dir, std::env::vars())
    }

    /// Parses configuration text; relative paths are resolved against `base_dir`.
    pub fn parse(
        text: &str,
        path: &Path,
        base_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|error| ConfigError::Syntax {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        let overridden = apply_env_overrides(&mut table, env)?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
                let key = error.path().to_string();
                let mut message = error.inner().to_string();
                // toml appends "\nin `section`", a coarser repeat of the key named in front.
                if let Some((head, _)) = message.rsplit_once("\nin `") {
                    message.truncate(head.len());
                }
                if let Some(variable) = overridden.get(&key) {
                    message.push_str(&format!(" (set by environment variable {variable})"));
                }
                invalid(
                    if key == "." {
                        "(top level)".into()
                    } else {
                        key
                    },
                    message,
                )
            })?;
        build(raw, base_dir)
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn effective_toml(&self) -> String {
        toml::to_string_pretty(&self.effective)
            .unwrap_or_else(|error| format!("# cannot print: {error}\n"))
    }
}

/// Applies environment overrides; returns dotted key → variable name for error messages.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut overridden = BTreeMap::new();
    let mut variables: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
        .collect();
    // Deterministic order, so a conflict always reports the same way.
    variables.sort();
    for (name, value) in variables {
        let mut segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            return Err(invalid(name, "empty key segment: use KIS_<SECTION>__<KEY>"));
        }
        if segments.len() == 3 && segments[0] == "kafka" && segments[1] == "properties" {
            segments[2] = segments[2].replace('_', ".");
        }
        let Some((leaf, parents)) = segments.split_last() else {
            continue;
        };
        let mut current = &mut *table;
        for (depth, segment) in parents.iter().enumerate() {
            let entry = current
                .entry(segment.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            current = entry.as_table_mut().ok_or_else(|| {
                invalid(
                    parents[..=depth].join("."),
                    format!("is not a section, so {name} cannot set a key inside it"),
                )
            })?;
        }
        current.insert(leaf.clone(), env_value(value));
        overridden.insert(segments.join("."), name);
    }
    Ok(overridden)
}

/// An override value: a TOML array literal (`["a", "b"]`) becomes an array; anything else stays
/// text, which numeric keys parse themselves. Text is the safe default: a password such as
/// `123` must not turn into a number.
fn env_value(value: String) -> toml::Value {
    if value.trim_start().starts_with('[') {
        if let Ok(mut table) = toml::from_str::<toml::Table>(&format!("value = {value}")) {
            if let Some(array @ toml::Value::Array(_)) = table.remove("value") {
                return array;
            }
        }
    }
    toml::Value::String(value)
}

fn build(mut raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    let (kafka, mut warnings) = build_kafka(&mut raw, base_dir)?;
    let schema_registry = build_schema_registry(&mut raw, base_dir)?;
    let schema = build_schema(&raw, base_dir, schema_registry.is_some())?;
    let mapping = mapping::build(&mut raw.mapping)?;
    let influxdb = build_influxdb(&mut raw, base_dir)?;
    if influxdb.tls.insecure_skip_verify {
        warnings.push(
            "influxdb.insecure_skip_verify = true: InfluxDB's TLS certificate is NOT checked, so anyone on the network path can read the credentials and alter the data; set influxdb.ca_file instead".into(),
        );
    }
    let batch = build_batch(&raw)?;
    let dead_letter = build_dead_letter(&raw, &kafka.topics)?;
    // After the mapping, which fills in the default measurement alert points must not share.
    let alerts = alerts::build(&raw.alerts, raw.mapping.measurement.as_deref())?;
    let metrics_listen = if raw.metrics.enabled {
        Some(raw.metrics.listen.parse().map_err(|error| {
            invalid(
                "metrics.listen",
                format!(
                    "`{}` is not a socket address such as 0.0.0.0:9464: {error}",
                    raw.metrics.listen
                ),
            )
        })?)
    } else {
        None
    };
    let log = build_log(&raw)?;
    if raw.shutdown.timeout_ms == 0 {
        return Err(invalid("shutdown.timeout_ms", "must be at least 1"));
    }
    Ok(Config {
        kafka,
        schema,
        schema_registry,
        mapping,
        influxdb,
        batch,
        dead_letter,
        alerts,
        metrics_listen,
        log,
        shutdown_timeout: Duration::from_millis(raw.shutdown.timeout_ms),
        warnings,
        effective: raw,
    })
}

fn build_kafka(
    raw: &mut RawConfig,
    base_dir: &Path,
) -> Result<(KafkaSettings, Vec<String>), ConfigError> {
    let kafka = &mut raw.kafka;
    let brokers = kafka.brokers.items();
    if brokers.is_empty() {
        return Err(invalid(
            "kafka.brokers",
            "needs at least one broker, e.g. [\"localhost:9092\"]",
        ));
    }
    if let Some(bad) = brokers.iter().find(|broker| !broker.contains(':')) {
        return Err(invalid(
            "kafka.brokers",
            format!("`{bad}` is not host:port"),
        ));
    }
    if kafka.group_id.trim().is_empty() {
        return Err(invalid("kafka.group_id", "must not be empty"));
    }
    let topics = kafka.topics.items();
    if topics.is_empty() {
        return Err(invalid("kafka.topics", "needs at least one topic"));
    }
    for topic in &topics {
        check_topic_name("kafka.topics", topic)?;
    }
    if !["earliest", "latest"].contains(&kafka.auto_offset_reset.as_str()) {
        return Err(invalid(
            "kafka.auto_offset_reset",
            format!(
                "`{}` is neither `earliest` nor `latest`",
                kafka.auto_offset_reset
            ),
        ));
    }
    if kafka.commit_interval_ms == 0 {
        return Err(invalid("kafka.commit_interval_ms", "must be at least 1"));
    }
    let mut properties = BTreeMap::new();
    for (name, value) in &kafka.properties.0 {
        if let Some((_, why)) = MANAGED_PROPERTIES
            .iter()
            .find(|(managed, _)| managed == name)
        {
            return Err(invalid(
                format!("kafka.properties.\"{name}\""),
                format!("cannot be set here: {why}"),
            ));
        }
        properties.insert(name.clone(), value.as_text());
    }
    let warnings = kafka_security::apply(kafka, &mut properties, base_dir)?;
    let settings = KafkaSettings {
        brokers,
        group_id: kafka.group_id.clone(),
        topics,
        auto_offset_reset: kafka.auto_offset_reset.clone(),
        commit_interval: Duration::from_millis(kafka.commit_interval_ms),
        properties,
    };
    Ok((settings, warnings))
}

fn check_topic_name(key: &str, topic: &str) -> Result<(), ConfigError> {
    let legal = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if topic.is_empty() || topic.len() > 249 || !legal || topic == "." || topic == ".." {
        return Err(invalid(
            key,
            format!("`{topic}` is not a legal Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
        ));
    }
    Ok(())
}

fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    }
}

fn build_schema(
    raw: &RawConfig,
    base_dir: &Path,
    registry: bool,
) -> Result<SchemaSettings, ConfigError> {
    let format = WireFormat::parse(&raw.schema.format).ok_or_else(|| {
        invalid(
            "schema.format",
            format!(
                "`{}` is not one of {}",
                raw.schema.format,
                WireFormat::NAMES
            ),
        )
    })?;
    let json_schema = match &raw.schema.json_schema_file {
        None => None,
        Some(file) => {
            let key = "schema.json_schema_file";
            let (path, text) = read_file(key, base_dir, file)?;
            let schema: Value = serde_json::from_str(&text).map_err(|error| {
                invalid(
                    key,
                    format!("{} is not valid JSON: {error}", path.display()),
                )
            })?;
            jsonschema::validator_for(&schema).map_err(|error| {
                invalid(
                    key,
                    format!("{} is not a usable JSON Schema: {error}", path.display()),
                )
            })?;
            Some(schema)
        }
    };
    let avro_schema = match &raw.schema.avro_schema_file {
        None => None,
        Some(file) => Some(read_avro_schema("schema.avro_schema_file", base_dir, file)?),
    };
    let mut avro_writer_schemas = Vec::new();
    for file in raw.schema.avro_writer_schema_files.items() {
        avro_writer_schemas.push(read_avro_schema(
            "schema.avro_writer_schema_files",
            base_dir,
            Path::new(&file),
        )?);
    }
    match format {
        WireFormat::Avro if avro_schema.is_none() => {
            return Err(invalid(
                "schema.avro_schema_file",
                "is required with format = \"avro\": raw Avro carries no schema of its own",
            ));
        }
        WireFormat::AvroSingleObject if avro_schema.is_none() && avro_writer_schemas.is_empty() => {
            return Err(invalid(
                "schema.avro_schema_file",
                "is required with format = \"avro_single_object\" (or schema.avro_writer_schema_files)",
            ));
        }
        _ => {}
    }
    if raw.schema.validate_registry_json_locally && (json_schema.is_none() || !registry) {
        return Err(invalid(
            "schema.validate_registry_json_locally",
            "needs both schema.json_schema_file and schema_registry.url",
        ));
    }
    let settings = SchemaSettings {
        format,
        json_schema,
        validate_registry_json_locally: raw.schema.validate_registry_json_locally,
        avro_schema,
        avro_writer_schemas,
    };
    // The reader schema must combine with the writer schemas (a name clash shows here).
    settings
        .decoder(registry)
        .map_err(|error| invalid("schema.avro_writer_schema_files", error))?;
    Ok(settings)
}

fn read_bytes(key: &str, base_dir: &Path, file: &Path) -> Result<(PathBuf, Vec<u8>), ConfigError> {
    let path = resolve(base_dir, file);
    let bytes = std::fs::read(&path)
        .map_err(|error| invalid(key, format!("cannot read {}: {error}", path.display())))?;
    Ok((path, bytes))
}

fn read_file(key: &str, base_dir: &Path, file: &Path) -> Result<(PathBuf, String), ConfigError> {
    let (path, bytes) = read_bytes(key, base_dir, file)?;
    let text = String::from_utf8(bytes)
        .map_err(|error| invalid(key, format!("cannot read {}: {error}", path.display())))?;
    Ok((path, text))
}

fn read_avro_schema(key: &str, base_dir: &Path, file: &Path) -> Result<String, ConfigError> {
    let (path, text) = read_file(key, base_dir, file)?;
    apache_avro::Schema::parse_str(&text).map_err(|error| {
        invalid(
            key,
            format!("{} is not a valid Avro schema: {error}", path.display()),
        )
    })?;
    Ok(text)
}

fn build_schema_registry(
    raw: &mut RawConfig,
    base_dir: &Path,
) -> Result<Option<RegistrySettings>, ConfigError> {
    let registry = &mut raw.schema_registry;
    let Some(text) = registry
        .url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty())
    else {
        let set = registry.basic_auth_user_info.is_some()
            || registry.basic_auth_user_info_file.is_some()
            || registry.bearer_token.is_some()
            || registry.bearer_token_file.is_some()
            || registry.ca_file.is_some()
            || registry.client_certificate_file.is_some()
            || registry.client_key_file.is_some();
        if set {
            return Err(invalid(
                "schema_registry.url",
                "is required when other schema_registry keys are set",
            ));
        }
        return Ok(None);
    };
    let key = "schema_registry.url";
    // The message never repeats the URL: it may carry a password.
    let url = Url::parse(text).map_err(|error| invalid(key, format!("is not a URL: {error}")))?;
    if !["http", "https"].contains(&url.scheme()) {
        return Err(invalid(key, "must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            key,
            "must not contain credentials; use schema_registry.basic_auth_user_info (or its _file)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(key, "must not have a query string or fragment"));
    }
    let basic = secret(
        &mut registry.basic_auth_user_info,
        &registry.basic_auth_user_info_file,
        "schema_registry.basic_auth_user_info",
        base_dir,
    )?;
    let bearer = secret(
        &mut registry.bearer_token,
        &registry.bearer_token_file,
        "schema_registry.bearer_token",
        base_dir,
    )?;
    let auth = match (basic, bearer) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "schema_registry.bearer_token",
                "set either basic_auth_user_info or bearer_token, not both",
            ));
        }
        (Some(user_info), None) => {
            let Some((username, password)) = user_info.expose().split_once(':') else {
                return Err(invalid(
                    "schema_registry.basic_auth_user_info",
                    "must be `user:password`",
                ));
            };
            RegistryAuth::Basic {
                username: username.to_owned(),
                password: Secret::new(password),
            }
        }
        (None, Some(token)) => RegistryAuth::Bearer(token),
        (None, None) => RegistryAuth::None,
    };
    let tls = build_http_tls(
        "schema_registry",
        &url,
        TlsFiles {
            ca_file: registry.ca_file.as_deref(),
            client_certificate_file: registry.client_certificate_file.as_deref(),
            client_key_file: registry.client_key_file.as_deref(),
            insecure_skip_verify: false,
        },
        base_dir,
    )?;
    for (name, value) in [
        ("schema_registry.timeout_ms", registry.timeout_ms),
        (
            "schema_registry.retry_initial_backoff_ms",
            registry.retry_initial_backoff_ms,
        ),
        (
            "schema_registry.retry_max_backoff_ms",
            registry.retry_max_backoff_ms,
        ),
    ] {
        if value == 0 {
            return Err(invalid(name, "must be at least 1"));
        }
    }
    if registry.retry_max_backoff_ms < registry.retry_initial_backoff_ms {
        return Err(invalid(
            "schema_registry.retry_max_backoff_ms",
            "must be at least retry_initial_backoff_ms",
        ));
    }
    Ok(Some(RegistrySettings {
        url,
        auth,
        tls,
        timeout: Duration::from_millis(registry.timeout_ms),
        backoff: Backoff {
            initial: Duration::from_millis(registry.retry_initial_backoff_ms),
            max: Duration::from_millis(registry.retry_max_backoff_ms),
        },
        not_found_ttl: Duration::from_millis(registry.not_found_ttl_ms),
    }))
}

fn read_secret_file(key: &str, base_dir: &Path, file: &Path) -> Result<Secret, ConfigError> {
    let (path, text) = read_file(key, base_dir, file)?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(Secret::new(value))
}

/// The TLS files of one HTTPS client section, as configured.
struct TlsFiles<'a> {
    ca_file: Option<&'a Path>,
    client_certificate_file: Option<&'a Path>,
    client_key_file: Option<&'a Path>,
    insecure_skip_verify: bool,
}

/// Reads and checks `<section>.ca_file`, `client_certificate_file` and `client_key_file`.
/// They only mean something for an `https://` URL, so with `http://` they are an error rather
/// than a silently unencrypted connection.
fn build_http_tls(
    section: &str,
    url: &Url,
    files: TlsFiles<'_>,
    base_dir: &Path,
) -> Result<HttpTls, ConfigError> {
    let configured = files.ca_file.is_some()
        || files.client_certificate_file.is_some()
        || files.client_key_file.is_some()
        || files.insecure_skip_verify;
    if configured && url.scheme() != "https" {
        return Err(invalid(
            format!("{section}.url"),
            format!(
                "must be an https:// URL when {section}.ca_file, client_certificate_file, client_key_file or insecure_skip_verify is set (they would not be used)"
            ),
        ));
    }
    let ca_pem = match files.ca_file {
        None => None,
        Some(file) => {
            let key = format!("{section}.ca_file");
            let (path, pem) = read_bytes(&key, base_dir, file)?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certificates) if !certificates.is_empty() => Some(pem),
                Ok(_) => {
                    return Err(invalid(
                        key,
                        format!("{} holds no PEM certificate", path.display()),
                    ));
                }
                Err(error) => {
                    return Err(invalid(
                        key,
                        format!(
                            "{} is not a PEM certificate bundle: {error}",
                            path.display()
                        ),
                    ));
                }
            }
        }
    };
    let client_identity = match (files.client_certificate_file, files.client_key_file) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                format!("{section}.client_key_file"),
                format!("is required when {section}.client_certificate_file is set"),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                format!("{section}.client_certificate_file"),
                format!("is required when {section}.client_key_file is set"),
            ));
        }
        (Some(certificate), Some(key_file)) => {
            let certificate_key = format!("{section}.client_certificate_file");
            let (certificate_path, certificate_pem) =
                read_bytes(&certificate_key, base_dir, certificate)?;
            let (key_path, key_pem) =
                read_bytes(&format!("{section}.client_key_file"), base_dir, key_file)?;
            Some(
                ClientIdentity::from_pem(&certificate_pem, &key_pem).map_err(|error| {
                    invalid(
                        certificate_key,
                        format!(
                            "{} and {} are not a usable PEM certificate and private key: {error}",
                            certificate_path.display(),
                            key_path.display()
                        ),
                    )
                })?,
            )
        }
    };
    Ok(HttpTls {
        ca_pem,
        client_identity,
        insecure_skip_verify: files.insecure_skip_verify,
    })
}

/// Resolves a secret given inline or as a file; both at once is ambiguous.
fn secret(
    inline: &mut Option<Secret>,
    file: &Option<PathBuf>,
    key: &str,
    base_dir: &Path,
) -> Result<Option<Secret>, ConfigError> {
    match (inline.as_ref(), file) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{key}_file"),
            format!("set either {key} or {key}_file, not both"),
        )),
        (Some(value), None) if value.expose().is_empty() => Err(invalid(key, "must not be empty")),
        (Some(value), None) => Ok(Some(value.clone())),
        (None, Some(file)) => {
            let value = read_secret_file(&format!("{key}_file"), base_dir, file)?;
            *inline = Some(value.clone());
            Ok(Some(value))
        }
        (None, None) => Ok(None),
    }
}

fn required(value: &Option<String>, key: &str, api: &str) -> Result<String, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err(invalid(key, format!("is required with api = \"{api}\""))),
    }
}

fn build_influxdb(raw: &mut RawConfig, base_dir: &Path) -> Result<InfluxSettings, ConfigError> {
    let influx = &mut raw.influxdb;
    let url = Url::parse(&influx.url).map_err(|error| {
        invalid(
            "influxdb.url",
            format!("`{}` is not a URL: {error}", influx.url),
        )
    })?;
    if !["http", "https"].contains(&url.scheme()) {
        return Err(invalid(
            "influxdb.url",
            "must start with http:// or https://",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs and error messages; keep them in their own keys.
        return Err(invalid(
            "influxdb.url",
            "must not contain credentials; use influxdb.username/password or influxdb.token",
        ));
    }
    if url.query().is_some() {
        return Err(invalid(
            "influxdb.url",
            "must not contain a query string; the sink builds it",
        ));
    }
    let password = secret(
        &mut influx.password,
        &influx.password_file,
        "influxdb.password",
        base_dir,
    )?;
    let token = secret(
        &mut influx.token,
        &influx.token_file,
        "influxdb.token",
        base_dir,
    )?;
    let api = match influx.api.as_str() {
        "v1" => {
            let database = required(&influx.database, "influxdb.database", "v1")?;
            let retention_policy = influx.retention_policy.clone().filter(|rp| !rp.is_empty());
            let auth = match (&influx.username, password) {
                (Some(username), Some(password)) => InfluxAuth::Basic {
                    username: username.clone(),
                    password,
                },
                (None, None) => InfluxAuth::None,
                (Some(_), None) => {
                    return Err(invalid(
                        "influxdb.password",
                        "is required when influxdb.username is set",
                    ));
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "influxdb.username",
                        "is required when influxdb.password is set",
                    ));
                }
            };
            if token.is_some() {
                return Err(invalid(
                    "influxdb.token",
                    "is not used with api = \"v1\"; use username and password",
                ));
            }
            (
                InfluxApi::V1 {
                    database,
                    retention_policy,
                },
                auth,
            )
        }
        "v2" => {
            let org = required(&influx.org, "influxdb.org", "v2")?;
            let bucket = required(&influx.bucket, "influxdb.bucket", "v2")?;
            let token = token.ok_or_else(|| {
                invalid(
                    "influxdb.token",
                    "is required with api = \"v2\" (or token_file)",
                )
            })?;
            (InfluxApi::V2 { org, bucket }, InfluxAuth::Token(token))
        }
        "v3" => {
            let database = required(&influx.database, "influxdb.database", "v3")?;
            let auth = token.map_or(InfluxAuth::None, InfluxAuth::Bearer);
            (InfluxApi::V3 { database }, auth)
        }
        other => {
            return Err(invalid(
                "influxdb.api",
                format!("`{other}` is not one of v1, v2, v3"),
            ));
        }
    };
    let (api, auth) = api;
    let tls = build_http_tls(
        "influxdb",
        &url,
        TlsFiles {
            ca_file: influx.ca_file.as_deref(),
            client_certificate_file: influx.client_certificate_file.as_deref(),
            client_key_file: influx.client_key_file.as_deref(),
            insecure_skip_verify: influx.insecure_skip_verify,
        },
        base_dir,
    )?;
    if influx.timeout_ms == 0 {
        return Err(invalid("influxdb.timeout_ms", "must be at least 1"));
    }
    if !(1..=64).contains(&influx.write_concurrency) {
        return Err(invalid(
            "influxdb.write_concurrency",
            "must be between 1 and 64",
        ));
    }
    if influx.retry_initial_backoff_ms == 0 {
        return Err(invalid(
            "influxdb.retry_initial_backoff_ms",
            "must be at least 1",
        ));
    }
    if influx.retry_max_backoff_ms < influx.retry_initial_backoff_ms {
        return Err(invalid(
            "influxdb.retry_max_backoff_ms",
            "must be at least influxdb.retry_initial_backoff_ms",
        ));
    }
    Ok(InfluxSettings {
        url,
        api,
        auth,
        gzip: influx.gzip,
        timeout: Duration::from_millis(influx.timeout_ms),
        write_concurrency: influx.write_concurrency,
        give_up_after: (influx.give_up_after_ms > 0)
            .then(|| Duration::from_millis(influx.give_up_after_ms)),
        backoff: Backoff {
            initial: Duration::from_millis(influx.retry_initial_backoff_ms),
            max: Duration::from_millis(influx.retry_max_backoff_ms),
        },
        tls,
    })
}

fn build_batch(raw: &RawConfig) -> Result<BatchPolicy, ConfigError> {
    let batch = &raw.batch;
    if batch.max_records == 0 {
        return Err(invalid("batch.max_records", "must be at least 1"));
    }
    if batch.max_bytes < 1024 {
        return Err(invalid("batch.max_bytes", "must be at least 1024"));
    }
    if batch.linger_ms == 0 {
        return Err(invalid("batch.linger_ms", "must be at least 1"));
    }
    Ok(BatchPolicy {
        max_records: batch.max_records,
        max_bytes: batch.max_bytes,
        linger: Duration::from_millis(batch.linger_ms),
    })
}

fn build_dead_letter(
    raw: &RawConfig,
    topics: &[String],
) -> Result<DeadLetterSettings, ConfigError> {
    let policy = InvalidRecordPolicy::parse(&raw.dead_letter.policy).ok_or_else(|| {
        invalid(
            "dead_letter.policy",
            format!(
                "`{}` is not one of dead_letter, fail, skip",
                raw.dead_letter.policy
            ),
        )
    })?;
    let template = &raw.dead_letter.topic;
    for topic in topics {
        let target = crate::dead_letter::topic_for(template, topic);
        check_topic_name("dead_letter.topic", &target)?;
        if topics.contains(&target) {
            return Err(invalid(
                "dead_letter.topic",
                format!("`{target}` is also a source topic: dead letters would be consumed again"),
            ));
        }
    }
    Ok(DeadLetterSettings {
        topic_template: template.clone(),
        policy,
    })
}

fn build_log(raw: &RawConfig) -> Result<LogSettings, ConfigError> {
    tracing_subscriber::EnvFilter::try_new(&raw.log.level).map_err(|error| {
        invalid(
            "log.level",
            format!("`{}` is not a log filter: {error}", raw.log.level),
        )
    })?;
    let format = match raw.log.format.as_str() {
        "auto" => LogFormat::Auto,
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(invalid(
                "log.format",
                format!("`{other}` is not one of auto, text, json"),
            ));
        }
    };
    Ok(LogSettings {
        filter: raw.log.level.clone(),
        format,
    })
}

#[cfg(test)]
mod alerts_tests;
#[cfg(test)]
mod schema_tests;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
