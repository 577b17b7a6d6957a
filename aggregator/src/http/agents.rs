//! Agent enrollment tokens and revocation (admin):
//! `POST/GET /api/v1/enroll-tokens`, `DELETE /api/v1/enroll-tokens/{id}`,
//! `POST /api/v1/agents/{id}/revoke`. The same operations as the
//! `enroll-token` and `revoke-agent` commands (docs/access.md).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use vigil_common::now_ms;

use super::AppState;
use super::access::AdminAccess;
use super::audit::Audit;
use super::error::ApiError;
use crate::config::Loaded;
use crate::ingest::enroll::{self, NewToken, TokenError};
use crate::ingest::live::LiveAgents;
use crate::store::enroll as db;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/enroll-tokens", post(create).get(list))
        .route("/enroll-tokens/{id}", delete(revoke_token))
        .route("/agents/{id}/revoke", post(revoke_agent))
}

/// What the token routes need to know of `[enroll]` (a request extension
/// that `server.rs` layers; absent: enrollment is off).
#[derive(Debug, Clone)]
pub struct EnrollSettings {
    pub enabled: bool,
    pub max_token_ttl: Duration,
    /// SHA-256 of the CA certificate, for `vigil-agent enroll --ca-fingerprint`.
    pub ca_fingerprint: String,
}

impl EnrollSettings {
    pub fn from_loaded(loaded: &Loaded) -> Self {
        EnrollSettings {
            enabled: loaded.enroll_ca.is_some(),
            max_token_ttl: loaded
                .config
                .enroll
                .as_ref()
                .map_or(Duration::ZERO, |e| e.max_token_ttl),
            ca_fingerprint: loaded
                .tls
                .ca
                .first()
                .map(|c| {
                    vigil_common::enroll::fingerprint_hex(&vigil_common::enroll::fingerprint(c))
                })
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    /// Lifetime, e.g. `"1h"`.
    ttl: String,
    /// The only agent id the token may enroll.
    #[serde(default)]
    host_name: Option<String>,
}

#[derive(Debug, Serialize)]
struct Created {
    #[serde(flatten)]
    token: NewToken,
    ca_fingerprint: String,
}

async fn create(
    _caller: AdminAccess,
    audit: Audit,
    State(state): State<AppState>,
    settings: Option<Extension<Arc<EnrollSettings>>>,
    body: Result<Json<CreateRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let Json(body) = body.map_err(ApiError::from)?;
    let settings = match settings {
        Some(Extension(s)) if s.enabled => s,
        _ => {
            return Err(ApiError::Conflict(
                "enrollment is off: add an [enroll] section to the aggregator's config".into(),
            ));
        }
    };
    let ttl = humantime::parse_duration(body.ttl.trim())
        .map_err(|e| ApiError::BadRequest(format!("ttl {:?}: {e}", body.ttl)))?;
    let token = enroll::create_token(
        state.store.as_ref(),
        ttl,
        settings.max_token_ttl,
        body.host_name.as_deref(),
        audit.actor,
        audit.source,
    )
    .await
    .map_err(|e| match e {
        TokenError::Invalid(m) => ApiError::BadRequest(m),
        TokenError::Store(e) => e.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            token,
            ca_fingerprint: settings.ca_fingerprint.clone(),
        }),
    ))
}

#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    token: db::EnrollToken,
    state: &'static str,
}

#[derive(Debug, Serialize)]
struct TokenList {
    tokens: Vec<Listed>,
}

async fn list(
    _caller: AdminAccess,
    State(state): State<AppState>,
) -> Result<Json<TokenList>, ApiError> {
    let now = now_ms();
    let tokens = db::tokens(&state.store.db())
        .await?
        .into_iter()
        .map(|t| Listed {
            state: t.state(now),
            token: t,
        })
        .collect();
    Ok(Json(TokenList { tokens }))
}

async fn revoke_token(
    _caller: AdminAccess,
    audit: Audit,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if enroll::revoke_token(state.store.as_ref(), &id, audit.actor, audit.source).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no unused, unrevoked enrollment token {id:?}"
        )))
    }
}

#[derive(Debug, Serialize)]
struct Revoked {
    agent_id: String,
    connections_closed: usize,
}

async fn revoke_agent(
    _caller: AdminAccess,
    audit: Audit,
    State(state): State<AppState>,
    live: Option<Extension<Arc<LiveAgents>>>,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    // Without the live registry (tests of the bare app) the watcher of the
    // running aggregator closes the connections instead.
    let live = live.as_ref().map(|Extension(live)| live.as_ref());
    let revoked = crate::ingest::live::revoke_agent(
        state.store.as_ref(),
        live,
        &id,
        audit.actor,
        audit.source,
    )
    .await?;
    let Some(closed) = revoked else {
        return Err(ApiError::NotFound(format!(
            "agent {id:?} is not registered"
        )));
    };
    Ok(Json(Revoked {
        agent_id: id,
        connections_closed: closed,
    }))
}
