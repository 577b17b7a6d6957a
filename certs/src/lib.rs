//! vigil-certs: the Vigil certificate authority, server and agent certificates,
//! and agents' Ed25519 signing keys.
//!
//! Files a directory holds (names are fixed so tools can find them):
//!
//! | file                  | what                                        | mode |
//! |-----------------------|---------------------------------------------|------|
//! | `ca.crt`, `ca.key`    | the CA certificate and key                  | key 0600 |
//! | `server.crt/.key`     | the aggregator's certificate and key        | key 0600 |
//! | `<id>.crt`, `<id>.key`| agent `<id>`'s client certificate and key   | key 0600 |
//! | `<id>.sign.key`       | agent `<id>`'s Ed25519 signing key (PKCS#8) | 0600 |
//! | `<id>.pub`            | its public key, 64 hex characters           | 0644 |
//!
//! Nothing is overwritten unless `force` is set, and every target is checked
//! before the first file is written, so a refusal leaves the directory untouched.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use thiserror::Error;
use time::{Duration, OffsetDateTime};
use vigil_common::{sign, tls};

/// Certificate and key generation failures.
#[derive(Debug, Error)]
pub enum CertError {
    #[error("{0} already exists (pass --force to overwrite)")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("signing key: {0}")]
    Key(#[from] sign::KeyError),
    #[error(
        "invalid agent id {0:?}: use 1-128 characters from A-Z a-z 0-9 . _ -, not starting with '.' or '-'"
    )]
    BadAgentId(String),
    #[error("invalid server name {0:?}: {1}")]
    BadName(String, String),
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoNames,
    #[error("validity must be between 1 and 36500 days, got {0}")]
    BadDays(u32),
    #[error("CA: {0}")]
    Ca(String),
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    #[error("{0}")]
    TooOpen(#[from] vigil_common::keyfile::TooOpen),
}

/// Whether an agent id is usable as a certificate CN and a file name.
pub fn is_valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '-'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Paths of a CA in `dir`.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.crt"), dir.join("ca.key"))
}

/// Paths of the aggregator's certificate and key in `dir`.
pub fn server_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("server.crt"), dir.join("server.key"))
}

/// Paths of agent `id`'s files in `dir`.
#[derive(Debug, Clone)]
pub struct AgentPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub signing_key: PathBuf,
    pub public_key: PathBuf,
}

impl AgentPaths {
    pub fn new(dir: &Path, id: &str) -> Self {
        AgentPaths {
            cert: dir.join(format!("{id}.crt")),
            key: dir.join(format!("{id}.key")),
            signing_key: dir.join(format!("{id}.sign.key")),
            public_key: dir.join(format!("{id}.pub")),
        }
    }
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), CertError> {
    if days == 0 || days > 36_500 {
        return Err(CertError::BadDays(days));
    }
    let now = OffsetDateTime::now_utc();
    // An hour of slack for hosts whose clocks run behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(())
}

fn refuse_existing(paths: &[&Path], force: bool) -> Result<(), CertError> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(CertError::Exists(p.to_path_buf())),
        None => Ok(()),
    }
}

/// Writes `contents` to `path`, creating parent folders; `private` files get mode 0600.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io)?;
    // `mode` applies only on creation; tighten an existing file too.
    if private {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn load_issuer(ca_dir: &Path) -> Result<Issuer<'static, KeyPair>, CertError> {
    let (cert, key) = ca_paths(ca_dir);
    // The CA key signs every identity: refuse one other users can read.
    vigil_common::keyfile::check_private(&key)?;
    let key = KeyPair::from_pem(&read(&key)?)?;
    Ok(Issuer::from_ca_cert_pem(&read(&cert)?, key)?)
}

/// Creates a CA (`ca.crt`, `ca.key`) in `dir`.
pub fn create_ca(dir: &Path, name: &str, days: u32, force: bool) -> Result<(), CertError> {
    let (cert_path, key_path) = ca_paths(dir);
    refuse_existing(&[&cert_path, &key_path], force)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Vigil");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)
}

/// Issues the aggregator's certificate (`server.crt`, `server.key`) in `dir`,
/// signed by the CA in `ca_dir`. `names` are DNS names or IP addresses.
pub fn issue_server(
    ca_dir: &Path,
    dir: &Path,
    names: &[String],
    days: u32,
    force: bool,
) -> Result<(), CertError> {
    let (cert_path, key_path) = server_paths(dir);
    refuse_existing(&[&cert_path, &key_path], force)?;
    let first = names.first().ok_or(CertError::NoNames)?;
    if let Some(bad) = names.iter().find(|n| !tls::is_valid_server_name(n)) {
        return Err(CertError::BadName(
            bad.clone(),
            "not a DNS name or IP address".into(),
        ));
    }
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| CertError::BadName(names.join(","), e.to_string()))?;
    params.distinguished_name.push(DnType::CommonName, first);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days)?;
    let issuer = load_issuer(ca_dir)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)
}

