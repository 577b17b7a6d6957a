//! Ingest from the Prometheus ecosystem over HTTP, next to the agents' QUIC:
//!
//! - `POST /api/v1/write` ([`remote_write`]): Prometheus remote_write 1.0
//!   (snappy block format + protobuf `WriteRequest`), so Prometheus, Grafana
//!   Alloy or vmagent can push into Vigil;
//! - `POST /api/v1/import` ([`import`]): Prometheus text exposition (or
//!   OpenMetrics) with timestamps, for backfill.
//!
//! Both need a `write` token, cap the body ([`config::HttpIngestConfig`]),
//! validate every series as agents' are (names, labels, the
//! `ingest.max_sample_age` / `ingest.max_future_skew` window), write the
//! valid ones with [`crate::store::Store::write_series`] and report what was
//! accepted and rejected ([`tally`]).
//!
//! The caps reach the handlers as an [`IngestLimits`] request extension
//! (`server.rs` adds it from the config); without one the defaults apply.

pub mod config;
pub mod import;
pub mod remote_write;
pub mod tally;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;
use vigil_common::Series;

use crate::http::AppState;
use config::HttpIngestConfig;
use tally::{Endpoint, IngestMetrics};

/// What the ingest endpoints accept, and the turns they share.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// `[http_ingest]` size caps.
    pub http: HttpIngestConfig,
    /// `ingest.max_sample_age`: older samples are rejected.
    pub max_sample_age: Duration,
    /// `ingest.max_future_skew`: samples further ahead are rejected.
    pub max_future_skew: Duration,
    /// `http.max_concurrent_requests` turns; a request holds one from
    /// before it reads its body until it has replied.
    pub turns: Arc<Semaphore>,
    /// How long a request waits for a turn before a 503.
    pub turn_wait: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        let ingest = crate::config::IngestConfig::default();
        IngestLimits::new(
            HttpIngestConfig::default(),
            ingest.max_sample_age,
            ingest.max_future_skew,
        )
    }
}

impl IngestLimits {
    pub fn new(
        http: HttpIngestConfig,
        max_sample_age: Duration,
        max_future_skew: Duration,
    ) -> Self {
        IngestLimits {
            turns: Arc::new(Semaphore::new(http.max_concurrent_requests)),
            http,
            max_sample_age,
            max_future_skew,
            turn_wait: Duration::from_secs(10),
        }
    }

    /// The limits a configuration sets.
    pub fn from_config(config: &crate::Config) -> Self {
        IngestLimits::new(
            config.http_ingest.clone(),
            config.ingest.max_sample_age,
            config.ingest.max_future_skew,
        )
    }

    /// Waits for a turn; `Busy` after `turn_wait`.
    pub(crate) async fn turn(&self) -> Result<OwnedSemaphorePermit, IngestError> {
        match tokio::time::timeout(self.turn_wait, self.turns.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(IngestError::Busy),
        }
    }
}

/// The limits in force for a request: the extension, or the defaults
/// (one shared set, so their turns are shared too).
pub(crate) type Limits = Option<axum::Extension<Arc<IngestLimits>>>;

pub(crate) fn limits(ext: Limits) -> Arc<IngestLimits> {
    static DEFAULT: OnceLock<Arc<IngestLimits>> = OnceLock::new();
    ext.map(|axum::Extension(l)| l)
        .unwrap_or_else(|| DEFAULT.get_or_init(Default::default).clone())
}

/// The routes (full paths: they sit beside the REST API under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(remote_write::write))
        .route("/api/v1/import", post(import::import))
}

/// Why a request was refused as a whole.
#[derive(Debug)]
pub enum IngestError {
    /// 400: the body cannot be decoded.
    Malformed(String),
    /// 413: the body (or its decompressed form) is over a cap.
    TooLarge(String),
    /// 415: a content type or encoding this endpoint does not speak.
    UnsupportedMediaType(String),
    /// 503: the store failed; the sender should retry.
    Unavailable(String),
    /// 503: too many requests in progress; the sender should retry.
    Busy,
}

impl IngestError {
    /// Counts the request, then replies.
    pub fn respond(self, metrics: &IngestMetrics, endpoint: Endpoint) -> Response {
        let (status, result, kind, message) = match self {
            IngestError::Malformed(m) => (StatusCode::BAD_REQUEST, "malformed", "bad_data", m),
            IngestError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", "bad_data", m),
            IngestError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "bad_data",
                m,
            ),
            IngestError::Unavailable(detail) => {
                warn!(%detail, ?endpoint, "write failed: storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "unavailable",
                    "storage is unavailable, retry shortly".to_string(),
                )
            }
            IngestError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "unavailable",
                "too many write requests in progress (http_ingest.max_concurrent_requests), retry shortly"
                    .to_string(),
            ),
        };
        metrics.request(endpoint, result);
        (
            status,
            Json(json!({"status": "error", "errorType": kind, "error": message})),
        )
            .into_response()
    }
}

/// Reads a body of at most `cap` bytes; `what` names the cap in the error.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    cap: usize,
    what: &str,
) -> Result<Bytes, IngestError> {
    let too_large = || IngestError::TooLarge(format!("body larger than {cap} bytes ({what})"));
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    // Past the announced length, the limit is enforced while reading; any
    // other read error is a client that went away, whom no reply reaches.
    axum::body::to_bytes(body, cap)
        .await
        .map_err(|_| too_large())
}

/// Samples per store call: bounds one transaction's size on big imports.
const WRITE_CHUNK_SAMPLES: usize = 20_000;

/// Writes `series` in chunks; returns how many samples the store added.
pub(crate) async fn write(state: &AppState, series: &[Series]) -> Result<u64, IngestError> {
    let mut stored = 0;
    let mut start = 0;
    while start < series.len() {
        let mut end = start;
        let mut samples = 0;
        while end < series.len() && (end == start || samples < WRITE_CHUNK_SAMPLES) {
            samples += series[end].points.len();
            end += 1;
        }
        stored += state
            .store
            .write_series(&series[start..end])
            .await
            .map_err(|e| IngestError::Unavailable(e.to_string()))?;
        start = end;
    }
    Ok(stored)
}

/// Stores metric metadata that came with written samples; a failure is a
/// 503 so the sender retries (rewriting the samples is idempotent).
pub(crate) async fn write_metadata(
    state: &AppState,
    metadata: &[vigil_common::MetricMetadata],
) -> Result<(), IngestError> {
    if metadata.is_empty() {
        return Ok(());
    }
    (state.store.put_metadata(metadata).await)
        .map(|_| ())
        .map_err(|e| IngestError::Unavailable(e.to_string()))
}

/// The media type of a header value, lower-cased, without parameters.
pub(crate) fn media_type(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}
