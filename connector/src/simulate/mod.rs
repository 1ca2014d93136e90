//! The emergency-generator simulator: realistic telemetry for demos, tests and benchmarks.
//!
//! Reproduces the source scenario's producer: N generators at fixed positions, fuel that drains
//! while running and jumps back up on refuelling, temperature and pressure with noise, keys
//! either the generator id or a fresh UUID (as the original producer did). Values are written
//! in one of four wire formats: plain JSON, Confluent-framed JSON or Avro with the schema
//! registered in a Schema Registry (as Confluent's serializers do), or bare Avro. A share of
//! records can be made invalid on purpose, in the ways that format goes wrong in practice.
//!
//! # Layout
//! - [`fleet`]: the generators and their readings (pure, seeded).
//! - [`format`](mod@format): a reading → record value bytes, valid or damaged on purpose.
//! - [`registry`]: registering the value schema with a Schema Registry.
//! - here: the options, start-up (schema, registry) and the produce loop.

pub mod fleet;
pub mod format;
pub mod registry;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::source::KafkaSettings;
pub use fleet::{Fleet, Reading, Sample};
pub use format::{Encoder, Fault, Format, FormatError, Framing};
pub use registry::{RegistryClient, RegistryError, RegistrySettings, SchemaType};

/// The JSON Schema registered by `json-sr` unless `--schema-file` says otherwise.
pub const GENERATOR_JSON_SCHEMA: &str = include_str!("../../../schemas/generator.schema.json");
/// The Avro schema of `avro-sr` and `avro` unless `--schema-file` says otherwise.
pub const GENERATOR_AVRO_SCHEMA: &str = include_str!("../../../schemas/generator.avsc");

/// How records are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// The generator id: one generator's readings stay in one partition, in order.
    Generator,
    /// A fresh UUID per record, as the source scenario's producer does.
    Uuid,
}

/// When the simulation stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this many records.
    Count(u64),
    /// After this long.
    Duration(Duration),
    /// When interrupted.
    Unbounded,
}

/// How values are written.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// The wire format.
    pub format: Format,
    /// A schema file replacing the built-in one (JSON Schema for `json-sr`, Avro for
    /// `avro-sr` and `avro`).
    pub schema_file: Option<PathBuf>,
    /// The Schema Registry; required by the `-sr` formats and used by no other.
    pub registry: Option<RegistrySettings>,
}

impl Default for FormatOptions {
    /// Plain JSON: the simulator's original behaviour.
    fn default() -> Self {
        Self {
            format: Format::Json,
            schema_file: None,
            registry: None,
        }
    }
}

/// Simulation settings.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Topic to produce to.
    pub topic: String,
    /// Number of generators.
    pub generators: usize,
    /// Records per second across all generators; 0 means as fast as possible.
    pub rate: f64,
    /// When to stop.
    pub limit: Limit,
    /// Keying.
    pub key: KeyMode,
    /// Share of records (0..=1) made invalid on purpose.
    pub invalid_ratio: f64,
    /// Seed for positions, readings and which records are invalid.
    pub seed: u64,
    /// Wire format of the values.
    pub format: FormatOptions,
}

/// What was produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimulationSummary {
    /// Valid records acknowledged by Kafka.
    pub valid: u64,
    /// Invalid records acknowledged by Kafka.
    pub invalid: u64,
    /// Records Kafka did not acknowledge.
    pub failed: u64,
}

/// Why the simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The schema file cannot be read.
    #[error("cannot read the schema file {path}: {source}")]
    SchemaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The schema is unusable, or a value cannot be encoded with it.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A `-sr` format without a registry.
    #[error("format {0:?} needs a Schema Registry (--registry-url)")]
    RegistryMissing(Format),
    /// Registering the schema failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No schema id near the registered one is free to serve as an unregistered id.
    #[error("found no schema id the registry does not know (tried {tried:?})")]
    NoUnregisteredId {
        /// The ids tried, all registered.
        tried: Vec<u32>,
    },
    /// The Kafka producer cannot be created.
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] KafkaError),
}

/// The schema for the format: the built-in one, or `--schema-file`'s text, with a name for
/// messages.
fn schema_text(options: &FormatOptions) -> Result<(String, String), SimulateError> {
    let builtin = if options.format.is_avro() {
        ("schemas/generator.avsc", GENERATOR_AVRO_SCHEMA)
    } else {
        ("schemas/generator.schema.json", GENERATOR_JSON_SCHEMA)
    };
    match &options.schema_file {
        None => Ok((builtin.1.to_owned(), format!("built-in {}", builtin.0))),
        Some(path) => std::fs::read_to_string(path)
            .map(|text| (text, path.display().to_string()))
            .map_err(|source| SimulateError::SchemaFile {
                path: path.clone(),
                source,
            }),
    }
}

/// Distance between candidate unregistered ids: far above the ids a registry hands out soon.
const UNREGISTERED_ID_STEP: u32 = 1_000_000;
/// Candidates tried before giving up.
const UNREGISTERED_ID_CANDIDATES: u32 = 5;

