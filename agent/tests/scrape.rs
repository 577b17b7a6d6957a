//! The scrape collector against real HTTP servers on 127.0.0.1.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Reply, closed_port, ctx, serve, value};
use vigil_agent::AgentConfig;
use vigil_agent::collect::Collector;
use vigil_agent::collect::scrape::{ScrapeCollector, ScrapeConfig};
use vigil_common::{MetricKind, Series};

const TEXT: &str = r#"# HELP http_requests_total Requests by handler, method and status.
# TYPE http_requests_total counter
http_requests_total{handler="/predict",method="POST",status="200"} 1027
http_requests_total{handler="/predict",method="POST",status="500"} 3
http_requests_total{handler="/predict",method="POST",status="200"} 99
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="/predict",le="0.05"} 24054
http_request_duration_seconds_bucket{handler="/predict",le="1"} 33444
http_request_duration_seconds_bucket{handler="/predict",le="+Inf"} 144320
http_request_duration_seconds_sum{handler="/predict"} 53423.5
http_request_duration_seconds_count{handler="/predict"} 144320
# HELP model_inference_duration_seconds Inference latency.
# TYPE model_inference_duration_seconds summary
model_inference_duration_seconds{model="churn",version="v2",quantile="0.5"} 0.012
model_inference_duration_seconds{model="churn",version="v2",quantile="0.99"} 0.2
model_inference_duration_seconds_sum{model="churn",version="v2"} 120.5
model_inference_duration_seconds_count{model="churn",version="v2"} 10000
# TYPE model_accuracy_ratio gauge
model_accuracy_ratio{model="churn",version="v2"} NaN
model_drift_score{model="churn",version="v2"} +Inf
weird_label{path="C:\\DIR\\FILE.TXT",msg="say \"hi\"\nbye"} -Inf
scraped_with_job{job="batch",instance="x:1"} 1
this is garbage
{not="a metric"} 1
model_predictions_total{model="churn" 5
timestamped_gauge 7 1699999999000
"#;

/// Parsed sample lines in TEXT (the duplicate included).
const SAMPLES: f64 = 17.0;
/// Synthetic series per scrape: up, scrape_duration_seconds and 5 more.
const SYNTHETIC: usize = 7;

fn collector(config: ScrapeConfig) -> ScrapeCollector {
    ScrapeCollector::new(config, Duration::from_secs(60)).expect("collector")
}

async fn scrape(c: &mut ScrapeCollector) -> Vec<Series> {
    let series = c
        .collect(&ctx())
        .await
        .expect("a scrape never fails the collector");
    for s in &series {
        s.validate().expect("valid series");
    }
    series
}

fn up(series: &[Series]) -> Option<f64> {
    value(series, "up", &[])
}

#[tokio::test]
async fn prometheus_text_comes_through_exactly() {
    let server = serve(Reply::ok("text/plain; version=0.0.4", TEXT), None).await;
    let mut c = collector(ScrapeConfig::new("api", server.url("/metrics")));
    let s = scrape(&mut c).await;
    let instance = server.addr.to_string();

    let ok = value(&s, "http_requests_total", &[("status", "200")]);
    assert_eq!(ok, Some(1027.0), "first of a duplicate kept");
    let series = s
        .iter()
        .find(|x| x.name == "http_requests_total")
        .expect("counter");
    let labels: Vec<(&str, &str)> = (series.labels.iter())
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("handler", "/predict"),
            ("host", "web-1"),
            ("instance", instance.as_str()),
            ("job", "api"),
            ("method", "POST"),
            ("role", "host"),
            ("status", "200"),
        ]
    );
    let bucket = |le| value(&s, "http_request_duration_seconds_bucket", &[("le", le)]);
    assert_eq!(bucket("0.05"), Some(24054.0));
    assert_eq!(
        bucket("1.0"),
        Some(33444.0),
        "le normalised as Prometheus does"
    );
    assert_eq!(bucket("+Inf"), Some(144320.0));
    assert_eq!(
        value(&s, "http_request_duration_seconds_sum", &[]),
        Some(53423.5)
    );
    assert_eq!(
        value(&s, "http_request_duration_seconds_count", &[]),
        Some(144320.0)
    );
    let q = |q| value(&s, "model_inference_duration_seconds", &[("quantile", q)]);
    assert_eq!((q("0.5"), q("0.99")), (Some(0.012), Some(0.2)));
    let count = value(
        &s,
        "model_inference_duration_seconds_count",
        &[("model", "churn")],
    );
    assert_eq!(count, Some(10000.0));
    assert!(value(&s, "model_accuracy_ratio", &[("version", "v2")]).is_some_and(f64::is_nan));
    assert_eq!(value(&s, "model_drift_score", &[]), Some(f64::INFINITY));
    let weird = [("path", r"C:\DIR\FILE.TXT"), ("msg", "say \"hi\"\nbye")];
    assert_eq!(value(&s, "weird_label", &weird), Some(f64::NEG_INFINITY));
    let exported = [
        ("exported_job", "batch"),
        ("exported_instance", "x:1"),
        ("job", "api"),
    ];
    assert_eq!(value(&s, "scraped_with_job", &exported), Some(1.0));
    let ts = s
        .iter()
        .find(|x| x.name == "timestamped_gauge")
        .expect("gauge");
    assert_eq!(
        ts.points[0].timestamp_ms, 1_699_999_999_000,
        "own timestamp honoured"
    );
    assert!(
        s.iter()
            .filter(|x| x.name != "timestamped_gauge")
            .all(|x| x.points[0].timestamp_ms == ctx().timestamp_ms)
    );

    let synthetic = [("job", "api"), ("instance", instance.as_str())];
    assert_eq!(value(&s, "up", &synthetic), Some(1.0));
    assert_eq!(
        value(&s, "scrape_malformed_lines", &[]),
        Some(4.0),
        "3 bad lines, 1 duplicate"
    );
    assert_eq!(value(&s, "scrape_samples_scraped", &[]), Some(SAMPLES));
    assert_eq!(
        value(&s, "scrape_samples_post_metric_relabeling", &[]),
        Some(SAMPLES)
    );
    assert_eq!(value(&s, "scrape_series_dropped", &[]), Some(0.0));
    assert_eq!(
        value(&s, "scrape_body_size_bytes", &[]),
        Some(TEXT.len() as f64)
    );
    assert!(value(&s, "scrape_duration_seconds", &[]).is_some_and(|d| d > 0.0));
    assert_eq!(s.len(), SAMPLES as usize - 1 + SYNTHETIC);

    let meta = c.metadata();
    let kind = |name: &str| meta.iter().find(|m| m.name == name).map(|m| m.kind);
    assert_eq!(kind("http_requests_total"), Some(MetricKind::Counter));
    assert_eq!(
        kind("http_request_duration_seconds"),
        Some(MetricKind::Histogram)
    );
    assert_eq!(
        kind("model_inference_duration_seconds"),
        Some(MetricKind::Summary)
    );
    assert_eq!(kind("model_accuracy_ratio"), Some(MetricKind::Gauge));
    assert_eq!(kind("up"), Some(MetricKind::Gauge));
    let help = meta
        .iter()
        .find(|m| m.name == "http_request_duration_seconds");
    assert_eq!(help.map(|m| m.help.as_str()), Some("Request latency."));
    assert_eq!((c.name(), c.role()), ("api", Some("api")));

    // The kept-alive connection is reused; OpenMetrics is preferred.
    scrape(&mut c).await;
    assert_eq!((server.connections(), server.requests().len()), (1, 2));
    let request = server.requests()[0].to_lowercase();
    assert!(request.starts_with("get /metrics http/1.1"), "{request}");
    assert!(
        request.contains("accept: application/openmetrics-text;version=1.0.0"),
        "{request}"
    );
}

