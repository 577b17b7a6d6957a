//! Secrets kept in their own files (`password_file`), so the main config can be
//! world-readable and checked into configuration management.

use std::io::Read;
use std::path::Path;

/// A password file is a line of text; anything bigger is a mistake (a key, a
/// binary), refused rather than read whole.
const MAX_SECRET_BYTES: u64 = 4096;

/// The first line of `path`, without its line ending. Read at every connection
/// attempt, so a rotated password is picked up without a restart.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "{} is larger than {MAX_SECRET_BYTES} bytes; expected one line holding a password",
            path.display()
        ));
    }
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_without_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret \r\nignored\n").expect("write");
        assert_eq!(read_secret_file(&path).as_deref(), Ok("s3cret "));
        std::fs::write(&path, "\n").expect("write");
        assert!(
            read_secret_file(&path)
                .expect_err("empty")
                .contains("empty")
        );
        std::fs::write(&path, vec![b'x'; 5000]).expect("write");
        assert!(read_secret_file(&path).expect_err("big").contains("larger"));
        assert!(read_secret_file(&dir.path().join("none")).is_err());
    }
}
