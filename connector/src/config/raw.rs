//! The configuration file as written by the user: only parsed, not yet validated.
//!
//! Every struct rejects unknown keys, so a typo such as `max_recods` is an error at start-up
//! instead of a silently ignored setting. Field docs double as the user documentation mirrored
//! in `config/reference.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::map::{ExtraFields, FieldType};
use crate::secret::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where records come from.
    pub kafka: RawKafka,
    /// How record values are decoded and validated.
    #[serde(default)]
    pub schema: RawSchema,
    /// The Confluent-compatible Schema Registry, if records name registry schemas.
    #[serde(default)]
    pub schema_registry: RawSchemaRegistry,
    /// How a record becomes an InfluxDB point.
    #[serde(default)]
    pub mapping: RawMapping,
    /// Where points go.
    pub influxdb: RawInfluxDb,
    /// When a batch is written.
    #[serde(default)]
    pub batch: RawBatch,
    /// Where records that cannot be written go.
    #[serde(default)]
    pub dead_letter: RawDeadLetter,
    /// Fuel alerts: alert points in InfluxDB and per-generator gauges.
    #[serde(default)]
    pub alerts: RawAlerts,
    /// The metrics and health HTTP endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
    /// Graceful shutdown.
    #[serde(default)]
    pub shutdown: RawShutdown,
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// Bootstrap brokers, `host:port`.
    pub brokers: StringList,
    /// Consumer group; replicas with the same group share the partitions.
    pub group_id: String,
    /// Topics to consume.
    pub topics: StringList,
    /// Where a group without a committed offset starts: `earliest` or `latest`.
    #[serde(default = "default_auto_offset_reset")]
    pub auto_offset_reset: String,
    /// How often durable offsets are committed, in milliseconds.
    #[serde(default = "default_commit_interval_ms", deserialize_with = "flexible")]
    pub commit_interval_ms: u64,
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: Option<String>,
    /// With `SASL_*`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub sasl_mechanism: Option<String>,
    /// PLAIN and SCRAM: user name.
    pub sasl_username: Option<String>,
    /// PLAIN and SCRAM: password.
    pub sasl_password: Option<Secret>,
    /// PLAIN and SCRAM: file holding the password.
    pub sasl_password_file: Option<PathBuf>,
    /// With `SSL`/`SASL_SSL`: PEM file of the CA certificates that signed the brokers'
    /// certificates (the system roots when unset).
    pub ssl_ca_file: Option<PathBuf>,
    /// With `SSL`/`SASL_SSL`: PEM file of the client certificate, for mutual TLS.
    pub ssl_certificate_file: Option<PathBuf>,
    /// With `SSL`/`SASL_SSL`: PEM file of the client certificate's private key.
    pub ssl_key_file: Option<PathBuf>,
    /// Password of an encrypted `ssl_key_file`.
    pub ssl_key_password: Option<Secret>,
    /// File holding the password of an encrypted `ssl_key_file`.
    pub ssl_key_password_file: Option<PathBuf>,
    /// Extra librdkafka properties, passed through as they are.
    #[serde(default)]
    pub properties: Properties,
}

/// `[kafka.properties]`, by librdkafka name. `Debug` and `Serialize` (what `check-config`
/// prints) show credentials (`sasl.password`, …) as [`crate::secret::REDACTED`].
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Properties(pub BTreeMap<String, PropertyValue>);

impl Properties {
    /// Each property with its value as it may be shown.
    fn shown(&self) -> impl Iterator<Item = (&str, Shown<'_>)> {
        self.0.iter().map(|(name, value)| {
            let shown = if crate::secret::is_secret_property(name) {
                Shown::Redacted
            } else {
                Shown::Value(value)
            };
            (name.as_str(), shown)
        })
    }
}

/// A property value, or the placeholder for a credential.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Shown<'a> {
    Value(&'a PropertyValue),
    #[serde(serialize_with = "redacted")]
    Redacted,
}

fn redacted<S: serde::Serializer>(serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(crate::secret::REDACTED)
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

impl Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.shown())
    }
}

/// A list given either as a TOML array or as one comma-separated string
/// (handy in environment variables: `KIS_KAFKA__TOPICS=a,b`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StringList {
    /// `["a", "b"]`
    List(Vec<String>),
    /// `"a,b"`
    Joined(String),
}

