//! Unit tests of the spool: recovery from torn and corrupt files, rotation and
//! deletion, the cap, write failures, the lanes, the folder. The model test
//! (`model.rs`) checks random operation sequences against a simple model.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::format::{HEADER_LEN, PREFIX_LEN};
use super::*;
use crate::stats::DropReason;

/// A disk that can be made full: a write then lands half-way and fails with
/// ENOSPC, as on a real full file system.
#[derive(Debug, Default)]
pub(super) struct FaultyDisk {
    pub full: AtomicBool,
}

impl segment::Disk for FaultyDisk {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            file.write_all_at(&buf[..buf.len() / 2], offset)?;
            return Err(io::Error::from_raw_os_error(28));
        }
        file.write_all_at(buf, offset)
    }
}

/// Batch `sequence` with a payload of `len` bytes derived from the sequence.
pub(super) fn batch(sequence: u64, len: usize) -> QueuedBatch {
    let payload: Vec<u8> = (0..len)
        .map(|i| (sequence as usize * 31 + i) as u8)
        .collect();
    QueuedBatch {
        sequence,
        samples: sequence * 10,
        boot_id: [(sequence % 7) as u8; 16],
        payload: Arc::from(payload),
    }
}

/// Bytes a record with a `len`-byte payload takes.
pub(super) fn record_len(len: usize) -> u64 {
    PREFIX_LEN + format::BODY_FIXED as u64 + len as u64
}

pub(super) fn limits(max_bytes: u64, segment_bytes: u64) -> Limits {
    Limits {
        max_bytes,
        segment_bytes,
        fsync: false,
        memory_bytes: MEMORY_FALLBACK_BYTES,
    }
}

fn open(dir: &Path, limits: Limits) -> (Spool, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let spool = Spool::open(dir, limits, stats.clone()).expect("open spool");
    (spool, stats)
}

fn sequences(s: &Spool) -> Vec<u64> {
    s.lock().pending().into_iter().map(|p| p.0).collect()
}

/// Segment files in `dir`, oldest first.
fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    Stats::get(c)
}

#[test]
fn reopened_spool_resumes_with_the_original_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut l = limits(1 << 20, 1 << 16);
    l.fsync = true; // the default; exercised once here
    let (s, _) = open(dir.path(), l.clone());
    for seq in 1..=3 {
        assert_eq!(s.push(batch(seq, 100)).stored, Stored::Disk);
    }
    let first = s.front(true).expect("front");
    assert_eq!(
        (first.lane, first.batch.clone()),
        (Lane::Fresh, batch(1, 100))
    );
    assert_eq!(s.ack(first.id).map(|r| r.sequence), Some(1));
    assert!(s.ack(first.id).is_none(), "a second ack finds nothing");
    drop(s); // a crash: nothing is closed cleanly

    let (s, stats) = open(dir.path(), l);
    assert_eq!(sequences(&s), vec![2, 3]);
    assert_eq!(get(&stats.spool_recovered_batches), 2);
    assert_eq!(get(&stats.spool_recovered_samples), 50);
    assert_eq!(get(&stats.spool_batches), 2);
    assert!(s.front(false).is_none(), "recovered batches are backlog");
    let b = s.front(true).expect("backlog");
    assert_eq!((b.lane, b.batch), (Lane::Backlog, batch(2, 100)));
    assert_eq!(get(&stats.spool_corrupt_records), 0);
}

