//! Receivers (being written): webhook, Slack, email, Alertmanager.

use serde::Deserialize;

/// One entry of `receivers:` in the notification config, Alertmanager's
/// shape. (Placeholder: the receiver integrations are being written; only
/// `name` is fixed.)
#[derive(Debug, Clone, Deserialize)]
pub struct ReceiverConfig {
    /// Referenced by routes.
    pub name: String,
    #[serde(default)]
    pub webhook_configs: Vec<serde_norway::Value>,
    #[serde(default)]
    pub slack_configs: Vec<serde_norway::Value>,
    #[serde(default)]
    pub email_configs: Vec<serde_norway::Value>,
    /// Vigil's: forward to a real Alertmanager's `/api/v2/alerts`.
    #[serde(default)]
    pub alertmanager_configs: Vec<serde_norway::Value>,
}

impl ReceiverConfig {
    /// Every problem with this receiver (bad URL, missing SMTP host, ...).
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Alertmanager's `global:` section (SMTP and Slack defaults).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GlobalConfig {
    #[serde(flatten)]
    pub settings: std::collections::BTreeMap<String, serde_norway::Value>,
}
