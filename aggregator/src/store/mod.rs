//! Storage behind one interface, [`Store`], with two implementations:
//! PostgreSQL ([`postgres`], production: daily partitions, UNNEST bulk writes)
//! and SQLite ([`sqlite`], the zero-setup default: one file).
//!
//! Both keep the same tables (see `migrations/`):
//! - `agents`: registered agent ids and their Ed25519 public keys (and revocation);
//! - `ingested_batches`: one row per committed (agent, boot, sequence): the dedup key;
//! - `series`: metric name + canonical label JSON -> id;
//! - `samples`: (series id, timestamp ms, value), one value per series and timestamp;
//! - `hosts`: per agent: hostname, roles, first/last seen, samples stored;
//! - `api_tokens`: SHA-256 of API tokens with their role (scope) and revocation;
//! - `metric_metadata`: type, help and unit per metric name ([`metadata`]);
//! - `users`, `sessions`: operator accounts and web sessions ([`users`]).
//!
//! A batch is committed in one transaction: dedup row, series, samples, host
//! row. Only after that transaction commits does the aggregator ack.

pub mod behind;
pub mod config;
pub mod head;
pub mod index;
pub mod metadata;
pub mod postgres;
pub mod reader;
pub mod rollup;
mod shared;
pub mod sqlite;
pub mod users;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use promql_parser::label::Matcher;
use serde::Serialize;
use thiserror::Error;
use vigil_common::{BatchHeader, MetricMetadata, Series};

use crate::query::Labels;
use index::SeriesIndex;
use rollup::{Bucket, Resolution, Table};

/// Storage failures. None of them is the client's fault.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url {0:?}: use postgres://... or sqlite:PATH")]
    BadUrl(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether this looks like the database being unreachable (worth waiting for)
    /// rather than a bug or a bad setup.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            ) | StoreError::Migrate(sqlx::migrate::MigrateError::Execute(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut
            ))
        )
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub agent_id: String,
    pub public_key: [u8; 32],
    pub revoked: bool,
}

/// What `GET /api/v1/hosts` reports per agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostInfo {
    pub agent_id: String,
    pub hostname: String,
    pub roles: Vec<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub samples_stored: i64,
}

/// Result of committing a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The (agent, boot, sequence) was committed before; nothing was written.
    pub duplicate: bool,
    /// Samples written (a sample whose series and timestamp already exist is not).
    pub samples_stored: u64,
}

/// Who an API token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
}

/// An API token as `list-tokens` shows it (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub name: String,
    /// The scope: `read`, `write` or `admin`.
    pub role: String,
    pub created_at_ms: i64,
    /// Set once revoked; a revoked token is rejected.
    pub revoked_at_ms: Option<i64>,
}

