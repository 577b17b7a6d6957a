//! PostgreSQL store: samples partitioned by day, written with UNNEST arrays in
//! one statement per batch.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use vigil_common::{BatchHeader, Series};

use super::{
    AgentRecord, CommitOutcome, HostInfo, SeriesCache, SeriesKey, Store, StoreError, TokenInfo,
    TokenRecord, batch_series_keys, columns, shared,
};

const DAY_MS: i64 = 86_400_000;

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: PgPool,
    series: SeriesCache,
    /// Day starts (ms) whose partition is known to exist.
    partitions: Mutex<HashSet<i64>>,
}

impl PgStore {
    /// A lazily connecting pool: nothing is contacted until first use.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)?;
        Ok(PgStore {
            pool,
            series: SeriesCache::default(),
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
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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

        let keys = batch_series_keys(series);
        let missing: Vec<SeriesKey> = keys
            .iter()
            .filter(|k| self.series.get(k).is_none())
            .cloned()
            .collect();
        let new_ids = if missing.is_empty() {
            Vec::new()
        } else {
            Self::series_ids(&mut tx, &missing).await?
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
        .execute(&mut *tx)
        .await?
        .rows_affected();

        shared::pg::upsert_host(&mut tx, header, stored).await?;

        tx.commit().await?;
        self.series.extend(new_ids);
        Ok(CommitOutcome {
            duplicate: false,
            samples_stored: stored,
        })
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
}
