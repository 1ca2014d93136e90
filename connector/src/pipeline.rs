//! The pipeline: the one loop that wires the stages together.
//!
//! ```text
//! recv ─▶ decode/validate ─▶ map ─▶ encode into batch ─┐
//!            │ rejected        │ rejected             ├─▶ dispatch: up to write_concurrency + 1 batches,
//!            └────────▶ dead letter in batch ◀────────┘   each writing lines ∥ delivering dead letters
//!                                                                   │ durable (any order)
//!                                                                   ▼
//!                                       watermark: longest durable prefix per partition → store → commit
//! ```
//! One `select!` waits for the next record, a batch finishing, the linger deadline or shutdown.
//! The assigned partitions' messages are forwarded to the sink's own queue
//! ([`crate::source::RecordQueue`]); when it holds something, up to a thousand are taken from
//! librdkafka in one call and offered in the same turn, so a backlog costs neither a turn of the
//! `select!` nor a librdkafka poll per record. Where reading must stop partway, the rest are
//! held, in order.
//! A full (or lingered) batch is dispatched to its own write task while there is room; batches
//! finish in any order, and [`crate::watermark`] stores a partition's offset only up to the
//! longest prefix of its batches that are all durable.
//!
//! When the batch is full and every slot is taken (InfluxDB slow, down or refusing the sink),
//! reading stops. After a second of that the assigned partitions are paused and the consumer is
//! still polled: the member stays in its group (no `max.poll.interval.ms` eviction), rebalances
//! are served, and memory stays bounded by `write_concurrency` + 1 batches plus librdkafka's capped
//! prefetch. A record from a partition assigned during the pause is held back, its partition
//! paused too, and processed first once reading resumes, in order.
//!
//! A record naming a Schema Registry schema the sink has not fetched yet waits the same way: it
//! is held, first in line, while [`crate::registry`] fetches the schema (retrying as long as
//! the registry is down), and reading stops meanwhile. Once the registry answers, the record
//! is decoded (or dead-lettered, if the registry does not know the schema) and reading resumes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rdkafka::Message;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::OwnedMessage;
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::alerts::{AlertRules, Level};
use crate::batch::{Batch, BatchPolicy, Written};
use crate::config::Config;
use crate::dead_letter::{DeadLetter, DeadLetterProducer, DeadLetterSink};
use crate::decode::{CachedSchema, SchemaKey};
use crate::inflight::{Completed, InFlight, TaskFailed};
use crate::kafka_events::{KafkaEvents, Trouble};
use crate::map::Mapping;
use crate::metrics::{self, Telemetry};
use crate::registry::{RegistryClient, RegistryError};
use crate::source::{self, Received, RecordQueue, SourceConsumer};
pub use crate::stages::InvalidRecord;
use crate::stages::{Accepted, Stages};
use crate::write::InfluxWriter;

/// What a run did, reported at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read from Kafka.
    pub consumed: u64,
    /// Points acknowledged by InfluxDB (alert points not included).
    pub written: u64,
    /// Fuel alert points acknowledged by InfluxDB.
    pub alert_points: u64,
    /// Records acknowledged by the dead-letter topic.
    pub dead_lettered: u64,
    /// Batches made durable.
    pub batches: u64,
}

