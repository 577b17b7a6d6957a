//! The operations REST API over data: summary colours and reasons follow the
//! data, resources and hosts/{id}, availability and metrics reports, and
//! every bad parameter is a clear 400. Data goes in through a MemorySource
//! and, for the end-to-end cases, through real SQLite and PostgreSQL stores
//! behind the production head + store Source.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use vigil_aggregator::auth::{new_token, token_hash};
use vigil_aggregator::http::{AppState, app};
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::query::MemorySource;
use vigil_aggregator::store::{self, Store};
use vigil_aggregator::testing;
use vigil_common::wire::PROTOCOL_VERSION;
use vigil_common::{BatchHeader, Label, Point, Series};

const MIN: i64 = 60_000;

/// A MemorySource with samples built by `f(push)`.
struct Data(MemorySource);

impl Data {
    fn new() -> Data {
        Data(MemorySource::new())
    }
    /// `name{labels}` = value at each of `times`.
    fn gauge(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        times: &[i64],
        value: f64,
    ) -> &mut Self {
        for &t in times {
            self.0.push(&labels_of(name, labels), t, value);
        }
        self
    }
    /// A counter rising by `per_min` per minute over `times`.
    fn counter(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        times: &[i64],
        per_min: f64,
    ) -> &mut Self {
        let t0 = times[0];
        for &t in times {
            self.0.push(
                &labels_of(name, labels),
                t,
                per_min * (t - t0) as f64 / MIN as f64,
            );
        }
        self
    }
}

fn labels_of(name: &str, labels: &[(&str, &str)]) -> Vec<Label> {
    let mut out = vec![Label::new("__name__", name)];
    out.extend(labels.iter().map(|(k, v)| Label::new(*k, *v)));
    out
}

/// Every 30 s over the last 4 minutes.
fn recent() -> Vec<i64> {
    let now = vigil_common::now_ms();
    (0..8).map(|i| now - 240_000 + i * 30_000).collect()
}

async fn state_with(dir: &std::path::Path, source: MemorySource) -> (AppState, String) {
    let state = testing::sqlite_app_state(dir, Arc::new(source))
        .await
        .expect("state");
    let token = testing::add_token(&state, "reader", "read")
        .await
        .expect("token");
    (state, token)
}

async fn get(state: &AppState, token: &str, uri: &str) -> (StatusCode, String, String) {
    let req = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let resp = app(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
}

async fn get_json(state: &AppState, token: &str, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = get(state, token, uri).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn component<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == name)
        .expect(name)
}

