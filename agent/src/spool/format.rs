//! Byte layouts of segment and ack files (see the module docs of `spool`), and
//! the scanner that reads segments back, stopping at the first bad record.

use std::fs::File;
use std::io::{self, BufReader, Read};

use vigil_common::frame::MAX_FRAME_BYTES;

/// First bytes of every segment file.
pub(crate) const MAGIC: [u8; 8] = *b"VGLSPOOL";
/// Format version written in segment headers.
pub(crate) const VERSION: u32 = 1;
/// Segment header: magic, version, reserved, segment id, CRC32 of the rest.
pub(crate) const HEADER_LEN: u64 = 28;
/// Record prefix: body length and CRC32 of the body.
pub(crate) const PREFIX_LEN: u64 = 8;
/// Body bytes before the payload: kind, sequence, samples, boot id.
pub(crate) const BODY_FIXED: usize = 1 + 8 + 8 + 16;
/// The only record kind so far: a signed batch.
pub(crate) const KIND_BATCH: u8 = 1;
/// Largest body accepted when reading: anything longer is corrupt (a payload
/// never exceeds the frame limit), so garbage cannot make us allocate more.
pub(crate) const MAX_BODY: usize = BODY_FIXED + MAX_FRAME_BYTES;
/// One ack-file entry: record index and CRC32 of (segment id, index).
pub(crate) const ACK_LEN: u64 = 8;

/// A batch as stored in a record body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Body<'a> {
    pub sequence: u64,
    pub samples: u64,
    pub boot_id: [u8; 16],
    pub payload: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The header of segment `id`.
pub(crate) fn encode_header(id: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What is wrong with a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// Short, wrong magic, bad checksum or wrong id: the file is not usable.
    Corrupt(&'static str),
    /// A well-formed header of a format this agent does not know (a newer agent
    /// wrote it): the file is left alone.
    UnknownVersion(u32),
}

/// Checks the header of segment `id`.
pub(crate) fn check_header(h: &[u8], id: u64) -> Result<(), HeaderProblem> {
    if h.len() < HEADER_LEN as usize {
        return Err(HeaderProblem::Corrupt("torn header"));
    }
    if h[..8] != MAGIC {
        return Err(HeaderProblem::Corrupt("not a spool segment (bad magic)"));
    }
    if crc32fast::hash(&h[..24]) != u32_at(h, 24) {
        return Err(HeaderProblem::Corrupt("header checksum mismatch"));
    }
    let version = u32_at(h, 8);
    if version != VERSION {
        return Err(HeaderProblem::UnknownVersion(version));
    }
    if u64_at(h, 16) != id {
        return Err(HeaderProblem::Corrupt("header names another segment id"));
    }
    Ok(())
}

/// A whole record (prefix and body) for `body`.
pub(crate) fn encode_record(body: &Body<'_>) -> Vec<u8> {
    let len = BODY_FIXED + body.payload.len();
    let mut r = Vec::with_capacity(PREFIX_LEN as usize + len);
    r.extend_from_slice(&(len as u32).to_le_bytes());
    r.extend_from_slice(&[0; 4]); // CRC, filled in below
    r.push(KIND_BATCH);
    r.extend_from_slice(&body.sequence.to_le_bytes());
    r.extend_from_slice(&body.samples.to_le_bytes());
    r.extend_from_slice(&body.boot_id);
    r.extend_from_slice(body.payload);
    let crc = crc32fast::hash(&r[PREFIX_LEN as usize..]);
    r[4..8].copy_from_slice(&crc.to_le_bytes());
    r
}

/// Decodes a body whose checksum matched.
pub(crate) fn decode_body(b: &[u8]) -> Result<Body<'_>, &'static str> {
    if b.len() < BODY_FIXED {
        return Err("record shorter than its fixed fields");
    }
    if b[0] != KIND_BATCH {
        return Err("unknown record kind");
    }
    let mut boot_id = [0u8; 16];
    boot_id.copy_from_slice(&b[17..33]);
    Ok(Body {
        sequence: u64_at(b, 1),
        samples: u64_at(b, 9),
        boot_id,
        payload: &b[BODY_FIXED..],
    })
}

/// Checks a whole record read back from disk and returns its body.
pub(crate) fn decode_record(r: &[u8]) -> Result<Body<'_>, &'static str> {
    if r.len() < PREFIX_LEN as usize {
        return Err("torn record");
    }
    let len = u32_at(r, 0) as usize;
    let body = &r[PREFIX_LEN as usize..];
    if body.len() != len {
        return Err("record length mismatch");
    }
    if crc32fast::hash(body) != u32_at(r, 4) {
        return Err("record checksum mismatch");
    }
    decode_body(body)
}

/// The ack-file entry removing record `index` of segment `segment`.
pub(crate) fn encode_ack(segment: u64, index: u32) -> [u8; ACK_LEN as usize] {
    let mut e = [0u8; ACK_LEN as usize];
    e[..4].copy_from_slice(&index.to_le_bytes());
    e[4..].copy_from_slice(&ack_crc(segment, index).to_le_bytes());
    e
}

fn ack_crc(segment: u64, index: u32) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&segment.to_le_bytes());
    h.update(&index.to_le_bytes());
    h.finalize()
}

