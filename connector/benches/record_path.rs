//! The per-record path, measured: decode + validate + map + encode into a batch, per wire
//! format, gzip of a full batch, and a durable batch's readings shown on the fuel gauges.
//!
//! Each iteration takes a batch of [`BATCH`] realistic generator records (simulated fleet,
//! uuid4 keys, the default mapping and fuel alerts, as `config/local.toml` configures them)
//! through [`Stages::accept`] into a fresh batch, exactly as the pipeline does, so the figures
//! include the batch's bookkeeping (offsets, the copies kept for dead-lettering, the newest
//! reading per generator). Criterion reports the time per batch and the records per second.
//!
//! ```sh
//! cargo bench --bench record_path                 # all of them
//! cargo bench --bench record_path -- avro_sr      # one
//! cargo bench --bench record_path -- avro         # both Avro cases
//! cargo bench --bench record_path -- gauges       # the fuel gauges' update per durable batch
//! ```

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafka_influx_sink::batch::Batch;
use kafka_influx_sink::config::Config;
use kafka_influx_sink::decode::{CachedSchema, Decoder, FetchedSchema, RegistrySchema, SchemaKey};
use kafka_influx_sink::metrics::Telemetry;
use kafka_influx_sink::simulate::{Encoder, Fleet, Framing};
use kafka_influx_sink::stages::{Accepted, Stages};
use kafka_influx_sink::write::gzip;
use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;

/// Records per batch: the default `batch.max_records`.
const BATCH: usize = 5000;
/// Generators in the simulated fleet.
const GENERATORS: usize = 1000;
/// Generators in the end-to-end benchmark's fleet (`scripts/bench/run.sh`): nearly every record
/// of a batch is a different generator's, so each is a gauge update once the batch is durable.
const BENCH_GENERATORS: usize = 10_000;
/// The schema id the framed records name.
const SCHEMA_ID: u32 = 1;
const TOPIC: &str = "emergency_generator";

