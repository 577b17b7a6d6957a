//! `GET /api/v1/hosts`: every agent that has sent data, with what it stored.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::access::ReadAccess;
use super::error::ApiError;
use crate::store::HostInfo;

pub fn router() -> Router<AppState> {
    Router::new().route("/hosts", get(list))
}

/// One host in the response.
#[derive(Debug, Serialize)]
pub struct HostView {
    #[serde(flatten)]
    pub host: HostInfo,
    /// RFC 3339 forms of the `_ms` fields.
    pub first_seen: String,
    pub last_seen: String,
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
        .map(|host| HostView {
            first_seen: rfc3339(host.first_seen_ms),
            last_seen: rfc3339(host.last_seen_ms),
            host,
        })
        .collect();
    Ok(Json(HostsResponse { hosts }))
}
