//! One evaluation round: queries (no lock), state machines (under the
//! lock, no I/O), then one write and one send. See the module above.

use std::collections::HashSet;
use std::time::Instant;

use tracing::warn;
use vigil_common::{Label, Point, Series};

use super::machine::{self, Entry, Event, Observation, Phase, Transition};
use super::{Evaluator, Health, deadman};
use crate::alert::rules::{AlertingRule, RecordingRule, Rule};
use crate::alert::state::{self, Changes};
use crate::alert::{Alert, fingerprint};
use crate::metrics::{GroupLabel, StateLabel};
use crate::query::{Sample, Value};
use crate::store::StoreError;

/// What evaluating an alerting rule's expressions gave.
struct AlertingResult {
    samples: Vec<Sample>,
    recovered: HashSet<u64>,
    present: HashSet<u64>,
}

struct RuleOutcome {
    group: usize,
    rule: usize,
    /// `None` for a recording rule that worked.
    result: Result<Option<AlertingResult>, String>,
    seconds: f64,
}

impl Evaluator {
    pub(crate) async fn tick(&self, now: i64, all: bool) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.restore_locked().await?;

        // Phase 1: queries.
        let (due, deadman_due) = {
            let mut inner = self.lock();
            let mut due = Vec::new();
            for (gi, g) in inner.groups.iter_mut().enumerate() {
                if all || g.next_due_ms <= now {
                    g.next_due_ms = now + g.interval_ms;
                    due.push((
                        gi,
                        g.name.clone(),
                        g.rules.iter().map(|r| r.rule.clone()).collect::<Vec<_>>(),
                    ));
                }
            }
            inner.started_ms.get_or_insert(now);
            let deadman_due = all || inner.next_deadman_ms <= now;
            if deadman_due {
                inner.next_deadman_ms = now + machine::duration_ms(self.config.evaluation_interval);
            }
            (due, deadman_due)
        };
        let mut outcomes = Vec::new();
        let mut group_times = Vec::new();
        for (gi, name, rules) in due {
            let started = Instant::now();
            // Recording outputs no later rule of the group reads are written
            // together at the group's end (one transaction instead of one
            // per rule); the others at once, so later rules see them.
            let mut deferred: Vec<Series> = Vec::new();
            let mut deferred_rules: Vec<usize> = Vec::new();
            for (ri, rule) in rules.iter().enumerate() {
                let t0 = Instant::now();
                let result = match rule {
                    Rule::Recording(r) => match self.record(r, now).await {
                        Ok(series) if series.is_empty() => Ok(None),
                        Ok(series) if !read_later(&rules[ri + 1..], &r.record) => {
                            deferred.extend(series);
                            deferred_rules.push(outcomes.len());
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
                    for &o in &deferred_rules {
                        if let Some(o) = outcomes.get_mut(o) {
                            o.result = Err(e.clone());
                        }
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64();
            self.metrics
                .rule_group_last_duration
                .get_or_create(&GroupLabel { group: name })
                .set(secs);
            group_times.push((gi, secs));
        }
        let silent = if deadman_due {
            match deadman::silent_hosts(self, now).await {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, "dead-man check failed");
                    None
                }
            }
        } else {
            None
        };

        // Phase 2: state machines, escalation, what to send and write.
        let (changes, to_send, to_escalate) = self.advance(now, outcomes, group_times, silent);

        // Phase 3: one write, then the sink.
        self.persist(changes).await;
        for (alert, receiver) in to_escalate {
            self.sink.escalate(alert, &receiver);
        }
        if !to_send.is_empty() {
            self.sink.send(to_send);
        }
        Ok(())
    }

    fn advance(
        &self,
        now: i64,
        outcomes: Vec<RuleOutcome>,
        group_times: Vec<(usize, f64)>,
        silent: Option<Vec<Sample>>,
    ) -> (Changes, Vec<Alert>, Vec<(Alert, String)>) {
        let cfg = &self.config;
        let mut changes = Changes::default();
        let mut inner = self.lock();
        // Alerts whose rule went away (reload, restore) resolve now.
        for e in inner.retired.alerts.values_mut() {
            let event = match e.phase {
                Phase::Firing => Event::Resolved,
                Phase::Pending => Event::Inactive,
                Phase::Inactive => continue,
            };
            e.phase = Phase::Inactive;
            if event == Event::Resolved {
                e.resolved_at_ms = Some(now);
            }
            e.dirty = true;
            changes.history.push(Transition::of(e, event, now));
        }
        for (gi, secs) in group_times {
            if let Some(g) = inner.groups.get_mut(gi) {
                g.last_eval_ms = Some(now);
                g.last_duration_s = secs;
            }
        }
        for o in outcomes {
            let Some(g) = inner.groups.get_mut(o.group) else {
                continue;
            };
            let group = g.name.clone();
            let Some(r) = g.rules.get_mut(o.rule) else {
                continue;
            };
            r.last_eval_ms = Some(now);
            r.last_duration_s = o.seconds;
            let applied = match (o.result, &r.rule) {
                (Ok(None), _) => Ok(()),
                (Ok(Some(res)), Rule::Alerting(rule)) => {
                    let obs = Observation {
                        at_ms: now,
                        samples: &res.samples,
                        recovered: &res.recovered,
                        present: &res.present,
                        external_labels: &cfg.external_labels,
                        external_url: &cfg.external_url,
                    };
                    r.alerts
                        .apply(rule, &group, &obs)
                        .map(|mut t| changes.history.append(&mut t))
                }
                (Ok(Some(_)), Rule::Recording(_)) => Ok(()),
                (Err(e), _) => Err(e),
            };
            match applied {
                Ok(()) => {
                    r.health = Health::Ok;
                    r.last_error = None;
                }
                Err(e) => {
                    warn!(group = %group, rule = rule_name(&r.rule), error = %e, "rule evaluation failed");
                    self.metrics
                        .rule_evaluation_failures
                        .get_or_create(&GroupLabel {
                            group: group.clone(),
                        })
                        .inc();
                    r.health = Health::Err;
                    r.last_error = Some(e);
                }
            }
        }
        if let Some(samples) = silent {
            let none = HashSet::new();
            let obs = Observation {
                at_ms: now,
                samples: &samples,
                recovered: &none,
                present: &none,
                external_labels: &cfg.external_labels,
                external_url: &cfg.external_url,
            };
            match inner.deadman.apply(&deadman::rule(), deadman::GROUP, &obs) {
                Ok(mut t) => changes.history.append(&mut t),
                Err(e) => warn!(error = %e, "dead-man alerts"),
            }
        }

        let mut to_escalate = Vec::new();
        let resend_ms = machine::duration_ms(cfg.resend_delay);
        let mut to_send = Vec::new();
        let (mut pending, mut firing) = (0i64, 0i64);
        for e in inner.all_alerts_mut() {
            match e.phase {
                Phase::Pending => pending += 1,
                Phase::Firing => firing += 1,
                Phase::Inactive => {}
            }
            if let Some(esc) = &cfg.escalation {
                if e.phase == Phase::Firing
                    && e.ack.is_none()
                    && e.escalated_at_ms.is_none()
                    && esc.severities.iter().any(|s| s == e.label("severity"))
                    && e.fired_at_ms
                        .is_some_and(|f| now - f >= machine::duration_ms(esc.after))
                {
                    e.escalated_at_ms = Some(now);
                    e.dirty = true;
                    let mut t = Transition::of(e, Event::Escalated, now);
                    t.detail = serde_json::json!({ "receiver": esc.receiver }).to_string();
                    changes.history.push(t);
                    to_escalate.push((
                        e.to_alert(&self.generator_url(e), &cfg.external_labels, None),
                        esc.receiver.clone(),
                    ));
                }
            }
            if let Some(ends_at) = machine::needs_sending(e, now, resend_ms) {
                to_send.push(e.to_alert(&self.generator_url(e), &cfg.external_labels, ends_at));
                e.last_sent_ms = Some(now);
                e.sent_flapping = e.flap.flapping;
            }
        }
        let mut expired: Vec<Entry> = Vec::new();
        for g in &mut inner.groups {
            for r in &mut g.rules {
                expired.extend(r.alerts.expire(now));
            }
        }
        expired.extend(inner.deadman.expire(now));
        expired.extend(inner.retired.expire(now));
        for e in inner.all_alerts_mut() {
            if std::mem::take(&mut e.dirty) {
                changes.upserts.push(e.clone());
            }
        }
        changes.deletes.extend(
            expired
                .into_iter()
                .map(|e| (e.rule.clone(), e.fingerprint())),
        );
        drop(inner);
        for (state, n) in [("pending", pending), ("firing", firing)] {
            self.metrics
                .alerts
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n);
        }
        (changes, to_send, to_escalate)
    }

    /// Writes `changes` (after any earlier ones that failed); on failure
    /// keeps them for the next round, up to a cap.
    async fn persist(&self, changes: Changes) {
        let mut all =
            std::mem::take(&mut *self.unwritten.lock().unwrap_or_else(|e| e.into_inner()));
        all.append(changes);
        if all.is_empty() {
            return;
        }
        if let Err(e) = state::write(&self.store.db(), &all).await {
            warn!(error = %e, changes = all.len(), "could not write alert state; will retry");
            self.metrics.state_write_failures.inc();
            if all.history.len() > super::MAX_UNWRITTEN {
                let cut = all.history.len() - super::MAX_UNWRITTEN;
                all.history.drain(..cut);
            }
            // Later upserts of the same alert supersede earlier ones.
            let mut seen = HashSet::new();
            all.upserts.reverse();
            all.upserts
                .retain(|e| seen.insert((e.rule.clone(), e.fingerprint())));
            all.upserts.reverse();
            *self.unwritten.lock().unwrap_or_else(|e| e.into_inner()) = all;
        }
    }

    /// Where the alert links back to: its rule in the rules API.
    fn generator_url(&self, e: &Entry) -> String {
        let query: String = form_urlencoded::byte_serialize(e.rule.as_bytes()).collect();
        format!(
            "{}/prometheus/api/v1/rules?rule_name[]={query}",
            self.config.external_url.trim_end_matches('/')
        )
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

    /// Writes recording rule output through the store (and so the head).
    async fn write(&self, series: &[Series]) -> Result<(), String> {
        self.store
            .write_series(series)
            .await
            .map(|_| ())
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

fn rule_name(rule: &Rule) -> &str {
    match rule {
        Rule::Alerting(a) => &a.name,
        Rule::Recording(r) => &r.record,
    }
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
