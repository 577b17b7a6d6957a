//! Enrollment tokens and agent key changes (table `enroll_tokens` and the
//! `agents.previous_*` columns, migration 0010), one SQL text per operation,
//! the same on both databases.
//!
//! - A token is stored as its SHA-256 only, named by `id` (the hash's first
//!   12 hex characters). It is consumed by one conditional `UPDATE` in the
//!   same transaction that registers the agent, so a token works once even
//!   when two agents race with it, and a refused registration (the agent id
//!   is taken) does not burn it.
//! - Re-keying (a rotation, or re-enrollment with a token bound to the id)
//!   keeps the old key in `previous_public_key` until
//!   `previous_valid_until_ms`, so batches signed before the change and still
//!   in the agent's spool are accepted.

use serde::Serialize;
use vigil_common::enroll::Refusal;

use crate::store::{Db, StoreError};

/// Length of a token's public id (hex characters of its SHA-256).
pub const TOKEN_ID_LEN: usize = 12;

/// An enrollment token as listings show it (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EnrollToken {
    pub id: String,
    /// The only agent id the token may enroll (`--host-name`), if bound.
    pub agent_id: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    /// The agent id that used it.
    pub used_by: Option<String>,
    pub revoked_at_ms: Option<i64>,
}

impl EnrollToken {
    /// `live`, `used`, `revoked` or `expired` at `now_ms`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.used_at_ms.is_some() {
            "used"
        } else if self.revoked_at_ms.is_some() {
            "revoked"
        } else if self.expires_at_ms <= now_ms {
            "expired"
        } else {
            "live"
        }
    }
}

/// What [`enroll`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// Registered. When an existing agent was re-keyed, until when its
    /// previous key is accepted.
    Done {
        previous_valid_until_ms: Option<i64>,
    },
    Refused(Refusal, String),
}

/// The columns of a token, as a literal so `concat!` makes static SQL of it
/// (no SQL text is built at run time).
macro_rules! token_select {
    () => {
        "SELECT id, agent_id, created_at_ms, expires_at_ms, used_at_ms, \
         used_by, revoked_at_ms FROM enroll_tokens"
    };
}

const INSERT_TOKEN: &str = "INSERT INTO enroll_tokens (id, sha256, agent_id, created_at_ms, \
     expires_at_ms) VALUES ($1, $2, $3, $4, $5)";

const REVOKE_TOKEN: &str = "UPDATE enroll_tokens SET revoked_at_ms = $2 \
     WHERE id = $1 AND used_at_ms IS NULL AND revoked_at_ms IS NULL";

/// Uses a live token for `$3`: returns the token's binding (a row) or nothing.
const CONSUME_TOKEN: &str = "UPDATE enroll_tokens SET used_at_ms = $2, used_by = $3 \
     WHERE sha256 = $1 AND used_at_ms IS NULL AND revoked_at_ms IS NULL \
       AND expires_at_ms > $2 AND (agent_id IS NULL OR agent_id = $3) \
     RETURNING agent_id";

const INSERT_NEW_AGENT: &str = "INSERT INTO agents (agent_id, public_key, registered_at_ms) \
     VALUES ($1, $2, $3) ON CONFLICT (agent_id) DO NOTHING";

/// Re-keys (or creates) an agent for a bound token: a live old key stays
/// valid until `$4`; a revoked agent's old key does not.
const REKEY_AGENT: &str = "INSERT INTO agents (agent_id, public_key, registered_at_ms) \
     VALUES ($1, $2, $3) ON CONFLICT (agent_id) DO UPDATE SET \
       previous_public_key = CASE WHEN agents.revoked_at_ms IS NULL \
         THEN agents.public_key ELSE NULL END, \
       previous_valid_until_ms = CASE WHEN agents.revoked_at_ms IS NULL THEN $4 ELSE NULL END, \
       public_key = excluded.public_key, registered_at_ms = excluded.registered_at_ms, \
       revoked_at_ms = NULL";

const PREVIOUS_UNTIL: &str = "SELECT previous_valid_until_ms FROM agents WHERE agent_id = $1";

const ROTATE: &str = "UPDATE agents SET previous_public_key = public_key, \
     previous_valid_until_ms = $4, public_key = $3 \
     WHERE agent_id = $1 AND public_key = $2 AND revoked_at_ms IS NULL";

const REVOKED_AGENTS: &str = "SELECT agent_id FROM agents WHERE revoked_at_ms IS NOT NULL";

