//! The fuel alert metrics: one gauge series set per generator, and the alert point counters.
//!
//! ```text
//! kis_generator_fuel{generator}                        last fuel written
//! kis_generator_last_seen_timestamp_seconds{generator} that reading's timestamp (Unix seconds)
//! kis_generator_fuel_threshold{generator,level}        the warn and critical thresholds that apply
//! kis_alert_points_written_total{level}                alert points InfluxDB acknowledged
//! kis_generator_series_evicted_total                   generators whose series were dropped by the cap
//! ```
//!
//! Gauges move only when the batch holding a reading is durable, and only forward in time: a
//! generator's readings are spread over partitions (the scenario keys records by `uuid4`) and
//! batches finish in any order, so an older reading arriving late must not replace a newer one.
//!
//! The series are bounded. At most `alerts.max_generators` generators have series; past that,
//! the least recently seen (oldest reading timestamp) are removed, once per batch that
//! overflows. A generator's series are also removed when the partition of its last reading is
//! revoked from this member: another member now reads that partition and reports it, and a
//! series this member can no longer update would go on showing a stale level.
//!
//! The per-generator gauges are not live metric objects: a durable reading only updates its
//! generator's entry in one table, and the three gauge families are written out from that table
//! when Prometheus scrapes. A reading is shown for every durable batch (thousands a second in a
//! backlog), a scrape comes every few seconds; with a gauge object per series, each reading cost
//! half a dozen cache misses (the name, the topic, two gauges and their map entries) on the
//! record loop's thread.

use std::sync::{Arc, Mutex};

use hashbrown::HashTable;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tracing::{debug, info};

use super::{Level, Thresholds};

/// Default of `alerts.max_generators`, used until the configuration sets it.
pub const DEFAULT_MAX_GENERATORS: usize = 10_000;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    level: &'static str,
}

/// A durable reading to show on the gauges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaugeReading<'a> {
    /// The generator id.
    pub generator: &'a str,
    /// Its fuel level.
    pub fuel: f64,
    /// The thresholds that apply to it.
    pub thresholds: Thresholds,
    /// The reading's timestamp, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The Kafka topic the reading came from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
}

/// A generator with series: its newest durable reading, and where that came from.
#[derive(Debug)]
struct Seen {
    generator: GeneratorId,
    fuel: f64,
    timestamp_ns: i64,
    thresholds: Thresholds,
    /// Index into [`Tracked::topics`].
    topic: u32,
    partition: i32,
}

/// Generator ids up to this many bytes are held in their table entry.
const INLINE_ID: usize = 30;

/// A generator id, held in its table entry when it is short, as most fleets' ids are: the
/// lookup made for every reading then compares bytes already loaded with the entry, where a
/// boxed id cost a cache miss of its own (a few percent of the sink's CPU in a backlog).
#[derive(Debug)]
enum GeneratorId {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Boxed(Box<str>),
}

impl GeneratorId {
    fn new(id: &str) -> Self {
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE_ID => {
                let mut bytes = [0; INLINE_ID];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                GeneratorId::Inline { len, bytes }
            }
            _ => GeneratorId::Boxed(id.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            GeneratorId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            GeneratorId::Boxed(id) => id.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // The bytes are a whole `&str`'s (see `new`), so this never fails; an empty name
            // is what a broken invariant would show, not a panic in the metrics server.
            GeneratorId::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            GeneratorId::Boxed(id) => id,
        }
    }
}

#[derive(Debug)]
struct Tracked {
    max_generators: usize,
    /// Seeded per process: generator names come from the records, but only the fleet's own
    /// producers write them, and this table is looked up for every reading.
    hasher: foldhash::fast::RandomState,
    generators: HashTable<Seen>,
    /// The topics readings came from (a sink reads a handful), named once.
    topics: Vec<String>,
}

