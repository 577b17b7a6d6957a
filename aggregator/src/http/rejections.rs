//! Axum's own rejections, as the API's JSON errors.
//!
//! Before a handler runs, axum may refuse a request itself: a body over
//! [`DefaultBodyLimit`](axum::extract::DefaultBodyLimit), JSON that does not
//! parse, a missing `Content-Type: application/json`, a query string that
//! does not deserialize, a method the route lacks. Those answers are plain
//! text (or empty); an API caller gets every error in the same envelope as
//! [`ApiError`](super::error::ApiError): `{"status": "error", "errorType",
//! "error"}`. The dashboard's pages (outside `/api/` and `/prometheus/`) are
//! left as they are.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Longest rejection text kept (axum's are one line).
const MAX_MESSAGE_BYTES: usize = 4096;

/// The middleware: rewrites a non-JSON 4xx answer to an API path.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let api = path.starts_with("/api/") || path.starts_with("/prometheus/");
    let response = next.run(req).await;
    let status = response.status();
    let is_json = (response.headers().get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !api || !status.is_client_error() || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_string()
    } else {
        text
    };
    let mut rewritten = (
        status,
        Json(json!({"status": "error", "errorType": kind(status), "error": message})),
    )
        .into_response();
    // Keep what else the answer said (`Allow` on a 405, ...).
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    std::mem::swap(rewritten.headers_mut(), &mut parts.headers);
    rewritten
}

/// The `errorType` for a status, in the words [`ApiError`](super::error::ApiError) uses.
fn kind(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "execution",
        _ => "bad_request",
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        let echo = |Json(v): Json<Value>| async move { Json(v) };
        Router::new()
            .route("/api/v1/echo", post(echo))
            .route("/page", post(echo))
            .layer(DefaultBodyLimit::max(16))
            .layer(axum::middleware::from_fn(json_errors))
    }

    async fn send(
        uri: &str,
        method: &str,
        ct: &str,
        body: &'static str,
    ) -> (StatusCode, String, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .expect("request");
        let resp = app().oneshot(req).await.expect("response");
        let status = resp.status();
        let ct = (resp.headers().get(header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let allow = (resp.headers().get(header::ALLOW))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(
            ct,
            "application/json",
            "{uri}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(json["status"], "error");
        (
            status,
            json["errorType"].as_str().unwrap_or_default().to_string(),
            format!("{} | {allow}", json["error"]),
        )
    }

    #[tokio::test]
    async fn axum_rejections_become_json_errors_on_the_api() {
        let (s, kind, msg) = send(
            "/api/v1/echo",
            "POST",
            "application/json",
            "{\"unterminated",
        )
        .await;
        assert_eq!((s, kind.as_str()), (StatusCode::BAD_REQUEST, "bad_request"));
        assert!(msg.contains("JSON"), "{msg}");
        let (s, kind, _) = send("/api/v1/echo", "POST", "text/plain", "{}").await;
        assert_eq!(
            (s, kind.as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        let (s, kind, msg) = send(
            "/api/v1/echo",
            "POST",
            "application/json",
            "[1,2,3,4,5,6,7,8,9,10]",
        )
        .await;
        assert_eq!(
            (s, kind.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        );
        assert!(msg.contains("length limit"), "{msg}");
        let (s, kind, msg) = send("/api/v1/echo", "GET", "application/json", "").await;
        assert_eq!(
            (s, kind.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
        assert!(
            msg.contains("Method Not Allowed") && msg.contains("POST"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn pages_and_successes_are_left_alone() {
        let req = |uri: &str, body: &'static str| {
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .expect("request")
        };
        let resp = app().oneshot(req("/page", "{")).await.expect("response");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .expect("ct")
                .starts_with("text/plain")
        );
        let resp = app()
            .oneshot(req("/api/v1/echo", "[1]"))
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(resp.into_body(), 64)
            .await
            .expect("body");
        assert_eq!(&bytes[..], b"[1]");
    }
}
