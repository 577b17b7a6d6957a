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

/// Every problem found in a set of rule files (all of them, not the first).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct RuleErrors {
    /// One line per problem, each starting `FILE: ` (and the group and rule
    /// where known).
    pub errors: Vec<String>,
}

/// Loads and validates rule files. A broken file rejects the whole set: the
/// caller keeps running the rules it had.
///
/// (Minimal first version: parses the shape; the complete validation is
/// being written.)
pub fn load_files(paths: &[PathBuf]) -> Result<RuleSet, RuleErrors> {
    let mut errors = Vec::new();
    let mut set = RuleSet::default();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => match parse(path, &text) {
                Ok(groups) => set.groups.extend(groups),
                Err(mut e) => errors.append(&mut e),
            },
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(RuleErrors { errors })
    }
}

/// Parses one rule file's text (`path` is used in messages and `RuleGroup::file`).
pub fn parse(path: &std::path::Path, text: &str) -> Result<Vec<RuleGroup>, Vec<String>> {
    let file: raw::File =
        serde_norway::from_str(text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    for g in file.groups {
        let mut rules = Vec::new();
        for r in g.rules {
            match (r.alert, r.record) {
                (Some(name), None) => rules.push(Rule::Alerting(AlertingRule {
                    name,
                    expr: r.expr,
                    for_: r.r#for.map(|d| d.0).unwrap_or_default(),
                    keep_firing_for: r.keep_firing_for.map(|d| d.0).unwrap_or_default(),
                    labels: r.labels,
                    annotations: r.annotations,
                    vigil: r.vigil.map(raw::Vigil::into_ext).unwrap_or_default(),
                })),
                (None, Some(record)) => rules.push(Rule::Recording(RecordingRule {
                    record,
                    expr: r.expr,
                    labels: r.labels,
                })),
                _ => errors.push(format!(
                    "{}: group {:?}: a rule needs exactly one of `alert` and `record`",
                    path.display(),
                    g.name
                )),
            }
        }
        groups.push(RuleGroup {
            name: g.name,
            file: path.to_path_buf(),
            interval: g.interval.map(|d| d.0),
            rules,
        });
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// The file's shape as serde reads it.
mod raw {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub groups: Vec<Group>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Group {
        pub name: String,
        pub interval: Option<PromDuration>,
        #[serde(default)]
        pub rules: Vec<Rule>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rule {
        pub alert: Option<String>,
        pub record: Option<String>,
        pub expr: String,
        pub r#for: Option<PromDuration>,
        pub keep_firing_for: Option<PromDuration>,
        #[serde(default)]
        pub labels: BTreeMap<String, String>,
        #[serde(default)]
        pub annotations: BTreeMap<String, String>,
        pub vigil: Option<Vigil>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Vigil {
        pub recover: Option<String>,
        pub flap: Option<Flap>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Flap {
        pub window: usize,
        pub high: f64,
        pub low: f64,
    }

    impl Vigil {
        pub fn into_ext(self) -> super::VigilExtensions {
            super::VigilExtensions {
                recover: self.recover,
                flap: self.flap.map(|f| super::FlapDetection {
                    window: f.window,
                    high: f.high,
                    low: f.low,
                }),
            }
        }
    }

    /// A Prometheus duration (`30s`, `5m`, `1h30m`).
    pub struct PromDuration(pub Duration);

    impl<'de> Deserialize<'de> for PromDuration {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            crate::http::prometheus::params::parse_duration(&text)
                .map(PromDuration)
                .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rule_pack_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/rules/vigil-default.rules.yml");
        let set = load_files(&[path]).expect("default rules load");
        assert!(set.groups.iter().map(|g| g.rules.len()).sum::<usize>() >= 15);
    }

    #[test]
    fn a_rule_with_both_alert_and_record_is_rejected() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    record: b\n    expr: up\n";
        let errors = parse(std::path::Path::new("x.yml"), text).unwrap_err();
        assert!(errors[0].contains("exactly one"), "{errors:?}");
    }
}
