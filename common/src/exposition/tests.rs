use proptest::prelude::*;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn one(line: &str) -> Sample {
    let e = parse(line.as_bytes(), Format::Prometheus);
    assert_eq!(e.malformed, 0, "{line}: {:?}", e.first_error);
    assert_eq!(e.samples.len(), 1, "{line}");
    e.samples.into_iter().next().expect("one sample")
}

#[test]
fn sample_lines() {
    let s = one(
        r#"http_requests_total{handler="/predict",method="POST",status="200"} 1027 1395066363000"#,
    );
    assert_eq!(s.name, "http_requests_total");
    assert_eq!(
        s.labels,
        labels(&[
            ("handler", "/predict"),
            ("method", "POST"),
            ("status", "200")
        ])
    );
    assert_eq!((s.value, s.timestamp_ms), (1027.0, Some(1_395_066_363_000)));

    let s = one("metric_without_labels 12.47");
    assert_eq!((s.labels.len(), s.value, s.timestamp_ms), (0, 12.47, None));
    let s = one("  spaced\t{ a = \"1\" , b=\"2\", }\t-3e2  ");
    assert_eq!(
        (s.labels, s.value),
        (labels(&[("a", "1"), ("b", "2")]), -300.0)
    );
    assert_eq!(one("empty{} 1").labels, vec![]);
    assert_eq!(one("colon:name 1").name, "colon:name");
    assert!(one("x NaN").value.is_nan());
    assert_eq!(one("x +Inf").value, f64::INFINITY);
    assert_eq!(one("x -Inf").value, f64::NEG_INFINITY);
    assert_eq!(one("x Inf 5").timestamp_ms, Some(5));
    assert_eq!(one("x 1 -3982045").timestamp_ms, Some(-3_982_045));
}

