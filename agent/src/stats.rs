//! Counters shared by the collection loop, the spool and the sender.
//!
//! Plain atomics: every writer increments, the self-metrics collector and tests
//! read. `Relaxed` ordering is enough because no counter guards other memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a batch (or some samples) never reached the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The spool reached `spool.max_bytes` and the oldest batches were evicted
    /// (or a batch larger than the whole spool could not be stored).
    SpoolFull,
    /// The spool could not write the batch (disk full, I/O error) and the
    /// in-memory fallback was full too.
    SpoolWriteError,
    /// The aggregator refused the batch with a non-retryable code.
    Rejected,
    /// The agent could not build it: a series failed validation or was
    /// duplicated within a collection, or the batch could not be encoded.
    Invalid,
}

impl DropReason {
    /// Every reason, so the self-metrics always expose all `reason` series.
    pub const ALL: [DropReason; 4] = [
        DropReason::SpoolFull,
        DropReason::SpoolWriteError,
        DropReason::Rejected,
        DropReason::Invalid,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolWriteError => "spool_write_error",
            DropReason::Rejected => "rejected",
            DropReason::Invalid => "invalid",
        }
    }

    /// Whether the spool gave the batch up (as opposed to the sender or the batcher).
    pub fn is_spool(self) -> bool {
        matches!(self, DropReason::SpoolFull | DropReason::SpoolWriteError)
    }

    fn index(self) -> usize {
        match self {
            DropReason::SpoolFull => 0,
            DropReason::SpoolWriteError => 1,
            DropReason::Rejected => 2,
            DropReason::Invalid => 3,
        }
    }
}

/// Upper bounds (seconds) of the send latency histogram's buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A classic cumulative histogram with fixed buckets, for send latency.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts per upper bound (`f64::INFINITY` last), the sum in
    /// seconds and the count, as Prometheus exposes them.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let mut cumulative = 0;
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets = bounds
            .zip(&self.buckets)
            .map(|(le, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (le, cumulative)
            })
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, sum, self.count.load(Ordering::Relaxed))
    }
}

/// The agent's counters and gauges. Read them with `.load(Ordering::Relaxed)`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches built, signed and handed to the spool by this process.
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
    /// 1 while a QUIC connection to an aggregator is up (gauge).
    pub connected: AtomicU64,
    /// Completed collection cycles.
    pub collections: AtomicU64,
    /// Collector failures (errors or timeouts), all collectors together.
    pub collector_errors: AtomicU64,
    /// Batches waiting for an ack, on disk or held in memory (gauge).
    pub spool_batches: AtomicU64,
    /// Size of the spool's segment files (gauge).
    pub spool_bytes: AtomicU64,
    /// Batches held in memory only because the spool could not write them (gauge).
    pub spool_memory_batches: AtomicU64,
    /// Torn or corrupt records found (at start, or when read back) and discarded.
    pub spool_corrupt_records: AtomicU64,
    /// Bytes cut off segment and ack files because they were torn or corrupt.
    pub spool_truncated_bytes: AtomicU64,
    /// Failed spool writes (records, ack tombstones) and file deletions.
    pub spool_write_errors: AtomicU64,
    /// `fdatasync` calls of the spool's group commit (not exported: it
    /// shows in tests and benchmarks that acked batches are not synced).
    pub spool_syncs: AtomicU64,
    /// Batches found pending in the spool when this process started.
    pub spool_recovered_batches: AtomicU64,
    /// Samples in those batches.
    pub spool_recovered_samples: AtomicU64,
    /// Duration of batch exchanges that got a reply (ack or rejection).
    pub send_latency: Histogram,
    batches_dropped_by: [AtomicU64; 4],
    samples_dropped_by: [AtomicU64; 4],
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

    /// (batches, samples) the spool gave up on: evicted when full, or unwritable.
    pub fn spool_dropped(&self) -> (u64, u64) {
        DropReason::ALL
            .into_iter()
            .filter(|r| r.is_spool())
            .map(|r| self.dropped(r))
            .fold((0, 0), |(b, s), (b2, s2)| (b + b2, s + s2))
    }

    /// Shorthand for a relaxed load, for tests and self-metrics.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_in_total_and_per_reason() {
        let stats = Stats::default();
        stats.record_drop(DropReason::SpoolFull, 1, 10);
        stats.record_drop(DropReason::SpoolWriteError, 1, 4);
        stats.record_drop(DropReason::Rejected, 2, 5);
        stats.record_drop(DropReason::Invalid, 0, 1);
        assert_eq!(Stats::get(&stats.batches_dropped), 4);
        assert_eq!(Stats::get(&stats.samples_dropped), 20);
        assert_eq!(stats.dropped(DropReason::SpoolFull), (1, 10));
        assert_eq!(stats.dropped(DropReason::Rejected), (2, 5));
        assert_eq!(stats.dropped(DropReason::Invalid), (0, 1));
        assert_eq!(stats.spool_dropped(), (2, 14));
    }

    #[test]
    fn histogram_is_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(10)); // on a bound: counted in it
        h.observe(Duration::from_millis(700));
        h.observe(Duration::from_secs(60));
        let (buckets, sum, count) = h.snapshot();
        let at = |le: f64| buckets.iter().find(|b| b.0 == le).map(|b| b.1);
        assert_eq!(at(0.005), Some(1));
        assert_eq!(at(0.01), Some(2));
        assert_eq!(at(0.5), Some(2));
        assert_eq!(at(1.0), Some(3));
        assert_eq!(at(10.0), Some(3));
        assert_eq!(at(f64::INFINITY), Some(4));
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(count, 4);
        assert!((sum - 60.713).abs() < 1e-9, "{sum}");
    }
}
