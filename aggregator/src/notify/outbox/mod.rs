//! The persisted notification outbox: every notification the dispatcher
//! hands over ([`Deliver::enqueue`]) is written to `notification_outbox`
//! (one row per receiver integration) before `enqueue` returns, and a
//! delivery task sends the rows.
//!
//! - **Exactly one row per message**: `(dedup_key, integration)` is unique,
//!   so enqueueing the same notification again (a restart, a replay) adds
//!   nothing.
//! - **Delivery**: due rows are claimed oldest first (the claim counts the
//!   attempt and leases the row for [`LEASE`], so a process that dies
//!   mid-send leaves it to be retried), sent with at most
//!   `max_concurrency` sends at once (rows of one group one after another,
//!   in order), and marked `delivered` right after the 2xx (or the SMTP
//!   server's acceptance).
//! - **At least once**: a crash between the send and the mark sends the
//!   message again after the lease. Receivers see Alertmanager's
//!   `groupKey` and may deduplicate on it.
//! - **Failures**: retryable ones (network, timeout, 5xx, 429) are retried
//!   with exponential backoff and jitter (`min_backoff` .. `max_backoff`)
//!   until the row is `max_age` old, then given up: marked `failed`,
//!   logged and counted (`notifications_dropped_total{reason="expired"}`).
//!   A permanent failure (4xx, SMTP 5xx) is given up at once (`rejected`);
//!   a receiver no longer in the config is dropped (`unknown_receiver`).
//! - **Stale states**: once a row is delivered, older pending rows of the
//!   same receiver integration and group are `superseded`: the group's
//!   newer state already went out.
//! - **Bounded**: finished rows are deleted after `keep_finished`; pending
//!   ones live at most `max_age`.
//!
//! Restart: rows are in the database, so whatever was pending when a
//! process stopped is delivered by the next one.
//!
//! Cluster (several aggregators on one PostgreSQL, `crate::cluster`): only
//! the leader runs the delivery task, started with its epoch
//! ([`Outbox::spawn_as`]). Claims and inserts carry the epoch and do
//! nothing once a newer leader bumped it (fencing: an old leader that has
//! not yet noticed it lost the lock cannot send or enqueue). A new leader
//! makes rows claimed by an earlier epoch and never finished due again
//! after `takeover_delay` (by then the old leader has stopped: see
//! `cluster`), instead of after the 5-minute [`LEASE`]: a row the old
//! leader sent but had not marked yet is then sent a second time (at least
//! once), one it had not sent is not lost.

mod config;
mod rows;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use super::receivers::{GlobalConfig, ReceiverConfig, Receivers, SendError, Sent};
use super::{Deliver, Notification};
use crate::metrics::{DropLabels, IntegrationLabel, NotifyLabels, NotifyMetrics};
use crate::store::{Db, StoreError};
pub use config::{OutboxConfig, backoff};
pub use rows::OutboxRow;

/// How long a claimed row is held by the process sending it; longer than
/// any integration's timeout ([`super::receivers::MAX_TIMEOUT`]).
pub const LEASE: Duration = Duration::from_secs(300);
/// Rows claimed per round, per unit of concurrency.
const CLAIM_PER_SLOT: usize = 4;
/// How long [`OutboxTask::stop`] lets sends in flight finish.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often finished rows older than `keep_finished` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The outbox: the dispatcher's [`Deliver`] and the delivery task's state.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    receivers: RwLock<Arc<Receivers>>,
    metrics: NotifyMetrics,
    config: OutboxConfig,
    wake: Notify,
    /// The leader epoch claims and inserts are fenced with; 0 outside a
    /// cluster (nothing fenced).
    epoch: AtomicI64,
}

