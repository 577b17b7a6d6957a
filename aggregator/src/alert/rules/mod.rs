//! Rule files: Prometheus' format (groups with `interval`, alerting rules with
//! `alert`, `expr`, `for`, `keep_firing_for`, `labels`, `annotations`;
//! recording rules with `record`), plus Vigil's extensions under a separate
//! `vigil:` key per rule so the file stays Prometheus-shaped.
//!
//! [`load_files`] is strict: unknown keys, bad durations, expressions
//! promql-parser rejects, invalid metric or label names, templates that do
//! not parse and bad `vigil:` values are all reported, with file, line,
//! group and rule ([`validate`]). [`export`] turns a file back into plain
//! Prometheus (the `vigil:` keys stripped).
//!
//! ```yaml
//! groups:
//!   - name: host
//!     interval: 30s
//!     rules:
//!       - alert: HostCpuHigh
//!         expr: avg_over_time(system_cpu_usage_ratio[5m]) > 0.9
//!         for: 10m
//!         labels: {severity: warning, team: platform}
//!         annotations: {summary: "CPU on {{ $labels.host }} is {{ $value | humanizePercentage }}"}
//!         vigil:
//!           recover: avg_over_time(system_cpu_usage_ratio[5m]) < 0.8
//!           flap: {window: 20, high: 0.5, low: 0.25}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod export;
mod rule;
pub(crate) mod syntax;
mod validate;

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

/// Every problem found in a set of rule files (all of them, not the first).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct RuleErrors {
    /// One line per problem, each starting `FILE: ` (and the group and rule
    /// where known).
    pub errors: Vec<String>,
}

/// Loads and validates rule files. A broken file rejects the whole set: the
/// caller keeps running the rules it had. Every problem of every file is
/// reported, not the first.
pub fn load_files(paths: &[PathBuf]) -> Result<RuleSet, RuleErrors> {
    let mut errors = Vec::new();
    let mut set = RuleSet::default();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => match parse(path, &text) {
                Ok(groups) => set.groups.extend(groups),
                Err(mut e) => errors.append(&mut e),
            },
            Err(e) => errors.push(format!("{}: cannot read: {e}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(RuleErrors { errors })
    }
}

/// Parses one rule file's text (`path` is used in messages and
/// `RuleGroup::file`); every problem comes back, each as one line.
pub fn parse(path: &Path, text: &str) -> Result<Vec<RuleGroup>, Vec<String>> {
    validate::file(path, text)
}

#[cfg(test)]
mod tests;
