//! Who may call what, and how often.
//!
//! - Scopes: a token's scope is one of `read` < `write` < `admin`; each
//!   includes the ones before it. A handler states what it needs by taking
//!   [`ReadAccess`], [`WriteAccess`] or [`AdminAccess`] as an argument.
//! - [`guard`], a middleware on every `/api` and `/prometheus` route, runs
//!   before the handlers: it applies the per-IP rate limit (before touching
//!   the database, so token guessing is throttled too), resolves the bearer
//!   token once (401 for a malformed, unknown or revoked one), then applies
//!   the per-token rate limit. Over a limit the answer is 429 with
//!   `Retry-After`. `/healthz`, `/readyz` and `/metrics` are never guarded.
//! - Session cookies: a request without a bearer token but with a valid
//!   dashboard session cookie (`vigil_session`, see `http/session/`) is
//!   authenticated as that user, with the scope of the user's role (viewer:
//!   read, operator: write, admin: admin). Every such request other than
//!   GET/HEAD/OPTIONS must carry the session's CSRF token in `X-CSRF-Token`
//!   (403 otherwise). An invalid or expired cookie counts as no credentials.
//! - Anonymous reads: with `[http] anonymous_read = true` a request *without*
//!   a token passes read-scope routes (a wrong token is still 401).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

use super::error::ApiError;
use super::session::{Sessions, WebUser, cookie};
use super::{AppState, Caller};
use crate::store::TokenInfo;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    /// The scope a stored role names; unknown roles get nothing.
    pub fn of_role(role: &str) -> Option<Scope> {
        match role {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::of_role(s).ok_or_else(|| format!("unknown scope {s:?}: use read, write or admin"))
    }
}

/// A token bucket: `per_second` requests per second on average, up to
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second; 0 turns the limit off.
    pub per_second: u32,
    /// Requests allowed at once before the rate applies (at least 1).
    pub burst: NonZeroU32,
}

impl RateLimit {
    fn quota(self) -> Option<Quota> {
        NonZeroU32::new(self.per_second).map(|rate| Quota::per_second(rate).allow_burst(self.burst))
    }
}

/// Default per-token limit: generous for Grafana (a dashboard refresh sends
/// one query per panel at once) while stopping a runaway script.
pub fn default_rate_limit_per_token() -> RateLimit {
    RateLimit {
        per_second: 50,
        burst: NonZeroU32::new(200).unwrap_or(NonZeroU32::MIN),
    }
}

/// Default per-IP limit (all requests from one address, with or without a
/// token): above the per-token one so several tokens behind one NAT work.
pub fn default_rate_limit_per_ip() -> RateLimit {
    RateLimit {
        per_second: 100,
        burst: NonZeroU32::new(400).unwrap_or(NonZeroU32::MIN),
    }
}

/// The `[http]` settings [`guard`] enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Requests without a token may use read-scope routes.
    pub anonymous_read: bool,
    pub per_token: Option<RateLimit>,
    pub per_ip: Option<RateLimit>,
}

impl Default for AccessPolicy {
    /// Tokens required, no rate limits (what [`super::app`] uses for tests).
    fn default() -> Self {
        AccessPolicy {
            anonymous_read: false,
            per_token: None,
            per_ip: None,
        }
    }
}

/// Keyed limiters beyond this many keys are pruned of idle keys, so a flood
/// from many addresses cannot grow memory without bound.
const PRUNE_ABOVE_KEYS: usize = 10_000;

/// The state [`guard`] keeps: the policy and one keyed limiter per kind.
pub struct Guard {
    anonymous_read: bool,
    per_token: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// The database's last answer for each token seen (by hash), used only
    /// while the database cannot be read: API clients (Grafana) keep
    /// reading from memory through an outage. While it can be read, every
    /// request asks it, so a revocation takes effect at once.
    known_tokens: std::sync::Mutex<std::collections::HashMap<[u8; 32], TokenInfo>>,
}

/// Above this many remembered tokens the memory is emptied, not grown.
const KNOWN_TOKENS_MAX: usize = 10_000;

impl Guard {
    pub fn new(policy: &AccessPolicy) -> Guard {
        // governor's keyed GCRA limiters: lock-free per key, exact
        // Retry-After from the bucket state, and `retain_recent` to prune.
        Guard {
            anonymous_read: policy.anonymous_read,
            per_token: policy
                .per_token
                .and_then(RateLimit::quota)
                .map(governor::RateLimiter::keyed),
            per_ip: policy
                .per_ip
                .and_then(RateLimit::quota)
                .map(governor::RateLimiter::keyed),
            known_tokens: Default::default(),
        }
    }

