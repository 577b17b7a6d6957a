//! NaN and Prometheus' staleness marker in the store: kept apart on both
//! databases, by raw reads, rollups and PromQL over data older than the head.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vigil_common::{Label, Point, Series, now_ms};

use super::config::StorageConfig;
use super::index::tests::selector;
use super::rollup::{Bucket, Resolution};
use super::*;
use crate::metrics::StorageMetrics;
use crate::query::source::STALE_NAN_BITS;
use crate::query::{Engine, SelectHints, Source, Value};
use crate::testing::PgTestDb;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Prometheus' ordinary NaN (`value.NormalNaN`).
fn normal_nan() -> f64 {
    f64::from_bits(0x7ff8_0000_0000_0001)
}

fn series(name: &str, points: &[(i64, f64)]) -> Series {
    Series::new(
        name,
        vec![Label::new("job", "j")],
        points
            .iter()
            .map(|&(t, v)| Point {
                timestamp_ms: t,
                value: v,
            })
            .collect(),
    )
}

/// Compares buckets with NaN equal to NaN.
fn same(a: &Bucket, b: &Bucket) -> bool {
    let eq = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    a.series_id == b.series_id
        && a.ts == b.ts
        && eq(a.min, b.min)
        && eq(a.max, b.max)
        && eq(a.sum, b.sum)
        && a.count == b.count
        && eq(a.last, b.last)
}

fn assert_buckets(got: &[Bucket], want: &[Bucket]) {
    assert_eq!(got.len(), want.len(), "{got:?} != {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(same(g, w), "{g:?} != {w:?}");
    }
}

/// Rollups skip stale markers; an ordinary NaN counts, makes the sum NaN,
/// may be last, and is ignored by min / max unless alone.
async fn rollup_suite(store: Arc<dyn Store>) {
    store.migrate().await.expect("migrate");
    let t0 = (now_ms() - 10 * DAY).div_euclid(DAY) * DAY + HOUR;
    let nan = normal_nan();
    let pts = vec![
        // Minute 0: numbers around a NaN, ended by a stale marker.
        (t0, 1.0),
        (t0 + 10_000, nan),
        (t0 + 20_000, 5.0),
        (t0 + 30_000, stale()),
        // Minute 1: only a stale marker: no bucket.
        (t0 + MIN, stale()),
        // Minute 2: the last value is a NaN, the marker before it skipped.
        (t0 + 2 * MIN, 4.0),
        (t0 + 2 * MIN + 10_000, stale()),
        (t0 + 2 * MIN + 20_000, nan),
        // Minute 3: only NaN.
        (t0 + 3 * MIN, f64::NAN),
        // Minute 4: numbers only (negative, so NaN ordering would show),
        // -0 among them (a BLOB on SQLite).
        (t0 + 4 * MIN, -2.0),
        (t0 + 4 * MIN + 30_000, -3.0),
        (t0 + 4 * MIN + 45_000, -0.0),
    ];
    store
        .write_series(&[series("gauge", &pts)])
        .await
        .expect("write");
    let id = store
        .select_series(&[])
        .await
        .expect("series")
        .first()
        .map(|(id, _)| *id)
        .expect("one series");

    store
        .build_rollup(Resolution::Minute, t0, t0 + HOUR)
        .await
        .expect("build 1m");
    store
        .build_rollup(Resolution::Hour, t0, t0 + HOUR)
        .await
        .expect("build 1h");
    let b = |ts, min, max, sum, count, last| Bucket {
        series_id: id,
        ts,
        min,
        max,
        sum,
        count,
        last,
    };
    let minutes = store
        .read_rollup(Resolution::Minute, &[id], t0, t0 + HOUR, 0)
        .await
        .expect("read 1m");
    assert_buckets(
        &minutes,
        &[
            b(t0, 1.0, 5.0, f64::NAN, 3, 5.0),
            b(t0 + 2 * MIN, 4.0, 4.0, f64::NAN, 2, f64::NAN),
            b(t0 + 3 * MIN, f64::NAN, f64::NAN, f64::NAN, 1, f64::NAN),
            b(t0 + 4 * MIN, -3.0, 0.0, -5.0, 3, 0.0),
        ],
    );
    for m in &minutes {
        assert!(
            !crate::query::source::is_stale_marker(m.last),
            "a stale marker is never a bucket's last: {m:?}"
        );
    }
    let hours = store
        .read_rollup(Resolution::Hour, &[id], t0, t0 + HOUR, 0)
        .await
        .expect("read 1h");
    assert_buckets(&hours, &[b(t0, -3.0, 5.0, f64::NAN, 9, 0.0)]);
}

#[tokio::test]
async fn sqlite_rollups_skip_stale_markers() {
    let dir = tempfile::tempdir().expect("tempdir");
    rollup_suite(open("sqlite:v.db", dir.path(), 2).expect("open")).await;
}

#[tokio::test]
async fn postgres_rollups_skip_stale_markers() {
    let db = PgTestDb::create().await.expect("PostgreSQL for tests");
    rollup_suite(open(&db.url, Path::new("."), 2).expect("open")).await;
    db.drop_db().await;
}

