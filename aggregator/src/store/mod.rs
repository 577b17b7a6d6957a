//! Storage behind one interface, [`Store`], with two implementations:
//! PostgreSQL ([`postgres`], production: daily partitions, UNNEST bulk writes)
//! and SQLite ([`sqlite`], the zero-setup default: one file).
//!
//! Both keep the same tables (see `migrations/`):
//! - `agents`: registered agent ids and their Ed25519 public keys (and revocation,
//!   and the previous key during a rotation's grace period);
//! - `enroll_tokens`: one-time enrollment tokens, as SHA-256 ([`enroll`]);
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
mod chunk;
pub mod config;
pub mod enroll;
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
    /// Holds the URL already redacted ([`vigil_common::secret::redact_url`]).
    #[error("unsupported database url {0:?}: use postgres://... or sqlite:PATH")]
    BadUrl(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A cluster leader's write refused because a newer leader took over.
    #[error("leader epoch {0} was superseded: this aggregator is no longer the leader")]
    Fenced(i64),
}

impl StoreError {
    /// Whether the database refused a row as a duplicate of a unique key.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }

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
    /// The key before the last rotation and until when (ms) it is still
    /// accepted (see [`enroll`]).
    pub previous_key: Option<([u8; 32], i64)>,
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

/// One batch of a group commit ([`Store::commit_batches`]).
#[derive(Debug, Clone, Copy)]
pub struct BatchRef<'a> {
    pub header: &'a BatchHeader,
    pub series: &'a [Series],
}

