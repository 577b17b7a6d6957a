//! `vigil-agent enroll` and `vigil-agent rotate`: the agent's side of
//! `vigil_common::enroll`.
//!
//! Keys are generated here and never leave the host: the TLS key (P-256) and
//! the Ed25519 signing key are written with mode 0600, only a CSR and the
//! public key are sent. Before a token is sent the aggregator's certificate
//! is verified against the CA file or the pinned CA fingerprint, so a token
//! never reaches an impostor.
//!
//! Enrollment checks every file it would write *before* it generates keys or
//! contacts the aggregator, so a refusal (existing files) burns no token.
//! Rotation writes each new file next to the old one and renames it over.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::time::timeout;
use vigil_common::enroll::{
    self, EnrollReply, EnrollRequest, MAX_ENROLL_FRAME, PIN_MISMATCH, Refusal, Trust,
};
use vigil_common::frame::{read_frame, write_frame};
use vigil_common::sign;
use vigil_common::tls::{self, TlsMaterial};

use crate::config::AgentConfig;

/// File names enrollment writes in its folder.
pub const CERT_FILE: &str = "agent.crt";
pub const KEY_FILE: &str = "agent.key";
pub const SIGNING_KEY_FILE: &str = "agent.sign.key";
pub const CA_FILE: &str = "ca.crt";
pub const CONFIG_FILE: &str = "agent.toml";

/// Default time allowed to reach the aggregator and get the reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why enrollment or rotation failed. Every message says what to do.
#[derive(Debug, Error)]
pub enum EnrollError {
    #[error("{0} already exists (pass --force to overwrite)")]
    Exists(PathBuf),
    #[error("--ca-fingerprint {0:?} is not a SHA-256 fingerprint (64 hex characters)")]
    BadFingerprint(String),
    #[error("--aggregator {0:?}: expected HOST:PORT")]
    BadAddress(String),
    #[error("cannot resolve {addr}: {detail}")]
    Resolve { addr: String, detail: String },
    #[error(
        "the aggregator at {0} did not answer within the timeout (is it running, and is UDP \
         open to its QUIC port?)"
    )]
    Unreachable(String),
    #[error(
        "the aggregator at {0} does not present the CA with the pinned fingerprint; the token \
         was not sent (check --ca-fingerprint, or that you reached the right aggregator)"
    )]
    WrongFingerprint(String),
    #[error(
        "the aggregator at {addr}'s certificate is not trusted ({detail}); the token was not sent"
    )]
    Untrusted { addr: String, detail: String },
    #[error(
        "the aggregator at {0} does not accept enrollments (its config has no [enroll] section)"
    )]
    NotEnabled(String),
    #[error("connection to {addr} failed: {detail}")]
    Connection { addr: String, detail: String },
    #[error("the aggregator refused ({code}): {message}")]
    Refused { code: Refusal, message: String },
    #[error("{0}")]
    Io(String),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("keys: {0}")]
    Certs(#[from] vigil_certs::CertError),
    #[error("signing key: {0}")]
    Key(#[from] sign::KeyError),
    #[error("invalid configuration:\n{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// How the agent checks the aggregator before sending the token.
#[derive(Debug, Clone)]
pub enum TrustSource {
    /// A PEM file with the Vigil CA certificate.
    CaFile(PathBuf),
    /// The CA certificate's SHA-256 fingerprint, as `enroll-token create` prints it.
    Fingerprint(String),
}

/// What `vigil-agent enroll` was asked to do.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    pub token: String,
    /// `HOST:PORT` of the aggregator's QUIC listener.
    pub aggregator: String,
    pub trust: TrustSource,
    /// Where keys, certificates and (by default) the config go.
    pub dir: PathBuf,
    /// The config file to write or update (default `DIR/agent.toml`).
    pub config: Option<PathBuf>,
    /// The id to ask for (default: the token's host name, else this host's name).
    pub agent_id: Option<String>,
    /// The name the aggregator's certificate carries (default: HOST of `aggregator`).
    pub server_name: Option<String>,
    pub force: bool,
    pub timeout: Duration,
}

/// What enrollment or rotation wrote.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub agent_id: String,
    pub config: PathBuf,
    /// Until when the previous key is accepted (re-keying only), ms.
    pub previous_key_valid_until_ms: Option<i64>,
}

