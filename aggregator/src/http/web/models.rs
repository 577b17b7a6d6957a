//! `/models`: every ML model version with predictions/s, inference latency
//! percentiles, accuracy and drift; `/models/{model}`: one model, two of its
//! versions side by side (`?a=v1&b=v2`, default the two last), with charts
//! and the confidence distribution.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::super::AppState;
use super::super::ops::{self, now_ms};
use super::super::session::WebUser;
use super::format::{self, Unit};
use super::panels::{Panel, promql_string};
use super::{PageError, page_context, panels, render};

/// One chart line: its name and a value (or a gap) per timestamp.
type Line = (String, Vec<Option<f64>>);

/// Figures of one model version.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VersionRow {
    pub model: String,
    pub version: String,
    pub rate: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    pub accuracy: String,
    pub drift: String,
    pub badge: Option<format::Badge>,
    pub href: String,
}

#[rustfmt::skip]
const FIELDS: &[(&str, Unit, &str)] = &[
    ("rate", Unit::PerSecond, "sum by (model, version) (rate(model_predictions_total{SEL}[5m]))"),
    ("p50", Unit::Seconds, "histogram_quantile(0.5, sum by (model, version, le) (rate(model_inference_duration_seconds_bucket{SEL}[5m])))"),
    ("p95", Unit::Seconds, "histogram_quantile(0.95, sum by (model, version, le) (rate(model_inference_duration_seconds_bucket{SEL}[5m])))"),
    ("p99", Unit::Seconds, "histogram_quantile(0.99, sum by (model, version, le) (rate(model_inference_duration_seconds_bucket{SEL}[5m])))"),
    ("accuracy", Unit::Percent, "min by (model, version) (model_accuracy_ratio{SEL})"),
    ("drift", Unit::Plain, "max by (model, version) (model_drift_score{SEL})"),
];

/// Every (model, version) with figures, optionally of one model only.
async fn versions(
    state: &AppState,
    model: Option<&str>,
    at: i64,
) -> Result<Vec<VersionRow>, PageError> {
    let sel = match model {
        Some(m) => format!("model=\"{}\"", promql_string(m)),
        None => String::new(),
    };
    let mut rows: BTreeMap<(String, String), VersionRow> = BTreeMap::new();
    let mut raw: BTreeMap<(String, String), (Option<f64>, Option<f64>)> = BTreeMap::new();
    for (field, unit, q) in FIELDS {
        let q = q.replace("{SEL}", &format!("{{{sel}}}"));
        for p in ops::instant(state, &q, at).await? {
            let (Some(m), Some(v)) = (p.labels.get("model"), p.labels.get("version")) else {
                continue;
            };
            let key = (m.clone(), v.clone());
            let row = rows.entry(key.clone()).or_insert_with(|| VersionRow {
                model: m.clone(),
                version: v.clone(),
                ..VersionRow::default()
            });
            let value = Some(p.value).filter(|v| v.is_finite());
            let text = format::value(value, *unit);
            match *field {
                "rate" => row.rate = text,
                "p50" => row.p50 = text,
                "p95" => row.p95 = text,
                "p99" => row.p99 = text,
                "accuracy" => {
                    row.accuracy = text;
                    raw.entry(key).or_default().0 = value;
                }
                _ => {
                    row.drift = text;
                    raw.entry(key).or_default().1 = value;
                }
            }
        }
    }
    // The same limits as the summary's ml-models checks.
    for (key, row) in rows.iter_mut() {
        for f in [
            &mut row.rate,
            &mut row.p50,
            &mut row.p95,
            &mut row.p99,
            &mut row.accuracy,
            &mut row.drift,
        ] {
            if f.is_empty() {
                *f = "—".into();
            }
        }
        let (acc, drift) = raw.get(key).copied().unwrap_or_default();
        let class = if acc.is_some_and(|a| a < 0.85) || drift.is_some_and(|d| d > 0.3) {
            "crit"
        } else if acc.is_some_and(|a| a < 0.9) || drift.is_some_and(|d| d > 0.2) {
            "warn"
        } else if acc.is_some() || drift.is_some() {
            "ok"
        } else {
            "unknown"
        };
        row.badge = Some(format::badge(class));
        row.href = format!("/models/{}", format::path_segment(&row.model));
    }
    Ok(rows.into_values().collect())
}

/// `GET /models`.
pub async fn list(user: WebUser, State(state): State<AppState>) -> Result<Response, PageError> {
    let rows = versions(&state, None, now_ms()).await?;
    let mut c = page_context(&state, &user, "models", "ML models");
    c.insert("versions", &rows);
    Ok(render("models.html", &c))
}

