//! The query read path (index, store reads, head, rollups, retention) against
//! both real databases, checked against `MemorySource`, the reference
//! semantics of a `Source`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vigil_common::wire::PROTOCOL_VERSION;
use vigil_common::{BatchHeader, Label, Point, Series, now_ms};

use super::config::StorageConfig;
use super::index::tests::selector;
use super::reader::StoreSource;
use super::rollup::{Resolution, Rollups};
use super::*;
use crate::metrics::StorageMetrics;
use crate::query::{MemorySource, Need, RawSeries, SelectHints, Source, SourceError};
use crate::testing::PgTestDb;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn series(name: &str, labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    Series::new(
        name,
        labels.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
        points
            .iter()
            .map(|&(t, v)| Point {
                timestamp_ms: t,
                value: v,
            })
            .collect(),
    )
}

fn memory_of(data: &[Series]) -> MemorySource {
    let mut mem = MemorySource::new();
    for s in data {
        let labels = head::series_labels(s);
        for p in &s.points {
            mem.push(&labels, p.timestamp_ms, p.value);
        }
    }
    mem
}

/// Three series over the last 3 h, a sample every 10 minutes.
fn recent_data(now: i64) -> Vec<Series> {
    let pts = |k: f64| -> Vec<(i64, f64)> {
        (0..=18)
            .map(|i| (now - 3 * HOUR + i * 10 * MIN, k + i as f64))
            .collect()
    };
    vec![
        series("up", &[("host", "a"), ("role", "db")], &pts(1.0)),
        series("up", &[("host", "b")], &pts(100.0)),
        series("cpu", &[("host", "a")], &pts(1000.0)),
    ]
}

const SELECTORS: [&str; 7] = [
    "up",
    r#"up{host="a"}"#,
    r#"up{host!="a"}"#,
    r#"{host=~"a|b"}"#,
    r#"{__name__=~"up|cpu", host!~"b"}"#,
    r#"up{role=""}"#,
    r#"nothing{host="a"}"#,
];

/// Every selector over several ranges gives what `MemorySource` gives.
async fn same_as_memory(source: &dyn Source, mem: &MemorySource, now: i64, what: &str) {
    let ranges = [
        (now - 4 * HOUR, now),
        (now - 30 * MIN, now),
        (now - 2 * HOUR - 5 * MIN, now - 50 * MIN),
        (now - 3 * HOUR, now - 3 * HOUR),
        (now + MIN, now + HOUR),
    ];
    let hints = SelectHints::default();
    for q in SELECTORS {
        let ms = selector(q);
        for (start, end) in ranges {
            let got = source
                .select(&ms, start, end, &hints)
                .await
                .expect("select");
            let mut want = mem.select(&ms, start, end, &hints).await.expect("memory");
            // The order of series is not part of the contract; ours is by labels.
            want.sort_by(|a, b| a.labels.cmp(&b.labels));
            assert_eq!(got, want, "{what}: {q} over [{start}, {end}]");
        }
        let got = source
            .series(std::slice::from_ref(&ms), now - 4 * HOUR, now, usize::MAX)
            .await
            .expect("series");
        let want = mem
            .series(&[ms], now - 4 * HOUR, now, usize::MAX)
            .await
            .expect("memory");
        assert_eq!(got, want, "{what}: series {q}");
    }
    assert_eq!(
        source
            .label_names(&[], now - HOUR, now)
            .await
            .expect("names"),
        vec!["__name__", "host", "role"]
    );
    assert_eq!(
        source
            .label_values("host", &[selector("up")], now - HOUR, now)
            .await
            .expect("values"),
        vec!["a", "b"]
    );
}

fn config(head: Duration, max_series: usize) -> StorageConfig {
    StorageConfig {
        head_duration: head,
        head_max_series: max_series,
        ..StorageConfig::default()
    }
}

