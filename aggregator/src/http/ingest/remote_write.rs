//! `POST /api/v1/write`: the Prometheus remote_write 1.0 receiver.
//!
//! The body is a protobuf `prometheus.WriteRequest` compressed with snappy's
//! block format (`Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf`). The messages are declared here
//! with `prost`'s derive, field numbers as in Prometheus'
//! `prompb/types.proto` and `remote.proto`, so no `protoc` runs at build
//! time. Metric metadata (`WriteRequest.metadata`) is stored for the
//! Prometheus API's `/metadata`; exemplars are skipped by the decoder; native histograms are counted as rejected samples, since Vigil
//! stores classic `_bucket` series only.
//!
//! Replies: 200 with the counts (some or all samples accepted), 400 when the
//! body cannot be decoded or every sample was rejected (a sender drops the
//! batch instead of retrying it), 413 over a size cap, 415 for another
//! format (remote_write 2.0 included), 503 when the store failed (the
//! sender retries).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use prost::Message;
use vigil_common::{Label, MetricKind, MetricMetadata, Point};

use super::tally::{Endpoint, INVALID_SERIES, NATIVE_HISTOGRAM, Tally};
use super::{
    IngestError, IngestLimits, Limits, limits, media_type, read_body, write as store_write,
    write_metadata,
};
use crate::http::AppState;
use crate::http::access::WriteAccess;
use crate::query::source::METRIC_NAME;

/// `prometheus.WriteRequest`
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<ProtoMetadata>,
}

/// `prometheus.MetricMetadata`
#[derive(Clone, PartialEq, Message)]
pub struct ProtoMetadata {
    /// `MetricType`: 0 unknown, 1 counter, 2 gauge, 3 histogram,
    /// 4 gaugehistogram, 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

impl ProtoMetadata {
    /// As Vigil keeps it: the OpenMetrics-only types become gauges, as the
    /// text import maps them.
    fn into_metadata(self) -> MetricMetadata {
        let kind = match self.kind {
            1 => MetricKind::Counter,
            2 | 4 | 6 | 7 => MetricKind::Gauge,
            3 => MetricKind::Histogram,
            5 => MetricKind::Summary,
            _ => MetricKind::Unknown,
        };
        MetricMetadata {
            name: self.metric_family_name,
            kind,
            help: self.help,
            unit: self.unit,
        }
    }
}

/// `prometheus.TimeSeries`
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<ProtoLabel>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<ProtoSample>,
    /// Native histograms: only counted, their content is skipped.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<NativeHistogram>,
}

