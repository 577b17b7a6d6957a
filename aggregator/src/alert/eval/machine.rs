//! The alert state machine of one alerting rule (Prometheus' semantics for
//! `for` and `keep_firing_for`), with Vigil's hysteresis (`vigil.recover`)
//! and Nagios-style flap detection (`vigil.flap`).
//!
//! Pure: [`RuleAlerts::apply`] takes the expression's result at one
//! evaluation time and returns the transitions; nothing here does I/O, so
//! the timing rules are unit-tested with plain numbers.

use std::collections::{HashMap, HashSet, VecDeque};

use vigil_common::Label;

use crate::alert::rules::AlertingRule;
use crate::alert::template::{TemplateData, expand_or_error};
use crate::alert::{Alert, LabelSet, fingerprint};
use crate::query::Sample;
use crate::query::source::METRIC_NAME;

/// How long a resolved alert is still sent to the notifier (Prometheus'
/// `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Firing,
    /// Resolved (or, for a flap-detected rule, not active but remembered
    /// for its flap history).
    Inactive,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Inactive => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "pending" => Some(Phase::Pending),
            "firing" => Some(Phase::Firing),
            "resolved" => Some(Phase::Inactive),
            _ => None,
        }
    }
}

/// Who acknowledged a firing alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ack {
    pub by: String,
    pub at_ms: i64,
    pub comment: String,
}

/// Flap detection state of one alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flap {
    /// Whether the alert was firing after each of the last `window`
    /// evaluations, oldest first.
    pub history: VecDeque<bool>,
    pub flapping: bool,
    /// `starts_at` the notifier saw when flapping began.
    pub starts_at_ms: Option<i64>,
}

/// One alert of a rule (its identity: the rule's name and the label set).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub rule: String,
    pub group: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub phase: Phase,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub keep_firing_since_ms: Option<i64>,
    pub value: f64,
    /// Fingerprint of the expression's output labels (without `__name__`),
    /// to find the alert in the `recover` expression's result.
    pub series_fp: u64,
    pub flap: Flap,
    pub ack: Option<Ack>,
    pub escalated_at_ms: Option<i64>,
    /// Not persisted: after a restart everything active is sent again, with
    /// the same `starts_at`, as Prometheus does.
    pub last_sent_ms: Option<i64>,
    /// Whether the notifier last saw this alert as flapping.
    pub sent_flapping: bool,
    /// Changed since last persisted.
    pub dirty: bool,
}

impl Entry {
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// The alert as the notifier sees it.
    pub fn to_alert(
        &self,
        generator_url: &str,
        external: &LabelSet,
        ends_at: Option<i64>,
    ) -> Alert {
        let mut labels = self.labels.clone();
        for (k, v) in external {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Alert {
            labels,
            annotations: self.annotations.clone(),
            starts_at_ms: self
                .flap
                .starts_at_ms
                .filter(|_| self.flap.flapping || self.sent_flapping)
                .or(self.fired_at_ms)
                .unwrap_or(self.active_at_ms),
            ends_at_ms: ends_at,
            generator_url: generator_url.to_string(),
            flapping: self.flap.flapping,
        }
    }
}

/// A state change worth a history row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// inactive -> pending
    Pending,
    /// pending -> firing
    Firing,
    /// firing -> resolved
    Resolved,
    /// pending -> inactive
    Inactive,
    Acknowledged,
    Escalated,
    FlappingStart,
    FlappingStop,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Pending => "pending",
            Event::Firing => "firing",
            Event::Resolved => "resolved",
            Event::Inactive => "inactive",
            Event::Acknowledged => "acknowledged",
            Event::Escalated => "escalated",
            Event::FlappingStart => "flapping_start",
            Event::FlappingStop => "flapping_stop",
        }
    }
}

/// A transition, with the alert as it was right after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub event: Event,
    pub at_ms: i64,
    pub rule: String,
    pub labels: LabelSet,
    pub value: f64,
    /// JSON with the event's details (ack author and comment, receiver).
    pub detail: String,
}

impl Transition {
    pub fn of(entry: &Entry, event: Event, at_ms: i64) -> Transition {
        Transition {
            event,
            at_ms,
            rule: entry.rule.clone(),
            labels: entry.labels.clone(),
            value: entry.value,
            detail: String::new(),
        }
    }
}

