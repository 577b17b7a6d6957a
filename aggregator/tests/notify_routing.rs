//! Routing, grouping, inhibition, silences and maintenance end to end: a
//! real [`Dispatcher`] over a real database (SQLite and PostgreSQL), with a
//! capturing stand-in for the outbox, and the silences/maintenance API
//! through the real HTTP app. Timers are sub-second. Editing silences is in
//! `notify_routing/silence_edit.rs`.

mod common;
#[path = "notify_routing/silence_edit.rs"]
mod silence_edit;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use vigil_aggregator::alert::{Alert, AlertSink, LabelSet, Muted};
use vigil_aggregator::http::AppState;
use vigil_aggregator::notify::config::parse_file;
use vigil_aggregator::notify::dispatch::{Dispatcher, NotifyMetrics, Options};
use vigil_aggregator::notify::{Deliver, Notification};
use vigil_aggregator::query::{Engine, MemorySource};
use vigil_aggregator::store::StoreError;
use vigil_aggregator::testing::PgTestDb;

const CONFIG: &str = r#"
route:
  receiver: team
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 300ms
  repeat_interval: 1h
receivers: [{name: team}, {name: escalation}]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [host]
"#;

/// The outbox stand-in: keeps what it is given, once per dedup key.
#[derive(Default)]
struct Capture {
    sent: Mutex<Vec<Notification>>,
}

#[async_trait]
impl Deliver for Capture {
    async fn enqueue(&self, n: Notification) -> Result<(), StoreError> {
        if let Ok(mut sent) = self.sent.lock()
            && !sent.iter().any(|s| s.dedup_key == n.dedup_key)
        {
            sent.push(n);
        }
        Ok(())
    }
}