impl StringList {
    /// The items, trimmed, empty ones dropped.
    pub fn items(&self) -> Vec<String> {
        let raw: Vec<&str> = match self {
            StringList::List(items) => items.iter().map(String::as_str).collect(),
            StringList::Joined(joined) => joined.split(',').collect(),
        };
        raw.into_iter()
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A librdkafka property value; numbers and booleans are accepted for convenience.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PropertyValue {
    /// `"6000"`
    Text(String),
    /// `6000`
    Integer(i64),
    /// `true`
    Bool(bool),
}

impl PropertyValue {
    /// The value as librdkafka wants it.
    pub fn as_text(&self) -> String {
        match self {
            PropertyValue::Text(text) => text.clone(),
            PropertyValue::Integer(number) => number.to_string(),
            PropertyValue::Bool(flag) => flag.to_string(),
        }
    }
}

/// `[schema]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchema {
    /// `auto` (detect per record), `json`, `confluent` (or its old name `confluent_json`),
    /// `avro` or `avro_single_object`.
    #[serde(default = "default_format")]
    pub format: String,
    /// JSON Schema every plain JSON record must satisfy; without it records are not
    /// schema-validated.
    pub json_schema_file: Option<PathBuf>,
    /// Also validate registry-framed JSON records against `json_schema_file`.
    #[serde(default, deserialize_with = "flexible")]
    pub validate_registry_json_locally: bool,
    /// Local Avro reader schema: registry Avro records resolve to it; raw Avro is read with it.
    pub avro_schema_file: Option<PathBuf>,
    /// More Avro writer schemas for single-object encoding, found by fingerprint.
    #[serde(default = "empty_list")]
    pub avro_writer_schema_files: StringList,
}

impl Default for RawSchema {
    fn default() -> Self {
        Self {
            format: default_format(),
            json_schema_file: None,
            validate_registry_json_locally: false,
            avro_schema_file: None,
            avro_writer_schema_files: empty_list(),
        }
    }
}

/// `[schema_registry]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemaRegistry {
    /// Base URL; unset means no registry.
    pub url: Option<String>,
    /// Basic auth as `user:password`, as Confluent clients configure it.
    pub basic_auth_user_info: Option<Secret>,
    /// File holding `user:password`.
    pub basic_auth_user_info_file: Option<PathBuf>,
    /// Bearer token.
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust (in addition to the system roots).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain), for a registry that requires one.
    pub client_certificate_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
    /// Timeout of one request, in milliseconds.
    #[serde(default = "default_registry_timeout_ms", deserialize_with = "flexible")]
    pub timeout_ms: u64,
    /// First retry delay, in milliseconds.
    #[serde(default = "default_retry_initial_ms", deserialize_with = "flexible")]
    pub retry_initial_backoff_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[serde(
        default = "default_registry_retry_max_ms",
        deserialize_with = "flexible"
    )]
    pub retry_max_backoff_ms: u64,
    /// How long an unknown schema id is remembered before the registry is asked again.
    #[serde(default = "default_not_found_ttl_ms", deserialize_with = "flexible")]
    pub not_found_ttl_ms: u64,
}

impl Default for RawSchemaRegistry {
    fn default() -> Self {
        Self {
            url: None,
            basic_auth_user_info: None,
            basic_auth_user_info_file: None,
            bearer_token: None,
            bearer_token_file: None,
            ca_file: None,
            client_certificate_file: None,
            client_key_file: None,
            timeout_ms: default_registry_timeout_ms(),
            retry_initial_backoff_ms: default_retry_initial_ms(),
            retry_max_backoff_ms: default_registry_retry_max_ms(),
            not_found_ttl_ms: default_not_found_ttl_ms(),
        }
    }
}

fn empty_list() -> StringList {
    StringList::List(Vec::new())
}
fn default_registry_timeout_ms() -> u64 {
    5_000
}
fn default_registry_retry_max_ms() -> u64 {
    10_000
}
fn default_not_found_ttl_ms() -> u64 {
    60_000
}

/// `[mapping]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    /// Measurement of every point: a fixed name, or a template in which `{topic}` is replaced
    /// by the record's topic. `generator` unless `measurement_field` is set.
    pub measurement: Option<String>,
    /// Take the measurement from this record field (a key or JSON Pointer) instead; a record
    /// without it is dead-lettered. Not together with `measurement`.
    pub measurement_field: Option<String>,
    /// Tags: a record path (`"generatorID"`, `"/meta/site"`), or an inline table with `name`
    /// and one of `path`, `value` (constant), `from = "key"`/`"topic"` or `header`.
    #[serde(default = "default_tags")]
    pub tags: EntryList<RawTag>,
    /// Fields: a record path, or an inline table with `name`, `path`, `type` and `optional`.
    #[serde(default = "default_fields")]
    pub fields: EntryList<RawField>,
    /// Top-level record keys the mapping does not read: `ignore` (default), `include` (written
    /// as fields, typed by their JSON type) or `reject` (the record is dead-lettered).
    #[serde(default)]
    pub extra_fields: ExtraFields,
    /// Top-level keys that `extra_fields = "include"` does not write and `"reject"` accepts.
    pub ignore: Option<StringList>,
    /// Where a point's timestamp comes from.
    #[serde(default)]
    pub timestamp: RawTimestamp,
}

