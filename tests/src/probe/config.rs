//! What the aggregator must be configured with for the probe to measure
//! alert latency: a rule file with one `for: 0s` rule over the probe's
//! threshold series, and a notification config routing that alert (and
//! nothing else) to the probe's webhook receiver with `group_wait: 0s`.
//! `vigil-probe write-config` writes both; tests write the same text.

use std::path::Path;
use std::time::Duration;

/// The probe's sequence gauge: its value is the batch's sequence number
/// (what `/prometheus/api/v1/query` is polled for).
pub const SEQUENCE_METRIC: &str = "vigil_probe_sequence";
/// The host panel the live socket pushes for the probe host (`cpu`:
/// `max(system_cpu_usage_ratio{host=...})`); the probe sends the sequence
/// number / [`LIVE_SCALE`] in it, so it stays a plausible ratio.
pub const LIVE_METRIC: &str = "system_cpu_usage_ratio";
pub const LIVE_PANEL: &str = "cpu";
pub const LIVE_SCALE: f64 = 1e6;
/// The threshold series, one per lane (`lane="0"`...): 1 while a crossing
/// is waiting for its webhook, else 0.
pub const LEVEL_METRIC: &str = "vigil_probe_level";
/// The alerting rule over [`LEVEL_METRIC`].
pub const ALERT_NAME: &str = "VigilProbeCrossing";
/// File names `write` uses.
pub const RULES_FILE: &str = "probe.rules.yml";
pub const NOTIFY_FILE: &str = "probe.notify.yml";
/// The receiver's path.
pub const WEBHOOK_PATH: &str = "/probe-hook";

/// A Prometheus duration for a rule or route (`250ms`, `1s`).
fn prom_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// The rule file: one group evaluated every `interval` with a `for: 0s`
/// rule that fires while a lane's level is 1.
pub fn rules_yaml(interval: Duration) -> String {
    format!(
        "# Written by vigil-probe: the alert-latency probe's rule (docs/loadgen.md).\n\
         groups:\n  - name: vigil-probe\n    interval: {interval}\n    rules:\n      \
         - alert: {ALERT_NAME}\n        expr: {LEVEL_METRIC} > 0.5\n        for: 0s\n        \
         labels: {{severity: info}}\n        \
         annotations: {{summary: \"probe crossing on lane {{{{ $labels.lane }}}}\"}}\n",
        interval = prom_duration(interval),
    )
}

/// The notification config: the probe's alert goes to `webhook_url` at
/// once (`group_wait: 0s`), one group per lane, resolved alerts included
/// (the probe starts a lane's next crossing after its resolution, when
/// the group is gone); everything else to a receiver without
/// integrations.
pub fn notify_yaml(webhook_url: &str) -> String {
    format!(
        "# Written by vigil-probe: routes the probe's alert to its webhook receiver.\n\
         route:\n  receiver: discard\n  group_by: [alertname, host]\n  group_wait: 30s\n  \
         group_interval: 5m\n  repeat_interval: 4h\n  routes:\n    \
         - receiver: probe\n      matchers: ['alertname=\"{ALERT_NAME}\"']\n      \
         group_by: [alertname, host, lane]\n      group_wait: 0s\n      group_interval: 1s\n      \
         repeat_interval: 1h\n\
         receivers:\n  - name: discard\n  - name: probe\n    webhook_configs:\n      \
         - url: {webhook_url:?}\n        send_resolved: true\n"
    )
}

/// Writes [`RULES_FILE`] and [`NOTIFY_FILE`] into `dir`.
pub fn write(dir: &Path, webhook_url: &str, rule_interval: Duration) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(RULES_FILE), rules_yaml(rule_interval))?;
    std::fs::write(dir.join(NOTIFY_FILE), notify_yaml(webhook_url))
}

/// The webhook URL of a receiver listening on `addr`.
pub fn webhook_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}{WEBHOOK_PATH}")
}
