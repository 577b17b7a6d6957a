//! The notification dispatcher: Alertmanager's dispatcher, inhibitor and
//! notification log in one task.
//!
//! - [`Dispatcher`] is the evaluator's [`AlertSink`]. `send` never blocks:
//!   it appends the round to a queue of `[notify] queue_capacity` rounds;
//!   when the queue is full the oldest *round* is dropped and counted in
//!   `vigil_aggregator_notify_queue_dropped_total` (escalations are kept
//!   over rounds). Losing a round is harmless: the next one carries every
//!   active alert again, and an alert whose resolution was lost resolves
//!   after `resolve_timeout` without updates.
//! - One task ([`Dispatcher::start`]) takes rounds off the queue into the
//!   grouping state ([`core`]), flushes due groups, hands notifications to
//!   the outbox ([`Deliver`]) and then records them in the notification
//!   log ([`nflog`]).
//! - `muted(labels)` answers maintenance, then inhibition, then silences.

pub mod core;
pub mod inhibit;
pub mod nflog;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tracing::{info, warn};

use self::core::{Core, Flush, common};
use crate::alert::{Alert, AlertSink, LabelSet, Muted};
use crate::metrics::Reason;
use crate::notify::config::{NotifyConfig, NotifyPlan};
use crate::notify::mutes::Mutes;
use crate::notify::{Deliver, Notification};
use crate::store::{Db, StoreError};

/// Longest sleep between checks (timers, stale alerts, log GC).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How often old notification log entries are deleted.
const LOG_GC_EVERY_MS: i64 = 3_600_000;

/// A `receiver` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    pub receiver: String,
}

/// The dispatcher's metrics (cheap to clone; clones share values).
#[derive(Clone, Default)]
pub struct NotifyMetrics {
    /// Notifications handed to the outbox, by receiver.
    pub enqueued: Family<ReceiverLabel, Counter>,
    /// Alerts left out of a flush, by reason (silence, inhibition,
    /// maintenance, time_interval), once per alert and flush.
    pub suppressed: Family<Reason, Counter>,
    /// Evaluation rounds dropped because the queue was full.
    pub queue_dropped: Counter,
    /// Notifications the outbox could not take (retried at the next flush).
    pub enqueue_failures: Counter,
}

impl NotifyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        for r in ["silence", "inhibition", "maintenance", "time_interval"] {
            let _ = self.suppressed.get_or_create(&Reason::new(r));
        }
        registry.register(
            "notifications_enqueued",
            "Notifications handed to the outbox, by receiver",
            self.enqueued.clone(),
        );
        registry.register(
            "notify_alerts_suppressed",
            "Alerts left out of a group's notification, by reason (per flush)",
            self.suppressed.clone(),
        );
        registry.register(
            "notify_queue_dropped",
            "Evaluation rounds dropped because the dispatcher queue was full",
            self.queue_dropped.clone(),
        );
        registry.register(
            "notify_enqueue_failures",
            "Notifications the outbox refused (storage down); retried at the next flush",
            self.enqueue_failures.clone(),
        );
    }
}

enum Msg {
    Alerts(Vec<Alert>),
    Escalate(Alert, String),
}

/// Settings of a dispatcher.
#[derive(Clone)]
pub struct Options {
    pub resolve_timeout: Duration,
    pub queue_capacity: usize,
}

impl From<&NotifyConfig> for Options {
    fn from(c: &NotifyConfig) -> Self {
        Options {
            resolve_timeout: c.resolve_timeout,
            queue_capacity: c.queue_capacity,
        }
    }
}

/// See the module documentation.
pub struct Dispatcher {
    queue: Mutex<VecDeque<Msg>>,
    capacity: usize,
    wake: Notify,
    core: Mutex<Core>,
    mutes: Arc<Mutes>,
    deliver: Arc<dyn Deliver>,
    metrics: NotifyMetrics,
    db: Db,
}

impl Dispatcher {
    /// A dispatcher and its task. The task first loads the notification
    /// log (retrying while the database is unreachable), so nothing is
    /// flushed before it knows what was already sent.
    pub fn start(
        plan: Arc<NotifyPlan>,
        options: Options,
        db: Db,
        mutes: Arc<Mutes>,
        deliver: Arc<dyn Deliver>,
        metrics: NotifyMetrics,
    ) -> (Arc<Dispatcher>, tokio::task::JoinHandle<()>) {
        let d = Dispatcher::stopped(plan, options, db, mutes, deliver, metrics);
        let task = d.spawn();
        (d, task)
    }

