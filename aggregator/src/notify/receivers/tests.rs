use super::*;
use crate::alert::{Alert, LabelSet};

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(yaml: &str) -> Result<Vec<ReceiverConfig>, serde_norway::Error> {
    serde_norway::from_str(yaml)
}

pub(crate) fn notification(resolved: bool) -> Notification {
    let alert = Alert {
        labels: labels(&[
            ("alertname", "HighCpu"),
            ("host", "web-1"),
            ("severity", "critical"),
        ]),
        annotations: labels(&[
            ("summary", "CPU above 90%"),
            ("runbook_url", "https://runbooks.example/HighCpu.md"),
        ]),
        starts_at_ms: 1_700_000_000_000,
        ends_at_ms: resolved.then_some(1_700_000_600_000),
        generator_url: "http://vigil/graph?g0.expr=cpu".into(),
        flapping: false,
    };
    Notification {
        dedup_key: "k1".into(),
        receiver: "team".into(),
        group_key: "{}:{alertname=\"HighCpu\"}".into(),
        group_labels: labels(&[("alertname", "HighCpu")]),
        common_labels: alert.labels.clone(),
        common_annotations: alert.annotations.clone(),
        alerts: vec![alert],
        truncated_alerts: 0,
        escalation: false,
    }
}

const FULL: &str = r##"
- name: team
  webhook_configs:
    - url: https://hooks.example/abc?token=hooksecret
      max_alerts: 5
      timeout: 5s
      http_config:
        basic_auth: {username: vigil, password: basicsecret}
  slack_configs:
    - api_url: https://hooks.slack.com/services/T000/B000/slacksecretpath
      channel: "#ops"
      title: "{{ $labels.alertname }} x{{ $value }}"
  email_configs:
    - to: ops@example.com, oncall@example.com
      from: vigil@example.com
      smarthost: smtp.example.com:587
      auth_username: vigil
      auth_password: smtpsecret
      headers: {Reply-To: noc@example.com}
  alertmanager_configs:
    - url: http://am.example:9093
      http_config: {bearer_token: bearersecret}
"##;

#[test]
fn full_receiver_parses_validates_and_names_its_integrations() {
    let r = parse(FULL).unwrap();
    assert!(r[0].validate().is_empty(), "{:?}", r[0].validate());
    assert!(validate_receivers(&r, &GlobalConfig::default()).is_empty());
    assert_eq!(
        r[0].integrations(),
        ["webhook/0", "slack/0", "email/0", "alertmanager/0"]
    );
    assert!(r[0].webhook_configs[0].send_resolved, "webhook default");
    assert!(!r[0].slack_configs[0].send_resolved, "slack default");
    assert_eq!(r[0].webhook_configs[0].timeout, Duration::from_secs(5));
}

#[test]
fn secrets_never_show_in_debug_or_serialized_output() {
    let r = parse(FULL).unwrap();
    let global: GlobalConfig = serde_norway::from_str(
        "smtp_auth_password: globalsecret\nslack_api_url: https://hooks.slack.com/services/X/Y/globalpath\n",
    )
    .unwrap();
    let text = format!("{r:?} {global:?}");
    for secret in [
        "hooksecret",
        "basicsecret",
        "slacksecretpath",
        "smtpsecret",
        "bearersecret",
        "globalsecret",
        "globalpath",
        "/services/",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("<secret>"));
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
    assert_eq!(serde_json::to_string(&s).unwrap(), "\"<secret>\"");
    assert_eq!(s.expose(), "hunter2");
}

