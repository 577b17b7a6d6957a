//! `POST /api/v1/write` (Prometheus remote_write 1.0) and `POST
//! /api/v1/import` (text exposition) through the whole app, on real SQLite
//! and PostgreSQL stores, then read back through the Prometheus API.
//!
//! The protobuf here is encoded by hand from Prometheus' `.proto` field
//! numbers, not with the receiver's own structs, so a wrong field number
//! in the receiver fails these tests.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::{Value, json};
use vigil_aggregator::http::ingest::IngestLimits;
use vigil_aggregator::http::ingest::config::HttpIngestConfig;
use vigil_aggregator::http::{AppState, app};
use vigil_aggregator::store::Store;
use vigil_aggregator::testing::PgTestDb;

// ---- a minimal protobuf writer --------------------------------------------

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// `prometheus.TimeSeries` with labels (name, value) and samples (ms, value).
fn time_series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    let mut ts = Vec::new();
    for (name, value) in labels {
        let mut label = Vec::new();
        bytes_field(&mut label, 1, name.as_bytes());
        bytes_field(&mut label, 2, value.as_bytes());
        bytes_field(&mut ts, 1, &label);
    }
    for (t, v) in samples {
        let mut sample = Vec::new();
        sample.push(1 << 3 | 1); // value: double
        sample.extend_from_slice(&v.to_le_bytes());
        varint(&mut sample, 2 << 3); // timestamp: int64 varint
        varint(&mut sample, *t as u64);
        bytes_field(&mut ts, 2, &sample);
    }
    ts
}

/// `prometheus.WriteRequest` of `series`, plus a metadata entry (field 3)
/// the receiver must skip.
fn write_request(series: &[Vec<u8>]) -> Vec<u8> {
    let mut req = Vec::new();
    for ts in series {
        bytes_field(&mut req, 1, ts);
    }
    let mut meta = Vec::new();
    varint(&mut meta, 1 << 3);
    varint(&mut meta, 1); // type COUNTER
    bytes_field(&mut meta, 2, b"rw_requests_total");
    bytes_field(&mut meta, 4, b"help text");
    bytes_field(&mut req, 3, &meta);
    req
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("compress")
}

fn remote_write(token: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut req = Request::post("/api/v1/write")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::CONTENT_ENCODING, "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header(header::USER_AGENT, "Prometheus/2.53.0");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, t);
    }
    req.body(Body::from(body)).expect("request")
}

fn import(token: &str, content_type: &str, uri: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header(header::AUTHORIZATION, token)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("request")
}

/// `query_range` of `query` from `start` to `end` (ms) at `step_s`:
/// each series' labels and `(ms, value)` points.
async fn range(
    state: &AppState,
    token: &str,
    query: &str,
    start: i64,
    end: i64,
    step_s: &str,
) -> Vec<(Value, Vec<(i64, f64)>)> {
    let r = post_form(
        state,
        "/prometheus/api/v1/query_range",
        token,
        &[
            ("query", query),
            ("start", &format!("{}", start as f64 / 1000.0)),
            ("end", &format!("{}", end as f64 / 1000.0)),
            ("step", step_s),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json["data"]["result"]
        .as_array()
        .expect("matrix")
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
                    let v: f64 = p[1].as_str().expect("v").parse().expect("float");
                    (t, v)
                })
                .collect();
            (s["metric"].clone(), points)
        })
        .collect()
}

/// A whole minute, a few minutes ago, so steps line up with samples.
fn base() -> i64 {
    (vigil_common::now_ms() / 60_000 - 10) * 60_000
}

// ---- remote_write ---------------------------------------------------------

