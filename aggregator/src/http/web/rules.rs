//! `/rules` (every rule with its state and last evaluation), `/explore`
//! (a PromQL box with a graph and a table) and `/admin` (users, API tokens
//! and the dashboard's settings; admins only).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::AppState;
use super::super::ops::{label_map, now_ms};
use super::super::session::WebUser;
use super::{Dashboard, PageError, format, page_context, render};
use crate::alert::eval::Health;
use crate::alert::eval::machine::Phase;
use crate::alert::rules::Rule;
use crate::query::{QueryError, Value};

/// `GET /rules`.
pub async fn rules(user: WebUser, State(state): State<AppState>) -> Result<Response, PageError> {
    let now = now_ms();
    let groups: Vec<serde_json::Value> = state
        .alerting
        .groups()
        .into_iter()
        .map(|g| {
            let rules: Vec<serde_json::Value> = g
                .rules
                .iter()
                .map(|r| {
                    let firing = r.alerts.alerts.values().filter(|e| e.phase == Phase::Firing).count();
                    let pending = r.alerts.alerts.values().filter(|e| e.phase == Phase::Pending).count();
                    let (kind, name, expr) = match &r.rule {
                        Rule::Alerting(a) => ("alert", a.name.clone(), a.expr.clone()),
                        Rule::Recording(rr) => ("record", rr.record.clone(), rr.expr.clone()),
                    };
                    let (state_text, badge) = match (&r.rule, r.health) {
                        (_, Health::Err) => ("error".to_string(), format::badge("crit")),
                        (Rule::Alerting(_), _) if firing > 0 => (format!("firing ({firing})"), format::badge("crit")),
                        (Rule::Alerting(_), _) if pending > 0 => (format!("pending ({pending})"), format::badge("warn")),
                        (_, Health::Unknown) => ("not evaluated yet".to_string(), format::badge("unknown")),
                        (Rule::Alerting(_), Health::Ok) => ("inactive".to_string(), format::badge("ok")),
                        (Rule::Recording(_), Health::Ok) => ("ok".to_string(), format::badge("ok")),
                    };
                    serde_json::json!({
                        "kind": kind,
                        "name": name,
                        "expr": expr,
                        "state": state_text,
                        "badge": badge,
                        "last_eval": r.last_eval_ms.map(|t| format::ago(t, now)).unwrap_or_else(|| "never".into()),
                        "duration": format::value(Some(r.last_duration_s), format::Unit::Seconds),
                        "error": r.last_error.clone().unwrap_or_default(),
                    })
                })
                .collect();
            serde_json::json!({
                "name": g.name,
                "file": g.file.display().to_string(),
                "interval": format!("{}s", g.interval_ms / 1000),
                "last_eval": g.last_eval_ms.map(|t| format::ago(t, now)).unwrap_or_else(|| "never".into()),
                "rules": rules,
            })
        })
        .collect();
    let mut c = page_context(&state, &user, "rules", "Rules");
    c.insert("groups", &groups);
    Ok(render("rules.html", &c))
}

#[derive(Debug, Default, Deserialize)]
pub struct ExploreParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    range: String,
}

/// Longest query text accepted by the explore box.
const MAX_QUERY_BYTES: usize = 8 * 1024;
/// Series drawn in the graph and rows in the table.
const MAX_GRAPH_SERIES: usize = 20;
const MAX_TABLE_ROWS: usize = 500;

