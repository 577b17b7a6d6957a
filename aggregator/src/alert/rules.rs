//! Rule files: Prometheus' format (groups with `interval`, alerting rules with
//! `alert`, `expr`, `for`, `keep_firing_for`, `labels`, `annotations`;
//! recording rules with `record`), plus Vigil's extensions under a separate
//! `vigil:` key per rule so the file stays Prometheus-shaped.
//!
//! (Types fixed here so the evaluator and the loader can be written apart;
//! parsing and validation: see [`load_files`].)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Every rule group from every loaded file, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// `interval:`; `None` means the global evaluation interval.
    pub interval: Option<Duration>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Alerting(AlertingRule),
    Recording(RecordingRule),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertingRule {
    /// `alert:` (becomes the `alertname` label).
    pub name: String,
    /// The PromQL expression, as written (validated by the loader).
    pub expr: String,
    /// `for:` (zero: fire on the first evaluation that returns the series).
    pub for_: Duration,
    /// `keep_firing_for:`
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    /// Templates, expanded per alert by [`super::template`].
    pub annotations: BTreeMap<String, String>,
    pub vigil: VigilExtensions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRule {
    /// `record:` (the new metric name).
    pub record: String,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
}

/// The `vigil:` key of an alerting rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VigilExtensions {
    /// `recover:` hysteresis: once firing, an alert resolves only when this
    /// expression returns a sample with the alert's labels (for example fire
    /// at `x > 90`, `recover: x < 80`).
    pub recover: Option<String>,
    /// `flap:` Nagios-style flap detection.
    pub flap: Option<FlapDetection>,
}

/// Nagios-style flap detection: the weighted share of state changes among the
/// last `window` evaluations; above `high` the alert is flapping, and it
/// stops flapping once the share falls below `low`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlapDetection {
    pub window: usize,
    pub high: f64,
    pub low: f64,
}
