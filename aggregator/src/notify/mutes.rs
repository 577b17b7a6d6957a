//! What holds notifications back besides inhibition: silences and
//! maintenance, with the clock they are judged by. Shared by the HTTP API
//! (which changes them), the dispatcher (which consults them at every
//! flush) and the alerts API (which shows why an alert is muted).
//!
//! Without `[notify]` the evaluator's sink is a [`Mutes`]: nothing is
//! notified, but alerts still show as silenced or in maintenance.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::maintenance::Maintenance;
use super::silence::Silences;
use crate::alert::{Alert, AlertSink, LabelSet, Muted};
use crate::store::{Db, StoreError};

/// Wall-clock milliseconds since the epoch; injectable for tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(vigil_common::now_ms)
}

/// How often expired silences and ended maintenance windows are collected.
const GC_EVERY: Duration = Duration::from_secs(600);

/// Silences and maintenance windows.
pub struct Mutes {
    pub silences: Silences,
    pub maintenance: Maintenance,
    pub clock: Clock,
}

impl Mutes {
    pub fn new(db: Db, clock: Clock) -> Mutes {
        Mutes {
            silences: Silences::new(db.clone()),
            maintenance: Maintenance::new(db),
            clock,
        }
    }

    /// Loads both from the database (at start, once it is migrated).
    pub async fn load(&self) -> Result<(), StoreError> {
        self.silences.load().await?;
        self.maintenance.load().await
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// Maintenance, then silences (inhibition is the dispatcher's).
    pub fn check(&self, labels: &LabelSet, now_ms: i64) -> Option<Muted> {
        if let Some(m) = self.maintenance.muting(labels, now_ms) {
            return Some(m);
        }
        let silence_ids = self.silences.silencing(labels, now_ms);
        (!silence_ids.is_empty()).then_some(Muted::Silenced { silence_ids })
    }

    /// Collects expired silences and ended windows every [`GC_EVERY`].
    pub fn spawn_gc(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(GC_EVERY);
            loop {
                tick.tick().await;
                let now = self.now_ms();
                if let Err(e) = self.silences.gc(now).await {
                    warn!(error = %e, "silence GC failed; retrying later");
                }
                if let Err(e) = self.maintenance.gc(now).await {
                    warn!(error = %e, "maintenance GC failed; retrying later");
                }
            }
        })
    }
}

impl AlertSink for Mutes {
    fn send(&self, _alerts: Vec<Alert>) {}
    fn escalate(&self, _alert: Alert, _receiver: &str) {}
    fn muted(&self, labels: &LabelSet) -> Option<Muted> {
        self.check(labels, self.now_ms())
    }
}