impl Outbox {
    /// Checks the receivers and settings (every problem at once). The
    /// outbox's table comes with the store's migrations; nothing is sent
    /// until [`Outbox::spawn`].
    pub fn new(
        db: Db,
        receivers: &[ReceiverConfig],
        global: &GlobalConfig,
        metrics: NotifyMetrics,
        external_url: &str,
        config: OutboxConfig,
    ) -> Result<Outbox, Vec<String>> {
        let mut errors = config.validate();
        let built = Receivers::new(receivers, global, external_url);
        let receivers = match built {
            Ok(r) if errors.is_empty() => r,
            Ok(_) => return Err(errors),
            Err(e) => {
                errors.extend(e);
                return Err(errors);
            }
        };
        Ok(Outbox {
            inner: Arc::new(Inner {
                db,
                receivers: RwLock::new(Arc::new(receivers)),
                metrics,
                config,
                wake: Notify::new(),
                epoch: AtomicI64::new(0),
            }),
        })
    }

    /// Replaces the receivers (a config reload). Rows already enqueued
    /// are sent with the new settings; a row whose receiver or integration
    /// is gone is dropped when it comes up.
    pub fn set_receivers(
        &self,
        receivers: &[ReceiverConfig],
        global: &GlobalConfig,
        external_url: &str,
    ) -> Result<(), Vec<String>> {
        let built = Arc::new(Receivers::new(receivers, global, external_url)?);
        match self.inner.receivers.write() {
            Ok(mut r) => *r = built,
            Err(poisoned) => *poisoned.into_inner() = built,
        }
        Ok(())
    }