async fn read_suite(open_store: impl Fn() -> Arc<dyn Store>) {
    let now = now_ms();
    let data = recent_data(now);
    let mem = memory_of(&data);

    // The store alone (a head that is not warmed covers nothing).
    let inner = open_store();
    inner.migrate().await.expect("migrate");
    assert_eq!(inner.write_series(&data).await.expect("write"), 57);
    let cold = Arc::new(head::Head::new(
        Duration::from_secs(3600),
        10,
        StorageMetrics::default(),
    ));
    let store_only = StoreSource::new(inner.clone(), cold, None);
    same_as_memory(&store_only, &mem, now, "store only").await;

    // Limits stop the read.
    let up = selector("up");
    let err = store_only
        .select(
            &up,
            now - 4 * HOUR,
            now,
            &SelectHints {
                max_series: 1,
                ..SelectHints::default()
            },
        )
        .await
        .expect_err("two series");
    assert!(
        matches!(err, SourceError::TooManySeries { limit: 1 }),
        "{err}"
    );
    let err = store_only
        .select(
            &up,
            now - 4 * HOUR,
            now,
            &SelectHints {
                max_samples: 20,
                ..SelectHints::default()
            },
        )
        .await
        .expect_err("38 samples");
    assert!(
        matches!(err, SourceError::TooManySamples { limit: 20 }),
        "{err}"
    );

    // Values come back bit for bit from the store (not the head), NaNs
    // too: Rust's NaN, Prometheus' ordinary NaN and its staleness marker.
    let tricky = [
        0.1,
        1.0 / 3.0,
        1e300,
        -2.5e-300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        123_456_789.123_456_78,
        f64::NAN,
        f64::from_bits(0x7ff8_0000_0000_0001),
        f64::from_bits(crate::query::source::STALE_NAN_BITS),
        -0.0,
    ];
    let precise: Vec<(i64, f64)> = tricky
        .iter()
        .enumerate()
        .map(|(i, &v)| (now - 3 * HOUR + i as i64, v))
        .collect();
    inner
        .write_series(&[series("precise", &[], &precise)])
        .await
        .expect("write");
    let got = store_only
        .select(
            &selector("precise"),
            now - 4 * HOUR,
            now,
            &SelectHints::default(),
        )
        .await
        .expect("select");
    assert_eq!(got[0].samples.len(), tricky.len());
    for ((_, got), want) in got[0].samples.iter().zip(tricky) {
        assert_eq!(got.to_bits(), want.to_bits(), "{got} != {want}");
    }

    // Head of 1 h in front of the store, warmed at migrate.
    let metrics = StorageMetrics::default();
    let layers = layered(
        inner.clone(),
        &config(Duration::from_secs(3600), 10),
        metrics.clone(),
    );
    layers.store.migrate().await.expect("migrate + warm");
    let from = layers.head.covered_from().expect("warmed");
    assert!((now - HOUR..=now_ms() - HOUR).contains(&from));
    // 6 or 7 samples per series lie in the last hour (every 10 min).
    let (series_n, samples_n) = layers.head.size();
    assert_eq!(series_n, 3);
    assert!((18..=21).contains(&samples_n), "{samples_n}");
    assert_eq!(metrics.head_series.get(), 3);
    same_as_memory(layers.source.as_ref(), &mem, now, "head + store").await;

    // Recent ranges are served by the head: a row written behind its back
    // is not seen there, but is by the store alone.
    let sneaky = series("up", &[("host", "b")], &[(now - 5 * MIN, -1.0)]);
    inner
        .write_series(std::slice::from_ref(&sneaky))
        .await
        .expect("write behind the head");
    let hb = selector(r#"up{host="b"}"#);
    let via_head = layers
        .source
        .select(&hb, now - 20 * MIN, now, &SelectHints::default())
        .await
        .expect("select");
    assert!(via_head[0].samples.iter().all(|&(_, v)| v != -1.0));
    let via_store = store_only
        .select(&hb, now - 20 * MIN, now, &SelectHints::default())
        .await
        .expect("select");
    assert!(via_store[0].samples.iter().any(|&(_, v)| v == -1.0));
    // Put head and reference in line with the database again.
    layers.head.append(std::slice::from_ref(&sneaky));
    let mut mem = mem;
    mem.push(&head::series_labels(&sneaky), now - 5 * MIN, -1.0);

    // Writes through the head are appended once committed; a duplicate
    // batch is not appended again.
    let header = BatchHeader {
        protocol_version: PROTOCOL_VERSION,
        agent_id: "a1".into(),
        boot_id: [1; 16],
        sequence: 1,
        created_at_ms: now,
        host: "a".into(),
        roles: vec!["db".into()],
    };
    let fresh = vec![series("cpu", &[("host", "a")], &[(now - MIN, 5.5)])];
    let before = layers.head.size().1;
    layers
        .store
        .commit_batch(&header, &fresh)
        .await
        .expect("commit");
    layers
        .store
        .commit_batch(&header, &fresh)
        .await
        .expect("duplicate");
    assert_eq!(layers.head.size().1, before + 1);
    mem.push(&head::series_labels(&fresh[0]), now - MIN, 5.5);
    let other = series("new_metric", &[("host", "c")], &[(now - MIN, 1.0)]);
    layers
        .store
        .write_series(std::slice::from_ref(&other))
        .await
        .expect("write");
    mem.push(&head::series_labels(&other), now - MIN, 1.0);
    assert_eq!(layers.head.size().0, 4);
    let got = layers
        .source
        .select(
            &selector("new_metric"),
            now - HOUR,
            now,
            &SelectHints::default(),
        )
        .await
        .expect("select");
    assert_eq!(got[0].samples, vec![(now - MIN, 1.0)]);

    // Trimming moves the covered range; the store fills what the head let go.
    layers.head.trim(now + 30 * MIN);
    assert_eq!(layers.head.covered_from(), Some(now - 30 * MIN));
    same_as_memory(layers.source.as_ref(), &mem, now, "after trim").await;

    // A restart warms a new head from the store; a head capped at 2 series
    // refuses the rest, which are read from the store.
    let restarted = open_store();
    let metrics = StorageMetrics::default();
    let capped = layered(
        restarted,
        &config(Duration::from_secs(3600), 2),
        metrics.clone(),
    );
    capped.store.migrate().await.expect("migrate + warm");
    assert_eq!(capped.head.size().0, 2);
    assert_eq!(metrics.head_series_refused.get(), 2);
    same_as_memory(
        capped.source.as_ref(),
        &mem,
        now,
        "capped head after restart",
    )
    .await;
}

/// Opens (again, on each call) one fresh SQLite file, kept while the
/// folder lives.
fn sqlite_opener() -> (tempfile::TempDir, impl Fn() -> Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_path_buf();
    (dir, move || open("sqlite:v.db", &base, 4).expect("open"))
}

/// Opens (again, on each call) one fresh PostgreSQL database; drop it with
/// `drop_db` at the end.
async fn postgres_opener() -> (PgTestDb, impl Fn() -> Arc<dyn Store>) {
    let db = PgTestDb::create().await.expect("PostgreSQL for tests");
    let url = db.url.clone();
    (db, move || open(&url, Path::new("."), 4).expect("open"))
}

#[tokio::test]
async fn sqlite_reads() {
    let (_dir, open_store) = sqlite_opener();
    read_suite(open_store).await;
}

#[tokio::test]
async fn postgres_reads() {
    let (db, open_store) = postgres_opener().await;
    read_suite(open_store).await;
    db.drop_db().await;
}

/// The newest real sample per series (`last_over_time` at one timestamp)
/// and the newest sample (an instant selector): read from the store in a
/// few rows per series, past staleness markers, through the head and from
/// the store alone, as `MemorySource` answers.
async fn last_real_suite(open_store: impl Fn() -> Arc<dyn Store>) {
    let now = now_ms();
    let stale = f64::from_bits(crate::query::source::STALE_NAN_BITS);
    let mut gone = vec![(now - 50 * MIN, 1.0), (now - 40 * MIN, 2.0)];
    // More markers than the first probe reads: the whole range is read.
    gone.extend((0..5).map(|k| (now - 30 * MIN + k * MIN, stale)));
    let data = [
        series("s", &[("host", "gone")], &gone),
        series(
            "s",
            &[("host", "flap")],
            &[
                (now - 20 * MIN, 1.0),
                (now - 10 * MIN, stale),
                (now - 5 * MIN, 3.0),
                (now - MIN, stale),
            ],
        ),
        series("s", &[("host", "marker")], &[(now - 10 * MIN, stale)]),
        series("s", &[("host", "nan")], &[(now - 2 * MIN, f64::NAN)]),
    ];
    let mem = memory_of(&data);
    let inner = open_store();
    inner.migrate().await.expect("migrate");
    inner.write_series(&data).await.expect("write");
    let ids: Vec<i64> = inner
        .select_series(&selector("s"))
        .await
        .expect("select")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 4);

    // The newest rows: at most n per series, newest first in time.
    let newest = inner
        .read_newest(&ids, now - HOUR, now, 2)
        .await
        .expect("newest");
    let mut times: Vec<i64> = newest.iter().map(|r| r.1).collect();
    times.sort_unstable();
    assert_eq!(
        times,
        [27, 26, 10, 5, 2, 1].map(|m| now - m * MIN),
        "{newest:?}"
    );
    assert!(
        inner
            .read_newest(&ids, now, now - 1, 4)
            .await
            .expect("empty")
            .is_empty()
    );
    assert!(
        inner
            .read_newest(&[], now - HOUR, now, 4)
            .await
            .expect("no ids")
            .is_empty()
    );

    let mut got = reader::last_real(inner.as_ref(), &ids, now - HOUR, now)
        .await
        .expect("last real");
    got.sort_by_key(|r| r.1);
    let got: Vec<(i64, u64)> = got.iter().map(|&(_, t, v)| (t, v.to_bits())).collect();
    assert_eq!(
        got,
        vec![
            (now - 40 * MIN, 2.0f64.to_bits()),
            (now - 5 * MIN, 3.0f64.to_bits()),
            (now - 2 * MIN, f64::NAN.to_bits()),
        ]
    );

    let last_real = SelectHints {
        last_real_only: true,
        ..SelectHints::default()
    };
    let last = SelectHints {
        latest_only: true,
        ..SelectHints::default()
    };
    let ranges = [
        (now - HOUR, now),
        (now - 45 * MIN, now - 6 * MIN),
        (now - 35 * MIN, now - 26 * MIN),
        (now - 15 * MIN, now),
        (now + MIN, now + HOUR),
    ];
    let cold = Arc::new(head::Head::new(
        Duration::from_secs(3600),
        10,
        StorageMetrics::default(),
    ));
    let store_only = StoreSource::new(inner.clone(), cold, None);
    // A 30-minute head: `gone` holds only markers there, so its real
    // sample comes from the store before the head.
    let layers = layered(
        inner.clone(),
        &config(Duration::from_secs(1800), 10),
        StorageMetrics::default(),
    );
    layers.store.migrate().await.expect("migrate + warm");
    for (what, source) in [
        ("store only", &store_only as &dyn Source),
        ("head + store", layers.source.as_ref()),
    ] {
        for ((start, end), hints) in ranges
            .into_iter()
            .flat_map(|r| [(r, &last_real), (r, &last)])
        {
            let got = source
                .select(&selector("s"), start, end, hints)
                .await
                .expect("select");
            let mut want = mem
                .select(&selector("s"), start, end, hints)
                .await
                .expect("memory");
            want.sort_by(|a, b| a.labels.cmp(&b.labels));
            let bits = |v: &[RawSeries]| -> Vec<(String, Vec<(i64, u64)>)> {
                v.iter()
                    .map(|s| {
                        (
                            format!("{:?}", s.labels),
                            s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
                        )
                    })
                    .collect()
            };
            assert_eq!(
                bits(&got),
                bits(&want),
                "{what} over [{start}, {end}], {:?}",
                hints.need()
            );
        }
    }
}

