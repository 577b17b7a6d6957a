//! Prometheus' error envelope: `{"status":"error","errorType":..,"error":..}`
//! with the status codes Prometheus' own API uses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

use crate::query::QueryError;

/// An error of the Prometheus-compatible API.
#[derive(Debug)]
pub enum PromError {
    /// 400 `bad_data`: a malformed parameter or query.
    BadData(String),
    /// 413 `bad_data`: the form body is larger than accepted.
    TooLarge(String),
    /// 415 `bad_data`: a body that is not a form.
    UnsupportedMediaType(String),
    /// 422 `execution`: the query failed or hit a limit.
    Execution(String),
    /// 503 `timeout`.
    Timeout(String),
    /// 503 `unavailable`: storage is down; the detail is logged, not shown.
    Unavailable(String),
}

impl PromError {
    /// `invalid parameter "name": why`, Prometheus' wording.
    pub fn param(name: &str, why: impl std::fmt::Display) -> Self {
        PromError::BadData(format!("invalid parameter {name:?}: {why}"))
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            PromError::BadData(m) => (StatusCode::BAD_REQUEST, "bad_data", m),
            PromError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "bad_data", m),
            PromError::UnsupportedMediaType(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_data", m)
            }
            PromError::Execution(m) => (StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
            PromError::Timeout(m) => (StatusCode::SERVICE_UNAVAILABLE, "timeout", m),
            PromError::Unavailable(detail) => {
                warn!(%detail, "query failed: storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable, try again shortly".to_string(),
                )
            }
        };
        (
            status,
            Json(json!({"status": "error", "errorType": kind, "error": message})),
        )
            .into_response()
    }
}

impl From<QueryError> for PromError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadData(m) => PromError::BadData(m),
            QueryError::Limit(m) | QueryError::Execution(m) => PromError::Execution(m),
            QueryError::Timeout(_) => PromError::Timeout(e.to_string()),
            QueryError::Storage(m) => PromError::Unavailable(m),
        }
    }
}

impl From<crate::query::SourceError> for PromError {
    fn from(e: crate::query::SourceError) -> Self {
        QueryError::from(e).into()
    }
}
