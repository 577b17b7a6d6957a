//! Rule evaluation end to end through the real app: samples written to the
//! real store (SQLite, and PostgreSQL where it matters for state), rounds
//! run "at" chosen times (`Evaluator::round_at`), alerts captured by a sink,
//! the alerts / history / ack / reports / reload / Prometheus rules APIs
//! driven over HTTP (`tower::ServiceExt::oneshot`).

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use vigil_aggregator::alert::config::{AlertingConfig, EscalationConfig};
use vigil_aggregator::alert::eval::Evaluator;
use vigil_aggregator::alert::{Alert, AlertSink, LabelSet, Muted};
use vigil_aggregator::http::AppState;
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::query::Engine;
use vigil_aggregator::store::{self, Store};
use vigil_aggregator::testing::PgTestDb;
use vigil_common::wire::PROTOCOL_VERSION;
use vigil_common::{BatchHeader, Label, Point, Series};

use common::{Reply, Tokens, send};

/// Records what the evaluator hands over.
#[derive(Default)]
struct Capture {
    sent: Mutex<Vec<Vec<Alert>>>,
    escalated: Mutex<Vec<(Alert, String)>>,
}

impl AlertSink for Capture {
    fn send(&self, alerts: Vec<Alert>) {
        self.sent.lock().expect("lock").push(alerts);
    }
    fn escalate(&self, alert: Alert, receiver: &str) {
        self.escalated
            .lock()
            .expect("lock")
            .push((alert, receiver.to_string()));
    }
    fn muted(&self, labels: &LabelSet) -> Option<Muted> {
        (labels.get("host").map(String::as_str) == Some("muted-host")).then(|| Muted::Maintenance {
            host: Some("muted-host".into()),
        })
    }
}

impl Capture {
    /// Every alert sent so far, flattened, and clears.
    fn take(&self) -> Vec<Alert> {
        std::mem::take(&mut *self.sent.lock().expect("lock"))
            .into_iter()
            .flatten()
            .collect()
    }
}

/// A time well after the store's start (ms), rounded to a minute.
fn t0() -> i64 {
    (vigil_common::now_ms() / 60_000) * 60_000 + 60_000
}

const S: i64 = 1000;

struct Harness {
    state: AppState,
    sink: Arc<Capture>,
    inner: Arc<dyn Store>,
    dir: tempfile::TempDir,
    config: AlertingConfig,
}

fn config_with_rules() -> AlertingConfig {
    AlertingConfig {
        rule_files: vec!["rules.yml".into()],
        ..AlertingConfig::default()
    }
}

impl Harness {
    /// A fresh evaluator (and app state) over `inner`, as a restarted
    /// aggregator would build it.
    async fn start(
        inner: Arc<dyn Store>,
        dir: tempfile::TempDir,
        config: AlertingConfig,
    ) -> Harness {
        let metrics = Arc::new(Metrics::new());
        let layers = store::layered(
            inner.clone(),
            &store::config::StorageConfig::default(),
            metrics.storage.clone(),
        );
        layers.store.migrate().await.expect("migrate");
        let engine = Arc::new(Engine::default());
        let sink = Arc::new(Capture::default());
        let alerting = Arc::new(Evaluator::new(
            layers.store.clone(),
            layers.source.clone(),
            engine.clone(),
            sink.clone(),
            metrics.alerting.clone(),
            config.clone(),
            dir.path().to_path_buf(),
        ));
        alerting.reload().await.expect("rules load");
        let state = AppState {
            mutes: vigil_aggregator::testing::mutes(layers.store.as_ref()),
            store: layers.store,
            metrics,
            store_ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            source: layers.source,
            engine,
            alerting,
        };
        Harness {
            state,
            sink,
            inner,
            dir,
            config,
        }
    }

