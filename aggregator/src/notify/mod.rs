//! Notifications, with Alertmanager's semantics and configuration shape:
//! the route tree, grouping and its timers ([`dispatch`]), inhibition,
//! silences ([`silence`]) and maintenance ([`maintenance`], both consulted
//! through [`mutes`]), receivers (webhook, Slack, email,
//! Alertmanager; [`receivers`]) and the persisted outbox every notification
//! goes through ([`outbox`]). Configured by `[notify]` ([`config`]).

pub mod config;
pub mod dispatch;
pub mod maintenance;
pub mod mutes;
pub mod outbox;
pub mod receivers;
pub mod silence;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, LabelSet};
use crate::store::StoreError;

/// One message to one receiver: a group's alerts at one moment (what
/// Alertmanager's webhook payload carries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Same for every re-enqueue of the same message: the outbox stores each
    /// key once, so handing it the same notification twice (after a restart,
    /// say) never sends it twice. The dispatcher derives it from the
    /// receiver, the group key and the group's state (which alerts fire,
    /// which resolved) plus the repeat slot.
    pub dedup_key: String,
    /// The receiver's name in the notification config.
    pub receiver: String,
    /// Alertmanager's group key (route path + group labels).
    pub group_key: String,
    /// The `group_by` labels and their values.
    pub group_labels: LabelSet,
    /// Labels every alert of the group shares.
    pub common_labels: LabelSet,
    /// Annotations every alert of the group shares.
    pub common_annotations: LabelSet,
    /// Firing alerts first, then resolved ones.
    pub alerts: Vec<Alert>,
    /// Alerts left out of `alerts` by a receiver's `max_alerts`.
    pub truncated_alerts: usize,
    /// Sent to the escalation receiver because nobody acknowledged in time.
    pub escalation: bool,
}

impl Notification {
    /// `firing` if any alert fires, else `resolved`.
    pub fn status(&self) -> &'static str {
        if self.alerts.iter().any(|a| !a.is_resolved()) {
            "firing"
        } else {
            "resolved"
        }
    }
}

/// Where the dispatcher hands notifications: the persisted outbox
/// ([`outbox`]), or a capturing stand-in in tests of the dispatcher alone.
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// Persists `n` for delivery (at least once, retried with backoff); a
    /// notification whose `dedup_key` was enqueued before is ignored.
    /// Returns once it is durable.
    async fn enqueue(&self, n: Notification) -> Result<(), StoreError>;
}
