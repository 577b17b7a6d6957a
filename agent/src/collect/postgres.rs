//! PostgreSQL health (`pg_*`), for hosts with the `db` role.
//!
//! One connection lives between collections (a monitoring agent that opens a
//! connection per second costs the server a backend fork per second). It is
//! opened in [`Collector::collect`], never at start-up, so a database that is
//! down when the agent starts does not stop the agent. The session carries
//! `application_name=vigil-agent`, a `statement_timeout` (`query_timeout`),
//! `search_path=pg_catalog` (a user table cannot shadow a statistics view) and
//! `default_transaction_read_only`; every query is also bounded on the client.
//!
//! Outcomes of one cycle:
//! - connected and every query answered: `pg_up 1` and the series below;
//! - the server cannot be reached, refuses us (authentication, unknown
//!   database, too many connections) or drops the connection: `pg_up 0` alone,
//!   the collector still succeeds, and a rate-limited warning is logged
//!   ([`Outage`]). A kept connection that turns out dead (server restarted,
//!   backend terminated) is replaced within the same cycle;
//! - a query fails on a reachable server (permission, timeout, a bug): a
//!   collector error, counted by the runner.
//!
//! The queries live in `postgres/queries.rs` (per-server and per-database
//! statistics, replication) and `postgres/statements.rs` (pg_stat_statements).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use vigil_common::{MetricKind, MetricMetadata, Series};

use super::outage::Outage;
use super::{CollectError, Collector, Context};
use crate::config::{PostgresCollectConfig, read_secret_file};

mod queries;
mod statements;
#[cfg(test)]
mod tests;

use MetricKind::{Counter, Gauge};

#[rustfmt::skip]
const FAMILIES: &[(&str, MetricKind, &str, &str)] = &[
    ("pg_up", Gauge, "1 if the server answered every query of the last collection, 0 if it could not be reached or refused the connection", ""),
    ("pg_info", Gauge, "Always 1; the version label is the server version", ""),
    ("pg_start_time_seconds", Gauge, "Server start time, seconds since the Unix epoch", "seconds"),
    ("pg_max_connections", Gauge, "The max_connections setting", ""),
    ("pg_superuser_reserved_connections", Gauge, "Connections reserved for superusers (superuser_reserved_connections)", ""),
    ("pg_connections", Gauge, "Client connections by state", ""),
    ("pg_longest_query_seconds", Gauge, "Age of the longest running query (0 when none runs)", "seconds"),
    ("pg_longest_transaction_seconds", Gauge, "Age of the oldest open transaction (0 when none is open)", "seconds"),
    ("pg_locks", Gauge, "Locks held or awaited, by mode", ""),
    ("pg_locks_waiting", Gauge, "Lock requests not yet granted", ""),
    ("pg_database_backends", Gauge, "Backends connected to the database", ""),
    ("pg_database_size_bytes", Gauge, "Disk space used by the database", "bytes"),
    ("pg_database_frozen_xid_age", Gauge, "Transactions since the database's oldest unfrozen transaction id (wraparound at about 2^31)", ""),
    ("pg_xact_commit_total", Counter, "Transactions committed", ""),
    ("pg_xact_rollback_total", Counter, "Transactions rolled back", ""),
    ("pg_blks_hit_total", Counter, "Block reads served from shared buffers", ""),
    ("pg_blks_read_total", Counter, "Blocks read from disk (or the OS cache)", ""),
    ("pg_tup_returned_total", Counter, "Rows returned by sequential and bitmap scans", ""),
    ("pg_tup_fetched_total", Counter, "Rows fetched by index scans", ""),
    ("pg_tup_inserted_total", Counter, "Rows inserted", ""),
    ("pg_tup_updated_total", Counter, "Rows updated", ""),
    ("pg_tup_deleted_total", Counter, "Rows deleted", ""),
    ("pg_conflicts_total", Counter, "Queries cancelled by recovery conflicts (replicas)", ""),
    ("pg_deadlocks_total", Counter, "Deadlocks detected", ""),
    ("pg_temp_files_total", Counter, "Temporary files created by queries", ""),
    ("pg_temp_bytes_total", Counter, "Bytes written to temporary files by queries", "bytes"),
    ("pg_blk_read_time_seconds_total", Counter, "Time spent reading blocks (needs track_io_timing)", "seconds"),
    ("pg_blk_write_time_seconds_total", Counter, "Time spent writing blocks (needs track_io_timing)", "seconds"),
    ("pg_checkpoints_total", Counter, "Checkpoints, by kind: timed or requested", ""),
    ("pg_checkpoint_buffers_written_total", Counter, "Buffers written by checkpoints", ""),
    ("pg_replication_role", Gauge, "1 on the series whose replication_role (primary or replica) is the server's, 0 on the other", ""),
    ("pg_replication_lag_seconds", Gauge, "Replica only: time since the last replayed transaction, 0 when all received WAL is replayed", "seconds"),
    ("pg_replication_replay_pending_bytes", Gauge, "Replica only: WAL received but not yet replayed", "bytes"),
    ("pg_replication_replicas", Gauge, "Primary only: connected replication clients", ""),
    ("pg_replication_replica_lag_bytes", Gauge, "Primary only: WAL not yet replayed by the replica", "bytes"),
    ("pg_stat_statements_available", Gauge, "1 if pg_stat_statements is installed in the connected database and readable", ""),
    ("pg_statement_calls_total", Counter, "Calls of a top statement (pg_stat_statements)", ""),
    ("pg_statement_time_seconds_total", Counter, "Total execution time of a top statement", "seconds"),
    ("pg_statement_mean_time_seconds", Gauge, "Mean execution time of a top statement", "seconds"),
    ("pg_statement_rows_total", Counter, "Rows retrieved or affected by a top statement", ""),
];

