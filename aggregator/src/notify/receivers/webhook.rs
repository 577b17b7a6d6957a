//! `webhook_configs`: POSTs Alertmanager's webhook payload (version 4), so
//! anything written for Alertmanager's webhooks reads Vigil's unchanged.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::format::{ZERO_TIME, alert_status, rfc3339};
use super::http::{HttpConfig, post_json};
use super::{Context, Secret, SendError, Sent, alerts_to_send, check_timeout, check_url};
use crate::alert::LabelSet;
use crate::notify::Notification;

/// The integration's name in outbox rows and metrics.
pub const KIND: &str = "webhook";

fn default_send_resolved() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One `webhook_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST. A secret: webhook URLs often carry a token.
    pub url: Secret,
    /// Also notify when alerts resolve (default true, as Alertmanager).
    #[serde(default = "default_send_resolved")]
    pub send_resolved: bool,
    /// At most this many alerts per message (0: all); the rest are counted
    /// in `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
    /// Authentication.
    #[serde(default)]
    pub http_config: Option<HttpConfig>,
    /// Timeout of one request (default 10s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl WebhookConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = check_url(self.url.expose()) {
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

    pub async fn send(&self, n: &Notification, ctx: &Context<'_>) -> Result<Sent, SendError> {
        let Some(body) = payload(n, self.send_resolved, self.max_alerts, ctx.external_url) else {
            return Ok(Sent::Skipped);
        };
        post_json(
            ctx.client,
            self.url.expose(),
            self.http_config.as_ref(),
            self.timeout,
            &body,
        )
        .await?;
        Ok(Sent::Delivered)
    }
}

/// Alertmanager's webhook payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// Always `"4"`.
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: usize,
    pub status: String,
    pub receiver: String,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<PayloadAlert>,
}

/// One alert of the webhook payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadAlert {
    pub status: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: String,
    /// Go's zero time while the alert fires.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// 16 hex digits of the label fingerprint.
    pub fingerprint: String,
}

/// The payload for `n`, or `None` when nothing is left to send
/// (only resolved alerts and `send_resolved` false).
pub fn payload(
    n: &Notification,
    send_resolved: bool,
    max_alerts: usize,
    external_url: &str,
) -> Option<Payload> {
    let mut alerts = alerts_to_send(n, send_resolved);
    if alerts.is_empty() {
        return None;
    }
    let mut truncated = n.truncated_alerts;
    if max_alerts > 0 && alerts.len() > max_alerts {
        truncated += alerts.len() - max_alerts;
        alerts.truncate(max_alerts);
    }
    let status = if alerts.iter().any(|a| !a.is_resolved()) {
        "firing"
    } else {
        "resolved"
    };
    Some(Payload {
        version: "4".into(),
        group_key: n.group_key.clone(),
        truncated_alerts: truncated,
        status: status.into(),
        receiver: n.receiver.clone(),
        group_labels: n.group_labels.clone(),
        common_labels: n.common_labels.clone(),
        common_annotations: n.common_annotations.clone(),
        external_url: external_url.to_string(),
        alerts: alerts
            .into_iter()
            .map(|a| PayloadAlert {
                status: alert_status(a).into(),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: rfc3339(a.starts_at_ms),
                ends_at: a.ends_at_ms.map_or_else(|| ZERO_TIME.to_string(), rfc3339),
                generator_url: a.generator_url.clone(),
                fingerprint: format!("{:016x}", a.fingerprint()),
            })
            .collect(),
    })
}
