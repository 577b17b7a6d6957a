//! Queries whose SQL and row mapping are the same on both databases (`$N`
//! placeholders work in SQLite too), written once and instantiated for each
//! driver by a macro, so both copies are type-checked against their driver.

use vigil_common::{BatchHeader, now_ms};

use super::{AgentRecord, HostInfo, StoreError, TokenInfo, TokenRecord, host_from_row};

/// Inserted once per committed batch; a conflict means a retry or replay.
pub(crate) const INSERT_BATCH: &str =
    "INSERT INTO ingested_batches (agent_id, boot_id, sequence, received_at_ms, samples)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

pub(crate) const UPSERT_HOST: &str =
    "INSERT INTO hosts (agent_id, hostname, roles, first_seen_ms, last_seen_ms, samples_stored)
     VALUES ($1, $2, $3, $4, $4, $5)
     ON CONFLICT (agent_id) DO UPDATE
     SET hostname = excluded.hostname, roles = excluded.roles,
         last_seen_ms = CASE WHEN excluded.last_seen_ms > hosts.last_seen_ms
                             THEN excluded.last_seen_ms ELSE hosts.last_seen_ms END,
         samples_stored = hosts.samples_stored + excluded.samples_stored";

pub(crate) fn roles_json(header: &BatchHeader) -> String {
    serde_json::to_string(&header.roles).unwrap_or_else(|_| "[]".to_string())
}

fn agent_record(
    agent_id: &str,
    key: Vec<u8>,
    revoked: bool,
    previous: Option<Vec<u8>>,
    previous_until: Option<i64>,
) -> Result<AgentRecord, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("public key of {agent_id}"));
    let previous_key = match (previous, previous_until) {
        (Some(key), Some(until)) => Some((key.try_into().map_err(|_| corrupt())?, until)),
        _ => None,
    };
    Ok(AgentRecord {
        agent_id: agent_id.to_string(),
        public_key: key.try_into().map_err(|_| corrupt())?,
        revoked,
        previous_key,
    })
}