/// The client gives up on a query this long after the server's own
/// `statement_timeout` should have fired.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// Why a cycle produced no statistics.
enum Failure {
    /// Not reachable, refused us, or dropped the connection: `pg_up 0`.
    Down(String),
    /// A query failed on a live server: a collector error. The connection
    /// comes back when it is still usable.
    Query(String, Option<PgConnection>),
}

/// PostgreSQL statistics over one kept connection.
pub struct PostgresCollector {
    config: PostgresCollectConfig,
    options: PgConnectOptions,
    target: String,
    conn: Option<PgConnection>,
    outage: Outage,
    statements: statements::State,
}

impl PostgresCollector {
    /// Checks the URL; connects only when collecting.
    pub fn new(config: PostgresCollectConfig) -> Result<Self, CollectError> {
        let options = config
            .connect_options()
            .map_err(CollectError::Source)?
            .application_name("vigil-agent")
            .statement_cache_capacity(32)
            .options([
                (
                    "statement_timeout",
                    config.query_timeout.as_millis().to_string(),
                ),
                ("search_path", "pg_catalog".to_string()),
                ("default_transaction_read_only", "on".to_string()),
            ]);
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        Ok(PostgresCollector {
            config,
            options,
            target,
            conn: None,
            outage: Outage::default(),
            statements: statements::State::default(),
        })
    }

    /// Caps the connect timeout so that two attempts (a dead kept connection,
    /// then a fresh one) fit in the runner's `budget`: an unreachable server
    /// must show as `pg_up 0`, not as a collector that timed out.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        let cap = budget.mul_f64(0.4);
        self.config.connect_timeout = self.config.connect_timeout.min(cap);
        self
    }

    async fn connect(&self) -> Result<PgConnection, String> {
        let mut options = self.options.clone();
        if let Some(path) = &self.config.password_file {
            options = options.password(&read_secret_file(path)?);
        }
        match tokio::time::timeout(
            self.config.connect_timeout,
            PgConnection::connect_with(&options),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no connection within {:?}",
                self.config.connect_timeout
            )),
        }
    }

    /// One attempt: connect if needed, then read everything.
    async fn cycle(
        &mut self,
        conn: Option<PgConnection>,
        ctx: &Context,
    ) -> Result<(PgConnection, Vec<Series>), Failure> {
        let mut conn = match conn {
            Some(c) => c,
            None => self.connect().await.map_err(Failure::Down)?,
        };
        let limit = self.config.query_timeout + CLIENT_GRACE;
        let mut out = Vec::new();
        let mut read = queries::read(&mut conn, ctx, limit, &mut out).await;
        if read.is_ok() {
            read = (self.statements)
                .read(&mut conn, ctx, &self.config, limit, &mut out)
                .await;
        }
        match read {
            Ok(()) => Ok((conn, out)),
            Err(queries::QueryError::Timeout(what)) => Err(Failure::Query(
                format!("{what}: no answer within {limit:?}"),
                None,
            )),
            Err(queries::QueryError::Sql(what, e)) if is_disconnect(&e) => {
                Err(Failure::Down(format!("{what}: {e}")))
            }
            Err(queries::QueryError::Sql(what, e)) => {
                Err(Failure::Query(format!("{what}: {e}"), Some(conn)))
            }
        }
    }
}

/// Whether `e` means the connection is gone rather than the query failed.
fn is_disconnect(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_disconnect_code(&c)),
        _ => false,
    }
}

/// SQLSTATEs of a server that is going away or refusing sessions: class 08
/// (connection exception), 57P01-57P05 (shutdown, cannot connect now, idle
/// session timeout), 53300 (too many connections). 57014 (statement timeout
/// or cancel) is a query failure, not a disconnect.
fn is_disconnect_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300"
}

#[async_trait]
impl Collector for PostgresCollector {
    fn name(&self) -> &str {
        "postgres"
    }

    fn role(&self) -> Option<&str> {
        Some("db")
    }

    fn metadata(&self) -> Vec<MetricMetadata> {
        super::metadata(FAMILIES)
    }

    async fn collect(&mut self, ctx: &Context) -> Result<Vec<Series>, CollectError> {
        // Taken out for the cycle: if the runner cancels this future half-way
        // through a query, the connection is dropped with it, never reused
        // mid-protocol.
        let kept = self.conn.take();
        let reused = kept.is_some();
        let mut result = self.cycle(kept, ctx).await;
        if reused && matches!(result, Err(Failure::Down(_))) {
            // The kept connection died since the last cycle; try a fresh one.
            result = self.cycle(None, ctx).await;
        }
        match result {
            Ok((conn, series)) => {
                self.conn = Some(conn);
                self.outage.recovered("postgres", &self.target);
                let mut out = Vec::with_capacity(series.len() + 1);
                out.push(ctx.series("pg_up", &[], 1.0));
                out.extend(series);
                Ok(out)
            }
            Err(Failure::Down(why)) => {
                self.outage.failed("postgres", &self.target, &why);
                Ok(vec![ctx.series("pg_up", &[], 0.0)])
            }
            Err(Failure::Query(why, conn)) => {
                self.conn = conn;
                Err(CollectError::Source(why))
            }
        }
    }
}
