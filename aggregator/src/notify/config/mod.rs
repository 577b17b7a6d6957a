//! `[notify]` in the aggregator's configuration, and the notification config
//! file it names: Alertmanager's YAML shape (`global`, `route`, `receivers`,
//! `inhibit_rules`, `time_intervals`), validated as a whole into a
//! [`NotifyPlan`]. Unknown keys anywhere in the file are collected (not
//! stopped at) so every problem is reported at once; for that reason the
//! YAML structs here are read through [`parse_file`] only and do not use
//! `deny_unknown_fields` (which would stop at the first).

pub mod matcher;
pub mod route;
pub mod time_interval;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::notify::receivers::{GlobalConfig, ReceiverConfig};
use matcher::{MatchOp, Matcher};
use route::{RawRoute, Route};
use time_interval::{RawNamedInterval, TimeInterval};

/// `[notify]`. Without this section nothing is notified (rules still
/// evaluate, silences and maintenance still show as muted).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The notification config (Alertmanager's YAML shape), relative to this
    /// file's folder. Required for notifications.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// Built-in inhibit rule: a firing `VigilAgentDown` mutes the other
    /// alerts of its `host`.
    #[serde(default = "default_true")]
    pub agent_down_inhibits: bool,
    /// A firing alert the evaluator stops resending (an update lost to a
    /// full queue, say) counts as resolved after this long (Alertmanager's
    /// `resolve_timeout`).
    #[serde(default = "default_resolve_timeout", with = "humantime_serde")]
    pub resolve_timeout: Duration,
    /// Evaluation rounds queued for the dispatcher; when full the oldest is
    /// dropped and counted (the next round carries every active alert again).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// `[notify.outbox]`: delivery retries, concurrency, retention.
    #[serde(default)]
    pub outbox: crate::notify::outbox::OutboxConfig,
    /// The loaded notification config (set by [`NotifyConfig::load`]).
    #[serde(skip)]
    pub plan: Option<Arc<NotifyPlan>>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            config_file: None,
            agent_down_inhibits: default_true(),
            resolve_timeout: default_resolve_timeout(),
            queue_capacity: default_queue_capacity(),
            outbox: Default::default(),
            plan: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_resolve_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_queue_capacity() -> usize {
    256
}

impl NotifyConfig {
    /// Resolves `config_file` against the TOML file's folder, reads and
    /// validates it; problems go to `problems`, prefixed `notify`.
    pub fn load(&mut self, toml_path: &Path, problems: &mut Vec<String>) {
        if self.queue_capacity == 0 || self.queue_capacity > 100_000 {
            problems.push("notify.queue_capacity must be between 1 and 100000".into());
        }
        if self.resolve_timeout < Duration::from_secs(1) {
            problems.push("notify.resolve_timeout must be at least 1s".into());
        }
        problems.extend(self.outbox.validate());
        let Some(file) = &self.config_file else {
            return;
        };
        let path = vigil_common::config::resolve(toml_path, file);
        self.config_file = Some(path.clone());
        match std::fs::read_to_string(&path) {
            Err(e) => problems.push(format!(
                "notify.config_file: cannot read {}: {e}",
                path.display()
            )),
            Ok(text) => match parse_file(&text, self.agent_down_inhibits) {
                Ok(plan) => self.plan = Some(Arc::new(plan)),
                Err(errors) => problems.extend(
                    errors
                        .into_iter()
                        .map(|e| format!("notify.config_file {}: {e}", path.display())),
                ),
            },
        }
    }
}

/// A validated notification config.
#[derive(Debug, Clone)]
pub struct NotifyPlan {
    pub global: GlobalConfig,
    pub route: Route,
    pub receivers: Vec<ReceiverConfig>,
    /// From the file, then the built-in agent-down rule when enabled.
    pub inhibit_rules: Vec<InhibitRule>,
    pub time_intervals: BTreeMap<String, Vec<TimeInterval>>,
}

impl NotifyPlan {
    /// Whether `name` is a defined receiver.
    pub fn has_receiver(&self, name: &str) -> bool {
        self.receivers.iter().any(|r| r.name == name)
    }

    /// Whether any of the named intervals contains `ms`.
    pub fn in_any_interval(&self, names: &[String], ms: i64) -> bool {
        names.iter().any(|n| {
            self.time_intervals
                .get(n)
                .is_some_and(|list| list.iter().any(|i| i.contains(ms)))
        })
    }
}

/// An inhibit rule: while an alert matching `source` fires, alerts matching
/// `target` whose `equal` labels have the same values are muted.
#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// The built-in rule `agent_down_inhibits` adds.
    pub fn agent_down() -> InhibitRule {
        let m = |op, v: &str| Matcher::new("alertname", op, v);
        InhibitRule {
            source: m(MatchOp::Equal, "VigilAgentDown").into_iter().collect(),
            target: m(MatchOp::NotEqual, "VigilAgentDown").into_iter().collect(),
            equal: vec!["host".into()],
        }
    }
}

