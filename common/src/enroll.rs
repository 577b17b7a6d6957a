//! Enrollment and key rotation: the second protocol on the aggregator's QUIC
//! port, told apart by its ALPN id ([`ENROLL_ALPN`]).
//!
//! One connection carries one bidirectional stream: the agent sends one
//! frame with an [`EnrollRequest`], the aggregator answers with one
//! [`EnrollReply`] and closes.
//!
//! - **Enroll** (no client certificate yet): a one-time enrollment token, a
//!   PKCS#10 CSR for the agent's TLS key and the agent's Ed25519 public key,
//!   all generated on the agent. The agent must have verified the
//!   aggregator's certificate first, against a CA file or a pinned CA
//!   fingerprint ([`client_config`]), so a token is never sent to an impostor.
//! - **Rotate** (over mutual TLS with the agent's current certificate): a new
//!   CSR and a new public key, plus a signature with the *current* signing key
//!   over [`rotation_message`], so both of the agent's secrets vouch for it.
//!
//! The reply carries the signed certificate and the CA certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::tls::{TlsError, TlsMaterial, provider};
use crate::wire::{WireError, decode, encode};

/// ALPN id of enrollment and rotation connections.
pub const ENROLL_ALPN: &[u8] = b"vigil-enroll/1";

/// Largest enrollment request or reply frame.
pub const MAX_ENROLL_FRAME: usize = 64 * 1024;

/// What an agent asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollRequest {
    /// First enrollment with a one-time token.
    Enroll {
        token: String,
        /// The id the agent asks for; `None`: the token's host name, else `hostname`.
        agent_id: Option<String>,
        /// The machine's host name (a default for the agent id).
        hostname: String,
        /// PEM PKCS#10 request for the agent's TLS key.
        csr_pem: String,
        /// The agent's Ed25519 batch-signing public key.
        signing_key: [u8; 32],
    },
    /// A new TLS certificate and signing key for an enrolled agent.
    Rotate {
        csr_pem: String,
        signing_key: [u8; 32],
        /// Ed25519 signature with the current signing key over
        /// [`rotation_message`].
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
}

/// What the aggregator answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollReply {
    Enrolled {
        agent_id: String,
        /// The agent's new client certificate (PEM).
        cert_pem: String,
        /// The Vigil CA certificate (PEM).
        ca_pem: String,
        /// When re-keying: until when batches signed with the previous key
        /// are still accepted (ms since the epoch).
        previous_key_valid_until_ms: Option<i64>,
    },
    Refused {
        code: Refusal,
        message: String,
    },
}

/// Why an enrollment or rotation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// No such token.
    UnknownToken,
    /// The token was used already (a token works once).
    TokenUsed,
    TokenExpired,
    TokenRevoked,
    /// The agent id is registered already and the token is not bound to it.
    AgentIdTaken,
    /// The token is bound to another agent id.
    AgentIdMismatch,
    /// A malformed request, CSR or agent id.
    BadRequest,
    /// The agent is revoked (rotation).
    Revoked,
    /// The agent is not registered, or the proof does not verify (rotation).
    NotAuthorized,
    /// The aggregator cannot serve this right now (storage down, busy).
    Unavailable,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownToken => "unknown_token",
            Refusal::TokenUsed => "token_used",
            Refusal::TokenExpired => "token_expired",
            Refusal::TokenRevoked => "token_revoked",
            Refusal::AgentIdTaken => "agent_id_taken",
            Refusal::AgentIdMismatch => "agent_id_mismatch",
            Refusal::BadRequest => "bad_request",
            Refusal::Revoked => "revoked",
            Refusal::NotAuthorized => "not_authorized",
            Refusal::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EnrollRequest {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

impl EnrollReply {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

/// The bytes a rotation's proof signs: a domain tag, the agent id, the new
/// public key and the CSR, so a proof cannot be replayed for another key.
pub fn rotation_message(agent_id: &str, new_key: &[u8; 32], csr_pem: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + agent_id.len() + 32 + csr_pem.len());
    m.extend_from_slice(b"vigil-rotate/1\0");
    m.extend_from_slice(agent_id.as_bytes());
    m.push(0);
    m.extend_from_slice(new_key);
    m.extend_from_slice(csr_pem.as_bytes());
    m
}

/// SHA-256 of a certificate's DER bytes.
pub fn fingerprint(cert: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A fingerprint as 64 lowercase hex characters.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a SHA-256 fingerprint: 64 hex characters, upper or lower case,
/// optionally `sha256:`-prefixed or colon-separated (as `openssl x509
/// -fingerprint -sha256` prints it).
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let text = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))
        .unwrap_or(text);
    let hex: String = text.chars().filter(|&c| c != ':').collect();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// How an enrolling agent decides to trust the aggregator.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The CA certificate(s), from a file the operator copied over.
    Ca(Vec<CertificateDer<'static>>),
    /// The CA certificate's SHA-256: the aggregator sends its CA in its
    /// chain, and the chain must verify against the certificate with this
    /// fingerprint.
    Fingerprint([u8; 32]),
}