impl Capture {
    fn all(&self) -> Vec<Notification> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `n` notifications arrived (or fails after 5 s).
    async fn wait_for(&self, n: usize) -> Vec<Notification> {
        for _ in 0..100 {
            let all = self.all();
            if all.len() >= n {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} notifications, got {:#?}", self.all());
    }

    /// Asserts nothing beyond `n` arrives within three group intervals.
    async fn still(&self, n: usize) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let all = self.all();
        assert_eq!(all.len(), n, "unexpected notifications: {all:#?}");
    }
}

fn alert(name: &str, host: &str, severity: &str) -> Alert {
    let labels: LabelSet = [("alertname", name), ("host", host), ("severity", severity)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Alert {
        labels,
        annotations: LabelSet::new(),
        starts_at_ms: vigil_common::now_ms(),
        ends_at_ms: None,
        generator_url: String::new(),
        flapping: false,
    }
}

fn resolve(mut a: Alert) -> Alert {
    a.ends_at_ms = Some(vigil_common::now_ms());
    a
}

fn hosts(n: &Notification) -> Vec<String> {
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

struct Setup {
    dispatcher: Arc<Dispatcher>,
    task: tokio::task::JoinHandle<()>,
    capture: Arc<Capture>,
    metrics: NotifyMetrics,
}

fn dispatcher(state: &AppState, capture: Arc<Capture>) -> Setup {
    let plan = Arc::new(parse_file(CONFIG, true).expect("config"));
    let metrics = NotifyMetrics::default();
    let (dispatcher, task) = Dispatcher::start(
        plan,
        Options {
            resolve_timeout: Duration::from_secs(300),
            queue_capacity: 16,
        },
        state.store.db(),
        state.mutes.clone(),
        capture.clone(),
        metrics.clone(),
    );
    Setup {
        dispatcher,
        task,
        capture,
        metrics,
    }
}

async fn sqlite(dir: &std::path::Path) -> AppState {
    let store = common::sqlite(dir).await;
    common::state(store, Arc::new(MemorySource::new()), Engine::default())
}

async fn postgres(db: &PgTestDb) -> AppState {
    let store = vigil_aggregator::store::open(&db.url, std::path::Path::new("."), 2).expect("open");
    store.migrate().await.expect("migrate");
    common::state(store, Arc::new(MemorySource::new()), Engine::default())
}

async fn grouping_inhibition_and_restart(state: &AppState) {
    // Three alerts of one group -> one notification.
    let s = dispatcher(state, Arc::new(Capture::default()));
    let group = vec![
        alert("Cpu", "a", "info"),
        alert("Cpu", "b", "info"),
        alert("Cpu", "c", "info"),
    ];
    s.dispatcher.send(group[..1].to_vec());
    s.dispatcher.send(group.clone());
    let sent = s.capture.wait_for(1).await;
    assert_eq!(hosts(&sent[0]), ["a+", "b+", "c+"]);
    assert_eq!(sent[0].receiver, "team");
    s.dispatcher.send(group.clone());
    s.capture.still(1).await;
    let enqueued =
        s.metrics
            .enqueued
            .get_or_create(&vigil_aggregator::notify::dispatch::ReceiverLabel {
                receiver: "team".into(),
            });
    assert_eq!(enqueued.get(), 1);

    // Restart: a new dispatcher over the same database is fed the same
    // alerts and sends nothing (the log says they were notified).
    s.task.abort();
    let s2 = dispatcher(state, Arc::new(Capture::default()));
    s2.dispatcher.send(group.clone());
    s2.capture.still(0).await;
    // It does notify what changed.
    let mut more = group.clone();
    more.push(alert("Cpu", "d", "info"));
    s2.dispatcher.send(more);
    let sent = s2.capture.wait_for(1).await;
    assert_eq!(hosts(&sent[0]), ["a+", "b+", "c+", "d+"]);

    // Inhibition: the warning on the critical alert's host is held back
    // while the critical fires, and notified once it resolves.
    let crit = alert("Down", "x", "critical");
    let warn = alert("Slow", "x", "warning");
    s2.dispatcher.send(vec![crit.clone(), warn.clone()]);
    let sent = s2.capture.wait_for(2).await;
    assert_eq!(sent[1].group_labels["alertname"], "Down");
    s2.capture.still(2).await;
    assert!(matches!(
        s2.dispatcher.muted(&warn.labels),
        Some(Muted::Inhibited { .. })
    ));
    let inhibited = s2
        .metrics
        .suppressed
        .get_or_create(&vigil_aggregator::metrics::Reason::new("inhibition"))
        .get();
    assert!(inhibited >= 1);
    s2.dispatcher
        .send(vec![resolve(crit.clone()), warn.clone()]);
    let sent = s2.capture.wait_for(4).await;
    let mut groups: Vec<(String, Vec<String>)> = sent[2..]
        .iter()
        .map(|n| (n.group_labels["alertname"].clone(), hosts(n)))
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("Down".to_string(), vec!["x-".to_string()]),
            ("Slow".to_string(), vec!["x+".to_string()])
        ]
    );
    assert_eq!(s2.dispatcher.muted(&warn.labels), None);

    // Escalation goes to the named receiver once per alert instance.
    s2.dispatcher.escalate(warn.clone(), "escalation");
    s2.dispatcher.escalate(warn.clone(), "escalation");
    let sent = s2.capture.wait_for(5).await;
    assert!(sent[4].escalation && sent[4].receiver == "escalation");
    s2.capture.still(5).await;
    s2.task.abort();
}

#[tokio::test]
async fn grouping_inhibition_and_restart_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    grouping_inhibition_and_restart(&sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn grouping_inhibition_and_restart_on_postgres() {
    let db = PgTestDb::create().await.expect("postgres");
    grouping_inhibition_and_restart(&postgres(&db).await).await;
    db.drop_db().await;
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> common::Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, token);
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    common::send(state, req.body(body).expect("request")).await
}

fn in_minutes(m: i64) -> String {
    (vigil_common::now_ms() / 1000 + m * 60).to_string()
}

#[tokio::test]
async fn silence_mutes_until_deleted_and_maintenance_mutes_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = sqlite(dir.path()).await;
    let tokens = common::tokens(state.store.as_ref()).await;
    let s = dispatcher(&state, Arc::new(Capture::default()));