/// The storage interface the rest of the aggregator uses.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"postgres"` or `"sqlite"`.
    fn backend(&self) -> &'static str;
    /// The connection pools, for modules that keep their own tables
    /// (alert state, silences, the notification outbox) and write their
    /// own SQL for each backend.
    fn db(&self) -> Db;
    /// Creates or upgrades the schema.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Registers (or re-keys, un-revoking) an agent.
    async fn register_agent(&self, agent_id: &str, public_key: &[u8; 32])
    -> Result<(), StoreError>;
    /// Marks an agent revoked; false if it was not registered.
    async fn revoke_agent(&self, agent_id: &str) -> Result<bool, StoreError>;
    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// Commits a verified batch atomically, deduplicating on
    /// (agent id, boot id, sequence).
    async fn commit_batch(
        &self,
        header: &BatchHeader,
        series: &[Series],
    ) -> Result<CommitOutcome, StoreError>;

    /// Stores samples that do not come from an agent (Prometheus
    /// remote_write, text import, backfill): no dedup row, no host row.
    /// Idempotent per (series, timestamp): a sample already stored is kept
    /// and not counted. Returns the number of samples stored.
    async fn write_series(&self, series: &[Series]) -> Result<u64, StoreError>;

    /// Stores derived samples (recording rule output). Visible to queries
    /// on return; the database write may come later (the head's
    /// write-behind, see [`behind`]). By default: [`Store::write_series`].
    async fn write_derived(&self, series: &[Series]) -> Result<(), StoreError> {
        self.write_series(series).await.map(|_| ())
    }

    /// Returns once every [`Store::write_derived`] before it is in the
    /// database (shutdown, tests).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Ids and label sets (with `__name__`, sorted) of the series matching
    /// every matcher, from the in-memory index after picking up rows other
    /// processes added to the `series` table.
    async fn select_series(&self, matchers: &[Matcher]) -> Result<Vec<(i64, Labels)>, StoreError>;

    /// Samples `(series id, ts, value)` of the series `ids` with `start <= ts
    /// <= end`, in no particular order, in one round trip. At most
    /// `limit + 1` rows are read, so a caller sees that `limit` is exceeded
    /// without the rest being loaded.
    async fn read_samples(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError>;

    /// Those of `ids` that have a sample in `[start, end]`.
    async fn series_with_samples(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<i64>, StoreError>;

    /// Where the rollup of `res` has been built up to (exclusive).
    async fn rollup_watermark(&self, res: Resolution) -> Result<Option<i64>, StoreError>;
    /// Timestamp of the oldest raw sample.
    async fn oldest_sample(&self) -> Result<Option<i64>, StoreError>;
    /// Aggregates raw samples in `[from, to)` into `res` buckets and moves
    /// its watermark to `to`, in one transaction; returns buckets written.
    async fn build_rollup(&self, res: Resolution, from: i64, to: i64) -> Result<u64, StoreError>;
    /// Buckets of `ids` in `[start, end]`, by id then time, at most `limit + 1`.
    async fn read_rollup(
        &self,
        res: Resolution,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Bucket>, StoreError>;
    /// Removes data of `table` before `before_ms`: PostgreSQL drops the
    /// partitions that end by then (returns how many), SQLite deletes the
    /// rows in batches (returns how many).
    async fn drop_before(&self, table: Table, before_ms: i64) -> Result<u64, StoreError>;

    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError>;
    /// Number of stored samples, optionally of one host (`host` label).
    async fn count_samples(&self, host: Option<&str>) -> Result<u64, StoreError>;

    /// Stores the SHA-256 of a token under `name` (replacing an older one).
    async fn put_token(&self, name: &str, sha256: &[u8; 32], role: &str) -> Result<(), StoreError>;
    /// The token with this hash, unless it was revoked.
    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<TokenInfo>, StoreError>;
    /// Revokes the token called `name`; false if there is no such live token.
    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError>;
    /// Every token, revoked ones included, by name.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Upserts metric metadata, skipping entries identical to what this
    /// store last wrote (agents resend it with every batch); returns the
    /// number of rows written.
    async fn put_metadata(&self, metadata: &[MetricMetadata]) -> Result<u64, StoreError>;
    /// Stored metadata by metric name, or only that of `metric`.
    async fn metadata(
        &self,
        metric: Option<&str>,
    ) -> Result<Vec<metadata::StoredMetadata>, StoreError>;
}

/// The pools behind a store. Modules with their own tables match on this
/// and write one statement per backend.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(sqlx::PgPool),
    /// SQLite allows one writer: write through `writer` (one connection),
    /// read through `reader`.
    Sqlite {
        writer: sqlx::SqlitePool,
        reader: sqlx::SqlitePool,
    },
}

/// Opens the store a URL names: `postgres://...` / `postgresql://...`, or
/// `sqlite:PATH` / `sqlite://PATH` (a relative PATH is taken relative to `base`).
/// The connection is lazy: this fails only on a malformed URL.
pub fn open(url: &str, base: &Path, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect_lazy(
            url,
            max_connections,
        )?))
    } else if let Some(path) = sqlite_path(url) {
        let path = if path.is_absolute() {
            path
        } else {
            base.join(path)
        };
        Ok(Arc::new(sqlite::SqliteStore::open(&path, max_connections)?))
    } else {
        Err(StoreError::BadUrl(url.to_string()))
    }
}

/// The storage stack the aggregator runs on: the store wrapped by the head,
/// the rollup / retention task and the query source reading both.
pub struct Layered {
    /// The store with the head kept current (what ingest and HTTP use).
    pub store: Arc<dyn Store>,
    pub head: Arc<head::Head>,
    pub rollups: Arc<rollup::Rollups>,
    pub source: Arc<reader::StoreSource>,
}

/// Wraps `inner` in the head and builds the reader and rollups over it.
pub fn layered(
    inner: Arc<dyn Store>,
    config: &config::StorageConfig,
    metrics: crate::metrics::StorageMetrics,
) -> Layered {
    let head = Arc::new(head::Head::new(
        config.head_duration,
        config.head_max_series,
        metrics.clone(),
    ));
    let store: Arc<dyn Store> = Arc::new(head::HeadStore::new(inner, head.clone()));
    let rollups = Arc::new(rollup::Rollups::new(store.clone(), config.clone(), metrics));
    let source = Arc::new(reader::StoreSource::new(
        store.clone(),
        head.clone(),
        Some(rollups.clone()),
    ));
    Layered {
        store,
        head,
        rollups,
        source,
    }
}

