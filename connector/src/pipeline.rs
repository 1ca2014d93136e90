//! The pipeline: the one loop that wires the stages together.
//!
//! ```text
//! recv ─▶ decode/validate ─▶ map ─▶ encode into batch ─┐
//!            │ rejected        │ rejected             ├─▶ flush: write lines ∥ deliver dead letters
//!            └────────▶ dead letter in batch ◀────────┘            │ both durable
//!                                                                   ▼
//!                                                          store offsets → commit
//! ```
//! One `select!` waits for the next record, the batch's linger deadline or shutdown. A flush
//! finishes before the next record is read, so a batch always covers a contiguous offset range
//! of each partition and its highest offset is safe to store once the batch is durable.
//!
//! A flush that takes longer than a second (InfluxDB slow, down or refusing the sink) pauses the
//! assigned partitions and keeps polling the consumer until it completes: the member stays in
//! its group (no `max.poll.interval.ms` eviction), rebalances are served, and memory stays
//! bounded by librdkafka's capped prefetch. A record from a partition assigned during the pause
//! is held back, its partition paused too, and processed first after the flush, in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::batch::{Batch, BatchPolicy};
use crate::config::Config;
use crate::dead_letter::{DeadLetter, DeadLetterSink, InvalidRecordPolicy};
use crate::decode::Decoder;
use crate::line_protocol;
use crate::map::{KafkaContext, Mapping};
use crate::metrics::{self, Telemetry};
use crate::reject::{Rejection, Stage};
use crate::source::{self, SourceConsumer};
use crate::write::InfluxWriter;

/// What a run did, reported at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read from Kafka.
    pub consumed: u64,
    /// Points acknowledged by InfluxDB.
    pub written: u64,
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
    /// The schema could not be compiled.
    #[error("cannot compile the JSON Schema: {0}")]
    Schema(String),
}

/// The record that stopped the sink under `dead_letter.policy = "fail"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid record at {topic}[{partition}]@{offset}: {rejection}")]
pub struct InvalidRecord {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Why it was rejected.
    pub rejection: Rejection,
}

/// The stages, built from the configuration.
struct Pipeline {
    consumer: SourceConsumer,
    decoder: Decoder,
    mapping: Mapping,
    writer: InfluxWriter,
    dead_letters: DeadLetterSink,
    policy: BatchPolicy,
    invalid_record_policy: InvalidRecordPolicy,
    /// Records received while paused during a long flush, processed next, in order.
    held: VecDeque<OwnedMessage>,
    summary: RunSummary,
    telemetry: Arc<Telemetry>,
}

/// Runs the sink until `shutdown` is cancelled, then drains: the current batch is written
/// (for at most the configured shutdown timeout), durable offsets are committed and the
/// consumer leaves its group.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<RunSummary, RunError> {
    let telemetry = Arc::new(Telemetry::new());
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
    let consumer = source::subscribe(&config.kafka, telemetry.clone())?;
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    let writer = InfluxWriter::new(&config.influxdb, telemetry.clone())?;
    let decoder = Decoder::new(config.schema.format, config.schema.json_schema.as_ref())
        .map_err(RunError::Schema)?;
    info!(
        topics = ?config.kafka.topics,
        group = config.kafka.group_id,
        influxdb = %writer.endpoint(),
        "sink started"
    );
    let mut pipeline = Pipeline {
        consumer,
        decoder,
        mapping: config.mapping.clone(),
        writer,
        dead_letters: DeadLetterSink::new(
            producer,
            config.dead_letter.topic_template.clone(),
            config.influxdb.backoff,
        ),
        policy: config.batch,
        invalid_record_policy: config.dead_letter.policy,
        held: VecDeque::new(),
        summary: RunSummary::default(),
        telemetry,
    };

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

    let mut batch = Batch::default();
    let mut last_receive_error = String::new();
    let mut failure = None;
    'run: loop {
        // Records held back while a long flush had consumption paused come first, in order.
        while let Some(message) = pipeline.held.pop_front() {
            pipeline.summary.consumed += 1;
            pipeline.telemetry.consumed(1);
            if let Err(invalid) = pipeline.accept(&message, &mut batch) {
                failure = Some(stop_on(invalid));
                break 'run;
            }
            if batch.is_full(&pipeline.policy)
                && pipeline.flush(&mut batch, &abandon).await.is_err()
            {
                break 'run;
            }
        }
        let deadline = batch.deadline(&pipeline.policy);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = sleep_until(deadline) => {
                if pipeline.flush(&mut batch, &abandon).await.is_err() {
                    break;
                }
            }
            received = pipeline.consumer.recv() => match received {
                Ok(message) => {
                    pipeline.summary.consumed += 1;
                    pipeline.telemetry.consumed(1);
                    last_receive_error.clear();
                    if let Err(invalid) = pipeline.accept(&message, &mut batch) {
                        failure = Some(stop_on(invalid));
                        break;
                    }
                }
                Err(error) => {
                    // librdkafka recovers by itself (reconnects, rejoins); say so once per error.
                    let text = error.to_string();
                    if text != last_receive_error {
                        warn!(error = text, "Kafka consumer error; librdkafka keeps retrying");
                        last_receive_error = text;
                    }
                }
            },
        }
        if batch.is_full(&pipeline.policy) && pipeline.flush(&mut batch, &abandon).await.is_err() {
            break;
        }
    }

    info!(
        buffered_records = batch.records(),
        "stopping: writing what is buffered, then committing"
    );
    if !batch.is_empty() && pipeline.flush(&mut batch, &abandon).await.is_err() {
        warn!(
            records = batch.records(),
            "shutdown timeout reached before the last batch was durable; it stays uncommitted and is re-read on restart"
        );
    }
    if let Err(error) = source::commit_stored(&pipeline.consumer) {
        warn!(%error, "final commit failed; uncommitted records are re-read and rewritten (idempotently) on restart");
    }
    pipeline.consumer.unsubscribe();
    watchdog.abort();
    if let Some(server) = server {
        let _ = server.await;
    }
    let summary = pipeline.summary;
    if let Some(invalid) = failure {
        return Err(RunError::InvalidRecord(invalid));
    }
    info!(
        consumed = summary.consumed,
        written = summary.written,
        dead_lettered = summary.dead_lettered,
        batches = summary.batches,
        "sink stopped"
    );
    Ok(summary)
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The flush was abandoned at shutdown; nothing of the batch was stored.
struct Abandoned;

