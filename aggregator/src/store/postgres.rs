//! PostgreSQL store: samples partitioned by day, written with UNNEST arrays in
//! one statement per batch.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use vigil_common::{BatchHeader, MetricMetadata, Series};

use promql_parser::label::Matcher;

use super::index::SeriesIndex;
use super::metadata::{self, MetadataCache, StoredMetadata};
use super::rollup::{Bucket, Resolution, Table};
use super::{
    AgentRecord, BucketRow, CommitOutcome, HostInfo, SeriesCache, SeriesKey, Store, StoreError,
    TokenInfo, TokenRecord, batch_series_keys, bucket, columns, index_new, shared, sql_limit,
};

const DAY_MS: i64 = 86_400_000;

/// Reads the buckets of a rollup table.
macro_rules! read_rollup_sql {
    ($table:literal) => {
        concat!(
            "SELECT series_id, ts, min, max, sum, count, last FROM ",
            $table,
            " WHERE series_id = ANY($1) AND ts >= $2 AND ts <= $3 ORDER BY series_id, ts LIMIT $4"
        )
    };
}

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: PgPool,
    series: SeriesCache,
    metadata: MetadataCache,
    index: SeriesIndex,
    /// Day starts (ms) whose partition is known to exist.
    partitions: Mutex<HashSet<i64>>,
}