    async fn sqlite(rules: &str, config: AlertingConfig) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("rules.yml"), rules).expect("rules");
        let inner = store::open("sqlite:t.db", dir.path(), 2).expect("open");
        Harness::start(inner, dir, config).await
    }

    async fn postgres(db: &PgTestDb, rules: &str, config: AlertingConfig) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("rules.yml"), rules).expect("rules");
        let inner = store::open(&db.url, Path::new("."), 4).expect("open");
        Harness::start(inner, dir, config).await
    }

    /// The same database and rule files, a new evaluator: a restart.
    async fn restart(self) -> Harness {
        let Harness {
            inner, dir, config, ..
        } = self;
        Harness::start(inner, dir, config).await
    }

    async fn write(&self, name: &str, host: &str, t: i64, v: f64) {
        self.state
            .store
            .write_series(&[Series::new(
                name,
                vec![Label::new("host", host)],
                vec![Point {
                    timestamp_ms: t,
                    value: v,
                }],
            )])
            .await
            .expect("write");
    }

    async fn round(&self, t: i64) {
        self.state.alerting.round_at(t).await.expect("round");
    }

    async fn tokens(&self) -> Tokens {
        common::tokens(self.state.store.as_ref()).await
    }

    async fn get(&self, uri: &str, token: &str) -> Reply {
        common::get(&self.state, uri, Some(token)).await
    }

    async fn post(&self, uri: &str, token: &str, body: &str) -> Reply {
        let req = Request::post(uri)
            .header(header::AUTHORIZATION, token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        send(&self.state, req).await
    }

    /// Events of the history API (oldest first) as `event:host`.
    async fn events(&self, token: &str, query: &str) -> Vec<String> {
        let r = self
            .get(&format!("/api/v1/alerts/history?limit=1000&{query}"), token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let mut v: Vec<String> = r.json["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["event"].as_str().unwrap_or(""),
                    e["host"].as_str().unwrap_or("")
                )
            })
            .collect();
        v.reverse();
        v
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

async fn pg() -> PgTestDb {
    PgTestDb::create().await.unwrap_or_else(|e| panic!("{e}"))
}

const HIGH_CPU: &str = r#"
groups:
  - name: host
    interval: 15s
    rules:
      - alert: HighCpu
        expr: cpu > 90
        for: 30s
        labels:
          severity: critical
          team: platform
        annotations:
          summary: "CPU on {{ $labels.host }} at {{ $value }}"
"#;

async fn lifecycle(h: Harness) {
    let tokens = h.tokens().await;
    let t = t0();
    h.write("cpu", "a", t, 95.0).await;
    h.round(t).await;
    assert!(h.sink.take().is_empty(), "a pending alert is not sent");
    let r = h.get("/api/v1/alerts", &tokens.read).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json["alerts"].as_array().expect("alerts");
    assert_eq!(list.len(), 1, "{}", r.json);
    assert_eq!(list[0]["state"], "pending");
    assert_eq!(list[0]["annotations"]["summary"], "CPU on a at 95");
    assert_eq!(list[0]["labels"]["alertname"], "HighCpu");

    h.write("cpu", "a", t + 15 * S, 96.0).await;
    h.round(t + 15 * S).await;
    assert!(
        h.sink.take().is_empty(),
        "still pending before `for` elapsed"
    );
    h.write("cpu", "a", t + 30 * S, 97.0).await;
    h.round(t + 30 * S).await;
    let sent = h.sink.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].starts_at_ms, t + 30 * S);
    assert_eq!(sent[0].ends_at_ms, None);
    assert_eq!(sent[0].labels["severity"], "critical");
    assert!(sent[0].generator_url.contains("HighCpu"));

    // Firing and unchanged: not re-sent before resend_delay (1m).
    h.write("cpu", "a", t + 45 * S, 97.0).await;
    h.round(t + 45 * S).await;
    assert!(h.sink.take().is_empty());
    h.write("cpu", "a", t + 90 * S, 97.0).await;
    h.round(t + 90 * S).await;
    assert_eq!(h.sink.take().len(), 1, "re-sent after resend_delay");

    h.write("cpu", "a", t + 105 * S, 50.0).await;
    h.round(t + 105 * S).await;
    let sent = h.sink.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].ends_at_ms, Some(t + 105 * S));
    assert_eq!(sent[0].starts_at_ms, t + 30 * S);
    let r = h.get("/api/v1/alerts", &tokens.read).await;
    assert_eq!(r.json["alerts"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        h.events(&tokens.read, "rule=HighCpu").await,
        ["pending:a", "firing:a", "resolved:a"]
    );
}

#[tokio::test]
async fn pending_firing_resolved_on_sqlite() {
    lifecycle(Harness::sqlite(HIGH_CPU, config_with_rules()).await).await;
}

#[tokio::test]
async fn pending_firing_resolved_on_postgres() {
    let db = pg().await;
    lifecycle(Harness::postgres(&db, HIGH_CPU, config_with_rules()).await).await;
    db.drop_db().await;
}

async fn restart_mid_for(h: Harness) {
    let t = t0();
    h.write("cpu", "a", t, 95.0).await;
    h.round(t).await;
    let h = h.restart().await;
    h.write("cpu", "a", t + 15 * S, 95.0).await;
    h.round(t + 15 * S).await;
    let r = h.get("/api/v1/alerts", &h.tokens().await.read).await;
    assert_eq!(r.json["alerts"][0]["state"], "pending", "{}", r.json);
    assert_eq!(
        r.json["alerts"][0]["active_at"],
        rfc3339(t),
        "the `for` timer kept its start"
    );
    h.write("cpu", "a", t + 30 * S, 95.0).await;
    h.round(t + 30 * S).await;
    let sent = h.sink.take();
    assert_eq!(sent.len(), 1, "fires at active_at + for, not later");
    assert_eq!(sent[0].starts_at_ms, t + 30 * S);

    // Firing across a restart: sent again with the same starts_at, and no
    // new transition is recorded.
    let h = h.restart().await;
    h.write("cpu", "a", t + 45 * S, 95.0).await;
    h.round(t + 45 * S).await;
    let sent = h.sink.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].starts_at_ms,
        t + 30 * S,
        "same alert for the dispatcher"
    );
    let tokens = h.tokens().await;
    assert_eq!(
        h.events(&tokens.read, "").await,
        ["pending:a", "firing:a"],
        "nothing re-fired"
    );
}

