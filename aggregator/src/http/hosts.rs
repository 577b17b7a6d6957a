//! `GET /api/v1/hosts`: every agent that has sent data, with what it stored;
//! `GET /api/v1/hosts/{id}`: one of them (by agent id or hostname) with its
//! latest resource figures.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::access::ReadAccess;
use super::error::ApiError;
use crate::store::HostInfo;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hosts", get(list))
        .route("/hosts/{id}", get(one))
}

/// One host in the response.
#[derive(Debug, Serialize)]
pub struct HostView {
    #[serde(flatten)]
    pub host: HostInfo,
    /// RFC 3339 forms of the `_ms` fields.
    pub first_seen: String,
    pub last_seen: String,
    /// The agent's clock minus the aggregator's, from its newest batch
    /// (`ingest/clock.rs`); null until it sends one to this process.
    pub clock_skew_seconds: Option<f64>,
}

impl HostView {
    fn new(state: &AppState, host: HostInfo) -> HostView {
        HostView {
            first_seen: rfc3339(host.first_seen_ms),
            last_seen: rfc3339(host.last_seen_ms),
            clock_skew_seconds: state
                .metrics
                .clock
                .get(&host.agent_id)
                .map(|s| s.skew_ms as f64 / 1000.0),
            host,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HostsResponse {
    pub hosts: Vec<HostView>,
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

async fn list(
    _caller: ReadAccess,
    State(state): State<AppState>,
) -> Result<Json<HostsResponse>, ApiError> {
    let hosts = state
        .store
        .hosts()
        .await?
        .into_iter()
        .map(|host| HostView::new(&state, host))
        .collect();
    Ok(Json(HostsResponse { hosts }))
}

/// One host with its latest figures.
#[derive(Debug, Serialize)]
pub struct HostDetail {
    #[serde(flatten)]
    pub host: HostView,
    /// Null when the host has sent no host metrics in the last 5 minutes.
    pub resources: Option<super::resources::HostResources>,
}

async fn one(
    _caller: ReadAccess,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HostDetail>, ApiError> {
    let host = state
        .store
        .hosts()
        .await?
        .into_iter()
        .find(|h| h.agent_id == id || h.hostname == id)
        .ok_or_else(|| ApiError::NotFound(format!("no host with agent id or hostname {id:?}")))?;
    let at = super::ops::now_ms();
    let resources = super::resources::collect(&state, Some(&host.hostname), at)
        .await?
        .into_iter()
        .next();
    Ok(Json(HostDetail {
        host: HostView::new(&state, host),
        resources,
    }))
}