/// What committing one batch of a group did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub outcome: CommitOutcome,
    /// The id of each of the batch's series, in order (empty for a
    /// duplicate), so the head appends by id.
    pub series_ids: Vec<i64>,
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

    /// Registers (or re-keys at once, un-revoking) an agent; a previous key
    /// kept by a rotation is forgotten.
    async fn register_agent(&self, agent_id: &str, public_key: &[u8; 32])
    -> Result<(), StoreError>;
    /// Marks an agent revoked; false if it was not registered.
    async fn revoke_agent(&self, agent_id: &str) -> Result<bool, StoreError>;
    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// Commits verified batches (of any agents) in one transaction,
    /// deduplicating each on (agent id, boot id, sequence): the group
    /// commit of ingest. One outcome per batch, in order; a batch appearing
    /// twice is committed once (the second is a duplicate). Either every
    /// batch is committed or, on error, none.
    async fn commit_batches(&self, batches: &[BatchRef<'_>]) -> Result<Vec<Committed>, StoreError>;

    /// Commits one verified batch atomically ([`Store::commit_batches`] of one).
    async fn commit_batch(
        &self,
        header: &BatchHeader,
        series: &[Series],
    ) -> Result<CommitOutcome, StoreError> {
        let mut out = self.commit_batches(&[BatchRef { header, series }]).await?;
        out.pop()
            .map(|c| c.outcome)
            .ok_or_else(|| StoreError::Corrupt("commit returned no outcome".into()))
    }

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
    async fn select_series(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<(i64, crate::query::source::SharedLabels)>, StoreError>;

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

    /// The newest `n` samples `(series id, ts, value)` of each of `ids` in
    /// `[start, end]`, in no particular order, in one round trip: a few
    /// primary-key probes per series however long the range (see
    /// [`reader::last_real`]).
    async fn read_newest(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        n: u32,
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

/// How sqlx reports a slow statement: at INFO, not its default WARN. A
/// rollup over a minute of 100,000 series takes seconds by design, and a
/// warning every minute on a healthy system teaches operators to ignore
/// warnings; the durations that matter are metrics
/// (`vigil_aggregator_commit_duration_seconds`, ...).
pub(crate) fn quiet_slow_statements<O: sqlx::ConnectOptions>(options: O) -> O {
    options.log_slow_statements(log::LevelFilter::Info, std::time::Duration::from_secs(1))
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
        Err(StoreError::BadUrl(vigil_common::secret::redact_url(url)))
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

/// A series' identity in the `series` table: metric name and canonical labels.
pub type SeriesKey = (String, String);

/// The key of `series` in the `series` table.
pub(crate) fn series_key(series: &Series) -> SeriesKey {
    (series.name.clone(), labels_json(series))
}

/// A hash of a series' identity as it arrived (name, then labels in
/// order), computed without allocating: the cache's key.
pub(crate) fn identity_hash(series: &Series) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    series.name.hash(&mut h);
    for l in &series.labels {
        l.name.hash(&mut h);
        l.value.hash(&mut h);
    }
    h.finish()
}

/// A committed series' id with the identity it was cached under, packed
/// into one allocation: the name, then each label's name and value, each
/// as its length (4 bytes) and its bytes, so equal bytes mean equal strings.
struct Cached {
    id: i64,
    identity: Box<[u8]>,
}

impl Cached {
    fn new(series: &Series, id: i64) -> Self {
        let len: usize = Self::parts(series).map(|p| p.len() + 4).sum();
        let mut identity = Vec::with_capacity(len);
        for part in Self::parts(series) {
            let n = u32::try_from(part.len()).unwrap_or(u32::MAX);
            identity.extend_from_slice(&n.to_le_bytes());
            identity.extend_from_slice(part.as_bytes());
        }
        Cached {
            id,
            identity: identity.into_boxed_slice(),
        }
    }

    fn parts(series: &Series) -> impl Iterator<Item = &str> {
        std::iter::once(series.name.as_str()).chain(
            series
                .labels
                .iter()
                .flat_map(|l| [l.name.as_str(), l.value.as_str()]),
        )
    }

    /// Whether `series` is the series cached here: the same strings in
    /// the same order.
    fn is(&self, series: &Series) -> bool {
        let mut rest: &[u8] = &self.identity;
        for part in Self::parts(series) {
            let part = part.as_bytes();
            let Ok(n) = u32::try_from(part.len()) else {
                return false;
            };
            match rest.split_first_chunk::<4>() {
                Some((len, tail)) if *len == n.to_le_bytes() && tail.starts_with(part) => {
                    rest = &tail[part.len()..];
                }
                _ => return false,
            }
        }
        rest.is_empty()
    }
}

/// Series ids known to be committed, so steady-state batches resolve each
/// series with one hash and one comparison (no label map, no JSON, no
/// allocation). Ids are only inserted after their transaction commits. Two
/// series with the same hash: the first keeps the slot, the other is always
/// looked up in the database (correct, only slower).
#[derive(Default)]
pub(crate) struct SeriesCache {
    ids: std::sync::Mutex<rustc_hash::FxHashMap<u64, Cached>>,
}

/// Above this many entries the cache is cleared rather than grown without bound.
const SERIES_CACHE_MAX: usize = 1_000_000;

impl SeriesCache {
    /// The cached id of each of `series` (`hashes` are their
    /// [`identity_hash`]es), under one lock.
    fn ids(&self, series: &[&Series], hashes: &[u64]) -> Vec<Option<i64>> {
        let Ok(map) = self.ids.lock() else {
            return vec![None; series.len()];
        };
        series
            .iter()
            .zip(hashes)
            .map(|(s, h)| map.get(h).filter(|c| c.is(s)).map(|c| c.id))
            .collect()
    }

    fn extend<'a>(&self, entries: impl IntoIterator<Item = (u64, &'a Series, i64)>) {
        if let Ok(mut map) = self.ids.lock() {
            if map.len() > SERIES_CACHE_MAX {
                map.clear();
            }
            for (hash, s, id) in entries {
                map.entry(hash).or_insert_with(|| Cached::new(s, id));
            }
        }
    }
}

/// The series ids of a write, resolved from the cache where it knows them;
/// the rest (`missing`, sorted and unique so concurrent transactions take
/// row locks in the same order) are looked up or created in the database
/// by the backend, then given to [`Resolving::finish`].
pub(crate) struct Resolving<'a> {
    series: Vec<&'a Series>,
    hashes: Vec<u64>,
    ids: Vec<Option<i64>>,
    pub missing: Vec<SeriesKey>,
}

impl<'a> Resolving<'a> {
    pub(crate) fn start(cache: &SeriesCache, series: Vec<&'a Series>) -> Self {
        let hashes: Vec<u64> = series.iter().map(|s| identity_hash(s)).collect();
        let ids = cache.ids(&series, &hashes);
        let mut missing: Vec<SeriesKey> = series
            .iter()
            .zip(&ids)
            .filter(|(_, id)| id.is_none())
            .map(|(s, _)| series_key(s))
            .collect();
        missing.sort();
        missing.dedup();
        Resolving {
            series,
            hashes,
            ids,
            missing,
        }
    }

    /// Every series' id, given the ids the database returned for
    /// `missing`; and what to tell the cache and the index once the
    /// transaction commits.
    pub(crate) fn finish(self, found: Vec<(SeriesKey, i64)>) -> Result<Resolved<'a>, StoreError> {
        let mut learnt = Vec::new();
        let ids = if found.is_empty() {
            self.ids
                .iter()
                .map(|id| id.ok_or_else(|| StoreError::Corrupt("series without an id".into())))
                .collect::<Result<Vec<i64>, StoreError>>()?
        } else {
            let by_key: std::collections::HashMap<&SeriesKey, i64> =
                found.iter().map(|(k, id)| (k, *id)).collect();
            let mut ids = Vec::with_capacity(self.ids.len());
            for ((s, hash), id) in self.series.iter().zip(&self.hashes).zip(&self.ids) {
                let id = match id {
                    Some(id) => *id,
                    None => {
                        let id = by_key.get(&series_key(s)).copied().ok_or_else(|| {
                            StoreError::Corrupt(format!("no id for series {}", s.name))
                        })?;
                        learnt.push((*hash, *s, id));
                        id
                    }
                };
                ids.push(id);
            }
            ids
        };
        Ok(Resolved {
            series: self.series,
            ids,
            learnt,
            found,
        })
    }
}

