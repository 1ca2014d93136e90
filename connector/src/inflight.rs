//! Batches being made durable: at most the limit the pipeline sets (`write_concurrency` being
//! written, one more compressed and waiting for a request slot), each written to InfluxDB and
//! dead-lettered by its own task, and the watermark that turns their completions, in whatever
//! order they arrive, into offsets that are safe to store.
//!
//! Each task stores the offsets its batch makes safe as soon as it is durable, rather than
//! waiting for the main loop, because the main loop may be the very thread a rebalance callback
//! is blocking: on revoke, the callback waits (bounded) in [`PartitionsInFlight::wait_idle`]
//! for the revoked partitions' batches, so that what they made durable is committed before the
//! partitions go to another member.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, NextOffset};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::metrics::Telemetry;
use crate::reject::{Rejection, Stage};
use crate::source::{self, SourceConsumer};
use crate::watermark::{BatchId, Watermarks};
use crate::write::InfluxWriter;

/// A batch whose task ended.
#[derive(Debug)]
pub struct Completed {
    /// Which batch.
    pub id: BatchId,
    /// The batch, for its counts.
    pub batch: Batch,
    /// The dead letters of lines InfluxDB refused, or `Err` when the sink stopped first.
    pub outcome: Result<Vec<DeadLetter>, Abandoned>,
}

/// The batch was not made durable because the sink is stopping; nothing of it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

/// A write task panicked: a bug. Its batch can never be marked durable, so the sink stops.
#[derive(Debug, thiserror::Error)]
#[error("a write task failed: {0}")]
pub struct TaskFailed(#[from] tokio::task::JoinError);

/// How many batches are in flight per partition, shared with the consumer's rebalance callback.
#[derive(Debug, Default)]
pub struct PartitionsInFlight {
    counts: Mutex<HashMap<(String, i32), usize>>,
    changed: Condvar,
}

impl PartitionsInFlight {
    pub(crate) fn started(&self, partitions: &[NextOffset]) {
        if let Ok(mut counts) = self.counts.lock() {
            for next in partitions {
                *counts
                    .entry((next.topic.clone(), next.partition))
                    .or_default() += 1;
            }
        }
    }

    pub(crate) fn finished(&self, partitions: &[NextOffset]) {
        if let Ok(mut counts) = self.counts.lock() {
            for next in partitions {
                let key = (next.topic.clone(), next.partition);
                if let Some(count) = counts.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        counts.remove(&key);
                    }
                }
            }
        }
        self.changed.notify_all();
    }

    /// How many batches of `partition` of `topic` are in flight.
    pub fn count(&self, topic: &str, partition: i32) -> usize {
        self.counts
            .lock()
            .ok()
            .and_then(|counts| counts.get(&(topic.to_owned(), partition)).copied())
            .unwrap_or_default()
    }

    /// Blocks until none of `partitions` has a batch in flight, or `timeout` passes; returns
    /// whether they are idle.
    pub fn wait_idle(&self, partitions: &[(String, i32)], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Ok(mut counts) = self.counts.lock() else {
            return false;
        };
        loop {
            if !partitions
                .iter()
                .any(|partition| counts.contains_key(partition))
            {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            counts = match self.changed.wait_timeout(counts, left) {
                Ok((counts, _)) => counts,
                Err(_) => return false,
            };
        }
    }
}

/// The batches in flight and the watermark over them.
pub struct InFlight {
    tasks: JoinSet<Completed>,
    watermarks: Arc<Mutex<Watermarks>>,
    partitions: Arc<PartitionsInFlight>,
    consumer: Arc<SourceConsumer>,
    next_id: BatchId,
    limit: usize,
    writer: InfluxWriter,
    dead_letters: Arc<DeadLetterSink>,
    abandon: CancellationToken,
    telemetry: Arc<Telemetry>,
}

