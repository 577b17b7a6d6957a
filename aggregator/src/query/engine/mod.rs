//! The PromQL engine's public face: [`Engine::instant`] and [`Engine::range`].
//!
//! Parsing is `promql-parser`'s; evaluation is ours. The engine first walks
//! the expression to find every selector and the time range it needs
//! (taking `offset`, `@`, ranges and the lookback delta into account), fetches
//! those from the [`Source`] once each, then evaluates in memory.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod mathfn;
mod plan;
mod range_fns;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use thiserror::Error;

use self::eval::{Evaluator, Grid, Series, Val, merge_same_labels};
use super::source::{Labels, RawSeries, Source, SourceError};

/// Longest query text accepted (64 KiB). Parsing compiles every regex
/// matcher, so this bounds the parse time of one query as well as its size
/// (the `regex` crate's own compiled-size limit bounds each regex's memory).
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Parses `query` if it is at most [`MAX_QUERY_BYTES`] long.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(QueryError::BadData(format!(
            "query of {} bytes is longer than {MAX_QUERY_BYTES} bytes",
            query.len()
        )));
    }
    // promql-parser panics on some inputs (a subquery step too large for a
    // Duration: `vector(1)[29:1111111111111111111111]`, found by the
    // `promql` fuzz target); a query is the caller's input, so that is a
    // 400, not a dropped connection.
    std::panic::catch_unwind(|| promql_parser::parser::parse(query))
        .map_err(|_| QueryError::BadData("invalid query: the parser failed on it".into()))?
        .map_err(QueryError::BadData)
}

/// Bounds that keep one query from hurting the aggregator.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Points per series of a range query (Prometheus: 11,000).
    pub max_points_per_series: usize,
    /// Series one selector may load.
    pub max_series: usize,
    /// Samples one query may load in total.
    pub max_samples: usize,
    /// Wall-clock budget of one query.
    pub timeout: Duration,
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_points_per_series: 11_000,
            max_series: 100_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            lookback_ms: 5 * 60 * 1000,
        }
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Labels of the result (no `__name__` once a function or operator
    /// dropped it, as in Prometheus).
    pub labels: Labels,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A query result, in Prometheus' four types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        timestamp_ms: i64,
        value: f64,
    },
    String {
        timestamp_ms: i64,
        value: String,
    },
    Vector(Vec<Sample>),
    /// Series sorted by labels; each series' samples sorted by time.
    Matrix(Vec<RawSeries>),
}

impl Value {
    /// Prometheus' name of the type (`resultType` in the HTTP API).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Why a query failed; the HTTP layer maps each to Prometheus' error types.
#[derive(Debug, Error)]
pub enum QueryError {
    /// The query text or a parameter is invalid (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// A limit was hit (`execution`, 422 in Prometheus' API).
    #[error("{0}")]
    Limit(String),
    /// Evaluation failed for a reason in the query (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its budget (`timeout`, 503).
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    /// The storage failed (`unavailable`, 503); not the caller's fault.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<SourceError> for QueryError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::TooManySeries { .. } | SourceError::TooManySamples { .. } => {
                QueryError::Limit(e.to_string())
            }
            SourceError::Storage(s) => QueryError::Storage(s),
        }
    }
}

/// Evaluates PromQL against a [`Source`].
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub limits: Limits,
}

impl Engine {
    pub fn new(limits: Limits) -> Self {
        Engine { limits }
    }