/// The sink's configuration, `schema` being the body of its `[schema]` table.
fn config(schema: &str) -> Config {
    let text = format!(
        r#"
[kafka]
brokers = ["127.0.0.1:9092"]
group_id = "bench"
topics = ["{TOPIC}"]

[schema]
{schema}

[mapping]
measurement = "generator"
tags = ["generatorID"]
fields = ["lat", "lon", "temperature", "pressure", "fuel"]

[influxdb]
api = "v1"
url = "http://127.0.0.1:8086"
database = "generators"
"#
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config_dir = manifest.join("../config");
    Config::parse(&text, &config_dir.join("bench.toml"), &config_dir, [])
        .unwrap_or_else(|error| panic!("bench configuration: {error}"))
}

fn schema_text(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn stages(config: &Config, decoder: Decoder) -> Stages {
    Stages::new(
        decoder,
        config.mapping.clone(),
        config.alerts.clone(),
        config.dead_letter.policy,
        Arc::new(Telemetry::new()),
    )
}

/// `BATCH` records of one fleet, encoded by `encoder`, as consumed from one partition.
fn messages(encoder: &Encoder) -> Vec<OwnedMessage> {
    fleet_messages(encoder, GENERATORS, BATCH)
}

/// `count` records of a fleet of `generators`, encoded by `encoder`, from one partition.
fn fleet_messages(encoder: &Encoder, generators: usize, count: usize) -> Vec<OwnedMessage> {
    let mut fleet = Fleet::new(generators, 7, 0.0);
    let start_ms = 1_764_547_200_000;
    (0..count)
        .map(|offset| {
            let reading = fleet.next_reading(start_ms + offset as i64);
            let value = encoder
                .encode(&reading)
                .unwrap_or_else(|error| panic!("encoding a reading: {error}"));
            OwnedMessage::new(
                Some(value),
                Some(uuid::Uuid::new_v4().to_string().into_bytes()),
                TOPIC.to_owned(),
                Timestamp::CreateTime(reading.timestamp_ms),
                0,
                offset as i64,
                None,
            )
        })
        .collect()
}

/// One batch of records through the stages; every one must become a line.
fn fill(stages: &Stages, messages: &[OwnedMessage], batch: &mut Batch) {
    batch.clear();
    for message in messages {
        match stages.accept(message, batch) {
            Ok(Accepted::Taken) => {}
            other => panic!("record not taken: {other:?}"),
        }
    }
    assert_eq!(batch.points(), messages.len(), "a record was dead-lettered");
}

fn bench_format(c: &mut Criterion, name: &str, stages: &Stages, messages: &[OwnedMessage]) {
    let mut group = c.benchmark_group("record_path");
    group.throughput(Throughput::Elements(messages.len() as u64));
    let mut batch = Batch::default();
    group.bench_function(name, |b| {
        b.iter(|| {
            fill(stages, black_box(messages), &mut batch);
            black_box(batch.line_bytes())
        })
    });
    group.finish();
}

fn registry_decoder(config: &Config, schema_type: Option<&str>, file: &str) -> Decoder {
    let mut decoder = config
        .schema
        .decoder(true)
        .unwrap_or_else(|error| panic!("decoder: {error}"));
    let fetched = FetchedSchema {
        schema_type: schema_type.map(str::to_owned),
        schema: schema_text(file),
        references: Vec::new(),
    };
    let compiled = RegistrySchema::compile(&fetched, decoder.reader_schema())
        .unwrap_or_else(|error| panic!("registry schema: {error}"));
    decoder.learn(SchemaKey::Id(SCHEMA_ID), CachedSchema::Ready(compiled));
    decoder
}

fn framing() -> Framing {
    Framing {
        schema_id: SCHEMA_ID,
        unregistered_id: SCHEMA_ID + 1,
    }
}

/// Plain JSON text, validated against the local JSON Schema.
fn json(c: &mut Criterion) {
    let config = config(r#"json_schema_file = "../schemas/generator.schema.json""#);
    let decoder = config.schema.decoder(false).expect("decoder");
    let stages = stages(&config, decoder);
    bench_format(c, "json", &stages, &messages(&Encoder::json()));
}

/// Confluent-framed JSON (`JSONSerializer`), validated against the registry's JSON Schema.
fn json_sr(c: &mut Criterion) {
    let config = config(r#"format = "confluent""#);
    let decoder = registry_decoder(&config, Some("JSON"), "generator.schema.json");
    let stages = stages(&config, decoder);
    bench_format(
        c,
        "json_sr",
        &stages,
        &messages(&Encoder::json_sr(framing())),
    );
}

/// Confluent-framed Avro (`AvroSerializer`), resolved to the local reader schema.
fn avro_sr(c: &mut Criterion) {
    let config = config(
        r#"format = "confluent"
avro_schema_file = "../schemas/generator.avsc""#,
    );
    let decoder = registry_decoder(&config, None, "generator.avsc");
    let stages = stages(&config, decoder);
    let encoder = Encoder::avro(
        &schema_text("generator.avsc"),
        "generator.avsc",
        Some(framing()),
    )
    .expect("Avro encoder");
    bench_format(c, "avro_sr", &stages, &messages(&encoder));
}

/// Raw Avro datums (`format = "avro"`), read with the local schema: no framing, no registry.
fn avro_raw(c: &mut Criterion) {
    let config = config(
        r#"format = "avro"
avro_schema_file = "../schemas/generator.avsc""#,
    );
    let decoder = config
        .schema
        .decoder(false)
        .unwrap_or_else(|error| panic!("decoder: {error}"));
    let stages = stages(&config, decoder);
    let encoder = Encoder::avro(&schema_text("generator.avsc"), "generator.avsc", None)
        .expect("Avro encoder");
    bench_format(c, "avro_raw", &stages, &messages(&encoder));
}

/// gzip of a full batch's line protocol, as the writer sends it with `influxdb.gzip = true`.
fn gzip_batch(c: &mut Criterion) {
    let config = config(r#"json_schema_file = "../schemas/generator.schema.json""#);
    let stages = stages(&config, config.schema.decoder(false).expect("decoder"));
    let mut batch = Batch::default();
    fill(&stages, &messages(&Encoder::json()), &mut batch);
    let mut group = c.benchmark_group("gzip");
    group.throughput(Throughput::Elements(batch.points() as u64));
    group.bench_function("batch_5000_lines", |b| {
        b.iter(|| black_box(gzip(black_box(batch.lines())).expect("gzip").len()))
    });
    group.finish();
}

/// A durable batch's newest reading per generator shown on the fuel gauges, as the record loop
/// does once InfluxDB acknowledged it, with the end-to-end benchmark's fleet: every generator
/// already has series, so each reading updates a known one.
fn durable_gauges(c: &mut Criterion) {
    let config = config(r#"json_schema_file = "../schemas/generator.schema.json""#);
    let stages = stages(&config, config.schema.decoder(false).expect("decoder"));
    let messages = fleet_messages(&Encoder::json(), BENCH_GENERATORS, BENCH_GENERATORS);
    let batches: Vec<Batch> = messages
        .chunks(BATCH)
        .map(|chunk| {
            let mut batch = Batch::default();
            fill(&stages, chunk, &mut batch);
            batch
        })
        .collect();
    assert_eq!(
        batches[0].written_readings(&[]).count(),
        BATCH,
        "a generator's reading is missing"
    );
    let telemetry = Telemetry::new();
    let gauges = telemetry.alert_metrics();
    for batch in &batches {
        gauges.update(batch.written_readings(&[]));
    }
    let mut group = c.benchmark_group("gauges");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut turn = 0;
    group.bench_function("durable_batch", |b| {
        b.iter(|| {
            turn = (turn + 1) % batches.len();
            gauges.update(black_box(&batches[turn]).written_readings(&[]));
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    json,
    json_sr,
    avro_sr,
    avro_raw,
    gzip_batch,
    durable_gauges
);
criterion_main!(benches);
