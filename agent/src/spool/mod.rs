//! The spool: every batch is appended here *before* it is sent, and removed
//! only after its ack (or a permanent rejection), so an aggregator outage, a
//! network outage or a `kill -9` of the agent loses nothing already spooled.
//!
//! # Files
//!
//! ```text
//! <spool.dir>/                     created with mode 0700 if missing
//!   lock                           flock(2)ed while an agent uses the folder (holds its pid)
//!   00000000000000000007.seg       segment 7: header, then records, append-only
//!   00000000000000000007.ack       segment 7's tombstones: records acked or evicted
//!   00000000000000000008.seg       the newest segment is the one appended to
//! ```
//!
//! # Segment format (version 1; integers little-endian)
//!
//! ```text
//! header (28 bytes):  magic "VGLSPOOL" (8) | version u32 = 1 | reserved u32 = 0
//!                     | segment id u64 (= the file name) | CRC32 of the previous 24 bytes
//! record:             body length u32 | CRC32 of the body u32 | body
//! body:               kind u8 = 1 (batch) | sequence u64 | samples u64 | boot id [16]
//!                     | payload: the encoded `SignedBatch`, exactly the bytes that were signed
//! ```
//!
//! A segment is appended to until the next record would take it past
//! `spool.segment_bytes`; then a new one starts (a record larger than that gets
//! a segment of its own). Records never span segments. A fresh start always
//! begins a new segment: recovered segments are only read and deleted.
//! Checksums are CRC32 (IEEE) from `crc32fast`: hardware-accelerated,
//! dependency-free and among the most used crates of its kind. A body is at
//! most the 16 MiB frame limit plus 33 bytes: a longer length prefix is
//! corruption, so garbage can never make the agent allocate more.
//!
//! # Acks: per-segment tombstone files
//!
//! Removing a record (ack, permanent rejection, eviction) appends an 8-byte
//! entry to the segment's `.ack` file: record index u32 | CRC32(segment id,
//! index). A segment whose records are all removed is deleted with its ack
//! file, which is the only compaction there is. Tombstones are written but not
//! fsynced: `kill -9` cannot lose them (they are in the page cache); a power
//! failure can, and then those batches are sent again after the restart. That
//! is harmless (the aggregator dedups on agent id, boot id, sequence) and
//! bounded by what the kernel had not yet written back (about 30 s of acks with
//! Linux defaults). The disk only ever lags behind the agent in the direction
//! "still pending", never "removed", so a batch is never lost through acks.
//!
//! # Crash safety and start-up
//!
//! Records are written with `pwrite` straight from the agent (no user-space
//! buffer), so after `kill -9` everything `push` returned for is on disk;
//! only the batch being built or written is lost. With `spool.fsync = true`
//! (the default) batches are also made durable against a power failure by
//! group commit (below). At start every segment is scanned and
//! checked: the first torn or corrupt record (short prefix, impossible length,
//! short body, bad checksum, unknown kind) ends the segment; the file is
//! truncated there and the cut is counted (`vigil_agent_spool_corrupt_records_total`,
//! `vigil_agent_spool_truncated_bytes_total`). A bad header (torn creation,
//! wrong magic) removes the segment, counted the same way; a header of an
//! unknown newer version is left alone for a newer agent. Ack files are checked
//! the same way. The agent always starts; its pending batches keep their
//! original signed bytes, boot id and sequence. Note what no format can see: a
//! write lost *whole* (cut exactly at a record boundary) looks like a write
//! that never happened; `push` had then not returned for it.
//!
//! # Group commit (`spool.fsync = true`)
//!
//! `push` does not `fdatasync` the batch it appends: the *next* `push` first
//! syncs every segment written since its last sync that still holds a
//! pending batch, and [`Spool::sync`] does the same when the agent stops. A
//! batch acked before the next push (the normal case: acks take
//! milliseconds, pushes come once per interval) is never synced: once the
//! aggregator has it, the spool's copy needs no durability. So a healthy
//! agent does no `fdatasync` at all (the kernel writes the pages back in its
//! own time), and during an outage it does one per batch, as before.
//! What a power failure can lose: the batch being collected plus the
//! batches pushed within the last interval and not yet acked (usually the
//! one in flight), instead of the batch being collected alone; `kill -9`
//! loses nothing more either way. (Measured: the per-batch `fdatasync` was
//! about 5% of the agent's CPU time at a 1 s interval, in the kernel.)
//!
//! # Size cap and eviction
//!
//! `spool.max_bytes` caps the segment files (headers and records, including
//! removed records of segments not yet deleted; ack files add 8 bytes per
//! removed record on top). When a new record would not fit, the **oldest**
//! pending batches are evicted one by one, each counted in
//! `vigil_agent_spool_dropped_{batches,samples}_total` and
//! `vigil_agent_batches_dropped_total{reason="spool_full"}`, until deleting a
//! segment makes room. The batch in flight (the last one `front` returned) is
//! never evicted. A batch that cannot fit even then is dropped and counted.
//!
//! # Write failures (disk full, I/O errors)
//!
//! A failed append is cut back (`ftruncate` to the previous length; if even
//! that fails the segment is sealed and its torn tail is truncated at the next
//! start), counted in `vigil_agent_spool_write_errors_total` and logged. The
//! batch is then **kept in memory** and delivered like any other, in order;
//! it is only not crash-safe. Memory held this way is capped
//! ([`MEMORY_FALLBACK_BYTES`]); past it the oldest memory-held batch is dropped
//! and counted as `reason="spool_write_error"`. Every new batch tries the disk
//! first, so the spool recovers by itself when space returns. A failed
//! tombstone write only means a resend after a restart (see Acks).
//!
//! # Send order: a fresh lane and a rate-limited backlog
//!
//! The newest [`FRESH_BATCHES`] pending batches of this process form the fresh
//! lane; everything older (batches that waited through an outage, and all
//! batches recovered at start) is backlog. [`Spool::front`] returns the oldest
//! fresh batch if there is one, else the oldest backlog batch if the caller's
//! replay budget allows (`spool.replay_batches_per_second`, enforced by the
//! sender). So after an outage the backlog goes out oldest first, at a bounded
//! rate, and each newly collected batch overtakes it: live data stays live.
//!
//! # Cost
//!
//! One `pwrite` per batch (+ one `fdatasync` when it is still unacked at the
//! next push, with fsync on), one 8-byte
//! `pwrite` per ack, one `pread` per send. The index holds ~100 bytes per
//! pending batch in memory, never payloads (except write-failure fallbacks).
//! Measured on this project's 2-core VM (ext4 on virtio disk, 40 kB batches,
//! the ignored `append_cost` test): append 35-45 µs without fsync, 2-4.5 ms
//! with fsync (time waiting for the disk, spent on tokio's blocking pool, not
//! CPU); front + ack 25-50 µs. At one batch a second that is well under 1% of
//! one core either way; fsync matters only on slow or saturated disks.
//! Re-measure: `cargo test -p vigil-agent --lib append_cost -- --ignored --nocapture`
//! (`SPOOL_BENCH_DIR` picks the file system; the default temp dir may be tmpfs).
//!
//! The lock is a `std::sync::Mutex` held for the duration of one file
//! operation and never across an `.await`; async callers go through
//! [`blocking`], which runs the operation on tokio's blocking pool.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use thiserror::Error;
use tokio::sync::Notify;