#[tokio::test]
async fn restart_keeps_timers_and_does_not_refire_on_sqlite() {
    restart_mid_for(Harness::sqlite(HIGH_CPU, config_with_rules()).await).await;
}

#[tokio::test]
async fn restart_keeps_timers_and_does_not_refire_on_postgres() {
    let db = pg().await;
    restart_mid_for(Harness::postgres(&db, HIGH_CPU, config_with_rules()).await).await;
    db.drop_db().await;
}

const HYSTERESIS: &str = r#"
groups:
  - name: host
    rules:
      - alert: HighCpu
        expr: cpu > 90
        labels: {severity: warning}
        vigil:
          recover: cpu < 80
"#;

#[tokio::test]
async fn hysteresis_fires_above_90_and_resolves_only_below_80() {
    let h = Harness::sqlite(HYSTERESIS, config_with_rules()).await;
    let t = t0();
    for (i, v) in [95.0, 85.0, 88.0, 79.0].into_iter().enumerate() {
        let at = t + i as i64 * 15 * S;
        h.write("cpu", "a", at, v).await;
        h.round(at).await;
        let firing = h.state.alerting.active().len();
        assert_eq!(firing, usize::from(v >= 80.0), "at {v}");
    }
    let sent = h.sink.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].ends_at_ms, Some(t + 45 * S));
    // A firing alert whose series disappears resolves (absence is the
    // dead-man's job).
    let t2 = t + 3_600 * S;
    h.write("cpu", "b", t2, 95.0).await;
    h.round(t2).await;
    assert_eq!(h.state.alerting.active().len(), 1);
    h.round(t2 + 600 * S).await;
    assert!(h.state.alerting.active().is_empty());
}

const FLAPPY: &str = r#"
groups:
  - name: host
    rules:
      - alert: Flappy
        expr: cpu > 90
        vigil:
          flap: {window: 8, high: 0.5, low: 0.25}
"#;

#[tokio::test]
async fn a_flapping_alert_notifies_once_as_flapping() {
    // No periodic re-sends in the way: every send here is a notification.
    let config = AlertingConfig {
        resend_delay: std::time::Duration::from_secs(3600),
        ..config_with_rules()
    };
    let h = Harness::sqlite(FLAPPY, config).await;
    let tokens = h.tokens().await;
    let t = t0();
    let mut at = t;
    for i in 0..16 {
        h.write("cpu", "a", at, if i % 2 == 0 { 95.0 } else { 10.0 })
            .await;
        h.round(at).await;
        at += 15 * S;
    }
    let sent = h.sink.take();
    let flapping: Vec<&Alert> = sent.iter().filter(|a| a.flapping).collect();
    assert_eq!(flapping.len(), 1, "one flapping notification: {sent:?}");
    // Only the flips before the window (8 evaluations) filled went out on
    // their own; none after detection.
    assert_eq!(sent.len(), 8, "{sent:?}");
    assert!(sent[7].flapping);
    // It settles (steadily firing): the current state is sent once.
    for _ in 0..10 {
        h.write("cpu", "a", at, 95.0).await;
        h.round(at).await;
        at += 15 * S;
    }
    let sent = h.sink.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(!sent[0].flapping);
    assert_eq!(sent[0].ends_at_ms, None);
    let events = h.events(&tokens.read, "event=flapping_start").await;
    assert_eq!(events.len(), 1);
    assert_eq!(h.events(&tokens.read, "event=flapping_stop").await.len(), 1);
}

const RECORDING: &str = r#"
groups:
  - name: rec
    rules:
      - record: job:cpu:max
        expr: max(cpu)
        labels: {source: rule}
      - alert: MaxCpuHigh
        expr: job:cpu:max > 90
      - alert: Broken
        expr: '{__name__=~"cpu|mem"}'
      - alert: AfterBroken
        expr: cpu > 0
"#;

const RECORD_ONLY: &str = r#"
groups:
  - name: rec
    rules:
      - record: job:cpu:max
        expr: max(cpu)
"#;

