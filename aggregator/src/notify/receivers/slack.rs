//! `slack_configs`: a Slack incoming-webhook message with one attachment,
//! coloured by status (red: firing with a critical alert, orange: firing,
//! green: resolved), listing each alert with its runbook link.
//!
//! `title` and `text` may be set to templates (`crate::alert::template`):
//! there `$labels` are the group's common labels, `$value` is the number
//! of firing alerts and `$externalURL` is Vigil's URL.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::format::{AlertLines, title};
use super::http::post_json;
use super::{
    Context, GlobalConfig, Secret, SendError, Sent, alerts_to_send, check_timeout, check_url,
    secret_value,
};
use crate::alert::{Alert, LabelSet, template};
use crate::notify::Notification;

/// The integration's name in outbox rows and metrics.
pub const KIND: &str = "slack";

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One `slack_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (else `global.slack_api_url`). A secret.
    #[serde(default)]
    pub api_url: Option<Secret>,
    /// A file holding the webhook URL (read on every send).
    #[serde(default)]
    pub api_url_file: Option<PathBuf>,
    /// Channel override (`#ops`); the webhook's own channel if unset.
    #[serde(default)]
    pub channel: Option<String>,
    /// Sender name override.
    #[serde(default)]
    pub username: Option<String>,
    /// Template of the attachment title (default: `[FIRING:n] alertname (group)`).
    #[serde(default)]
    pub title: Option<String>,
    /// Template of the attachment text (default: one entry per alert).
    #[serde(default)]
    pub text: Option<String>,
    /// Also notify when alerts resolve (default false, as Alertmanager).
    #[serde(default)]
    pub send_resolved: bool,
    /// Timeout of one request (default 10s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// The webhook's JSON body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// One attachment (Slack's "secondary content").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// `danger`, `warning` or `good`.
    pub color: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title_link: String,
    pub text: String,
    /// Plain text for notifications that cannot show attachments.
    pub fallback: String,
    pub mrkdwn_in: Vec<String>,
    pub footer: String,
}

impl SlackConfig {
    pub fn validate(&self, global: Option<&GlobalConfig>) -> Vec<String> {
        let mut errors = Vec::new();
        if self.api_url.is_some() && self.api_url_file.is_some() {
            errors.push("at most one of api_url and api_url_file".into());
        }
        if let Some(url) = &self.api_url
            && let Err(e) = check_url(url.expose())
        {
            errors.push(format!("api_url: {e}"));
        }
        if let Some(g) = global {
            let has = self.api_url.is_some()
                || self.api_url_file.is_some()
                || g.slack_api_url.is_some()
                || g.slack_api_url_file.is_some();
            if !has {
                errors.push("no api_url here or in global.slack_api_url".into());
            }
        }
        if let Err(e) = check_timeout(self.timeout) {
            errors.push(e);
        }
        errors
    }

    fn url(&self, global: &GlobalConfig) -> Result<Secret, SendError> {
        let url = match secret_value(self.api_url.as_ref(), self.api_url_file.as_deref())? {
            Some(u) => Some(u),
            None => secret_value(
                global.slack_api_url.as_ref(),
                global.slack_api_url_file.as_deref(),
            )?,
        };
        let url = url.ok_or_else(|| SendError::Permanent("no Slack api_url configured".into()))?;
        check_url(url.expose()).map_err(|e| SendError::Permanent(format!("api_url: {e}")))?;
        Ok(url)
    }

    pub async fn send(&self, n: &Notification, ctx: &Context<'_>) -> Result<Sent, SendError> {
        let Some(message) = self.message(n, ctx.external_url) else {
            return Ok(Sent::Skipped);
        };
        let url = self.url(ctx.global)?;
        post_json(ctx.client, url.expose(), None, self.timeout, &message).await?;
        Ok(Sent::Delivered)
    }

    /// The message for `n`, or `None` if nothing is left to send.
    pub fn message(&self, n: &Notification, external_url: &str) -> Option<Message> {
        let alerts = alerts_to_send(n, self.send_resolved);
        if alerts.is_empty() {
            return None;
        }
        let firing = alerts.iter().filter(|a| !a.is_resolved()).count();
        let expand = |name: &str, text: &str| {
            let empty = LabelSet::new();
            let data = template::TemplateData {
                labels: &n.common_labels,
                value: firing as f64,
                external_labels: &empty,
                external_url,
            };
            template::expand_or_error(name, text, &data)
        };
        let default_title = title(n, &alerts);
        let title_text = self
            .title
            .as_deref()
            .map_or_else(|| default_title.clone(), |t| expand("title", t));
        let text = self.text.as_deref().map_or_else(
            || default_text(&alerts, n.truncated_alerts),
            |t| expand("text", t),
        );
        let critical = alerts
            .iter()
            .any(|a| !a.is_resolved() && a.labels.get("severity").is_some_and(|s| s == "critical"));
        let color = match (firing, critical) {
            (0, _) => "good",
            (_, true) => "danger",
            _ => "warning",
        };
        Some(Message {
            channel: self.channel.clone(),
            username: self.username.clone(),
            attachments: vec![Attachment {
                color: color.into(),
                title: escape(&title_text),
                title_link: external_url.to_string(),
                text,
                fallback: default_title,
                mrkdwn_in: vec!["text".into()],
                footer: "Vigil".into(),
            }],
        })
    }
}

/// One block per alert: headline in bold, description, start (and end)
/// time, runbook and source links.
fn default_text(alerts: &[&Alert], truncated: usize) -> String {
    let mut out = String::new();
    for a in alerts {
        let l = AlertLines::of(a);
        out.push_str(&format!(
            "*[{}] {}*\n",
            l.status.to_uppercase(),
            escape(&l.headline())
        ));
        if let Some(d) = l.description {
            out.push_str(&format!("{}\n", escape(d)));
        }
        let mut links = vec![l.times()];
        if let Some(r) = l.runbook_url {
            links.push(format!("<{}|Runbook>", escape(r)));
        }
        if !l.generator_url.is_empty() {
            links.push(format!("<{}|Source>", escape(l.generator_url)));
        }
        out.push_str(&links.join(" · "));
        out.push_str("\n\n");
    }
    if truncated > 0 {
        out.push_str(&format!("… and {truncated} more alerts\n"));
    }
    out.trim_end().to_string()
}

/// Slack's three control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
