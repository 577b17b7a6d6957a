//! The notification outbox and receivers end to end: real HTTP receivers
//! and a real (small) SMTP server on 127.0.0.1, the outbox on real SQLite
//! and PostgreSQL stores.

mod notify_support;

use std::time::Duration;

use serde_json::json;
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::notify::Deliver;
use vigil_aggregator::notify::receivers::GlobalConfig;

use notify_support::*;

const WAIT: Duration = Duration::from_secs(10);

fn webhook_yaml(url: &str) -> String {
    format!(
        "- name: team\n  webhook_configs:\n    - url: {url}/hook?token=s3cr3t\n      \
         http_config:\n        basic_auth: {{username: vigil, password: hunter2}}\n"
    )
}

/// The exact payload Alertmanager would send for [`notification`].
fn expected_webhook_payload(n: &vigil_aggregator::notify::Notification) -> serde_json::Value {
    json!({
        "version": "4",
        "groupKey": "{}/{team=\"platform\"}:{alertname=\"HighCpu\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "team",
        "groupLabels": {"alertname": "HighCpu"},
        "commonLabels": {"alertname": "HighCpu", "severity": "critical", "team": "platform"},
        "commonAnnotations": {"runbook_url": "https://vigil.test/docs/runbooks/HighCpu.md"},
        "externalURL": "http://vigil.test:8080",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighCpu", "host": "web-1", "severity": "critical", "team": "platform"},
                "annotations": {"summary": "CPU above 90% on web-1",
                                "runbook_url": "https://vigil.test/docs/runbooks/HighCpu.md"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://vigil.test:8080/graph?g0.expr=cpu",
                "fingerprint": format!("{:016x}", n.alerts[0].fingerprint()),
            },
            {
                "status": "resolved",
                "labels": {"alertname": "HighCpu", "host": "web-2", "severity": "critical", "team": "platform"},
                "annotations": {"summary": "CPU above 90% on web-2",
                                "runbook_url": "https://vigil.test/docs/runbooks/HighCpu.md"},
                "startsAt": "2025-12-31T23:50:00Z",
                "endsAt": "2026-01-01T00:01:00.500Z",
                "generatorURL": "http://vigil.test:8080/graph?g0.expr=cpu",
                "fingerprint": format!("{:016x}", n.alerts[1].fingerprint()),
            }
        ]
    })
}

/// Webhook payload, dedup, and the outbox row, on either database.
async fn webhook_delivered_once(postgres: bool) {
    let (store, backend) = open(postgres).await;
    let receiver = Receiver::default();
    let (url, server) = receiver.start().await;
    let metrics = Metrics::new();
    let outbox = outbox(store.db(), &webhook_yaml(&url), &metrics, fast());
    let task = outbox.spawn();
    let n = notification("team", "k-1");
    outbox.enqueue(n.clone()).await.unwrap();
    outbox.enqueue(n.clone()).await.unwrap(); // same dedup key: a no-op
    let got = wait_requests(&receiver, 1, WAIT).await;
    wait_rows(&store.db(), WAIT, "delivered", |r| {
        r.iter().all(|r| r.status == "delivered")
    })
    .await;
    outbox.enqueue(n.clone()).await.unwrap(); // still a no-op after delivery
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1, "delivered exactly once");

    assert_eq!(got[0].path, "/hook?token=s3cr3t");
    assert_eq!(got[0].body, expected_webhook_payload(&n));
    let auth = got[0].headers["authorization"].to_str().unwrap();
    assert_eq!(auth, "Basic dmlnaWw6aHVudGVyMg==", "vigil:hunter2");
    assert_eq!(got[0].headers["content-type"], "application/json");

    let rows = rows(&store.db()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].attempts, rows[0].last_error.as_deref()), (1, None));
    assert_eq!(rows[0].integration, "webhook/0");
    assert!(rows[0].delivered_at_ms.is_some());
    let text = metrics.render();
    assert!(
        text.contains(
            "vigil_aggregator_notifications_sent_total{receiver=\"team\",integration=\"webhook\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("vigil_aggregator_notification_outbox_pending 0"),
        "{text}"
    );
    assert!(text.contains(
        "vigil_aggregator_notification_latency_seconds_count{integration=\"webhook\"} 1"
    ));
    task.stop().await;
    server.abort();
    backend.close().await;
}

#[tokio::test]
async fn webhook_payload_is_alertmanagers_and_sent_once_sqlite() {
    webhook_delivered_once(false).await;
}

#[tokio::test]
async fn webhook_payload_is_alertmanagers_and_sent_once_postgres() {
    webhook_delivered_once(true).await;
}

