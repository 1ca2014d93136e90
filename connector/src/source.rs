//! Source: the Kafka consumer group, and the only place offsets are stored and committed.
//!
//! # Delivery guarantee
//! At-least-once. librdkafka runs with `enable.auto.offset.store=false`: an offset is stored
//! only by [`store_durable`], which the pipeline calls after a batch's lines were acknowledged
//! by InfluxDB and its dead letters by Kafka. Auto-commit (`enable.auto.commit=true`) then
//! commits *stored* offsets only, periodically and when partitions are revoked, and
//! [`commit_stored`] commits them synchronously at shutdown. librdkafka refuses to store an
//! offset for a partition that is no longer assigned, so a member never commits a record of a
//! partition it lost: the new owner re-reads from the last durable offset and rewrites the same
//! points (InfluxDB keeps one copy).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::batch::NextOffset;
use crate::inflight::PartitionsInFlight;
use crate::kafka_events::KafkaEvents;
use crate::map::HeaderLookup;
use crate::metrics::Telemetry;
use crate::secret::shown_property_value;

mod queue;
pub use queue::{QueuedHeaders, QueuedMessage, RecordQueue};

/// Default cap on librdkafka's prefetch queue, in KiB (override with the property of that name).
pub const DEFAULT_PREFETCH_KBYTES: &str = "16384";

/// Default `fetch.queue.backoff.ms`: how long librdkafka waits before fetching again once the
/// prefetch queue is at its cap. Its own default, 1000 ms, starves a consumer that drains a
/// capped queue faster than that: draining a backlog, the sink sat idle most of the time and
/// read 125,000 records/s; at 10 ms it read 195,000.
pub const DEFAULT_FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Default `max.partition.fetch.bytes`: how much of one partition a fetch may return, 8 MiB.
/// librdkafka's own 1 MiB made Tansu, the local broker, do about twice the work per record at
/// InfluxDB's rate (0.12–0.13 of a core at 70,000 records/s, against 0.065–0.07 at 8 MiB), for
/// responses of the same size; a Kafka broker simply answers in fewer round trips.
pub const DEFAULT_MAX_PARTITION_FETCH_BYTES: &str = "8388608";

/// Default `fetch.max.bytes`: the most one fetch response may hold, 16 MiB, the size of the
/// prefetch queue. librdkafka's own 50 MiB would let one response, which stays in memory until
/// its last record is processed, hold three queues' worth once partitions return 8 MiB each.
/// Never below `message.max.bytes`, which librdkafka requires.
pub const DEFAULT_FETCH_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Default interval of librdkafka's statistics (lag, end offsets), in milliseconds.
pub const DEFAULT_STATISTICS_INTERVAL_MS: &str = "5000";

/// Default `message.max.bytes` of the dead-letter producer: 64 MiB.
pub const DEAD_LETTER_MAX_BYTES: &str = "67108864";

