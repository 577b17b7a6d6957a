//! Compressed sample chunks for the head: the encoding of Facebook's
//! Gorilla paper, as Prometheus's head uses it (timestamps as a
//! delta-of-delta, values XORed with the previous value), so a series'
//! two hours take a few bytes a sample instead of 16 (plus a vector's
//! doubling slack) as `(i64, f64)` pairs did.
//!
//! A series' samples ([`Samples`]) are closed chunks of up to
//! [`CHUNK_SAMPLES`] samples and one open chunk that appends in place.
//! Appends in time order (the usual case) cost a few bit writes; a sample
//! older than the newest (a late batch, or the head being warmed from the
//! store behind live writes) rebuilds the series from its decoded samples,
//! which is rare and bounded by one series' window.
//!
//! Trimming drops whole chunks and otherwise marks a chunk's leading
//! samples as gone ([`Chunk::skip`]): no chunk is re-encoded to trim it.
//!
//! Hand-written rather than a crate: the maintained ones compress whole
//! columns (pco) or have no out-of-order path and no releases for years
//! (tsz); the format is small, fixed and covered by the tests below.

/// Samples a chunk takes before it is closed (as Prometheus: about two
/// minutes at 1 s, half an hour at 15 s).
pub const CHUNK_SAMPLES: u16 = 120;

/// Bits appended most-significant first to a byte vector.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0: a new byte is needed).
    free: u8,
}

impl BitWriter {
    fn bit(&mut self, bit: bool) {
        self.bits(u64::from(bit), 1);
    }

    /// The low `n` bits of `value`, most significant first (`n <= 64`).
    fn bits(&mut self, value: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(u32::from(self.free));
            let part = ((value >> (n - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= part << (u32::from(self.free) - take);
            }
            self.free -= take as u8;
            n -= take;
        }
    }
}

/// Reads what [`BitWriter`] wrote; `None` past the end. Keeps up to 64
/// unread bits in a word, so a read is a shift, not a loop over bytes.
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte to load into `word`.
    next: usize,
    /// Unread bits, most significant first.
    word: u64,
    /// How many bits of `word` are unread.
    held: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            next: 0,
            word: 0,
            held: 0,
        }
    }

    fn refill(&mut self) {
        while self.held <= 56 {
            let Some(&b) = self.bytes.get(self.next) else {
                return;
            };
            self.word |= u64::from(b) << (56 - self.held);
            self.held += 8;
            self.next += 1;
        }
    }

    fn bit(&mut self) -> Option<bool> {
        self.bits(1).map(|b| b == 1)
    }

    /// The next `n` bits (`n <= 64`).
    fn bits(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if n > self.held {
            self.refill();
        }
        if n <= self.held {
            let v = self.word >> (64 - n);
            self.word = self.word.checked_shl(n).unwrap_or(0);
            self.held -= n;
            return Some(v);
        }
        // More than the word holds after a refill (n > 56): two reads.
        let first = self.held;
        if first == 0 {
            return None;
        }
        let high = self.bits(first)?;
        let rest = n - first;
        Some(high << rest | self.bits(rest)?)
    }
}

/// Delta-of-delta buckets: (prefix, prefix bits, value bits). A value
/// outside every bucket is written whole after the prefix `1111`.
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 7), (0b110, 3, 14), (0b1110, 4, 20)];

/// Whether `v` fits `bits` bits as two's complement.
fn fits(v: i64, bits: u32) -> bool {
    let half = 1i64 << (bits - 1);
    (-half..half).contains(&v)
}

/// The encoder's state between appends of the open chunk.
#[derive(Debug, Clone, Default)]
struct Cursor {
    delta: i64,
    value: u64,
    leading: u8,
    trailing: u8,
}

/// One chunk: `count` samples in time order, one per timestamp, of which
/// the first `skip` were trimmed away.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    data: BitWriter,
    count: u16,
    skip: u16,
    /// Time of the first sample not skipped.
    min_t: i64,
    max_t: i64,
}

impl Chunk {
    fn live(&self) -> usize {
        usize::from(self.count - self.skip)
    }