#[derive(Debug, Default, Deserialize)]
pub struct CompareParams {
    a: Option<String>,
    b: Option<String>,
}

/// `GET /models/{model}`.
pub async fn detail(
    user: WebUser,
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(p): Query<CompareParams>,
) -> Result<Response, PageError> {
    let now = now_ms();
    let all = versions(&state, Some(&model), now).await?;
    if all.is_empty() {
        return Err(PageError::NotFound(format!(
            "no model {model:?} has reported in the last 5 minutes"
        )));
    }
    let names: Vec<String> = all.iter().map(|v| v.version.clone()).collect();
    let pick = |want: Option<&String>,
                default: Option<&String>|
     -> Result<Option<VersionRow>, PageError> {
        match want.filter(|w| !w.is_empty()) {
            Some(w) => all
                .iter()
                .find(|v| &v.version == w)
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    PageError::NotFound(format!("model {model:?} has no version {w:?}"))
                }),
            None => Ok(default.and_then(|d| all.iter().find(|v| &v.version == d).cloned())),
        }
    };
    let a = pick(p.a.as_ref(), names.iter().rev().nth(1).or(names.last()))?;
    let b = pick(p.b.as_ref(), names.last())?;
    let m = promql_string(&model);
    let chosen: Vec<String> = [&a, &b]
        .iter()
        .filter_map(|v| v.as_ref().map(|v| v.version.clone()))
        .collect();
    let mut queries: Vec<(Panel, String)> = Vec::new();
    for v in &chosen {
        let sel = format!("model=\"{m}\",version=\"{}\"", promql_string(v));
        for (id, q) in [
            (
                "rate",
                format!("sum(rate(model_predictions_total{{{sel}}}[5m]))"),
            ),
            (
                "p95",
                format!(
                    "histogram_quantile(0.95, sum by (le) (rate(model_inference_duration_seconds_bucket{{{sel}}}[5m])))"
                ),
            ),
            ("accuracy", format!("min(model_accuracy_ratio{{{sel}}})")),
            ("drift", format!("max(model_drift_score{{{sel}}})")),
        ] {
            let id: &'static str = match id {
                "rate" => "rate",
                "p95" => "p95",
                "accuracy" => "accuracy",
                _ => "drift",
            };
            queries.push((
                Panel {
                    id,
                    title: id,
                    query: "",
                    unit: Unit::Plain,
                },
                q,
            ));
        }
    }
    let (from, to) = (now - 3_600_000, now);
    let history = panels::history(&state, &queries, from, to, 30_000).await?;
    // One chart per figure, one line per version.
    let mut charts: BTreeMap<&str, Vec<Line>> = BTreeMap::new();
    for (i, (_, col)) in history.series.iter().enumerate() {
        let version = chosen.get(i / 4).cloned().unwrap_or_default();
        let id = queries.get(i).map(|(p, _)| p.id).unwrap_or("rate");
        charts.entry(id).or_default().push((version, col.clone()));
    }
    // Confidence distribution over the last hour (cumulative buckets -> counts).
    let conf = ops::instant(
        &state,
        &format!("sum by (le) (increase(model_prediction_confidence_bucket{{model=\"{m}\"}}[1h]))"),
        now,
    )
    .await?;
    let mut buckets: Vec<(f64, String, f64)> = conf
        .iter()
        .filter_map(|p| {
            let le = p.labels.get("le")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, le.clone(), p.value))
        })
        .collect();
    buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut prev = 0.0;
    let mut dist = Vec::new();
    for (_, le, cum) in &buckets {
        let count = (cum - prev).max(0.0);
        prev = *cum;
        dist.push((le.clone(), count));
    }
    let max = dist.iter().map(|d| d.1).fold(0.0, f64::max);
    let dist: Vec<serde_json::Value> = dist
        .into_iter()
        .map(|(le, n)| serde_json::json!({"le": le, "count": format!("{n:.0}"), "value": n, "max": max.max(1.0)}))
        .collect();
    let mut c = page_context(&state, &user, "models", &model);
    c.insert("model", &model);
    c.insert("versions", &names);
    c.insert("a", &a);
    c.insert("b", &b);
    c.insert("confidence", &dist);
    c.insert(
        "charts",
        &serde_json::json!({"ts": history.ts, "charts": charts}).to_string(),
    );
    Ok(render("model.html", &c))
}