#[test]
fn unknown_fields_are_refused() {
    let err = parse("- name: x\n  webhook_configs:\n    - url: http://a\n      urll: x\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("urll"), "{err}");
    assert!(parse("- name: x\n  pager_configs: []\n").is_err());
    assert!(serde_norway::from_str::<GlobalConfig>("smtp_host: x\n").is_err());
}

#[test]
fn validation_reports_every_problem() {
    let r = parse(
        r##"
- name: bad
  webhook_configs:
    - url: ftp://x/hook
      timeout: 10m
    - url: "not a url"
      http_config:
        bearer_token: a
        basic_auth: {username: u, password: p, password_file: /f}
  slack_configs:
    - channel: "#x"
  email_configs:
    - to: ""
      smarthost: smtp.example.com
      auth_password: a
      auth_password_file: /f
    - to: ops@example.com
  alertmanager_configs:
    - url: http://
      http_config:
        tls_config: {ca_file: /nonexistent/ca.pem}
- name: bad
"##,
    )
    .unwrap();
    let errors = validate_receivers(&r, &GlobalConfig::default());
    let expect = [
        "webhook_configs[0]: url: scheme \"ftp\" is not http or https",
        "webhook_configs[0]: timeout 10m is above the maximum",
        "webhook_configs[1]: url: not an absolute URL",
        "at most one of basic_auth and bearer_token",
        "at most one of basic_auth.password and basic_auth.password_file",
        "slack_configs[0]: no api_url",
        "email_configs[0]: to: no recipient",
        "email_configs[0]: smarthost: \"smtp.example.com\" has no port",
        "email_configs[0]: at most one of auth_password and auth_password_file",
        "email_configs[1]: no smarthost here or in global.smtp_smarthost",
        "email_configs[1]: no from here or in global.smtp_from",
        "alertmanager_configs[0]: url: the URL has no host",
        "tls_config.ca_file /nonexistent/ca.pem is not a readable file",
        "receiver \"bad\": defined more than once",
    ];
    for e in expect {
        assert!(
            errors.iter().any(|x| x.contains(e)),
            "missing {e:?} in {errors:#?}"
        );
    }
    // Without global: only what the receiver alone gets wrong.
    assert!(
        !r[0]
            .validate()
            .iter()
            .any(|e| e.contains("global.smtp_smarthost"))
    );
}

#[test]
fn global_defaults_satisfy_email_and_slack() {
    let r = parse(
        "- name: x\n  email_configs: [{to: a@example.com}]\n  slack_configs: [{channel: '#a'}]\n",
    )
    .unwrap();
    let global: GlobalConfig = serde_norway::from_str(
        "smtp_from: v@example.com\nsmtp_smarthost: mail:25\nslack_api_url: https://hooks.slack.com/x\n",
    )
    .unwrap();
    assert!(validate_receivers(&r, &global).is_empty());
    let bad: GlobalConfig =
        serde_norway::from_str("smtp_smarthost: mail\nslack_api_url: x\nsmtp_auth_password: a\nsmtp_auth_password_file: /b\n")
            .unwrap();
    assert_eq!(bad.validate().len(), 3, "{:?}", bad.validate());
}

#[test]
fn webhook_payload_has_alertmanagers_shape() {
    let n = notification(false);
    let p = webhook::payload(&n, true, 0, "http://vigil:8080").unwrap();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["externalURL"], "http://vigil:8080");
    assert_eq!(v["truncatedAlerts"], 0);
    let a = &v["alerts"][0];
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a["startsAt"], "2023-11-14T22:13:20Z");
    assert_eq!(a["generatorURL"], "http://vigil/graph?g0.expr=cpu");
    assert_eq!(
        a["fingerprint"],
        format!("{:016x}", n.alerts[0].fingerprint())
    );
    assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
    // Resolved only, send_resolved false: nothing to send.
    assert!(webhook::payload(&notification(true), false, 0, "").is_none());
    // max_alerts truncates and counts.
    let mut many = notification(false);
    many.alerts.push(many.alerts[0].clone());
    many.alerts.push(many.alerts[0].clone());
    let p = webhook::payload(&many, true, 1, "").unwrap();
    assert_eq!((p.alerts.len(), p.truncated_alerts), (1, 2));
}

#[test]
fn slack_message_colours_by_status_and_links_the_runbook() {
    let r = parse(FULL).unwrap();
    let mut slack = r[0].slack_configs[0].clone();
    let m = slack.message(&notification(false), "http://vigil").unwrap();
    let a = &m.attachments[0];
    assert_eq!(a.color, "danger");
    assert_eq!(a.title, "HighCpu x1", "template expanded");
    assert!(
        a.text
            .contains("<https://runbooks.example/HighCpu.md|Runbook>"),
        "{}",
        a.text
    );
    assert_eq!(m.channel.as_deref(), Some("#ops"));
    assert!(
        slack.message(&notification(true), "").is_none(),
        "send_resolved false"
    );
    slack.send_resolved = true;
    slack.title = None;
    let m = slack.message(&notification(true), "").unwrap();
    assert_eq!(m.attachments[0].color, "good");
    assert_eq!(m.attachments[0].title, "[RESOLVED] HighCpu");
}

#[test]
fn smarthost_needs_a_port() {
    assert_eq!(
        email::parse_smarthost("mail.example.com:465").unwrap(),
        ("mail.example.com".to_string(), 465)
    );
    assert_eq!(
        email::parse_smarthost("[::1]:25").unwrap(),
        ("::1".to_string(), 25)
    );
    assert!(email::parse_smarthost("mail.example.com").is_err());
    assert!(email::parse_smarthost("mail:0").is_err());
    assert!(email::parse_smarthost(":25").is_err());
}

#[tokio::test]
async fn unknown_receiver_or_integration_is_reported_as_such() {
    let r = parse(FULL).unwrap();
    let receivers = Receivers::new(&r, &GlobalConfig::default(), "").unwrap();
    let n = notification(false);
    for (recv, integration) in [
        ("nobody", "webhook/0"),
        ("team", "webhook/7"),
        ("team", "pager/0"),
        ("team", "x"),
    ] {
        match receivers.send(recv, integration, &n).await {
            Err(SendError::Unknown(_)) => {}
            other => panic!("{recv} {integration}: {other:?}"),
        }
    }
    assert!(receivers.integrations("nobody").is_none());
}
