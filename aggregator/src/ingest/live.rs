//! Live agent connections, so a revocation closes them within seconds.
//!
//! Every ingest connection registers here under its agent id for as long as
//! it is open. A revocation closes the agent's connections with the QUIC
//! application code [`close::REVOKED`] and drops the agent from the key
//! cache, so a reconnect is refused at once (`ingest::connection` asks the
//! store, not the cache) and no batch on another aggregator's cache outlives
//! [`super::agents::TTL`].
//!
//! Revocations reach a running aggregator two ways:
//! - through its own HTTP API (`POST /api/v1/agents/{id}/revoke`): the
//!   handler calls [`LiveAgents::revoke`] right away;
//! - from anywhere else (the `revoke-agent` command, another aggregator on
//!   the same database): the watcher ([`spawn_watcher`]) reads the revoked
//!   agent ids every [`WATCH_INTERVAL`] and revokes those still connected
//!   or cached as active.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use vigil_common::wire::close;

use super::agents::AgentKeys;
use crate::metrics::Metrics;
use crate::store::{Store, enroll};

/// How often the watcher looks for revocations made elsewhere.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The open ingest connections by agent id.
pub struct LiveAgents {
    conns: Mutex<HashMap<String, Vec<(u64, quinn::Connection)>>>,
    next_id: AtomicU64,
    keys: Arc<AgentKeys>,
    metrics: Arc<Metrics>,
}

/// Removes its connection from [`LiveAgents`] when dropped.
pub struct Registration {
    live: Arc<LiveAgents>,
    agent_id: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut conns) = self.live.conns.lock() {
            if let Some(list) = conns.get_mut(&self.agent_id) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    conns.remove(&self.agent_id);
                }
            }
        }
    }
}

impl LiveAgents {
    pub fn new(keys: Arc<AgentKeys>, metrics: Arc<Metrics>) -> Self {
        LiveAgents {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            keys,
            metrics,
        }
    }

    /// Records `conn` as agent `agent_id`'s until the registration is dropped.
    pub fn register(self: &Arc<Self>, agent_id: &str, conn: quinn::Connection) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut conns) = self.conns.lock() {
            conns
                .entry(agent_id.to_string())
                .or_default()
                .push((id, conn));
        }
        Registration {
            live: self.clone(),
            agent_id: agent_id.to_string(),
            id,
        }
    }

    /// Connections agent `agent_id` has open now.
    pub fn connected(&self, agent_id: &str) -> usize {
        self.conns
            .lock()
            .map_or(0, |c| c.get(agent_id).map_or(0, Vec::len))
    }

    /// Forgets the agent's cached key and closes its connections with
    /// [`close::REVOKED`]; returns how many were closed.
    pub fn revoke(&self, agent_id: &str) -> usize {
        self.keys.forget(agent_id);
        let closing = match self.conns.lock() {
            Ok(mut conns) => conns.remove(agent_id).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        for (_, conn) in &closing {
            conn.close(close::REVOKED.into(), b"agent revoked");
        }
        if !closing.is_empty() {
            self.metrics
                .connections_revoked
                .inc_by(closing.len() as u64);
            info!(agent = %agent_id, connections = closing.len(), "revoked agent disconnected");
        }
        closing.len()
    }

    /// Revokes, among `revoked`, the agents still connected or cached as
    /// active; returns how many connections were closed.
    pub fn sweep(&self, revoked: &[String]) -> usize {
        revoked
            .iter()
            .filter(|id| self.connected(id) > 0 || self.keys.cached_active(id))
            .map(|id| self.revoke(id))
            .sum()
    }
}

/// Revokes agent `agent_id` in the store and, given this process's `live`
/// registry, closes its connections at once (else a running aggregator's
/// watcher does within [`WATCH_INTERVAL`]). `None` if the agent is not
/// registered, else the connections closed here. One audit record per
/// revocation, as `by` from `source`: the CLI's `revoke-agent` and
/// `POST /api/v1/agents/{id}/revoke` both come here.
pub async fn revoke_agent(
    store: &dyn Store,
    live: Option<&LiveAgents>,
    agent_id: &str,
    by: crate::audit::Actor,
    source: Option<String>,
) -> Result<Option<usize>, crate::store::StoreError> {
    if !store.revoke_agent(agent_id).await? {
        return Ok(None);
    }
    let closed = live.map_or(0, |live| live.revoke(agent_id));
    info!(agent = %agent_id, connections_closed = closed, "agent revoked");
    crate::audit::note(
        &store.db(),
        crate::audit::Event::new(by, crate::audit::Action::AgentRevoke, agent_id)
            .details(serde_json::json!({}))
            .source(source),
    )
    .await;
    Ok(Some(closed))
}

/// Every [`WATCH_INTERVAL`], applies revocations made outside this process.
pub fn spawn_watcher(
    live: Arc<LiveAgents>,
    store: Arc<dyn Store>,
    ready: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            if !ready.load(Ordering::Acquire) {
                continue;
            }
            match enroll::revoked_agents(&store.db()).await {
                Ok(revoked) => {
                    failing = false;
                    let closed = live.sweep(&revoked);
                    if closed > 0 {
                        debug!(closed, "revocation watcher closed connections");
                    }
                }
                // Logged once per outage, not every second.
                Err(e) if !failing => {
                    failing = true;
                    warn!(error = %e, "cannot read revoked agents; retrying");
                }
                Err(_) => {}
            }
        }
    })
}