/// Issues agent `id`'s client certificate and a new Ed25519 signing key in `dir`.
/// Returns the public key as hex, for `vigil-aggregator register-agent`.
pub fn issue_agent(
    ca_dir: &Path,
    dir: &Path,
    id: &str,
    days: u32,
    force: bool,
) -> Result<String, CertError> {
    if !is_valid_agent_id(id) {
        return Err(CertError::BadAgentId(id.to_string()));
    }
    let paths = AgentPaths::new(dir, id);
    refuse_existing(
        &[
            &paths.cert,
            &paths.key,
            &paths.signing_key,
            &paths.public_key,
        ],
        force,
    )?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, id);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "vigil-agent");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days)?;
    let issuer = load_issuer(ca_dir)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let signing = sign::generate_signing_key()?;
    let public = sign::public_key_to_hex(&signing.verifying_key());

    write_file(&paths.key, key.serialize_pem().as_bytes(), true)?;
    write_file(&paths.cert, cert.pem().as_bytes(), false)?;
    write_file(
        &paths.signing_key,
        sign::signing_key_to_pem(&signing)?.as_bytes(),
        true,
    )?;
    write_file(&paths.public_key, format!("{public}\n").as_bytes(), false)?;
    Ok(public)
}

/// A new TLS key for an agent and a certificate signing request for it
/// (PEM key, PEM CSR). The subject is only a hint: the CA sets it.
pub fn agent_csr(id: &str) -> Result<(String, String), CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, id);
    let key = KeyPair::generate()?;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// A CA loaded for signing agents' certificate requests (the aggregator's
/// enrollment).
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA certificate (the first in `cert`) and its key; the key
    /// must belong to the certificate, and be readable by its owner only
    /// ([`vigil_common::keyfile`]): it signs every agent identity.
    pub fn load(cert: &Path, key: &Path) -> Result<Ca, CertError> {
        vigil_common::keyfile::check_private(key)?;
        let cert_text = read(cert)?;
        let key = KeyPair::from_pem(&read(key)?)?;
        let der = tls::load_certs(cert)
            .map_err(|e| CertError::Ca(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| CertError::Ca(format!("no certificate in {}", cert.display())))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| CertError::Ca(format!("{}: {e}", cert.display())))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::Ca(format!(
                "the key does not belong to the CA certificate {}",
                cert.display()
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        Ok(Ca {
            issuer,
            cert_pem: cert_text,
        })
    }

    /// The CA file's certificates (PEM), what agents trust the aggregator with.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs an agent's CSR (PEM) as a client certificate for `id`, valid
    /// for `days`. The request's signature must verify; everything else it
    /// asks for (subject, extensions) is replaced by what an agent gets.
    pub fn sign_agent_csr(&self, csr_pem: &str, id: &str, days: u32) -> Result<String, CertError> {
        if !is_valid_agent_id(id) {
            return Err(CertError::BadAgentId(id.to_string()));
        }
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CertError::Csr(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, id);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "vigil-agent");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days)?;
        Ok(params.signed_by(&csr.public_key, &self.issuer)?.pem())
    }
}

