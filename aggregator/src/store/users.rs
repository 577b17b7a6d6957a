//! Operator accounts and web sessions (tables `users` and `sessions`,
//! migration 0008): one SQL text per operation, the same on both databases.
//!
//! - A user has a name, a role (`viewer`, `operator`, `admin`), an Argon2id
//!   PHC hash and a `disabled` flag. The password itself is never stored.
//! - A session row is keyed by the SHA-256 of the session id the browser's
//!   cookie holds, with the user, the session's CSRF token, when it was
//!   created and last seen, and its absolute expiry.
//! - Changing a password, disabling or deleting a user deletes that user's
//!   sessions in the same transaction.
//! - The last enabled admin cannot be disabled, demoted or deleted: the check
//!   and the change run in one transaction (PostgreSQL locks the table
//!   against concurrent changes; SQLite has one writer).

use crate::store::{Db, StoreError};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A stored session with its user's current role and state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub user_name: String,
    pub role: String,
    pub disabled: bool,
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub expires_at_ms: i64,
}

/// What a change to a user should do (`None`: leave as is).
#[derive(Debug, Clone, Default)]
pub struct UserChange<'a> {
    pub role: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub disabled: Option<bool>,
}

/// The result of a change that may be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Done,
    NotFound,
    /// It would leave no enabled admin.
    LastAdmin,
}

const USER_COLUMNS: &str =
    "SELECT name, role, password_hash, disabled, created_at_ms, updated_at_ms FROM users";

const INSERT_USER: &str = "INSERT INTO users
    (name, role, password_hash, disabled, created_at_ms, updated_at_ms)
    VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO NOTHING";

const OTHER_ADMINS: &str =
    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled AND name <> $1";

const UPDATE_USER: &str = "UPDATE users SET role = $2, password_hash = $3, disabled = $4,
    updated_at_ms = $5 WHERE name = $1";

const DELETE_USER: &str = "DELETE FROM users WHERE name = $1";

const INSERT_SESSION: &str = "INSERT INTO sessions
    (id_sha256, user_name, csrf_token, created_at_ms, last_seen_ms, expires_at_ms)
    VALUES ($1, $2, $3, $4, $4, $5)";

const SESSION: &str = "SELECT s.user_name, u.role, u.disabled, s.csrf_token, s.created_at_ms,
        s.last_seen_ms, s.expires_at_ms
    FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.id_sha256 = $1";

const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen_ms = $2 WHERE id_sha256 = $1";

const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id_sha256 = $1";

const DELETE_SESSIONS_OF: &str = "DELETE FROM sessions WHERE user_name = $1";

const PRUNE_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at_ms <= $1 OR last_seen_ms <= $2";

/// Runs the same code on whichever pool writes.
macro_rules! on_writer {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { writer: $pool, .. } => $body,
        }
    };
}

/// Runs the same code on whichever pool reads.
macro_rules! on_reader {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { reader: $pool, .. } => $body,
        }
    };
}

/// Creates a user; false if the name is taken.
pub async fn insert_user(
    db: &Db,
    name: &str,
    role: &str,
    password_hash: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    on_writer!(db, |pool| {
        let n = sqlx::query(INSERT_USER)
            .bind(name)
            .bind(role)
            .bind(password_hash)
            .bind(false)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    })
}

/// The user called `name`.
pub async fn user(db: &Db, name: &str) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!("{USER_COLUMNS} WHERE name = $1");
    on_reader!(db, |pool| {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(pool)
            .await?)
    })
}

/// Every user, by name.
pub async fn users(db: &Db) -> Result<Vec<UserRecord>, StoreError> {
    let sql = format!("{USER_COLUMNS} ORDER BY name");
    on_reader!(db, |pool| {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await?)
    })
}

/// In the transaction `tx`: on PostgreSQL locks `users` first (two admins
/// demoting each other at once must not both succeed), then reads `name`.
macro_rules! locked_user {
    ($tx:ident, $is_pg:expr, $sql:expr, $name:expr) => {{
        if $is_pg {
            sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *$tx)
                .await?;
        }
        let current: Option<UserRecord> = sqlx::query_as(sqlx::AssertSqlSafe($sql))
            .bind($name)
            .fetch_optional(&mut *$tx)
            .await?;
        current
    }};
}