/// The record indexes an ack file removes, and how many leading bytes of it
/// are valid (the rest is a torn or corrupt tail).
pub(crate) fn decode_acks(bytes: &[u8], segment: u64) -> (Vec<u32>, u64) {
    let mut removed = Vec::new();
    for entry in bytes.chunks_exact(ACK_LEN as usize) {
        let index = u32_at(entry, 0);
        if u32_at(entry, 4) != ack_crc(segment, index) {
            break;
        }
        removed.push(index);
    }
    let valid = removed.len() as u64 * ACK_LEN;
    (removed, valid)
}

/// Where a record sits in its segment, and what it holds (not the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    pub index: u32,
    pub offset: u64,
    /// Prefix plus body.
    pub len: u64,
    pub sequence: u64,
    pub samples: u64,
    pub boot_id: [u8; 16],
}

/// Reads a segment front to back. Each [`next`](Scanner::next) returns one
/// good record (its body left in the caller's buffer); the first torn or
/// corrupt record ends the scan and is described by [`problem`](Scanner::problem).
pub(crate) struct Scanner {
    reader: BufReader<File>,
    file_len: u64,
    segment: u64,
    /// End of the last good record (or of the header): the valid length.
    pub valid_len: u64,
    next_index: u32,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

impl Scanner {
    /// Reads and checks the header of segment `segment` in `file`.
    pub fn new(file: File, segment: u64) -> io::Result<Result<Scanner, HeaderProblem>> {
        let file_len = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        (&mut reader).take(HEADER_LEN).read_to_end(&mut header)?;
        if let Err(p) = check_header(&header, segment) {
            return Ok(Err(p));
        }
        Ok(Ok(Scanner {
            reader,
            file_len,
            segment,
            valid_len: HEADER_LEN,
            next_index: 0,
            problem: None,
        }))
    }

    fn stop(&mut self, why: impl Into<String>) -> io::Result<Option<RecordMeta>> {
        self.problem = Some(format!("segment {}: {}", self.segment, why.into()));
        Ok(None)
    }

    /// The next good record, with its body in `body`; `None` at the end or at
    /// the first bad record. Only I/O errors are errors.
    pub fn next(&mut self, body: &mut Vec<u8>) -> io::Result<Option<RecordMeta>> {
        let offset = self.valid_len;
        let left = self.file_len - offset;
        if left == 0 || self.problem.is_some() {
            return Ok(None);
        }
        if left < PREFIX_LEN {
            return self.stop(format!("torn record prefix at offset {offset}"));
        }
        let mut prefix = [0u8; PREFIX_LEN as usize];
        self.reader.read_exact(&mut prefix)?;
        let len = u32_at(&prefix, 0) as usize;
        if !(BODY_FIXED..=MAX_BODY).contains(&len) {
            return self.stop(format!("impossible record length {len} at offset {offset}"));
        }
        if left - PREFIX_LEN < len as u64 {
            return self.stop(format!("torn record at offset {offset}"));
        }
        body.clear();
        (&mut self.reader).take(len as u64).read_to_end(body)?;
        if body.len() != len {
            return self.stop(format!("file shrank while reading offset {offset}"));
        }
        if crc32fast::hash(body) != u32_at(&prefix, 4) {
            return self.stop(format!("checksum mismatch at offset {offset}"));
        }
        let b = match decode_body(body) {
            Ok(b) => b,
            Err(why) => return self.stop(format!("{why} at offset {offset}")),
        };
        let meta = RecordMeta {
            index: self.next_index,
            offset,
            len: PREFIX_LEN + len as u64,
            sequence: b.sequence,
            samples: b.samples,
            boot_id: b.boot_id,
        };
        self.next_index += 1;
        self.valid_len = offset + meta.len;
        Ok(Some(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(payload: &[u8]) -> Body<'_> {
        Body {
            sequence: 7,
            samples: 3,
            boot_id: [5; 16],
            payload,
        }
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = encode_header(42);
        assert_eq!(check_header(&h, 42), Ok(()));
        assert!(matches!(
            check_header(&h, 43),
            Err(HeaderProblem::Corrupt(_))
        ));
        assert!(matches!(
            check_header(&h[..20], 42),
            Err(HeaderProblem::Corrupt(_))
        ));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(matches!(
            check_header(&bad, 42),
            Err(HeaderProblem::Corrupt(_))
        ));
        // A newer format with a valid checksum is left alone, not deleted.
        let mut newer = h;
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&newer[..24]);
        newer[24..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            check_header(&newer, 42),
            Err(HeaderProblem::UnknownVersion(2))
        );
    }

    #[test]
    fn record_round_trips_and_any_flipped_bit_is_caught() {
        let r = encode_record(&body(b"signed bytes"));
        assert_eq!(r.len() as u64, PREFIX_LEN + BODY_FIXED as u64 + 12);
        assert_eq!(decode_record(&r), Ok(body(b"signed bytes")));
        for i in 0..r.len() {
            for bit in 0..8 {
                let mut bad = r.clone();
                bad[i] ^= 1 << bit;
                assert!(decode_record(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn ack_entries_stop_at_the_first_bad_one() {
        let mut f = Vec::new();
        f.extend_from_slice(&encode_ack(9, 0));
        f.extend_from_slice(&encode_ack(9, 4));
        f.extend_from_slice(&encode_ack(8, 5)); // another segment's: invalid here
        f.extend_from_slice(&encode_ack(9, 6));
        assert_eq!(decode_acks(&f, 9), (vec![0, 4], 16));
        assert_eq!(decode_acks(&f[..12], 9), (vec![0], 8), "torn entry");
    }
}
