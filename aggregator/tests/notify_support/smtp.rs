//! A small SMTP server (RFC 5321) for tests: EHLO/HELO, AUTH PLAIN and
//! LOGIN (RFC 4954), MAIL, RCPT, DATA, RSET, NOOP, QUIT and, when given a
//! TLS acceptor, STARTTLS (RFC 3207) or, with `implicit_tls`, TLS from the
//! first byte (RFC 8314, "port 465"). Every accepted message is recorded.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// One message the server accepted.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub ehlo: String,
    /// `(user, password)` from AUTH, and the mechanism used.
    pub auth: Option<(String, String, String)>,
    pub from: String,
    pub to: Vec<String>,
    /// The DATA, dot-unstuffed, without the final `.`.
    pub data: String,
    /// Whether the message came over TLS (STARTTLS or implicit).
    pub tls: bool,
}

/// What the server offers.
#[derive(Clone)]
pub struct Settings {
    /// The AUTH mechanisms advertised, e.g. `PLAIN LOGIN`.
    pub auth: &'static str,
    /// Offer STARTTLS with this acceptor (or, with `implicit_tls`, speak
    /// TLS from the first byte).
    pub tls: Option<TlsAcceptor>,
    /// Handshake before the greeting instead of offering STARTTLS.
    pub implicit_tls: bool,
    /// Answer every RCPT with `550` (no such user).
    pub reject_rcpt: bool,
}

#[derive(Clone, Default)]
pub struct SmtpServer {
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl SmtpServer {
    /// Listens on 127.0.0.1:0; returns the `host:port`.
    pub async fn start(&self, settings: Settings) -> (String, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mails = self.mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mails = mails.clone();
                let settings = settings.clone();
                tokio::spawn(async move { connection(stream, settings, mails).await });
            }
        });
        (addr, task)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn connection(stream: TcpStream, settings: Settings, mails: Arc<Mutex<Vec<Mail>>>) {
    let mut tls = false;
    let mut io: Box<dyn Io> = match (&settings.tls, settings.implicit_tls) {
        (Some(acceptor), true) => match acceptor.accept(stream).await {
            Ok(s) => {
                tls = true;
                Box::new(s)
            }
            // A client that refused our certificate: nothing to serve.
            Err(_) => return,
        },
        _ => Box::new(stream),
    };
    if io
        .write_all(b"220 test.invalid ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    loop {
        match session(io, &settings, tls, &mails).await {
            Some(plain) => {
                let Some(acceptor) = &settings.tls else {
                    return;
                };
                // STARTTLS: the handshake happens on the same connection,
                // then the client starts over with EHLO.
                match acceptor.accept(plain).await {
                    Ok(s) => {
                        io = Box::new(s);
                        tls = true;
                    }
                    Err(_) => return,
                }
            }
            None => return,
        }
    }
}

fn b64(s: &str) -> String {
    let bytes = base64_decode(s.trim()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into()
}

/// Serves commands until QUIT or EOF (`None`), or until STARTTLS, when the
/// raw stream is handed back to be wrapped (`Some`).
async fn session(
    io: Box<dyn Io>,
    settings: &Settings,
    tls: bool,
    mails: &Arc<Mutex<Vec<Mail>>>,
) -> Option<Box<dyn Io>> {
    let mut io = BufReader::new(io);
    let mut mail = Mail {
        tls,
        ..Mail::default()
    };
    let mut line = String::new();
    macro_rules! reply {
        ($s:expr) => {
            if io.get_mut().write_all($s.as_bytes()).await.is_err() {
                return None;
            }
        };
    }
    macro_rules! read_line {
        () => {{
            line.clear();
            match io.read_line(&mut line).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => line.trim_end_matches(['\r', '\n']).to_string(),
            }
        }};
    }
    loop {
        let cmd = read_line!();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            mail.ehlo = cmd[4..].trim().to_string();
            let mut ext = vec!["250-test.invalid".to_string(), "250-8BITMIME".to_string()];
            if settings.tls.is_some() && !tls {
                ext.push("250-STARTTLS".into());
            }
            ext.push(format!("250 AUTH {}", settings.auth));
            reply!(format!("{}\r\n", ext.join("\r\n")));
        } else if upper == "STARTTLS" && settings.tls.is_some() && !tls {
            reply!("220 go ahead\r\n");
            return Some(io.into_inner());
        } else if upper.starts_with("AUTH PLAIN") {
            let initial = cmd[10..].trim().to_string();
            let encoded = if initial.is_empty() {
                reply!("334 \r\n");
                read_line!()
            } else {
                initial
            };
            let decoded = b64(&encoded);
            let parts: Vec<&str> = decoded.split('\0').collect();
            if parts.len() == 3 {
                mail.auth = Some((parts[1].into(), parts[2].into(), "PLAIN".into()));
                reply!("235 2.7.0 accepted\r\n");
            } else {
                reply!("535 5.7.8 bad credentials\r\n");
            }
        } else if upper.starts_with("AUTH LOGIN") {
            reply!("334 VXNlcm5hbWU6\r\n");
            let user = b64(&read_line!());
            reply!("334 UGFzc3dvcmQ6\r\n");
            let password = b64(&read_line!());
            mail.auth = Some((user, password, "LOGIN".into()));
            reply!("235 2.7.0 accepted\r\n");
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = cmd[10..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            reply!("250 2.1.0 ok\r\n");
        } else if upper.starts_with("RCPT TO:") && settings.reject_rcpt {
            reply!("550 5.1.1 no such user\r\n");
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(cmd[8..].trim().to_string());
            reply!("250 2.1.5 ok\r\n");
        } else if upper == "DATA" {
            reply!("354 end with <CRLF>.<CRLF>\r\n");
            let mut data = String::new();
            loop {
                let l = read_line!();
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push_str("\r\n");
            }
            mail.data = data;
            mails.lock().unwrap().push(mail.clone());
            reply!("250 2.0.0 queued\r\n");
        } else if upper == "RSET" || upper == "NOOP" {
            reply!("250 ok\r\n");
        } else if upper == "QUIT" {
            reply!("221 bye\r\n");
            return None;
        } else {
            reply!("502 5.5.2 not implemented\r\n");
        }
    }
}

/// Standard base64 (with padding) to bytes.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::new();
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Some(out)
}

/// Undoes quoted-printable (RFC 2045): soft line breaks and `=XX`.
pub fn quoted_printable_decode(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into()
}
