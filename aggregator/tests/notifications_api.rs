//! `GET /api/v1/notifications` over a real SQLite store: admin only, every
//! bad parameter a 400, rows without payloads or receiver secrets; and the
//! outbox refusing an enqueue when the database is down.

mod common;
mod notify_support;

use std::sync::Arc;

use axum::http::StatusCode;
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::notify::Deliver;
use vigil_aggregator::query::{Engine, MemorySource};

use common::{assert_error, get, state, tokens};
use notify_support::{Receiver, fast, notification, outbox, wait_rows};

#[tokio::test]
async fn lists_outbox_rows_for_admins_only_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite(dir.path()).await;
    let state = state(
        store.clone(),
        Arc::new(MemorySource::new()),
        Engine::default(),
    );
    let tokens = tokens(store.as_ref()).await;
    let receiver = Receiver::answering(&[500]);
    let (url, server) = receiver.start().await;
    let yaml = format!(
        "- name: team\n  webhook_configs:\n    - url: {url}/hook?token=s3cr3t\n      \
         http_config: {{bearer_token: hunter2}}\n"
    );
    let outbox = outbox(store.db(), &yaml, &Metrics::new(), fast());
    let task = outbox.spawn();
    outbox.enqueue(notification("team", "k-api")).await.unwrap();
    wait_rows(
        &store.db(),
        std::time::Duration::from_secs(10),
        "delivered",
        |r| r.first().is_some_and(|r| r.status == "delivered"),
    )
    .await;
    task.stop().await;
    server.abort();

    let reply = get(&state, "/api/v1/notifications", Some(&tokens.admin)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let rows = reply.json["notifications"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["receiver"], "team");
    assert_eq!(row["integration"], "webhook/0");
    assert_eq!(row["status"], "delivered");
    assert_eq!(row["attempts"], 2);
    assert_eq!(row["dedup_key"], "k-api");
    assert!(row.get("payload").is_none());
    let text = reply.json.to_string();
    for secret in ["s3cr3t", "hunter2", "/hook"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    let filtered = get(
        &state,
        "/api/v1/notifications?status=pending&limit=5",
        Some(&tokens.admin),
    )
    .await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert_eq!(filtered.json["notifications"], serde_json::json!([]));

    let reply = get(&state, "/api/v1/notifications", Some(&tokens.write)).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "forbidden", "");
    let reply = get(&state, "/api/v1/notifications", Some(&tokens.read)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = get(&state, "/api/v1/notifications", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    for (query, needle) in [
        ("status=sent", "status must be one of"),
        ("limit=0", "limit must be"),
        ("limit=1001", "limit must be"),
        ("limit=ten", "limit must be"),
        ("colour=red", "colour"),
    ] {
        let reply = get(
            &state,
            &format!("/api/v1/notifications?{query}"),
            Some(&tokens.admin),
        )
        .await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request", needle);
    }
}

#[tokio::test]
async fn enqueue_fails_when_the_database_is_down() {
    let store = vigil_aggregator::store::open(
        "postgres://postgres@127.0.0.1:1/none",
        std::path::Path::new("."),
        1,
    )
    .unwrap();
    let outbox = outbox(store.db(), "- name: team\n", &Metrics::new(), fast());
    // A receiver without integrations stores nothing (Alertmanager's "null" receiver).
    outbox.enqueue(notification("team", "k")).await.unwrap();
    let err = outbox
        .enqueue(notification("nobody", "k"))
        .await
        .unwrap_err();
    assert!(err.is_connection(), "{err}");
}