/// `prometheus.Label`
#[derive(Clone, PartialEq, Message)]
pub struct ProtoLabel {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: value and timestamp in ms.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Histogram`, with every field skipped.
#[derive(Clone, PartialEq, Message)]
pub struct NativeHistogram {}

/// The handler.
pub async fn write(
    _: WriteAccess,
    State(state): State<AppState>,
    ext: Limits,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = &state.metrics.http_ingest;
    let limits = limits(ext);
    let _turn = match limits.turn().await {
        Ok(t) => t,
        Err(e) => return e.respond(metrics, Endpoint::RemoteWrite),
    };
    let request = match decode(&headers, body, &limits.http).await {
        Ok(r) => r,
        Err(e) => return e.respond(metrics, Endpoint::RemoteWrite),
    };
    let (tally, metadata) = tally(request, &limits, vigil_common::now_ms());
    let written = async {
        let stored = store_write(&state, &tally.series).await?;
        write_metadata(&state, &metadata).await?;
        Ok::<_, IngestError>(stored)
    };
    match written.await {
        Ok(stored) => tally.finish(metrics, Endpoint::RemoteWrite, stored),
        Err(e) => e.respond(metrics, Endpoint::RemoteWrite),
    }
}

/// Checks the headers, reads, decompresses and decodes the body.
async fn decode(
    headers: &HeaderMap,
    body: Body,
    caps: &super::config::HttpIngestConfig,
) -> Result<WriteRequest, IngestError> {
    check_headers(headers)?;
    let compressed = read_body(
        headers,
        body,
        caps.max_compressed_bytes,
        "http_ingest.max_compressed_bytes",
    )
    .await?;
    decode_payload(&compressed, caps.max_decompressed_bytes)
}

/// Decompresses (snappy block format, at most `max_decompressed_bytes`)
/// and decodes a request body. Pure and synchronous: the fuzz target
/// `remote_write` (fuzz/) calls it with arbitrary bytes.
pub fn decode_payload(
    compressed: &[u8],
    max_decompressed_bytes: usize,
) -> Result<WriteRequest, IngestError> {
    let len = snap::raw::decompress_len(compressed)
        .map_err(|e| IngestError::Malformed(format!("invalid snappy data: {e}")))?;
    if len > max_decompressed_bytes {
        return Err(IngestError::TooLarge(format!(
            "decompressed body of {len} bytes is larger than {max_decompressed_bytes} bytes (http_ingest.max_decompressed_bytes)"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(compressed)
        .map_err(|e| IngestError::Malformed(format!("invalid snappy data: {e}")))?;
    WriteRequest::decode(raw.as_slice())
        .map_err(|e| IngestError::Malformed(format!("invalid protobuf WriteRequest: {e}")))
}

/// Validates a decoded request as the handler does before storing it: the
/// accepted series and rejections in a [`Tally`], and the metadata.
pub fn tally(
    request: WriteRequest,
    limits: &IngestLimits,
    now_ms: i64,
) -> (Tally, Vec<MetricMetadata>) {
    let mut tally = Tally::new(limits, now_ms);
    for ts in request.timeseries {
        add(&mut tally, ts);
    }
    let metadata = (request.metadata.into_iter())
        .map(ProtoMetadata::into_metadata)
        .collect();
    (tally, metadata)
}

/// remote_write 1.0 only: protobuf `prometheus.WriteRequest`, snappy.
fn check_headers(headers: &HeaderMap) -> Result<(), IngestError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let text = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
        let mut parts = text.split(';').map(str::trim);
        if parts.next() != Some("application/x-protobuf") {
            return Err(IngestError::UnsupportedMediaType(format!(
                "Content-Type {text:?} is not supported: send application/x-protobuf (remote_write 1.0)"
            )));
        }
        for part in parts {
            if let Some(proto) = part.strip_prefix("proto=") {
                if proto != "prometheus.writerequest" {
                    return Err(IngestError::UnsupportedMediaType(format!(
                        "protobuf message {proto:?} is not supported: Vigil speaks remote_write 1.0 (prometheus.WriteRequest)"
                    )));
                }
            }
        }
    }
    if let Some(enc) = media_type(headers, header::CONTENT_ENCODING) {
        if enc != "snappy" {
            return Err(IngestError::UnsupportedMediaType(format!(
                "Content-Encoding {enc:?} is not supported: send snappy"
            )));
        }
    }
    Ok(())
}

/// One `TimeSeries` into the tally: `__name__` becomes the metric name.
fn add(tally: &mut Tally, ts: TimeSeries) {
    let TimeSeries {
        labels: proto_labels,
        samples,
        histograms,
    } = ts;
    tally.reject(NATIVE_HISTOGRAM, histograms.len() as u64, || {
        "native histograms are not supported; send classic histograms".into()
    });
    let mut name = None;
    let mut labels = Vec::with_capacity(proto_labels.len());
    for l in proto_labels {
        if l.name == METRIC_NAME && name.is_none() {
            name = Some(l.value);
        } else {
            // A second __name__ stays a label, which validation rejects.
            labels.push(Label::new(l.name, l.value));
        }
    }
    let Some(name) = name else {
        tally.reject(INVALID_SERIES, samples.len() as u64, || {
            "series without a __name__ label".into()
        });
        return;
    };
    let points = samples
        .into_iter()
        .map(|s| Point {
            timestamp_ms: s.timestamp,
            value: s.value,
        })
        .collect();
    tally.add(name, labels, points);
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_remote_write_1_0_is_accepted() {
        use header::{CONTENT_ENCODING as CE, CONTENT_TYPE as CT};
        assert!(check_headers(&headers(&[])).is_ok());
        assert!(check_headers(&headers(&[(CT, "application/x-protobuf"), (CE, "snappy")])).is_ok());
        assert!(
            check_headers(&headers(&[(
                CT,
                "application/x-protobuf;proto=prometheus.WriteRequest"
            )]))
            .is_ok()
        );
        for bad in [
            headers(&[(CT, "application/json")]),
            headers(&[(
                CT,
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            )]),
            headers(&[(CE, "gzip")]),
        ] {
            assert!(matches!(
                check_headers(&bad),
                Err(IngestError::UnsupportedMediaType(_))
            ));
        }
    }

    #[test]
    fn name_label_and_histograms() {
        let limits = super::super::IngestLimits::default();
        let now = vigil_common::now_ms();
        let mut tally = Tally::new(&limits, now);
        let sample = ProtoSample {
            value: 2.0,
            timestamp: now,
        };
        add(
            &mut tally,
            TimeSeries {
                labels: vec![
                    ProtoLabel {
                        name: "job".into(),
                        value: "x".into(),
                    },
                    ProtoLabel {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                ],
                samples: vec![sample.clone()],
                histograms: vec![NativeHistogram {}],
            },
        );
        add(
            &mut tally,
            TimeSeries {
                labels: vec![],
                samples: vec![sample],
                histograms: vec![],
            },
        );
        assert_eq!(tally.series.len(), 1);
        assert_eq!(tally.series[0].name, "up");
        assert_eq!(tally.series[0].labels, vec![Label::new("job", "x")]);
        assert_eq!((tally.accepted(), tally.rejected()), (1, 2));
    }
}
