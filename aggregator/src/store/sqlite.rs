//! SQLite store: one file, WAL mode, `synchronous = FULL` so an acked batch
//! survives a power cut. All writes go through a single-connection pool (SQLite
//! has one writer anyway; queuing in the pool beats SQLITE_BUSY retries), reads
//! use a separate pool.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, QueryBuilder, Sqlite, Transaction, Type, TypeInfo, ValueRef};
use vigil_common::{BatchHeader, MetricMetadata, Series, now_ms};

use promql_parser::label::Matcher;

use super::index::SeriesIndex;
use super::metadata::{self, MetadataCache, StoredMetadata};
use super::rollup::{Bucket, Resolution, Table};
use super::{
    AgentRecord, BatchRef, BucketRow, Committed, Group, HostInfo, Resolved, Resolving, SeriesCache,
    SeriesKey, Store, StoreError, TokenInfo, TokenRecord, bucket, point_count, shared, sql_limit,
};

/// Rows per INSERT statement, largest first: 3 parameters each, under
/// SQLite's 32766 limit.
const INSERT_SIZES: [usize; 7] = [4096, 1024, 256, 64, 16, 4, 1];

/// Series whose old rows one retention DELETE removes.
const DELETE_SERIES_PER_STATEMENT: usize = 100;

/// Reads the buckets of a rollup table.
macro_rules! read_rollup_sql {
    ($table:literal) => {
        concat!(
            "SELECT series_id, ts, min, max, sum, count, last FROM ",
            $table,
            " WHERE series_id IN (SELECT value FROM json_each($1)) AND ts >= $2 AND ts <= $3
             ORDER BY series_id, ts LIMIT $4"
        )
    };
}

/// Deletes the rows of a chunk of series older than a time.
macro_rules! delete_sql {
    ($table:literal) => {
        concat!(
            "DELETE FROM ",
            $table,
            " WHERE series_id IN (SELECT value FROM json_each($1)) AND ts < $2"
        )
    };
}

/// An id list as one JSON array parameter (any number of ids).
fn id_list(ids: &[i64]) -> Result<String, StoreError> {
    serde_json::to_string(ids).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A sample value as the `samples.value` column holds it. SQLite turns a NaN
/// REAL into NULL, which would make Prometheus' staleness marker (a NaN with
/// its own bits) an ordinary NaN, and stores -0.0 as the integer 0. So a
/// number is a REAL, and a NaN or -0.0 is an 8-byte BLOB of its bits,
/// big-endian (the marker is `x'7ff0000000000002'`): every bit pattern comes
/// back. NULL, written by older versions for any NaN,
/// reads as NaN. Decoded per row from the value's own type, so reads stay
/// typed (no text formatting or SQL-side conversion).
#[derive(Debug, Clone, Copy)]
struct LiteValue(f64);

impl LiteValue {
    /// Whether `v` is stored as a BLOB (a REAL would not keep it).
    fn as_blob(v: f64) -> bool {
        v.is_nan() || (v == 0.0 && v.is_sign_negative())
    }
}

impl Type<Sqlite> for LiteValue {
    fn type_info() -> SqliteTypeInfo {
        <f64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        matches!(ty.name(), "REAL" | "INTEGER" | "BLOB" | "NULL")
    }
}

impl Encode<'_, Sqlite> for LiteValue {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        if Self::as_blob(self.0) {
            Encode::<Sqlite>::encode(self.0.to_bits().to_be_bytes().to_vec(), buf)
        } else {
            Encode::<Sqlite>::encode_by_ref(&self.0, buf)
        }
    }
}

impl<'r> Decode<'r, Sqlite> for LiteValue {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(LiteValue(f64::NAN));
        }
        if value.type_info().name() == "BLOB" {
            let bytes = <&[u8] as Decode<Sqlite>>::decode(value)?;
            let bits: [u8; 8] = bytes
                .try_into()
                .map_err(|_| format!("a sample value BLOB of {} bytes, not 8", bytes.len()))?;
            return Ok(LiteValue(f64::from_be_bytes(bits)));
        }
        Ok(LiteValue(<f64 as Decode<Sqlite>>::decode(value)?))
    }
}