/// Samples of `job:cpu:max` in the database itself (not the head).
async fn recorded_in_db(inner: &dyn Store) -> Vec<(i64, f64)> {
    let name = promql_parser::label::Matcher::new(
        promql_parser::label::MatchOp::Equal,
        "__name__",
        "job:cpu:max",
    );
    let ids: Vec<i64> = inner
        .select_series(&[name])
        .await
        .expect("select")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut samples: Vec<(i64, f64)> = inner
        .read_samples(&ids, 0, i64::MAX, 1000)
        .await
        .expect("read")
        .into_iter()
        .map(|(_, t, v)| (t, v))
        .collect();
    samples.sort_by_key(|&(t, _)| t);
    samples
}

/// A recording rule's output is queryable when the round returns, while
/// its database write happens behind the round: with the database's one
/// writer connection held, the round still finishes and the query sees the
/// new value; once the writer is free the sample is in the database.
#[tokio::test]
async fn recording_output_reaches_the_database_behind_the_round() {
    let h = Harness::sqlite(RECORD_ONLY, config_with_rules()).await;
    let tokens = h.tokens().await;
    let t = t0();
    h.write("cpu", "a", t, 80.0).await;
    // A new output series is written before the round returns (so the
    // series index knows it).
    h.round(t).await;
    assert_eq!(recorded_in_db(h.inner.as_ref()).await, vec![(t, 80.0)]);
    h.write("cpu", "a", t + 60 * S, 70.0).await;

    let store::Db::Sqlite { writer, .. } = h.inner.db() else {
        panic!("a SQLite store");
    };
    let mut held = writer.acquire().await.expect("the writer connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *held)
        .await
        .expect("take the write lock");
    tokio::time::timeout(std::time::Duration::from_secs(5), h.round(t + 60 * S))
        .await
        .expect("the round waited for the database");
    let q = common::query_string(&[
        ("query", "job:cpu:max"),
        ("time", &((t + 60 * S) / 1000).to_string()),
    ]);
    let r = h
        .get(&format!("/prometheus/api/v1/query?{q}"), &tokens.read)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["data"]["result"][0]["value"][1], "70", "{}", r.json);
    assert_eq!(
        recorded_in_db(h.inner.as_ref()).await,
        vec![(t, 80.0)],
        "not written while the writer is held"
    );

    sqlx::query("ROLLBACK")
        .execute(&mut *held)
        .await
        .expect("release the write lock");
    drop(held);
    tokio::time::timeout(std::time::Duration::from_secs(10), h.state.store.flush())
        .await
        .expect("flushed in time")
        .expect("flush");
    assert_eq!(
        recorded_in_db(h.inner.as_ref()).await,
        vec![(t, 80.0), (t + 60 * S, 70.0)]
    );
}

