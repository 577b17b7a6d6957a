//! Sessions behind a short cache, plus the sign-in rate limits.
//!
//! A session id is 32 random bytes (hex in the cookie); only its SHA-256 is
//! stored. Resolving a cookie costs one indexed read at most every
//! [`CACHE_TTL`] per session; activity is written back (for the idle
//! timeout) at most every [`TOUCH_EVERY`]. Ending a session, or changing
//! or disabling a user through this aggregator, drops the cached entries at
//! once; changes made elsewhere (another aggregator, the CLI) are seen
//! within [`CACHE_TTL`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

use super::password::{PasswordError, random_bytes};
use super::{Role, WebUser, hex};
use crate::http::access::over_limit;
use crate::store::users::{self, SessionRecord};
use crate::store::{Db, StoreError};

/// How long a resolved session is trusted without asking the database.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// How often a session's `last_seen` is written back.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// How often expired sessions are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Above this many cached sessions the cache is emptied rather than grown.
const CACHE_MAX: usize = 10_000;

/// Sign-in attempts allowed: `per_minute` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginLimit {
    /// Sustained attempts per minute; 0 turns the limit off.
    pub per_minute: u32,
    /// Attempts allowed at once before the rate applies (at least 1).
    pub burst: NonZeroU32,
}

impl LoginLimit {
    fn quota(self) -> Option<Quota> {
        NonZeroU32::new(self.per_minute).map(|n| Quota::per_minute(n).allow_burst(self.burst))
    }
}

/// Default per-address sign-in limit: enough for an office behind one NAT.
pub fn default_login_limit_per_ip() -> LoginLimit {
    LoginLimit {
        per_minute: 20,
        burst: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
    }
}

/// Default per-user-name sign-in limit: slows password guessing against
/// one account from many addresses.
pub fn default_login_limit_per_user() -> LoginLimit {
    LoginLimit {
        per_minute: 6,
        burst: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
    }
}

/// The `[http]` session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not.
    pub max_age: Duration,
    /// Mark cookies `Secure` (always true behind the TLS listener).
    pub secure_cookies: bool,
    pub login_per_ip: Option<LoginLimit>,
    pub login_per_user: Option<LoginLimit>,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_timeout: Duration::from_secs(12 * 3600),
            max_age: Duration::from_secs(7 * 86_400),
            secure_cookies: false,
            login_per_ip: Some(default_login_limit_per_ip()),
            login_per_user: Some(default_login_limit_per_user()),
        }
    }
}

/// A valid session.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub id_sha256: [u8; 32],
    pub record: SessionRecord,
    pub role: Role,
}

impl Resolved {
    pub fn user(&self) -> WebUser {
        WebUser {
            name: self.record.user_name.clone(),
            role: self.role,
            csrf_token: self.record.csrf_token.clone(),
        }
    }
}

/// A new session: the id for the cookie and its CSRF token.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub csrf_token: String,
}

/// Sessions and sign-in limits of one aggregator.
pub struct Sessions {
    policy: SessionPolicy,
    cache: Mutex<HashMap<[u8; 32], (Instant, SessionRecord)>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Option<DefaultKeyedRateLimiter<String>>,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The SHA-256 a session id is stored under, if `id` looks like one.
pub fn id_hash(id: &str) -> Option<[u8; 32]> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(crate::auth::token_hash(id))
}

