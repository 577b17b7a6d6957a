//! When the spool is full (evict the oldest on-disk batches) or unwritable
//! (hold batches in memory, within a cap). See the module docs for the policy.

use tracing::warn;

use super::QueuedBatch;
use super::index::{Entry, Inner, Location};
use super::{Pushed, Removed, Stored};
use crate::stats::DropReason;

impl Inner {
    /// Evicts the oldest on-disk batches (never the one in flight) until a
    /// record of `len` fits or nothing is left to evict.
    pub(super) fn make_room(&mut self, len: u64, evicted: &mut Vec<Removed>) {
        let mut from = 0;
        let mut batches = 0u64;
        let mut samples = 0u64;
        while self.bytes + self.need(len) > self.limits.max_bytes {
            // An active segment with nothing pending is reclaimed without loss.
            if let Some(id) = self.active {
                if let Some(s) = self
                    .segments
                    .get_mut(&id)
                    .filter(|s| s.pending == 0 && s.records > 0)
                {
                    s.seal();
                    self.active = None;
                    self.delete_segment(id);
                    continue;
                }
            }
            let victim = self
                .entries
                .range(from..)
                .find(|(k, e)| matches!(e.at, Location::Disk { .. }) && Some(**k) != self.in_flight)
                .map(|(k, _)| *k);
            let Some(key) = victim else { break };
            from = key + 1;
            if let Some(r) = self.remove(key) {
                batches += 1;
                samples += r.samples;
                evicted.push(r);
            }
        }
        if batches > 0 {
            self.stats
                .record_drop(DropReason::SpoolFull, batches, samples);
            warn!(
                batches,
                samples,
                max_bytes = self.limits.max_bytes,
                "spool full: evicted the oldest batches"
            );
        }
    }

    /// Keeps an unwritable batch in memory, evicting older memory-held ones past the cap.
    pub(super) fn hold_in_memory(
        &mut self,
        batch: QueuedBatch,
        mut evicted: Vec<Removed>,
    ) -> Pushed {
        let size = batch.payload.len() as u64;
        let cap = self.limits.memory_bytes;
        let mut from = 0;
        while self.memory_bytes + size > cap {
            let victim = self
                .entries
                .range(from..)
                .find(|(k, e)| matches!(e.at, Location::Memory(_)) && Some(**k) != self.in_flight)
                .map(|(k, _)| *k);
            let Some(key) = victim else { break };
            from = key + 1;
            if let Some(r) = self.remove(key) {
                self.stats
                    .record_drop(DropReason::SpoolWriteError, 1, r.samples);
                warn!(
                    sequence = r.sequence,
                    "in-memory fallback full: dropped the oldest held batch"
                );
                evicted.push(r);
            }
        }
        if self.memory_bytes + size > cap {
            warn!(
                sequence = batch.sequence,
                "spool unwritable and memory fallback full: batch dropped"
            );
            return self.drop_incoming(&batch, DropReason::SpoolWriteError, evicted);
        }
        self.memory_bytes += size;
        self.memory_batches += 1;
        self.insert(
            Entry {
                sequence: batch.sequence,
                samples: batch.samples,
                boot_id: batch.boot_id,
                fresh: true,
                at: Location::Memory(batch.payload),
            },
            true,
        );
        Pushed {
            stored: Stored::Memory,
            evicted,
        }
    }
}
