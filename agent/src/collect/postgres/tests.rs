//! Against the real PostgreSQL named by `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test works in its own
//! scratch database (`vigil_t_<unix time>_<random>`, the aggregator tests'
//! naming, so their stale-database sweep also removes ours after a crash).
//! An unreachable server fails the tests with a message; nothing is skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::{AssertSqlSafe, Connection, Executor};

use super::*;
use crate::collect::Runner;
use crate::config::{AgentConfig, AggregatorConfig};
use crate::stats::Stats;

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `admin_url()` with another user and database.
fn url_for(user: &str, db: &str) -> String {
    let opts = PgConnectOptions::from_str(&admin_url()).expect("DATABASE_URL parses");
    format!(
        "postgres://{user}@{}:{}/{db}",
        opts.get_host(),
        opts.get_port()
    )
}

use std::str::FromStr;

async fn admin() -> PgConnection {
    let url = admin_url();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at {url}: {e}. These tests need it: start it \
             (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
             or set DATABASE_URL"
        )
    })
}

/// A scratch database (and optionally a role), dropped when this goes out of
/// scope, even when the test panics.
struct Scratch {
    name: String,
    role: Option<String>,
}

impl Scratch {
    async fn new() -> Scratch {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let suffix: u64 = rand::rng().random();
        let name = format!("vigil_t_{now}_{suffix:016x}");
        admin()
            .await
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create scratch database");
        Scratch { name, role: None }
    }

    fn url(&self) -> String {
        url_for("postgres", &self.name)
    }

    async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("connect to scratch database")
    }

    fn config(&self) -> PostgresCollectConfig {
        PostgresCollectConfig {
            url: self.url(),
            ..PostgresCollectConfig::default()
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (name, role) = (self.name.clone(), self.role.take());
        // Drop runs inside the test's runtime; a thread with its own runtime
        // can still wait for the cleanup.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url()).await?;
                admin
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await?;
                if let Some(role) = role {
                    admin
                        .execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{role}\"")))
                        .await?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .map_err(|e| std::io::Error::other(e.to_string()))
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("cleanup of {} failed: {e}", self.name);
        }
    }
}

fn ctx() -> Context {
    Context::new(vigil_common::now_ms(), "h", "db")
}

fn value(series: &[Series], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    series
        .iter()
        .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.points[0].value)
}

async fn collect_ok(c: &mut PostgresCollector) -> Vec<Series> {
    let series = c.collect(&ctx()).await.expect("collect succeeds");
    assert_eq!(
        value(&series, "pg_up", None),
        Some(1.0),
        "pg_up: {series:#?}"
    );
    series
}

/// Every series is valid, documented in FAMILIES and tagged `role="db"`.
fn check_families(series: &[Series]) {
    let families: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
    for s in series {
        s.validate().expect("valid series");
        assert!(
            families.contains(&s.name.as_str()),
            "undocumented {}",
            s.name
        );
    }
}

