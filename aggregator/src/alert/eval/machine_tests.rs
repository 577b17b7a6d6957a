use std::collections::HashSet;
use std::time::Duration;

use vigil_common::Label;

use super::*;
use crate::alert::eval::flap::state_change_share;
use crate::alert::rules::FlapDetection;
use crate::alert::rules::VigilExtensions;

fn rule(for_s: u64, keep_s: u64) -> AlertingRule {
    AlertingRule {
        name: "High".into(),
        expr: "x > 90".into(),
        for_: Duration::from_secs(for_s),
        keep_firing_for: Duration::from_secs(keep_s),
        labels: [(
            "severity".to_string(),
            "{{ $labels.host }}-crit".to_string(),
        )]
        .into(),
        annotations: [("summary".to_string(), "value {{ $value }}".to_string())].into(),
        vigil: VigilExtensions::default(),
    }
}

fn sample(host: &str, v: f64) -> Sample {
    Sample {
        labels: vec![Label::new("__name__", "x"), Label::new("host", host)],
        timestamp_ms: 0,
        value: v,
    }
}

struct Run {
    alerts: RuleAlerts,
    rule: AlertingRule,
}

impl Run {
    fn eval(
        &mut self,
        at_s: i64,
        samples: &[Sample],
        recovered: &[&str],
        present: &[&str],
    ) -> Vec<Event> {
        let fps = |hosts: &[&str]| -> HashSet<u64> {
            hosts
                .iter()
                .map(|h| fingerprint(&output_labels(&sample(h, 0.0).labels)))
                .collect()
        };
        let (recovered, present) = (fps(recovered), fps(present));
        let obs = Observation {
            at_ms: at_s * 1000,
            samples,
            recovered: &recovered,
            present: &present,
            external_labels: &LabelSet::new(),
            external_url: "",
        };
        self.alerts
            .apply(&self.rule, "g", &obs)
            .expect("apply")
            .into_iter()
            .map(|t| t.event)
            .collect()
    }

    fn only(&self) -> &Entry {
        self.alerts.alerts.values().next().expect("one alert")
    }
}

#[test]
fn for_keeps_an_alert_pending_then_fires_then_resolves() {
    let mut r = Run {
        alerts: RuleAlerts::default(),
        rule: rule(60, 0),
    };
    assert_eq!(r.eval(0, &[sample("a", 95.0)], &[], &[]), [Event::Pending]);
    let e = r.only();
    assert_eq!(e.labels["severity"], "a-crit");
    assert_eq!(e.labels["alertname"], "High");
    assert_eq!(e.annotations["summary"], "value 95");
    assert!(r.eval(59, &[sample("a", 96.0)], &[], &[]).is_empty());
    assert_eq!(r.eval(60, &[sample("a", 97.0)], &[], &[]), [Event::Firing]);
    assert_eq!(r.only().fired_at_ms, Some(60_000));
    assert_eq!(r.only().active_at_ms, 0);
    assert_eq!(r.eval(75, &[], &[], &[]), [Event::Resolved]);
    assert_eq!(r.only().phase, Phase::Inactive);
    // Kept for the notifier until the retention ends, then dropped.
    assert!(
        r.alerts
            .expire(75_000 + RESOLVED_RETENTION_MS - 1)
            .is_empty()
    );
    assert_eq!(r.alerts.expire(75_000 + RESOLVED_RETENTION_MS).len(), 1);
}

#[test]
fn a_pending_alert_that_goes_away_is_forgotten() {
    let mut r = Run {
        alerts: RuleAlerts::default(),
        rule: rule(60, 0),
    };
    r.eval(0, &[sample("a", 95.0)], &[], &[]);
    assert_eq!(r.eval(15, &[], &[], &[]), [Event::Inactive]);
    assert!(r.alerts.alerts.is_empty());
    // Comes back: the `for` timer starts again.
    r.eval(30, &[sample("a", 95.0)], &[], &[]);
    assert!(r.eval(80, &[sample("a", 95.0)], &[], &[]).is_empty());
    assert_eq!(r.eval(90, &[sample("a", 95.0)], &[], &[]), [Event::Firing]);
}

