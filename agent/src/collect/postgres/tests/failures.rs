//! Down servers, dead connections, failing queries, and the runner wiring.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Executor};

use super::*;
use crate::collect::Runner;
use crate::config::{AgentConfig, AggregatorConfig};
use crate::stats::Stats;

#[tokio::test]
async fn unreachable_or_refused_servers_are_down_not_errors() {
    let db = Scratch::new().await;
    let missing_file = PostgresCollectConfig {
        password_file: Some("/nonexistent/vigil.pw".into()),
        ..db.config()
    };
    for config in [
        PostgresCollectConfig {
            url: "postgres://postgres@127.0.0.1:1/postgres".into(),
            ..PostgresCollectConfig::default()
        },
        PostgresCollectConfig {
            url: url_for("vigil_no_such_role", &db.name),
            ..PostgresCollectConfig::default()
        },
        PostgresCollectConfig {
            url: url_for("postgres", "vigil_no_such_database"),
            ..PostgresCollectConfig::default()
        },
        missing_file,
    ] {
        let url = config.url.clone();
        let mut c = PostgresCollector::new(config).expect("collector");
        for _ in 0..2 {
            let s = c
                .collect(&ctx())
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(s.len(), 1, "{url}: {s:#?}");
            assert_eq!(value(&s, "pg_up", None), Some(0.0), "{url}");
            assert_eq!(s[0].label("role"), Some("db"));
        }
    }
}

#[tokio::test]
async fn a_dead_connection_is_replaced_within_the_cycle() {
    let db = Scratch::new().await;
    let mut c = PostgresCollector::new(db.config()).expect("collector");
    collect_ok(&mut c).await;
    let mut admin = admin().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'vigil-agent' AND datname = $1",
    )
    .bind(&db.name)
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert_eq!(killed, [true]);
    collect_ok(&mut c).await;
}

#[tokio::test]
async fn a_query_failing_on_a_live_server_is_a_collector_error() {
    let mut db = Scratch::new().await;
    let role = format!("{}_r", db.name);
    db.role = Some(role.clone());
    admin()
        .await
        .execute(AssertSqlSafe(format!("CREATE ROLE \"{role}\" LOGIN")))
        .await
        .expect("create role");
    // Only in the scratch database: the monitoring role loses a function it needs.
    db.conn()
        .await
        .execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_is_in_recovery() FROM PUBLIC")
        .await
        .expect("revoke");
    let mut c = PostgresCollector::new(PostgresCollectConfig {
        url: url_for(&role, &db.name),
        ..PostgresCollectConfig::default()
    })
    .expect("collector");
    let err = c
        .collect(&ctx())
        .await
        .expect_err("permission denied is an error");
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(c.conn.is_some(), "the connection itself is still good");
}

/// Services down at start-up neither stop the runner nor fail their collectors.
#[tokio::test]
async fn the_runner_starts_db_and_cache_collectors_by_role() {
    let agg = AggregatorConfig::new(vec!["127.0.0.1:1".into()], "localhost", "", "", "", "");
    let mut config = AgentConfig::new("a1", agg);
    config.roles = vec!["api".into(), "db".into(), "cache".into()];
    config.collect.system.enabled = false;
    config.collect.postgres.url = "postgres://postgres@127.0.0.1:1/postgres".into();
    config.collect.redis.url = "redis://127.0.0.1:1".into();
    let mut runner = Runner::from_config(&config, Arc::new(Stats::default())).expect("runner");
    let c = runner.collect().await;
    let find = |name: &str| c.series.iter().find(|s| s.name() == name).expect(name);
    assert_eq!(find("pg_up").points[0].value, 0.0);
    assert_eq!(find("pg_up").label("role"), Some("db"));
    assert_eq!(find("redis_up").points[0].value, 0.0);
    assert_eq!(find("redis_up").label("role"), Some("cache"));
    for name in ["postgres", "redis"] {
        let up = c
            .series
            .iter()
            .find(|s| s.name() == "vigil_agent_collector_up" && s.label("collector") == Some(name));
        assert_eq!(up.map(|s| s.points[0].value), Some(1.0), "{name}");
    }
    assert!(c.metadata.iter().any(|m| m.name == "pg_xact_commit_total"));
    assert!(
        c.metadata
            .iter()
            .any(|m| m.name == "redis_keyspace_hits_total")
    );

    config.roles = vec!["api".into()];
    let mut runner = Runner::from_config(&config, Arc::new(Stats::default())).expect("runner");
    let c = runner.collect().await;
    assert!(
        c.series
            .iter()
            .all(|s| s.name() != "pg_up" && s.name() != "redis_up")
    );
}

/// A TCP listener that accepts connections and never says a word.
async fn silent_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

/// Hung services are reported down within the cycle, even with a 1 s interval
/// and the default 5 s / 3 s timeouts: the runner's budget caps them.
#[tokio::test]
async fn hung_services_are_down_within_a_short_interval() {
    let agg = AggregatorConfig::new(vec!["127.0.0.1:1".into()], "localhost", "", "", "", "");
    let mut config = AgentConfig::new("a1", agg);
    config.roles = vec!["db".into(), "cache".into()];
    config.collect.system.enabled = false;
    config.interval = Duration::from_secs(1);
    config.collect.postgres.url = format!("postgres://postgres@{}/postgres", silent_server().await);
    config.collect.redis.url = format!("redis://{}", silent_server().await);
    let mut runner = Runner::from_config(&config, Arc::new(Stats::default())).expect("runner");
    let c = runner.collect().await;
    let value = |name: &str, collector: Option<&str>| {
        c.series
            .iter()
            .find(|s| {
                s.name() == name && (collector.is_none() || s.label("collector") == collector)
            })
            .map(|s| s.points[0].value)
    };
    assert_eq!(value("pg_up", None), Some(0.0));
    assert_eq!(value("redis_up", None), Some(0.0));
    assert_eq!(
        value("vigil_agent_collector_up", Some("postgres")),
        Some(1.0)
    );
    assert_eq!(value("vigil_agent_collector_up", Some("redis")), Some(1.0));
}
