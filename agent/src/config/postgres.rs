//! `[collect.postgres]`: the PostgreSQL collector (`collect/postgres.rs`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::validate::{check_range, problem};

/// Server monitored when `url` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Time allowed to open a connection (TCP, startup, authentication).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `statement_timeout` of the collector's session.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Statements reported from pg_stat_statements.
pub const DEFAULT_STATEMENTS_TOP: usize = 10;
/// Upper bound on `statements_top` (each statement is several series).
pub const MAX_STATEMENTS_TOP: usize = 100;
/// Longest `query` label, in characters.
pub const DEFAULT_STATEMENTS_QUERY_LENGTH: usize = 120;

/// `[collect.postgres]`. `Debug` shows the URL without its password.
#[derive(Clone, PartialEq, Deserialize)]
pub struct PostgresCollectConfig {
    /// On or off. Unset: on when the host's `roles` include `db`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Server to monitor, libpq URL style: `postgres://user[:password]@host:port/db`,
    /// or `postgres:///db?host=/var/run/postgresql` for a Unix socket.
    /// TLS is not supported: `sslmode` must be `disable` or `prefer`.
    #[serde(default = "default_url")]
    pub url: String,
    /// File whose first line is the password (overrides one in `url`), so the
    /// secret stays out of this file. Re-read at every connection attempt.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Time allowed to connect and authenticate (at most 40% of the
    /// collection budget, so an unreachable server shows as `pg_up 0`).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The session's `statement_timeout`; the agent also gives up on a query
    /// one second after it.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Statements reported from pg_stat_statements (0 turns this off).
    #[serde(default = "default_statements_top")]
    pub statements_top: usize,
    /// How statements are ranked: `total_time` (default) or `mean_time`.
    #[serde(default)]
    pub statements_order_by: StatementsOrder,
    /// Longest `query` label (characters); longer texts are cut and end in `...`.
    #[serde(default = "default_statements_query_length")]
    pub statements_query_length: usize,
}

/// Ranking of pg_stat_statements entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementsOrder {
    /// Most total execution time first: where the server spends its time.
    #[default]
    TotalTime,
    /// Slowest average execution first.
    MeanTime,
}

impl Default for PostgresCollectConfig {
    fn default() -> Self {
        PostgresCollectConfig {
            enabled: None,
            url: default_url(),
            password_file: None,
            connect_timeout: default_connect_timeout(),
            query_timeout: default_query_timeout(),
            statements_top: default_statements_top(),
            statements_order_by: StatementsOrder::default(),
            statements_query_length: default_statements_query_length(),
        }
    }
}

fn default_url() -> String {
    DEFAULT_URL.to_string()
}
fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_query_timeout() -> Duration {
    DEFAULT_QUERY_TIMEOUT
}
fn default_statements_top() -> usize {
    DEFAULT_STATEMENTS_TOP
}
fn default_statements_query_length() -> usize {
    DEFAULT_STATEMENTS_QUERY_LENGTH
}

impl PostgresCollectConfig {
    /// Whether the collector runs on a host with `roles`.
    pub fn is_enabled(&self, roles: &[String]) -> bool {
        self.enabled
            .unwrap_or_else(|| roles.iter().any(|r| r == "db"))
    }

    /// Connection options from `url` (the password file is read at connect time).
    pub fn connect_options(&self) -> Result<PgConnectOptions, String> {
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(format!(
                "{:?} is not a postgres:// or postgresql:// URL",
                redact(&self.url)
            ));
        }
        let options = PgConnectOptions::from_str(&self.url)
            .map_err(|e| format!("{:?}: {e}", redact(&self.url)))?;
        match options.get_ssl_mode() {
            PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => Err(format!(
                "{:?}: TLS to PostgreSQL is not supported by the agent yet; \
                 use sslmode=disable or prefer (a local socket or loopback address)",
                redact(&self.url)
            )),
            _ => Ok(options),
        }
    }

    pub(super) fn value_problems(&self, p: &mut Vec<String>) {
        const KEY: &str = "collect.postgres";
        if let Err(why) = self.connect_options() {
            p.push(problem(&format!("{KEY}.url"), why));
        }
        if self
            .password_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            p.push(problem(&format!("{KEY}.password_file"), "must name a file"));
        }
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        p.extend(check_range(
            &format!("{KEY}.connect_timeout"),
            self.connect_timeout,
            ms(100),
            s(60),
        ));
        p.extend(check_range(
            &format!("{KEY}.query_timeout"),
            self.query_timeout,
            ms(100),
            s(60),
        ));
        if self.statements_top > MAX_STATEMENTS_TOP {
            p.push(problem(
                &format!("{KEY}.statements_top"),
                format!("must be from 0 to {MAX_STATEMENTS_TOP}"),
            ));
        }
        if !(16..=1000).contains(&self.statements_query_length) {
            p.push(problem(
                &format!("{KEY}.statements_query_length"),
                "must be from 16 to 1000",
            ));
        }
    }
}

/// `url` with its password replaced by `***`, for messages and logs
/// ([`vigil_common::secret::redact_url`]).
pub fn redact(url: &str) -> String {
    vigil_common::secret::redact_url(url)
}

impl std::fmt::Debug for PostgresCollectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCollectConfig")
            .field("enabled", &self.enabled)
            .field("url", &redact(&self.url))
            .field("password_file", &self.password_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("statements_top", &self.statements_top)
            .field("statements_order_by", &self.statements_order_by)
            .field("statements_query_length", &self.statements_query_length)
            .finish()
    }
}

impl PostgresCollectConfig {
    pub(super) fn file_problems(&self, roles: &[String], p: &mut Vec<String>) {
        if let (true, Some(path)) = (self.is_enabled(roles), &self.password_file) {
            if !path.as_os_str().is_empty() {
                if let Err(why) = super::secret::read_secret_file(path) {
                    p.push(problem("collect.postgres.password_file", why));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_url_without_its_password() {
        let c = PostgresCollectConfig {
            url: "postgres://mon:pw-9f2@db:5432/app".into(),
            ..PostgresCollectConfig::default()
        };
        let d = format!("{c:?}");
        assert!(d.contains("postgres://mon:***@db:5432/app"), "{d}");
        assert!(!d.contains("pw-9f2"), "{d}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("redis://:p@ss@h:1"), "redis://:***@h:1");
        assert_eq!(
            redact("postgres://u:pw@h:notaport/db"),
            "postgres://u:***@h:notaport/db"
        );
        assert_eq!(
            redact("postgres://u@h/db?x=a:b@c"),
            "postgres://u@h/db?x=a:b@c"
        );
        assert_eq!(redact("nonsense"), "nonsense");
    }

    #[test]
    fn tls_modes_are_refused_and_plain_ones_accepted() {
        let with = |url: &str| PostgresCollectConfig {
            url: url.into(),
            ..PostgresCollectConfig::default()
        };
        assert!(with(DEFAULT_URL).connect_options().is_ok());
        assert!(
            with("postgresql:///db?host=/run/postgresql&sslmode=disable")
                .connect_options()
                .is_ok()
        );
        assert!(
            with("postgres://h/db?sslmode=prefer")
                .connect_options()
                .is_ok()
        );
        let err = with("postgres://u:pw@h/db?sslmode=require")
            .connect_options()
            .expect_err("tls");
        assert!(
            err.contains("not supported") && err.contains("***") && !err.contains("pw"),
            "{err}"
        );
        assert!(with("mysql://h/db").connect_options().is_err());
        assert!(with("postgres://h:99999/db").connect_options().is_err());
    }
}
