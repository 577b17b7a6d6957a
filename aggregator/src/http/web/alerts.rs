//! `/alerts`: active alerts, the history (filtered, paged) and silences;
//! and the operator forms: acknowledge (`POST /alerts/{id}/ack`), silence
//! an alert (`GET /alerts/{id}/silence` -> `POST /silences`) and expire a
//! silence (`POST /silences/{id}/expire`). Each form carries the session's
//! CSRF token and needs the operator role; it answers with a redirect back
//! (303), or an error page with a 4xx status that says what was wrong.

use crate::audit::{Action, Actor};
use crate::http::audit::Audit;
use crate::http::silences::silence_details;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::super::ops::{now_ms, parse_duration_ms, parse_time};
use super::super::session::WebUser;
use super::{PageError, check_csrf, format, local_path, page_context, render, require_operator};
use crate::alert::eval::machine::Phase;
use crate::alert::eval::{AckError, ActiveAlert};
use crate::alert::state::HISTORY_EVENTS as EVENTS;
use crate::alert::state::{self, HistoryQuery, fp_hex, parse_fp};
use crate::notify::config::matcher::ApiMatcher;
use crate::notify::silence::{NewSilence, SilenceError};

/// One active alert as the pages show it.
#[derive(Debug, Serialize)]
pub struct AlertRow {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub severity: format::Badge,
    /// Labels other than `alertname` and `severity`, as (name, value).
    pub labels: Vec<(String, String)>,
    pub summary: String,
    pub runbook: Option<String>,
    pub since: String,
    pub value: String,
    pub ack: Option<String>,
    pub muted: bool,
    pub can_ack: bool,
}

/// `alerts` as rows, worst first: severity, then firing before pending,
/// then the oldest first.
pub fn rows(state: &AppState, mut alerts: Vec<ActiveAlert>, now: i64) -> Vec<AlertRow> {
    alerts.sort_by_key(|a| {
        (
            format::severity_rank(a.labels.get("severity").map(String::as_str)),
            a.phase != Phase::Firing,
            a.active_at_ms,
        )
    });
    alerts
        .into_iter()
        .map(|a| {
            let runbook = a
                .annotations
                .get("runbook_url")
                .or_else(|| a.labels.get("runbook_url"))
                .and_then(|u| format::safe_url(u));
            let summary = a
                .annotations
                .get("summary")
                .or_else(|| a.annotations.get("description"))
                .cloned()
                .unwrap_or_default();
            AlertRow {
                id: fp_hex(a.fingerprint),
                name: a.labels.get("alertname").cloned().unwrap_or(a.rule.clone()),
                state: a.phase.as_str(),
                severity: format::severity(a.labels.get("severity").map(String::as_str)),
                labels: a
                    .labels
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "alertname" | "severity" | "runbook_url")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                summary,
                runbook,
                since: format::ago(a.fired_at_ms.unwrap_or(a.active_at_ms), now),
                value: if a.value.is_finite() {
                    format!("{:.4}", a.value)
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                        .to_string()
                } else {
                    "—".into()
                },
                ack: a.ack.as_ref().map(|k| {
                    if k.comment.is_empty() {
                        format!("acknowledged by {} {}", k.by, format::ago(k.at_ms, now))
                    } else {
                        format!(
                            "acknowledged by {} {}: {}",
                            k.by,
                            format::ago(k.at_ms, now),
                            k.comment
                        )
                    }
                }),
                muted: state.alerting.muted(&a.labels).is_some(),
                can_ack: a.phase == Phase::Firing && a.ack.is_none(),
            }
        })
        .collect()
}

/// Rows per history page.
const HISTORY_PAGE: usize = 50;

/// The history filters (all optional; empty means any).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct HistoryParams {
    #[serde(default)]
    rule: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: String,
}