/// Records the batch; false if it was committed before.
async fn insert_batch(
    tx: &mut Transaction<'_, Sqlite>,
    header: &BatchHeader,
    samples: usize,
) -> Result<bool, StoreError> {
    let done = sqlx::query(shared::INSERT_BATCH)
        .bind(&header.agent_id)
        .bind(&header.boot_id[..])
        // A bijection u64 -> i64: the dedup key only needs to be distinct.
        .bind(header.sequence as i64)
        .bind(now_ms())
        .bind(i64::try_from(samples).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Adds a batch's stored samples to its host's row.
async fn upsert_host(
    tx: &mut Transaction<'_, Sqlite>,
    header: &BatchHeader,
    stored: u64,
) -> Result<(), StoreError> {
    sqlx::query(shared::UPSERT_HOST)
        .bind(&header.agent_id)
        .bind(&header.host)
        .bind(shared::roles_json(header))
        .bind(now_ms())
        .bind(i64::try_from(stored).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    series: SeriesCache,
    metadata: MetadataCache,
    index: SeriesIndex,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`, lazily.
    pub fn open(path: &Path, max_connections: u32) -> Result<Self, StoreError> {
        let options = super::quiet_slow_statements(SqliteConnectOptions::new())
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
            metadata: MetadataCache::default(),
            index: SeriesIndex::default(),
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

    /// Writes the points of `series` inside `tx` (creating missing series),
    /// and returns how many were new and the resolved ids, which go to the
    /// cache and index once `tx` commits.
    async fn insert_samples<'a>(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        series: Vec<&'a Series>,
    ) -> Result<(u64, Resolved<'a>), StoreError> {
        let resolving = Resolving::start(&self.series, series);
        let found = Self::series_ids(tx, &resolving.missing).await?;
        let resolved = resolving.finish(found)?;
        let cols = resolved.columns();

        // Statements of a few fixed sizes, so each is prepared once per
        // connection and reused (a statement per distinct row count would
        // be parsed again for almost every group).
        let mut stored = 0u64;
        let mut at = 0;
        while at < cols.ids.len() {
            let left = cols.ids.len() - at;
            let rows = INSERT_SIZES
                .iter()
                .copied()
                .find(|&n| n <= left)
                .unwrap_or(1);
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO samples (series_id, ts, value) ");
            insert.push_values(at..at + rows, |mut row, i| {
                row.push_bind(cols.ids[i])
                    .push_bind(cols.ts[i])
                    .push_bind(LiteValue(cols.values[i]));
            });
            insert.push(" ON CONFLICT DO NOTHING");
            stored += insert.build().execute(&mut **tx).await?.rows_affected();
            at += rows;
        }
        Ok((stored, resolved))
    }

    /// One transaction for `batches` (see the PostgreSQL store's).
    async fn commit_group(
        &self,
        batches: &[BatchRef<'_>],
        split: bool,
    ) -> Result<Option<Vec<Committed>>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut fresh = Vec::with_capacity(batches.len());
        for b in batches {
            let n = usize::try_from(point_count(b.series)).unwrap_or(usize::MAX);
            fresh.push(insert_batch(&mut tx, b.header, n).await?);
        }
        let group = Group::new(batches, fresh);
        if !group.any_fresh() {
            tx.rollback().await?;
            return Ok(Some(group.outcomes(&vec![0; batches.len()], &[])));
        }
        let (stored, resolved) = self.insert_samples(&mut tx, group.series()).await?;
        let Some(stored_each) = group.stored_each(stored, split) else {
            tx.rollback().await?;
            return Ok(None);
        };
        for (header, n) in group.hosts(&stored_each) {
            upsert_host(&mut tx, header, n).await?;
        }
        tx.commit().await?;
        let out = group.outcomes(&stored_each, &resolved.ids);
        resolved.committed(&self.series, &self.index);
        Ok(Some(out))
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn db(&self) -> super::Db {
        super::Db::Sqlite {
            writer: self.writer.clone(),
            reader: self.reader.clone(),
        }
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

    async fn commit_batches(&self, batches: &[BatchRef<'_>]) -> Result<Vec<Committed>, StoreError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(out) = self.commit_group(batches, true).await? {
            return Ok(out);
        }
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let one = self.commit_group(std::slice::from_ref(b), false).await?;
            out.extend(one.unwrap_or_default());
        }
        Ok(out)
    }

    async fn write_series(&self, series: &[Series]) -> Result<u64, StoreError> {
        if series.iter().all(|s| s.points.is_empty()) {
            return Ok(0);
        }
        let mut tx = self.writer.begin().await?;
        let (stored, resolved) = self
            .insert_samples(&mut tx, series.iter().collect())
            .await?;
        tx.commit().await?;
        resolved.committed(&self.series, &self.index);
        Ok(stored)
    }

    async fn select_series(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<(i64, crate::query::source::SharedLabels)>, StoreError> {
        shared::lite::refresh_index(&self.reader, &self.index).await?;
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
        // The id list travels as one JSON array parameter (no limit on the
        // number of ids); each id is then a primary-key range scan.
        let ids = id_list(ids)?;
        let rows: Vec<(i64, i64, LiteValue)> = sqlx::query_as(
            "SELECT series_id, ts, value FROM samples
             WHERE series_id IN (SELECT value FROM json_each($1)) AND ts >= $2 AND ts <= $3
             ORDER BY series_id, ts LIMIT $4",
        )
        .bind(ids)
        .bind(start_ms)
        .bind(end_ms)
        .bind(sql_limit(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(|(id, ts, v)| (id, ts, v.0)).collect())
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
        // SQLite has no LATERAL: per id, one backward primary-key probe
        // finds the n-th newest timestamp, then a key range scan from there.
        let rows: Vec<(i64, i64, LiteValue)> = sqlx::query_as(
            "SELECT s.series_id, s.ts, s.value
             FROM (SELECT value AS id FROM json_each($1)) AS u
             JOIN samples AS s ON s.series_id = u.id AND s.ts <= $3
              AND s.ts >= coalesce((SELECT ts FROM samples
                                    WHERE series_id = u.id AND ts >= $2 AND ts <= $3
                                    ORDER BY ts DESC LIMIT 1 OFFSET $4), $2)",
        )
        .bind(id_list(ids)?)
        .bind(start_ms)
        .bind(end_ms)
        .bind(i64::from(n) - 1)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(|(id, ts, v)| (id, ts, v.0)).collect())
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
            "SELECT id FROM (SELECT value AS id FROM json_each($1)) AS u
             WHERE EXISTS (SELECT 1 FROM samples
                           WHERE series_id = u.id AND ts >= $2 AND ts <= $3)",
        )
        .bind(id_list(ids)?)
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&self.reader)
        .await?;
        Ok(found)
    }

    async fn rollup_watermark(&self, res: Resolution) -> Result<Option<i64>, StoreError> {
        shared::lite::rollup_watermark(&self.reader, res).await
    }

    async fn oldest_sample(&self) -> Result<Option<i64>, StoreError> {
        shared::lite::oldest_sample(&self.reader).await
    }

    async fn build_rollup(&self, res: Resolution, from: i64, to: i64) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let n = shared::lite::build_rollup(&mut tx, res, from, to).await?;
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
            .bind(id_list(ids)?)
            .bind(start_ms)
            .bind(end_ms)
            .bind(sql_limit(limit))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.into_iter().map(bucket).collect())
    }

    async fn drop_before(&self, table: Table, before_ms: i64) -> Result<u64, StoreError> {
        let sql = match table {
            Table::Raw => delete_sql!("samples"),
            Table::Rollup(Resolution::Minute) => delete_sql!("samples_1m"),
            Table::Rollup(Resolution::Hour) => delete_sql!("samples_1h"),
        };
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM series ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        // A chunk of series per statement (each a primary-key range delete),
        // so the single writer is released between chunks.
        let mut deleted = 0;
        for chunk in ids.chunks(DELETE_SERIES_PER_STATEMENT) {
            deleted += sqlx::query(sql)
                .bind(id_list(chunk)?)
                .bind(before_ms)
                .execute(&self.writer)
                .await?
                .rows_affected();
        }
        Ok(deleted)
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

    async fn put_metadata(&self, metadata: &[MetricMetadata]) -> Result<u64, StoreError> {
        metadata::lite::put(&self.writer, &self.metadata, metadata).await
    }

    async fn metadata(&self, metric: Option<&str>) -> Result<Vec<StoredMetadata>, StoreError> {
        metadata::lite::read(&self.reader, metric).await
    }
}