    /// Evaluates `query` at `time_ms` (Prometheus' `/query`).
    pub async fn instant(
        &self,
        source: &dyn Source,
        query: &str,
        time_ms: i64,
    ) -> Result<Value, QueryError> {
        let grid = Grid {
            start: time_ms,
            step: 1,
            n: 1,
        };
        let (val, grid) = self.run(source, query, grid, None).await?;
        Ok(match val {
            Val::Scalar(v) => Value::Scalar {
                timestamp_ms: time_ms,
                value: v.first().copied().unwrap_or(f64::NAN),
            },
            Val::String(s) => Value::String {
                timestamp_ms: time_ms,
                value: s,
            },
            Val::Vector(series) => Value::Vector(
                series
                    .into_iter()
                    .filter_map(|s| {
                        s.values.first().copied().flatten().map(|v| Sample {
                            labels: s.labels,
                            timestamp_ms: grid.ts(0),
                            value: v,
                        })
                    })
                    .collect(),
            ),
            Val::Matrix(mut m) => {
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(m)
            }
        })
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`
    /// (Prometheus' `/query_range`); the result is always a matrix.
    pub async fn range(
        &self,
        source: &dyn Source,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        let points = (i128::from(end_ms) - i128::from(start_ms)) / i128::from(step_ms) + 1;
        if points > self.limits.max_points_per_series as i128 {
            return Err(QueryError::BadData(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                thousands(self.limits.max_points_per_series)
            )));
        }
        let grid = Grid {
            start: start_ms,
            step: step_ms,
            n: points as usize,
        };
        let (val, grid) = self.run(source, query, grid, Some(end_ms)).await?;
        let series = match val {
            Val::Scalar(v) => vec![Series {
                labels: Vec::new(),
                values: v.into_iter().map(Some).collect(),
            }],
            Val::Vector(series) => series,
            Val::String(_) | Val::Matrix(_) => {
                return Err(QueryError::Execution(
                    "range query result must be a scalar or an instant vector".into(),
                ));
            }
        };
        let mut out: Vec<RawSeries> = merge_same_labels(series)?
            .into_iter()
            .map(|s| RawSeries {
                samples: s
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (grid.ts(i), v)))
                    .collect(),
                labels: s.labels.into(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(out))
    }

    /// Parses, plans, fetches (within the timeout) and evaluates (on a
    /// blocking thread, checking the deadline as it goes). `range_end` is
    /// the end of a range query (`None` for an instant query).
    async fn run(
        &self,
        source: &dyn Source,
        query: &str,
        grid: Grid,
        range_end: Option<i64>,
    ) -> Result<(Val, Grid), QueryError> {
        let started = Instant::now();
        let deadline = started + self.limits.timeout;
        // The expression is pinned behind an Arc: fetched data is keyed by
        // the addresses of its selector nodes.
        let expr = Arc::new(parse(query)?);
        let is_range = range_end.is_some();
        let end_ms = range_end.unwrap_or(grid.start);
        if plan::depth(&expr) > plan::MAX_DEPTH {
            return Err(QueryError::BadData(format!(
                "query is nested more than {} levels deep",
                plan::MAX_DEPTH
            )));
        }
        if is_range {
            match expr.value_type() {
                ValueType::Scalar | ValueType::Vector => {}
                t => {
                    return Err(QueryError::BadData(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        match t {
                            ValueType::Matrix => "range vector",
                            _ => "string",
                        }
                    )));
                }
            }
        }
        let ctx = plan::PlanCtx {
            query_start: grid.start,
            query_end: end_ms,
            step_ms: if is_range { grid.step } else { 0 },
            lookback_ms: self.limits.lookback_ms,
        };
        let mut fetches = HashMap::new();
        plan::plan(&expr, grid.start, end_ms, None, &ctx, &mut fetches);
        let data = tokio::time::timeout(
            self.limits.timeout,
            plan::fetch(
                source,
                fetches,
                self.limits.max_series,
                self.limits.max_samples,
            ),
        )
        .await
        .map_err(|_| QueryError::Timeout(self.limits.timeout))??;
        let limits = self.limits.clone();
        let query_start = grid.start;
        let small = grid.n == 1 && data.samples() <= INLINE_EVAL_MAX_SAMPLES;
        let evaluate = move || {
            let ev = Evaluator {
                data: &data,
                query_start,
                query_end: end_ms,
                lookback_ms: limits.lookback_ms,
                deadline,
                timeout: limits.timeout,
                max_samples: limits.max_samples,
                samples: Cell::new(0),
                deadline_checks: Cell::new(0),
            };
            ev.eval(&expr, &grid)
        };
        // A small evaluation (an instant query over a few thousand samples,
        // what alerting rules mostly are) costs less than the two thread
        // hand-offs of a blocking task: run it here.
        let val = if small {
            evaluate()?
        } else {
            tokio::task::spawn_blocking(evaluate)
                .await
                .map_err(|e| QueryError::Execution(format!("query evaluation failed: {e}")))??
        };
        Ok((val, grid))
    }
}

/// Instant queries over at most this many fetched samples are evaluated on
/// the calling task instead of a blocking thread (well under a millisecond).
const INLINE_EVAL_MAX_SAMPLES: usize = 20_000;

/// `11000` -> `11,000`, as Prometheus prints the resolution limit.
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