    /// Appends `(t, v)`, `t` after every sample in the chunk.
    fn push(&mut self, cursor: &mut Cursor, t: i64, v: f64) {
        let bits = v.to_bits();
        if self.count == 0 {
            self.data.bits(t as u64, 64);
            self.data.bits(bits, 64);
            self.min_t = t;
            *cursor = Cursor {
                delta: 0,
                value: bits,
                leading: u8::MAX,
                trailing: 0,
            };
        } else {
            let delta = t.wrapping_sub(self.max_t);
            let dod = delta.wrapping_sub(cursor.delta);
            if dod == 0 {
                self.data.bit(false);
            } else if let Some(&(prefix, n, width)) =
                DOD_BUCKETS.iter().find(|&&(_, _, w)| fits(dod, w))
            {
                self.data.bits(prefix, n);
                self.data.bits(dod as u64, width);
            } else {
                self.data.bits(0b1111, 4);
                self.data.bits(dod as u64, 64);
            }
            cursor.delta = delta;
            let xor = bits ^ cursor.value;
            if xor == 0 {
                self.data.bit(false);
            } else {
                self.data.bit(true);
                let leading = xor.leading_zeros().min(31) as u8;
                let trailing = xor.trailing_zeros() as u8;
                if cursor.leading != u8::MAX
                    && leading >= cursor.leading
                    && trailing >= cursor.trailing
                {
                    self.data.bit(false);
                    let n = 64 - u32::from(cursor.leading) - u32::from(cursor.trailing);
                    self.data.bits(xor >> cursor.trailing, n);
                } else {
                    self.data.bit(true);
                    let n = 64 - u32::from(leading) - u32::from(trailing);
                    self.data.bits(u64::from(leading), 5);
                    // 64 significant bits are written as 0 (6 bits hold 0..=63).
                    self.data.bits(u64::from(n) & 63, 6);
                    self.data.bits(xor >> trailing, n);
                    cursor.leading = leading;
                    cursor.trailing = trailing;
                }
            }
            cursor.value = bits;
        }
        self.max_t = t;
        self.count += 1;
    }

    /// Every sample, skipped ones included, in order.
    fn decode(&self) -> Decoder<'_> {
        Decoder {
            reader: BitReader::new(&self.data.bytes),
            left: self.count,
            first: true,
            t: 0,
            cursor: Cursor::default(),
        }
    }

    /// The samples not skipped.
    fn samples(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.decode().skip(usize::from(self.skip))
    }

    fn heap_bytes(&self) -> usize {
        self.data.bytes.capacity()
    }

    /// Drops the samples before `cutoff`; how many were dropped.
    fn trim(&mut self, cutoff: i64) -> usize {
        if self.min_t >= cutoff {
            return 0;
        }
        let mut dropped = 0;
        let mut first_kept = None;
        for (t, _) in self.samples() {
            if t >= cutoff {
                first_kept = Some(t);
                break;
            }
            dropped += 1;
        }
        self.skip += dropped as u16;
        if let Some(t) = first_kept {
            self.min_t = t;
        }
        dropped
    }
}

/// Iterates a chunk's samples.
struct Decoder<'a> {
    reader: BitReader<'a>,
    left: u16,
    first: bool,
    t: i64,
    cursor: Cursor,
}

impl Decoder<'_> {
    fn step(&mut self) -> Option<(i64, f64)> {
        let r = &mut self.reader;
        if self.first {
            self.first = false;
            self.t = r.bits(64)? as i64;
            self.cursor.value = r.bits(64)?;
            return Some((self.t, f64::from_bits(self.cursor.value)));
        }
        let mut prefix_len = 0;
        while prefix_len < 4 && r.bit()? {
            prefix_len += 1;
        }
        let dod = match prefix_len {
            0 => 0,
            4 => r.bits(64)? as i64,
            k => {
                let width = DOD_BUCKETS[k - 1].2;
                let raw = r.bits(width)?;
                // Sign-extend the two's complement field.
                ((raw << (64 - width)) as i64) >> (64 - width)
            }
        };
        self.cursor.delta = self.cursor.delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.cursor.delta);
        if r.bit()? {
            if r.bit()? {
                self.cursor.leading = r.bits(5)? as u8;
                let n = match r.bits(6)? as u8 {
                    0 => 64,
                    n => n,
                };
                self.cursor.trailing = 64 - self.cursor.leading - n;
            }
            let n = 64 - u32::from(self.cursor.leading) - u32::from(self.cursor.trailing);
            let xor = r.bits(n)? << self.cursor.trailing;
            self.cursor.value ^= xor;
        }
        Some((self.t, f64::from_bits(self.cursor.value)))
    }
}

