//! The whole alerting path in the real aggregator: samples cross a
//! threshold, the rule goes pending -> firing, the dispatcher groups it, the
//! outbox delivers Alertmanager's webhook payload to a real HTTP receiver,
//! and the alert resolves when the samples come back down.

mod common;
mod notify_support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use vigil_aggregator::store::Store;
use vigil_common::{Label, Point, Series, now_ms};

use notify_support::{Got, Receiver};

const RULES: &str = r#"
groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: E2eErrorsHigh
        expr: e2e_errors > 5
        for: 2s
        labels: {severity: critical, team: platform}
        annotations:
          summary: "{{ $labels.host }} has {{ $value }} errors"
          runbook_url: docs/runbooks/E2eErrorsHigh.md
"#;

fn notify_yaml(url: &str) -> String {
    format!(
        "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: team\n    webhook_configs:\n      - url: {url}/hook\n"
    )
}

async fn write(store: &dyn Store, value: f64) {
    let series = Series {
        name: "e2e_errors".into(),
        labels: vec![
            Label {
                name: "host".into(),
                value: "h1".into(),
            },
            Label {
                name: "job".into(),
                value: "api".into(),
            },
        ],
        points: vec![Point {
            timestamp_ms: now_ms(),
            value,
        }],
    };
    store.write_series(&[series]).await.expect("write");
}

/// Webhook deliveries so far with `status`.
fn deliveries(receiver: &Receiver, status: &str) -> Vec<Got> {
    receiver
        .requests()
        .into_iter()
        .filter(|g| g.body["status"] == status)
        .collect()
}

#[tokio::test]
async fn samples_over_the_threshold_page_once_and_resolve_cleanly() {
    let receiver = Receiver::default();
    let (url, _serve) = receiver.start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    vigil_certs::create_ca(d, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(d, d, &["localhost".into()], 30, false).expect("server");
    std::fs::write(d.join("rules.yml"), RULES).expect("rules");
    std::fs::write(d.join("notify.yml"), notify_yaml(&url)).expect("notify");
    let path = d.join("aggregator.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"127.0.0.1:0\"\n[quic]\nlisten = \"127.0.0.1:0\"\nca = \"ca.crt\"\n\
         cert = \"server.crt\"\nkey = \"server.key\"\n\
         [alerting]\nrule_files = [\"rules.yml\"]\nevaluation_interval = \"1s\"\n\
         external_url = \"http://vigil.test\"\n\
         [notify]\nconfig_file = \"notify.yml\"\n\
         [notify.outbox]\npoll_interval = \"100ms\"\nmin_backoff = \"100ms\"\nmax_backoff = \"1s\"\n",
    )
    .expect("config");
    let loaded = vigil_aggregator::Config::load(&path).expect("valid config");
    let running = vigil_aggregator::start(loaded).await.expect("starts");
    assert!(running.wait_store_ready(Duration::from_secs(10)).await);
    let state = running.state.clone();
    let tokens = common::tokens(state.store.as_ref()).await;

    // Over the threshold: pending first (for: 2s), then firing.
    let mut seen_pending = false;
    let mut firing = None;
    for _ in 0..100 {
        write(state.store.as_ref(), 10.0).await;
        let r = common::get(&state, "/api/v1/alerts", Some(&tokens.read)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let alerts = r.json["alerts"].as_array().cloned().unwrap_or_default();
        let mine: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == "E2eErrorsHigh")
            .collect();
        match mine.first().map(|a| a["state"].as_str().unwrap_or("")) {
            Some("pending") => {
                assert!(firing.is_none(), "pending after firing");
                seen_pending = true;
            }
            Some("firing") => {
                firing = Some(mine[0].clone());
                break;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen_pending, "the alert was never seen pending");
    let firing = firing.expect("the alert fired");
    assert_eq!(firing["labels"]["host"], "h1");

    // The webhook gets one firing notification, in Alertmanager's shape.
    let mut got = Vec::new();
    for _ in 0..100 {
        write(state.store.as_ref(), 10.0).await;
        got = deliveries(&receiver, "firing");
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 1, "{:?}", receiver.requests());
    let body = &got[0].body;
    assert_eq!(got[0].path, "/hook");
    assert_eq!(body["version"], "4");
    assert_eq!(body["receiver"], "team");
    assert_eq!(body["groupLabels"]["alertname"], "E2eErrorsHigh");
    let alert = &body["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["annotations"]["summary"], "h1 has 10 errors");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "docs/runbooks/E2eErrorsHigh.md"
    );

    // Still over the threshold for a few more rounds: no second page.
    for _ in 0..10 {
        write(state.store.as_ref(), 10.0).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(deliveries(&receiver, "firing").len(), 1, "paged twice");

    // Back under: resolved is delivered once, and the alert is gone.
    let mut resolved = Vec::new();
    for _ in 0..100 {
        write(state.store.as_ref(), 1.0).await;
        resolved = deliveries(&receiver, "resolved");
        if !resolved.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(resolved.len(), 1, "{:?}", receiver.requests());
    assert_eq!(resolved[0].body["alerts"][0]["status"], "resolved");
    assert_ne!(
        resolved[0].body["alerts"][0]["endsAt"],
        "0001-01-01T00:00:00Z"
    );

    // History holds the whole lifecycle.
    let r = common::get(
        &state,
        "/api/v1/alerts/history?rule=E2eErrorsHigh",
        Some(&tokens.read),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let text = r.json.to_string();
    for event in ["pending", "firing", "resolved"] {
        assert!(
            text.contains(&format!("\"{event}\"")),
            "{event} missing: {text}"
        );
    }
    running.shutdown().await;
}
