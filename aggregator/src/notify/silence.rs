//! Silences, with Alertmanager's model: matchers (its JSON shape), a start
//! and an end, who created it and why. A silence is *pending* before its
//! start, *active* until its end, *expired* after; expiring one sets its end
//! to now (and its start too when it had not started). Expired silences are
//! kept (listable, for history) for [`RETENTION_MS`], then deleted.
//!
//! Every change is written to the `silences` table first, then to the
//! in-memory list the dispatcher consults on every flush (reads never touch
//! the database). The list is loaded at start ([`Silences::load`]). Writers
//! take turns (one async mutex), so the list always follows the table.
//!
//! Editing a silence ([`Silences::update`], in `silence/update.rs`) follows
//! Alertmanager's `Silences.Set`: in place when history allows, else the old
//! one is expired and a new one created.

use std::sync::RwLock;

use thiserror::Error;

mod update;

use super::config::matcher::{ApiMatcher, Matcher};
use crate::alert::LabelSet;
use crate::store::{Db, StoreError};

/// How long expired silences are kept.
pub const RETENTION_MS: i64 = 5 * 86_400_000;

/// At most this many silences are stored (expired ones included).
pub const MAX_SILENCES: usize = 10_000;

/// Most matchers one silence may have.
pub const MAX_MATCHERS: usize = 64;

/// Longest comment, author or host name stored.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Why a silence operation failed.
#[derive(Debug, Error)]
pub enum SilenceError {
    /// The request is invalid (the reason is for the caller).
    #[error("{0}")]
    Invalid(String),
    #[error("silence {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SilenceError {
    fn from(e: sqlx::Error) -> Self {
        SilenceError::Store(e.into())
    }
}

/// A silence's state at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// One stored silence.
#[derive(Debug, Clone)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<ApiMatcher>,
    compiled: Vec<Matcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
    pub updated_at_ms: i64,
}

impl Silence {
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms < self.starts_at_ms {
            SilenceState::Pending
        } else if now_ms < self.ends_at_ms {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Whether every matcher matches `labels`.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        super::config::matcher::all_match(&self.compiled, labels)
    }
}

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct NewSilence {
    pub matchers: Vec<ApiMatcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

/// Checks a silence and compiles its matchers (Alertmanager's rules).
fn validate(new: &NewSilence, now_ms: i64) -> Result<Vec<Matcher>, SilenceError> {
    let bad = |m: String| Err(SilenceError::Invalid(m));
    if new.matchers.is_empty() {
        return bad("at least one matcher is required".into());
    }
    if new.matchers.len() > MAX_MATCHERS {
        return bad(format!("at most {MAX_MATCHERS} matchers"));
    }
    if new.comment.len() > MAX_TEXT_BYTES || new.created_by.len() > MAX_TEXT_BYTES {
        return bad(format!(
            "comment and createdBy are limited to {MAX_TEXT_BYTES} bytes"
        ));
    }
    let mut compiled = Vec::new();
    for m in &new.matchers {
        compiled.push(m.compile().map_err(SilenceError::Invalid)?);
    }
    if compiled.iter().all(|m| m.matches_value("")) {
        return bad("at least one matcher must not match the empty string (the silence would match every alert)".into());
    }
    if new.ends_at_ms <= new.starts_at_ms {
        return bad("endsAt must be after startsAt".into());
    }
    if new.ends_at_ms <= now_ms {
        return bad("endsAt must be in the future".into());
    }
    if new.comment.trim().is_empty() {
        return bad("comment is required".into());
    }
    if new.created_by.trim().is_empty() {
        return bad("createdBy is required".into());
    }
    Ok(compiled)
}

/// Random 128-bit id as a UUID-shaped string.
pub(crate) fn new_id() -> Result<String, StoreError> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| StoreError::Corrupt("no randomness for an id".into()))?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