    /// A dispatcher whose task is not started yet (see [`Dispatcher::spawn`]):
    /// what a cluster node builds, to run it only while it leads.
    pub fn stopped(
        plan: Arc<NotifyPlan>,
        options: Options,
        db: Db,
        mutes: Arc<Mutes>,
        deliver: Arc<dyn Deliver>,
        metrics: NotifyMetrics,
    ) -> Arc<Dispatcher> {
        Arc::new(Dispatcher::idle(plan, options, db, mutes, deliver, metrics))
    }

    /// Starts the task from a clean slate: no groups, nothing queued, the
    /// notification log loaded again from the database (what an earlier
    /// leader sent). The task of a previous [`spawn`](Self::spawn) must be
    /// stopped (aborted) first.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        if let Ok(mut q) = self.queue.lock() {
            q.clear();
        }
        if let Ok(mut core) = self.core.lock() {
            *core = core.fresh();
        }
        tokio::spawn(self.clone().run())
    }

    /// A dispatcher whose task is not running (tests of the queue).
    fn idle(
        plan: Arc<NotifyPlan>,
        options: Options,
        db: Db,
        mutes: Arc<Mutes>,
        deliver: Arc<dyn Deliver>,
        metrics: NotifyMetrics,
    ) -> Dispatcher {
        let resolve_ms = i64::try_from(options.resolve_timeout.as_millis()).unwrap_or(i64::MAX);
        Dispatcher {
            queue: Mutex::new(VecDeque::new()),
            capacity: options.queue_capacity.max(1),
            wake: Notify::new(),
            core: Mutex::new(Core::new(plan, resolve_ms)),
            mutes,
            deliver,
            metrics,
            db,
        }
    }

    fn push(&self, msg: Msg) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        if q.len() >= self.capacity {
            // Drop the oldest round (the next one repeats it); escalations
            // only when nothing else is left to drop.
            let i = q
                .iter()
                .position(|m| matches!(m, Msg::Alerts(_)))
                .unwrap_or(0);
            q.remove(i);
            self.metrics.queue_dropped.inc();
        }
        q.push_back(msg);
        drop(q);
        self.wake.notify_one();
    }

    fn now(&self) -> i64 {
        self.mutes.now_ms()
    }

    async fn run(self: Arc<Self>) {
        let mut delay = Duration::from_millis(200);
        loop {
            match nflog::load(&self.db).await {
                Ok(log) => {
                    if let Ok(mut core) = self.core.lock() {
                        core.set_log(log);
                    }
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "notification log unavailable; notifications wait");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(15));
                }
            }
        }
        info!("notification dispatcher running");
        let mut last_gc = 0;
        loop {
            self.step().await;
            let now = self.now();
            if now - last_gc >= LOG_GC_EVERY_MS {
                last_gc = now;
                if let Err(e) = nflog::gc(&self.db, now - nflog::RETENTION_MS).await {
                    warn!(error = %e, "notification log GC failed");
                }
                if let Ok(mut core) = self.core.lock() {
                    core.forget_log_before(now - nflog::RETENTION_MS);
                }
            }
            let next = self.core.lock().ok().and_then(|c| c.next_due_ms());
            let sleep = next
                .map(|due| Duration::from_millis(u64::try_from(due - self.now()).unwrap_or(0)))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            if !sleep.is_zero() {
                let _ = tokio::time::timeout(sleep, self.wake.notified()).await;
            }
        }
    }

    /// Takes in what is queued, then flushes what is due.
    async fn step(&self) {
        let msgs: Vec<Msg> = match self.queue.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let now = self.now();
        let mut escalations = Vec::new();
        let flushes = {
            let Ok(mut core) = self.core.lock() else {
                return;
            };
            for m in msgs {
                match m {
                    Msg::Alerts(a) => core.ingest(a, now),
                    Msg::Escalate(a, r) => escalations.push((a, r)),
                }
            }
            core.expire_stale(now);
            let mutes = |l: &LabelSet| self.mutes.check(l, now);
            let suppressed = &self.metrics.suppressed;
            core.flush_due(now, &mutes, &mut |r| {
                suppressed.get_or_create(&Reason::new(r)).inc();
            })
        };
        for f in flushes {
            self.deliver_flush(f).await;
        }
        for (alert, receiver) in escalations {
            self.escalate_now(alert, receiver).await;
        }
    }

    async fn deliver_flush(&self, flush: Flush) {
        if let (Some(n), Some(entry)) = (&flush.notification, &flush.entry) {
            if let Err(e) = self.enqueue(n.clone()).await {
                warn!(error = %e, group = %flush.group_key, "outbox refused a notification; retrying at the next flush");
                return;
            }
            if let Err(e) = nflog::store(&self.db, &flush.group_key, &flush.receiver, entry).await {
                // The outbox has it; a re-enqueue after a restart has the same key.
                warn!(error = %e, "notification log write failed");
            }
        }
        if let Ok(mut core) = self.core.lock() {
            core.commit(&flush);
        }
    }

    async fn enqueue(&self, n: Notification) -> Result<(), StoreError> {
        let receiver = n.receiver.clone();
        match self.deliver.enqueue(n).await {
            Ok(()) => {
                self.metrics
                    .enqueued
                    .get_or_create(&ReceiverLabel { receiver })
                    .inc();
                Ok(())
            }
            Err(e) => {
                self.metrics.enqueue_failures.inc();
                Err(e)
            }
        }
    }

    /// One notification to `receiver` for an unacknowledged alert, unless
    /// it is muted (an operator who silenced it does not want escalation).
    async fn escalate_now(&self, alert: Alert, receiver: String) {
        if let Some(m) = self.muted(&alert.labels) {
            self.metrics
                .suppressed
                .get_or_create(&Reason::new(self::core::reason(&m)))
                .inc();
            return;
        }
        let known = self
            .core
            .lock()
            .map(|c| c.plan().has_receiver(&receiver))
            .unwrap_or(false);
        if !known {
            warn!(%receiver, "escalation to an undefined receiver dropped");
            return;
        }
        let fp = alert.fingerprint();
        let n = Notification {
            dedup_key: format!("escalation|{receiver}|{fp:016x}|{}", alert.starts_at_ms),
            receiver: receiver.clone(),
            group_key: format!("escalation:{fp:016x}"),
            group_labels: alert.labels.clone(),
            common_labels: common(std::iter::once(&alert.labels)),
            common_annotations: alert.annotations.clone(),
            alerts: vec![alert],
            truncated_alerts: 0,
            escalation: true,
        };
        if let Err(e) = self.enqueue(n).await {
            warn!(error = %e, "escalation could not be enqueued");
        }
    }
}