    /// `token`'s grant: from the database, or while it is down (or fails),
    /// the last answer it gave for that token.
    async fn token(&self, state: &AppState, token: &str) -> Result<TokenInfo, ApiError> {
        let hash = crate::auth::token_hash(token);
        let error = match state.database_down() {
            true => "the database is down".to_string(),
            false => match state.store.token(&hash).await {
                Ok(Some(info)) => {
                    if let Ok(mut known) = self.known_tokens.lock() {
                        if known.len() >= KNOWN_TOKENS_MAX {
                            known.clear();
                        }
                        known.insert(hash, info.clone());
                    }
                    return Ok(info);
                }
                Ok(None) => {
                    if let Ok(mut known) = self.known_tokens.lock() {
                        known.remove(&hash);
                    }
                    return Err(ApiError::Unauthorized("invalid or revoked token"));
                }
                Err(e) => e.to_string(),
            },
        };
        let known = self
            .known_tokens
            .lock()
            .ok()
            .and_then(|k| k.get(&hash).cloned());
        known.ok_or(ApiError::Unavailable(error))
    }
}

/// Whether [`guard`] applies to `path`.
fn guarded(path: &str) -> bool {
    path == "/api"
        || path.starts_with("/api/")
        || path == "/prometheus"
        || path.starts_with("/prometheus/")
}

fn check<K>(limiter: &Option<DefaultKeyedRateLimiter<K>>, key: &K) -> Result<(), ApiError>
where
    K: Clone + std::hash::Hash + Eq,
{
    over_limit(limiter, key).map_err(|secs| ApiError::RateLimited {
        retry_after_secs: secs,
    })
}

/// Counts one request for `key` (no limiter: no limit); `Err(seconds)` to
/// wait when over the limit, rounded up (retrying after a truncated delay
/// would be refused again). Idle keys are pruned once there are many.
pub(crate) fn over_limit<K>(
    limiter: &Option<DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), u64>
where
    K: Clone + std::hash::Hash + Eq,
{
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if limiter.len() > PRUNE_ABOVE_KEYS {
        limiter.retain_recent();
    }
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    })
}

/// The token a request resolved to, left in its extensions by [`guard`].
#[derive(Debug, Clone)]
pub(crate) struct Authenticated(pub(crate) TokenInfo);

/// The dashboard user a request was authenticated as by its session cookie,
/// left in its extensions by [`guard`].
#[derive(Debug, Clone)]
pub struct CookieSession(pub WebUser);

/// The header that carries the session's CSRF token on API writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Left in the extensions by [`guard`] when anonymous reads are open.
#[derive(Debug, Clone, Copy)]
struct AnonymousRead;

/// The bearer token of a request: `Ok(None)` without an Authorization header.
pub(crate) fn bearer(parts_headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(header) = parts_headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or(ApiError::Unauthorized(
            "malformed Authorization header: expected Bearer <token>",
        ))
}

