//! pg_stat_statements: absent, not preloaded, and the ranking query itself.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Executor};

use super::*;

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
