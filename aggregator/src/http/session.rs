//! Operators' web sessions: who is signed in to the dashboard, with which
//! role. (Interface only: every request is treated as signed out until the
//! session store lands.)

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;

use super::AppState;

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

impl FromRequestParts<AppState> for WebUser {
    type Rejection = SignedOut;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, SignedOut> {
        let next = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        Err(SignedOut { next })
    }
}
