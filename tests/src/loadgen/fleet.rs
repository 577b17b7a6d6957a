//! The simulated fleet's identities: for each agent a client certificate
//! issued by the aggregator's CA and an Ed25519 signing key (made with
//! `vigil-certs`, kept in a work folder and reused on the next run), and the
//! registration of those keys in the aggregator's store.

use std::path::Path;

use vigil_aggregator::store::Store;
use vigil_common::sign::SigningKey;
use vigil_common::tls::{self, TlsMaterial};

use super::LoadgenError;

/// One simulated agent's identity.
pub struct Identity {
    pub id: String,
    pub host: String,
    pub role: &'static str,
    pub client: quinn::ClientConfig,
    pub signing_key: SigningKey,
    pub public_key: [u8; 32],
}

/// Agent ids `<prefix>-00000`, `<prefix>-00001`, ...
pub fn agent_ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// Issues (or reuses) certificates and signing keys for `ids` in `work_dir`,
/// signed by the CA in `ca_dir`, and loads them.
pub fn prepare(
    ca_dir: &Path,
    work_dir: &Path,
    ids: &[String],
) -> Result<Vec<Identity>, LoadgenError> {
    std::fs::create_dir_all(work_dir).map_err(|e| LoadgenError::Io(work_dir.to_path_buf(), e))?;
    let ca = ca_dir.join("ca.crt");
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let paths = vigil_certs::AgentPaths::new(work_dir, id);
            let complete = [
                &paths.cert,
                &paths.key,
                &paths.signing_key,
                &paths.public_key,
            ]
            .iter()
            .all(|p| p.exists());
            if !complete {
                vigil_certs::issue_agent(ca_dir, work_dir, id, 30, true)
                    .map_err(|e| LoadgenError::Certs(id.clone(), e.to_string()))?;
            }
            let material = TlsMaterial::load(&ca, &paths.cert, &paths.key)
                .map_err(|e| LoadgenError::Certs(id.clone(), e.to_string()))?;
            let client = tls::quic_client_config(&material)
                .map_err(|e| LoadgenError::Certs(id.clone(), e.to_string()))?;
            let signing_key = vigil_common::sign::load_signing_key(&paths.signing_key)
                .map_err(|e| LoadgenError::Certs(id.clone(), e.to_string()))?;
            let public_key = signing_key.verifying_key().to_bytes();
            Ok(Identity {
                id: id.clone(),
                host: format!("{id}.loadgen"),
                role: super::series::ROLES[i % super::series::ROLES.len()],
                client,
                signing_key,
                public_key,
            })
        })
        .collect()
}

/// Registers every identity's public key in `store` (migrating it first, so
/// this also works before the aggregator has ever started on it).
pub async fn register(store: &dyn Store, fleet: &[Identity]) -> Result<(), LoadgenError> {
    store
        .migrate()
        .await
        .map_err(|e| LoadgenError::Store(e.to_string()))?;
    for agent in fleet {
        store
            .register_agent(&agent.id, &agent.public_key)
            .await
            .map_err(|e| LoadgenError::Store(e.to_string()))?;
    }
    Ok(())
}