impl AlertSink for Dispatcher {
    fn send(&self, alerts: Vec<Alert>) {
        self.push(Msg::Alerts(alerts));
    }

    fn escalate(&self, alert: Alert, receiver: &str) {
        self.push(Msg::Escalate(alert, receiver.to_string()));
    }

    fn muted(&self, labels: &LabelSet) -> Option<Muted> {
        let now = self.now();
        if let Some(m) = self.mutes.maintenance.muting(labels, now) {
            return Some(m);
        }
        if let Some(by) = self.core.lock().ok().and_then(|mut c| c.inhibited(labels)) {
            return Some(Muted::Inhibited { by: vec![by] });
        }
        self.mutes.check(labels, now)
    }
}

/// Logs each notification and drops it (tests of the queue alone).
#[cfg(test)]
pub struct LogAndDrop;

#[cfg(test)]
#[async_trait::async_trait]
impl Deliver for LogAndDrop {
    async fn enqueue(&self, n: Notification) -> Result<(), StoreError> {
        warn!(receiver = %n.receiver, group = %n.group_key, alerts = n.alerts.len(),
              "notification dropped: the outbox is not wired yet");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_round_and_keeps_escalations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open("sqlite:q.db", dir.path(), 1).expect("open");
        let plan = crate::notify::config::parse_file(
            "route: {receiver: r}\nreceivers: [{name: r}]\n",
            true,
        )
        .expect("config");
        let metrics = NotifyMetrics::default();
        let mutes = Arc::new(Mutes::new(store.db(), crate::notify::mutes::system_clock()));
        let d = Dispatcher::idle(
            Arc::new(plan),
            Options {
                resolve_timeout: Duration::from_secs(60),
                queue_capacity: 3,
            },
            store.db(),
            mutes,
            Arc::new(LogAndDrop),
            metrics.clone(),
        );
        let alert = |n: i64| Alert {
            labels: [("alertname".to_string(), format!("A{n}"))].into(),
            annotations: LabelSet::new(),
            starts_at_ms: n,
            ends_at_ms: None,
            generator_url: String::new(),
            flapping: false,
        };
        d.send(vec![alert(1)]);
        d.escalate(alert(2), "r");
        d.send(vec![alert(3)]);
        d.send(vec![alert(4)]);
        d.send(vec![alert(5)]);
        assert_eq!(metrics.queue_dropped.get(), 2);
        let q = d.queue.lock().expect("queue");
        let kinds: Vec<String> = q
            .iter()
            .map(|m| match m {
                Msg::Alerts(a) => format!("round {}", a[0].starts_at_ms),
                Msg::Escalate(a, _) => format!("escalate {}", a.starts_at_ms),
            })
            .collect();
        assert_eq!(kinds, ["escalate 2", "round 4", "round 5"]);
    }
}
