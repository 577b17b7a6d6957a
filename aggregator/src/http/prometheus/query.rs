//! `query` and `query_range`: PromQL through the engine, with Prometheus'
//! parameter checks and error types.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;

use super::error::PromError;
use super::params::Params;
use super::{json, respond};
use crate::http::AppState;
use crate::http::access::ReadAccess;
use crate::query::{QueryError, Value};

/// `GET|POST /query?query=&time=&timeout=`
pub async fn instant(
    _: ReadAccess,
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, PromError> {
    let query = params.get("query").unwrap_or_default().to_string();
    let time = params.time_or("time", vigil_common::now_ms())?;
    let budget = budget(&state, &params)?;
    let engine = state.engine.clone();
    let source = state.source.clone();
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
    let query = params.get("query").unwrap_or_default().to_string();
    let budget = budget(&state, &params)?;
    let engine = state.engine.clone();
    let source = state.source.clone();
    let value = run(budget, async move {
        engine
            .range(source.as_ref(), &query, start, end, step_ms)
            .await
    })
    .await?;
    Ok(respond(json::success(&json::query_data(&value), &[])))
}

/// The query's time budget: the `timeout` parameter, capped by the engine's.
fn budget(state: &AppState, params: &Params) -> Result<Duration, PromError> {
    let cap = state.engine.limits.timeout;
    Ok(params.duration("timeout")?.map_or(cap, |t| t.min(cap)))
}

/// Runs an evaluation under `budget`, with parse errors worded as
/// Prometheus words them.
async fn run(
    budget: Duration,
    evaluation: impl Future<Output = Result<Value, QueryError>>,
) -> Result<Value, PromError> {
    match tokio::time::timeout(budget, evaluation).await {
        Err(_) => Err(QueryError::Timeout(budget).into()),
        Ok(Err(QueryError::BadData(m))) => Err(PromError::param("query", m)),
        Ok(r) => r.map_err(PromError::from),
    }
}

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
