//! Relabelling of scraped series, with Prometheus' `metric_relabel_configs`
//! semantics: rules run in order over the label set (the metric name being
//! the `__name__` label), each may rewrite it or drop the series.
//!
//! Regexes are fully anchored, as in Prometheus: `regex = "http_.*"` matches
//! the whole value, not a substring. `$1`, `${1}` and `$name` in
//! `replacement` (and in a `replace` rule's `target_label`) expand to capture
//! groups; a `replace` whose result is empty removes the target label.
//! `hashmod` is not supported (it needs MD5, which Vigil does not ship).

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use vigil_common::model::is_valid_label_name;

/// A series' labels during relabelling, the metric name as `__name__`.
pub type Labels = BTreeMap<String, String>;

/// The label holding the metric name while relabelling.
pub const NAME: &str = "__name__";

/// One `[[collect.scrape.relabel]]` rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RelabelConfig {
    /// What the rule does; `replace` when not given.
    #[serde(default)]
    pub action: Action,
    /// Labels whose values, joined by `separator`, the regex is matched against.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins the `source_labels` values. Default `;`.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// A regular expression (RE2 syntax, fully anchored). Default `(.*)`.
    #[serde(default = "default_regex")]
    pub regex: String,
    /// The label a `replace`, `lowercase`, `uppercase`, `keepequal` or
    /// `dropequal` rule writes or compares.
    #[serde(default)]
    pub target_label: String,
    /// The value written by `replace` and the name written by `labelmap`,
    /// with `$1`-style references to capture groups. Default `$1`.
    #[serde(default = "default_replacement")]
    pub replacement: String,
}

/// Relabelling actions (Prometheus' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Sets `target_label` to the expanded `replacement` when the regex matches.
    #[default]
    Replace,
    /// Drops the series unless the regex matches.
    Keep,
    /// Drops the series if the regex matches.
    Drop,
    /// Removes every label whose name matches the regex.
    LabelDrop,
    /// Removes every label whose name does not match the regex.
    LabelKeep,
    /// Copies every label whose name matches to the name `replacement` expands to.
    LabelMap,
    /// Sets `target_label` to the lowercased source value.
    Lowercase,
    /// Sets `target_label` to the uppercased source value.
    Uppercase,
    /// Drops the series unless the source value equals `target_label`'s value.
    KeepEqual,
    /// Drops the series if the source value equals `target_label`'s value.
    DropEqual,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

/// Labels the agent sets itself; a rule may not write them.
const RESERVED: [&str; 2] = ["host", "role"];

/// A checked rule, its regex compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    config: RelabelConfig,
    regex: Regex,
}

impl RelabelConfig {
    /// A `replace` rule with every other setting at its default.
    pub fn new(action: Action) -> Self {
        RelabelConfig {
            action,
            source_labels: Vec::new(),
            separator: default_separator(),
            regex: default_regex(),
            target_label: String::new(),
            replacement: default_replacement(),
        }
    }

