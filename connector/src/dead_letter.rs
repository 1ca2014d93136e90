//! Dead letters: rejected records go to a Kafka topic, unchanged, with headers that explain why.
//!
//! Headers follow Kafka Connect's `errors.deadletterqueue.context.headers.enable` names, so
//! existing tooling can read them. A dead letter counts as done only once the broker
//! acknowledged it; a dead-letter topic that cannot be written blocks the sink (retrying)
//! instead of skipping the record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::kafka_events::KafkaEvents;
use crate::reject::Rejection;
use crate::write::Backoff;

mod producer;
pub use producer::{DeadLetterProducer, Delivery};

/// Header names, as Kafka Connect writes them.
pub mod headers {
    /// Source topic.
    pub const TOPIC: &str = "__connect.errors.topic";
    /// Source partition (decimal).
    pub const PARTITION: &str = "__connect.errors.partition";
    /// Source offset (decimal).
    pub const OFFSET: &str = "__connect.errors.offset";
    /// Which connector rejected it.
    pub const CONNECTOR: &str = "__connect.errors.connector.name";
    /// Pipeline stage: decode, validate, map, write.
    pub const STAGE: &str = "__connect.errors.stage";
    /// Machine-readable reason, e.g. `InvalidJson`.
    pub const EXCEPTION_CLASS: &str = "__connect.errors.exception.class.name";
    /// Human-readable explanation.
    pub const EXCEPTION_MESSAGE: &str = "__connect.errors.exception.message";
}

/// A rejected record, with everything needed to reproduce it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Source timestamp, kept on the dead letter.
    pub timestamp_ms: Option<i64>,
    /// Original key.
    pub key: Option<Vec<u8>>,
    /// Original value.
    pub value: Option<Vec<u8>>,
    /// Original headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Why it was rejected.
    pub rejection: Rejection,
}

/// The headers of a consumed message (`message.headers()`), owned, in their original order.
pub fn copy_headers<H: Headers>(headers: Option<&H>) -> Vec<(String, Option<Vec<u8>>)> {
    headers
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

impl DeadLetter {
    /// Copies a consumed Kafka message and the reason it was rejected.
    pub fn from_message<M: Message>(message: &M, rejection: Rejection) -> Self {
        let headers = copy_headers(message.headers());
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            rejection,
        }
    }

    /// The original headers followed by the explanation headers.
    pub fn kafka_headers(&self) -> OwnedHeaders {
        let mut out = OwnedHeaders::new_with_capacity(self.headers.len() + 7);
        for (key, value) in &self.headers {
            out = out.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let partition = self.partition.to_string();
        let offset = self.offset.to_string();
        let context = [
            (headers::TOPIC, self.topic.as_str()),
            (headers::PARTITION, partition.as_str()),
            (headers::OFFSET, offset.as_str()),
            (headers::CONNECTOR, "kafka-influx-sink"),
            (headers::STAGE, self.rejection.stage.as_str()),
            (headers::EXCEPTION_CLASS, self.rejection.reason),
            (headers::EXCEPTION_MESSAGE, self.rejection.message.as_str()),
        ];
        for (key, value) in context {
            out = out.insert(Header {
                key,
                value: Some(value),
            });
        }
        out
    }
}

/// What happens to a record that cannot be decoded, validated or mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRecordPolicy {
    /// Produce it to the dead-letter topic with the reason; its offset counts as done once acknowledged.
    DeadLetter,
    /// Stop the sink with an error naming the record; its offset is never committed.
    Fail,
    /// Log and count it, then move on. Lossy: the record exists only in the source topic.
    Skip,
}

impl InvalidRecordPolicy {
    /// Parses `dead_letter`, `fail` or `skip`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "dead_letter" => Some(InvalidRecordPolicy::DeadLetter),
            "fail" => Some(InvalidRecordPolicy::Fail),
            "skip" => Some(InvalidRecordPolicy::Skip),
            _ => None,
        }
    }
}

/// The validated `[dead_letter]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSettings {
    /// Topic template; `{topic}` is the source topic.
    pub topic_template: String,
    /// What to do with invalid records.
    pub policy: InvalidRecordPolicy,
}

/// The dead-letter topic for `source_topic` under `template` (`{topic}` is replaced).
pub fn topic_for(template: &str, source_topic: &str) -> String {
    template.replace("{topic}", source_topic)
}

/// Why dead letters were not all delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The sink is stopping; undelivered dead letters stay uncommitted.
    #[error("dead-letter delivery abandoned because the sink is stopping")]
    Cancelled,
}

