//! `alertmanager_configs` (Vigil's): forwards the alerts of a notification
//! to a real Alertmanager with `POST /api/v2/alerts`, as Prometheus does.
//!
//! A firing alert is sent without `endsAt`, so the Alertmanager applies its
//! `resolve_timeout` (5m by default): give the route that leads here a
//! `repeat_interval` below it, or raise `resolve_timeout`. A resolved alert
//! carries its `endsAt` and resolves at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::format::rfc3339;
use super::http::{HttpConfig, post_json};
use super::{Context, SendError, Sent, check_timeout, check_url};
use crate::alert::LabelSet;
use crate::notify::Notification;

/// The integration's name in outbox rows and metrics.
pub const KIND: &str = "alertmanager";

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One `alertmanager_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// The Alertmanager's base URL (`http://am:9093`); `/api/v2/alerts` is
    /// appended.
    pub url: String,
    /// Authentication.
    #[serde(default)]
    pub http_config: Option<HttpConfig>,
    /// Timeout of one request (default 10s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// One alert in Alertmanager's `postableAlerts` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

impl AlertmanagerConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = check_url(&self.url) {
            errors.push(format!("url: {e}"));
        }
        if let Err(e) = check_timeout(self.timeout) {
            errors.push(e);
        }
        if let Some(h) = &self.http_config {
            errors.extend(h.validate());
        }
        errors
    }

    /// `POST {url}/api/v2/alerts`.
    pub fn endpoint(&self) -> String {
        format!("{}/api/v2/alerts", self.url.trim_end_matches('/'))
    }

    pub async fn send(&self, n: &Notification, ctx: &Context<'_>) -> Result<Sent, SendError> {
        if n.alerts.is_empty() {
            return Ok(Sent::Skipped);
        }
        post_json(
            ctx.client,
            &self.endpoint(),
            self.http_config.as_ref(),
            self.timeout,
            &postable(n),
        )
        .await?;
        Ok(Sent::Delivered)
    }
}

/// The alerts of `n` as Alertmanager's API takes them.
pub fn postable(n: &Notification) -> Vec<PostableAlert> {
    n.alerts
        .iter()
        .map(|a| PostableAlert {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: rfc3339(a.starts_at_ms),
            ends_at: a.ends_at_ms.map(rfc3339),
            generator_url: a.generator_url.clone(),
        })
        .collect()
}