const OPENMETRICS: &str = r#"# TYPE model_predictions counter
# HELP model_predictions Predictions served.
model_predictions_total{model="churn",version="v2"} 17 # {trace_id="abc123"} 1.0 1700000000.000
model_predictions_created{model="churn",version="v2"} 1699990000.0
# TYPE model_prediction_confidence histogram
model_prediction_confidence_bucket{model="churn",le="0.5"} 2
model_prediction_confidence_bucket{model="churn",le="1.0"} 10
model_prediction_confidence_bucket{model="churn",le="+Inf"} 10 # {trace_id="x"} 0.97
model_prediction_confidence_count{model="churn"} 10
model_prediction_confidence_sum{model="churn"} 8.1
# EOF
"#;

#[tokio::test]
async fn openmetrics_with_exemplars_and_eof() {
    let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let server = serve(Reply::ok(ct, OPENMETRICS), None).await;
    let mut c = collector(ScrapeConfig::new("model", server.url("/metrics")));
    let s = scrape(&mut c).await;
    assert_eq!(up(&s), Some(1.0));
    assert_eq!(value(&s, "scrape_malformed_lines", &[]), Some(0.0));
    assert_eq!(
        value(&s, "model_predictions_total", &[("version", "v2")]),
        Some(17.0)
    );
    assert_eq!(
        value(&s, "model_predictions_created", &[]),
        Some(1_699_990_000.0)
    );
    let bucket = |le| value(&s, "model_prediction_confidence_bucket", &[("le", le)]);
    assert_eq!(
        (bucket("0.5"), bucket("1.0"), bucket("+Inf")),
        (Some(2.0), Some(10.0), Some(10.0))
    );
    assert_eq!(value(&s, "model_prediction_confidence_sum", &[]), Some(8.1));
    assert_eq!(s.len(), 7 + SYNTHETIC);
    let meta = c.metadata();
    let counter = meta
        .iter()
        .find(|m| m.name == "model_predictions_total")
        .expect("meta");
    assert_eq!(
        (counter.kind, counter.help.as_str()),
        (MetricKind::Counter, "Predictions served.")
    );
}

