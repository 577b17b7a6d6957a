//! Receivers, configured in Alertmanager's shape (`receivers:` with
//! `webhook_configs`, `slack_configs`, `email_configs`, and Vigil's
//! `alertmanager_configs`), and the code that sends one notification through
//! one of a receiver's integrations.
//!
//! Each integration lives in its own file: [`webhook`] (Alertmanager's webhook
//! JSON payload), [`slack`] (incoming webhook), [`email`] (SMTP via lettre),
//! [`alertmanager`] (forwarding to a real Alertmanager's `/api/v2/alerts`).
//! [`format`] holds the text shared by Slack and email.
//!
//! Secrets (passwords, tokens, the Slack webhook URL, webhook URLs, which
//! often carry a token) are [`Secret`]s: their `Debug`, `Display` and
//! `Serialize` print `<secret>`, and no error message carries them (HTTP
//! errors are reported without their URL).

pub mod alertmanager;
pub mod email;
pub mod format;
mod http;
pub mod slack;
pub mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Notification;
pub use http::{HttpClient, HttpConfig};

/// One entry of `receivers:` in the notification config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Referenced by routes.
    pub name: String,
    /// HTTP POSTs of Alertmanager's webhook payload.
    #[serde(default)]
    pub webhook_configs: Vec<webhook::WebhookConfig>,
    /// Slack incoming webhooks.
    #[serde(default)]
    pub slack_configs: Vec<slack::SlackConfig>,
    /// Email over SMTP.
    #[serde(default)]
    pub email_configs: Vec<email::EmailConfig>,
    /// Vigil's: forward to a real Alertmanager's `/api/v2/alerts`.
    #[serde(default)]
    pub alertmanager_configs: Vec<alertmanager::AlertmanagerConfig>,
}

impl ReceiverConfig {
    /// Every problem with this receiver that does not depend on `global:`
    /// (bad URL, smarthost without port, no `to`, ...). See
    /// [`validate_receivers`] for the complete check.
    pub fn validate(&self) -> Vec<String> {
        self.problems(None)
    }

    fn problems(&self, global: Option<&GlobalConfig>) -> Vec<String> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() {
            errors.push("receiver: name must not be empty".to_string());
        }
        let mut add = |kind: &str, i: usize, found: Vec<String>| {
            for e in found {
                errors.push(format!("receiver {:?}: {kind}[{i}]: {e}", self.name));
            }
        };
        for (i, c) in self.webhook_configs.iter().enumerate() {
            add("webhook_configs", i, c.validate());
        }
        for (i, c) in self.slack_configs.iter().enumerate() {
            add("slack_configs", i, c.validate(global));
        }
        for (i, c) in self.email_configs.iter().enumerate() {
            add("email_configs", i, c.validate(global));
        }
        for (i, c) in self.alertmanager_configs.iter().enumerate() {
            add("alertmanager_configs", i, c.validate());
        }
        errors
    }

    /// The integrations of this receiver, as the outbox names them
    /// (`webhook/0`, `email/1`, ...): one outbox row each.
    pub fn integrations(&self) -> Vec<String> {
        let named = |kind: &'static str, n: usize| (0..n).map(move |i| format!("{kind}/{i}"));
        named(webhook::KIND, self.webhook_configs.len())
            .chain(named(slack::KIND, self.slack_configs.len()))
            .chain(named(email::KIND, self.email_configs.len()))
            .chain(named(alertmanager::KIND, self.alertmanager_configs.len()))
            .collect()
    }
}

