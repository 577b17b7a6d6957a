//! The write-behind queue against real databases: one that never answers
//! (give up), and one that refuses the first attempts and then accepts
//! (retry, then success), on SQLite and PostgreSQL.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use promql_parser::label::Matcher;
use vigil_common::{Label, MetricMetadata, Point, now_ms};

use super::super::index::tests::selector;
use super::super::rollup::{Bucket, Resolution, Table};
use super::super::{
    AgentRecord, BatchRef, Committed, Db, HostInfo, TokenInfo, TokenRecord, metadata, open,
};
use super::*;
use crate::testing::PgTestDb;

fn three_points() -> Series {
    let now = now_ms();
    Series {
        name: "host:x:sum".into(),
        labels: vec![Label::new("host", "a")],
        points: (0..3)
            .map(|i| Point {
                timestamp_ms: now - 1_000 * i,
                value: i as f64,
            })
            .collect(),
    }
}

/// A database that never answers: every attempt fails, the batch is
/// given up after the last one, and both are counted.
#[tokio::test]
async fn a_batch_that_keeps_failing_is_retried_then_given_up_and_counted() {
    let dead = open("postgres://postgres@127.0.0.1:1/x", Path::new("."), 1).expect("lazy store");
    let metrics = StorageMetrics::default();
    let behind = WriteBehind::new(dead, metrics.clone());
    behind.push(vec![three_points()]).await.expect("queued");
    behind.flush().await.expect("flushed");
    assert_eq!(metrics.derived_write_failures.get(), u64::from(ATTEMPTS));
    assert_eq!(metrics.derived_samples_dropped.get(), 3);
}

/// A real store whose `write_series` is refused (as by a database that is
/// briefly unreachable) the first `refuse` times; every call is counted.
struct Refusing {
    inner: Arc<dyn Store>,
    refuse: AtomicU32,
    calls: AtomicU32,
}

impl Refusing {
    fn new(inner: Arc<dyn Store>, refuse: u32) -> Arc<Refusing> {
        Arc::new(Refusing {
            inner,
            refuse: AtomicU32::new(refuse),
            calls: AtomicU32::new(0),
        })
    }
}

/// The database refuses `refuse` < [`ATTEMPTS`] attempts, then accepts:
/// the batch is in the database exactly once, nothing is dropped, and each
/// refused attempt is counted as a failure.
async fn retry_then_success(store: Arc<dyn Store>) {
    store.migrate().await.expect("migrate");
    for refuse in [1, ATTEMPTS - 1] {
        let refusing = Refusing::new(store.clone(), refuse);
        let metrics = StorageMetrics::default();
        let behind = WriteBehind::new(refusing.clone(), metrics.clone());
        let mut series = three_points();
        series
            .labels
            .push(Label::new("refused", refuse.to_string()));
        behind.push(vec![series.clone()]).await.expect("queued");
        behind.flush().await.expect("flushed");
        assert_eq!(
            refusing.calls.load(Ordering::SeqCst),
            refuse + 1,
            "refused {refuse} times, then written once"
        );
        assert_eq!(metrics.derived_write_failures.get(), u64::from(refuse));
        assert_eq!(metrics.derived_samples_dropped.get(), 0);
        // A later flush writes nothing again.
        behind.flush().await.expect("flushed");
        assert_eq!(refusing.calls.load(Ordering::SeqCst), refuse + 1);

        let matchers = selector(&format!(
            "{{__name__=\"host:x:sum\", refused=\"{refuse}\"}}"
        ));
        let found = store.select_series(&matchers).await.expect("select");
        assert_eq!(found.len(), 1, "{found:?}");
        let mut rows = store
            .read_samples(&[found[0].0], 0, i64::MAX, 100)
            .await
            .expect("read");
        rows.sort_by_key(|r| r.1);
        let want: Vec<(i64, f64)> = series
            .points
            .iter()
            .rev()
            .map(|p| (p.timestamp_ms, p.value))
            .collect();
        let got: Vec<(i64, f64)> = rows.iter().map(|r| (r.1, r.2)).collect();
        assert_eq!(got, want, "each sample stored once");
    }
    assert_eq!(store.count_samples(None).await.expect("count"), 6);
}

#[tokio::test]
async fn sqlite_write_is_retried_until_the_database_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    retry_then_success(open("sqlite:v.db", dir.path(), 2).expect("open")).await;
}

#[tokio::test]
async fn postgres_write_is_retried_until_the_database_accepts() {
    let db = PgTestDb::create().await.expect("postgres");
    retry_then_success(open(&db.url, Path::new("."), 2).expect("open")).await;
    db.drop_db().await;
}

#[async_trait]
impl Store for Refusing {
    async fn write_series(&self, series: &[Series]) -> Result<u64, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let refused = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        self.inner.write_series(series).await
    }

    // Everything else is the real store's.
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn db(&self) -> Db {
        self.inner.db()
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn register_agent(&self, id: &str, key: &[u8; 32]) -> Result<(), StoreError> {
        self.inner.register_agent(id, key).await
    }
    async fn revoke_agent(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.revoke_agent(id).await
    }
    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.inner.agent(id).await
    }
    async fn commit_batches(&self, batches: &[BatchRef<'_>]) -> Result<Vec<Committed>, StoreError> {
        self.inner.commit_batches(batches).await
    }
    async fn select_series(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<(i64, crate::query::source::SharedLabels)>, StoreError> {
        self.inner.select_series(matchers).await
    }
    async fn read_samples(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        self.inner.read_samples(ids, start_ms, end_ms, limit).await
    }
    async fn read_newest(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        n: u32,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        self.inner.read_newest(ids, start_ms, end_ms, n).await
    }
    async fn series_with_samples(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        self.inner.series_with_samples(ids, start_ms, end_ms).await
    }
    async fn rollup_watermark(&self, res: Resolution) -> Result<Option<i64>, StoreError> {
        self.inner.rollup_watermark(res).await
    }
    async fn oldest_sample(&self) -> Result<Option<i64>, StoreError> {
        self.inner.oldest_sample().await
    }
    async fn build_rollup(&self, res: Resolution, from: i64, to: i64) -> Result<u64, StoreError> {
        self.inner.build_rollup(res, from, to).await
    }
    async fn read_rollup(
        &self,
        res: Resolution,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Bucket>, StoreError> {
        self.inner
            .read_rollup(res, ids, start_ms, end_ms, limit)
            .await
    }
    async fn drop_before(&self, table: Table, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.drop_before(table, before_ms).await
    }
    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        self.inner.hosts().await
    }
    async fn count_samples(&self, host: Option<&str>) -> Result<u64, StoreError> {
        self.inner.count_samples(host).await
    }
    async fn put_token(&self, name: &str, sha256: &[u8; 32], role: &str) -> Result<(), StoreError> {
        self.inner.put_token(name, sha256, role).await
    }
    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<TokenInfo>, StoreError> {
        self.inner.token(sha256).await
    }
    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.revoke_token(name).await
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens().await
    }
    async fn put_metadata(&self, metadata: &[MetricMetadata]) -> Result<u64, StoreError> {
        self.inner.put_metadata(metadata).await
    }
    async fn metadata(
        &self,
        metric: Option<&str>,
    ) -> Result<Vec<metadata::StoredMetadata>, StoreError> {
        self.inner.metadata(metric).await
    }
}