/// A scrape configured through the agent's TOML, relabel rules included.
fn from_toml(scrape: &str) -> ScrapeConfig {
    let text = format!(
        "agent_id = \"a1\"\n[aggregator]\nendpoints = [\"127.0.0.1:1\"]\n\
         server_name = \"localhost\"\nca = \"c\"\ncert = \"c\"\nkey = \"k\"\nsigning_key = \"s\"\n\
         {scrape}"
    );
    let config = AgentConfig::from_toml(&text, Path::new("/")).expect("valid config");
    config
        .collect
        .scrape
        .into_iter()
        .next()
        .expect("one scrape")
}

#[tokio::test]
async fn relabel_rules_rename_drop_and_add() {
    let server = serve(Reply::ok("text/plain", TEXT), None).await;
    let config = from_toml(&format!(
        r#"
[[collect.scrape]]
name = "ml"
url = "{}"
role = "ml"
[[collect.scrape.relabel]]
source_labels = ["__name__"]
regex = "model_(drift_score)"
target_label = "__name__"
replacement = "ml_$1"
[[collect.scrape.relabel]]
action = "drop"
source_labels = ["__name__"]
regex = "weird_.*"
[[collect.scrape.relabel]]
target_label = "env"
replacement = "prod"
[[collect.scrape.relabel]]
action = "labeldrop"
regex = "version"
"#,
        server.url("/metrics")
    ));
    let mut c = collector(config);
    let s = scrape(&mut c).await;
    assert_eq!(up(&s), Some(1.0));
    assert_eq!(c.role(), Some("ml"));
    assert_eq!(
        value(&s, "ml_drift_score", &[("env", "prod"), ("model", "churn")]),
        Some(f64::INFINITY)
    );
    assert!(
        s.iter()
            .all(|x| x.name != "model_drift_score" && x.name != "weird_label")
    );
    assert!(s.iter().all(|x| x.label("version").is_none()));
    let relabelled = s.iter().filter(|x| x.label("env") == Some("prod")).count();
    assert_eq!(
        relabelled,
        SAMPLES as usize - 2,
        "all but the dropped and the duplicate"
    );
    assert!(
        value(&s, "up", &[("env", "prod")]).is_none(),
        "synthetic series are not relabelled"
    );
    assert_eq!(
        value(&s, "scrape_samples_post_metric_relabeling", &[]),
        Some(SAMPLES - 1.0)
    );
}

#[tokio::test]
async fn series_beyond_max_series_are_dropped_and_counted() {
    let server = serve(Reply::ok("text/plain", TEXT), None).await;
    let mut config = ScrapeConfig::new("api", server.url("/metrics"));
    config.max_series = 5;
    let s = scrape(&mut collector(config)).await;
    assert_eq!(up(&s), Some(1.0));
    assert_eq!(s.len(), 5 + SYNTHETIC);
    assert_eq!(
        value(&s, "scrape_series_dropped", &[]),
        Some(SAMPLES - 1.0 - 5.0)
    );
}

/// Scrapes once; asserts `up 0` with the other synthetic series present.
async fn down(config: ScrapeConfig) -> Duration {
    let mut c = collector(config);
    let started = Instant::now();
    let s = scrape(&mut c).await;
    let took = started.elapsed();
    assert_eq!(up(&s), Some(0.0), "{s:#?}");
    assert_eq!(value(&s, "scrape_samples_scraped", &[]), Some(0.0));
    assert!(value(&s, "scrape_duration_seconds", &[]).is_some());
    assert_eq!(s.len(), SYNTHETIC);
    took
}