/// A write's series with their ids ([`Resolving::finish`]).
pub(crate) struct Resolved<'a> {
    series: Vec<&'a Series>,
    /// The id of each series, in order.
    pub ids: Vec<i64>,
    learnt: Vec<(u64, &'a Series, i64)>,
    found: Vec<(SeriesKey, i64)>,
}

impl Resolved<'_> {
    /// The three columns a bulk insert writes, one row per point.
    pub(crate) fn columns(&self) -> Columns {
        let n: usize = self.series.iter().map(|s| s.points.len()).sum();
        let mut cols = Columns {
            ids: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
        };
        for (s, &id) in self.series.iter().zip(&self.ids) {
            for p in &s.points {
                cols.ids.push(id);
                cols.ts.push(p.timestamp_ms);
                cols.values.push(p.value);
            }
        }
        cols
    }

    /// After the transaction committed: the new ids go to the cache and
    /// the series index.
    pub(crate) fn committed(self, cache: &SeriesCache, index: &SeriesIndex) {
        if self.found.is_empty() {
            return;
        }
        index_new(index, &self.found);
        cache.extend(self.learnt);
    }
}

/// The ids of a batch's series in the order of its points, with the points'
/// timestamps and values: the three columns a bulk insert writes.
pub(crate) struct Columns {
    pub ids: Vec<i64>,
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
}

