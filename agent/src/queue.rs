//! Bounded in-memory queue of signed, encoded batches awaiting an ack.
//!
//! The interface is deliberately narrow (`push`, `front`, `ack`, `len`, `wait`)
//! so that a crash-safe disk spool can replace it without touching the sender.
//!
//! When full, `push` evicts the **oldest** pending batch and counts it as
//! dropped (`reason="queue_full"`): recent data is worth more to an operator than
//! old data. The batch currently being sent (the last one `front` returned) is
//! never evicted, because its ack may already be on the way; if it is the only
//! candidate (`max_batches = 1`), the incoming batch is dropped instead.
//!
//! The lock is a `std::sync::Mutex` held only for a few pointer moves and never
//! across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::stats::{DropReason, Stats};

/// A signed batch ready to go on the wire.
#[derive(Debug, Clone)]
pub struct QueuedBatch {
    /// The batch header's sequence number; the ack names it.
    pub sequence: u64,
    /// `Batch::sample_count()` of the batch.
    pub samples: u64,
    /// The frame body: an encoded `SignedBatch`.
    pub payload: Arc<[u8]>,
}

/// The pending batches, oldest first. See the module docs for the policy when full.
#[derive(Debug)]
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    max_batches: usize,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<QueuedBatch>,
    in_flight: Option<u64>,
}

impl Queue {
    /// A queue holding at most `max_batches` (at least 1) batches.
    pub fn new(max_batches: usize, stats: Arc<Stats>) -> Self {
        Queue {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            max_batches: max_batches.max(1),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing can panic while the lock is held, but never let a poisoned
        // lock take the agent down.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `batch`; when full, evicts one batch (see the module docs), counts
    /// it as dropped and returns it.
    pub fn push(&self, batch: QueuedBatch) -> Option<QueuedBatch> {
        let evicted = {
            let mut inner = self.lock();
            let evicted = if inner.items.len() >= self.max_batches {
                let victim = inner
                    .items
                    .iter()
                    .position(|b| Some(b.sequence) != inner.in_flight);
                match victim {
                    Some(i) => {
                        let old = inner.items.remove(i);
                        inner.items.push_back(batch);
                        old
                    }
                    None => Some(batch),
                }
            } else {
                inner.items.push_back(batch);
                None
            };
            self.stats
                .queue_len
                .store(inner.items.len() as u64, Ordering::Relaxed);
            evicted
        };
        if let Some(e) = &evicted {
            self.stats.record_drop(DropReason::QueueFull, 1, e.samples);
        }
        self.notify.notify_one();
        evicted
    }

    /// The oldest pending batch, which becomes the one in flight.
    pub fn front(&self) -> Option<QueuedBatch> {
        let mut inner = self.lock();
        let front = inner.items.front().cloned();
        inner.in_flight = front.as_ref().map(|b| b.sequence);
        front
    }

    /// Removes the batch with `sequence` (acked, or dropped after a rejection).
    pub fn ack(&self, sequence: u64) -> Option<QueuedBatch> {
        let mut inner = self.lock();
        if inner.in_flight == Some(sequence) {
            inner.in_flight = None;
        }
        let i = inner.items.iter().position(|b| b.sequence == sequence)?;
        let removed = inner.items.remove(i);
        self.stats
            .queue_len
            .store(inner.items.len() as u64, Ordering::Relaxed);
        removed
    }

    /// Number of pending batches.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves after the next `push` (or at once if one happened since the
    /// last call returned), so a check-then-wait loop never misses a batch.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn batch(sequence: u64) -> QueuedBatch {
        QueuedBatch {
            sequence,
            samples: sequence * 10,
            payload: Arc::from(vec![sequence as u8]),
        }
    }

    fn sequences(q: &Queue) -> Vec<u64> {
        q.lock().items.iter().map(|b| b.sequence).collect()
    }

    #[test]
    fn full_queue_drops_oldest_and_counts_it() {
        let stats = Arc::new(Stats::default());
        let q = Queue::new(3, stats.clone());
        for s in 1..=3 {
            assert!(q.push(batch(s)).is_none());
        }
        let evicted = q.push(batch(4)).expect("evicted");
        assert_eq!(evicted.sequence, 1);
        assert_eq!(sequences(&q), vec![2, 3, 4]);
        q.push(batch(5));
        assert_eq!(sequences(&q), vec![3, 4, 5]);
        assert_eq!(stats.dropped(DropReason::QueueFull), (2, 10 + 20));
        assert_eq!(Stats::get(&stats.batches_dropped), 2);
        assert_eq!(Stats::get(&stats.queue_len), 3);
    }

    #[test]
    fn batch_in_flight_is_never_evicted() {
        let stats = Arc::new(Stats::default());
        let q = Queue::new(2, stats.clone());
        q.push(batch(1));
        q.push(batch(2));
        assert_eq!(q.front().map(|b| b.sequence), Some(1));
        assert_eq!(q.push(batch(3)).map(|b| b.sequence), Some(2));
        assert_eq!(sequences(&q), vec![1, 3]);

        // With room for one, the newcomer loses to the batch in flight.
        let q1 = Queue::new(1, stats.clone());
        q1.push(batch(7));
        q1.front();
        assert_eq!(q1.push(batch(8)).map(|b| b.sequence), Some(8));
        assert_eq!(sequences(&q1), vec![7]);
        assert_eq!(stats.dropped(DropReason::QueueFull).0, 2);
    }

    #[test]
    fn ack_removes_by_sequence() {
        let stats = Arc::new(Stats::default());
        let q = Queue::new(10, stats.clone());
        q.push(batch(1));
        q.push(batch(2));
        assert_eq!(q.front().map(|b| b.sequence), Some(1));
        assert_eq!(q.ack(1).map(|b| b.sequence), Some(1));
        assert!(q.ack(1).is_none(), "a second ack finds nothing");
        assert_eq!(q.front().map(|b| b.sequence), Some(2));
        assert_eq!(q.len(), 1);
        assert_eq!(Stats::get(&stats.queue_len), 1);
        q.ack(2);
        assert!(q.is_empty());
        assert!(q.front().is_none());
        assert_eq!(Stats::get(&stats.batches_dropped), 0);
    }

    #[tokio::test]
    async fn wait_wakes_on_push_even_if_push_came_first() {
        let q = Arc::new(Queue::new(10, Arc::new(Stats::default())));
        q.push(batch(1));
        tokio::time::timeout(Duration::from_secs(1), q.wait())
            .await
            .expect("stored permit");
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.push(batch(2));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("join");
    }
}
