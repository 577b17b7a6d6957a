//! docs/metrics.md lists every metric the agent emits: the real collectors
//! (system, PostgreSQL, Redis, a scrape, a probe, the agent's own) run
//! through the agent's `Runner`, and every family they declare (their
//! metadata, complete even when the service is down) and every series name
//! they produce must have a row in the page's tables.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use vigil_agent::collect::Runner;
use vigil_agent::collect::probe::ProbeConfig;
use vigil_agent::collect::scrape::ScrapeConfig;
use vigil_agent::{AgentConfig, AggregatorConfig, Stats};

use super::read;

/// The metric names of the page's table rows (`| \`name\` | ...`).
fn documented(md: &str) -> BTreeSet<String> {
    md.lines()
        .filter_map(|l| l.trim().strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect()
}

/// A histogram's series name -> its family name.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_md_lists_every_metric_the_agent_emits() {
    // Nothing listens on port 1: PostgreSQL, Redis, the scrape and the probe
    // fail (their `*_up`/`up`/`probe_success` series say so) and still
    // declare their families.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &str| dir.path().join(f);
    let aggregator = AggregatorConfig::new(
        vec!["127.0.0.1:1".into()],
        "localhost",
        p("ca.crt"),
        p("a.crt"),
        p("a.key"),
        p("a.sign.key"),
    );
    let mut config = AgentConfig::new("docs-1", aggregator);
    config.roles = vec!["db".into(), "cache".into()];
    config.interval = Duration::from_secs(1);
    config.collect.postgres.url = "postgres://postgres@127.0.0.1:1/postgres".into();
    config.collect.postgres.connect_timeout = Duration::from_millis(200);
    config.collect.redis.url = "redis://127.0.0.1:1".into();
    config.collect.redis.connect_timeout = Duration::from_millis(200);
    config.collect.scrape = vec![ScrapeConfig::new("api", "http://127.0.0.1:1/metrics")];
    config.collect.probe = vec![ProbeConfig::new("health", "http://127.0.0.1:1/health")];
    let mut runner = Runner::from_config(&config, Arc::new(Stats::default())).expect("runner");

    let (mut families, mut series) = (BTreeSet::new(), BTreeSet::new());
    // Two cycles: rates (CPU, disk, network) need a previous reading.
    for _ in 0..2 {
        let c = runner.collect().await;
        families.extend(c.metadata.iter().map(|m| m.name.clone()));
        series.extend(c.series.iter().map(|s| s.name().to_string()));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let emitted: BTreeSet<&String> = families.iter().chain(&series).collect();
    for must in [
        "system_cpu_usage_ratio",
        "pg_up",
        "redis_up",
        "up",
        "probe_success",
        "vigil_agent_batches_sent_total",
    ] {
        assert!(
            emitted.contains(&must.to_string()),
            "{must} not emitted: {emitted:?}"
        );
    }
    let doc = documented(&read("docs/metrics.md"));
    let missing: BTreeSet<&String> = families
        .iter()
        .filter(|f| !doc.contains(*f))
        .chain(
            series
                .iter()
                .filter(|s| !doc.contains(*s) && !doc.contains(family(s))),
        )
        .collect();
    assert!(
        missing.is_empty(),
        "emitted by the agent but not in docs/metrics.md: {missing:?}"
    );
}

/// And every metric a running aggregator serves at `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_md_lists_every_metric_the_aggregator_serves() {
    let agg = vigil_tests::TestAggregator::start(vigil_tests::Db::Sqlite).await;
    let text = reqwest::get(agg.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    agg.stop().await;
    let names: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    assert!(
        names.contains("vigil_aggregator_batches_committed_total"),
        "{text}"
    );
    let doc = documented(&read("docs/metrics.md"));
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !doc.contains(**n) && !doc.contains(family(n)))
        .collect();
    assert!(
        missing.is_empty(),
        "served at /metrics but not in docs/metrics.md: {missing:?}"
    );
}
