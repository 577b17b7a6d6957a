//! The spool against a simple model: a list of pending batches in push order.
//!
//! Random sequences of push / front / ack / crash-and-reopen / tail damage /
//! disk-full toggles run against a small spool (so rotation and the cap are
//! exercised constantly). After every step the spool's pending batches, their
//! order, lanes and storage must equal the model's; what the model cannot know
//! in advance is checked as a property:
//! - evictions: only the oldest batches of their kind (disk or memory), never
//!   the one in flight;
//! - damage to the newest segment: exactly the records at and after the damaged
//!   byte are gone, and the corrupt-record counter moves iff the damage is
//!   detectable (a cut exactly between records is not);
//! - a removal whose tombstone could not be written (disk full) may come back
//!   after a restart (a resend), but nothing else may, and nothing is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use proptest::prelude::*;

use super::format::HEADER_LEN;
use super::tests::{FaultyDisk, batch, limits};
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    Front(bool),
    Ack,
    Reopen,
    Truncate(u64),
    Flip(u64, u8),
    DiskFull(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..260).prop_map(Op::Push),
        4 => any::<bool>().prop_map(Op::Front),
        4 => Just(Op::Ack),
        1 => Just(Op::Reopen),
        1 => (1u64..400).prop_map(Op::Truncate),
        1 => (0u64..400, 1u8..=255).prop_map(|(d, m)| Op::Flip(d, m)),
        1 => any::<bool>().prop_map(Op::DiskFull),
    ]
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    len: usize,
    fresh: bool,
    memory: bool,
}

struct Harness {
    dir: tempfile::TempDir,
    disk: Arc<FaultyDisk>,
    stats: Arc<Stats>,
    limits: Limits,
    spool: Option<Spool>,
    model: Vec<Pending>,
    in_flight: Option<(u64, u64)>, // (spool id, sequence)
    /// Removed while their tombstone may not have been written: may come back.
    ghosts: BTreeMap<u64, usize>,
    next_seq: u64,
}

impl Harness {
    fn new() -> Harness {
        let mut limits = limits(2800, 700);
        limits.memory_bytes = 600;
        let mut h = Harness {
            dir: tempfile::tempdir().expect("tempdir"),
            disk: Arc::new(FaultyDisk::default()),
            stats: Arc::new(Stats::default()),
            limits,
            spool: None,
            model: Vec::new(),
            in_flight: None,
            ghosts: BTreeMap::new(),
            next_seq: 1,
        };
        h.spool = Some(h.open());
        h
    }

    fn open(&self) -> Spool {
        let (dir, disk, stats) = (self.dir.path(), self.disk.clone(), self.stats.clone());
        Spool::open_with(dir, self.limits.clone(), disk, stats).expect("the spool always opens")
    }

    fn spool(&self) -> &Spool {
        self.spool.as_ref().expect("open")
    }

    fn full(&self) -> bool {
        self.disk.full.load(Ordering::SeqCst)
    }

    fn push(&mut self, len: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let pushed = self.spool().push(batch(seq, len));
        let evicted: BTreeSet<u64> = pushed.evicted.iter().map(|r| r.sequence).collect();
        let in_flight = self.in_flight.map(|f| f.1);
        assert!(
            in_flight.is_none_or(|f| !evicted.contains(&f)),
            "evicted the batch in flight"
        );
        for kind in [false, true] {
            let newest = self
                .model
                .iter()
                .filter(|p| p.memory == kind && evicted.contains(&p.seq))
                .map(|p| p.seq)
                .max();
            for p in &self.model {
                let older = newest.is_some_and(|n| p.seq < n);
                if p.memory == kind && older && Some(p.seq) != in_flight {
                    assert!(
                        evicted.contains(&p.seq),
                        "evicted past older batch {}",
                        p.seq
                    );
                }
            }
        }
        assert!(
            evicted
                .iter()
                .all(|e| self.model.iter().any(|p| p.seq == *e))
        );
        let full = self.full();
        for p in self
            .model
            .iter()
            .filter(|p| evicted.contains(&p.seq) && !p.memory)
        {
            if full {
                self.ghosts.insert(p.seq, p.len);
            }
        }
        self.model.retain(|p| !evicted.contains(&p.seq));
        let memory = match pushed.stored {
            Stored::Disk => {
                assert!(!full, "stored on a full disk");
                false
            }
            Stored::Memory => {
                assert!(full, "fell back to memory with a working disk");
                true
            }
            Stored::Dropped => {
                let disk_left = self
                    .model
                    .iter()
                    .any(|p| !p.memory && Some(p.seq) != in_flight);
                assert!(
                    full || !disk_left,
                    "dropped a batch while older ones could go"
                );
                return;
            }
        };
        self.model.push(Pending {
            seq,
            len,
            fresh: true,
            memory,
        });
        let fresh: Vec<usize> = (0..self.model.len())
            .filter(|&i| self.model[i].fresh)
            .collect();
        if fresh.len() > FRESH_BATCHES {
            self.model[fresh[0]].fresh = false;
        }
    }

