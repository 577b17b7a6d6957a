//! The grouping state machine with explicit times (no sleeping).

use std::sync::Arc;

use super::*;
use crate::notify::config::parse_file;

const MIN: i64 = 60_000;

fn plan(yaml: &str) -> Arc<NotifyPlan> {
    Arc::new(parse_file(yaml, true).expect("valid config"))
}

const CONFIG: &str = r#"
route:
  receiver: default
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
  routes:
    - matchers: ['team="platform"']
      receiver: platform
      group_by: ['...']
receivers: [{name: default}, {name: platform}]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [host]
"#;

fn alert(name: &str, host: &str, start: i64) -> Alert {
    let mut labels = LabelSet::new();
    labels.insert("alertname".into(), name.into());
    labels.insert("host".into(), host.into());
    Alert {
        labels,
        annotations: [("summary".to_string(), format!("{name} on {host}"))].into(),
        starts_at_ms: start,
        ends_at_ms: None,
        generator_url: String::new(),
        flapping: false,
    }
}

fn with(mut a: Alert, k: &str, v: &str) -> Alert {
    a.labels.insert(k.into(), v.into());
    a
}

fn resolved(mut a: Alert, at: i64) -> Alert {
    a.ends_at_ms = Some(at);
    a
}

/// Flushes at `now` with no silences; commits everything; returns what
/// was sent.
fn tick(core: &mut Core, now: i64) -> Vec<Notification> {
    tick_muted(core, now, &|_| None)
}

fn tick_muted(
    core: &mut Core,
    now: i64,
    mutes: &dyn Fn(&LabelSet) -> Option<Muted>,
) -> Vec<Notification> {
    let flushes = core.flush_due(now, mutes, &mut |_| {});
    for f in &flushes {
        core.commit(f);
    }
    flushes.into_iter().filter_map(|f| f.notification).collect()
}

fn names(n: &Notification) -> Vec<String> {
    n.alerts
        .iter()
        .map(|a| {
            format!(
                "{}{}",
                a.labels["host"],
                if a.is_resolved() { "-" } else { "+" }
            )
        })
        .collect()
}

