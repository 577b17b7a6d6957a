//! The alerts API (docs/alerting.md, "Alerts API"):
//! - `GET /api/v1/alerts?severity&team&host&state`: pending and firing
//!   alerts with their acknowledgement and whether notifications are muted;
//! - `GET /api/v1/alerts/history?from&to&rule&host&severity&team&event&limit&cursor`:
//!   transitions, newest first, paged with an opaque cursor;
//! - `POST /api/v1/alerts/{id}/ack` (write scope), body `{"comment": "..."}`
//!   (optional): acknowledges a firing alert as the token's name; 404 for an
//!   unknown id, 409 when it is pending or already acknowledged.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::{ReadAccess, WriteAccess};
use super::error::ApiError;
use super::ops::{now_ms, parse_time, rfc3339};
use crate::alert::eval::machine::{Ack, Phase};
use crate::alert::eval::{AckError, ActiveAlert};
use crate::alert::state::HISTORY_EVENTS as EVENTS;
use crate::alert::state::{self, HistoryQuery, HistoryRow, fp_hex, parse_fp};
use crate::alert::{LabelSet, Muted};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/alerts", get(list))
        .route("/alerts/history", get(history))
        .route("/alerts/{id}/ack", post(ack))
}

/// Default and largest page of the history.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Longest comment kept with an acknowledgement.
const MAX_COMMENT_BYTES: usize = 4096;

#[derive(Debug, Deserialize)]
pub struct ListParams {
    severity: Option<String>,
    team: Option<String>,
    host: Option<String>,
    state: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AckView {
    pub by: String,
    pub at: String,
    pub comment: String,
}

impl From<Ack> for AckView {
    fn from(a: Ack) -> Self {
        AckView {
            by: a.by,
            at: rfc3339(a.at_ms),
            comment: a.comment,
        }
    }
}

/// One alert in `GET /api/v1/alerts`.
#[derive(Debug, Serialize)]
pub struct AlertView {
    /// The fingerprint of its labels, 16 hex digits.
    pub id: String,
    pub rule: String,
    pub group: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    /// `pending` or `firing`.
    pub state: &'static str,
    pub active_at: String,
    pub fired_at: Option<String>,
    pub keep_firing_since: Option<String>,
    /// The last value of its expression (null for NaN).
    pub value: Option<f64>,
    pub ack: Option<AckView>,
    pub escalated_at: Option<String>,
    pub flapping: bool,
    /// Why notifications are held back (silence, inhibition, maintenance).
    pub muted: Option<Muted>,
}

#[derive(Debug, Serialize)]
pub struct AlertsResponse {
    pub alerts: Vec<AlertView>,
}

fn view(state: &AppState, a: ActiveAlert) -> AlertView {
    AlertView {
        id: fp_hex(a.fingerprint),
        muted: state.alerting.muted(&a.labels),
        rule: a.rule,
        group: a.group,
        state: a.phase.as_str(),
        active_at: rfc3339(a.active_at_ms),
        fired_at: a.fired_at_ms.map(rfc3339),
        keep_firing_since: a.keep_firing_since_ms.map(rfc3339),
        value: a.value.is_finite().then_some(a.value),
        ack: a.ack.map(AckView::from),
        escalated_at: a.escalated_at_ms.map(rfc3339),
        flapping: a.flapping,
        labels: a.labels,
        annotations: a.annotations,
    }
}

async fn list(
    _: ReadAccess,
    State(state): State<AppState>,
    Query(p): Query<ListParams>,
) -> Result<Json<AlertsResponse>, ApiError> {
    let phase = match p.state.as_deref() {
        None | Some("") => None,
        Some("pending") => Some(Phase::Pending),
        Some("firing") => Some(Phase::Firing),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "state: expected pending or firing, got {other:?}"
            )));
        }
    };
    let want = |a: &ActiveAlert, name: &str, v: &Option<String>| {
        v.as_deref()
            .is_none_or(|v| a.labels.get(name).is_some_and(|l| l == v))
    };
    let alerts = state
        .alerting
        .active()
        .into_iter()
        .filter(|a| phase.is_none_or(|ph| a.phase == ph))
        .filter(|a| {
            want(a, "severity", &p.severity) && want(a, "team", &p.team) && want(a, "host", &p.host)
        })
        .map(|a| view(&state, a))
        .collect();
    Ok(Json(AlertsResponse { alerts }))
}

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    from: Option<String>,
    to: Option<String>,
    rule: Option<String>,
    host: Option<String>,
    severity: Option<String>,
    team: Option<String>,
    event: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// One transition in the history.
