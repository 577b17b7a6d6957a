//! Engine behaviour that the promql scripts cannot express: limits,
//! timeouts, result shapes and speed.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use promql_parser::label::Matcher;
use vigil_common::Label;

use super::{Engine, Limits, QueryError, Value};
use crate::query::source::{
    Labels, MemorySource, RawSeries, STALE_NAN_BITS, SelectHints, Source, SourceError, matches,
};

fn labels(name: &str, pairs: &[(&str, &str)]) -> Vec<Label> {
    let mut l: Vec<Label> = pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect();
    l.push(Label::new("__name__", name));
    l.sort();
    l
}

/// Series in memory, built in bulk (`MemorySource::push` is linear in the
/// number of series, too slow for thousands).
struct Bulk(Vec<RawSeries>);

#[async_trait]
impl Source for Bulk {
    async fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        hints: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError> {
        let mut out = Vec::new();
        let mut total = 0;
        for s in self.0.iter().filter(|s| matches(&s.labels, matchers)) {
            let samples: Vec<(i64, f64)> = s
                .samples
                .iter()
                .filter(|(t, _)| (start..=end).contains(t))
                .copied()
                .collect();
            total += samples.len();
            if out.len() >= hints.max_series {
                return Err(SourceError::TooManySeries {
                    limit: hints.max_series,
                });
            }
            if total > hints.max_samples {
                return Err(SourceError::TooManySamples {
                    limit: hints.max_samples,
                });
            }
            out.push(RawSeries {
                labels: s.labels.clone(),
                samples,
            });
        }
        Ok(out)
    }