    fn front(&mut self, allowed: bool) {
        let expected = match self.model.iter().find(|p| p.fresh) {
            Some(p) => Some((p.clone(), Lane::Fresh)),
            None if allowed => self.model.first().map(|p| (p.clone(), Lane::Backlog)),
            None => None,
        };
        let got = self.spool().front(allowed);
        match (got, expected) {
            (None, None) => {}
            (Some(g), Some((p, lane))) => {
                assert_eq!(g.lane, lane);
                assert_eq!(g.batch, batch(p.seq, p.len), "original bytes");
                self.in_flight = Some((g.id, p.seq));
            }
            (g, e) => panic!("front: got {g:?}, expected {e:?}"),
        }
    }

    fn ack(&mut self) {
        let Some((id, seq)) = self.in_flight.take() else {
            return;
        };
        let removed = self.spool().ack(id).expect("in flight is pending");
        assert_eq!(removed.sequence, seq);
        let i = self
            .model
            .iter()
            .position(|p| p.seq == seq)
            .expect("in model");
        let p = self.model.remove(i);
        if self.full() && !p.memory {
            self.ghosts.insert(p.seq, p.len);
        }
    }

    /// Crash (drop without closing), damage the newest segment, reopen.
    fn crash(&mut self, damage: Option<Op>) {
        self.spool = None;
        let mut lost = BTreeSet::new();
        let mut detectable = false;
        let newest = fs::read_dir(self.dir.path())
            .expect("read dir")
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .max();
        if let (Some(damage), Some(id)) = (damage, newest) {
            let path = segment::segment_path(self.dir.path(), id);
            let records = open::layout(&path, id).expect("layout");
            let file_len = fs::metadata(&path).expect("meta").len();
            let from = match damage {
                Op::Truncate(k) => {
                    let cut = file_len.saturating_sub(k);
                    let f = OpenOptions::new().write(true).open(&path).expect("open");
                    f.set_len(cut).expect("truncate");
                    let boundary =
                        cut == HEADER_LEN || records.iter().any(|r| r.offset + r.len == cut);
                    detectable = !boundary;
                    cut
                }
                Op::Flip(d, mask) => {
                    let at = file_len - 1 - d % file_len;
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .expect("open");
                    let mut b = [0u8];
                    f.read_exact_at(&mut b, at).expect("read");
                    f.write_all_at(&[b[0] ^ mask], at).expect("write");
                    detectable = true;
                    at
                }
                _ => unreachable!("not a damage op"),
            };
            for r in &records {
                if from < HEADER_LEN || r.offset + r.len > from {
                    lost.insert(r.sequence);
                }
            }
        }
        let corrupt_before = Stats::get(&self.stats.spool_corrupt_records);
        self.spool = Some(self.open());
        let corrupt = Stats::get(&self.stats.spool_corrupt_records) - corrupt_before;
        assert_eq!(corrupt, u64::from(detectable), "corrupt count after damage");

        let got: Vec<u64> = self.spool().lock().pending().iter().map(|p| p.0).collect();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "order kept: {got:?}");
        let must: BTreeSet<u64> = (self.model.iter())
            .filter(|p| !p.memory && !lost.contains(&p.seq))
            .map(|p| p.seq)
            .collect();
        let got_set: BTreeSet<u64> = got.iter().copied().collect();
        assert!(
            must.is_subset(&got_set),
            "lost batches: {:?}",
            must.difference(&got_set)
        );
        for seq in got_set.difference(&must) {
            assert!(
                self.ghosts.contains_key(seq) && !lost.contains(seq),
                "{seq} came back"
            );
        }
        let lens: BTreeMap<u64, usize> = (self.model.iter().map(|p| (p.seq, p.len)))
            .chain(self.ghosts.iter().map(|(s, l)| (*s, *l)))
            .collect();
        self.model = got
            .iter()
            .map(|seq| Pending {
                seq: *seq,
                len: lens[seq],
                fresh: false,
                memory: false,
            })
            .collect();
        self.ghosts.clear();
        self.in_flight = None;
    }

    fn check(&self) {
        let spool = self.spool();
        let got = spool.lock().pending();
        let want: Vec<(u64, bool, bool)> = self
            .model
            .iter()
            .map(|p| (p.seq, p.fresh, p.memory))
            .collect();
        assert_eq!(got, want, "pending (sequence, fresh, in memory)");
        assert_eq!(Stats::get(&self.stats.spool_batches), want.len() as u64);
        let bytes = spool.bytes();
        assert!(bytes <= self.limits.max_bytes, "{bytes} over the cap");
        let on_disk: u64 = fs::read_dir(self.dir.path())
            .expect("read dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert_eq!(bytes, on_disk, "accounting matches the files");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn spool_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut h = Harness::new();
        for op in ops {
            match op {
                Op::Push(len) => h.push(len),
                Op::Front(allowed) => h.front(allowed),
                Op::Ack => h.ack(),
                Op::Reopen => h.crash(None),
                Op::Truncate(_) | Op::Flip(..) => h.crash(Some(op)),
                Op::DiskFull(full) => h.disk.full.store(full, Ordering::SeqCst),
            }
            h.check();
        }
    }
}