#[tokio::test]
async fn sqlite_last_real_reads() {
    let (_dir, open_store) = sqlite_opener();
    last_real_suite(open_store).await;
}

#[tokio::test]
async fn postgres_last_real_reads() {
    let (db, open_store) = postgres_opener().await;
    last_real_suite(open_store).await;
    db.drop_db().await;
}

/// Old data: raw samples 20 and 16 days ago, beyond a 15-day raw retention;
/// 1-minute rollups kept 18 days, 1-hour ones a year.
async fn rollup_suite(store: Arc<dyn Store>) -> StorageMetrics {
    store.migrate().await.expect("migrate");
    let now = now_ms();
    // 01:00 UTC on those days, so the 2 hours stay inside one day partition.
    let day20 = (now - 20 * DAY).div_euclid(DAY) * DAY + HOUR;
    let day16 = (now - 16 * DAY).div_euclid(DAY) * DAY + HOUR;
    // Every 15 s for 2 hours: value = index, so a minute's last is 4k+3.
    let pts =
        |t0: i64| -> Vec<(i64, f64)> { (0..480).map(|i| (t0 + i * 15_000, i as f64)).collect() };
    let old = vec![
        series("load", &[("host", "a")], &pts(day20)),
        series("load", &[("host", "a")], &pts(day16)),
        series("load", &[("host", "a")], &[(now - MIN, 7.0)]),
    ];
    assert_eq!(store.write_series(&old).await.expect("write"), 961);

    let metrics = StorageMetrics::default();
    let cfg = StorageConfig {
        retention_raw: Duration::from_secs(15 * 86_400),
        retention_1m: Duration::from_secs(18 * 86_400),
        retention_1h: Duration::from_secs(365 * 86_400),
        ..StorageConfig::default()
    };
    let rollups = Arc::new(Rollups::new(store.clone(), cfg, metrics.clone()));
    rollups.run_once(now).await.expect("rollups + retention");
    for res in Resolution::ALL {
        let wm = store
            .rollup_watermark(res)
            .await
            .expect("watermark")
            .expect("set");
        assert!(wm <= now - rollup::SETTLE_MS && wm > now - rollup::SETTLE_MS - res.ms());
    }
    // Raw samples older than 15 days are gone; the recent one stays.
    assert_eq!(store.count_samples(None).await.expect("count"), 1);
    // Running again changes nothing.
    rollups.run_once(now).await.expect("again");

    let head = Arc::new(head::Head::new(
        Duration::from_secs(3600),
        10,
        metrics.clone(),
    ));
    let source = StoreSource::new(store.clone(), head, Some(rollups.clone()));
    let ms = selector("load");
    // 16 days ago: 1-minute buckets (last value at the bucket start).
    let got = source
        .select(&ms, day16, day16 + 2 * HOUR - 1, &SelectHints::default())
        .await
        .expect("select");
    let want: Vec<(i64, f64)> = (0..120)
        .map(|m| (day16 + m * MIN, (4 * m + 3) as f64))
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, want);
    // max_over_time reads the bucket max (the same here), avg the mean.
    let got = source
        .select(
            &ms,
            day16,
            day16 + MIN - 1,
            &SelectHints {
                func: Some("avg_over_time".into()),
                ..SelectHints::default()
            },
        )
        .await
        .expect("select avg");
    assert_eq!(got[0].samples, vec![(day16, 1.5)]);
    // 20 days ago the 1-minute rollups are gone too: 1-hour buckets.
    let got = source
        .select(&ms, day20 - HOUR, day20 + 3 * HOUR, &SelectHints::default())
        .await
        .expect("select");
    assert_eq!(got[0].samples, vec![(day20, 239.0), (day20 + HOUR, 479.0)]);
    let got = source
        .select(
            &ms,
            day20,
            day20 + 3 * HOUR,
            &SelectHints {
                func: Some("min_over_time".into()),
                ..SelectHints::default()
            },
        )
        .await
        .expect("select min");
    assert_eq!(got[0].samples, vec![(day20, 0.0), (day20 + HOUR, 240.0)]);
    // A range spanning everything: hourly, minutely, then the raw sample.
    let all = source
        .select(&ms, now - 30 * DAY, now, &SelectHints::default())
        .await
        .expect("select all");
    assert_eq!(all[0].samples.len(), 2 + 120 + 1);
    assert!(all[0].samples.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(all[0].samples.last(), Some(&(now - MIN, 7.0)));
    let listed = source
        .series(&[ms], day20, day20 + HOUR, 10)
        .await
        .expect("series");
    assert_eq!(
        listed.len(),
        1,
        "series with only rolled-up data are listed"
    );
    metrics
}

