//! Registered agents' verifying keys, cached briefly so a busy agent does not
//! cost a database round trip per batch. Only known agents are cached: a newly
//! registered agent is accepted on its next batch, and a revocation takes
//! effect within [`TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_common::sign::VerifyingKey;

use crate::store::{Store, StoreError};

/// How long a looked-up key is trusted before asking the store again.
pub const TTL: Duration = Duration::from_secs(5);

/// What the store says about an agent id.
#[derive(Debug, Clone)]
pub enum AgentStatus {
    Unknown,
    Revoked,
    Active(VerifyingKey),
}

/// Cached view of the `agents` table.
pub struct AgentKeys {
    store: Arc<dyn Store>,
    cache: Mutex<HashMap<String, (AgentStatus, Instant)>>,
}

impl AgentKeys {
    pub fn new(store: Arc<dyn Store>) -> Self {
        AgentKeys {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn status(&self, agent_id: &str) -> Result<AgentStatus, StoreError> {
        if let Ok(cache) = self.cache.lock() {
            if let Some((status, at)) = cache.get(agent_id) {
                if at.elapsed() < TTL {
                    return Ok(status.clone());
                }
            }
        }
        let status = match self.store.agent(agent_id).await? {
            None => AgentStatus::Unknown,
            Some(record) if record.revoked => AgentStatus::Revoked,
            Some(record) => match VerifyingKey::from_bytes(&record.public_key) {
                Ok(key) => AgentStatus::Active(key),
                Err(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "registered key of {agent_id} is not a valid Ed25519 point"
                    )));
                }
            },
        };
        if !matches!(status, AgentStatus::Unknown) {
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(agent_id.to_string(), (status.clone(), Instant::now()));
            }
        }
        Ok(status)
    }
}