#[tokio::test]
async fn recording_rules_are_queryable_and_a_failing_rule_stops_nothing() {
    let h = Harness::sqlite(RECORDING, config_with_rules()).await;
    let tokens = h.tokens().await;
    let t = t0();
    h.write("cpu", "a", t, 80.0).await;
    h.write("cpu", "b", t, 95.0).await;
    h.write("mem", "b", t, 1.0).await;
    h.round(t).await;
    let q = common::query_string(&[("query", "job:cpu:max"), ("time", &(t / 1000).to_string())]);
    let r = h
        .get(&format!("/prometheus/api/v1/query?{q}"), &tokens.read)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let result = &r.json["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{}", r.json);
    assert_eq!(result[0]["value"][1], "95");
    assert_eq!(result[0]["metric"]["source"], "rule");
    // The next rule in the group saw it at once.
    let names: Vec<String> = h
        .state
        .alerting
        .active()
        .iter()
        .map(|a| a.rule.clone())
        .collect();
    assert!(names.contains(&"MaxCpuHigh".to_string()), "{names:?}");
    assert!(names.contains(&"AfterBroken".to_string()), "{names:?}");
    // The broken rule shows its error in the rules API, and is counted.
    let r = h.get("/prometheus/api/v1/rules", &tokens.read).await;
    assert_eq!(r.status, StatusCode::OK);
    let rules = &r.json["data"]["groups"][0]["rules"];
    assert_eq!(rules[0]["type"], "recording");
    assert_eq!(rules[0]["health"], "ok");
    assert_eq!(rules[1]["state"], "firing");
    assert_eq!(rules[1]["alerts"][0]["value"], "9.5e+01");
    assert_eq!(rules[2]["health"], "err");
    assert!(
        rules[2]["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("same labelset")
    );
    let metrics = h.state.metrics.render();
    assert!(
        metrics.contains("vigil_aggregator_rule_evaluation_failures_total{group=\"rec\"} 1"),
        "{metrics}"
    );
    let r = h
        .get("/prometheus/api/v1/rules?type=record", &tokens.read)
        .await;
    assert_eq!(
        r.json["data"]["groups"][0]["rules"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let r = h
        .get("/prometheus/api/v1/rules?type=nope", &tokens.read)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h.get("/prometheus/api/v1/alerts", &tokens.read).await;
    assert_eq!(
        r.json["data"]["alerts"].as_array().map(Vec::len),
        Some(3),
        "{}",
        r.json
    );
}

fn header(agent: &str, host: &str) -> BatchHeader {
    BatchHeader {
        protocol_version: PROTOCOL_VERSION,
        agent_id: agent.into(),
        boot_id: [1; 16],
        sequence: 1,
        created_at_ms: 0,
        host: host.into(),
        roles: vec![],
    }
}

#[tokio::test]
async fn the_dead_man_fires_for_a_silent_host_only() {
    let h = Harness::sqlite("groups: []\n", config_with_rules()).await;
    let now = vigil_common::now_ms();
    // "slow" reports a 60 s interval (silent after 3 min); "fast" reports
    // none (default 10 s: silent after 30 s).
    let gauge = Series::new(
        "vigil_agent_interval_seconds",
        vec![Label::new("host", "slow")],
        vec![Point {
            timestamp_ms: now,
            value: 60.0,
        }],
    );
    h.state
        .store
        .commit_batch(&header("slow", "slow"), &[gauge])
        .await
        .expect("commit");
    let up = Series::new(
        "up",
        vec![Label::new("host", "fast")],
        vec![Point {
            timestamp_ms: now,
            value: 1.0,
        }],
    );
    h.state
        .store
        .commit_batch(&header("fast", "fast"), &[up])
        .await
        .expect("commit");

    h.round(now + 5 * S).await;
    assert!(h.state.alerting.active().is_empty(), "both live");
    h.round(now + 60 * S).await;
    let active = h.state.alerting.active();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].labels["alertname"], "VigilAgentDown");
    assert_eq!(active[0].labels["host"], "fast");
    assert_eq!(active[0].labels["severity"], "critical");
    assert_eq!(active[0].labels["team"], "platform");
    assert!(active[0].annotations["runbook_url"].ends_with("docs/runbooks/VigilAgentDown.md"));
    assert_eq!(h.sink.take().len(), 1);
    h.round(now + 200 * S).await;
    assert_eq!(
        h.state.alerting.active().len(),
        2,
        "slow is silent for > 3 x 60 s"
    );
    let hosts: Vec<String> = h
        .sink
        .take()
        .iter()
        .map(|a| a.labels["host"].clone())
        .collect();
    assert!(hosts.contains(&"slow".to_string()), "{hosts:?}");

    // Restarted aggregator: the hosts already down stay down (restored),
    // and a host that went quiet while the aggregator was down gets the
    // grace of one threshold from the first round, not an instant page.
    let up = Series::new(
        "up",
        vec![Label::new("host", "third")],
        vec![Point {
            timestamp_ms: now,
            value: 1.0,
        }],
    );
    h.state
        .store
        .commit_batch(&header("third", "third"), &[up])
        .await
        .expect("commit");
    let h = h.restart().await;
    h.round(now + 1000 * S).await;
    let mut hosts: Vec<String> = h
        .state
        .alerting
        .active()
        .iter()
        .map(|a| a.labels["host"].clone())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["fast", "slow"]);
    h.round(now + 1031 * S).await;
    assert_eq!(h.state.alerting.active().len(), 3);
}

#[tokio::test]
async fn reload_swaps_good_rules_and_rejects_bad_ones_with_every_error() {
    let h = Harness::sqlite(HIGH_CPU, config_with_rules()).await;
    let tokens = h.tokens().await;
    let t = t0();
    h.write("cpu", "a", t, 95.0).await;
    h.round(t).await;
    // Read and write tokens may not reload.
    for token in [&tokens.read, &tokens.write] {
        let r = h.post("/api/v1/rules/reload", token, "").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    // Broken: two problems, both reported; the old rules keep running.
    std::fs::write(
        h.dir.path().join("rules.yml"),
        "groups:\n- name: g\n  rules:\n  - alert: A\n    record: b\n    expr: up\n  - expr: up\n",
    )
    .expect("write");
    let r = h.post("/api/v1/rules/reload", &tokens.admin, "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(
        r.json["errors"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.json
    );
    h.write("cpu", "a", t + 30 * S, 95.0).await;
    h.round(t + 30 * S).await;
    assert_eq!(h.sink.take().len(), 1, "the old rule still fires");
    // Good: swapped, the alert's state kept (same rule name).
    std::fs::write(
        h.dir.path().join("rules.yml"),
        HIGH_CPU.replace("interval: 15s", "interval: 30s"),
    )
    .expect("write");
    let r = h.post("/api/v1/rules/reload", &tokens.admin, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["rules"], 1);
    h.write("cpu", "a", t + 45 * S, 95.0).await;
    h.round(t + 45 * S).await;
    let active = h.state.alerting.active();
    assert_eq!(
        active[0].fired_at_ms,
        Some(t + 30 * S),
        "state kept across reload"
    );
    let r = h.get("/prometheus/api/v1/rules", &tokens.read).await;
    assert_eq!(r.json["data"]["groups"][0]["interval"], 30.0);
    // A rule that goes away resolves its alerts.
    std::fs::write(h.dir.path().join("rules.yml"), "groups: []\n").expect("write");
    assert_eq!(
        h.post("/api/v1/rules/reload", &tokens.admin, "")
            .await
            .status,
        StatusCode::OK
    );
    h.round(t + 60 * S).await;
    let sent = h.sink.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].ends_at_ms, Some(t + 60 * S));
    // A missing rule file is an error too.
    std::fs::remove_file(h.dir.path().join("rules.yml")).expect("rm");
    let r = h.post("/api/v1/rules/reload", &tokens.admin, "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or("")
            .contains("no such file")
    );
}

