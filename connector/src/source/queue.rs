//! The record queue: the assigned partitions' messages, taken from librdkafka a batch at a time.
//!
//! rdkafka's consumer stream hands over one message per poll of librdkafka's consumer queue.
//! Each poll reads the clock three times, takes the queue's and the poll statistics' locks,
//! wraps the message in an event with its own reference count and releases it, all between the
//! record loop's own work on the records before and after it. In a profile of a backlog drain
//! that was about a sixth of the record loop's thread.
//!
//! So the fetch queue of every partition assigned to the sink is forwarded to one queue of the
//! sink's own ([`RecordQueue::forward`], called by the rebalance callback before librdkafka
//! starts fetching the partitions), and the record loop takes up to a thousand messages with one
//! `rd_kafka_consume_batch_queue` call ([`RecordQueue::take`]). Rebalances, errors and commit
//! results still arrive on the consumer queue, which the record loop keeps polling through
//! rdkafka, so rdkafka's rebalance handling is unchanged. A partition whose forwarding failed
//! delivers its messages there too, and the record loop takes them from either queue.
//!
//! Taking messages this way is a consumer poll for librdkafka: it moves the partition's
//! application position past what it returns (what a pause or a rebalance resumes from) and
//! counts for `max.poll.interval.ms`, as a poll of the consumer queue does.
//!
//! Every message taken must be processed or held by the record loop before it is released: its
//! application position has moved past it, so a message released unprocessed would be skipped
//! once a later offset of its partition is committed.

use std::ffi::{CStr, CString, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::Timestamp;
use rdkafka::bindings as rdsys;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio::sync::Notify;
use tracing::warn;

use super::SourceConsumer;
use crate::kafka_queue::WakingQueue;

/// The sink's own librdkafka queue, to which every assigned partition's messages are forwarded.
pub struct RecordQueue {
    /// Wakes the record loop when it turns non-empty. Declared first, so it is destroyed
    /// before the client (it holds messages whose release touches the client's partitions).
    queue: WakingQueue<Notify>,
    /// Keeps the client alive while the queue exists.
    consumer: Arc<SourceConsumer>,
}

impl std::fmt::Debug for RecordQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordQueue")
            .field("len", &self.len())
            .finish()
    }
}

impl RecordQueue {
    /// A new, empty queue of `consumer`'s client, with nothing forwarded to it yet.
    pub fn new(consumer: Arc<SourceConsumer>) -> Self {
        let client = consumer.client().native_ptr();
        // SAFETY: `client` is a live consumer handle, kept alive by `consumer` for as long as
        // the queue exists. `rd_kafka_queue_new` never returns null (it aborts on allocation
        // failure), which `NonNull::new` checks anyway.
        let created = unsafe { rdsys::rd_kafka_queue_new(client) };
        let created = NonNull::new(created).unwrap_or_else(|| {
            // Not reachable: librdkafka allocates with an abort on failure.
            std::process::abort()
        });
        // SAFETY: the handle is new and ours; `consumer`, dropped after `queue`, keeps the
        // client alive.
        let queue = unsafe { WakingQueue::new(created, Notify::new()) };
        Self { queue, consumer }
    }

    /// Forwards the fetch queues of `partitions` to this queue. Called before librdkafka is
    /// told to assign them, so that their first fetched message already arrives here. A
    /// partition that cannot be forwarded (librdkafka knows no such partition) keeps
    /// delivering to the consumer queue.
    pub fn forward(&self, partitions: &TopicPartitionList) {
        let client = self.consumer.client().native_ptr();
        for element in partitions.elements() {
            let Ok(topic) = CString::new(element.topic()) else {
                warn!(
                    topic = element.topic(),
                    "topic name holds a NUL byte; its partition is read through the consumer queue"
                );
                continue;
            };
            // SAFETY: `client` is live (held by `self.consumer`) and `topic` a C string. The
            // returned handle is ours to destroy; forwarding keeps its own references.
            unsafe {
                let partition_queue = rdsys::rd_kafka_queue_get_partition(
                    client,
                    topic.as_ptr(),
                    element.partition(),
                );
                if partition_queue.is_null() {
                    warn!(
                        topic = element.topic(),
                        partition = element.partition(),
                        "librdkafka has no queue for the partition; it is read through the consumer queue"
                    );
                    continue;
                }
                rdsys::rd_kafka_queue_forward(partition_queue, self.queue.as_ptr());
                rdsys::rd_kafka_queue_destroy(partition_queue);
            }
        }
    }

    /// How many messages (and partition errors) wait in the queue.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits in the queue.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Returns once the queue holds something (at once if it already does). May return with
    /// the queue empty again, when what arrived was taken meanwhile.
    pub async fn wait(&self) {
        if !self.is_empty() {
            return;
        }
        // A message that arrives between the check and here stores a permit: not missed.
        self.queue.waker().notified().await;
    }

