//! The emergency-generator simulator: realistic telemetry for demos, tests and benchmarks.
//!
//! Reproduces the source scenario's producer: N generators at fixed positions, fuel that drains
//! while running and jumps back up on refuelling, temperature and pressure with noise, JSON
//! values matching `schemas/generator.schema.json`, keys either the generator id or a fresh
//! UUID (as the original producer did). A share of records can be made invalid on purpose.
//!
//! Each generator's Kafka timestamps strictly increase, so no two readings of one generator
//! share a timestamp and every valid record becomes its own InfluxDB point.

pub mod registry;

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::source::KafkaSettings;

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

struct Generator {
    id: String,
    lat: f64,
    lon: f64,
    capacity: f64,
    fuel: f64,
    burn_per_reading: f64,
    base_temperature: f64,
    last_timestamp_ms: i64,
}

/// The simulated fleet; pure apart from its seeded random numbers.
pub struct Fleet {
    generators: Vec<Generator>,
    rng: StdRng,
    next: usize,
    invalid_ratio: f64,
    invalid_count: u64,
}

/// One simulated record.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Generator id (also the key in [`KeyMode::Generator`]).
    pub generator_id: String,
    /// Record value.
    pub value: Vec<u8>,
    /// Kafka timestamp, milliseconds.
    pub timestamp_ms: i64,
    /// Whether the value was made invalid on purpose.
    pub invalid: bool,
}

/// Valid readings are rounded to 2 decimals, like a sensor report.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl Fleet {
    /// A fleet of `size` generators around London, positions drawn from `seed`.
    pub fn new(size: usize, seed: u64, invalid_ratio: f64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let generators = (1..=size.max(1))
            .map(|number| {
                let capacity = [500.0, 1000.0, 2000.0][rng.random_range(0..3)];
                Generator {
                    id: format!("gen-{number}"),
                    lat: round2(51.3 + rng.random::<f64>() * 0.4),
                    lon: round2(-0.5 + rng.random::<f64>() * 0.7),
                    capacity,
                    fuel: round2(capacity * rng.random_range(0.3..1.0)),
                    burn_per_reading: rng.random_range(0.5..3.0),
                    base_temperature: rng.random_range(30.0..45.0),
                    last_timestamp_ms: 0,
                }
            })
            .collect();
        Self {
            generators,
            rng,
            next: 0,
            invalid_ratio: invalid_ratio.clamp(0.0, 1.0),
            invalid_count: 0,
        }
    }

    /// The next reading, round-robin over the generators, stamped no earlier than `now_ms`.
    pub fn next_reading(&mut self, now_ms: i64) -> Reading {
        let index = self.next;
        self.next = (self.next + 1) % self.generators.len();
        let invalid = self.rng.random::<f64>() < self.invalid_ratio;
        let noise_t: f64 = self.rng.random_range(-1.5..1.5);
        let noise_p: f64 = self.rng.random_range(-0.03..0.03);
        let refuel = self.rng.random::<f64>() < 0.002;
        let generator = &mut self.generators[index];
        generator.fuel -= generator.burn_per_reading;
        if generator.fuel < generator.capacity * 0.05 || refuel {
            generator.fuel = generator.capacity;
        }
        generator.fuel = round2(generator.fuel.max(0.0));
        let timestamp_ms = now_ms.max(generator.last_timestamp_ms + 1);
        generator.last_timestamp_ms = timestamp_ms;
        let load = 1.0 - generator.fuel / generator.capacity;
        let temperature = round2(generator.base_temperature + 5.0 * load + noise_t);
        let pressure = round2(1.0 + noise_p);
        let value = if invalid {
            self.invalid_count += 1;
            invalid_value(self.invalid_count, &generator.id, generator.fuel)
        } else {
            json!({
                "generatorID": generator.id,
                "lat": generator.lat,
                "lon": generator.lon,
                "temperature": temperature,
                "pressure": pressure,
                "fuel": generator.fuel,
            })
            .to_string()
            .into_bytes()
        };
        Reading {
            generator_id: generator.id.clone(),
            value,
            timestamp_ms,
            invalid,
        }
    }
}