/// Reads agent `id`'s public key file back (64 hex characters).
pub fn read_public_key(dir: &Path, id: &str) -> Result<String, CertError> {
    let text = read(&AgentPaths::new(dir, id).public_key)?;
    let key = sign::public_key_from_hex(&text)?;
    Ok(sign::public_key_to_hex(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_world_readable_ca_key_issues_nothing_and_force_tightens_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        create_ca(d, "Test CA", 30, false).expect("ca");
        std::fs::set_permissions(d.join("ca.key"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let err = issue_agent(d, d, "web-1", 30, false).expect_err("open CA key");
        assert!(matches!(err, CertError::TooOpen(_)), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!AgentPaths::new(d, "web-1").key.exists());
        // Re-creating over a loosened key file makes it 0600 again.
        create_ca(d, "Test CA", 30, true).expect("ca again");
        assert_eq!(mode(&d.join("ca.key")), 0o600);
        issue_agent(d, d, "web-1", 30, false).expect("agent");
    }

    #[test]
    fn full_set_is_consistent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        create_ca(d, "Test CA", 30, false).expect("ca");
        issue_server(d, d, &["localhost".into(), "127.0.0.1".into()], 30, false).expect("server");
        let public = issue_agent(d, d, "web-1", 30, false).expect("agent");

        let paths = AgentPaths::new(d, "web-1");
        for private in [
            &d.join("ca.key"),
            &d.join("server.key"),
            &paths.key,
            &paths.signing_key,
        ] {
            assert_eq!(mode(private), 0o600, "{}", private.display());
        }
        let cert = tls::load_certs(&paths.cert).expect("agent cert");
        assert_eq!(tls::common_name(&cert[0]).as_deref(), Some("web-1"));
        let signing = sign::load_signing_key(&paths.signing_key).expect("signing key");
        assert_eq!(sign::public_key_to_hex(&signing.verifying_key()), public);
        assert_eq!(read_public_key(d, "web-1").expect("pub"), public);

        // Both ends' TLS configs accept what we issued.
        let server = tls::TlsMaterial::load(
            &d.join("ca.crt"),
            &d.join("server.crt"),
            &d.join("server.key"),
        )
        .expect("server material");
        tls::quic_server_config(&server, 8).expect("server config");
        let client = tls::TlsMaterial::load(&d.join("ca.crt"), &paths.cert, &paths.key)
            .expect("client material");
        tls::quic_client_config(&client).expect("client config");
    }

    #[test]
    fn refuses_to_overwrite_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        create_ca(d, "Test CA", 30, false).expect("ca");
        let before = std::fs::read(d.join("ca.crt")).expect("read");
        assert!(matches!(
            create_ca(d, "Test CA", 30, false),
            Err(CertError::Exists(_))
        ));
        assert_eq!(std::fs::read(d.join("ca.crt")).expect("read"), before);
        create_ca(d, "Test CA", 30, true).expect("forced");
        assert_ne!(std::fs::read(d.join("ca.crt")).expect("read"), before);

        issue_agent(d, d, "a1", 30, false).expect("agent");
        assert!(matches!(
            issue_agent(d, d, "a1", 30, false),
            Err(CertError::Exists(_))
        ));
    }

    #[test]
    fn ca_signs_agent_requests_with_its_own_subject() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        create_ca(d, "Test CA", 30, false).expect("ca");
        let (cert, key) = ca_paths(d);
        let ca = Ca::load(&cert, &key).expect("load CA");
        let (key_pem, csr) = agent_csr("asked-for").expect("csr");
        let pem = ca.sign_agent_csr(&csr, "given", 30).expect("sign");
        let signed = d.join("given.crt");
        std::fs::write(&signed, &pem).expect("write");
        write_file(&d.join("given.key"), key_pem.as_bytes(), true).expect("write");
        let der = tls::load_certs(&signed).expect("cert");
        assert_eq!(tls::common_name(&der[0]).as_deref(), Some("given"));
        // The issued certificate works as the agent's TLS identity.
        let client = tls::TlsMaterial::load(&cert, &signed, &d.join("given.key")).expect("load");
        tls::quic_client_config(&client).expect("client config");

        assert!(matches!(
            ca.sign_agent_csr("not a csr", "given", 30),
            Err(CertError::Csr(_))
        ));
        assert!(matches!(
            ca.sign_agent_csr(&csr, "../x", 30),
            Err(CertError::BadAgentId(_))
        ));
        // A request whose signature does not match its key is refused.
        let (_, other) = agent_csr("other").expect("csr");
        let tampered = splice_key(&csr, &other);
        assert!(ca.sign_agent_csr(&tampered, "given", 30).is_err());

        // A key that is not the CA's is refused at load.
        create_ca(&d.join("other"), "Other", 30, false).expect("other ca");
        assert!(matches!(
            Ca::load(&cert, &d.join("other").join("ca.key")),
            Err(CertError::Ca(_))
        ));
        // A CA key other users can read is refused before it is parsed.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Ca::load(&cert, &key).expect_err("world-readable CA key");
        assert!(matches!(err, CertError::TooOpen(_)), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    /// `csr` with the public key of `other` (so its signature no longer verifies).
    fn splice_key(csr: &str, other: &str) -> String {
        use rustls_pki_types_pem::decode;
        let a = decode(csr);
        let b = decode(other);
        // Both requests are P-256: the 65-byte uncompressed point starts with 0x04
        // after the same SPKI prefix; swap it.
        let find = |der: &[u8]| {
            der.windows(2)
                .position(|w| w == [0x00, 0x04])
                .expect("point")
                + 1
        };
        let (ia, ib) = (find(&a), find(&b));
        let mut out = a.clone();
        out[ia..ia + 65].copy_from_slice(&b[ib..ib + 65]);
        rustls_pki_types_pem::encode(&out)
    }

    mod rustls_pki_types_pem {
        pub fn decode(pem: &str) -> Vec<u8> {
            use rustls::pki_types::CertificateSigningRequestDer;
            use rustls::pki_types::pem::PemObject;
            CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
                .expect("pem")
                .as_ref()
                .to_vec()
        }
        pub fn encode(der: &[u8]) -> String {
            const B64: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut body = String::new();
            for chunk in der.chunks(3) {
                let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
                let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
                for i in 0..4 {
                    if i <= chunk.len() {
                        body.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
                    } else {
                        body.push('=');
                    }
                }
            }
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect();
            format!(
                "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
                lines.join("\n")
            )
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert!(matches!(
            issue_agent(d, d, "../evil", 30, false),
            Err(CertError::BadAgentId(_))
        ));
        assert!(matches!(
            issue_agent(d, d, "", 30, false),
            Err(CertError::BadAgentId(_))
        ));
        // No CA yet.
        assert!(matches!(
            issue_agent(d, d, "ok", 30, false),
            Err(CertError::Io { .. })
        ));
        create_ca(d, "CA", 30, false).expect("ca");
        assert!(matches!(
            issue_server(d, d, &[], 30, false),
            Err(CertError::NoNames)
        ));
        assert!(matches!(
            issue_server(d, d, &["bad name!".into()], 30, false),
            Err(CertError::BadName(..))
        ));
        assert!(matches!(
            create_ca(d, "CA", 0, true),
            Err(CertError::BadDays(0))
        ));
    }
}
