//! The PromQL engine's public face: [`Engine::instant`] and [`Engine::range`].
//!
//! Parsing is `promql-parser`'s; evaluation is ours. The engine first walks
//! the expression to find every selector and the time range it needs
//! (taking `offset`, `@`, ranges and the lookback delta into account), fetches
//! those from the [`Source`] once each, then evaluates in memory.

use std::time::Duration;

use thiserror::Error;

use super::source::{Labels, RawSeries, Source, SourceError};

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
        let _ = (source, time_ms);
        let _expr = promql_parser::parser::parse(query).map_err(QueryError::BadData)?;
        Err(QueryError::Execution("evaluation is not built yet".into()))
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
        let _ = (source, start_ms, end_ms, step_ms);
        let _expr = promql_parser::parser::parse(query).map_err(QueryError::BadData)?;
        Err(QueryError::Execution("evaluation is not built yet".into()))
    }
}