    fn receivers(&self) -> Arc<Receivers> {
        match self.inner.receivers.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Starts the delivery task (a single aggregator: nothing fenced).
    pub fn spawn(&self) -> OutboxTask {
        self.spawn_as(None, Duration::ZERO)
    }

    /// Starts the delivery task for the cluster leader of `epoch` (`None`:
    /// not in a cluster). Rows an earlier leader left claimed are due again
    /// `takeover_delay` from now.
    pub fn spawn_as(&self, epoch: Option<i64>, takeover_delay: Duration) -> OutboxTask {
        self.inner
            .epoch
            .store(epoch.unwrap_or(0), Ordering::Release);
        let (stop, stopped) = watch::channel(false);
        let this = self.clone();
        let handle = tokio::spawn(async move {
            if let Some(epoch) = epoch {
                this.release_stale(epoch, takeover_delay).await;
            }
            this.run(stopped).await
        });
        OutboxTask { stop, handle }
    }

    fn epoch(&self) -> i64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// See the module documentation (retried until it works: the
    /// delivery loop must not claim before it).
    async fn release_stale(&self, epoch: i64, delay: Duration) {
        let due = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
        let mut wait = Duration::from_millis(200);
        loop {
            match rows::release_stale(&self.inner.db, epoch, due).await {
                Ok(0) => return,
                Ok(n) => {
                    warn!(rows = n, epoch, retry_in = ?delay,
                          "notification outbox: rows an earlier leader claimed and did not finish are sent again");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "notification outbox: cannot release an earlier leader's claims; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The newest `limit` rows, optionally of one status (for the API).
    pub async fn recent(
        db: &Db,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        rows::recent(db, status, limit).await
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        info!("notification outbox started");
        let mut last_prune: Option<Instant> = None;
        loop {
            if *stopped.borrow() {
                break;
            }
            let full = match self.round().await {
                Ok(full) => full,
                Err(e) => {
                    warn!(error = %e, "notification outbox: database error; will retry");
                    false
                }
            };
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                self.prune().await;
            }
            if full {
                continue;
            }
            tokio::select! {
                // A dropped `OutboxTask` stops the task too.
                changed = stopped.changed() => if changed.is_err() { break },
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
        info!("notification outbox stopped");
    }

    async fn prune(&self) {
        let keep = i64::try_from(self.inner.config.keep_finished.as_millis()).unwrap_or(i64::MAX);
        match rows::prune(&self.inner.db, now_ms().saturating_sub(keep)).await {
            Ok(0) => {}
            Ok(n) => debug!(rows = n, "notification outbox: pruned finished rows"),
            Err(e) => warn!(error = %e, "notification outbox: prune failed"),
        }
    }

    /// Claims and delivers one batch; true if the batch was full (more may
    /// be due right away).
    async fn round(&self) -> Result<bool, StoreError> {
        let cfg = &self.inner.config;
        let limit = cfg.max_concurrency.saturating_mul(CLAIM_PER_SLOT);
        let now = now_ms();
        let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let batch =
            rows::claim(&self.inner.db, now, now + lease, limit as i64, self.epoch()).await?;
        let full = batch.len() >= limit;
        // One group's rows go out in order, one after the other.
        let mut groups: BTreeMap<(String, String, String), Vec<rows::Claimed>> = BTreeMap::new();
        for row in batch {
            let key = (
                row.receiver.clone(),
                row.integration.clone(),
                row.group_key.clone(),
            );
            groups.entry(key).or_default().push(row);
        }
        let slots = Arc::new(Semaphore::new(cfg.max_concurrency));
        let mut tasks = JoinSet::new();
        for (_, rows) in groups {
            let this = self.clone();
            let slots = slots.clone();
            tasks.spawn(async move {
                for row in rows {
                    let Ok(_permit) = slots.acquire().await else {
                        return;
                    };
                    this.deliver(row).await;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                error!(error = %e, "notification delivery task failed");
            }
        }
        match rows::pending(&self.inner.db).await {
            Ok(n) => {
                self.inner.metrics.pending.set(n);
            }
            Err(e) => warn!(error = %e, "notification outbox: cannot count pending rows"),
        }
        Ok(full)
    }

    /// Sends one row and records the outcome. Database errors are logged;
    /// the row's lease then brings it back.
    async fn deliver(&self, row: rows::Claimed) {
        if let Err(e) = self.try_deliver(&row).await {
            warn!(id = row.id, receiver = %row.receiver, error = %e,
                  "notification outbox: cannot record a delivery outcome; retried after the lease");
        }
    }

    async fn try_deliver(&self, row: &rows::Claimed) -> Result<(), StoreError> {
        let db = &self.inner.db;
        let m = &self.inner.metrics;
        let kind = row.integration.split('/').next().unwrap_or("").to_string();
        let labels = NotifyLabels {
            receiver: row.receiver.clone(),
            integration: kind.clone(),
        };
        let drop = |reason: &str| DropLabels {
            receiver: row.receiver.clone(),
            integration: kind.clone(),
            reason: reason.to_string(),
        };
        let n: Notification = match serde_json::from_str(&row.payload) {
            Ok(n) => n,
            Err(e) => {
                let msg = format!("stored payload does not decode: {e}");
                error!(id = row.id, receiver = %row.receiver, error = %msg, "notification dropped");
                m.dropped.get_or_create(&drop("corrupt")).inc();
                return rows::finish(db, row.id, "failed", None, Some(&msg)).await;
            }
        };
        let receivers = self.receivers();
        let started = Instant::now();
        let result = receivers.send(&row.receiver, &row.integration, &n).await;
        if !matches!(result, Ok(Sent::Skipped) | Err(SendError::Unknown(_))) {
            m.latency
                .get_or_create(&IntegrationLabel {
                    integration: kind.clone(),
                })
                .observe(started.elapsed().as_secs_f64());
        }
        let now = now_ms();
        match result {
            Ok(Sent::Delivered) => {
                // Mark first: the message is out.
                rows::finish(db, row.id, "delivered", Some(now), None).await?;
                m.sent.get_or_create(&labels).inc();
                let stale = rows::supersede_older(db, row).await?;
                debug!(id = row.id, receiver = %row.receiver, integration = %row.integration,
                       attempts = row.attempts, superseded = stale, "notification delivered");
                Ok(())
            }
            Ok(Sent::Skipped) => {
                debug!(id = row.id, receiver = %row.receiver, "nothing to send (send_resolved is false)");
                rows::finish(db, row.id, "skipped", None, None).await
            }
            Err(SendError::Unknown(msg)) => {
                warn!(id = row.id, receiver = %row.receiver, integration = %row.integration,
                      error = %msg, "notification dropped: receiver not configured");
                m.dropped.get_or_create(&drop("unknown_receiver")).inc();
                rows::finish(db, row.id, "failed", None, Some(&msg)).await
            }
            Err(SendError::Permanent(msg)) => {
                m.failed.get_or_create(&labels).inc();
                m.dropped.get_or_create(&drop("rejected")).inc();
                error!(id = row.id, receiver = %row.receiver, integration = %row.integration,
                       error = %msg, "notification rejected by the receiver; not retried");
                rows::finish(db, row.id, "failed", None, Some(&msg)).await
            }
            Err(SendError::Retryable(msg)) => {
                m.failed.get_or_create(&labels).inc();
                let age =
                    Duration::from_millis(u64::try_from(now - row.created_at_ms).unwrap_or(0));
                let cfg = &self.inner.config;
                if age >= cfg.max_age {
                    let msg = format!(
                        "gave up after {} attempts over {}: {msg}",
                        row.attempts,
                        humantime::format_duration(Duration::from_secs(age.as_secs()))
                    );
                    error!(id = row.id, receiver = %row.receiver, integration = %row.integration,
                           error = %msg, "notification given up");
                    m.dropped.get_or_create(&drop("expired")).inc();
                    return rows::finish(db, row.id, "failed", None, Some(&msg)).await;
                }
                let delay = backoff(
                    row.attempts,
                    cfg.min_backoff,
                    cfg.max_backoff,
                    rand::random(),
                );
                warn!(id = row.id, receiver = %row.receiver, integration = %row.integration,
                      attempts = row.attempts, retry_in = ?delay, error = %msg,
                      "notification delivery failed; will retry");
                let next = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                rows::retry_at(db, row.id, next, &msg).await
            }
        }
    }
}

#[async_trait]
impl Deliver for Outbox {
    async fn enqueue(&self, n: Notification) -> Result<(), StoreError> {
        let payload = serde_json::to_string(&n)
            .map_err(|e| StoreError::Corrupt(format!("notification does not serialise: {e}")))?;
        let receivers = self.receivers();
        let integrations = receivers.integrations(&n.receiver);
        let unknown = format!("receiver {:?} is not configured", n.receiver);
        let (names, status, error) = match &integrations {
            Some(list) => (list.clone(), "pending", None),
            None => (vec!["none".to_string()], "failed", Some(unknown.as_str())),
        };
        let new: Vec<rows::NewRow<'_>> = names
            .iter()
            .map(|integration| rows::NewRow {
                dedup_key: &n.dedup_key,
                receiver: &n.receiver,
                integration,
                group_key: &n.group_key,
                payload: &payload,
                status,
                last_error: error,
            })
            .collect();
        let epoch = Some(self.epoch()).filter(|e| *e != 0);
        let inserted = rows::insert(&self.inner.db, &new, now_ms(), epoch).await?;
        if integrations.is_none() && inserted > 0 {
            warn!(receiver = %n.receiver, "notification dropped: receiver not configured");
            self.inner
                .metrics
                .dropped
                .get_or_create(&DropLabels {
                    receiver: n.receiver.clone(),
                    integration: "none".into(),
                    reason: "unknown_receiver".into(),
                })
                .inc();
        }
        if inserted > 0 && integrations.is_some() {
            self.inner.metrics.pending.inc_by(inserted as i64);
            self.inner.wake.notify_one();
        } else if !new.is_empty() {
            debug!(dedup_key = %n.dedup_key, "notification already enqueued");
        }
        Ok(())
    }
}

/// The running delivery task; dropping it stops the task after its current
/// round.
pub struct OutboxTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl OutboxTask {
    /// Stops claiming rows and lets sends in flight finish for a few
    /// seconds; what is cut off is retried after its lease, by the next
    /// process if need be.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.handle.abort_handle();
        if tokio::time::timeout(STOP_GRACE, self.handle).await.is_err() {
            warn!("notification outbox: sends still in flight at stop; they will be retried");
            abort.abort();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
