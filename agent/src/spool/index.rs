//! The spool's in-memory index of pending batches and the policies that act on
//! it: appending and rotating, the fresh lane, removal with tombstones. What
//! happens when the spool is full or unwritable is in `full.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{error, warn};

use super::format::{self, HEADER_LEN};
use super::segment::{Disk, Segment};
use super::{DirLock, FRESH_BATCHES, Lane, Limits, Pushed, QueuedBatch, Removed, Spooled, Stored};
use crate::stats::{DropReason, Stats};

/// Where a pending batch's bytes are.
#[derive(Debug)]
pub(crate) enum Location {
    Disk {
        segment: u64,
        index: u32,
        offset: u64,
        len: u64,
    },
    /// Only after a failed write.
    Memory(Arc<[u8]>),
}

/// A pending batch.
#[derive(Debug)]
pub(crate) struct Entry {
    pub sequence: u64,
    pub samples: u64,
    pub boot_id: [u8; 16],
    pub fresh: bool,
    pub at: Location,
}

impl Entry {
    fn removed(&self) -> Removed {
        Removed {
            sequence: self.sequence,
            samples: self.samples,
            boot_id: self.boot_id,
        }
    }
}

/// Everything behind the spool's mutex.
#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub limits: Limits,
    pub disk: Arc<dyn Disk>,
    pub stats: Arc<Stats>,
    pub _lock: DirLock,
    pub segments: BTreeMap<u64, Segment>,
    /// The segment being appended to.
    pub active: Option<u64>,
    pub next_segment: u64,
    /// Pending batches by id; ids grow with push order, so this is oldest first.
    pub entries: BTreeMap<u64, Entry>,
    pub next_entry: u64,
    /// How many entries are in the fresh lane (always the newest ones).
    pub fresh: usize,
    pub in_flight: Option<u64>,
    /// Sum of the segments' valid lengths.
    pub bytes: u64,
    pub memory_bytes: u64,
    pub memory_batches: u64,
    /// Whether the last append failed (to log only the transitions).
    pub failing: bool,
}

impl Inner {
    /// Adds a pending entry at the young end, in the fresh lane.
    pub(super) fn insert(&mut self, mut entry: Entry, fresh: bool) -> u64 {
        let key = self.next_entry;
        self.next_entry += 1;
        entry.fresh = fresh;
        self.entries.insert(key, entry);
        if fresh {
            self.fresh += 1;
            if self.fresh > FRESH_BATCHES {
                // The fresh lane is a suffix, so this walks FRESH_BATCHES entries.
                let n = self.fresh - 1;
                let oldest_fresh = self.entries.values_mut().rev().filter(|e| e.fresh).nth(n);
                if let Some(e) = oldest_fresh {
                    e.fresh = false;
                    self.fresh = self.fresh.saturating_sub(1);
                }
            }
        }
        key
    }

    /// Adds an entry recovered at start (backlog, in file order).
    pub fn recovered(&mut self, entry: Entry) {
        self.insert(entry, false);
    }

    pub fn push(&mut self, batch: QueuedBatch, record: &[u8]) -> Pushed {
        let mut evicted = Vec::new();
        // Group commit: the previous batches become durable now, unless acked.
        self.sync_unacked();
        self.collect_garbage();
        let len = record.len() as u64;
        if len + HEADER_LEN > self.limits.max_bytes {
            warn!(
                sequence = batch.sequence,
                bytes = len,
                max_bytes = self.limits.max_bytes,
                "batch larger than the whole spool: dropped"
            );
            return self.drop_incoming(&batch, DropReason::SpoolFull, evicted);
        }
        self.rotate_if_full(len);
        self.make_room(len, &mut evicted);
        if self.bytes + self.need(len) > self.limits.max_bytes {
            warn!(
                sequence = batch.sequence,
                "spool full and nothing left to evict: batch dropped"
            );
            return self.drop_incoming(&batch, DropReason::SpoolFull, evicted);
        }
        match self.append(record) {
            Ok((segment, index, offset)) => {
                if self.failing {
                    self.failing = false;
                    warn!("spool writes succeed again");
                }
                self.insert(
                    Entry {
                        sequence: batch.sequence,
                        samples: batch.samples,
                        boot_id: batch.boot_id,
                        fresh: true,
                        at: Location::Disk {
                            segment,
                            index,
                            offset,
                            len,
                        },
                    },
                    true,
                );
                Pushed {
                    stored: Stored::Disk,
                    evicted,
                }
            }
            Err(e) => {
                Stats::add(&self.stats.spool_write_errors, 1);
                if !self.failing {
                    self.failing = true;
                    error!(error = %e, dir = %self.dir.display(),
                        "cannot write to the spool; holding new batches in memory until it works again");
                }
                self.hold_in_memory(batch, evicted)
            }
        }
    }