impl Sessions {
    pub fn new(policy: SessionPolicy) -> Sessions {
        Sessions {
            per_ip: policy
                .login_per_ip
                .and_then(LoginLimit::quota)
                .map(governor::RateLimiter::keyed),
            per_user: policy
                .login_per_user
                .and_then(LoginLimit::quota)
                .map(governor::RateLimiter::keyed),
            policy,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// Counts a sign-in attempt from `ip` for `user`; `Err(seconds)` when
    /// either is over its limit.
    pub fn check_login(&self, ip: IpAddr, user: &str) -> Result<(), u64> {
        over_limit(&self.per_ip, &ip)?;
        over_limit(&self.per_user, &user.to_lowercase())
    }

    /// Starts a session for `user` with a fresh random id (never one the
    /// browser offered: no session fixation).
    pub async fn create(&self, db: &Db, user: &str) -> Result<Created, CreateError> {
        let id = hex(&random_bytes::<32>()?);
        let csrf_token = hex(&random_bytes::<32>()?);
        let now = now_ms();
        let hash = crate::auth::token_hash(&id);
        users::insert_session(
            db,
            &hash,
            user,
            &csrf_token,
            now,
            now.saturating_add(ms(self.policy.max_age)),
        )
        .await?;
        Ok(Created { id, csrf_token })
    }

    /// Like [`Sessions::resolve`] without the database, for when it is
    /// known to be down: the session as this process last read it, if it
    /// has not expired since. `None` when this process has not seen it.
    pub fn resolve_cached(&self, id: &str) -> Option<Resolved> {
        let hash = id_hash(id)?;
        let record = self.cache.lock().ok()?.get(&hash)?.1.clone();
        let now = now_ms();
        let expired = now >= record.expires_at_ms
            || now.saturating_sub(record.last_seen_ms) >= ms(self.policy.idle_timeout);
        if expired || record.disabled {
            return None;
        }
        let role = Role::of_name(&record.role)?;
        Some(Resolved {
            id_sha256: hash,
            record,
            role,
        })
    }

    /// The valid session a cookie value names; `None` for a malformed,
    /// unknown, expired or idle session, or a disabled user. An expired
    /// session found here is deleted.
    pub async fn resolve(&self, db: &Db, id: &str) -> Result<Option<Resolved>, StoreError> {
        let Some(hash) = id_hash(id) else {
            return Ok(None);
        };
        let cached = self.cache.lock().ok().and_then(|c| c.get(&hash).cloned());
        let fresh = cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, r)| r.clone());
        let mut record = match fresh {
            Some(r) => r,
            None => match users::session(db, &hash).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.forget(&hash);
                    return Ok(None);
                }
                // The database is unreachable: a session this process has
                // already checked stays valid by its own expiry, so the
                // dashboard keeps working from memory through an outage.
                Err(e) => match cached {
                    Some((_, r)) => {
                        tracing::debug!(error = %e, "sessions unreadable; using the cached session");
                        r
                    }
                    None => return Err(e),
                },
            },
        };
        let now = now_ms();
        let expired = now >= record.expires_at_ms
            || now.saturating_sub(record.last_seen_ms) >= ms(self.policy.idle_timeout);
        let role = Role::of_name(&record.role);
        if expired || record.disabled || role.is_none() {
            self.forget(&hash);
            if expired {
                users::delete_session(db, &hash).await?;
            }
            return Ok(None);
        }
        if now.saturating_sub(record.last_seen_ms) >= ms(TOUCH_EVERY) {
            // Activity is only for the idle timeout: a failed write is
            // retried at the next request, not a reason to refuse this one.
            match users::touch_session(db, &hash, now).await {
                Ok(_) => record.last_seen_ms = now,
                Err(e) => tracing::debug!(error = %e, "session activity not recorded"),
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (Instant::now(), record.clone()));
        }
        Ok(role.map(|role| Resolved {
            id_sha256: hash,
            record,
            role,
        }))
    }

    /// Ends one session (sign-out).
    pub async fn end(&self, db: &Db, id_sha256: &[u8; 32]) -> Result<(), StoreError> {
        self.forget(id_sha256);
        users::delete_session(db, id_sha256).await
    }

    /// Drops every cached session of `user` (after a change to the user).
    pub fn forget_user(&self, user: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (_, r)| r.user_name != user);
        }
    }

    fn forget(&self, hash: &[u8; 32]) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(hash);
        }
    }

    /// Deletes expired and idle sessions every [`PRUNE_EVERY`].
    pub fn spawn_pruner(
        self: std::sync::Arc<Self>,
        db: Db,
        ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tick.tick().await;
                if !ready.load(std::sync::atomic::Ordering::Acquire) {
                    continue;
                }
                if let Err(e) = self.prune(&db).await {
                    tracing::warn!(error = %e, "pruning expired sessions failed; retrying later");
                }
            }
        })
    }

    /// Deletes expired and idle sessions; returns how many.
    pub async fn prune(&self, db: &Db) -> Result<u64, StoreError> {
        let now = now_ms();
        users::prune_sessions(db, now, now.saturating_sub(ms(self.policy.idle_timeout))).await
    }
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Random(#[from] PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_must_look_like_ids() {
        assert!(id_hash(&"a".repeat(64)).is_some());
        assert!(id_hash(&"a".repeat(63)).is_none());
        assert!(id_hash(&"g".repeat(64)).is_none());
    }

    #[test]
    fn login_limits_refuse_after_the_burst() {
        let sessions = Sessions::new(SessionPolicy {
            login_per_ip: None,
            login_per_user: Some(LoginLimit {
                per_minute: 1,
                burst: NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
            }),
            ..SessionPolicy::default()
        });
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert!(sessions.check_login(ip, "ann").is_ok());
        assert!(sessions.check_login(ip, "Ann").is_ok());
        let wait = sessions.check_login(ip, "ann").expect_err("limited");
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(sessions.check_login(ip, "bob").is_ok());
    }
}
