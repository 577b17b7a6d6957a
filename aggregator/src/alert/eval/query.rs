//! Phase 1 of a round: evaluating a group's rules with the engine, each
//! group in its own task (see [`super::round`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use vigil_common::{Label, Point, Series};

use super::machine;
use crate::alert::fingerprint;
use crate::alert::rules::{AlertingRule, RecordingRule, Rule};
use crate::query::{Engine, Sample, Source, Value};
use crate::store::Store;

/// What evaluating an alerting rule's expressions gave.
pub(crate) struct AlertingResult {
    pub(crate) samples: Vec<Sample>,
    pub(crate) recovered: HashSet<u64>,
    pub(crate) present: HashSet<u64>,
}

/// One rule's evaluation.
pub(crate) struct RuleOutcome {
    pub(crate) group: usize,
    pub(crate) rule: usize,
    /// `None` for a recording rule that worked.
    pub(crate) result: Result<Option<AlertingResult>, String>,
    pub(crate) seconds: f64,
}

/// What evaluating rules needs, cheap to clone into a group's task.
#[derive(Clone)]
pub(crate) struct Querier {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) source: Arc<dyn Source>,
    pub(crate) engine: Arc<Engine>,
}

impl Querier {
    /// Evaluates one group's rules in order at `now`.
    pub(crate) async fn group(
        self,
        gi: usize,
        name: String,
        rules: Vec<Rule>,
        now: i64,
    ) -> (usize, String, f64, Vec<RuleOutcome>) {
        let started = Instant::now();
        let mut outcomes: Vec<RuleOutcome> = Vec::with_capacity(rules.len());
        // Recording outputs no later rule of the group reads are written
        // together at the group's end (one transaction instead of one per
        // rule); the others at once, so later rules see them.
        let mut deferred: Vec<Series> = Vec::new();
        let mut deferred_rules: Vec<usize> = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            let t0 = Instant::now();
            let result = match rule {
                Rule::Recording(r) => match self.record(r, now).await {
                    Ok(series) if series.is_empty() => Ok(None),
                    Ok(series) if !read_later(&rules[ri + 1..], &r.record) => {
                        deferred.extend(series);
                        deferred_rules.push(ri);
                        Ok(None)
                    }
                    Ok(series) => self.write(&series).await.map(|()| None),
                    Err(e) => Err(e),
                },
                Rule::Alerting(a) => self.query_alerting(a, now).await.map(Some),
            };
            outcomes.push(RuleOutcome {
                group: gi,
                rule: ri,
                result,
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
        if !deferred.is_empty() {
            if let Err(e) = self.write(&deferred).await {
                for &ri in &deferred_rules {
                    if let Some(o) = outcomes.get_mut(ri) {
                        o.result = Err(e.clone());
                    }
                }
            }
        }
        (gi, name, started.elapsed().as_secs_f64(), outcomes)
    }

    async fn instant(&self, expr: &str, now: i64) -> Result<Vec<Sample>, String> {
        match self.engine.instant(self.source.as_ref(), expr, now).await {
            Ok(Value::Vector(v)) => Ok(v),
            Ok(Value::Scalar { value, .. }) => Ok(vec![Sample {
                labels: vec![],
                timestamp_ms: now,
                value,
            }]),
            Ok(other) => Err(format!(
                "rule result is a {}, not a vector",
                other.type_name()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn query_alerting(
        &self,
        rule: &AlertingRule,
        now: i64,
    ) -> Result<AlertingResult, String> {
        let samples = self.instant(&rule.expr, now).await?;
        let mut recovered = HashSet::new();
        let mut present = HashSet::new();
        if let Some(recover) = &rule.vigil.recover {
            for s in self
                .instant(recover, now)
                .await
                .map_err(|e| format!("recover: {e}"))?
            {
                recovered.insert(fingerprint(&machine::output_labels(&s.labels)));
            }
            if let Some(operand) = presence_expr(&rule.expr) {
                for s in self
                    .instant(&operand, now)
                    .await
                    .map_err(|e| format!("presence: {e}"))?
                {
                    present.insert(fingerprint(&machine::output_labels(&s.labels)));
                }
            }
        }
        Ok(AlertingResult {
            samples,
            recovered,
            present,
        })
    }

    /// Evaluates a recording rule: its output as series at `now`.
    async fn record(&self, rule: &RecordingRule, now: i64) -> Result<Vec<Series>, String> {
        let samples = self.instant(&rule.expr, now).await?;
        let mut seen = HashSet::new();
        let mut series = Vec::with_capacity(samples.len());
        for s in samples {
            let mut labels = machine::output_labels(&s.labels);
            for (k, v) in &rule.labels {
                labels.insert(k.clone(), v.clone());
            }
            if !seen.insert(fingerprint(&labels)) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
            let labels = labels.into_iter().map(|(k, v)| Label::new(k, v)).collect();
            series.push(Series::new(
                rule.record.clone(),
                labels,
                vec![Point {
                    timestamp_ms: now,
                    value: s.value,
                }],
            ));
        }
        Ok(series)
    }

    /// Writes recording rule output through the store: in the head at once,
    /// in the database behind (`Store::write_derived`).
    async fn write(&self, series: &[Series]) -> Result<(), String> {
        self.store
            .write_derived(series)
            .await
            .map_err(|e| format!("writing the result: {e}"))
    }
}

/// Whether any of `later` may read the metric `name` (a plain text search of
/// their expressions: a false positive only costs an early write).
pub(crate) fn read_later(later: &[Rule], name: &str) -> bool {
    later.iter().any(|r| match r {
        Rule::Alerting(a) => {
            a.expr.contains(name) || a.vigil.recover.as_deref().is_some_and(|e| e.contains(name))
        }
        Rule::Recording(r) => r.expr.contains(name),
    })
}

/// For hysteresis: the vector operand of the expression's top-level
/// filtering comparison (`x > 90` -> `x`), whose result says the series
/// still exists; `None` when the expression is not such a comparison.
pub(crate) fn presence_expr(expr: &str) -> Option<String> {
    use promql_parser::parser::Expr;
    use promql_parser::parser::value::ValueType;
    let mut e = promql_parser::parser::parse(expr).ok()?;
    while let Expr::Paren(p) = e {
        e = *p.expr;
    }
    let Expr::Binary(b) = e else {
        return None;
    };
    if !b.op.is_comparison_operator() || b.return_bool() {
        return None;
    }
    [b.lhs, b.rhs]
        .into_iter()
        .find(|side| side.value_type() == ValueType::Vector)
        .map(|side| side.to_string())
}

pub(crate) fn rule_name(rule: &Rule) -> &str {
    match rule {
        Rule::Alerting(a) => &a.name,
        Rule::Recording(r) => &r.record,
    }
}
