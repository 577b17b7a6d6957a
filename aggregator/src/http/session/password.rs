//! Passwords: Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes,
//! OWASP's recommendation) stored as PHC strings, hashed and verified on the
//! blocking pool so a login never stalls the async workers.
//!
//! Verifying an unknown user's password runs against a dummy hash, so a
//! wrong name and a wrong password take the same time and the same path.

use std::sync::LazyLock;

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (hashing cost must stay bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password cannot be used or hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Checks a new password against the rules above.
pub fn validate(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        Err(PasswordError::TooLong)
    } else if password.chars().count() < MIN_PASSWORD_CHARS {
        Err(PasswordError::TooShort)
    } else {
        Ok(())
    }
}

/// Random bytes from the system generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], PasswordError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| PasswordError::Hash("the system random generator failed".into()))?;
    Ok(out)
}

/// A random password for quick start and the CLI: 20 characters from an
/// alphabet without look-alikes (about 115 bits).
pub fn generate() -> Result<String, PasswordError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = random_bytes::<20>()?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_now(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a random password, verified against when the user is unknown.
static DUMMY: LazyLock<Option<String>> =
    LazyLock::new(|| generate().ok().and_then(|p| hash_now(&p).ok()));

/// Hashes `password` (Argon2id PHC string) on the blocking pool.
pub async fn hash(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// Whether `password` matches `phc`; with `None` (no such user) the same
/// work is done against a dummy hash and the answer is false.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_now(&password, &phc),
        None => {
            if let Some(dummy) = DUMMY.as_deref() {
                let _ = verify_now(&password, dummy);
            }
            false
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery".into()).await.expect("hash");
        let b = hash("correct horse battery".into()).await.expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse battery".into(), Some(a.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(a)).await);
        assert!(!verify("correct horse battery".into(), None).await);
        assert!(!verify("x".into(), Some("not a phc string".into())).await);
    }

    #[test]
    fn rules_and_generated_passwords() {
        assert!(matches!(validate("short"), Err(PasswordError::TooShort)));
        assert!(matches!(
            validate(&"x".repeat(2000)),
            Err(PasswordError::TooLong)
        ));
        assert!(validate("twelve chars").is_ok());
        let p = generate().expect("generate");
        assert_eq!(p.len(), 20);
        assert!(validate(&p).is_ok());
        assert_ne!(p, generate().expect("generate"));
    }
}
