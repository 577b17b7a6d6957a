//! Counters and gauges follow what real sessions do.

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, Executor};

use super::*;

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
        "commits moved by {}, expected >= 300",
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
