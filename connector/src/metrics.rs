//! Telemetry: Prometheus metrics, `/status` and the health endpoints.
//!
//! `/metrics` serves OpenMetrics text (prefix `kis_`). `/healthz` answers while the process and
//! its runtime are alive, and is never tied to InfluxDB, so an outage does not restart pods in
//! a loop. `/readyz` answers 200 once the consumer has joined its group and while neither
//! InfluxDB nor the Schema Registry refuses the sink's credentials or target, and 503 with the
//! reason otherwise. `/status` is JSON: readiness, totals and, per assigned partition, lag,
//! offsets, last commit, last durable write and last error.
//!
//! Counters are bumped per batch where the batch knows the answer (written, dead-lettered,
//! latency), and through cached handles where they must be per record (consumed), so the
//! per-record cost is an atomic add. Per-partition series are removed when the partition is
//! revoked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use rdkafka::statistics::Statistics;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::alerts::AlertMetrics;
use crate::batch::{ALERT_REJECTED, Batch, NextOffset};
use crate::dead_letter::DeadLetter;
use crate::inflight::PartitionsInFlight;
use crate::reject::Rejection;
use crate::status::{Partitions, TimedError, unix_now};

/// The git commit the binary was built from (`build.rs`; `unknown` outside a git checkout).
pub const GIT_SHA: &str = env!("KIS_GIT_SHA");

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    topic: String,
    stage: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