/// Which batches of a group are new: the first occurrence of each
/// (agent, boot, sequence) that `inserted` (the keys the dedup insert
/// wrote) holds.
pub(crate) fn fresh_batches(
    batches: &[BatchRef<'_>],
    inserted: &std::collections::HashSet<(String, Vec<u8>, i64)>,
) -> Vec<bool> {
    let mut seen = std::collections::HashSet::new();
    batches
        .iter()
        .map(|b| {
            let key = (
                b.header.agent_id.clone(),
                b.header.boot_id.to_vec(),
                b.header.sequence as i64,
            );
            inserted.contains(&key) && seen.insert(key)
        })
        .collect()
}

/// What one group commit writes to `hosts`: per agent (sorted, so
/// concurrent transactions lock rows in the same order) its latest
/// header's host name and roles and the samples stored.
pub(crate) fn host_rows<'a>(
    batches: &[BatchRef<'a>],
    stored: &[u64],
) -> Vec<(&'a BatchHeader, u64)> {
    let mut per_agent: BTreeMap<&str, (&BatchHeader, u64)> = BTreeMap::new();
    for (b, &n) in batches.iter().zip(stored) {
        let entry = per_agent
            .entry(b.header.agent_id.as_str())
            .or_insert((b.header, 0));
        if b.header.sequence >= entry.0.sequence {
            entry.0 = b.header;
        }
        entry.1 += n;
    }
    per_agent.into_values().collect()
}

/// The outcomes of a group whose fresh batches all stored every point
/// (`stored` per batch, 0 for duplicates), with their series ids split
/// per batch from `ids` (the fresh batches' series, in order).
pub(crate) fn outcomes(
    batches: &[BatchRef<'_>],
    fresh: &[bool],
    stored: &[u64],
    ids: &[i64],
) -> Vec<Committed> {
    let mut at = 0;
    batches
        .iter()
        .zip(fresh.iter().zip(stored))
        .map(|(b, (&fresh, &stored))| {
            if !fresh {
                return Committed {
                    outcome: CommitOutcome {
                        duplicate: true,
                        samples_stored: 0,
                    },
                    series_ids: Vec::new(),
                };
            }
            let end = (at + b.series.len()).min(ids.len());
            let series_ids = ids[at..end].to_vec();
            at = end;
            Committed {
                outcome: CommitOutcome {
                    duplicate: false,
                    samples_stored: stored,
                },
                series_ids,
            }
        })
        .collect()
}

/// The bookkeeping of one group commit, the same on both databases: which
/// batches are new, their points, and what each batch and host is told.
pub(crate) struct Group<'a, 'b> {
    batches: &'b [BatchRef<'a>],
    fresh: Vec<bool>,
    points: Vec<u64>,
}

impl<'a, 'b> Group<'a, 'b> {
    /// `fresh[i]`: whether the dedup insert found `batches[i]` new.
    pub(crate) fn new(batches: &'b [BatchRef<'a>], fresh: Vec<bool>) -> Self {
        let points = batches
            .iter()
            .zip(&fresh)
            .map(|(b, &f)| if f { point_count(b.series) } else { 0 })
            .collect();
        Group {
            batches,
            fresh,
            points,
        }
    }

    pub(crate) fn any_fresh(&self) -> bool {
        self.fresh.iter().any(|f| *f)
    }

    /// The new batches' series, in order.
    pub(crate) fn series(&self) -> Vec<&'a Series> {
        self.batches
            .iter()
            .zip(&self.fresh)
            .filter(|(_, f)| **f)
            .flat_map(|(b, _)| b.series.iter())
            .collect()
    }

    /// Samples stored per batch, given the group's total `stored`; `None`
    /// when some point was stored before and, with `split`, the group is
    /// to be rolled back and committed batch by batch (so each count is
    /// exact).
    pub(crate) fn stored_each(&self, stored: u64, split: bool) -> Option<Vec<u64>> {
        if stored == self.points.iter().sum::<u64>() {
            Some(self.points.clone())
        } else if split && self.fresh.iter().filter(|f| **f).count() > 1 {
            None
        } else {
            Some(
                self.fresh
                    .iter()
                    .map(|&f| if f { stored } else { 0 })
                    .collect(),
            )
        }
    }

    /// The `hosts` rows to upsert: [`host_rows`] of the agents with a new batch.
    pub(crate) fn hosts(&self, stored_each: &[u64]) -> Vec<(&'a BatchHeader, u64)> {
        host_rows(self.batches, stored_each)
            .into_iter()
            .filter(|(h, _)| {
                self.batches
                    .iter()
                    .zip(&self.fresh)
                    .any(|(b, &f)| f && b.header.agent_id == h.agent_id)
            })
            .collect()
    }

    /// Each batch's outcome ([`outcomes`]).
    pub(crate) fn outcomes(&self, stored_each: &[u64], ids: &[i64]) -> Vec<Committed> {
        outcomes(self.batches, &self.fresh, stored_each, ids)
    }
}

/// Number of points in `series`.
pub(crate) fn point_count(series: &[Series]) -> u64 {
    series.iter().map(|s| s.points.len() as u64).sum()
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
