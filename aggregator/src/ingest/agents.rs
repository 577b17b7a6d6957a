//! Registered agents' verifying keys, cached briefly so a busy agent does not
//! cost a database round trip per batch. Only known agents are cached: a newly
//! registered agent is accepted on its next batch, and a revocation takes
//! effect within [`TTL`] at worst: the revocation watcher (`ingest/live.rs`)
//! drops revoked agents from the cache within a second, and a revocation
//! through the HTTP API at once.

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
    /// Shared: the status is cloned out of the cache for every batch.
    Active(Arc<Keys>),
}

/// An active agent's verifying keys.
#[derive(Debug, Clone)]
pub struct Keys {
    pub current: VerifyingKey,
    /// The key before the last rotation, accepted until the time (ms).
    pub previous: Option<(VerifyingKey, i64)>,
}

impl Keys {
    /// Only `key`.
    pub fn one(key: VerifyingKey) -> Self {
        Keys {
            current: key,
            previous: None,
        }
    }
}

/// Which key a signature verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    Current,
    /// The previous key, inside its grace period.
    Previous,
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
            Some(record) => {
                let key = |bytes: &[u8; 32]| {
                    VerifyingKey::from_bytes(bytes).map_err(|_| {
                        StoreError::Corrupt(format!(
                            "registered key of {agent_id} is not a valid Ed25519 point"
                        ))
                    })
                };
                AgentStatus::Active(Arc::new(Keys {
                    current: key(&record.public_key)?,
                    previous: match &record.previous_key {
                        Some((bytes, until)) => Some((key(bytes)?, *until)),
                        None => None,
                    },
                }))
            }
        };
        if !matches!(status, AgentStatus::Unknown) {
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(agent_id.to_string(), (status.clone(), Instant::now()));
            }
        }
        Ok(status)
    }

    /// The store's answer now, bypassing (and refreshing) the cache: for a
    /// new connection, so a revocation is seen at once.
    pub async fn fresh_status(&self, agent_id: &str) -> Result<AgentStatus, StoreError> {
        self.forget(agent_id);
        self.status(agent_id).await
    }

    /// Drops the cached status of `agent_id` (it was revoked or re-keyed).
    pub fn forget(&self, agent_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(agent_id);
        }
    }

    /// Whether the cache holds `agent_id` as active.
    pub fn cached_active(&self, agent_id: &str) -> bool {
        self.cache
            .lock()
            .is_ok_and(|cache| matches!(cache.get(agent_id), Some((AgentStatus::Active(_), _))))
    }
}