#[test]
fn group_wait_batches_three_alerts_into_one_notification() {
    let mut core = Core::new(plan(CONFIG), 5 * MIN);
    let t0 = 1_000 * MIN;
    core.ingest(vec![alert("HighCpu", "a", t0)], t0);
    core.ingest(vec![alert("HighCpu", "b", t0)], t0 + 10_000);
    assert!(
        tick(&mut core, t0 + 29_999).is_empty(),
        "group_wait not over"
    );
    core.ingest(vec![alert("HighCpu", "c", t0)], t0 + 20_000);
    let sent = tick(&mut core, t0 + 30_000);
    assert_eq!(sent.len(), 1);
    assert_eq!(names(&sent[0]), ["a+", "b+", "c+"]);
    assert_eq!(
        sent[0].group_labels,
        [("alertname".to_string(), "HighCpu".to_string())].into()
    );
    assert_eq!(
        sent[0].common_labels.get("alertname").map(String::as_str),
        Some("HighCpu")
    );
    assert!(!sent[0].common_labels.contains_key("host"));
    assert_eq!(sent[0].group_key, r#"{}:{alertname="HighCpu"}"#);
}

#[test]
fn group_interval_sends_changes_and_repeat_interval_resends_unchanged() {
    let mut core = Core::new(plan(CONFIG), 24 * 60 * MIN);
    let t0 = 1_000 * MIN;
    core.ingest(vec![alert("Disk", "a", t0)], t0);
    assert_eq!(tick(&mut core, t0 + 30_000).len(), 1);
    let first_key = core.log[&(
        r#"{}:{alertname="Disk"}"#.to_string(),
        "default".to_string(),
    )]
        .clone();
    assert_eq!(first_key.seq, 0);
    // A new alert joins: not before group_interval.
    core.ingest(vec![alert("Disk", "b", t0)], t0 + MIN);
    assert!(tick(&mut core, t0 + 30_000 + 5 * MIN - 1).is_empty());
    let sent = tick(&mut core, t0 + 30_000 + 5 * MIN);
    assert_eq!(names(&sent[0]), ["a+", "b+"]);
    // Unchanged: nothing at the next intervals until repeat_interval.
    let mut t = t0 + 30_000 + 5 * MIN;
    let mut repeats = Vec::new();
    for _ in 0..12 {
        t += 5 * MIN;
        repeats.extend(tick(&mut core, t).into_iter().map(|_| t));
    }
    assert_eq!(
        repeats,
        [t0 + 30_000 + 65 * MIN],
        "one repeat, an hour after the last send"
    );
}

#[test]
fn resolution_is_notified_once_and_the_group_goes_away() {
    let mut core = Core::new(plan(CONFIG), 24 * 60 * MIN);
    let t0 = 1_000 * MIN;
    let a = alert("Mem", "a", t0);
    let b = alert("Mem", "b", t0);
    core.ingest(vec![a.clone(), b.clone()], t0);
    assert_eq!(tick(&mut core, t0 + 30_000).len(), 1);
    core.ingest(vec![resolved(a.clone(), t0 + MIN), b.clone()], t0 + MIN);
    let sent = tick(&mut core, t0 + 30_000 + 5 * MIN);
    assert_eq!(names(&sent[0]), ["b+", "a-"], "firing first");
    // The resolved alert was dropped: the next change is b resolving.
    core.ingest(vec![resolved(b.clone(), t0 + 6 * MIN)], t0 + 6 * MIN);
    let sent = tick(&mut core, t0 + 30_000 + 10 * MIN);
    assert_eq!(names(&sent[0]), ["b-"]);
    assert_eq!(sent[0].status(), "resolved");
    assert_eq!(core.group_count(), 0);
    assert!(tick(&mut core, t0 + 30_000 + 15 * MIN).is_empty());
}

#[test]
fn an_alert_resolved_before_its_first_notification_is_never_sent() {
    let mut core = Core::new(plan(CONFIG), 5 * MIN);
    let t0 = 1_000 * MIN;
    let a = alert("Blip", "a", t0);
    core.ingest(vec![a.clone()], t0);
    core.ingest(vec![resolved(a, t0 + 10_000)], t0 + 10_000);
    assert!(tick(&mut core, t0 + 30_000).is_empty());
    assert_eq!(core.group_count(), 0);
}

#[test]
fn an_old_alert_skips_group_wait() {
    let mut core = Core::new(plan(CONFIG), 5 * MIN);
    let t0 = 1_000 * MIN;
    core.ingest(vec![alert("Old", "a", t0 - 10 * MIN)], t0);
    assert_eq!(tick(&mut core, t0).len(), 1);
}

#[test]
fn group_by_all_labels_makes_one_group_per_label_set() {
    let mut core = Core::new(plan(CONFIG), 5 * MIN);
    let t0 = 1_000 * MIN;
    core.ingest(
        vec![
            with(alert("Api", "a", t0), "team", "platform"),
            with(alert("Api", "b", t0), "team", "platform"),
        ],
        t0,
    );
    let sent = tick(&mut core, t0 + 30_000);
    assert_eq!(sent.len(), 2, "group_by ... splits by every label");
    assert!(
        sent.iter()
            .all(|n| n.receiver == "platform" && n.alerts.len() == 1)
    );
    assert_eq!(sent[0].group_labels, sent[0].alerts[0].labels);
}

#[test]
fn inhibited_alerts_wait_for_the_source_to_resolve() {
    let mut core = Core::new(plan(CONFIG), 24 * 60 * MIN);
    let t0 = 1_000 * MIN;
    let crit = with(alert("Down", "a", t0), "severity", "critical");
    let warn = with(alert("Slow", "a", t0), "severity", "warning");
    let other = with(alert("Slow", "b", t0), "severity", "warning");
    core.ingest(vec![crit.clone(), warn.clone(), other.clone()], t0);
    let mut suppressed = Vec::new();
    let flushes = core.flush_due(t0 + 30_000, &|_| None, &mut |r| {
        suppressed.push(r.to_string())
    });
    flushes.iter().for_each(|f| core.commit(f));
    let sent: Vec<_> = flushes.into_iter().filter_map(|f| f.notification).collect();
    let hosts: Vec<Vec<String>> = sent.iter().map(names).collect();
    assert!(
        hosts.contains(&vec!["a+".to_string()]),
        "the source itself: {hosts:?}"
    );
    assert!(
        hosts.contains(&vec!["b+".to_string()]),
        "other host not inhibited: {hosts:?}"
    );
    assert_eq!(sent.len(), 2);
    assert_eq!(suppressed, ["inhibition"]);
    assert_eq!(core.inhibited(&warn.labels), Some(crit.fingerprint()));
    // The source resolves: the target goes out at its group's next flush.
    core.ingest(
        vec![resolved(crit, t0 + MIN), warn.clone(), other],
        t0 + MIN,
    );
    assert_eq!(core.inhibited(&warn.labels), None);
    let sent = tick(&mut core, t0 + 30_000 + 5 * MIN);
    let hosts: Vec<Vec<String>> = sent.iter().map(names).collect();
    assert!(
        hosts.contains(&vec!["a+".to_string(), "b+".to_string()]),
        "{hosts:?}"
    );
}

#[test]
fn a_silenced_alert_is_left_out_until_the_mute_ends() {
    let mut core = Core::new(plan(CONFIG), 24 * 60 * MIN);
    let t0 = 1_000 * MIN;
    let a = alert("X", "a", t0);
    core.ingest(vec![a.clone()], t0);
    let silence = |l: &LabelSet| {
        (l.get("host").map(String::as_str) == Some("a")).then(|| Muted::Silenced {
            silence_ids: vec!["s".into()],
        })
    };
    assert!(tick_muted(&mut core, t0 + 30_000, &silence).is_empty());
    assert_eq!(core.group_count(), 1, "still there, just muted");
    assert_eq!(tick(&mut core, t0 + 30_000 + 5 * MIN).len(), 1);
    // Muted again after it was notified: no empty notification goes out.
    assert!(tick_muted(&mut core, t0 + 30_000 + 10 * MIN, &silence).is_empty());
    assert!(tick_muted(&mut core, t0 + 30_000 + 15 * MIN, &silence).is_empty());
}

#[test]
fn the_log_survives_a_restart_so_nothing_is_resent() {
    let p = plan(CONFIG);
    let mut core = Core::new(p.clone(), 24 * 60 * MIN);
    let t0 = 1_000 * MIN;
    let alerts = vec![alert("R", "a", t0), alert("R", "b", t0)];
    core.ingest(alerts.clone(), t0);
    let sent = tick(&mut core, t0 + 30_000);
    assert_eq!(sent.len(), 1);
    let log = core.log.clone();
    // A new core with the stored log, fed the same alerts.
    let mut core = Core::new(p, 24 * 60 * MIN);
    core.set_log(log);
    core.ingest(alerts.clone(), t0 + 2 * MIN);
    assert!(
        tick(&mut core, t0 + 2 * MIN).is_empty(),
        "old alerts flush at once, but were notified"
    );
    // After repeat_interval it is resent, with a new dedup key.
    let again = tick(&mut core, t0 + 30_000 + 62 * MIN);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].dedup_key, sent[0].dedup_key);
}

