//! Alerting: rule files ([`rules`]), annotation templates ([`template`]),
//! the evaluator and alert state machine ([`eval`]), persisted state and
//! history ([`state`]), the `[alerting]` configuration ([`config`]), and
//! `test-rules`, unit tests for rule files ([`unittest`]).
//!
//! The evaluator hands every active alert (and each one that just resolved)
//! to an [`AlertSink`] after each evaluation round, as Prometheus hands them to
//! Alertmanager; the sink is the notification dispatcher in [`crate::notify`],
//! which owns routing, grouping, inhibition, silences and maintenance.

pub mod config;
pub mod eval;
pub mod rules;
pub mod state;
pub mod template;
pub mod unittest;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A label set with a stable order (used for identity and display).
pub type LabelSet = BTreeMap<String, String>;

/// Identity of an alert: a hash of its label set (`alertname` included),
/// stable across restarts and releases (FNV-1a over `name\xffvalue\xff`
/// pairs in label order, as Alertmanager's fingerprints are label-only).
pub fn fingerprint(labels: &LabelSet) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for (name, value) in labels {
        for b in name
            .bytes()
            .chain([0xff])
            .chain(value.bytes())
            .chain([0xff])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// An alert as the evaluator hands it to the notifier: Alertmanager's alert
/// model (`labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `alertname`, the rule's labels and the expression's output labels.
    pub labels: LabelSet,
    /// Expanded annotations (`summary`, `description`, `runbook_url`, ...).
    pub annotations: LabelSet,
    /// When the alert started firing (ms since the epoch).
    pub starts_at_ms: i64,
    /// Set once the alert resolved; `None` while it fires.
    pub ends_at_ms: Option<i64>,
    /// Link back to the expression (the query API URL).
    pub generator_url: String,
    /// Flap detection says this alert is flapping: notify once as flapping
    /// and hold further state-change notifications until it settles.
    pub flapping: bool,
}

impl Alert {
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    pub fn is_resolved(&self) -> bool {
        self.ends_at_ms.is_some()
    }
}

/// Why notifications of an alert are held back right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Muted {
    /// Matched by an active silence.
    Silenced { silence_ids: Vec<String> },
    /// A matching source alert fires for an inhibit rule.
    Inhibited { by: Vec<u64> },
    /// The alert's host, or the whole installation, is in maintenance.
    Maintenance { host: Option<String> },
}

/// Where the evaluator sends alerts: implemented by
/// [`crate::notify::Dispatcher`]. Calls must not block on the network.
pub trait AlertSink: Send + Sync + 'static {
    /// Every currently firing alert, plus those resolved since the last
    /// call (with `ends_at_ms` set), after each evaluation round.
    fn send(&self, alerts: Vec<Alert>);
    /// A firing alert was not acknowledged in time: notify `receiver`
    /// once for it, regardless of its route.
    fn escalate(&self, alert: Alert, receiver: &str);
    /// Whether notifications for an alert with these labels are held back
    /// (silence, inhibition or maintenance), for the alerts API and the UI.
    fn muted(&self, labels: &LabelSet) -> Option<Muted>;
}

/// A sink that drops everything (no notification config, and tests of the
/// evaluator alone).
#[derive(Debug, Default)]
pub struct NullSink;

impl AlertSink for NullSink {
    fn send(&self, _alerts: Vec<Alert>) {}
    fn escalate(&self, _alert: Alert, _receiver: &str) {}
    fn muted(&self, _labels: &LabelSet) -> Option<Muted> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_labels_only_and_their_values() {
        let a: LabelSet = [("alertname", "X"), ("host", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.insert("host".into(), "b".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // "ab"+"c" must not collide with "a"+"bc".
        let c: LabelSet = [("a".to_string(), "bc".to_string())].into();
        let d: LabelSet = [("ab".to_string(), "c".to_string())].into();
        assert_ne!(fingerprint(&c), fingerprint(&d));
    }
}