#[tokio::test]
async fn counters_follow_real_traffic() {
    let db = Scratch::new().await;
    let mut c = PostgresCollector::new(db.config()).expect("collector");
    let dat = Some(("datname", db.name.as_str()));
    let before = collect_ok(&mut c).await;
    let base = |name: &str| value(&before, name, dat).unwrap_or_else(|| panic!("no {name}"));

    let mut w = db.conn().await;
    w.execute("CREATE TABLE t (id int, v text)")
        .await
        .expect("create");
    w.execute("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 2000) g")
        .await
        .expect("insert");
    for i in 0..300 {
        w.execute(AssertSqlSafe(format!("INSERT INTO t VALUES ({i}, 'c')")))
            .await
            .expect("commit");
    }
    for _ in 0..7 {
        let mut tx = w.begin().await.expect("begin");
        tx.execute("INSERT INTO t VALUES (-1, 'r')")
            .await
            .expect("insert");
        tx.rollback().await.expect("rollback");
    }
    for _ in 0..5 {
        w.execute("SELECT count(*) FROM t").await.expect("read");
    }
    // A backend flushes its statistics when it exits.
    w.close().await.expect("close");

    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let now = collect_ok(&mut c).await;
        let delta = |name: &str| value(&now, name, dat).unwrap_or(0.0) - base(name);
        if delta("pg_xact_rollback_total") >= 7.0 && delta("pg_tup_inserted_total") >= 2307.0 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "counters did not move within 20 s: {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let delta = |name: &str| value(&after, name, dat).expect(name) - base(name);
    // The collector's own queries commit too, but never 300 in a few cycles,
    // and never roll back: swapped or misread columns fail here.
    assert!(
        delta("pg_xact_commit_total") >= 300.0,
        "{}",
        delta("pg_xact_commit_total")
    );
    let rollbacks = delta("pg_xact_rollback_total");
    assert!((7.0..300.0).contains(&rollbacks), "rollbacks {rollbacks}");
    assert!(
        delta("pg_blks_hit_total") >= 1000.0,
        "hits {}",
        delta("pg_blks_hit_total")
    );
    assert!(
        delta("pg_tup_returned_total") >= 5.0 * 2300.0,
        "seq scans read every row"
    );
    assert!(value(&after, "pg_blks_read_total", dat).is_some());
    assert!(value(&after, "pg_deadlocks_total", dat).is_some());
    assert!(value(&after, "pg_temp_bytes_total", dat).is_some());
    assert!(value(&after, "pg_database_size_bytes", dat).expect("size") > 1e6);

    // Server-wide series.
    let mut admin = admin().await;
    let max: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut admin)
        .await
        .expect("show");
    assert_eq!(value(&after, "pg_max_connections", None), max.parse().ok());
    let active = value(&after, "pg_connections", Some(("state", "active"))).expect("active");
    assert!(
        active >= 1.0,
        "the collector's own connection is active: {active}"
    );
    assert!(
        value(
            &after,
            "pg_connections",
            Some(("state", "idle_in_transaction"))
        )
        .is_some()
    );
    assert_eq!(
        value(
            &after,
            "pg_replication_role",
            Some(("replication_role", "primary"))
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "pg_replication_role",
            Some(("replication_role", "replica"))
        ),
        Some(0.0)
    );
    assert!(
        value(&after, "pg_replication_lag_seconds", None).is_none(),
        "not a replica"
    );
    assert!(value(&after, "pg_locks", Some(("mode", "AccessExclusiveLock"))).is_some());
    assert!(value(&after, "pg_locks_waiting", None).is_some());
    assert!(value(&after, "pg_start_time_seconds", None).expect("start") > 1e9);
    assert!(
        after
            .iter()
            .any(|s| s.name == "pg_info" && s.label("version").is_some())
    );
    check_families(&after);

    // One kept connection across all these cycles, named for the DBA.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vigil-agent' AND datname = $1",
    )
    .bind(&db.name)
    .fetch_one(&mut admin)
    .await
    .expect("count");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn long_transactions_and_waiting_locks_are_seen() {
    let db = Scratch::new().await;
    let mut c = PostgresCollector::new(db.config()).expect("collector");
    let mut a = db.conn().await;
    let mut b = db.conn().await;
    a.execute("CREATE TABLE l (id int)").await.expect("create");
    a.execute("BEGIN; LOCK TABLE l IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    // b waits for a's lock, up to 10 s; the collector looks meanwhile.
    let waiter = tokio::spawn(async move {
        let _ = b.execute("SET lock_timeout = '10s'; SELECT * FROM l").await;
        b
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = collect_ok(&mut c).await;
    a.execute("ROLLBACK").await.expect("release");
    waiter.await.expect("waiter");
    assert!(
        value(&s, "pg_locks_waiting", None).expect("waiting") >= 1.0,
        "{s:#?}"
    );
    assert!(value(&s, "pg_longest_transaction_seconds", None).expect("xact") >= 1.0);
    assert!(value(&s, "pg_longest_query_seconds", None).expect("query") >= 1.0);
    assert!(
        value(&s, "pg_connections", Some(("state", "idle_in_transaction"))).expect("idle tx")
            >= 1.0
    );
}

#[tokio::test]
async fn pg_stat_statements_absent_or_not_loaded_is_not_an_error() {
    let db = Scratch::new().await;
    let mut c = PostgresCollector::new(db.config()).expect("collector");
    let s = collect_ok(&mut c).await;
    assert_eq!(value(&s, "pg_stat_statements_available", None), Some(0.0));
    assert!(s.iter().all(|s| !s.name.starts_with("pg_statement_")));

    let mut w = db.conn().await;
    w.execute("CREATE EXTENSION pg_stat_statements")
        .await
        .expect("create extension");
    let preload: String = sqlx::query_scalar("SHOW shared_preload_libraries")
        .fetch_one(&mut w)
        .await
        .expect("show");
    let s = collect_ok(&mut c).await;
    if preload.contains("pg_stat_statements") {
        assert_eq!(value(&s, "pg_stat_statements_available", None), Some(1.0));
        assert!(
            s.iter().any(|s| s.name == "pg_statement_calls_total"),
            "{s:#?}"
        );
    } else {
        // Installed but not loaded: reading the view fails with 55000.
        assert_eq!(value(&s, "pg_stat_statements_available", None), Some(0.0));
    }
    check_families(&s);
}

/// The ranking SQL for both column layouts, run against look-alike tables
/// (the test server cannot preload the real extension).
#[tokio::test]
async fn top_statements_are_summed_ranked_and_labelled() {
    let db = Scratch::new().await;
    let mut w = db.conn().await;
    for (schema, column) in [("s_new", "total_exec_time"), ("s_old", "total_time")] {
        w.execute(AssertSqlSafe(format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.pg_stat_statements
                 (queryid bigint, query text, calls bigint, {column} float8, rows bigint);
             INSERT INTO {schema}.pg_stat_statements VALUES
                 (1, 'SELECT   slow\n FROM  big', 2, 8000, 20),
                 (1, 'SELECT   slow\n FROM  big', 2, 2000, 20),
                 (2, 'SELECT many', 1000, 5000, 1000),
                 (3, 'SELECT tiny', 1, 1, 1),
                 (NULL, 'utility', 1, 99999, 0)"
        )))
        .await
        .expect("fake view");
    }
    let c = PostgresCollector::new(db.config()).expect("collector");
    let mut conn = c.connect().await.expect("connect");
    let limit = Duration::from_secs(5);
    for (schema, version) in [("s_new", "1.10"), ("s_old", "1.7")] {
        let mut config = db.config();
        config.statements_top = 2;
        let mut out = Vec::new();
        statements::top(&mut conn, &ctx(), schema, version, &config, limit, &mut out)
            .await
            .unwrap_or_else(|e| panic!("{schema}: {e:?}"));
        let q1 = Some(("queryid", "1"));
        assert_eq!(
            value(&out, "pg_statement_calls_total", q1),
            Some(4.0),
            "{schema}"
        );
        assert_eq!(
            value(&out, "pg_statement_time_seconds_total", q1),
            Some(10.0)
        );
        assert_eq!(value(&out, "pg_statement_mean_time_seconds", q1), Some(2.5));
        assert_eq!(value(&out, "pg_statement_rows_total", q1), Some(40.0));
        let one = out
            .iter()
            .find(|s| s.label("queryid") == Some("1"))
            .expect("q1");
        assert_eq!(one.label("query"), Some("SELECT slow FROM big"));
        let ids: std::collections::BTreeSet<_> =
            out.iter().filter_map(|s| s.label("queryid")).collect();
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["1", "2"],
            "top 2 by total, NULL id left out"
        );

        config.statements_order_by = crate::config::StatementsOrder::MeanTime;
        config.statements_top = 1;
        let mut out = Vec::new();
        statements::top(&mut conn, &ctx(), schema, version, &config, limit, &mut out)
            .await
            .expect("by mean");
        assert!(
            out.iter().all(|s| s.label("queryid") == Some("1")),
            "{out:#?}"
        );
        assert_eq!(out.len(), 4);
    }
    // The wrong layout is a query error, not silently empty.
    let mut out = Vec::new();
    let wrong = statements::top(
        &mut conn,
        &ctx(),
        "s_old",
        "1.10",
        &db.config(),
        limit,
        &mut out,
    )
    .await;
    assert!(matches!(wrong, Err(queries::QueryError::Sql(..))));
}

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
    let find = |name: &str| c.series.iter().find(|s| s.name == name).expect(name);
    assert_eq!(find("pg_up").points[0].value, 0.0);
    assert_eq!(find("pg_up").label("role"), Some("db"));
    assert_eq!(find("redis_up").points[0].value, 0.0);
    assert_eq!(find("redis_up").label("role"), Some("cache"));
    for name in ["postgres", "redis"] {
        let up = c
            .series
            .iter()
            .find(|s| s.name == "vigil_agent_collector_up" && s.label("collector") == Some(name));
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
            .all(|s| s.name != "pg_up" && s.name != "redis_up")
    );
}
