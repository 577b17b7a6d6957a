//! `/`: a status tile per component, the eight key metrics with live
//! rolling charts (filled by the live socket, see `live.rs`), the active
//! alerts worst first, and the maintenance banner (in `base.html`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::super::AppState;
use super::super::ops::now_ms;
use super::super::session::WebUser;
use super::super::summary;
use super::{Dashboard, PageError, alerts, format, page_context, panels, render};

/// One component tile.
#[derive(Debug, serde::Serialize)]
pub struct Tile {
    pub name: &'static str,
    pub title: &'static str,
    pub badge: format::Badge,
    pub reason: String,
}

/// A component's name as a tile shows it.
pub fn component_title(name: &str) -> &'static str {
    match name {
        "api" => "API",
        "ml-models" => "ML models",
        "database" => "Database",
        "cache" => "Cache",
        "system" => "System",
        _ => "Component",
    }
}

/// The tiles at `at_ms` (a failed evaluation shows as an unknown tile with
/// the reason, never as an error page).
pub async fn tiles(state: &AppState, at_ms: i64) -> Vec<Tile> {
    match summary::compute(state, at_ms).await {
        Ok(s) => s
            .components
            .into_iter()
            .map(|c| Tile {
                name: c.name,
                title: component_title(c.name),
                badge: format::status(c.status),
                reason: c.reason,
            })
            .collect(),
        Err(e) => summary::COMPONENTS
            .iter()
            .map(|c| Tile {
                name: c.name,
                title: component_title(c.name),
                badge: format::badge("unknown"),
                reason: format!("could not be evaluated: {e:?}"),
            })
            .collect(),
    }
}

/// Everything the overview shows, for `user` (the benchmark renders it).
pub async fn overview_context(
    state: &AppState,
    dashboard: &Dashboard,
    user: &WebUser,
) -> Result<tera::Context, PageError> {
    let now = now_ms();
    let mut c = page_context(state, user, "overview", "Overview");
    c.insert("tiles", &tiles(state, now).await);
    let figures = panels::figures(state, &panels::overview_panels(), now).await?;
    c.insert("figures", &figures);
    let active = alerts::rows(state, state.alerting.active(), now);
    c.insert("alerts", &active);
    // Host rows live in the database only: without it the count is unknown
    // and the rest of the page still comes from memory.
    let hosts = match state.database_down() {
        true => None,
        false => match state.store.hosts().await {
            Ok(hosts) => Some(hosts.len()),
            Err(e) => {
                tracing::warn!(error = %e, "overview: host count unavailable");
                None
            }
        },
    };
    c.insert("hosts", &hosts);
    c.insert(
        "live",
        &serde_json::json!({
            "set": "overview",
            "interval_ms": dashboard.config.live_interval.as_millis() as u64,
            "window_s": dashboard.config.chart_window.as_secs(),
        })
        .to_string(),
    );
    Ok(c)
}

/// `GET /`.
pub async fn page(
    user: WebUser,
    State(state): State<AppState>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
) -> Result<Response, PageError> {
    let c = overview_context(&state, &dashboard, &user).await?;
    Ok(render("overview.html", &c))
}
