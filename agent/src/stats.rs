//! Counters shared by the collection loop, the queue and the sender.
//!
//! Plain atomics: every writer increments, the self-metrics collector and tests
//! read. `Relaxed` ordering is enough because no counter guards other memory.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a batch (or some samples) never reached the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full and the oldest pending batch was evicted.
    QueueFull,
    /// The aggregator refused the batch with a non-retryable code.
    Rejected,
    /// The agent could not build it: a series failed validation or was
    /// duplicated within a collection, or the batch could not be encoded.
    Invalid,
}

impl DropReason {
    /// Every reason, so the self-metrics always expose all `reason` series.
    pub const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::Invalid,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::Invalid => "invalid",
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::QueueFull => 0,
            DropReason::Rejected => 1,
            DropReason::Invalid => 2,
        }
    }
}

/// The agent's counters and gauges. Read them with `.load(Ordering::Relaxed)`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches built, signed and put on the queue.
    pub batches_queued: AtomicU64,
    /// Samples in those batches.
    pub samples_queued: AtomicU64,
    /// Batches the aggregator acked (duplicates included).
    pub batches_acked: AtomicU64,
    /// Samples in acked batches whose ack was *not* a duplicate.
    pub samples_acked: AtomicU64,
    /// Acked batches the aggregator reported as duplicates (already stored by an
    /// earlier attempt whose ack was lost).
    pub batches_duplicate: AtomicU64,
    /// Samples in those duplicate-acked batches.
    pub samples_duplicate: AtomicU64,
    /// Batches dropped for any [`DropReason`].
    pub batches_dropped: AtomicU64,
    /// Samples dropped for any [`DropReason`] (including single invalid series).
    pub samples_dropped: AtomicU64,
    /// Retryable rejections (the same batch was sent again after a backoff).
    pub retries: AtomicU64,
    /// Stream-level failures: write/read errors, ack timeouts, protocol errors.
    pub send_errors: AtomicU64,
    /// Failed connection attempts (every endpoint tried and none answered).
    pub connect_errors: AtomicU64,
    /// Connection attempts after the first one of this process.
    pub reconnects: AtomicU64,
    /// Batches currently waiting for an ack (gauge).
    pub queue_len: AtomicU64,
    /// 1 while a QUIC connection to an aggregator is up (gauge).
    pub connected: AtomicU64,
    /// Completed collection cycles.
    pub collections: AtomicU64,
    /// Collector failures (errors or timeouts), all collectors together.
    pub collector_errors: AtomicU64,
    batches_dropped_by: [AtomicU64; 3],
    samples_dropped_by: [AtomicU64; 3],
}

impl Stats {
    /// Counts `batches` batches holding `samples` samples as dropped for `reason`.
    pub fn record_drop(&self, reason: DropReason, batches: u64, samples: u64) {
        self.batches_dropped.fetch_add(batches, Ordering::Relaxed);
        self.samples_dropped.fetch_add(samples, Ordering::Relaxed);
        self.batches_dropped_by[reason.index()].fetch_add(batches, Ordering::Relaxed);
        self.samples_dropped_by[reason.index()].fetch_add(samples, Ordering::Relaxed);
    }

    /// (batches, samples) dropped for `reason` so far.
    pub fn dropped(&self, reason: DropReason) -> (u64, u64) {
        (
            self.batches_dropped_by[reason.index()].load(Ordering::Relaxed),
            self.samples_dropped_by[reason.index()].load(Ordering::Relaxed),
        )
    }

    /// Shorthand for a relaxed load, for tests and self-metrics.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_in_total_and_per_reason() {
        let stats = Stats::default();
        stats.record_drop(DropReason::QueueFull, 1, 10);
        stats.record_drop(DropReason::Rejected, 2, 5);
        stats.record_drop(DropReason::Invalid, 0, 1);
        assert_eq!(Stats::get(&stats.batches_dropped), 3);
        assert_eq!(Stats::get(&stats.samples_dropped), 16);
        assert_eq!(stats.dropped(DropReason::QueueFull), (1, 10));
        assert_eq!(stats.dropped(DropReason::Rejected), (2, 5));
        assert_eq!(stats.dropped(DropReason::Invalid), (0, 1));
    }
}
