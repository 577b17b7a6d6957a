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
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use vigil_common::{BatchHeader, Series, now_ms};

use super::{
    AgentRecord, CommitOutcome, HostInfo, SeriesCache, SeriesKey, Store, StoreError, TokenInfo,
    batch_series_keys, columns, host_from_row, roles_json,
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

    async fn register_agent(
        &self,
        agent_id: &str,
        public_key: &[u8; 32],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agents (agent_id, public_key, registered_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id) DO UPDATE
             SET public_key = excluded.public_key, registered_at_ms = excluded.registered_at_ms,
                 revoked_at_ms = NULL",
        )
        .bind(agent_id)
        .bind(&public_key[..])
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn revoke_agent(&self, agent_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE agents SET revoked_at_ms = ?2 WHERE agent_id = ?1")
            .bind(agent_id)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT public_key, revoked_at_ms IS NOT NULL AS revoked FROM agents WHERE agent_id = ?1",
        )
        .bind(agent_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            let key: Vec<u8> = r.try_get("public_key")?;
            Ok(AgentRecord {
                agent_id: agent_id.to_string(),
                public_key: key
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(format!("public key of {agent_id}")))?,
                revoked: r.try_get("revoked")?,
            })
        })
        .transpose()
    }

    async fn commit_batch(
        &self,
        header: &BatchHeader,
        series: &[Series],
    ) -> Result<CommitOutcome, StoreError> {
        let now = now_ms();
        let samples: usize = series.iter().map(|s| s.points.len()).sum();
        let mut tx = self.writer.begin().await?;

        let fresh = sqlx::query(
            "INSERT INTO ingested_batches (agent_id, boot_id, sequence, received_at_ms, samples)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .bind(&header.agent_id)
        .bind(&header.boot_id[..])
        .bind(header.sequence as i64)
        .bind(now)
        .bind(i64::try_from(samples).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
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

        sqlx::query(
            "INSERT INTO hosts (agent_id, hostname, roles, first_seen_ms, last_seen_ms, samples_stored)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT (agent_id) DO UPDATE
             SET hostname = excluded.hostname, roles = excluded.roles,
                 last_seen_ms = max(hosts.last_seen_ms, excluded.last_seen_ms),
                 samples_stored = hosts.samples_stored + excluded.samples_stored",
        )
        .bind(&header.agent_id)
        .bind(&header.host)
        .bind(roles_json(header))
        .bind(now)
        .bind(stored as i64)
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        self.series.extend(new_ids);
        Ok(CommitOutcome {
            duplicate: false,
            samples_stored: stored,
        })
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent_id, hostname, roles, first_seen_ms, last_seen_ms, samples_stored
             FROM hosts ORDER BY hostname, agent_id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(host_from_row).collect()
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
        sqlx::query(
            "INSERT INTO api_tokens (name, token_sha256, role, created_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE
             SET token_sha256 = excluded.token_sha256, role = excluded.role,
                 created_at_ms = excluded.created_at_ms",
        )
        .bind(name)
        .bind(&sha256[..])
        .bind(role)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<TokenInfo>, StoreError> {
        let row = sqlx::query("SELECT name, role FROM api_tokens WHERE token_sha256 = ?1")
            .bind(&sha256[..])
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| {
            Ok(TokenInfo {
                name: r.try_get("name")?,
                role: r.try_get("role")?,
            })
        })
        .transpose()
    }
}
