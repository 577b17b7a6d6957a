//! Account rules shared by the users API, the CLI (`create-user`,
//! `reset-password`) and quick start: valid names, roles and passwords,
//! hashing before anything is stored.

use super::Role;
use super::password::{self, PasswordError};
use crate::store::users::{self, Changed, UserChange};
use crate::store::{Db, StoreError};

/// Longest user name.
pub const MAX_NAME_CHARS: usize = 64;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The request is invalid (the reason is for the caller).
    #[error("{0}")]
    Invalid(String),
    #[error("a user named {0:?} already exists")]
    Exists(String),
    #[error("no user named {0:?}")]
    NotFound(String),
    #[error("{0:?} is the last enabled admin; make another user admin first")]
    LastAdmin(String),
    #[error("{0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PasswordError> for AccountError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Hash(m) => AccountError::Hash(m),
            other => AccountError::Invalid(other.to_string()),
        }
    }
}

/// Checks a user name: 1 to 64 of `A-Z a-z 0-9 . _ @ -`, starting with a
/// letter or digit (names appear in logs, URLs and audit fields).
pub fn validate_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
        && name != crate::http::access::ANONYMOUS;
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "invalid user name {name:?}: 1 to {MAX_NAME_CHARS} letters, digits, '.', '_', '@' or '-', \
             starting with a letter or digit (\"anonymous\" is reserved)"
        )))
    }
}

/// Parses a role name with a clear error.
pub fn parse_role(role: &str) -> Result<Role, AccountError> {
    role.parse().map_err(AccountError::Invalid)
}

/// Creates a user after checking the name, role and password.
pub async fn create(db: &Db, name: &str, role: Role, password: &str) -> Result<(), AccountError> {
    validate_name(name)?;
    password::validate(password)?;
    let hash = password::hash(password.to_string()).await?;
    if users::insert_user(db, name, role.as_str(), &hash, super::now_ms()).await? {
        Ok(())
    } else {
        Err(AccountError::Exists(name.to_string()))
    }
}

/// Sets a new password (which ends the user's sessions).
pub async fn set_password(db: &Db, name: &str, password: &str) -> Result<(), AccountError> {
    password::validate(password)?;
    let hash = password::hash(password.to_string()).await?;
    let change = UserChange {
        password_hash: Some(&hash),
        ..UserChange::default()
    };
    changed(
        name,
        users::update_user(db, name, &change, super::now_ms()).await?,
    )
}

/// Maps a store [`Changed`] to an error for `name`.
pub fn changed(name: &str, c: Changed) -> Result<(), AccountError> {
    match c {
        Changed::Done => Ok(()),
        Changed::NotFound => Err(AccountError::NotFound(name.to_string())),
        Changed::LastAdmin => Err(AccountError::LastAdmin(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["admin", "ann.lee", "ops-1", "a@example.com", "A_b"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "anonymous", "é", &"a".repeat(65), "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
