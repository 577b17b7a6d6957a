//! One evaluation round: queries (no lock), state machines (under the
//! lock, no I/O), then one write and one send. See the module above.

use std::collections::HashSet;

use tracing::warn;

use super::machine::{self, Entry, Event, Observation, Phase, Transition};
use super::query::{Querier, RuleOutcome, rule_name};
use super::{Evaluator, Health, deadman};
use crate::alert::Alert;
use crate::alert::rules::Rule;
use crate::alert::state::{self, Changes};
use crate::metrics::{GroupLabel, StateLabel};
use crate::query::Sample;
use crate::store::StoreError;

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
        // Groups are independent: they run concurrently (as in
        // Prometheus); rules within a group in order.
        let querier = Querier {
            store: self.store.clone(),
            source: self.source.clone(),
            engine: self.engine.clone(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (gi, name, rules) in due {
            tasks.spawn(querier.clone().group(gi, name, rules, now));
        }
        let mut outcomes = Vec::new();
        let mut group_times = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((gi, name, secs, mut o)) => {
                    self.metrics
                        .rule_group_last_duration
                        .get_or_create(&GroupLabel { group: name })
                        .set(secs);
                    group_times.push((gi, secs));
                    outcomes.append(&mut o);
                }
                Err(e) => warn!(error = %e, "a rule group's evaluation task failed"),
            }
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
}
