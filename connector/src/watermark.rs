//! The per-partition commit watermark over batches that become durable out of order.
//!
//! Batches are cut in consumption order, so for each partition the batches touching it form a
//! queue in offset order. A partition's committable offset is the end of the longest prefix of
//! that queue whose batches are all durable: a batch finishing early never lets the offset jump
//! over an older batch still being written.

use std::collections::{HashMap, VecDeque};

use crate::batch::NextOffset;

/// Identifies a batch from the moment it is cut.
pub type BatchId = u64;

#[derive(Debug, Default)]
struct Track {
    /// (batch, its next offset in this partition, durable yet), oldest first.
    queue: VecDeque<(BatchId, i64, bool)>,
}

/// Watermarks of every partition the sink has cut batches for.
#[derive(Debug, Default)]
pub struct Watermarks {
    tracks: HashMap<(String, i32), Track>,
}

impl Watermarks {
    /// Registers batch `id`, cut after every earlier batch, with its next offset per partition.
    pub fn cut(&mut self, id: BatchId, next_offsets: &[NextOffset]) {
        for next in next_offsets {
            self.tracks
                .entry((next.topic.clone(), next.partition))
                .or_default()
                .queue
                .push_back((id, next.offset, false));
        }
    }

    /// Marks batch `id` durable; returns the partitions whose committable offset advanced, with
    /// the new offset to store.
    pub fn durable(&mut self, id: BatchId) -> Vec<NextOffset> {
        let mut advanced = Vec::new();
        self.tracks.retain(|(topic, partition), track| {
            if let Some(entry) = track.queue.iter_mut().find(|(batch, _, _)| *batch == id) {
                entry.2 = true;
            }
            let mut committable = None;
            while let Some(&(_, offset, true)) = track.queue.front() {
                committable = Some(offset);
                track.queue.pop_front();
            }
            if let Some(offset) = committable {
                advanced.push(NextOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                });
            }
            !track.queue.is_empty()
        });
        advanced.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        advanced
    }

    /// Batches cut but not yet durable, over all partitions.
    pub fn pending(&self) -> usize {
        self.tracks
            .values()
            .map(|track| track.queue.iter().filter(|entry| !entry.2).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn next(partition: i32, offset: i64) -> NextOffset {
        NextOffset {
            topic: "t".into(),
            partition,
            offset,
        }
    }

    #[test]
    fn out_of_order_completion_waits_for_the_older_batch() {
        let mut marks = Watermarks::default();
        marks.cut(1, &[next(0, 10), next(1, 5)]);
        marks.cut(2, &[next(0, 20)]);
        marks.cut(3, &[next(0, 30), next(1, 9)]);
        // Batch 2 first: partition 0 must not pass batch 1.
        assert_eq!(marks.durable(2), vec![]);
        assert_eq!(marks.durable(3), vec![]);
        assert_eq!(marks.pending(), 2);
        // Batch 1 releases everything behind it.
        assert_eq!(marks.durable(1), vec![next(0, 30), next(1, 9)]);
        assert_eq!(marks.pending(), 0);
    }

    #[test]
    fn a_partition_not_in_the_old_batch_advances_at_once() {
        let mut marks = Watermarks::default();
        marks.cut(1, &[next(0, 10)]);
        marks.cut(2, &[next(0, 20), next(1, 4)]);
        assert_eq!(marks.durable(2), vec![next(1, 4)]);
        assert_eq!(marks.durable(1), vec![next(0, 20)]);
    }

    #[test]
    fn unknown_batches_change_nothing() {
        let mut marks = Watermarks::default();
        marks.cut(1, &[next(0, 10)]);
        assert_eq!(marks.durable(7), vec![]);
        assert_eq!(marks.durable(1), vec![next(0, 10)]);
    }

    proptest! {
        /// Whatever the completion order, a stored offset never passes a batch that is not durable,
        /// and once every batch is durable each partition ends at its last batch's offset.
        #[test]
        fn never_passes_a_pending_batch(
            batches in proptest::collection::vec(proptest::collection::btree_set(0i32..4, 1..4), 1..12),
            order_seed in any::<u64>(),
        ) {
            let mut marks = Watermarks::default();
            let mut ends: HashMap<i32, i64> = HashMap::new();
            let mut cut: Vec<(BatchId, Vec<NextOffset>)> = Vec::new();
            for (index, partitions) in batches.iter().enumerate() {
                let offsets: Vec<NextOffset> = partitions.iter().map(|&partition| {
                    let end = ends.entry(partition).or_insert(0);
                    *end += 10;
                    next(partition, *end)
                }).collect();
                marks.cut(index as BatchId, &offsets);
                cut.push((index as BatchId, offsets));
            }
            let mut order: Vec<usize> = (0..cut.len()).collect();
            let mut state = order_seed;
            for i in (1..order.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut durable = vec![false; cut.len()];
            let mut stored: HashMap<i32, i64> = HashMap::new();
            for &index in &order {
                durable[index] = true;
                for advanced in marks.durable(index as BatchId) {
                    // Every batch with an offset at or below the stored one in this partition is durable.
                    for (id, offsets) in &cut {
                        if offsets.iter().any(|o| o.partition == advanced.partition && o.offset <= advanced.offset) {
                            prop_assert!(durable[*id as usize], "stored {:?} past pending batch {}", advanced, id);
                        }
                    }
                    let previous = stored.insert(advanced.partition, advanced.offset);
                    prop_assert!(previous.is_none_or(|previous| previous < advanced.offset));
                }
            }
            prop_assert_eq!(stored, ends);
            prop_assert_eq!(marks.pending(), 0);
        }
    }
}
