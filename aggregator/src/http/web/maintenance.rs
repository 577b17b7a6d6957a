//! Maintenance from the dashboard (operators, CSRF-checked forms):
//!
//! - `POST /maintenance` (`host`: empty for every host; `duration`: `2h`,
//!   `30m`, ... or empty for "until stopped"; `comment`; `next`): starts a
//!   window, as `POST /api/v1/maintenance` does, and returns to `next`.
//! - `POST /maintenance/{id}/stop` (`next`): stops it early.
//!
//! The host page holds the start form, the maintenance banner of every page
//! a stop button per window.

use crate::audit::{Action, Actor};
use crate::http::audit::Audit;
use crate::http::maintenance::window_details;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{PageError, check_csrf, local_path, require_operator};
use crate::http::AppState;
use crate::http::ops::parse_duration_ms;
use crate::http::session::WebUser;
use crate::notify::silence::SilenceError;

#[derive(Debug, Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    comment: String,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct StopForm {
    #[serde(default)]
    csrf_token: String,
    next: Option<String>,
}

fn page_error(e: SilenceError) -> PageError {
    match e {
        SilenceError::Invalid(m) => PageError::BadRequest(m),
        SilenceError::NotFound(id) => PageError::NotFound(format!("no maintenance window {id:?}")),
        SilenceError::Store(e) => e.into(),
    }
}

/// `POST /maintenance`.
pub async fn start(
    user: WebUser,
    audit: Audit,
    State(state): State<AppState>,
    axum::Form(form): axum::Form<StartForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf_token)?;
    require_operator(&user)?;
    let now = state.mutes.now_ms();
    let until = match form.duration.trim() {
        "" => None,
        d => Some(now.saturating_add(parse_duration_ms("duration", d)?)),
    };
    let host = Some(form.host.trim().to_string()).filter(|h| !h.is_empty());
    let w = state
        .mutes
        .maintenance
        .start(host, until, form.comment, user.name.clone(), now)
        .await
        .map_err(page_error)?;
    audit
        .note_as(
            Actor::user(&user.name),
            Action::MaintenanceStart,
            &w.id,
            window_details(&w),
        )
        .await;
    Ok(Redirect::to(local_path(form.next.as_deref(), "/")).into_response())
}

/// `POST /maintenance/{id}/stop`.
pub async fn stop(
    user: WebUser,
    audit: Audit,
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<StopForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf_token)?;
    require_operator(&user)?;
    let now = state.mutes.now_ms();
    let w = state
        .mutes
        .maintenance
        .stop(&id, &user.name, now)
        .await
        .map_err(page_error)?;
    audit
        .note_as(
            Actor::user(&user.name),
            Action::MaintenanceStop,
            &w.id,
            window_details(&w),
        )
        .await;
    Ok(Redirect::to(local_path(form.next.as_deref(), "/")).into_response())
}