#[test]
fn torn_and_corrupt_tails_are_truncated_counted_and_the_spool_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = limits(1 << 20, 1 << 16);
    let (s, _) = open(dir.path(), l.clone());
    for seq in 1..=3 {
        s.push(batch(seq, 50));
    }
    drop(s);
    let seg = segment_files(dir.path()).pop().expect("a segment");
    let good_len = fs::metadata(&seg).expect("meta").len();
    assert_eq!(good_len, HEADER_LEN + 3 * record_len(50));

    // 1. A torn append: half of a fourth record.
    let half = format::encode_record(&format::Body {
        sequence: 4,
        samples: 1,
        boot_id: [0; 16],
        payload: &[7; 50],
    });
    let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
    f.write_all(&half[..half.len() / 2]).expect("write");
    drop(f);
    let (s, stats) = open(dir.path(), l.clone());
    assert_eq!(sequences(&s), vec![1, 2, 3]);
    assert_eq!(get(&stats.spool_corrupt_records), 1);
    assert_eq!(get(&stats.spool_truncated_bytes), half.len() as u64 / 2);
    assert_eq!(
        fs::metadata(&seg).expect("meta").len(),
        good_len,
        "truncated"
    );
    drop(s);

    // 2. Garbage after the last record (e.g. a block of zeros from a crash).
    let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
    f.write_all(&[0u8; 300]).expect("write");
    drop(f);
    let (s, stats) = open(dir.path(), l.clone());
    assert_eq!(sequences(&s), vec![1, 2, 3]);
    assert_eq!(get(&stats.spool_corrupt_records), 1);
    assert_eq!(get(&stats.spool_truncated_bytes), 300);
    drop(s);

    // 3. A flipped bit inside the last record: that record is gone, counted.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open");
    let at = good_len - 10;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).expect("read");
    f.write_all_at(&[byte[0] ^ 0x10], at).expect("write");
    drop(f);
    let (s, stats) = open(dir.path(), l.clone());
    assert_eq!(sequences(&s), vec![1, 2]);
    assert_eq!(get(&stats.spool_corrupt_records), 1);
    assert_eq!(get(&stats.spool_truncated_bytes), record_len(50));
    // And it still works: appends go to a new segment, in order.
    s.push(batch(9, 10));
    assert_eq!(sequences(&s), vec![1, 2, 9]);
}

#[test]
fn a_bad_header_removes_the_segment_and_a_newer_version_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = limits(1 << 20, 1 << 16);
    let (s, _) = open(dir.path(), l.clone());
    s.push(batch(1, 20));
    drop(s);
    // A torn segment creation (header cut short) and a newer agent's segment.
    fs::write(
        segment::segment_path(dir.path(), 50),
        &format::encode_header(50)[..10],
    )
    .expect("write");
    let mut newer = format::encode_header(60).to_vec();
    newer[8..12].copy_from_slice(&9u32.to_le_bytes());
    let crc = crc32fast::hash(&newer[..24]);
    newer[24..].copy_from_slice(&crc.to_le_bytes());
    fs::write(segment::segment_path(dir.path(), 60), &newer).expect("write");
    fs::write(dir.path().join("notes.txt"), "ignored").expect("write");

    let (s, stats) = open(dir.path(), l);
    assert_eq!(sequences(&s), vec![1]);
    assert_eq!(get(&stats.spool_corrupt_records), 1);
    assert_eq!(get(&stats.spool_truncated_bytes), 10);
    assert!(!segment::segment_path(dir.path(), 50).exists());
    assert!(
        segment::segment_path(dir.path(), 60).exists(),
        "left for a newer agent"
    );
    // New segments get ids after every file seen, even ones left alone.
    s.push(batch(2, 20));
    assert!(segment::segment_path(dir.path(), 61).exists());
}

#[test]
fn segments_rotate_and_finished_ones_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Four 200-byte records per segment.
    let l = limits(1 << 20, HEADER_LEN + 4 * record_len(159));
    let (s, stats) = open(dir.path(), l.clone());
    for seq in 1..=10 {
        s.push(batch(seq, 159));
    }
    assert_eq!(segment_files(dir.path()).len(), 3, "4 + 4 + 2 records");
    let all = s.bytes();
    assert_eq!(all, 3 * HEADER_LEN + 10 * 200);
    assert_eq!(get(&stats.spool_bytes), all);
    drop(s);

    // Recovered: everything is backlog, oldest first.
    let (s, _) = open(dir.path(), l.clone());
    for seq in 1..=4 {
        let b = s.front(true).expect("front");
        assert_eq!(b.batch.sequence, seq);
        s.ack(b.id);
    }
    assert_eq!(segment_files(dir.path()).len(), 2, "first segment deleted");
    assert_eq!(s.bytes(), all - HEADER_LEN - 4 * 200);
    // Half of the second segment acked: its tombstones survive a crash.
    for _ in 5..=6 {
        let b = s.front(true).expect("front");
        s.ack(b.id);
    }
    let ack_file = segment::ack_path(dir.path(), 2);
    assert_eq!(fs::metadata(&ack_file).expect("ack file").len(), 16);
    drop(s);
    let (s, stats) = open(dir.path(), l.clone());
    assert_eq!(
        sequences(&s),
        vec![7, 8, 9, 10],
        "acked batches are not resent"
    );
    assert_eq!(get(&stats.spool_recovered_batches), 4);
    // Finishing a segment deletes it with its ack file.
    for _ in 7..=8 {
        let b = s.front(true).expect("front");
        s.ack(b.id);
    }
    assert!(!ack_file.exists());
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(s);

    // Live: a finished segment goes as soon as a newer one takes the appends.
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _) = open(dir.path(), l);
    for seq in 1..=4 {
        s.push(batch(seq, 159));
        let b = s.front(false).expect("fresh");
        s.ack(b.id);
    }
    assert_eq!(segment_files(dir.path()).len(), 1, "still appended to");
    s.push(batch(5, 159));
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1, "the finished one was deleted at rotation");
    assert!(files[0].ends_with(format!("{:020}.seg", 2)));
    assert_eq!(s.bytes(), HEADER_LEN + 200);
}