impl PgStore {
    /// A lazily connecting pool: nothing is contacted until first use.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        // JIT compilation takes ~100 ms per statement once the planner
        // thinks a read is large: far more than these reads themselves.
        let options = PgConnectOptions::from_str(url)?.options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            series: SeriesCache::default(),
            metadata: MetadataCache::default(),
            index: SeriesIndex::default(),
            partitions: Mutex::new(HashSet::new()),
        })
    }

    /// The underlying pool (for tests and maintenance tasks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn ensure_partitions(&self, series: &[Series]) -> Result<(), StoreError> {
        let days: HashSet<i64> = series
            .iter()
            .flat_map(|s| s.points.iter())
            .map(|p| p.timestamp_ms.div_euclid(DAY_MS) * DAY_MS)
            .collect();
        let missing: Vec<i64> = match self.partitions.lock() {
            Ok(known) => days.difference(&known).copied().collect(),
            Err(_) => days.into_iter().collect(),
        };
        for day in missing {
            sqlx::query("SELECT vigil_ensure_partition($1)")
                .bind(day)
                .execute(&self.pool)
                .await?;
            if let Ok(mut known) = self.partitions.lock() {
                known.insert(day);
            }
        }
        Ok(())
    }

    /// Ids of `keys`, inserting the series that do not exist yet.
    async fn series_ids(
        tx: &mut Transaction<'_, Postgres>,
        keys: &[SeriesKey],
    ) -> Result<Vec<(SeriesKey, i64)>, StoreError> {
        let (metrics, labels): (Vec<&str>, Vec<&str>) =
            keys.iter().map(|(m, l)| (m.as_str(), l.as_str())).unzip();
        sqlx::query(
            "INSERT INTO series (metric, labels)
             SELECT * FROM UNNEST($1::text[], $2::text[])
             ON CONFLICT (metric, md5(labels)) DO NOTHING",
        )
        .bind(&metrics)
        .bind(&labels)
        .execute(&mut **tx)
        .await?;
        let rows = sqlx::query(
            "SELECT s.id, s.metric, s.labels
             FROM UNNEST($1::text[], $2::text[]) AS u(metric, labels)
             JOIN series s ON s.metric = u.metric AND md5(s.labels) = md5(u.labels)",
        )
        .bind(&metrics)
        .bind(&labels)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (r.try_get("metric")?, r.try_get("labels")?),
                    r.try_get("id")?,
                ))
            })
            .collect()
    }

    /// Writes `series`' samples inside `tx` (creating missing series), and
    /// returns how many were new with the series ids created, which the
    /// caller adds to the cache once `tx` commits.
    async fn insert_samples(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        series: &[Series],
    ) -> Result<(u64, Vec<(SeriesKey, i64)>), StoreError> {
        let keys = batch_series_keys(series);
        let missing: Vec<SeriesKey> = keys
            .iter()
            .filter(|k| self.series.get(k).is_none())
            .cloned()
            .collect();
        let new_ids = if missing.is_empty() {
            Vec::new()
        } else {
            Self::series_ids(tx, &missing).await?
        };
        let lookup: std::collections::HashMap<&SeriesKey, i64> =
            new_ids.iter().map(|(k, id)| (k, *id)).collect();

        let cols = columns(series, |key| {
            lookup.get(key).copied().or_else(|| self.series.get(key))
        })?;
        let stored = sqlx::query(
            "INSERT INTO samples (series_id, ts, value)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&cols.ids)
        .bind(&cols.ts)
        .bind(&cols.values)
        .execute(&mut **tx)
        .await?
        .rows_affected();

        Ok((stored, new_ids))
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn db(&self) -> super::Db {
        super::Db::Postgres(self.pool.clone())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn register_agent(&self, agent_id: &str, key: &[u8; 32]) -> Result<(), StoreError> {
        shared::pg::register_agent(&self.pool, agent_id, key).await
    }

    async fn revoke_agent(&self, agent_id: &str) -> Result<bool, StoreError> {
        shared::pg::revoke_agent(&self.pool, agent_id).await
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        shared::pg::agent(&self.pool, agent_id).await
    }

    async fn commit_batch(
        &self,
        header: &BatchHeader,
        series: &[Series],
    ) -> Result<CommitOutcome, StoreError> {
        self.ensure_partitions(series).await?;
        let samples: usize = series.iter().map(|s| s.points.len()).sum();
        let mut tx = self.pool.begin().await?;

        let fresh = shared::pg::insert_batch(&mut tx, header, samples).await?;
        if !fresh {
            tx.rollback().await?;
            return Ok(CommitOutcome {
                duplicate: true,
                samples_stored: 0,
            });
        }

        let (stored, new_ids) = self.insert_samples(&mut tx, series).await?;
        shared::pg::upsert_host(&mut tx, header, stored).await?;

        tx.commit().await?;
        index_new(&self.index, &new_ids);
        self.series.extend(new_ids);
        Ok(CommitOutcome {
            duplicate: false,
            samples_stored: stored,
        })
    }

    async fn write_series(&self, series: &[Series]) -> Result<u64, StoreError> {
        if series.iter().all(|s| s.points.is_empty()) {
            return Ok(0);
        }
        self.ensure_partitions(series).await?;
        let mut tx = self.pool.begin().await?;
        let (stored, new_ids) = self.insert_samples(&mut tx, series).await?;
        tx.commit().await?;
        index_new(&self.index, &new_ids);
        self.series.extend(new_ids);
        Ok(stored)
    }

    async fn select_series(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<(i64, crate::query::source::SharedLabels)>, StoreError> {
        shared::pg::refresh_index(&self.pool, &self.index).await?;
        Ok(self.index.select(matchers))
    }

    async fn read_samples(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        if ids.is_empty() || start_ms > end_ms {
            return Ok(Vec::new());
        }
        // The ts bounds are parameters, so partition pruning happens at
        // execution time. No ORDER BY: sorting a few hundred thousand rows
        // in the database (spilling to disk past work_mem) costs more than
        // the read; callers sort per series. Samples travel as two arrays
        // per series: decoding one row per sample costs more than the scan.
        let rows: Vec<(i64, Vec<i64>, Vec<f64>)> = sqlx::query_as(
            "SELECT series_id, array_agg(ts), array_agg(value)
             FROM (SELECT series_id, ts, value FROM samples
                   WHERE series_id = ANY($1) AND ts >= $2 AND ts <= $3 LIMIT $4) AS x
             GROUP BY series_id",
        )
        .bind(ids)
        .bind(start_ms)
        .bind(end_ms)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .flat_map(|(id, ts, values)| ts.into_iter().zip(values).map(move |(t, v)| (id, t, v)))
            .collect())
    }

    async fn series_with_samples(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        if ids.is_empty() || start_ms > end_ms {
            return Ok(Vec::new());
        }
        // One primary-key probe per id.
        let found: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM UNNEST($1::bigint[]) AS u(id)
             WHERE EXISTS (SELECT 1 FROM samples
                           WHERE series_id = u.id AND ts >= $2 AND ts <= $3)",
        )
        .bind(ids)
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(found)
    }

    async fn rollup_watermark(&self, res: Resolution) -> Result<Option<i64>, StoreError> {
        shared::pg::rollup_watermark(&self.pool, res).await
    }

    async fn oldest_sample(&self) -> Result<Option<i64>, StoreError> {
        shared::pg::oldest_sample(&self.pool).await
    }

    async fn build_rollup(&self, res: Resolution, from: i64, to: i64) -> Result<u64, StoreError> {
        let table = Table::Rollup(res);
        let width = table.partition_ms();
        let mut part = from.div_euclid(width) * width;
        while part < to {
            sqlx::query("SELECT vigil_ensure_range_partition($1, $2, $3)")
                .bind(table.name())
                .bind(part)
                .bind(width)
                .execute(&self.pool)
                .await?;
            part += width;
        }
        let mut tx = self.pool.begin().await?;
        let n = shared::pg::build_rollup(&mut tx, res, from, to).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn read_rollup(
        &self,
        res: Resolution,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Bucket>, StoreError> {
        if ids.is_empty() || start_ms > end_ms {
            return Ok(Vec::new());
        }
        let sql = match res {
            Resolution::Minute => read_rollup_sql!("samples_1m"),
            Resolution::Hour => read_rollup_sql!("samples_1h"),
        };
        let rows: Vec<BucketRow> = sqlx::query_as(sql)
            .bind(ids)
            .bind(start_ms)
            .bind(end_ms)
            .bind(sql_limit(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(bucket).collect())
    }

    async fn drop_before(&self, table: Table, before_ms: i64) -> Result<u64, StoreError> {
        let dropped: i32 = sqlx::query_scalar("SELECT vigil_drop_partitions_before($1, $2)")
            .bind(table.name())
            .bind(before_ms)
            .fetch_one(&self.pool)
            .await?;
        if dropped > 0 && table == Table::Raw {
            // Forget them, so a late write re-creates its partition.
            if let Ok(mut known) = self.partitions.lock() {
                known.retain(|&day| day + DAY_MS > before_ms);
            }
        }
        Ok(u64::try_from(dropped).unwrap_or(0))
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        shared::pg::hosts(&self.pool).await
    }

    async fn count_samples(&self, host: Option<&str>) -> Result<u64, StoreError> {
        let n: i64 = match host {
            None => {
                sqlx::query_scalar("SELECT count(*) FROM samples")
                    .fetch_one(&self.pool)
                    .await?
            }
            Some(h) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id
                 WHERE r.labels::jsonb ->> 'host' = $1",
                )
                .bind(h)
                .fetch_one(&self.pool)
                .await?
            }
        };
        Ok(n.max(0) as u64)
    }

    async fn put_token(&self, name: &str, sha256: &[u8; 32], role: &str) -> Result<(), StoreError> {
        shared::pg::put_token(&self.pool, name, sha256, role).await
    }

    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<TokenInfo>, StoreError> {
        shared::pg::token(&self.pool, sha256).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        shared::pg::revoke_token(&self.pool, name).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        shared::pg::tokens(&self.pool).await
    }

    async fn put_metadata(&self, metadata: &[MetricMetadata]) -> Result<u64, StoreError> {
        metadata::pg::put(&self.pool, &self.metadata, metadata).await
    }

    async fn metadata(&self, metric: Option<&str>) -> Result<Vec<StoredMetadata>, StoreError> {
        metadata::pg::read(&self.pool, metric).await
    }
}