/// What one evaluation of an alerting rule saw.
pub struct Observation<'a> {
    pub at_ms: i64,
    /// The expression's result.
    pub samples: &'a [Sample],
    /// Output-label fingerprints returned by `vigil.recover`.
    pub recovered: &'a HashSet<u64>,
    /// Output-label fingerprints whose underlying series still exists (the
    /// vector operand of the expression's top comparison), for hysteresis.
    pub present: &'a HashSet<u64>,
    pub external_labels: &'a LabelSet,
    pub external_url: &'a str,
}

/// The alerts of one rule, by fingerprint.
#[derive(Debug, Clone, Default)]
pub struct RuleAlerts {
    pub alerts: HashMap<u64, Entry>,
}

/// Output labels without `__name__`.
pub fn output_labels(labels: &[Label]) -> LabelSet {
    labels
        .iter()
        .filter(|l| l.name != METRIC_NAME)
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// The (label set, annotations) of the alert a sample raises: templates
/// see the sample's labels and value; rule labels override output labels.
pub fn build_labels(
    rule: &AlertingRule,
    sample_labels: &LabelSet,
    value: f64,
    external_labels: &LabelSet,
    external_url: &str,
) -> (LabelSet, LabelSet) {
    let data = TemplateData {
        labels: sample_labels,
        value,
        external_labels,
        external_url,
    };
    let mut labels = sample_labels.clone();
    for (k, v) in &rule.labels {
        labels.insert(k.clone(), expand_or_error(k, v, &data));
    }
    labels.insert("alertname".into(), rule.name.clone());
    let annotations = rule
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), expand_or_error(k, v, &data)))
        .collect();
    (labels, annotations)
}

impl RuleAlerts {
    /// Applies one evaluation; returns the transitions, in order.
    /// `Err` when two samples give the same label set (Prometheus' "vector
    /// contains metrics with the same labelset after applying alert labels").
    pub fn apply(
        &mut self,
        rule: &AlertingRule,
        group: &str,
        obs: &Observation<'_>,
    ) -> Result<Vec<Transition>, String> {
        let now = obs.at_ms;
        let mut out = Vec::new();
        let mut seen = HashSet::with_capacity(obs.samples.len());
        let mut built = Vec::with_capacity(obs.samples.len());
        for s in obs.samples {
            let out_labels = output_labels(&s.labels);
            let series_fp = fingerprint(&out_labels);
            let (labels, annotations) = build_labels(
                rule,
                &out_labels,
                s.value,
                obs.external_labels,
                obs.external_url,
            );
            let fp = fingerprint(&labels);
            if !seen.insert(fp) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            built.push((fp, labels, annotations, s.value, series_fp));
        }
        for (fp, labels, annotations, value, series_fp) in built {
            match self.alerts.get_mut(&fp) {
                Some(e) if e.phase != Phase::Inactive => {
                    e.value = value;
                    e.annotations = annotations;
                    e.series_fp = series_fp;
                    if e.keep_firing_since_ms.take().is_some() {
                        e.dirty = true;
                    }
                }
                existing => {
                    // A resolved alert coming back keeps its flap history
                    // and what the notifier last saw.
                    let (flap, last_sent_ms, sent_flapping) = existing
                        .map(|e| (e.flap.clone(), e.last_sent_ms, e.sent_flapping))
                        .unwrap_or_default();
                    let entry = Entry {
                        rule: rule.name.clone(),
                        group: group.to_string(),
                        labels,
                        annotations,
                        phase: Phase::Pending,
                        active_at_ms: now,
                        fired_at_ms: None,
                        resolved_at_ms: None,
                        keep_firing_since_ms: None,
                        value,
                        series_fp,
                        flap,
                        ack: None,
                        escalated_at_ms: None,
                        last_sent_ms,
                        sent_flapping,
                        dirty: true,
                    };
                    out.push(Transition::of(&entry, Event::Pending, now));
                    self.alerts.insert(fp, entry);
                }
            }
        }
        let keep_ms = duration_ms(rule.keep_firing_for);
        let mut drop = Vec::new();
        for (fp, e) in self.alerts.iter_mut() {
            if seen.contains(fp) {
                continue;
            }
            match e.phase {
                Phase::Pending => {
                    out.push(Transition::of(e, Event::Inactive, now));
                    if rule.vigil.flap.is_some() {
                        e.phase = Phase::Inactive;
                        e.dirty = true;
                    } else {
                        drop.push(*fp);
                    }
                }
                Phase::Firing => {
                    if rule.vigil.recover.is_some()
                        && !obs.recovered.contains(&e.series_fp)
                        && obs.present.contains(&e.series_fp)
                    {
                        // Hysteresis: still there, not yet recovered.
                        continue;
                    }
                    if keep_ms > 0 {
                        let since = *e.keep_firing_since_ms.get_or_insert_with(|| {
                            e.dirty = true;
                            now
                        });
                        if now - since < keep_ms {
                            continue;
                        }
                    }
                    e.phase = Phase::Inactive;
                    e.resolved_at_ms = Some(now);
                    e.keep_firing_since_ms = None;
                    e.dirty = true;
                    out.push(Transition::of(e, Event::Resolved, now));
                }
                Phase::Inactive => {}
            }
        }
        for fp in drop {
            self.alerts.remove(&fp);
        }
        let for_ms = duration_ms(rule.for_);
        for e in self.alerts.values_mut() {
            if e.phase == Phase::Pending && now - e.active_at_ms >= for_ms {
                e.phase = Phase::Firing;
                e.fired_at_ms = Some(now);
                e.dirty = true;
                out.push(Transition::of(e, Event::Firing, now));
            }
        }
        if let Some(flap) = rule.vigil.flap {
            for e in self.alerts.values_mut() {
                if let Some(t) = super::flap::track(e, flap, now) {
                    out.push(t);
                }
            }
        }
        Ok(out)
    }

