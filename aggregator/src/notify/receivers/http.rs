//! The HTTP side shared by the webhook, Slack and Alertmanager integrations:
//! `http_config` (authentication) and one JSON POST with a timeout,
//! classified into retryable and permanent failures.
//!
//! Built on hyper's connection-level API with tokio-rustls (ring provider,
//! the system trust store), as the agent's scrapes are: one connection per
//! notification is plenty at alerting rates, and no client-wide TLS
//! default is involved. (reqwest was the alternative; with rustls enabled
//! it needs a process-wide crypto provider installed before *any* client is
//! built, which the workspace's other reqwest users do not do.)

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Secret, SendError, secret_value};

/// How much of an error answer's body goes into `last_error`.
const ERROR_BODY_CHARS: usize = 200;
/// Most of an answer's body read (only for the error excerpt).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// `http_config` of a webhook or Alertmanager integration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `Authorization: Basic`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token (read on every send).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings for `https://` URLs.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
}

/// `http_config.tls_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of CA certificates trusted besides the system's (an
    /// internal CA); read on every send.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the URL's host).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `http_config.basic_auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password (read on every send).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl HttpConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let bearer = self.bearer_token.is_some() || self.bearer_token_file.is_some();
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            errors.push("http_config: at most one of bearer_token and bearer_token_file".into());
        }
        if let Some(b) = &self.basic_auth {
            if bearer {
                errors.push("http_config: at most one of basic_auth and bearer_token".into());
            }
            if b.username.is_empty() {
                errors.push("http_config: basic_auth.username is empty".into());
            }
            if b.password.is_some() && b.password_file.is_some() {
                errors.push(
                    "http_config: at most one of basic_auth.password and basic_auth.password_file"
                        .into(),
                );
            }
        }
        if let Some(path) = self.tls_config.as_ref().and_then(|t| t.ca_file.as_ref())
            && !path.is_file()
        {
            errors.push(format!(
                "http_config: tls_config.ca_file {} is not a readable file",
                path.display()
            ));
        }
        errors
    }

    /// The `Authorization` header value, if any.
    fn authorization(&self) -> Result<Option<Secret>, SendError> {
        if let Some(b) = &self.basic_auth {
            let password = secret_value(b.password.as_ref(), b.password_file.as_deref())?;
            let password = password.as_ref().map_or("", Secret::expose);
            return Ok(Some(Secret::new(vigil_common::tls::basic_auth(
                &b.username,
                password,
            ))));
        }
        let token = secret_value(
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_deref(),
        )?;
        Ok(token.map(|t| Secret::new(format!("Bearer {}", t.expose()))))
    }
}

/// What HTTP integrations send with: the TLS settings.
#[derive(Clone)]
pub struct HttpClient {
    /// The system trust store, read once per process.
    roots: Arc<rustls::RootCertStore>,
    /// A config trusting `roots` (used when no `tls_config.ca_file` is set).
    tls: Arc<rustls::ClientConfig>,
}

/// The client every HTTP integration shares.
pub(super) fn client() -> Result<HttpClient, String> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    let roots = ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system trust store");
            }
            roots.add_parsable_certificates(found.certs);
            Arc::new(roots)
        })
        .clone();
    let tls = tls_config(roots.as_ref().clone())?;
    Ok(HttpClient { roots, tls })
}

fn tls_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    vigil_common::tls::http_client_config(roots).map_err(|e| format!("TLS setup: {e}"))
}

impl HttpClient {
    /// The TLS config for one integration: the system's roots plus its
    /// `ca_file`, if any.
    fn tls_for(&self, tls: Option<&TlsConfig>) -> Result<Arc<rustls::ClientConfig>, SendError> {
        let Some(path) = tls.and_then(|t| t.ca_file.as_ref()) else {
            return Ok(self.tls.clone());
        };
        let certs = vigil_common::tls::load_certs(path)
            .map_err(|e| SendError::Retryable(format!("tls_config.ca_file: {e}")))?;
        let mut roots = self.roots.as_ref().clone();
        for cert in certs {
            roots.add(cert).map_err(|e| {
                SendError::Permanent(format!("tls_config.ca_file {}: {e}", path.display()))
            })?;
        }
        tls_config(roots).map_err(SendError::Permanent)
    }
}

/// POSTs `body` as JSON to `url`; the whole exchange (connect, TLS, request,
/// answer) within `timeout`. 2xx is success; 408, 429, 5xx and network
/// errors are retryable; any other answer is permanent. Errors never
/// contain the URL (it may hold a secret).
pub(super) async fn post_json<T: Serialize + ?Sized>(
    client: &HttpClient,
    url: &str,
    http: Option<&HttpConfig>,
    timeout: Duration,
    body: &T,
) -> Result<(), SendError> {
    let body = serde_json::to_vec(body)
        .map_err(|e| SendError::Permanent(format!("cannot encode the payload: {e}")))?;
    let auth = match http {
        Some(h) => h.authorization()?,
        None => None,
    };
    let tls_settings = http.and_then(|h| h.tls_config.as_ref());
    let tls = client.tls_for(tls_settings)?;
    let server_name = tls_settings.and_then(|t| t.server_name.clone());
    let exchange = exchange(tls, server_name, url, auth, body);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Retryable(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

async fn exchange(
    tls: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
    url: &str,
    auth: Option<Secret>,
    body: Vec<u8>,
) -> Result<(), SendError> {
    let permanent = |e: String| SendError::Permanent(e);
    let uri: Uri = url
        .parse()
        .map_err(|_| permanent("the URL does not parse".into()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(permanent("the URL is not http:// or https://".into())),
    };
    let host = uri
        .host()
        .ok_or_else(|| permanent("the URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("Vigil/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(auth) = auth {
        let mut value = HeaderValue::from_str(auth.expose())
            .map_err(|_| permanent("the credentials are not a valid header value".into()))?;
        value.set_sensitive(true);
        request = request.header(header::AUTHORIZATION, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| permanent(format!("cannot build the request: {e}")))?;

    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| SendError::Retryable(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let response = if https {
        let name = server_name.unwrap_or_else(|| host.clone());
        let name = ServerName::try_from(name.clone())
            .map_err(|_| permanent(format!("{name:?} is not a valid TLS server name")))?;
        let tls = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Retryable(format!("TLS: {e}")))?;
        send(tls, request).await?
    } else {
        send(tcp, request).await?
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = read_excerpt(response.into_body()).await;
    let message = format!("HTTP {status}: {}", text.trim());
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        Err(SendError::Retryable(message))
    } else {
        Err(SendError::Permanent(message))
    }
}

async fn send<T>(
    io: T,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, SendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let retryable = |e: hyper::Error| SendError::Retryable(format!("HTTP: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(retryable)?;
    // Ends when the server closes the connection or `sender` is dropped.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "notification HTTP connection ended");
        }
    });
    sender.send_request(request).await.map_err(retryable)
}

/// The start of an error answer's body, for `last_error`.
async fn read_excerpt(mut body: hyper::body::Incoming) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes)
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect()
}
