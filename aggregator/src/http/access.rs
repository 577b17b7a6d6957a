//! Who may call what: API token scopes as axum extractors.
//!
//! A token's scope is one of `read` < `write` < `admin`; each includes the
//! ones before it. A handler states what it needs by taking [`ReadAccess`],
//! [`WriteAccess`] or [`AdminAccess`] as an argument.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
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

async fn require(
    parts: &mut Parts,
    state: &AppState,
    needed: Scope,
) -> Result<TokenInfo, ApiError> {
    let Caller(info) = Caller::from_request_parts(parts, state).await?;
    match Scope::of_role(&info.role) {
        Some(have) if have >= needed => Ok(info),
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
    /// A caller whose token may read.
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
