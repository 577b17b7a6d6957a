//! `POST /api/v1/import`: Prometheus text exposition (0.0.4, timestamps in
//! ms) or OpenMetrics text (`Content-Type: application/openmetrics-text`,
//! timestamps in seconds) with timestamps, for backfill.
//!
//! Parsed by the same parser the agent scrapes with
//! ([`vigil_common::exposition`]), so a histogram or summary keeps its exact
//! `_bucket`/`_sum`/`_count` series. A line that cannot be read is rejected
//! and counted (`malformed_line`), the rest still count.
//!
//! A sample without a timestamp is rejected (`missing_timestamp`): stamping
//! backfill with the time of the import would silently put old data at the
//! wrong time. `?default_timestamp=<RFC 3339 | unix seconds | now>` gives
//! such samples that time instead.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use vigil_common::exposition::{self, Format};
use vigil_common::{Label, MetricMetadata, Point};

use super::tally::{Endpoint, MALFORMED_LINE, MISSING_TIMESTAMP, Tally};
use super::{
    IngestError, Limits, limits, media_type, read_body, write as store_write, write_metadata,
};
use crate::http::AppState;
use crate::http::access::WriteAccess;
use crate::http::prometheus::params::parse_time;

/// The handler.
pub async fn import(
    _: WriteAccess,
    State(state): State<AppState>,
    ext: Limits,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = &state.metrics.http_ingest;
    let limits = limits(ext);
    let now = vigil_common::now_ms();
    let prepared = async {
        let turn = limits.turn().await?;
        let default_ts = default_timestamp(query.as_deref(), now)?;
        let format = format(&headers)?;
        let body = read_body(
            &headers,
            body,
            limits.http.max_import_bytes,
            "http_ingest.max_import_bytes",
        )
        .await?;
        Ok::<_, IngestError>((turn, default_ts, format, body))
    };
    let (_turn, default_ts, format, body) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.respond(metrics, Endpoint::Import),
    };
    let mut tally = Tally::new(&limits, now);
    let metadata = collect(&mut tally, &body, format, default_ts);
    let written = async {
        let stored = store_write(&state, &tally.series).await?;
        write_metadata(&state, &metadata).await?;
        Ok::<_, IngestError>(stored)
    };
    match written.await {
        Ok(stored) => tally.finish(metrics, Endpoint::Import, stored),
        Err(e) => e.respond(metrics, Endpoint::Import),
    }
}

/// `default_timestamp` from the query string, if given.
fn default_timestamp(query: Option<&str>, now: i64) -> Result<Option<i64>, IngestError> {
    let mut out = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "default_timestamp" if v == "now" => out = Some(now),
            "default_timestamp" => {
                out = Some(parse_time(&v).map_err(|e| {
                    IngestError::Malformed(format!("invalid parameter \"default_timestamp\": {e}"))
                })?)
            }
            other => {
                return Err(IngestError::Malformed(format!(
                    "unknown parameter {other:?}: only default_timestamp is accepted"
                )));
            }
        }
    }
    Ok(out)
}

/// The text format the Content-Type names.
fn format(headers: &HeaderMap) -> Result<Format, IngestError> {
    if let Some(enc) = media_type(headers, header::CONTENT_ENCODING) {
        if enc != "identity" {
            return Err(IngestError::UnsupportedMediaType(format!(
                "Content-Encoding {enc:?} is not supported: send the text uncompressed"
            )));
        }
    }
    match media_type(headers, header::CONTENT_TYPE).as_deref() {
        None | Some("text/plain") => Ok(Format::Prometheus),
        Some("application/openmetrics-text") => Ok(Format::OpenMetrics),
        Some(other) => Err(IngestError::UnsupportedMediaType(format!(
            "Content-Type {other:?} is not supported: send text/plain (Prometheus text format) \
             or application/openmetrics-text"
        ))),
    }
}

/// Metric name and sorted label pairs.
type SeriesKey = (String, Vec<(String, String)>);

/// Parses the exposition into the tally, one series per name + label set;
/// returns the metadata of its `# TYPE`/`# HELP`/`# UNIT` lines.
fn collect(
    tally: &mut Tally,
    body: &[u8],
    format: Format,
    default_ts: Option<i64>,
) -> Vec<MetricMetadata> {
    let parsed = exposition::parse(body, format);
    tally.reject(MALFORMED_LINE, parsed.malformed, || {
        match parsed.first_error {
            Some((line, why)) => format!("line {line}: {why}"),
            None => "malformed line".into(),
        }
    });
    let mut index: HashMap<SeriesKey, usize> = HashMap::new();
    let mut grouped: Vec<(SeriesKey, Vec<Point>)> = Vec::new();
    for s in parsed.samples {
        let Some(timestamp_ms) = s.timestamp_ms.or(default_ts) else {
            tally.reject(MISSING_TIMESTAMP, 1, || {
                format!(
                    "{}: sample without a timestamp (add one, or ?default_timestamp=now)",
                    s.name
                )
            });
            continue;
        };
        let mut labels = s.labels;
        labels.sort();
        let point = Point {
            timestamp_ms,
            value: s.value,
        };
        let key = (s.name, labels);
        match index.get(&key) {
            Some(&i) => grouped[i].1.push(point),
            None => {
                index.insert(key.clone(), grouped.len());
                grouped.push((key, vec![point]));
            }
        }
    }
    for ((name, labels), mut points) in grouped {
        points.sort_by_key(|p| p.timestamp_ms);
        let labels = labels.into_iter().map(|(n, v)| Label::new(n, v)).collect();
        tally.add(name, labels, points);
    }
    parsed.metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ingest::IngestLimits;

    #[test]
    fn histograms_keep_their_series_and_bad_lines_are_counted() {
        let now = vigil_common::now_ms();
        let t = now - 60_000;
        let text = format!(
            "# TYPE lat histogram\n\
             lat_bucket{{le=\"0.1\"}} 1 {t}\n\
             lat_bucket{{le=\"+Inf\"}} 3 {t}\n\
             lat_sum 0.7 {t}\n\
             lat_count 3 {t}\n\
             lat_count 4 {}\n\
             no_timestamp 1\n\
             bad line here\n",
            t + 15_000
        );
        let mut tally = Tally::new(&IngestLimits::default(), now);
        collect(&mut tally, text.as_bytes(), Format::Prometheus, None);
        let names: Vec<(&str, Option<&str>)> = tally
            .series
            .iter()
            .map(|s| (s.name.as_str(), s.label("le")))
            .collect();
        assert_eq!(
            names,
            [
                ("lat_bucket", Some("0.1")),
                ("lat_bucket", Some("+Inf")),
                ("lat_sum", None),
                ("lat_count", None)
            ]
        );
        assert_eq!(tally.series[3].points.len(), 2);
        assert_eq!((tally.accepted(), tally.rejected()), (5, 2));

        let mut tally = Tally::new(&IngestLimits::default(), now);
        collect(&mut tally, b"x 1\n", Format::Prometheus, Some(now));
        assert_eq!(tally.series[0].points[0].timestamp_ms, now);
    }

    #[test]
    fn query_parameters() {
        assert_eq!(default_timestamp(None, 5).expect("none"), None);
        assert_eq!(
            default_timestamp(Some("default_timestamp=now"), 5).expect("now"),
            Some(5)
        );
        assert_eq!(
            default_timestamp(Some("default_timestamp=1.5"), 5).expect("secs"),
            Some(1500)
        );
        assert!(default_timestamp(Some("default_timestamp=x"), 5).is_err());
        assert!(default_timestamp(Some("extra=1"), 5).is_err());
    }
}