#[test]
fn a_damaged_ack_file_keeps_its_good_tombstones_and_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = limits(1 << 20, 1 << 16);
    let (s, _) = open(dir.path(), l.clone());
    for seq in 1..=4 {
        s.push(batch(seq, 30));
    }
    for _ in 1..=2 {
        let b = s.front(true).expect("front");
        s.ack(b.id);
    }
    drop(s);
    let ack_file = segment::ack_path(dir.path(), 1);
    let mut f = OpenOptions::new()
        .append(true)
        .open(&ack_file)
        .expect("open");
    f.write_all(&[0xAB; 13]).expect("write"); // a torn entry and garbage
    drop(f);
    let (s, stats) = open(dir.path(), l);
    assert_eq!(sequences(&s), vec![3, 4], "good tombstones still apply");
    assert_eq!(get(&stats.spool_truncated_bytes), 13);
    assert_eq!(fs::metadata(&ack_file).expect("meta").len(), 16);
    // New tombstones land after the good ones and count after a restart.
    let b = s.front(true).expect("front");
    s.ack(b.id);
    drop(s);
    let (s, _) = open(dir.path(), limits(1 << 20, 1 << 16));
    assert_eq!(sequences(&s), vec![4]);
    let seen: Vec<(u64, bool)> = (inspect(dir.path()).expect("inspect").iter())
        .map(|r| (r.sequence, r.removed))
        .collect();
    assert_eq!(seen, vec![(1, true), (2, true), (3, true), (4, false)]);
}

#[test]
fn a_full_spool_evicts_the_oldest_but_never_the_batch_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two 200-byte records per segment, three segments at most.
    let seg = HEADER_LEN + 2 * 200;
    let l = limits(3 * seg, seg);
    let (s, stats) = open(dir.path(), l);
    for seq in 1..=6 {
        assert!(s.push(batch(seq, 159)).evicted.is_empty());
    }
    assert_eq!(s.bytes(), 3 * seg);
    // Batch 1 goes in flight; the next push must evict 2 (not 1), which frees
    // nothing (1 pins segment 1), then 3 and 4, which frees segment 2.
    assert_eq!(s.front(true).map(|b| b.batch.sequence), Some(1));
    let pushed = s.push(batch(7, 159));
    assert_eq!(pushed.stored, Stored::Disk);
    let evicted: Vec<u64> = pushed.evicted.iter().map(|r| r.sequence).collect();
    assert_eq!(evicted, vec![2, 3, 4]);
    assert_eq!(sequences(&s), vec![1, 5, 6, 7]);
    assert_eq!(stats.dropped(DropReason::SpoolFull), (3, 20 + 30 + 40));
    assert_eq!(stats.spool_dropped(), (3, 90));
    assert!(s.bytes() <= 3 * seg);
    // Once 1 is acked its segment goes; the in-flight pin is gone too.
    let b1 = s.front(true).expect("front");
    s.ack(b1.id);
    let pushed = s.push(batch(8, 159));
    assert!(pushed.evicted.is_empty(), "{:?}", pushed.evicted);
    assert_eq!(sequences(&s), vec![5, 6, 7, 8]);
}

