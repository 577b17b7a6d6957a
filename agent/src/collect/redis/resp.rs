//! Just enough RESP2 to send AUTH and INFO and read their replies.
//!
//! Why not the `redis` crate: the collector needs two commands whose replies
//! are a status line, an error line or one bulk string. A client crate brings
//! connection managers, a command/type system, URL handling and its own TLS
//! options: code the agent would carry (binary size, build time) to use a few
//! dozen lines of it. This module is those few dozen lines, with the two
//! limits a monitoring client must have: every command has a deadline, and a
//! reply larger than [`MAX_REPLY_BYTES`] is refused before anything is
//! allocated for it.

use std::io;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest bulk reply accepted. A default `INFO` is a few kilobytes; this
/// leaves room for thousands of databases or replicas, not for a runaway peer.
pub const MAX_REPLY_BYTES: usize = 1 << 20;
/// Longest status, error or length line.
const MAX_LINE_BYTES: u64 = 4096;

/// A reply to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$n` followed by n bytes; `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
}

/// Why a command got no usable reply.
#[derive(Debug, Error)]
pub enum RespError {
    /// Connecting, writing or reading failed (closed connections included).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// No complete reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The peer does not speak RESP as expected.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A bulk reply announced more than [`MAX_REPLY_BYTES`].
    #[error("reply of {0} bytes exceeds the {MAX_REPLY_BYTES}-byte limit")]
    TooLarge(u64),
}

/// One connection to a Redis server.
pub struct Connection {
    stream: BufReader<TcpStream>,
    timeout: Duration,
}

impl Connection {
    /// Connects to `host:port` within `connect_timeout`; each later command
    /// must complete within `timeout`.
    pub async fn connect(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Connection, RespError> {
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| RespError::Timeout(connect_timeout))??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
            timeout,
        })
    }

    /// Sends `args` as one command and reads its reply.
    pub async fn command(&mut self, args: &[&str]) -> Result<Reply, RespError> {
        let limit = self.timeout;
        tokio::time::timeout(limit, self.exchange(args))
            .await
            .map_err(|_| RespError::Timeout(limit))?
    }

    async fn exchange(&mut self, args: &[&str]) -> Result<Reply, RespError> {
        self.stream.get_mut().write_all(&encode(args)).await?;
        read_reply(&mut self.stream).await
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply: a status, error, integer or bulk string. Arrays and RESP3
/// types are refused (no command we send returns them).
pub async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, RespError> {
    let line = read_line(r).await?;
    let (kind, rest) = line.split_at(1.min(line.len()));
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => rest
            .parse()
            .map(Reply::Integer)
            .map_err(|_| RespError::Protocol(format!("bad integer {rest:?}"))),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| RespError::Protocol(format!("bad bulk length {rest:?}")))?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = len as u64;
            if len > MAX_REPLY_BYTES as u64 {
                return Err(RespError::TooLarge(len));
            }
            let mut body = vec![0u8; len as usize + 2];
            r.read_exact(&mut body).await?;
            if !body.ends_with(b"\r\n") {
                return Err(RespError::Protocol(
                    "bulk string not terminated by CRLF".into(),
                ));
            }
            body.truncate(len as usize);
            Ok(Reply::Bulk(Some(body)))
        }
        _ => Err(RespError::Protocol(format!(
            "unexpected reply {:?}",
            line.chars().take(32).collect::<String>()
        ))),
    }
}

/// One CRLF-terminated line (without the CRLF), at most [`MAX_LINE_BYTES`].
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<String, RespError> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE_BYTES)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed").into());
    }
    if !buf.ends_with(b"\r\n") {
        return Err(if n as u64 >= MAX_LINE_BYTES {
            RespError::Protocol(format!("line longer than {MAX_LINE_BYTES} bytes"))
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line").into()
        });
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).map_err(|_| RespError::Protocol("line is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply, RespError> {
        read_reply(&mut &bytes[..]).await
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&["AUTH", "u", "p w"]),
            b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$3\r\np w\r\n"
        );
    }

    #[tokio::test]
    async fn replies_parse() {
        assert_eq!(
            parse(b"+OK\r\n").await.ok(),
            Some(Reply::Status("OK".into()))
        );
        assert_eq!(
            parse(b"-WRONGPASS invalid\r\n").await.ok(),
            Some(Reply::Error("WRONGPASS invalid".into()))
        );
        assert_eq!(parse(b":-7\r\n").await.ok(), Some(Reply::Integer(-7)));
        assert_eq!(parse(b"$-1\r\n").await.ok(), Some(Reply::Bulk(None)));
        assert_eq!(
            parse(b"$5\r\na\r\nbc\r\n").await.ok(),
            Some(Reply::Bulk(Some(b"a\r\nbc".to_vec())))
        );
    }

    #[tokio::test]
    async fn bad_replies_are_errors_not_panics() {
        let too_big = format!("${}\r\n", MAX_REPLY_BYTES + 1);
        assert!(matches!(
            parse(too_big.as_bytes()).await,
            Err(RespError::TooLarge(_))
        ));
        assert!(matches!(
            parse(b"$99999999999999999999\r\n").await,
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(parse(b"$5\r\nab").await, Err(RespError::Io(_))));
        assert!(matches!(
            parse(b"$2\r\nabcd").await,
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(
            parse(b"*1\r\n$1\r\na\r\n").await,
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(
            parse(b":x\r\n").await,
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(parse(b"").await, Err(RespError::Io(_))));
        assert!(matches!(parse(b"\r\n").await, Err(RespError::Protocol(_))));
        assert!(matches!(parse(b"+OK").await, Err(RespError::Io(_))));
        let long = vec![b'+'; 10_000];
        assert!(matches!(parse(&long).await, Err(RespError::Protocol(_))));
    }
}
