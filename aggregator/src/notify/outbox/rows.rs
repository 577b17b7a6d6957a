//! The outbox table (`notification_outbox`, migration 0007): one SQL
//! statement per operation, the same text on both databases where the
//! dialects agree.

use serde::Serialize;

use crate::store::{Db, StoreError};

/// A row claimed for delivery.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub receiver: String,
    pub integration: String,
    pub group_key: String,
    pub payload: String,
    pub created_at_ms: i64,
    /// Including the attempt being made now.
    pub attempts: i64,
}

/// One row as `GET /api/v1/notifications` shows it (no payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub dedup_key: String,
    pub receiver: String,
    pub integration: String,
    pub group_key: String,
    /// `pending`, `delivered`, `skipped`, `failed` or `superseded`.
    pub status: String,
    pub attempts: i64,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// A row to insert.
pub struct NewRow<'a> {
    pub dedup_key: &'a str,
    pub receiver: &'a str,
    pub integration: &'a str,
    pub group_key: &'a str,
    pub payload: &'a str,
    /// `pending`, or `failed` for a receiver unknown at enqueue time.
    pub status: &'a str,
    pub last_error: Option<&'a str>,
}

const INSERT: &str = "INSERT INTO notification_outbox
    (dedup_key, receiver, integration, group_key, payload, status, created_at_ms,
     next_attempt_at_ms, last_error)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
    ON CONFLICT (dedup_key, integration) DO NOTHING";

// `$4` is the claiming leader's epoch (0: single node, not fenced): a
// process whose epoch is no longer the current one claims nothing.
const CLAIM_PG: &str = "UPDATE notification_outbox
    SET attempts = attempts + 1, next_attempt_at_ms = $1, claimed_epoch = $4
    WHERE id IN (SELECT id FROM notification_outbox
                 WHERE status = 'pending' AND next_attempt_at_ms <= $2
                 ORDER BY created_at_ms, id LIMIT $3 FOR UPDATE SKIP LOCKED)
      AND ($4 = 0 OR $4 = (SELECT epoch FROM cluster_leader WHERE id = 1))
    RETURNING id, receiver, integration, group_key, payload, created_at_ms, attempts";

// SQLite has one writer: the subquery and the update cannot interleave
// with another claim.
const CLAIM_LITE: &str = "UPDATE notification_outbox
    SET attempts = attempts + 1, next_attempt_at_ms = $1
    WHERE id IN (SELECT id FROM notification_outbox
                 WHERE status = 'pending' AND next_attempt_at_ms <= $2
                 ORDER BY created_at_ms, id LIMIT $3)
    RETURNING id, receiver, integration, group_key, payload, created_at_ms, attempts";

const FINISH: &str = "UPDATE notification_outbox
    SET status = $2, delivered_at_ms = $3, last_error = $4, claimed_epoch = NULL WHERE id = $1";

const SUPERSEDE: &str = "UPDATE notification_outbox SET status = 'superseded',
    last_error = 'a newer notification of this group was delivered first'
    WHERE status = 'pending' AND receiver = $1 AND integration = $2 AND group_key = $3
      AND id < $4";

const RETRY: &str = "UPDATE notification_outbox
    SET next_attempt_at_ms = $2, last_error = $3, claimed_epoch = NULL WHERE id = $1";

// Rows an earlier leader claimed and never finished (it died or lost the
// lock mid-send): due again at `$2` instead of at the end of their lease.
const RELEASE_STALE: &str = "UPDATE notification_outbox
    SET next_attempt_at_ms = LEAST(next_attempt_at_ms, $2), claimed_epoch = NULL
    WHERE status = 'pending' AND claimed_epoch IS NOT NULL AND claimed_epoch <> $1";

const CURRENT_EPOCH: &str = "SELECT epoch FROM cluster_leader WHERE id = 1 FOR SHARE";

const PENDING: &str = "SELECT COUNT(*) FROM notification_outbox WHERE status = 'pending'";

const PRUNE: &str = "DELETE FROM notification_outbox
    WHERE status <> 'pending' AND created_at_ms < $1";

const RECENT: &str = "SELECT id, dedup_key, receiver, integration, group_key, status, attempts,
        created_at_ms, next_attempt_at_ms, last_error, delivered_at_ms
    FROM notification_outbox WHERE ($1 = '' OR status = $1)
    ORDER BY id DESC LIMIT $2";

type ClaimRow = (i64, String, String, String, String, i64, i64);

fn claimed(rows: Vec<ClaimRow>) -> Vec<Claimed> {
    let mut out: Vec<Claimed> = rows
        .into_iter()
        .map(
            |(id, receiver, integration, group_key, payload, created_at_ms, attempts)| Claimed {
                id,
                receiver,
                integration,
                group_key,
                payload,
                created_at_ms,
                attempts,
            },
        )
        .collect();
    // RETURNING does not keep the subquery's order.
    out.sort_by_key(|c| (c.created_at_ms, c.id));
    out
}

/// Runs the same statement on whichever pool writes.
macro_rules! on_writer {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { writer: $pool, .. } => $body,
        }
    };
}

