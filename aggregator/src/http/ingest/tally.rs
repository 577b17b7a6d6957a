//! What one write or import request did with its samples: which were
//! accepted, which rejected and why; the counters that add it up; and the
//! JSON reply that reports it.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;
use vigil_common::{Label, Point, Series};

use super::IngestLimits;

/// Why a sample was not accepted (the `result` label of the counters).
pub const INVALID_SERIES: &str = "invalid_series";
pub const TOO_OLD: &str = "too_old";
pub const TOO_NEW: &str = "too_new";
pub const MISSING_TIMESTAMP: &str = "missing_timestamp";
pub const MALFORMED_LINE: &str = "malformed_line";
pub const NATIVE_HISTOGRAM: &str = "native_histogram";
/// Samples handed to the store (including ones it already held).
pub const ACCEPTED: &str = "accepted";

const SAMPLE_RESULTS: [&str; 7] = [
    ACCEPTED,
    INVALID_SERIES,
    TOO_OLD,
    TOO_NEW,
    MISSING_TIMESTAMP,
    MALFORMED_LINE,
    NATIVE_HISTOGRAM,
];

/// Request outcomes (the `result` label of the request counters).
pub const REQUEST_RESULTS: [&str; 7] = [
    "success",
    "all_rejected",
    "malformed",
    "too_large",
    "unsupported_media_type",
    "unavailable",
    "busy",
];

/// A `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Counters of `/api/v1/write` and `/api/v1/import`.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub remote_write_samples: Family<ResultLabel, Counter>,
    pub remote_write_requests: Family<ResultLabel, Counter>,
    pub import_samples: Family<ResultLabel, Counter>,
    pub import_requests: Family<ResultLabel, Counter>,
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    RemoteWrite,
    Import,
}

impl IngestMetrics {
    /// Registers the counters (every label value at zero, so dashboards
    /// see zeros rather than gaps).
    pub fn register(&self, registry: &mut Registry) {
        for (family, values) in [
            (&self.remote_write_samples, &SAMPLE_RESULTS[..]),
            (&self.import_samples, &SAMPLE_RESULTS[..]),
            (&self.remote_write_requests, &REQUEST_RESULTS[..]),
            (&self.import_requests, &REQUEST_RESULTS[..]),
        ] {
            for v in values {
                let _ = family.get_or_create(&label(v));
            }
        }
        registry.register(
            "remote_write_samples",
            "Samples received on /api/v1/write, by result (accepted or why rejected)",
            self.remote_write_samples.clone(),
        );
        registry.register(
            "remote_write_requests",
            "Requests to /api/v1/write, by result",
            self.remote_write_requests.clone(),
        );
        registry.register(
            "import_samples",
            "Samples received on /api/v1/import, by result (accepted or why rejected)",
            self.import_samples.clone(),
        );
        registry.register(
            "import_requests",
            "Requests to /api/v1/import, by result",
            self.import_requests.clone(),
        );
    }

    fn families(
        &self,
        endpoint: Endpoint,
    ) -> (&Family<ResultLabel, Counter>, &Family<ResultLabel, Counter>) {
        match endpoint {
            Endpoint::RemoteWrite => (&self.remote_write_samples, &self.remote_write_requests),
            Endpoint::Import => (&self.import_samples, &self.import_requests),
        }
    }

    /// Counts one request ending with `result`.
    pub fn request(&self, endpoint: Endpoint, result: &str) {
        self.families(endpoint)
            .1
            .get_or_create(&label(result))
            .inc();
    }

    /// Samples counted so far on `endpoint` with `result`.
    pub fn samples(&self, endpoint: Endpoint, result: &str) -> u64 {
        self.families(endpoint)
            .0
            .get_or_create(&label(result))
            .get()
    }

    /// Requests counted so far on `endpoint` with `result`.
    pub fn requests(&self, endpoint: Endpoint, result: &str) -> u64 {
        self.families(endpoint)
            .1
            .get_or_create(&label(result))
            .get()
    }

    fn add_samples(&self, endpoint: Endpoint, result: &str, n: u64) {
        self.families(endpoint)
            .0
            .get_or_create(&label(result))
            .inc_by(n);
    }
}

fn label(result: &str) -> ResultLabel {
    ResultLabel {
        result: result.to_string(),
    }
}

/// The samples of one request, sorted into accepted series and rejections.
pub struct Tally {
    /// Valid series with the points that passed the time window.
    pub series: Vec<Series>,
    accepted: u64,
    rejected: BTreeMap<&'static str, u64>,
    first_error: Option<String>,
    now_ms: i64,
    oldest_ms: i64,
    newest_ms: i64,
}

