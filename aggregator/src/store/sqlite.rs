//! SQLite store: one file, WAL mode, `synchronous = FULL` so an acked batch
//! survives a power cut. All writes go through a single-connection pool (SQLite
//! has one writer anyway; queuing in the pool beats SQLITE_BUSY retries), reads
//! use a separate pool.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use vigil_common::{BatchHeader, Series};

use super::{
    AgentRecord, CommitOutcome, HostInfo, SeriesCache, SeriesKey, Store, StoreError, TokenInfo,
    TokenRecord, batch_series_keys, columns, shared,
};

/// Rows per INSERT statement: 3 parameters each, under SQLite's 32766 limit.
const ROWS_PER_INSERT: usize = 5_000;

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    series: SeriesCache,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`, lazily.
    pub fn open(path: &Path, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options.clone());
        let reader = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(SqliteStore {
            writer,
            reader,
            series: SeriesCache::default(),
        })
    }

    async fn series_ids(
        tx: &mut Transaction<'_, Sqlite>,
        keys: &[SeriesKey],
    ) -> Result<Vec<(SeriesKey, i64)>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // The no-op update makes RETURNING yield the id of an existing row too.
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO series (metric, labels) VALUES (?1, ?2)
                 ON CONFLICT (metric, labels) DO UPDATE SET metric = excluded.metric
                 RETURNING id",
            )
            .bind(&key.0)
            .bind(&key.1)
            .fetch_one(&mut **tx)
            .await?;
            out.push((key.clone(), id));
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn register_agent(&self, agent_id: &str, key: &[u8; 32]) -> Result<(), StoreError> {
        shared::lite::register_agent(&self.writer, agent_id, key).await
    }

    async fn revoke_agent(&self, agent_id: &str) -> Result<bool, StoreError> {
        shared::lite::revoke_agent(&self.writer, agent_id).await
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        shared::lite::agent(&self.reader, agent_id).await
    }

    async fn commit_batch(
        &self,
        header: &BatchHeader,
        series: &[Series],
    ) -> Result<CommitOutcome, StoreError> {
        let samples: usize = series.iter().map(|s| s.points.len()).sum();
        let mut tx = self.writer.begin().await?;

        let fresh = shared::lite::insert_batch(&mut tx, header, samples).await?;
        if !fresh {
            tx.rollback().await?;
            return Ok(CommitOutcome {
                duplicate: true,
                samples_stored: 0,
            });
        }

        let missing: Vec<SeriesKey> = batch_series_keys(series)
            .into_iter()
            .filter(|k| self.series.get(k).is_none())
            .collect();
        let new_ids = Self::series_ids(&mut tx, &missing).await?;
        let lookup: std::collections::HashMap<&SeriesKey, i64> =
            new_ids.iter().map(|(k, id)| (k, *id)).collect();
        let cols = columns(series, |key| {
            lookup.get(key).copied().or_else(|| self.series.get(key))
        })?;

        let mut stored = 0u64;
        let rows: Vec<usize> = (0..cols.ids.len()).collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO samples (series_id, ts, value) ");
            insert.push_values(chunk, |mut row, &i| {
                let v = cols.values[i];
                row.push_bind(cols.ids[i])
                    .push_bind(cols.ts[i])
                    .push_bind((!v.is_nan()).then_some(v));
            });
            insert.push(" ON CONFLICT DO NOTHING");
            stored += insert.build().execute(&mut *tx).await?.rows_affected();
        }

        shared::lite::upsert_host(&mut tx, header, stored).await?;

        tx.commit().await?;
        self.series.extend(new_ids);
        Ok(CommitOutcome {
            duplicate: false,
            samples_stored: stored,
        })
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        shared::lite::hosts(&self.reader).await
    }

    async fn count_samples(&self, host: Option<&str>) -> Result<u64, StoreError> {
        let n: i64 = match host {
            None => {
                sqlx::query_scalar("SELECT count(*) FROM samples")
                    .fetch_one(&self.reader)
                    .await?
            }
            Some(h) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id
                 WHERE json_extract(r.labels, '$.host') = ?1",
                )
                .bind(h)
                .fetch_one(&self.reader)
                .await?
            }
        };
        Ok(n.max(0) as u64)
    }

    async fn put_token(&self, name: &str, sha256: &[u8; 32], role: &str) -> Result<(), StoreError> {
        shared::lite::put_token(&self.writer, name, sha256, role).await
    }

    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<TokenInfo>, StoreError> {
        shared::lite::token(&self.reader, sha256).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        shared::lite::revoke_token(&self.writer, name).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        shared::lite::tokens(&self.reader).await
    }
}
