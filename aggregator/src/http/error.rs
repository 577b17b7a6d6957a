//! The HTTP error type: a clear message for the caller, details in the log,
//! never a 500 for something the caller sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest(String),
    /// 401: no or wrong credentials.
    Unauthorized(&'static str),
    /// 403: valid credentials without the needed scope.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 413: the body is over the size limit.
    TooLarge(String),
    /// 415: the body is not of the media type the route takes.
    UnsupportedMediaType(String),
    /// 409: the request conflicts with the resource's state (an alert
    /// already acknowledged).
    Conflict(String),
    /// 422: a well-formed query that cannot be executed (a limit, an
    /// evaluation error), as Prometheus' `execution` error.
    Unprocessable(String),
    /// 429: over a rate limit; retry after this many seconds.
    RateLimited { retry_after_secs: u64 },
    /// 503: a dependency (the database) is down; the detail is logged, not shown.
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m.to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m,
            ),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
            ApiError::RateLimited { retry_after_secs } => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({
                        "status": "error",
                        "errorType": "rate_limited",
                        "error": format!("too many requests: retry after {retry_after_secs} s"),
                    })),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return response;
            }
            ApiError::Unavailable(detail) => {
                warn!(%detail, "request failed: storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable, try again shortly".to_string(),
                )
            }
        };
        let mut response = (
            status,
            Json(json!({"status": "error", "errorType": kind, "error": message})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A body axum could not take as JSON: its status (413 over the size
/// limit, 415 without `Content-Type: application/json`, 400 or 422 for
/// content that does not parse or fit) with axum's message.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(e.body_text()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(e.body_text()),
            _ => ApiError::BadRequest(e.body_text()),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}
