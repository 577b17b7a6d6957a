//! The HTTP app driven in-process with `oneshot`, over a real SQLite store.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use vigil_aggregator::auth::{new_token, token_hash};
use vigil_aggregator::http::{AppState, app};
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::store::{self, Store};
use vigil_aggregator::testing;
use vigil_common::wire::PROTOCOL_VERSION;
use vigil_common::{BatchHeader, Label, Point, Series};

async fn sqlite_state(dir: &std::path::Path) -> AppState {
    testing::sqlite_app_state(dir, Arc::new(vigil_aggregator::query::MemorySource::new()))
        .await
        .expect("state")
}

async fn call(state: &AppState, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, t);
    }
    let resp = app(state.clone())
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}

#[tokio::test]
async fn hosts_needs_a_valid_token_and_lists_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = sqlite_state(dir.path()).await;
    let token = new_token().expect("token");
    state
        .store
        .put_token("t", &token_hash(&token), "admin")
        .await
        .expect("token");

    let (status, body) = call(&state, "/api/v1/hosts", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]
            .as_str()
            .expect("message")
            .contains("bearer token")
    );
    for bad in ["Bearer vgl_wrong", "Basic abc", "Bearer ", "token"] {
        let (status, body) = call(&state, "/api/v1/hosts", Some(bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(body["status"], "error");
    }

    let bearer = format!("Bearer {token}");
    let (status, body) = call(&state, "/api/v1/hosts", Some(&bearer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["hosts"].as_array().expect("array").len(), 0);

    let header = BatchHeader {
        protocol_version: PROTOCOL_VERSION,
        agent_id: "db-1".into(),
        boot_id: [0; 16],
        sequence: 1,
        created_at_ms: 0,
        host: "db-1.example".into(),
        roles: vec!["db".into()],
    };
    let now = vigil_common::now_ms();
    let series = vec![Series::new(
        "pg_up",
        vec![Label::new("host", "db-1.example")],
        vec![
            Point {
                timestamp_ms: now,
                value: 1.0,
            },
            Point {
                timestamp_ms: now + 1,
                value: 1.0,
            },
        ],
    )];
    state
        .store
        .commit_batch(&header, &series)
        .await
        .expect("commit");
    let (status, body) = call(&state, "/api/v1/hosts", Some(&bearer)).await;
    assert_eq!(status, StatusCode::OK);
    let host = &body["hosts"][0];
    assert_eq!(host["agent_id"], "db-1");
    assert_eq!(host["hostname"], "db-1.example");
    assert_eq!(host["roles"][0], "db");
    assert_eq!(host["samples_stored"], 2);
    assert!(host["last_seen"].as_str().expect("rfc3339").ends_with('Z'));
}

#[tokio::test]
async fn health_readiness_metrics_and_unknown_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = sqlite_state(dir.path()).await;
    let (status, body) = call(&state, "/healthz", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, Value::String("ok\n".into()))
    );
    let (status, body) = call(&state, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"], "sqlite");
    let (status, body) = call(&state, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str()
            .expect("text")
            .contains("vigil_aggregator_batches_received_total 0")
    );
    let (status, body) = call(&state, "/no/such/thing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errorType"], "not_found");
}

#[tokio::test]
async fn a_dead_database_makes_readyz_fail_and_the_api_answer_503() {
    // Nothing listens on port 1: the database is down.
    let store: Arc<dyn Store> = store::open(
        "postgres://postgres@127.0.0.1:1/x",
        std::path::Path::new("."),
        1,
    )
    .expect("lazy");
    let metrics = Arc::new(Metrics::new());
    let source: Arc<dyn vigil_aggregator::query::Source> =
        Arc::new(vigil_aggregator::query::MemorySource::new());
    let engine = Arc::new(vigil_aggregator::query::Engine::default());
    let state = AppState {
        mutes: vigil_aggregator::testing::mutes(store.as_ref()),

        alerting: vigil_aggregator::alert::eval::Evaluator::detached(
            store.clone(),
            source.clone(),
            engine.clone(),
            metrics.alerting.clone(),
        ),
        store,
        metrics,
        store_ready: Arc::new(AtomicBool::new(true)),
        source,
        engine,
    };
    let (status, body) = call(&state, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    let (status, body) = call(&state, "/api/v1/hosts", Some("Bearer vgl_x")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errorType"], "unavailable");
    assert!(
        !body["error"].as_str().expect("msg").contains("127.0.0.1"),
        "no internals leak"
    );

    state
        .store_ready
        .store(false, std::sync::atomic::Ordering::Release);
    let (status, _) = call(&state, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