/// The file path in a `sqlite:` URL, if it is one.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty()).then(|| std::path::PathBuf::from(rest))
}

/// Canonical text of a label set: a JSON object with keys in sorted order.
/// This is the series identity in the `series` table.
pub fn labels_json(series: &Series) -> String {
    let map: BTreeMap<&str, &str> = series
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_string())
}

/// Adds series ids a write looked up to `index` (after the write committed).
pub(crate) fn index_new(index: &SeriesIndex, ids: &[(SeriesKey, i64)]) {
    let labels: Vec<(i64, Labels)> = ids
        .iter()
        .filter_map(|((m, l), id)| index::labels_of(m, l).ok().map(|ls| (*id, ls)))
        .collect();
    index.insert(labels);
}

/// A rollup row as read from either database (NULL is NaN).
pub(crate) type BucketRow = (
    i64,
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    i64,
    Option<f64>,
);

pub(crate) fn bucket((series_id, ts, min, max, sum, count, last): BucketRow) -> Bucket {
    let v = |x: Option<f64>| x.unwrap_or(f64::NAN);
    Bucket {
        series_id,
        ts,
        min: v(min),
        max: v(max),
        sum: v(sum),
        count,
        last: v(last),
    }
}

/// `limit + 1` as an SQL LIMIT (a limit of 0 means none).
pub(crate) fn sql_limit(limit: usize) -> i64 {
    if limit == 0 {
        i64::MAX
    } else {
        i64::try_from(limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1)
    }
}

/// A series' identity: metric name and canonical labels.
pub type SeriesKey = (String, String);

/// Series ids known to be committed, so steady-state batches skip the lookup.
/// Ids are only inserted after their transaction commits.
#[derive(Default)]
pub(crate) struct SeriesCache {
    ids: std::sync::Mutex<std::collections::HashMap<SeriesKey, i64>>,
}

/// Above this many entries the cache is cleared rather than grown without bound.
const SERIES_CACHE_MAX: usize = 1_000_000;

impl SeriesCache {
    pub(crate) fn get(&self, key: &SeriesKey) -> Option<i64> {
        self.ids.lock().ok()?.get(key).copied()
    }

    pub(crate) fn extend(&self, entries: impl IntoIterator<Item = (SeriesKey, i64)>) {
        if let Ok(mut ids) = self.ids.lock() {
            if ids.len() > SERIES_CACHE_MAX {
                ids.clear();
            }
            ids.extend(entries);
        }
    }
}

/// The unique series of a batch with their keys, sorted so concurrent
/// transactions take row locks in the same order (no deadlocks).
pub(crate) fn batch_series_keys(series: &[Series]) -> Vec<SeriesKey> {
    let mut keys: Vec<SeriesKey> = series
        .iter()
        .map(|s| (s.name.clone(), labels_json(s)))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The ids of a batch's series in the order of its points, with the points'
/// timestamps and values: the three columns a bulk insert writes.
pub(crate) struct Columns {
    pub ids: Vec<i64>,
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
}

/// Flattens `series` into insert columns; `id_of` names each series' id.
pub(crate) fn columns(
    series: &[Series],
    mut id_of: impl FnMut(&SeriesKey) -> Option<i64>,
) -> Result<Columns, StoreError> {
    let n: usize = series.iter().map(|s| s.points.len()).sum();
    let mut cols = Columns {
        ids: Vec::with_capacity(n),
        ts: Vec::with_capacity(n),
        values: Vec::with_capacity(n),
    };
    for s in series {
        let key = (s.name.clone(), labels_json(s));
        let id = id_of(&key)
            .ok_or_else(|| StoreError::Corrupt(format!("no id for series {}", s.name)))?;
        for p in &s.points {
            cols.ids.push(id);
            cols.ts.push(p.timestamp_ms);
            cols.values.push(p.value);
        }
    }
    Ok(cols)
}

/// Reads a `hosts` row, whichever database it came from.
pub(crate) fn host_from_row<'r, R>(r: &'r R) -> Result<HostInfo, StoreError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let roles: String = r.try_get("roles")?;
    Ok(HostInfo {
        agent_id: r.try_get("agent_id")?,
        hostname: r.try_get("hostname")?,
        roles: serde_json::from_str(&roles)
            .map_err(|e| StoreError::Corrupt(format!("hosts.roles: {e}")))?,
        first_seen_ms: r.try_get("first_seen_ms")?,
        last_seen_ms: r.try_get("last_seen_ms")?,
        samples_stored: r.try_get("samples_stored")?,
    })
}

#[cfg(test)]
mod nan_tests;
#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod tests;
