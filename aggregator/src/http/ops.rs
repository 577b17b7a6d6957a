//! What the operations routes (`summary`, `resources`, `reports`) share:
//! parameter parsing with clear 400s, and engine calls whose failures map to
//! the right status (the caller's query: 400/422; the storage: 503).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::AppState;
use super::error::ApiError;
use super::prometheus::params;
use crate::query::source::METRIC_NAME;
use crate::query::{QueryError, RawSeries, Value};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// RFC 3339 of a time in ms.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Latest time a report may cover: year 9999.
const MAX_TIME_MS: i64 = 253_402_300_799_000;

/// A time parameter: RFC 3339 or (fractional) unix seconds, parsed as the
/// Prometheus API parses it, between the epoch and year 9999.
pub fn parse_time(name: &str, raw: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "{name}: expected RFC 3339 (2024-01-02T15:04:05Z) or unix seconds, got {raw:?}"
        ))
    };
    let ms = params::parse_time(raw).map_err(|_| bad())?;
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(bad());
    }
    Ok(ms)
}

/// A step or duration parameter: `30s`, `5m`, `1h30m` or float seconds, as
/// the Prometheus API parses it; > 0.
pub fn parse_duration_ms(name: &str, raw: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "{name}: expected a positive duration (60s, 5m, 1h) or seconds, got {raw:?}"
        ))
    };
    let d = params::parse_duration(raw).map_err(|_| bad())?;
    match i64::try_from(d.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(bad()),
    }
}

/// `from`/`to` with defaults (`to` = now, `from` = `to` - `default_span_ms`),
/// checked to be in order and at most `max_span_ms` apart.
pub fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    default_span_ms: i64,
    max_span_ms: i64,
) -> Result<(i64, i64), ApiError> {
    let to = match to {
        Some(raw) => parse_time("to", raw)?,
        None => now_ms(),
    };
    let from = match from {
        Some(raw) => parse_time("from", raw)?,
        None => to.saturating_sub(default_span_ms).max(0),
    };
    if from >= to {
        return Err(ApiError::BadRequest(format!(
            "from ({}) must be before to ({})",
            rfc3339(from),
            rfc3339(to)
        )));
    }
    if to - from > max_span_ms {
        return Err(ApiError::BadRequest(format!(
            "the range is {} days; at most {} days are allowed",
            (to - from) / 86_400_000,
            max_span_ms / 86_400_000
        )));
    }
    Ok((from, to))
}

/// A failed engine call as an HTTP error.
pub fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::BadData(m) => ApiError::BadRequest(format!("query: {m}")),
        QueryError::Limit(m) | QueryError::Execution(m) => ApiError::Unprocessable(m),
        QueryError::Timeout(_) | QueryError::Storage(_) => ApiError::Unavailable(e.to_string()),
    }
}

/// A series' labels without the metric name, as a map.
pub fn label_map(labels: &[vigil_common::Label]) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|l| l.name != METRIC_NAME)
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// One element of an instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A failed engine call on one of Vigil's own (fixed) queries: a limit is
/// 422 with its message (the estate outgrew the engine's limits); anything
/// else is the storage's fault or a defect, logged and answered 503.
fn own_query_error(query: &str, e: QueryError) -> ApiError {
    match e {
        QueryError::Limit(m) => ApiError::Unprocessable(m),
        e => ApiError::Unavailable(format!("{query}: {e}")),
    }
}

/// Evaluates one of Vigil's own queries at `at_ms`, as a list of points
/// (a scalar is one point without labels); errors as [`own_query_error`].
pub async fn instant(state: &AppState, query: &str, at_ms: i64) -> Result<Vec<Point>, ApiError> {
    let value = state
        .engine
        .instant(state.source.as_ref(), query, at_ms)
        .await
        .map_err(|e| own_query_error(query, e))?;
    Ok(match value {
        Value::Vector(samples) => samples
            .into_iter()
            .map(|s| Point {
                labels: label_map(&s.labels),
                value: s.value,
            })
            .collect(),
        Value::Scalar { value, .. } => vec![Point {
            labels: BTreeMap::new(),
            value,
        }],
        Value::String { .. } | Value::Matrix(_) => Vec::new(),
    })
}

/// Evaluates one of Vigil's own queries over a range (see [`instant`]).
pub async fn range(
    state: &AppState,
    query: &str,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> Result<Vec<RawSeries>, ApiError> {
    match state
        .engine
        .range(state.source.as_ref(), query, from_ms, to_ms, step_ms)
        .await
        .map_err(|e| own_query_error(query, e))?
    {
        Value::Matrix(series) => Ok(series),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(
            parse_time("from", "1700000000").expect("unix"),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("from", "1700000000.5").expect("frac"),
            1_700_000_000_500
        );
        assert_eq!(
            parse_time("from", "2023-11-14T22:13:20Z").expect("rfc3339"),
            1_700_000_000_000
        );
        for bad in ["yesterday", "", "NaN", "-5", "1e300"] {
            let e = format!("{:?}", parse_time("from", bad).expect_err(bad));
            assert!(e.contains("from: expected RFC 3339"), "{e}");
        }
        assert_eq!(parse_duration_ms("step", "60s").expect("60s"), 60_000);
        assert_eq!(
            parse_duration_ms("step", "1h30m").expect("1h30m"),
            5_400_000
        );
        assert_eq!(parse_duration_ms("step", "0.5").expect("0.5"), 500);
        for bad in ["0", "-1s", "fast", "0s", "inf"] {
            assert!(parse_duration_ms("step", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_are_ordered_and_bounded() {
        assert!(time_range(Some("200"), Some("100"), 1, i64::MAX).is_err());
        assert!(time_range(Some("100"), Some("100"), 1, i64::MAX).is_err());
        assert!(time_range(Some("0"), Some("100000"), 1, 1000).is_err());
        assert_eq!(
            time_range(None, Some("100"), 30_000, i64::MAX).expect("default from"),
            (70_000, 100_000)
        );
    }
}