/// Applies `change` to `name`. A new password or disabling ends the user's
/// sessions; leaving no enabled admin is refused.
pub async fn update_user(
    db: &Db,
    name: &str,
    change: &UserChange<'_>,
    now_ms: i64,
) -> Result<Changed, StoreError> {
    let is_pg = matches!(db, Db::Postgres(_));
    let sql = format!("{USER_COLUMNS} WHERE name = $1");
    on_writer!(db, |pool| {
        let mut tx = pool.begin().await?;
        let current = locked_user!(tx, is_pg, sql, name);
        let Some(current) = current else {
            return Ok(Changed::NotFound);
        };
        let role = change.role.unwrap_or(&current.role);
        let disabled = change.disabled.unwrap_or(current.disabled);
        let was_admin = current.role == "admin" && !current.disabled;
        let stays_admin = role == "admin" && !disabled;
        if was_admin && !stays_admin {
            let others: i64 = sqlx::query_scalar(OTHER_ADMINS)
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            if others == 0 {
                return Ok(Changed::LastAdmin);
            }
        }
        let hash = change.password_hash.unwrap_or(&current.password_hash);
        sqlx::query(UPDATE_USER)
            .bind(name)
            .bind(role)
            .bind(hash)
            .bind(disabled)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        if change.password_hash.is_some() || (disabled && !current.disabled) {
            sqlx::query(DELETE_SESSIONS_OF)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Changed::Done)
    })
}

/// Deletes `name` and its sessions, unless it is the last enabled admin.
pub async fn delete_user(db: &Db, name: &str) -> Result<Changed, StoreError> {
    let is_pg = matches!(db, Db::Postgres(_));
    let sql = format!("{USER_COLUMNS} WHERE name = $1");
    on_writer!(db, |pool| {
        let mut tx = pool.begin().await?;
        let current = locked_user!(tx, is_pg, sql, name);
        let Some(current) = current else {
            return Ok(Changed::NotFound);
        };
        if current.role == "admin" && !current.disabled {
            let others: i64 = sqlx::query_scalar(OTHER_ADMINS)
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            if others == 0 {
                return Ok(Changed::LastAdmin);
            }
        }
        sqlx::query(DELETE_SESSIONS_OF)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(DELETE_USER)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Changed::Done)
    })
}

/// Stores a new session.
pub async fn insert_session(
    db: &Db,
    id_sha256: &[u8; 32],
    user: &str,
    csrf_token: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<(), StoreError> {
    on_writer!(db, |pool| {
        sqlx::query(INSERT_SESSION)
            .bind(&id_sha256[..])
            .bind(user)
            .bind(csrf_token)
            .bind(now_ms)
            .bind(expires_at_ms)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// The session with this id hash, with its user's role and state.
pub async fn session(db: &Db, id_sha256: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
    on_reader!(db, |pool| {
        Ok(sqlx::query_as(SESSION)
            .bind(&id_sha256[..])
            .fetch_optional(pool)
            .await?)
    })
}

/// Records activity on a session (for the idle timeout).
pub async fn touch_session(db: &Db, id_sha256: &[u8; 32], now_ms: i64) -> Result<(), StoreError> {
    on_writer!(db, |pool| {
        sqlx::query(TOUCH_SESSION)
            .bind(&id_sha256[..])
            .bind(now_ms)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// Ends one session.
pub async fn delete_session(db: &Db, id_sha256: &[u8; 32]) -> Result<(), StoreError> {
    on_writer!(db, |pool| {
        sqlx::query(DELETE_SESSION)
            .bind(&id_sha256[..])
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// Deletes sessions past their absolute expiry or idle since `idle_before_ms`;
/// returns how many.
pub async fn prune_sessions(db: &Db, now_ms: i64, idle_before_ms: i64) -> Result<u64, StoreError> {
    on_writer!(db, |pool| {
        Ok(sqlx::query(PRUNE_SESSIONS)
            .bind(now_ms)
            .bind(idle_before_ms)
            .execute(pool)
            .await?
            .rows_affected())
    })
}