impl Default for RawMapping {
    fn default() -> Self {
        Self {
            measurement: None,
            measurement_field: None,
            tags: default_tags(),
            fields: default_fields(),
            extra_fields: ExtraFields::default(),
            ignore: None,
            timestamp: RawTimestamp::default(),
        }
    }
}

/// A list of tag or field entries: a TOML array of entries, or one comma-separated string of
/// record paths (handy in environment variables: `KIS_MAPPING__FIELDS=lat,lon`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EntryList<T> {
    /// `["a", { name = "b", path = "/x/b" }]`
    List(Vec<Entry<T>>),
    /// `"a,b"`
    Joined(String),
}

impl<T: Clone> EntryList<T> {
    /// The entries; a joined string becomes one path entry per non-empty item.
    pub fn entries(&self) -> Vec<Entry<T>> {
        match self {
            EntryList::List(entries) => entries.clone(),
            EntryList::Joined(joined) => joined
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Entry::Path(item.to_owned()))
                .collect(),
        }
    }
}

/// One tag or field entry: a record path, or an inline table.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Entry<T> {
    /// `"generatorID"` or `"/meta/site"`: written under the key or the pointer's last token.
    Path(String),
    /// `{ name = "site", path = "/meta/site" }`
    Table(T),
}

/// A tag given as an inline table. Exactly one of `path`, `value`, `from` and `header` says
/// where its value comes from (checked when the configuration is built).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTag {
    /// The tag key written; defaults to the path's last token or the header name.
    pub name: Option<String>,
    /// A record path (key or JSON Pointer) holding a string, number or boolean.
    pub path: Option<String>,
    /// A constant value for every point.
    pub value: Option<String>,
    /// `key` (the Kafka record key as UTF-8) or `topic` (the record's topic).
    pub from: Option<TagFrom>,
    /// A Kafka header whose value (UTF-8) is the tag value.
    pub header: Option<String>,
}

/// What `from` in a tag entry takes from the Kafka record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagFrom {
    /// The record key, as UTF-8 text.
    Key,
    /// The topic the record was read from.
    Topic,
}

/// A field given as an inline table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    /// The field key written; defaults to the path's last token.
    pub name: Option<String>,
    /// A record path (key or JSON Pointer); defaults to `name` as a top-level key.
    pub path: Option<String>,
    /// `float` (default), `integer`, `unsigned`, `boolean`, `string` or `auto`.
    #[serde(rename = "type")]
    pub kind: Option<FieldType>,
    /// Leave the field out when it is absent or null instead of dead-lettering the record.
    pub optional: Option<bool>,
}

/// Deserializes an entry from a string or an inline table. Hand-written rather than
/// `#[serde(untagged)]` so that a mistake inside a table (`nmae = "x"`) is reported with the
/// table's own message and path, not as "data did not match any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entry<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Entry<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a record path such as \"fuel\" or \"/meta/site\", or an inline table such as { name = \"site\", path = \"/meta/site\" }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Entry::Path(text.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Entry::Table)
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// Deserializes a list from an array of entries or a comma-separated string.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for EntryList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = EntryList<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of entries, or one comma-separated string of record paths")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(EntryList::Joined(text.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(EntryList::List)
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// `[mapping.timestamp]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimestamp {
    /// `kafka` (the record's Kafka timestamp, default) or `field`.
    pub source: Option<String>,
    /// With `source = "field"`: the record field holding the time (name or JSON Pointer).
    pub field: Option<String>,
    /// With `source = "field"`: `s` or `ms` (numbers, a fraction allowed), `us` or `ns`
    /// (integers), or `rfc3339` (a string such as `2026-11-25T05:00:00.123Z`).
    pub unit: Option<String>,
    /// Two different records with the same measurement, tags and millisecond: `overwrite`
    /// (default: InfluxDB keeps the later one) or `keep` (both kept, told apart below the
    /// millisecond by their Kafka partition and offset).
    pub collisions: Option<String>,
}