    /// Takes up to `max` messages that are already there, without waiting, in the order
    /// librdkafka delivers them (per partition, by offset).
    pub fn take(&self, max: usize) -> Vec<QueuedMessage> {
        let mut taken: Vec<*mut rdsys::rd_kafka_message_t> = Vec::with_capacity(max);
        // SAFETY: `taken` has room for `max` pointers; librdkafka writes at most that many and
        // returns how many it wrote (or -1 on a bad argument, treated as none).
        let count = unsafe {
            rdsys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, taken.as_mut_ptr(), max)
        };
        let count = usize::try_from(count).unwrap_or(0).min(max);
        // SAFETY: librdkafka initialised the first `count` slots.
        unsafe { taken.set_len(count) };
        // Collected in place: the pointers' buffer becomes the messages'.
        taken
            .into_iter()
            .filter_map(NonNull::new)
            .map(|message| QueuedMessage { message })
            .collect()
    }
}

/// A message taken from the [`RecordQueue`], released when dropped. Its topic, payload, key
/// and headers are borrowed from librdkafka.
pub struct QueuedMessage {
    message: NonNull<rdsys::rd_kafka_message_t>,
}

// SAFETY: a message may be read and released on any thread; nothing else refers to it.
unsafe impl Send for QueuedMessage {}

impl QueuedMessage {
    fn raw(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: valid until `drop`, and only read.
        unsafe { self.message.as_ref() }
    }

    /// The message, or the partition error librdkafka delivered in its place.
    pub fn checked(&self) -> Result<&Self, KafkaError> {
        let error = self.raw().err;
        if error == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(self)
        } else if error == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
            Err(KafkaError::PartitionEOF(self.raw().partition))
        } else {
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(
                error,
            )))
        }
    }

    /// A copy that owns its data, to be held past this message's release.
    pub fn detach(&self) -> OwnedMessage {
        let headers = self.headers().map(|headers| {
            headers.iter().fold(
                OwnedHeaders::new_with_capacity(headers.count()),
                |owned, header| owned.insert(header),
            )
        });
        OwnedMessage::new(
            self.payload().map(<[u8]>::to_vec),
            self.key().map(<[u8]>::to_vec),
            self.topic().to_owned(),
            self.timestamp(),
            self.partition(),
            self.offset(),
            headers,
        )
    }
}

impl Drop for QueuedMessage {
    fn drop(&mut self) {
        // SAFETY: the message was returned by `rd_kafka_consume_batch_queue` and is released
        // once, here.
        unsafe { rdsys::rd_kafka_message_destroy(self.message.as_ptr()) }
    }
}

/// Borrows `len` bytes at `data`, or `None` for a null pointer.
///
/// # Safety
/// A non-null `data` must point to `len` readable bytes that live as long as `'a`.
unsafe fn bytes<'a>(data: *const c_void, len: usize) -> Option<&'a [u8]> {
    if data.is_null() {
        None
    } else {
        // SAFETY: the caller's promise.
        Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
    }
}

impl Message for QueuedMessage {
    type Headers = QueuedHeaders;

    fn key(&self) -> Option<&[u8]> {
        // SAFETY: librdkafka's key buffer lives as long as the message.
        unsafe { bytes(self.raw().key, self.raw().key_len) }
    }

    fn payload(&self) -> Option<&[u8]> {
        // SAFETY: librdkafka's payload buffer lives as long as the message.
        unsafe { bytes(self.raw().payload, self.raw().len) }
    }

    /// Always `None`: the sink never changes a payload.
    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        None
    }

    /// The topic's name; empty if it were not UTF-8, which Kafka's topic names (ASCII letters,
    /// digits, `.`, `_` and `-`) always are.
    fn topic(&self) -> &str {
        // SAFETY: a consumed message always names its topic handle, whose name is a C string
        // that lives as long as the handle, which the message keeps.
        let name = unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(self.raw().rkt)) };
        name.to_str().unwrap_or_default()
    }

    fn partition(&self) -> i32 {
        self.raw().partition
    }

    fn offset(&self) -> i64 {
        self.raw().offset
    }

    fn timestamp(&self) -> Timestamp {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is valid; librdkafka writes the kind.
        let millis = unsafe { rdsys::rd_kafka_message_timestamp(self.message.as_ptr(), &mut kind) };
        match kind {
            _ if millis == -1 => Timestamp::NotAvailable,
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => {
                Timestamp::CreateTime(millis)
            }
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
                Timestamp::LogAppendTime(millis)
            }
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE => {
                Timestamp::NotAvailable
            }
        }
    }

    fn headers(&self) -> Option<&QueuedHeaders> {
        let mut headers = std::ptr::null_mut();
        // SAFETY: the message is valid; librdkafka parses its headers once and keeps them with
        // the message, so the pointer lives as long as `self`.
        let found = unsafe { rdsys::rd_kafka_message_headers(self.message.as_ptr(), &mut headers) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return None;
        }
        // SAFETY: `QueuedHeaders` is an opaque stand-in for librdkafka's header list, only ever
        // used behind a reference, and the list lives as long as the message.
        Some(unsafe { &*(headers as *const QueuedHeaders) })
    }
}

/// A [`QueuedMessage`]'s headers, read in place from librdkafka's header list.
#[repr(C)]
pub struct QueuedHeaders {
    _opaque: [u8; 0],
}

