//! Mutual TLS for the QUIC link, identical on both ends.
//!
//! Both sides trust only the Vigil CA. The aggregator requires a client
//! certificate; the agent id is the certificate's subject common name. Every
//! config is built with the ring provider explicitly, so nothing depends on a
//! process-wide default being installed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::wire::ALPN;

/// TLS setup failures.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {detail}")]
    Certs { path: String, detail: String },
    #[error("cannot read a private key from {path}: {detail}")]
    Key { path: String, detail: String },
    #[error("{0}")]
    Config(String),
}

/// The ring crypto provider all of Vigil's TLS uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config (ring provider) for HTTP/1.1 over TLS trusting `roots`:
/// the agent's scrapes and probes and the aggregator's notification
/// receivers use it.
pub fn http_client_config(
    roots: RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `Basic base64(user:password)` (RFC 7617), for an `Authorization` header.
pub fn basic_auth(username: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{username}:{password}");
    let mut out = String::from("Basic ");
    for chunk in input.as_bytes().chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Installs ring as the process-wide default provider (for libraries such as
/// sqlx that build their own configs). Safe to call more than once.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA bundle, a certificate chain and its private key, loaded from PEM files.
#[derive(Debug)]
pub struct TlsMaterial {
    pub ca: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TlsMaterial {
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(TlsMaterial {
            ca: load_certs(ca)?,
            chain: load_certs(cert)?,
            key: load_key(key)?,
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in &self.ca {
            roots
                .add(cert.clone())
                .map_err(|e| TlsError::Config(format!("bad CA certificate: {e}")))?;
        }
        Ok(Arc::new(roots))
    }
}

/// Reads every certificate in a PEM file; an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |detail: String| TlsError::Certs {
        path: path.display().to_string(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

/// Reads the first private key in a PEM file; refuses a file other users
/// can read ([`crate::keyfile`]).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    crate::keyfile::check_private(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

/// Transport settings shared by both ends: keep-alives well inside the idle timeout.
fn transport(idle: Duration, max_bidi_streams: u32) -> Result<quinn::TransportConfig, TlsError> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        idle.try_into()
            .map_err(|_| TlsError::Config("idle timeout too large".into()))?,
    ));
    t.keep_alive_interval(Some(idle / 3));
    t.max_concurrent_bidi_streams(max_bidi_streams.into());
    t.max_concurrent_uni_streams(0u32.into());
    Ok(t)
}

/// QUIC server config: requires a client certificate issued by the CA.
/// `max_bidi_streams` bounds the batches one agent can have in flight.
pub fn quic_server_config(
    material: &TlsMaterial,
    max_bidi_streams: u32,
) -> Result<quinn::ServerConfig, TlsError> {
    server_config(material, max_bidi_streams, false)
}

/// Like [`quic_server_config`], also serving enrollment
/// ([`crate::enroll::ENROLL_ALPN`]): a client certificate becomes optional in
/// the handshake (the aggregator closes ingest connections without one), and
/// the CA is sent after the server certificate so an agent that pins the
/// CA's fingerprint can verify the chain.
pub fn quic_server_config_enrolling(
    material: &TlsMaterial,
    max_bidi_streams: u32,
) -> Result<quinn::ServerConfig, TlsError> {
    server_config(material, max_bidi_streams, true)
}

fn server_config(
    material: &TlsMaterial,
    max_bidi_streams: u32,
    enrolling: bool,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        material.roots()?,
        provider.clone(),
    );
    let verifier = if enrolling {
        verifier.allow_unauthenticated()
    } else {
        verifier
    }
    .build()
    .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let mut chain = material.chain.clone();
    if enrolling {
        chain.extend(
            material
                .ca
                .iter()
                .filter(|c| !chain.contains(c))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, material.key.clone_key())
        .map_err(|e| TlsError::Config(format!("server certificate/key: {e}")))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    if enrolling {
        tls.alpn_protocols.push(crate::enroll::ENROLL_ALPN.to_vec());
    }
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport(
        Duration::from_secs(30),
        max_bidi_streams,
    )?));
    Ok(config)
}

/// QUIC client config: trusts only the CA, presents the agent certificate.
pub fn quic_client_config(material: &TlsMaterial) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(material.roots()?)
        .with_client_auth_cert(material.chain.clone(), material.key.clone_key())
        .map_err(|e| TlsError::Config(format!("agent certificate/key: {e}")))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport(Duration::from_secs(30), 0)?));
    Ok(config)
}

/// The subject common name of a DER certificate: an agent's id.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The agent id of a QUIC connection's peer: the CN of its first certificate.
pub fn peer_agent_id(connection: &quinn::Connection) -> Option<String> {
    common_name(peer_certificate(connection)?.as_ref())
}

/// The peer's (leaf) client certificate, if it presented one.
pub fn peer_certificate(connection: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().cloned()
}

/// The ALPN protocol the connection agreed on.
pub fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    data.protocol
}

/// Whether `name` is a DNS name or IP address a certificate can be issued for
/// and an agent can connect to.
pub fn is_valid_server_name(name: &str) -> bool {
    rustls::pki_types::ServerName::try_from(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_rfc_7617() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
        assert_eq!(basic_auth("ab", "c"), "Basic YWI6Yw==");
        assert_eq!(basic_auth("ab", "cd"), "Basic YWI6Y2Q=");
    }

    #[test]
    fn server_names() {
        assert!(is_valid_server_name("localhost"));
        assert!(is_valid_server_name("agg.example.com"));
        assert!(is_valid_server_name("127.0.0.1"));
        assert!(is_valid_server_name("::1"));
        assert!(!is_valid_server_name("bad name!"));
        assert!(!is_valid_server_name(""));
    }

    #[test]
    fn missing_and_empty_files_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        assert!(matches!(load_certs(&empty), Err(TlsError::Certs { .. })));
        assert!(matches!(
            load_certs(&dir.path().join("missing.pem")),
            Err(TlsError::Certs { .. })
        ));
        // World-readable (the umask's 0644): refused before it is parsed.
        let open = load_key(&empty).expect_err("world-readable");
        assert!(open.to_string().contains("chmod 600"), "{open}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let parse = load_key(&empty).expect_err("empty");
        assert!(matches!(parse, TlsError::Key { .. }), "{parse}");
        assert!(!parse.to_string().contains("chmod"), "{parse}");
    }
}
