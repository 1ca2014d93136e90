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

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// The producer's main queue, where librdkafka puts its delivery reports. A plain copy of the
/// handle: [`DeadLetterProducer`] owns it and destroys it in its `drop`, after the polling
/// thread, which holds the only other copy, has been joined.
#[derive(Clone, Copy)]
struct MainQueue(NonNull<rdsys::rd_kafka_queue_t>);

// SAFETY: librdkafka queues may be used from any thread (every operation takes the queue's
// lock); the handle outlives every copy's use, as said above.
unsafe impl Send for MainQueue {}
// SAFETY: as for `Send`; only the queue's length is read through a shared reference.
unsafe impl Sync for MainQueue {}

impl MainQueue {
    fn len(self) -> usize {
        // SAFETY: the handle is live until `DeadLetterProducer::drop` destroys it, after the
        // polling thread, its only other user, has been joined.
        unsafe { rdsys::rd_kafka_queue_length(self.0.as_ptr()) }
    }
}

/// Called by librdkafka (on one of its threads, under the queue's lock) when the main queue
/// turns non-empty.
unsafe extern "C" fn wake(_client: *mut rdsys::rd_kafka_t, poller: *mut c_void) {
    // SAFETY: `poller` is the boxed `Thread` given in `DeadLetterProducer::new`; it is freed only
    // after the callback is removed, which waits for the queue's lock.
    let poller = unsafe { &*(poller as *const Thread) };
    poller.unpark();
}

/// Produces dead letters; each send gives a [`Delivery`] that resolves on the broker's answer.
pub struct DeadLetterProducer {
    producer: Arc<BaseProducer<ProducerEvents>>,
    /// Owned: destroyed in `drop`, before the client is.
    queue: MainQueue,
    stop: Arc<AtomicBool>,
    /// How many times the polling thread has woken (to check that it sleeps when idle).
    rounds: Arc<AtomicU64>,
    poller: Option<JoinHandle<()>>,
    /// The polling thread's handle, which librdkafka's wake-up callback holds the address of
    /// (the box keeps it in place).
    _waker: Box<Thread>,
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
        // SAFETY: the client is live (held by `producer`, which outlives the handle: `drop`
        // destroys the handle first). `rd_kafka_queue_get_main` returns a new reference.
        let queue =
            NonNull::new(unsafe { rdsys::rd_kafka_queue_get_main(producer.client().native_ptr()) })
                .map(MainQueue)
                .ok_or_else(|| {
                    KafkaError::ClientCreation("librdkafka gave the producer no main queue".into())
                })?;
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let poller = {
            let (producer, stop, rounds) = (producer.clone(), stop.clone(), rounds.clone());
            thread::Builder::new()
                .name("dead-letter-poll".into())
                .spawn(move || serve(&producer, queue, &stop, &rounds, idle_check))
                .map_err(|error| {
                    // SAFETY: the handle is ours and nothing else uses it.
                    unsafe { rdsys::rd_kafka_queue_destroy(queue.0.as_ptr()) };
                    KafkaError::ClientCreation(format!(
                        "cannot start the dead-letter producer's polling thread: {error}"
                    ))
                })?
        };
        let waker = Box::new(poller.thread().clone());
        // SAFETY: the queue handle is valid; the boxed `Thread` stays where it is until `drop`
        // has removed the callback.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(
                queue.0.as_ptr(),
                Some(wake),
                std::ptr::from_ref::<Thread>(&waker).cast_mut().cast(),
            );
        }
        // An event queued before the callback was set raised no wake-up (the queue was no
        // longer empty); serve it now rather than after `idle_check`.
        waker.unpark();
        Ok(Self {
            producer,
            queue,
            stop,
            rounds,
            poller: Some(poller),
            _waker: waker,
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
    queue: MainQueue,
    stop: &AtomicBool,
    rounds: &AtomicU64,
    idle_check: Duration,
) {
    while !stop.load(Ordering::Acquire) {
        rounds.fetch_add(1, Ordering::Relaxed);
        for _ in 0..SERVED_PER_ROUND {
            if queue.len() == 0 {
                break;
            }
            producer.poll(Duration::ZERO);
        }
        // More than a round's worth is served at once, after the stop check: a queue that
        // is not empty raises no wake-up. A wake-up since the queue was last seen empty
        // makes the sleep return at once.
        if queue.len() == 0 {
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
        // SAFETY: removing the callback takes the queue's lock, so once it returns librdkafka
        // neither runs nor will run `wake`, and `waker` may be freed. The handle is destroyed
        // once, here, and nothing uses it afterwards (the thread has been joined).
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(
                self.queue.0.as_ptr(),
                None,
                std::ptr::null_mut(),
            );
            rdsys::rd_kafka_queue_destroy(self.queue.0.as_ptr());
        }
        // The fields drop after this: `producer` last holds the client, and rdkafka purges
        // what is still queued and serves the resulting reports itself.
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