/// Rows written by older versions hold NULL for any NaN: read as NaN, and
/// rolled up as an ordinary NaN.
#[tokio::test]
async fn sqlite_null_from_older_versions_is_nan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open("sqlite:v.db", dir.path(), 2).expect("open");
    store.migrate().await.expect("migrate");
    let t0 = (now_ms() - 10 * DAY).div_euclid(HOUR) * HOUR;
    store
        .write_series(&[series("old", &[(t0, 1.0), (t0 + 15_000, 2.0)])])
        .await
        .expect("write");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.path().join("v.db").display()))
        .await
        .expect("pool");
    sqlx::query("UPDATE samples SET value = NULL WHERE ts = ?1")
        .bind(t0 + 15_000)
        .execute(&pool)
        .await
        .expect("as an older version wrote NaN");
    // A value no version writes is a storage error, not a panic.
    sqlx::query("INSERT INTO samples (series_id, ts, value) VALUES (1, ?1, x'01')")
        .bind(t0 + 2 * MIN)
        .execute(&pool)
        .await
        .expect("a broken row");
    pool.close().await;
    let id = store.select_series(&[]).await.expect("series")[0].0;
    assert!(
        store
            .read_samples(&[id], t0, t0 + 3 * MIN, 0)
            .await
            .is_err()
    );

    let got = store
        .read_samples(&[id], t0, t0 + MIN, 0)
        .await
        .expect("read");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (id, t0, 1.0));
    assert!(got[1].2.is_nan() && !crate::query::source::is_stale_marker(got[1].2));
    store
        .build_rollup(Resolution::Minute, t0, t0 + MIN)
        .await
        .expect("build");
    let buckets = store
        .read_rollup(Resolution::Minute, &[id], t0, t0, 0)
        .await
        .expect("read 1m");
    assert_buckets(
        &buckets,
        &[Bucket {
            series_id: id,
            ts: t0,
            min: 1.0,
            max: 1.0,
            sum: f64::NAN,
            count: 2,
            last: f64::NAN,
        }],
    );
}

/// A series that ended with a stale marker 3 h ago (older than the 1 h
/// head, so read from the database) is absent right after it through
/// PromQL (`StoreSource` + `Engine`); one that ended with an ordinary NaN still shows NaN.
async fn promql_suite(inner: Arc<dyn Store>) {
    inner.migrate().await.expect("migrate");
    let now = now_ms();
    let end = now - 3 * HOUR;
    let run = |last: f64| -> Vec<(i64, f64)> {
        let mut pts: Vec<(i64, f64)> = (1..=8).map(|i| (end - i * 15_000, i as f64)).collect();
        pts.reverse();
        pts.push((end, last));
        pts
    };
    inner
        .write_series(&[
            series("ended", &run(stale())),
            series("nan_end", &run(f64::NAN)),
        ])
        .await
        .expect("write");

    let layers = layered(
        inner,
        &StorageConfig {
            head_duration: Duration::from_secs(3600),
            ..StorageConfig::default()
        },
        StorageMetrics::default(),
    );
    layers.store.migrate().await.expect("migrate + warm");
    assert_eq!(layers.head.size().1, 0, "the data is older than the head");
    let from = layers.head.covered_from().expect("warmed");
    assert!(from > end, "{from} <= {end}");

    // The store hands the marker to the engine bit for bit.
    let raw = layers
        .source
        .select(&selector("ended"), end - MIN, end, &SelectHints::default())
        .await
        .expect("select");
    assert_eq!(
        raw[0].samples.last().map(|s| s.1.to_bits()),
        Some(STALE_NAN_BITS)
    );

    let engine = Engine::default();
    let source: &dyn Source = layers.source.as_ref();
    let at = |t: i64, q: &'static str| {
        let engine = engine.clone();
        async move {
            match engine.instant(source, q, t).await.expect("query") {
                Value::Vector(v) => v.into_iter().map(|s| s.value).collect::<Vec<f64>>(),
                other => panic!("{other:?}"),
            }
        }
    };
    // Before the end both series show their value.
    assert_eq!(at(end - 1, "ended").await, vec![1.0]);
    assert_eq!(at(end - 1, "nan_end").await, vec![1.0]);
    // After it the stale one is gone, within the 5-minute lookback.
    for t in [end, end + 1_000, end + 2 * MIN, end + 4 * MIN] {
        assert!(
            at(t, "ended").await.is_empty(),
            "ended still present at {t}"
        );
        let v = at(t, "nan_end").await;
        assert!(v.len() == 1 && v[0].is_nan(), "{v:?} at {t}");
    }
    assert!(at(end + 2 * MIN, "count(ended)").await.is_empty());
    assert_eq!(at(end + 2 * MIN, "count(nan_end)").await, vec![1.0]);
}

#[tokio::test]
async fn sqlite_stale_marker_ends_a_series_in_promql() {
    let dir = tempfile::tempdir().expect("tempdir");
    promql_suite(open("sqlite:v.db", dir.path(), 2).expect("open")).await;
}

#[tokio::test]
async fn postgres_stale_marker_ends_a_series_in_promql() {
    let db = PgTestDb::create().await.expect("PostgreSQL for tests");
    promql_suite(open(&db.url, Path::new("."), 2).expect("open")).await;
    db.drop_db().await;
}