macro_rules! shared_queries {
    ($db:ty, $dialect:expr) => {
        use sqlx::Row as _;

        use super::*;

        type Pool = sqlx::Pool<$db>;
        type Conn = <$db as sqlx::Database>::Connection;

        pub async fn register_agent(pool: &Pool, agent_id: &str, key: &[u8; 32]) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO agents (agent_id, public_key, registered_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (agent_id) DO UPDATE
                 SET public_key = excluded.public_key, registered_at_ms = excluded.registered_at_ms,
                     revoked_at_ms = NULL, previous_public_key = NULL, previous_valid_until_ms = NULL",
            )
            .bind(agent_id)
            .bind(&key[..])
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        }

        pub async fn revoke_agent(pool: &Pool, agent_id: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("UPDATE agents SET revoked_at_ms = $2 WHERE agent_id = $1")
                .bind(agent_id)
                .bind(now_ms())
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn agent(pool: &Pool, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
            let row = sqlx::query(
                "SELECT public_key, revoked_at_ms IS NOT NULL AS revoked, previous_public_key,
                        previous_valid_until_ms
                 FROM agents WHERE agent_id = $1",
            )
            .bind(agent_id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                agent_record(
                    agent_id,
                    r.try_get("public_key")?,
                    r.try_get("revoked")?,
                    r.try_get("previous_public_key")?,
                    r.try_get("previous_valid_until_ms")?,
                )
            })
            .transpose()
        }

        /// Brings `index` up to date with rows added to `series` since it
        /// last read (by this or another process). If the table cannot be
        /// read within [`REFRESH_TIMEOUT`](super::super::index::REFRESH_TIMEOUT)
        /// (the database is down or stalled), the index already loaded is
        /// used as it is and the read is tried again 10 s later:
        /// it lacks only series other processes added since, and queries,
        /// rule evaluation and the dashboard keep answering from the head
        /// through a database outage. Only an index never loaded is an error.
        pub async fn refresh_index(pool: &Pool, index: &super::super::index::SeriesIndex) -> Result<(), StoreError> {
            if !index.refresh_due(now_ms()) {
                return Ok(());
            }
            let read = sqlx::query("SELECT id, metric, labels FROM series WHERE id > $1 ORDER BY id")
                .bind(index.loaded_upto())
                .fetch_all(pool);
            let failed = match tokio::time::timeout(super::super::index::REFRESH_TIMEOUT, read).await {
                Ok(Ok(rows)) => Ok(rows),
                Ok(Err(e)) => Err(StoreError::from(e)),
                Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
            };
            let rows = match failed {
                Ok(rows) => rows,
                Err(e) if index.is_empty() => {
                    index.refresh_failed();
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "series index not refreshed; using the loaded one");
                    index.refresh_later(now_ms());
                    return Ok(());
                }
            };
            if rows.is_empty() {
                return Ok(());
            }
            let rows = rows
                .iter()
                .map(|r| Ok((r.try_get("id")?, r.try_get("metric")?, r.try_get("labels")?)))
                .collect::<Result<Vec<(i64, String, String)>, StoreError>>()?;
            index.load(rows)
        }

        pub async fn rollup_watermark(pool: &Pool, res: super::super::rollup::Resolution) -> Result<Option<i64>, StoreError> {
            Ok(sqlx::query_scalar("SELECT upto_ms FROM rollup_watermarks WHERE resolution = $1")
                .bind(res.name())
                .fetch_optional(pool)
                .await?)
        }

        pub async fn oldest_sample(pool: &Pool) -> Result<Option<i64>, StoreError> {
            Ok(sqlx::query_scalar("SELECT min(ts) FROM samples").fetch_one(pool).await?)
        }

        /// Builds `res` buckets from raw samples in `[from, to)` and moves the watermark.
        pub async fn build_rollup(conn: &mut Conn, res: super::super::rollup::Resolution, from: i64, to: i64) -> Result<u64, StoreError> {
            let n = sqlx::query(super::super::rollup::build_statement(res, $dialect))
                .bind(from)
                .bind(to)
                .bind(res.ms())
                .execute(&mut *conn)
                .await?
                .rows_affected();
            sqlx::query(super::super::rollup::UPSERT_WATERMARK)
                .bind(res.name())
                .bind(to)
                .execute(&mut *conn)
                .await?;
            Ok(n)
        }

        pub async fn hosts(pool: &Pool) -> Result<Vec<HostInfo>, StoreError> {
            let rows = sqlx::query(
                "SELECT agent_id, hostname, roles, first_seen_ms, last_seen_ms, samples_stored
                 FROM hosts ORDER BY hostname, agent_id",
            )
            .fetch_all(pool)
            .await?;
            rows.iter().map(host_from_row).collect()
        }

        pub async fn put_token(pool: &Pool, name: &str, sha256: &[u8; 32], role: &str) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO api_tokens (name, token_sha256, role, created_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE
                 SET token_sha256 = excluded.token_sha256, role = excluded.role,
                     created_at_ms = excluded.created_at_ms, revoked_at_ms = NULL",
            )
            .bind(name)
            .bind(&sha256[..])
            .bind(role)
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        }

        pub async fn token(pool: &Pool, sha256: &[u8; 32]) -> Result<Option<TokenInfo>, StoreError> {
            let row = sqlx::query(
                "SELECT name, role FROM api_tokens WHERE token_sha256 = $1 AND revoked_at_ms IS NULL",
            )
                .bind(&sha256[..])
                .fetch_optional(pool)
                .await?;
            row.map(|r| {
                Ok(TokenInfo {
                    name: r.try_get("name")?,
                    role: r.try_get("role")?,
                })
            })
            .transpose()
        }

        pub async fn revoke_token(pool: &Pool, name: &str) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE api_tokens SET revoked_at_ms = $1 WHERE name = $2 AND revoked_at_ms IS NULL",
            )
            .bind(now_ms())
            .bind(name)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn tokens(pool: &Pool) -> Result<Vec<TokenRecord>, StoreError> {
            let rows = sqlx::query(
                "SELECT name, role, created_at_ms, revoked_at_ms FROM api_tokens ORDER BY name",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(TokenRecord {
                        name: r.try_get("name")?,
                        role: r.try_get("role")?,
                        created_at_ms: r.try_get("created_at_ms")?,
                        revoked_at_ms: r.try_get("revoked_at_ms")?,
                    })
                })
                .collect()
        }
    };
}

/// The shared queries for PostgreSQL.
pub mod pg {
    shared_queries!(sqlx::Postgres, super::super::rollup::Dialect::Postgres);
}

/// The shared queries for SQLite.
pub mod lite {
    shared_queries!(sqlx::Sqlite, super::super::rollup::Dialect::Sqlite);
}
