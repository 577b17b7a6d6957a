//! Against the real PostgreSQL named by `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test works in its own
//! scratch database (`vigil_t_<unix time>_<random>`, the aggregator tests'
//! naming, so their stale-database sweep also removes ours after a crash).
//! An unreachable server fails the tests with a message; nothing is skipped.

use std::str::FromStr;

use rand::Rng;
use sqlx::{AssertSqlSafe, Connection, Executor};

use super::*;

mod failures;
mod top_statements;
mod traffic;

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `admin_url()` with another user and database.
fn url_for(user: &str, db: &str) -> String {
    let opts = PgConnectOptions::from_str(&admin_url()).expect("DATABASE_URL parses");
    format!(
        "postgres://{user}@{}:{}/{db}",
        opts.get_host(),
        opts.get_port()
    )
}

async fn admin() -> PgConnection {
    let url = admin_url();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at {url}: {e}. These tests need it: start it \
             (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
             or set DATABASE_URL"
        )
    })
}

/// A scratch database (and optionally a role), dropped when this goes out of
/// scope, even when the test panics.
struct Scratch {
    name: String,
    role: Option<String>,
}

impl Scratch {
    async fn new() -> Scratch {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let suffix: u64 = rand::rng().random();
        let name = format!("vigil_t_{now}_{suffix:016x}");
        admin()
            .await
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create scratch database");
        Scratch { name, role: None }
    }

    fn url(&self) -> String {
        url_for("postgres", &self.name)
    }

    async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("connect to scratch database")
    }

    fn config(&self) -> PostgresCollectConfig {
        PostgresCollectConfig {
            url: self.url(),
            ..PostgresCollectConfig::default()
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (name, role) = (self.name.clone(), self.role.take());
        // Drop runs inside the test's runtime; a thread with its own runtime
        // can still wait for the cleanup.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url()).await?;
                admin
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await?;
                if let Some(role) = role {
                    admin
                        .execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{role}\"")))
                        .await?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .map_err(|e| std::io::Error::other(e.to_string()))
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("cleanup of {} failed: {e}", self.name);
        }
    }
}

fn ctx() -> Context {
    Context::new(vigil_common::now_ms(), "h", "db")
}

fn value(series: &[Series], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    series
        .iter()
        .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.points[0].value)
}

async fn collect_ok(c: &mut PostgresCollector) -> Vec<Series> {
    let series = c.collect(&ctx()).await.expect("collect succeeds");
    assert_eq!(
        value(&series, "pg_up", None),
        Some(1.0),
        "pg_up: {series:#?}"
    );
    series
}

/// Every series is valid, documented in FAMILIES and tagged `role="db"`.
fn check_families(series: &[Series]) {
    let families: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
    for s in series {
        s.validate().expect("valid series");
        assert!(
            families.contains(&s.name.as_str()),
            "undocumented {}",
            s.name
        );
    }
}

#[test]
fn every_family_is_documented() {
    let doc = include_str!("../../../../../docs/metrics.md");
    for (name, ..) in FAMILIES {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "{name} missing from docs/metrics.md"
        );
    }
}