#[test]
fn dedup_keys_are_deterministic_for_the_same_state() {
    let run = || {
        let mut core = Core::new(plan(CONFIG), 5 * MIN);
        core.ingest(vec![alert("K", "a", 0), alert("K", "b", 0)], 10);
        tick(&mut core, 30_010)[0].dedup_key.clone()
    };
    assert_eq!(run(), run());
    assert!(run().starts_with(r#"default|{}:{alertname="K"}|"#));
}

#[test]
fn a_stale_alert_resolves_after_resolve_timeout() {
    let mut core = Core::new(plan(CONFIG), 5 * MIN);
    let t0 = 1_000 * MIN;
    core.ingest(vec![alert("S", "a", t0)], t0);
    assert_eq!(tick(&mut core, t0 + 30_000).len(), 1);
    core.expire_stale(t0 + 5 * MIN - 1);
    assert!(tick(&mut core, t0 + 30_000 + 5 * MIN - 2).is_empty());
    core.expire_stale(t0 + 5 * MIN);
    let sent = tick(&mut core, t0 + 30_000 + 5 * MIN);
    assert_eq!(names(&sent[0]), ["a-"]);
    assert_eq!(sent[0].alerts[0].ends_at_ms, Some(t0 + 5 * MIN));
}

#[test]
fn mute_and_active_time_intervals_hold_notifications() {
    let cfg = r#"
route:
  receiver: default
  group_wait: 0s
  group_interval: 1h
  routes:
    - matchers: ['team="night"']
      receiver: default
      active_time_intervals: [business]
    - matchers: ['team="day"']
      receiver: default
      mute_time_intervals: [business]
receivers: [{name: default}]
time_intervals:
  - name: business
    time_intervals:
      - times: [{start_time: '09:00', end_time: '17:00'}]
"#;
    // 2026-11-27T10:00Z (inside) and 20:00Z (outside).
    let inside = 1_795_773_600_000;
    let outside = inside + 10 * 60 * MIN;
    for (team, sent_inside) in [("night", true), ("day", false)] {
        let mut core = Core::new(plan(cfg), 24 * 60 * MIN);
        core.ingest(vec![with(alert("T", "a", inside), "team", team)], inside);
        let mut reasons = Vec::new();
        let f = core.flush_due(inside, &|_| None, &mut |r| reasons.push(r.to_string()));
        assert_eq!(f[0].notification.is_some(), sent_inside, "{team} inside");
        if !sent_inside {
            assert_eq!(reasons, ["time_interval"]);
        }
        f.iter().for_each(|x| core.commit(x));
        let f = core.flush_due(outside, &|_| None, &mut |_| {});
        assert_eq!(f[0].notification.is_some(), !sent_inside, "{team} outside");
    }
}

#[test]
fn a_crash_before_the_log_write_re_enqueues_the_same_key() {
    let p = plan(CONFIG);
    let t0 = 1_000 * MIN;
    let alerts = vec![alert("C", "a", t0)];
    let mut core = Core::new(p.clone(), 24 * 60 * MIN);
    core.ingest(alerts.clone(), t0);
    assert_eq!(tick(&mut core, t0 + 30_000).len(), 1);
    let log = core.log.clone();
    core.ingest(vec![alert("C", "a", t0), alert("C", "b", t0)], t0 + MIN);
    // The flush is handed to the outbox, then the process dies: no commit.
    let lost = core.flush_due(t0 + 30_000 + 5 * MIN, &|_| None, &mut |_| {});
    let first = lost[0].notification.clone().expect("a change to send");
    // After the restart the same state gives the same key (the outbox drops it).
    let mut core = Core::new(p, 24 * 60 * MIN);
    core.set_log(log);
    core.ingest(vec![alert("C", "a", t0), alert("C", "b", t0)], t0 + 6 * MIN);
    let again = tick(&mut core, t0 + 6 * MIN);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].dedup_key, first.dedup_key);
}