    async fn series(
        &self,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<Labels>, SourceError> {
        Ok(Vec::new())
    }
}

/// `n` counters `x{host, i}` sampled every 15 s for `secs` seconds; series
/// `i` grows by `i + 1` per sample.
fn counters(n: usize, hosts: usize, secs: i64) -> Bulk {
    Bulk(
        (0..n)
            .map(|i| RawSeries {
                labels: labels(
                    "x",
                    &[("host", &format!("h{}", i % hosts)), ("i", &i.to_string())],
                )
                .into(),
                samples: (0..=secs / 15)
                    .map(|k| (k * 15_000, (k * (i as i64 + 1)) as f64))
                    .collect(),
            })
            .collect(),
    )
}

#[tokio::test]
async fn range_rejects_bad_steps_and_too_many_points() {
    let src = counters(1, 1, 60);
    let e = Engine::default();
    for (start, end, step, msg) in [
        (0, 1000, 0, "zero or negative query resolution step"),
        (0, 1000, -5, "zero or negative query resolution step"),
        (1000, 0, 10, "end timestamp must not be before start time"),
        (
            0,
            11_000_000,
            1000,
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        (i64::MIN, i64::MAX, 1, "exceeded maximum resolution"),
    ] {
        match e.range(&src, "x", start, end, step).await {
            Err(QueryError::BadData(m)) => assert!(m.contains(msg), "{m}"),
            other => panic!("{start}..{end}/{step}: {other:?}"),
        }
    }
    // A one-point range query is still a range query.
    match e.range(&src, "x[5m]", 60_000, 60_000, 1000).await {
        Err(QueryError::BadData(m)) => assert!(m.contains("range vector"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Exactly 11,000 points is allowed.
    assert!(e.range(&src, "x", 0, 10_999_000, 1000).await.is_ok());
}

#[tokio::test]
async fn bad_queries_are_bad_data_not_panics() {
    let src = counters(1, 1, 60);
    let e = Engine::default();
    for q in [
        "x{",
        "rate(x)",
        "sum(x",
        "x[5m] + 1",
        "histogram_count(x)",
        "label_replace(x, \"a\", \"b\", \"c\", \"(\")",
    ] {
        match e.instant(&src, q, 60_000).await {
            Err(QueryError::BadData(m)) => assert!(!m.is_empty()),
            other => panic!("{q}: {other:?}"),
        }
    }
    match e.instant(&src, "histogram_count(x)", 0).await {
        Err(QueryError::BadData(m)) => {
            assert_eq!(m, "function \"histogram_count\" is not supported")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sample_and_series_limits_are_enforced() {
    let src = counters(10, 10, 600);
    let mut limits = Limits {
        max_samples: 100,
        ..Limits::default()
    };
    let e = Engine::new(limits.clone());
    // 10 series x 41 samples are more than 100 loaded samples.
    assert!(matches!(
        e.instant(&src, "count_over_time(x[10m])", 600_000).await,
        Err(QueryError::Limit(_))
    ));
    // 10 series x 200 steps of output are more than 100 materialised.
    limits.max_samples = 1000;
    let e = Engine::new(limits.clone());
    match e.range(&src, "x", 0, 199_000, 1000).await {
        Err(QueryError::Limit(m)) => assert!(m.contains("too many samples"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A subquery whose steps alone exceed the budget.
    assert!(matches!(
        e.instant(&src, "max_over_time(x[1y:1ms])", 600_000).await,
        Err(QueryError::Limit(_))
    ));
    limits.max_series = 5;
    let e = Engine::new(limits);
    match e.instant(&src, "x", 600_000).await {
        Err(QueryError::Limit(m)) => assert!(m.contains("more than 5 series"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A source that takes its time.
struct Slow(Duration);

#[async_trait]
impl Source for Slow {
    async fn select(
        &self,
        _: &[Matcher],
        _: i64,
        _: i64,
        _: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError> {
        tokio::time::sleep(self.0).await;
        Ok(Vec::new())
    }

    async fn series(
        &self,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<Labels>, SourceError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn slow_fetch_and_slow_evaluation_time_out() {
    let e = Engine::new(Limits {
        timeout: Duration::from_millis(50),
        ..Limits::default()
    });
    let started = Instant::now();
    match e.instant(&Slow(Duration::from_secs(10)), "x", 0).await {
        Err(QueryError::Timeout(d)) => assert_eq!(d, Duration::from_millis(50)),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // A zero budget: the fetch (instant) completes, evaluation notices.
    let e = Engine::new(Limits {
        timeout: Duration::ZERO,
        ..Limits::default()
    });
    let src = counters(10, 2, 600);
    assert!(matches!(
        e.range(&src, "sum by (host) (rate(x[5m]))", 0, 600_000, 15_000)
            .await,
        Err(QueryError::Timeout(_))
    ));
}

#[tokio::test]
async fn storage_errors_are_not_the_callers_fault() {
    struct Broken;
    #[async_trait]
    impl Source for Broken {
        async fn select(
            &self,
            _: &[Matcher],
            _: i64,
            _: i64,
            _: &SelectHints,
        ) -> Result<Vec<RawSeries>, SourceError> {
            Err(SourceError::Storage("disk on fire".into()))
        }
        async fn series(
            &self,
            _: &[Vec<Matcher>],
            _: i64,
            _: i64,
            _: usize,
        ) -> Result<Vec<Labels>, SourceError> {
            Ok(Vec::new())
        }
    }
    assert!(matches!(
        Engine::default().instant(&Broken, "up", 0).await,
        Err(QueryError::Storage(_))
    ));
}

#[tokio::test]
async fn result_shapes() {
    let mut src = MemorySource::new();
    let b = labels("m", &[("k", "b")]);
    let a = labels("m", &[("k", "a")]);
    src.push(&b, 0, 1.0);
    src.push(&b, 60_000, 2.0);
    src.push(&a, 0, 5.0);
    src.push(&a, 60_000, f64::from_bits(STALE_NAN_BITS));
    let e = Engine::default();

    match e.instant(&src, "m[2m]", 60_000).await.unwrap() {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 2);
            assert_eq!(*m[0].labels, a, "sorted by labels");
            assert_eq!(m[0].samples, vec![(0, 5.0)], "stale marker dropped");
            assert_eq!(m[1].samples, vec![(0, 1.0), (60_000, 2.0)]);
        }
        other => panic!("{other:?}"),
    }
    match e.instant(&src, "m", 90_000).await.unwrap() {
        Value::Vector(v) => {
            assert_eq!(v.len(), 1, "a's stale marker hides it");
            assert_eq!(v[0].labels, b);
            assert_eq!((v[0].timestamp_ms, v[0].value), (90_000, 2.0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.instant(&src, "1 + 1", 5_000).await.unwrap(),
        Value::Scalar {
            timestamp_ms: 5_000,
            value: 2.0
        }
    );
    assert_eq!(
        e.instant(&src, "\"s\"", 0).await.unwrap().type_name(),
        "string"
    );
    match e.range(&src, "m", 0, 120_000, 60_000).await.unwrap() {
        Value::Matrix(m) => {
            assert_eq!(*m[0].labels, a);
            assert_eq!(m[0].samples, vec![(0, 5.0)]);
            assert_eq!(m[1].samples, vec![(0, 1.0), (60_000, 2.0), (120_000, 2.0)]);
        }
        other => panic!("{other:?}"),
    }
    match e.range(&src, "time()", 0, 2_000, 1_000).await.unwrap() {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert!(m[0].labels.is_empty());
            assert_eq!(m[0].samples, vec![(0, 0.0), (1_000, 1.0), (2_000, 2.0)]);
        }
        other => panic!("{other:?}"),
    }
}

/// The shape: `sum by (host) (rate(x[5m]))` over 1,000 series for
/// 1 h at a 15 s step; printed for the record (debug builds are slow, the
/// bound here only catches an accidental quadratic walk).
#[tokio::test]
async fn range_query_walks_each_series_once() {
    let src = counters(1000, 50, 3900);
    let e = Engine::default();
    let started = Instant::now();
    let v = e
        .range(
            &src,
            "sum by (host) (rate(x[5m]))",
            300_000,
            3_900_000,
            15_000,
        )
        .await
        .unwrap();
    let took = started.elapsed();
    let Value::Matrix(m) = v else { panic!() };
    assert_eq!(m.len(), 50);
    assert_eq!(m[0].samples.len(), 241);
    // Host h0 has series i = 0, 50, ..., 950 with slopes (i+1)/15 per second.
    let want: f64 = (0..20).map(|k| (k * 50 + 1) as f64 / 15.0).sum();
    assert!((m[0].samples[0].1 - want).abs() < 1e-9 * want);
    eprintln!("sum by (host) (rate(x[5m])), 1000 series, 241 steps: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // One series for 24 h at 60 s.
    let src = counters(1, 1, 86_400);
    let started = Instant::now();
    let v = e.range(&src, "x", 0, 86_400_000, 60_000).await.unwrap();
    let took = started.elapsed();
    let Value::Matrix(m) = v else { panic!() };
    assert_eq!(m[0].samples.len(), 1441);
    eprintln!("x, 1 series, 24 h at 60 s: {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn deeply_nested_queries_fail_cleanly() {
    let e = Engine::default();
    let src = MemorySource::new();
    let q = vec!["1"; 150].join(" + ");
    assert!(
        matches!(e.instant(&src, &q, 0).await, Ok(Value::Scalar { value, .. }) if value == 150.0)
    );
    for depth in [1000usize, 5_000] {
        for q in [
            format!("{}1{}", "(".repeat(depth), ")".repeat(depth)),
            format!("{}1", "-".repeat(depth)),
            vec!["1"; depth].join(" + "),
            format!("{}x{}", "abs(".repeat(depth), ")".repeat(depth)),
        ] {
            // Refused, or (when the parser flattens it) answered; never a
            // stack overflow.
            match e.instant(&src, &q, 0).await {
                Err(QueryError::BadData(m)) => assert!(!m.is_empty()),
                Ok(_) => {}
                other => panic!("depth {depth}: {other:?}"),
            }
        }
    }
}

/// The HTTP layer awaits these inside axum handlers, which need `Send`.
#[test]
fn query_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let e = Engine::default();
    let src = MemorySource::new();
    let f = e.instant(&src, "x", 0);
    assert_send(&f);
    let g = e.range(&src, "x", 0, 1, 1);
    assert_send(&g);
}

/// Counts `select` calls.
struct Counting(MemorySource, std::sync::atomic::AtomicUsize);

#[async_trait]
impl Source for Counting {
    async fn select(
        &self,
        m: &[Matcher],
        start: i64,
        end: i64,
        hints: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.select(m, start, end, hints).await
    }

    async fn series(
        &self,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<Labels>, SourceError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn identical_selectors_are_fetched_once() {
    let mut mem = MemorySource::new();
    let l = labels("x", &[("a", "1")]);
    for k in 0..=20 {
        mem.push(&l, k * 60_000, k as f64);
    }
    let src = Counting(mem, Default::default());
    let e = Engine::default();
    let calls = |src: &Counting| src.1.swap(0, std::sync::atomic::Ordering::SeqCst);

    let v = e
        .instant(&src, "sum(rate(x[5m])) / count(rate(x[5m]))", 600_000)
        .await
        .unwrap();
    assert_eq!(calls(&src), 1);
    let Value::Vector(v) = v else { panic!() };
    assert!((v[0].value - 1.0 / 60.0).abs() < 1e-12);

    // Same matchers, different offsets: one fetch over the union of ranges.
    let v = e.instant(&src, "x - x offset 5m", 600_000).await.unwrap();
    assert_eq!(calls(&src), 1);
    let Value::Vector(v) = v else { panic!() };
    assert_eq!(v[0].value, 5.0);

    // Different matchers or ranges are separate fetches.
    e.instant(&src, "rate(x[5m]) + rate(x[10m]) + x{a=\"1\"}", 600_000)
        .await
        .unwrap();
    assert_eq!(calls(&src), 3);
}

/// Records the hints of every `select`.
struct Recording(std::sync::Mutex<Vec<SelectHints>>);

#[async_trait]
impl Source for Recording {
    async fn select(
        &self,
        _: &[Matcher],
        _: i64,
        _: i64,
        hints: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError> {
        if let Ok(mut h) = self.0.lock() {
            h.push(hints.clone());
        }
        Ok(Vec::new())
    }

    async fn series(
        &self,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<Labels>, SourceError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn select_hints_describe_each_selector() {
    let src = Recording(Default::default());
    let e = Engine::new(Limits {
        max_series: 7,
        ..Limits::default()
    });
    e.range(&src, "sum(rate(x[5m]))", 0, 3_600_000, 60_000)
        .await
        .unwrap();
    e.range(
        &src,
        "max_over_time(rate(y[5m])[1h:30s])",
        0,
        86_400_000,
        3_600_000,
    )
    .await
    .unwrap();
    e.instant(&src, "z", 0).await.unwrap();
    let h = src.0.lock().unwrap().clone();
    assert_eq!(h.len(), 3);
    assert_eq!(
        (
            h[0].step_ms,
            h[0].range_ms,
            h[0].func.as_deref(),
            h[0].max_series
        ),
        (60_000, 300_000, Some("rate"), 7)
    );
    // Inside a subquery the selector is evaluated at the subquery's step.
    assert_eq!((h[1].step_ms, h[1].range_ms), (30_000, 300_000));
    assert_eq!(
        (h[2].step_ms, h[2].range_ms, h[2].func.as_deref()),
        (0, 0, None)
    );
    // Only an instant selector read at one timestamp needs just its last
    // sample; not in a range query, a subquery, or merged with an offset.
    assert_eq!(
        [h[0].latest_only, h[1].latest_only, h[2].latest_only],
        [false, false, true]
    );
    for (query, latest_only) in [
        ("x > 1", true),
        ("avg by (a) (x)", true),
        ("x - x offset 5m", false),
        ("x @ 100 - x", false),
        ("max_over_time(x[5m])", false),
        ("max_over_time(x[5m:1m])", false),
    ] {
        src.0.lock().unwrap().clear();
        e.instant(&src, query, 600_000).await.unwrap();
        let h = src.0.lock().unwrap().clone();
        assert!(
            h.iter().all(|h| h.latest_only == latest_only),
            "{query}: {h:?}"
        );
    }
    // A range read at one timestamp by `last_over_time` or
    // `present_over_time` needs only its last sample that is not a marker.
    for (query, last_real) in [
        ("last_over_time(x[1h])", true),
        ("count(present_over_time(x[1h]))", true),
        ("max by (a) (last_over_time(x[1h])) unless x", true),
        ("max_over_time(x[1h])", false),
        ("last_over_time(x[1h:1m])", false),
        (
            "last_over_time(x[1h]) - last_over_time(x[1h] offset 1h)",
            false,
        ),
    ] {
        src.0.lock().unwrap().clear();
        e.instant(&src, query, 600_000).await.unwrap();
        let h = src.0.lock().unwrap().clone();
        assert!(
            h.iter()
                .filter(|h| h.range_ms > 0)
                .all(|h| h.last_real_only == last_real),
            "{query}: {h:?}"
        );
        assert!(
            h.iter().any(|h| h.range_ms > 0) || !last_real,
            "{query}: {h:?}"
        );
    }
    src.0.lock().unwrap().clear();
    e.range(&src, "last_over_time(x[1h])", 0, 600_000, 60_000)
        .await
        .unwrap();
    assert!(!src.0.lock().unwrap()[0].last_real_only);
}

/// A source that keeps only the last sample (or the last real one) of the
/// selections that need no more answers like one that keeps all of them.
#[tokio::test]
async fn latest_only_selections_answer_the_same() {
    let mut mem = MemorySource::new();
    let l = labels("x", &[("a", "1")]);
    for k in 0..=20 {
        mem.push(&l, k * 15_000, k as f64);
    }
    let stale = labels("x", &[("a", "2")]);
    mem.push(&stale, 0, 1.0);
    mem.push(&stale, 15_000, f64::from_bits(STALE_NAN_BITS));
    let e = Engine::default();
    // Ends in markers: `last_over_time` sees the real sample before them.
    let gone = labels("y", &[("a", "3")]);
    mem.push(&gone, 0, 7.0);
    for k in 1..=6 {
        mem.push(&gone, k * 15_000, f64::from_bits(STALE_NAN_BITS));
    }
    for (query, want) in [
        ("x", vec![20.0]),
        ("x - x offset 1m", vec![4.0]),
        ("timestamp(x)", vec![300.0]),
        ("count(x)", vec![1.0]),
        ("sort(last_over_time(x[1h]))", vec![1.0, 20.0]),
        ("last_over_time(y[1h])", vec![7.0]),
        ("last_over_time(y[4m])", vec![]),
        ("count(present_over_time({a=~\"2|3\"}[1h]))", vec![2.0]),
        ("y", vec![]),
    ] {
        let Value::Vector(v) = e.instant(&mem, query, 300_000).await.unwrap() else {
            panic!("{query}: not a vector");
        };
        let got: Vec<f64> = v.iter().map(|s| s.value).collect();
        assert_eq!(got, want, "{query}");
    }
}

/// Odd but parseable queries: each either answers or fails with an error,
/// never panics or overflows.
#[tokio::test]
async fn odd_queries_do_not_panic() {
    let src = counters(3, 2, 600);
    let e = Engine::default();
    let queries = [
        "x[1ms]",
        "rate(x[1ms])",
        "x offset -100y",
        "x offset 10000y",
        "x @ -10000000000",
        "x @ 100000000000000",
        "rate(x[5m] @ 100000000000000)",
        "x[5m:1h]",
        "max_over_time(x[1ms:1ms])",
        "max_over_time(vector(1)[10m:1m])",
        "max_over_time(x[10m:1m] offset -1h)",
        "rate(x[5m:1m] @ end())",
        "topk(1e30, x)",
        "topk(-1, x)",
        "bottomk(9223372036854775807, x)",
        "quantile(NaN, x)",
        "round(x, 0)",
        "round(x, -1)",
        "histogram_quantile(0.5, x)",
        "histogram_quantile(NaN, x)",
        "label_replace(x, \"\", \"a\", \"i\", \".*\")",
        "label_replace(x, \"host\", \"\", \"host\", \".*\")",
        "label_join(x, \"j\", \"\", \"i\", \"i\")",
        "count_values(\"\", x)",
        "count_values(\"host\", x)",
        "x / 0",
        "x % 0",
        "x ^ 1e308",
        "-x or x",
        "x and on() x",
        "x * on() group_left x",
        "x == bool on(i) group_right(host) x",
        "scalar(x) * vector(1)",
        "absent(x{a=\"1\"} @ 0)",
        "predict_linear(x[5m], -1e308)",
        "quantile_over_time(2, x[5m])",
        "timestamp(timestamp(x))",
        "sort_desc(sum by (host) (x))",
        "year(vector(1e20))",
        "minute(vector(-1e20))",
        "day_of_week(vector(NaN))",
        "x @ 1e300",
        "x offset 292277026596y",
        "rate(x[292277026596y])",
        "x[292277026596y:1ms]",
    ];
    for q in queries {
        let r = e.instant(&src, q, 600_000).await;
        assert!(ok_or_clean_error(&r), "{q}: {r:?}");
        let r = e.range(&src, q, 0, 600_000, 60_000).await;
        assert!(ok_or_clean_error(&r), "{q}: {r:?}");
    }
}

/// An answer, or an error of the caller's kind; an evaluation panic shows up
/// as "query evaluation failed".
fn ok_or_clean_error(r: &Result<Value, QueryError>) -> bool {
    match r {
        Ok(_) | Err(QueryError::BadData(_) | QueryError::Limit(_)) => true,
        Err(QueryError::Execution(m)) => !m.starts_with("query evaluation failed"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn queries_over_the_length_limit_are_refused_before_parsing() {
    let e = Engine::default();
    let src = MemorySource::new();
    // Just under the limit: parsed and evaluated (a long regex included).
    let regex = format!("{{__name__=~\"{}\"}}", "a|".repeat(20_000) + "b");
    assert!(regex.len() <= super::MAX_QUERY_BYTES);
    assert!(matches!(e.instant(&src, &regex, 0).await, Ok(Value::Vector(v)) if v.is_empty()));
    // One byte over: refused with the reason, whatever the text.
    let over = format!("{}1", " ".repeat(super::MAX_QUERY_BYTES));
    match e.instant(&src, &over, 0).await {
        Err(QueryError::BadData(m)) => assert!(m.contains("longer than 65536 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        e.range(&src, &over, 0, 60_000, 15_000).await,
        Err(QueryError::BadData(_))
    ));
}

/// Found by the `promql` fuzz target: promql-parser panicked converting a
/// subquery step too large for a `Duration`.
#[tokio::test]
async fn a_query_the_parser_panics_on_is_bad_data() {
    let e = Engine::default();
    let src = MemorySource::new();
    let crash = "day_of_xeek(vector(1))[29:11111111111111111111111111111111111111111111]";
    for q in [crash, "vector(1)[5m:1111111111111111111111]"] {
        match e.instant(&src, q, 0).await {
            Err(QueryError::BadData(m)) => assert!(!m.is_empty()),
            other => panic!("{q}: {other:?}"),
        }
    }
}