#[test]
fn a_batch_larger_than_the_spool_is_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, stats) = open(dir.path(), limits(1000, 500));
    s.push(batch(1, 100));
    let pushed = s.push(batch(2, 2000));
    assert_eq!(pushed.stored, Stored::Dropped);
    assert!(
        pushed.evicted.is_empty(),
        "nothing evicted for a hopeless batch"
    );
    assert_eq!(sequences(&s), vec![1]);
    assert_eq!(stats.dropped(DropReason::SpoolFull), (1, 20));
}

#[test]
fn write_failures_keep_batches_in_memory_and_leave_no_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Arc::new(FaultyDisk::default());
    let stats = Arc::new(Stats::default());
    let mut l = limits(1 << 20, 1 << 16);
    l.memory_bytes = 250; // two 100-byte payloads
    let s = Spool::open_with(dir.path(), l.clone(), disk.clone(), stats.clone()).expect("open");
    s.push(batch(1, 100));
    disk.full.store(true, Ordering::SeqCst);
    for seq in 2..=4 {
        assert_eq!(s.push(batch(seq, 100)).stored, Stored::Memory);
    }
    // 2 was dropped for 4: the memory cap holds two.
    assert_eq!(sequences(&s), vec![1, 3, 4]);
    assert_eq!(stats.dropped(DropReason::SpoolWriteError), (1, 20));
    assert_eq!(get(&stats.spool_write_errors), 3);
    assert_eq!(get(&stats.spool_memory_batches), 2);
    // Memory-held batches are delivered like the others, in order.
    let front = s.front(true).expect("front");
    assert_eq!(front.batch, batch(1, 100));
    s.ack(front.id); // tombstone write fails too: counted, not fatal
    assert_eq!(get(&stats.spool_write_errors), 4);
    assert_eq!(s.front(true).map(|b| b.batch), Some(batch(3, 100)));
    disk.full.store(false, Ordering::SeqCst);
    assert_eq!(
        s.push(batch(5, 100)).stored,
        Stored::Disk,
        "recovers by itself"
    );
    assert_eq!(sequences(&s), vec![3, 4, 5]);
    drop(s);

    // No torn bytes were left behind; memory-held batches did not survive the
    // crash; 1, whose tombstone could not be written, is resent (not lost).
    let (s, stats) = open(dir.path(), l);
    assert_eq!(get(&stats.spool_corrupt_records), 0);
    assert_eq!(get(&stats.spool_truncated_bytes), 0);
    assert_eq!(sequences(&s), vec![1, 5]);
}

#[test]
fn fresh_batches_go_first_and_the_backlog_waits_for_its_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = limits(1 << 20, 1 << 16);
    let (s, _) = open(dir.path(), l.clone());
    let n = FRESH_BATCHES as u64 + 3;
    for seq in 1..=n {
        s.push(batch(seq, 10));
    }
    assert_eq!(s.backlog_len(), 3, "only the newest are fresh");
    // The fresh lane, oldest fresh first, budget or not.
    for seq in 4..=n {
        let b = s.front(false).expect("fresh");
        assert_eq!((b.lane, b.batch.sequence), (Lane::Fresh, seq));
        s.ack(b.id);
    }
    assert!(s.front(false).is_none(), "backlog needs a budget");
    let b = s.front(true).expect("backlog");
    assert_eq!((b.lane, b.batch.sequence), (Lane::Backlog, 1));
    // A new batch overtakes the rest of the backlog.
    s.push(batch(100, 10));
    assert_eq!(s.front(true).map(|b| b.batch.sequence), Some(100));
}

#[test]
fn an_unreadable_record_at_send_time_is_discarded_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, stats) = open(dir.path(), limits(1 << 20, 1 << 16));
    for seq in 1..=3 {
        s.push(batch(seq, 40));
    }
    let seg = segment_files(dir.path()).pop().expect("segment");
    let f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.write_all_at(b"rot", HEADER_LEN + record_len(40) + 20)
        .expect("write");
    let order: Vec<u64> = std::iter::from_fn(|| {
        let b = s.front(true)?;
        s.ack(b.id);
        Some(b.batch.sequence)
    })
    .collect();
    assert_eq!(order, vec![1, 3]);
    assert_eq!(get(&stats.spool_corrupt_records), 1);
}

