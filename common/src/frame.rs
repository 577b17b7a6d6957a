//! Length-prefixed frames: a big-endian `u32` length, then that many bytes.
//!
//! The reader refuses a length above its limit *before* reading the body, so a
//! peer cannot make us buffer more than the limit.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Hard upper bound on any frame, whatever the configuration says (16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Framing failures.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The stream ended cleanly before any byte of a frame.
    #[error("stream closed")]
    Closed,
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame of at most `limit` bytes (capped at [`MAX_FRAME_BYTES`]).
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Vec<u8>, FrameError> {
    let limit = limit.min(MAX_FRAME_BYTES);
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let n = reader.read(&mut prefix[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Truncated
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let mut body = vec![0u8; len];
    match reader.read_exact(&mut body).await {
        Ok(_) => Ok(body),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(FrameError::Io(e)),
    }
}

/// Writes one frame. Fails with `TooLarge` if `body` exceeds [`MAX_FRAME_BYTES`].
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> Result<(), FrameError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME_BYTES)
        .ok_or(FrameError::TooLarge {
            len: body.len(),
            limit: MAX_FRAME_BYTES,
        })?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(body).await?;
    Ok(())
}

/// Encodes a frame in memory (prefix + body).
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").await.expect("write");
        assert_eq!(buf, encode_frame(b"hello"));
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 100).await.expect("read"), b"hello");
        assert!(matches!(
            read_frame(&mut r, 100).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn oversized_prefix_is_refused_before_reading() {
        let bytes = encode_frame(&[0u8; 101]);
        let mut r = &bytes[..];
        assert!(matches!(
            read_frame(&mut r, 100).await,
            Err(FrameError::TooLarge {
                len: 101,
                limit: 100
            })
        ));
        let huge = u32::MAX.to_be_bytes();
        let mut r = &huge[..];
        assert!(matches!(
            read_frame(&mut r, usize::MAX).await,
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncation_is_detected() {
        let bytes = encode_frame(b"hello");
        let mut r = &bytes[..6];
        assert!(matches!(
            read_frame(&mut r, 100).await,
            Err(FrameError::Truncated)
        ));
        let mut r = &bytes[..2];
        assert!(matches!(
            read_frame(&mut r, 100).await,
            Err(FrameError::Truncated)
        ));
    }
}