/// The file as written. Public so that docs/configuration.md's test
/// (`tests/tests/docs/config.rs`) can read the keys it accepts.
#[derive(Debug, Deserialize)]
pub struct RawFile {
    #[serde(default)]
    global: Option<GlobalConfig>,
    route: Option<RawRoute>,
    #[serde(default)]
    receivers: Vec<ReceiverConfig>,
    #[serde(default)]
    inhibit_rules: Vec<RawInhibitRule>,
    #[serde(default)]
    time_intervals: Vec<RawNamedInterval>,
    /// Older name of `time_intervals`, still accepted by Alertmanager.
    #[serde(default)]
    mute_time_intervals: Vec<RawNamedInterval>,
}

#[derive(Debug, Default, Deserialize)]
struct RawInhibitRule {
    #[serde(default)]
    source_matchers: Vec<String>,
    #[serde(default)]
    target_matchers: Vec<String>,
    #[serde(default)]
    source_match: BTreeMap<String, String>,
    #[serde(default)]
    source_match_re: BTreeMap<String, String>,
    #[serde(default)]
    target_match: BTreeMap<String, String>,
    #[serde(default)]
    target_match_re: BTreeMap<String, String>,
    #[serde(default)]
    equal: Vec<String>,
}

/// Parses and validates a notification config's text.
pub fn parse_file(text: &str, agent_down_inhibits: bool) -> Result<NotifyPlan, Vec<String>> {
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    let de = serde_norway::Deserializer::from_str(text);
    let parsed: Result<RawFile, _> = serde_ignored::deserialize(de, |path| {
        unknown.push(format!("unknown key `{}`", key_path(&path)));
    });
    let raw = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            problems.extend(unknown);
            problems.push(e.to_string());
            return Err(problems);
        }
    };
    problems.extend(unknown);

    let mut receivers = BTreeSet::new();
    for (i, r) in raw.receivers.iter().enumerate() {
        if r.name.is_empty() {
            problems.push(format!("receivers[{i}]: name is empty"));
        } else {
            receivers.insert(r.name.clone());
        }
    }
    // Each receiver's settings, those that depend on `global:`, duplicates.
    problems.extend(crate::notify::receivers::validate_receivers(
        &raw.receivers,
        raw.global.as_ref().unwrap_or(&GlobalConfig::default()),
    ));

    let mut time_intervals = BTreeMap::new();
    for (field, list) in [
        ("time_intervals", &raw.time_intervals),
        ("mute_time_intervals", &raw.mute_time_intervals),
    ] {
        for (i, named) in list.iter().enumerate() {
            let at = format!("{field}[{i}] ({})", named.name);
            if named.name.is_empty() {
                problems.push(format!("{field}[{i}]: name is empty"));
            }
            let compiled: Vec<TimeInterval> = named
                .time_intervals
                .iter()
                .enumerate()
                .filter_map(|(j, t)| t.compile(&format!("{at}.time_intervals[{j}]"), &mut problems))
                .collect();
            if time_intervals
                .insert(named.name.clone(), compiled)
                .is_some()
            {
                problems.push(format!("{at}: duplicate time interval name"));
            }
        }
    }
    let interval_names: BTreeSet<String> = time_intervals.keys().cloned().collect();

    let route = match &raw.route {
        None => {
            problems.push("route: missing (a root route with a receiver is required)".into());
            None
        }
        Some(r) => route::compile_root(r, &receivers, &interval_names, &mut problems),
    };

    let mut inhibit_rules = Vec::new();
    for (i, r) in raw.inhibit_rules.iter().enumerate() {
        let at = format!("inhibit_rules[{i}]");
        let source = side(
            &at,
            "source",
            &r.source_matchers,
            &r.source_match,
            &r.source_match_re,
            &mut problems,
        );
        let target = side(
            &at,
            "target",
            &r.target_matchers,
            &r.target_match,
            &r.target_match_re,
            &mut problems,
        );
        for l in &r.equal {
            if !matcher::valid_label_name(l) {
                problems.push(format!("{at}.equal: invalid label name {l:?}"));
            }
        }
        inhibit_rules.push(InhibitRule {
            source,
            target,
            equal: r.equal.clone(),
        });
    }
    if agent_down_inhibits {
        inhibit_rules.push(InhibitRule::agent_down());
    }
    match route {
        Some(route) if problems.is_empty() => Ok(NotifyPlan {
            global: raw.global.unwrap_or_default(),
            route,
            receivers: raw.receivers,
            inhibit_rules,
            time_intervals,
        }),
        _ => Err(problems),
    }
}

/// `route.routes[0].x` for a serde_ignored path.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// One side of an inhibit rule: new-style matchers plus legacy maps.
fn side(
    at: &str,
    which: &str,
    matchers: &[String],
    eq: &BTreeMap<String, String>,
    re: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> Vec<Matcher> {
    let mut out = Vec::new();
    for text in matchers {
        match matcher::parse_list(text) {
            Ok(m) => out.extend(m),
            Err(e) => problems.push(format!("{at}.{which}_matchers: {e}")),
        }
    }
    for (op, map, field) in [
        (MatchOp::Equal, eq, "match"),
        (MatchOp::Regex, re, "match_re"),
    ] {
        for (name, value) in map {
            match Matcher::new(name, op, value) {
                Ok(m) => out.push(m),
                Err(e) => problems.push(format!("{at}.{which}_{field}: {e}")),
            }
        }
    }
    if out.is_empty() {
        problems.push(format!(
            "{at}: {which} matchers are empty (the rule would match every alert)"
        ));
    }
    out
}

#[cfg(test)]
mod tests;
