//! One segment file and its ack file, and the [`Disk`] seam every spool write
//! goes through (so tests can make writes fail like a full disk does).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::format::{self, ACK_LEN, HEADER_LEN};

/// Where spool writes go. Production uses [`RealDisk`]; tests inject failures.
pub(crate) trait Disk: Send + Sync + fmt::Debug {
    /// Writes all of `buf` at `offset`. On error, a prefix may have been written.
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }
    /// Makes the file's data durable.
    fn sync(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
}

/// The real file system.
#[derive(Debug)]
pub(crate) struct RealDisk;

impl Disk for RealDisk {}

/// `dir/<id>.seg` (zero-padded, so names sort like ids).
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// `dir/<id>.ack`.
pub(crate) fn ack_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.ack"))
}

/// Opens for reading and writing, creating with mode 0600 when `create`.
pub(crate) fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .mode(0o600)
        .open(path)
}

/// Best-effort fsync of a directory, so created and deleted names persist.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A segment the spool knows about.
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: u64,
    pub path: PathBuf,
    /// Valid length: header plus every record written (what counts toward the cap).
    pub len: u64,
    /// Records in the file; the next record gets this index.
    pub records: u32,
    /// Records neither acked nor evicted.
    pub pending: u32,
    /// The open file while this is the segment being appended to.
    pub writer: Option<File>,
    /// Records were appended since the last `fdatasync` (group commit, see
    /// the spool's module docs).
    pub unsynced: bool,
    pub acks: AckLog,
}

/// The append-only list of removed records of one segment.
#[derive(Debug)]
pub(crate) struct AckLog {
    path: PathBuf,
    file: Option<File>,
    /// Valid length of the ack file.
    len: u64,
    /// Set after a failed write that could not be undone: nothing more is
    /// appended (what it misses is only resent after a restart).
    broken: bool,
}

impl AckLog {
    pub fn new(path: PathBuf, len: u64) -> AckLog {
        AckLog {
            path,
            file: None,
            len,
            broken: false,
        }
    }

    /// Appends the tombstone of record `index`. On failure the file is cut back
    /// to its last good entry, or, if even that fails, no longer written.
    pub fn append(&mut self, disk: &dyn Disk, segment: u64, index: u32) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "ack file disabled after an earlier failure",
            ));
        }
        if self.file.is_none() {
            self.file = Some(open_rw(&self.path, true)?);
        }
        let Some(file) = &self.file else {
            return Err(io::Error::other("ack file not open"));
        };
        let entry = format::encode_ack(segment, index);
        match disk.write_at(file, &entry, self.len) {
            Ok(()) => {
                self.len += ACK_LEN;
                Ok(())
            }
            Err(e) => {
                if file.set_len(self.len).is_err() {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }
}

impl Segment {
    /// Creates segment `id` and writes its header. Nothing is left behind on failure.
    pub fn create(dir: &Path, id: u64, disk: &dyn Disk, fsync: bool) -> io::Result<Segment> {
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let written = disk
            .write_at(&file, &format::encode_header(id), 0)
            .and_then(|()| if fsync { disk.sync(&file) } else { Ok(()) })
            .and_then(|()| if fsync { sync_dir(dir) } else { Ok(()) });
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Segment {
            id,
            path,
            len: HEADER_LEN,
            records: 0,
            pending: 0,
            writer: Some(file),
            unsynced: false,
            acks: AckLog::new(ack_path(dir, id), 0),
        })
    }

    /// Appends one encoded record (not synced: see [`Segment::sync`]);
    /// returns its index and offset. On failure the file is cut back to its
    /// previous length, or, if that fails too, the segment is sealed (the
    /// torn tail is truncated at the next start).
    pub fn append(&mut self, record: &[u8], disk: &dyn Disk) -> io::Result<(u32, u64)> {
        let Some(file) = &self.writer else {
            return Err(io::Error::other("segment is sealed"));
        };
        let offset = self.len;
        let written = disk.write_at(file, record, offset);
        if let Err(e) = written {
            if file.set_len(offset).is_err() {
                self.writer = None;
            }
            return Err(e);
        }
        let index = self.records;
        self.len += record.len() as u64;
        self.records += 1;
        self.pending += 1;
        self.unsynced = true;
        Ok((index, offset))
    }

    /// `fdatasync`s what was appended since the last sync, if anything.
    pub fn sync(&mut self, disk: &dyn Disk) -> io::Result<()> {
        if let (true, Some(file)) = (self.unsynced, &self.writer) {
            disk.sync(file)?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Stops appending; the file stays until its last record is removed.
    pub fn seal(&mut self) {
        self.writer = None;
    }

    /// Deletes the segment file, then its ack file (in that order: a crash in
    /// between leaves an orphan ack file, removed at the next start, never a
    /// segment without its tombstones).
    pub fn delete(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match fs::remove_file(&self.acks.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads record bytes back (prefix and body) for sending.
    pub fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        match &self.writer {
            Some(f) => f.read_exact_at(&mut buf, offset)?,
            None => File::open(&self.path)?.read_exact_at(&mut buf, offset)?,
        }
        Ok(buf)
    }
}