/// The host part of `HOST:PORT` / `[V6]:PORT`.
fn host_of(addr: &str) -> Option<&str> {
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

fn io(what: &str, path: &Path, e: std::io::Error) -> EnrollError {
    EnrollError::Io(format!("{what} {}: {e}", path.display()))
}

/// Enrolls this host: generates keys, sends the request, writes the files.
pub async fn enroll(opts: &EnrollOptions) -> Result<Enrolled, EnrollError> {
    let host = host_of(&opts.aggregator)
        .ok_or_else(|| EnrollError::BadAddress(opts.aggregator.clone()))?;
    let server_name = opts.server_name.clone().unwrap_or_else(|| host.to_string());
    let trust = match &opts.trust {
        TrustSource::CaFile(path) => Trust::Ca(tls::load_certs(path)?),
        TrustSource::Fingerprint(text) => Trust::Fingerprint(
            enroll::parse_fingerprint(text)
                .ok_or_else(|| EnrollError::BadFingerprint(text.clone()))?,
        ),
    };
    let dir = &opts.dir;
    let config_path = opts.config.clone().unwrap_or_else(|| dir.join(CONFIG_FILE));
    let files = [CERT_FILE, KEY_FILE, SIGNING_KEY_FILE, CA_FILE].map(|f| dir.join(f));
    if !opts.force {
        if let Some(existing) = files.iter().chain([&config_path]).find(|p| p.exists()) {
            return Err(EnrollError::Exists(existing.clone()));
        }
    }
    // A folder we cannot write must fail before the token is used.
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let probe = dir.join(".vigil-enroll-probe");
    std::fs::write(&probe, b"").map_err(|e| io("cannot write in", dir, e))?;
    let _ = std::fs::remove_file(&probe);

    let hostname = crate::config::default_host().unwrap_or_default();
    let (key_pem, csr_pem) =
        vigil_certs::agent_csr(opts.agent_id.as_deref().unwrap_or("vigil-agent"))?;
    let signing = sign::generate_signing_key()?;
    let request = EnrollRequest::Enroll {
        token: opts.token.trim().to_string(),
        agent_id: opts.agent_id.clone(),
        hostname,
        csr_pem,
        signing_key: signing.verifying_key().to_bytes(),
    };
    let client = enroll::client_config(trust, None)?;
    let reply = exchange(
        client,
        std::slice::from_ref(&opts.aggregator),
        &server_name,
        &request,
        opts.timeout,
    )
    .await?;
    let (agent_id, cert_pem, ca_pem, until) = accepted(reply)?;

    vigil_certs::write_file(&files[1], key_pem.as_bytes(), true)?;
    vigil_certs::write_file(
        &files[2],
        sign::signing_key_to_pem(&signing)?.as_bytes(),
        true,
    )?;
    vigil_certs::write_file(&files[0], cert_pem.as_bytes(), false)?;
    vigil_certs::write_file(&files[3], ca_pem.as_bytes(), false)?;
    write_config(&config_path, dir, &agent_id, &opts.aggregator, &server_name)?;
    Ok(Enrolled {
        agent_id,
        config: config_path,
        previous_key_valid_until_ms: until,
    })
}

fn accepted(reply: EnrollReply) -> Result<(String, String, String, Option<i64>), EnrollError> {
    match reply {
        EnrollReply::Enrolled {
            agent_id,
            cert_pem,
            ca_pem,
            previous_key_valid_until_ms,
        } => Ok((agent_id, cert_pem, ca_pem, previous_key_valid_until_ms)),
        EnrollReply::Refused { code, message } => Err(EnrollError::Refused { code, message }),
    }
}

/// Rotates the TLS key, certificate and signing key of the agent `config`
/// describes, authenticated by its current certificate and signing key.
pub async fn rotate(config_path: &Path, wait: Duration) -> Result<Enrolled, EnrollError> {
    let config = AgentConfig::load(config_path)?;
    let agg = &config.aggregator;
    let material = TlsMaterial::load(&agg.ca, &agg.cert, &agg.key)?;
    let current = sign::load_signing_key(&agg.signing_key)?;
    let (key_pem, csr_pem) = vigil_certs::agent_csr(&config.agent_id)?;
    let signing = sign::generate_signing_key()?;
    let new_public = signing.verifying_key().to_bytes();
    let proof = sign::sign(
        &current,
        &enroll::rotation_message(&config.agent_id, &new_public, &csr_pem),
    );
    let request = EnrollRequest::Rotate {
        csr_pem,
        signing_key: new_public,
        proof,
    };
    let client = enroll::client_config(Trust::Ca(material.ca.clone()), Some(&material))?;
    let reply = exchange(client, &agg.endpoints, &agg.server_name, &request, wait).await?;
    let (agent_id, cert_pem, _, until) = accepted(reply)?;
    // The signing key first: if we stop half-way, the old certificate still
    // works and batches signed with the new key verify.
    replace(
        &agg.signing_key,
        sign::signing_key_to_pem(&signing)?.as_bytes(),
        true,
    )?;
    replace(&agg.key, key_pem.as_bytes(), true)?;
    replace(&agg.cert, cert_pem.as_bytes(), false)?;
    Ok(Enrolled {
        agent_id,
        config: config_path.to_path_buf(),
        previous_key_valid_until_ms: until,
    })
}

/// Writes `path` whole: a sibling temporary file, then a rename over it.
fn replace(path: &Path, contents: &[u8], private: bool) -> Result<(), EnrollError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    vigil_certs::write_file(&tmp, contents, private)?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot replace", path, e))
}

