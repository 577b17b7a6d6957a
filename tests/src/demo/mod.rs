//! `vigil-demo-api`: a stand-in for the ML prediction service Vigil was built
//! to watch. It serves `POST /predict` with a realistic latency distribution
//! and error rate over two model versions (a stable `v1` and a canary `v2`),
//! `/metrics` in the OpenMetrics text format, and `/health`. Knobs (flags, or
//! `POST /admin/knobs` with a JSON object of the fields to change) raise the
//! error rate, latency or drift so alerts and dashboards can be exercised.
//!
//! Exposed families (what Vigil's default rules and dashboards expect):
//! `http_requests_total{handler,method,status}`,
//! `http_request_duration_seconds{handler}` (histogram),
//! `model_predictions_total{model,version}`,
//! `model_inference_duration_seconds{model,version}` (histogram),
//! `model_accuracy_ratio{model,version}`, `model_drift_score{model,version}`,
//! `model_prediction_confidence{model}` (histogram), and optionally
//! `demo_synthetic_value{series}` padding to reach a target series count.

mod model;
mod telemetry;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use model::{MODEL, VERSIONS};
use telemetry::Telemetry;

/// What an operator can turn up to make the service misbehave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Probability (0..1) that a prediction fails with HTTP 500.
    pub error_rate: f64,
    /// Added to every inference, in milliseconds.
    pub extra_latency_ms: f64,
    /// Input drift, 0 (none) .. 1 (severe): raises the drift score, lowers
    /// accuracy and confidence.
    pub drift: f64,
    /// When false, `/health` answers 503.
    pub healthy: bool,
    /// Predictions per second the service makes against itself, so the
    /// metrics move without outside traffic.
    pub self_traffic_rps: f64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            error_rate: 0.01,
            extra_latency_ms: 0.0,
            drift: 0.0,
            healthy: true,
            self_traffic_rps: 5.0,
        }
    }
}

impl Knobs {
    /// Every problem with the values, for a 400 or a start-up error.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(0.0..=1.0).contains(&self.error_rate) {
            p.push("error_rate must be between 0 and 1".into());
        }
        if !(0.0..=60_000.0).contains(&self.extra_latency_ms) {
            p.push("extra_latency_ms must be between 0 and 60000".into());
        }
        if !(0.0..=1.0).contains(&self.drift) {
            p.push("drift must be between 0 and 1".into());
        }
        if !(0.0..=1000.0).contains(&self.self_traffic_rps) {
            p.push("self_traffic_rps must be between 0 and 1000".into());
        }
        p
    }
}

/// Shared by the handlers and the self-traffic task.
#[derive(Clone)]
pub struct Demo {
    knobs: Arc<Mutex<Knobs>>,
    telemetry: Arc<Telemetry>,
}

impl Demo {
    /// `synthetic_series` extra gauge series pad `/metrics` (for footprint benchmarks).
    pub fn new(knobs: Knobs, synthetic_series: usize) -> Demo {
        Demo {
            knobs: Arc::new(Mutex::new(knobs)),
            telemetry: Arc::new(Telemetry::new(synthetic_series)),
        }
    }

    pub fn knobs(&self) -> Knobs {
        self.knobs.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// One prediction, with its simulated latency; `Err` is a simulated failure.
    async fn predict(&self, handler: &str, method: &str) -> Result<model::Prediction, ()> {
        let knobs = self.knobs();
        let started = std::time::Instant::now();
        let outcome = model::predict(&knobs);
        tokio::time::sleep(outcome.latency).await;
        let status = if outcome.failed { "500" } else { "200" };
        self.telemetry
            .record_request(handler, method, status, started.elapsed());
        if outcome.failed {
            return Err(());
        }
        self.telemetry
            .record_prediction(&outcome.prediction, outcome.inference);
        Ok(outcome.prediction)
    }

    /// Predictions against itself at `self_traffic_rps`, and the accuracy and
    /// drift gauges refreshed every second, until the process ends.
    pub fn spawn_background(&self) {
        let demo = self.clone();
        tokio::spawn(async move {
            loop {
                let rps = demo.knobs().self_traffic_rps;
                if rps <= 0.0 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                let d = demo.clone();
                tokio::spawn(async move {
                    let _ = d.predict("/predict", "POST").await;
                });
                tokio::time::sleep(Duration::from_secs_f64(1.0 / rps)).await;
            }
        });
        let demo = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                demo.telemetry.refresh_quality(&demo.knobs());
            }
        });
    }
}

/// The HTTP application.
pub fn app(demo: Demo) -> Router {
    // Quality gauges exist from the first scrape.
    demo.telemetry.refresh_quality(&demo.knobs());
    Router::new()
        .route("/predict", post(predict))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/knobs", get(get_knobs).post(set_knobs))
        .with_state(demo)
}

#[derive(Debug, Deserialize)]
struct PredictRequest {
    features: Vec<f64>,
}

async fn predict(State(demo): State<Demo>, body: axum::body::Bytes) -> Response {
    let request: Result<PredictRequest, _> = serde_json::from_slice(&body);
    match request {
        Ok(r) if !r.features.is_empty() && r.features.len() <= 1024 => {}
        _ => {
            demo.telemetry
                .record_request("/predict", "POST", "400", Duration::ZERO);
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "expected {\"features\": [1-1024 numbers]}"})),
            )
                .into_response();
        }
    }
    match demo.predict("/predict", "POST").await {
        Ok(p) => Json(p).into_response(),
        Err(()) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "inference failed"})),
        )
            .into_response(),
    }
}

async fn health(State(demo): State<Demo>) -> Response {
    if demo.knobs().healthy {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy"})),
        )
            .into_response()
    }
}

async fn metrics(State(demo): State<Demo>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        demo.telemetry.render(),
    )
        .into_response()
}

async fn get_knobs(State(demo): State<Demo>) -> Json<Knobs> {
    Json(demo.knobs())
}

/// Merges the given fields into the knobs; unknown fields or bad values are a 400.
async fn set_knobs(State(demo): State<Demo>, body: axum::body::Bytes) -> Response {
    let current = serde_json::to_value(demo.knobs()).unwrap_or_default();
    let patch: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return bad_knobs(vec!["expected a JSON object".into()]),
    };
    let mut merged = current;
    if let (Some(m), Some(p)) = (merged.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            m.insert(k.clone(), v.clone());
        }
    }
    let knobs: Knobs = match serde_json::from_value(merged) {
        Ok(k) => k,
        Err(e) => return bad_knobs(vec![e.to_string()]),
    };
    let problems = knobs.problems();
    if !problems.is_empty() {
        return bad_knobs(problems);
    }
    if let Ok(mut k) = demo.knobs.lock() {
        *k = knobs.clone();
    }
    Json(knobs).into_response()
}

fn bad_knobs(problems: Vec<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"errors": problems}))).into_response()
}