    /// Drops resolved alerts past their retention (and, for flap-detected
    /// ones, once they stopped flapping and their history holds no firing
    /// state); returns the dropped ones.
    pub fn expire(&mut self, now: i64) -> Vec<Entry> {
        let gone: Vec<u64> = self
            .alerts
            .iter()
            .filter(|(_, e)| {
                e.phase == Phase::Inactive
                    && !e.flap.flapping
                    && !e.flap.history.iter().any(|&f| f)
                    && e.resolved_at_ms
                        .is_none_or(|r| now - r >= RESOLVED_RETENTION_MS)
            })
            .map(|(fp, _)| *fp)
            .collect();
        gone.iter()
            .filter_map(|fp| self.alerts.remove(fp))
            .collect()
    }
}

pub fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether `e` must go to the notifier at `now`, and with which `ends_at`:
/// new or changed states at once, unchanged active ones every
/// `resend_ms`, resolved ones until [`RESOLVED_RETENTION_MS`] after they
/// resolved. A flapping alert is presented as firing (flapping) until it
/// settles; its flips in between are held back.
pub fn needs_sending(e: &Entry, now: i64, resend_ms: i64) -> Option<Option<i64>> {
    let due = |changed_at: i64| {
        e.last_sent_ms
            .is_none_or(|sent| sent < changed_at || now - sent >= resend_ms)
    };
    if e.flap.flapping {
        let changed = if e.sent_flapping { i64::MIN } else { i64::MAX };
        return due(changed).then_some(None);
    }
    match e.phase {
        Phase::Firing => {
            let changed = if e.sent_flapping {
                i64::MAX
            } else {
                e.fired_at_ms.unwrap_or(e.active_at_ms)
            };
            due(changed).then_some(None)
        }
        Phase::Inactive => {
            let resolved = e.resolved_at_ms?;
            if now - resolved >= RESOLVED_RETENTION_MS {
                return None;
            }
            // Only alerts the notifier saw firing are sent as resolved.
            if e.fired_at_ms.is_none() && !e.sent_flapping {
                return None;
            }
            let changed = if e.sent_flapping { i64::MAX } else { resolved };
            due(changed).then_some(Some(resolved))
        }
        Phase::Pending => {
            // A flapping episode that ended while pending: the notifier saw
            // it firing, so it learns it resolved.
            if e.sent_flapping {
                return Some(Some(now));
            }
            None
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
