//! Exports for the ecosystem:
//! - `GET /api/v1/export/grafana`: the dashboards Vigil ships (uid, title);
//! - `GET /api/v1/export/grafana/{uid}`: one dashboard's JSON model, ready for
//!   Grafana's import (its data source is the `${datasource}` variable, so it
//!   works against Vigil's `/prometheus` or a real Prometheus);
//! - `GET /api/v1/export/prometheus-rules`: the default rule file as plain
//!   Prometheus (Vigil's `vigil:` extensions stripped, see
//!   [`crate::alert::rules::export`]), a file `promtool check rules` accepts.
//!
//! The files live in `aggregator/dashboards/` and `deploy/rules/` and are
//! compiled in, so what is exported is what the tests checked.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use super::access::ReadAccess;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/export/grafana", get(list))
        .route("/export/grafana/{uid}", get(one))
        .route("/export/prometheus-rules", get(rules))
}

/// The dashboards, as (uid, JSON model); the uid is also inside the model.
pub const DASHBOARDS: &[(&str, &str)] = &[
    (
        "vigil-operations-overview",
        include_str!("../../dashboards/operations-overview.json"),
    ),
    (
        "vigil-ml-models",
        include_str!("../../dashboards/ml-models.json"),
    ),
    (
        "vigil-system-infrastructure",
        include_str!("../../dashboards/system-infrastructure.json"),
    ),
];

/// Vigil's default recording and alerting rules (Prometheus rule file).
pub const DEFAULT_RULES: &str = include_str!("../../../deploy/rules/vigil-default.rules.yml");

#[derive(Debug, Serialize)]
pub struct DashboardRef {
    pub uid: &'static str,
    pub title: String,
    /// Where to fetch the JSON model.
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct DashboardList {
    pub dashboards: Vec<DashboardRef>,
}

fn parse(json: &str) -> Result<Value, ApiError> {
    // Compiled-in and tested; a failure here is a build defect, reported as
    // unavailable rather than a panic.
    serde_json::from_str(json).map_err(|e| ApiError::Unavailable(format!("dashboard JSON: {e}")))
}

async fn list(
    _caller: ReadAccess,
    State(_): State<AppState>,
) -> Result<Json<DashboardList>, ApiError> {
    let mut dashboards = Vec::new();
    for (uid, json) in DASHBOARDS {
        let model = parse(json)?;
        dashboards.push(DashboardRef {
            uid,
            title: model["title"].as_str().unwrap_or(uid).to_string(),
            url: format!("/api/v1/export/grafana/{uid}"),
        });
    }
    Ok(Json(DashboardList { dashboards }))
}

async fn one(
    _caller: ReadAccess,
    State(_): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, json) = DASHBOARDS.iter().find(|(u, _)| *u == uid).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no dashboard with uid {uid:?}; see /api/v1/export/grafana"
        ))
    })?;
    Ok(Json(parse(json)?))
}

async fn rules(
    _caller: ReadAccess,
    State(_): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    // Compiled-in and tested, as the dashboards are.
    let text = crate::alert::rules::export::prometheus_rules(DEFAULT_RULES)
        .map_err(|e| ApiError::Unavailable(format!("default rules: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/yaml; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"vigil-default.rules.yml\"",
            ),
        ],
        text,
    ))
}