#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub time: String,
    #[serde(flatten)]
    pub row: HistoryRow,
}

#[derive(Debug, Serialize)]
pub struct HistoryResponse {
    pub events: Vec<HistoryView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The cursor is the last row's id, obfuscated so clients treat it as opaque.
const CURSOR_KEY: u64 = 0x5bd1_e995_9e37_79b9;

fn encode_cursor(id: i64) -> String {
    format!("{:016x}", (id as u64) ^ CURSOR_KEY)
}

fn decode_cursor(s: &str) -> Result<i64, ApiError> {
    parse_fp(s)
        .map(|v| (v ^ CURSOR_KEY) as i64)
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::BadRequest(format!("cursor: {s:?} is not a cursor this API returned"))
        })
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

async fn history(
    _: ReadAccess,
    State(state): State<AppState>,
    Query(p): Query<HistoryParams>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let from_ms = match p.from.as_deref() {
        Some(raw) if !raw.is_empty() => parse_time("from", raw)?,
        _ => 0,
    };
    let to_ms = match p.to.as_deref() {
        Some(raw) if !raw.is_empty() => parse_time("to", raw)?,
        _ => i64::MAX,
    };
    if from_ms > to_ms {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    let limit = match p.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit: expected 1 to {MAX_LIMIT}, got {raw:?}"
                )));
            }
        },
    };
    let event = non_empty(p.event);
    if let Some(e) = &event {
        if !EVENTS.contains(&e.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "event: expected one of {}, got {e:?}",
                EVENTS.join(", ")
            )));
        }
    }
    let before_id = non_empty(p.cursor).map(|c| decode_cursor(&c)).transpose()?;
    let q = HistoryQuery {
        from_ms,
        to_ms,
        rule: non_empty(p.rule),
        host: non_empty(p.host),
        severity: non_empty(p.severity),
        team: non_empty(p.team),
        event,
        before_id,
        limit: limit + 1,
    };
    let mut rows = state::history(&state.store.db(), &q).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(r.id))
    } else {
        None
    };
    Ok(Json(HistoryResponse {
        events: rows
            .into_iter()
            .map(|row| HistoryView {
                time: rfc3339(row.ts_ms),
                row,
            })
            .collect(),
        next_cursor,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    #[serde(default)]
    comment: String,
}

#[derive(Debug, Serialize)]
pub struct AckResponse {
    pub id: String,
    pub ack: AckView,
}

async fn ack(
    WriteAccess(who): WriteAccess,
    audit: super::audit::Audit,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AckResponse>, ApiError> {
    let body: AckBody = if body.iter().all(u8::is_ascii_whitespace) {
        AckBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!("body: expected {{\"comment\": \"...\"}}: {e}"))
        })?
    };
    if body.comment.len() > MAX_COMMENT_BYTES {
        return Err(ApiError::BadRequest(format!(
            "comment: at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let fp = parse_fp(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no active alert with id {id:?}")))?;
    match state
        .alerting
        .ack(fp, &who.name, &body.comment, now_ms())
        .await
    {
        Ok(ack) => {
            audit
                .note(
                    crate::audit::Action::AlertAck,
                    &fp_hex(fp),
                    serde_json::json!({"comment": body.comment}),
                )
                .await;
            Ok(Json(AckResponse {
                id: fp_hex(fp),
                ack: ack.into(),
            }))
        }
        Err(e @ AckError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ (AckError::NotFiring(_) | AckError::AlreadyAcked { .. })) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(e @ AckError::NotLeader(_)) => Err(ApiError::Conflict(e.to_string())),
        Err(AckError::Store(e)) => Err(e.into()),
    }
}
