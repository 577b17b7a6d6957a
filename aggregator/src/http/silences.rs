//! Silences, in Alertmanager's API shape:
//! `GET /api/v1/silences` (read; `?state=active|pending|expired` filters),
//! `GET /api/v1/silences/{id}` (read), `POST /api/v1/silences` (write:
//! `{id?, matchers:[{name,value,isRegex,isEqual}], startsAt?, endsAt,
//! createdBy?, comment}`, `createdBy` defaults to the token's name; answers
//! `{silenceID}`; with an `id` it edits that silence the way Alertmanager
//! does, see `notify/silence/update.rs`), `DELETE /api/v1/silences/{id}`
//! (write: expires it now).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::{ReadAccess, WriteAccess};
use super::audit::Audit;
use super::error::ApiError;
use super::ops::{parse_time, rfc3339};
use crate::audit::Action;
use crate::notify::config::matcher::ApiMatcher;
use crate::notify::silence::{NewSilence, Silence, SilenceError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/silences", get(list).post(create))
        .route("/silences/{id}", get(one).delete(expire))
}

/// Maps the notify modules' errors to HTTP.
pub(super) fn api_error(e: SilenceError) -> ApiError {
    match e {
        SilenceError::Invalid(m) => ApiError::BadRequest(m),
        SilenceError::NotFound(id) => {
            ApiError::NotFound(format!("no silence or maintenance window {id:?}"))
        }
        SilenceError::Store(e) => e.into(),
    }
}

/// What the audit log keeps of a created or edited silence: its matchers,
/// times, author and comment, and for an edit the id it replaced.
pub(super) fn silence_details(s: &Silence, edited: Option<&str>) -> serde_json::Value {
    let mut d = serde_json::json!({
        "matchers": s.matchers,
        "startsAt": rfc3339(s.starts_at_ms),
        "endsAt": rfc3339(s.ends_at_ms),
        "createdBy": s.created_by,
        "comment": s.comment,
    });
    if let (Some(id), Some(map)) = (edited, d.as_object_mut()) {
        map.insert("edited".into(), id.into());
    }
    d
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub state: &'static str,
}

/// A silence as the API returns it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceView {
    pub id: String,
    pub status: Status,
    pub matchers: Vec<ApiMatcher>,
    pub starts_at: String,
    pub ends_at: String,
    pub updated_at: String,
    pub created_by: String,
    pub comment: String,
}

fn view(s: Silence, now: i64) -> SilenceView {
    SilenceView {
        status: Status {
            state: s.state(now).as_str(),
        },
        starts_at: rfc3339(s.starts_at_ms),
        ends_at: rfc3339(s.ends_at_ms),
        updated_at: rfc3339(s.updated_at_ms),
        id: s.id,
        matchers: s.matchers,
        created_by: s.created_by,
        comment: s.comment,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `active`, `pending` or `expired`.
    pub state: Option<String>,
}

async fn list(
    _caller: ReadAccess,
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<SilenceView>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(s) = &params.state
        && !["active", "pending", "expired"].contains(&s.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "state: expected active, pending or expired, got {s:?}"
        )));
    }
    let silences = &state.mutes.silences;
    silences.ensure_loaded().await?;
    let now = state.mutes.now_ms();
    Ok(Json(
        silences
            .list()
            .into_iter()
            .map(|s| view(s, now))
            .filter(|v| params.state.as_deref().is_none_or(|s| v.status.state == s))
            .collect(),
    ))
}

async fn one(
    _caller: ReadAccess,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    state.mutes.silences.ensure_loaded().await?;
    let s = state
        .mutes
        .silences
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no silence {id:?}")))?;
    Ok(Json(view(s, state.mutes.now_ms())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBody {
    /// The silence to edit; absent or empty: a new silence.
    pub id: Option<String>,
    pub matchers: Vec<ApiMatcher>,
    /// RFC 3339 or unix seconds; default now, or the edited silence's
    /// start.
    pub starts_at: Option<String>,
    /// RFC 3339 or unix seconds.
    pub ends_at: String,
    pub created_by: Option<String>,
    pub comment: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    #[serde(rename = "silenceID")]
    pub silence_id: String,
}

async fn create(
    WriteAccess(caller): WriteAccess,
    audit: Audit,
    State(state): State<AppState>,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Created>, ApiError> {
    let Json(body) = body.map_err(ApiError::from)?;
    let silences = &state.mutes.silences;
    silences.ensure_loaded().await?;
    let now = state.mutes.now_ms();
    let edited = body.id.filter(|id| !id.is_empty());
    let starts_at_ms = match (&body.starts_at, &edited) {
        (Some(t), _) => parse_time("startsAt", t)?,
        // Editing without a start keeps the silence's own, so an active
        // silence can be extended in place.
        (None, Some(id)) => silences.get(id).map_or(now, |s| s.starts_at_ms),
        (None, None) => now,
    };
    let new = NewSilence {
        matchers: body.matchers,
        starts_at_ms,
        ends_at_ms: parse_time("endsAt", &body.ends_at)?,
        created_by: body.created_by.unwrap_or(caller.name),
        comment: body.comment,
    };
    let s = match &edited {
        Some(id) => silences.update(id, new, now).await,
        None => silences.create(new, now).await,
    }
    .map_err(|e| match e {
        SilenceError::NotFound(id) => ApiError::NotFound(format!("no silence {id:?}")),
        e => api_error(e),
    })?;
    let (action, details) = match &edited {
        Some(id) => (Action::SilenceUpdate, silence_details(&s, Some(id))),
        None => (Action::SilenceCreate, silence_details(&s, None)),
    };
    audit.note(action, &s.id, details).await;
    Ok(Json(Created { silence_id: s.id }))
}

async fn expire(
    _caller: WriteAccess,
    audit: Audit,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    let now = state.mutes.now_ms();
    let s = state
        .mutes
        .silences
        .expire(&id, now)
        .await
        .map_err(|e| match e {
            SilenceError::NotFound(_) => ApiError::NotFound(format!("no silence {id:?}")),
            e => api_error(e),
        })?;
    audit
        .note(Action::SilenceExpire, &s.id, serde_json::json!({}))
        .await;
    Ok(Json(view(s, now)))
}