#[tokio::test]
async fn sqlite_rollups_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open("sqlite:v.db", dir.path(), 4).expect("open");
    let metrics = rollup_suite(store).await;
    // 960 raw rows, then the 1-minute rows of 20 days ago (120).
    assert_eq!(metrics.rows_deleted.get(), 960 + 120);
    assert_eq!(metrics.partitions_dropped.get(), 0);
}

#[tokio::test]
async fn postgres_rollups_drop_partitions() {
    let db = PgTestDb::create().await.expect("PostgreSQL for tests");
    let store = open(&db.url, Path::new("."), 4).expect("open");
    let metrics = rollup_suite(store).await;
    assert!(
        metrics.partitions_dropped.get() >= 3,
        "{}",
        metrics.partitions_dropped.get()
    );
    assert_eq!(metrics.rows_deleted.get(), 0);
    let pg = postgres::PgStore::connect_lazy(&db.url, 1).expect("pool");
    let raw_parts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass",
    )
    .fetch_one(pg.pool())
    .await
    .expect("partitions");
    assert_eq!(raw_parts, 1, "only today's raw partition is left");
    pg.pool().close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_dead_database_is_a_storage_error_for_queries() {
    let store = open("postgres://postgres@127.0.0.1:1/none", Path::new("."), 1).expect("lazy");
    let layers = layered(store, &StorageConfig::default(), StorageMetrics::default());
    let err = layers
        .source
        .select(&selector("up"), 0, 1000, &SelectHints::default())
        .await
        .expect_err("unreachable");
    assert!(matches!(err, SourceError::Storage(_)), "{err}");
    let err = layers
        .source
        .series(&[], 0, 1000, 10)
        .await
        .expect_err("unreachable");
    assert!(matches!(err, SourceError::Storage(_)), "{err}");
    assert!(layers.rollups.run_once(now_ms()).await.is_err());

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = open("sqlite:no/such/dir/v.db", dir.path(), 1).expect("lazy");
    let layers = layered(bad, &StorageConfig::default(), StorageMetrics::default());
    let err = layers
        .source
        .select(&selector("up"), 0, 1000, &SelectHints::default())
        .await
        .expect_err("no file");
    assert!(matches!(err, SourceError::Storage(_)), "{err}");
}

