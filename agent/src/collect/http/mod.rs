//! A small HTTP/1.1 client for the scrape and probe collectors.
//!
//! Built on hyper's connection-level API rather than a full client (reqwest,
//! hyper-util's pooled client): a collector talks to exactly one target, so
//! its "pool" is a single kept-alive connection, re-opened when the server
//! closed it. That keeps the agent binary and its memory small, and gives the
//! probe direct access to the TLS session (the leaf certificate).
//!
//! Every read is bounded: the caller puts the whole exchange under a timeout,
//! and bodies are read frame by frame against a byte cap, so an oversized
//! response is refused after at most `limit` bytes, whatever it announces.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod target;

pub use target::{Target, tls_config};
pub use vigil_common::tls::basic_auth;

/// Why an exchange failed. Each maps to `up 0` / `probe_success 0`.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS handshake with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    #[error("cannot build the request: {0}")]
    Request(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("unsupported Content-Encoding {0:?}")]
    Encoding(String),
}

/// What to do with a response body.
#[derive(Debug, Clone, Copy)]
pub enum BodyPolicy {
    /// Keep it; larger than this many bytes is an error.
    Keep(u64),
    /// Read and discard at most this many bytes (timing), then stop.
    Discard(u64),
}

/// A response, with the body kept or not according to the [`BodyPolicy`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub body: Vec<u8>,
    /// The server's leaf certificate, when this exchange opened a TLS connection.
    pub peer_cert: Option<CertificateDer<'static>>,
}

/// One target's client: its TLS setup, credentials and kept-alive connection.
pub struct Client {
    target: Target,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    authorization: Option<HeaderValue>,
    keep_alive: bool,
    conn: Option<SendRequest<Empty<Bytes>>>,
}

impl Client {
    /// A client for `target`. `tls` is required for https targets;
    /// `authorization` is a full header value (`Bearer ...`, `Basic ...`).
    pub fn new(
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        authorization: Option<&str>,
        keep_alive: bool,
    ) -> Result<Client, HttpError> {
        let tls = match (target.https, tls) {
            (false, _) => None,
            (true, None) => return Err(HttpError::Request("https needs a TLS config".into())),
            (true, Some(config)) => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| HttpError::Request(e.to_string()))?;
                Some((TlsConnector::from(config), name))
            }
        };
        let authorization = authorization
            .map(|a| {
                let mut v =
                    HeaderValue::from_str(a).map_err(|e| HttpError::Request(e.to_string()))?;
                v.set_sensitive(true);
                Ok::<_, HttpError>(v)
            })
            .transpose()?;
        Ok(Client {
            target,
            tls,
            authorization,
            keep_alive,
            conn: None,
        })
    }

    /// The target this client talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// One request. A kept-alive connection the server has closed meanwhile
    /// is replaced, and the request sent again once (GET and HEAD are
    /// idempotent). Cancel-safe: a dropped call leaves no connection behind.
    pub async fn request(
        &mut self,
        method: Method,
        accept: Option<&HeaderValue>,
        body: BodyPolicy,
    ) -> Result<Response, HttpError> {
        if let Some(mut sender) = self.conn.take().filter(|s| !s.is_closed()) {
            if sender.ready().await.is_ok() {
                let req = self.build(&method, accept)?;
                match sender.send_request(req).await {
                    Ok(resp) => return self.finish(sender, resp, body, None).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "kept-alive connection failed; reconnecting")
                    }
                }
            }
        }
        let (mut sender, cert) = self.connect().await?;
        let req = self.build(&method, accept)?;
        let resp = sender.send_request(req).await?;
        self.finish(sender, resp, body, cert).await
    }

    fn build(
        &self,
        method: &Method,
        accept: Option<&HeaderValue>,
    ) -> Result<Request<Empty<Bytes>>, HttpError> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(self.target.path.as_str())
            .header(header::HOST, self.target.authority.as_str())
            .header(
                header::USER_AGENT,
                concat!("vigil-agent/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(accept) = accept {
            req = req.header(header::ACCEPT, accept);
        }
        if let Some(auth) = &self.authorization {
            req = req.header(header::AUTHORIZATION, auth);
        }
        if !self.keep_alive {
            req = req.header(header::CONNECTION, "close");
        }
        req.body(Empty::new())
            .map_err(|e| HttpError::Request(e.to_string()))
    }

    async fn finish(
        &mut self,
        sender: SendRequest<Empty<Bytes>>,
        resp: hyper::Response<Incoming>,
        policy: BodyPolicy,
        peer_cert: Option<CertificateDer<'static>>,
    ) -> Result<Response, HttpError> {
        let text = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let status = resp.status().as_u16();
        let content_type = text(header::CONTENT_TYPE);
        let content_encoding = text(header::CONTENT_ENCODING);
        let announced = text(header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
        let (body, complete) = read_body(resp.into_body(), announced, policy).await?;
        // Reuse the connection only after a complete exchange.
        if self.keep_alive && complete {
            self.conn = Some(sender);
        }
        Ok(Response {
            status,
            content_type,
            content_encoding,
            body,
            peer_cert,
        })
    }

    async fn connect(
        &self,
    ) -> Result<(SendRequest<Empty<Bytes>>, Option<CertificateDer<'static>>), HttpError> {
        let addr = self.target.instance();
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|e| HttpError::Connect(addr.clone(), e))?;
        // Best effort: a request is one small write.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok((handshake(tcp).await?, None)),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| HttpError::Tls(addr, e))?;
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(|c| c.clone().into_owned());
                Ok((handshake(tls).await?, cert))
            }
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Empty<Bytes>>, HttpError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The connection task ends when the server closes it or the sender is dropped.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP connection ended");
        }
    });
    Ok(sender)
}

/// Reads a body under `policy`; `complete` is false when reading stopped early.
async fn read_body(
    mut body: Incoming,
    announced: Option<u64>,
    policy: BodyPolicy,
) -> Result<(Vec<u8>, bool), HttpError> {
    let (limit, keep) = match policy {
        BodyPolicy::Keep(limit) => (limit, true),
        BodyPolicy::Discard(limit) => (limit, false),
    };
    if keep && announced.is_some_and(|n| n > limit) {
        return Err(HttpError::TooLarge(limit));
    }
    let capacity = if keep {
        announced.unwrap_or(0).min(limit)
    } else {
        0
    };
    let mut buf = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len() as u64);
        if total > limit {
            return if keep {
                Err(HttpError::TooLarge(limit))
            } else {
                Ok((buf, false))
            };
        }
        if keep {
            buf.extend_from_slice(&data);
        }
    }
    Ok((buf, true))
}

/// Logs a target's failures without flooding the log: the first failure and
/// a recovery always, repeats at most every [`FailureLog::EVERY`].
#[derive(Debug, Default)]
pub struct FailureLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    /// Shortest time between two warnings about the same target.
    pub const EVERY: Duration = Duration::from_secs(300);

    /// Records a failed attempt of `kind` `name`.
    pub fn failure(&mut self, kind: &str, name: &str, error: &dyn fmt::Display) {
        let due = self.last_logged.is_none_or(|t| t.elapsed() >= Self::EVERY);
        if due {
            tracing::warn!(%kind, %name, %error, suppressed = self.suppressed, "target failed");
            self.last_logged = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }

    /// Records a successful attempt; logs the recovery after failures.
    pub fn success(&mut self, kind: &str, name: &str) {
        if self.last_logged.take().is_some() {
            tracing::info!(%kind, %name, "target recovered");
            self.suppressed = 0;
        }
    }
}
