//! `/healthz` (the process is up) and `/readyz` (it can store data).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::cluster::Cluster;

/// How long `/readyz` waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
}

/// Ready when the database is; a cluster follower is ready too (it
/// ingests and serves), and `cluster` says who leads.
async fn readyz(
    State(state): State<AppState>,
    cluster: Option<Extension<Arc<Cluster>>>,
) -> (StatusCode, Json<Value>) {
    let backend = state.store.backend();
    let cluster = super::cluster::status_of(cluster.as_ref().map(|Extension(c)| c));
    let not_ready = |reason: String| {
        state.metrics.database_up.set(0);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not_ready", "database": backend, "reason": reason, "cluster": cluster}),
            ),
        )
    };
    if !state.store_ready.load(Ordering::Acquire) {
        return not_ready("database not reachable or not migrated yet".into());
    }
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {
            state.metrics.database_up.set(1);
            state
                .metrics
                .database_unreachable
                .store(false, Ordering::Release);
            (
                StatusCode::OK,
                Json(json!({"status": "ready", "database": backend, "cluster": cluster})),
            )
        }
        Ok(Err(e)) => {
            state
                .metrics
                .database_unreachable
                .store(true, Ordering::Release);
            not_ready(format!("database error: {e}"))
        }
        Err(_) => {
            state
                .metrics
                .database_unreachable
                .store(true, Ordering::Release);
            not_ready("database did not answer in time".into())
        }
    }
}