    pub(super) fn drop_incoming(
        &mut self,
        b: &QueuedBatch,
        why: DropReason,
        evicted: Vec<Removed>,
    ) -> Pushed {
        self.stats.record_drop(why, 1, b.samples);
        Pushed {
            stored: Stored::Dropped,
            evicted,
        }
    }

    /// Bytes a record of `len` adds, counting the header of a new segment.
    pub(super) fn need(&self, len: u64) -> u64 {
        if self.active.is_some() {
            len
        } else {
            len + HEADER_LEN
        }
    }

    fn rotate_if_full(&mut self, len: u64) {
        let Some(id) = self.active else { return };
        let full = self
            .segments
            .get(&id)
            .is_some_and(|s| s.records > 0 && s.len + len > self.limits.segment_bytes);
        if full {
            if let Some(s) = self.segments.get_mut(&id) {
                s.seal();
            }
            self.active = None;
            self.collect_garbage();
        }
    }

    /// Appends to the active segment, creating one if needed.
    fn append(&mut self, record: &[u8]) -> std::io::Result<(u64, u32, u64)> {
        let id = match self.active {
            Some(id) => id,
            None => {
                let id = self.next_segment;
                // Never reuse an id, even if creating it failed half-way.
                self.next_segment += 1;
                let seg = Segment::create(&self.dir, id, &*self.disk, self.limits.fsync)?;
                self.bytes += seg.len;
                self.segments.insert(id, seg);
                self.active = Some(id);
                id
            }
        };
        let Some(seg) = self.segments.get_mut(&id) else {
            return Err(std::io::Error::other("active segment missing"));
        };
        match seg.append(record, &*self.disk) {
            Ok((index, offset)) => {
                self.bytes += record.len() as u64;
                Ok((id, index, offset))
            }
            Err(e) => {
                if seg.writer.is_none() {
                    self.active = None;
                }
                Err(e)
            }
        }
    }

    pub fn front(&mut self, backlog_allowed: bool) -> Option<Spooled> {
        loop {
            let (key, lane) = if self.fresh > 0 {
                let key = self
                    .entries
                    .iter()
                    .rev()
                    .filter(|(_, e)| e.fresh)
                    .nth(self.fresh - 1)
                    .map(|(k, _)| *k)?;
                (key, Lane::Fresh)
            } else if backlog_allowed {
                (*self.entries.keys().next()?, Lane::Backlog)
            } else {
                return None;
            };
            match self.load(key) {
                Ok(batch) => {
                    self.in_flight = Some(key);
                    return Some(Spooled {
                        id: key,
                        lane,
                        batch,
                    });
                }
                Err(why) => {
                    Stats::add(&self.stats.spool_corrupt_records, 1);
                    if let Some(r) = self.remove(key) {
                        error!(sequence = r.sequence, samples = r.samples, error = %why,
                            "spooled batch unreadable: discarded");
                    }
                }
            }
        }
    }

