//! `GET /api/v1/audit` (admin): the audit log, newest first, and the
//! [`Audit`] extractor the state-changing handlers record through.
//!
//! Parameters (all optional): `since`, `until` (RFC 3339 or unix seconds),
//! `actor` (exact name), `action` (one of [`Action::ALL`]), `limit` (1 to
//! 1000, default 100) and `before` (the `next` cursor of the previous
//! page). Answers `{"entries": [...], "next": id | null}`; anything else in
//! the query string is a 400.

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::{AdminAccess, Authenticated, CookieSession};
use super::error::ApiError;
use super::ops::{parse_time, rfc3339};
use crate::audit::{self, Action, Actor, Event, Filter};

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Who is making a request and from where, for the audit log: the
/// session's user, else the token, else anonymous; the client address when
/// the server knows it. Never rejects.
pub struct Audit {
    pub actor: Actor,
    pub source: Option<String>,
    db: crate::store::Db,
}

impl Audit {
    /// Records `action` on `target` by this request's actor.
    pub async fn note(&self, action: Action, target: &str, details: serde_json::Value) {
        self.note_as(self.actor.clone(), action, target, details)
            .await;
    }

    /// Records `action` on `target` by `actor` (dashboard pages know their
    /// user from the page's own extractor).
    pub async fn note_as(
        &self,
        actor: Actor,
        action: Action,
        target: &str,
        details: serde_json::Value,
    ) {
        audit::note(
            &self.db,
            Event::new(actor, action, target)
                .details(details)
                .source(self.source.clone()),
        )
        .await;
    }
}

/// The client address of a request, when the server recorded it.
pub fn source_of(extensions: &axum::http::Extensions) -> Option<String> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

impl FromRequestParts<AppState> for Audit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        let actor = if let Some(CookieSession(user)) = parts.extensions.get::<CookieSession>() {
            Actor::user(&user.name)
        } else if let Some(Authenticated(info)) = parts.extensions.get::<Authenticated>() {
            Actor::token(&info.name)
        } else {
            Actor::anonymous(super::access::ANONYMOUS)
        };
        Ok(Audit {
            actor,
            source: source_of(&parts.extensions),
            db: state.store.db(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub since: Option<String>,
    pub until: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub limit: Option<String>,
    pub before: Option<String>,
}

/// One record as the API shows it.
#[derive(Debug, Serialize)]
pub struct EntryView {
    pub id: i64,
    pub time: String,
    pub actor_kind: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
    pub source: Option<String>,
}

impl From<audit::Record> for EntryView {
    fn from(r: audit::Record) -> EntryView {
        EntryView {
            id: r.id,
            time: rfc3339(r.at_ms),
            // Written by `audit::store::insert` from a JSON value; a row
            // edited by hand into something else is shown as a string.
            details: serde_json::from_str(&r.details)
                .unwrap_or(serde_json::Value::String(r.details)),
            actor_kind: r.actor_kind,
            actor: r.actor,
            action: r.action,
            target: r.target,
            source: r.source,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AuditResponse {
    pub entries: Vec<EntryView>,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next: Option<i64>,
}

/// Checks the query parameters; every message names the parameter.
pub fn filter(params: &Params) -> Result<Filter, String> {
    let time = |name: &str, raw: &Option<String>| -> Result<Option<i64>, String> {
        raw.as_deref()
            .map(|t| {
                parse_time(name, t).map_err(|e| match e {
                    ApiError::BadRequest(m) => m,
                    _ => format!("{name}: not a valid time"),
                })
            })
            .transpose()
    };
    let since_ms = time("since", &params.since)?;
    let until_ms = time("until", &params.until)?;
    if let (Some(s), Some(u)) = (since_ms, until_ms)
        && s > u
    {
        return Err("since: must not be after until".into());
    }
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit: expected a whole number from 1 to {MAX_LIMIT}, got {raw:?}"
                ));
            }
        },
    };
    let before_id = match params.before.as_deref() {
        None => None,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "before: expected the positive id from a previous page's next, got {raw:?}"
                ));
            }
        },
    };
    let action = match params.action.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.parse::<Action>()
                .map_err(|e| format!("action: {e}"))?
                .as_str()
                .to_string(),
        ),
    };
    let actor = match params.actor.as_deref() {
        None => None,
        Some(a) if a.is_empty() || a.len() > audit::MAX_FIELD_BYTES => {
            return Err(format!(
                "actor: expected a name of 1 to {} bytes",
                audit::MAX_FIELD_BYTES
            ));
        }
        Some(a) => Some(a.to_string()),
    };
    Ok(Filter {
        since_ms,
        until_ms,
        actor,
        action,
        before_id,
        limit,
    })
}

async fn list(
    _caller: AdminAccess,
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<AuditResponse>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = filter(&params).map_err(ApiError::BadRequest)?;
    let page = audit::query(&state.store.db(), &filter).await?;
    Ok(Json(AuditResponse {
        entries: page.records.into_iter().map(EntryView::from).collect(),
        next: page.next,
    }))
}