/// Probes by series id stay right after `trim` drops a series and
/// renumbers the others' slots.
#[tokio::test]
async fn probes_by_id_survive_a_trim_that_drops_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open("sqlite:v.db", dir.path(), 2).expect("open");
    store.migrate().await.expect("migrate");
    let now = now_ms();
    let head = head::Head::new(Duration::from_secs(3600), 10, StorageMetrics::default());
    head.warm(store.as_ref(), now).await.expect("warm");
    let old = series("m", &[("s", "old")], &[(now - 50 * MIN, 1.0)]);
    let new = series("m", &[("s", "new")], &[(now - 50 * MIN, 2.0), (now, 3.0)]);
    let mid = series("m", &[("s", "mid")], &[(now - 50 * MIN, 5.0), (now, 6.0)]);
    head.append(&[old.clone(), mid.clone(), new.clone()]);
    let (old_l, new_l) = (head::series_labels(&old), head::series_labels(&new));
    let mid_l = head::series_labels(&mid);
    let all = |id, l| head.probe_id(id, l, 0, i64::MAX);
    assert_eq!(
        all(1, &old_l),
        head::Probe::Held(vec![(now - 50 * MIN, 1.0)])
    );
    assert_eq!(
        all(2, &new_l),
        head::Probe::Held(vec![(now - 50 * MIN, 2.0), (now, 3.0)])
    );
    assert_eq!(
        all(3, &mid_l),
        head::Probe::Held(vec![(now - 50 * MIN, 5.0), (now, 6.0)])
    );
    // The cutoff passes the old series' only sample: it goes, the others
    // move to new slots (a stale id would read the other series).
    head.trim(now + 15 * MIN);
    assert_eq!(all(1, &old_l), head::Probe::Absent);
    assert_eq!(all(2, &new_l), head::Probe::Held(vec![(now, 3.0)]));
    assert_eq!(all(3, &mid_l), head::Probe::Held(vec![(now, 6.0)]));
    head.append(&[series("m", &[("s", "new")], &[(now + MIN, 4.0)])]);
    assert_eq!(
        all(2, &new_l),
        head::Probe::Held(vec![(now, 3.0), (now + MIN, 4.0)])
    );
    assert_eq!(head.size(), (2, 3));
}

