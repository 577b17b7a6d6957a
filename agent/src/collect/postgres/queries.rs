//! Server, activity, lock, per-database, checkpoint and replication statistics.
//!
//! Every number is cast to float8 in SQL so decoding is uniform and a counter
//! of any integer width fits. Per-database series carry `datname`; templates
//! and databases that refuse connections are left out. Sizes of databases the
//! monitoring role may not connect to are skipped rather than failing the
//! cycle. Gauges that count by a label (`state`, `mode`) report every known
//! value, zeros included, so graphs show zeros rather than gaps.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::{Decode, Postgres, Row, Type};
use vigil_common::Series;

use crate::collect::Context;

/// A query that failed, named by what it reads.
#[derive(Debug)]
pub enum QueryError {
    /// No answer within the client-side limit.
    Timeout(&'static str),
    /// The server or the driver reported an error.
    Sql(&'static str, sqlx::Error),
}

/// `pg_stat_activity.state` values, as label values.
const STATES: &[&str] = &[
    "active",
    "idle",
    "idle_in_transaction",
    "idle_in_transaction_aborted",
    "fastpath_function_call",
    "disabled",
];

/// Table-level lock modes, plus the predicate locks of serializable transactions.
const LOCK_MODES: &[&str] = &[
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
    "SIReadLock",
];

/// Runs `query` with a client-side time limit.
pub async fn fetch(
    conn: &mut PgConnection,
    what: &'static str,
    query: Query<'_, Postgres, PgArguments>,
    limit: Duration,
) -> Result<Vec<PgRow>, QueryError> {
    match tokio::time::timeout(limit, query.fetch_all(&mut *conn)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(QueryError::Sql(what, e)),
        Err(_) => Err(QueryError::Timeout(what)),
    }
}

/// Column `i` of `row`.
pub fn get<'r, T>(row: &'r PgRow, i: usize, what: &'static str) -> Result<T, QueryError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(i).map_err(|e| QueryError::Sql(what, e))
}

/// `idle in transaction (aborted)` -> `idle_in_transaction_aborted`.
fn state_label(state: &str) -> String {
    state
        .chars()
        .filter(|c| !matches!(c, '(' | ')'))
        .map(|c| if c == ' ' { '_' } else { c })
        .collect()
}

/// Reads everything but pg_stat_statements into `out`.
pub async fn read(
    conn: &mut PgConnection,
    ctx: &Context,
    limit: Duration,
    out: &mut Vec<Series>,
) -> Result<(), QueryError> {
    let what = "server settings";
    let rows = fetch(
        conn,
        what,
        sqlx::query(
            "SELECT current_setting('server_version'), \
                    current_setting('server_version_num')::int4, \
                    current_setting('max_connections')::float8, \
                    current_setting('superuser_reserved_connections')::float8, \
                    extract(epoch FROM pg_postmaster_start_time())::float8, \
                    pg_is_in_recovery()",
        ),
        limit,
    )
    .await?;
    let Some(row) = rows.first() else {
        return Err(QueryError::Sql(what, sqlx::Error::RowNotFound));
    };
    let version: String = get(row, 0, what)?;
    let version_num: i32 = get(row, 1, what)?;
    let in_recovery: bool = get(row, 5, what)?;
    let short = version.split_whitespace().next().unwrap_or_default();
    out.push(ctx.series("pg_info", &[("version", short)], 1.0));
    out.push(ctx.series("pg_max_connections", &[], get(row, 2, what)?));
    out.push(ctx.series("pg_superuser_reserved_connections", &[], get(row, 3, what)?));
    out.push(ctx.series("pg_start_time_seconds", &[], get(row, 4, what)?));

    activity(conn, ctx, limit, out).await?;
    locks(conn, ctx, limit, out).await?;
    databases(conn, ctx, limit, out).await?;
    checkpoints(conn, ctx, version_num, limit, out).await?;
    replication(conn, ctx, in_recovery, limit, out).await
}

async fn activity(
    conn: &mut PgConnection,
    ctx: &Context,
    limit: Duration,
    out: &mut Vec<Series>,
) -> Result<(), QueryError> {
    // Our own backend counts as a connection but not as a long query/transaction.
    let what = "pg_stat_activity";
    let rows = fetch(
        conn,
        what,
        sqlx::query(
            "SELECT coalesce(state, 'unknown'), count(*)::float8, \
                    coalesce(max(extract(epoch FROM clock_timestamp() - query_start)) \
                        FILTER (WHERE state = 'active' AND pid <> pg_backend_pid()), 0)::float8, \
                    coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)) \
                        FILTER (WHERE pid <> pg_backend_pid()), 0)::float8 \
             FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1",
        ),
        limit,
    )
    .await?;
    let mut by_state: BTreeMap<String, f64> = STATES.iter().map(|s| (s.to_string(), 0.0)).collect();
    let (mut query_age, mut xact_age) = (0.0f64, 0.0f64);
    for row in &rows {
        let state: String = get(row, 0, what)?;
        *by_state.entry(state_label(&state)).or_default() += get::<f64>(row, 1, what)?;
        query_age = query_age.max(get(row, 2, what)?);
        xact_age = xact_age.max(get(row, 3, what)?);
    }
    for (state, n) in &by_state {
        out.push(ctx.series("pg_connections", &[("state", state)], *n));
    }
    out.push(ctx.series("pg_longest_query_seconds", &[], query_age));
    out.push(ctx.series("pg_longest_transaction_seconds", &[], xact_age));
    Ok(())
}

async fn locks(
    conn: &mut PgConnection,
    ctx: &Context,
    limit: Duration,
    out: &mut Vec<Series>,
) -> Result<(), QueryError> {
    let what = "pg_locks";
    let rows = fetch(
        conn,
        what,
        sqlx::query(
            "SELECT coalesce(mode, 'unknown'), count(*)::float8, \
                    (count(*) FILTER (WHERE NOT granted))::float8 \
             FROM pg_locks GROUP BY 1",
        ),
        limit,
    )
    .await?;
    let mut by_mode: BTreeMap<String, f64> =
        LOCK_MODES.iter().map(|m| (m.to_string(), 0.0)).collect();
    let mut waiting = 0.0;
    for row in &rows {
        let mode: String = get(row, 0, what)?;
        *by_mode.entry(mode).or_default() += get::<f64>(row, 1, what)?;
        waiting += get::<f64>(row, 2, what)?;
    }
    for (mode, n) in &by_mode {
        out.push(ctx.series("pg_locks", &[("mode", mode)], *n));
    }
    out.push(ctx.series("pg_locks_waiting", &[], waiting));
    Ok(())
}

/// Per-database columns after `datname`, in query order.
const DATABASE_COLUMNS: &[&str] = &[
    "pg_database_backends",
    "pg_xact_commit_total",
    "pg_xact_rollback_total",
    "pg_blks_read_total",
    "pg_blks_hit_total",
    "pg_tup_returned_total",
    "pg_tup_fetched_total",
    "pg_tup_inserted_total",
    "pg_tup_updated_total",
    "pg_tup_deleted_total",
    "pg_conflicts_total",
    "pg_temp_files_total",
    "pg_temp_bytes_total",
    "pg_deadlocks_total",
    "pg_blk_read_time_seconds_total",
    "pg_blk_write_time_seconds_total",
    "pg_database_frozen_xid_age",
    "pg_database_size_bytes",
];

async fn databases(
    conn: &mut PgConnection,
    ctx: &Context,
    limit: Duration,
    out: &mut Vec<Series>,
) -> Result<(), QueryError> {
    let what = "pg_stat_database";
    // has_database_privilege(oid) is NULL for a database dropped meanwhile.
    let rows = fetch(
        conn,
        what,
        sqlx::query(
            "SELECT d.datname::text, s.numbackends::float8, s.xact_commit::float8, \
                    s.xact_rollback::float8, s.blks_read::float8, s.blks_hit::float8, \
                    s.tup_returned::float8, s.tup_fetched::float8, s.tup_inserted::float8, \
                    s.tup_updated::float8, s.tup_deleted::float8, s.conflicts::float8, \
                    s.temp_files::float8, s.temp_bytes::float8, s.deadlocks::float8, \
                    (s.blk_read_time / 1000)::float8, (s.blk_write_time / 1000)::float8, \
                    age(d.datfrozenxid)::float8, \
                    CASE WHEN has_database_privilege(d.oid, 'CONNECT') \
                         THEN pg_database_size(d.oid)::float8 END \
             FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid \
             WHERE d.datallowconn AND NOT d.datistemplate \
             ORDER BY 1",
        ),
        limit,
    )
    .await?;
    for row in &rows {
        let datname: String = get(row, 0, what)?;
        let labels = [("datname", datname.as_str())];
        for (i, name) in DATABASE_COLUMNS.iter().enumerate() {
            // NULL: statistics reset or, for the size, no CONNECT privilege.
            if let Some(v) = get::<Option<f64>>(row, i + 1, what)? {
                out.push(ctx.series(name, &labels, v));
            }
        }
    }
    Ok(())
}

async fn checkpoints(
    conn: &mut PgConnection,
    ctx: &Context,
    version_num: i32,
    limit: Duration,
    out: &mut Vec<Series>,
) -> Result<(), QueryError> {
    // PostgreSQL 17 moved checkpoint statistics to pg_stat_checkpointer.
    let (what, sql) = if version_num >= 170_000 {
        (
            "pg_stat_checkpointer",
            "SELECT num_timed::float8, num_requested::float8, buffers_written::float8 \
             FROM pg_stat_checkpointer",
        )
    } else {
        (
            "pg_stat_bgwriter",
            "SELECT checkpoints_timed::float8, checkpoints_req::float8, \
                    buffers_checkpoint::float8 FROM pg_stat_bgwriter",
        )
    };
    let rows = fetch(conn, what, sqlx::query(sql), limit).await?;
    if let Some(row) = rows.first() {
        out.push(ctx.series(
            "pg_checkpoints_total",
            &[("kind", "timed")],
            get(row, 0, what)?,
        ));
        out.push(ctx.series(
            "pg_checkpoints_total",
            &[("kind", "requested")],
            get(row, 1, what)?,
        ));
        out.push(ctx.series(
            "pg_checkpoint_buffers_written_total",
            &[],
            get(row, 2, what)?,
        ));
    }
    Ok(())
}

async fn replication(
    conn: &mut PgConnection,
    ctx: &Context,
    in_recovery: bool,
    limit: Duration,
    out: &mut Vec<Series>,
) -> Result<(), QueryError> {
    let role = |r: &str, on: bool| {
        ctx.series(
            "pg_replication_role",
            &[("replication_role", r)],
            f64::from(u8::from(on)),
        )
    };
    out.push(role("primary", !in_recovery));
    out.push(role("replica", in_recovery));
    if in_recovery {
        // Lag in time is the usual "seconds behind": 0 while everything received
        // is replayed (an idle primary sends nothing to replay), else the age of
        // the last replayed transaction. Both are NULL before any WAL arrived.
        let what = "replica lag";
        let rows = fetch(
            conn,
            what,
            sqlx::query(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                        ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) \
                        END::float8, \
                        pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8",
            ),
            limit,
        )
        .await?;
        if let Some(row) = rows.first() {
            if let Some(lag) = get::<Option<f64>>(row, 0, what)? {
                out.push(ctx.series("pg_replication_lag_seconds", &[], lag.max(0.0)));
            }
            if let Some(pending) = get::<Option<f64>>(row, 1, what)? {
                out.push(ctx.series("pg_replication_replay_pending_bytes", &[], pending));
            }
        }
        return Ok(());
    }
    // replay_lsn is NULL without pg_read_all_stats (or pg_monitor).
    let what = "pg_stat_replication";
    let rows = fetch(
        conn,
        what,
        sqlx::query(
            "SELECT coalesce(application_name, ''), coalesce(host(client_addr), 'local'), \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 \
             FROM pg_stat_replication",
        ),
        limit,
    )
    .await?;
    out.push(ctx.series("pg_replication_replicas", &[], rows.len() as f64));
    // Two replicas may share a name and address; report the worse lag once.
    let mut lag: BTreeMap<(String, String), f64> = BTreeMap::new();
    for row in &rows {
        if let Some(bytes) = get::<Option<f64>>(row, 2, what)? {
            let key = (get(row, 0, what)?, get(row, 1, what)?);
            let v = lag.entry(key).or_insert(bytes);
            *v = v.max(bytes);
        }
    }
    for ((app, addr), bytes) in &lag {
        out.push(ctx.series(
            "pg_replication_replica_lag_bytes",
            &[("application_name", app), ("client_addr", addr)],
            *bytes,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_become_label_values() {
        assert_eq!(
            state_label("idle in transaction (aborted)"),
            "idle_in_transaction_aborted"
        );
        assert_eq!(
            state_label("fastpath function call"),
            "fastpath_function_call"
        );
        assert_eq!(state_label("active"), "active");
        for s in STATES {
            assert_eq!(&state_label(s), s);
        }
    }
}