/// Inserts `rows` in one transaction; a `(dedup_key, integration)` seen
/// before is left alone. Returns the number of rows inserted. With an
/// `epoch` (a cluster leader's, PostgreSQL), nothing is inserted unless it
/// is still the current one ([`StoreError::Fenced`]).
pub async fn insert(
    db: &Db,
    rows: &[NewRow<'_>],
    now_ms: i64,
    epoch: Option<i64>,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    on_writer!(db, |pool| {
        let mut tx = pool.begin().await?;
        if let (Some(mine), Db::Postgres(_)) = (epoch, db) {
            // FOR SHARE: a new leader's epoch bump waits for this commit.
            let current: Option<i64> = sqlx::query_scalar(CURRENT_EPOCH)
                .fetch_optional(&mut *tx)
                .await?;
            if current != Some(mine) {
                return Err(StoreError::Fenced(mine));
            }
        }
        let mut inserted = 0;
        for r in rows {
            inserted += sqlx::query(INSERT)
                .bind(r.dedup_key)
                .bind(r.receiver)
                .bind(r.integration)
                .bind(r.group_key)
                .bind(r.payload)
                .bind(r.status)
                .bind(now_ms)
                .bind(r.last_error)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    })
}

/// Claims up to `limit` due rows, oldest first: counts the attempt and
/// moves their next attempt to `lease_until_ms`, so neither this process
/// nor another one picks them again while they are being sent (and a
/// process that dies mid-send leaves them to be retried after the lease).
///
/// On PostgreSQL the claim records `epoch` (0 outside a cluster) and, when
/// it is not 0, claims nothing unless it is the current leader's.
pub async fn claim(
    db: &Db,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
    epoch: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let rows: Vec<ClaimRow> = match db {
        Db::Postgres(pool) => {
            sqlx::query_as(CLAIM_PG)
                .bind(lease_until_ms)
                .bind(now_ms)
                .bind(limit)
                .bind(epoch)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite { writer, .. } => {
            sqlx::query_as(CLAIM_LITE)
                .bind(lease_until_ms)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(writer)
                .await?
        }
    };
    Ok(claimed(rows))
}

/// Marks a row done: `delivered`, `skipped` or `failed`.
pub async fn finish(
    db: &Db,
    id: i64,
    status: &str,
    at_ms: Option<i64>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    on_writer!(db, |pool| {
        sqlx::query(FINISH)
            .bind(id)
            .bind(status)
            .bind(at_ms)
            .bind(error)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// After `row` was delivered: older pending rows of the same receiver,
/// integration and group are stale (their state was overtaken) and are
/// not sent. Returns how many.
pub async fn supersede_older(db: &Db, row: &Claimed) -> Result<u64, StoreError> {
    on_writer!(db, |pool| {
        Ok(sqlx::query(SUPERSEDE)
            .bind(&row.receiver)
            .bind(&row.integration)
            .bind(&row.group_key)
            .bind(row.id)
            .execute(pool)
            .await?
            .rows_affected())
    })
}

/// Schedules the next attempt of a row that failed.
pub async fn retry_at(db: &Db, id: i64, next_ms: i64, error: &str) -> Result<(), StoreError> {
    on_writer!(db, |pool| {
        sqlx::query(RETRY)
            .bind(id)
            .bind(next_ms)
            .bind(error)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// Makes rows claimed under another epoch than `epoch` and not finished
/// due at `due_ms` at the latest (PostgreSQL; SQLite has no cluster).
/// Returns how many.
pub async fn release_stale(db: &Db, epoch: i64, due_ms: i64) -> Result<u64, StoreError> {
    match db {
        Db::Postgres(pool) => Ok(sqlx::query(RELEASE_STALE)
            .bind(epoch)
            .bind(due_ms)
            .execute(pool)
            .await?
            .rows_affected()),
        Db::Sqlite { .. } => Ok(0),
    }
}

/// Rows waiting for delivery.
pub async fn pending(db: &Db) -> Result<i64, StoreError> {
    Ok(match db {
        Db::Postgres(pool) => sqlx::query_scalar(PENDING).fetch_one(pool).await?,
        Db::Sqlite { reader, .. } => sqlx::query_scalar(PENDING).fetch_one(reader).await?,
    })
}

/// Deletes finished rows created before `before_ms`.
pub async fn prune(db: &Db, before_ms: i64) -> Result<u64, StoreError> {
    on_writer!(db, |pool| {
        Ok(sqlx::query(PRUNE)
            .bind(before_ms)
            .execute(pool)
            .await?
            .rows_affected())
    })
}

/// The newest `limit` rows, optionally of one status.
pub async fn recent(
    db: &Db,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let status = status.unwrap_or("");
    Ok(match db {
        Db::Postgres(pool) => {
            sqlx::query_as(RECENT)
                .bind(status)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite { reader, .. } => {
            sqlx::query_as(RECENT)
                .bind(status)
                .bind(limit)
                .fetch_all(reader)
                .await?
        }
    })
}
