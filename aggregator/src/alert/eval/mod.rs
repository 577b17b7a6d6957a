//! The rule evaluator: runs every rule group at its interval over the
//! aggregator's query [`Source`] (the in-memory head, then the store),
//! keeps the state of every alert ([`machine`]), persists it
//! ([`crate::alert::state`]) and hands alerts to an [`AlertSink`].
//!
//! One evaluation round ([`Evaluator::round_at`], in [`round`]):
//! 1. queries, without any lock held: each due group's rules in order;
//!    a recording rule's output is written with `Store::write_series` (so
//!    the head, later rules and queries see it); an alerting rule's result
//!    (and its `vigil.recover` result) is kept; the dead-man check
//!    ([`deadman`]) finds silent hosts;
//! 2. under the state lock, pure: results go through the state machines,
//!    escalation is checked, and what must be sent and written is collected;
//! 3. the changes are written in one transaction, then sent to the sink.
//!
//! Rounds, reloads and acknowledgements are serialised by one async mutex,
//! so a reload never lands between a round's phases. Time is a parameter
//! of [`Evaluator::round_at`]: tests evaluate "at" any timestamp.

pub mod deadman;
pub mod flap;
pub mod machine;
mod query;
mod round;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{info, warn};

use super::config::AlertingConfig;
use super::rules::{Rule, RuleErrors, RuleGroup, RuleSet};
use super::state::{self, Changes};
use super::{AlertSink, LabelSet, Muted};
use crate::metrics::AlertMetrics;
use crate::query::{Engine, Source};
use crate::store::{Store, StoreError};
use machine::{Ack, Entry, Event, Phase, RuleAlerts, Transition};

/// Most unwritten changes kept while the database is down; beyond it the
/// oldest history rows are dropped (the state rows are rewritten anyway).
const MAX_UNWRITTEN: usize = 100_000;

