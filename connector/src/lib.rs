//! kafka-influx-sink: a Kafka consumer-group worker that writes schema-validated records to
//! InfluxDB as line protocol, commits offsets only once the data is durable and dead-letters
//! what cannot be written.
//!
//! # Pipeline
//! ```text
//!                    registry (schemas by id, fetched once)
//!                       ▼
//! Kafka ─▶ source ─▶ decode ─▶ map ─▶ line_protocol ─▶ batch ─▶ write ──────▶ InfluxDB
//!            ▲          │        │          │                     │
//!            │          └────────┴──────────┴─▶ dead_letter ──────┼─▶ Kafka DLQ topic
//!            └──────────── store + commit offsets ◀── durable ◀───┘
//! ```
//!
//! # Layout
//! - [`config`]: the TOML file and `KIS_…` environment overrides → validated [`config::Config`].
//! - [`source`]: the consumer group; the only place offsets are stored and committed.
//! - [`decode`]: wire formats (plain JSON, Schema Registry framing, Avro) and validation.
//! - [`registry`]: the Schema Registry client; a record whose schema is not fetched yet waits.
//! - [`map`]: a decoded record and its Kafka topic, key and headers → [`line_protocol::Point`].
//! - [`line_protocol`]: a point → one escaped line.
//! - [`batch`]: lines, dead letters and the offsets they make committable; the flush policy.
//! - [`write`](mod@write): the InfluxDB v1/v2/v3 HTTP writer and its response policy.
//! - [`dead_letter`]: the dead-letter producer and its Kafka Connect-style headers.
//! - [`alerts`]: fuel alerts: a reading below a threshold adds an alert point to its batch;
//!   per-generator gauges follow what is durable.
//! - [`metrics`]: Prometheus metrics, `/status`, `/healthz` and `/readyz`; [`status`] holds
//!   the per-partition state behind them.
//! - [`inflight`]: batches being written (up to `write_concurrency` requests at once, and one
//!   batch more, compressed and waiting for a request slot).
//! - [`watermark`]: per-partition committable offsets over batches finishing in any order.
//! - [`stages`]: one record through decode, map, encode and alerts, with no I/O.
//! - [`pipeline`]: the loop wiring the stages: recv → decode → map → batch → write → store.
//! - [`simulate`]: the emergency-generator simulator, in plain JSON, Confluent-framed JSON or
//!   Avro (schema registered in a Schema Registry) or bare Avro.
//!
//! # Delivery guarantee
//! At-least-once with idempotent effect. An offset is committed only after every record before
//! it in its partition was acknowledged by InfluxDB (2xx) or by the dead-letter topic. Batches
//! are written concurrently (`influxdb.write_concurrency`) and finish in any order; the
//! [`watermark`] stores a partition's offset only up to the longest prefix of its batches that
//! are all durable. A crash re-reads the uncommitted records; they map to the same measurement,
//! tags and timestamp, so InfluxDB overwrites the points instead of duplicating them.
//! Preconditions: the mapping is deterministic (it is: no clock is read), and two different
//! records never share measurement, tag set and timestamp, or the later one overwrites the
//! earlier point (`mapping.timestamp.collisions = "keep"` tells them apart).
//!
//! Nothing is ever skipped silently: a record the sink cannot read goes to the dead-letter
//! topic (or stops the sink, or is counted as skipped, as `dead_letter.policy` says), a record
//! InfluxDB refuses goes to the dead-letter topic, and everything else is retried until it is
//! durable or the sink stops (and, with `influxdb.give_up_after_ms`, stays unready).

pub mod alerts;
pub mod batch;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod inflight;
pub mod kafka_events;
pub mod kafka_queue;
pub mod line_protocol;
pub mod logging;
pub mod map;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod reject;
pub mod secret;
pub mod simulate;
pub mod source;
pub mod stages;
pub mod status;
pub mod tls;
pub mod watermark;
pub mod write;

pub use pipeline::{RunError, RunSummary, run};