/// Builds the encoder: checks the schema and, for the `-sr` formats, registers it under
/// `<topic>-value` and, when invalid records are wanted, finds an id the registry does not know.
pub async fn prepare_encoder(
    options: &SimulateOptions,
    stop: &CancellationToken,
) -> Result<Encoder, SimulateError> {
    let format = &options.format;
    if format.format == Format::Json {
        return Ok(Encoder::json());
    }
    let (schema, origin) = schema_text(format)?;
    // Refuse a bad schema before registering it: the registry would keep it forever.
    if format.format.is_avro() {
        Encoder::avro(&schema, &origin, None)?;
    } else {
        format::check_json_schema(&schema, &origin)?;
    }
    let framing = if format.format.uses_registry() {
        let settings = format
            .registry
            .clone()
            .ok_or(SimulateError::RegistryMissing(format.format))?;
        let client = RegistryClient::new(settings)?;
        let schema_type = if format.format.is_avro() {
            SchemaType::Avro
        } else {
            SchemaType::Json
        };
        let subject = format!("{}-value", options.topic);
        let schema_id = client
            .register(&subject, &schema, schema_type, stop)
            .await?;
        let unregistered_id = if options.invalid_ratio > 0.0 {
            unregistered_id(&client, schema_id, stop).await?
        } else {
            // Never written: no record is made invalid.
            schema_id
        };
        Some(Framing {
            schema_id,
            unregistered_id,
        })
    } else {
        None
    };
    match (format.format, framing) {
        (Format::JsonSr, Some(framing)) => Ok(Encoder::json_sr(framing)),
        (_, framing) => Ok(Encoder::avro(&schema, &origin, framing)?),
    }
}

/// An id the registry answers 404 for: a frame carrying it is one no consumer can resolve.
async fn unregistered_id(
    client: &RegistryClient,
    schema_id: u32,
    stop: &CancellationToken,
) -> Result<u32, SimulateError> {
    let mut tried = Vec::new();
    for step in 1..=UNREGISTERED_ID_CANDIDATES {
        let Some(candidate) = schema_id.checked_add(step * UNREGISTERED_ID_STEP) else {
            break;
        };
        // Confluent ids are Java ints: stay within i32 so every client reads the id as given.
        if candidate > i32::MAX as u32 {
            break;
        }
        if !client.is_registered(candidate, stop).await? {
            return Ok(candidate);
        }
        tried.push(candidate);
    }
    Err(SimulateError::NoUnregisteredId { tried })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Most deliveries awaited at once; beyond it the simulator waits for acknowledgements.
const MAX_IN_FLIGHT: usize = 20_000;

/// Produces simulated readings until the limit or `shutdown`.
///
/// Registers the schema first for the `-sr` formats; a registry that stays unreachable, or
/// refuses the schema, stops the simulation before anything is produced.
pub async fn simulate(
    kafka: &KafkaSettings,
    options: &SimulateOptions,
    shutdown: CancellationToken,
) -> Result<SimulationSummary, SimulateError> {
    let encoder = prepare_encoder(options, &shutdown).await?;
    let mut config = kafka.producer_config();
    config.set("linger.ms", "5");
    let producer: FutureProducer = config.create().map_err(SimulateError::Producer)?;
    let mut fleet = Fleet::new(options.generators, options.seed, options.invalid_ratio);
    let mut summary = SimulationSummary::default();
    let mut in_flight: VecDeque<(bool, DeliveryFuture)> = VecDeque::new();
    let started = Instant::now();
    let mut produced = 0u64;
    let mut failure = None;
    info!(
        topic = options.topic,
        generators = options.generators,
        rate = options.rate,
        format = ?encoder.format(),
        schema_id = encoder.framing().map(|framing| framing.schema_id),
        "simulating"
    );
    loop {
        let done = match options.limit {
            Limit::Count(count) => produced >= count,
            Limit::Duration(duration) => started.elapsed() >= duration,
            Limit::Unbounded => false,
        };
        if done || shutdown.is_cancelled() {
            break;
        }
        if options.rate > 0.0 {
            let due = started + Duration::from_secs_f64(produced as f64 / options.rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        let reading = fleet.next_reading(now_ms());
        let value = match encoder.encode(&reading) {
            Ok(value) => value,
            Err(error) => {
                // The schema was checked at start-up, so this is a bug; stop, but still count
                // what is in flight.
                failure = Some(error);
                break;
            }
        };
        let key = match options.key {
            KeyMode::Generator => reading.sample.generator_id.clone(),
            KeyMode::Uuid => uuid::Uuid::new_v4().to_string(),
        };
        let record = FutureRecord::to(&options.topic)
            .key(&key)
            .payload(&value)
            .timestamp(reading.timestamp_ms);
        match producer.send_result(record) {
            Ok(delivery) => in_flight.push_back((reading.is_invalid(), delivery)),
            Err((error, _)) => {
                // The local queue is full: wait for the oldest acknowledgement, then go on.
                tracing::debug!(%error, "producer queue full");
                if let Some((invalid, delivery)) = in_flight.pop_front() {
                    account(&mut summary, invalid, delivery.await);
                }
                continue;
            }
        }
        produced += 1;
        while in_flight.len() > MAX_IN_FLIGHT {
            if let Some((invalid, delivery)) = in_flight.pop_front() {
                account(&mut summary, invalid, delivery.await);
            }
        }
    }
    while let Some((invalid, delivery)) = in_flight.pop_front() {
        account(&mut summary, invalid, delivery.await);
    }
    info!(
        valid = summary.valid,
        invalid = summary.invalid,
        failed = summary.failed,
        elapsed_s = started.elapsed().as_secs_f64(),
        "simulation done"
    );
    match failure {
        Some(error) => Err(error.into()),
        None => Ok(summary),
    }
}

type Delivery = <DeliveryFuture as std::future::Future>::Output;

fn account(summary: &mut SimulationSummary, invalid: bool, delivery: Delivery) {
    match delivery {
        Ok(Ok(_)) if invalid => summary.invalid += 1,
        Ok(Ok(_)) => summary.valid += 1,
        Ok(Err((error, _))) => {
            if summary.failed == 0 {
                tracing::warn!(%error, "record not acknowledged by Kafka");
            }
            summary.failed += 1;
        }
        Err(_) => summary.failed += 1,
    }
}

#[cfg(test)]
mod tests;
