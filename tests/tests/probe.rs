//! The freshness and alert-latency probe (`vigil-probe`'s library) against
//! a real aggregator over real QUIC, HTTP, WebSocket and webhook delivery,
//! on both databases: every sample it sends is seen on the query API and
//! the live socket, every threshold crossing is notified, and the latencies
//! are plausible.

use std::time::Duration;

use vigil_tests::loadgen::fleet;
use vigil_tests::probe::{self, Plan, Report, config};
use vigil_tests::{Db, TestAggregator};

/// Starts an aggregator configured for the probe (its rule file and notify
/// config, a 250 ms live interval, no API rate limits), runs the probe for
/// `seconds` and returns what it measured.
async fn probe_run(db: Db, seconds: u64) -> Report {
    let dir = tempfile::tempdir().expect("tempdir");
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("webhook listener");
    let url = config::webhook_url(webhook.local_addr().expect("addr"));
    config::write(dir.path(), &url, Duration::from_millis(250)).expect("probe config");
    let sections = format!(
        "[alerting]\nrule_files = [{:?}]\nevaluation_interval = \"1s\"\n\
         [notify]\nconfig_file = {:?}\n\
         [dashboard]\nlive_interval = \"250ms\"\n",
        dir.path().join(config::RULES_FILE),
        dir.path().join(config::NOTIFY_FILE),
    );
    let http = "rate_limit_per_token = { per_second = 0, burst = 1 }\n\
                rate_limit_per_ip = { per_second = 0, burst = 1 }";
    let agg = TestAggregator::start_configured(db, http, &sections).await;
    assert!(
        agg.running()
            .wait_store_ready(Duration::from_secs(30))
            .await
    );
    let token = agg.token().await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut me = fleet::prepare(agg.pki.path(), work.path(), &["probe-test".to_string()])
        .expect("identity")
        .pop()
        .expect("one identity");
    me.host = "probe-test.probe".into();
    me.role = probe::agent::ROLE;
    let store = agg.running().state.store.clone();
    fleet::register(store.as_ref(), std::slice::from_ref(&me))
        .await
        .expect("register");

    let mut plan = Plan::new(agg.quic, agg.http, token.clone());
    plan.duration = Duration::from_secs(seconds);
    plan.lanes = 2;
    plan.grace = Duration::from_secs(15);
    let report = probe::run(plan, me, webhook).await.expect("probe runs");

    // The dashboard user the probe signed in as is gone again.
    let users: serde_json::Value = reqwest::Client::new()
        .get(agg.url("/api/v1/users"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("users")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = users["users"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !names.iter().any(|n| n.starts_with("vigil-probe-")),
        "{names:?}"
    );
    agg.stop().await;
    report
}

fn assert_measured(report: &Report, seconds: usize) {
    println!("{report}");
    assert!(report.complete(), "{report}");
    // One batch a second: about `seconds` measured samples, each seen on
    // every path.
    assert!(
        (seconds - 1..=seconds + 2).contains(&report.query.expected),
        "{report}"
    );
    for p in [&report.ack, &report.query, &report.live] {
        assert_eq!(p.seen(), p.expected, "{report}");
        assert!(p.quantile(1.0) < Duration::from_secs(10), "{report}");
    }
    assert!(report.query.quantile(0.5) > Duration::ZERO, "{report}");
    assert!(report.live.quantile(0.5) > Duration::ZERO, "{report}");
    // Crossings: every one notified, with the alert's start (the rule
    // evaluation that saw it) known and before the webhook arrived.
    assert!(report.alert.expected >= 2, "{report}");
    assert_eq!(report.alert.seen(), report.alert.expected, "{report}");
    assert_eq!(report.alert_eval.seen(), report.alert.expected, "{report}");
    assert!(
        report.alert_eval.quantile(1.0) <= report.alert.quantile(1.0) + Duration::from_millis(1)
    );
    // All but the lanes' last crossings were resolved before the next.
    assert!(report.resolved + 2 >= report.alert.expected, "{report}");
    assert!(report.result_line().contains("complete=true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_sees_every_sample_and_crossing_on_sqlite() {
    let report = probe_run(Db::Sqlite, 6).await;
    assert_measured(&report, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_sees_every_sample_and_crossing_on_postgres() {
    let report = probe_run(Db::Postgres, 6).await;
    assert_measured(&report, 6);
}
