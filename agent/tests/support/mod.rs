//! A tiny HTTP/1.1 server for the scrape and probe tests: real sockets on
//! 127.0.0.1:0, keep-alive, and the misbehaviours the collectors must survive
//! (never answering, endless bodies).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil_agent::collect::Context;
use vigil_common::Series;

/// What the server answers to one request.
#[derive(Clone)]
pub enum Reply {
    /// A response with `Content-Length`.
    Full {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// 200 with a chunked body that never ends.
    Endless,
    /// Reads the request and never answers.
    Hang,
    /// Answers like `Full` (200, text/plain), then closes the connection
    /// without announcing it, as servers with short idle timeouts do.
    Close(String),
}

impl Reply {
    pub fn ok(content_type: &str, body: &str) -> Reply {
        Reply::Full {
            status: 200,
            content_type: content_type.into(),
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply::Full {
            status,
            content_type: "text/plain".into(),
            body: b"status\n".to_vec(),
        }
    }
}

/// A running server; it stops when the test's runtime ends.
pub struct Server {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// The head of every request received.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Serves `reply` to every request, over TLS when `tls` is given.
pub async fn serve(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (reply, seen, tls) = (reply.clone(), seen.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => connection(tcp, reply, seen).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            connection(stream, reply, seen).await;
                        }
                    }
                }
            });
        }
    });
    Server {
        addr,
        connections,
        requests,
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    reply: Reply,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        let head_only = head.starts_with("HEAD ");
        seen.lock().expect("lock").push(head);
        match &reply {
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Endless => {
                let start = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
                if io.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let line = "endless_metric{i=\"x\"} 1\n".repeat(1000);
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                while io.write_all(chunk.as_bytes()).await.is_ok() {}
                return;
            }
            Reply::Close(body) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = io.write_all(format!("{head}{body}").as_bytes()).await;
                let _ = io.shutdown().await;
                return;
            }
            Reply::Full {
                status,
                content_type,
                body,
            } => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut out = head.into_bytes();
                if !head_only {
                    out.extend_from_slice(body);
                }
                if io.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A TLS acceptor with a certificate for localhost and 127.0.0.1, issued
/// by a fresh Vigil CA in `dir` (valid `days`); returns it and the CA path.
pub fn tls_acceptor(dir: &Path, days: u32) -> (tokio_rustls::TlsAcceptor, std::path::PathBuf) {
    vigil_certs::create_ca(dir, "Probe Test CA", 365, false).expect("ca");
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    vigil_certs::issue_server(dir, dir, &names, days, false).expect("server cert");
    let (cert, key) = vigil_certs::server_paths(dir);
    let chain = vigil_common::tls::load_certs(&cert).expect("cert");
    let key = vigil_common::tls::load_key(&key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(vigil_common::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    (acceptor, vigil_certs::ca_paths(dir).0)
}

/// A port on 127.0.0.1 with nothing listening.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub fn ctx() -> Context {
    Context::new(1_700_000_000_000, "web-1", "host")
}

/// The value of the series `name` whose labels include all of `labels`.
pub fn value(series: &[Series], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Series> = series
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(n, v)| s.label(n) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {found:#?}");
    found.first().map(|s| s.points[0].value)
}
