//! Batch: buffered line protocol, the original record behind each line (so a line InfluxDB
//! refuses can still be dead-lettered as it was consumed), the dead letters that travel with it,
//! and the offsets that become committable once all of it is durable.
//!
//! Records are consumed in offset order per partition and every consumed record lands in the
//! batch either as a line or as a dead letter, so after a batch is durable each of its
//! partitions is done up to its highest offset: that is the offset the batch lets us store.

use std::ops::Range;
use std::time::{Duration, Instant};

use rdkafka::message::Message;

use crate::dead_letter::DeadLetter;
use crate::reject::Rejection;

/// When a batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Write at this many records (lines plus dead letters).
    pub max_records: usize,
    /// Write when the line protocol reaches this many bytes.
    pub max_bytes: usize,
    /// Write at the latest this long after the first record arrived.
    pub linger: Duration,
}

/// The next offset to consume in one partition, i.e. the offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Highest offset in the batch plus one.
    pub offset: i64,
}

/// Where a line came from: enough to dead-letter it unchanged.
#[derive(Debug)]
struct LineSource {
    topic: usize,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Records accumulated since the last write.
#[derive(Debug, Default)]
pub struct Batch {
    lines: Vec<u8>,
    /// End (exclusive) of each line in `lines`.
    line_ends: Vec<usize>,
    /// The record behind each line; its bytes live in `original_bytes`.
    line_sources: Vec<LineSource>,
    original_bytes: Vec<u8>,
    topics: Vec<String>,
    dead_letters: Vec<DeadLetter>,
    next_offsets: Vec<NextOffset>,
    opened_at: Option<Instant>,
}

impl Batch {
    /// The line buffer to encode the next point into. Call [`Batch::add_point`] after a
    /// successful encode.
    pub fn line_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.lines
    }