// The same helpers as store/users.rs: one body for both pools.
macro_rules! on_writer {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { writer: $pool, .. } => $body,
        }
    };
}

macro_rules! on_reader {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { reader: $pool, .. } => $body,
        }
    };
}

/// A token's public id from its hash.
pub fn token_id(sha256: &[u8; 32]) -> String {
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    hex[..TOKEN_ID_LEN].to_string()
}

/// Stores a new token (its hash) and returns its id.
pub async fn insert_token(
    db: &Db,
    sha256: &[u8; 32],
    agent_id: Option<&str>,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<String, StoreError> {
    let id = token_id(sha256);
    on_writer!(db, |pool| {
        sqlx::query(INSERT_TOKEN)
            .bind(&id)
            .bind(&sha256[..])
            .bind(agent_id)
            .bind(now_ms)
            .bind(expires_at_ms)
            .execute(pool)
            .await?;
        Ok(id)
    })
}

/// Every token, newest first.
pub async fn tokens(db: &Db) -> Result<Vec<EnrollToken>, StoreError> {
    const SQL: &str = concat!(token_select!(), " ORDER BY created_at_ms DESC, id");
    on_reader!(db, |pool| {
        Ok(sqlx::query_as(SQL).fetch_all(pool).await?)
    })
}

/// Revokes an unused token; false if there is no such unused, unrevoked token.
pub async fn revoke_token(db: &Db, id: &str, now_ms: i64) -> Result<bool, StoreError> {
    on_writer!(db, |pool| {
        let n = sqlx::query(REVOKE_TOKEN)
            .bind(id)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    })
}

/// The token with this hash, whatever its state.
pub async fn token_by_hash(db: &Db, sha256: &[u8; 32]) -> Result<Option<EnrollToken>, StoreError> {
    const SQL: &str = concat!(token_select!(), " WHERE sha256 = $1");
    on_writer!(db, |pool| {
        Ok(sqlx::query_as(SQL)
            .bind(&sha256[..])
            .fetch_optional(pool)
            .await?)
    })
}

/// Why the token with this hash cannot enroll `agent_id` at `now_ms`.
pub fn refusal(token: Option<&EnrollToken>, agent_id: &str, now_ms: i64) -> (Refusal, String) {
    let Some(t) = token else {
        return (
            Refusal::UnknownToken,
            "unknown enrollment token (check it was copied whole)".into(),
        );
    };
    match t.state(now_ms) {
        "used" => (
            Refusal::TokenUsed,
            format!(
                "enrollment token {} was already used (a token works once); create a new one",
                t.id
            ),
        ),
        "revoked" => (
            Refusal::TokenRevoked,
            format!("enrollment token {} was revoked", t.id),
        ),
        "expired" => (
            Refusal::TokenExpired,
            format!("enrollment token {} has expired; create a new one", t.id),
        ),
        _ => match &t.agent_id {
            Some(bound) if bound != agent_id => (
                Refusal::AgentIdMismatch,
                format!(
                    "enrollment token {} is for agent {bound:?}, not {agent_id:?}",
                    t.id
                ),
            ),
            _ => (Refusal::UnknownToken, "unknown enrollment token".into()),
        },
    }
}

/// Uses the token with hash `sha256` to register `agent_id` with `key`, in
/// one transaction. A token bound to `agent_id` may re-key an existing
/// agent (the old key then stays valid until `grace_until_ms`); an unbound
/// one only registers a new id.
pub async fn enroll(
    db: &Db,
    sha256: &[u8; 32],
    agent_id: &str,
    key: &[u8; 32],
    now_ms: i64,
    grace_until_ms: i64,
) -> Result<Enrolled, StoreError> {
    let consumed = on_writer!(db, |pool| {
        let mut tx = pool.begin().await?;
        let bound: Option<Option<String>> = sqlx::query_scalar(CONSUME_TOKEN)
            .bind(&sha256[..])
            .bind(now_ms)
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?;
        match bound {
            None => None,
            Some(None) => {
                let n = sqlx::query(INSERT_NEW_AGENT)
                    .bind(agent_id)
                    .bind(&key[..])
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    // Dropping `tx` rolls back: the token stays usable.
                    return Ok(Enrolled::Refused(
                        Refusal::AgentIdTaken,
                        format!(
                            "agent id {agent_id:?} is already registered; pick another \
                             (--agent-id), or re-key it with a token created with \
                             --host-name {agent_id}"
                        ),
                    ));
                }
                tx.commit().await?;
                Some(None)
            }
            Some(Some(_)) => {
                sqlx::query(REKEY_AGENT)
                    .bind(agent_id)
                    .bind(&key[..])
                    .bind(now_ms)
                    .bind(grace_until_ms)
                    .execute(&mut *tx)
                    .await?;
                let until: Option<i64> = sqlx::query_scalar(PREVIOUS_UNTIL)
                    .bind(agent_id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Some(until)
            }
        }
    });
    Ok(match consumed {
        Some(previous_valid_until_ms) => Enrolled::Done {
            previous_valid_until_ms,
        },
        None => {
            let token = token_by_hash(db, sha256).await?;
            let (code, message) = refusal(token.as_ref(), agent_id, now_ms);
            Enrolled::Refused(code, message)
        }
    })
}

/// Replaces `agent_id`'s key `current` by `new`, keeping `current` valid
/// until `grace_until_ms`; false if the agent is unknown, revoked, or its
/// key is no longer `current` (a concurrent rotation).
pub async fn rotate(
    db: &Db,
    agent_id: &str,
    current: &[u8; 32],
    new: &[u8; 32],
    grace_until_ms: i64,
) -> Result<bool, StoreError> {
    on_writer!(db, |pool| {
        let n = sqlx::query(ROTATE)
            .bind(agent_id)
            .bind(&current[..])
            .bind(&new[..])
            .bind(grace_until_ms)
            .execute(pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    })
}

/// The ids of every revoked agent.
pub async fn revoked_agents(db: &Db) -> Result<Vec<String>, StoreError> {
    on_reader!(db, |pool| {
        Ok(sqlx::query_scalar(REVOKED_AGENTS).fetch_all(pool).await?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, open};
    use crate::testing::PgTestDb;
    use std::sync::Arc;

    const NOW: i64 = 1_000_000;

    async fn suite(store: Arc<dyn Store>) {
        store.migrate().await.expect("migrate");
        let db = store.db();
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let key = |n: u8| [n; 32];

        // Unbound token: enrolls a new id once.
        let id = insert_token(&db, &a, None, NOW, NOW + 60_000)
            .await
            .expect("insert");
        assert_eq!(id, token_id(&a));
        store
            .register_agent("taken", &key(9))
            .await
            .expect("register");
        // An id already registered: refused, the token stays live.
        assert!(matches!(
            enroll(&db, &a, "taken", &key(1), NOW, NOW + 10)
                .await
                .expect("enroll"),
            Enrolled::Refused(Refusal::AgentIdTaken, _)
        ));
        assert_eq!(tokens(&db).await.expect("list")[0].state(NOW), "live");
        assert_eq!(
            enroll(&db, &a, "web-1", &key(1), NOW, NOW + 10)
                .await
                .expect("enroll"),
            Enrolled::Done {
                previous_valid_until_ms: None
            }
        );
        let record = store
            .agent("web-1")
            .await
            .expect("agent")
            .expect("registered");
        assert_eq!(record.public_key, key(1));
        assert_eq!(record.previous_key, None);
        // Once only.
        match enroll(&db, &a, "web-2", &key(2), NOW, NOW + 10)
            .await
            .expect("enroll")
        {
            Enrolled::Refused(code, message) => {
                assert_eq!(code, Refusal::TokenUsed);
                assert!(message.contains(&id), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let listed = tokens(&db).await.expect("list");
        assert_eq!(listed[0].used_by.as_deref(), Some("web-1"));
        assert_eq!(listed[0].state(NOW), "used");
        assert!(!revoke_token(&db, &id, NOW).await.expect("revoke"), "used");

        // Expired and unknown.
        insert_token(&db, &b, None, NOW - 10, NOW)
            .await
            .expect("insert");
        assert!(matches!(
            enroll(&db, &b, "web-3", &key(3), NOW, NOW + 10)
                .await
                .expect("enroll"),
            Enrolled::Refused(Refusal::TokenExpired, _)
        ));
        assert!(matches!(
            enroll(&db, &[7; 32], "web-3", &key(3), NOW, NOW + 10)
                .await
                .expect("enroll"),
            Enrolled::Refused(Refusal::UnknownToken, _)
        ));

        // Bound token: only its id, and it re-keys with a grace period.
        insert_token(&db, &c, Some("web-1"), NOW, NOW + 60_000)
            .await
            .expect("insert");
        assert!(matches!(
            enroll(&db, &c, "web-9", &key(4), NOW, NOW + 10)
                .await
                .expect("enroll"),
            Enrolled::Refused(Refusal::AgentIdMismatch, _)
        ));
        assert_eq!(
            enroll(&db, &c, "web-1", &key(4), NOW, NOW + 500)
                .await
                .expect("enroll"),
            Enrolled::Done {
                previous_valid_until_ms: Some(NOW + 500)
            }
        );
        let record = store
            .agent("web-1")
            .await
            .expect("agent")
            .expect("registered");
        assert_eq!(record.public_key, key(4));
        assert_eq!(record.previous_key, Some((key(1), NOW + 500)));

        // Rotation: only from the current key, not for a revoked agent.
        assert!(
            !rotate(&db, "web-1", &key(1), &key(5), NOW + 900)
                .await
                .expect("rotate")
        );
        assert!(
            rotate(&db, "web-1", &key(4), &key(5), NOW + 900)
                .await
                .expect("rotate")
        );
        let record = store
            .agent("web-1")
            .await
            .expect("agent")
            .expect("registered");
        assert_eq!(record.public_key, key(5));
        assert_eq!(record.previous_key, Some((key(4), NOW + 900)));
        assert!(revoked_agents(&db).await.expect("revoked").is_empty());
        assert!(store.revoke_agent("web-1").await.expect("revoke"));
        assert_eq!(
            revoked_agents(&db).await.expect("revoked"),
            vec!["web-1".to_string()]
        );
        assert!(
            !rotate(&db, "web-1", &key(5), &key(6), NOW)
                .await
                .expect("rotate")
        );

        // Re-enrolling a revoked agent with a bound token: no grace for the
        // revoked key.
        let d = [4u8; 32];
        insert_token(&db, &d, Some("web-1"), NOW, NOW + 60_000)
            .await
            .expect("insert");
        assert_eq!(
            enroll(&db, &d, "web-1", &key(7), NOW, NOW + 500)
                .await
                .expect("enroll"),
            Enrolled::Done {
                previous_valid_until_ms: None
            }
        );
        let record = store
            .agent("web-1")
            .await
            .expect("agent")
            .expect("registered");
        assert!(!record.revoked);
        assert_eq!(record.previous_key, None);
        // register-agent re-keys at once, forgetting a previous key.
        assert!(
            rotate(&db, "web-1", &key(7), &key(8), NOW + 900)
                .await
                .expect("rotate")
        );
        store
            .register_agent("web-1", &key(9))
            .await
            .expect("register");
        let record = store
            .agent("web-1")
            .await
            .expect("agent")
            .expect("registered");
        assert_eq!(record.previous_key, None);

        // Revoking tokens.
        let e = [5u8; 32];
        let id = insert_token(&db, &e, None, NOW, NOW + 60_000)
            .await
            .expect("insert");
        assert!(revoke_token(&db, &id, NOW).await.expect("revoke"));
        assert!(!revoke_token(&db, &id, NOW).await.expect("revoke"), "twice");
        assert!(!revoke_token(&db, "nope", NOW).await.expect("revoke"));
        assert!(matches!(
            enroll(&db, &e, "web-4", &key(1), NOW, NOW + 10)
                .await
                .expect("enroll"),
            Enrolled::Refused(Refusal::TokenRevoked, _)
        ));
    }

    /// Two agents racing with one token: exactly one wins.
    async fn race(store: Arc<dyn Store>) {
        let db = store.db();
        let t = [6u8; 32];
        insert_token(&db, &t, None, NOW, NOW + 60_000)
            .await
            .expect("insert");
        let runs = (0..8u8).map(|i| {
            let db = db.clone();
            async move { enroll(&db, &t, &format!("race-{i}"), &[i + 10; 32], NOW, NOW).await }
        });
        let results = futures_util::future::join_all(runs).await;
        let done = results
            .iter()
            .filter(|r| matches!(r, Ok(Enrolled::Done { .. })))
            .count();
        assert_eq!(done, 1, "{results:?}");
    }

    #[tokio::test]
    async fn enrollment_store_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open("sqlite:vigil.db", dir.path(), 4).expect("open");
        suite(store.clone()).await;
        race(store).await;
    }

    #[tokio::test]
    async fn enrollment_store_on_postgres() {
        let pg = PgTestDb::create().await.expect("PostgreSQL for tests");
        let store = open(&pg.url, std::path::Path::new("."), 8).expect("open");
        suite(store.clone()).await;
        race(store).await;
        pg.drop_db().await;
    }
}