async fn remote_write_round_trip(inner: Arc<dyn Store>) {
    let tokens = tokens(inner.as_ref()).await;
    let state = layered_state(inner.clone()).await;
    let t0 = base();
    let month_ago = t0 - 31 * 86_400_000;
    let good: Vec<(i64, f64)> = (0..8).map(|i| (t0 + i * 15_000, i as f64 * 1.5)).collect();
    let mut with_old = good.clone();
    with_old.insert(0, (month_ago, 9.0));
    let body = snappy(&write_request(&[
        // Labels unsorted, __name__ last: the receiver sorts.
        time_series(
            &[
                ("job", "prom"),
                ("instance", "x:9090"),
                ("__name__", "rw_up"),
            ],
            &with_old,
        ),
        time_series(
            &[("__name__", "rw_special"), ("job", "prom"), ("empty", "")],
            // NaN, +Inf, then Prometheus' staleness marker: the series ends.
            &[
                (t0, f64::NAN),
                (t0 + 15_000, f64::INFINITY),
                (t0 + 30_000, f64::from_bits(0x7ff0_0000_0000_0002)),
            ],
        ),
        time_series(&[("__name__", "rw_bad"), ("bad-label", "x")], &good[..2]),
        time_series(&[("job", "no_name")], &good[..3]),
    ]));
    let r = send(&state, remote_write(Some(&tokens.write), body.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["samples_accepted"], 11, "{}", r.json);
    assert_eq!(r.json["samples_stored"], 11);
    assert_eq!(r.json["samples_rejected"], 6);
    assert_eq!(
        r.json["rejected_by_reason"],
        json!({"invalid_series": 5, "too_old": 1})
    );
    assert_eq!(inner.count_samples(None).await.expect("count"), 11);

    // The request's metadata (field 3) is served by /metadata.
    let r = get(&state, "/prometheus/api/v1/metadata", Some(&tokens.read)).await;
    assert_eq!(
        r.json,
        json!({"status": "success", "data": {
            "rw_requests_total": [{"type": "counter", "help": "help text", "unit": ""}]
        }})
    );

    // Read back through the Prometheus API.
    let got = range(&state, &tokens.read, "rw_up", t0, t0 + 105_000, "15").await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0,
        json!({"__name__": "rw_up", "instance": "x:9090", "job": "prom"})
    );
    assert_eq!(got[0].1, good);
    let r = post_form(
        &state,
        "/prometheus/api/v1/query",
        &tokens.read,
        &[
            ("query", "rw_special"),
            ("time", &format!("{}", (t0 + 15_000) / 1000)),
        ],
    )
    .await;
    assert_eq!(
        r.json["data"]["result"][0]["metric"],
        json!({"__name__": "rw_special", "job": "prom"}),
        "empty-valued label dropped"
    );
    assert_eq!(r.json["data"]["result"][0]["value"][1], "+Inf");
    for (at, want) in [(t0, json!(["NaN"])), (t0 + 45_000, json!([]))] {
        let r = post_form(
            &state,
            "/prometheus/api/v1/query",
            &tokens.read,
            &[("query", "rw_special"), ("time", &format!("{}", at / 1000))],
        )
        .await;
        let values: Vec<Value> = r.json["data"]["result"]
            .as_array()
            .expect("vector")
            .iter()
            .map(|s| s["value"][1].clone())
            .collect();
        assert_eq!(json!(values), want, "at {at}: stale after the marker");
    }

    // A retried request is accepted again but stores nothing twice.
    let r = send(&state, remote_write(Some(&tokens.admin), body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["samples_accepted"], 11);
    assert_eq!(r.json["samples_stored"], 0);
    assert_eq!(inner.count_samples(None).await.expect("count"), 11);

    let text = state.metrics.render();
    for line in [
        r#"vigil_aggregator_remote_write_samples_total{result="accepted"} 22"#,
        r#"vigil_aggregator_remote_write_samples_total{result="invalid_series"} 10"#,
        r#"vigil_aggregator_remote_write_samples_total{result="too_old"} 2"#,
        r#"vigil_aggregator_remote_write_requests_total{result="success"} 2"#,
        r#"vigil_aggregator_import_requests_total{result="success"} 0"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn remote_write_round_trip_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    remote_write_round_trip(sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn remote_write_round_trip_postgres() {
    let db = PgTestDb::create().await.expect("postgres");
    let store = vigil_aggregator::store::open(&db.url, std::path::Path::new("."), 2).expect("open");
    store.migrate().await.expect("migrate");
    remote_write_round_trip(store).await;
    db.drop_db().await;
}

#[tokio::test]
async fn remote_write_refuses_what_it_cannot_take() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = sqlite(dir.path()).await;
    let tokens = tokens(inner.as_ref()).await;
    let state = layered_state(inner.clone()).await;
    let t0 = base();
    let valid = snappy(&write_request(&[time_series(
        &[("__name__", "x")],
        &[(t0, 1.0)],
    )]));

    let r = send(&state, remote_write(None, valid.clone())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(&state, remote_write(Some(&tokens.read), valid.clone())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["errorType"], "forbidden");

    let r = send(
        &state,
        remote_write(Some(&tokens.write), b"not snappy at all".to_vec()),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_data", "snappy");
    let r = send(&state, remote_write(Some(&tokens.write), vec![])).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_data", "snappy");
    let garbage = snappy(&[0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    let r = send(&state, remote_write(Some(&tokens.write), garbage)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_data", "protobuf");
    // Invalid UTF-8 in a label is malformed protobuf for a `string` field.
    let mut label = Vec::new();
    bytes_field(&mut label, 1, &[0xff, 0xfe]);
    let mut ts = Vec::new();
    bytes_field(&mut ts, 1, &label);
    let r = send(
        &state,
        remote_write(Some(&tokens.write), snappy(&write_request(&[ts]))),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_data", "protobuf");

    for (ct, ce) in [
        ("application/json", "snappy"),
        (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "snappy",
        ),
        ("application/x-protobuf", "gzip"),
    ] {
        let req = Request::post("/api/v1/write")
            .header(header::AUTHORIZATION, &tokens.write)
            .header(header::CONTENT_TYPE, ct)
            .header(header::CONTENT_ENCODING, ce)
            .body(Body::from(valid.clone()))
            .expect("request");
        let r = send(&state, req).await;
        assert_error(
            &r,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_data",
            "not supported",
        );
    }

    // Every sample rejected: 400 with the counts, so the sender drops it.
    let bad = snappy(&write_request(&[time_series(
        &[("__name__", "9starts_with_a_digit")],
        &[(t0, 1.0), (t0 + 1, 2.0)],
    )]));
    let r = send(&state, remote_write(Some(&tokens.write), bad)).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid metric name",
    );
    assert_eq!(r.json["samples_rejected"], 2);
    assert_eq!(r.json["samples_accepted"], 0);
    // Future samples beyond ingest.max_future_skew.
    let future = snappy(&write_request(&[time_series(
        &[("__name__", "x")],
        &[(t0 + 86_400_000, 1.0)],
    )]));
    let r = send(&state, remote_write(Some(&tokens.write), future)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_data", "max_future_skew");
    assert_eq!(r.json["rejected_by_reason"], json!({"too_new": 1}));

    // Size caps: as sent, and once decompressed.
    let small = IngestLimits {
        http: HttpIngestConfig {
            max_compressed_bytes: 1024,
            max_decompressed_bytes: 4096,
            max_import_bytes: 1024,
            ..HttpIngestConfig::default()
        },
        ..IngestLimits::default()
    };
    let capped = app(state.clone()).layer(axum::Extension(Arc::new(small)));
    let big_raw = write_request(
        &(0..200)
            .map(|i| time_series(&[("__name__", "x"), ("i", &i.to_string())], &[(t0, 1.0)]))
            .collect::<Vec<_>>(),
    );
    let r = send_to(
        capped.clone(),
        remote_write(Some(&tokens.write), big_raw.clone()),
    )
    .await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad_data",
        "max_compressed_bytes",
    );
    let zeros = snappy(&[0u8; 10_000]);
    assert!(zeros.len() < 1024);
    let r = send_to(capped.clone(), remote_write(Some(&tokens.write), zeros)).await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad_data",
        "max_decompressed_bytes",
    );
    // Requests built here carry no Content-Length, so the caps above held
    // while reading; an announced length over the cap is refused unread.
    let mut req = remote_write(Some(&tokens.write), valid.clone());
    req.headers_mut().insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from_static("5000"),
    );
    let r = send_to(capped.clone(), req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = send_to(capped, remote_write(Some(&tokens.write), valid.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    assert_eq!(inner.count_samples(None).await.expect("count"), 1);

    // All turns taken: the request waits, then gets 503 so the sender retries.
    let mut one = IngestLimits::new(
        HttpIngestConfig {
            max_concurrent_requests: 1,
            ..HttpIngestConfig::default()
        },
        std::time::Duration::from_secs(86_400),
        std::time::Duration::from_secs(60),
    );
    one.turn_wait = std::time::Duration::from_millis(100);
    let one = Arc::new(one);
    let busy = app(state.clone()).layer(axum::Extension(one.clone()));
    let held = one.turns.clone().try_acquire_owned().expect("free turn");
    let r = send_to(
        busy.clone(),
        remote_write(Some(&tokens.write), valid.clone()),
    )
    .await;
    assert_error(
        &r,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "max_concurrent_requests",
    );
    let r = send_to(
        busy.clone(),
        import(
            &tokens.write,
            "text/plain",
            "/api/v1/import",
            format!("x 1 {t0}\n"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    let r = send_to(busy, remote_write(Some(&tokens.write), valid.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(m_busy(&state), 1);
    let m = &state.metrics.http_ingest;
    use vigil_aggregator::http::ingest::tally::Endpoint::RemoteWrite;
    assert_eq!(m.requests(RemoteWrite, "malformed"), 4);
    assert_eq!(m.requests(RemoteWrite, "unsupported_media_type"), 3);
    assert_eq!(m.requests(RemoteWrite, "all_rejected"), 2);
    assert_eq!(m.requests(RemoteWrite, "too_large"), 3);
}

fn m_busy(state: &AppState) -> u64 {
    use vigil_aggregator::http::ingest::tally::Endpoint::RemoteWrite;
    state.metrics.http_ingest.requests(RemoteWrite, "busy")
}

#[tokio::test]
async fn a_failing_database_is_503_so_the_sender_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let tokens = tokens(store.as_ref()).await;
    let state = common::state(
        store,
        Arc::new(vigil_aggregator::query::MemorySource::new()),
        vigil_aggregator::query::Engine::default(),
    );
    // Break the database under the store: writes fail, token checks work.
    let url = format!("sqlite:{}", dir.path().join("t.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
    sqlx::query("DROP TABLE samples")
        .execute(&pool)
        .await
        .expect("drop");
    let body = snappy(&write_request(&[time_series(
        &[("__name__", "x")],
        &[(base(), 1.0)],
    )]));
    let r = send(&state, remote_write(Some(&tokens.write), body)).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable", "retry");
    assert!(!r.json["error"].as_str().expect("msg").contains("samples"));
    let text = format!("x 1 {}\n", base());
    let r = send(
        &state,
        import(&tokens.write, "text/plain", "/api/v1/import", text),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let m = &state.metrics.http_ingest;
    use vigil_aggregator::http::ingest::tally::Endpoint::{Import, RemoteWrite};
    assert_eq!(m.requests(RemoteWrite, "unavailable"), 1);
    assert_eq!(m.requests(Import, "unavailable"), 1);
}

// ---- import ---------------------------------------------------------------

async fn import_round_trip(inner: Arc<dyn Store>) {
    let tokens = tokens(inner.as_ref()).await;
    let state = layered_state(inner.clone()).await;
    let t0 = base();
    let mut text =
        String::from("# HELP lat_seconds Request latency.\n# TYPE lat_seconds histogram\n");
    // Two scrapes of a histogram, a counter, one unstamped and one broken line.
    for (i, counts) in [[1, 3, 4], [2, 5, 8]].iter().enumerate() {
        let t = t0 + i as i64 * 60_000;
        text.push_str(&format!(
            "lat_seconds_bucket{{le=\"0.1\",handler=\"/predict\"}} {} {t}\n\
             lat_seconds_bucket{{handler=\"/predict\",le=\"0.5\"}} {} {t}\n\
             lat_seconds_bucket{{handler=\"/predict\",le=\"+Inf\"}} {} {t}\n\
             lat_seconds_sum{{handler=\"/predict\"}} {} {t}\n\
             lat_seconds_count{{handler=\"/predict\"}} {} {t}\n\
             jobs_total{{queue=\"a b\\\"c\"}} {} {t}\n",
            counts[0],
            counts[1],
            counts[2],
            counts[2] as f64 * 0.2,
            counts[2],
            100 + i,
        ));
    }
    text.push_str("unstamped 1\nthis is { not a sample\n");
    let r = send(
        &state,
        import(
            &tokens.write,
            "text/plain; version=0.0.4",
            "/api/v1/import",
            text.clone(),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["samples_accepted"], 12);
    assert_eq!(r.json["samples_stored"], 12);
    assert_eq!(
        r.json["rejected_by_reason"],
        json!({"malformed_line": 1, "missing_timestamp": 1})
    );
    assert_eq!(inner.count_samples(None).await.expect("count"), 12);

    // # HELP / # TYPE became metadata (jobs_total has neither: no entry).
    let r = get(&state, "/prometheus/api/v1/metadata", Some(&tokens.read)).await;
    assert_eq!(
        r.json,
        json!({"status": "success", "data": {
            "lat_seconds": [{"type": "histogram", "help": "Request latency.", "unit": ""}],
        }})
    );

    // The buckets come back as the exact series, le normalised.
    let got = range(
        &state,
        &tokens.read,
        r#"lat_seconds_bucket{handler="/predict"}"#,
        t0,
        t0 + 60_000,
        "60",
    )
    .await;
    let les: Vec<&str> = got
        .iter()
        .map(|(m, _)| m["le"].as_str().expect("le"))
        .collect();
    assert_eq!(les, ["+Inf", "0.1", "0.5"]);
    assert_eq!(got[0].1, vec![(t0, 4.0), (t0 + 60_000, 8.0)]);
    assert_eq!(got[1].1, vec![(t0, 1.0), (t0 + 60_000, 2.0)]);
    // histogram_quantile over them as Prometheus computes it: the median
    // of [1 <= 0.1, 3 <= 0.5, 4] is rank 2 in (0.1, 0.5]: 0.1 + 0.4 * 1/2.
    let got = range(
        &state,
        &tokens.read,
        "histogram_quantile(0.5, lat_seconds_bucket)",
        t0,
        t0,
        "60",
    )
    .await;
    assert_eq!(got.len(), 1);
    assert!((got[0].1[0].1 - 0.3).abs() < 1e-12, "{:?}", got[0].1);
    let got = range(&state, &tokens.read, "jobs_total", t0, t0 + 60_000, "60").await;
    assert_eq!(got[0].0["queue"], "a b\"c");
    assert_eq!(got[0].1, vec![(t0, 100.0), (t0 + 60_000, 101.0)]);

    // Importing the same text again stores nothing twice.
    let r = send(
        &state,
        import(&tokens.write, "text/plain", "/api/v1/import", text),
    )
    .await;
    assert_eq!(r.json["samples_stored"], 0);

    // OpenMetrics: timestamps in seconds; unstamped lines may take a default.
    let t1 = t0 + 120_000;
    let om = format!(
        "# TYPE om_events counter\nom_events_total 7 {}.5\nom_gauge 3\n# EOF\n",
        t1 / 1000
    );
    let r = send(
        &state,
        import(
            &tokens.write,
            "application/openmetrics-text; version=1.0.0",
            &format!("/api/v1/import?default_timestamp={}", t1 / 1000),
            om,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["samples_accepted"], 2);
    let got = range(
        &state,
        &tokens.read,
        "om_events_total",
        t1 + 500,
        t1 + 500,
        "1",
    )
    .await;
    assert_eq!(got[0].1, vec![(t1 + 500, 7.0)]);
    let got = range(&state, &tokens.read, "om_gauge", t1, t1, "1").await;
    assert_eq!(got[0].1, vec![(t1, 3.0)]);

    let text = state.metrics.render();
    for line in [
        r#"vigil_aggregator_import_samples_total{result="accepted"} 26"#,
        r#"vigil_aggregator_import_samples_total{result="missing_timestamp"} 2"#,
        r#"vigil_aggregator_import_samples_total{result="malformed_line"} 2"#,
        r#"vigil_aggregator_import_requests_total{result="success"} 3"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn import_round_trip_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    import_round_trip(sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn import_round_trip_postgres() {
    let db = PgTestDb::create().await.expect("postgres");
    let store = vigil_aggregator::store::open(&db.url, std::path::Path::new("."), 2).expect("open");
    store.migrate().await.expect("migrate");
    import_round_trip(store).await;
    db.drop_db().await;
}

#[tokio::test]
async fn import_refuses_what_it_cannot_take() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = sqlite(dir.path()).await;
    let tokens = tokens(inner.as_ref()).await;
    let state = layered_state(inner.clone()).await;
    let line = format!("x 1 {}\n", base());

    let req = Request::post("/api/v1/import")
        .body(Body::from(line.clone()))
        .expect("request");
    assert_eq!(send(&state, req).await.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &state,
        import(&tokens.read, "text/plain", "/api/v1/import", line.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = send(
        &state,
        import(
            &tokens.write,
            "application/json",
            "/api/v1/import",
            line.clone(),
        ),
    )
    .await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "bad_data",
        "text/plain",
    );
    let req = Request::post("/api/v1/import")
        .header(header::AUTHORIZATION, &tokens.write)
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(line.clone()))
        .expect("request");
    assert_error(
        &send(&state, req).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "bad_data",
        "gzip",
    );
    for uri in [
        "/api/v1/import?default_timestamp=later",
        "/api/v1/import?job=x",
    ] {
        let r = send(
            &state,
            import(&tokens.write, "text/plain", uri, line.clone()),
        )
        .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_data", "parameter");
    }
    // Nothing usable: 400 with the counts.
    let r = send(
        &state,
        import(
            &tokens.write,
            "text/plain",
            "/api/v1/import",
            "a 1\nb 2\n{\n".into(),
        ),
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "all 3 samples rejected",
    );
    assert_eq!(
        r.json["rejected_by_reason"],
        json!({"malformed_line": 1, "missing_timestamp": 2})
    );
    // Binary garbage is malformed lines, not a crash.
    let r = send(
        &state,
        import(
            &tokens.write,
            "text/plain",
            "/api/v1/import",
            String::from_utf8_lossy(&[0xff, 0x00, b'\n', 0x7f]).into_owned(),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);

    let small = IngestLimits {
        http: HttpIngestConfig {
            max_import_bytes: 1024,
            ..HttpIngestConfig::default()
        },
        ..IngestLimits::default()
    };
    let capped = app(state.clone()).layer(axum::Extension(Arc::new(small)));
    let r = send_to(
        capped,
        import(
            &tokens.write,
            "text/plain",
            "/api/v1/import",
            line.repeat(100),
        ),
    )
    .await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad_data",
        "max_import_bytes",
    );
    assert_eq!(inner.count_samples(None).await.expect("count"), 0);
}