/// Why the sink could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Kafka consumer or producer could not be created.
    #[error("cannot start the Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The InfluxDB writer could not be created.
    #[error(transparent)]
    Write(#[from] crate::write::WriteError),
    /// An invalid record under `dead_letter.policy = "fail"`.
    #[error("{0}")]
    InvalidRecord(InvalidRecord),
    /// The metrics address cannot be bound.
    #[error("cannot listen on {address} (metrics.listen): {source}")]
    Telemetry {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A write task failed (a bug); the sink stops rather than guess what is durable.
    #[error(transparent)]
    TaskFailed(#[from] TaskFailed),
    /// The local schemas could not be compiled.
    #[error("cannot compile the local schemas: {0}")]
    Schema(String),
    /// The Schema Registry client could not be set up.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A record waiting to be processed, and how often its partition had been revoked when it was
/// held: if that changed, the partition was taken away (and maybe given back) meanwhile, and
/// the record will be read again from the committed offset.
struct Held {
    message: OwnedMessage,
    revocations: u64,
}

/// A schema being fetched from the registry.
struct SchemaFetch {
    key: SchemaKey,
    task: tokio::task::JoinHandle<Option<CachedSchema>>,
}

/// The stages, built from the configuration, and the state between them.
struct Pipeline {
    consumer: Arc<SourceConsumer>,
    /// The assigned partitions' messages, taken a batch at a time.
    records: Arc<RecordQueue>,
    stages: Stages,
    policy: BatchPolicy,
    in_flight: InFlight,
    /// The batch being filled.
    batch: Batch,
    /// Durable batches, emptied, to be filled next: their buffers are already the size a batch
    /// grows to. Allocated afresh, every batch's buffers were new pages to fault in and zero.
    /// At most one per batch in flight: several writes can end between two dispatches.
    spares: Vec<Batch>,
    /// Records received while reading was paused, or waiting for their schema; processed
    /// first, in order.
    held: VecDeque<Held>,
    /// Fetches the schemas records name, when a registry is configured.
    registry: Option<RegistryClient>,
    /// The schema fetch the first held record waits for.
    schema_fetch: Option<SchemaFetch>,
    /// Ends schema fetches at shutdown.
    shutdown: CancellationToken,
    summary: RunSummary,
    telemetry: Arc<Telemetry>,
    /// Records taken, counted.
    consumed: Consumed,
}

/// Runs the sink until `shutdown` is cancelled, then drains: the buffered batch is dispatched,
/// batches in flight get at most the configured shutdown timeout to become durable, durable
/// offsets are committed and the consumer leaves its group.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<RunSummary, RunError> {
    let telemetry = Arc::new(Telemetry::new());
    for warning in &config.warnings {
        warn!("{warning}");
    }
    if let Some(alerts) = &config.alerts {
        telemetry
            .alert_metrics()
            .set_max_generators(alerts.max_generators);
        log_if_alerts_cannot_fire(alerts, &config.mapping);
    }
    let server = match config.metrics_listen {
        Some(address) => {
            let listener = metrics::bind(address)
                .await
                .map_err(|source| RunError::Telemetry { address, source })?;
            Some(tokio::spawn(metrics::serve(
                listener,
                telemetry.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let partitions_in_flight = telemetry.partitions_in_flight();
    let (consumer, records) = source::subscribe(
        &config.kafka,
        telemetry.clone(),
        partitions_in_flight.clone(),
        config.shutdown_timeout.min(MAX_REVOKE_WAIT),
    )?;
    let producer_events = Arc::new(KafkaEvents::new(
        "dead-letter producer",
        telemetry.clone(),
        false,
        config.kafka.secret_values(),
    ));
    let producer = DeadLetterProducer::new(
        &config.kafka.dead_letter_producer_config(),
        producer_events.clone(),
    )?;
    let writer = InfluxWriter::new(&config.influxdb, telemetry.clone())?;
    let registry = config
        .schema_registry
        .clone()
        .map(|settings| RegistryClient::new(settings, telemetry.clone()))
        .transpose()?;
    let decoder = config
        .schema
        .decoder(registry.is_some())
        .map_err(RunError::Schema)?;
    info!(
        topics = ?config.kafka.topics,
        group = config.kafka.group_id,
        influxdb = %writer.endpoint(),
        write_concurrency = config.influxdb.write_concurrency,
        schema_registry = registry.as_ref().map(|registry| registry.endpoint().as_str()),
        "sink started"
    );

    // In-flight writes may finish during the grace period; past it they are abandoned
    // (uncommitted, so re-read after restart).
    let abandon = CancellationToken::new();
    let grace = config.shutdown_timeout;
    let watchdog = {
        let (shutdown, abandon) = (shutdown.clone(), abandon.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
            abandon.cancel();
        })
    };
    let writer_state = writer.clone();
    let dead_letters = Arc::new(DeadLetterSink::new(
        producer,
        producer_events,
        config.dead_letter.topic_template.clone(),
        config.influxdb.backoff,
    ));
    let mut pipeline = Pipeline {
        consumer: consumer.clone(),
        records,
        stages: Stages::new(
            decoder,
            config.mapping.clone(),
            config.alerts.clone(),
            config.dead_letter.policy,
            telemetry.clone(),
        ),
        policy: config.batch,
        // One batch more than requests at once: it is compressed and waiting while the others
        // are written ([`InfluxWriter`] holds the requests to `write_concurrency`).
        in_flight: InFlight::new(
            config.influxdb.write_concurrency + 1,
            writer,
            dead_letters,
            abandon.clone(),
            consumer.clone(),
            partitions_in_flight,
            telemetry.clone(),
        ),
        batch: Batch::default(),
        spares: Vec::new(),
        held: VecDeque::new(),
        registry,
        schema_fetch: None,
        shutdown: shutdown.clone(),
        summary: RunSummary::default(),
        telemetry: telemetry.clone(),
        consumed: Consumed {
            total: 0,
            counters: Vec::new(),
            telemetry: telemetry.clone(),
        },
    };
    let outcome = pipeline.consume(&shutdown).await;
    // Whatever ended consuming, the drain gets the same bounded grace period; after a give-up
    // there is nothing to wait for.
    shutdown.cancel();
    if writer_state.gave_up() {
        abandon.cancel();
    }

    info!(
        buffered_records = pipeline.batch.records(),
        in_flight = pipeline.in_flight.len(),
        "stopping: finishing what is buffered and in flight, then committing"
    );
    let drained = pipeline.drain().await;
    if let Err(error) = source::commit_stored(&pipeline.consumer) {
        warn!(%error, "final commit failed; uncommitted records are re-read and rewritten (idempotently) on restart");
    }
    pipeline.consumer.unsubscribe();
    watchdog.abort();
    if let Some(server) = server {
        let _ = server.await;
    }
    let summary = RunSummary {
        consumed: pipeline.consumed.total,
        ..pipeline.summary
    };
    info!(
        consumed = summary.consumed,
        written = summary.written,
        alert_points = summary.alert_points,
        dead_lettered = summary.dead_lettered,
        batches = summary.batches,
        "sink stopped"
    );
    // Everything durable is committed by now, so a client that cannot close (a broker that
    // never answers the group leave) must not keep the process from exiting.
    if !drop_within((pipeline, consumer), CLIENT_CLOSE_TIMEOUT).await {
        warn!(
            timeout_ms = CLIENT_CLOSE_TIMEOUT.as_millis(),
            "the Kafka clients did not close in time; exiting anyway (every durable offset is committed)"
        );
    }
    drained?;
    match outcome {
        Err(Stop::Invalid(invalid)) => Err(RunError::InvalidRecord(invalid)),
        Err(Stop::TaskFailed(failed)) => Err(RunError::TaskFailed(failed)),
        Ok(()) => Ok(summary),
    }
}

/// Why consuming stopped before shutdown was requested.
enum Stop {
    /// An invalid record under `dead_letter.policy = "fail"`.
    Invalid(InvalidRecord),
    /// A write task failed.
    TaskFailed(TaskFailed),
}

impl Pipeline {
    /// The main loop: read, batch, dispatch, complete, until shutdown or a stop.
    async fn consume(&mut self, shutdown: &CancellationToken) -> Result<(), Stop> {
        let mut last_receive_error = String::new();
        // Since when the full batch has been waiting for a free write slot, and whether the
        // partitions are paused because of it.
        let mut blocked_since: Option<Instant> = None;
        let mut paused = false;
        let mut linger_alarm = Alarm::new();
        let mut pause_alarm = Alarm::new();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            // Records held back while paused come first, in order, as long as there is room.
            if !self.held.is_empty() && !self.blocked() {
                self.forget_revoked_held();
            }
            loop {
                // Before each record, as for records read afresh: a full batch goes out first
                // if a slot is free (a slot may have freed up since the batch filled).
                self.dispatch_if_full();
                if self.blocked() {
                    break;
                }
                let Some(held) = self.held.pop_front() else {
                    break;
                };
                match offer(
                    &self.stages,
                    &mut self.batch,
                    &mut self.consumed,
                    &held.message,
                )? {
                    Accepted::Taken => {}
                    Accepted::NeedsSchema(key) => {
                        self.held.push_front(held);
                        self.fetch_schema(key);
                    }
                }
            }
            self.telemetry.set_buffered_bytes(self.batch.line_bytes());
            let blocked = self.blocked();
            if blocked {
                blocked_since.get_or_insert_with(Instant::now);
            } else {
                blocked_since = None;
                if paused {
                    paused = false;
                    resume_assignment(&self.consumer);
                }
            }
            linger_alarm.set(if self.in_flight.has_room() {
                self.batch.deadline(&self.policy)
            } else {
                None
            });
            pause_alarm.set(if paused {
                None
            } else {
                blocked_since.map(|since| since + PAUSE_AFTER)
            });
            tokio::select! {
                biased;
                () = &mut cancelled => return Ok(()),
                Some(completed) = self.in_flight.next_completed(), if !self.in_flight.is_empty() => {
                    self.complete(completed.map_err(Stop::TaskFailed)?);
                }
                () = linger_alarm.ring() => self.dispatch(),
                fetched = wait_for_schema(&mut self.schema_fetch), if self.schema_fetch.is_some() => {
                    self.learn_schema(fetched);
                }
                () = pause_alarm.ring() => {
                    paused = true;
                    let why = if self.schema_fetch.is_some() {
                        "waiting for a schema from the Schema Registry"
                    } else {
                        "writes not durable yet, no write slot free"
                    };
                    pause_assignment(&self.consumer, why);
                }
                () = self.records.wait(), if !blocked || paused => {
                    if blocked {
                        self.hold_newly_assigned(&mut last_receive_error);
                    } else {
                        self.take_queued(&mut last_receive_error)?;
                    }
                }
                // Serves rebalances. Only a partition that could not be forwarded to the record
                // queue delivers messages here, one per turn.
                received = self.consumer.recv(), if !blocked || paused => match received {
                    Ok(message) if blocked => self.hold_assigned_during_pause(message.detach()),
                    Ok(message) => {
                        last_receive_error.clear();
                        match offer(&self.stages, &mut self.batch, &mut self.consumed, &message)? {
                            Accepted::Taken => {}
                            Accepted::NeedsSchema(key) => self.hold_for_schema(message.detach(), key),
                        }
                    }
                    Err(error) => note_receive_error(&mut last_receive_error, &error),
                },
            }
        }
    }

    /// Takes the records waiting in the record queue, up to [`READY_PER_TURN`] (or what the
    /// batch has room for while no write slot is free), and offers them in order. Where reading
    /// must stop (a full batch with no write slot, a record waiting for its schema) the rest
    /// are held, in order: librdkafka has moved past them, so none may be let go unprocessed.
    /// Under `dead_letter.policy = "fail"` an invalid record stops the sink, and what is left
    /// of the take is never stored, so it is read again after a restart.
    fn take_queued(&mut self, last_receive_error: &mut String) -> Result<(), Stop> {
        let max = if self.in_flight.has_room() {
            READY_PER_TURN
        } else {
            self.policy
                .max_records
                .saturating_sub(self.batch.records())
                .clamp(1, READY_PER_TURN)
        };
        for queued in self.records.take(max) {
            let message = match queued.checked() {
                Ok(message) => message,
                Err(error) => {
                    note_receive_error(last_receive_error, &error);
                    continue;
                }
            };
            last_receive_error.clear();
            self.dispatch_if_full();
            if self.blocked() {
                self.hold_back(message.detach());
                continue;
            }
            match offer(&self.stages, &mut self.batch, &mut self.consumed, message)? {
                Accepted::Taken => {}
                Accepted::NeedsSchema(key) => self.hold_for_schema(message.detach(), key),
            }
        }
        Ok(())
    }

    /// While reading is paused, only a partition assigned during the pause delivers: holds its
    /// records, in order, and pauses it too.
    fn hold_newly_assigned(&mut self, last_receive_error: &mut String) {
        for queued in self.records.take(READY_PER_TURN) {
            match queued.checked() {
                Ok(message) => self.hold_assigned_during_pause(message.detach()),
                Err(error) => note_receive_error(last_receive_error, &error),
            }
        }
    }

    /// Holds `message`, from a partition assigned while reading was paused, and pauses that
    /// partition too.
    fn hold_assigned_during_pause(&mut self, message: OwnedMessage) {
        pause_partition(&self.consumer, message.topic(), message.partition());
        self.hold_back(message);
    }

    /// Holds `message`, last in line.
    fn hold_back(&mut self, message: OwnedMessage) {
        let held = self.held(message);
        self.held.push_back(held);
    }

    /// Lets go of held records whose partition was revoked while they waited, even if it was
    /// given back since: their offsets were never stored, so whoever owns the partition now
    /// (this member included) reads them again from the committed offset. Processing them here
    /// would write them twice and could store an offset behind one another member committed.
    fn forget_revoked_held(&mut self) {
        let context = self.consumer.context();
        let before = self.held.len();
        self.held.retain(|held| {
            context.revocations(held.message.topic(), held.message.partition()) == held.revocations
        });
        let released = before - self.held.len();
        if released > 0 {
            info!(
                released,
                "held records of revoked partitions let go; their new owner reads them from the committed offset"
            );
        }
    }

    /// Holds `message`, first in line, until `key`'s schema is fetched.
    fn hold_for_schema(&mut self, message: OwnedMessage, key: SchemaKey) {
        let held = self.held(message);
        self.held.push_front(held);
        self.fetch_schema(key);
    }

    /// `message`, to be held, with its partition's revocation count now.
    fn held(&self, message: OwnedMessage) -> Held {
        let revocations = self
            .consumer
            .context()
            .revocations(message.topic(), message.partition());
        Held {
            message,
            revocations,
        }
    }

    /// Starts fetching `key`'s schema; the held record waits for it.
    fn fetch_schema(&mut self, key: SchemaKey) {
        if self.schema_fetch.is_some() {
            return;
        }
        let Some(registry) = self.registry.clone() else {
            // The decoder only asks for schemas when a registry is configured.
            return;
        };
        let reader = self.stages.decoder().reader_schema();
        let stop = self.shutdown.clone();
        debug!(%key, "fetching a schema from the Schema Registry");
        self.schema_fetch = Some(SchemaFetch {
            key,
            task: tokio::spawn(async move { registry.resolve(key, reader, &stop).await }),
        });
    }

    /// Takes in what the registry said; the held record is decoded next.
    fn learn_schema(&mut self, fetched: Result<Option<CachedSchema>, tokio::task::JoinError>) {
        let Some(fetch) = self.schema_fetch.take() else {
            return;
        };
        match fetched {
            Ok(Some(schema)) => self.stages.decoder_mut().learn(fetch.key, schema),
            // Shutdown: the record stays held and uncommitted.
            Ok(None) => {}
            // The held record asks again when it is offered next.
            Err(error) => warn!(key = %fetch.key, %error, "schema fetch task failed; retrying"),
        }
    }

    /// Reading must wait: for a write slot (the batch is full) or for a schema.
    fn blocked(&self) -> bool {
        self.schema_fetch.is_some()
            || (self.batch.is_full(&self.policy) && !self.in_flight.has_room())
    }

    fn dispatch_if_full(&mut self) {
        if self.batch.is_full(&self.policy) && self.in_flight.has_room() {
            self.dispatch();
        }
    }

    /// Hands the current batch to a write task.
    fn dispatch(&mut self) {
        if !self.batch.is_empty() {
            let next = self.spares.pop().unwrap_or_else(|| self.batch.sized_like());
            let batch = std::mem::replace(&mut self.batch, next);
            self.in_flight.dispatch(batch);
        }
    }

    /// Accounts for a finished batch (its task already stored the offsets it made safe).
    fn complete(&mut self, completed: Completed) {
        let Completed { id, batch, outcome } = completed;
        let Ok(refused) = outcome else {
            // Abandoned at shutdown: its offsets, and any behind them, stay unstored.
            return;
        };
        let taken = batch.written(&refused);
        let alert_points: usize = taken.alert_points.iter().sum();
        self.summary.alert_points += alert_points as u64;
        let written = taken.points as u64;
        self.summary.written += written;
        // What went to the dead-letter topic: a record refused twice (point and alert) once.
        let delivered = batch.one_letter_per_record(&refused);
        self.summary.dead_lettered += (batch.dead_letters().len() + delivered.len()) as u64;
        self.summary.batches += 1;
        self.telemetry.batch_durable(&batch, &refused);
        if self.stages.alerts_enabled() {
            self.alerts_durable(&batch, &refused, taken);
        }
        debug!(
            batch = id,
            points = written,
            alert_points,
            dead_letters = batch.dead_letters().len() + delivered.len(),
            bytes = batch.line_bytes(),
            "batch durable"
        );
        self.recycle(batch);
    }

    /// Keeps a durable batch's buffers for the next batch to fill.
    fn recycle(&mut self, mut batch: Batch) {
        if self.spares.len() < self.in_flight.limit() {
            batch.clear();
            self.spares.push(batch);
        }
    }

    /// Counts a durable batch's alert points and shows its readings on the gauges.
    fn alerts_durable(&self, batch: &Batch, refused: &[DeadLetter], taken: Written) {
        let metrics = self.telemetry.alert_metrics();
        for level in Level::ALL {
            metrics.alert_points_written(level, taken.alert_points[level.index()] as u64);
        }
        // A batch of a partition revoked meanwhile finishes after the rebalance callback removed
        // that partition's series (the callback runs on this task, inside `recv`): showing its
        // readings would bring back series this member no longer updates.
        // Read once per batch; looking each reading up in librdkafka's list would copy its topic
        // name into a C string every time.
        let assignment = self.consumer.assignment().ok();
        let assigned: Option<Vec<(String, i32)>> = assignment.as_ref().map(|assignment| {
            assignment
                .elements()
                .iter()
                .map(|element| (element.topic().to_owned(), element.partition()))
                .collect()
        });
        metrics.update(batch.written_readings(refused).filter(|reading| {
            assigned.as_ref().is_none_or(|assigned| {
                assigned.iter().any(|(topic, partition)| {
                    *partition == reading.partition && topic == reading.topic
                })
            })
        }));
    }

    /// At shutdown: dispatches the buffered batch and waits for every batch in flight (each
    /// gives up at the shutdown deadline, uncommitted).
    async fn drain(&mut self) -> Result<(), RunError> {
        self.dispatch();
        while let Some(completed) = self.in_flight.next_completed().await {
            match completed {
                Ok(completed) if completed.outcome.is_err() => warn!(
                    records = completed.batch.records(),
                    "shutdown timeout reached before a batch was durable; it stays uncommitted and is re-read on restart"
                ),
                Ok(completed) => self.complete(completed),
                Err(failed) => return Err(failed.into()),
            }
        }
        Ok(())
    }
}

/// Says at start-up when the mapping cannot produce what alerts read: enabled by default, they
/// would otherwise quietly never fire for a mapping that renames the id tag or fuel field. Only
/// `info`: a sink for other data than generators is not misconfigured.
fn log_if_alerts_cannot_fire(alerts: &AlertRules, mapping: &Mapping) {
    if !mapping.writes_tag(&alerts.id_tag) {
        info!(
            id_tag = alerts.id_tag,
            "fuel alerts: the mapping writes no tag named alerts.id_tag, so no record raises an alert (alerts.enabled = false turns them off)"
        );
    } else if !mapping.may_write_field(&alerts.fuel_field) {
        info!(
            fuel_field = alerts.fuel_field,
            "fuel alerts: the mapping writes no field named alerts.fuel_field, so no record raises an alert (alerts.enabled = false turns them off)"
        );
    }
}

/// Records taken into batches (one waiting for its schema counts once taken), with the
/// per-topic counters cached: counting is a short scan and an atomic add.
struct Consumed {
    total: u64,
    counters: Vec<(String, Counter)>,
    telemetry: Arc<Telemetry>,
}

impl Consumed {
    fn count(&mut self, topic: &str) {
        self.total += 1;
        match self.counters.iter().find(|(known, _)| known == topic) {
            Some((_, counter)) => {
                counter.inc();
            }
            None => {
                let counter = self.telemetry.consumed_counter(topic);
                counter.inc();
                self.counters.push((topic.to_owned(), counter));
            }
        }
    }
}

/// Offers a record to the stages and counts it once taken; under `dead_letter.policy = "fail"`
/// a bad one stops the sink. Its topic name is looked up once ([`Received`]).
fn offer<M: Message>(
    stages: &Stages,
    batch: &mut Batch,
    consumed: &mut Consumed,
    message: &M,
) -> Result<Accepted, Stop> {
    let received = Received::new(message);
    let accepted = stages
        .accept(&received, batch)
        .map_err(|invalid| Stop::Invalid(stop_on(invalid)))?;
    if accepted == Accepted::Taken {
        consumed.count(received.topic());
    }
    Ok(accepted)
}

/// Waits for the schema fetch in progress (the caller only polls this while there is one).
async fn wait_for_schema(
    fetch: &mut Option<SchemaFetch>,
) -> Result<Option<CachedSchema>, tokio::task::JoinError> {
    match fetch {
        Some(fetch) => (&mut fetch.task).await,
        None => std::future::pending().await,
    }
}

/// Logs the record that stops the sink under `dead_letter.policy = "fail"`.
fn stop_on(invalid: InvalidRecord) -> InvalidRecord {
    error!(
        topic = invalid.topic,
        partition = invalid.partition,
        offset = invalid.offset,
        rejection = %invalid.rejection,
        "invalid record and dead_letter.policy = \"fail\": stopping; its offset is not committed"
    );
    invalid
}

/// A deadline kept across turns of the loop. The loop turns once per record; a fresh `sleep`
/// each turn would insert a timer and wake the timer driver every time, so this one is reset
/// only when its deadline changes.
struct Alarm {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    deadline: Option<Instant>,
}

impl Alarm {
    /// An alarm with no deadline: it never rings.
    fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            deadline: None,
        }
    }

    /// Rings at `deadline` (at once if it has passed), or never for `None`.
    fn set(&mut self, deadline: Option<Instant>) {
        if deadline != self.deadline {
            if let Some(deadline) = deadline {
                self.sleep.as_mut().reset(deadline.into());
            }
            self.deadline = deadline;
        }
    }

    /// Waits until the deadline.
    async fn ring(&mut self) {
        if self.deadline.is_some() {
            self.sleep.as_mut().await;
        } else {
            std::future::pending::<()>().await;
        }
    }
}

/// Longest a revoke waits for the revoked partitions' writes: the rebalance callback blocks the
/// polling thread meanwhile, so it must stay well below `max.poll.interval.ms` and not stall the
/// group's rebalance for long while InfluxDB is down.
const MAX_REVOKE_WAIT: Duration = Duration::from_secs(5);

/// Longest the Kafka clients get to close after the final commit: the consumer leaves its
/// group, the dead-letter producer flushes and librdkafka joins its threads.
const CLIENT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Drops `value` on a thread of its own and waits at most `timeout` for that to finish. Returns
/// whether it did; if not, the thread is left to finish (or to die with the process).
///
/// rust-rdkafka's consumer drop polls until librdkafka reports the consumer closed, with no
/// deadline, and `rd_kafka_destroy` waits for the broker threads.
async fn drop_within<T: Send + 'static>(value: T, timeout: Duration) -> bool {
    let (dropped, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            drop(value);
            let _ = dropped.send(());
        });
    match spawned {
        Ok(_) => matches!(tokio::time::timeout(timeout, done).await, Ok(Ok(()))),
        // No thread to spare: drop here, without a deadline.
        Err(error) => {
            warn!(%error, "cannot start a thread to close the Kafka clients; closing them here");
            true
        }
    }
}

/// Logs a consumer error once until another one comes: librdkafka recovers by itself
/// (reconnects, rejoins).
fn note_receive_error(last: &mut String, error: &rdkafka::error::KafkaError) {
    let text = error.to_string();
    // Connection trouble also arrives as a global error, which `kafka_events` reports once.
    if Trouble::of(error.rdkafka_error_code(), "") != Trouble::Other {
        debug!(
            error = text,
            "Kafka consumer error (reported by the client's error callback)"
        );
        return;
    }
    if text != *last {
        warn!(
            error = text,
            "Kafka consumer error; librdkafka keeps retrying"
        );
        *last = text;
    }
}

/// Records taken from librdkafka's queue in one turn of the loop at most, so that completions,
/// the linger deadline and shutdown are still looked at every few milliseconds.
const READY_PER_TURN: usize = 1000;

/// How long reading may wait for a free write slot before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

fn pause_assignment(consumer: &SourceConsumer, why: &str) {
    match consumer.assignment() {
        Ok(assignment) if assignment.count() > 0 => match consumer.pause(&assignment) {
            Ok(()) => {
                consumer.context().telemetry.set_paused(true);
                info!(
                    partitions = assignment.count(),
                    why,
                    "partitions paused until reading can go on (the group membership stays alive)"
                );
            }
            Err(error) => warn!(%error, "cannot pause partitions"),
        },
        Ok(_) => {}
        Err(error) => warn!(%error, "cannot read the assignment to pause it"),
    }
}

fn pause_partition(consumer: &SourceConsumer, topic: &str, partition: i32) {
    let mut list = TopicPartitionList::with_capacity(1);
    list.add_partition(topic, partition);
    match consumer.pause(&list) {
        // Only while everything else is paused too.
        Ok(()) => consumer.context().telemetry.set_paused(true),
        Err(error) => warn!(%error, topic, partition, "cannot pause a newly assigned partition"),
    }
}

fn resume_assignment(consumer: &SourceConsumer) {
    match consumer.assignment() {
        Ok(assignment) => match consumer.resume(&assignment) {
            Ok(()) => {
                consumer.context().telemetry.set_paused(false);
                info!(
                    partitions = assignment.count(),
                    "reading goes on: partitions resumed"
                );
            }
            Err(error) => warn!(%error, "cannot resume partitions"),
        },
        Err(error) => warn!(%error, "cannot read the assignment to resume it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands for a client whose drop blocks until released.
    struct StuckClient(std::sync::mpsc::Receiver<()>);

    impl Drop for StuckClient {
        fn drop(&mut self) {
            let _ = self.0.recv();
        }
    }

    #[tokio::test]
    async fn a_client_that_cannot_close_does_not_hold_the_exit() {
        let (release, released) = std::sync::mpsc::channel();
        let started = Instant::now();
        let closed = drop_within(StuckClient(released), Duration::from_millis(200)).await;
        assert!(!closed);
        assert!(started.elapsed() < Duration::from_secs(5));
        release.send(()).expect("the drop thread is still waiting");
    }

    #[tokio::test]
    async fn a_client_that_closes_is_dropped_before_returning() {
        let (release, released) = std::sync::mpsc::channel();
        release.send(()).expect("receiver alive");
        let dropped = Arc::new(());
        let witness = dropped.clone();
        assert!(drop_within((StuckClient(released), witness), Duration::from_secs(5)).await);
        assert_eq!(Arc::strong_count(&dropped), 1);
    }
}
