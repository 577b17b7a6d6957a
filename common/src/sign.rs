//! Ed25519 signing of encoded batches, and the key formats on disk.
//!
//! Signing keys are stored as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
//! Public keys are exchanged as 64 lowercase hex characters, the form
//! `vigil-certs` prints and `vigil-aggregator register-agent` takes.

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use thiserror::Error;

/// Key loading and parsing failures.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    TooOpen(#[from] crate::keyfile::TooOpen),
    #[error("{path} is not a PKCS#8 PEM Ed25519 private key")]
    BadPrivateKey { path: String },
    #[error("public key must be 64 hex characters (32 bytes), got {0:?}")]
    BadPublicKey(String),
    #[error("cannot encode the private key")]
    Encode,
    #[error("the system random number generator failed")]
    Random,
}

/// Generates a fresh signing key from the operating system's CSPRNG.
pub fn generate_signing_key() -> Result<SigningKey, KeyError> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| KeyError::Random)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// PKCS#8 PEM text of a signing key.
pub fn signing_key_to_pem(key: &SigningKey) -> Result<String, KeyError> {
    key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|_| KeyError::Encode)
}

/// Reads a PKCS#8 PEM signing key file; refuses a file other users can
/// read ([`crate::keyfile`]).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    crate::keyfile::check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|_| KeyError::BadPrivateKey {
        path: path.display().to_string(),
    })
}

/// Hex text of a public key.
pub fn public_key_to_hex(key: &VerifyingKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex characters into a public key (surrounding whitespace allowed).
pub fn public_key_from_hex(text: &str) -> Result<VerifyingKey, KeyError> {
    let bad = || KeyError::BadPublicKey(text.to_string());
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// Signs `message` (the encoded batch bytes).
pub fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    key.sign(message).to_bytes().to_vec()
}

/// Verifies `signature` over `message` with strict (non-malleable) rules.
pub fn verify(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = generate_signing_key().expect("key");
        let other = generate_signing_key().expect("key");
        let sig = sign(&key, b"batch bytes");
        assert!(verify(&key.verifying_key(), b"batch bytes", &sig));
        assert!(!verify(&key.verifying_key(), b"batch bytez", &sig));
        assert!(!verify(&other.verifying_key(), b"batch bytes", &sig));
        assert!(!verify(&key.verifying_key(), b"batch bytes", &sig[..10]));
    }

    fn private(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn pem_and_hex_round_trip() {
        let key = generate_signing_key().expect("key");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sign.key");
        std::fs::write(&path, signing_key_to_pem(&key).expect("pem")).expect("write");
        // Written with the umask's mode (0644): refused until it is private.
        let err = load_signing_key(&path).expect_err("world-readable key");
        assert!(matches!(err, KeyError::TooOpen(_)), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        private(&path);
        let loaded = load_signing_key(&path).expect("load");
        assert_eq!(loaded.to_bytes(), key.to_bytes());

        let hex = public_key_to_hex(&key.verifying_key());
        assert_eq!(hex.len(), 64);
        assert_eq!(
            public_key_from_hex(&format!(" {hex}\n")).expect("parse"),
            key.verifying_key()
        );
        assert!(public_key_from_hex("abc").is_err());
        assert!(public_key_from_hex(&"zz".repeat(32)).is_err());
        assert!(public_key_from_hex(&"é".repeat(32)).is_err());
    }

    #[test]
    fn bad_key_files_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.key");
        std::fs::write(&path, "not a key").expect("write");
        private(&path);
        assert!(matches!(
            load_signing_key(&path),
            Err(KeyError::BadPrivateKey { .. })
        ));
        assert!(matches!(
            load_signing_key(&dir.path().join("missing")),
            Err(KeyError::Read { .. })
        ));
    }
}
