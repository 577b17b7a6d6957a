//! Access control through the real app over a real SQLite store: every error
//! path of tokens, scopes, revocation, rate limits and anonymous reads.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use vigil_aggregator::auth::{new_token, token_hash};
use vigil_aggregator::http::access::{AccessPolicy, RateLimit};
use vigil_aggregator::http::{AppState, app, app_with_access};
use vigil_aggregator::testing;

async fn state(dir: &std::path::Path) -> AppState {
    testing::sqlite_app_state(dir, Arc::new(vigil_aggregator::query::MemorySource::new()))
        .await
        .expect("state")
}

async fn token(state: &AppState, name: &str, scope: &str) -> String {
    let t = new_token().expect("token");
    state
        .store
        .put_token(name, &token_hash(&t), scope)
        .await
        .expect("put token");
    t
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

async fn get(app: &Router, uri: &str, auth: Option<&str>, from: Option<[u8; 4]>) -> Reply {
    let mut req = Request::get(uri);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let mut req = req.body(Body::empty()).expect("request");
    if let Some(ip) = from {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    }
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().expect("ascii").to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        body,
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn tokens_and_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let reader = token(&state, "reader", "read").await;
    let admin = token(&state, "boss", "admin").await;
    let app = app(state.clone());

    let r = get(&app, "/api/v1/hosts", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.body["error"]
            .as_str()
            .expect("msg")
            .contains("missing bearer token")
    );

    let r = get(&app, "/api/v1/hosts", Some("Basic abc"), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["error"].as_str().expect("msg").contains("malformed"));

    let r = get(&app, "/api/v1/hosts", Some("Bearer vgl_nope"), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid or revoked token");

    // Read scope reads, but may not administer.
    assert_eq!(
        get(&app, "/api/v1/hosts", Some(&bearer(&reader)), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = get(&app, "/api/v1/tokens", Some(&bearer(&reader)), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body["error"].as_str().expect("msg").contains("\"admin\""));

    // Admin lists tokens without their secrets.
    let r = get(&app, "/api/v1/tokens", Some(&bearer(&admin)), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.body.to_string();
    assert!(text.contains("\"reader\"") && text.contains("\"boss\""));
    assert!(!text.contains(&reader) && !text.contains(&admin));

    // A revoked token is rejected from the next request on.
    assert!(state.store.revoke_token("reader").await.expect("revoke"));
    let r = get(&app, "/api/v1/hosts", Some(&bearer(&reader)), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid or revoked token");

    // A token with a role that is no scope gets nothing.
    let odd = token(&state, "odd", "superuser").await;
    assert_eq!(
        get(&app, "/api/v1/hosts", Some(&bearer(&odd)), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Health and self-metrics stay open.
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            get(&app, open, None, None).await.status,
            StatusCode::OK,
            "{open}"
        );
    }
}

#[tokio::test]
async fn anonymous_reads_only_when_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let reader = token(&state, "reader", "read").await;

    let closed = app(state.clone());
    assert_eq!(
        get(&closed, "/api/v1/hosts", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let open = app_with_access(
        state.clone(),
        &AccessPolicy {
            anonymous_read: true,
            ..AccessPolicy::default()
        },
    );
    assert_eq!(
        get(&open, "/api/v1/hosts", None, None).await.status,
        StatusCode::OK
    );
    // Reads only: an admin route still needs a token.
    let r = get(&open, "/api/v1/tokens", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A wrong token is not silently treated as anonymous.
    assert_eq!(
        get(&open, "/api/v1/hosts", Some("Bearer vgl_wrong"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A read token still works, and still may not administer.
    assert_eq!(
        get(&open, "/api/v1/tokens", Some(&bearer(&reader)), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

fn limit(per_second: u32, burst: u32) -> Option<RateLimit> {
    Some(RateLimit {
        per_second,
        burst: NonZeroU32::new(burst).expect("nonzero"),
    })
}

#[tokio::test]
async fn per_token_rate_limit_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let a = token(&state, "a", "read").await;
    let b = token(&state, "b", "read").await;
    let app = app_with_access(
        state.clone(),
        &AccessPolicy {
            anonymous_read: false,
            per_token: limit(1, 3),
            per_ip: None,
        },
    );
    for i in 0..3 {
        let r = get(&app, "/api/v1/hosts", Some(&bearer(&a)), None).await;
        assert_eq!(r.status, StatusCode::OK, "request {i} is within the burst");
    }
    let r = get(&app, "/api/v1/hosts", Some(&bearer(&a)), None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = r
        .retry_after
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&secs), "{secs}");
    assert_eq!(r.body["errorType"], "rate_limited");
    // Another token has its own bucket.
    assert_eq!(
        get(&app, "/api/v1/hosts", Some(&bearer(&b)), None)
            .await
            .status,
        StatusCode::OK
    );
    // Prometheus routes are limited too (the bucket is empty whatever the route).
    let r = get(
        &app,
        "/prometheus/api/v1/query?query=up",
        Some(&bearer(&a)),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Health is never limited.
    assert_eq!(
        get(&app, "/healthz", None, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn per_ip_rate_limit_applies_before_the_token_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let a = token(&state, "a", "read").await;
    let app = app_with_access(
        state.clone(),
        &AccessPolicy {
            anonymous_read: false,
            per_token: None,
            per_ip: limit(1, 2),
        },
    );
    let one = Some([10, 0, 0, 1]);
    assert_eq!(
        get(&app, "/api/v1/hosts", Some(&bearer(&a)), one)
            .await
            .status,
        StatusCode::OK
    );
    // Guessing tokens spends the same bucket.
    assert_eq!(
        get(&app, "/api/v1/hosts", Some("Bearer vgl_guess"), one)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = get(&app, "/api/v1/hosts", Some(&bearer(&a)), one).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.retry_after.is_some());
    // Another address is unaffected.
    assert_eq!(
        get(
            &app,
            "/api/v1/hosts",
            Some(&bearer(&a)),
            Some([10, 0, 0, 2])
        )
        .await
        .status,
        StatusCode::OK
    );
}
