//! Operators' web sessions: who is signed in to the dashboard, with which
//! role.
//!
//! - [`password`]: Argon2id hashing and verification; [`accounts`]: the
//!   rules for names, roles and passwords shared by the API, CLI and quick start.
//! - [`cookie`]: reading the `Cookie` header and writing `Set-Cookie`.
//! - [`Sessions`] (`sessions.rs`): creating, resolving and ending sessions
//!   (rows in the `sessions` table, see `store/users.rs`) behind a short
//!   in-memory cache, the sign-in rate limits, and pruning.
//! - [`WebUser`]: the extractor pages take; a request without a valid
//!   session is [`SignedOut`] and redirected to `/login?next=...`.
//!
//! The sign-in form itself is `http/login.rs`; API access with the session
//! cookie (and its CSRF header) is in `http/access.rs`.

pub mod accounts;
pub mod cookie;
pub mod password;
mod sessions;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;

pub use sessions::{
    Created, LoginLimit, Resolved, SessionPolicy, Sessions, default_login_limit_per_ip,
    default_login_limit_per_user, id_hash, now_ms,
};

use super::AppState;
use super::access::Scope;

/// What a signed-in operator may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also acknowledge, silence, start and stop maintenance.
    Operator,
    /// Also manage users, tokens and configuration.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn can_operate(self) -> bool {
        self >= Role::Operator
    }

    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }

    /// The role a stored name stands for.
    pub fn of_name(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The API scope a session of this role has: viewer reads, operator
    /// writes (ack, silences, maintenance), admin administers.
    pub fn scope(self) -> Scope {
        match self {
            Role::Viewer => Scope::Read,
            Role::Operator => Scope::Write,
            Role::Admin => Scope::Admin,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::of_name(s).ok_or_else(|| format!("unknown role {s:?}: use viewer, operator or admin"))
    }
}

/// The signed-in operator of a request, from its session cookie.
#[derive(Debug, Clone)]
pub struct WebUser {
    pub name: String,
    pub role: Role,
    /// Sent back with every state-changing request (form field
    /// `csrf_token` or header `X-CSRF-Token`).
    pub csrf_token: String,
}

impl WebUser {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        constant_time_eq(self.csrf_token.as_bytes(), presented.as_bytes())
    }
}

/// A request without a valid session: pages redirect to the login page.
#[derive(Debug)]
pub struct SignedOut {
    /// Where to return after signing in (path and query of the request).
    pub next: String,
}

impl IntoResponse for SignedOut {
    fn into_response(self) -> Response {
        let next: String = form_urlencoded::byte_serialize(self.next.as_bytes()).collect();
        Redirect::to(&format!("/login?next={next}")).into_response()
    }
}

/// Why a page request has no [`WebUser`]: signed out (redirect to the
/// login page), or the sessions cannot be read (503 page: the database is
/// down and this process has not seen the session before).
#[derive(Debug)]
pub enum NoUser {
    SignedOut(SignedOut),
    Unavailable(String),
}

impl IntoResponse for NoUser {
    fn into_response(self) -> Response {
        match self {
            NoUser::SignedOut(s) => s.into_response(),
            NoUser::Unavailable(detail) => {
                crate::http::web::PageError::Unavailable(detail).into_response()
            }
        }
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = NoUser;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NoUser> {
        let signed_out = || SignedOut {
            next: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        };
        let Some(sessions) = parts.extensions.get::<Arc<Sessions>>().cloned() else {
            return Err(NoUser::SignedOut(signed_out()));
        };
        let Some(id) = cookie::get(&parts.headers, cookie::SESSION) else {
            return Err(NoUser::SignedOut(signed_out()));
        };
        let resolved = resolve(&sessions, state, id).await;
        match resolved {
            Ok(Some(session)) => Ok(session.user()),
            Ok(None) => Err(NoUser::SignedOut(signed_out())),
            // Not "signed out": the login page could not sign anyone in
            // either. Say what is wrong instead.
            Err(e) => Err(NoUser::Unavailable(format!(
                "cannot look up a session: {e}"
            ))),
        }
    }
}

/// The session `id` names: from the database, or, while the storage watch
/// says it is down, from what this process last read (so the dashboard
/// answers at once from memory instead of waiting on the pool's timeout).
/// `Err` when the sessions cannot be read at all.
pub async fn resolve(
    sessions: &Sessions,
    state: &AppState,
    id: &str,
) -> Result<Option<Resolved>, String> {
    if state.database_down() {
        return sessions
            .resolve_cached(id)
            .map(Some)
            .ok_or_else(|| "the database is down and the session is not cached".to_string());
    }
    sessions
        .resolve(&state.store.db(), id)
        .await
        .map_err(|e| e.to_string())
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_order_and_map_to_scopes() {
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        let err = "root".parse::<Role>().expect_err("unknown");
        assert!(err.contains("viewer, operator or admin"), "{err}");
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::Viewer.scope(), Scope::Read);
        assert_eq!(Role::Operator.scope(), Scope::Write);
        assert_eq!(Role::Admin.scope(), Scope::Admin);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
