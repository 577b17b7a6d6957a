//! Metric metadata (type, help, unit per metric name) in the
//! `metric_metadata` table, for the Prometheus API's `/metadata`.
//!
//! Agents resend their metadata with every batch, so a store keeps the last
//! written copy in memory ([`MetadataCache`]) and writes only entries that
//! differ from it: in the steady state a batch costs no database write. The
//! cache is filled only after a write commits; a failed write is retried with
//! the next batch that carries the entry. One row per name, last write wins
//! (Prometheus keeps one per scrape target; Vigil has no targets).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use vigil_common::model::is_valid_metric_name;
use vigil_common::{MetricMetadata, now_ms};

use super::StoreError;

/// Above this many names the cache is cleared rather than grown without bound.
const CACHE_MAX: usize = 100_000;

/// Longest help text stored; longer ones are cut (at a char boundary).
pub const MAX_HELP_BYTES: usize = 4096;

/// Longest unit stored.
const MAX_UNIT_BYTES: usize = 128;

/// One metric's metadata as stored and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMetadata {
    pub name: String,
    /// Prometheus' name for the type: `counter`, `gauge`, `histogram`,
    /// `summary` or `unknown`.
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// What was last written per metric name.
#[derive(Default)]
pub(crate) struct MetadataCache {
    known: Mutex<HashMap<String, StoredMetadata>>,
}

impl MetadataCache {
    /// The entries of `metadata` that differ from what was last written,
    /// sorted by name (so concurrent transactions lock rows in one order),
    /// one per name (the last one given wins). Entries whose name is not a
    /// valid metric name are dropped.
    pub(crate) fn changed(&self, metadata: &[MetricMetadata]) -> Vec<StoredMetadata> {
        let mut latest: BTreeMap<&str, StoredMetadata> = BTreeMap::new();
        for m in metadata {
            if is_valid_metric_name(&m.name) {
                latest.insert(&m.name, stored(m));
            }
        }
        let Ok(known) = self.known.lock() else {
            return latest.into_values().collect();
        };
        latest
            .into_values()
            .filter(|m| known.get(&m.name) != Some(m))
            .collect()
    }

    /// Records entries that were written (call after the commit).
    pub(crate) fn remember(&self, written: Vec<StoredMetadata>) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() > CACHE_MAX {
                known.clear();
            }
            known.extend(written.into_iter().map(|m| (m.name.clone(), m)));
        }
    }
}