fn series_name(labels: &[vigil_common::Label]) -> String {
    let name = labels
        .iter()
        .find(|l| l.name == crate::query::source::METRIC_NAME)
        .map(|l| l.value.clone())
        .unwrap_or_default();
    let rest: Vec<String> = label_map(labels)
        .into_iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// `GET /explore?q=...&range=1h`: a bad query is answered 400 (or 422) with
/// the engine's message on the page.
pub async fn explore(
    user: WebUser,
    State(state): State<AppState>,
    Query(p): Query<ExploreParams>,
) -> Result<Response, PageError> {
    let mut c = page_context(&state, &user, "explore", "Explore");
    let range = if p.range.is_empty() {
        "1h".to_string()
    } else {
        p.range.clone()
    };
    let span = super::hosts::RANGES
        .iter()
        .find(|(l, _)| *l == range)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            PageError::BadRequest(format!(
                "range: expected one of 15m, 1h, 6h, 24h, 7d, got {range:?}"
            ))
        })?;
    c.insert("q", &p.q);
    c.insert("range", &range);
    c.insert(
        "ranges",
        &super::hosts::RANGES
            .iter()
            .map(|(l, _)| *l)
            .collect::<Vec<_>>(),
    );
    c.insert("error", "");
    c.insert("rows", &Vec::<serde_json::Value>::new());
    c.insert("chart", "");
    let q = p.q.trim();
    if q.is_empty() {
        return Ok(render("explore.html", &c));
    }
    if q.len() > MAX_QUERY_BYTES {
        return Err(PageError::BadRequest(format!(
            "q: at most {MAX_QUERY_BYTES} bytes"
        )));
    }
    let now = now_ms();
    let step = (span / 240).max(1000);
    let source = state.source.as_ref();
    let result = async {
        let table = state.engine.instant(source, q, now).await?;
        let graph = state.engine.range(source, q, now - span, now, step).await;
        Ok::<_, QueryError>((table, graph))
    }
    .await;
    let (table, graph) = match result {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                QueryError::BadData(_) => StatusCode::BAD_REQUEST,
                QueryError::Limit(_) | QueryError::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
                QueryError::Timeout(_) | QueryError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            c.insert("error", &e.to_string());
            let mut resp = render("explore.html", &c);
            *resp.status_mut() = status;
            return Ok(resp);
        }
    };
    let rows: Vec<serde_json::Value> = match table {
        Value::Vector(samples) => samples
            .iter()
            .take(MAX_TABLE_ROWS)
            .map(|s| serde_json::json!({"series": series_name(&s.labels), "value": format!("{}", s.value)}))
            .collect(),
        Value::Scalar { value, .. } => vec![serde_json::json!({"series": "scalar", "value": format!("{value}")})],
        Value::String { value, .. } => vec![serde_json::json!({"series": "string", "value": value})],
        Value::Matrix(m) => m
            .iter()
            .take(MAX_TABLE_ROWS)
            .map(|s| {
                let last = s.samples.last().map(|(_, v)| format!("{v}")).unwrap_or_default();
                serde_json::json!({"series": series_name(&s.labels), "value": format!("{last} ({} samples)", s.samples.len())})
            })
            .collect(),
    };
    c.insert("rows", &rows);
    // A range vector or a string has no graph; the table still shows it.
    if let Ok(Value::Matrix(series)) = graph {
        let n = usize::try_from((span) / step + 1).unwrap_or(0);
        let from = now - span;
        let ts: Vec<f64> = (0..n)
            .map(|i| (from + step * i as i64) as f64 / 1000.0)
            .collect();
        let lines: Vec<(String, Vec<Option<f64>>)> = series
            .iter()
            .take(MAX_GRAPH_SERIES)
            .map(|s| {
                let mut col = vec![None; n];
                for (t, v) in &s.samples {
                    if let Some(slot) = usize::try_from((t - from) / step)
                        .ok()
                        .and_then(|i| col.get_mut(i))
                    {
                        *slot = v.is_finite().then_some(*v);
                    }
                }
                (series_name(&s.labels), col)
            })
            .collect();
        c.insert(
            "chart",
            &serde_json::json!({"ts": ts, "lines": lines}).to_string(),
        );
    }
    Ok(render("explore.html", &c))
}

/// `GET /admin` (admins only).
pub async fn admin(
    user: WebUser,
    State(state): State<AppState>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
) -> Result<Response, PageError> {
    if !user.role.is_admin() {
        return Err(PageError::Forbidden(format!(
            "{} is a {}: the admin page needs the admin role",
            user.name,
            user.role.as_str()
        )));
    }
    let now = now_ms();
    let tokens: Vec<serde_json::Value> = state
        .store
        .tokens()
        .await?
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "role": t.role,
                "created": format::time(t.created_at_ms),
                "revoked": t.revoked_at_ms.map(format::time),
            })
        })
        .collect();
    let users: Vec<serde_json::Value> = crate::store::users::users(&state.store.db())
        .await?
        .into_iter()
        .map(|u| {
            serde_json::json!({
                "name": u.name,
                "role": u.role,
                "disabled": u.disabled,
                "created": format::time(u.created_at_ms),
            })
        })
        .collect();
    let mut c = page_context(&state, &user, "admin", "Admin");
    c.insert("tokens", &tokens);
    c.insert("users", &users);
    let d = &dashboard.config;
    c.insert(
        "settings",
        &vec![
            (
                "dashboard.live_interval",
                humantime::format_duration(d.live_interval).to_string(),
            ),
            ("dashboard.client_queue", d.client_queue.to_string()),
            ("dashboard.max_clients", d.max_clients.to_string()),
            (
                "dashboard.chart_window",
                humantime::format_duration(d.chart_window).to_string(),
            ),
            ("dashboard.allowed_origins", d.allowed_origins.join(", ")),
            ("live clients now", dashboard.hub.clients().to_string()),
            ("store", state.store.backend().to_string()),
            ("page rendered at", format::time(now)),
        ],
    );
    Ok(render("admin.html", &c).into_response())
}
