//! Batch: buffered line protocol, the original record behind each line (so a line InfluxDB
//! refuses can still be dead-lettered as it was consumed), the dead letters that travel with it,
//! and the offsets that become committable once all of it is durable.
//!
//! Records are consumed in offset order per partition and every consumed record lands in the
//! batch either as a line or as a dead letter, so after a batch is durable each of its
//! partitions is done up to its highest offset: that is the offset the batch lets us store.
//!
//! A record below a fuel threshold adds a second line, its alert point ([`crate::alerts`]), in
//! the same batch and so in the same InfluxDB write: the record's offset is stored only when
//! both are durable. Alert lines are lines like any other for writing and isolating (a refused
//! one is dead-lettered as its record, with its own reason), but they are not records: they
//! count neither towards `max_records` nor as [`Batch::points`], which are the record points
//! the sink reports and the tests compare with InfluxDB. [`Batch::alert_points`] counts them.
//! The batch also keeps each generator's newest reading, for the gauges once it is durable.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::BuildHasher as _;
use std::ops::Range;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use rdkafka::message::Message;

use crate::alerts::{FuelReading, GaugeReading, Level, Thresholds};
use crate::dead_letter::DeadLetter;
use crate::reject::{Rejection, truncate_message};

/// Dead-letter reason of a record whose alert point InfluxDB refused. The record's own point is
/// accounted for separately (written, or dead-lettered with its own reason), so the reason must
/// say which of its lines was refused.
pub const ALERT_REJECTED: &str = "AlertPointRejected";

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

/// What a line is.
#[derive(Debug)]
enum LineOrigin {
    /// A record's point; its source is enough to dead-letter the record unchanged.
    Record(LineSource),
    /// The alert point derived from the record whose point is line `record_line`.
    Alert { level: Level, record_line: usize },
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
    /// What each line is and the record behind it; its bytes live in `original_bytes`.
    line_sources: Vec<LineOrigin>,
    original_bytes: Vec<u8>,
    topics: Vec<String>,
    dead_letters: Vec<DeadLetter>,
    next_offsets: Vec<NextOffset>,
    opened_at: Option<Instant>,
    /// Alert lines per level, indexed by [`Level::index`].
    alert_lines: [usize; 2],
    /// The newest reading of each generator in the batch: one entry per generator, so a
    /// generator reporting often costs no more than one reporting once. Hashed with foldhash,
    /// seeded per process: SipHash was a tenth of a record's cost with many generators.
    latest: HashTable<(Range<usize>, Latest)>,
    latest_hasher: foldhash::fast::RandomState,
    /// The generator ids `latest` is keyed by (each entry's range), one after another: a large
    /// fleet puts most of its generators in every batch, and a `String` key each was an
    /// allocation per record.
    generator_ids: String,
}

/// A generator's newest reading in the batch.
#[derive(Debug, Clone, Copy)]
struct Latest {
    fuel: f64,
    thresholds: Thresholds,
    timestamp_ns: i64,
    /// Index into `topics`.
    topic: usize,
    partition: i32,
    offset: i64,
}

/// What InfluxDB took of a durable batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Record points written (lines refused by InfluxDB excluded).
    pub points: usize,
    /// Alert points written, indexed by [`Level::index`].
    pub alert_points: [usize; 2],
}

