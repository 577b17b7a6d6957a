//! Maintenance mode: while a host (or, without a host, everything) is in
//! maintenance, its alerts still evaluate and show as muted, but nothing is
//! notified. A window starts now and ends at `until`, after a duration, or
//! when stopped; who started and stopped it, when and why are kept.
//! Windows that ended more than [`RETENTION_MS`] ago are deleted.
//!
//! Same storage pattern as [`super::silence`]: the `maintenance_windows`
//! table first, then the in-memory list the dispatcher reads.

use std::sync::RwLock;

use crate::alert::{LabelSet, Muted};
use crate::store::{Db, StoreError};

use super::silence::SilenceError;

/// How long ended windows are kept (listable).
pub const RETENTION_MS: i64 = 30 * 86_400_000;

/// At most this many windows are stored (ended ones included).
pub const MAX_WINDOWS: usize = 10_000;

/// One maintenance window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub id: String,
    /// `None`: global maintenance.
    pub host: Option<String>,
    pub starts_at_ms: i64,
    /// `None`: until stopped.
    pub ends_at_ms: Option<i64>,
    pub comment: String,
    pub created_by: String,
    pub stopped_at_ms: Option<i64>,
    pub stopped_by: Option<String>,
}

impl Window {
    /// When it ends (or ended): the earlier of its end and its stop.
    pub fn effective_end(&self) -> Option<i64> {
        match (self.ends_at_ms, self.stopped_at_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && self.effective_end().is_none_or(|e| now_ms < e)
    }
}

type Row = (
    String,
    Option<String>,
    i64,
    Option<i64>,
    String,
    String,
    Option<i64>,
    Option<String>,
);

/// The maintenance windows: a table and its in-memory copy.
pub struct Maintenance {
    db: Db,
    cache: RwLock<Option<Vec<Window>>>,
}

impl Maintenance {
    pub fn new(db: Db) -> Maintenance {
        Maintenance {
            db,
            cache: RwLock::new(None),
        }
    }

    pub async fn load(&self) -> Result<(), StoreError> {
        const SELECT: &str = "SELECT id, host, starts_at_ms, ends_at_ms, comment, created_by, stopped_at_ms, stopped_by FROM maintenance_windows ORDER BY starts_at_ms, id";
        let rows: Vec<Row> = match &self.db {
            Db::Postgres(pool) => sqlx::query_as(SELECT).fetch_all(pool).await?,
            Db::Sqlite { reader, .. } => sqlx::query_as(SELECT).fetch_all(reader).await?,
        };
        let list = rows
            .into_iter()
            .map(|r| Window {
                id: r.0,
                host: r.1,
                starts_at_ms: r.2,
                ends_at_ms: r.3,
                comment: r.4,
                created_by: r.5,
                stopped_at_ms: r.6,
                stopped_by: r.7,
            })
            .collect();
        if let Ok(mut cache) = self.cache.write() {
            *cache = Some(list);
        }
        Ok(())
    }

    pub async fn ensure_loaded(&self) -> Result<(), StoreError> {
        let loaded = self.cache.read().map(|c| c.is_some()).unwrap_or(false);
        if loaded { Ok(()) } else { self.load().await }
    }

