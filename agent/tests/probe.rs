//! The probe collector against real HTTP(S) servers on 127.0.0.1.

mod support;

use std::time::Duration;

use support::{Reply, closed_port, ctx, serve, tls_acceptor, value};
use vigil_agent::collect::Collector;
use vigil_agent::collect::probe::{ProbeCollector, ProbeConfig, ProbeMethod};
use vigil_common::Series;

async fn probe(config: ProbeConfig) -> Vec<Series> {
    let mut c = ProbeCollector::new(config, Duration::from_secs(60)).expect("collector");
    let series = c
        .collect(&ctx())
        .await
        .expect("a probe never fails the collector");
    for s in &series {
        s.validate().expect("valid");
        assert_eq!(s.label("probe"), Some(c.name()));
    }
    series
}

fn get(s: &[Series], name: &str) -> Option<f64> {
    value(s, name, &[])
}

#[tokio::test]
async fn healthy_and_failing_http_endpoints() {
    let server = serve(Reply::ok("text/plain", "ok\n"), None).await;
    let s = probe(ProbeConfig::new("health", server.url("/health"))).await;
    assert_eq!(get(&s, "probe_success"), Some(1.0));
    assert_eq!(get(&s, "probe_http_status_code"), Some(200.0));
    assert!(get(&s, "probe_duration_seconds").is_some_and(|d| d > 0.0 && d < 2.0));
    assert_eq!(get(&s, "probe_tls_cert_days_left"), None, "plain HTTP");

    let mut head = ProbeConfig::new("head", server.url("/health"));
    head.method = ProbeMethod::Head;
    assert_eq!(get(&probe(head).await, "probe_success"), Some(1.0));
    assert!(
        server
            .requests()
            .last()
            .is_some_and(|r| r.starts_with("HEAD /health "))
    );

    let server = serve(Reply::status(500), None).await;
    let s = probe(ProbeConfig::new("broken", server.url("/"))).await;
    assert_eq!(get(&s, "probe_success"), Some(0.0));
    assert_eq!(get(&s, "probe_http_status_code"), Some(500.0));

    // A 500 that the configuration expects is a success.
    let mut expected = ProbeConfig::new("expects-500", server.url("/"));
    expected.expected_status = vec![500];
    assert_eq!(get(&probe(expected).await, "probe_success"), Some(1.0));

    let url = format!("http://127.0.0.1:{}/", closed_port());
    let s = probe(ProbeConfig::new("refused", url)).await;
    assert_eq!(get(&s, "probe_success"), Some(0.0));
    assert_eq!(get(&s, "probe_http_status_code"), Some(0.0));

    let server = serve(Reply::Hang, None).await;
    let mut hang = ProbeConfig::new("hang", server.url("/"));
    hang.timeout = Duration::from_millis(200);
    let s = probe(hang).await;
    assert_eq!(get(&s, "probe_success"), Some(0.0));
    assert!(get(&s, "probe_duration_seconds").is_some_and(|d| (0.2..2.0).contains(&d)));
}

#[tokio::test]
async fn https_reports_the_leaf_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (acceptor, ca) = tls_acceptor(dir.path(), 30);
    let server = serve(Reply::ok("text/plain", "ok\n"), Some(acceptor)).await;
    let url = format!("https://127.0.0.1:{}/health", server.addr.port());

    let mut config = ProbeConfig::new("aggregator", url.clone());
    config.ca_file = Some(ca);
    config.role = Some("api".into());
    let c = ProbeCollector::new(config.clone(), Duration::from_secs(1)).expect("collector");
    assert_eq!(c.role(), Some("api"));
    let s = probe(config).await;
    assert_eq!(get(&s, "probe_success"), Some(1.0), "{s:#?}");
    assert_eq!(get(&s, "probe_http_status_code"), Some(200.0));
    let days = get(&s, "probe_tls_cert_days_left").expect("days left");
    // Issued just now for 30 days (ctx() is a fixed past time, so compare
    // the expiry with the real clock instead).
    let expiry = get(&s, "probe_tls_cert_expiry_timestamp_seconds").expect("expiry");
    let now = vigil_common::now_ms() as f64 / 1000.0;
    let left = (expiry - now) / 86_400.0;
    assert!((29.9..=30.0).contains(&left), "{left}");
    assert!(
        (days - (expiry - 1_700_000_000.0) / 86_400.0).abs() < 1e-6,
        "{days}"
    );
    let c = ProbeCollector::new(ProbeConfig::new("p", "http://h/"), Duration::from_secs(1));
    assert_eq!(
        c.expect("collector").role(),
        None,
        "the host's role by default"
    );

    // Without the CA the certificate is not trusted: a TLS failure.
    let s = probe(ProbeConfig::new("untrusted", url)).await;
    assert_eq!(get(&s, "probe_success"), Some(0.0));
    assert_eq!(get(&s, "probe_http_status_code"), Some(0.0));
    assert_eq!(get(&s, "probe_tls_cert_days_left"), None);
}