/// Alertmanager's `global:` section: defaults for SMTP and Slack.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// Default `from` address of email configs.
    #[serde(default)]
    pub smtp_from: Option<String>,
    /// Default SMTP server, `host:port`.
    #[serde(default)]
    pub smtp_smarthost: Option<String>,
    /// Default EHLO name (else `localhost`).
    #[serde(default)]
    pub smtp_hello: Option<String>,
    /// Default SMTP AUTH user name.
    #[serde(default)]
    pub smtp_auth_username: Option<String>,
    /// Default SMTP AUTH password.
    #[serde(default)]
    pub smtp_auth_password: Option<Secret>,
    /// Default file holding the SMTP AUTH password.
    #[serde(default)]
    pub smtp_auth_password_file: Option<PathBuf>,
    /// Default of `require_tls` (STARTTLS required); true unless set.
    #[serde(default)]
    pub smtp_require_tls: Option<bool>,
    /// Default of `force_implicit_tls`; unset: implicit TLS on port 465 only.
    #[serde(default)]
    pub smtp_force_implicit_tls: Option<bool>,
    /// Default Slack incoming-webhook URL.
    #[serde(default)]
    pub slack_api_url: Option<Secret>,
    /// Default file holding the Slack incoming-webhook URL.
    #[serde(default)]
    pub slack_api_url_file: Option<PathBuf>,
    /// Alertmanager's `resolve_timeout`; accepted for compatibility, unused
    /// (Vigil's evaluator always says when an alert resolved).
    #[serde(default, with = "humantime_serde")]
    pub resolve_timeout: Option<Duration>,
}

impl GlobalConfig {
    /// Problems with `global:` itself.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.smtp_auth_password.is_some() && self.smtp_auth_password_file.is_some() {
            errors.push(
                "global: at most one of smtp_auth_password and smtp_auth_password_file".into(),
            );
        }
        if self.slack_api_url.is_some() && self.slack_api_url_file.is_some() {
            errors.push("global: at most one of slack_api_url and slack_api_url_file".into());
        }
        if let Some(host) = &self.smtp_smarthost
            && let Err(e) = email::parse_smarthost(host)
        {
            errors.push(format!("global: smtp_smarthost: {e}"));
        }
        if let Some(url) = &self.slack_api_url
            && let Err(e) = check_url(url.expose())
        {
            errors.push(format!("global: slack_api_url: {e}"));
        }
        errors
    }
}

/// Every problem with `receivers:` and `global:` together: each receiver's
/// own checks, settings that must come from either (an email config with
/// no smarthost here or in `global:`), and duplicate names.
pub fn validate_receivers(receivers: &[ReceiverConfig], global: &GlobalConfig) -> Vec<String> {
    let mut errors = global.validate();
    let mut seen = std::collections::HashSet::new();
    for r in receivers {
        if !seen.insert(r.name.as_str()) {
            errors.push(format!("receiver {:?}: defined more than once", r.name));
        }
        errors.extend(r.problems(Some(global)));
    }
    errors
}

/// A configuration value that must never be shown: `Debug`, `Display` and
/// `Serialize` print `<secret>`; [`Secret::expose`] gives the value to the
/// code that sends it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the request that needs it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

/// A secret given inline or in a file (read on every send, so it can be
/// rotated without a restart).
fn secret_value(inline: Option<&Secret>, file: Option<&Path>) -> Result<Option<Secret>, SendError> {
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    let Some(path) = file else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|e| {
        SendError::Retryable(format!("cannot read secret file {}: {e}", path.display()))
    })?;
    Ok(Some(Secret(
        text.trim_end_matches(['\n', '\r']).to_string(),
    )))
}

/// An `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not an absolute URL (want http:// or https://)".into());
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// Checks a per-request timeout: above zero, at most [`MAX_TIMEOUT`] (the
/// outbox's claim on a row must outlast every send).
fn check_timeout(t: Duration) -> Result<(), String> {
    if t.is_zero() {
        Err("timeout must be above 0".into())
    } else if t > MAX_TIMEOUT {
        Err(format!(
            "timeout {} is above the maximum of {}",
            humantime::format_duration(t),
            humantime::format_duration(MAX_TIMEOUT)
        ))
    } else {
        Ok(())
    }
}