impl Tracked {
    fn hash(&self, generator: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, generator)
    }

    /// The index of a topic readings already came from.
    fn known_topic(&self, topic: &str) -> Option<u32> {
        let index = self.topics.iter().position(|known| known == topic)?;
        // A sink reads a handful of topics; more than 2^32 names would not fit in memory.
        u32::try_from(index).ok()
    }

    /// The index of `topic`, named here from now on if it is new.
    fn topic_index(&mut self, topic: &str) -> u32 {
        self.known_topic(topic).unwrap_or_else(|| {
            self.topics.push(topic.to_owned());
            u32::try_from(self.topics.len() - 1).unwrap_or(u32::MAX)
        })
    }

    /// Shows `reading` unless its generator already shows a newer one.
    fn show(&mut self, reading: &GaugeReading<'_>, topic: u32) {
        let hash = self.hash(reading.generator);
        let hasher = &self.hasher;
        match self.generators.entry(
            hash,
            |seen| seen.generator.as_bytes() == reading.generator.as_bytes(),
            |seen| std::hash::BuildHasher::hash_one(hasher, seen.generator.as_str()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut entry) => {
                let seen = entry.get_mut();
                if seen.timestamp_ns <= reading.timestamp_ns {
                    seen.fuel = reading.fuel;
                    seen.timestamp_ns = reading.timestamp_ns;
                    seen.thresholds = reading.thresholds;
                    seen.topic = topic;
                    seen.partition = reading.partition;
                }
            }
            hashbrown::hash_table::Entry::Vacant(entry) => {
                entry.insert(Seen {
                    generator: GeneratorId::new(reading.generator),
                    fuel: reading.fuel,
                    timestamp_ns: reading.timestamp_ns,
                    thresholds: reading.thresholds,
                    topic,
                    partition: reading.partition,
                });
            }
        }
    }
}

/// The fuel alert metrics of one sink process.
#[derive(Debug)]
pub struct AlertMetrics {
    alert_points: Family<LevelLabels, Counter>,
    evicted: Counter,
    /// Also serialises updates, evictions, revokes and scrapes, so a scrape never shows a
    /// generator half updated.
    tracked: Arc<Mutex<Tracked>>,
}

