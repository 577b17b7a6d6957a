//! /proc files kept open between cycles and read with `pread` from offset 0
//! into one reused buffer.
//!
//! /proc files are generated afresh on every read from the start, so an open
//! descriptor serves every cycle: no path lookup, `open`, `fstat` and `close`
//! per file per cycle (a quarter of the system collector's kernel time), and
//! no new `String` per file. A file that cannot be opened (an old kernel
//! without PSI, a locked-down container) is not tried again; one whose read
//! fails is reopened at its next use.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Largest file read (the biggest, /proc/stat on a 1024-CPU host or
/// /proc/diskstats with thousands of devices, stay well under this).
const MAX_BYTES: usize = 4 << 20;

enum Handle {
    Unopened,
    Open(File),
    Missing,
}

/// Open /proc files under one root, and the buffer they are read into.
pub struct ProcFiles {
    root: PathBuf,
    files: Vec<(&'static str, Handle)>,
    /// Always initialised to its full length (zeroed once, not per read).
    buf: Vec<u8>,
}

impl ProcFiles {
    /// Nothing is opened until first read.
    pub fn new(root: &Path) -> Self {
        ProcFiles {
            root: root.to_path_buf(),
            files: Vec::new(),
            buf: vec![0; 16 << 10],
        }
    }

    /// The whole current content of `root/rel`, or `None` if it does not
    /// exist, cannot be read, or is not UTF-8.
    pub fn read(&mut self, rel: &'static str) -> Option<&str> {
        let i = match self.files.iter().position(|(name, _)| *name == rel) {
            Some(i) => i,
            None => {
                self.files.push((rel, Handle::Unopened));
                self.files.len() - 1
            }
        };
        let handle = &mut self.files[i].1;
        if let Handle::Unopened = handle {
            *handle = match File::open(self.root.join(rel)) {
                Ok(f) => Handle::Open(f),
                Err(_) => Handle::Missing,
            };
        }
        let Handle::Open(file) = handle else {
            return None;
        };
        match read_whole(file, &mut self.buf) {
            Ok(len) => std::str::from_utf8(&self.buf[..len]).ok(),
            Err(_) => {
                *handle = Handle::Unopened;
                None
            }
        }
    }
}

/// Reads `file` from offset 0 to its end into `buf`, growing it if needed;
/// returns the length read.
fn read_whole(file: &File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= MAX_BYTES {
                return Err(std::io::Error::other("file too large"));
            }
            buf.resize((2 * len).max(4096), 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_whole_every_time_and_missing_ones_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stat");
        let big: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &big).expect("write");
        let mut files = ProcFiles::new(dir.path());
        assert_eq!(files.read("stat"), Some(big.as_str()));
        // Rewritten in place (same inode), shorter: the new content, whole.
        std::fs::write(&path, "short\n").expect("rewrite");
        assert_eq!(files.read("stat"), Some("short\n"));
        assert_eq!(files.read("missing"), None);
        std::fs::write(dir.path().join("missing"), "late").expect("write");
        assert_eq!(files.read("missing"), None, "not tried again");
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        assert_eq!(files.read("stat"), None, "not UTF-8");
        // The real thing: /proc regenerates on every pread from 0.
        let mut proc = ProcFiles::new(Path::new("/proc"));
        let first = proc.read("uptime").map(str::to_string);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = proc.read("uptime").map(str::to_string);
        assert!(first.is_some() && second.is_some());
        assert_ne!(first, second, "uptime moved on");
    }
}