#[test]
fn the_folder_is_created_private_and_locked() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("a/b/spool");
    let (s, _) = open(&dir, limits(1 << 20, 1 << 16));
    let mode = fs::metadata(&dir).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    match Spool::open(&dir, limits(1 << 20, 1 << 16), Arc::new(Stats::default())) {
        Err(e @ SpoolError::Locked { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("pid {}", std::process::id())),
                "{text}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(s);
    open(&dir, limits(1 << 20, 1 << 16)); // released on drop (or on kill)
}

#[test]
fn an_unusable_folder_is_a_clear_error() {
    let parent = tempfile::tempdir().expect("tempdir");
    let file = parent.path().join("a-file");
    fs::write(&file, "x").expect("write");
    for dir in [file.clone(), file.join("spool")] {
        let err = Spool::open(&dir, limits(1 << 20, 1 << 16), Arc::new(Stats::default()))
            .expect_err("not a folder");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("spool directory {}: ", dir.display())),
            "{text}"
        );
    }
}

/// Measures the cost of an append with and without fsync (run with
/// `--ignored --nocapture`; numbers go in the module docs).
#[test]
#[ignore]
fn append_cost() {
    let base = std::env::var_os("SPOOL_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    for fsync in [false, true] {
        let dir = tempfile::tempdir_in(&base).expect("tempdir");
        let mut l = limits(1 << 30, 8 << 20);
        l.fsync = fsync;
        let (s, _) = open(dir.path(), l);
        let n = 500;
        let batches: Vec<QueuedBatch> = (1..=n).map(|seq| batch(seq, 40_000)).collect();
        let started = std::time::Instant::now();
        for b in batches {
            s.push(b);
        }
        let per = started.elapsed() / n as u32;
        let started = std::time::Instant::now();
        for _ in 1..=n {
            let b = s.front(true).expect("front");
            s.ack(b.id);
        }
        let read_ack = started.elapsed() / n as u32;
        println!("fsync={fsync}: append {per:?}/batch (40 kB), front+ack {read_ack:?}/batch");
    }
}

/// Counts `fdatasync` calls.
#[derive(Debug, Default)]
struct CountingDisk {
    syncs: std::sync::atomic::AtomicU64,
}

impl segment::Disk for CountingDisk {
    fn sync(&self, file: &File) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        file.sync_data()
    }
}

#[test]
fn group_commit_syncs_only_batches_still_unacked_at_the_next_push() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut l = limits(1 << 20, 1 << 16);
    l.fsync = true;
    let disk = Arc::new(CountingDisk::default());
    let stats = Arc::new(Stats::default());
    let s = Spool::open_with(dir.path(), l, disk.clone(), stats.clone()).expect("open");
    let syncs = || disk.syncs.load(Ordering::SeqCst);

    // The first push creates a segment: its header is synced at once.
    s.push(batch(1, 100));
    let after_create = syncs();
    assert_eq!(after_create, 1);
    // Acked before the next push: never synced.
    let f = s.front(true).expect("front");
    s.ack(f.id);
    s.push(batch(2, 100));
    assert_eq!(syncs(), after_create, "an acked batch needs no sync");
    // Still pending at the next push (an outage): synced then.
    s.push(batch(3, 100));
    assert_eq!(syncs(), after_create + 1);
    s.push(batch(4, 100));
    assert_eq!(syncs(), after_create + 2);
    // Stopping syncs what is pending; with nothing new, nothing to do.
    s.sync();
    assert_eq!(syncs(), after_create + 3);
    s.sync();
    assert_eq!(syncs(), after_create + 3);
    assert_eq!(get(&stats.spool_syncs), 3);
    drop(s);
    let (reopened, _) = open(dir.path(), limits(1 << 20, 1 << 16));
    assert_eq!(sequences(&reopened), vec![2, 3, 4]);

    // Without fsync: never.
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Arc::new(CountingDisk::default());
    let s =
        Spool::open_with(dir.path(), limits(1 << 20, 1 << 16), disk.clone(), stats).expect("open");
    for seq in 1..=3 {
        s.push(batch(seq, 100));
    }
    s.sync();
    assert_eq!(disk.syncs.load(Ordering::SeqCst), 0);
}
