//! `GET /prometheus/api/v1/metadata` over the real store stack (head over
//! SQLite or PostgreSQL): what a committed batch's metadata becomes, and
//! Prometheus' `metric`, `limit` and `limit_per_metric` parameters.

mod common;

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use vigil_aggregator::store::{self, Store};
use vigil_aggregator::testing::PgTestDb;
use vigil_common::wire::PROTOCOL_VERSION;
use vigil_common::{BatchHeader, Label, MetricKind, MetricMetadata, Point, Series};

const API: &str = "/prometheus/api/v1/metadata";

fn md(name: &str, kind: MetricKind, help: &str, unit: &str) -> MetricMetadata {
    MetricMetadata {
        name: name.into(),
        kind,
        help: help.into(),
        unit: unit.into(),
    }
}

async fn served(inner: Arc<dyn Store>) {
    let tokens = tokens(inner.as_ref()).await;
    let state = layered_state(inner).await;
    let r = get(&state, API, Some(&tokens.read)).await;
    assert_eq!(r.json, json!({"status": "success", "data": {}}));

    // A batch commits, then its metadata is stored, as QUIC ingest does.
    let header = BatchHeader {
        protocol_version: PROTOCOL_VERSION,
        agent_id: "a1".into(),
        boot_id: [1; 16],
        sequence: 1,
        created_at_ms: 0,
        host: "h1".into(),
        roles: vec![],
    };
    let now = vigil_common::now_ms();
    let series = vec![Series::new(
        "node_cpu_seconds_total",
        vec![Label::new("host", "h1")],
        vec![Point {
            timestamp_ms: now,
            value: 1.0,
        }],
    )];
    let metadata = vec![
        md(
            "node_cpu_seconds_total",
            MetricKind::Counter,
            "Seconds the CPUs spent in each mode.",
            "seconds",
        ),
        md("node_load1", MetricKind::Gauge, "1m load average.", ""),
        md(
            "rpc_duration_seconds",
            MetricKind::Summary,
            "RPC latency.",
            "",
        ),
        md("http_latency_seconds", MetricKind::Histogram, "", ""),
        md("mystery", MetricKind::Unknown, "Line \"two\"\nthree", ""),
    ];
    let outcome = state
        .store
        .commit_batch(&header, &series)
        .await
        .expect("commit");
    assert!(!outcome.duplicate);
    assert_eq!(state.store.put_metadata(&metadata).await.expect("put"), 5);
    assert_eq!(state.store.put_metadata(&metadata).await.expect("put"), 0);

    let r = get(&state, API, Some(&tokens.read)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json,
        json!({"status": "success", "data": {
            "http_latency_seconds": [{"type": "histogram", "help": "", "unit": ""}],
            "mystery": [{"type": "unknown", "help": "Line \"two\"\nthree", "unit": ""}],
            "node_cpu_seconds_total": [{"type": "counter",
                "help": "Seconds the CPUs spent in each mode.", "unit": "seconds"}],
            "node_load1": [{"type": "gauge", "help": "1m load average.", "unit": ""}],
            "rpc_duration_seconds": [{"type": "summary", "help": "RPC latency.", "unit": ""}],
        }})
    );

    // `metric` picks one name (an unknown one gives none).
    let r = get(
        &state,
        &format!("{API}?metric=node_load1"),
        Some(&tokens.read),
    )
    .await;
    assert_eq!(
        r.json["data"],
        json!({"node_load1": [{"type": "gauge", "help": "1m load average.", "unit": ""}]})
    );
    let r = get(&state, &format!("{API}?metric=nope"), Some(&tokens.read)).await;
    assert_eq!(r.json["data"], json!({}));

    // `limit` caps the metrics: 0 gives none, a negative value all.
    let count = |r: &Reply| r.json["data"].as_object().expect("map").len();
    for (limit, want) in [("2", 2), ("0", 0), ("-1", 5), ("100", 5)] {
        let r = get(&state, &format!("{API}?limit={limit}"), Some(&tokens.read)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(count(&r), want, "limit={limit}: {}", r.json);
    }
    // One entry per metric is kept, so limit_per_metric only has to parse.
    for per in ["1", "0", "-1"] {
        let uri = format!("{API}?limit_per_metric={per}&limit=1");
        let r = get(&state, &uri, Some(&tokens.read)).await;
        assert_eq!(
            r.json["data"],
            json!({"http_latency_seconds": [{"type": "histogram", "help": "", "unit": ""}]})
        );
    }

    // Bad parameters are 400 bad_data; no token is 401.
    for (uri, needle) in [
        ("limit=x", r#"invalid parameter "limit""#),
        ("limit=1.5", r#"invalid parameter "limit""#),
        (
            "limit_per_metric=many",
            r#"invalid parameter "limit_per_metric""#,
        ),
    ] {
        let r = get(&state, &format!("{API}?{uri}"), Some(&tokens.read)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_data", needle);
    }
    let r = get(&state, API, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn metadata_is_served_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    served(sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn metadata_is_served_postgres() {
    let db = PgTestDb::create().await.expect("PostgreSQL for tests");
    let store = store::open(&db.url, Path::new("."), 4).expect("open");
    store.migrate().await.expect("migrate");
    served(store).await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_failing_database_is_503_without_details() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let tokens = tokens(store.as_ref()).await;
    let state = layered_state(store).await;
    // The table is gone behind the aggregator's back: reads fail.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.path().join("t.db").display()))
        .await
        .expect("connect");
    sqlx::query("DROP TABLE metric_metadata")
        .execute(&pool)
        .await
        .expect("drop");
    pool.close().await;
    let r = get(&state, API, Some(&tokens.read)).await;
    assert_error(
        &r,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "storage is unavailable",
    );
    assert!(
        !r.json.to_string().contains("metric_metadata"),
        "{}",
        r.json
    );
}
