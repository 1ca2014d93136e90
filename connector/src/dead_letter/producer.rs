//! The dead-letter producer: librdkafka's delivery reports served by a thread that sleeps until
//! there is one.
//!
//! rdkafka's `FutureProducer` serves them with a thread that polls in 100 ms rounds, and the
//! round's deadline reaches librdkafka truncated to whole milliseconds. The last fraction of a
//! millisecond of every round is therefore a run of zero-timeout polls: the thread spins about
//! 1 ms in every 100, whether or not anything was ever dead-lettered. On an idle sink that was
//! 0.17 CPU seconds in 20 seconds, about as much as the rest of the idle sink together.
//!
//! Here librdkafka wakes the thread when its event queue turns non-empty
//! (`rd_kafka_queue_cb_event_enable`), and the thread serves the queue until it is empty.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use tokio::sync::oneshot;

use super::DeadLetter;
use crate::kafka_events::KafkaEvents;
use crate::kafka_queue::WakingQueue;

/// The broker's answer to one dead letter: acknowledged, or why not. An error on the receiver
/// means the producer went away before librdkafka reported.
pub type Delivery = oneshot::Receiver<Result<(), KafkaError>>;

/// How long the polling thread sleeps when librdkafka has not woken it. The wake-up is what
/// serves deliveries; this only bounds how long a missed one could wait.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Events served before the thread checks again whether it should stop.
const SERVED_PER_ROUND: usize = 4096;

/// The dead-letter producer's context: its librdkafka log lines and errors, reported as the
/// consumer's are (without gating readiness; dead-letter delivery reports its own failures),
/// and its delivery reports, handed to whoever waits for them.
#[derive(Debug)]
struct ProducerEvents(Arc<KafkaEvents>);

impl ClientContext for ProducerEvents {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.0.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }
}

impl ProducerContext for ProducerEvents {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiting: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.clone()),
        };
        // Nobody waits any more when the delivery round was abandoned at shutdown.
        let _ = waiting.send(outcome);
    }
}

/// Produces dead letters; each send gives a [`Delivery`] that resolves on the broker's answer.
pub struct DeadLetterProducer {
    /// The producer's main queue, where librdkafka puts its delivery reports; it wakes the
    /// polling thread. Declared before `producer`, so it is destroyed before the client.
    queue: Arc<WakingQueue<OnceLock<Thread>>>,
    producer: Arc<BaseProducer<ProducerEvents>>,
    stop: Arc<AtomicBool>,
    /// How many times the polling thread has woken (to check that it sleeps when idle).
    rounds: Arc<AtomicU64>,
    poller: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DeadLetterProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterProducer")
            .field("queued_events", &self.queue.len())
            .field("polling_rounds", &self.rounds.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl DeadLetterProducer {
    /// A producer from `config`, reporting its connection trouble to `events`.
    pub fn new(config: &ClientConfig, events: Arc<KafkaEvents>) -> KafkaResult<Self> {
        Self::with_idle_check(config, events, IDLE_CHECK)
    }

    /// As [`DeadLetterProducer::new`], with the polling thread sleeping up to `idle_check`
    /// when not woken.
    fn with_idle_check(
        config: &ClientConfig,
        events: Arc<KafkaEvents>,
        idle_check: Duration,
    ) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<ProducerEvents>> =
            Arc::new(config.create_with_context(ProducerEvents(events))?);
        // SAFETY: the client is live (held by `producer`); the call returns a new reference of
        // our own to its main queue.
        let main =
            NonNull::new(unsafe { rdsys::rd_kafka_queue_get_main(producer.client().native_ptr()) })
                .ok_or_else(|| {
                    KafkaError::ClientCreation("librdkafka gave the producer no main queue".into())
                })?;
        // SAFETY: `main` is ours. `producer` holds the client and outlives the queue: `drop`
        // joins the thread holding the other `Arc`, and the `queue` field drops first.
        let queue = Arc::new(unsafe { WakingQueue::new(main, OnceLock::new()) });
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let poller = {
            let (producer, queue, stop, rounds) = (
                producer.clone(),
                queue.clone(),
                stop.clone(),
                rounds.clone(),
            );
            thread::Builder::new()
                .name("dead-letter-poll".into())
                .spawn(move || serve(&producer, &queue, &stop, &rounds, idle_check))
                .map_err(|error| {
                    KafkaError::ClientCreation(format!(
                        "cannot start the dead-letter producer's polling thread: {error}"
                    ))
                })?
        };
        let _ = queue.waker().set(poller.thread().clone());
        // A wake-up before the thread was known was lost; serve what came meanwhile now rather
        // than after `idle_check`.
        poller.thread().unpark();
        Ok(Self {
            queue,
            producer,
            stop,
            rounds,
            poller: Some(poller),
        })
    }

    /// Queues `letter` for `topic`. Queueing never blocks; an error here (the local queue is
    /// full, the record is too large) means it was not queued.
    pub fn send(&self, topic: &str, letter: &DeadLetter) -> Result<Delivery, KafkaError> {
        let (answer, delivery) = oneshot::channel();
        let mut record = BaseRecord::<[u8], [u8], _>::with_opaque_to(topic, Box::new(answer))
            .headers(letter.kafka_headers());
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &letter.value {
            record = record.payload(value.as_slice());
        }
        if let Some(timestamp) = letter.timestamp_ms {
            record = record.timestamp(timestamp);
        }
        self.producer
            .send(record)
            .map(|()| delivery)
            .map_err(|(error, _)| error)
    }
}

/// The polling thread: serves librdkafka's events (delivery reports, log lines, errors) until
/// the queue is empty, then sleeps until librdkafka wakes it.
fn serve(
    producer: &BaseProducer<ProducerEvents>,
    queue: &WakingQueue<OnceLock<Thread>>,
    stop: &AtomicBool,
    rounds: &AtomicU64,
    idle_check: Duration,
) {
    while !stop.load(Ordering::Acquire) {
        rounds.fetch_add(1, Ordering::Relaxed);
        for _ in 0..SERVED_PER_ROUND {
            if queue.is_empty() {
                break;
            }
            producer.poll(Duration::ZERO);
        }
        // More than a round's worth is served at once, after the stop check: a queue that
        // is not empty raises no wake-up. A wake-up since the queue was last seen empty
        // makes the sleep return at once.
        if queue.is_empty() {
            thread::park_timeout(idle_check);
        }
    }
}

impl Drop for DeadLetterProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(poller) = self.poller.take() {
            poller.thread().unpark();
            // The thread only polls; a panic there has nothing to hand back.
            let _ = poller.join();
        }
        // The fields drop after this: `queue` (its last reference) first, then `producer`,
        // which last holds the client; rdkafka purges what is still queued and serves the
        // resulting reports itself.
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;
    use crate::metrics::Telemetry;
    use crate::reject::{Rejection, Stage};