fn stored(m: &MetricMetadata) -> StoredMetadata {
    StoredMetadata {
        name: m.name.clone(),
        kind: m.kind.as_str().to_string(),
        help: truncate(&m.help, MAX_HELP_BYTES),
        unit: truncate(&m.unit, MAX_UNIT_BYTES),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

const UPSERT: &str = "INSERT INTO metric_metadata (name, type, help, unit, updated_at_ms)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (name) DO UPDATE SET type = excluded.type, help = excluded.help,
         unit = excluded.unit, updated_at_ms = excluded.updated_at_ms";

const SELECT_ALL: &str = "SELECT name, type, help, unit FROM metric_metadata ORDER BY name";
const SELECT_ONE: &str = "SELECT name, type, help, unit FROM metric_metadata WHERE name = $1";

type Row = (String, String, String, String);

fn from_row((name, kind, help, unit): Row) -> StoredMetadata {
    StoredMetadata {
        name,
        kind,
        help,
        unit,
    }
}

/// Writes what changed in one transaction and then remembers it; returns
/// the number of rows written. The same SQL runs on both databases.
macro_rules! put_impl {
    ($pool:expr, $cache:expr, $metadata:expr) => {{
        let changed = $cache.changed($metadata);
        if changed.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut tx = $pool.begin().await?;
        for m in &changed {
            sqlx::query(UPSERT)
                .bind(&m.name)
                .bind(&m.kind)
                .bind(&m.help)
                .bind(&m.unit)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let n = changed.len() as u64;
        $cache.remember(changed);
        Ok(n)
    }};
}

/// Reads every row (by name), or the one named `metric`.
macro_rules! read_impl {
    ($pool:expr, $metric:expr) => {{
        let rows: Vec<Row> = match $metric {
            None => sqlx::query_as(SELECT_ALL).fetch_all($pool).await?,
            Some(name) => {
                sqlx::query_as(SELECT_ONE)
                    .bind(name)
                    .fetch_all($pool)
                    .await?
            }
        };
        Ok(rows.into_iter().map(from_row).collect())
    }};
}

pub(crate) mod pg {
    use sqlx::PgPool;

    use super::*;

    pub(crate) async fn put(
        pool: &PgPool,
        cache: &MetadataCache,
        metadata: &[MetricMetadata],
    ) -> Result<u64, StoreError> {
        put_impl!(pool, cache, metadata)
    }

    pub(crate) async fn read(
        pool: &PgPool,
        metric: Option<&str>,
    ) -> Result<Vec<StoredMetadata>, StoreError> {
        read_impl!(pool, metric)
    }
}

pub(crate) mod lite {
    use sqlx::SqlitePool;

    use super::*;

    pub(crate) async fn put(
        writer: &SqlitePool,
        cache: &MetadataCache,
        metadata: &[MetricMetadata],
    ) -> Result<u64, StoreError> {
        put_impl!(writer, cache, metadata)
    }

    pub(crate) async fn read(
        reader: &SqlitePool,
        metric: Option<&str>,
    ) -> Result<Vec<StoredMetadata>, StoreError> {
        read_impl!(reader, metric)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use vigil_common::MetricKind;

    use super::*;
    use crate::store::{Store, open};
    use crate::testing::PgTestDb;

    fn md(name: &str, kind: MetricKind, help: &str) -> MetricMetadata {
        MetricMetadata {
            name: name.into(),
            kind,
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn only_changes_and_valid_names_are_written() {
        let cache = MetadataCache::default();
        let batch = [
            md("b_total", MetricKind::Counter, "old"),
            md("a", MetricKind::Gauge, "A"),
            md("b_total", MetricKind::Counter, "B"),
            md("1bad", MetricKind::Gauge, "x"),
        ];
        let changed = cache.changed(&batch);
        let names: Vec<&str> = changed.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b_total"]);
        assert_eq!(changed[1].help, "B");
        assert_eq!(changed[1].kind, "counter");
        cache.remember(changed);
        assert!(cache.changed(&batch).is_empty());
        let changed = cache.changed(&[md("a", MetricKind::Gauge, "new help")]);
        assert_eq!(changed.len(), 1);
    }

    #[test]
    fn long_help_is_cut_at_a_char_boundary() {
        let help = "é".repeat(MAX_HELP_BYTES);
        let cut = stored(&md("a", MetricKind::Gauge, &help)).help;
        assert!(cut.len() <= MAX_HELP_BYTES && cut.len() >= MAX_HELP_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    /// `open_again` opens a second store on the same database: a process
    /// that restarted, with an empty cache.
    async fn round_trip(store: Arc<dyn Store>, open_again: impl Fn() -> Arc<dyn Store>) {
        store.migrate().await.expect("migrate");
        assert!(store.metadata(None).await.expect("read").is_empty());
        let batch = [
            md("up", MetricKind::Gauge, "1 if the target is up"),
            md(
                "http_requests_total",
                MetricKind::Counter,
                "Requests \"served\".",
            ),
            md("not valid", MetricKind::Gauge, "dropped"),
        ];
        assert_eq!(store.put_metadata(&batch).await.expect("put"), 2);
        assert_eq!(
            store.put_metadata(&batch).await.expect("again"),
            0,
            "unchanged"
        );
        let all = store.metadata(None).await.expect("read");
        let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["http_requests_total", "up"]);
        assert_eq!(
            all[0],
            StoredMetadata {
                name: "http_requests_total".into(),
                kind: "counter".into(),
                help: "Requests \"served\".".into(),
                unit: String::new(),
            }
        );

        // A change is written; the rest of the batch is not.
        let mut changed = batch.clone();
        changed[0].help = "new help".into();
        changed[0].unit = "seconds".into();
        assert_eq!(store.put_metadata(&changed).await.expect("put"), 1);
        let up = store.metadata(Some("up")).await.expect("one");
        assert_eq!(up.len(), 1);
        assert_eq!(
            (up[0].help.as_str(), up[0].unit.as_str()),
            ("new help", "seconds")
        );
        assert!(store.metadata(Some("nope")).await.expect("none").is_empty());

        // It is in the database: a restarted store reads it, and its empty
        // cache makes it rewrite (not duplicate) the rows once.
        let again = open_again();
        assert_eq!(again.metadata(None).await.expect("read").len(), 2);
        assert_eq!(again.put_metadata(&changed).await.expect("put"), 2);
        assert_eq!(again.put_metadata(&changed).await.expect("put"), 0);
        assert_eq!(again.metadata(None).await.expect("read").len(), 2);
    }

    #[tokio::test]
    async fn sqlite_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let store = open("sqlite:v.db", &path, 2).expect("open");
        round_trip(store, || open("sqlite:v.db", &path, 2).expect("open")).await;
    }

    #[tokio::test]
    async fn postgres_round_trip() {
        let db = PgTestDb::create().await.expect("PostgreSQL for tests");
        let store = open(&db.url, Path::new("."), 4).expect("open");
        round_trip(store, || open(&db.url, Path::new("."), 2).expect("open")).await;
        db.drop_db().await;
    }
}