impl QueuedHeaders {
    fn raw(&self) -> *const rdsys::rd_kafka_headers_t {
        (self as *const Self).cast()
    }
}

impl Headers for QueuedHeaders {
    fn count(&self) -> usize {
        // SAFETY: `self` stands for a live header list.
        unsafe { rdsys::rd_kafka_header_cnt(self.raw()) }
    }

    fn try_get(&self, index: usize) -> Option<Header<'_, &[u8]>> {
        let mut name = std::ptr::null();
        let mut value = std::ptr::null();
        let mut size = 0;
        // SAFETY: `self` stands for a live header list; librdkafka writes the three outputs.
        let found = unsafe {
            rdsys::rd_kafka_header_get_all(self.raw(), index, &mut name, &mut value, &mut size)
        };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        // SAFETY: librdkafka's header names are C strings and values `size` bytes, both living
        // as long as the list. A name that is not UTF-8 reads as empty: no mapping can name it,
        // and rdkafka's iterator must get a header for every index below the count.
        let key = unsafe { CStr::from_ptr(name) }.to_str().unwrap_or_default();
        Some(Header {
            key,
            // SAFETY: as above.
            value: unsafe { bytes(value, size) },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rdkafka::message::{Header, Headers as _, OwnedHeaders};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

    use super::*;
    use crate::metrics::Telemetry;
    use crate::source::{KafkaSettings, subscribe};

    /// What the record loop reads of a message.
    #[derive(Debug, PartialEq)]
    struct Seen {
        topic: String,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        timestamp: Timestamp,
        headers: Option<Vec<(String, Option<Vec<u8>>)>>,
    }

    fn seen<M: Message>(message: &M) -> Seen {
        Seen {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            timestamp: message.timestamp(),
            headers: message.headers().map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                    .collect()
            }),
        }
    }

    /// Against librdkafka's mock cluster: assigned partitions deliver to the record queue
    /// (nothing to the consumer queue), and a message reads, and detaches, exactly as produced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn assigned_partitions_deliver_to_the_queue_exactly_as_produced() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("readings", 2, 1).expect("topic");
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "source-system",
                value: Some("erp"),
            })
            .insert(Header {
                key: "empty",
                value: None::<&str>,
            });
        let sent = [
            (
                0,
                Some("gen-1"),
                Some("{\"fuel\":0.5}"),
                Some(headers),
                1_700_000_000_123,
            ),
            (1, None, Some("{\"fuel\":0.25}"), None, 1_700_000_000_456),
            (0, Some("gen-2"), None, None, 1_700_000_000_789),
        ];
        for (partition, key, payload, headers, timestamp) in sent.clone() {
            let mut record = BaseRecord::<str, str>::to("readings")
                .partition(partition)
                .timestamp(timestamp);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(payload) = payload {
                record = record.payload(payload);
            }
            if let Some(headers) = headers {
                record = record.headers(headers);
            }
            producer
                .send(record)
                .map_err(|(error, _)| error)
                .expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");

        let settings = KafkaSettings {
            brokers: vec![cluster.bootstrap_servers()],
            group_id: "queue-test".into(),
            topics: vec!["readings".into()],
            auto_offset_reset: "earliest".into(),
            commit_interval: Duration::from_secs(5),
            properties: BTreeMap::new(),
        };
        let telemetry = Arc::new(Telemetry::new());
        let in_flight = telemetry.partitions_in_flight();
        let (consumer, queue) =
            subscribe(&settings, telemetry, in_flight, Duration::ZERO).expect("subscribe");
        let mut taken = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while taken.len() < sent.len() && tokio::time::Instant::now() < deadline {
            // Polling the consumer queue serves the rebalance; no message may arrive there.
            if let Ok(received) =
                tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await
            {
                let message = received.expect("no consumer error");
                panic!(
                    "a message arrived on the consumer queue: {:?}",
                    seen(&message)
                );
            }
            taken.extend(queue.take(10));
        }
        assert_eq!(taken.len(), sent.len(), "every produced message was taken");

        let mut read: Vec<Seen> = taken
            .iter()
            .map(|queued| seen(queued.checked().expect("a message, not an error")))
            .collect();
        let detached: Vec<Seen> = taken.iter().map(|queued| seen(&queued.detach())).collect();
        assert_eq!(read, detached, "a detached copy reads the same");
        read.sort_by_key(|message| (message.partition, message.offset));
        let expected: Vec<Seen> = [(0, 0, 0), (0, 1, 2), (1, 0, 1)]
            .into_iter()
            .map(|(partition, offset, index)| {
                let (_, key, payload, headers, timestamp) = sent[index].clone();
                Seen {
                    topic: "readings".into(),
                    partition,
                    offset,
                    key: key.map(|key| key.as_bytes().to_vec()),
                    payload: payload.map(|payload| payload.as_bytes().to_vec()),
                    timestamp: Timestamp::CreateTime(timestamp),
                    headers: headers.map(|headers| {
                        headers
                            .iter()
                            .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                            .collect()
                    }),
                }
            })
            .collect();
        assert_eq!(read, expected);
        assert!(queue.is_empty());
        drop(taken);
        drop(queue);
        drop(consumer);
    }
}
