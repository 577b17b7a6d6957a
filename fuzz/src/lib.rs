//! What each fuzz target does with one input, shared by the libFuzzer
//! binaries (`fuzz_targets/*.rs`) and the corpus replay test that runs on
//! stable with the normal test suite (`aggregator/tests/fuzz_corpus.rs`
//! includes this file with `#[path]`). Every function calls the same code
//! the aggregator or agent runs on untrusted bytes and panics only on a bug:
//! an error for bad input is the expected outcome.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vigil_aggregator::http::ingest::IngestLimits;
use vigil_aggregator::http::ingest::config::HttpIngestConfig;
use vigil_aggregator::http::ingest::remote_write;
use vigil_aggregator::ingest::agents::{AgentStatus, Keys};
use vigil_aggregator::ingest::verify;
use vigil_aggregator::query::{Engine, Limits, MemorySource, Value};
use vigil_common::exposition::{self, Format};
use vigil_common::frame::{MAX_FRAME_BYTES, read_frame};
use vigil_common::sign::{self, SigningKey};
use vigil_common::{Batch, Label, ServerMessage, SignedBatch};

/// "Now" for every target, so a run is reproducible: 2026-01-01T00:00:00Z.
pub const NOW_MS: i64 = 1_767_225_600_000;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread tokio runtime")
    })
}

/// A frame as the aggregator reads it from a QUIC stream: the length
/// prefix, the `SignedBatch` envelope, then (signed here with a test key,
/// so verification gets past the signature) the batch itself, its
/// identity and content checks and normalisation. The same body is also
/// decoded as a bare `Batch` and as the agent-side `ServerMessage`.
/// Returns whether a batch passed verification (the deepest stage).
pub fn frame(data: &[u8]) -> bool {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    let key = KEY.get_or_init(|| SigningKey::from_bytes(&[7; 32]));
    let mut reader = data;
    let Ok(body) = runtime().block_on(read_frame(&mut reader, MAX_FRAME_BYTES)) else {
        return false;
    };
    assert!(body.len() <= MAX_FRAME_BYTES);
    if let Ok(batch) = Batch::decode(&body) {
        // Whatever decodes re-encodes to bytes that decode to the same encoding.
        let once = batch.encode().expect("a decoded batch encodes");
        let again = Batch::decode(&once).expect("an encoded batch decodes");
        assert_eq!(again.encode().expect("encodes"), once);
    }
    if let Ok(reply) = ServerMessage::decode(&body) {
        let once = reply.encode().expect("a decoded reply encodes");
        assert_eq!(ServerMessage::decode(&once).expect("decodes"), reply);
    }
    let Ok(envelope) = verify::open_envelope(&body) else {
        return false;
    };
    let cert_id = Batch::decode(&envelope.batch)
        .map(|b| b.header.agent_id)
        .unwrap_or_default();
    let signed = SignedBatch {
        signature: sign::sign(key, &envelope.batch),
        batch: envelope.batch,
    };
    let status = AgentStatus::Active(Arc::new(Keys {
        current: key.verifying_key(),
        previous: None,
    }));
    let Ok((mut batch, _)) = verify::verify(&signed, &cert_id, &status, NOW_MS) else {
        return false;
    };
    let max_age = Duration::from_secs(3600);
    let skew = Duration::from_secs(300);
    verify::normalize(&mut batch, NOW_MS, max_age, skew);
    for series in &batch.series {
        assert!(!series.points.is_empty());
        assert!(series.label("host").is_some());
    }
    true
}

/// A scrape body as the agent's scrape collector and the aggregator's
/// `/api/v1/import` parse it, in both formats. Returns how many samples
/// parsed.
pub fn exposition(data: &[u8]) -> usize {
    let mut samples = 0;
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let parsed = exposition::parse(data, format);
        for s in &parsed.samples {
            assert!(!s.name.is_empty(), "a sample without a name: {s:?}");
        }
        if parsed.malformed > 0 {
            assert!(parsed.first_error.is_some());
        }
        samples += parsed.samples.len();
    }
    samples
}