#[test]
fn ten_thousand_alerts_flush_with_inhibition_in_one_pass() {
    let mut core = Core::new(plan(CONFIG), 24 * 60 * MIN);
    let t0 = 1_000 * MIN;
    let mut alerts = Vec::new();
    for h in 0..1000 {
        for n in 0..10 {
            alerts.push(with(
                alert(&format!("W{n}"), &format!("h{h}"), t0),
                "severity",
                "warning",
            ));
        }
    }
    // A critical alert on every tenth host inhibits that host's warnings.
    for h in (0..1000).step_by(10) {
        alerts.push(with(
            alert("Down", &format!("h{h}"), t0),
            "severity",
            "critical",
        ));
    }
    core.ingest(alerts, t0);
    let started = std::time::Instant::now();
    let mut inhibited = 0;
    let flushes = core.flush_due(t0 + 30_000, &|_| None, &mut |r| {
        if r == "inhibition" {
            inhibited += 1;
        }
    });
    eprintln!(
        "flush of 10,100 alerts in 11 groups: {:?}",
        started.elapsed()
    );
    assert_eq!(inhibited, 100 * 10);
    let sent: usize = flushes
        .iter()
        .filter_map(|f| f.notification.as_ref())
        .map(|n| n.alerts.len())
        .sum();
    assert_eq!(sent, 10_100 - 1000);
}