#[test]
fn label_values_are_unescaped() {
    let s = one(
        r#"msdos{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\"",odd="a\tb\x",uni="é😀,}"} 1.458255915e9"#,
    );
    assert_eq!(s.labels[0].1, r"C:\DIR\FILE.TXT");
    assert_eq!(s.labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
    assert_eq!(s.labels[2].1, r"a\tb\x", "unknown escapes kept");
    assert_eq!(s.labels[3].1, "é😀,}");
    assert_eq!(s.value, 1.458255915e9);
}

#[test]
fn malformed_lines_are_counted_and_skipped() {
    let text = "ok 1\n\
        9bad 1\n\
        no_value\n\
        no_value_brace{a=\"1\"}\n\
        bad_value abc\n\
        bad_ts 1 12.5\n\
        trailing 1 2 3\n\
        unterminated{a=\"1} 1\n\
        unquoted{a=1} 1\n\
        dup_label{a=\"1\",a=\"2\"} 1\n\
        bad_label{1a=\"1\"} 1\n\
        reserved{__name__=\"x\"} 1\n\
        missing_comma{a=\"1\" b=\"2\"} 1\n\
        # TYPE x notatype\n\
        # HELP 9bad help\n\
        ok2{a=\"1\"} 2\n";
    let e = parse(text.as_bytes(), Format::Prometheus);
    let names: Vec<&str> = e.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ok", "ok2"]);
    assert_eq!(e.malformed, 14);
    assert_eq!(e.first_error, Some((2, "invalid metric name")));
    let e = parse(b"ok 1\n\xff\xfe 2\nok 3", Format::Prometheus);
    assert_eq!((e.samples.len(), e.malformed), (2, 1));
}

#[test]
fn metadata_from_comments() {
    let text = "# HELP http_request_duration_seconds Latency of \\\\ requests.\\nSecond line.\n\
        # TYPE http_request_duration_seconds histogram\n\
        http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n\
        http_request_duration_seconds_bucket{le=\"1\"} 33444\n\
        http_request_duration_seconds_bucket{le=\"1e6\"} 33444\n\
        http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n\
        http_request_duration_seconds_sum 53423\n\
        http_request_duration_seconds_count 144320\n\
        # A plain comment\n\
        #TYPE rpc_duration_seconds summary\n\
        rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
        rpc_duration_seconds{quantile=\"1\"} 76656\n\
        rpc_duration_seconds_sum 1.7560473e+07\n\
        # TYPE errors_total counter\n\
        # TYPE errors_total gauge\n\
        errors_total 3\n\
        # HELP untyped_thing Only help.\n\
        not_a_bucket{le=\"1\"} 1\n";
    let e = parse(text.as_bytes(), Format::Prometheus);
    assert_eq!(e.malformed, 1, "second TYPE");
    let le: Vec<&str> = e.samples[..4]
        .iter()
        .map(|s| s.labels[0].1.as_str())
        .collect();
    assert_eq!(le, ["0.05", "1.0", "1e+06", "+Inf"]);
    assert_eq!(e.samples[7].labels, labels(&[("quantile", "1.0")]));
    assert_eq!(e.samples[6].labels, labels(&[("quantile", "0.5")]));
    assert_eq!(e.samples.last().map(|s| s.labels[0].1.as_str()), Some("1"));
    let meta = |name: &str| e.metadata.iter().find(|m| m.name == name).cloned();
    let h = meta("http_request_duration_seconds").expect("histogram");
    assert_eq!(h.kind, MetricKind::Histogram);
    assert_eq!(h.help, "Latency of \\ requests.\nSecond line.");
    assert_eq!(
        meta("rpc_duration_seconds").map(|m| m.kind),
        Some(MetricKind::Summary)
    );
    assert_eq!(
        meta("errors_total").map(|m| m.kind),
        Some(MetricKind::Counter)
    );
    let u = meta("untyped_thing").expect("help only");
    assert_eq!(
        (u.kind, u.help.as_str()),
        (MetricKind::Unknown, "Only help.")
    );
    assert_eq!(e.metadata.len(), 4);
}

#[test]
fn openmetrics_features() {
    let text = "# TYPE model_predictions counter\n\
        # HELP model_predictions Predictions served.\n\
        # UNIT model_predictions \n\
        model_predictions_total{model=\"m\",version=\"v2\"} 17 1700000000.5 # {trace_id=\"abc\"} 1.0 1700000000\n\
        model_predictions_created{model=\"m\",version=\"v2\"} 1699999000\n\
        # TYPE model_inference_duration_seconds histogram\n\
        # UNIT model_inference_duration_seconds seconds\n\
        model_inference_duration_seconds_bucket{le=\"0.1\"} 3 # {trace_id=\"x\"} 0.05\n\
        model_inference_duration_seconds_bucket{le=\"+Inf\"} 4\n\
        model_inference_duration_seconds_count 4\n\
        model_inference_duration_seconds_sum 0.7\n\
        # TYPE build info\n\
        build_info{version=\"1\"} 1\n\
        # EOF\n\
        after_eof 1\n";
    let e = parse(text.as_bytes(), Format::OpenMetrics);
    assert_eq!(e.malformed, 1, "content after EOF: {:?}", e.first_error);
    assert_eq!(e.samples.len(), 7);
    assert_eq!(e.samples[0].timestamp_ms, Some(1_700_000_000_500));
    assert_eq!(e.samples[0].value, 17.0);
    assert_eq!(e.samples[1].name, "model_predictions_created");
    assert_eq!(e.samples[2].labels, labels(&[("le", "0.1")]));
    let kinds: Vec<(&str, MetricKind, &str)> = (e.metadata.iter())
        .map(|m| (m.name.as_str(), m.kind, m.unit.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("model_predictions_total", MetricKind::Counter, ""),
            (
                "model_inference_duration_seconds",
                MetricKind::Histogram,
                "seconds"
            ),
            ("build_info", MetricKind::Gauge, ""),
        ]
    );
    let e = parse(b"a 1\n", Format::OpenMetrics);
    assert_eq!((e.samples.len(), e.malformed), (1, 1), "missing EOF");
    assert_eq!(e.first_error.map(|f| f.1), Some("missing # EOF"));
    assert_eq!(parse(b"a 1\n# EOF", Format::Prometheus).malformed, 0);
}

#[test]
fn formats_and_floats() {
    assert_eq!(Format::from_content_type(None), Format::Prometheus);
    assert_eq!(
        Format::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
        Format::Prometheus
    );
    assert_eq!(
        Format::from_content_type(Some("application/openmetrics-text; version=1.0.0")),
        Format::OpenMetrics
    );
    for (v, s) in [
        (1.0, "1.0"),
        (0.5, "0.5"),
        (0.0, "0.0"),
        (-2.0, "-2.0"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (123456.0, "123456.0"),
        (1e6, "1e+06"),
        (1_048_576.0, "1.048576e+06"),
        (2.5e-7, "2.5e-07"),
        (1e100, "1e+100"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ] {
        assert_eq!(format_float(v), s, "{v}");
    }
    assert_eq!(parse_float("1_0"), None);
    assert_eq!(parse_float(""), None);
}

/// Renders a sample as an exporter would.
fn render(name: &str, labels: &[(String, String)], value: f64) -> String {
    let escaped: Vec<String> = labels
        .iter()
        .map(|(n, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{n}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}} {}", escaped.join(","), format_float(value))
}

fn label_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", any::<String>(), 0..5)
        .prop_map(|m| m.into_iter().filter(|(n, _)| n != "__name__").collect())
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let e = parse(&bytes, format);
            prop_assert!(e.samples.len() as u64 + e.malformed <= bytes.len() as u64 + 2);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "([a-z_{}=\",# \\\\\\n\t.0-9eE+-]|NaN|Inf|TYPE|HELP|EOF){0,80}") {
        parse(text.as_bytes(), Format::Prometheus);
        parse(text.as_bytes(), Format::OpenMetrics);
    }

    #[test]
    fn well_formed_samples_round_trip(
        samples in proptest::collection::vec(
            ("[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", label_pairs(), any::<f64>()), 0..8),
    ) {
        let text: String = samples.iter().map(|(n, l, v)| render(n, l, *v) + "\n").collect();
        let e = parse(text.as_bytes(), Format::Prometheus);
        prop_assert_eq!(e.malformed, 0, "{:?}\n{}", e.first_error, text);
        prop_assert_eq!(e.samples.len(), samples.len());
        for (got, (name, labels, value)) in e.samples.iter().zip(&samples) {
            prop_assert_eq!(&got.name, name);
            prop_assert_eq!(&got.labels, labels);
            prop_assert!(got.value == *value || (got.value.is_nan() && value.is_nan()));
        }
    }
}

/// A visitor that remembers every parsed series by its text, as the agent's
/// scrape cache does, and replays the remembered labels for known ones.
/// Series text and normalisation -> parsed name and labels.
type Seen = HashMap<(String, Normalised), (String, Vec<(String, String)>)>;

#[derive(Default)]
struct Memo {
    seen: Seen,
    samples: Vec<Sample>,
    known: usize,
}

impl Visitor for Memo {
    fn known(&mut self, raw: &RawSample<'_>) -> bool {
        let key = (raw.series.to_string(), raw.normalised);
        let Some((name, labels)) = self.seen.get(&key) else {
            return false;
        };
        self.known += 1;
        self.samples.push(Sample {
            name: name.clone(),
            labels: labels.clone(),
            value: raw.value,
            timestamp_ms: raw.timestamp_ms,
        });
        true
    }

    fn parsed(&mut self, raw: &RawSample<'_>, sample: Sample) {
        let key = (raw.series.to_string(), raw.normalised);
        self.seen
            .insert(key, (sample.name.clone(), sample.labels.clone()));
        self.samples.push(sample);
    }
}

fn same_samples(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.labels == y.labels
                && x.timestamp_ms == y.timestamp_ms
                && (x.value == y.value || (x.value.is_nan() && y.value.is_nan()))
        })
}

