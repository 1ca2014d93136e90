//! Batches being made durable: at most `write_concurrency` at once, each written to InfluxDB and
//! dead-lettered by its own task, and the watermark that turns their completions, in whatever
//! order they arrive, into offsets that are safe to store.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, NextOffset};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::reject::{Rejection, Stage};
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

/// The batches in flight and the watermark over them.
pub struct InFlight {
    tasks: JoinSet<Completed>,
    watermarks: Watermarks,
    next_id: BatchId,
    limit: usize,
    writer: InfluxWriter,
    dead_letters: Arc<DeadLetterSink>,
    abandon: CancellationToken,
}

impl InFlight {
    /// At most `limit` batches in flight; `abandon` ends their retries at shutdown.
    pub fn new(
        limit: usize,
        writer: InfluxWriter,
        dead_letters: Arc<DeadLetterSink>,
        abandon: CancellationToken,
    ) -> Self {
        Self {
            tasks: JoinSet::new(),
            watermarks: Watermarks::default(),
            next_id: 0,
            limit: limit.max(1),
            writer,
            dead_letters,
            abandon,
        }
    }

    /// Whether another batch may start.
    pub fn has_room(&self) -> bool {
        self.tasks.len() < self.limit
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
        self.watermarks.cut(id, batch.next_offsets());
        let (writer, dead_letters, abandon) = (
            self.writer.clone(),
            self.dead_letters.clone(),
            self.abandon.clone(),
        );
        self.tasks.spawn(async move {
            let outcome = make_durable(&writer, &dead_letters, &batch, &abandon).await;
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

    /// Records that batch `id` is durable; returns the offsets that became safe to store.
    pub fn durable(&mut self, id: BatchId) -> Vec<NextOffset> {
        self.watermarks.durable(id)
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
    if !refused.is_empty() && dead_letters.deliver(&refused, abandon).await.is_err() {
        return Err(Abandoned);
    }
    Ok(refused)
}
