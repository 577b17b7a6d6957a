//! `GET /api/v1/reports/alerts?from&to`: alerts that fired in the range,
//! counted by severity and team, with the mean time to acknowledge (fired
//! -> acknowledged) and to resolve (fired -> resolved), from the alert
//! history. An episode is one firing of one alert; an acknowledgement or
//! resolution after `to` is not counted (the episode counts as open).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::access::ReadAccess;
use super::error::ApiError;
use super::ops::{self, rfc3339};
use super::reports::RangeParams;
use crate::alert::state::{self, HistoryRow};

pub fn router() -> Router<AppState> {
    Router::new().route("/reports/alerts", get(report))
}

const DAY_MS: i64 = 86_400_000;
/// Most history rows one report reads.
const MAX_ROWS: usize = 500_000;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct AlertsReport {
    pub from: String,
    pub to: String,
    /// Alerts that started firing in the range.
    pub fired: usize,
    pub by_severity: BTreeMap<String, usize>,
    pub by_team: BTreeMap<String, usize>,
    pub acknowledged: usize,
    pub resolved: usize,
    /// Mean time to acknowledge, over the acknowledged ones; null if none.
    pub mtta_seconds: Option<f64>,
    /// Mean time to resolve, over the resolved ones; null if none.
    pub mttr_seconds: Option<f64>,
}

#[derive(Default)]
struct Episode {
    fired_ms: i64,
    acked_ms: Option<i64>,
    resolved_ms: Option<i64>,
}

/// Folds history rows (oldest first) into the report's figures.
pub fn summarise(rows: &[HistoryRow]) -> AlertsReport {
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    let mut episodes: Vec<Episode> = Vec::new();
    let mut report = AlertsReport::default();
    for r in rows {
        let key = (r.rule.as_str(), r.fingerprint.as_str());
        match r.event.as_str() {
            "firing" => {
                *report.by_severity.entry(or_none(&r.severity)).or_default() += 1;
                *report.by_team.entry(or_none(&r.team)).or_default() += 1;
                open.insert(key, episodes.len());
                episodes.push(Episode {
                    fired_ms: r.ts_ms,
                    ..Episode::default()
                });
            }
            "acknowledged" => {
                if let Some(e) = open.get(&key).and_then(|&i| episodes.get_mut(i)) {
                    e.acked_ms.get_or_insert(r.ts_ms);
                }
            }
            "resolved" => {
                if let Some(e) = open.remove(&key).and_then(|i| episodes.get_mut(i)) {
                    e.resolved_ms = Some(r.ts_ms);
                }
            }
            _ => {}
        }
    }
    report.fired = episodes.len();
    let mean = |d: Vec<i64>| {
        (!d.is_empty()).then(|| d.iter().sum::<i64>() as f64 / d.len() as f64 / 1000.0)
    };
    let acks: Vec<i64> = episodes
        .iter()
        .filter_map(|e| Some(e.acked_ms? - e.fired_ms))
        .collect();
    let fixes: Vec<i64> = episodes
        .iter()
        .filter_map(|e| Some(e.resolved_ms? - e.fired_ms))
        .collect();
    report.acknowledged = acks.len();
    report.resolved = fixes.len();
    report.mtta_seconds = mean(acks);
    report.mttr_seconds = mean(fixes);
    report
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.to_string()
    }
}

async fn report(
    _: ReadAccess,
    State(state): State<AppState>,
    Query(p): Query<RangeParams>,
) -> Result<Json<AlertsReport>, ApiError> {
    let (from, to) = ops::time_range(p.from.as_deref(), p.to.as_deref(), 7 * DAY_MS, 366 * DAY_MS)?;
    let rows = state::episode_events(&state.store.db(), from, to, MAX_ROWS + 1).await?;
    if rows.len() > MAX_ROWS {
        return Err(ApiError::Unprocessable(format!(
            "more than {MAX_ROWS} alert events in the range; shorten it"
        )));
    }
    let mut report = summarise(&rows);
    report.from = rfc3339(from);
    report.to = rfc3339(to);
    Ok(Json(report))
}