impl AlertMetrics {
    /// Creates the metrics and registers them on `registry` (whose prefix, `kis`, they take).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            alert_points: Family::default(),
            evicted: Counter::default(),
            tracked: Arc::new(Mutex::new(Tracked {
                max_generators: DEFAULT_MAX_GENERATORS,
                hasher: foldhash::fast::RandomState::default(),
                generators: HashTable::new(),
                topics: Vec::new(),
            })),
        };
        registry.register_collector(Box::new(GeneratorGauges {
            tracked: metrics.tracked.clone(),
        }));
        registry.register(
            "alert_points_written",
            "Fuel alert points acknowledged by InfluxDB, by level",
            metrics.alert_points.clone(),
        );
        registry.register(
            "generator_series_evicted",
            "Generators whose gauge series were removed to stay within alerts.max_generators",
            metrics.evicted.clone(),
        );
        // Both levels exist from the start: an alerting rule on the rate of a series that
        // appears only with the first alert would miss that first alert.
        for level in Level::ALL {
            drop(metrics.alert_points.get_or_create(&LevelLabels {
                level: level.as_str(),
            }));
        }
        metrics
    }

    /// Caps the generators with series (at least one); evicts at once if already past it.
    pub fn set_max_generators(&self, max_generators: usize) {
        if let Ok(mut tracked) = self.tracked.lock() {
            tracked.max_generators = max_generators.max(1);
            self.evict_past_cap(&mut tracked);
        }
    }

    /// `points` alert points of `level` became durable.
    pub fn alert_points_written(&self, level: Level, points: u64) {
        self.alert_points
            .get_or_create(&LevelLabels {
                level: level.as_str(),
            })
            .inc_by(points);
    }

    /// Shows durable readings; a reading older than the one shown for its generator is ignored.
    pub fn update<'a>(&self, readings: impl IntoIterator<Item = GaugeReading<'a>>) {
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        // The readings of one batch name their topic with the same few strings: the last one
        // resolved is tried by address before any comparison (resolving each reading's topic by
        // name made `gauges/durable_batch` about 30 % slower).
        let mut last_topic: Option<(*const u8, usize, u32)> = None;
        for reading in readings {
            let topic = match last_topic {
                Some((address, len, index))
                    if address == reading.topic.as_ptr() && len == reading.topic.len() =>
                {
                    index
                }
                _ => {
                    let index = tracked.topic_index(reading.topic);
                    last_topic = Some((reading.topic.as_ptr(), reading.topic.len(), index));
                    index
                }
            };
            tracked.show(&reading, topic);
        }
        self.evict_past_cap(&mut tracked);
    }

    /// Removes the series of generators whose last reading came from one of `partitions`.
    pub fn partitions_revoked(&self, partitions: &[(String, i32)]) {
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        let revoked: Vec<(u32, i32)> = partitions
            .iter()
            .filter_map(|(topic, partition)| Some((tracked.known_topic(topic)?, *partition)))
            .collect();
        let before = tracked.generators.len();
        tracked
            .generators
            .retain(|seen| !revoked.contains(&(seen.topic, seen.partition)));
        let removed = before - tracked.generators.len();
        if removed > 0 {
            debug!(
                generators = removed,
                "fuel gauges of generators last seen on revoked partitions removed; their new owner reports them"
            );
        }
    }

    /// Removes the least recently seen generators past the cap: one wave, one log line.
    fn evict_past_cap(&self, tracked: &mut Tracked) {
        let excess = tracked
            .generators
            .len()
            .saturating_sub(tracked.max_generators);
        if excess == 0 {
            return;
        }
        // Only past the cap, so the common case allocates nothing. Ties on the timestamp are
        // broken by name, so which generator goes is deterministic.
        let mut by_age: Vec<(i64, &str)> = tracked
            .generators
            .iter()
            .map(|seen| (seen.timestamp_ns, seen.generator.as_str()))
            .collect();
        by_age.select_nth_unstable(excess - 1);
        let mut oldest: Vec<Box<str>> = by_age[..excess]
            .iter()
            .map(|(_, generator)| (*generator).into())
            .collect();
        oldest.sort_unstable();
        tracked.generators.retain(|seen| {
            let id = seen.generator.as_str();
            oldest.binary_search_by(|old| (**old).cmp(id)).is_err()
        });
        self.evicted.inc_by(excess as u64);
        info!(
            evicted = excess,
            max_generators = tracked.max_generators,
            "more generators than alerts.max_generators: the series of the least recently seen were removed"
        );
    }
}

/// Writes the per-generator gauge families from the table at each scrape.
#[derive(Debug)]
struct GeneratorGauges {
    tracked: Arc<Mutex<Tracked>>,
}

