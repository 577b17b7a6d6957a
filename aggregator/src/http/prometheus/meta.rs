//! Everything but queries: series and label lookups (what Grafana's metric
//! browser calls), metadata, build info and the cheap extras
//! Grafana probes for.

use axum::extract::{Path, State};
use axum::response::Response;
use vigil_common::model::is_valid_label_name;

use super::error::PromError;
use super::params::{MAX_TIME_MS, MIN_TIME_MS, Params};
use super::{json, respond};
use crate::http::AppState;
use crate::http::access::ReadAccess;

/// The Prometheus version whose API Vigil follows; Grafana reads it from
/// `status/buildinfo` to decide which features it may use.
pub const PROMETHEUS_API_VERSION: &str = "2.53.0";

const TRUNCATED: &str = "results truncated due to limit";

/// `GET|POST /series?match[]=&start=&end=&limit=`
pub async fn series(
    _: ReadAccess,
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, PromError> {
    let sets = params.matcher_sets(true)?;
    let (start, end) = range(&params)?;
    let limit = params.limit()?;
    let mut found = state
        .source
        .series(&sets, start, end, limit.saturating_add(1))
        .await?;
    let warnings = truncate(&mut found, limit);
    let mut data = String::from("[");
    for (i, labels) in found.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::labels(&mut data, labels);
    }
    data.push(']');
    Ok(respond(json::success(&data, &warnings)))
}

/// `GET|POST /labels?match[]=&start=&end=&limit=`
pub async fn labels(
    _: ReadAccess,
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, PromError> {
    let sets = params.matcher_sets(false)?;
    let (start, end) = range(&params)?;
    let limit = params.limit()?;
    let mut names = state.source.label_names(&sets, start, end).await?;
    let warnings = truncate(&mut names, limit);
    Ok(respond(json::success(&strings(&names), &warnings)))
}

/// `GET /label/{name}/values?match[]=&start=&end=&limit=`
pub async fn label_values(
    _: ReadAccess,
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, PromError> {
    if !is_valid_label_name(&name) {
        return Err(PromError::BadData(format!("invalid label name: {name:?}")));
    }
    let sets = params.matcher_sets(false)?;
    let (start, end) = range(&params)?;
    let limit = params.limit()?;
    let mut values = state.source.label_values(&name, &sets, start, end).await?;
    let warnings = truncate(&mut values, limit);
    Ok(respond(json::success(&strings(&values), &warnings)))
}

/// `GET /metadata?metric=&limit=&limit_per_metric=`: type, help and unit
/// per metric name, as agents, `/api/v1/import` (`# TYPE`/`# HELP`/`# UNIT`)
/// and remote_write sent them. As in Prometheus, `limit` caps the number of
/// metrics (0 gives none, a negative value or none all) and
/// `limit_per_metric` the entries per metric (Vigil keeps one per metric, so
/// it only has to parse); `metric` picks one name.
pub async fn metadata(
    _: ReadAccess,
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, PromError> {
    let limit = int_param(&params, "limit")?;
    int_param(&params, "limit_per_metric")?;
    let metric = params.get("metric");
    let mut found =
        (state.store.metadata(metric).await).map_err(|e| PromError::Unavailable(e.to_string()))?;
    if let Some(n) = limit.and_then(|n| usize::try_from(n).ok()) {
        found.truncate(n);
    }
    let mut data = String::from("{");
    for (i, m) in found.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::string(&mut data, &m.name);
        data.push_str(":[{\"type\":");
        json::string(&mut data, &m.kind);
        data.push_str(",\"help\":");
        json::string(&mut data, &m.help);
        data.push_str(",\"unit\":");
        json::string(&mut data, &m.unit);
        data.push_str("}]");
    }
    data.push('}');
    Ok(respond(json::success(&data, &[])))
}

/// An optional integer parameter, any sign.
fn int_param(params: &Params, name: &str) -> Result<Option<i64>, PromError> {
    params
        .get(name)
        .map(|raw| {
            raw.parse::<i64>().map_err(|_| {
                PromError::param(name, format!("cannot parse {raw:?}: must be an integer"))
            })
        })
        .transpose()
}

/// `GET|POST /query_exemplars`: Vigil keeps no exemplars.
pub async fn exemplars(_: ReadAccess, params: Params) -> Result<Response, PromError> {
    range(&params)?;
    Ok(respond(json::success("[]", &[])))
}

/// `GET /status/buildinfo`: the Prometheus API version Vigil follows, and
/// Vigil's own version as the revision.
pub async fn buildinfo(_: ReadAccess) -> Response {
    let data = serde_json::json!({
        "version": PROMETHEUS_API_VERSION,
        "revision": format!("vigil-{}", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "vigil",
    });
    respond(json::success(&data.to_string(), &[]))
}

/// `GET /status/flags`: Vigil has no Prometheus command-line flags.
pub async fn flags(_: ReadAccess) -> Response {
    respond(json::success("{}", &[]))
}

/// `start`/`end`, unbounded when absent.
fn range(params: &Params) -> Result<(i64, i64), PromError> {
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    if end < start {
        return Err(PromError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

/// Cuts `items` to `limit`, with Prometheus' warning when it did.
fn truncate<T>(items: &mut Vec<T>, limit: usize) -> Vec<String> {
    if items.len() > limit {
        items.truncate(limit);
        vec![TRUNCATED.to_string()]
    } else {
        vec![]
    }
}

fn strings(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::string(&mut out, s);
    }
    out.push(']');
    out
}