/// Longest timeout an integration may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a send failed, and what the outbox does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: a network error, a timeout, a 5xx / 429 / 408, an SMTP
    /// 4xx reply.
    #[error("{0}")]
    Retryable(String),
    /// Retrying will not help: a 4xx answer, an SMTP 5xx reply, an address
    /// that does not parse. The row is marked failed.
    #[error("{0}")]
    Permanent(String),
    /// The receiver or integration is not in the configuration any more.
    #[error("{0}")]
    Unknown(String),
}

/// What a successful send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Delivered (2xx / `250` after DATA).
    Delivered,
    /// Nothing to send: every alert resolved and `send_resolved` is false.
    Skipped,
}

/// The receivers of the running config, ready to send.
pub struct Receivers {
    by_name: HashMap<String, ReceiverConfig>,
    global: GlobalConfig,
    client: http::HttpClient,
    external_url: String,
}

impl fmt::Debug for Receivers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receivers")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Receivers {
    /// Checks the configuration (every problem at once) and builds the HTTP
    /// client. `external_url` is Vigil's own URL, for links in messages.
    pub fn new(
        receivers: &[ReceiverConfig],
        global: &GlobalConfig,
        external_url: &str,
    ) -> Result<Receivers, Vec<String>> {
        let errors = validate_receivers(receivers, global);
        if !errors.is_empty() {
            return Err(errors);
        }
        let client = http::client().map_err(|e| vec![e])?;
        Ok(Receivers {
            by_name: receivers
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
            global: global.clone(),
            client,
            external_url: external_url.trim_end_matches('/').to_string(),
        })
    }

    /// The integrations of `receiver` (`webhook/0`, ...), or `None` if no
    /// receiver has that name.
    pub fn integrations(&self, receiver: &str) -> Option<Vec<String>> {
        self.by_name.get(receiver).map(ReceiverConfig::integrations)
    }

    /// Sends `n` through one integration of one receiver.
    pub async fn send(
        &self,
        receiver: &str,
        integration: &str,
        n: &Notification,
    ) -> Result<Sent, SendError> {
        let Some(r) = self.by_name.get(receiver) else {
            return Err(SendError::Unknown(format!(
                "receiver {receiver:?} is not configured any more"
            )));
        };
        let gone = || {
            SendError::Unknown(format!(
                "receiver {receiver:?} has no integration {integration} any more"
            ))
        };
        let (kind, index) = integration.split_once('/').ok_or_else(gone)?;
        let index: usize = index.parse().map_err(|_| gone())?;
        let ctx = Context {
            client: &self.client,
            global: &self.global,
            external_url: &self.external_url,
        };
        match kind {
            webhook::KIND => {
                r.webhook_configs
                    .get(index)
                    .ok_or_else(gone)?
                    .send(n, &ctx)
                    .await
            }
            slack::KIND => {
                r.slack_configs
                    .get(index)
                    .ok_or_else(gone)?
                    .send(n, &ctx)
                    .await
            }
            email::KIND => {
                r.email_configs
                    .get(index)
                    .ok_or_else(gone)?
                    .send(n, &ctx)
                    .await
            }
            alertmanager::KIND => {
                r.alertmanager_configs
                    .get(index)
                    .ok_or_else(gone)?
                    .send(n, &ctx)
                    .await
            }
            _ => Err(gone()),
        }
    }
}

/// What every integration's `send` may use.
pub struct Context<'a> {
    pub client: &'a http::HttpClient,
    pub global: &'a GlobalConfig,
    /// Vigil's URL, without a trailing slash.
    pub external_url: &'a str,
}

/// The alerts an integration sends: all of them, or only the firing ones
/// when `send_resolved` is false. Empty means there is nothing to send.
pub fn alerts_to_send(n: &Notification, send_resolved: bool) -> Vec<&crate::alert::Alert> {
    n.alerts
        .iter()
        .filter(|a| send_resolved || !a.is_resolved())
        .collect()
}

#[cfg(test)]
mod tests;