impl InFlight {
    /// At most `limit` batches in flight; `abandon` ends their retries at shutdown. Offsets are
    /// stored on `consumer`; `partitions` is shared with its rebalance callback.
    pub fn new(
        limit: usize,
        writer: InfluxWriter,
        dead_letters: Arc<DeadLetterSink>,
        abandon: CancellationToken,
        consumer: Arc<SourceConsumer>,
        partitions: Arc<PartitionsInFlight>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            tasks: JoinSet::new(),
            watermarks: Arc::default(),
            partitions,
            consumer,
            next_id: 0,
            limit: limit.max(1),
            writer,
            dead_letters,
            abandon,
            telemetry,
        }
    }

    /// Whether another batch may start.
    pub fn has_room(&self) -> bool {
        self.tasks.len() < self.limit
    }

    /// The most batches in flight at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Number of batches in flight.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Starts making `batch` durable. Batches must be dispatched in the order they were cut.
    pub fn dispatch(&mut self, batch: Batch) {
        let id = self.next_id;
        self.next_id += 1;
        if let Ok(mut watermarks) = self.watermarks.lock() {
            watermarks.cut(id, batch.next_offsets());
        }
        self.partitions.started(batch.next_offsets());
        self.telemetry.batch_dispatched(&batch);
        let (writer, dead_letters, abandon) = (
            self.writer.clone(),
            self.dead_letters.clone(),
            self.abandon.clone(),
        );
        let (watermarks, partitions, consumer, telemetry) = (
            self.watermarks.clone(),
            self.partitions.clone(),
            self.consumer.clone(),
            self.telemetry.clone(),
        );
        self.tasks.spawn(async move {
            let outcome = make_durable(&writer, &dead_letters, &batch, &abandon).await;
            if outcome.is_ok() {
                // Under the lock, so stores happen in watermark order. A poisoned lock (a panic
                // elsewhere) stores nothing: safe, the records are re-read.
                if let Ok(mut watermarks) = watermarks.lock() {
                    source::store_durable(&consumer, &watermarks.durable(id));
                }
            }
            partitions.finished(batch.next_offsets());
            telemetry.batch_finished(&batch);
            Completed { id, batch, outcome }
        });
    }

    /// The next batch to finish, or `None` when nothing is in flight.
    pub async fn next_completed(&mut self) -> Option<Result<Completed, TaskFailed>> {
        self.tasks
            .join_next()
            .await
            .map(|joined| joined.map_err(TaskFailed))
    }
}

/// Writes the batch's lines and delivers its dead letters (concurrently), then dead-letters the
/// lines InfluxDB refused. Returns those refused lines' dead letters once everything is durable.
async fn make_durable(
    writer: &InfluxWriter,
    dead_letters: &DeadLetterSink,
    batch: &Batch,
    abandon: &CancellationToken,
) -> Result<Vec<DeadLetter>, Abandoned> {
    let write = async {
        if batch.points() == 0 {
            return Ok(Vec::new());
        }
        writer
            .write(batch.lines(), batch.line_ends(), abandon)
            .await
    };
    let deliver = async {
        if batch.dead_letters().is_empty() {
            return Ok(());
        }
        dead_letters.deliver(batch.dead_letters(), abandon).await
    };
    let (written, delivered) = tokio::join!(write, deliver);
    let (Ok(rejected_lines), Ok(())) = (written, delivered) else {
        return Err(Abandoned);
    };
    // Lines InfluxDB refused become dead letters of the write stage, delivered before the batch
    // counts as durable.
    let refused: Vec<DeadLetter> = rejected_lines
        .into_iter()
        .filter_map(|line| {
            let rejection = Rejection {
                stage: Stage::Write,
                reason: if line.too_large {
                    "TooLarge"
                } else {
                    "InfluxDbRejected"
                },
                message: line.message,
            };
            batch.dead_letter_for_line(line.index, rejection)
        })
        .collect();
    // A record whose own line and alert line were both refused goes to the topic once.
    let letters = batch.one_letter_per_record(&refused);
    if !letters.is_empty() && dead_letters.deliver(&letters, abandon).await.is_err() {
        return Err(Abandoned);
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(partition: i32) -> NextOffset {
        NextOffset {
            topic: "t".into(),
            partition,
            offset: 1,
        }
    }

    #[test]
    fn wait_idle_returns_when_the_revoked_partitions_finish_and_times_out_otherwise() {
        let registry = Arc::new(PartitionsInFlight::default());
        registry.started(&[next(0), next(1)]);
        registry.started(&[next(1)]);
        let revoked = vec![("t".to_owned(), 0)];
        assert!(!registry.wait_idle(&revoked, Duration::from_millis(20)));
        let finisher = {
            let registry = registry.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                registry.finished(&[next(0), next(1)]);
            })
        };
        assert!(registry.wait_idle(&revoked, Duration::from_secs(5)));
        finisher.join().unwrap();
        // Partition 1 still has a batch in flight.
        assert!(!registry.wait_idle(&[("t".to_owned(), 1)], Duration::from_millis(20)));
        registry.finished(&[next(1)]);
        assert!(registry.wait_idle(&[("t".to_owned(), 1)], Duration::from_millis(20)));
        assert!(registry.wait_idle(&[("other".to_owned(), 9)], Duration::ZERO));
    }
}
