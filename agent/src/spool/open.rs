//! Opening a spool folder: create it (0700), lock it, scan every segment,
//! truncate torn or corrupt tails, apply tombstones, rebuild the index.
//! Also [`inspect`], a read-only view for tests and troubleshooting.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{FlockOperation, flock};
use tracing::{error, info, warn};

use super::format::{self, ACK_LEN, HeaderProblem, RecordMeta, Scanner};
use super::index::{Entry, Inner, Location};
use super::segment::{self, AckLog, Disk, Segment, open_rw};
use super::{DirLock, Limits, SpoolError};
use crate::stats::Stats;

fn dir_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Dir {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (mode 0700) if missing; it must be a folder.
fn prepare(dir: &Path) -> Result<(), SpoolError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(dir_error(dir)(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_error(dir)),
        Err(e) => Err(dir_error(dir)(e)),
    }
}

/// Takes the folder's lock (which also proves the folder is writable).
fn lock(dir: &Path) -> Result<DirLock, SpoolError> {
    let path = dir.join("lock");
    let mut file = open_rw(&path, true).map_err(dir_error(dir))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(SpoolError::Locked {
                path: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
            });
        }
        Err(e) => return Err(dir_error(dir)(e.into())),
    }
    // Only informative (for the message above), so failures are ignored.
    let _ = file
        .set_len(0)
        .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()));
    Ok(DirLock(file))
}

/// Segment and ack file ids found in the folder.
#[derive(Default)]
struct Listing {
    segments: BTreeSet<u64>,
    acks: BTreeSet<u64>,
}

fn list(dir: &Path) -> io::Result<Listing> {
    let mut found = Listing::default();
    for item in fs::read_dir(dir)? {
        let name = item?.file_name();
        let name = name.to_string_lossy();
        let parsed = name
            .split_once('.')
            .and_then(|(id, ext)| Some((id.parse::<u64>().ok()?, ext)));
        match parsed {
            Some((id, "seg")) => {
                found.segments.insert(id);
            }
            Some((id, "ack")) => {
                found.acks.insert(id);
            }
            _ if name == "lock" => {}
            _ => {
                warn!(file = %name, dir = %dir.display(), "unexpected file in the spool folder; ignored")
            }
        }
    }
    Ok(found)
}

/// Opens `dir` and rebuilds the spool from its files.
pub(crate) fn recover(
    dir: &Path,
    limits: Limits,
    disk: Arc<dyn Disk>,
    stats: Arc<Stats>,
) -> Result<Inner, SpoolError> {
    prepare(dir)?;
    let lock = lock(dir)?;
    let listing = list(dir).map_err(dir_error(dir))?;
    let mut inner = Inner {
        dir: dir.to_path_buf(),
        limits,
        disk,
        stats: stats.clone(),
        _lock: lock,
        segments: BTreeMap::new(),
        active: None,
        next_segment: listing.segments.last().map_or(1, |id| id + 1),
        entries: BTreeMap::new(),
        next_entry: 1,
        fresh: 0,
        in_flight: None,
        bytes: 0,
        memory_bytes: 0,
        memory_batches: 0,
        failing: false,
    };
    let mut body = Vec::new();
    let (mut batches, mut samples) = (0u64, 0u64);
    for &id in &listing.segments {
        let recovered = match recover_segment(dir, id, &stats, &mut body) {
            Ok(r) => r,
            Err(e) => {
                error!(segment = id, error = %e, "cannot read a spool segment; left alone");
                continue;
            }
        };
        let Some((seg, pending)) = recovered else {
            continue;
        };
        for m in pending {
            batches += 1;
            samples += m.samples;
            inner.recovered(Entry {
                sequence: m.sequence,
                samples: m.samples,
                boot_id: m.boot_id,
                fresh: false,
                at: Location::Disk {
                    segment: id,
                    index: m.index,
                    offset: m.offset,
                    len: m.len,
                },
            });
        }
        inner.bytes += seg.len;
        inner.segments.insert(id, seg);
    }
    for orphan in listing.acks.difference(&listing.segments) {
        let _ = fs::remove_file(segment::ack_path(dir, *orphan));
    }
    if inner.limits.fsync {
        let _ = segment::sync_dir(dir);
    }
    Stats::add(&stats.spool_recovered_batches, batches);
    Stats::add(&stats.spool_recovered_samples, samples);
    info!(dir = %dir.display(), batches, samples, bytes = inner.bytes,
        segments = inner.segments.len(), "spool opened");
    Ok(inner)
}

/// Counts and logs a discarded tail (or whole file).
fn count_corrupt(stats: &Stats, what: &str, bytes: u64) {
    Stats::add(&stats.spool_corrupt_records, 1);
    Stats::add(&stats.spool_truncated_bytes, bytes);
    warn!(bytes, "spool: {what}; discarded");
}

