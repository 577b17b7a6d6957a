//! The HTTP side shared by the webhook, Slack and Alertmanager integrations:
//! `http_config` (authentication) and one POST with a timeout, classified
//! into retryable and permanent failures.
//!
//! Client: reqwest (rustls with the ring provider Vigil installs; no
//! aws-lc-rs). It gives connection pooling, redirects off, a timeout per
//! request and HTTP/1.1 keep-alive without writing a connector on hyper by
//! hand, and the workspace already carries it for the end-to-end tests.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Secret, SendError, secret_value};

/// How long connecting may take (the whole request has its own timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an error answer's body goes into `last_error`.
const ERROR_BODY_CHARS: usize = 200;

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
        errors
    }

    fn apply(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, SendError> {
        if let Some(b) = &self.basic_auth {
            let password = secret_value(b.password.as_ref(), b.password_file.as_deref())?;
            return Ok(req.basic_auth(&b.username, password.as_ref().map(Secret::expose)));
        }
        match secret_value(
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_deref(),
        )? {
            Some(token) => Ok(req.bearer_auth(token.expose())),
            None => Ok(req),
        }
    }
}

/// The client every HTTP integration shares.
pub(super) fn client() -> Result<reqwest::Client, String> {
    vigil_common::tls::install_default_provider();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// POSTs `body` as JSON to `url` within `timeout`. 2xx is success; 408,
/// 429, 5xx and network errors are retryable; any other answer is
/// permanent. Errors never contain the URL (it may hold a secret).
pub(super) async fn post_json<T: Serialize + ?Sized>(
    client: &reqwest::Client,
    url: &str,
    http: Option<&HttpConfig>,
    timeout: Duration,
    body: &T,
) -> Result<(), SendError> {
    let mut req = client.post(url).timeout(timeout).json(body);
    if let Some(h) = http {
        req = h.apply(req)?;
    }
    let response = req
        .send()
        .await
        .map_err(|e| SendError::Retryable(describe(e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
    let message = format!("HTTP {status}: {}", excerpt.trim());
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        Err(SendError::Retryable(message))
    } else {
        Err(SendError::Permanent(message))
    }
}

/// A reqwest error with its causes, without the URL.
fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut out = if timeout {
        "request timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
