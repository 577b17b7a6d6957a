//! Rule evaluation the simple promtool way: every rule of every group, in
//! file order, at each evaluation step from 0 on, against an in-memory
//! source that the recording rules (and `ALERTS`) write back into.
//!
//! Alert states follow Prometheus: a new series is pending, firing once it
//! has been returned for `for`; a firing alert whose series is gone keeps
//! firing for `keep_firing_for`, and with Vigil's `vigil.recover` until the
//! recovery expression returns its series. Flap detection only changes how
//! alerts are notified, not whether they fire, so it plays no part here.

use std::collections::BTreeMap;

use vigil_common::Label;

use crate::alert::LabelSet;
use crate::alert::rules::{AlertingRule, Rule, RuleSet};
use crate::alert::template::{TemplateData, expand_or_error};
use crate::query::source::METRIC_NAME;
use crate::query::{Engine, MemorySource, Sample, Value};

/// A firing alert as a test compares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct GotAlert {
    pub labels: LabelSet,
    pub annotations: LabelSet,
}

struct State {
    /// The expression's output labels (what `$labels` shows).
    sample_labels: LabelSet,
    labels: LabelSet,
    annotations: LabelSet,
    active_at: i64,
    /// First evaluation at which a firing alert's series was missing
    /// (Prometheus' `KeepFiringSince`).
    missing_since: Option<i64>,
    firing: bool,
}

/// The simulation of one test group.
pub(super) struct Sim<'a> {
    pub source: MemorySource,
    engine: Engine,
    rules: &'a RuleSet,
    external_labels: &'a LabelSet,
    external_url: &'a str,
    /// Per alerting rule (by position), its alerts keyed by labels.
    states: BTreeMap<(usize, usize), BTreeMap<LabelSet, State>>,
}

impl<'a> Sim<'a> {
    pub fn new(
        source: MemorySource,
        rules: &'a RuleSet,
        external_labels: &'a LabelSet,
        external_url: &'a str,
    ) -> Self {
        Sim {
            source,
            engine: Engine::default(),
            rules,
            external_labels,
            external_url,
            states: BTreeMap::new(),
        }
    }

    /// Evaluates every rule at `t` (ms); errors name the rule.
    pub async fn step(&mut self, t: i64) -> Result<(), String> {
        for (gi, group) in self.rules.groups.iter().enumerate() {
            for (ri, rule) in group.rules.iter().enumerate() {
                match rule {
                    Rule::Recording(r) => {
                        let samples = self
                            .query(&r.expr, t)
                            .await
                            .map_err(|e| format!("recording rule {}: {e}", r.record))?;
                        for s in samples {
                            let mut labels = without_name(&s.labels);
                            labels.extend(r.labels.clone());
                            labels.insert(METRIC_NAME.to_string(), r.record.clone());
                            self.source.push(&to_vec(&labels), t, s.value);
                        }
                    }
                    Rule::Alerting(a) => self
                        .alerting(gi, ri, a, t)
                        .await
                        .map_err(|e| format!("alerting rule {}: {e}", a.name))?,
                }
            }
        }
        Ok(())
    }

    async fn query(&self, expr: &str, t: i64) -> Result<Vec<Sample>, String> {
        match self.engine.instant(&self.source, expr, t).await {
            Ok(Value::Vector(v)) => Ok(v),
            Ok(Value::Scalar { value, .. }) => Ok(vec![Sample {
                labels: Vec::new(),
                timestamp_ms: t,
                value,
            }]),
            Ok(other) => Err(format!("returns a {}, not a vector", other.type_name())),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn alerting(
        &mut self,
        gi: usize,
        ri: usize,
        a: &AlertingRule,
        t: i64,
    ) -> Result<(), String> {
        let samples = self.query(&a.expr, t).await?;
        let mut seen = Vec::new();
        let mut updates = Vec::new();
        for s in &samples {
            let sample_labels: LabelSet = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let data = TemplateData {
                labels: &sample_labels,
                value: s.value,
                external_labels: self.external_labels,
                external_url: self.external_url,
            };
            let mut labels = without_name(&s.labels);
            for (k, v) in &a.labels {
                labels.insert(k.clone(), expand_or_error(k, v, &data));
            }
            labels.insert("alertname".to_string(), a.name.clone());
            let annotations: LabelSet = a
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), expand_or_error(k, v, &data)))
                .collect();
            seen.push(labels.clone());
            updates.push((labels, sample_labels, annotations));
        }
        let recovered = match &a.vigil.recover {
            Some(expr) => Some(self.query(expr, t).await?),
            None => None,
        };
        let states = self.states.entry((gi, ri)).or_default();
        for (labels, sample_labels, annotations) in updates {
            let st = states.entry(labels.clone()).or_insert(State {
                sample_labels: sample_labels.clone(),
                labels,
                annotations: annotations.clone(),
                active_at: t,
                missing_since: None,
                firing: false,
            });
            st.sample_labels = sample_labels;
            st.annotations = annotations;
            st.missing_since = None;
            if !st.firing
                && t - st.active_at >= i64::try_from(a.for_.as_millis()).unwrap_or(i64::MAX)
            {
                st.firing = true;
            }
        }
        states.retain(|key, st| {
            if seen.contains(key) {
                return true;
            }
            if !st.firing {
                return false;
            }
            let keep = i64::try_from(a.keep_firing_for.as_millis()).unwrap_or(i64::MAX);
            let since = *st.missing_since.get_or_insert(t);
            if keep > 0 && t - since < keep {
                return true;
            }
            // Hysteresis: only a sample of the recovery expression with the
            // alert's labels resolves it.
            match &recovered {
                Some(samples) => {
                    let own = without_name_map(&st.sample_labels);
                    !samples.iter().any(|s| without_name(&s.labels) == own)
                }
                None => false,
            }
        });
        // ALERTS{alertname, alertstate, ...} as Prometheus records it.
        let alerts: Vec<Vec<Label>> = states
            .values()
            .map(|st| {
                let mut l = st.labels.clone();
                l.insert(METRIC_NAME.into(), "ALERTS".into());
                l.insert(
                    "alertstate".into(),
                    if st.firing { "firing" } else { "pending" }.into(),
                );
                to_vec(&l)
            })
            .collect();
        for l in alerts {
            self.source.push(&l, t, 1.0);
        }
        Ok(())
    }

    /// Firing alerts named `alertname` after the last step.
    pub fn firing(&self, alertname: &str) -> Vec<GotAlert> {
        let mut out: Vec<GotAlert> = self
            .states
            .values()
            .flat_map(BTreeMap::values)
            .filter(|st| st.firing && st.labels.get("alertname").is_some_and(|n| n == alertname))
            .map(|st| GotAlert {
                labels: st.labels.clone(),
                annotations: st.annotations.clone(),
            })
            .collect();
        out.sort();
        out
    }

    /// Evaluates a PromQL test expression at `t`.
    pub async fn eval(&self, expr: &str, t: i64) -> Result<Vec<Sample>, String> {
        self.query(expr, t).await
    }
}

fn without_name(labels: &[Label]) -> LabelSet {
    labels
        .iter()
        .filter(|l| l.name != METRIC_NAME)
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn without_name_map(labels: &LabelSet) -> LabelSet {
    labels
        .iter()
        .filter(|(k, _)| *k != METRIC_NAME)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) fn to_vec(labels: &LabelSet) -> Vec<Label> {
    labels.iter().map(|(k, v)| Label::new(k, v)).collect()
}