/// A `POST /api/v1/write` body: snappy, then protobuf, then the
/// validation the handler does before storing. The input is also tried
/// uncompressed (compressed here first), so the fuzzer reaches the
/// protobuf decoder and the validation without having to find valid
/// snappy framing. Returns how many samples were accepted.
pub fn remote_write(data: &[u8]) -> u64 {
    let mut accepted = 0;
    static LIMITS: OnceLock<IngestLimits> = OnceLock::new();
    let limits = LIMITS.get_or_init(IngestLimits::default);
    let cap = HttpIngestConfig::default().max_decompressed_bytes;
    let compressed = snap::raw::Encoder::new().compress_vec(data).ok();
    for body in [Some(data), compressed.as_deref()].into_iter().flatten() {
        if let Ok(request) = remote_write::decode_payload(body, cap) {
            let (tally, _metadata) = remote_write::tally(request, limits, NOW_MS);
            for series in &tally.series {
                assert!(series.validate().is_ok(), "accepted an invalid series");
            }
            accepted += tally.accepted();
        }
    }
    accepted
}

/// The data the PromQL target queries: a few counters, gauges and a
/// histogram over ten minutes every 15 s, with a stale marker and gaps.
fn promql_source() -> &'static MemorySource {
    static SOURCE: OnceLock<MemorySource> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let mut src = MemorySource::new();
        let l = |pairs: &[(&str, &str)]| -> Vec<Label> {
            pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect()
        };
        let start = NOW_MS - 600_000;
        for i in 0..=40i64 {
            let t = start + i * 15_000;
            let f = i as f64;
            for (inst, rate) in [("a", 1.0), ("b", 2.5)] {
                let labels = l(&[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", inst),
                ]);
                // A counter reset half-way for instance b.
                let v = if inst == "b" && i > 20 {
                    (f - 20.0) * rate
                } else {
                    f * rate
                };
                src.push(&labels, t, v);
            }
            src.push(
                &l(&[("__name__", "up"), ("job", "api"), ("instance", "a")]),
                t,
                1.0,
            );
            if i % 3 != 0 {
                src.push(
                    &l(&[("__name__", "temp"), ("room", "x")]),
                    t,
                    (f / 4.0).sin(),
                );
            }
            for (le, share) in [("0.1", 0.3), ("1", 0.8), ("+Inf", 1.0)] {
                let labels = l(&[("__name__", "latency_bucket"), ("le", le), ("job", "api")]);
                src.push(&labels, t, (f * 10.0 * share).floor());
            }
        }
        let stale = f64::from_bits(vigil_aggregator::query::source::STALE_NAN_BITS);
        src.push(
            &l(&[("__name__", "temp"), ("room", "x")]),
            NOW_MS - 60_000,
            stale,
        );
        src.push(&l(&[("__name__", "weird"), ("a", "")]), NOW_MS, f64::NAN);
        src
    })
}

/// Engine limits small enough that no input runs long or allocates much.
pub fn promql_limits() -> Limits {
    Limits {
        max_points_per_series: 1_000,
        max_series: 1_000,
        max_samples: 200_000,
        timeout: Duration::from_secs(2),
        lookback_ms: 5 * 60 * 1000,
    }
}

/// A query (UTF-8 text) parsed and evaluated, instant and over a range,
/// against [`promql_source`] within [`promql_limits`]. Returns whether the
/// instant query gave a non-empty result.
pub fn promql(data: &[u8]) -> bool {
    // libfuzzer-sys' panic hook aborts on every panic, also on one the
    // engine catches (promql-parser's, see `engine::parse`); with the
    // default hook, a panic that escapes still aborts (libfuzzer-sys
    // catches it at the top and aborts), a caught one is an error.
    static DEFAULT_HOOK: OnceLock<()> = OnceLock::new();
    DEFAULT_HOOK.get_or_init(|| drop(std::panic::take_hook()));
    let Ok(query) = std::str::from_utf8(data) else {
        return false;
    };
    let engine = Engine::new(promql_limits());
    let source = promql_source();
    let rt = runtime();
    let instant = rt.block_on(engine.instant(source, query, NOW_MS));
    let _ = rt.block_on(engine.range(source, query, NOW_MS - 600_000, NOW_MS, 30_000));
    match instant {
        Ok(Value::Vector(v)) => !v.is_empty(),
        Ok(Value::Matrix(m)) => !m.is_empty(),
        Ok(Value::Scalar { .. } | Value::String { .. }) => true,
        Err(_) => false,
    }
}
