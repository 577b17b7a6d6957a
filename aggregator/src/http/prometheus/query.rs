//! `query` and `query_range`: PromQL through the engine, with Prometheus'
//! parameter checks and error types.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;

use super::error::PromError;
use super::params::Params;
use super::{json, respond};
use crate::http::AppState;
use crate::http::access::ReadAccess;
use crate::query::{Engine, Limits, QueryError, Value};

/// `GET|POST /query?query=&time=&timeout=`
pub async fn instant(
    _: ReadAccess,
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, PromError> {
    let query = query_param(&params)?;
    let time = params.time_or("time", vigil_common::now_ms())?;
    let engine = engine(&state, &params)?;
    let source = state.source.clone();
    let budget = engine.limits.timeout;
    let value = run(budget, async move {
        engine.instant(source.as_ref(), &query, time).await
    })
    .await?;
    Ok(respond(json::success(&json::query_data(&value), &[])))
}

/// `GET|POST /query_range?query=&start=&end=&step=&timeout=`
pub async fn range(
    _: ReadAccess,
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, PromError> {
    let start = params.time("start")?;
    let end = params.time("end")?;
    if end < start {
        return Err(PromError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = params
        .duration("step")?
        .ok_or_else(|| PromError::param("step", "parameter is missing"))?;
    let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
    if step_ms <= 0 {
        return Err(PromError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let max_points = state.engine.limits.max_points_per_series;
    // i128: start and end may be the far-off "unbounded" times.
    let points = (i128::from(end) - i128::from(start)) / i128::from(step_ms);
    if points > max_points as i128 {
        return Err(PromError::BadData(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            thousands(max_points)
        )));
    }
    let query = query_param(&params)?;
    let engine = engine(&state, &params)?;
    let source = state.source.clone();
    let budget = engine.limits.timeout;
    let value = run(budget, async move {
        engine
            .range(source.as_ref(), &query, start, end, step_ms)
            .await
    })
    .await?;
    Ok(respond(json::success(&json::query_data(&value), &[])))
}

/// `query`, checked to parse so a syntax error reads as Prometheus words it
/// (`invalid parameter "query": 1:5: parse error: ...`).
fn query_param(params: &Params) -> Result<String, PromError> {
    let query = params.get("query").unwrap_or_default();
    crate::query::engine::parse(query).map_err(|e| PromError::param("query", e))?;
    Ok(query.to_string())
}

/// The engine for this request: the shared limits, with the `timeout`
/// parameter able to shorten (never lengthen) the time budget.
fn engine(state: &AppState, params: &Params) -> Result<Arc<Engine>, PromError> {
    let cap = state.engine.limits.timeout;
    match params.duration("timeout")? {
        Some(t) if t < cap => Ok(Arc::new(Engine::new(Limits {
            timeout: t,
            ..state.engine.limits.clone()
        }))),
        _ => Ok(state.engine.clone()),
    }
}

/// Runs an evaluation, also bounded from outside by `budget` (the engine
/// checks its deadline itself; this catches a stuck storage read).
async fn run(
    budget: Duration,
    evaluation: impl Future<Output = Result<Value, QueryError>>,
) -> Result<Value, PromError> {
    match tokio::time::timeout(budget + BACKSTOP_GRACE, evaluation).await {
        Err(_) => Err(QueryError::Timeout(budget).into()),
        Ok(r) => r.map_err(PromError::from),
    }
}

/// How long past its own deadline the engine gets to report a timeout.
const BACKSTOP_GRACE: Duration = Duration::from_millis(500);

/// `11000` -> `11,000`, as Prometheus' message shows the limit.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(11_000), "11,000");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
