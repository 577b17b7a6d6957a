//! The demo's metrics, kept with the official Prometheus client library and
//! rendered as OpenMetrics text, as a real Rust service would.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Knobs;
use super::model::{self, MODEL, Prediction, VERSIONS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    handler: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelVersion {
    model: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeriesLabels {
    series: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauges<L> = Family<L, Gauge<f64, std::sync::atomic::AtomicU64>>;

/// Latency buckets in seconds, like a typical web service's.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn confidence_histogram() -> Histogram {
    Histogram::new([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
}

pub struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<HandlerLabels>,
    predictions: Family<ModelVersion, Counter>,
    inference_duration: Histograms<ModelVersion>,
    accuracy: FloatGauges<ModelVersion>,
    drift: FloatGauges<ModelVersion>,
    confidence: Histograms<ModelLabels>,
}

fn mv(version: &str) -> ModelVersion {
    ModelVersion {
        model: MODEL.to_string(),
        version: version.to_string(),
    }
}

impl Telemetry {
    pub fn new(synthetic_series: usize) -> Telemetry {
        let mut registry = Registry::default();
        let t = Telemetry {
            registry: Registry::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            predictions: Family::default(),
            inference_duration: Family::new_with_constructor(latency_histogram),
            accuracy: Family::default(),
            drift: Family::default(),
            confidence: Family::new_with_constructor(confidence_histogram),
        };
        registry.register("http_requests", "HTTP requests served", t.requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            t.request_duration.clone(),
        );
        registry.register(
            "model_predictions",
            "Predictions made, by model version",
            t.predictions.clone(),
        );
        registry.register(
            "model_inference_duration_seconds",
            "Time spent in the model per prediction",
            t.inference_duration.clone(),
        );
        registry.register(
            "model_accuracy_ratio",
            "Accuracy against delayed ground truth (0..1)",
            t.accuracy.clone(),
        );
        registry.register(
            "model_drift_score",
            "Input drift score (0 none .. 1 severe)",
            t.drift.clone(),
        );
        registry.register(
            "model_prediction_confidence",
            "Confidence of each prediction",
            t.confidence.clone(),
        );
        if synthetic_series > 0 {
            let padding: FloatGauges<SeriesLabels> = Family::default();
            for i in 0..synthetic_series {
                padding
                    .get_or_create(&SeriesLabels {
                        series: i.to_string(),
                    })
                    .set(i as f64);
            }
            registry.register(
                "demo_synthetic_value",
                "Padding series for footprint benchmarks",
                padding,
            );
        }
        // Every version's series exist from the start, at zero.
        for (version, _) in VERSIONS {
            let _ = t.predictions.get_or_create(&mv(version));
            let _ = t.inference_duration.get_or_create(&mv(version));
        }
        Telemetry { registry, ..t }
    }

    pub fn record_request(&self, handler: &str, method: &str, status: &str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                handler: handler.to_string(),
                method: method.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.request_duration
            .get_or_create(&HandlerLabels {
                handler: handler.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn record_prediction(&self, p: &Prediction, inference: Duration) {
        self.predictions.get_or_create(&mv(p.version)).inc();
        self.inference_duration
            .get_or_create(&mv(p.version))
            .observe(inference.as_secs_f64());
        self.confidence
            .get_or_create(&ModelLabels {
                model: MODEL.to_string(),
            })
            .observe(p.confidence);
    }

    pub fn refresh_quality(&self, knobs: &Knobs) {
        for (version, _) in VERSIONS {
            self.accuracy
                .get_or_create(&mv(version))
                .set(model::accuracy(version, knobs.drift));
            self.drift
                .get_or_create(&mv(version))
                .set(model::drift_score(knobs.drift));
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
