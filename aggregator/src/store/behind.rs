//! Write-behind for derived samples (recording rule outputs): the head
//! already holds them ([`super::head::HeadStore`] appends first), so the
//! database write need not hold up the evaluation round that made them.
//!
//! One task per store drains a bounded queue of batches, merging what is
//! waiting into one `write_series` call. When the queue is full the caller
//! waits (backpressure: a round slows down, nothing is dropped). A failed
//! write is counted and retried with backoff; a batch that still fails after
//! [`ATTEMPTS`] is logged and counted as dropped. [`WriteBehind::flush`]
//! returns once everything queued before it is written (shutdown, tests).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};
use vigil_common::Series;

use super::{Store, StoreError};
use crate::metrics::StorageMetrics;

/// Batches waiting for the database; a full queue makes writers wait.
pub const QUEUE_BATCHES: usize = 64;
/// Attempts per batch before it is given up (logged and counted).
pub const ATTEMPTS: u32 = 4;
/// Backoff before the second attempt, doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

enum Msg {
    Write(Vec<Series>),
    Flush(oneshot::Sender<()>),
}

/// The queue in front of `inner`; its task starts on first use (in the
/// caller's runtime) and ends when the queue is dropped.
pub struct WriteBehind {
    inner: Arc<dyn Store>,
    metrics: StorageMetrics,
    tx: OnceLock<mpsc::Sender<Msg>>,
}

impl WriteBehind {
    pub fn new(inner: Arc<dyn Store>, metrics: StorageMetrics) -> Self {
        WriteBehind {
            inner,
            metrics,
            tx: OnceLock::new(),
        }
    }

    fn sender(&self) -> &mpsc::Sender<Msg> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
            tokio::spawn(drain(rx, self.inner.clone(), self.metrics.clone()));
            tx
        })
    }

    /// Queues `series`, waiting while the queue is full.
    pub async fn push(&self, series: Vec<Series>) -> Result<(), StoreError> {
        self.sender()
            .send(Msg::Write(series))
            .await
            .map_err(|_| stopped())
    }

    /// Waits until everything queued before this call was written (or
    /// given up).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let Some(tx) = self.tx.get() else {
            return Ok(());
        };
        let (done, wait) = oneshot::channel();
        tx.send(Msg::Flush(done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())
    }
}

/// The queue's task is gone (its runtime shut down).
fn stopped() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

async fn drain(mut rx: mpsc::Receiver<Msg>, inner: Arc<dyn Store>, metrics: StorageMetrics) {
    while let Some(msg) = rx.recv().await {
        let mut batch = match msg {
            Msg::Write(b) => b,
            Msg::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        // Merge what else is waiting, up to a flush (answered after it).
        let mut flush = None;
        while flush.is_none() {
            match rx.try_recv() {
                Ok(Msg::Write(mut more)) => batch.append(&mut more),
                Ok(Msg::Flush(done)) => flush = Some(done),
                Err(_) => break,
            }
        }
        write(inner.as_ref(), &batch, &metrics).await;
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}

async fn write(inner: &dyn Store, batch: &[Series], metrics: &StorageMetrics) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match inner.write_series(batch).await {
            Ok(_) => return,
            Err(e) => {
                metrics.derived_write_failures.inc();
                if attempt == ATTEMPTS {
                    let samples: usize = batch.iter().map(|s| s.points.len()).sum();
                    error!(error = %e, samples, "giving up writing recording rule output");
                    metrics.derived_samples_dropped.inc_by(samples as u64);
                    return;
                }
                warn!(error = %e, attempt, "writing recording rule output failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

#[cfg(test)]
#[path = "behind_tests.rs"]
mod tests;