/// `probe_ids` answers like `probe_id` series by series, and gives just the
/// last sample in the range when that is all that is needed, or the last
/// that is not a staleness marker.
#[tokio::test]
async fn batch_probes_match_single_probes() {
    let now = now_ms();
    let head = head::Head::new(Duration::from_secs(3600), 10, StorageMetrics::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open("sqlite:v.db", dir.path(), 2).expect("open");
    store.migrate().await.expect("migrate");
    head.warm(store.as_ref(), now).await.expect("warm");
    let a = series(
        "m",
        &[("s", "a")],
        &[(now - 2 * MIN, 1.0), (now - MIN, 2.0), (now, 3.0)],
    );
    let b = series("m", &[("s", "b")], &[(now - 20 * MIN, 9.0)]);
    head.append(&[a.clone(), b.clone()]);
    let missing = series("m", &[("s", "never")], &[]);
    let selected: Vec<(i64, crate::query::source::SharedLabels)> =
        [(1, &a), (2, &b), (3, &missing)]
            .into_iter()
            .map(|(id, s)| (id, std::sync::Arc::new(head::series_labels(s))))
            .collect();
    let (start, end) = (now - 5 * MIN, now - MIN);
    let all = head.probe_ids(&selected, start, end, Need::All);
    for ((id, labels), probe) in selected.iter().zip(&all) {
        assert_eq!(
            *probe,
            head.probe_id(*id, labels, start, end),
            "series {id}"
        );
    }
    assert_eq!(
        all[0],
        head::Probe::Held(vec![(now - 2 * MIN, 1.0), (now - MIN, 2.0)])
    );
    assert_eq!(
        head.probe_ids(&selected, start, end, Need::Last),
        vec![
            head::Probe::Held(vec![(now - MIN, 2.0)]),
            head::Probe::Held(vec![]),
            head::Probe::Absent,
        ]
    );
    // A staleness marker last: `Last` gives the marker, `LastReal` the
    // sample before it; only markers in the range: nothing.
    let stale = f64::from_bits(crate::query::source::STALE_NAN_BITS);
    head.append(&[series("m", &[("s", "a")], &[(now - MIN / 2, stale)])]);
    let end = now - MIN / 4;
    let last = head.probe_ids(&selected[..1], start, end, Need::Last);
    assert!(
        matches!(&last[0], head::Probe::Held(v) if v.len() == 1 && v[0].1.to_bits() == crate::query::source::STALE_NAN_BITS),
        "{last:?}"
    );
    assert_eq!(
        head.probe_ids(&selected[..1], start, end, Need::LastReal),
        vec![head::Probe::Held(vec![(now - MIN, 2.0)])]
    );
    assert_eq!(
        head.probe_ids(&selected[..1], now - MIN + 1, end, Need::LastReal),
        vec![head::Probe::Held(vec![])]
    );
}

/// Appending by id (ingest's way) holds the same samples as appending by
/// label set, finds a series by its id afterwards, and honours the bound.
#[tokio::test]
async fn appends_by_id_match_appends_by_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open("sqlite:v.db", dir.path(), 2).expect("open");
    store.migrate().await.expect("migrate");
    let now = now_ms();
    let by_id = head::Head::new(Duration::from_secs(3600), 2, StorageMetrics::default());
    let by_labels = head::Head::new(Duration::from_secs(3600), 2, StorageMetrics::default());
    by_id.warm(store.as_ref(), now).await.expect("warm");
    by_labels.warm(store.as_ref(), now).await.expect("warm");
    let a = series("m", &[("s", "a")], &[(now, 1.0)]);
    let b = series("m", &[("s", "b")], &[(now, 2.0), (now - MIN, 1.5)]);
    let c = series("m", &[("s", "c")], &[(now, 3.0)]);
    by_id.append_ids(&[a.clone(), b.clone(), c.clone()], &[10, 11, 12]);
    by_labels.append(&[a.clone(), b.clone(), c.clone()]);
    let later = [
        series("m", &[("s", "a")], &[(now + MIN, 4.0), (now, 9.0)]),
        series("m", &[("s", "b")], &[(now + MIN, 5.0)]),
    ];
    by_id.append_ids(&later, &[10, 11]);
    by_labels.append(&later);
    // Ids that do not match the series count: appended by label set.
    by_id.append_ids(&[series("m", &[("s", "a")], &[(now + 2 * MIN, 6.0)])], &[]);
    by_labels.append(&[series("m", &[("s", "a")], &[(now + 2 * MIN, 6.0)])]);
    assert_eq!(by_id.size(), by_labels.size());
    assert_eq!(
        by_id.size(),
        (2, 6),
        "c was refused: the head holds 2 series"
    );
    for (id, s) in [(10, &a), (11, &b), (12, &c)] {
        let labels = head::series_labels(s);
        assert_eq!(
            by_id.probe_id(id, &labels, 0, i64::MAX),
            by_labels.probe(&labels, 0, i64::MAX),
            "series {id}"
        );
    }
    assert!(by_id.refused(&head::series_labels(&c)));
}