impl PartitionLabels {
    fn new(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_owned(),
            partition: partition.to_string(),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    class: &'static str,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

/// How one InfluxDB write request ended, for `kis_influxdb_responses_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResponse {
    /// An HTTP status.
    Status(u16),
    /// No response: `timeout`, `connect` or `other`.
    Failed(&'static str),
}

/// A float gauge.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric and health flag of one sink process.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    consumed: Family<TopicLabels, Counter>,
    written: Family<TopicLabels, Counter>,
    dead_lettered: Family<RejectLabels, Counter>,
    skipped: Family<RejectLabels, Counter>,
    batches: Counter,
    batch_records: Histogram,
    batch_bytes: Histogram,
    write_duration: Histogram,
    end_to_end_latency: Histogram,
    influx_responses: Family<ResponseLabels, Counter>,
    write_retries: Family<CauseLabels, Counter>,
    last_write_seconds: FloatGauge,
    buffered_bytes: Gauge,
    in_flight_bytes: Gauge,
    registry_requests: Family<OutcomeLabels, Counter>,
    kafka_client_errors: Family<KindLabels, Counter>,
    schema_cache: Family<ResultLabels, Counter>,
    lag: Family<PartitionLabels, Gauge>,
    committed_offset: Family<PartitionLabels, Gauge>,
    stored_offset: Family<PartitionLabels, Gauge>,
    assigned_partitions: Gauge,
    paused_partitions: Gauge,
    rebalances: Family<EventLabels, Counter>,
    ready: Gauge,
    alerts: AlertMetrics,
    joined: AtomicBool,
    influx_refusal: Mutex<Option<String>>,
    kafka_refusal: Mutex<Option<String>>,
    registry_refusal: Mutex<Option<String>>,
    influx_error: Mutex<Option<TimedError>>,
    partitions: Mutex<Partitions>,
    in_flight: Arc<PartitionsInFlight>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` and hands it back.
fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn register_in<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Unit,
    metric: M,
) -> M {
    registry.register_with_unit(name, help, unit, metric.clone());
    metric
}

impl Telemetry {
    /// Creates and registers the metrics (prefix `kis_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kis");
        let r = &mut registry;
        let consumed = register(
            r,
            "records_consumed",
            "Records read from Kafka, by topic",
            Family::default(),
        );
        let written = register(
            r,
            "points_written",
            "Points acknowledged by InfluxDB, by source topic",
            Family::default(),
        );
        let dead_lettered = register(
            r,
            "records_dead_lettered",
            "Records acknowledged by the dead-letter topic, by source topic, stage and reason",
            Family::default(),
        );
        let skipped = register(
            r,
            "records_skipped",
            "Invalid records let go under dead_letter.policy = \"skip\", by topic, stage and reason",
            Family::default(),
        );
        let batches = register(
            r,
            "batches_written",
            "Batches made durable",
            Counter::default(),
        );
        let batch_records = register(
            r,
            "batch_records",
            "Records per durable batch (points and dead letters)",
            Histogram::new(exponential_buckets(1.0, 4.0, 9)),
        );
        let batch_bytes = register_in(
            r,
            "batch",
            "Line protocol per durable batch, uncompressed",
            Unit::Bytes,
            Histogram::new(exponential_buckets(1024.0, 4.0, 9)),
        );
        let write_duration = register_in(
            r,
            "write_duration",
            "Duration of one InfluxDB write request, whatever its outcome",
            Unit::Seconds,
            Histogram::new(exponential_buckets(0.001, 2.5, 12)),
        );
        let end_to_end_latency = register_in(
            r,
            "end_to_end_latency",
            "From a record's Kafka timestamp to InfluxDB acknowledging its point",
            Unit::Seconds,
            Histogram::new(exponential_buckets(0.005, 2.5, 14)),
        );
        let influx_responses = register(
            r,
            "influxdb_responses",
            "InfluxDB write responses by status class and code; class \"error\" counts requests without a response (code timeout, connect or other)",
            Family::default(),
        );
        let write_retries = register(
            r,
            "write_retries",
            "InfluxDB write attempts that failed and will be retried, by cause",
            Family::default(),
        );
        let last_write_seconds = register(
            r,
            "last_durable_batch_timestamp_seconds",
            "Unix time of the last batch made durable",
            FloatGauge::default(),
        );
        let buffered_bytes = register_in(
            r,
            "buffered",
            "Line protocol in the batch being filled",
            Unit::Bytes,
            Gauge::default(),
        );
        let in_flight_bytes = register_in(
            r,
            "in_flight",
            "Line protocol of the batches being written",
            Unit::Bytes,
            Gauge::default(),
        );
        let registry_requests = register(
            r,
            "schema_registry_requests",
            "Schema fetches from the Schema Registry, by outcome (ok, not_found, refused, error); each schema is fetched once and cached",
            Family::default(),
        );
        let kafka_client_errors = register(
            r,
            "kafka_client_errors",
            "Errors librdkafka reported for the Kafka connection, by kind (authentication, tls, unreachable, other); the log has one line per change",
            Family::default(),
        );
        let schema_cache = register(
            r,
            "schema_cache_lookups",
            "Registry-framed records by whether their schema was already cached (hit) or had to be fetched (miss)",
            Family::default(),
        );
        let lag = register(
            r,
            "consumer_lag",
            "Records between the committed offset and the end of the partition, by assigned partition",
            Family::default(),
        );
        let committed_offset = register(
            r,
            "committed_offset",
            "Last committed offset, by assigned partition",
            Family::default(),
        );
        let stored_offset = register(
            r,
            "stored_offset",
            "Last stored offset (everything before it is durable), by assigned partition",
            Family::default(),
        );
        let assigned_partitions = register(
            r,
            "assigned_partitions",
            "Partitions assigned to this member",
            Gauge::default(),
        );
        let paused_partitions = register(
            r,
            "paused_partitions",
            "Assigned partitions whose reading is paused (InfluxDB or the Schema Registry not keeping up)",
            Gauge::default(),
        );
        let rebalances = register(
            r,
            "rebalances",
            "Rebalance events of this member (assign, revoke)",
            Family::default(),
        );
        let ready = register(
            r,
            "ready",
            "1 when /readyz answers 200, else 0",
            Gauge::default(),
        );
        let alerts = AlertMetrics::register(&mut registry);
        let build_info = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("git_sha", GIT_SHA),
            ])
            .set(1);
        registry.register("build_info", "Build information", build_info);
        Self {
            registry,
            consumed,
            written,
            dead_lettered,
            skipped,
            batches,
            batch_records,
            batch_bytes,
            write_duration,
            end_to_end_latency,
            influx_responses,
            write_retries,
            last_write_seconds,
            buffered_bytes,
            in_flight_bytes,
            registry_requests,
            kafka_client_errors,
            schema_cache,
            lag,
            committed_offset,
            stored_offset,
            assigned_partitions,
            paused_partitions,
            rebalances,
            ready,
            alerts,
            joined: AtomicBool::new(false),
            influx_refusal: Mutex::new(None),
            kafka_refusal: Mutex::new(None),
            registry_refusal: Mutex::new(None),
            influx_error: Mutex::new(None),
            partitions: Mutex::new(Partitions::default()),
            in_flight: Arc::default(),
        }
    }

    /// The counter of records consumed from `topic`; callers keep it, so counting a record is
    /// one atomic add.
    pub fn consumed_counter(&self, topic: &str) -> Counter {
        self.consumed
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .clone()
    }

    /// A batch was handed to a write task.
    pub fn batch_dispatched(&self, batch: &Batch) {
        self.in_flight_bytes.inc_by(batch.line_bytes() as i64);
    }

    /// A dispatched batch's task ended, durable or abandoned.
    pub fn batch_finished(&self, batch: &Batch) {
        self.in_flight_bytes.dec_by(batch.line_bytes() as i64);
    }

    /// Batches in flight per partition: kept by the write path (and waited on by the revoke
    /// callback), read here for `/status`.
    pub fn partitions_in_flight(&self) -> Arc<PartitionsInFlight> {
        self.in_flight.clone()
    }

    /// A batch became durable: its points are in InfluxDB and its dead letters (including
    /// `refused`, the lines InfluxDB refused) acknowledged.
    pub fn batch_durable(&self, batch: &Batch, refused: &[DeadLetter]) {
        let now = unix_now();
        let mut written: Vec<(&str, u64)> = Vec::new();
        for (topic, timestamp_ms) in batch.line_origins() {
            match written.iter_mut().find(|(known, _)| *known == topic) {
                Some((_, count)) => *count += 1,
                None => written.push((topic, 1)),
            }
            if let Some(timestamp_ms) = timestamp_ms {
                // A record stamped in the future (clock skew) counts as no delay.
                let latency = (now - timestamp_ms as f64 / 1000.0).max(0.0);
                self.end_to_end_latency.observe(latency);
            }
        }
        // Refused alert lines are not record points.
        for letter in refused
            .iter()
            .filter(|letter| letter.rejection.reason != ALERT_REJECTED)
        {
            if let Some((_, count)) = written.iter_mut().find(|(known, _)| *known == letter.topic) {
                *count = count.saturating_sub(1);
            }
        }
        // A record refused twice (its point and its alert point) was dead-lettered once.
        let refused = batch.one_letter_per_record(refused);
        let refused = refused.as_ref();

        for (topic, points) in written {
            self.written
                .get_or_create(&TopicLabels {
                    topic: topic.to_owned(),
                })
                .inc_by(points);
        }
        for letter in batch.dead_letters().iter().chain(refused) {
            self.dead_lettered
                .get_or_create(&RejectLabels {
                    topic: letter.topic.clone(),
                    stage: letter.rejection.stage.as_str(),
                    reason: letter.rejection.reason,
                })
                .inc();
        }
        self.batches.inc();
        self.batch_records.observe(batch.records() as f64);
        self.batch_bytes.observe(batch.line_bytes() as f64);
        self.last_write_seconds.set(now);
        if let Ok(mut partitions) = self.partitions.lock() {
            // A partition revoked while its batch was in flight is not brought back.
            for next in batch.next_offsets() {
                if let Some(status) = partitions.get_mut(&next.topic, next.partition) {
                    status.last_durable_write = Some(now);
                }
            }
            for letter in batch.dead_letters().iter().chain(refused) {
                if let Some(status) = partitions.get_mut(&letter.topic, letter.partition) {
                    status.last_error = Some(TimedError::now(format!(
                        "offset {} dead-lettered: {}",
                        letter.offset, letter.rejection
                    )));
                }
            }
        }
    }

    /// An invalid record was skipped (lossy policy).
    pub fn skipped(&self, topic: &str, rejection: &Rejection) {
        self.skipped
            .get_or_create(&RejectLabels {
                topic: topic.to_owned(),
                stage: rejection.stage.as_str(),
                reason: rejection.reason,
            })
            .inc();
    }

    /// One InfluxDB write request ended after `duration`.
    pub fn write_attempted(&self, duration: Duration, response: WriteResponse) {
        self.write_duration.observe(duration.as_secs_f64());
        let labels = match response {
            WriteResponse::Status(code) => ResponseLabels {
                class: match code {
                    100..=199 => "1xx",
                    200..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                },
                code: code.to_string(),
            },
            WriteResponse::Failed(cause) => ResponseLabels {
                class: "error",
                code: cause.to_owned(),
            },
        };
        self.influx_responses.get_or_create(&labels).inc();
    }

    /// An InfluxDB write attempt failed for `cause` and will be retried; `message` is what the
    /// logs say.
    pub fn write_retried(&self, cause: &'static str, message: &str) {
        self.write_retries
            .get_or_create(&CauseLabels { cause })
            .inc();
        if let Ok(mut error) = self.influx_error.lock() {
            *error = Some(TimedError::now(message));
        }
    }

    /// InfluxDB accepts writes again.
    pub fn write_recovered(&self) {
        if let Ok(mut error) = self.influx_error.lock() {
            *error = None;
        }
    }

    /// Bytes of line protocol in the batch being filled.
    pub fn set_buffered_bytes(&self, bytes: usize) {
        self.buffered_bytes.set(bytes as i64);
    }

    /// The counter of registry-framed records whose schema was already cached (`hit`) or had to
    /// be fetched; callers keep it, so counting a record is one atomic add.
    pub fn schema_lookup_counter(&self, hit: bool) -> Counter {
        self.schema_cache
            .get_or_create(&ResultLabels {
                result: if hit { "hit" } else { "miss" },
            })
            .clone()
    }

    /// Partitions were assigned; `assigned` is the whole assignment now.
    pub fn partitions_assigned(&self, added: &[(String, i32)], assigned: usize) {
        self.rebalances
            .get_or_create(&EventLabels { event: "assign" })
            .inc();
        self.assigned_partitions.set(assigned as i64);
        if let Ok(mut partitions) = self.partitions.lock() {
            for (topic, partition) in added {
                partitions.entry(topic, *partition);
            }
        }
    }

    /// Partitions were revoked from this member: their series go, so that replicas never report
    /// stale values for partitions another member now owns.
    pub fn partitions_revoked(&self, revoked: &[(String, i32)]) {
        self.rebalances
            .get_or_create(&EventLabels { event: "revoke" })
            .inc();
        self.alerts.partitions_revoked(revoked);
        if let Ok(mut partitions) = self.partitions.lock() {
            for (topic, partition) in revoked {
                partitions.remove(topic, *partition);
                let labels = PartitionLabels::new(topic, *partition);
                self.lag.remove(&labels);
                self.committed_offset.remove(&labels);
                self.stored_offset.remove(&labels);
            }
        }
    }

    /// The assignment after a rebalance settled.
    pub fn set_assigned_partitions(&self, assigned: usize) {
        self.assigned_partitions.set(assigned as i64);
    }

    /// How many partitions are paused now.
    /// Reading is paused for every assigned partition (`true`), or for none.
    pub fn set_paused(&self, paused: bool) {
        if let Ok(mut partitions) = self.partitions.lock() {
            for (_, status) in partitions.iter_mut() {
                status.paused = paused;
            }
            self.paused_partitions
                .set(if paused { partitions.len() as i64 } else { 0 });
        }
    }

    /// Offsets were stored: everything before them is durable.
    pub fn stored(&self, next_offsets: &[NextOffset]) {
        if let Ok(mut partitions) = self.partitions.lock() {
            for next in next_offsets {
                // A partition revoked meanwhile is not reported again.
                if let Some(status) = partitions.get_mut(&next.topic, next.partition) {
                    status.stored_offset = Some(next.offset);
                    self.stored_offset
                        .get_or_create(&PartitionLabels::new(&next.topic, next.partition))
                        .set(next.offset);
                }
            }
        }
    }

    /// Offsets were committed.
    pub fn committed(&self, offsets: &[(String, i32, i64)]) {
        let now = unix_now();
        if let Ok(mut partitions) = self.partitions.lock() {
            for (topic, partition, offset) in offsets {
                if let Some(status) = partitions.get_mut(topic, *partition) {
                    status.committed_offset = Some(*offset);
                    status.last_commit = Some(now);
                    self.committed_offset
                        .get_or_create(&PartitionLabels::new(topic, *partition))
                        .set(*offset);
                }
            }
        }
    }

    /// librdkafka's periodic statistics: lag and end offsets of the assigned partitions.
    pub fn statistics(&self, statistics: &Statistics) {
        let Ok(mut partitions) = self.partitions.lock() else {
            return;
        };
        for (topic, topic_statistics) in &statistics.topics {
            for (partition, stats) in &topic_statistics.partitions {
                // Partition -1 is librdkafka's internal one; undesired ones are not ours.
                if *partition < 0 || !stats.desired {
                    continue;
                }
                let Some(status) = partitions.get_mut(topic, *partition) else {
                    continue;
                };
                let labels = PartitionLabels::new(topic, *partition);
                if stats.hi_offset >= 0 {
                    status.end_offset = Some(stats.hi_offset);
                }
                if stats.consumer_lag >= 0 {
                    status.lag = Some(stats.consumer_lag);
                    self.lag.get_or_create(&labels).set(stats.consumer_lag);
                } else {
                    // librdkafka does not know (no end offset yet, or one behind the committed
                    // offset): no value rather than a stale one.
                    status.lag = None;
                    self.lag.remove(&labels);
                }
                if stats.committed_offset >= 0 {
                    status.committed_offset = Some(stats.committed_offset);
                    self.committed_offset
                        .get_or_create(&labels)
                        .set(stats.committed_offset);
                }
            }
        }
    }

    /// A schema fetch from the Schema Registry ended with `outcome`.
    pub fn registry_request(&self, outcome: &'static str) {
        self.registry_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The Schema Registry refuses the sink's credentials (`Some`), or accepts them again.
    pub fn set_registry_refusal(&self, refusal: Option<String>) {
        if let Ok(mut current) = self.registry_refusal.lock() {
            *current = refusal;
        }
    }

    /// The fuel alert gauges and counters.
    pub fn alert_metrics(&self) -> &AlertMetrics {
        &self.alerts
    }

    /// The consumer joined its group (an assignment arrived, possibly empty).
    pub fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    /// InfluxDB refuses writes for a reason the operator must fix (`Some`), or accepts them again (`None`).
    pub fn set_influx_refusal(&self, refusal: Option<String>) {
        if let Ok(mut current) = self.influx_refusal.lock() {
            *current = refusal;
        }
    }

    /// librdkafka reported an error of `kind` (see [`crate::kafka_events`]).
    pub fn kafka_client_error(&self, kind: &'static str) {
        self.kafka_client_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Kafka refuses the sink (credentials, TLS) for a reason the operator must fix (`Some`),
    /// or connects again (`None`).
    pub fn set_kafka_refusal(&self, refusal: Option<String>) {
        if let Ok(mut current) = self.kafka_refusal.lock() {
            *current = refusal;
        }
    }

    /// `Ok` when ready, otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(refusal) = self.kafka_refusal.lock().ok().and_then(|r| r.clone()) {
            return Err(format!("Kafka: {refusal}"));
        }
        if !self.joined.load(Ordering::Relaxed) {
            return Err("the Kafka consumer has not joined its group yet".into());
        }
        if let Some(refusal) = self.influx_refusal.lock().ok().and_then(|r| r.clone()) {
            return Err(format!("InfluxDB refuses writes: {refusal}"));
        }
        if let Some(refusal) = self.registry_refusal.lock().ok().and_then(|r| r.clone()) {
            return Err(format!("the Schema Registry refuses the sink: {refusal}"));
        }
        Ok(())
    }

    /// The Prometheus text format 0.0.4 exposition, for scrapers that do not ask for
    /// OpenMetrics (and for `promtool check metrics`).
    pub fn render_prometheus_text(&self) -> String {
        openmetrics_to_prometheus_text(&self.render())
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        self.ready.set(i64::from(self.readiness().is_ok()));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// `/status`: readiness, totals and every assigned partition.
    pub fn status(&self) -> serde_json::Value {
        let readiness = self.readiness();
        let influx_error = self.influx_error.lock().ok().and_then(|e| e.clone());
        let partitions: Vec<serde_json::Value> = self
            .partitions
            .lock()
            .map(|partitions| {
                partitions
                    .iter()
                    .map(|((topic, partition), status)| {
                        let mut status = status.clone();
                        status.batches_in_flight = self.in_flight.count(topic, *partition);
                        // A partition with a batch waiting on a failing InfluxDB shows that
                        // failure, when it is newer than its own last error.
                        if status.batches_in_flight > 0
                            && let Some(error) = &influx_error
                            && status
                                .last_error
                                .as_ref()
                                .is_none_or(|own| own.at < error.at)
                        {
                            status.last_error = Some(error.clone());
                        }
                        let mut value = serde_json::to_value(status).unwrap_or_default();
                        if let Some(object) = value.as_object_mut() {
                            object.insert("topic".into(), json!(topic));
                            object.insert("partition".into(), json!(partition));
                        }
                        value
                    })
                    .collect()
            })
            .unwrap_or_default();
        let total = |family: &Family<TopicLabels, Counter>| -> u64 {
            partitions_topics(&partitions)
                .iter()
                .map(|topic| {
                    family
                        .get_or_create(&TopicLabels {
                            topic: topic.clone(),
                        })
                        .get()
                })
                .sum()
        };
        json!({
            "ready": readiness.is_ok(),
            "not_ready_reason": readiness.err(),
            "version": env!("CARGO_PKG_VERSION"),
            "git_sha": GIT_SHA,
            "assigned_partitions": partitions.len(),
            "records_consumed": total(&self.consumed),
            "points_written": total(&self.written),
            "batches_written": self.batches.get(),
            "last_durable_write": non_zero(self.last_write_seconds.get()),
            "influxdb_last_error": influx_error,
            "partitions": partitions,
        })
    }
}

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4: a counter family's `HELP` and
/// `TYPE` name its `_total` sample, and `UNIT` and `EOF` lines go (0.0.4 has neither).
fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

fn partitions_topics(partitions: &[serde_json::Value]) -> Vec<String> {
    let mut topics: Vec<String> = partitions
        .iter()
        .filter_map(|partition| partition["topic"].as_str().map(str::to_owned))
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

fn non_zero(value: f64) -> Option<f64> {
    (value > 0.0).then_some(value)
}

/// Serves `/metrics`, `/status`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(telemetry);
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving /metrics, /status, /healthz and /readyz");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds the telemetry address (done at start-up, so a taken port is a start-up error).
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the 0.0.4 text format otherwise.
async fn metrics(
    State(telemetry): State<Arc<Telemetry>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            telemetry.render(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            telemetry.render_prometheus_text(),
        )
    }
}

async fn status(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        telemetry.status().to_string(),
    )
}

async fn readyz(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    match telemetry.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

#[cfg(test)]
mod tests;