    fn load(&self, key: u64) -> Result<QueuedBatch, String> {
        let e = self.entries.get(&key).ok_or("no such entry")?;
        let payload = match &e.at {
            Location::Memory(p) => p.clone(),
            Location::Disk {
                segment,
                offset,
                len,
                ..
            } => {
                let seg = self.segments.get(segment).ok_or("segment missing")?;
                let bytes = seg.read(*offset, *len).map_err(|e| e.to_string())?;
                let body = format::decode_record(&bytes)?;
                if body.sequence != e.sequence || body.boot_id != e.boot_id {
                    return Err("record changed on disk".into());
                }
                Arc::from(body.payload)
            }
        };
        Ok(QueuedBatch {
            sequence: e.sequence,
            samples: e.samples,
            boot_id: e.boot_id,
            payload,
        })
    }

    /// With `spool.fsync`: `fdatasync`s every segment holding records written
    /// since its last sync, unless none of its records is still pending (an
    /// acked batch needs no durability). See "Group commit" in the module docs.
    pub fn sync_unacked(&mut self) {
        if !self.limits.fsync {
            return;
        }
        for seg in self.segments.values_mut() {
            if !seg.unsynced {
                continue;
            }
            if seg.pending == 0 {
                seg.unsynced = false;
                continue;
            }
            Stats::add(&self.stats.spool_syncs, 1);
            if let Err(e) = seg.sync(&*self.disk) {
                Stats::add(&self.stats.spool_write_errors, 1);
                warn!(segment = seg.id, error = %e,
                    "cannot fdatasync the spool; its newest batches may not survive a power failure");
                // Not retried: the kernel may have dropped the failed pages
                // (fsyncgate); a later append sets the flag again.
                seg.unsynced = false;
            }
        }
    }

    /// Removes entry `key`: records its tombstone, or deletes its segment when
    /// that was the segment's last pending record.
    pub fn remove(&mut self, key: u64) -> Option<Removed> {
        let e = self.entries.remove(&key)?;
        if e.fresh {
            self.fresh = self.fresh.saturating_sub(1);
        }
        if self.in_flight == Some(key) {
            self.in_flight = None;
        }
        match e.at {
            Location::Memory(ref p) => {
                self.memory_bytes = self.memory_bytes.saturating_sub(p.len() as u64);
                self.memory_batches = self.memory_batches.saturating_sub(1);
            }
            Location::Disk { segment, index, .. } => {
                let active = self.active;
                if let Some(seg) = self.segments.get_mut(&segment) {
                    seg.pending = seg.pending.saturating_sub(1);
                    if seg.pending == 0 && active != Some(segment) {
                        self.delete_segment(segment);
                    } else if let Err(err) = seg.acks.append(&*self.disk, segment, index) {
                        Stats::add(&self.stats.spool_write_errors, 1);
                        warn!(segment, index, error = %err,
                            "cannot record a removal in the spool; the batch may be resent after a restart");
                    }
                }
            }
        }
        Some(e.removed())
    }

    pub(super) fn delete_segment(&mut self, id: u64) {
        let Some(seg) = self.segments.get(&id) else {
            return;
        };
        match seg.delete() {
            Ok(()) => {
                self.bytes = self.bytes.saturating_sub(seg.len);
                self.segments.remove(&id);
                if self.active == Some(id) {
                    self.active = None;
                }
            }
            Err(e) => {
                // Kept and retried by `collect_garbage`.
                Stats::add(&self.stats.spool_write_errors, 1);
                warn!(segment = id, error = %e, "cannot delete a finished spool segment");
            }
        }
    }

    /// Deletes finished segments whose deletion failed before.
    fn collect_garbage(&mut self) {
        let done: Vec<u64> = (self.segments.values())
            .filter(|s| s.pending == 0 && Some(s.id) != self.active)
            .map(|s| s.id)
            .collect();
        for id in done {
            self.delete_segment(id);
        }
    }

    /// (sequence, fresh, held in memory) of every pending batch, oldest first.
    #[cfg(test)]
    pub fn pending(&self) -> Vec<(u64, bool, bool)> {
        self.entries
            .values()
            .map(|e| (e.sequence, e.fresh, matches!(e.at, Location::Memory(_))))
            .collect()
    }
}