fn some(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

/// `GET /alerts`.
pub async fn page(
    user: WebUser,
    State(state): State<AppState>,
    Query(p): Query<HistoryParams>,
) -> Result<Response, PageError> {
    let now = now_ms();
    let mut c = page_context(&state, &user, "alerts", "Alerts");
    c.insert("alerts", &rows(&state, state.alerting.active(), now));
    let from_ms = match some(&p.from) {
        Some(raw) => parse_time("from", &raw)?,
        None => 0,
    };
    let to_ms = match some(&p.to) {
        Some(raw) => parse_time("to", &raw)?,
        None => i64::MAX,
    };
    if from_ms > to_ms {
        return Err(PageError::BadRequest("from must not be after to".into()));
    }
    if let Some(e) = some(&p.event) {
        if !EVENTS.contains(&e.as_str()) {
            return Err(PageError::BadRequest(format!(
                "event: expected one of {}, got {e:?}",
                EVENTS.join(", ")
            )));
        }
    }
    let before_id = match some(&p.before) {
        Some(raw) => Some(
            raw.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    PageError::BadRequest(format!("before: {raw:?} is not a page of this history"))
                })?,
        ),
        None => None,
    };
    let q = HistoryQuery {
        from_ms,
        to_ms,
        rule: some(&p.rule),
        host: some(&p.host),
        severity: some(&p.severity),
        team: None,
        event: some(&p.event),
        before_id,
        limit: HISTORY_PAGE + 1,
    };
    let mut events = state::history(&state.store.db(), &q).await?;
    let more = events.len() > HISTORY_PAGE;
    events.truncate(HISTORY_PAGE);
    let next = if more {
        events.last().map(|r| {
            let mut next: Vec<(&str, String)> = [
                ("rule", &p.rule),
                ("host", &p.host),
                ("severity", &p.severity),
                ("event", &p.event),
                ("from", &p.from),
                ("to", &p.to),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k, v.clone()))
            .collect();
            next.push(("before", r.id.to_string()));
            let qs: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(next)
                .finish();
            format!("/alerts?{qs}#history")
        })
    } else {
        None
    };
    let history: Vec<serde_json::Value> = events
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "time": format::time(r.ts_ms),
                "event": r.event,
                "rule": r.rule,
                "host": r.host,
                "severity": format::severity(Some(&r.severity)),
                "value": r.value.map(|v| format!("{v}")),
                "detail": match &r.detail {
                    serde_json::Value::Null => String::new(),
                    d => d.to_string(),
                },
            })
        })
        .collect();
    c.insert("history", &history);
    c.insert("next_page", &next);
    c.insert("filter", &p);
    c.insert("events", EVENTS);
    let silences: Vec<serde_json::Value> = state
        .mutes
        .silences
        .list()
        .into_iter()
        .map(|s| {
            let st = s.state(now);
            serde_json::json!({
                "id": s.id,
                "state": st.as_str(),
                "matchers": s.matchers.iter().map(matcher_text).collect::<Vec<_>>().join(", "),
                "starts": format::time(s.starts_at_ms),
                "ends": format::time(s.ends_at_ms),
                "by": s.created_by,
                "comment": s.comment,
                "expirable": st != crate::notify::silence::SilenceState::Expired,
            })
        })
        .collect();
    c.insert("silences", &silences);
    Ok(render("alerts.html", &c))
}

fn matcher_text(m: &ApiMatcher) -> String {
    let op = match (m.is_equal, m.is_regex) {
        (true, false) => "=",
        (false, false) => "!=",
        (true, true) => "=~",
        (false, true) => "!~",
    };
    format!("{}{op}\"{}\"", m.name, m.value)
}

/// The acknowledge form.
#[derive(Debug, Deserialize)]
pub struct AckForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    comment: String,
    next: Option<String>,
}

/// Longest acknowledgement comment (as the API).
const MAX_COMMENT_BYTES: usize = 4096;