/// The validated `[kafka]` settings. `Debug` redacts credential properties.
#[derive(Clone)]
pub struct KafkaSettings {
    /// Bootstrap brokers.
    pub brokers: Vec<String>,
    /// Consumer group.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// Auto-commit interval for stored offsets.
    pub commit_interval: Duration,
    /// Extra librdkafka properties.
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(name, value)| (name.as_str(), shown_property_value(name, value)))
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("commit_interval", &self.commit_interval)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaSettings {
    /// The credential values among the properties (passwords, secrets, keys), which librdkafka's
    /// own log lines must never show.
    pub fn secret_values(&self) -> Vec<String> {
        self.properties
            .iter()
            .filter(|(name, _)| crate::secret::is_secret_property(name))
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// Client configuration shared by the consumer and producers: brokers plus pass-through
    /// properties (security settings must reach every client).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.brokers.join(","));
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }

    /// Consumer configuration implementing the delivery guarantee above.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        let fetch_max_bytes = self.default_fetch_max_bytes().to_string();
        for (name, default) in [
            // librdkafka prefetches up to 64 MiB by default; while InfluxDB is slow or down the
            // sink stops reading, so this queue is what bounds memory. 16 MiB still holds
            // ~100,000 generator records, far more than one batch.
            ("queued.max.messages.kbytes", DEFAULT_PREFETCH_KBYTES),
            ("fetch.queue.backoff.ms", DEFAULT_FETCH_QUEUE_BACKOFF_MS),
            (
                "max.partition.fetch.bytes",
                DEFAULT_MAX_PARTITION_FETCH_BYTES,
            ),
            ("fetch.max.bytes", &fetch_max_bytes),
            // Lag and end offsets for the metrics and /status come from librdkafka's statistics.
            ("statistics.interval.ms", DEFAULT_STATISTICS_INTERVAL_MS),
        ] {
            self.set_unless_given(&mut config, name, default);
        }
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                self.commit_interval.as_millis().to_string(),
            )
            .set("auto.offset.reset", &self.auto_offset_reset)
            .set("enable.partition.eof", "false");
        config
    }

    /// Sets `name` to the sink's `default` unless the pass-through properties set it.
    fn set_unless_given(&self, config: &mut ClientConfig, name: &str, default: &str) {
        if !self.properties.contains_key(name) {
            config.set(name, default);
        }
    }

    /// [`DEFAULT_FETCH_MAX_BYTES`], raised to `message.max.bytes` when that property is set
    /// higher (librdkafka refuses a consumer whose fetches could not hold its largest message).
    /// A value that is not a number is left for librdkafka to reject with its own message.
    fn default_fetch_max_bytes(&self) -> u64 {
        self.properties
            .get("message.max.bytes")
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map_or(DEFAULT_FETCH_MAX_BYTES, |largest| {
                largest.max(DEFAULT_FETCH_MAX_BYTES)
            })
    }

    /// Producer configuration for dead letters: as [`KafkaSettings::producer_config`], and a
    /// missing dead-letter topic is never auto-created (a typo would otherwise create a topic
    /// nobody watches; the sink blocks until the topic exists), and records up to 64 MiB can be
    /// dead-lettered. Pass-through properties of the same names override both.
    pub fn dead_letter_producer_config(&self) -> ClientConfig {
        let mut config = self.producer_config();
        self.set_unless_given(&mut config, "allow.auto.create.topics", "false");
        // A record the consumer could read must not be too large to dead-letter (librdkafka's
        // producer default is ~1 MB); the broker's own limit still applies.
        self.set_unless_given(&mut config, "message.max.bytes", DEAD_LETTER_MAX_BYTES);
        config
    }

    /// Producer configuration (dead letters, simulator): every replica acknowledges before a dead letter
    /// counts as delivered.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        // Consumer-only pass-through properties would make librdkafka warn on a producer.
        for consumer_only in [
            "session.timeout.ms",
            "heartbeat.interval.ms",
            "max.poll.interval.ms",
            "fetch.min.bytes",
            "fetch.wait.max.ms",
            "fetch.queue.backoff.ms",
            "queued.max.messages.kbytes",
            "partition.assignment.strategy",
            "group.instance.id",
            "isolation.level",
            "max.partition.fetch.bytes",
            "fetch.max.bytes",
            "queued.min.messages",
            // The producer's default context would log every statistics report.
            "statistics.interval.ms",
        ] {
            config.remove(consumer_only);
        }
        config.set("acks", "all").set("message.timeout.ms", "30000");
        config
    }
}

/// Logs every rebalance and commit, one line per state change, and reports the group join.
#[derive(Debug)]
pub struct SourceContext {
    /// Where the consumer's callbacks report.
    pub(crate) telemetry: Arc<Telemetry>,
    in_flight: Arc<PartitionsInFlight>,
    revoke_wait: Duration,
    /// How often each partition was revoked from this member.
    revocations: Mutex<HashMap<(String, i32), u64>>,
    /// librdkafka's log lines and errors, reported once per change.
    events: KafkaEvents,
    /// Where assigned partitions' messages are forwarded. Weak: the record loop owns the queue
    /// and destroys it before the client.
    record_queue: OnceLock<Weak<RecordQueue>>,
}

