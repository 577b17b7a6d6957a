//! Reports over a time range:
//! - `GET /api/v1/reports/availability?from&to`: uptime % per host (an
//!   interval counts as up when the host's agent sent samples in it) and per
//!   service (PostgreSQL `pg_up`, Redis `redis_up`, probes `probe_success`,
//!   scrape targets `up`: the mean of the up-metric over the intervals that
//!   have data, with the share of intervals that have data as coverage);
//! - `GET /api/v1/reports/metrics?query&from&to&step&format=csv|json`: a
//!   range query as JSON or as CSV (one row per step, one column per series).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::ReadAccess;
use super::error::ApiError;
use super::ops;
use crate::query::{RawSeries, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/reports/availability", get(availability))
        .route("/reports/metrics", get(metrics))
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Longest range a report covers.
const MAX_SPAN_MS: i64 = 366 * DAY_MS;
/// Most intervals an availability report is cut into.
const MAX_INTERVALS: i64 = 1_000;
/// Shortest availability interval: longer than any agent's collection period.
const MIN_INTERVAL_MS: i64 = 60_000;
/// Most points per series of a metrics report (Prometheus' limit).
const MAX_POINTS: i64 = 11_000;

#[derive(Debug, Deserialize)]
pub struct RangeParams {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
}

/// The availability interval for a range: at least a minute, at most
/// [`MAX_INTERVALS`] intervals, never longer than the range.
fn interval_ms(span_ms: i64) -> i64 {
    let by_count = (span_ms + MAX_INTERVALS - 1) / MAX_INTERVALS;
    by_count.max(MIN_INTERVAL_MS).min(span_ms).max(1)
}

#[derive(Debug, Serialize)]
pub struct HostAvailability {
    pub host: String,
    pub uptime_percent: f64,
    pub intervals_up: usize,
    /// Intervals counted: the whole range for a host known before it, else
    /// from the first interval with data.
    pub intervals_total: usize,
}

#[derive(Debug, Serialize)]
pub struct ServiceAvailability {
    /// `postgresql`, `redis`, `probe` or `scrape`.
    pub service: &'static str,
    pub host: String,
    /// The probe's or scrape job's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Mean of the up-metric over the intervals with data; null without data.
    pub uptime_percent: Option<f64>,
    /// Share of the range's intervals that have data.
    pub coverage_percent: f64,
}

#[derive(Debug, Serialize)]
pub struct AvailabilityReport {
    pub from: String,
    pub to: String,
    pub interval_seconds: f64,
    pub intervals: usize,
    pub hosts: Vec<HostAvailability>,
    pub services: Vec<ServiceAvailability>,
}

/// (service, up-metric, the label naming the instance besides `host`).
const SERVICES: &[(&str, &str, Option<&str>)] = &[
    ("postgresql", "pg_up", None),
    ("redis", "redis_up", None),
    ("probe", "probe_success", Some("probe")),
    ("scrape", "up", Some("job")),
];

/// What marks an agent as present: its host metrics or its own metrics.
const PRESENCE: &str =
    "{__name__=~\"system_cpu_usage_ratio|system_uptime_seconds|vigil_agent_connected\",host!=\"\"}";

pub async fn availability_report(
    state: &AppState,
    from: i64,
    to: i64,
) -> Result<AvailabilityReport, ApiError> {
    let step = interval_ms(to - from);
    // Evaluation at t covers (t - step, t]: the first interval ends at from + step.
    let first = from + step;
    let intervals = usize::try_from((to - first) / step + 1).unwrap_or(0);
    let index = |t: i64| usize::try_from((t - first) / step).unwrap_or(0);

    let known_since: HashMap<String, i64> = state
        .store
        .hosts()
        .await?
        .into_iter()
        .map(|h| (h.hostname, h.first_seen_ms))
        .collect();
    let q = format!("count by (host) (count_over_time({PRESENCE}[{step}ms]))");
    let mut hosts = Vec::new();
    for s in ops::range(state, &q, first, to, step).await? {
        let host = ops::label_map(&s.labels).remove("host").unwrap_or_default();
        let up: Vec<usize> = s
            .samples
            .iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|&(t, _)| index(t))
            .collect();
        let start = match known_since.get(&host) {
            Some(&seen) if seen <= from => 0,
            _ => up.first().copied().unwrap_or(0),
        };
        let total = intervals.saturating_sub(start).max(1);
        hosts.push(HostAvailability {
            uptime_percent: round2(100.0 * up.len() as f64 / total as f64),
            intervals_up: up.len(),
            intervals_total: total,
            host,
        });
    }
    hosts.sort_by(|a, b| a.host.cmp(&b.host));

    let mut services = Vec::new();
    for &(service, metric, name_label) in SERVICES {
        let by = name_label.map_or("host".to_string(), |l| format!("host, {l}"));
        let q = format!("avg by ({by}) (avg_over_time({metric}[{step}ms]))");
        for s in ops::range(state, &q, first, to, step).await? {
            let mut labels = ops::label_map(&s.labels);
            let values: Vec<f64> = s
                .samples
                .iter()
                .map(|&(_, v)| v)
                .filter(|v| !v.is_nan())
                .collect();
            let uptime = (!values.is_empty())
                .then(|| round2(100.0 * values.iter().sum::<f64>() / values.len() as f64));
            services.push(ServiceAvailability {
                service,
                host: labels.remove("host").unwrap_or_default(),
                name: name_label.and_then(|l| labels.remove(l)),
                uptime_percent: uptime,
                coverage_percent: round2(100.0 * values.len() as f64 / intervals.max(1) as f64),
            });
        }
    }
    Ok(AvailabilityReport {
        from: ops::rfc3339(from),
        to: ops::rfc3339(to),
        interval_seconds: step as f64 / 1000.0,
        intervals,
        hosts,
        services,
    })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

async fn availability(
    _caller: ReadAccess,
    State(state): State<AppState>,
    Query(p): Query<RangeParams>,
) -> Result<Json<AvailabilityReport>, ApiError> {
    let (from, to) = ops::time_range(p.from.as_deref(), p.to.as_deref(), DAY_MS, MAX_SPAN_MS)?;
    Ok(Json(availability_report(&state, from, to).await?))
}

#[derive(Debug, Deserialize)]
pub struct MetricsParams {
    query: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SeriesOut {
    pub labels: BTreeMap<String, String>,
    /// `[unix seconds, value]`.
    pub values: Vec<(f64, f64)>,
}

#[derive(Debug, Serialize)]
pub struct MetricsReport {
    pub query: String,
    pub from: String,
    pub to: String,
    pub step_seconds: f64,
    pub series: Vec<SeriesOut>,
}

/// A series as PromQL writes it: `name{a="b"}`.
fn series_name(s: &RawSeries) -> String {
    let mut name = String::new();
    let mut labels = Vec::new();
    for l in s.labels.iter() {
        if l.name == crate::query::source::METRIC_NAME {
            name = l.value.clone();
        } else {
            labels.push(format!("{}={:?}", l.name, l.value));
        }
    }
    format!("{name}{{{}}}", labels.join(","))
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        (if v > 0.0 { "+Inf" } else { "-Inf" }).into()
    } else {
        v.to_string()
    }
}

/// One row per step, one column per series; a missing point is empty.
pub fn to_csv(series: &[RawSeries], from: i64, to: i64, step: i64) -> String {
    let mut out = String::from("timestamp");
    for s in series {
        out.push(',');
        out.push_str(&csv_field(&series_name(s)));
    }
    out.push('\n');
    let columns: Vec<HashMap<i64, f64>> = series
        .iter()
        .map(|s| s.samples.iter().copied().collect())
        .collect();
    let mut t = from;
    while t <= to {
        out.push_str(&ops::rfc3339(t));
        for c in &columns {
            out.push(',');
            if let Some(v) = c.get(&t) {
                out.push_str(&csv_value(*v));
            }
        }
        out.push('\n');
        t += step;
    }
    out
}

async fn metrics(
    _caller: ReadAccess,
    State(state): State<AppState>,
    Query(p): Query<MetricsParams>,
) -> Result<Response, ApiError> {
    let query = p
        .query
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("query: a PromQL expression is required".into()))?;
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format: expected csv or json, got {other:?}"
            )));
        }
    };
    let step = match p.step.as_deref() {
        Some(raw) => ops::parse_duration_ms("step", raw)?,
        None => 60_000,
    };
    let (from, to) = ops::time_range(p.from.as_deref(), p.to.as_deref(), HOUR_MS, MAX_SPAN_MS)?;
    if (to - from) / step + 1 > MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "{} points per series exceed the limit of {MAX_POINTS}: raise step or shorten the range",
            (to - from) / step + 1
        )));
    }
    let series = match state
        .engine
        .range(state.source.as_ref(), &query, from, to, step)
        .await
        .map_err(ops::query_error)?
    {
        Value::Matrix(m) => m,
        other => {
            return Err(ApiError::BadRequest(format!(
                "query: a range report needs an instant vector or scalar expression, got {}",
                other.type_name()
            )));
        }
    };
    if csv {
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "text/csv; charset=utf-8; header=present",
                ),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"vigil-report.csv\"",
                ),
            ],
            to_csv(&series, from, to, step),
        )
            .into_response());
    }
    Ok(Json(MetricsReport {
        query,
        from: ops::rfc3339(from),
        to: ops::rfc3339(to),
        step_seconds: step as f64 / 1000.0,
        series: series
            .iter()
            .map(|s| SeriesOut {
                labels: ops::label_map(&s.labels),
                values: s
                    .samples
                    .iter()
                    .map(|&(t, v)| (t as f64 / 1000.0, v))
                    .collect(),
            })
            .collect(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_common::Label;

    #[test]
    fn intervals() {
        assert_eq!(interval_ms(DAY_MS), 86_400);
        assert_eq!(interval_ms(HOUR_MS), 60_000);
        assert_eq!(interval_ms(30_000), 30_000);
        assert!(interval_ms(366 * DAY_MS) * MAX_INTERVALS >= 366 * DAY_MS);
    }

    #[test]
    fn csv_quotes_and_fills_gaps() {
        let s = RawSeries {
            labels: vec![Label::new("__name__", "x"), Label::new("path", "/a,b")].into(),
            samples: vec![(0, 1.5), (2000, f64::NAN)],
        };
        let csv = to_csv(&[s], 0, 2000, 1000);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "timestamp,\"x{path=\"\"/a,b\"\"}\"");
        assert_eq!(lines[1], "1970-01-01T00:00:00.000Z,1.5");
        assert_eq!(lines[2], "1970-01-01T00:00:01.000Z,");
        assert_eq!(lines[3], "1970-01-01T00:00:02.000Z,NaN");
    }
}
