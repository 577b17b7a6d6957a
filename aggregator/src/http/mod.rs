//! The HTTP side: axum routes, one module per resource, each with its own
//! `router()`. [`app`] assembles them so tests can drive the whole app with
//! `tower::ServiceExt::oneshot`.

pub mod access;
pub mod error;
pub mod health;
pub mod hosts;
pub mod ingest;
pub mod metrics;
pub mod prometheus;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;

use crate::auth::token_hash;
use crate::metrics::Metrics;
use crate::query::{Engine, Source};
use crate::store::{Store, TokenInfo};
use error::ApiError;

/// Largest request body accepted by any route.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// True once the store is reachable and migrated.
    pub store_ready: Arc<AtomicBool>,
    /// What queries read (head + store).
    pub source: Arc<dyn Source>,
    pub engine: Arc<Engine>,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .nest("/api/v1", hosts::router())
        .nest("/prometheus/api/v1", prometheus::router())
        .merge(ingest::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A caller that presented a valid API token (`Authorization: Bearer <token>`).
pub struct Caller(pub TokenInfo);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing bearer token: send Authorization: Bearer <token> (quickstart writes one to admin.token)",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "malformed Authorization header: expected Bearer <token>",
            ))?;
        match state.store.token(&token_hash(token)).await {
            Ok(Some(info)) => Ok(Caller(info)),
            Ok(None) => Err(ApiError::Unauthorized("invalid token")),
            Err(e) => Err(ApiError::Unavailable(e.to_string())),
        }
    }
}