impl Collector for GeneratorGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A poisoned lock means an update panicked midway; showing nothing beats guessing.
        let Ok(tracked) = self.tracked.lock() else {
            return Ok(());
        };
        per_generator(
            &mut encoder,
            &tracked,
            "generator_fuel",
            "Fuel level of each generator's latest durable reading",
            |seen| seen.fuel,
        )?;
        // Seconds as a float, like Prometheus' own timestamp gauges; f64 keeps microseconds
        // exact for the next centuries.
        per_generator(
            &mut encoder,
            &tracked,
            "generator_last_seen_timestamp_seconds",
            "Timestamp (Unix seconds) of each generator's latest durable reading",
            |seen| seen.timestamp_ns as f64 / 1e9,
        )?;
        let mut family = encoder.encode_descriptor(
            "generator_fuel_threshold",
            "Fuel thresholds (warn, critical) that apply to each generator",
            None,
            MetricType::Gauge,
        )?;
        for seen in tracked.generators.iter() {
            for level in Level::ALL {
                let labels = [
                    ("generator", seen.generator.as_str()),
                    ("level", level.as_str()),
                ];
                let threshold = seen.thresholds.get(level);
                ConstGauge::new(threshold).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// One gauge family with a series per generator, its value taken from the generator's entry.
fn per_generator(
    encoder: &mut DescriptorEncoder,
    tracked: &Tracked,
    name: &'static str,
    help: &str,
    value: impl Fn(&Seen) -> f64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for seen in tracked.generators.iter() {
        let labels = [("generator", seen.generator.as_str())];
        ConstGauge::new(value(seen)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> (Registry, AlertMetrics) {
        let mut registry = Registry::with_prefix("kis");
        let metrics = AlertMetrics::register(&mut registry);
        (registry, metrics)
    }

    fn render(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    /// Sample lines (no comments), sorted: series of one family come in hash order.
    fn samples(registry: &Registry) -> Vec<String> {
        let mut samples: Vec<String> = render(registry)
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(str::to_owned)
            .collect();
        samples.sort();
        samples
    }

    fn reading(generator: &str, fuel: f64, seconds: i64, partition: i32) -> GaugeReading<'_> {
        GaugeReading {
            generator,
            fuel,
            thresholds: Thresholds::new(200.0, 100.0).unwrap(),
            timestamp_ns: seconds * 1_000_000_000 + 500_000_000,
            topic: "t",
            partition,
        }
    }

    #[test]
    fn exposition_names_and_labels() {
        let (registry, metrics) = metrics();
        metrics.update([reading("gen 1", 150.5, 1_700_000_000, 0)]);
        metrics.alert_points_written(Level::Warn, 3);
        let text = render(&registry);
        for line in [
            "# TYPE kis_generator_fuel gauge",
            "# TYPE kis_generator_last_seen_timestamp_seconds gauge",
            "# TYPE kis_generator_fuel_threshold gauge",
            "# TYPE kis_alert_points_written counter",
            "# TYPE kis_generator_series_evicted counter",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(
            samples(&registry),
            [
                "kis_alert_points_written_total{level=\"critical\"} 0",
                "kis_alert_points_written_total{level=\"warn\"} 3",
                "kis_generator_fuel_threshold{generator=\"gen 1\",level=\"critical\"} 100.0",
                "kis_generator_fuel_threshold{generator=\"gen 1\",level=\"warn\"} 200.0",
                "kis_generator_fuel{generator=\"gen 1\"} 150.5",
                "kis_generator_last_seen_timestamp_seconds{generator=\"gen 1\"} 1700000000.5",
                "kis_generator_series_evicted_total 0",
            ]
        );
    }

    #[test]
    fn changed_thresholds_of_a_known_generator_are_shown() {
        let (registry, metrics) = metrics();
        metrics.update([reading("g", 300.0, 10, 0)]);
        let moved = GaugeReading {
            thresholds: Thresholds::new(500.0, 50.0).unwrap(),
            ..reading("g", 280.0, 11, 0)
        };
        metrics.update([moved]);
        let text = render(&registry);
        for line in [
            "kis_generator_fuel_threshold{generator=\"g\",level=\"warn\"} 500.0",
            "kis_generator_fuel_threshold{generator=\"g\",level=\"critical\"} 50.0",
            "kis_generator_fuel{generator=\"g\"} 280.0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn a_newer_reading_moves_the_gauges_an_older_one_does_not() {
        let (registry, metrics) = metrics();
        metrics.update([reading("g", 300.0, 10, 0)]);
        metrics.update([reading("g", 250.0, 20, 1)]);
        // Batches finish in any order: this reading is older than the one shown.
        metrics.update([reading("g", 400.0, 15, 2)]);
        let text = render(&registry);
        assert!(
            text.contains("kis_generator_fuel{generator=\"g\"} 250.0"),
            "{text}"
        );
        assert!(
            text.contains("kis_generator_last_seen_timestamp_seconds{generator=\"g\"} 20.5"),
            "{text}"
        );
        // And the partition remembered is the newest reading's: revoking 2 keeps the series.
        metrics.partitions_revoked(&[("t".into(), 2)]);
        assert!(render(&registry).contains("kis_generator_fuel{generator=\"g\"}"));
        metrics.partitions_revoked(&[("t".into(), 1)]);
        assert!(!render(&registry).contains("generator=\"g\""));
    }

    #[test]
    fn past_the_cap_the_least_recently_seen_go_in_one_wave() {
        let (registry, metrics) = metrics();
        metrics.set_max_generators(3);
        metrics.update([
            reading("a", 1.0, 40, 0),
            reading("b", 1.0, 10, 0),
            reading("c", 1.0, 30, 0),
        ]);
        metrics.update([
            reading("d", 1.0, 50, 0),
            reading("e", 1.0, 20, 0),
            reading("a", 1.0, 60, 0),
        ]);
        let text = render(&registry);
        // b (10) and e (20) are the oldest of five; a, c and d stay.
        for kept in ["a", "c", "d"] {
            assert!(
                text.contains(&format!("kis_generator_fuel{{generator=\"{kept}\"}}")),
                "{kept}: {text}"
            );
        }
        for gone in ["b", "e"] {
            assert!(
                !text.contains(&format!("generator=\"{gone}\"")),
                "{gone}: {text}"
            );
        }
        assert!(
            text.contains("kis_generator_series_evicted_total 2"),
            "{text}"
        );
        // Lowering the cap evicts at once.
        metrics.set_max_generators(1);
        let text = render(&registry);
        assert!(
            text.contains("kis_generator_fuel{generator=\"a\"}"),
            "{text}"
        );
        assert!(!text.contains("generator=\"d\""), "{text}");
        assert!(
            text.contains("kis_generator_series_evicted_total 4"),
            "{text}"
        );
    }

    #[test]
    fn revoke_removes_exactly_the_generators_last_seen_there() {
        let (registry, metrics) = metrics();
        metrics.update([
            reading("p0", 1.0, 1, 0),
            reading("p1", 1.0, 1, 1),
            GaugeReading {
                topic: "other",
                ..reading("other0", 1.0, 1, 0)
            },
        ]);
        metrics.partitions_revoked(&[("t".into(), 0), ("t".into(), 7)]);
        let text = render(&registry);
        assert!(!text.contains("generator=\"p0\""), "{text}");
        assert!(
            text.contains("kis_generator_fuel{generator=\"p1\"}"),
            "{text}"
        );
        assert!(
            text.contains("kis_generator_fuel{generator=\"other0\"}"),
            "{text}"
        );
        // Seen again later: the series come back.
        metrics.update([reading("p0", 2.0, 2, 0)]);
        assert!(render(&registry).contains("kis_generator_fuel{generator=\"p0\"} 2.0"));
        // A revoke is not an eviction.
        assert!(render(&registry).contains("kis_generator_series_evicted_total 0"));
    }

    /// Ids short enough to sit in their entry and longer ones (a uuid) are found again by the
    /// next reading, whatever their bytes, and named whole in the exposition.
    #[test]
    fn short_and_long_generator_ids_are_each_one_series() {
        let (registry, metrics) = metrics();
        let ids = [
            "",
            "g",
            "exactly-thirty-bytes-long-id-0",
            "thirty-one-bytes-long-id-000001",
            "a0f100cc-7097-4445-b437-1ba1b09646da",
            "générateur-ü-№7",
        ];
        assert_eq!(ids[2].len(), INLINE_ID);
        assert_eq!(ids[3].len(), INLINE_ID + 1);
        metrics.update(ids.map(|id| reading(id, 100.0, 1, 0)));
        metrics.update(ids.map(|id| reading(id, 50.0, 2, 0)));
        let fuel: Vec<String> = samples(&registry)
            .into_iter()
            .filter(|line| line.starts_with("kis_generator_fuel{"))
            .collect();
        let mut expected: Vec<String> = ids
            .iter()
            .map(|id| format!("kis_generator_fuel{{generator=\"{id}\"}} 50.0"))
            .collect();
        expected.sort();
        assert_eq!(fuel, expected);
    }
}
