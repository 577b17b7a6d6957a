//! `[alerting]` in the aggregator's configuration: which rule files to load,
//! how often to evaluate them, the built-in dead-man alert and escalation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vigil_common::model::is_valid_label_name;

/// `[alerting]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Rule files (Prometheus format), relative to the config file's folder;
    /// a `*`/`?`/`[...]` glob matches several (`rules/*.yml`).
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// How often a group without its own `interval` is evaluated, and how
    /// often the dead-man check runs (default 15s).
    #[serde(default = "default_evaluation_interval", with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// This aggregator's address as users reach it: alerts link back to
    /// their expression under it (`generatorURL`), templates see it as
    /// `$externalURL`.
    #[serde(default)]
    pub external_url: String,
    /// Labels added to every alert sent to the notifier (an alert's own
    /// label of the same name wins), `$externalLabels` in templates.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// `VigilAgentDown` fires for a host silent for longer than this many of
    /// its agent's collection intervals.
    #[serde(default = "default_agent_down_after")]
    pub agent_down_after: u32,
    /// ... but never for a silence shorter than this.
    #[serde(default = "default_agent_down_min", with = "humantime_serde")]
    pub agent_down_min: Duration,
    /// The collection interval assumed for an agent that does not report
    /// `vigil_agent_interval_seconds`.
    #[serde(default = "default_agent_interval", with = "humantime_serde")]
    pub default_agent_interval: Duration,
    /// How often a firing alert is sent to the notifier again (Prometheus'
    /// `--rules.alert.resend-delay`, default 1m); a resolved one is sent for
    /// 15 minutes after it resolved.
    #[serde(default = "default_resend_delay", with = "humantime_serde")]
    pub resend_delay: Duration,
    /// Alert history (transitions, acks, escalations) older than this is
    /// deleted, checked hourly (default 90d).
    #[serde(default = "default_history_retention", with = "humantime_serde")]
    pub history_retention: Duration,
    /// Re-route unacknowledged firing alerts (off when absent).
    #[serde(default)]
    pub escalation: Option<EscalationConfig>,
}

/// `[alerting.escalation]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// A firing alert not acknowledged this long after it fired is escalated (once).
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// The receiver (from `[notify]`) that gets escalated alerts.
    pub receiver: String,
    /// Only alerts with one of these `severity` labels are escalated.
    #[serde(default = "default_severities")]
    pub severities: Vec<String>,
}

fn default_evaluation_interval() -> Duration {
    Duration::from_secs(15)
}
fn default_agent_down_after() -> u32 {
    3
}
fn default_agent_down_min() -> Duration {
    Duration::from_secs(30)
}
fn default_agent_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_resend_delay() -> Duration {
    Duration::from_secs(60)
}
fn default_history_retention() -> Duration {
    Duration::from_secs(90 * 86_400)
}
fn default_severities() -> Vec<String> {
    vec!["critical".into()]
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            rule_files: Vec::new(),
            evaluation_interval: default_evaluation_interval(),
            external_url: String::new(),
            external_labels: BTreeMap::new(),
            agent_down_after: default_agent_down_after(),
            agent_down_min: default_agent_down_min(),
            default_agent_interval: default_agent_interval(),
            resend_delay: default_resend_delay(),
            history_retention: default_history_retention(),
            escalation: None,
        }
    }
}