const INSERT_PG: &str = "INSERT INTO silences (id, matchers, starts_at_ms, ends_at_ms, created_by, comment, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_LITE: &str = "INSERT INTO silences (id, matchers, starts_at_ms, ends_at_ms, created_by, comment, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const EXPIRE_PG: &str =
    "UPDATE silences SET starts_at_ms = $2, ends_at_ms = $3, updated_at_ms = $3 WHERE id = $1";
const EXPIRE_LITE: &str =
    "UPDATE silences SET starts_at_ms = ?2, ends_at_ms = ?3, updated_at_ms = ?3 WHERE id = ?1";

/// `s` expired at `now_ms` (a pending one also starts then), or `None`
/// when it has already expired.
fn expired_now(mut s: Silence, now_ms: i64) -> Option<Silence> {
    match s.state(now_ms) {
        SilenceState::Expired => return None,
        SilenceState::Pending => s.starts_at_ms = now_ms,
        SilenceState::Active => {}
    }
    s.ends_at_ms = now_ms;
    s.updated_at_ms = now_ms;
    Some(s)
}

type Row = (String, String, i64, i64, String, String, i64);

fn from_row(r: Row) -> Result<Silence, StoreError> {
    let matchers: Vec<ApiMatcher> = serde_json::from_str(&r.1)
        .map_err(|e| StoreError::Corrupt(format!("silence {} matchers: {e}", r.0)))?;
    let compiled = matchers
        .iter()
        .map(ApiMatcher::compile)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(format!("silence {}: {e}", r.0)))?;
    Ok(Silence {
        id: r.0,
        matchers,
        compiled,
        starts_at_ms: r.2,
        ends_at_ms: r.3,
        created_by: r.4,
        comment: r.5,
        updated_at_ms: r.6,
    })
}

/// The silences: a database table and its in-memory copy.
pub struct Silences {
    db: Db,
    /// `None` until loaded.
    cache: RwLock<Option<Vec<Silence>>>,
    /// Held by each writer across its database write and cache update.
    write: tokio::sync::Mutex<()>,
}

impl Silences {
    pub fn new(db: Db) -> Silences {
        Silences {
            db,
            cache: RwLock::new(None),
            write: tokio::sync::Mutex::new(()),
        }
    }

    /// (Re)reads every silence from the database.
    pub async fn load(&self) -> Result<(), StoreError> {
        const SELECT: &str = "SELECT id, matchers, starts_at_ms, ends_at_ms, created_by, comment, updated_at_ms FROM silences ORDER BY starts_at_ms, id";
        let rows: Vec<Row> = match &self.db {
            Db::Postgres(pool) => sqlx::query_as(SELECT).fetch_all(pool).await?,
            Db::Sqlite { reader, .. } => sqlx::query_as(SELECT).fetch_all(reader).await?,
        };
        let list = rows
            .into_iter()
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if let Ok(mut cache) = self.cache.write() {
            *cache = Some(list);
        }
        Ok(())
    }

    /// Loads unless already loaded (the first API call after a start whose
    /// database was still down).
    pub async fn ensure_loaded(&self) -> Result<(), StoreError> {
        let loaded = self.cache.read().map(|c| c.is_some()).unwrap_or(false);
        if loaded { Ok(()) } else { self.load().await }
    }