/// Scans segment `id`: truncates a bad tail, applies its tombstones, deletes it
/// if nothing is pending. Returns the segment and its pending records.
fn recover_segment(
    dir: &Path,
    id: u64,
    stats: &Stats,
    body: &mut Vec<u8>,
) -> io::Result<Option<(Segment, Vec<RecordMeta>)>> {
    let path = segment::segment_path(dir, id);
    let file = open_rw(&path, false)?;
    let file_len = file.metadata()?.len();
    let mut scan = match Scanner::new(file.try_clone()?, id)? {
        Ok(scan) => scan,
        Err(HeaderProblem::UnknownVersion(v)) => {
            error!(
                segment = id,
                version = v,
                "spool segment written by a newer agent (unknown format version); left alone"
            );
            return Ok(None);
        }
        Err(HeaderProblem::Corrupt(why)) => {
            count_corrupt(stats, &format!("segment {id}: {why}"), file_len);
            fs::remove_file(&path)?;
            let _ = fs::remove_file(segment::ack_path(dir, id));
            return Ok(None);
        }
    };
    let mut records = Vec::new();
    while let Some(meta) = scan.next(body)? {
        records.push(meta);
    }
    if let Some(problem) = &scan.problem {
        count_corrupt(stats, problem, file_len - scan.valid_len);
        file.set_len(scan.valid_len)?;
    }
    let seg_len = scan.valid_len;
    drop(scan);
    drop(file);

    let ack_path = segment::ack_path(dir, id);
    let removed = read_acks(&ack_path, id, records.len(), stats)?;
    let total = records.len();
    let pending: Vec<RecordMeta> = records
        .into_iter()
        .filter(|m| !removed.contains(&m.index))
        .collect();
    let seg = Segment {
        id,
        path,
        len: seg_len,
        records: total as u32,
        pending: pending.len() as u32,
        writer: None,
        unsynced: false,
        acks: AckLog::new(ack_path, removed.len() as u64 * ACK_LEN),
    };
    if pending.is_empty() {
        seg.delete()?;
        return Ok(None);
    }
    Ok(Some((seg, pending)))
}

/// Reads segment `id`'s tombstones, truncating a torn or corrupt tail.
fn read_acks(path: &Path, id: u64, records: usize, stats: &Stats) -> io::Result<BTreeSet<u32>> {
    let file = match open_rw(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    };
    let file_len = file.metadata()?.len();
    // Each record is removed at most once; anything longer is garbage.
    let limit = (records as u64 + 1) * ACK_LEN;
    let mut bytes = Vec::new();
    (&file).take(limit).read_to_end(&mut bytes)?;
    let (removed, valid) = format::decode_acks(&bytes, id);
    if valid < file_len {
        Stats::add(&stats.spool_truncated_bytes, file_len - valid);
        warn!(
            segment = id,
            bytes = file_len - valid,
            "spool: torn or corrupt ack file tail; discarded"
        );
        file.set_len(valid)?;
    }
    Ok(removed.into_iter().collect())
}

/// One record of a spool folder, as [`inspect`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    pub segment: u64,
    pub sequence: u64,
    pub samples: u64,
    pub boot_id: [u8; 16],
    /// Acked or evicted (a tombstone exists).
    pub removed: bool,
    /// The signed batch bytes.
    pub payload: Vec<u8>,
}

/// Every good record in the spool folder `dir`, oldest first, without taking
/// the lock or changing anything (so it works beside a running agent; a record
/// being written is simply not reported yet). Reads all payloads into memory:
/// for tests and troubleshooting.
pub fn inspect(dir: &Path) -> io::Result<Vec<RecordInfo>> {
    let mut out = Vec::new();
    let mut body = Vec::new();
    for id in list(dir)?.segments {
        let file = match File::open(segment::segment_path(dir, id)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // just deleted
            Err(e) => return Err(e),
        };
        let seg_len = file.metadata()?.len();
        let Ok(mut scan) = Scanner::new(file, id)? else {
            continue;
        };
        // At most one tombstone per record: bound the read like recovery does.
        let most = seg_len / (format::PREFIX_LEN + format::BODY_FIXED as u64) + 1;
        let mut bytes = Vec::new();
        if let Ok(f) = File::open(segment::ack_path(dir, id)) {
            f.take(most * ACK_LEN).read_to_end(&mut bytes)?;
        }
        let acks = format::decode_acks(&bytes, id).0;
        while let Some(meta) = scan.next(&mut body)? {
            let payload = format::decode_body(&body)
                .map(|b| b.payload.to_vec())
                .unwrap_or_default();
            out.push(RecordInfo {
                segment: id,
                sequence: meta.sequence,
                samples: meta.samples,
                boot_id: meta.boot_id,
                removed: acks.contains(&meta.index),
                payload,
            });
        }
    }
    Ok(out)
}

/// Positions of every good record of segment file `path` (for tests).
#[cfg(test)]
pub(crate) fn layout(path: &Path, id: u64) -> io::Result<Vec<RecordMeta>> {
    let mut scan = match Scanner::new(File::open(path)?, id)? {
        Ok(s) => s,
        Err(_) => return Ok(Vec::new()),
    };
    let mut body = Vec::new();
    let mut out = Vec::new();
    while let Some(m) = scan.next(&mut body)? {
        out.push(m);
    }
    Ok(out)
}