/// The head's memory estimate counts sample buffers by capacity and label
/// sets, and `trim` publishes it.
#[tokio::test]
async fn the_memory_estimate_follows_what_the_head_holds() {
    let now = now_ms();
    let metrics = StorageMetrics::default();
    let head = head::Head::new(Duration::from_secs(3600), 10, metrics.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open("sqlite:v.db", dir.path(), 2).expect("open");
    store.migrate().await.expect("migrate");
    head.warm(store.as_ref(), now).await.expect("warm");
    assert_eq!(head.memory(), head::HeadMemory::default());
    let points: Vec<(i64, f64)> = (0..100).map(|i| (now - 50 * MIN + i, 1.0)).collect();
    head.append(&[
        series("m", &[("host", "h1")], &points),
        series("m", &[("host", "h2")], &[(now, 2.0)]),
    ]);
    let m = head.memory();
    // 101 samples, compressed: each chunk starts with a whole sample (16
    // bytes), then a steady step and an unchanged value take 2 bits each;
    // plus each series' chunk list (counted by the slot list's capacity).
    let lists = 2 * size_of::<super::chunk::Samples>();
    assert!(
        (lists + 2 * 16..lists * 2 + 101 * 16 / 2).contains(&m.samples),
        "{m:?}"
    );
    // Two label sets of two labels (`__name__`, `host`) and their strings.
    assert!(m.labels >= 2 * (2 * size_of::<Label>() + 15), "{m:?}");
    assert!(m.index > 0, "{m:?}");
    let part = |p: &str| {
        metrics
            .head_bytes
            .get_or_create(&crate::metrics::Part::new(p))
            .get()
    };
    // Trimming past h1's samples drops it; the published figures are the
    // estimate of what is left.
    head.trim(now + 15 * MIN);
    let after = head.memory();
    assert!(
        after.samples < m.samples && after.labels < m.labels,
        "{after:?}"
    );
    assert!(after.samples >= 16, "{after:?}");
    assert_eq!(part("samples"), after.samples as i64);
    assert_eq!(part("labels"), after.labels as i64);
    assert_eq!(part("index"), after.index as i64);
}