impl SourceContext {
    /// How often `partition` of `topic` has been revoked from this member. A record fetched
    /// before a revocation is read again from the committed offset after it.
    pub fn revocations(&self, topic: &str, partition: i32) -> u64 {
        self.revocations
            .lock()
            .ok()
            .and_then(|counts| counts.get(&(topic.to_owned(), partition)).copied())
            .unwrap_or_default()
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.events.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.events.error(&error, reason);
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.events.statistics(&statistics);
        self.telemetry.statistics(&statistics);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                // Let the revoked partitions' writes finish (bounded) so that what they make
                // durable is stored and committed before another member takes over.
                let revoked = partition_keys(partitions);
                if let Ok(mut counts) = self.revocations.lock() {
                    for key in &revoked {
                        *counts.entry(key.clone()).or_default() += 1;
                    }
                }
                let started = std::time::Instant::now();
                let wait = || self.in_flight.wait_idle(&revoked, self.revoke_wait);
                let idle = match tokio::runtime::Handle::try_current() {
                    Ok(handle)
                        if handle.runtime_flavor()
                            == tokio::runtime::RuntimeFlavor::MultiThread =>
                    {
                        tokio::task::block_in_place(wait)
                    }
                    _ => wait(),
                };
                self.telemetry.partitions_revoked(&revoked);
                // Commit what is durable before the partitions move, synchronously, so the next
                // owner starts exactly after it.
                let committed = match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => true,
                    Err(error) => {
                        warn!(%error, "commit on revoke failed; the next owner re-reads from the last committed offset");
                        false
                    }
                };
                info!(
                    partitions = %describe(partitions),
                    waited_ms = started.elapsed().as_millis() as u64,
                    writes_finished = idle,
                    committed,
                    "partitions revoked; durable offsets are committed, the rest is re-read by the next owner"
                )
            }
            Rebalance::Assign(partitions) => {
                // Before rdkafka assigns them, so their first fetch already goes to the queue.
                if let Some(queue) = self.record_queue.get().and_then(Weak::upgrade) {
                    queue.forward(partitions);
                }
            }
            Rebalance::Error(error) => warn!(%error, "rebalance failed"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assigned = consumer
            .assignment()
            .map(|assignment| assignment.count())
            .unwrap_or_default();
        if let Rebalance::Assign(partitions) = rebalance {
            self.events.connected();
            self.telemetry.set_joined();
            self.telemetry
                .partitions_assigned(&partition_keys(partitions), assigned);
            info!(partitions = %describe(partitions), "partitions assigned");
        } else {
            self.telemetry.set_assigned_partitions(assigned);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let committed: Vec<(String, i32, i64)> = offsets
                    .elements()
                    .iter()
                    .filter_map(|element| match element.offset() {
                        Offset::Offset(offset) => {
                            Some((element.topic().to_owned(), element.partition(), offset))
                        }
                        _ => None,
                    })
                    .collect();
                self.telemetry.committed(&committed);
                debug!(offsets = %describe(offsets), "offsets committed")
            }
            // Nothing stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                warn!(%error, offsets = %describe(offsets), "offset commit failed; it is retried with the next commit")
            }
        }
    }
}

fn partition_keys(partitions: &TopicPartitionList) -> Vec<(String, i32)> {
    partitions
        .elements()
        .iter()
        .map(|element| (element.topic().to_owned(), element.partition()))
        .collect()
}

fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => {
                format!("{}[{}]@{}", element.topic(), element.partition(), offset)
            }
            _ => format!("{}[{}]", element.topic(), element.partition()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sink's consumer.
pub type SourceConsumer = StreamConsumer<SourceContext>;

/// Creates the consumer and subscribes it to the configured topics, with the queue its assigned
/// partitions' messages are forwarded to.
///
/// On revoke, the rebalance callback waits up to `revoke_wait` for the revoked partitions'
/// batches in flight (see [`PartitionsInFlight`]).
pub fn subscribe(
    settings: &KafkaSettings,
    telemetry: Arc<Telemetry>,
    in_flight: Arc<PartitionsInFlight>,
    revoke_wait: Duration,
) -> KafkaResult<(Arc<SourceConsumer>, Arc<RecordQueue>)> {
    let consumer: Arc<SourceConsumer> = Arc::new(settings.consumer_config().create_with_context(
        SourceContext {
            events: KafkaEvents::new(
                "consumer",
                telemetry.clone(),
                true,
                settings.secret_values(),
            ),
            telemetry,
            in_flight,
            revoke_wait,
            revocations: Mutex::default(),
            record_queue: OnceLock::new(),
        },
    )?);
    let queue = Arc::new(RecordQueue::new(consumer.clone()));
    // Set before subscribing: no partition is assigned before this.
    let _ = consumer.context().record_queue.set(Arc::downgrade(&queue));
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok((consumer, queue))
}

/// Stores the offsets of a durable batch, partition by partition. A partition revoked while
/// the batch was in flight is skipped (librdkafka refuses it), which is what keeps a former
/// owner from committing past records it did not write.
pub fn store_durable(consumer: &SourceConsumer, next_offsets: &[NextOffset]) {
    for next in next_offsets {
        let mut list = TopicPartitionList::with_capacity(1);
        if let Err(error) =
            list.add_partition_offset(&next.topic, next.partition, Offset::Offset(next.offset))
        {
            warn!(%error, topic = next.topic, partition = next.partition, "cannot describe offset to store");
            continue;
        }
        match consumer.store_offsets(&list) {
            Ok(()) => consumer
                .context()
                .telemetry
                .stored(std::slice::from_ref(next)),
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => debug!(
                topic = next.topic,
                partition = next.partition,
                offset = next.offset,
                "partition no longer assigned; its new owner re-reads from the last committed offset"
            ),
            Err(error) => {
                warn!(%error, topic = next.topic, partition = next.partition, "cannot store offset; it is stored with the next batch")
            }
        }
    }
}

/// Commits every stored offset synchronously (at shutdown).
pub fn commit_stored(consumer: &SourceConsumer) -> KafkaResult<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        other => other,
    }
}

/// A consumed message whose topic name and timestamp are looked up once. For a message from
/// librdkafka each `topic()` call fetches the name and checks it as UTF-8 again, and each
/// `timestamp()` is a call into librdkafka; the stages, the batch and the consumed-records
/// counter each ask for them.
pub struct Received<'m, M> {
    message: &'m M,
    topic: &'m str,
    timestamp: rdkafka::Timestamp,
}

impl<'m, M: Message> Received<'m, M> {
    /// Wraps `message`, looking its topic and timestamp up now.
    pub fn new(message: &'m M) -> Self {
        Self {
            message,
            topic: message.topic(),
            timestamp: message.timestamp(),
        }
    }
}

impl<M: Message> Message for Received<'_, M> {
    type Headers = M::Headers;

    fn key(&self) -> Option<&[u8]> {
        self.message.key()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.message.payload()
    }

    /// Always `None`: the message is only borrowed, and the sink never changes a payload.
    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        None
    }

    fn topic(&self) -> &str {
        self.topic
    }

    fn partition(&self) -> i32 {
        self.message.partition()
    }

    fn offset(&self) -> i64 {
        self.message.offset()
    }

    fn timestamp(&self) -> rdkafka::Timestamp {
        self.timestamp
    }

    fn headers(&self) -> Option<&Self::Headers> {
        self.message.headers()
    }
}

/// A record's headers as the mapping reads them ([`HeaderLookup`]), so `map` needs no
/// rdkafka types. Looking a name up walks the headers in place: no allocation per record.
pub struct RecordHeaders<'a, H>(pub Option<&'a H>);

