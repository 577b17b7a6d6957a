//! Shared by the HTTP API tests: an app over a real store, tokens of each
//! scope, and one-call request helpers.
#![allow(dead_code)]

pub mod web;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use vigil_aggregator::auth::{new_token, token_hash};
use vigil_aggregator::http::{AppState, app};
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::query::{Engine, Source};
use vigil_aggregator::store::{self, Store};

/// Bearer headers for a token of each scope.
pub struct Tokens {
    pub read: String,
    pub write: String,
    pub admin: String,
}

pub async fn tokens(store: &dyn Store) -> Tokens {
    let make = |role: &'static str| {
        let token = new_token().expect("token");
        let hash = token_hash(&token);
        (role, token, hash)
    };
    let made = [make("read"), make("write"), make("admin")];
    for (role, _, hash) in &made {
        store.put_token(role, hash, role).await.expect("token");
    }
    Tokens {
        read: format!("Bearer {}", made[0].1),
        write: format!("Bearer {}", made[1].1),
        admin: format!("Bearer {}", made[2].1),
    }
}

/// A migrated SQLite store in `dir`.
pub async fn sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
    let store = store::open("sqlite:t.db", dir, 2).expect("open");
    store.migrate().await.expect("migrate");
    store
}

/// App state over `store`, reading from `source`.
pub fn state(store: Arc<dyn Store>, source: Arc<dyn Source>, engine: Engine) -> AppState {
    let metrics = Arc::new(Metrics::new());
    let engine = Arc::new(engine);
    AppState {
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
    }
}

/// App state whose store is `inner` wrapped in the head, read through the
/// production source, as `server.rs` builds it (migrating warms the head).
pub async fn layered_state(inner: Arc<dyn Store>) -> AppState {
    let metrics = Arc::new(Metrics::new());
    let layers = store::layered(
        inner,
        &store::config::StorageConfig::default(),
        metrics.storage.clone(),
    );
    layers.store.migrate().await.expect("migrate");
    let engine = Arc::new(Engine::default());
    AppState {
        mutes: vigil_aggregator::testing::mutes(layers.store.as_ref()),

        alerting: vigil_aggregator::alert::eval::Evaluator::detached(
            layers.store.clone(),
            layers.source.clone(),
            engine.clone(),
            metrics.alerting.clone(),
        ),
        store: layers.store,
        metrics,
        store_ready: Arc::new(AtomicBool::new(true)),
        source: layers.source,
        engine,
    }
}

/// A reply: status, headers and the body as JSON (or a JSON string).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

pub async fn send(state: &AppState, req: Request<Body>) -> Reply {
    send_to(app(state.clone()), req).await
}

pub async fn send_to(router: axum::Router, req: Request<Body>) -> Reply {
    let resp = router.oneshot(req).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply {
        status,
        headers,
        json,
    }
}

pub async fn get(state: &AppState, uri: &str, token: Option<&str>) -> Reply {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, t);
    }
    send(state, req.body(Body::empty()).expect("request")).await
}

/// A POST with an `application/x-www-form-urlencoded` body, as Grafana sends.
pub async fn post_form(state: &AppState, uri: &str, token: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let req = Request::post(uri)
        .header(header::AUTHORIZATION, token)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    send(state, req).await
}

/// `?a=b&c=d`, encoded.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Asserts a Prometheus error reply.
pub fn assert_error(reply: &Reply, status: StatusCode, kind: &str, needle: &str) {
    assert_eq!(reply.status, status, "{}", reply.json);
    assert_eq!(reply.json["status"], "error", "{}", reply.json);
    assert_eq!(reply.json["errorType"], kind, "{}", reply.json);
    let message = reply.json["error"].as_str().expect("error message");
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}