impl Iterator for Decoder<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let sample = self.step();
        if sample.is_none() {
            // Only a bug could cut a chunk short; stop rather than invent.
            self.left = 0;
        }
        sample
    }
}

/// Newest samples a series keeps uncompressed: reads of a recent window
/// (an alert rule's `[5m]`, the last sample) then decode nothing. 32 is
/// 8 minutes at 15 s, 512 bytes a series.
pub const RECENT_SAMPLES: usize = 32;

/// One series' samples in time order, one per timestamp: closed chunks,
/// the open chunk, then up to [`RECENT_SAMPLES`] newest samples as they
/// came, encoded into the open chunk together when the buffer is full.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    closed: Vec<Chunk>,
    open: Chunk,
    cursor: Cursor,
    recent: Vec<(i64, f64)>,
    len: usize,
}

impl Samples {
    /// Samples from `sorted` (in time order, one per timestamp).
    pub fn from_sorted(sorted: impl IntoIterator<Item = (i64, f64)>) -> Samples {
        let mut s = Samples::default();
        for (t, v) in sorted {
            s.push(t, v);
        }
        s
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The newest sample.
    pub fn last(&self) -> Option<(i64, f64)> {
        match self.recent.last() {
            Some(&last) => Some(last),
            None => {
                (self.open.live() > 0).then(|| (self.open.max_t, f64::from_bits(self.cursor.value)))
            }
        }
    }

    /// Appends `(t, v)`, newer than every sample held.
    fn push(&mut self, t: i64, v: f64) {
        if self.recent.len() >= RECENT_SAMPLES {
            for (t, v) in std::mem::take(&mut self.recent) {
                self.encode(t, v);
            }
            self.recent.reserve_exact(RECENT_SAMPLES);
        }
        self.recent.push((t, v));
        self.len += 1;
    }

    /// Appends `(t, v)` to the open chunk, closing it first when full.
    fn encode(&mut self, t: i64, v: f64) {
        if self.open.count >= CHUNK_SAMPLES {
            let mut full = std::mem::take(&mut self.open);
            full.data.bytes.shrink_to_fit();
            self.closed.push(full);
        }
        self.open.push(&mut self.cursor, t, v);
    }

    /// Inserts `points` in time order (a timestamp already held keeps its
    /// value, as the store does); how many were inserted. Points newer
    /// than the newest are appended; the rest are merged in one rebuild.
    pub fn insert_all(&mut self, points: impl IntoIterator<Item = (i64, f64)>) -> usize {
        let mut added = 0;
        let mut late = Vec::new();
        for (t, v) in points {
            match self.last() {
                Some((last, _)) if last >= t => late.push((t, v)),
                _ => {
                    self.push(t, v);
                    added += 1;
                }
            }
        }
        if !late.is_empty() {
            late.sort_by_key(|&(t, _)| t);
            late.dedup_by_key(|&mut (t, _)| t);
            added += self.merge(&late);
        }
        added
    }

    /// Merges `late` (sorted, one per timestamp) into the held samples,
    /// keeping the held value at a shared timestamp; how many were added.
    fn merge(&mut self, late: &[(i64, f64)]) -> usize {
        let held = self.to_vec();
        let mut merged = Vec::with_capacity(held.len() + late.len());
        let (mut i, mut j) = (0, 0);
        while i < held.len() || j < late.len() {
            match (held.get(i), late.get(j)) {
                (Some(&h), Some(&l)) if l.0 < h.0 => {
                    merged.push(l);
                    j += 1;
                }
                (Some(&h), Some(&l)) => {
                    merged.push(h);
                    i += 1;
                    j += usize::from(l.0 == h.0);
                }
                (Some(&h), None) => {
                    merged.push(h);
                    i += 1;
                }
                (None, Some(&l)) => {
                    merged.push(l);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        let added = merged.len() - held.len();
        *self = Samples::from_sorted(merged);
        added
    }

    fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.closed
            .iter()
            .chain(std::iter::once(&self.open))
            .filter(|c| c.live() > 0)
    }

    /// Every sample, in time order.
    pub fn to_vec(&self) -> Vec<(i64, f64)> {
        let mut out = Vec::with_capacity(self.len);
        for c in self.chunks() {
            out.extend(c.samples());
        }
        out.extend_from_slice(&self.recent);
        out
    }

    /// The uncompressed samples in `[start, end]`.
    fn recent_in(&self, start: i64, end: i64) -> &[(i64, f64)] {
        let lo = self.recent.partition_point(|&(t, _)| t < start);
        let hi = self.recent.partition_point(|&(t, _)| t <= end);
        &self.recent[lo..hi.max(lo)]
    }

    /// The samples in `[start, end]`.
    pub fn range(&self, start: i64, end: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for c in self.chunks() {
            if c.max_t < start || c.min_t > end {
                continue;
            }
            out.extend(
                c.samples()
                    .skip_while(|&(t, _)| t < start)
                    .take_while(|&(t, _)| t <= end),
            );
        }
        out.extend_from_slice(self.recent_in(start, end));
        out
    }

    /// The newest sample in `[start, end]`.
    pub fn latest(&self, start: i64, end: i64) -> Option<(i64, f64)> {
        match self.last() {
            Some((t, v)) if t <= end => return (t >= start).then_some((t, v)),
            None => return None,
            _ => {}
        }
        let hi = self.recent.partition_point(|&(t, _)| t <= end);
        if let Some(&(t, v)) = hi.checked_sub(1).and_then(|i| self.recent.get(i)) {
            return (t >= start).then_some((t, v));
        }
        let c = self
            .chunks()
            .filter(|c| c.min_t <= end)
            .last()
            .filter(|c| c.max_t >= start)?;
        c.samples()
            .take_while(|&(t, _)| t <= end)
            .last()
            .filter(|&(t, _)| t >= start)
    }

    /// Whether a sample lies in `[start, end]`.
    pub fn any_in(&self, start: i64, end: i64) -> bool {
        !self.recent_in(start, end).is_empty()
            || self.chunks().any(|c| {
                c.max_t >= start
                    && c.min_t <= end
                    && (c.min_t >= start
                        || c.max_t <= end
                        || c.samples().any(|(t, _)| (start..=end).contains(&t)))
            })
    }

    /// Drops the samples before `cutoff`; how many were dropped.
    pub fn trim(&mut self, cutoff: i64) -> usize {
        let gone = self.closed.partition_point(|c| c.max_t < cutoff);
        let mut dropped = self.closed.drain(..gone).map(|c| c.live()).sum::<usize>();
        if let Some(c) = self.closed.first_mut() {
            dropped += c.trim(cutoff);
        } else if self.open.live() > 0 && self.open.max_t >= cutoff {
            dropped += self.open.trim(cutoff);
        } else {
            // Every chunk is older than the cutoff: only `recent` may stay.
            dropped += self.open.live();
            self.open = Chunk::default();
            self.cursor = Cursor::default();
            let k = self.recent.partition_point(|&(t, _)| t < cutoff);
            self.recent.drain(..k);
            dropped += k;
        }
        self.len -= dropped;
        dropped
    }

    /// Heap bytes held (chunk data, the chunk list and the recent buffer).
    pub fn heap_bytes(&self) -> usize {
        self.closed.capacity() * size_of::<Chunk>()
            + self.closed.iter().map(Chunk::heap_bytes).sum::<usize>()
            + self.open.heap_bytes()
            + self.recent.capacity() * size_of::<(i64, f64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inserts one sample; true if it was new.
    fn insert(s: &mut Samples, t: i64, v: f64) -> bool {
        s.insert_all([(t, v)]) == 1
    }

    fn roundtrip(samples: &[(i64, f64)]) -> Samples {
        let s = Samples::from_sorted(samples.iter().copied());
        let back = s.to_vec();
        assert_eq!(back.len(), samples.len());
        for (a, b) in back.iter().zip(samples) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "value at {}", a.0);
        }
        s
    }

    /// A deterministic pseudo-random sequence (xorshift).
    fn noise(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn every_kind_of_timestamp_step_and_value_round_trips() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut t = -5_000_000_000i64;
        let mut samples = Vec::new();
        let steps = [
            1,
            15_000,
            15_001,
            14_936,
            15_064,
            1 << 20,
            1 << 40,
            3,
            15_000,
            15_000,
        ];
        let values = [
            0.0,
            -0.0,
            1.0,
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0002), // a stale marker's NaN payload
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            1e-300,
        ];
        for i in 0..2_000 {
            t += steps[i % steps.len()];
            let v = match i % 4 {
                0 => values[(i / 4) % values.len()],
                1 => f64::from_bits(noise(&mut seed)),
                2 => (i / 7) as f64,
                _ => 1000.0 + (noise(&mut seed) % 1000) as f64 / 100.0,
            };
            samples.push((t, v));
        }
        let s = roundtrip(&samples);
        assert_eq!(s.len(), 2_000);
        assert_eq!(
            s.closed.len(),
            16,
            "2,000 samples: 16 closed chunks and an open one"
        );
    }

    #[test]
    fn regular_counters_take_a_few_bits_a_sample() {
        let samples: Vec<(i64, f64)> = (0..480)
            .map(|i| (1_764_115_200_000 + i * 15_000, (i * 3) as f64))
            .collect();
        let s = roundtrip(&samples);
        // Less than 3 bytes a sample, besides the fixed recent buffer.
        let bytes = s.heap_bytes() - RECENT_SAMPLES * size_of::<(i64, f64)>();
        assert!(bytes < 480 * 3, "{bytes} bytes for 480 samples");
    }

    #[test]
    fn late_and_repeated_samples_merge_in_order_keeping_the_first_value() {
        let mut s = Samples::from_sorted((0..300).map(|i| (i * 10, i as f64)));
        assert!(
            !insert(&mut s, 50, -1.0),
            "a timestamp held keeps its value"
        );
        assert!(insert(&mut s, 55, 5.5));
        assert!(insert(&mut s, -10, -1.0));
        assert!(insert(&mut s, 5_000, 500.0));
        let added = s.insert_all([
            (2_990, 1.0),
            (15, 1.5),
            (15, 9.9),
            (6_000, 600.0),
            (20, 0.0),
        ]);
        assert_eq!(added, 2, "15 (once) and 6000 are new; 2990 and 20 are held");
        let v = s.to_vec();
        assert_eq!(v.len(), 300 + 5);
        assert_eq!(s.len(), v.len());
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(s.range(10, 20), vec![(10, 1.0), (15, 1.5), (20, 2.0)]);
        assert_eq!(s.range(50, 55), vec![(50, 5.0), (55, 5.5)]);
        assert_eq!(s.last(), Some((6_000, 600.0)));
    }

    #[test]
    fn ranges_latest_and_presence_agree_with_a_plain_scan() {
        let plain: Vec<(i64, f64)> = (0..1_000).map(|i| (i * 7, i as f64)).collect();
        let s = Samples::from_sorted(plain.iter().copied());
        for (start, end) in [
            (-100, -1),
            (-100, 0),
            (0, 6_993),
            (1, 6),
            (840, 841),
            (839, 847),
            (1_000, 3_000),
            (6_993, 10_000),
            (7_000, 10_000),
        ] {
            let want: Vec<_> = plain
                .iter()
                .copied()
                .filter(|&(t, _)| (start..=end).contains(&t))
                .collect();
            assert_eq!(s.range(start, end), want, "[{start}, {end}]");
            assert_eq!(
                s.latest(start, end),
                want.last().copied(),
                "[{start}, {end}]"
            );
            assert_eq!(s.any_in(start, end), !want.is_empty(), "[{start}, {end}]");
        }
    }

    #[test]
    fn trimming_drops_whole_chunks_and_skips_inside_one() {
        let mut s = Samples::from_sorted((0..500).map(|i| (i, i as f64)));
        assert_eq!(s.trim(130), 130);
        assert_eq!(s.len(), 370);
        assert_eq!(
            s.closed.len(),
            2,
            "the first chunk (0..120) is gone; 360..480 is the open one"
        );
        assert_eq!(s.range(0, 135).first(), Some(&(130, 130.0)));
        assert_eq!(s.to_vec().len(), 370);
        assert_eq!(s.trim(130), 0);
        // A late sample rebuilds without the trimmed ones.
        assert!(!insert(&mut s, 200, 1.0));
        assert!(!insert(&mut s, 135, 1.0));
        assert_eq!(s.trim(499), 369);
        assert_eq!(s.to_vec(), vec![(499, 499.0)]);
        assert_eq!(s.trim(10_000), 1);
        assert!(s.is_empty());
        assert_eq!(s.latest(0, i64::MAX), None);
        assert!(insert(&mut s, 20_000, 2.0));
        assert_eq!(s.to_vec(), vec![(20_000, 2.0)]);
    }

    #[test]
    fn a_merge_after_a_trim_keeps_only_the_live_samples() {
        let mut s = Samples::from_sorted((0..200).map(|i| (i * 2, 1.0)));
        s.trim(100);
        assert!(insert(&mut s, 101, 7.0));
        let v = s.to_vec();
        assert_eq!(v.first(), Some(&(100, 1.0)));
        assert_eq!(v.len(), 151);
        assert_eq!(s.len(), 151);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64, u64),
        InsertAll(Vec<(i64, u64)>),
        Trim(i64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Mostly appends just after the newest sample (the usual case),
        // with late ones, repeats and trims mixed in.
        prop_oneof![
            6 => (0i64..4_000, any::<u64>()).prop_map(|(t, v)| Op::Insert(t, v)),
            2 => proptest::collection::vec((0i64..4_000, any::<u64>()), 0..40).prop_map(Op::InsertAll),
            1 => (0i64..4_000).prop_map(Op::Trim),
        ]
    }

    proptest::proptest! {
        /// Whatever the order of inserts and trims, the chunks hold what a
        /// sorted map would, bit for bit, and answer every read alike.
        #[test]
        fn chunks_behave_like_a_sorted_map(ops in proptest::collection::vec(op(), 1..300)) {
            use std::collections::BTreeMap;
            let mut model: BTreeMap<i64, u64> = BTreeMap::new();
            let mut s = Samples::default();
            let mut cutoff = i64::MIN;
            for op in ops {
                match op {
                    Op::Insert(t, v) => {
                        let fresh = t >= cutoff && !model.contains_key(&t);
                        if t >= cutoff {
                            model.entry(t).or_insert(v);
                            proptest::prop_assert_eq!(insert(&mut s, t, f64::from_bits(v)), fresh);
                        }
                    }
                    Op::InsertAll(points) => {
                        let kept: Vec<_> = points.into_iter().filter(|&(t, _)| t >= cutoff).collect();
                        let before = model.len();
                        for &(t, v) in &kept {
                            model.entry(t).or_insert(v);
                        }
                        let added = s.insert_all(kept.iter().map(|&(t, v)| (t, f64::from_bits(v))));
                        proptest::prop_assert_eq!(added, model.len() - before);
                    }
                    Op::Trim(c) => {
                        cutoff = cutoff.max(c);
                        let before = model.len();
                        model.retain(|&t, _| t >= cutoff);
                        proptest::prop_assert_eq!(s.trim(cutoff), before - model.len());
                    }
                }
                proptest::prop_assert_eq!(s.len(), model.len());
            }
            let bits = |v: Vec<(i64, f64)>| v.into_iter().map(|(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
            let all: Vec<(i64, u64)> = model.iter().map(|(&t, &v)| (t, v)).collect();
            proptest::prop_assert_eq!(bits(s.to_vec()), all.clone());
            for (start, end) in [(0, 4_000), (500, 1_500), (1_999, 2_000), (3_000, 2_000)] {
                let want: Vec<_> = all.iter().copied().filter(|&(t, _)| (start..=end).contains(&t)).collect();
                proptest::prop_assert_eq!(bits(s.range(start, end)), want.clone());
                proptest::prop_assert_eq!(s.latest(start, end).map(|(t, v)| (t, v.to_bits())), want.last().copied());
                proptest::prop_assert_eq!(s.any_in(start, end), !want.is_empty());
            }
        }
    }
}
