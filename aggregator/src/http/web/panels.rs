//! The panel sets pages show and the live socket pushes: fixed PromQL
//! queries chosen by the server (a client names a set, never a query).

use super::super::AppState;
use super::super::error::ApiError;
use super::super::ops;
use super::format::{self, Unit};

/// One figure with a chart.
#[derive(Debug, Clone, Copy)]
pub struct Panel {
    /// Stable id, used in the page and in live frames.
    pub id: &'static str,
    pub title: &'static str,
    pub query: &'static str,
    pub unit: Unit,
}

macro_rules! panel {
    ($id:literal, $title:literal, $unit:ident, $query:expr) => {
        Panel {
            id: $id,
            title: $title,
            query: $query,
            unit: Unit::$unit,
        }
    };
}

/// The overview's eight key metrics, over the whole estate.
#[rustfmt::skip]
pub const OVERVIEW: &[Panel] = &[
    panel!("request_rate", "Request rate", PerSecond, "sum(rate(http_requests_total[5m]))"),
    panel!("error_rate", "Error rate (5xx)", Percent, "sum(rate(http_requests_total{status=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))"),
    panel!("latency_p95", "p95 latency", Seconds, "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"),
    panel!("inference_p95", "Inference p95", Seconds, "histogram_quantile(0.95, sum by (le) (rate(model_inference_duration_seconds_bucket[5m])))"),
    panel!("cpu", "CPU busy (avg)", Percent, "avg(system_cpu_usage_ratio)"),
    panel!("memory", "Memory used", Percent, "sum(system_memory_used_bytes) / sum(system_memory_total_bytes)"),
    panel!("db_connections", "DB connections", Plain, "sum(pg_connections)"),
    panel!("cache_hit_ratio", "Cache hit ratio", Percent, "sum(rate(redis_keyspace_hits_total[5m])) / (sum(rate(redis_keyspace_hits_total[5m])) + sum(rate(redis_keyspace_misses_total[5m])))"),
];

/// A host's panels; `{host}` is replaced by the escaped host name.
#[rustfmt::skip]
pub const HOST: &[Panel] = &[
    panel!("cpu", "CPU busy", Percent, "max(system_cpu_usage_ratio{host=\"{host}\"})"),
    panel!("memory", "Memory used", Percent, "sum(system_memory_used_bytes{host=\"{host}\"}) / sum(system_memory_total_bytes{host=\"{host}\"})"),
    panel!("disk", "Fullest filesystem", Percent, "max(system_filesystem_used_bytes{host=\"{host}\"} / system_filesystem_size_bytes{host=\"{host}\"})"),
    panel!("net_rx", "Network in", BytesPerSecond, "sum(rate(system_network_receive_bytes_total{host=\"{host}\",device!=\"lo\"}[5m]))"),
    panel!("net_tx", "Network out", BytesPerSecond, "sum(rate(system_network_transmit_bytes_total{host=\"{host}\",device!=\"lo\"}[5m]))"),
];

/// Extra panels of a host with the `db` role.
#[rustfmt::skip]
pub const HOST_DB: &[Panel] = &[
    panel!("pg_connections", "DB connections", Plain, "sum(pg_connections{host=\"{host}\"})"),
    panel!("pg_hit", "DB buffer hit ratio", Percent, "sum(rate(pg_blks_hit_total{host=\"{host}\"}[5m])) / (sum(rate(pg_blks_hit_total{host=\"{host}\"}[5m])) + sum(rate(pg_blks_read_total{host=\"{host}\"}[5m])))"),
    panel!("pg_tps", "DB transactions", PerSecond, "sum(rate(pg_xact_commit_total{host=\"{host}\"}[5m])) + sum(rate(pg_xact_rollback_total{host=\"{host}\"}[5m]))"),
];

/// Extra panels of a host with the `cache` role.
#[rustfmt::skip]
pub const HOST_CACHE: &[Panel] = &[
    panel!("redis_hit", "Cache hit ratio", Percent, "sum(rate(redis_keyspace_hits_total{host=\"{host}\"}[5m])) / (sum(rate(redis_keyspace_hits_total{host=\"{host}\"}[5m])) + sum(rate(redis_keyspace_misses_total{host=\"{host}\"}[5m])))"),
    panel!("redis_memory", "Cache memory", Bytes, "max(redis_memory_used_bytes{host=\"{host}\"})"),
    panel!("redis_clients", "Cache clients", Plain, "max(redis_connected_clients{host=\"{host}\"})"),
];

/// A label value inside a PromQL double-quoted string.
pub fn promql_string(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The panels of `host` with its roles (`db`, `cache` add theirs), with
/// queries bound to it.
pub fn host_panels(host: &str, roles: &[String]) -> Vec<(Panel, String)> {
    let h = promql_string(host);
    let mut sets: Vec<&[Panel]> = vec![HOST];
    if roles.iter().any(|r| r == "db") {
        sets.push(HOST_DB);
    }
    if roles.iter().any(|r| r == "cache") {
        sets.push(HOST_CACHE);
    }
    sets.into_iter()
        .flatten()
        .map(|p| (*p, p.query.replace("{host}", &h)))
        .collect()
}

/// A figure now: the single value of `query` (none when it has no result).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    pub value: Option<f64>,
    pub text: String,
}

/// Evaluates each panel at `at_ms`.
pub async fn figures(
    state: &AppState,
    panels: &[(Panel, String)],
    at_ms: i64,
) -> Result<Vec<Figure>, ApiError> {
    let mut out = Vec::with_capacity(panels.len());
    for (p, query) in panels {
        let points = ops::instant(state, query, at_ms).await?;
        let value = points.first().map(|p| p.value).filter(|v| v.is_finite());
        out.push(Figure {
            id: p.id,
            title: p.title,
            unit: p.unit,
            text: format::value(value, p.unit),
            value,
        });
    }
    Ok(out)
}

/// Chart data of panels over a range: shared timestamps (seconds, as uPlot
/// wants them) and one column per panel (null where there is no value).
#[derive(Debug, Clone, serde::Serialize)]
pub struct History {
    pub ts: Vec<f64>,
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

/// Evaluates each panel from `from_ms` to `to_ms` every `step_ms`.
pub async fn history(
    state: &AppState,
    panels: &[(Panel, String)],
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> Result<History, ApiError> {
    let n = usize::try_from((to_ms - from_ms) / step_ms + 1).unwrap_or(0);
    let ts: Vec<f64> = (0..n)
        .map(|i| (from_ms + step_ms * i as i64) as f64 / 1000.0)
        .collect();
    let mut series = Vec::with_capacity(panels.len());
    for (p, query) in panels {
        let mut col = vec![None; n];
        if let Some(s) = ops::range(state, query, from_ms, to_ms, step_ms)
            .await?
            .into_iter()
            .next()
        {
            for (t, v) in s.samples {
                let i = usize::try_from((t - from_ms) / step_ms).unwrap_or(usize::MAX);
                if let Some(slot) = col.get_mut(i) {
                    *slot = v.is_finite().then_some(v);
                }
            }
        }
        series.push((p.id.to_string(), col));
    }
    Ok(History { ts, series })
}

/// The overview panels with their queries.
pub fn overview_panels() -> Vec<(Panel, String)> {
    OVERVIEW.iter().map(|p| (*p, p.query.to_string())).collect()
}
