//! Times in Alertmanager's format and the default texts of Slack messages
//! and emails: a title naming the status, the alert and the group, then one
//! entry per alert with severity, summary, host, value, start time and
//! runbook link.

use chrono::{DateTime, SecondsFormat};

use super::super::Notification;
use crate::alert::Alert;

/// Alertmanager's `endsAt` of an alert that still fires (Go's zero time).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 in UTC with milliseconds when there are any
/// (`2026-01-02T03:04:05.123Z`).
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

/// `firing` or `resolved`.
pub fn alert_status(a: &Alert) -> &'static str {
    if a.is_resolved() {
        "resolved"
    } else {
        "firing"
    }
}

/// `[FIRING:2] HighCpu (host=web-1 team=platform)`, as Alertmanager's
/// default title reads; escalations say so first.
pub fn title(n: &Notification, alerts: &[&Alert]) -> String {
    let firing = alerts.iter().filter(|a| !a.is_resolved()).count();
    let status = if firing > 0 {
        format!("FIRING:{firing}")
    } else {
        "RESOLVED".to_string()
    };
    let name = n
        .common_labels
        .get("alertname")
        .or_else(|| alerts.first().and_then(|a| a.labels.get("alertname")))
        .map_or("alerts", String::as_str);
    let group: Vec<String> = n
        .group_labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut out = String::new();
    if n.escalation {
        out.push_str("ESCALATED ");
    }
    out.push_str(&format!("[{status}] {name}"));
    if !group.is_empty() {
        out.push_str(&format!(" ({})", group.join(" ")));
    }
    out
}

/// What one alert's entry shows, in a neutral form each integration marks
/// up its own way.
pub struct AlertLines<'a> {
    pub name: &'a str,
    pub status: &'static str,
    pub severity: Option<&'a str>,
    pub host: Option<&'a str>,
    pub summary: Option<&'a str>,
    pub description: Option<&'a str>,
    /// The `value` annotation, if the rule sets one.
    pub value: Option<&'a str>,
    pub started: String,
    pub ended: Option<String>,
    pub runbook_url: Option<&'a str>,
    pub generator_url: &'a str,
    pub flapping: bool,
}

impl<'a> AlertLines<'a> {
    pub fn of(a: &'a Alert) -> Self {
        let label = |k: &str| a.labels.get(k).map(String::as_str);
        let annotation = |k: &str| a.annotations.get(k).map(String::as_str);
        AlertLines {
            name: label("alertname").unwrap_or("(unnamed)"),
            status: alert_status(a),
            severity: label("severity"),
            host: label("host").or_else(|| label("instance")),
            summary: annotation("summary"),
            description: annotation("description"),
            value: annotation("value"),
            started: rfc3339(a.starts_at_ms),
            ended: a.ends_at_ms.map(rfc3339),
            runbook_url: annotation("runbook_url"),
            generator_url: &a.generator_url,
            flapping: a.flapping,
        }
    }

    /// `HighCpu [critical] on web-1 — CPU above 90% (value 97)`.
    pub fn headline(&self) -> String {
        let mut out = self.name.to_string();
        if let Some(s) = self.severity {
            out.push_str(&format!(" [{s}]"));
        }
        if let Some(h) = self.host {
            out.push_str(&format!(" on {h}"));
        }
        if let Some(s) = self.summary {
            out.push_str(&format!(" — {s}"));
        }
        if let Some(v) = self.value {
            out.push_str(&format!(" (value {v})"));
        }
        if self.flapping {
            out.push_str(" (flapping)");
        }
        out
    }

    /// `Started 2026-...; resolved 2026-...`.
    pub fn times(&self) -> String {
        match &self.ended {
            Some(end) => format!("Started {}, resolved {end}", self.started),
            None => format!("Started {}", self.started),
        }
    }
}

/// A plain-text body: the title, then each alert.
pub fn plain_text(n: &Notification, alerts: &[&Alert], external_url: &str) -> String {
    let mut out = title(n, alerts);
    out.push_str("\n\n");
    for a in alerts {
        let l = AlertLines::of(a);
        out.push_str(&format!("[{}] {}\n", l.status.to_uppercase(), l.headline()));
        if let Some(d) = l.description {
            out.push_str(&format!("  {d}\n"));
        }
        out.push_str(&format!("  {}\n", l.times()));
        if let Some(r) = l.runbook_url {
            out.push_str(&format!("  Runbook: {r}\n"));
        }
        if !l.generator_url.is_empty() {
            out.push_str(&format!("  Source: {}\n", l.generator_url));
        }
        out.push('\n');
    }
    if n.truncated_alerts > 0 {
        out.push_str(&format!("... and {} more alerts\n\n", n.truncated_alerts));
    }
    if !external_url.is_empty() {
        out.push_str(&format!("Vigil: {external_url}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(i64::MAX), ZERO_TIME);
    }
}
