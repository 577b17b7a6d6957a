//! Helpers for tests that need a real PostgreSQL: each test gets its own
//! database, so concurrent test runs never see each other's data.
//!
//! `DATABASE_URL` names the server (default `postgres://postgres@127.0.0.1:5432/test`).
//! An unreachable server is an error with a clear message, never a silent skip.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The PostgreSQL URL tests use.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let after_scheme = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[after_scheme..].find('/') {
        Some(i) => &head[..after_scheme + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A throwaway PostgreSQL database; call [`PgTestDb::drop_db`] at the end.
pub struct PgTestDb {
    /// URL of the new database.
    pub url: String,
    admin_url: String,
    name: String,
}

/// Databases older than this are left over from crashed runs and are dropped.
const STALE_SECS: u64 = 3600;

impl PgTestDb {
    pub async fn create() -> Result<PgTestDb, String> {
        let admin_url = database_url();
        let mut admin = PgConnection::connect(&admin_url).await.map_err(|e| {
            format!(
                "PostgreSQL is unreachable at {admin_url}: {e}. These tests need it: start it \
                 (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or set DATABASE_URL"
            )
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'vigil\\_t\\_%'",
        )
        .fetch_all(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
        for name in stale {
            let born = name
                .split('_')
                .nth(2)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(now);
            if now.saturating_sub(born) > STALE_SECS {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            }
        }
        let mut random = [0u8; 6];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| "random failed".to_string())?;
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("vigil_t_{now}_{suffix}");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        Ok(PgTestDb {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }

    /// Drops the database (closing any connections still open to it).
    pub async fn drop_db(self) {
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

/// An [`AppState`](crate::http::AppState) for HTTP tests: a migrated SQLite
/// store in `dir`, fresh metrics, ready, reading queries from `source`.
pub async fn sqlite_app_state(
    dir: &std::path::Path,
    source: std::sync::Arc<dyn crate::query::Source>,
) -> Result<crate::http::AppState, crate::store::StoreError> {
    use std::sync::Arc;
    let store = crate::store::open("sqlite:t.db", dir, 2)?;
    store.migrate().await?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let engine = Arc::new(crate::query::Engine::default());
    Ok(crate::http::AppState {
        mutes: mutes(store.as_ref()),

        alerting: crate::alert::eval::Evaluator::detached(
            store.clone(),
            source.clone(),
            engine.clone(),
            metrics.alerting.clone(),
        ),
        store,
        metrics,
        store_ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        source,
        engine,
    })
}

/// Silences and maintenance over `store`'s database, on the system clock.
pub fn mutes(store: &dyn crate::store::Store) -> std::sync::Arc<crate::notify::mutes::Mutes> {
    std::sync::Arc::new(crate::notify::mutes::Mutes::new(
        store.db(),
        crate::notify::mutes::system_clock(),
    ))
}

/// Creates an API token named `name` with `scope` in `state`'s store and
/// returns its secret.
pub async fn add_token(
    state: &crate::http::AppState,
    name: &str,
    scope: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let token = crate::auth::new_token().map_err(|_| "no randomness")?;
    state
        .store
        .put_token(name, &crate::auth::token_hash(&token), scope)
        .await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/test?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