/// Connects to the first reachable of `endpoints`, sends `request`, reads the reply.
async fn exchange(
    client: quinn::ClientConfig,
    endpoints: &[String],
    server_name: &str,
    request: &EnrollRequest,
    wait: Duration,
) -> Result<EnrollReply, EnrollError> {
    let bytes = request
        .encode()
        .map_err(|e| EnrollError::Io(e.to_string()))?;
    let mut last = None;
    for endpoint in endpoints {
        match exchange_one(&client, endpoint, server_name, &bytes, wait).await {
            Ok(reply) => return Ok(reply),
            // Try the next endpoint only when this one was not reached.
            Err(e @ (EnrollError::Unreachable(_) | EnrollError::Resolve { .. })) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| EnrollError::BadAddress(String::new())))
}

async fn exchange_one(
    client: &quinn::ClientConfig,
    endpoint: &str,
    server_name: &str,
    request: &[u8],
    wait: Duration,
) -> Result<EnrollReply, EnrollError> {
    let addr = resolve(endpoint, wait).await?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0"
            .parse()
            .map_err(|_| EnrollError::BadAddress(endpoint.into()))?
    } else {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| EnrollError::BadAddress(endpoint.into()))?
    };
    let quic = quinn::Endpoint::client(bind)
        .map_err(|e| EnrollError::Io(format!("cannot open a UDP socket: {e}")))?;
    let failed = |e: &dyn std::fmt::Display| classify(endpoint, &e.to_string());
    let result = timeout(wait, async {
        let conn = quic
            .connect_with(client.clone(), addr, server_name)
            .map_err(|e| failed(&e))?
            .await
            .map_err(|e| failed(&e))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(&e))?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| failed(&e))?;
        send.finish().map_err(|e| failed(&e))?;
        let frame = read_frame(&mut recv, MAX_ENROLL_FRAME)
            .await
            .map_err(|e| failed(&e))?;
        conn.close(0u32.into(), b"thanks");
        EnrollReply::decode(&frame).map_err(|e| EnrollError::Connection {
            addr: endpoint.to_string(),
            detail: format!("undecodable reply: {e}"),
        })
    })
    .await
    .unwrap_or_else(|_| Err(EnrollError::Unreachable(endpoint.to_string())));
    quic.wait_idle().await;
    result
}