#[tokio::test]
async fn failures_give_up_zero() {
    // Unreachable port.
    let url = format!("http://127.0.0.1:{}/metrics", closed_port());
    assert!(down(ScrapeConfig::new("gone", url)).await < Duration::from_secs(2));

    // Non-2xx.
    let server = serve(Reply::status(503), None).await;
    down(ScrapeConfig::new("busy", server.url("/metrics"))).await;

    // A server that never answers: up 0 once the timeout has passed.
    let server = serve(Reply::Hang, None).await;
    let mut config = ScrapeConfig::new("hang", server.url("/metrics"));
    config.timeout = Duration::from_millis(300);
    let took = down(config).await;
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // A body over the cap, announced by Content-Length.
    let big = format!("{}\n", "a_metric 1\n".repeat(20_000));
    let server = serve(Reply::ok("text/plain", &big), None).await;
    let mut config = ScrapeConfig::new("big", server.url("/metrics"));
    config.max_body_bytes = 64 * 1024;
    down(config).await;

    // An endless chunked body: refused once past the cap, long before the
    // timeout, so the cap is enforced while streaming.
    let server = serve(Reply::Endless, None).await;
    let mut config = ScrapeConfig::new("endless", server.url("/metrics"));
    config.max_body_bytes = 64 * 1024;
    config.timeout = Duration::from_secs(30);
    assert!(down(config).await < Duration::from_secs(5));
}

#[tokio::test]
async fn an_own_interval_skips_cycles() {
    let server = serve(Reply::ok("text/plain", "a 1\n"), None).await;
    let mut config = ScrapeConfig::new("slow", server.url("/m"));
    config.interval = Some(Duration::from_secs(3600));
    let mut c = collector(config);
    assert_eq!(up(&scrape(&mut c).await), Some(1.0));
    assert!(scrape(&mut c).await.is_empty());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_connection_closed_by_the_server_is_replaced() {
    let server = serve(Reply::Close("a 1\n".into()), None).await;
    let mut c = collector(ScrapeConfig::new("closing", server.url("/m")));
    for _ in 0..3 {
        assert_eq!(up(&scrape(&mut c).await), Some(1.0));
        // Let the client notice the close, as it would between cycles.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((server.connections(), server.requests().len()), (3, 3));
    // Even when the close is noticed only on the next request.
    for _ in 0..3 {
        assert_eq!(up(&scrape(&mut c).await), Some(1.0));
    }
}

/// Through the runner, as the agent runs it: the scrape's own role, its
/// collector health, and a dead target not failing the collector.
#[tokio::test]
async fn the_runner_runs_configured_scrapes() {
    use std::sync::Arc;
    use vigil_agent::collect::Runner;
    use vigil_agent::{AggregatorConfig, Stats};

    let server = serve(Reply::ok("text/plain", TEXT), None).await;
    let agg = AggregatorConfig::new(vec!["127.0.0.1:1".into()], "localhost", "c", "c", "k", "s");
    let mut config = AgentConfig::new("a1", agg);
    config.host = "web-1".into();
    config.roles = vec!["api".into()];
    config.collect.system.enabled = false;
    let mut ml = ScrapeConfig::new("ml", server.url("/metrics"));
    ml.role = "ml".into();
    let gone = format!("http://127.0.0.1:{}/metrics", closed_port());
    config.collect.scrape = vec![ml, ScrapeConfig::new("gone", gone)];
    let mut runner = Runner::from_config(&config, Arc::new(Stats::default())).expect("runner");
    let c = runner.collect().await;
    let s = &c.series.iter().map(|s| s.to_series()).collect::<Vec<_>>();
    assert_eq!(
        value(
            s,
            "http_requests_total",
            &[("status", "500"), ("role", "ml")]
        ),
        Some(3.0)
    );
    assert_eq!(value(s, "up", &[("job", "ml"), ("role", "ml")]), Some(1.0));
    assert_eq!(
        value(s, "up", &[("job", "gone"), ("role", "api")]),
        Some(0.0)
    );
    let health = |name| value(s, "vigil_agent_collector_up", &[("collector", name)]);
    assert_eq!((health("ml"), health("gone")), (Some(1.0), Some(1.0)));
    assert!(
        c.metadata
            .iter()
            .any(|m| m.name == "http_request_duration_seconds")
    );
}