/// A value that breaks the schema in one of the ways rogue producers do, cycling through kinds.
fn invalid_value(sequence: u64, id: &str, fuel: f64) -> Vec<u8> {
    let text = match sequence % 5 {
        0 => format!(r#"{{"generatorID": "{id}", "fuel": "#),
        1 => format!(
            r#"{{"generatorID": "{id}", "lat": 51.5, "lon": -0.1, "temperature": 35.0, "pressure": 1.0}}"#
        ),
        2 => format!(
            r#"{{"generatorID": "{id}", "lat": 51.5, "lon": -0.1, "temperature": 35.0, "pressure": 1.0, "fuel": "low"}}"#
        ),
        3 => format!(
            r#"{{"generatorID": "{id}", "lat": 51.5, "lon": -0.1, "temperature": NaN, "pressure": 1.0, "fuel": {fuel}}}"#
        ),
        _ => format!(
            r#"{{"generatorID": "", "lat": 51.5, "lon": -0.1, "temperature": 35.0, "pressure": 1.0, "fuel": {fuel}}}"#
        ),
    };
    text.into_bytes()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Most deliveries awaited at once; beyond it the simulator waits for acknowledgements.
const MAX_IN_FLIGHT: usize = 20_000;

/// Produces simulated readings until the limit or `shutdown`.
pub async fn simulate(
    kafka: &KafkaSettings,
    options: &SimulateOptions,
    shutdown: CancellationToken,
) -> Result<SimulationSummary, KafkaError> {
    let mut config = kafka.producer_config();
    config.set("linger.ms", "5");
    let producer: FutureProducer = config.create()?;
    let mut fleet = Fleet::new(options.generators, options.seed, options.invalid_ratio);
    let mut summary = SimulationSummary::default();
    let mut in_flight: VecDeque<(bool, DeliveryFuture)> = VecDeque::new();
    let started = Instant::now();
    let mut produced = 0u64;
    info!(
        topic = options.topic,
        generators = options.generators,
        rate = options.rate,
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
        let key = match options.key {
            KeyMode::Generator => reading.generator_id.clone(),
            KeyMode::Uuid => uuid::Uuid::new_v4().to_string(),
        };
        let record = FutureRecord::to(&options.topic)
            .key(&key)
            .payload(&reading.value)
            .timestamp(reading.timestamp_ms);
        match producer.send_result(record) {
            Ok(delivery) => in_flight.push_back((reading.invalid, delivery)),
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
    Ok(summary)
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
mod tests {
    use super::*;
    use crate::decode::{Decoder, WireFormat};

    #[test]
    fn valid_readings_match_the_schema_and_timestamps_increase_per_generator() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/generator.schema.json")).unwrap();
        let decoder = Decoder::new(WireFormat::Auto, Some(&schema)).unwrap();
        let mut fleet = Fleet::new(3, 7, 0.0);
        let mut last = std::collections::HashMap::new();
        for _ in 0..3000 {
            let reading = fleet.next_reading(1_000);
            assert!(!reading.invalid);
            let decoded = decoder.decode(Some(&reading.value)).expect("valid reading");
            let fuel = decoded.value["fuel"].as_f64().unwrap();
            assert!(fuel >= 0.0);
            let previous = last.insert(reading.generator_id.clone(), reading.timestamp_ms);
            assert!(previous.is_none_or(|previous| previous < reading.timestamp_ms));
        }
    }

    #[test]
    fn invalid_readings_are_rejected_and_the_ratio_holds() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/generator.schema.json")).unwrap();
        let decoder = Decoder::new(WireFormat::Auto, Some(&schema)).unwrap();
        let mut fleet = Fleet::new(5, 1, 0.2);
        let readings: Vec<Reading> = (0..5000).map(|_| fleet.next_reading(0)).collect();
        let invalid: Vec<&Reading> = readings.iter().filter(|reading| reading.invalid).collect();
        assert!((800..1200).contains(&invalid.len()), "{}", invalid.len());
        for reading in invalid {
            let decoded = decoder.decode(Some(&reading.value));
            // The empty-generatorID kind passes the schema and is rejected by the mapping.
            if let Ok(decoded) = decoded {
                assert_eq!(decoded.value["generatorID"], "");
            }
        }
    }

    #[test]
    fn same_seed_same_fleet() {
        let a: Vec<Reading> = {
            let mut fleet = Fleet::new(4, 9, 0.1);
            (0..100).map(|_| fleet.next_reading(0)).collect()
        };
        let b: Vec<Reading> = {
            let mut fleet = Fleet::new(4, 9, 0.1);
            (0..100).map(|_| fleet.next_reading(0)).collect()
        };
        assert_eq!(a, b);
    }
}