/// `[influxdb]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawInfluxDb {
    /// Write API: `v1` (`/write`), `v2` (`/api/v2/write`) or `v3` (`/api/v3/write_lp`).
    #[serde(default = "default_api")]
    pub api: String,
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// v1 and v3: database name.
    pub database: Option<String>,
    /// v1: retention policy (the database's default when unset).
    pub retention_policy: Option<String>,
    /// v1: user name.
    pub username: Option<String>,
    /// v1: password.
    pub password: Option<Secret>,
    /// v1: file holding the password.
    pub password_file: Option<PathBuf>,
    /// v2: organisation.
    pub org: Option<String>,
    /// v2: bucket.
    pub bucket: Option<String>,
    /// v2 and v3: API token.
    pub token: Option<Secret>,
    /// v2 and v3: file holding the API token.
    pub token_file: Option<PathBuf>,
    /// HTTPS: PEM file of CA certificates to trust (in addition to the system roots).
    pub ca_file: Option<PathBuf>,
    /// HTTPS: PEM file of the client certificate (chain), for a server that requires one.
    pub client_certificate_file: Option<PathBuf>,
    /// HTTPS: PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
    /// HTTPS: accept any server certificate. Insecure (credentials and data can be read and
    /// altered on the way); logged as a warning at every start. Prefer `ca_file`.
    #[serde(default, deserialize_with = "flexible")]
    pub insecure_skip_verify: bool,
    /// Compress request bodies with gzip.
    #[serde(default = "default_true", deserialize_with = "flexible")]
    pub gzip: bool,
    /// Timeout of one write request, in milliseconds.
    #[serde(default = "default_request_timeout_ms", deserialize_with = "flexible")]
    pub timeout_ms: u64,
    /// First retry delay, in milliseconds.
    #[serde(default = "default_retry_initial_ms", deserialize_with = "flexible")]
    pub retry_initial_backoff_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[serde(default = "default_retry_max_ms", deserialize_with = "flexible")]
    pub retry_max_backoff_ms: u64,
    /// Give up on a write that has failed for this long, in milliseconds: the sink then stops
    /// consuming and stays unready until restarted (0: never give up, the default).
    #[serde(default, deserialize_with = "flexible")]
    pub give_up_after_ms: u64,
    /// Batches written at once (each a request in flight); offsets still commit in order.
    #[serde(default = "default_write_concurrency", deserialize_with = "flexible")]
    pub write_concurrency: usize,
}

/// `[batch]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Write when this many records are buffered.
    #[serde(default = "default_max_records", deserialize_with = "flexible")]
    pub max_records: usize,
    /// Write when the buffered line protocol reaches this many bytes.
    #[serde(default = "default_max_bytes", deserialize_with = "flexible")]
    pub max_bytes: usize,
    /// Write at the latest this long after the first buffered record, in milliseconds.
    #[serde(default = "default_linger_ms", deserialize_with = "flexible")]
    pub linger_ms: u64,
}

impl Default for RawBatch {
    fn default() -> Self {
        Self {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            linger_ms: default_linger_ms(),
        }
    }
}

/// `[dead_letter]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadLetter {
    /// Dead-letter topic; `{topic}` is replaced by the source topic.
    #[serde(default = "default_dead_letter_topic")]
    pub topic: String,
    /// What happens to records that cannot be decoded, validated or mapped: `dead_letter`,
    /// `fail` (stop the sink with an error) or `skip` (log and count; lossy).
    #[serde(default = "default_invalid_record_policy")]
    pub policy: String,
}

impl Default for RawDeadLetter {
    fn default() -> Self {
        Self {
            topic: default_dead_letter_topic(),
            policy: default_invalid_record_policy(),
        }
    }
}