    /// Records that the line just encoded into [`Batch::line_buffer`] came from `message`.
    pub fn add_point<M: Message>(&mut self, message: &M, now: Instant) {
        let topic = match self
            .topics
            .iter()
            .position(|topic| topic == message.topic())
        {
            Some(index) => index,
            None => {
                self.topics.push(message.topic().to_owned());
                self.topics.len() - 1
            }
        };
        let key = message.key().map(|key| self.keep(key));
        let value = message.payload().map(|value| self.keep(value));
        let headers = crate::dead_letter::copy_headers(message);
        self.line_ends.push(self.lines.len());
        self.line_sources.push(LineSource {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key,
            value,
            headers,
        });
        self.advance(message.topic(), message.partition(), message.offset(), now);
    }

    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.original_bytes.len();
        self.original_bytes.extend_from_slice(bytes);
        start..self.original_bytes.len()
    }

    /// The dead letter for line `index`, as its record was consumed.
    pub fn dead_letter_for_line(&self, index: usize, rejection: Rejection) -> Option<DeadLetter> {
        let source = self.line_sources.get(index)?;
        let bytes = |range: &Option<Range<usize>>| {
            range
                .as_ref()
                .and_then(|range| self.original_bytes.get(range.clone()))
                .map(<[u8]>::to_vec)
        };
        Some(DeadLetter {
            topic: self.topics.get(source.topic)?.clone(),
            partition: source.partition,
            offset: source.offset,
            timestamp_ms: source.timestamp_ms,
            key: bytes(&source.key),
            value: bytes(&source.value),
            headers: source.headers.clone(),
            rejection,
        })
    }

    /// The source topic and Kafka timestamp (ms) of each line, in line order.
    pub fn line_origins(&self) -> impl Iterator<Item = (&str, Option<i64>)> {
        self.line_sources.iter().map(|source| {
            (
                self.topics.get(source.topic).map_or("", String::as_str),
                source.timestamp_ms,
            )
        })
    }

    /// End (exclusive) of each line in [`Batch::lines`].
    pub fn line_ends(&self) -> &[usize] {
        &self.line_ends
    }

    /// Adds a rejected record; it counts as done once the dead letter is acknowledged.
    pub fn add_dead_letter(&mut self, letter: DeadLetter, now: Instant) {
        let (partition, offset) = (letter.partition, letter.offset);
        let topic = letter.topic.clone();
        self.dead_letters.push(letter);
        self.advance(&topic, partition, offset, now);
    }

    /// Counts a rejected record that the `skip` policy lets go: done without being written.
    pub fn add_skipped(&mut self, topic: &str, partition: i32, offset: i64, now: Instant) {
        self.advance(topic, partition, offset, now);
    }

    fn advance(&mut self, topic: &str, partition: i32, offset: i64, now: Instant) {
        self.opened_at.get_or_insert(now);
        // A handful of partitions per member: a linear scan beats hashing the topic name.
        match self
            .next_offsets
            .iter_mut()
            .find(|next| next.partition == partition && next.topic == topic)
        {
            Some(next) => next.offset = next.offset.max(offset + 1),
            None => self.next_offsets.push(NextOffset {
                topic: topic.to_owned(),
                partition,
                offset: offset + 1,
            }),
        }
    }

    /// No record since the last write.
    pub fn is_empty(&self) -> bool {
        self.opened_at.is_none()
    }

    /// Records held: points plus dead letters.
    pub fn records(&self) -> usize {
        self.points() + self.dead_letters.len()
    }

    /// Points held.
    pub fn points(&self) -> usize {
        self.line_ends.len()
    }

    /// Line protocol bytes held.
    pub fn line_bytes(&self) -> usize {
        self.lines.len()
    }

    /// The buffered line protocol.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// The buffered dead letters.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }

    /// Offsets to store once lines and dead letters are durable.
    pub fn next_offsets(&self) -> &[NextOffset] {
        &self.next_offsets
    }

    /// Whether the batch reached its record or byte limit.
    pub fn is_full(&self, policy: &BatchPolicy) -> bool {
        self.records() >= policy.max_records || self.lines.len() >= policy.max_bytes
    }

    /// When the linger time runs out, if the batch holds anything.
    pub fn deadline(&self, policy: &BatchPolicy) -> Option<Instant> {
        self.opened_at.map(|opened| opened + policy.linger)
    }

    /// Empties the batch for reuse, keeping the line buffer's capacity.
    pub fn clear(&mut self) {
        self.lines.clear();
        self.line_ends.clear();
        self.line_sources.clear();
        self.original_bytes.clear();
        self.topics.clear();
        self.dead_letters.clear();
        self.next_offsets.clear();
        self.opened_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::{Rejection, Stage};
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    fn message(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(format!("value-{offset}").into_bytes()),
            Some(format!("key-{offset}").into_bytes()),
            topic.to_owned(),
            Timestamp::CreateTime(1000 + offset),
            partition,
            offset,
            Some(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some("v"),
            })),
        )
    }

    fn add_line(batch: &mut Batch, message: &OwnedMessage, now: Instant) {
        batch
            .line_buffer()
            .extend_from_slice(format!("m f=1 {}\n", message.offset()).as_bytes());
        batch.add_point(message, now);
    }

    fn policy() -> BatchPolicy {
        BatchPolicy {
            max_records: 3,
            max_bytes: 1024,
            linger: Duration::from_millis(100),
        }
    }

    fn letter(partition: i32, offset: i64) -> DeadLetter {
        DeadLetter {
            topic: "t".into(),
            partition,
            offset,
            timestamp_ms: None,
            key: None,
            value: Some(b"x".to_vec()),
            headers: vec![],
            rejection: Rejection {
                stage: Stage::Decode,
                reason: "InvalidJson",
                message: "bad".into(),
            },
        }
    }

    #[test]
    fn tracks_the_next_offset_per_partition_across_points_and_dead_letters() {
        let now = Instant::now();
        let mut batch = Batch::default();
        assert!(batch.is_empty());
        assert_eq!(batch.deadline(&policy()), None);
        add_line(&mut batch, &message("t", 0, 10), now);
        batch.add_dead_letter(letter(0, 11), now);
        add_line(&mut batch, &message("t", 1, 5), now);
        batch.add_skipped("t", 1, 6, now);
        assert_eq!(
            batch.next_offsets(),
            &[
                NextOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: 12
                },
                NextOffset {
                    topic: "t".into(),
                    partition: 1,
                    offset: 7
                },
            ]
        );
        assert_eq!(
            (batch.records(), batch.points(), batch.dead_letters().len()),
            (3, 2, 1)
        );
        assert!(batch.is_full(&policy()));
        assert_eq!(
            batch.deadline(&policy()),
            Some(now + Duration::from_millis(100))
        );
        batch.clear();
        assert!(batch.is_empty() && batch.lines().is_empty() && batch.next_offsets().is_empty());
    }

    #[test]
    fn a_replayed_lower_offset_never_moves_the_next_offset_back() {
        let now = Instant::now();
        let mut batch = Batch::default();
        add_line(&mut batch, &message("t", 0, 20), now);
        add_line(&mut batch, &message("t", 0, 7), now);
        assert_eq!(batch.next_offsets()[0].offset, 21);
    }

    #[test]
    fn full_by_bytes() {
        let mut batch = Batch::default();
        batch.line_buffer().extend(std::iter::repeat_n(b'x', 1024));
        batch.add_point(&message("t", 0, 0), Instant::now());
        assert!(batch.is_full(&policy()));
    }

    #[test]
    fn a_rejected_line_becomes_its_original_record() {
        let now = Instant::now();
        let mut batch = Batch::default();
        add_line(&mut batch, &message("a", 0, 1), now);
        add_line(&mut batch, &message("b", 2, 9), now);
        assert_eq!(batch.line_ends(), &[8, 16]);
        assert_eq!(&batch.lines()[8..16], b"m f=1 9\n");
        let rejection = Rejection {
            stage: Stage::Write,
            reason: "InfluxDbRejected",
            message: "conflict".into(),
        };
        let letter = batch.dead_letter_for_line(1, rejection.clone()).unwrap();
        assert_eq!(
            (
                letter.topic.as_str(),
                letter.partition,
                letter.offset,
                letter.timestamp_ms
            ),
            ("b", 2, 9, Some(1009))
        );
        assert_eq!(letter.key.as_deref(), Some(&b"key-9"[..]));
        assert_eq!(letter.value.as_deref(), Some(&b"value-9"[..]));
        assert_eq!(letter.headers, vec![("h".to_owned(), Some(b"v".to_vec()))]);
        assert_eq!(letter.rejection, rejection);
        assert!(batch.dead_letter_for_line(2, rejection).is_none());
        batch.clear();
        assert!(batch.line_ends().is_empty());
    }
}
