//! Batch: buffered line protocol, the dead letters that travel with it, and the offsets that
//! become committable once both are durable.
//!
//! Records are consumed in offset order per partition and every consumed record lands in the
//! batch either as a line or as a dead letter, so after a batch is durable each of its
//! partitions is done up to its highest offset: that is the offset the batch lets us store.

use std::time::{Duration, Instant};

use crate::dead_letter::DeadLetter;

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

/// Records accumulated since the last write.
#[derive(Debug, Default)]
pub struct Batch {
    lines: Vec<u8>,
    points: usize,
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

    /// Counts a point just encoded into [`Batch::line_buffer`] for the record at `offset`.
    pub fn add_point(&mut self, topic: &str, partition: i32, offset: i64, now: Instant) {
        self.points += 1;
        self.advance(topic, partition, offset, now);
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
        self.points + self.dead_letters.len()
    }

    /// Points held.
    pub fn points(&self) -> usize {
        self.points
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
        self.points = 0;
        self.dead_letters.clear();
        self.next_offsets.clear();
        self.opened_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::{Rejection, Stage};

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
        batch.line_buffer().extend_from_slice(b"m f=1 1\n");
        batch.add_point("t", 0, 10, now);
        batch.add_dead_letter(letter(0, 11), now);
        batch.add_point("t", 1, 5, now);
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
        batch.add_point("t", 0, 20, now);
        batch.add_point("t", 0, 7, now);
        assert_eq!(batch.next_offsets()[0].offset, 21);
    }

    #[test]
    fn full_by_bytes() {
        let mut batch = Batch::default();
        batch.line_buffer().extend(std::iter::repeat_n(b'x', 1024));
        batch.add_point("t", 0, 0, Instant::now());
        assert!(batch.is_full(&policy()));
    }
}
