//! What each assigned partition is doing, for `/status` and the per-partition metrics.
//!
//! Plain state, updated by the consumer's callbacks (assignment, statistics, commits), by the
//! write tasks (stored offsets, dead letters) and read by the HTTP server. A partition's entry
//! is created when it is assigned and removed when it is revoked, so a replica never reports a
//! partition another member owns.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// An error, when it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedError {
    /// Unix time, in seconds.
    pub at: f64,
    /// What went wrong, as in the logs (never a secret).
    pub message: String,
}

impl TimedError {
    /// `message`, now.
    pub fn now(message: impl Into<String>) -> Self {
        Self {
            at: unix_now(),
            message: message.into(),
        }
    }
}

/// One assigned partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PartitionStatus {
    /// Records between the committed offset and the end of the partition, as librdkafka last
    /// saw it (statistics every `statistics.interval.ms`).
    pub lag: Option<i64>,
    /// The high watermark librdkafka last saw.
    pub end_offset: Option<i64>,
    /// The last committed offset (the next record to read after a restart).
    pub committed_offset: Option<i64>,
    /// The last stored offset: everything before it is durable.
    pub stored_offset: Option<i64>,
    /// Unix time of the last successful commit of this partition.
    pub last_commit: Option<f64>,
    /// Unix time the last batch holding this partition's records became durable.
    pub last_durable_write: Option<f64>,
    /// Batches holding this partition's records being written now.
    pub batches_in_flight: usize,
    /// Whether reading the partition is paused.
    pub paused: bool,
    /// The last problem with this partition's records: a dead-lettered record, or InfluxDB
    /// failing while one of its batches was in flight.
    pub last_error: Option<TimedError>,
}

/// Every assigned partition, by topic and partition.
#[derive(Debug, Default)]
pub struct Partitions {
    partitions: BTreeMap<(String, i32), PartitionStatus>,
}

impl Partitions {
    /// The partition's entry, created if it is new. (Called per batch and per callback, never
    /// per record, so the key's allocation does not matter.)
    pub fn entry(&mut self, topic: &str, partition: i32) -> &mut PartitionStatus {
        self.partitions
            .entry((topic.to_owned(), partition))
            .or_default()
    }

    /// The partition's entry, if it is assigned.
    pub fn get_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionStatus> {
        self.partitions.get_mut(&(topic.to_owned(), partition))
    }

    /// Forgets a partition.
    pub fn remove(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    /// Every partition, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, i32), &PartitionStatus)> {
        self.partitions.iter()
    }

    /// Every partition, in order, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&(String, i32), &mut PartitionStatus)> {
        self.partitions.iter_mut()
    }

    /// How many partitions are known.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// Whether no partition is known.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_and_go() {
        let mut partitions = Partitions::default();
        partitions.entry("t", 1).lag = Some(5);
        partitions.entry("t", 0).paused = true;
        assert_eq!(partitions.len(), 2);
        assert_eq!(partitions.get_mut("t", 1).map(|p| p.lag), Some(Some(5)));
        let order: Vec<i32> = partitions.iter().map(|((_, p), _)| *p).collect();
        assert_eq!(order, vec![0, 1]);
        partitions.remove("t", 1);
        assert!(partitions.get_mut("t", 1).is_none());
        assert!(!partitions.is_empty());
    }
}