    /// Every window, oldest first.
    pub fn list(&self) -> Vec<Window> {
        self.cache
            .read()
            .ok()
            .and_then(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn get(&self, id: &str) -> Option<Window> {
        self.list().into_iter().find(|w| w.id == id)
    }

    /// Whether an alert with `labels` is muted by maintenance: global
    /// maintenance first, then its `host` label's.
    pub fn muting(&self, labels: &LabelSet, now_ms: i64) -> Option<Muted> {
        let cache = self.cache.read().ok()?;
        let active: Vec<&Window> = cache
            .iter()
            .flatten()
            .filter(|w| w.is_active(now_ms))
            .collect();
        if active.iter().any(|w| w.host.is_none()) {
            return Some(Muted::Maintenance { host: None });
        }
        let host = labels.get("host")?;
        active
            .iter()
            .any(|w| w.host.as_deref() == Some(host.as_str()))
            .then(|| Muted::Maintenance {
                host: Some(host.clone()),
            })
    }

    /// Starts a window now, ending at `until_ms` (if any).
    pub async fn start(
        &self,
        host: Option<String>,
        until_ms: Option<i64>,
        comment: String,
        created_by: String,
        now_ms: i64,
    ) -> Result<Window, SilenceError> {
        self.ensure_loaded().await?;
        if let Some(h) = &host
            && h.trim().is_empty()
        {
            return Err(SilenceError::Invalid(
                "host must not be empty (omit it for global maintenance)".into(),
            ));
        }
        let too_long = |t: &str| t.len() > super::silence::MAX_TEXT_BYTES;
        if host.as_deref().is_some_and(too_long) || too_long(&comment) {
            return Err(SilenceError::Invalid(format!(
                "host and comment are limited to {} bytes",
                super::silence::MAX_TEXT_BYTES
            )));
        }
        if until_ms.is_some_and(|u| u <= now_ms) {
            return Err(SilenceError::Invalid(
                "the end of maintenance must be in the future".into(),
            ));
        }
        if self.list().len() >= MAX_WINDOWS {
            return Err(SilenceError::Invalid(format!(
                "too many maintenance windows (at most {MAX_WINDOWS})"
            )));
        }
        let w = Window {
            id: super::silence::new_id()?,
            host,
            starts_at_ms: now_ms,
            ends_at_ms: until_ms,
            comment,
            created_by,
            stopped_at_ms: None,
            stopped_by: None,
        };
        const PG: &str = "INSERT INTO maintenance_windows (id, host, starts_at_ms, ends_at_ms, comment, created_by) VALUES ($1, $2, $3, $4, $5, $6)";
        const LITE: &str = "INSERT INTO maintenance_windows (id, host, starts_at_ms, ends_at_ms, comment, created_by) VALUES (?, ?, ?, ?, ?, ?)";
        macro_rules! insert {
            ($sql:expr, $pool:expr) => {{
                sqlx::query($sql)
                    .bind(&w.id)
                    .bind(&w.host)
                    .bind(w.starts_at_ms)
                    .bind(w.ends_at_ms)
                    .bind(&w.comment)
                    .bind(&w.created_by)
                    .execute($pool)
                    .await?;
            }};
        }
        match &self.db {
            Db::Postgres(pool) => insert!(PG, pool),
            Db::Sqlite { writer, .. } => insert!(LITE, writer),
        }
        if let Ok(mut cache) = self.cache.write() {
            cache.get_or_insert_with(Vec::new).push(w.clone());
        }
        Ok(w)
    }

    /// Stops a window now; stopping one that already ended changes nothing.
    pub async fn stop(&self, id: &str, who: &str, now_ms: i64) -> Result<Window, SilenceError> {
        self.ensure_loaded().await?;
        let mut w = self
            .get(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        if w.effective_end().is_some_and(|e| e <= now_ms) {
            return Ok(w);
        }
        w.stopped_at_ms = Some(now_ms);
        w.stopped_by = Some(who.to_string());
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query("UPDATE maintenance_windows SET stopped_at_ms = $2, stopped_by = $3 WHERE id = $1")
                    .bind(&w.id).bind(now_ms).bind(who).execute(pool).await?;
            }
            Db::Sqlite { writer, .. } => {
                sqlx::query("UPDATE maintenance_windows SET stopped_at_ms = ?2, stopped_by = ?3 WHERE id = ?1")
                    .bind(&w.id).bind(now_ms).bind(who).execute(writer).await?;
            }
        }
        if let Ok(mut cache) = self.cache.write()
            && let Some(slot) = cache.iter_mut().flatten().find(|x| x.id == w.id)
        {
            *slot = w.clone();
        }
        Ok(w)
    }

    /// Deletes windows that ended more than [`RETENTION_MS`] ago.
    pub async fn gc(&self, now_ms: i64) -> Result<u64, StoreError> {
        let cutoff = now_ms - RETENTION_MS;
        // min(stop, end) < cutoff exactly when either is.
        let n = match &self.db {
            Db::Postgres(pool) => sqlx::query(
                "DELETE FROM maintenance_windows WHERE stopped_at_ms < $1 OR ends_at_ms < $1",
            )
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected(),
            Db::Sqlite { writer, .. } => sqlx::query(
                "DELETE FROM maintenance_windows WHERE stopped_at_ms < ?1 OR ends_at_ms < ?1",
            )
            .bind(cutoff)
            .execute(writer)
            .await?
            .rows_affected(),
        };
        if let Ok(mut cache) = self.cache.write()
            && let Some(list) = cache.as_mut()
        {
            list.retain(|w| w.effective_end().is_none_or(|e| e >= cutoff));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(host: Option<&str>, end: Option<i64>, stopped: Option<i64>) -> Window {
        Window {
            id: "w".into(),
            host: host.map(String::from),
            starts_at_ms: 100,
            ends_at_ms: end,
            comment: String::new(),
            created_by: String::new(),
            stopped_at_ms: stopped,
            stopped_by: None,
        }
    }

    #[test]
    fn a_window_is_active_from_start_to_the_earlier_of_end_and_stop() {
        let w = window(None, Some(200), None);
        assert!(!w.is_active(99) && w.is_active(100) && w.is_active(199) && !w.is_active(200));
        let w = window(None, None, None);
        assert!(w.is_active(i64::MAX - 1), "open-ended");
        let w = window(None, Some(200), Some(150));
        assert_eq!(w.effective_end(), Some(150));
        assert!(!w.is_active(150));
        let w = window(None, None, Some(150));
        assert_eq!(w.effective_end(), Some(150));
    }
}
