//! The HTTP side: axum routes, one module per resource, each with its own
//! `router()`. [`app`] assembles them so tests can drive the whole app with
//! `tower::ServiceExt::oneshot`.

pub mod access;
pub mod agents;
pub mod alert_reports;
pub mod alerts;
pub mod audit;
pub mod cluster;
pub mod error;
pub mod exports;
pub mod health;
pub mod hosts;
pub mod ingest;
pub mod login;
pub mod maintenance;
pub mod metrics;
pub mod notifications;
pub mod openapi;
mod ops;
pub mod prometheus;
pub mod rejections;
pub mod reports;
pub mod resources;
pub mod session;
pub mod silences;

pub mod rules;
pub mod summary;
pub mod tls;
pub mod tokens;
pub mod users;
pub mod web;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;

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
    /// Silences and maintenance windows (the notify dispatcher reads them).
    pub mutes: Arc<crate::notify::mutes::Mutes>,

    /// Rule evaluation and alert state (alerts API, rules API, reload).
    pub alerting: Arc<crate::alert::eval::Evaluator>,
}

impl AppState {
    /// Whether the database is known to be unreachable (not migrated yet,
    /// or the storage watch's last ping failed): pages then answer from
    /// memory, or say the storage is unavailable, without waiting for the
    /// pool's timeout on every request.
    pub fn database_down(&self) -> bool {
        !self.store_ready.load(std::sync::atomic::Ordering::Acquire)
            || self
                .metrics
                .database_unreachable
                .load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The whole HTTP application, tokens required and no rate limits (tests).
pub fn app(state: AppState) -> Router {
    app_with_access(state, &access::AccessPolicy::default())
}

/// The whole HTTP application under the `[http]` access policy, with the
/// default session settings.
pub fn app_with_access(state: AppState, policy: &access::AccessPolicy) -> Router {
    app_with_sessions(state, policy, session::SessionPolicy::default())
}

/// The whole HTTP application under the `[http]` access and session
/// settings.
pub fn app_with_sessions(
    state: AppState,
    policy: &access::AccessPolicy,
    sessions: session::SessionPolicy,
) -> Router {
    app_with(state, policy, Arc::new(session::Sessions::new(sessions)))
}

/// The whole HTTP application with `sessions` (shared with the caller, e.g.
/// for pruning).
pub fn app_with(
    state: AppState,
    policy: &access::AccessPolicy,
    sessions: Arc<session::Sessions>,
) -> Router {
    app_with_dashboard(
        state,
        policy,
        sessions,
        web::config::DashboardConfig::default(),
    )
}

/// The whole HTTP application with `sessions` and the `[dashboard]`
/// settings (what `server.rs` serves).
pub fn app_with_dashboard(
    state: AppState,
    policy: &access::AccessPolicy,
    sessions: Arc<session::Sessions>,
    dashboard: web::config::DashboardConfig,
) -> Router {
    let guard = std::sync::Arc::new(access::Guard::new(policy));
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .nest("/api/v1", hosts::router())
        .nest("/api/v1", cluster::router())
        .nest("/api/v1", tokens::router())
        .nest("/api/v1", agents::router())
        .nest("/api/v1", users::router())
        .nest("/api/v1", audit::router())
        .merge(login::router())
        .merge(openapi::router())
        .nest("/api/v1", exports::router())
        .nest("/api/v1", summary::router())
        .nest("/api/v1", resources::router())
        .nest("/api/v1", reports::router())
        .nest("/api/v1", silences::router())
        .nest("/api/v1", maintenance::router())
        .nest("/api/v1", notifications::router())
        .nest("/api/v1", alerts::router())
        .nest("/api/v1", alert_reports::router())
        .nest("/api/v1", rules::router())
        .nest("/prometheus/api/v1", prometheus::router())
        .merge(ingest::router())
        .merge(web::router(dashboard))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(rejections::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), guard),
            access::guard,
        ))
        // Outside the guard: it resolves session cookies too.
        .layer(axum::Extension(sessions))
        .with_state(state)
}

/// A caller that presented a valid API token (`Authorization: Bearer <token>`);
/// the extractor lives in [`access`].
pub struct Caller(pub TokenInfo);