/// Looks a presented token up; 401 if it is unknown or revoked.
pub(crate) async fn resolve(state: &AppState, token: &str) -> Result<TokenInfo, ApiError> {
    match state.store.token(&crate::auth::token_hash(token)).await {
        Ok(Some(info)) => Ok(info),
        Ok(None) => Err(ApiError::Unauthorized("invalid or revoked token")),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// The middleware described in the module docs.
pub async fn guard(
    State((state, guard)): State<(AppState, Arc<Guard>)>,
    mut request: Request,
    next: Next,
) -> Response {
    if !guarded(request.uri().path()) {
        return next.run(request).await;
    }
    match admit(&state, &guard, &mut request).await {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn admit(state: &AppState, guard: &Guard, request: &mut Request) -> Result<(), ApiError> {
    // Without connection info (in-process tests) every caller shares one
    // address, which errs on the side of limiting.
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    check(&guard.per_ip, &ip)?;
    if let Some(token) = bearer(request.headers())? {
        let info = guard.token(state, token).await?;
        check(&guard.per_token, &info.name)?;
        request.extensions_mut().insert(Authenticated(info));
    } else if let Some(user) = cookie_user(
        state,
        request.extensions().get::<Arc<Sessions>>().cloned(),
        cookie::get(request.headers(), cookie::SESSION).map(str::to_string),
    )
    .await?
    {
        let safe = matches!(
            *request.method(),
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        );
        let presented = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !safe && !user.csrf_ok(presented) {
            return Err(ApiError::Forbidden(
                "a request signed in by the session cookie must send the session's CSRF token \
                 in the X-CSRF-Token header (GET /api/v1/session returns it)"
                    .into(),
            ));
        }
        check(&guard.per_token, &format!("user:{}", user.name))?;
        let info = TokenInfo {
            name: user.name.clone(),
            role: user.role.scope().as_str().into(),
        };
        request.extensions_mut().insert(Authenticated(info));
        request.extensions_mut().insert(CookieSession(user));
    } else if guard.anonymous_read {
        request.extensions_mut().insert(AnonymousRead);
    }
    Ok(())
}

/// The user a request's session cookie names, if it names a valid session.
async fn cookie_user(
    state: &AppState,
    sessions: Option<Arc<Sessions>>,
    id: Option<String>,
) -> Result<Option<WebUser>, ApiError> {
    let (Some(sessions), Some(id)) = (sessions, id) else {
        return Ok(None);
    };
    match super::session::resolve(&sessions, state, &id).await {
        Ok(session) => Ok(session.map(|s| s.user())),
        Err(e) => Err(ApiError::Unavailable(e)),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(Authenticated(info)) = parts.extensions.get::<Authenticated>() {
            return Ok(Caller(info.clone()));
        }
        match bearer(&parts.headers)? {
            Some(token) => resolve(state, token).await.map(Caller),
            None => Err(ApiError::Unauthorized(
                "missing bearer token: send Authorization: Bearer <token> (quickstart writes one to admin.token)",
            )),
        }
    }
}

/// The identity anonymous reads run under.
pub const ANONYMOUS: &str = "anonymous";

async fn require(
    parts: &mut Parts,
    state: &AppState,
    needed: Scope,
) -> Result<TokenInfo, ApiError> {
    if needed == Scope::Read
        && parts.extensions.get::<AnonymousRead>().is_some()
        && !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
    {
        return Ok(TokenInfo {
            name: ANONYMOUS.into(),
            role: Scope::Read.as_str().into(),
        });
    }
    let Caller(info) = Caller::from_request_parts(parts, state).await?;
    match Scope::of_role(&info.role) {
        Some(have) if have >= needed => Ok(info),
        _ if parts.extensions.get::<CookieSession>().is_some() => {
            let user = parts
                .extensions
                .get::<CookieSession>()
                .map(|c| c.0.clone())
                .ok_or(ApiError::Unauthorized("not signed in"))?;
            Err(ApiError::Forbidden(format!(
                "user {:?} has role {:?}; this needs {:?}",
                user.name,
                user.role.as_str(),
                match needed {
                    Scope::Read => "viewer",
                    Scope::Write => "operator",
                    Scope::Admin => "admin",
                }
            )))
        }
        _ => Err(ApiError::Forbidden(format!(
            "token {:?} has scope {:?}; this needs {:?}",
            info.name,
            info.role,
            needed.as_str()
        ))),
    }
}

macro_rules! scoped_extractor {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        pub struct $name(pub TokenInfo);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                require(parts, state, $scope).await.map($name)
            }
        }
    };
}

scoped_extractor!(
    /// A caller whose token may read (or anyone, when anonymous reads are open).
    ReadAccess,
    Scope::Read
);
scoped_extractor!(
    /// A caller whose token may write data.
    WriteAccess,
    Scope::Write
);
scoped_extractor!(
    /// A caller whose token may administer.
    AdminAccess,
    Scope::Admin
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_order() {
        assert_eq!("write".parse::<Scope>(), Ok(Scope::Write));
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
        let err = "root".parse::<Scope>().expect_err("unknown");
        assert!(err.contains("read, write or admin"), "{err}");
    }

    #[test]
    fn guarded_paths() {
        for p in [
            "/api/v1/hosts",
            "/api/openapi.json",
            "/prometheus/api/v1/query",
        ] {
            assert!(guarded(p), "{p}");
        }
        for p in ["/healthz", "/readyz", "/metrics", "/apis", "/"] {
            assert!(!guarded(p), "{p}");
        }
    }

    #[test]
    fn a_zero_rate_turns_the_limit_off() {
        let off = RateLimit {
            per_second: 0,
            burst: NonZeroU32::MIN,
        };
        assert!(off.quota().is_none());
        assert!(default_rate_limit_per_token().quota().is_some());
    }
}