impl AlertingConfig {
    /// Adds every problem to `problems`; `base_dir` is the config file's
    /// folder (rule files are loaded and checked from there).
    pub fn validate(&self, base_dir: &Path, problems: &mut Vec<String>) {
        if self.evaluation_interval < Duration::from_secs(1) {
            problems.push("alerting.evaluation_interval must be at least 1s".into());
        }
        if self.agent_down_after == 0 {
            problems.push("alerting.agent_down_after must be at least 1".into());
        }
        if self.default_agent_interval < Duration::from_secs(1) {
            problems.push("alerting.default_agent_interval must be at least 1s".into());
        }
        if self.resend_delay < Duration::from_secs(1) {
            problems.push("alerting.resend_delay must be at least 1s".into());
        }
        if self.history_retention < Duration::from_secs(3600) {
            problems.push("alerting.history_retention must be at least 1h".into());
        }
        let url = &self.external_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            problems.push(format!(
                "alerting.external_url: {url:?} must start with http:// or https://"
            ));
        }
        for name in self.external_labels.keys() {
            if !is_valid_label_name(name) {
                problems.push(format!(
                    "alerting.external_labels: {name:?} is not a valid label name"
                ));
            }
        }
        if let Some(e) = &self.escalation {
            if e.after < Duration::from_secs(1) {
                problems.push("alerting.escalation.after must be at least 1s".into());
            }
            if e.receiver.trim().is_empty() {
                problems.push("alerting.escalation.receiver must name a receiver".into());
            }
            if e.severities.is_empty() {
                problems.push("alerting.escalation.severities must not be empty".into());
            }
        }
        match self.rule_paths(base_dir) {
            Ok(paths) => {
                if let Err(e) = crate::alert::rules::load_files(&paths) {
                    problems.extend(e.errors.into_iter().map(|e| format!("alerting: {e}")));
                }
            }
            Err(errors) => problems.extend(errors),
        }
    }

    /// The rule files `rule_files` names, globs expanded (sorted within
    /// each pattern, patterns in order, each file once). A pattern that is
    /// not a glob must name an existing file; a glob may match nothing.
    pub fn rule_paths(&self, base_dir: &Path) -> Result<Vec<PathBuf>, Vec<String>> {
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        for pattern in &self.rule_files {
            let full = base_dir.join(pattern);
            let text = full.to_string_lossy();
            if !pattern.contains(['*', '?', '[']) {
                if full.is_file() {
                    paths.push(full);
                } else {
                    errors.push(format!("alerting.rule_files: {text}: no such file"));
                }
                continue;
            }
            match glob::glob(&text) {
                Ok(found) => {
                    let mut found: Vec<PathBuf> = found.filter_map(Result::ok).collect();
                    found.sort();
                    paths.extend(found);
                }
                Err(e) => errors.push(format!("alerting.rule_files: {pattern:?}: {e}")),
            }
        }
        let mut seen = std::collections::HashSet::new();
        paths.retain(|p| seen.insert(p.clone()));
        if errors.is_empty() {
            Ok(paths)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_prometheus() {
        let c: AlertingConfig = toml::from_str("").expect("parse");
        assert_eq!(c.evaluation_interval, Duration::from_secs(15));
        assert_eq!(c.resend_delay, Duration::from_secs(60));
        assert_eq!(c.agent_down_after, 3);
        assert!(c.escalation.is_none());
        let e: AlertingConfig =
            toml::from_str("[escalation]\nafter = \"30m\"\nreceiver = \"oncall\"").expect("parse");
        let esc = e.escalation.expect("escalation");
        assert_eq!(esc.severities, vec!["critical".to_string()]);
        assert!(toml::from_str::<AlertingConfig>("nope = 1").is_err());
        assert!(
            toml::from_str::<AlertingConfig>("[escalation]\nafter=\"1m\"\nreceiver=\"x\"\nextra=1")
                .is_err()
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c: AlertingConfig = toml::from_str(
            "evaluation_interval = \"10ms\"\nagent_down_after = 0\nexternal_url = \"ftp://x\"\n\
             history_retention = \"5m\"\n\
             rule_files = [\"missing.yml\", \"bad.yml\"]\nexternal_labels = {\"0bad\" = \"x\"}\n\
             [escalation]\nafter = \"0s\"\nreceiver = \"\"\nseverities = []",
        )
        .expect("parse");
        std::fs::write(
            dir.path().join("bad.yml"),
            "groups: [{name: g, rules: [{expr: up}]}]",
        )
        .expect("write");
        let mut problems = Vec::new();
        c.validate(dir.path(), &mut problems);
        let text = problems.join("\n");
        for needle in [
            "evaluation_interval",
            "agent_down_after",
            "external_url",
            "0bad",
            "escalation.after",
            "escalation.receiver",
            "escalation.severities",
            "history_retention",
            "missing.yml: no such file",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn globs_expand_relative_to_the_config_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
        for f in ["b.yml", "a.yml", "c.txt"] {
            std::fs::write(dir.path().join("rules").join(f), "groups: []").expect("write");
        }
        let c = AlertingConfig {
            rule_files: vec!["rules/*.yml".into(), "rules/a.yml".into()],
            ..AlertingConfig::default()
        };
        let paths = c.rule_paths(dir.path()).expect("paths");
        let names: Vec<_> = paths
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        assert_eq!(names, ["a.yml", "b.yml"]);
        let mut problems = Vec::new();
        c.validate(dir.path(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
