//! The Prometheus-compatible API under /prometheus/api/v1, driven through the
//! whole axum app as Grafana's Prometheus data source drives it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use promql_parser::label::Matcher;
use serde_json::{Value, json};
use vigil_aggregator::http::AppState;
use vigil_aggregator::query::{
    Engine, Labels, Limits, MemorySource, RawSeries, SelectHints, Source, SourceError,
};
use vigil_common::Label;

const T0: i64 = 1_700_000_000_000;
const API: &str = "/prometheus/api/v1";

fn l(pairs: &[(&str, &str)]) -> Vec<Label> {
    pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()
}

/// Five minutes of 15 s samples: two `up` series, a counter growing by 10
/// per sample, and a gauge holding NaN and +Inf.
fn data() -> MemorySource {
    let mut m = MemorySource::new();
    for i in 0..=20 {
        let t = T0 + i * 15_000;
        m.push(
            &l(&[("__name__", "up"), ("job", "api"), ("instance", "a:1")]),
            t,
            1.0,
        );
        m.push(
            &l(&[("__name__", "up"), ("job", "db"), ("instance", "b:1")]),
            t,
            0.0,
        );
        m.push(
            &l(&[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("handler", "/predict"),
            ]),
            t,
            10.0 * i as f64,
        );
    }
    m.push(&l(&[("__name__", "weird"), ("kind", "nan")]), T0, f64::NAN);
    m.push(
        &l(&[("__name__", "weird"), ("kind", "inf")]),
        T0,
        f64::INFINITY,
    );
    m
}

async fn setup(
    dir: &std::path::Path,
    source: Arc<dyn Source>,
    engine: Engine,
) -> (AppState, Tokens) {
    let store = sqlite(dir).await;
    let tokens = tokens(store.as_ref()).await;
    (state(store, source, engine), tokens)
}

fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