/// `[alerts]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Write alert points and keep the per-generator gauges.
    #[serde(default = "default_true", deserialize_with = "flexible")]
    pub enabled: bool,
    /// The point tag (as written by the mapping) naming the generator.
    #[serde(default = "default_alert_id_tag")]
    pub id_tag: String,
    /// The point field (as written by the mapping, a float) holding the fuel level.
    #[serde(default = "default_alert_fuel_field")]
    pub fuel_field: String,
    /// A reading below this (and not below `critical`) raises a `warn` alert.
    #[serde(default = "default_alert_warn", deserialize_with = "flexible")]
    pub warn: f64,
    /// A reading below this raises a `critical` alert; must be below `warn`.
    #[serde(default = "default_alert_critical", deserialize_with = "flexible")]
    pub critical: f64,
    /// Measurement of the alert points; must differ from the readings' measurement.
    #[serde(default = "default_alert_measurement")]
    pub measurement: String,
    /// Most generators with gauge series; past it the least recently seen are dropped.
    #[serde(
        default = "default_alert_max_generators",
        deserialize_with = "flexible"
    )]
    pub max_generators: usize,
    /// Other thresholds for points with a given tag value; the first match wins.
    #[serde(default)]
    pub overrides: Vec<RawAlertOverride>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        Self {
            enabled: true,
            id_tag: default_alert_id_tag(),
            fuel_field: default_alert_fuel_field(),
            warn: default_alert_warn(),
            critical: default_alert_critical(),
            measurement: default_alert_measurement(),
            max_generators: default_alert_max_generators(),
            overrides: Vec::new(),
        }
    }
}

/// `[[alerts.overrides]]`: thresholds for the points whose tag `tag` is `value`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertOverride {
    /// Tag key, as written by the mapping (e.g. `site`, or the id tag for one generator).
    pub tag: String,
    /// Tag value, matched exactly.
    pub value: String,
    /// Warn threshold; the default `alerts.warn` when unset.
    pub warn: Option<f64>,
    /// Critical threshold; the default `alerts.critical` when unset.
    pub critical: Option<f64>,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    #[serde(default = "default_true", deserialize_with = "flexible")]
    pub enabled: bool,
    /// Address to listen on.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_metrics_listen(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full filter such as `info,rdkafka=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `auto` (text on a terminal, JSON otherwise), `text` or `json`.
    #[serde(default = "default_log_format")]
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// Longest time a graceful shutdown may take (flush, write, commit), in milliseconds.
    #[serde(default = "default_shutdown_timeout_ms", deserialize_with = "flexible")]
    pub timeout_ms: u64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            timeout_ms: default_shutdown_timeout_ms(),
        }
    }
}

fn default_auto_offset_reset() -> String {
    "earliest".into()
}
fn default_commit_interval_ms() -> u64 {
    5_000
}
fn default_format() -> String {
    "auto".into()
}
fn default_tags() -> EntryList<RawTag> {
    EntryList::List(vec![Entry::Path("generatorID".into())])
}
fn default_fields() -> EntryList<RawField> {
    EntryList::List(
        ["lat", "lon", "temperature", "pressure", "fuel"]
            .map(|name| Entry::Path(name.into()))
            .to_vec(),
    )
}
fn default_api() -> String {
    "v2".into()
}
fn default_true() -> bool {
    true
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_retry_initial_ms() -> u64 {
    100
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_write_concurrency() -> usize {
    2
}
fn default_max_records() -> usize {
    5_000
}
fn default_max_bytes() -> usize {
    1 << 20
}
fn default_linger_ms() -> u64 {
    100
}
fn default_dead_letter_topic() -> String {
    "{topic}.dlq".into()
}
fn default_invalid_record_policy() -> String {
    "dead_letter".into()
}
fn default_alert_id_tag() -> String {
    "generatorID".into()
}
fn default_alert_fuel_field() -> String {
    "fuel".into()
}
/// 40 % of the simulator's smallest tank (500), 10 % of its largest (2000).
fn default_alert_warn() -> f64 {
    200.0
}
/// 20 % of the smallest tank, 5 % of the largest: where the simulator refuels its largest.
fn default_alert_critical() -> f64 {
    100.0
}
fn default_alert_measurement() -> String {
    "generator_alerts".into()
}
fn default_alert_max_generators() -> usize {
    crate::alerts::telemetry::DEFAULT_MAX_GENERATORS
}
fn default_metrics_listen() -> String {
    "0.0.0.0:9464".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> String {
    "auto".into()
}
fn default_shutdown_timeout_ms() -> u64 {
    20_000
}

/// Deserializes a number or boolean written natively (`5000`) or as text (`"5000"`), because
/// environment variable overrides always arrive as text.
fn flexible<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Integer(i64),
        Float(f64),
        Bool(bool),
        Text(String),
    }
    let text = match Scalar::deserialize(deserializer)? {
        Scalar::Integer(number) => number.to_string(),
        Scalar::Float(number) => number.to_string(),
        Scalar::Bool(flag) => flag.to_string(),
        Scalar::Text(text) => text.trim().to_owned(),
    };
    text.parse().map_err(|error| {
        serde::de::Error::custom(format!(
            "`{text}` is not a valid {}: {error}",
            std::any::type_name::<T>()
        ))
    })
}