    /// Every silence (pending, active, expired), oldest start first.
    pub fn list(&self) -> Vec<Silence> {
        self.cache
            .read()
            .ok()
            .and_then(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn get(&self, id: &str) -> Option<Silence> {
        self.cache
            .read()
            .ok()?
            .as_ref()?
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    /// Ids of the active silences matching `labels`.
    pub fn silencing(&self, labels: &LabelSet, now_ms: i64) -> Vec<String> {
        let Ok(cache) = self.cache.read() else {
            return Vec::new();
        };
        cache
            .iter()
            .flatten()
            .filter(|s| s.state(now_ms) == SilenceState::Active && s.matches(labels))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Validates and stores a new silence (a start in the past becomes now).
    pub async fn create(&self, new: NewSilence, now_ms: i64) -> Result<Silence, SilenceError> {
        let _turn = self.write.lock().await;
        self.ensure_loaded().await?;
        let compiled = validate(&new, now_ms)?;
        let silence = self.fresh(new, compiled, now_ms)?;
        let matchers = serde_json::to_string(&silence.matchers)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let s = &silence;
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(INSERT_PG)
                    .bind(&s.id)
                    .bind(&matchers)
                    .bind(s.starts_at_ms)
                    .bind(s.ends_at_ms)
                    .bind(&s.created_by)
                    .bind(&s.comment)
                    .bind(s.updated_at_ms)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite { writer, .. } => {
                sqlx::query(INSERT_LITE)
                    .bind(&s.id)
                    .bind(&matchers)
                    .bind(s.starts_at_ms)
                    .bind(s.ends_at_ms)
                    .bind(&s.created_by)
                    .bind(&s.comment)
                    .bind(s.updated_at_ms)
                    .execute(writer)
                    .await?;
            }
        }
        self.cache_put(silence.clone());
        Ok(silence)
    }

    /// A new silence with a fresh id (a start in the past becomes now),
    /// unless the store is full.
    fn fresh(
        &self,
        new: NewSilence,
        compiled: Vec<Matcher>,
        now_ms: i64,
    ) -> Result<Silence, SilenceError> {
        if self.list().len() >= MAX_SILENCES {
            return Err(SilenceError::Invalid(format!(
                "too many silences (at most {MAX_SILENCES}, expired ones included until they are deleted)"
            )));
        }
        Ok(Silence {
            id: new_id()?,
            matchers: new.matchers,
            compiled,
            starts_at_ms: new.starts_at_ms.max(now_ms),
            ends_at_ms: new.ends_at_ms,
            created_by: new.created_by,
            comment: new.comment,
            updated_at_ms: now_ms,
        })
    }

    /// Replaces the cached silence with `s`'s id, or adds `s`.
    fn cache_put(&self, s: Silence) {
        if let Ok(mut cache) = self.cache.write() {
            let list = cache.get_or_insert_with(Vec::new);
            match list.iter_mut().find(|x| x.id == s.id) {
                Some(slot) => *slot = s,
                None => list.push(s),
            }
        }
    }

    /// Expires a silence now. Expiring an expired silence changes nothing
    /// (DELETE is idempotent).
    pub async fn expire(&self, id: &str, now_ms: i64) -> Result<Silence, SilenceError> {
        let _turn = self.write.lock().await;
        self.ensure_loaded().await?;
        let s = self
            .get(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        let Some(s) = expired_now(s.clone(), now_ms) else {
            return Ok(s);
        };
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(EXPIRE_PG)
                    .bind(&s.id)
                    .bind(s.starts_at_ms)
                    .bind(now_ms)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite { writer, .. } => {
                sqlx::query(EXPIRE_LITE)
                    .bind(&s.id)
                    .bind(s.starts_at_ms)
                    .bind(now_ms)
                    .execute(writer)
                    .await?;
            }
        }
        self.cache_put(s.clone());
        Ok(s)
    }

    /// Deletes silences that expired more than [`RETENTION_MS`] ago.
    pub async fn gc(&self, now_ms: i64) -> Result<u64, StoreError> {
        let _turn = self.write.lock().await;
        let cutoff = now_ms - RETENTION_MS;
        let n = match &self.db {
            Db::Postgres(pool) => sqlx::query("DELETE FROM silences WHERE ends_at_ms < $1")
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected(),
            Db::Sqlite { writer, .. } => sqlx::query("DELETE FROM silences WHERE ends_at_ms < ?")
                .bind(cutoff)
                .execute(writer)
                .await?
                .rows_affected(),
        };
        if let Ok(mut cache) = self.cache.write()
            && let Some(list) = cache.as_mut()
        {
            list.retain(|s| s.ends_at_ms >= cutoff);
        }
        Ok(n)
    }
}

#[cfg(test)]
#[path = "silence_tests.rs"]
mod tests;