/// `POST /alerts/{id}/ack`.
pub async fn ack(
    user: WebUser,
    audit: Audit,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<AckForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf_token)?;
    require_operator(&user)?;
    if form.comment.len() > MAX_COMMENT_BYTES {
        return Err(PageError::BadRequest(format!(
            "comment: at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let fp = parse_fp(&id)
        .ok_or_else(|| PageError::NotFound(format!("no active alert with id {id:?}")))?;
    match state
        .alerting
        .ack(fp, &user.name, form.comment.trim(), now_ms())
        .await
    {
        Ok(_) => {
            audit
                .note_as(
                    Actor::user(&user.name),
                    Action::AlertAck,
                    &fp_hex(fp),
                    serde_json::json!({"comment": form.comment.trim()}),
                )
                .await;
            Ok(Redirect::to(local_path(form.next.as_deref(), "/alerts")).into_response())
        }
        Err(e @ AckError::NotFound(_)) => Err(PageError::NotFound(e.to_string())),
        Err(e @ (AckError::NotFiring(_) | AckError::AlreadyAcked { .. })) => {
            Err(PageError::Conflict(e.to_string()))
        }
        Err(e @ AckError::NotLeader(_)) => Err(PageError::Conflict(e.to_string())),
        Err(AckError::Store(e)) => Err(e.into()),
    }
}

/// `GET /alerts/{id}/silence`: a silence form with the alert's labels as
/// matchers.
pub async fn silence_form(
    user: WebUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    require_operator(&user)?;
    let fp = parse_fp(&id);
    let alert = state
        .alerting
        .active()
        .into_iter()
        .find(|a| Some(a.fingerprint) == fp)
        .ok_or_else(|| PageError::NotFound(format!("no active alert with id {id:?}")))?;
    let matchers: Vec<String> = alert
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let mut c = page_context(&state, &user, "alerts", "New silence");
    c.insert(
        "alert_name",
        &alert.labels.get("alertname").cloned().unwrap_or(alert.rule),
    );
    c.insert("matchers", &matchers.join("\n"));
    Ok(render("silence_new.html", &c))
}

/// The new-silence form.
#[derive(Debug, Deserialize)]
pub struct SilenceForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    matchers: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    comment: String,
}

/// One `name="value"` (or `name=value`, `!=`, `=~`, `!~`) line.
pub fn parse_matcher(line: &str) -> Result<ApiMatcher, String> {
    let bad = || format!("matchers: {line:?} is not name=\"value\" (or !=, =~, !~)");
    let pos = line.find(['=', '!']).ok_or_else(bad)?;
    let name = line[..pos].trim();
    let rest = &line[pos..];
    let (is_equal, is_regex, value) = if let Some(v) = rest.strip_prefix("=~") {
        (true, true, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (false, true, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (false, false, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (true, false, v)
    } else {
        return Err(bad());
    };
    let value = value.trim();
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_string(),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad());
    }
    Ok(ApiMatcher {
        name: name.to_string(),
        value,
        is_regex,
        is_equal,
    })
}

fn silence_error(e: SilenceError) -> PageError {
    match e {
        SilenceError::Invalid(m) => PageError::BadRequest(m),
        SilenceError::NotFound(id) => PageError::NotFound(format!("no silence {id:?}")),
        SilenceError::Store(e) => e.into(),
    }
}

/// `POST /silences`.
pub async fn create_silence(
    user: WebUser,
    audit: Audit,
    State(state): State<AppState>,
    Form(form): Form<SilenceForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf_token)?;
    require_operator(&user)?;
    let matchers = form
        .matchers
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(parse_matcher)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PageError::BadRequest)?;
    let duration = parse_duration_ms("duration", form.duration.trim())?;
    let now = now_ms();
    let new = NewSilence {
        matchers,
        starts_at_ms: now,
        ends_at_ms: now.saturating_add(duration),
        created_by: user.name.clone(),
        comment: form.comment.trim().to_string(),
    };
    let s = state
        .mutes
        .silences
        .create(new, now)
        .await
        .map_err(silence_error)?;
    audit
        .note_as(
            Actor::user(&user.name),
            Action::SilenceCreate,
            &s.id,
            silence_details(&s, None),
        )
        .await;
    Ok(Redirect::to("/alerts#silences").into_response())
}

/// The expire form.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /silences/{id}/expire`.
pub async fn expire_silence(
    user: WebUser,
    audit: Audit,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf_token)?;
    require_operator(&user)?;
    let s = state
        .mutes
        .silences
        .expire(&id, now_ms())
        .await
        .map_err(silence_error)?;
    audit
        .note_as(
            Actor::user(&user.name),
            Action::SilenceExpire,
            &s.id,
            serde_json::json!({}),
        )
        .await;
    Ok(Redirect::to("/alerts#silences").into_response())
}