/// QUIC client config for [`ENROLL_ALPN`]: trusts per `trust`, and presents
/// `identity` (rotation) or no certificate (enrollment).
pub fn client_config(
    trust: Trust,
    identity: Option<&TlsMaterial>,
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match trust {
        Trust::Ca(certs) => builder.with_root_certificates(roots(certs)?),
        Trust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCa { pin, provider })),
    };
    let mut tls = match identity {
        Some(m) => builder
            .with_client_auth_cert(m.chain.clone(), m.key.clone_key())
            .map_err(|e| TlsError::Config(format!("agent certificate/key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ENROLL_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(0u32.into());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

fn roots(certs: Vec<CertificateDer<'static>>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("bad CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// Accepts a server whose chain contains a certificate with the pinned
/// fingerprint and verifies (name, validity, signatures) against it as the
/// only root.
#[derive(Debug)]
struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// The message a fingerprint mismatch carries (the agent's CLI looks for it).
pub const PIN_MISMATCH: &str =
    "no certificate in the aggregator's chain has the pinned CA fingerprint";

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| fingerprint(c.as_ref()) == self.pin)
        else {
            return Err(rustls::Error::General(PIN_MISMATCH.into()));
        };
        let roots = roots(vec![ca.clone().into_owned()])
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let req = EnrollRequest::Enroll {
            token: "vgl_enroll_x".into(),
            agent_id: None,
            hostname: "web-1".into(),
            csr_pem: "CSR".into(),
            signing_key: [7; 32],
        };
        assert_eq!(
            EnrollRequest::decode(&req.encode().expect("encode")).expect("decode"),
            req
        );
        let reply = EnrollReply::Refused {
            code: Refusal::TokenUsed,
            message: "used".into(),
        };
        assert_eq!(
            EnrollReply::decode(&reply.encode().expect("encode")).expect("decode"),
            reply
        );
        assert!(EnrollReply::decode(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn fingerprints_parse_in_every_usual_form() {
        let fp = fingerprint(b"certificate");
        let hex = fingerprint_hex(&fp);
        assert_eq!(parse_fingerprint(&hex), Some(fp));
        assert_eq!(parse_fingerprint(&hex.to_uppercase()), Some(fp));
        assert_eq!(parse_fingerprint(&format!("sha256:{hex}")), Some(fp));
        let colons: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_fingerprint(&colons.join(":")), Some(fp));
        assert_eq!(parse_fingerprint("abc"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn rotation_message_binds_id_key_and_csr() {
        let a = rotation_message("a1", &[1; 32], "csr");
        assert_ne!(a, rotation_message("a2", &[1; 32], "csr"));
        assert_ne!(a, rotation_message("a1", &[2; 32], "csr"));
        assert_ne!(a, rotation_message("a1", &[1; 32], "csr2"));
    }
}
