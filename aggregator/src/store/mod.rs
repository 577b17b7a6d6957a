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
//! - `api_tokens`: SHA-256 of API tokens with their role (scope) and revocation.
//!
//! A batch is committed in one transaction: dedup row, series, samples, host
//! row. Only after that transaction commits does the aggregator ack.

pub mod postgres;
mod shared;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;
use vigil_common::{BatchHeader, Series};

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
mod tests;