/// A healthy estate: API, one model, PostgreSQL, Redis, one host.
fn healthy(d: &mut Data, t: &[i64]) {
    let web = [("host", "web-1"), ("role", "api")];
    d.counter(
        "http_requests_total",
        &[("host", "web-1"), ("status", "200")],
        t,
        600.0,
    )
    .counter(
        "http_requests_total",
        &[("host", "web-1"), ("status", "500")],
        t,
        0.0,
    )
    .counter(
        "http_request_duration_seconds_bucket",
        &[("host", "web-1"), ("le", "0.1")],
        t,
        600.0,
    )
    .counter(
        "http_request_duration_seconds_bucket",
        &[("host", "web-1"), ("le", "1")],
        t,
        600.0,
    )
    .counter(
        "http_request_duration_seconds_bucket",
        &[("host", "web-1"), ("le", "+Inf")],
        t,
        600.0,
    )
    .gauge(
        "up",
        &[("host", "web-1"), ("role", "api"), ("job", "api")],
        t,
        1.0,
    )
    .counter(
        "model_predictions_total",
        &[("model", "churn"), ("version", "v2")],
        t,
        100.0,
    )
    .gauge(
        "model_accuracy_ratio",
        &[("model", "churn"), ("version", "v2")],
        t,
        0.95,
    )
    .gauge(
        "model_drift_score",
        &[("model", "churn"), ("version", "v2")],
        t,
        0.05,
    )
    .gauge("pg_up", &[("host", "db-1")], t, 1.0)
    .gauge(
        "pg_connections",
        &[("host", "db-1"), ("state", "active")],
        t,
        10.0,
    )
    .gauge("pg_max_connections", &[("host", "db-1")], t, 100.0)
    .gauge("redis_up", &[("host", "cache-1")], t, 1.0)
    .counter(
        "redis_keyspace_hits_total",
        &[("host", "cache-1")],
        t,
        990.0,
    )
    .counter(
        "redis_keyspace_misses_total",
        &[("host", "cache-1")],
        t,
        10.0,
    )
    .gauge("redis_memory_used_bytes", &[("host", "cache-1")], t, 100e6)
    .gauge("redis_memory_max_bytes", &[("host", "cache-1")], t, 1e9)
    .gauge("system_cpu_usage_ratio", &web, t, 0.3)
    .gauge("system_memory_used_bytes", &web, t, 2e9)
    .gauge("system_memory_total_bytes", &web, t, 8e9)
    .gauge(
        "system_filesystem_used_bytes",
        &[("host", "web-1"), ("mount", "/")],
        t,
        40e9,
    )
    .gauge(
        "system_filesystem_size_bytes",
        &[("host", "web-1"), ("mount", "/")],
        t,
        100e9,
    )
    .counter(
        "system_network_receive_bytes_total",
        &[("host", "web-1"), ("device", "lo")],
        t,
        6e9,
    );
}