const ACKABLE: &str = r#"
groups:
  - name: host
    rules:
      - alert: HighCpu
        expr: cpu > 90
        labels: {severity: critical, team: platform}
      - alert: SlowCpu
        expr: cpu > 90
        for: 10m
        labels: {severity: warning, team: ml-ops}
"#;

#[tokio::test]
async fn ack_escalation_and_errors() {
    let mut config = config_with_rules();
    config.escalation = Some(EscalationConfig {
        after: std::time::Duration::from_secs(60),
        receiver: "oncall".into(),
        severities: vec!["critical".into()],
    });
    let h = Harness::sqlite(ACKABLE, config).await;
    let tokens = h.tokens().await;
    let t = t0();
    h.write("cpu", "a", t, 95.0).await;
    h.write("cpu", "b", t, 95.0).await;
    h.write("cpu", "muted-host", t, 95.0).await;
    h.round(t).await;
    let r = h
        .get("/api/v1/alerts?state=firing&host=a", &tokens.read)
        .await;
    let list = r.json["alerts"].as_array().expect("alerts").clone();
    assert_eq!(list.len(), 1, "{}", r.json);
    let id = list[0]["id"].as_str().expect("id").to_string();
    assert_eq!(list[0]["muted"], Value::Null);
    let r = h
        .get(
            "/api/v1/alerts?host=muted-host&severity=critical",
            &tokens.read,
        )
        .await;
    assert_eq!(
        r.json["alerts"][0]["muted"]["kind"], "maintenance",
        "{}",
        r.json
    );
    let r = h.get("/api/v1/alerts?team=ml-ops", &tokens.read).await;
    assert!(
        r.json["alerts"]
            .as_array()
            .expect("a")
            .iter()
            .all(|a| a["state"] == "pending")
    );
    assert_eq!(r.json["alerts"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        h.get("/api/v1/alerts?state=bogus", &tokens.read)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Read token: 403. Unknown id: 404. Pending: 409.
    let ack = format!("/api/v1/alerts/{id}/ack");
    assert_eq!(
        h.post(&ack, &tokens.read, "{}").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.post("/api/v1/alerts/0123456789abcdef/ack", &tokens.write, "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.post("/api/v1/alerts/not-hex/ack", &tokens.write, "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let pending = h
        .get("/api/v1/alerts?state=pending&host=a", &tokens.read)
        .await;
    let pending_id = pending.json["alerts"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = h
        .post(
            &format!("/api/v1/alerts/{pending_id}/ack"),
            &tokens.write,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(
        h.post(&ack, &tokens.write, "{\"comment\": 1}").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.post(&ack, &tokens.write, "{\"note\": \"x\"}")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let r = h
        .post(&ack, &tokens.write, "{\"comment\": \"looking\"}")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["ack"]["by"], "write");
    assert_eq!(r.json["ack"]["comment"], "looking");
    assert_eq!(
        h.post(&ack, &tokens.admin, "").await.status,
        StatusCode::CONFLICT
    );
    let r = h
        .get("/api/v1/alerts?host=a&state=firing", &tokens.read)
        .await;
    assert_eq!(r.json["alerts"][0]["ack"]["by"], "write");

    // Escalation: b (critical, unacked) once after 60 s; a is acked; the
    // muted host's alert is escalated too (the dispatcher decides muting).
    for step in [30, 60, 75] {
        for host in ["a", "b", "muted-host"] {
            h.write("cpu", host, t + step * S, 95.0).await;
        }
        h.round(t + step * S).await;
    }
    let escalated = h.sink.escalated.lock().expect("lock").clone();
    let hosts: Vec<&str> = escalated
        .iter()
        .map(|(a, _)| a.labels["host"].as_str())
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert!(hosts.contains(&"b") && hosts.contains(&"muted-host"));
    assert!(escalated.iter().all(|(_, r)| r == "oncall"));

    // The ack survives a restart.
    let h = h.restart().await;
    h.write("cpu", "a", t + 90 * S, 95.0).await;
    h.round(t + 90 * S).await;
    let r = h
        .get("/api/v1/alerts?host=a&state=firing", &tokens.read)
        .await;
    assert_eq!(
        r.json["alerts"][0]["ack"]["comment"], "looking",
        "{}",
        r.json
    );
    assert!(
        h.sink.escalated.lock().expect("lock").is_empty(),
        "not escalated again"
    );
    let events = h.events(&tokens.read, "host=a&rule=HighCpu").await;
    assert_eq!(events, ["pending:a", "firing:a", "acknowledged:a"]);
    assert_eq!(h.events(&tokens.read, "event=escalated").await.len(), 2);
}

async fn history_and_reports(h: Harness) {
    let tokens = h.tokens().await;
    let t = t0();
    let ev = &h.state.alerting;
    // Three episodes with known timings: a (critical/platform) fires at t,
    // acked at +60 s, resolved at +300 s; b (same rule) fires at t, resolved
    // at +120 s without ack; c fires at t and stays firing.
    for host in ["a", "b", "c"] {
        h.write("cpu", host, t, 95.0).await;
    }
    h.round(t).await;
    let fp = |host: &str| {
        ev.active()
            .into_iter()
            .find(|a| a.labels["host"] == host)
            .map(|a| a.fingerprint)
            .expect("alert")
    };
    ev.ack(fp("a"), "alice", "", t + 60 * S).await.expect("ack");
    h.write("cpu", "a", t + 120 * S, 95.0).await;
    h.write("cpu", "b", t + 120 * S, 10.0).await;
    h.write("cpu", "c", t + 120 * S, 95.0).await;
    h.round(t + 120 * S).await;
    h.write("cpu", "a", t + 300 * S, 10.0).await;
    h.write("cpu", "c", t + 300 * S, 95.0).await;
    h.round(t + 300 * S).await;

    let secs = |ms: i64| (ms / 1000).to_string();
    let q = format!(
        "/api/v1/reports/alerts?from={}&to={}",
        secs(t - 60 * S),
        secs(t + 600 * S)
    );
    let r = h.get(&q, &tokens.read).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["fired"], 3, "{}", r.json);
    assert_eq!(r.json["by_severity"]["critical"], 3);
    assert_eq!(r.json["by_team"]["platform"], 3);
    assert_eq!(r.json["acknowledged"], 1);
    assert_eq!(r.json["resolved"], 2);
    assert_eq!(r.json["mtta_seconds"], 60.0);
    assert_eq!(r.json["mttr_seconds"], (300.0 + 120.0) / 2.0);
    let bad = h
        .get("/api/v1/reports/alerts?from=yesterday", &tokens.read)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // History: filters.
    // No `for`: pending and firing in the same round, both recorded.
    assert_eq!(
        h.events(&tokens.read, "host=b").await,
        ["pending:b", "firing:b", "resolved:b"]
    );
    assert_eq!(
        h.events(&tokens.read, "event=acknowledged").await,
        ["acknowledged:a"]
    );
    assert_eq!(h.events(&tokens.read, "severity=warning").await.len(), 0);
    assert_eq!(
        h.events(&tokens.read, "team=platform&rule=HighCpu")
            .await
            .len(),
        9
    );
    let from = format!("from={}", secs(t + 100 * S));
    assert_eq!(
        h.events(&tokens.read, &from).await,
        ["resolved:b", "resolved:a"]
    );
    let to = format!("to={}", secs(t + 61 * S));
    assert_eq!(h.events(&tokens.read, &to).await.len(), 7);
    // Pagination: pages of 4 cover all 9 rows once, newest first.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for page in 0.. {
        let r = h
            .get(
                &format!("/api/v1/alerts/history?limit=4&cursor={cursor}"),
                &tokens.read,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        seen.extend(
            r.json["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["id"].as_i64().expect("id")),
        );
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(page < 3, "too many pages");
    }
    assert_eq!(seen.len(), 9);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=zzz",
        "from=nope",
        "event=nope",
        "from=20&to=10",
    ] {
        let r = h
            .get(&format!("/api/v1/alerts/history?{bad}"), &tokens.read)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.json);
    }

    // Retention (default 90 days): rows older than it go, newer ones stay.
    let retention = 90 * 86_400 * S;
    assert_eq!(ev.prune_history(t + 100 * S + retention).await, Some(7));
    assert_eq!(
        h.events(&tokens.read, "").await,
        ["resolved:b", "resolved:a"]
    );
    assert_eq!(ev.prune_history(t + 100 * S + retention).await, Some(0));
}

const SIMPLE: &str = r#"
groups:
  - name: host
    rules:
      - alert: HighCpu
        expr: cpu > 90
        labels: {severity: critical, team: platform}
"#;

#[tokio::test]
async fn history_filters_pagination_and_reports_on_sqlite() {
    history_and_reports(Harness::sqlite(SIMPLE, config_with_rules()).await).await;
}

#[tokio::test]
async fn history_filters_pagination_and_reports_on_postgres() {
    let db = pg().await;
    history_and_reports(Harness::postgres(&db, SIMPLE, config_with_rules()).await).await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_dead_database_is_503_not_500() {
    // Nothing listens on port 1. Anonymous reads are on, so the requests
    // reach the handlers without a token lookup.
    let dead: Arc<dyn Store> =
        store::open("postgres://postgres@127.0.0.1:1/x", Path::new("."), 1).expect("lazy");
    let source: Arc<dyn vigil_aggregator::query::Source> =
        Arc::new(vigil_aggregator::query::MemorySource::new());
    let engine = Arc::new(Engine::default());
    let metrics = Arc::new(Metrics::new());
    let state = AppState {
        alerting: Evaluator::detached(
            dead.clone(),
            source.clone(),
            engine.clone(),
            metrics.alerting.clone(),
        ),
        mutes: vigil_aggregator::testing::mutes(dead.as_ref()),
        store: dead,
        metrics,
        store_ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        source,
        engine,
    };
    let policy = vigil_aggregator::http::access::AccessPolicy {
        anonymous_read: true,
        ..Default::default()
    };
    let app = vigil_aggregator::http::app_with_access(state.clone(), &policy);
    let get = |uri: &str| {
        let req = Request::get(uri).body(Body::empty()).expect("request");
        common::send_to(app.clone(), req)
    };
    let (round, history, report, alerts) = tokio::join!(
        state.alerting.round_at(t0()),
        get("/api/v1/alerts/history"),
        get("/api/v1/reports/alerts"),
        get("/api/v1/alerts"),
    );
    // The round fails cleanly: its state cannot be restored.
    assert!(round.is_err());
    for r in [history, report] {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
        assert_eq!(r.json["errorType"], "unavailable");
    }
    // The active alerts are in memory: still served.
    assert_eq!(alerts.status, StatusCode::OK);
}

#[tokio::test]
async fn sighup_reloads_the_rule_files() {
    let h = Harness::sqlite(HIGH_CPU, config_with_rules()).await;
    let task = h
        .state
        .alerting
        .clone()
        .reload_on_sighup()
        .expect("handler");
    let rules = |h: &Harness| -> Vec<String> {
        h.state
            .alerting
            .groups()
            .iter()
            .flat_map(|g| {
                g.rules
                    .iter()
                    .map(|r| format!("{:?}", r.rule).chars().take(40).collect())
            })
            .collect()
    };
    assert_eq!(rules(&h).len(), 1);
    std::fs::write(h.dir.path().join("rules.yml"), ACKABLE).expect("write");
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP)
        .expect("kill");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rules(&h).len() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload the rules"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A broken file on SIGHUP: logged, the old rules stay.
    std::fs::write(
        h.dir.path().join("rules.yml"),
        "groups: [{name: g, rules: [{expr: up}]}]",
    )
    .expect("write");
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP)
        .expect("kill");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rules(&h).len(), 2);
    task.abort();
}

const KEEP: &str = r#"
groups:
  - name: host
    rules:
      - alert: HighCpu
        expr: cpu > 90
        keep_firing_for: 1m
"#;

#[tokio::test]
async fn keep_firing_for_holds_the_resolution() {
    let h = Harness::sqlite(KEEP, config_with_rules()).await;
    let t = t0();
    h.write("cpu", "a", t, 95.0).await;
    h.round(t).await;
    assert_eq!(h.sink.take().len(), 1);
    for (dt, firing) in [(15, true), (30, true), (74, true), (75, false)] {
        h.write("cpu", "a", t + dt * S, 50.0).await;
        h.round(t + dt * S).await;
        let active = h.state.alerting.active();
        assert_eq!(active.len(), usize::from(firing), "at +{dt}s");
        if firing {
            assert_eq!(active[0].keep_firing_since_ms, Some(t + 15 * S));
        }
    }
    // A re-send while held firing (resend_delay 1m), then the resolution.
    let sent = h.sink.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].ends_at_ms, None);
    assert_eq!(sent[1].ends_at_ms, Some(t + 75 * S));
}

#[tokio::test]
async fn the_default_rule_pack_evaluates_without_errors() {
    let h = Harness::sqlite(
        vigil_aggregator::http::exports::DEFAULT_RULES,
        config_with_rules(),
    )
    .await;
    let t = t0();
    h.write("system_cpu_usage_ratio", "a", t, 0.5).await;
    h.round(t).await;
    let broken: Vec<String> = h
        .state
        .alerting
        .groups()
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter(|r| r.health != vigil_aggregator::alert::eval::Health::Ok)
        .map(|r| format!("{:?}: {:?}", r.rule, r.last_error))
        .collect();
    assert!(broken.is_empty(), "{broken:#?}");
}