async fn resolve(endpoint: &str, wait: Duration) -> Result<SocketAddr, EnrollError> {
    let resolved = timeout(wait, tokio::net::lookup_host(endpoint))
        .await
        .map_err(|_| EnrollError::Unreachable(endpoint.to_string()))?
        .map_err(|e| EnrollError::Resolve {
            addr: endpoint.to_string(),
            detail: e.to_string(),
        })?;
    let mut addrs: Vec<SocketAddr> = resolved.collect();
    addrs.sort_by_key(SocketAddr::is_ipv6); // IPv4 first, as most aggregators listen there
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| EnrollError::Resolve {
            addr: endpoint.to_string(),
            detail: "no address".into(),
        })
}

/// Turns a QUIC/TLS failure into the error an operator can act on.
fn classify(endpoint: &str, detail: &str) -> EnrollError {
    let addr = endpoint.to_string();
    if detail.contains(PIN_MISMATCH) {
        EnrollError::WrongFingerprint(addr)
    } else if detail.contains("no_application_protocol")
        || detail.contains("NoApplicationProtocol")
        || detail.contains("known protocol")
        || detail.contains("0x178")
    {
        EnrollError::NotEnabled(addr)
    } else if detail.contains("certificate") || detail.contains("UnknownIssuer") {
        EnrollError::Untrusted {
            addr,
            detail: detail.to_string(),
        }
    } else {
        EnrollError::Connection {
            addr,
            detail: detail.to_string(),
        }
    }
}

/// Writes a new config, or (with `--force` over an existing one) sets its
/// `agent_id` and `[aggregator]` identity keys and keeps everything else.
fn write_config(
    path: &Path,
    dir: &Path,
    agent_id: &str,
    aggregator: &str,
    server_name: &str,
) -> Result<(), EnrollError> {
    // Paths relative to the config when it sits in the key folder.
    let same = path.parent().is_some_and(|p| p == dir);
    let file = |name: &str| -> String {
        if same {
            name.to_string()
        } else {
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            dir.join(name).display().to_string()
        }
    };
    let mut doc = match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map_err(|e| EnrollError::Io(format!("cannot update {}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(io("cannot read", path, e)),
    };
    doc.insert("agent_id".into(), agent_id.into());
    let agg = doc
        .entry("aggregator")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(agg) = agg.as_table_mut() else {
        return Err(EnrollError::Io(format!(
            "cannot update {}: `aggregator` is not a table",
            path.display()
        )));
    };
    agg.insert(
        "endpoints".into(),
        toml::Value::Array(vec![aggregator.into()]),
    );
    agg.insert("server_name".into(), server_name.into());
    agg.insert("ca".into(), file(CA_FILE).into());
    agg.insert("cert".into(), file(CERT_FILE).into());
    agg.insert("key".into(), file(KEY_FILE).into());
    agg.insert("signing_key".into(), file(SIGNING_KEY_FILE).into());
    let body = toml::to_string(&doc).map_err(|e| EnrollError::Io(e.to_string()))?;
    let text = format!(
        "# Written by `vigil-agent enroll` (agent {agent_id}). See deploy/examples/ for the\n\
         # collectors, spool and other settings.\n{body}"
    );
    vigil_certs::write_file(path, text.as_bytes(), false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_part_of_addresses() {
        assert_eq!(host_of("agg.example.com:4433"), Some("agg.example.com"));
        assert_eq!(host_of("127.0.0.1:4433"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:4433"), Some("::1"));
        assert_eq!(host_of("agg.example.com"), None);
        assert_eq!(host_of(":4433"), None);
        assert_eq!(host_of("h:port"), None);
    }

    #[test]
    fn config_is_written_then_updated_keeping_other_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CONFIG_FILE);
        write_config(&path, dir.path(), "a1", "agg:4433", "agg").expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("agent_id = \"a1\""), "{text}");
        assert!(text.contains("signing_key = \"agent.sign.key\""), "{text}");

        let edited = format!("interval = \"5s\"\n{text}");
        std::fs::write(&path, edited).expect("write");
        write_config(&path, dir.path(), "a2", "other:4433", "other").expect("update");
        let table: toml::Table = std::fs::read_to_string(&path)
            .expect("read")
            .parse()
            .expect("toml");
        assert_eq!(table["agent_id"].as_str(), Some("a2"));
        assert_eq!(table["interval"].as_str(), Some("5s"));
        assert_eq!(
            table["aggregator"]["endpoints"][0].as_str(),
            Some("other:4433")
        );
    }
}