#[test]
fn a_visitor_sees_the_exact_series_text_and_can_skip_known_labels() {
    let body = "# TYPE h histogram\n\
                h_bucket{le=\"1\"} 2\n\
                h_bucket{le=\"1\"} 3\n\
                h_bucket {le=\"1\"}  4 1700\n\
                m{a=\"x\\\"}\",b=\"\"} 5\n\
                m 6\n\
                m{9=\"x\"} 7\n\
                m{a=\"unterminated} 8\n";
    let mut memo = Memo::default();
    let summary = parse_with(body.as_bytes(), Format::Prometheus, &mut memo);
    let plain = parse(body.as_bytes(), Format::Prometheus);
    assert!(same_samples(&memo.samples, &plain.samples));
    assert_eq!((summary.malformed, plain.malformed), (2, 2));
    assert_eq!(summary.first_error, plain.first_error);
    assert_eq!(summary.first_error, Some((7, "invalid label name")));
    // The second h_bucket line repeats the first one's text: known.
    assert_eq!(memo.known, 1);
    let mut keys: Vec<&str> = memo.seen.keys().map(|(s, _)| s.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "h_bucket {le=\"1\"}",
            "h_bucket{le=\"1\"}",
            "m",
            "m{a=\"x\\\"}\",b=\"\"}"
        ]
    );
    assert_eq!(memo.samples[0].labels, labels(&[("le", "1.0")]));
    assert_eq!(memo.samples[1].labels, labels(&[("le", "1.0")]));
    assert!(
        memo.seen
            .keys()
            .all(|(s, n)| *n == Normalised::Le || s.starts_with('m'))
    );
}

proptest! {
    #[test]
    fn a_remembering_visitor_parses_like_parse(
        text in "([a-z_{}=\",# \\\\\\n\t.0-9eE+-]|NaN|Inf|TYPE|HELP|EOF|histogram|le){0,120}",
    ) {
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let plain = parse(text.as_bytes(), format);
            let mut memo = Memo::default();
            for _pass in 0..2 {
                memo.samples.clear();
                let summary = parse_with(text.as_bytes(), format, &mut memo);
                prop_assert!(same_samples(&memo.samples, &plain.samples), "{}", text);
                prop_assert_eq!(summary.malformed, plain.malformed);
                prop_assert_eq!(summary.first_error, plain.first_error);
            }
        }
    }
}
