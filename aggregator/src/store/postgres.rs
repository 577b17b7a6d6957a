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
    AgentRecord, BatchRef, BucketRow, Committed, Group, HostInfo, Resolved, Resolving, SeriesCache,
    SeriesKey, Store, StoreError, TokenInfo, TokenRecord, bucket, fresh_batches, point_count,
    shared, sql_limit,
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

/// What a samples insert does with a point (series, timestamp) already
/// stored.
#[derive(Clone, Copy, Debug)]
enum Conflicts {
    /// Fail the statement (a unique violation): the cheap insert.
    Fail,
    /// Skip the point (`ON CONFLICT DO NOTHING`).
    Skip,
}

impl PgStore {
    /// A lazily connecting pool: nothing is contacted until first use.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        // JIT compilation takes ~100 ms per statement once the planner
        // thinks a read is large: far more than these reads themselves.
        let options = super::quiet_slow_statements(
            PgConnectOptions::from_str(url)?.options([("jit", "off")]),
        );
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

    async fn ensure_partitions<'a>(
        &self,
        series: impl Iterator<Item = &'a Series>,
    ) -> Result<(), StoreError> {
        let days: HashSet<i64> = series
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
        if keys.is_empty() {
            return Ok(Vec::new());
        }
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

    /// Writes the points of `series` inside `tx` (creating missing series)
    /// in one statement; returns how many were new and the resolved ids,
    /// which go to the cache and index once `tx` commits.
    async fn insert_samples<'a>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        series: Vec<&'a Series>,
        conflicts: Conflicts,
    ) -> Result<(u64, Resolved<'a>), StoreError> {
        let resolving = Resolving::start(&self.series, series);
        let found = Self::series_ids(tx, &resolving.missing).await?;
        let resolved = resolving.finish(found)?;
        let cols = resolved.columns();
        macro_rules! insert {
            () => {
                "INSERT INTO samples (series_id, ts, value)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[])"
            };
        }
        let sql = match conflicts {
            Conflicts::Fail => insert!(),
            Conflicts::Skip => concat!(insert!(), " ON CONFLICT DO NOTHING"),
        };
        let stored = sqlx::query(sql)
            .bind(&cols.ids)
            .bind(&cols.ts)
            .bind(&cols.values)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok((stored, resolved))
    }

    /// Records the group's batches in `ingested_batches` in one statement
    /// (in key order, so concurrent groups lock in the same order); which
    /// of them are new.
    async fn insert_batches(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[BatchRef<'_>],
    ) -> Result<Vec<bool>, StoreError> {
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (batches[a].header, batches[b].header);
            (&a.agent_id, &a.boot_id, a.sequence).cmp(&(&b.agent_id, &b.boot_id, b.sequence))
        });
        let now = vigil_common::now_ms();
        let mut agents = Vec::with_capacity(order.len());
        let mut boots = Vec::with_capacity(order.len());
        let mut seqs = Vec::with_capacity(order.len());
        let mut counts = Vec::with_capacity(order.len());
        for &i in &order {
            let b = batches[i];
            agents.push(b.header.agent_id.as_str());
            boots.push(&b.header.boot_id[..]);
            // A bijection u64 -> i64: the dedup key only needs to be distinct.
            seqs.push(b.header.sequence as i64);
            counts.push(i64::try_from(point_count(b.series)).unwrap_or(i64::MAX));
        }
        let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
            "INSERT INTO ingested_batches (agent_id, boot_id, sequence, received_at_ms, samples)
             SELECT a, b, s, $4, n FROM UNNEST($1::text[], $2::bytea[], $3::bigint[], $5::bigint[])
                 AS u(a, b, s, n)
             ON CONFLICT DO NOTHING
             RETURNING agent_id, boot_id, sequence",
        )
        .bind(&agents)
        .bind(&boots)
        .bind(&seqs)
        .bind(now)
        .bind(&counts)
        .fetch_all(&mut **tx)
        .await?;
        Ok(fresh_batches(batches, &rows.into_iter().collect()))
    }

    /// Upserts the `hosts` rows of a group, one statement.
    async fn upsert_hosts(
        tx: &mut Transaction<'_, Postgres>,
        rows: &[(&BatchHeader, u64)],
    ) -> Result<(), StoreError> {
        let mut agents = Vec::with_capacity(rows.len());
        let mut hosts = Vec::with_capacity(rows.len());
        let mut roles = Vec::with_capacity(rows.len());
        let mut stored = Vec::with_capacity(rows.len());
        for (h, n) in rows {
            agents.push(h.agent_id.as_str());
            hosts.push(h.host.as_str());
            roles.push(shared::roles_json(h));
            stored.push(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        sqlx::query(
            "INSERT INTO hosts (agent_id, hostname, roles, first_seen_ms, last_seen_ms, samples_stored)
             SELECT a, h, r, $4, $4, n FROM UNNEST($1::text[], $2::text[], $3::text[], $5::bigint[])
                 AS u(a, h, r, n)
             ON CONFLICT (agent_id) DO UPDATE
             SET hostname = excluded.hostname, roles = excluded.roles,
                 last_seen_ms = GREATEST(hosts.last_seen_ms, excluded.last_seen_ms),
                 samples_stored = hosts.samples_stored + excluded.samples_stored",
        )
        .bind(&agents)
        .bind(&hosts)
        .bind(&roles)
        .bind(vigil_common::now_ms())
        .bind(&stored)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// One transaction for `batches`. With `split`, a group in which some
    /// point was already stored is rolled back and committed batch by
    /// batch, so each batch's count of stored points is exact.
    async fn commit_group(
        &self,
        batches: &[BatchRef<'_>],
        split: bool,
        conflicts: Conflicts,
    ) -> Result<Option<Vec<Committed>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let group = Group::new(batches, Self::insert_batches(&mut tx, batches).await?);
        if !group.any_fresh() {
            tx.rollback().await?;
            return Ok(Some(group.outcomes(&vec![0; batches.len()], &[])));
        }
        let (stored, resolved) = self
            .insert_samples(&mut tx, group.series(), conflicts)
            .await?;
        let Some(stored_each) = group.stored_each(stored, split) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let hosts = group.hosts(&stored_each);
        if !hosts.is_empty() {
            Self::upsert_hosts(&mut tx, &hosts).await?;
        }
        tx.commit().await?;
        let out = group.outcomes(&stored_each, &resolved.ids);
        resolved.committed(&self.series, &self.index);
        Ok(Some(out))
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

    async fn commit_batches(&self, batches: &[BatchRef<'_>]) -> Result<Vec<Committed>, StoreError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_partitions(batches.iter().flat_map(|b| b.series.iter()))
            .await?;
        // Plain inserts first: a fresh batch's points are almost never
        // stored already, and `ON CONFLICT DO NOTHING` (speculative
        // insertion) about doubles PostgreSQL's cost per row
        // (docs/benchmarks.md). A point that is already stored fails the
        // whole transaction, which is then done again skipping conflicts.
        match self.commit_group(batches, true, Conflicts::Fail).await {
            Ok(Some(out)) => return Ok(out),
            Ok(None) => {}
            Err(e) if e.is_unique_violation() => {}
            Err(e) => return Err(e),
        }
        if let Some(out) = self.commit_group(batches, true, Conflicts::Skip).await? {
            return Ok(out);
        }
        // Some point of the group was stored before: one transaction per
        // batch, so each batch's count is its own.
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let one = self
                .commit_group(std::slice::from_ref(b), false, Conflicts::Skip)
                .await?;
            out.extend(one.unwrap_or_default());
        }
        Ok(out)
    }

    async fn write_series(&self, series: &[Series]) -> Result<u64, StoreError> {
        if series.iter().all(|s| s.points.is_empty()) {
            return Ok(0);
        }
        self.ensure_partitions(series.iter()).await?;
        let mut tx = self.pool.begin().await?;
        // Remote-write senders resend what they are not sure of: skip
        // points already stored.
        let (stored, resolved) = self
            .insert_samples(&mut tx, series.iter().collect(), Conflicts::Skip)
            .await?;
        tx.commit().await?;
        resolved.committed(&self.series, &self.index);
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

    async fn read_newest(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        n: u32,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        if ids.is_empty() || start_ms > end_ms || n == 0 {
            return Ok(Vec::new());
        }
        // A backward primary-key scan per id, stopped after `n` rows (the
        // daily partitions are read newest first).
        let rows: Vec<(i64, i64, f64)> = sqlx::query_as(
            "SELECT u.id, l.ts, l.value FROM UNNEST($1::bigint[]) AS u(id)
             CROSS JOIN LATERAL (SELECT ts, value FROM samples
                                 WHERE series_id = u.id AND ts >= $2 AND ts <= $3
                                 ORDER BY ts DESC LIMIT $4) AS l",
        )
        .bind(ids)
        .bind(start_ms)
        .bind(end_ms)
        .bind(i64::from(n))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
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
