//! The notification log in the `notification_log` table: one row per
//! (group key, receiver) with the fingerprints that were firing and resolved
//! at the last notification, its sequence number and time. Loaded whole at
//! start; written after the outbox accepted the notification. A crash
//! between the two re-enqueues the same notification with the same dedup
//! key (same state, same sequence number), which the outbox ignores.

use std::collections::{BTreeSet, HashMap};

use super::core::LogEntry;
use crate::store::{Db, StoreError};

/// How long entries are kept (Alertmanager's default nflog retention).
pub const RETENTION_MS: i64 = 5 * 86_400_000;

type Row = (String, String, String, String, i64, i64);

fn fingerprints(json: &str) -> Result<BTreeSet<u64>, StoreError> {
    let list: Vec<String> = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("notification_log: {e}")))?;
    list.iter()
        .map(|s| {
            s.parse::<u64>().map_err(|e| {
                StoreError::Corrupt(format!("notification_log fingerprint {s:?}: {e}"))
            })
        })
        .collect()
}

fn to_json(set: &BTreeSet<u64>) -> String {
    let list: Vec<String> = set.iter().map(u64::to_string).collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// Every stored entry.
pub async fn load(db: &Db) -> Result<HashMap<(String, String), LogEntry>, StoreError> {
    const SELECT: &str =
        "SELECT group_key, receiver, firing, resolved, seq, sent_at_ms FROM notification_log";
    let rows: Vec<Row> = match db {
        Db::Postgres(pool) => sqlx::query_as(SELECT).fetch_all(pool).await?,
        Db::Sqlite { reader, .. } => sqlx::query_as(SELECT).fetch_all(reader).await?,
    };
    let mut out = HashMap::new();
    for (key, receiver, firing, resolved, seq, sent_at_ms) in rows {
        out.insert(
            (key, receiver),
            LogEntry {
                firing: fingerprints(&firing)?,
                resolved: fingerprints(&resolved)?,
                seq,
                sent_at_ms,
            },
        );
    }
    Ok(out)
}

/// Stores the entry of (group, receiver).
pub async fn store(
    db: &Db,
    group_key: &str,
    receiver: &str,
    e: &LogEntry,
) -> Result<(), StoreError> {
    const PG: &str = "INSERT INTO notification_log (group_key, receiver, firing, resolved, seq, sent_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
        ON CONFLICT (group_key, receiver) DO UPDATE SET firing = EXCLUDED.firing, resolved = EXCLUDED.resolved, seq = EXCLUDED.seq, sent_at_ms = EXCLUDED.sent_at_ms";
    const LITE: &str = "INSERT INTO notification_log (group_key, receiver, firing, resolved, seq, sent_at_ms) VALUES (?, ?, ?, ?, ?, ?) \
        ON CONFLICT (group_key, receiver) DO UPDATE SET firing = excluded.firing, resolved = excluded.resolved, seq = excluded.seq, sent_at_ms = excluded.sent_at_ms";
    let (firing, resolved) = (to_json(&e.firing), to_json(&e.resolved));
    macro_rules! run {
        ($sql:expr, $pool:expr) => {{
            sqlx::query($sql)
                .bind(group_key)
                .bind(receiver)
                .bind(&firing)
                .bind(&resolved)
                .bind(e.seq)
                .bind(e.sent_at_ms)
                .execute($pool)
                .await?;
        }};
    }
    match db {
        Db::Postgres(pool) => run!(PG, pool),
        Db::Sqlite { writer, .. } => run!(LITE, writer),
    }
    Ok(())
}

/// Deletes entries older than `cutoff_ms`.
pub async fn gc(db: &Db, cutoff_ms: i64) -> Result<u64, StoreError> {
    Ok(match db {
        Db::Postgres(pool) => sqlx::query("DELETE FROM notification_log WHERE sent_at_ms < $1")
            .bind(cutoff_ms)
            .execute(pool)
            .await?
            .rows_affected(),
        Db::Sqlite { writer, .. } => {
            sqlx::query("DELETE FROM notification_log WHERE sent_at_ms < ?")
                .bind(cutoff_ms)
                .execute(writer)
                .await?
                .rows_affected()
        }
    })
}