impl<H: Headers> HeaderLookup for RecordHeaders<'_, H> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        // The last header of that name wins, as with Kafka Connect's `lastWithName`.
        self.0?
            .iter()
            .filter(|header| header.key == name)
            .last()?
            .value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KafkaSettings {
        KafkaSettings {
            brokers: vec!["a:9092".into(), "b:9092".into()],
            group_id: "g".into(),
            topics: vec!["t".into()],
            auto_offset_reset: "earliest".into(),
            commit_interval: Duration::from_millis(1500),
            properties: [
                ("session.timeout.ms".to_owned(), "6000".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ]
            .into(),
        }
    }

    /// [`settings`] with these properties added (or replaced).
    fn settings_with(properties: &[(&str, &str)]) -> KafkaSettings {
        let mut custom = settings();
        for (name, value) in properties {
            custom
                .properties
                .insert((*name).to_owned(), (*value).to_owned());
        }
        custom
    }

    #[test]
    fn consumer_never_auto_stores_offsets() {
        let config = settings().consumer_config();
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("enable.auto.commit"), Some("true"));
        assert_eq!(config.get("auto.commit.interval.ms"), Some("1500"));
        assert_eq!(config.get("bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(config.get("session.timeout.ms"), Some("6000"));
    }

    #[test]
    fn tuned_fetch_defaults_apply_unless_the_user_sets_them() {
        // (property, the sink's default, a value of the user's)
        let tuned = [
            (
                "queued.max.messages.kbytes",
                DEFAULT_PREFETCH_KBYTES,
                "1024",
            ),
            (
                "fetch.queue.backoff.ms",
                DEFAULT_FETCH_QUEUE_BACKOFF_MS,
                "500",
            ),
            ("max.partition.fetch.bytes", "8388608", "1048576"),
            ("fetch.max.bytes", "16777216", "52428800"),
        ];
        let defaults = settings().consumer_config();
        let chosen: Vec<(&str, &str)> = tuned
            .iter()
            .map(|(name, _, value)| (*name, *value))
            .collect();
        let custom = settings_with(&chosen).consumer_config();
        for (name, default, value) in tuned {
            assert_eq!(defaults.get(name), Some(default), "{name}");
            assert_eq!(custom.get(name), Some(value), "{name}");
        }
    }

    #[test]
    fn the_fetch_cap_is_never_below_the_largest_message() {
        let with_message_max = |value: &str| {
            settings_with(&[("message.max.bytes", value)])
                .consumer_config()
                .get("fetch.max.bytes")
                .map(str::to_owned)
        };
        assert_eq!(with_message_max("67108864").as_deref(), Some("67108864"));
        assert_eq!(with_message_max("1000000").as_deref(), Some("16777216"));
        // Not a number: librdkafka reports the property itself.
        assert_eq!(with_message_max("lots").as_deref(), Some("16777216"));
    }

    #[test]
    fn librdkafka_accepts_the_default_fetch_sizes() {
        let message_max: [&[(&str, &str)]; 3] = [
            &[],
            &[("message.max.bytes", "67108864")],
            &[("message.max.bytes", "200000000")],
        ];
        for properties in message_max {
            let mut custom = settings_with(properties);
            custom.properties.remove("security.protocol");
            let created: KafkaResult<BaseConsumer> = custom.consumer_config().create();
            assert!(created.is_ok(), "{properties:?}: {:?}", created.err());
        }
    }

    #[test]
    fn producer_keeps_security_properties_and_drops_consumer_ones() {
        let config = settings().producer_config();
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("session.timeout.ms"), None);
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("allow.auto.create.topics"), None);
        assert_eq!(
            settings()
                .dead_letter_producer_config()
                .get("allow.auto.create.topics"),
            Some("false")
        );
    }

    #[test]
    fn record_headers_find_the_last_value_of_a_name() {
        use rdkafka::message::{Header, OwnedHeaders};
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "source-system",
                value: Some("old"),
            })
            .insert(Header {
                key: "empty",
                value: None::<&str>,
            })
            .insert(Header {
                key: "source-system",
                value: Some("erp"),
            });
        let lookup = RecordHeaders(Some(&headers));
        assert_eq!(lookup.header("source-system"), Some(b"erp".as_slice()));
        assert_eq!(lookup.header("empty"), None);
        assert_eq!(lookup.header("missing"), None);
        assert_eq!(
            RecordHeaders::<OwnedHeaders>(None).header("source-system"),
            None
        );
    }
}
