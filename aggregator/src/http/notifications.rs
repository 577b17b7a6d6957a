//! `GET /api/v1/notifications` (admin): the newest rows of the notification
//! outbox (receiver, integration, status, attempts, last error), for
//! operators checking why a page did not arrive. Never the payload, never
//! a receiver's settings.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::AdminAccess;
use super::error::ApiError;
use crate::notify::outbox::{Outbox, OutboxRow};

/// Rows returned when `limit` is not given.
const DEFAULT_LIMIT: i64 = 100;
/// Most rows one request returns.
const MAX_LIMIT: i64 = 1000;
const STATUSES: &[&str] = &["pending", "delivered", "skipped", "failed", "superseded"];

pub fn router() -> Router<AppState> {
    Router::new().route("/notifications", get(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only rows with this status.
    pub status: Option<String>,
    /// At most this many rows (1..=1000, default 100).
    pub limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NotificationsResponse {
    /// Newest first.
    pub notifications: Vec<OutboxRow>,
}

async fn list(
    _caller: AdminAccess,
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<NotificationsResponse>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer in 1..={MAX_LIMIT}"))
            })?,
    };
    if let Some(s) = params.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(ApiError::BadRequest(format!(
            "status must be one of {}",
            STATUSES.join(", ")
        )));
    }
    let notifications = Outbox::recent(&state.store.db(), params.status.as_deref(), limit).await?;
    Ok(Json(NotificationsResponse { notifications }))
}