/// How often history past its retention is deleted.
const PRUNE_HISTORY_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether a rule's last evaluation worked (Prometheus' `health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// One rule and what its evaluations left behind.
#[derive(Debug, Clone)]
pub struct RuleRun {
    pub rule: Rule,
    pub health: Health,
    pub last_error: Option<String>,
    pub last_eval_ms: Option<i64>,
    pub last_duration_s: f64,
    pub alerts: RuleAlerts,
}

/// One group, its schedule and its rules.
#[derive(Debug, Clone)]
pub struct GroupRun {
    pub name: String,
    pub file: PathBuf,
    pub interval_ms: i64,
    pub next_due_ms: i64,
    pub last_eval_ms: Option<i64>,
    pub last_duration_s: f64,
    pub rules: Vec<RuleRun>,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) groups: Vec<GroupRun>,
    /// `VigilAgentDown` alerts.
    pub(crate) deadman: RuleAlerts,
    pub(crate) next_deadman_ms: i64,
    /// Time of the first round: a host counts as silent only since then,
    /// so an aggregator that was down does not page for every agent.
    pub(crate) started_ms: Option<i64>,
    /// Alerts whose rule went away (reload) or was unknown on restore:
    /// sent as resolved, then dropped.
    pub(crate) retired: RuleAlerts,
    pub(crate) restored: bool,
}

impl Inner {
    pub(crate) fn all_alerts(&self) -> impl Iterator<Item = &Entry> {
        self.groups
            .iter()
            .flat_map(|g| g.rules.iter().flat_map(|r| r.alerts.alerts.values()))
            .chain(self.deadman.alerts.values())
            .chain(self.retired.alerts.values())
    }

    pub(crate) fn all_alerts_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.groups
            .iter_mut()
            .flat_map(|g| {
                g.rules
                    .iter_mut()
                    .flat_map(|r| r.alerts.alerts.values_mut())
            })
            .chain(self.deadman.alerts.values_mut())
            .chain(self.retired.alerts.values_mut())
    }
}

/// An active alert as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    pub fingerprint: u64,
    pub rule: String,
    pub group: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub phase: Phase,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub keep_firing_since_ms: Option<i64>,
    pub value: f64,
    pub ack: Option<Ack>,
    pub escalated_at_ms: Option<i64>,
    pub flapping: bool,
}

/// Why an acknowledgement was refused.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("no active alert with id {0}")]
    NotFound(String),
    #[error("alert {0} is pending, not firing: only firing alerts can be acknowledged")]
    NotFiring(String),
    #[error("alert {id} was already acknowledged by {by}")]
    AlreadyAcked { id: String, by: String },
    /// A cluster follower: alert state is the leader's to change.
    #[error("this aggregator is a follower; acknowledge the alert on the leader ({0})")]
    NotLeader(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a reload was refused (the old rules keep running).
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadErrors(pub Vec<String>);

/// What a reload loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub groups: usize,
    pub rules: usize,
}

/// The evaluator; one per aggregator, shared through `AppState`.
pub struct Evaluator {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) source: Arc<dyn Source>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) sink: Arc<dyn AlertSink>,
    pub(crate) metrics: AlertMetrics,
    pub(crate) config: AlertingConfig,
    base_dir: PathBuf,
    pub(crate) inner: Mutex<Inner>,
    /// Serialises rounds, reloads and acknowledgements (held across their
    /// awaits on purpose: that is what it is for).
    pub(crate) turn: tokio::sync::Mutex<()>,
    /// Changes whose write failed, retried with the next round's.
    pub(crate) unwritten: Mutex<Changes>,
    /// False on a cluster follower: its state is a read-only copy of the
    /// leader's ([`Evaluator::mirror`]) and acknowledgements are refused.
    leading: AtomicBool,
    /// Who leads, for the follower's refusal message.
    leader_hint: Mutex<String>,
    /// When the round loop ([`Evaluator::spawn`]) last went around (ms):
    /// a cluster leader whose loop is stuck gives up the lead.
    beat_ms: AtomicI64,
}

impl Evaluator {
    /// An evaluator with no rules yet (see [`Evaluator::reload`]).
    pub fn new(
        store: Arc<dyn Store>,
        source: Arc<dyn Source>,
        engine: Arc<Engine>,
        sink: Arc<dyn AlertSink>,
        metrics: AlertMetrics,
        config: AlertingConfig,
        base_dir: PathBuf,
    ) -> Evaluator {
        Evaluator {
            store,
            source,
            engine,
            sink,
            metrics,
            config,
            base_dir,
            inner: Mutex::new(Inner::default()),
            turn: tokio::sync::Mutex::new(()),
            unwritten: Mutex::new(Changes::default()),
            leading: AtomicBool::new(true),
            leader_hint: Mutex::new(String::new()),
            beat_ms: AtomicI64::new(0),
        }
    }

    /// When the round loop last went around (ms since the epoch).
    pub fn last_beat_ms(&self) -> i64 {
        self.beat_ms.load(Ordering::Acquire)
    }

    /// Whether this evaluator owns the alert state (always, outside a cluster).
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// This node became the cluster leader: forget whatever state it held
    /// (a follower's copy, or what it had when it led before) so the next
    /// round restores the current state from the database, then evaluate
    /// and acknowledge as the owner. Call before [`Evaluator::spawn`].
    pub async fn lead(&self) {
        let _turn = self.turn.lock().await;
        forget(&mut self.lock());
        *self.unwritten.lock().unwrap_or_else(|e| e.into_inner()) = Changes::default();
        self.beat_ms
            .store(vigil_common::now_ms(), Ordering::Release);
        self.leading.store(true, Ordering::Release);
    }

    /// This node follows `leader` (after its round task was stopped):
    /// acknowledgements are refused from now on; [`Evaluator::mirror`]
    /// keeps a read-only copy of the leader's state for the API.
    pub async fn follow(&self, leader: &str) {
        let _turn = self.turn.lock().await;
        self.leading.store(false, Ordering::Release);
        *self.leader_hint.lock().unwrap_or_else(|e| e.into_inner()) = leader.to_string();
        *self.unwritten.lock().unwrap_or_else(|e| e.into_inner()) = Changes::default();
    }

    /// On a follower: replaces the in-memory alerts with the state the
    /// leader last wrote, so the alerts API and dashboard of every node
    /// show the same alerts. Does nothing on the leader.
    pub async fn mirror(&self, leader: &str) -> Result<usize, StoreError> {
        let _turn = self.turn.lock().await;
        if self.is_leading() {
            return Ok(0);
        }
        *self.leader_hint.lock().unwrap_or_else(|e| e.into_inner()) = leader.to_string();
        let entries = state::load(&self.store.db()).await?;
        let mut inner = self.lock();
        forget(&mut inner);
        Ok(place(&mut inner, entries))
    }

    /// An evaluator with the default `[alerting]` config, no rules and a
    /// [`super::NullSink`] (tests and tools that build an `AppState`).
    pub fn detached(
        store: Arc<dyn Store>,
        source: Arc<dyn Source>,
        engine: Arc<Engine>,
        metrics: AlertMetrics,
    ) -> Arc<Evaluator> {
        Arc::new(Evaluator::new(
            store,
            source,
            engine,
            Arc::new(super::NullSink),
            metrics,
            AlertingConfig::default(),
            PathBuf::from("."),
        ))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough state
        // (plain maps); keep alerting rather than poison every later call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &AlertingConfig {
        &self.config
    }

    /// Whether notifications for these labels are held back (the sink decides).
    pub fn muted(&self, labels: &LabelSet) -> Option<Muted> {
        self.sink.muted(labels)
    }

    /// Reads `rule_files` again and swaps the rules in atomically; alerts
    /// of rules that still exist (same name) keep their state. On any error
    /// nothing changes and every problem is returned.
    pub async fn reload(&self) -> Result<Loaded, ReloadErrors> {
        let paths = self
            .config
            .rule_paths(&self.base_dir)
            .map_err(ReloadErrors)?;
        let set = super::rules::load_files(&paths)
            .map_err(|RuleErrors { errors }| ReloadErrors(errors))?;
        let _turn = self.turn.lock().await;
        Ok(self.install(set))
    }

    /// Installs `set` (already validated).
    pub async fn install_rules(&self, set: RuleSet) -> Loaded {
        let _turn = self.turn.lock().await;
        self.install(set)
    }

    fn install(&self, set: RuleSet) -> Loaded {
        let default_ms = machine::duration_ms(self.config.evaluation_interval);
        let mut inner = self.lock();
        let mut old: HashMap<String, Vec<Entry>> = HashMap::new();
        for g in inner.groups.drain(..) {
            for r in g.rules {
                for (_, e) in r.alerts.alerts {
                    old.entry(e.rule.clone()).or_default().push(e);
                }
            }
        }
        let mut loaded = Loaded {
            groups: set.groups.len(),
            rules: 0,
        };
        inner.groups = set
            .groups
            .into_iter()
            .map(|g| group_run(g, default_ms, &mut old, &mut loaded))
            .collect();
        // Rules that went away: their active alerts resolve.
        for e in old.into_values().flatten() {
            retire(&mut inner, e);
        }
        info!(groups = loaded.groups, rules = loaded.rules, "rules loaded");
        loaded
    }

    /// Loads persisted alert state into the loaded rules (once; a later
    /// call does nothing). Alerts of unknown rules resolve at the next round.
    pub async fn restore(&self) -> Result<usize, StoreError> {
        let _turn = self.turn.lock().await;
        self.restore_locked().await
    }

    pub(crate) async fn restore_locked(&self) -> Result<usize, StoreError> {
        if self.lock().restored {
            return Ok(0);
        }
        let entries = state::load(&self.store.db()).await?;
        let mut inner = self.lock();
        let n = place(&mut inner, entries);
        inner.restored = true;
        info!(alerts = n, "alert state restored");
        Ok(n)
    }

    /// Every pending and firing alert, ordered by rule then labels.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let inner = self.lock();
        let mut out: Vec<ActiveAlert> = inner
            .all_alerts()
            .filter(|e| e.phase != Phase::Inactive)
            .map(|e| ActiveAlert {
                fingerprint: e.fingerprint(),
                rule: e.rule.clone(),
                group: e.group.clone(),
                labels: e.labels.clone(),
                annotations: e.annotations.clone(),
                phase: e.phase,
                active_at_ms: e.active_at_ms,
                fired_at_ms: e.fired_at_ms,
                keep_firing_since_ms: e.keep_firing_since_ms,
                value: e.value,
                ack: e.ack.clone(),
                escalated_at_ms: e.escalated_at_ms,
                flapping: e.flap.flapping,
            })
            .collect();
        out.sort_by(|a, b| (&a.rule, &a.labels).cmp(&(&b.rule, &b.labels)));
        out
    }

    /// The groups and rules with their health, for `/prometheus/api/v1/rules`.
    pub fn groups(&self) -> Vec<GroupRun> {
        self.lock().groups.clone()
    }

    /// Acknowledges the firing alert `fp` (its hex id is `id`): recorded in
    /// its state and history; it will not be escalated.
    pub async fn ack(
        &self,
        fp: u64,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<Ack, AckError> {
        let id = state::fp_hex(fp);
        let _turn = self.turn.lock().await;
        if !self.is_leading() {
            let leader = self
                .leader_hint
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return Err(AckError::NotLeader(leader));
        }
        let ack = Ack {
            by: by.to_string(),
            at_ms: now_ms,
            comment: comment.to_string(),
        };
        let changes = {
            let inner = self.lock();
            let e = inner
                .all_alerts()
                .find(|e| e.phase != Phase::Inactive && e.fingerprint() == fp)
                .ok_or_else(|| AckError::NotFound(id.clone()))?;
            if e.phase != Phase::Firing {
                return Err(AckError::NotFiring(id));
            }
            if let Some(a) = &e.ack {
                return Err(AckError::AlreadyAcked {
                    id,
                    by: a.by.clone(),
                });
            }
            let mut acked = e.clone();
            acked.ack = Some(ack.clone());
            let mut t = Transition::of(&acked, Event::Acknowledged, now_ms);
            t.detail = serde_json::json!({"by": by, "comment": comment}).to_string();
            Changes {
                upserts: vec![acked],
                deletes: vec![],
                history: vec![t],
            }
        };
        state::write(&self.store.db(), &changes).await?;
        let mut inner = self.lock();
        if let Some(e) = inner
            .all_alerts_mut()
            .find(|e| e.phase == Phase::Firing && e.fingerprint() == fp)
        {
            e.ack = Some(ack.clone());
        }
        Ok(ack)
    }

    /// Runs due groups forever (the production loop; tests call
    /// [`Evaluator::round_at`] with their own clock instead).
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut pruned_at: Option<std::time::Instant> = None;
            loop {
                let now = vigil_common::now_ms();
                self.beat_ms.store(now, Ordering::Release);
                if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_HISTORY_EVERY) {
                    pruned_at = Some(std::time::Instant::now());
                    self.prune_history(now).await;
                }
                if let Err(e) = self.tick(now, false).await {
                    // The state could not be restored (database down):
                    // nothing is evaluated until it can be.
                    warn!(error = %e, "alert evaluation round failed; retrying in 5 s");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    continue;
                }
                let next = self.next_due_ms().max(now + 100);
                let wait = u64::try_from(next - vigil_common::now_ms()).unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(wait.clamp(100, 60_000))).await;
            }
        })
    }

    /// Reloads the rule files on every SIGHUP (a broken file is logged and
    /// the old rules keep running). The handler is installed before this
    /// returns, so a SIGHUP sent afterwards is never the default (exit).
    pub fn reload_on_sighup(self: Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let result = self.reload().await;
                crate::audit::note(
                    &self.store.db(),
                    crate::audit::Event::new(
                        crate::audit::Actor::system("sighup"),
                        crate::audit::Action::RulesReload,
                        "rules",
                    )
                    .details(crate::audit::reload_details(&result)),
                )
                .await;
                match result {
                    Ok(l) => info!(groups = l.groups, rules = l.rules, "SIGHUP: rules reloaded"),
                    Err(e) => tracing::error!(
                        errors = %e.0.join("; "),
                        "SIGHUP: rule files rejected; the old rules keep running"
                    ),
                }
            }
        }))
    }

    /// Deletes history older than `[alerting] history_retention` (a failure
    /// is logged; the next hour tries again).
    pub async fn prune_history(&self, now_ms: i64) -> Option<u64> {
        let keep = i64::try_from(self.config.history_retention.as_millis()).unwrap_or(i64::MAX);
        match state::prune_history(&self.store.db(), now_ms.saturating_sub(keep)).await {
            Ok(n) => {
                if n > 0 {
                    info!(rows = n, "alert history: pruned rows past the retention");
                }
                Some(n)
            }
            Err(e) => {
                warn!(error = %e, "alert history: prune failed; retrying in an hour");
                None
            }
        }
    }

    fn next_due_ms(&self) -> i64 {
        let inner = self.lock();
        inner
            .groups
            .iter()
            .map(|g| g.next_due_ms)
            .chain([inner.next_deadman_ms])
            .min()
            .unwrap_or(i64::MAX)
    }

    /// One round at `now_ms` evaluating every group and the dead-man check,
    /// whatever their schedule.
    pub async fn round_at(&self, now_ms: i64) -> Result<(), StoreError> {
        self.tick(now_ms, true).await
    }
}

fn group_run(
    g: RuleGroup,
    default_ms: i64,
    old: &mut HashMap<String, Vec<Entry>>,
    loaded: &mut Loaded,
) -> GroupRun {
    let rules = g
        .rules
        .into_iter()
        .map(|rule| {
            loaded.rules += 1;
            let mut alerts = RuleAlerts::default();
            if let Rule::Alerting(a) = &rule {
                // The first rule of a name takes that name's alerts.
                for mut e in old.remove(&a.name).unwrap_or_default() {
                    e.group = g.name.clone();
                    alerts.alerts.insert(e.fingerprint(), e);
                }
            }
            RuleRun {
                rule,
                health: Health::Unknown,
                last_error: None,
                last_eval_ms: None,
                last_duration_s: 0.0,
                alerts,
            }
        })
        .collect();
    GroupRun {
        name: g.name,
        file: g.file,
        interval_ms: g.interval.map_or(default_ms, machine::duration_ms).max(1),
        next_due_ms: 0,
        last_eval_ms: None,
        last_duration_s: 0.0,
        rules,
    }
}

/// Puts persisted alerts into the loaded rules (alerts of unknown rules
/// are retired); returns how many.
fn place(inner: &mut Inner, entries: Vec<Entry>) -> usize {
    let n = entries.len();
    for e in entries {
        let fp = e.fingerprint();
        if e.rule == deadman::ALERT_NAME {
            inner.deadman.alerts.insert(fp, e);
            continue;
        }
        let home = inner
            .groups
            .iter_mut()
            .flat_map(|g| g.rules.iter_mut())
            .find(|r| matches!(&r.rule, Rule::Alerting(a) if a.name == e.rule));
        match home {
            Some(r) => {
                r.alerts.alerts.insert(fp, e);
            }
            None => retire(inner, e),
        }
    }
    n
}

/// Drops every alert and schedule, keeping the rules: the next round
/// restores the state from the database and evaluates every group.
fn forget(inner: &mut Inner) {
    for g in &mut inner.groups {
        g.next_due_ms = 0;
        for r in &mut g.rules {
            r.alerts = RuleAlerts::default();
        }
    }
    inner.deadman = RuleAlerts::default();
    inner.retired = RuleAlerts::default();
    inner.next_deadman_ms = 0;
    inner.started_ms = None;
    inner.restored = false;
}

/// Keeps `e` only to send it as resolved: an active alert whose rule is
/// gone resolves at the next round (see `round.rs`).
fn retire(inner: &mut Inner, mut e: Entry) {
    e.flap = machine::Flap::default();
    inner.retired.alerts.insert(e.fingerprint(), e);
}

#[cfg(test)]
mod tests;