impl Pipeline {
    /// Decodes, maps and encodes one record into the batch, or adds it as a dead letter.
    /// Decodes, maps and encodes one record into the batch; a rejected record is handled by
    /// the invalid-record policy. Under `fail` the rejection is returned and nothing of the
    /// record enters the batch, so its offset is never stored.
    fn accept<M: Message>(&self, message: &M, batch: &mut Batch) -> Result<(), InvalidRecord> {
        let now = Instant::now();
        let rejection = match self.encode(message, batch) {
            Ok(()) => {
                batch.add_point(message, now);
                return Ok(());
            }
            Err(rejection) => rejection,
        };
        match self.invalid_record_policy {
            InvalidRecordPolicy::DeadLetter => {
                debug!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    stage = %rejection.stage,
                    reason = rejection.reason,
                    message = rejection.message,
                    "record rejected; it goes to the dead-letter topic"
                );
                batch.add_dead_letter(DeadLetter::from_message(message, rejection), now);
            }
            InvalidRecordPolicy::Skip => {
                warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    stage = %rejection.stage,
                    reason = rejection.reason,
                    message = rejection.message,
                    "record rejected and skipped (dead_letter.policy = \"skip\"); it is not written anywhere"
                );
                self.telemetry.skipped(&rejection);
                batch.add_skipped(message.topic(), message.partition(), message.offset(), now);
            }
            InvalidRecordPolicy::Fail => {
                return Err(InvalidRecord {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    rejection,
                });
            }
        }
        Ok(())
    }

    fn encode<M: Message>(&self, message: &M, batch: &mut Batch) -> Result<(), Rejection> {
        let decoded = self
            .decoder
            .decode(message.payload())
            .map_err(|error| error.rejection())?;
        let kafka = KafkaContext {
            timestamp_ms: message.timestamp().to_millis(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let point = self
            .mapping
            .map(&decoded.value, kafka)
            .map_err(|error| error.rejection())?;
        line_protocol::encode(&point, batch.line_buffer()).map_err(|error| error.rejection())
    }

    /// Makes the batch durable (lines in InfluxDB, dead letters acknowledged), then stores its offsets.
    async fn flush(
        &mut self,
        batch: &mut Batch,
        abandon: &CancellationToken,
    ) -> Result<(), Abandoned> {
        let started = Instant::now();
        let mut held = Vec::new();
        let outcome = {
            let work = make_durable(&self.writer, &self.dead_letters, batch, abandon);
            tokio::pin!(work);
            let pause_at = tokio::time::sleep(PAUSE_AFTER);
            tokio::pin!(pause_at);
            let mut paused = false;
            loop {
                tokio::select! {
                    biased;
                    outcome = &mut work => break outcome,
                    () = &mut pause_at, if !paused => {
                        paused = true;
                        pause_assignment(&self.consumer);
                    }
                    // Polling while paused keeps the group membership alive (heartbeats are
                    // librdkafka's, but max.poll.interval.ms and rebalances need the application).
                    received = self.consumer.recv(), if paused => match received {
                        Ok(message) => {
                            // A partition assigned after the pause: hold its record, pause it too.
                            pause_partition(&self.consumer, message.topic(), message.partition());
                            held.push(message.detach());
                        }
                        Err(error) => debug!(%error, "Kafka consumer error while paused"),
                    },
                }
            }
        };
        if started.elapsed() >= PAUSE_AFTER {
            resume_assignment(&self.consumer, started.elapsed());
        }
        self.held.extend(held);
        let refused = outcome?;
        source::store_durable(&self.consumer, batch.next_offsets());
        let written = (batch.points() - refused.len()) as u64;
        self.summary.written += written;
        self.summary.dead_lettered += (batch.dead_letters().len() + refused.len()) as u64;
        self.summary.batches += 1;
        self.telemetry.batch_durable(
            written,
            batch
                .dead_letters()
                .iter()
                .chain(&refused)
                .map(|letter| &letter.rejection),
        );
        debug!(
            points = written,
            dead_letters = batch.dead_letters().len() + refused.len(),
            bytes = batch.line_bytes(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch durable; offsets stored"
        );
        batch.clear();
        Ok(())
    }
}

/// Writes the batch's lines and delivers its dead letters (concurrently), then dead-letters the
/// lines InfluxDB refused. Returns those refused lines' dead letters once everything is durable.
async fn make_durable(
    writer: &InfluxWriter,
    dead_letters: &DeadLetterSink,
    batch: &Batch,
    abandon: &CancellationToken,
) -> Result<Vec<DeadLetter>, Abandoned> {
    let write = async {
        if batch.points() == 0 {
            return Ok(Vec::new());
        }
        writer
            .write(batch.lines(), batch.line_ends(), abandon)
            .await
    };
    let deliver = async {
        if batch.dead_letters().is_empty() {
            return Ok(());
        }
        dead_letters.deliver(batch.dead_letters(), abandon).await
    };
    let (written, delivered) = tokio::join!(write, deliver);
    let (Ok(rejected_lines), Ok(())) = (written, delivered) else {
        return Err(Abandoned);
    };
    // Lines InfluxDB refused become dead letters of the write stage, delivered before any offset
    // of the batch is stored.
    let refused: Vec<DeadLetter> = rejected_lines
        .into_iter()
        .filter_map(|line| {
            let rejection = Rejection {
                stage: Stage::Write,
                reason: if line.too_large {
                    "TooLarge"
                } else {
                    "InfluxDbRejected"
                },
                message: line.message,
            };
            batch.dead_letter_for_line(line.index, rejection)
        })
        .collect();
    if !refused.is_empty() && dead_letters.deliver(&refused, abandon).await.is_err() {
        return Err(Abandoned);
    }
    Ok(refused)
}

/// A flush taking longer than this pauses consumption until it completes.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

fn pause_assignment(consumer: &SourceConsumer) {
    match consumer.assignment() {
        Ok(assignment) if assignment.count() > 0 => match consumer.pause(&assignment) {
            Ok(()) => info!(
                partitions = assignment.count(),
                "write not durable yet: partitions paused until it is (the group membership stays alive)"
            ),
            Err(error) => warn!(%error, "cannot pause partitions"),
        },
        Ok(_) => {}
        Err(error) => warn!(%error, "cannot read the assignment to pause it"),
    }
}

fn pause_partition(consumer: &SourceConsumer, topic: &str, partition: i32) {
    let mut list = TopicPartitionList::with_capacity(1);
    list.add_partition(topic, partition);
    if let Err(error) = consumer.pause(&list) {
        warn!(%error, topic, partition, "cannot pause a newly assigned partition");
    }
}

fn resume_assignment(consumer: &SourceConsumer, after: Duration) {
    match consumer.assignment() {
        Ok(assignment) => match consumer.resume(&assignment) {
            Ok(()) => info!(
                partitions = assignment.count(),
                paused_ms = after.as_millis() as u64,
                "write durable: partitions resumed"
            ),
            Err(error) => warn!(%error, "cannot resume partitions"),
        },
        Err(error) => warn!(%error, "cannot read the assignment to resume it"),
    }
}