use crate::config::SpoolConfig;
use crate::stats::Stats;

mod format;
mod full;
mod index;
mod open;
mod segment;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

pub use open::{RecordInfo, inspect};

use index::Inner;

/// How many of the newest pending batches form the fresh lane (see the module docs).
pub const FRESH_BATCHES: usize = 8;

/// Cap on payload bytes held in memory after failed writes.
pub const MEMORY_FALLBACK_BYTES: u64 = 4 * 1024 * 1024;

/// A signed batch ready to go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedBatch {
    /// The batch header's sequence number; the ack names it.
    pub sequence: u64,
    /// `Batch::sample_count()` of the batch.
    pub samples: u64,
    /// The boot id of the process that built it (in the header too).
    pub boot_id: [u8; 16],
    /// The frame body: an encoded `SignedBatch`.
    pub payload: Arc<[u8]>,
}

/// Why the spool could not be opened.
#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error(
        "spool directory {path} is in use by another running vigil-agent{holder} \
         (each agent needs its own spool.dir)"
    )]
    Locked { path: PathBuf, holder: String },
}

/// Sizes and policies, from `[spool]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Cap on the segment files' total size.
    pub max_bytes: u64,
    /// Size at which a segment is closed and a new one started.
    pub segment_bytes: u64,
    /// `fdatasync` each append (and new segments and their folder entry).
    pub fsync: bool,
    /// Cap on payload bytes held in memory after failed writes.
    pub memory_bytes: u64,
}

impl Limits {
    /// The limits `config` asks for.
    pub fn from_config(config: &SpoolConfig) -> Limits {
        Limits {
            max_bytes: config.max_bytes,
            segment_bytes: config.segment_bytes,
            fsync: config.fsync,
            memory_bytes: MEMORY_FALLBACK_BYTES,
        }
    }
}

/// Which lane a batch was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// One of the newest batches: sent at once.
    Fresh,
    /// Older: sent oldest first, within the replay rate.
    Backlog,
}