impl Batch {
    /// The line buffer to encode the next point into. Call [`Batch::add_point`] after a
    /// successful encode.
    pub fn line_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.lines
    }

    /// Records that the line just encoded into [`Batch::line_buffer`] came from `message`,
    /// whose headers are `headers` (`message.headers()`, which the caller has looked up
    /// already: each lookup is a call into librdkafka).
    pub fn add_point<M: Message>(
        &mut self,
        message: &M,
        headers: Option<&M::Headers>,
        now: Instant,
    ) {
        let topic = self.topic_index(message.topic());
        let key = message.key().map(|key| self.keep(key));
        let value = message.payload().map(|value| self.keep(value));
        let headers = crate::dead_letter::copy_headers(headers);
        self.line_ends.push(self.lines.len());
        self.line_sources.push(LineOrigin::Record(LineSource {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key,
            value,
            headers,
        }));
        self.advance(message.topic(), message.partition(), message.offset(), now);
    }

    /// Records that the line just encoded into [`Batch::line_buffer`] is the alert point of the
    /// record added last with [`Batch::add_point`]. It shares that record's source (nothing is
    /// copied) and offset. Without such a record the line is dropped again, so that every line
    /// keeps a record to be dead-lettered as.
    pub fn add_alert(&mut self, level: Level) {
        let Some(record_line) = self.last_record_line() else {
            let end = self.line_ends.last().copied().unwrap_or(0);
            self.lines.truncate(end);
            return;
        };
        self.line_ends.push(self.lines.len());
        self.line_sources
            .push(LineOrigin::Alert { level, record_line });
        self.alert_lines[level.index()] += 1;
    }

    /// Keeps `reading`, of the record added last with [`Batch::add_point`], if it is its
    /// generator's newest in the batch. Without such a record it is dropped: a reading must have
    /// a record whose refusal can leave it out. Allocates only for a generator's first reading
    /// in the batch.
    pub fn add_reading(&mut self, reading: &FuelReading<'_>) {
        // The record's topic index, partition and offset, as `add_point` kept them, rather
        // than the topic looked up by name a second time for every record.
        let Some(LineOrigin::Record(record)) = self
            .last_record_line()
            .and_then(|line| self.line_sources.get(line))
        else {
            return;
        };
        let latest = Latest {
            fuel: reading.fuel,
            thresholds: reading.thresholds,
            timestamp_ns: reading.timestamp_ns,
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
        };
        let hash = self.latest_hasher.hash_one(reading.generator);
        let ids = &self.generator_ids;
        let found = self.latest.find_mut(hash, |(id, _)| {
            ids.get(id.clone()) == Some(reading.generator)
        });
        match found {
            // Same timestamp: the later record wins, as it does in InfluxDB.
            Some((_, kept)) if kept.timestamp_ns <= latest.timestamp_ns => *kept = latest,
            Some(_) => {}
            None => {
                let start = self.generator_ids.len();
                self.generator_ids.push_str(reading.generator);
                let id = start..self.generator_ids.len();
                let (ids, hasher) = (&self.generator_ids, &self.latest_hasher);
                self.latest.insert_unique(hash, (id, latest), |(id, _)| {
                    hasher.hash_one(ids.get(id.clone()).unwrap_or_default())
                });
            }
        }
    }

    /// The line of the record added last: the last line, or the record an alert line at the
    /// end was derived from.
    fn last_record_line(&self) -> Option<usize> {
        match self.line_sources.last()? {
            LineOrigin::Record(_) => Some(self.line_sources.len() - 1),
            LineOrigin::Alert { record_line, .. } => Some(*record_line),
        }
    }

    fn topic_index(&mut self, topic: &str) -> usize {
        match self.topics.iter().position(|known| known == topic) {
            Some(index) => index,
            None => {
                self.topics.push(topic.to_owned());
                self.topics.len() - 1
            }
        }
    }

    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.original_bytes.len();
        self.original_bytes.extend_from_slice(bytes);
        start..self.original_bytes.len()
    }

    /// The dead letter for line `index`, as its record was consumed. For an alert line that is
    /// the record it was derived from, with reason [`ALERT_REJECTED`] and a message saying so.
    pub fn dead_letter_for_line(&self, index: usize, rejection: Rejection) -> Option<DeadLetter> {
        let (source, rejection) = match self.line_sources.get(index)? {
            LineOrigin::Record(source) => (source, rejection),
            LineOrigin::Alert { level, record_line } => {
                match self.line_sources.get(*record_line)? {
                    LineOrigin::Record(source) => (
                        source,
                        Rejection {
                            stage: rejection.stage,
                            reason: ALERT_REJECTED,
                            message: truncate_message(format!(
                                "InfluxDB refused the {level} fuel alert point derived from this record \
                             (the record's own point is accounted for separately): {}",
                                rejection.message
                            )),
                        },
                    ),
                    LineOrigin::Alert { .. } => return None,
                }
            }
        };
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

    /// The source topic and Kafka timestamp (ms) of each record's line, in line order (alert
    /// lines are not records).
    pub fn line_origins(&self) -> impl Iterator<Item = (&str, Option<i64>)> {
        self.line_sources.iter().filter_map(|origin| match origin {
            LineOrigin::Record(source) => Some((
                self.topics.get(source.topic).map_or("", String::as_str),
                source.timestamp_ms,
            )),
            LineOrigin::Alert { .. } => None,
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

    /// The time to add the next record at: when the batch opened, once it has (only its first
    /// record's time counts, for the linger deadline), else now. Read per record, the clock
    /// was about 2 % of the record loop.
    pub fn clock(&self) -> Instant {
        self.opened_at.unwrap_or_else(Instant::now)
    }

    /// No record since the last write.
    pub fn is_empty(&self) -> bool {
        self.opened_at.is_none()
    }

    /// Records held: points plus dead letters (alert points are not records).
    pub fn records(&self) -> usize {
        self.points() + self.dead_letters.len()
    }

    /// Record points held (alert points excluded).
    pub fn points(&self) -> usize {
        self.line_ends.len() - self.alert_points()
    }

    /// Alert points held.
    pub fn alert_points(&self) -> usize {
        self.alert_lines.iter().sum()
    }

    /// Alert points of `level` held.
    pub fn alert_points_of(&self, level: Level) -> usize {
        self.alert_lines[level.index()]
    }

    /// The dead-letter reason [`Batch::dead_letter_for_line`] gave `letter` says an alert line
    /// was refused: that alert's level. `None` for a record's own refused line.
    pub fn refused_alert_level(&self, letter: &DeadLetter) -> Option<Level> {
        if letter.rejection.reason != ALERT_REJECTED {
            return None;
        }
        // A record has at most one alert line, so its position identifies it. Refusals are rare:
        // a scan is fine.
        self.line_sources.iter().find_map(|origin| match origin {
            LineOrigin::Alert { level, record_line } => match self.line_sources.get(*record_line) {
                Some(LineOrigin::Record(source))
                    if source.partition == letter.partition
                        && source.offset == letter.offset
                        && self.topics.get(source.topic) == Some(&letter.topic) =>
                {
                    Some(*level)
                }
                _ => None,
            },
            LineOrigin::Record(_) => None,
        })
    }

    /// The refused lines' dead letters to deliver: one per record. When InfluxDB refused both a
    /// record's own line and its alert line (a tag it cannot store is on both), the record goes
    /// to the dead-letter topic once, with its own line's reason. Borrowed when nothing repeats.
    pub fn one_letter_per_record<'a>(&self, refused: &'a [DeadLetter]) -> Cow<'a, [DeadLetter]> {
        let is_alert = |letter: &DeadLetter| letter.rejection.reason == ALERT_REJECTED;
        if !refused.iter().any(is_alert) {
            return Cow::Borrowed(refused);
        }
        let own: HashSet<(&str, i32, i64)> = refused
            .iter()
            .filter(|letter| !is_alert(letter))
            .map(|letter| (letter.topic.as_str(), letter.partition, letter.offset))
            .collect();
        Cow::Owned(
            refused
                .iter()
                .filter(|letter| {
                    !is_alert(letter)
                        || !own.contains(&(letter.topic.as_str(), letter.partition, letter.offset))
                })
                .cloned()
                .collect(),
        )
    }

    /// What InfluxDB took of this batch, once durable, given the dead letters of all the lines
    /// it refused (before [`Batch::one_letter_per_record`]).
    pub fn written(&self, refused: &[DeadLetter]) -> Written {
        let mut written = Written {
            points: self.points(),
            alert_points: self.alert_lines,
        };
        for letter in refused {
            match self.refused_alert_level(letter) {
                Some(level) => {
                    let count = &mut written.alert_points[level.index()];
                    *count = count.saturating_sub(1);
                }
                None => written.points = written.points.saturating_sub(1),
            }
        }
        written
    }

    /// Each generator's newest reading whose point InfluxDB took (a refused record's reading is
    /// left out), for the gauges once the batch is durable.
    pub fn written_readings<'a>(
        &'a self,
        refused: &'a [DeadLetter],
    ) -> impl Iterator<Item = GaugeReading<'a>> + 'a {
        self.latest.iter().filter_map(move |(id, latest)| {
            let generator = self.generator_ids.get(id.clone())?;
            let topic = self.topics.get(latest.topic)?;
            let was_refused = refused.iter().any(|letter| {
                letter.rejection.reason != ALERT_REJECTED
                    && letter.offset == latest.offset
                    && letter.partition == latest.partition
                    && letter.topic == *topic
            });
            (!was_refused).then_some(GaugeReading {
                generator,
                fuel: latest.fuel,
                thresholds: latest.thresholds,
                timestamp_ns: latest.timestamp_ns,
                topic,
                partition: latest.partition,
            })
        })
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

    /// An empty batch with room for as much as this one holds, so that the next one fills
    /// without growing its buffers and its generator map step by step (each step copies or
    /// rehashes everything so far: about 600 instructions a record for a 5,000-record batch).
    pub fn sized_like(&self) -> Batch {
        Batch {
            lines: Vec::with_capacity(self.lines.len()),
            line_ends: Vec::with_capacity(self.line_ends.len()),
            line_sources: Vec::with_capacity(self.line_sources.len()),
            original_bytes: Vec::with_capacity(self.original_bytes.len()),
            next_offsets: Vec::with_capacity(self.next_offsets.len()),
            latest: HashTable::with_capacity(self.latest.len()),
            generator_ids: String::with_capacity(self.generator_ids.len()),
            ..Batch::default()
        }
    }

    /// Empties the batch for reuse, keeping the capacity of every buffer.
    pub fn clear(&mut self) {
        self.lines.clear();
        self.line_ends.clear();
        self.line_sources.clear();
        self.original_bytes.clear();
        self.topics.clear();
        self.dead_letters.clear();
        self.next_offsets.clear();
        self.opened_at = None;
        self.alert_lines = [0; 2];
        self.latest.clear();
        self.generator_ids.clear();
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
        batch.add_point(message, message.headers(), now);
    }

    #[test]
    fn the_next_batch_has_room_for_as_much_as_the_last() {
        let mut batch = Batch::default();
        let now = Instant::now();
        for offset in 0..100 {
            add_line(&mut batch, &message("t", 0, offset), now);
        }
        let next = batch.sized_like();
        assert!(next.is_empty());
        assert_eq!(next.points(), 0);
        assert!(next.lines.capacity() >= batch.lines.len());
        assert!(next.line_sources.capacity() >= 100);
        assert!(next.original_bytes.capacity() >= batch.original_bytes.len());
        assert_eq!(next.deadline(&policy()), None);
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
        let message = message("t", 0, 0);
        batch.add_point(&message, message.headers(), Instant::now());
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

    fn add_alert_line(batch: &mut Batch, level: Level) {
        batch
            .line_buffer()
            .extend_from_slice(format!("alerts,level={level} fuel=1 1\n").as_bytes());
        batch.add_alert(level);
    }

    fn reading(generator: &str, fuel: f64, timestamp_ns: i64) -> FuelReading<'_> {
        FuelReading {
            generator,
            fuel,
            thresholds: Thresholds::new(200.0, 100.0).unwrap(),
            timestamp_ns,
        }
    }

    #[test]
    fn alert_lines_are_written_but_are_neither_records_nor_points() {
        let now = Instant::now();
        let mut batch = Batch::default();
        add_line(&mut batch, &message("t", 0, 1), now);
        add_alert_line(&mut batch, Level::Warn);
        add_line(&mut batch, &message("t", 0, 2), now);
        add_alert_line(&mut batch, Level::Critical);
        add_line(&mut batch, &message("t", 1, 3), now);
        add_alert_line(&mut batch, Level::Critical);
        assert_eq!(batch.line_ends().len(), 6, "every line is written");
        assert_eq!((batch.records(), batch.points()), (3, 3));
        assert_eq!(batch.alert_points(), 3);
        assert_eq!(
            (
                batch.alert_points_of(Level::Warn),
                batch.alert_points_of(Level::Critical)
            ),
            (1, 2)
        );
        // max_records is 3: full by its records, not its 6 lines.
        assert!(batch.is_full(&policy()));
        let mut two = Batch::default();
        add_line(&mut two, &message("t", 0, 1), now);
        add_alert_line(&mut two, Level::Warn);
        add_line(&mut two, &message("t", 0, 2), now);
        add_alert_line(&mut two, Level::Warn);
        assert!(!two.is_full(&policy()), "two records and two alerts");
        assert_eq!(
            batch.written(&[]),
            Written {
                points: 3,
                alert_points: [1, 2]
            }
        );
        batch.clear();
        assert_eq!((batch.alert_points(), batch.points()), (0, 0));
    }

    #[test]
    fn a_refused_alert_line_is_dead_lettered_as_its_record_and_counted_as_an_alert() {
        let now = Instant::now();
        let mut batch = Batch::default();
        add_line(&mut batch, &message("t", 0, 1), now);
        add_line(&mut batch, &message("t", 0, 2), now);
        add_alert_line(&mut batch, Level::Critical);
        add_line(&mut batch, &message("t", 0, 3), now);
        let refused = Rejection {
            stage: Stage::Write,
            reason: "InfluxDbRejected",
            message: "field type conflict".into(),
        };
        let alert = batch.dead_letter_for_line(2, refused.clone()).unwrap();
        assert_eq!((alert.partition, alert.offset), (0, 2));
        assert_eq!(alert.value.as_deref(), Some(&b"value-2"[..]));
        assert_eq!(alert.rejection.stage, Stage::Write);
        assert_eq!(alert.rejection.reason, ALERT_REJECTED);
        assert!(
            alert
                .rejection
                .message
                .contains("critical fuel alert point")
                && alert.rejection.message.ends_with("field type conflict"),
            "{}",
            alert.rejection.message
        );
        assert_eq!(batch.refused_alert_level(&alert), Some(Level::Critical));
        // The record's own line keeps InfluxDB's reason.
        let own = batch.dead_letter_for_line(3, refused).unwrap();
        assert_eq!((own.offset, own.rejection.reason), (3, "InfluxDbRejected"));
        assert_eq!(batch.refused_alert_level(&own), None);
        assert_eq!(
            batch.written(std::slice::from_ref(&alert)),
            Written {
                points: 3,
                alert_points: [0, 0]
            }
        );
        assert_eq!(
            batch.written(&[alert, own]),
            Written {
                points: 2,
                alert_points: [0, 0]
            }
        );
    }

    #[test]
    fn a_record_whose_point_and_alert_are_both_refused_is_dead_lettered_once() {
        let now = Instant::now();
        let mut batch = Batch::default();
        for offset in 1..=3 {
            add_line(&mut batch, &message("t", 0, offset), now);
            add_alert_line(&mut batch, Level::Critical);
        }
        let refused = |line| {
            batch
                .dead_letter_for_line(
                    line,
                    Rejection {
                        stage: Stage::Write,
                        reason: "InfluxDbRejected",
                        message: "max key length exceeded".into(),
                    },
                )
                .unwrap()
        };
        // Record 1: both lines refused; record 2: only its alert; record 3: only its point.
        let letters = vec![refused(0), refused(1), refused(3), refused(4)];
        let delivered = batch.one_letter_per_record(&letters);
        let delivered: Vec<(i64, &str)> = delivered
            .iter()
            .map(|letter| (letter.offset, letter.rejection.reason))
            .collect();
        assert_eq!(
            delivered,
            [
                (1, "InfluxDbRejected"),
                (2, ALERT_REJECTED),
                (3, "InfluxDbRejected")
            ]
        );
        assert!(matches!(
            batch.one_letter_per_record(&[refused(0)]),
            Cow::Borrowed(_)
        ));
        // The accounting sees every refused line: two points and two alerts were not written.
        assert_eq!(
            batch.written(&letters),
            Written {
                points: 1,
                alert_points: [0, 1]
            }
        );
    }

    #[test]
    fn an_alert_without_a_record_leaves_no_line() {
        let mut batch = Batch::default();
        add_alert_line(&mut batch, Level::Warn);
        assert!(batch.lines().is_empty() && batch.line_ends().is_empty());
        assert_eq!(batch.alert_points(), 0);
        // Lines and their origins stay in step: the next record is line 0.
        add_line(&mut batch, &message("t", 0, 1), Instant::now());
        assert_eq!(batch.lines(), b"m f=1 1\n");
        assert_eq!(batch.line_ends(), &[8]);
    }

    #[test]
    fn keeps_only_each_generators_newest_reading_and_leaves_out_refused_ones() {
        let now = Instant::now();
        let mut batch = Batch::default();
        for (offset, (generator, fuel, timestamp)) in [
            ("a", 300.0, 10),
            ("b", 90.0, 10),
            ("a", 150.0, 30),
            // Older than a's reading above (another partition's record, read later).
            ("a", 999.0, 20),
            ("c", 50.0, 5),
        ]
        .into_iter()
        .enumerate()
        {
            let partition = (offset % 2) as i32;
            let message = message("t", partition, offset as i64);
            add_line(&mut batch, &message, now);
            batch.add_reading(&reading(generator, fuel, timestamp));
        }
        assert_eq!(batch.latest.len(), 3);
        let mut readings: Vec<_> = batch
            .written_readings(&[])
            .map(|r| (r.generator.to_owned(), r.fuel, r.timestamp_ns, r.partition))
            .collect();
        readings.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            readings,
            vec![
                ("a".to_owned(), 150.0, 30, 0),
                ("b".to_owned(), 90.0, 10, 1),
                ("c".to_owned(), 50.0, 5, 0),
            ]
        );
        // c's record (offset 4) was refused by InfluxDB: its reading is not shown.
        let refused = refused_by_influxdb(&batch, 4);
        let shown: Vec<&str> = {
            let mut shown: Vec<&str> = batch
                .written_readings(std::slice::from_ref(&refused))
                .map(|r| r.generator)
                .collect();
            shown.sort();
            shown
        };
        assert_eq!(shown, ["a", "b"]);
        batch.clear();
        assert_eq!(batch.written_readings(&[]).count(), 0);
    }

    /// The dead letter of line `line`, refused by InfluxDB.
    fn refused_by_influxdb(batch: &Batch, line: usize) -> DeadLetter {
        let rejection = Rejection {
            stage: Stage::Write,
            reason: "InfluxDbRejected",
            message: "no".into(),
        };
        batch
            .dead_letter_for_line(line, rejection)
            .expect("a line of the batch")
    }

    #[test]
    fn a_reading_belongs_to_the_record_added_last_and_needs_one() {
        let now = Instant::now();
        let mut batch = Batch::default();
        batch.add_reading(&reading("orphan", 10.0, 1));
        assert_eq!(batch.written_readings(&[]).count(), 0, "no record yet");
        add_line(&mut batch, &message("a", 0, 1), now);
        add_line(&mut batch, &message("b", 3, 7), now);
        add_alert_line(&mut batch, Level::Warn);
        // After its alert line the reading is still the last record's: b[3]@7.
        batch.add_reading(&reading("g", 150.0, 5));
        add_line(&mut batch, &message("a", 1, 2), now);
        batch.add_reading(&reading("h", 50.0, 6));
        let mut readings: Vec<_> = batch
            .written_readings(&[])
            .map(|r| (r.generator.to_owned(), r.topic.to_owned(), r.partition))
            .collect();
        readings.sort();
        assert_eq!(
            readings,
            [("g".into(), "b".into(), 3), ("h".into(), "a".into(), 1)]
        );
        // Refusing b[3]@7 leaves g's reading out, and only g's.
        let refused = refused_by_influxdb(&batch, 1);
        let shown: Vec<_> = batch
            .written_readings(std::slice::from_ref(&refused))
            .map(|r| r.generator)
            .collect();
        assert_eq!(shown, ["h"]);
        batch.clear();
        batch.add_reading(&reading("orphan", 10.0, 1));
        assert_eq!(batch.written_readings(&[]).count(), 0, "cleared: no record");
    }

    /// Fills `batch` with records of `topic`: points, readings, an alert, a dead letter.
    fn fill(batch: &mut Batch, topic: &str, first_offset: i64, now: Instant) {
        for (i, generator) in ["g1", "g2", "g1"].into_iter().enumerate() {
            let offset = first_offset + i as i64;
            let partition = i as i32 % 2;
            add_line(batch, &message(topic, partition, offset), now);
            batch.add_reading(&reading(generator, 100.0 + offset as f64, offset));
        }
        add_alert_line(batch, Level::Warn);
        batch.add_dead_letter(
            DeadLetter {
                topic: topic.into(),
                ..letter(1, first_offset + 3)
            },
            now,
        );
    }

    /// What the writer and the pipeline read of a batch.
    fn observed(batch: &Batch) -> impl PartialEq + std::fmt::Debug + use<> {
        let mut readings: Vec<_> = batch
            .written_readings(&[])
            .map(|r| {
                (
                    r.generator.to_owned(),
                    r.fuel,
                    r.topic.to_owned(),
                    r.partition,
                )
            })
            .collect();
        readings.sort_by(|a, b| a.0.cmp(&b.0));
        let last = batch.line_ends().len() - 1;
        let letter = batch.dead_letter_for_line(
            last - 1,
            Rejection {
                stage: Stage::Write,
                reason: "InfluxDbRejected",
                message: "no".into(),
            },
        );
        (
            batch.lines().to_vec(),
            batch.line_ends().to_vec(),
            batch.next_offsets().to_vec(),
            (batch.records(), batch.points(), batch.alert_points()),
            batch.dead_letters().to_vec(),
            readings,
            letter,
        )
    }

    #[test]
    fn a_cleared_batch_fills_as_a_new_one_would_and_keeps_its_buffers() {
        let now = Instant::now();
        let mut reused = Batch::default();
        fill(&mut reused, "first", 0, now);
        let capacity = (reused.lines.capacity(), reused.line_sources.capacity());
        reused.clear();
        assert!(reused.is_empty());
        assert_eq!(reused.deadline(&policy()), None);
        assert_eq!(
            (reused.lines.capacity(), reused.line_sources.capacity()),
            capacity
        );
        let later = now + Duration::from_secs(1);
        fill(&mut reused, "second", 50, later);
        let mut fresh = Batch::default();
        fill(&mut fresh, "second", 50, later);
        assert_eq!(observed(&reused), observed(&fresh));
        assert_eq!(reused.deadline(&policy()), Some(later + policy().linger));
        assert_eq!(
            reused.clock(),
            later,
            "an open batch's clock is its opening time"
        );
    }
}