/// Produces dead letters and waits for their acknowledgement.
pub struct DeadLetterSink {
    producer: DeadLetterProducer,
    /// The producer's connection reports, told when a broker acknowledges.
    events: Arc<KafkaEvents>,
    topic_template: String,
    backoff: Backoff,
    /// Whether the last delivery round failed, so an outage is logged once.
    failing: AtomicBool,
}

impl DeadLetterSink {
    /// A sink producing with `producer` to topics named by `topic_template`.
    pub fn new(
        producer: DeadLetterProducer,
        events: Arc<KafkaEvents>,
        topic_template: String,
        backoff: Backoff,
    ) -> Self {
        Self {
            producer,
            events,
            topic_template,
            backoff,
            failing: AtomicBool::new(false),
        }
    }

    /// Delivers every letter, retrying failed ones until the broker acknowledges them or
    /// `stop` is cancelled. Every wait races `stop`, so a dead-letter topic that cannot be
    /// written never holds a shutdown past its deadline.
    pub async fn deliver(
        &self,
        letters: &[DeadLetter],
        stop: &CancellationToken,
    ) -> Result<(), DeadLetterError> {
        let mut pending: Vec<&DeadLetter> = letters.iter().collect();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            if stop.is_cancelled() {
                return Err(DeadLetterError::Cancelled);
            }
            attempt += 1;
            let mut in_flight = Vec::with_capacity(pending.len());
            for letter in pending {
                let topic = topic_for(&self.topic_template, &letter.topic);
                // Queueing never blocks; the delivery resolves on the broker's answer.
                let delivery = self.producer.send(&topic, letter);
                in_flight.push((letter, topic, delivery));
            }
            let mut failed = Vec::new();
            let mut first_error = None;
            for (letter, topic, delivery) in in_flight {
                let outcome = match delivery {
                    Ok(future) => tokio::select! {
                        () = stop.cancelled() => return Err(DeadLetterError::Cancelled),
                        delivered = future => match delivered {
                            Ok(Ok(_)) => {
                                // A broker acknowledged: whatever connection trouble the
                                // producer reported is over.
                                self.events.connected();
                                Ok(())
                            }
                            Ok(Err(error)) => Err(error.to_string()),
                            Err(_) => Err("producer dropped the delivery".to_owned()),
                        },
                    },
                    Err(error) => Err(error.to_string()),
                };
                match outcome {
                    Ok(()) => debug!(
                        topic,
                        source_partition = letter.partition,
                        source_offset = letter.offset,
                        "dead letter acknowledged"
                    ),
                    Err(error) => {
                        first_error.get_or_insert((topic, error));
                        failed.push(letter);
                    }
                }
            }
            pending = failed;
            if let Some((topic, error)) = first_error {
                let wait = self.backoff.delay(attempt).max(Duration::from_millis(100));
                // One line per outage, not per round.
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!(
                        topic,
                        error,
                        undelivered = pending.len(),
                        "dead-letter topic cannot be written; the affected offsets stay uncommitted and delivery is retried"
                    );
                } else {
                    debug!(topic, error, attempt, "dead-letter delivery retry");
                }
                tokio::select! {
                    () = stop.cancelled() => return Err(DeadLetterError::Cancelled),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        if self.failing.swap(false, Ordering::Relaxed) {
            info!("dead-letter topic writable again");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Stage;

    #[test]
    fn headers_keep_the_original_and_explain_the_rejection() {
        let letter = DeadLetter {
            topic: "emergency_generator".into(),
            partition: 3,
            offset: 42,
            timestamp_ms: Some(1),
            key: Some(b"k".to_vec()),
            value: Some(b"not json".to_vec()),
            headers: vec![("trace".into(), Some(b"abc".to_vec()))],
            rejection: Rejection {
                stage: Stage::Decode,
                reason: "InvalidJson",
                message: "expected value at line 1 column 1".into(),
            },
        };
        let headers = letter.kafka_headers();
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(pairs[0], ("trace".into(), "abc".into()));
        assert_eq!(get(headers::TOPIC), Some("emergency_generator"));
        assert_eq!(get(headers::PARTITION), Some("3"));
        assert_eq!(get(headers::OFFSET), Some("42"));
        assert_eq!(get(headers::STAGE), Some("decode"));
        assert_eq!(get(headers::EXCEPTION_CLASS), Some("InvalidJson"));
        assert_eq!(
            get(headers::EXCEPTION_MESSAGE),
            Some("expected value at line 1 column 1")
        );
    }

    #[test]
    fn topic_template() {
        assert_eq!(topic_for("{topic}.dlq", "gen"), "gen.dlq");
        assert_eq!(topic_for("dead-letters", "gen"), "dead-letters");
    }
}