#[tokio::test]
async fn grafana_data_source_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, tokens) = setup(dir.path(), Arc::new(data()), Engine::default()).await;
    let token = tokens.read.as_str();
    let (start, end) = (secs(T0), secs(T0 + 300_000));

    // "Save & test": build info, then a trivial query posted as a form.
    let r = get(&state, &format!("{API}/status/buildinfo"), Some(token)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["status"], "success");
    assert_eq!(r.json["data"]["version"], "2.53.0");
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let r = post_form(
        &state,
        &format!("{API}/query"),
        token,
        &[("query", "1+1"), ("time", &end)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1_700_000_300, "2"]}})
    );

    // The metric browser: label names, metric names, series, label values.
    let range = query_string(&[("start", &start), ("end", &end)]);
    let r = get(&state, &format!("{API}/labels?{range}"), Some(token)).await;
    assert_eq!(
        r.json["data"],
        json!(["__name__", "handler", "instance", "job", "kind"])
    );
    let r = get(
        &state,
        &format!("{API}/label/__name__/values?{range}"),
        Some(token),
    )
    .await;
    assert_eq!(
        r.json["data"],
        json!(["http_requests_total", "up", "weird"])
    );
    let r = get(
        &state,
        &format!(
            "{API}/label/job/values?{}",
            query_string(&[("match[]", "up"), ("start", &start), ("end", &end)])
        ),
        Some(token),
    )
    .await;
    assert_eq!(r.json["data"], json!(["api", "db"]));
    let r = get(
        &state,
        &format!(
            "{API}/series?{}",
            query_string(&[
                ("match[]", r#"up{job="api"}"#),
                ("match[]", "http_requests_total"),
                ("start", &start),
                ("end", &end)
            ])
        ),
        Some(token),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json["data"],
        json!([
            {"__name__": "http_requests_total", "handler": "/predict", "job": "api"},
            {"__name__": "up", "instance": "a:1", "job": "api"}
        ])
    );
    // The same as a form body, and series outside the range are left out.
    let r = post_form(
        &state,
        &format!("{API}/series"),
        token,
        &[
            ("match[]", "up"),
            ("start", &secs(T0 + 3_600_000)),
            ("end", &secs(T0 + 7_200_000)),
        ],
    )
    .await;
    assert_eq!(r.json["data"], json!([]));
    let r = get(&state, &format!("{API}/metadata"), Some(token)).await;
    assert_eq!(r.json, json!({"status": "success", "data": {}}));

    // A panel: a range query posted as a form, step in seconds.
    let r = post_form(
        &state,
        &format!("{API}/query_range"),
        token,
        &[
            ("query", "up"),
            ("start", &start),
            ("end", &end),
            ("step", "60"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["data"]["resultType"], "matrix");
    let result = r.json["data"]["result"].as_array().expect("matrix");
    assert_eq!(result.len(), 2);
    assert_eq!(
        result[0]["metric"],
        json!({"__name__": "up", "instance": "a:1", "job": "api"})
    );
    let values: Vec<(f64, &str)> = result[1]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| (p[0].as_f64().expect("ts"), p[1].as_str().expect("value")))
        .collect();
    let want: Vec<(f64, &str)> = (0..6).map(|i| ((T0 / 1000 + i * 60) as f64, "0")).collect();
    assert_eq!(values, want);

    // rate() over the counter, RFC 3339 time, GET.
    let r = get(
        &state,
        &format!(
            "{API}/query?{}",
            query_string(&[
                ("query", "rate(http_requests_total[1m])"),
                ("time", "2023-11-14T22:18:20Z")
            ])
        ),
        Some(token),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let sample = &r.json["data"]["result"][0];
    assert_eq!(
        sample["metric"],
        json!({"handler": "/predict", "job": "api"})
    );
    assert_eq!(sample["value"][0], json!(1_700_000_300));
    let rate: f64 = sample["value"][1]
        .as_str()
        .expect("string value")
        .parse()
        .expect("float");
    assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");

    // NaN and +Inf as Prometheus writes them.
    let r = post_form(
        &state,
        &format!("{API}/query"),
        token,
        &[("query", "weird"), ("time", &secs(T0 + 1_500))],
    )
    .await;
    assert_eq!(
        r.json["data"]["result"],
        json!([
            {"metric": {"__name__": "weird", "kind": "inf"}, "value": [1_700_000_001.5, "+Inf"]},
            {"metric": {"__name__": "weird", "kind": "nan"}, "value": [1_700_000_001.5, "NaN"]}
        ])
    );

    // Cheap extras Grafana probes.
    for (path, data) in [
        ("rules", json!({"groups": []})),
        ("alerts", json!({"alerts": []})),
        ("query_exemplars?query=up", json!([])),
        ("status/flags", json!({})),
    ] {
        let r = get(&state, &format!("{API}/{path}"), Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.json, json!({"status": "success", "data": data}), "{path}");
    }
}

#[tokio::test]
async fn every_route_needs_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, tokens) = setup(dir.path(), Arc::new(data()), Engine::default()).await;
    for path in [
        "query?query=1",
        "query_range?query=1&start=0&end=1&step=1",
        "series?match[]=up",
        "labels",
        "label/job/values",
        "metadata",
        "rules",
        "alerts",
        "status/buildinfo",
        "query_exemplars",
        "status/flags",
    ] {
        let r = get(&state, &format!("{API}/{path}"), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        let r = get(&state, &format!("{API}/{path}"), Some("Bearer vgl_nope")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        for token in [&tokens.read, &tokens.write, &tokens.admin] {
            let r = get(&state, &format!("{API}/{path}"), Some(token)).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
        }
    }
}

#[tokio::test]
async fn bad_parameters_are_bad_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, tokens) = setup(dir.path(), Arc::new(data()), Engine::default()).await;
    let t = Some(tokens.read.as_str());
    let bad = StatusCode::BAD_REQUEST;
    for (uri, needle) in [
        ("query?query=up{", r#"invalid parameter "query": "#),
        ("query", r#"invalid parameter "query": "#),
        (
            "query?query=up&time=yesterday",
            r#"invalid parameter "time": cannot parse"#,
        ),
        (
            "query?query=up&timeout=soon",
            r#"invalid parameter "timeout""#,
        ),
        (
            "query_range?query=up&start=10&end=20",
            r#"invalid parameter "step""#,
        ),
        (
            "query_range?query=up&end=20&step=1",
            r#"invalid parameter "start""#,
        ),
        (
            "query_range?query=up&start=10&end=20&step=0",
            "zero or negative query resolution step",
        ),
        (
            "query_range?query=up&start=20&end=10&step=1",
            "end timestamp must not be before start time",
        ),
        (
            "query_range?query=up&start=0&end=86400&step=1",
            "exceeded maximum resolution of 11,000 points per timeseries",
        ),
        (
            "query_range?query=up[5m]&start=0&end=60&step=15",
            "invalid expression type",
        ),
        ("series", "no match[] parameter provided"),
        ("series?match[]=sum(up)", r#"invalid parameter "match[]""#),
        ("series?match[]=up&start=x", r#"invalid parameter "start""#),
        (
            "series?match[]=up&start=20&end=10",
            "end timestamp must not be before",
        ),
        ("labels?limit=-1", r#"invalid parameter "limit""#),
        ("labels?match[]={", r#"invalid parameter "match[]""#),
        ("label/1bad/values", "invalid label name"),
        ("metadata?limit=x", r#"invalid parameter "limit""#),
    ] {
        let r = get(&state, &format!("{API}/{uri}"), t).await;
        assert_error(&r, bad, "bad_data", needle);
    }

    // 11,000 points per series are still allowed.
    let r = get(
        &state,
        &format!("{API}/query_range?query=1&start=0&end=10999&step=1"),
        t,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    // A form body above the cap.
    let big = "x".repeat(2 * 1024 * 1024);
    let r = post_form(
        &state,
        &format!("{API}/query"),
        &tokens.read,
        &[("query", &big)],
    )
    .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "bad_data", "form body");
}

#[tokio::test]
async fn limit_truncates_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, tokens) = setup(dir.path(), Arc::new(data()), Engine::default()).await;
    let t = Some(tokens.read.as_str());
    let r = get(&state, &format!("{API}/labels?limit=2"), t).await;
    assert_eq!(r.json["data"], json!(["__name__", "handler"]));
    assert_eq!(
        r.json["warnings"],
        json!(["results truncated due to limit"])
    );
    let r = get(&state, &format!("{API}/label/__name__/values?limit=1"), t).await;
    assert_eq!(r.json["data"], json!(["http_requests_total"]));
    let r = get(&state, &format!("{API}/series?match[]=up&limit=1"), t).await;
    assert_eq!(r.json["data"].as_array().expect("array").len(), 1);
    assert_eq!(
        r.json["warnings"],
        json!(["results truncated due to limit"])
    );
    let r = get(&state, &format!("{API}/series?match[]=up&limit=2"), t).await;
    assert_eq!(r.json["data"].as_array().expect("array").len(), 2);
    assert!(r.json.get("warnings").is_none());
}

#[tokio::test]
async fn limits_are_422_and_timeouts_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(Limits {
        max_series: 1,
        ..Limits::default()
    });
    let (state, tokens) = setup(dir.path(), Arc::new(data()), engine).await;
    let t = Some(tokens.read.as_str());
    let at = format!("&time={}", secs(T0));
    let r = get(&state, &format!("{API}/query?query=up{at}"), t).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "execution", "series");
    let r = get(
        &state,
        &format!("{API}/query?query=http_requests_total{at}"),
        t,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    let engine = Engine::new(Limits {
        max_samples: 10,
        ..Limits::default()
    });
    let (state, tokens) = setup(dir.path(), Arc::new(data()), engine).await;
    let end = format!("&time={}", secs(T0 + 300_000));
    let r = get(
        &state,
        &format!("{API}/query?query=count_over_time(up[5m]){end}"),
        Some(&tokens.read),
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "execution", "samples");

    let (state, tokens) = setup(dir.path(), Arc::new(Slow(data())), Engine::default()).await;
    let started = std::time::Instant::now();
    let r = get(
        &state,
        &format!("{API}/query?query=up{at}&timeout=0.2"),
        Some(&tokens.read),
    )
    .await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "timeout", "timed out");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_failing_storage_is_503_without_details() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, tokens) = setup(dir.path(), Arc::new(Broken), Engine::default()).await;
    let t = Some(tokens.read.as_str());
    for uri in [
        "query?query=up",
        "query_range?query=up&start=0&end=60&step=15",
        "series?match[]=up",
        "labels",
        "label/job/values",
    ] {
        let r = get(&state, &format!("{API}/{uri}"), t).await;
        assert_error(
            &r,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "storage",
        );
        assert!(
            !r.json["error"].as_str().expect("msg").contains("10.0.0.9"),
            "no internals leak"
        );
    }
}

#[tokio::test]
async fn get_and_post_give_the_same_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, tokens) = setup(dir.path(), Arc::new(data()), Engine::default()).await;
    let form = [
        ("query", "sum by (job) (up)"),
        ("start", "1700000000"),
        ("end", "1700000120.5"),
        ("step", "30s"),
    ];
    let via_get = get(
        &state,
        &format!("{API}/query_range?{}", query_string(&form)),
        Some(&tokens.read),
    )
    .await;
    let via_post = post_form(&state, &format!("{API}/query_range"), &tokens.read, &form).await;
    assert_eq!(via_get.status, StatusCode::OK, "{}", via_get.json);
    assert_eq!(via_get.json, via_post.json);
    let series = via_get.json["data"]["result"].as_array().expect("matrix");
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["metric"], json!({"job": "api"}));
    assert_eq!(series[0]["values"].as_array().expect("values").len(), 5);

    // A POST that is not a form reads only the query string.
    let req = Request::post(format!("{API}/query?query=1"))
        .header(header::AUTHORIZATION, &tokens.read)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"query":"2"}"#))
        .expect("request");
    let r = send(&state, req).await;
    assert_eq!(r.json["data"]["result"][1], Value::from("1"));
}

/// A source that takes 3 s to answer.
struct Slow(MemorySource);

#[async_trait]
impl Source for Slow {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError> {
        tokio::time::sleep(Duration::from_secs(3)).await;
        self.0.select(matchers, start_ms, end_ms, hints).await
    }

    async fn series(
        &self,
        sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Labels>, SourceError> {
        self.0.series(sets, start_ms, end_ms, limit).await
    }
}

/// A source whose storage is down.
struct Broken;

#[async_trait]
impl Source for Broken {
    async fn select(
        &self,
        _: &[Matcher],
        _: i64,
        _: i64,
        _: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError> {
        Err(SourceError::Storage(
            "connection refused (10.0.0.9:5432)".into(),
        ))
    }

    async fn series(
        &self,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<Labels>, SourceError> {
        Err(SourceError::Storage(
            "connection refused (10.0.0.9:5432)".into(),
        ))
    }
}
