//! The slowest statements, from pg_stat_statements.
//!
//! The extension is looked up in the connected database each cycle (it may be
//! created or dropped at any time, in any schema). Absent, installed but not
//! loaded through `shared_preload_libraries` (SQLSTATE 55000), or not readable
//! (42501): `pg_stat_statements_available 0` and no statement series, not an
//! error. Version 1.8 (PostgreSQL 13) renamed `total_time` to
//! `total_exec_time`; the column is chosen from the installed version.
//!
//! The view has one row per (user, database, query id, top level); rows are
//! summed per `queryid`, ranked by total or mean time, and the top N are
//! reported with labels `queryid` and `query` (whitespace collapsed, cut to
//! `statements_query_length` characters).

use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;
use vigil_common::Series;

use super::queries::{QueryError, fetch, get};
use crate::collect::Context;
use crate::config::{PostgresCollectConfig, StatementsOrder};

/// Remembers whether unavailability was already logged, so it is said once.
#[derive(Debug, Default)]
pub struct State {
    logged_unavailable: bool,
}

/// `1.10` -> `(1, 10)`; unparsable parts count as 0.
fn parse_version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// `"name"` with embedded quotes doubled: safe to splice into SQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The ranking query for the extension in `schema` at `version`.
pub fn statements_sql(schema: &str, version: &str, order: StatementsOrder) -> String {
    let total = if parse_version(version) >= (1, 8) {
        "total_exec_time"
    } else {
        "total_time"
    };
    let rank = match order {
        StatementsOrder::TotalTime => format!("sum({total})"),
        StatementsOrder::MeanTime => format!("sum({total}) / greatest(sum(calls), 1)"),
    };
    format!(
        "SELECT queryid::text, min(query), sum(calls)::float8, \
                (sum({total}) / 1000)::float8, sum(rows)::float8 \
         FROM {}.pg_stat_statements WHERE queryid IS NOT NULL \
         GROUP BY queryid ORDER BY {rank} DESC NULLS LAST, queryid LIMIT $1",
        quote_ident(schema)
    )
}

/// Whitespace runs become one space; text longer than `max` characters is cut
/// to `max` characters ending in `...`.
pub fn normalize_query(query: &str, max: usize) -> String {
    let joined = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

/// SQLSTATEs meaning "installed but cannot be read here".
fn is_unavailable(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55000" || c == "42501")
}

impl State {
    /// Reads the top statements into `out` (with `pg_stat_statements_available`).
    pub async fn read(
        &mut self,
        conn: &mut PgConnection,
        ctx: &Context,
        config: &PostgresCollectConfig,
        limit: Duration,
        out: &mut Vec<Series>,
    ) -> Result<(), QueryError> {
        if config.statements_top == 0 {
            return Ok(());
        }
        let what = "pg_extension";
        let rows = fetch(
            conn,
            what,
            sqlx::query(
                "SELECT n.nspname::text, e.extversion::text FROM pg_extension e \
                 JOIN pg_namespace n ON n.oid = e.extnamespace \
                 WHERE e.extname = 'pg_stat_statements'",
            ),
            limit,
        )
        .await?;
        let Some(row) = rows.first() else {
            return self.unavailable(ctx, out, "not installed in the connected database");
        };
        let schema: String = get(row, 0, what)?;
        let version: String = get(row, 1, what)?;
        match top(conn, ctx, &schema, &version, config, limit, out).await {
            Err(QueryError::Sql(_, e)) if is_unavailable(&e) => {
                self.unavailable(ctx, out, &e.to_string())
            }
            Err(e) => Err(e),
            Ok(()) => {
                self.logged_unavailable = false;
                out.push(ctx.series("pg_stat_statements_available", &[], 1.0));
                Ok(())
            }
        }
    }

    fn unavailable(
        &mut self,
        ctx: &Context,
        out: &mut Vec<Series>,
        why: &str,
    ) -> Result<(), QueryError> {
        if !self.logged_unavailable {
            tracing::info!(
                why,
                "pg_stat_statements unavailable; no per-statement metrics"
            );
            self.logged_unavailable = true;
        }
        out.push(ctx.series("pg_stat_statements_available", &[], 0.0));
        Ok(())
    }
}

/// The top statements of the view in `schema`, as the extension `version`
/// lays it out.
pub async fn top(
    conn: &mut PgConnection,
    ctx: &Context,
    schema: &str,
    version: &str,
    config: &PostgresCollectConfig,
    limit: Duration,
    out: &mut Vec<Series>,
) -> Result<(), QueryError> {
    let sql = statements_sql(schema, version, config.statements_order_by);
    let n = i64::try_from(config.statements_top).unwrap_or(i64::MAX);
    let what = "pg_stat_statements";
    let rows = fetch(conn, what, sqlx::query(AssertSqlSafe(sql)).bind(n), limit).await?;
    for row in &rows {
        let queryid: String = get(row, 0, what)?;
        let text: Option<String> = get(row, 1, what)?;
        let query = normalize_query(
            text.as_deref().unwrap_or_default(),
            config.statements_query_length,
        );
        let calls: f64 = get(row, 2, what)?;
        let seconds: f64 = get(row, 3, what)?;
        let labels = [("queryid", queryid.as_str()), ("query", query.as_str())];
        out.push(ctx.series("pg_statement_calls_total", &labels, calls));
        out.push(ctx.series("pg_statement_time_seconds_total", &labels, seconds));
        out.push(ctx.series(
            "pg_statement_mean_time_seconds",
            &labels,
            if calls > 0.0 { seconds / calls } else { 0.0 },
        ));
        out.push(ctx.series("pg_statement_rows_total", &labels, get(row, 4, what)?));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_normalized_and_cut() {
        assert_eq!(
            normalize_query("SELECT *\n\tFROM  t\r\n WHERE id = $1 ", 100),
            "SELECT * FROM t WHERE id = $1"
        );
        assert_eq!(normalize_query("SELECT 1234567890", 10), "SELECT ...");
        assert_eq!(normalize_query("SELECT 1", 8), "SELECT 1");
        // Multi-byte characters are never split.
        assert_eq!(normalize_query("ééééééééé", 6), "ééé...");
    }

    #[test]
    fn versions_pick_the_time_column() {
        let new = statements_sql("public", "1.10", StatementsOrder::TotalTime);
        assert!(
            new.contains("sum(total_exec_time)") && new.contains("\"public\"."),
            "{new}"
        );
        let old = statements_sql("ext", "1.7", StatementsOrder::MeanTime);
        assert!(
            old.contains("sum(total_time) / greatest(sum(calls), 1)"),
            "{old}"
        );
        assert!(statements_sql("a\"b", "1.9", StatementsOrder::TotalTime).contains("\"a\"\"b\"."));
        assert_eq!(parse_version("1.10"), (1, 10));
        assert!(parse_version("1.10") > parse_version("1.8"));
        assert_eq!(parse_version("x"), (0, 0));
    }
}