impl Tally {
    pub fn new(limits: &IngestLimits, now_ms: i64) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Tally {
            series: Vec::new(),
            accepted: 0,
            rejected: BTreeMap::new(),
            first_error: None,
            now_ms,
            oldest_ms: now_ms.saturating_sub(ms(limits.max_sample_age)),
            newest_ms: now_ms.saturating_add(ms(limits.max_future_skew)),
        }
    }

    /// When this request is taken to happen, in ms.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Records `n` samples rejected for `reason`; `why` explains the first.
    pub fn reject(&mut self, reason: &'static str, n: u64, why: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        *self.rejected.entry(reason).or_default() += n;
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }

    /// Adds a series: labels with empty values dropped (Prometheus treats
    /// them as absent), the rest sorted and validated; points outside the
    /// accepted time window rejected.
    pub fn add(&mut self, name: String, mut labels: Vec<Label>, points: Vec<Point>) {
        labels.retain(|l| !l.value.is_empty());
        let series = Series::new(name, labels, points);
        if let Err(e) = series.validate() {
            self.reject(INVALID_SERIES, series.points.len() as u64, || e);
            return;
        }
        let Series {
            name,
            labels,
            points,
        } = series;
        let (mut old, mut new) = (0u64, 0u64);
        let points: Vec<Point> = points
            .into_iter()
            .filter(|p| {
                old += u64::from(p.timestamp_ms < self.oldest_ms);
                new += u64::from(p.timestamp_ms > self.newest_ms);
                (self.oldest_ms..=self.newest_ms).contains(&p.timestamp_ms)
            })
            .collect();
        self.reject(TOO_OLD, old, || {
            format!("{name}: samples older than ingest.max_sample_age")
        });
        self.reject(TOO_NEW, new, || {
            format!("{name}: samples further ahead than ingest.max_future_skew")
        });
        if !points.is_empty() {
            self.accepted += points.len() as u64;
            self.series.push(Series {
                name,
                labels,
                points,
            });
        }
    }

    /// Samples accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Samples rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Counts the request's samples and builds the reply: 200 with the
    /// counts, or 400 with them when samples came and none was accepted
    /// (a Prometheus sender drops a 4xx batch rather than retry it forever).
    pub fn finish(self, metrics: &IngestMetrics, endpoint: Endpoint, stored: u64) -> Response {
        metrics.add_samples(endpoint, ACCEPTED, self.accepted);
        for (reason, n) in &self.rejected {
            metrics.add_samples(endpoint, reason, *n);
        }
        let rejected = self.rejected();
        let mut body = json!({
            "status": "success",
            "samples_accepted": self.accepted,
            "samples_stored": stored,
            "samples_rejected": rejected,
            "rejected_by_reason": self.rejected,
        });
        if let Some(e) = &self.first_error {
            body["first_error"] = json!(e);
        }
        if self.accepted == 0 && rejected > 0 {
            metrics.request(endpoint, "all_rejected");
            body["status"] = json!("error");
            body["errorType"] = json!("bad_data");
            body["error"] = json!(format!(
                "all {rejected} samples rejected: {}",
                self.first_error.as_deref().unwrap_or("invalid")
            ));
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
        metrics.request(endpoint, "success");
        (StatusCode::OK, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> IngestLimits {
        IngestLimits {
            max_sample_age: Duration::from_secs(100),
            max_future_skew: Duration::from_secs(10),
            ..IngestLimits::default()
        }
    }

    fn p(t: i64) -> Point {
        Point {
            timestamp_ms: t,
            value: 1.0,
        }
    }

    #[test]
    fn series_are_validated_sorted_and_windowed() {
        let mut t = Tally::new(&limits(), 1_000_000);
        t.add(
            "up".into(),
            vec![
                Label::new("z", "1"),
                Label::new("a", "2"),
                Label::new("empty", ""),
            ],
            vec![p(1_000_000), p(899_999), p(900_000), p(1_010_001)],
        );
        t.add("bad-name".into(), vec![], vec![p(1_000_000)]);
        t.add(
            "dup".into(),
            vec![Label::new("a", "1"), Label::new("a", "2")],
            vec![p(1_000_000), p(1_000_001)],
        );
        assert_eq!(t.series.len(), 1);
        let s = &t.series[0];
        assert_eq!(
            s.labels,
            vec![Label::new("a", "2"), Label::new("z", "1")],
            "sorted, empty value dropped"
        );
        assert_eq!(s.points, vec![p(1_000_000), p(900_000)]);
        assert_eq!((t.accepted(), t.rejected()), (2, 5));
        assert_eq!(t.rejected[TOO_OLD], 1);
        assert_eq!(t.rejected[TOO_NEW], 1);
        assert_eq!(t.rejected[INVALID_SERIES], 3);

        let metrics = IngestMetrics::default();
        let response = t.finish(&metrics, Endpoint::Import, 2);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(metrics.samples(Endpoint::Import, ACCEPTED), 2);
        assert_eq!(metrics.samples(Endpoint::Import, INVALID_SERIES), 3);
        assert_eq!(metrics.samples(Endpoint::RemoteWrite, ACCEPTED), 0);
        assert_eq!(metrics.requests(Endpoint::Import, "success"), 1);
    }

    #[test]
    fn nothing_accepted_is_a_400_but_nothing_sent_is_not() {
        let metrics = IngestMetrics::default();
        let mut t = Tally::new(&limits(), 0);
        t.add("9".into(), vec![], vec![p(0)]);
        let r = t.finish(&metrics, Endpoint::RemoteWrite, 0);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(metrics.requests(Endpoint::RemoteWrite, "all_rejected"), 1);
        let r = Tally::new(&limits(), 0).finish(&metrics, Endpoint::RemoteWrite, 0);
        assert_eq!(r.status(), StatusCode::OK);
    }
}