    fn events() -> Arc<KafkaEvents> {
        Arc::new(KafkaEvents::new(
            "dead-letter producer",
            Arc::new(Telemetry::new()),
            false,
            Vec::new(),
        ))
    }

    fn letter(offset: i64) -> DeadLetter {
        DeadLetter {
            topic: "emergency_generator".into(),
            partition: 0,
            offset,
            timestamp_ms: Some(1_700_000_000_000 + offset),
            key: Some(b"gen-1".to_vec()),
            value: Some(b"not json".to_vec()),
            headers: Vec::new(),
            rejection: Rejection {
                stage: Stage::Decode,
                reason: "InvalidJson",
                message: "expected value at line 1 column 1".into(),
            },
        }
    }

    /// Against librdkafka's mock cluster: every letter's delivery resolves with the broker's
    /// acknowledgement. The thread would sleep an hour unless woken, so this shows that
    /// librdkafka wakes it.
    #[tokio::test]
    async fn deliveries_resolve_when_the_broker_acknowledges() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster
            .create_topic("emergency_generator.dlq", 1, 1)
            .expect("topic");
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", cluster.bootstrap_servers());
        let producer =
            DeadLetterProducer::with_idle_check(&config, events(), Duration::from_secs(3600))
                .expect("producer");
        let deliveries: Vec<Delivery> = (0..3)
            .map(|offset| {
                producer
                    .send("emergency_generator.dlq", &letter(offset))
                    .expect("queued")
            })
            .collect();
        for delivery in deliveries {
            let answer = tokio::time::timeout(Duration::from_secs(10), delivery)
                .await
                .expect("answered within 10 s");
            assert!(matches!(answer, Ok(Ok(()))), "{answer:?}");
        }
    }

    /// A letter that cannot be delivered resolves with librdkafka's reason, not silently.
    #[tokio::test]
    async fn an_undeliverable_letter_resolves_with_the_reason() {
        let mut config = ClientConfig::new();
        // Nothing listens on port 1: the letter times out in librdkafka's queue.
        config
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.timeout.ms", "200");
        let producer =
            DeadLetterProducer::with_idle_check(&config, events(), Duration::from_secs(3600))
                .expect("producer");
        let delivery = producer
            .send("emergency_generator.dlq", &letter(7))
            .expect("queued");
        let answer = tokio::time::timeout(Duration::from_secs(10), delivery)
            .await
            .expect("answered within 10 s");
        match answer {
            Ok(Err(error)) => assert!(error.to_string().contains("timed out"), "{error}"),
            other => panic!("expected a delivery error, got {other:?}"),
        }
    }

    /// The polling thread sleeps while there is nothing to serve, instead of polling in rounds
    /// (rdkafka's own thread spun about 1 ms in every 100).
    #[test]
    fn the_polling_thread_sleeps_while_idle() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", cluster.bootstrap_servers());
        let producer = DeadLetterProducer::new(&config, events()).expect("producer");
        thread::sleep(Duration::from_millis(600));
        let rounds = producer.rounds.load(Ordering::Relaxed);
        // Its first round, and a wake-up per log line or error librdkafka may have queued.
        assert!(
            rounds <= 5,
            "the idle polling thread woke {rounds} times in 600 ms"
        );
    }
}
