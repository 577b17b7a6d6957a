//! Maintenance mode (Vigil's "stop/start monitoring"):
//! `GET /api/v1/maintenance` (read: active and recent windows),
//! `POST /api/v1/maintenance` (write: `{host?, duration? | until?, comment}`
//! starts a window now; without `host` it is global; without `duration`
//! and `until` it lasts until stopped; answers the window),
//! `POST /api/v1/maintenance/{id}/stop` and `DELETE /api/v1/maintenance/{id}`
//! (write: stop it now).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::{ReadAccess, WriteAccess};
use super::audit::Audit;
use super::error::ApiError;
use super::ops::{parse_duration_ms, parse_time, rfc3339};
use super::silences::api_error;
use crate::audit::Action;
use crate::notify::maintenance::Window;
use crate::notify::silence::SilenceError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/maintenance", get(list).post(start))
        .route("/maintenance/{id}", axum::routing::delete(stop))
        .route("/maintenance/{id}/stop", post(stop))
}

/// A window as the API returns it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowView {
    pub id: String,
    /// `null`: global.
    pub host: Option<String>,
    pub active: bool,
    pub starts_at: String,
    /// `null`: until stopped.
    pub ends_at: Option<String>,
    pub comment: String,
    pub created_by: String,
    pub stopped_at: Option<String>,
    pub stopped_by: Option<String>,
}

fn view(w: Window, now: i64) -> WindowView {
    WindowView {
        active: w.is_active(now),
        starts_at: rfc3339(w.starts_at_ms),
        ends_at: w.ends_at_ms.map(rfc3339),
        stopped_at: w.stopped_at_ms.map(rfc3339),
        id: w.id,
        host: w.host,
        comment: w.comment,
        created_by: w.created_by,
        stopped_by: w.stopped_by,
    }
}

/// What the audit log keeps of a window.
pub(super) fn window_details(w: &Window) -> serde_json::Value {
    serde_json::json!({
        "host": w.host,
        "startsAt": rfc3339(w.starts_at_ms),
        "endsAt": w.ends_at_ms.map(rfc3339),
        "comment": w.comment,
    })
}

#[derive(Debug, Serialize)]
pub struct ListResponse {
    pub maintenance: Vec<WindowView>,
}

async fn list(
    _caller: ReadAccess,
    State(state): State<AppState>,
) -> Result<Json<ListResponse>, ApiError> {
    state.mutes.maintenance.ensure_loaded().await?;
    let now = state.mutes.now_ms();
    let mut all: Vec<WindowView> = state
        .mutes
        .maintenance
        .list()
        .into_iter()
        .map(|w| view(w, now))
        .collect();
    // Active first, then the most recent.
    all.reverse();
    all.sort_by_key(|w| !w.active);
    Ok(Json(ListResponse { maintenance: all }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The host (its `host` label); absent: everything.
    pub host: Option<String>,
    /// `2h`, `30m`, ...
    pub duration: Option<String>,
    /// RFC 3339 or unix seconds.
    pub until: Option<String>,
    #[serde(default)]
    pub comment: String,
}

async fn start(
    WriteAccess(caller): WriteAccess,
    audit: Audit,
    State(state): State<AppState>,
    body: Result<Json<StartBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<WindowView>, ApiError> {
    let Json(body) = body.map_err(ApiError::from)?;
    let now = state.mutes.now_ms();
    let until = match (&body.duration, &body.until) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give duration or until, not both".into(),
            ));
        }
        (Some(d), None) => Some(now.saturating_add(parse_duration_ms("duration", d)?)),
        (None, Some(u)) => Some(parse_time("until", u)?),
        (None, None) => None,
    };
    let w = state
        .mutes
        .maintenance
        .start(body.host, until, body.comment, caller.name, now)
        .await
        .map_err(api_error)?;
    audit
        .note(Action::MaintenanceStart, &w.id, window_details(&w))
        .await;
    Ok(Json(view(w, now)))
}

async fn stop(
    WriteAccess(caller): WriteAccess,
    audit: Audit,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WindowView>, ApiError> {
    let now = state.mutes.now_ms();
    let w = state
        .mutes
        .maintenance
        .stop(&id, &caller.name, now)
        .await
        .map_err(|e| match e {
            SilenceError::NotFound(_) => {
                ApiError::NotFound(format!("no maintenance window {id:?}"))
            }
            e => api_error(e),
        })?;
    audit
        .note(Action::MaintenanceStop, &w.id, window_details(&w))
        .await;
    Ok(Json(view(w, now)))
}