/// 500, 500, then 200: delivered once, after three attempts.
async fn retried_with_backoff(postgres: bool) {
    let (store, backend) = open(postgres).await;
    let receiver = Receiver::answering(&[500, 500]);
    let (url, server) = receiver.start().await;
    let metrics = Metrics::new();
    let outbox = outbox(store.db(), &webhook_yaml(&url), &metrics, fast());
    let task = outbox.spawn();
    outbox
        .enqueue(notification("team", "k-retry"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "delivered", |r| {
        r.first().is_some_and(|r| r.status == "delivered")
    })
    .await;
    let got = receiver.requests();
    assert_eq!(got.len(), 3, "two failures and one success");
    let row = &rows(&store.db()).await[0];
    assert_eq!(row.attempts, 3);
    assert_eq!(row.last_error, None, "cleared on success");
    let text = metrics.render();
    assert!(text.contains(
        "vigil_aggregator_notifications_failed_total{receiver=\"team\",integration=\"webhook\"} 2"
    ), "{text}");
    assert!(text.contains(
        "vigil_aggregator_notifications_sent_total{receiver=\"team\",integration=\"webhook\"} 1"
    ));
    task.stop().await;
    server.abort();
    backend.close().await;
}

#[tokio::test]
async fn failed_sends_are_retried_with_backoff_sqlite() {
    retried_with_backoff(false).await;
}

#[tokio::test]
async fn failed_sends_are_retried_with_backoff_postgres() {
    retried_with_backoff(true).await;
}

/// The receiver's port is closed when the notification is enqueued; it
/// comes up later on the same port and gets the notification once.
async fn receiver_down_then_up(postgres: bool) {
    let (store, backend) = open(postgres).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let outbox = outbox(store.db(), &webhook_yaml(&url), &Metrics::new(), fast());
    let task = outbox.spawn();
    outbox
        .enqueue(notification("team", "k-down"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "two failed attempts", |r| {
        r.first()
            .is_some_and(|r| r.attempts >= 2 && r.status == "pending")
    })
    .await;
    let row = &rows(&store.db()).await[0];
    let error = row.last_error.as_deref().unwrap_or("");
    assert!(!error.is_empty() && !error.contains("s3cr3t"), "{error}");
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let server = receiver.serve(listener);
    wait_rows(&store.db(), WAIT, "delivered", |r| {
        r[0].status == "delivered"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1);
    task.stop().await;
    server.abort();
    backend.close().await;
}

#[tokio::test]
async fn receiver_that_is_down_gets_it_after_it_returns_sqlite() {
    receiver_down_then_up(false).await;
}

#[tokio::test]
async fn receiver_that_is_down_gets_it_after_it_returns_postgres() {
    receiver_down_then_up(true).await;
}

/// Enqueued by one outbox that stops before sending; a new outbox on the
/// same database (the next process) delivers it.
async fn survives_restart(postgres: bool) {
    let (store, backend) = open(postgres).await;
    let receiver = Receiver::default();
    let (url, server) = receiver.start().await;
    let first = outbox(store.db(), &webhook_yaml(&url), &Metrics::new(), fast());
    first
        .enqueue(notification("team", "k-restart"))
        .await
        .unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        receiver.requests().is_empty(),
        "nothing sent without a task"
    );
    let second = outbox(store.db(), &webhook_yaml(&url), &Metrics::new(), fast());
    let task = second.spawn();
    wait_requests(&receiver, 1, WAIT).await;
    wait_rows(&store.db(), WAIT, "delivered", |r| {
        r[0].status == "delivered"
    })
    .await;
    // Re-enqueued by the dispatcher after the restart: still once.
    second
        .enqueue(notification("team", "k-restart"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1);
    task.stop().await;
    server.abort();
    backend.close().await;
}

#[tokio::test]
async fn pending_notifications_survive_a_restart_sqlite() {
    survives_restart(false).await;
}

#[tokio::test]
async fn pending_notifications_survive_a_restart_postgres() {
    survives_restart(true).await;
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_is_recorded() {
    let (store, backend) = open(false).await;
    let receiver = Receiver::answering(&[400]);
    let (url, server) = receiver.start().await;
    let metrics = Metrics::new();
    let outbox = outbox(store.db(), &webhook_yaml(&url), &metrics, fast());
    let task = outbox.spawn();
    outbox.enqueue(notification("team", "k-400")).await.unwrap();
    wait_rows(&store.db(), WAIT, "failed", |r| r[0].status == "failed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1);
    let row = &rows(&store.db()).await[0];
    assert_eq!(row.attempts, 1);
    assert!(
        row.last_error.as_deref().unwrap().contains("400"),
        "{row:?}"
    );
    assert!(metrics.render().contains(
        "vigil_aggregator_notifications_dropped_total{receiver=\"team\",integration=\"webhook\",reason=\"rejected\"} 1"
    ));
    task.stop().await;
    server.abort();
    backend.close().await;
}

#[tokio::test]
async fn gives_up_after_max_age_counted_and_recorded() {
    let (store, backend) = open(false).await;
    let url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let metrics = Metrics::new();
    let mut config = fast();
    config.max_age = Duration::from_millis(400);
    config.max_backoff = Duration::from_millis(100);
    let outbox = outbox(store.db(), &webhook_yaml(&url), &metrics, config);
    let task = outbox.spawn();
    outbox.enqueue(notification("team", "k-old")).await.unwrap();
    wait_rows(&store.db(), WAIT, "given up", |r| r[0].status == "failed").await;
    let row = &rows(&store.db()).await[0];
    let error = row.last_error.as_deref().unwrap();
    assert!(error.starts_with("gave up after"), "{error}");
    assert!(row.attempts >= 2, "{row:?}");
    assert!(metrics.render().contains("reason=\"expired\"} 1"));
    task.stop().await;
    backend.close().await;
}

#[tokio::test]
async fn receiver_removed_from_the_config_is_dropped_with_an_error() {
    let (store, backend) = open(false).await;
    let receiver = Receiver::default();
    let (url, server) = receiver.start().await;
    let metrics = Metrics::new();
    let outbox = outbox(store.db(), &webhook_yaml(&url), &metrics, fast());
    outbox
        .enqueue(notification("team", "k-gone"))
        .await
        .unwrap();
    // A reload removes "team" before the delivery task runs.
    let other = format!("- name: other\n  webhook_configs: [{{url: '{url}/x'}}]\n");
    outbox
        .set_receivers(&receivers(&other), &GlobalConfig::default(), "")
        .unwrap();
    // And a notification for a receiver that never existed.
    outbox
        .enqueue(notification("nobody", "k-nobody"))
        .await
        .unwrap();
    let task = outbox.spawn();
    wait_rows(&store.db(), WAIT, "both failed", |r| {
        r.iter().all(|r| r.status == "failed")
    })
    .await;
    let rows = rows(&store.db()).await;
    let errors: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.last_error.as_deref())
        .collect();
    assert!(
        errors.contains(&"receiver \"team\" is not configured any more"),
        "{errors:?}"
    );
    assert!(
        errors.contains(&"receiver \"nobody\" is not configured"),
        "{errors:?}"
    );
    assert!(receiver.requests().is_empty());
    assert!(metrics.render().contains("reason=\"unknown_receiver\"} 1"));
    task.stop().await;
    server.abort();
    backend.close().await;
}

#[tokio::test]
async fn a_newer_state_of_a_group_supersedes_an_older_pending_one() {
    let (store, backend) = open(false).await;
    // The older state's first attempt fails, so it waits for a retry
    // while the newer state of the same group goes out.
    let receiver = Receiver::answering(&[503]);
    let (url, server) = receiver.start().await;
    let outbox = outbox(store.db(), &webhook_yaml(&url), &Metrics::new(), fast());
    let old = notification("team", "k-old-state");
    let mut new = notification("team", "k-new-state");
    new.alerts.truncate(1);
    outbox.enqueue(old).await.unwrap();
    outbox.enqueue(new).await.unwrap();
    let task = outbox.spawn();
    wait_rows(&store.db(), WAIT, "both done", |r| {
        r.iter().all(|r| r.status != "pending")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.requests();
    assert_eq!(
        got.len(),
        2,
        "old (503), then new; the old one is never resent"
    );
    assert_eq!(got[0].body["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(got[1].body["alerts"].as_array().unwrap().len(), 1);
    let rows = rows(&store.db()).await;
    let status = |key: &str| {
        rows.iter()
            .find(|r| r.dedup_key == key)
            .map(|r| r.status.clone())
            .unwrap()
    };
    assert_eq!(status("k-new-state"), "delivered");
    assert_eq!(status("k-old-state"), "superseded");
    task.stop().await;
    server.abort();
    backend.close().await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let (store, backend) = open(false).await;
    // Accepts connections and reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let yaml = format!(
        "- name: team\n  webhook_configs:\n    - url: http://{addr}/\n      timeout: 200ms\n"
    );
    let outbox = outbox(store.db(), &yaml, &Metrics::new(), fast());
    let task = outbox.spawn();
    let started = std::time::Instant::now();
    outbox
        .enqueue(notification("team", "k-silent"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "a timed-out attempt", |r| {
        r[0].last_error.is_some()
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    let row = &rows(&store.db()).await[0];
    assert_eq!(row.status, "pending");
    assert_eq!(row.last_error.as_deref(), Some("no answer within 200ms"));
    task.stop().await;
    silent.abort();
    backend.close().await;
}