    // A silence on host a, made through the API.
    let r = call(
        &state,
        "POST",
        "/api/v1/silences",
        &tokens.write,
        Some(json!({
            "matchers": [{"name": "host", "value": "a", "isRegex": false}],
            "endsAt": in_minutes(60),
            "comment": "replacing a disk",
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let id = r.json["silenceID"].as_str().expect("id").to_string();
    let a = alert("Disk", "a", "warning");
    s.dispatcher.send(vec![a.clone()]);
    s.capture.still(0).await;
    assert!(
        matches!(s.dispatcher.muted(&a.labels), Some(Muted::Silenced { silence_ids }) if silence_ids == [id.clone()])
    );
    let r = call(
        &state,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        &tokens.write,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    s.dispatcher.send(vec![a.clone()]);
    let sent = s.capture.wait_for(1).await;
    assert_eq!(hosts(&sent[0]), ["a+"]);

    // Maintenance on host m mutes m only.
    let r = call(
        &state,
        "POST",
        "/api/v1/maintenance",
        &tokens.write,
        Some(json!({
            "host": "m", "duration": "2h", "comment": "kernel upgrade"
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["createdBy"], "write");
    let window = r.json["id"].as_str().expect("id").to_string();
    s.dispatcher.send(vec![
        a.clone(),
        alert("Mem", "m", "warning"),
        alert("Mem", "n", "warning"),
    ]);
    let sent = s.capture.wait_for(2).await;
    assert_eq!(hosts(&sent[1]), ["n+"], "m is in maintenance");
    assert_eq!(
        s.dispatcher.muted(&alert("Mem", "m", "warning").labels),
        Some(Muted::Maintenance {
            host: Some("m".into())
        })
    );
    let r = call(
        &state,
        "POST",
        &format!("/api/v1/maintenance/{window}/stop"),
        &tokens.write,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["active"], false);
    let sent = s.capture.wait_for(3).await;
    assert_eq!(
        hosts(&sent[2]),
        ["m+", "n+"],
        "m notified after maintenance"
    );

    // Global maintenance mutes everything, even new alerts.
    let r = call(
        &state,
        "POST",
        "/api/v1/maintenance",
        &tokens.write,
        Some(json!({"comment": "datacentre move"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["host"], Value::Null);
    let global = r.json["id"].as_str().expect("id").to_string();
    s.dispatcher
        .send(vec![a.clone(), alert("New", "z", "critical")]);
    s.capture.still(3).await;
    assert_eq!(
        s.dispatcher.muted(&alert("New", "z", "critical").labels),
        Some(Muted::Maintenance { host: None })
    );
    let r = call(
        &state,
        "DELETE",
        &format!("/api/v1/maintenance/{global}"),
        &tokens.write,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    s.dispatcher.send(vec![a, alert("New", "z", "critical")]);
    let sent = s.capture.wait_for(4).await;
    assert_eq!(sent[3].group_labels["alertname"], "New");
    s.task.abort();
}

async fn silences_api(state: &AppState) {
    let t = common::tokens(state.store.as_ref()).await;
    let post = |body: Value, token: &str| {
        let token = token.to_string();
        async move { call(state, "POST", "/api/v1/silences", &token, Some(body)).await }
    };
    let good = json!({
        "matchers": [{"name": "alertname", "value": "Disk.*", "isRegex": true}, {"name": "host", "value": "a", "isRegex": false, "isEqual": false}],
        "endsAt": in_minutes(30),
        "comment": "noisy",
    });
    // Read tokens cannot write.
    let r = post(good.clone(), &t.read).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    // Validation failures give the reason.
    for (body, needle) in [
        (
            json!({"matchers": [{"name": "x", "value": "(", "isRegex": true}], "endsAt": in_minutes(5), "comment": "c"}),
            "invalid regex",
        ),
        (
            json!({"matchers": [{"name": "x", "value": ".*", "isRegex": true}], "endsAt": in_minutes(5), "comment": "c"}),
            "empty string",
        ),
        (
            json!({"matchers": [], "endsAt": in_minutes(5), "comment": "c"}),
            "at least one matcher",
        ),
        (
            json!({"matchers": [{"name": "x", "value": "y", "isRegex": false}], "startsAt": in_minutes(10), "endsAt": in_minutes(5), "comment": "c"}),
            "after startsAt",
        ),
        (
            json!({"matchers": [{"name": "x", "value": "y", "isRegex": false}], "endsAt": "yesterday", "comment": "c"}),
            "endsAt",
        ),
        (
            json!({"matchers": [{"name": "x", "value": "y", "isRegex": false}], "endsAt": in_minutes(5), "comment": ""}),
            "comment",
        ),
        (json!({"matchers": "nope"}), "matchers"),
    ] {
        let r = post(body, &t.write).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{needle}: {}", r.json);
        assert!(r.json.to_string().contains(needle), "{needle}: {}", r.json);
    }
    let r = post(good.clone(), &t.write).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let id = r.json["silenceID"].as_str().expect("id").to_string();
    let pending = post(json!({
        "matchers": [{"name": "host", "value": "b", "isRegex": false}],
        "startsAt": in_minutes(10), "endsAt": in_minutes(20), "createdBy": "alice", "comment": "later",
    }), &t.admin)
    .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.json);
    let pending_id = pending.json["silenceID"].as_str().expect("id").to_string();

    let r = call(
        state,
        "GET",
        &format!("/api/v1/silences/{id}"),
        &t.read,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"]["state"], "active");
    assert_eq!(r.json["createdBy"], "write", "the token's name by default");
    assert_eq!(r.json["matchers"][1]["isEqual"], false);
    let r = call(
        state,
        "GET",
        "/api/v1/silences?state=pending",
        &t.read,
        None,
    )
    .await;
    assert_eq!(r.json.as_array().map(Vec::len), Some(1), "{}", r.json);
    assert_eq!(r.json[0]["createdBy"], "alice");
    let r = call(
        state,
        "GET",
        "/api/v1/silences?state=sleeping",
        &t.read,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for (method, uri) in [
        ("GET", "/api/v1/silences/nope"),
        ("DELETE", "/api/v1/silences/nope"),
    ] {
        let r = call(state, method, uri, &t.write, None).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            r.json
        );
    }
    let r = call(
        state,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        &t.read,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for sid in [&id, &pending_id] {
        let r = call(
            state,
            "DELETE",
            &format!("/api/v1/silences/{sid}"),
            &t.write,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["status"]["state"], "expired");
    }
    // Expired silences stay listed (history) and survive a reload.
    let r = call(state, "GET", "/api/v1/silences", &t.read, None).await;
    assert_eq!(r.json.as_array().map(Vec::len), Some(2), "{}", r.json);
    let fresh = vigil_aggregator::testing::mutes(state.store.as_ref());
    fresh.load().await.expect("load");
    let reloaded = fresh.silences.get(&id).expect("persisted");
    assert_eq!(reloaded.comment, "noisy");
    assert!(reloaded.ends_at_ms <= vigil_common::now_ms());

    // Maintenance API errors.
    let r = call(
        state,
        "POST",
        "/api/v1/maintenance",
        &t.read,
        Some(json!({"comment": "x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for body in [
        json!({"duration": "soon"}),
        json!({"duration": "1h", "until": in_minutes(5)}),
        json!({"until": "0"}),
        json!({"host": " "}),
        json!({"hots": "a"}),
        json!({"host": "h".repeat(5000)}),
    ] {
        let r = call(
            state,
            "POST",
            "/api/v1/maintenance",
            &t.write,
            Some(body.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json);
    }
    for (method, uri) in [
        ("POST", "/api/v1/maintenance/nope/stop"),
        ("DELETE", "/api/v1/maintenance/nope"),
    ] {
        let r = call(state, method, uri, &t.write, None).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            r.json
        );
    }
    let r = call(
        state,
        "POST",
        "/api/v1/maintenance",
        &t.write,
        Some(json!({"host": "db-1", "until": in_minutes(30), "comment": "vacuum"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = call(state, "GET", "/api/v1/maintenance", &t.read, None).await;
    assert_eq!(r.json["maintenance"][0]["host"], "db-1", "{}", r.json);
    assert_eq!(r.json["maintenance"][0]["active"], true);
    assert_eq!(r.json["maintenance"][0]["comment"], "vacuum");

    // Retention: expired silences go after 5 days, ended windows after 30;
    // nothing active or recent is collected.
    let now = vigil_common::now_ms();
    let day = 86_400_000;
    assert_eq!(state.mutes.silences.gc(now + 4 * day).await.expect("gc"), 0);
    assert_eq!(state.mutes.silences.gc(now + 6 * day).await.expect("gc"), 2);
    assert!(state.mutes.silences.list().is_empty());
    let fresh = vigil_aggregator::testing::mutes(state.store.as_ref());
    fresh.load().await.expect("load");
    assert!(
        fresh.silences.list().is_empty(),
        "deleted from the database too"
    );
    assert_eq!(
        state
            .mutes
            .maintenance
            .gc(now + 29 * day)
            .await
            .expect("gc"),
        0
    );
    assert_eq!(
        state
            .mutes
            .maintenance
            .gc(now + 31 * day)
            .await
            .expect("gc"),
        1
    );
    assert!(state.mutes.maintenance.list().is_empty());
}

#[tokio::test]
async fn silences_and_maintenance_api_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    silences_api(&sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn silences_and_maintenance_api_on_postgres() {
    let db = PgTestDb::create().await.expect("postgres");
    silences_api(&postgres(&db).await).await;
    db.drop_db().await;
}

/// The real aggregator with `[notify]`: its sink is the dispatcher, which
/// sees silences made through the HTTP API and hands notifications on.
#[tokio::test]
async fn the_server_wires_the_dispatcher_when_notify_is_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    vigil_certs::create_ca(d, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(d, d, &["localhost".into()], 30, false).expect("server");
    std::fs::write(d.join("notify.yml"), CONFIG).expect("write");
    let path = d.join("aggregator.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"127.0.0.1:0\"\n[quic]\nlisten = \"127.0.0.1:0\"\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n[notify]\nconfig_file = \"notify.yml\"\n",
    )
    .expect("write");
    let loaded = vigil_aggregator::Config::load(&path).expect("valid config");
    let running = vigil_aggregator::start(loaded).await.expect("starts");
    assert!(running.wait_store_ready(Duration::from_secs(10)).await);
    let tokens = common::tokens(running.state.store.as_ref()).await;
    let r = call(
        &running.state,
        "POST",
        "/api/v1/silences",
        &tokens.write,
        Some(json!({
            "matchers": [{"name": "host", "value": "quiet", "isRegex": false}],
            "endsAt": in_minutes(10), "comment": "test",
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let quiet = alert("X", "quiet", "info");
    assert!(matches!(
        running.sink.muted(&quiet.labels),
        Some(Muted::Silenced { .. })
    ));
    running.sink.send(vec![alert("Y", "loud", "info")]);
    let metrics = running.state.metrics.clone();
    let mut rendered = String::new();
    for _ in 0..100 {
        rendered = metrics.render();
        if rendered.contains("vigil_aggregator_notifications_enqueued_total{receiver=\"team\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rendered.contains("vigil_aggregator_notifications_enqueued_total{receiver=\"team\"} 1"),
        "{rendered}"
    );
    running.shutdown().await;
}

/// A silence that ends on its own lets the alert through afterwards.
#[tokio::test]
async fn a_silence_that_expires_lets_the_alert_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = sqlite(dir.path()).await;
    let tokens = common::tokens(state.store.as_ref()).await;
    let s = dispatcher(&state, Arc::new(Capture::default()));
    let ends = format!("{:.3}", (vigil_common::now_ms() + 1500) as f64 / 1000.0);
    let r = call(
        &state,
        "POST",
        "/api/v1/silences",
        &tokens.write,
        Some(json!({
            "matchers": [{"name": "alertname", "value": "Brief", "isRegex": false}],
            "endsAt": ends, "comment": "short",
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let a = alert("Brief", "h", "info");
    s.dispatcher.send(vec![a.clone()]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(s.capture.all().is_empty(), "silenced");
    let sent = s.capture.wait_for(1).await;
    assert_eq!(hosts(&sent[0]), ["h+"]);
    assert_eq!(s.dispatcher.muted(&a.labels), None);
    s.task.abort();
}

/// Silences and maintenance whose database is down answer 503 (the
/// detail stays in the log), never 500.
#[tokio::test]
async fn a_dead_database_gives_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = sqlite(dir.path()).await;
    let tokens = common::tokens(state.store.as_ref()).await;
    // Nothing listens on port 1.
    let dead = vigil_aggregator::store::open(
        "postgres://postgres@127.0.0.1:1/x",
        std::path::Path::new("."),
        1,
    )
    .expect("lazy");
    state.mutes = vigil_aggregator::testing::mutes(dead.as_ref());
    let silence = json!({
        "matchers": [{"name": "host", "value": "a", "isRegex": false}],
        "endsAt": in_minutes(5), "comment": "c",
    });
    // Concurrently: each waits for the pool's acquire timeout.
    let mut calls = tokio::task::JoinSet::new();
    for (method, uri, body) in [
        ("GET", "/api/v1/silences", None),
        ("GET", "/api/v1/silences/x", None),
        ("POST", "/api/v1/silences", Some(silence)),
        ("DELETE", "/api/v1/silences/x", None),
        ("GET", "/api/v1/maintenance", None),
        ("POST", "/api/v1/maintenance", Some(json!({"comment": "c"}))),
        ("POST", "/api/v1/maintenance/x/stop", None),
    ] {
        let (state, token) = (state.clone(), tokens.write.clone());
        calls.spawn(async move { (method, uri, call(&state, method, uri, &token, body).await) });
    }
    while let Some(done) = calls.join_next().await {
        let (method, uri, r) = done.expect("call");
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}: {}",
            r.json
        );
        assert_eq!(r.json["errorType"], "unavailable");
    }
}