    /// Compiles the rule, or lists every problem with it (`key: ...`).
    pub fn compile(&self, key: &str) -> Result<Rule, Vec<String>> {
        let mut problems = Vec::new();
        let mut bad = |what: String| problems.push(format!("{key}: {what}"));
        let regex = Regex::new(&format!("^(?:{})$", self.regex))
            .map_err(|e| {
                bad(format!(
                    "invalid regex {:?}: {}",
                    self.regex,
                    regex_error(&e)
                ))
            })
            .ok();
        for l in &self.source_labels {
            if !is_valid_label_name(l) {
                bad(format!("source_labels: {l:?} is not a valid label name"));
            }
        }
        use Action::*;
        let target = self.target_label.as_str();
        match self.action {
            Replace | Lowercase | Uppercase | KeepEqual | DropEqual if target.is_empty() => {
                bad(format!("{:?} needs a target_label", self.action));
            }
            // A replace target may use $1; it is checked once expanded.
            Replace if target.contains('$') => {}
            Replace | Lowercase | Uppercase | KeepEqual | DropEqual
                if !is_valid_label_name(target) =>
            {
                bad(format!("target_label {target:?} is not a valid label name"));
            }
            LabelDrop | LabelKeep | LabelMap if !target.is_empty() => {
                bad(format!("{:?} takes no target_label", self.action));
            }
            _ => {}
        }
        if RESERVED.contains(&target) {
            bad(format!(
                "target_label {target:?} is set by the agent itself"
            ));
        }
        let needs_sources = matches!(self.action, Keep | Drop | KeepEqual | DropEqual);
        if needs_sources && self.source_labels.is_empty() {
            bad(format!("{:?} needs source_labels", self.action));
        }
        if matches!(self.action, LabelDrop | LabelKeep) && !self.source_labels.is_empty() {
            bad(format!(
                "{:?} matches label names and takes no source_labels",
                self.action
            ));
        }
        match regex {
            Some(regex) if problems.is_empty() => Ok(Rule {
                config: self.clone(),
                regex,
            }),
            _ => Err(problems),
        }
    }
}

/// The gist of a regex error on one line (its Display draws a caret under
/// the anchored pattern, which is not what the user wrote).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.trim_start_matches("error: ").to_string()
}

/// Applies `rules` in order; `false` means the series is dropped.
pub fn apply(rules: &[Rule], labels: &mut Labels) -> bool {
    rules.iter().all(|rule| rule.apply(labels))
}

impl Rule {
    fn source(&self, labels: &Labels) -> String {
        let values: Vec<&str> = (self.config.source_labels.iter())
            .map(|l| labels.get(l).map_or("", String::as_str))
            .collect();
        values.join(&self.config.separator)
    }

    fn apply(&self, labels: &mut Labels) -> bool {
        let c = &self.config;
        match c.action {
            Action::Keep => self.regex.is_match(&self.source(labels)),
            Action::Drop => !self.regex.is_match(&self.source(labels)),
            Action::KeepEqual => {
                labels.get(&c.target_label).map_or("", |v| v) == self.source(labels)
            }
            Action::DropEqual => {
                labels.get(&c.target_label).map_or("", |v| v) != self.source(labels)
            }
            Action::Replace => {
                let source = self.source(labels);
                if let Some(caps) = self.regex.captures(&source) {
                    let mut target = String::new();
                    caps.expand(&c.target_label, &mut target);
                    let mut value = String::new();
                    caps.expand(&c.replacement, &mut value);
                    if is_valid_label_name(&target) && !RESERVED.contains(&target.as_str()) {
                        set(labels, target, value);
                    }
                }
                true
            }
            Action::Lowercase | Action::Uppercase => {
                let source = self.source(labels);
                let value = match c.action {
                    Action::Lowercase => source.to_lowercase(),
                    _ => source.to_uppercase(),
                };
                set(labels, c.target_label.clone(), value);
                true
            }
            Action::LabelDrop => {
                labels.retain(|name, _| !self.regex.is_match(name));
                true
            }
            Action::LabelKeep => {
                labels.retain(|name, _| self.regex.is_match(name));
                true
            }
            Action::LabelMap => {
                let mut mapped = Vec::new();
                for (name, value) in labels.iter() {
                    if let Some(caps) = self.regex.captures(name) {
                        let mut new = String::new();
                        caps.expand(&c.replacement, &mut new);
                        if is_valid_label_name(&new) && !RESERVED.contains(&new.as_str()) {
                            mapped.push((new, value.clone()));
                        }
                    }
                }
                labels.extend(mapped);
                true
            }
        }
    }
}

/// Sets a label; an empty value removes it (Prometheus treats them alike).
fn set(labels: &mut Labels, name: String, value: String) {
    if value.is_empty() {
        labels.remove(&name);
    } else {
        labels.insert(name, value);
    }
}

#[cfg(test)]
mod tests;