#[tokio::test]
async fn summary_without_data_is_unknown_not_green() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, token) = state_with(dir.path(), MemorySource::new()).await;
    let (status, s) = get_json(&state, &token, "/api/v1/summary").await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["status"], "unknown");
    assert_eq!(s["reason"], "no data from any component yet");
    for name in ["api", "ml-models", "database", "cache", "system"] {
        let c = component(&s, name);
        assert_eq!(c["status"], "unknown", "{name}");
        assert!(
            c["reason"].as_str().expect("reason").starts_with("no data"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn summary_colours_and_reasons_follow_the_data() {
    let t = recent();
    let dir = tempfile::tempdir().expect("tempdir");

    let mut d = Data::new();
    healthy(&mut d, &t);
    let (state, token) = state_with(dir.path(), d.0).await;
    let (status, s) = get_json(&state, &token, "/api/v1/summary").await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["status"], "green", "{s:#}");
    assert_eq!(s["reason"], "all components green");
    for name in ["api", "ml-models", "database", "cache", "system"] {
        let c = component(&s, name);
        assert_eq!(c["status"], "green", "{name}: {c:#}");
        assert!(
            !c["findings"].as_array().expect("findings").is_empty(),
            "{name}"
        );
    }

    // Now break things, one per component, in a fresh estate.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut d = Data::new();
    healthy(&mut d, &t);
    // API: 10 % 5xx (red above 5 %).
    d.counter(
        "http_requests_total",
        &[("host", "web-1"), ("status", "503")],
        &t,
        66.7,
    );
    // Model accuracy 0.87: yellow (below 0.9, above 0.85).
    d.gauge(
        "model_accuracy_ratio",
        &[("model", "churn"), ("version", "v3")],
        &t,
        0.87,
    );
    // A second PostgreSQL that is down.
    d.gauge("pg_up", &[("host", "db-2")], &t, 0.0);
    // Redis at 85 % of maxmemory: yellow.
    d.gauge("redis_memory_used_bytes", &[("host", "cache-1")], &t, 850e6);
    // CPU 95 %: red.
    d.gauge(
        "system_cpu_usage_ratio",
        &[("host", "web-1"), ("role", "api")],
        &t,
        0.95,
    );
    let (state, token) = state_with(dir2.path(), d.0).await;
    let (_, s) = get_json(&state, &token, "/api/v1/summary").await;
    let api = component(&s, "api");
    assert_eq!(api["status"], "red", "{api:#}");
    let reason = api["reason"].as_str().expect("reason");
    assert!(
        reason.contains("5xx ratio 10.0% on host=web-1 (red above 5.0%)"),
        "{reason}"
    );
    let ml = component(&s, "ml-models");
    assert_eq!(ml["status"], "yellow");
    assert!(
        ml["reason"]
            .as_str()
            .expect("reason")
            .contains("accuracy 87.0% on model=churn version=v3 (yellow below 90.0%)"),
        "{ml:#}"
    );
    let db = component(&s, "database");
    assert_eq!(db["status"], "red");
    assert_eq!(db["reason"], "PostgreSQL down on host=db-2");
    let cache = component(&s, "cache");
    assert_eq!(cache["status"], "yellow");
    assert!(
        cache["reason"]
            .as_str()
            .expect("reason")
            .contains("memory used of maxmemory 85.0%")
    );
    let system = component(&s, "system");
    assert_eq!(system["status"], "red");
    assert!(
        system["reason"]
            .as_str()
            .expect("reason")
            .contains("CPU busy 95.0% on host=web-1")
    );
    // Overall: red, naming every red component.
    assert_eq!(s["status"], "red");
    let overall = s["reason"].as_str().expect("reason");
    assert!(
        overall.contains("api: ") && overall.contains("database: ") && overall.contains("system: "),
        "{overall}"
    );
    assert!(
        !overall.contains("cache: "),
        "only the worst components: {overall}"
    );
}

#[tokio::test]
async fn a_silent_host_turns_the_system_red() {
    let now = vigil_common::now_ms();
    let mut d = Data::new();
    let live = recent();
    let earlier: Vec<i64> = (0..10).map(|i| now - 40 * MIN + i * MIN).collect();
    d.gauge("system_cpu_usage_ratio", &[("host", "web-1")], &live, 0.2)
        .gauge(
            "system_cpu_usage_ratio",
            &[("host", "web-2")],
            &earlier,
            0.2,
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, token) = state_with(dir.path(), d.0).await;
    let (_, s) = get_json(&state, &token, "/api/v1/summary").await;
    let system = component(&s, "system");
    assert_eq!(system["status"], "red", "{system:#}");
    assert_eq!(
        system["reason"],
        "host=web-2: no metrics for over 5 minutes"
    );
    assert_eq!(component(&s, "api")["status"], "unknown");
    assert!(
        s["reason"]
            .as_str()
            .expect("reason")
            .starts_with("system: ")
    );
}

#[tokio::test]
async fn resources_per_host() {
    let t = recent();
    let mut d = Data::new();
    healthy(&mut d, &t);
    // A long-running counter sampled every 15 s for 10 minutes, so the 5 m
    // rate is not shortened by extrapolation at a counter's first sample.
    let now = vigil_common::now_ms();
    let eth0 = labels_of(
        "system_network_receive_bytes_total",
        &[("host", "web-1"), ("device", "eth0")],
    );
    let mut src = d.0;
    for i in 0..40 {
        let at = now - 600_000 + i * 15_000;
        src.push(&eth0, at, 1e12 + (at - (now - 600_000)) as f64 * 1e3);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, token) = state_with(dir.path(), src).await;
    let (status, r) = get_json(&state, &token, "/api/v1/system/resources").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let hosts = r["hosts"].as_array().expect("hosts");
    let names: Vec<&str> = hosts
        .iter()
        .map(|h| h["host"].as_str().expect("host"))
        .collect();
    assert_eq!(names, ["cache-1", "db-1", "web-1"]);
    let web = &hosts[2];
    assert_eq!(web["cpu"]["usage_ratio"], 0.3);
    assert_eq!(web["memory"]["used_ratio"], 0.25);
    assert_eq!(web["filesystems"][0]["mount"], "/");
    assert_eq!(web["filesystems"][0]["used_ratio"], 0.4);
    // 1 MB/s on eth0; loopback (6 GB/min) is left out.
    let rx = web["network"]["receive_bytes_per_second"]
        .as_f64()
        .expect("rx");
    assert!((rx - 1e6).abs() < 1e3, "{rx}");
    assert!(web["database"].is_null() && web["cache"].is_null());
    let db = &hosts[1];
    assert_eq!(db["database"]["up"], 1.0);
    assert_eq!(db["database"]["connections"], 10.0);
    assert_eq!(db["database"]["max_connections"], 100.0);
    let cache = &hosts[0];
    assert_eq!(cache["cache"]["up"], 1.0);
    let hit = cache["cache"]["hit_ratio"].as_f64().expect("hit");
    assert!((hit - 0.99).abs() < 1e-9, "{hit}");
}

#[tokio::test]
async fn availability_from_data() {
    // One hour, 60 one-minute intervals. web-1 reports every 15 s except for
    // 15 minutes; PostgreSQL on db-1 is down for the last 15 minutes.
    let from = 1_700_000_000_000;
    let to = from + 60 * MIN;
    let every_15s: Vec<i64> = (0..240).map(|i| from + 15_000 * i + 1).collect();
    let with_gap: Vec<i64> = every_15s
        .iter()
        .copied()
        .filter(|t| !(from + 20 * MIN..from + 35 * MIN).contains(t))
        .collect();
    let (up, down): (Vec<i64>, Vec<i64>) = every_15s.iter().partition(|&&t| t < from + 45 * MIN);
    let mut d = Data::new();
    d.gauge(
        "system_cpu_usage_ratio",
        &[("host", "web-1")],
        &with_gap,
        0.1,
    )
    .gauge(
        "system_cpu_usage_ratio",
        &[("host", "db-1")],
        &every_15s,
        0.1,
    )
    .gauge("pg_up", &[("host", "db-1")], &up, 1.0)
    .gauge("pg_up", &[("host", "db-1")], &down, 0.0)
    .gauge(
        "probe_success",
        &[("host", "web-1"), ("probe", "home")],
        &every_15s,
        1.0,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, token) = state_with(dir.path(), d.0).await;
    let (status, r) = get_json(
        &state,
        &token,
        &format!(
            "/api/v1/reports/availability?from={}&to={}",
            from / 1000,
            to / 1000
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["intervals"], 60);
    assert_eq!(r["interval_seconds"], 60.0);
    let host = |name: &str| {
        r["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["host"] == name)
            .expect(name)
            .clone()
    };
    assert_eq!(host("db-1")["uptime_percent"], 100.0);
    let web = host("web-1");
    assert_eq!(web["intervals_total"], 60);
    assert_eq!(web["intervals_up"], 45, "{web}");
    assert_eq!(web["uptime_percent"], 75.0);
    let services = r["services"].as_array().expect("services");
    let pg = services
        .iter()
        .find(|s| s["service"] == "postgresql")
        .expect("pg");
    assert_eq!(pg["host"], "db-1");
    let pct = pg["uptime_percent"].as_f64().expect("pct");
    assert!((74.0..=76.0).contains(&pct), "{pct}");
    assert_eq!(pg["coverage_percent"], 100.0);
    let probe = services
        .iter()
        .find(|s| s["service"] == "probe")
        .expect("probe");
    assert_eq!(probe["name"], "home");
    assert_eq!(probe["uptime_percent"], 100.0);

    // Bad parameters.
    for (q, want) in [
        ("from=yesterday", "from: expected RFC 3339"),
        ("from=200&to=100", "must be before"),
        ("from=0&to=99999999999", "at most 366 days"),
        ("to=NaN", "to: expected"),
    ] {
        let (status, body) =
            get_json(&state, &token, &format!("/api/v1/reports/availability?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(
            body["error"].as_str().expect("error").contains(want),
            "{q}: {body}"
        );
    }
}

#[tokio::test]
async fn metrics_report_as_json_and_csv() {
    let from = 1_700_000_000_000;
    let times: Vec<i64> = (0..10).map(|i| from + i * MIN).collect();
    let mut d = Data::new();
    d.gauge("temp", &[("host", "a")], &times, 20.0)
        .gauge("temp", &[("host", "b,c")], &times, 21.5);
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, token) = state_with(dir.path(), d.0).await;
    let range = format!(
        "from={}&to={}&step=60s",
        from / 1000,
        (from + 4 * MIN) / 1000
    );

    let (status, r) = get_json(
        &state,
        &token,
        &format!("/api/v1/reports/metrics?query=temp&{range}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["step_seconds"], 60.0);
    let series = r["series"].as_array().expect("series");
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["labels"]["host"], "a");
    assert_eq!(series[0]["values"].as_array().expect("values").len(), 5);
    assert_eq!(series[0]["values"][0][0], 1_700_000_000.0);
    assert_eq!(series[0]["values"][0][1], 20.0);

    let (status, ctype, csv) = get(
        &state,
        &token,
        &format!("/api/v1/reports/metrics?query=temp&{range}&format=csv"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "timestamp,\"temp{host=\"\"a\"\"}\",\"temp{host=\"\"b,c\"\"}\""
    );
    assert_eq!(lines[1], "2023-11-14T22:13:20.000Z,20,21.5");
    assert_eq!(lines.len(), 6);

    // Bad parameters: each a 400 that names the parameter and says why.
    for (q, code, want) in [
        (range.clone(), 400, "query: a PromQL expression is required"),
        (
            format!("query=&{range}"),
            400,
            "query: a PromQL expression is required",
        ),
        (format!("query=sum(&{range}"), 400, "query:"),
        (format!("query=temp[5m]&{range}"), 400, "query:"),
        (
            format!("query=temp&{range}&format=xml"),
            400,
            "format: expected csv or json",
        ),
        (
            format!(
                "query=temp&from={}&to={}&step=0",
                from / 1000,
                from / 1000 + 60
            ),
            400,
            "step: expected a positive duration",
        ),
        (
            format!(
                "query=temp&from={}&to={}&step=fast",
                from / 1000,
                from / 1000 + 60
            ),
            400,
            "step: expected",
        ),
        (
            format!(
                "query=temp&from={}&to={}&step=1s",
                from / 1000,
                from / 1000 + 86_400
            ),
            400,
            "exceed the limit of 11000",
        ),
        (
            format!("query=temp&from=later&to={}", from / 1000),
            400,
            "from: expected",
        ),
    ] {
        let (status, body) =
            get_json(&state, &token, &format!("/api/v1/reports/metrics?{q}")).await;
        assert_eq!(status.as_u16(), code, "{q}: {body}");
        assert!(
            body["error"].as_str().expect("error").contains(want),
            "{q}: {body}"
        );
    }
}

fn header_for(agent: &str, host: &str, seq: u64) -> BatchHeader {
    BatchHeader {
        protocol_version: PROTOCOL_VERSION,
        agent_id: agent.into(),
        boot_id: [1; 16],
        sequence: seq,
        created_at_ms: 0,
        host: host.into(),
        roles: vec!["api".into()],
    }
}

fn point_series(name: &str, host: &str, extra: &[(&str, &str)], t: i64, v: f64) -> Series {
    let mut labels = vec![Label::new("host", host)];
    labels.extend(extra.iter().map(|(k, v)| Label::new(*k, *v)));
    Series::new(
        name,
        labels,
        vec![Point {
            timestamp_ms: t,
            value: v,
        }],
    )
}

/// End to end over a real store: batches committed through the production
/// head + store layers, read back by the summary, resources and hosts/{id}.
async fn through_a_real_store(inner: Arc<dyn Store>) {
    inner.migrate().await.expect("migrate");
    let metrics = Arc::new(Metrics::new());
    let layers = store::layered(inner, &Default::default(), metrics.storage.clone());
    let token = new_token().expect("token");
    layers
        .store
        .put_token("reader", &token_hash(&token), "read")
        .await
        .expect("token");
    let now = vigil_common::now_ms();
    for (seq, t) in [now - 60_000, now - 30_000].into_iter().enumerate() {
        let batch = vec![
            point_series(
                "system_cpu_usage_ratio",
                "web-1.example",
                &[("role", "api")],
                t,
                0.97,
            ),
            point_series(
                "system_memory_used_bytes",
                "web-1.example",
                &[("role", "api")],
                t,
                1e9,
            ),
            point_series(
                "system_memory_total_bytes",
                "web-1.example",
                &[("role", "api")],
                t,
                4e9,
            ),
            point_series("pg_up", "web-1.example", &[("role", "api")], t, 1.0),
        ];
        layers
            .store
            .commit_batch(
                &header_for("web-1", "web-1.example", seq as u64 + 1),
                &batch,
            )
            .await
            .expect("commit");
    }
    let engine = Arc::new(vigil_aggregator::query::Engine::default());
    let state = AppState {
        mutes: vigil_aggregator::testing::mutes(layers.store.as_ref()),

        alerting: vigil_aggregator::alert::eval::Evaluator::detached(
            layers.store.clone(),
            layers.source.clone(),
            engine.clone(),
            metrics.alerting.clone(),
        ),
        store: layers.store.clone(),
        metrics,
        store_ready: Arc::new(AtomicBool::new(true)),
        source: layers.source.clone(),
        engine,
    };

    let (status, s) = get_json(&state, &token, "/api/v1/summary").await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(component(&s, "system")["status"], "red", "{s:#}");
    assert_eq!(component(&s, "database")["status"], "green");
    assert_eq!(component(&s, "cache")["status"], "unknown");

    for id in ["web-1", "web-1.example"] {
        let (status, h) = get_json(&state, &token, &format!("/api/v1/hosts/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{id}: {h}");
        assert_eq!(h["agent_id"], "web-1");
        assert_eq!(h["resources"]["cpu"]["usage_ratio"], 0.97);
        assert_eq!(h["resources"]["memory"]["used_ratio"], 0.25);
        assert_eq!(h["resources"]["database"]["up"], 1.0);
    }
    let (status, h) = get_json(&state, &token, "/api/v1/hosts/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(h["error"].as_str().expect("error").contains("\"nobody\""));
    // A hostname with PromQL-special characters is matched literally, not injected.
    let (status, _) = get_json(&state, &token, "/api/v1/hosts/a%22%7D%20or%20up%7B").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, r) = get_json(&state, &token, "/api/v1/system/resources").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["hosts"][0]["host"], "web-1.example");
}

#[tokio::test]
async fn end_to_end_over_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    through_a_real_store(store::open("sqlite:ops.db", dir.path(), 4).expect("open")).await;
}

#[tokio::test]
async fn end_to_end_over_postgres() {
    let db = vigil_aggregator::testing::PgTestDb::create()
        .await
        .expect("postgres");
    through_a_real_store(store::open(&db.url, std::path::Path::new("."), 4).expect("open")).await;
    db.drop_db().await;
}

#[tokio::test]
async fn engine_limits_are_422_not_500() {
    let t = recent();
    let mut d = Data::new();
    d.gauge("pg_up", &[("host", "db-1")], &t, 1.0)
        .gauge("pg_up", &[("host", "db-2")], &t, 1.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut state, token) = state_with(dir.path(), d.0).await;
    state.engine = Arc::new(vigil_aggregator::query::Engine::new(
        vigil_aggregator::query::Limits {
            max_series: 1,
            ..Default::default()
        },
    ));
    for uri in [
        "/api/v1/summary".to_string(),
        format!(
            "/api/v1/reports/metrics?query=pg_up&from={}",
            (t[0] - MIN) / 1000
        ),
    ] {
        let (status, body) = get_json(&state, &token, &uri).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {body}");
        assert_eq!(body["errorType"], "execution");
        assert!(
            body["error"].as_str().expect("error").contains("series"),
            "{body}"
        );
    }
}