#[test]
fn keep_firing_for_holds_a_resolution() {
    let mut r = Run {
        alerts: RuleAlerts::default(),
        rule: rule(0, 120),
    };
    assert_eq!(
        r.eval(0, &[sample("a", 95.0)], &[], &[]),
        [Event::Pending, Event::Firing]
    );
    assert!(r.eval(15, &[], &[], &[]).is_empty());
    assert_eq!(r.only().keep_firing_since_ms, Some(15_000));
    // Back before it ran out: the timer is cleared.
    assert!(r.eval(30, &[sample("a", 95.0)], &[], &[]).is_empty());
    assert_eq!(r.only().keep_firing_since_ms, None);
    assert!(r.eval(45, &[], &[], &[]).is_empty());
    assert!(r.eval(164, &[], &[], &[]).is_empty());
    assert_eq!(r.eval(165, &[], &[], &[]), [Event::Resolved]);
}

#[test]
fn recover_is_hysteresis_and_absence_resolves() {
    let mut rule = rule(0, 0);
    rule.vigil.recover = Some("x < 80".into());
    let mut r = Run {
        alerts: RuleAlerts::default(),
        rule,
    };
    r.eval(0, &[sample("a", 95.0), sample("b", 91.0)], &[], &["a", "b"]);
    // 85: neither expression returns it, the series is there: still firing.
    assert!(r.eval(15, &[], &[], &["a", "b"]).is_empty());
    // a recovers (< 80); b's series disappeared: both resolve.
    assert_eq!(
        r.eval(30, &[], &["a"], &[]),
        [Event::Resolved, Event::Resolved]
    );
}

#[test]
fn duplicate_label_sets_are_an_error() {
    let mut rule = rule(0, 0);
    rule.labels.clear();
    let mut alerts = RuleAlerts::default();
    let mut s2 = sample("a", 1.0);
    s2.labels[0].value = "y".into(); // differs only in __name__
    let none = HashSet::new();
    let obs = Observation {
        at_ms: 0,
        samples: &[sample("a", 1.0), s2],
        recovered: &none,
        present: &none,
        external_labels: &LabelSet::new(),
        external_url: "",
    };
    assert!(alerts.apply(&rule, "g", &obs).is_err());
}

#[test]
fn weights_rise_from_old_to_new_changes() {
    let h = |bits: &[u8]| bits.iter().map(|&b| b == 1).collect::<VecDeque<bool>>();
    assert_eq!(state_change_share(&h(&[1, 1, 1, 1])), 0.0);
    assert!((state_change_share(&h(&[0, 1, 0, 1, 0])) - 1.0).abs() < 1e-9);
    // One change, newest weighs 1.2, oldest 0.8 (of 3 changes).
    let newest = state_change_share(&h(&[0, 0, 0, 1]));
    let oldest = state_change_share(&h(&[0, 1, 1, 1]));
    assert!((newest - 0.4).abs() < 1e-9, "{newest}");
    assert!((oldest - 0.8 / 3.0).abs() < 1e-9, "{oldest}");
}

#[test]
fn a_flapping_alert_is_sent_once_as_flapping_until_it_settles() {
    let mut rule = rule(0, 0);
    rule.vigil.flap = Some(FlapDetection {
        window: 6,
        high: 0.5,
        low: 0.25,
    });
    let mut r = Run {
        alerts: RuleAlerts::default(),
        rule,
    };
    let mut sent = Vec::new();
    let resend = 3_600_000;
    for i in 0..12 {
        let up = i % 2 == 0;
        let samples = if up { vec![sample("a", 95.0)] } else { vec![] };
        r.eval(i * 15, &samples, &[], &[]);
        let now = i * 15_000;
        for e in r.alerts.alerts.values_mut() {
            if let Some(ends) = needs_sending(e, now, resend) {
                sent.push((i, e.flap.flapping, ends.is_some()));
                e.last_sent_ms = Some(now);
                e.sent_flapping = e.flap.flapping;
            }
        }
    }
    let flapping_sends = sent.iter().filter(|s| s.1).count();
    assert_eq!(flapping_sends, 1, "{sent:?}");
    // Before it was detected, the first flips went out as usual.
    assert!(sent.len() <= 6, "{sent:?}");
    // Settles (firing steadily): the current state is sent, not flapping.
    let mut after = Vec::new();
    for i in 12..24 {
        r.eval(i * 15, &[sample("a", 95.0)], &[], &[]);
        let now = i * 15_000;
        for e in r.alerts.alerts.values_mut() {
            if let Some(ends) = needs_sending(e, now, resend) {
                after.push((i, e.flap.flapping, ends.is_some()));
                e.last_sent_ms = Some(now);
                e.sent_flapping = e.flap.flapping;
            }
        }
    }
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!((after[0].1, after[0].2), (false, false));
}