/// A pending batch handed to the sender; `id` names it for [`Spool::ack`].
#[derive(Debug, Clone)]
pub struct Spooled {
    pub id: u64,
    pub lane: Lane,
    pub batch: QueuedBatch,
}

/// What the spool did with a pushed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Appended to a segment.
    Disk,
    /// The write failed; held in memory (delivered, but not crash-safe).
    Memory,
    /// Could not be kept (counted as dropped).
    Dropped,
}

/// A batch that left the spool without being delivered, or was acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub sequence: u64,
    pub samples: u64,
    pub boot_id: [u8; 16],
}

/// The outcome of [`Spool::push`].
#[derive(Debug, Clone)]
pub struct Pushed {
    pub stored: Stored,
    /// Older batches evicted to make room (already counted and logged).
    pub evicted: Vec<Removed>,
}

/// The on-disk spool. See the module docs for format and policies.
#[derive(Debug)]
pub struct Spool {
    inner: Mutex<Inner>,
    notify: Notify,
    stats: Arc<Stats>,
    /// Copies of the index's sizes, so async code can read them without
    /// waiting for the lock (held during file I/O).
    len: AtomicUsize,
    backlog: AtomicUsize,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and recovers what it holds.
    pub fn open(dir: &Path, limits: Limits, stats: Arc<Stats>) -> Result<Spool, SpoolError> {
        Self::open_with(dir, limits, Arc::new(segment::RealDisk), stats)
    }

    pub(crate) fn open_with(
        dir: &Path,
        limits: Limits,
        disk: Arc<dyn segment::Disk>,
        stats: Arc<Stats>,
    ) -> Result<Spool, SpoolError> {
        let inner = open::recover(dir, limits, disk, stats.clone())?;
        let spool = Spool {
            inner: Mutex::new(inner),
            notify: Notify::new(),
            stats,
            len: AtomicUsize::new(0),
            backlog: AtomicUsize::new(0),
        };
        spool.publish(&spool.lock());
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the index consistent enough to
        // keep delivering; never let a poisoned lock take the agent down.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, inner: &Inner) {
        let len = inner.entries.len();
        self.len.store(len, Ordering::Relaxed);
        self.backlog
            .store(len - inner.fresh.min(len), Ordering::Relaxed);
        Stats::set(&self.stats.spool_bytes, inner.bytes);
        Stats::set(&self.stats.spool_batches, inner.entries.len() as u64);
        Stats::set(&self.stats.spool_memory_batches, inner.memory_batches);
    }

    /// Appends `batch` (evicting the oldest batches if full; see the module docs).
    pub fn push(&self, batch: QueuedBatch) -> Pushed {
        let record = format::encode_record(&format::Body {
            sequence: batch.sequence,
            samples: batch.samples,
            boot_id: batch.boot_id,
            payload: &batch.payload,
        });
        let pushed = {
            let mut inner = self.lock();
            let pushed = inner.push(batch, &record);
            self.publish(&inner);
            pushed
        };
        self.notify.notify_one();
        pushed
    }

    /// The next batch to send: the oldest fresh one, else (if `backlog_allowed`)
    /// the oldest backlog one. It becomes the batch in flight. An unreadable
    /// record is counted as corrupt, removed, and the next one is tried.
    pub fn front(&self, backlog_allowed: bool) -> Option<Spooled> {
        let mut inner = self.lock();
        let next = inner.front(backlog_allowed);
        self.publish(&inner);
        next
    }

    /// Makes every pending batch durable now (with `spool.fsync`); the
    /// agent calls it when it stops. Otherwise a batch is synced when the
    /// next one is pushed, unless it was acked by then (see "Group commit").
    pub fn sync(&self) {
        self.lock().sync_unacked();
    }

    /// Removes batch `id` (acked, or rejected for good).
    pub fn ack(&self, id: u64) -> Option<Removed> {
        let mut inner = self.lock();
        let removed = inner.remove(id);
        self.publish(&inner);
        removed
    }

    /// Pending batches (as of the last completed operation; never blocks).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether nothing is pending (never blocks).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pending batches in the backlog lane (never blocks).
    pub fn backlog_len(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Total size of the segment files.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Resolves after the next `push` (or at once if one happened since the
    /// last call returned), so a check-then-wait loop never misses a batch.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// Runs a spool operation on tokio's blocking pool (it does file I/O, and
/// `fdatasync` can take milliseconds). `None` only if the operation panicked.
pub async fn blocking<T, F>(spool: &Arc<Spool>, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(&Spool) -> T + Send + 'static,
{
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || f(&spool)).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "spool operation failed");
            None
        }
    }
}

/// The lock file's handle; dropping it releases the folder.
#[derive(Debug)]
pub(crate) struct DirLock(#[allow(dead_code)] File);
