//! The dispatcher's state, free of I/O and of the clock (every call takes
//! `now`), so timers are tested by passing times.
//!
//! Alertmanager's aggregation, step by step:
//! - [`Core::ingest`]: each alert goes to every route that takes it (see
//!   `config::route`), into the group of that route named by its `group_by`
//!   label values. A new group flushes after `group_wait` (at once if the
//!   alert started longer than `group_wait` ago), then every
//!   `group_interval`.
//! - [`Core::flush_due`]: at a group's flush its alerts muted right now
//!   (maintenance, inhibition, silences) are left out; a route outside its
//!   active / inside its mute time intervals sends nothing. The rest is
//!   compared with the notification log entry of (group, receiver): a
//!   notification goes out when a firing alert was not in the last one, when
//!   an alert resolved since (and the last one had firing alerts), or when
//!   `repeat_interval` passed; never for a group that only ever had resolved
//!   alerts.
//! - [`Core::commit`] (after the outbox took the notification): the log
//!   entry is updated and the group's resolved alerts are dropped; an empty
//!   group is removed.
//! - A firing alert the evaluator stopped resending for `resolve_timeout`
//!   is resolved here ([`Core::expire_stale`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::alert::{Alert, LabelSet, Muted};
use crate::notify::Notification;
use crate::notify::config::NotifyPlan;
use crate::notify::config::route::Route;

use super::inhibit::Index;

/// The last notification of a (group, receiver): Alertmanager's nflog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    /// How many notifications went out before this one (0 for the first).
    pub seq: i64,
    pub sent_at_ms: i64,
}

/// A group of alerts of one route with the same group labels.
#[derive(Debug, Clone)]
struct Group {
    receiver: String,
    group_labels: LabelSet,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
    mute_time_intervals: Vec<String>,
    active_time_intervals: Vec<String>,
    alerts: BTreeMap<u64, Alert>,
    next_flush_ms: i64,
}

/// What a flush decided for one group.
#[derive(Debug, Clone)]
pub struct Flush {
    pub group_key: String,
    pub receiver: String,
    /// `None`: nothing to send (still [`Core::commit`] it).
    pub notification: Option<Notification>,
    /// The log entry to store once the notification is enqueued.
    pub entry: Option<LogEntry>,
    /// Resolved alerts to drop from the group after the commit.
    pub resolved: Vec<(u64, Alert)>,
}

/// Why an alert was left out of a flush (metrics label).
pub fn reason(m: &Muted) -> &'static str {
    match m {
        Muted::Silenced { .. } => "silence",
        Muted::Inhibited { .. } => "inhibition",
        Muted::Maintenance { .. } => "maintenance",
    }
}

/// Grouping state.
pub struct Core {
    plan: std::sync::Arc<NotifyPlan>,
    resolve_timeout_ms: i64,
    /// Firing alerts, with when the evaluator last sent each.
    firing: HashMap<u64, (Alert, i64)>,
    /// Firing alerts only, for inhibition.
    sources: HashMap<u64, Alert>,
    groups: BTreeMap<String, Group>,
    log: HashMap<(String, String), LogEntry>,
    /// Inhibition sources, rebuilt after the firing alerts change.
    index: Option<Index>,
}

impl Core {
    pub fn new(plan: std::sync::Arc<NotifyPlan>, resolve_timeout_ms: i64) -> Core {
        Core {
            plan,
            resolve_timeout_ms,
            firing: HashMap::new(),
            sources: HashMap::new(),
            groups: BTreeMap::new(),
            log: HashMap::new(),
            index: None,
        }
    }

    pub fn plan(&self) -> &NotifyPlan {
        &self.plan
    }

    /// The same plan and settings with nothing remembered (a new leader
    /// starts from the database's notification log, not from this one).
    pub fn fresh(&self) -> Core {
        Core::new(self.plan.clone(), self.resolve_timeout_ms)
    }

    /// Replaces the notification log (loaded from the database).
    pub fn set_log(&mut self, log: HashMap<(String, String), LogEntry>) {
        self.log = log;
    }

    /// Number of groups (tests, metrics).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Takes in one evaluation round.
    pub fn ingest(&mut self, alerts: Vec<Alert>, now_ms: i64) {
        self.index = None;
        for alert in alerts {
            let fp = alert.fingerprint();
            if alert.is_resolved() {
                self.firing.remove(&fp);
                self.sources.remove(&fp);
            } else {
                self.firing.insert(fp, (alert.clone(), now_ms));
                self.sources.insert(fp, alert.clone());
            }
            self.place(fp, alert, now_ms);
        }
    }

    /// Puts `alert` into the group of every route that takes it.
    fn place(&mut self, fp: u64, alert: Alert, now_ms: i64) {
        let plan = self.plan.clone();
        for route in plan.route.matching(&alert.labels) {
            let group_labels = route.group_by.group_labels(&alert.labels);
            let key = group_key(route, &group_labels);
            let group = self.groups.entry(key).or_insert_with(|| {
                let wait = ms(route.group_wait);
                // An alert that started long ago is notified without waiting.
                let first = if alert.starts_at_ms.saturating_add(wait) < now_ms {
                    now_ms
                } else {
                    now_ms + wait
                };
                Group {
                    receiver: route.receiver.clone(),
                    group_labels,
                    group_interval_ms: ms(route.group_interval),
                    repeat_interval_ms: ms(route.repeat_interval),
                    mute_time_intervals: route.mute_time_intervals.clone(),
                    active_time_intervals: route.active_time_intervals.clone(),
                    alerts: BTreeMap::new(),
                    next_flush_ms: first,
                }
            });
            group.alerts.insert(fp, alert.clone());
        }
    }

    /// Resolves firing alerts not resent for `resolve_timeout`.
    pub fn expire_stale(&mut self, now_ms: i64) {
        let stale: Vec<u64> = self
            .firing
            .iter()
            .filter(|(_, (_, seen))| seen.saturating_add(self.resolve_timeout_ms) <= now_ms)
            .map(|(fp, _)| *fp)
            .collect();
        for fp in stale {
            self.index = None;
            if let Some((mut alert, seen)) = self.firing.remove(&fp) {
                self.sources.remove(&fp);
                alert.ends_at_ms = Some(seen.saturating_add(self.resolve_timeout_ms));
                self.place(fp, alert, now_ms);
            }
        }
    }

    /// When the next group is due.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// Which firing alert inhibits `labels`, if any.
    pub fn inhibited(&mut self, labels: &LabelSet) -> Option<u64> {
        let index = self
            .index
            .get_or_insert_with(|| Index::new(&self.plan.inhibit_rules, &self.sources));
        index.inhibited_by(&self.plan.inhibit_rules, labels)
    }

    /// Flushes every group due at `now_ms`. `mutes` says whether silences or
    /// maintenance hold an alert back; `suppressed` is told each alert left
    /// out and why.
    pub fn flush_due(
        &mut self,
        now_ms: i64,
        mutes: &dyn Fn(&LabelSet) -> Option<Muted>,
        suppressed: &mut dyn FnMut(&str),
    ) -> Vec<Flush> {
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        // Taken out for the loop (which borrows the groups) and put back.
        let index = self
            .index
            .take()
            .unwrap_or_else(|| Index::new(&self.plan.inhibit_rules, &self.sources));
        for key in due {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            group.next_flush_ms = now_ms + group.group_interval_ms;
            let group = group.clone();
            let resolved_all: Vec<(u64, Alert)> = group
                .alerts
                .iter()
                .filter(|(_, a)| a.is_resolved())
                .map(|(fp, a)| (*fp, a.clone()))
                .collect();
            let time_muted = self
                .plan
                .in_any_interval(&group.mute_time_intervals, now_ms)
                || (!group.active_time_intervals.is_empty()
                    && !self
                        .plan
                        .in_any_interval(&group.active_time_intervals, now_ms));
            if time_muted {
                suppressed("time_interval");
                out.push(Flush {
                    group_key: key,
                    receiver: group.receiver,
                    notification: None,
                    entry: None,
                    resolved: resolved_all,
                });
                continue;
            }
            let mut kept = Vec::new();
            for (fp, alert) in &group.alerts {
                let muted = mutes(&alert.labels).or_else(|| {
                    index
                        .inhibited_by(&self.plan.inhibit_rules, &alert.labels)
                        .map(|by| Muted::Inhibited { by: vec![by] })
                });
                match muted {
                    Some(m) => suppressed(reason(&m)),
                    None => kept.push((*fp, alert.clone())),
                }
            }
            let firing: BTreeSet<u64> = kept
                .iter()
                .filter(|(_, a)| !a.is_resolved())
                .map(|(f, _)| *f)
                .collect();
            let resolved: BTreeSet<u64> = kept
                .iter()
                .filter(|(_, a)| a.is_resolved())
                .map(|(f, _)| *f)
                .collect();
            let last = self.log.get(&(key.clone(), group.receiver.clone()));
            // Everything muted: nothing to say (Alertmanager's mute stage
            // ends the pipeline before the dedup stage).
            let send = !kept.is_empty()
                && needs_update(last, &firing, &resolved, group.repeat_interval_ms, now_ms);
            let (notification, entry) = if send {
                let seq = last.map_or(0, |e| e.seq + 1);
                let n = notification(&key, &group, kept, seq);
                let entry = LogEntry {
                    firing,
                    resolved,
                    seq,
                    sent_at_ms: now_ms,
                };
                (Some(n), Some(entry))
            } else {
                (None, None)
            };
            out.push(Flush {
                group_key: key,
                receiver: group.receiver,
                notification,
                entry,
                resolved: resolved_all,
            });
        }
        self.index = Some(index);
        out
    }

    /// Records a flush as done: the log entry, and the resolved alerts
    /// dropped unless they changed since.
    pub fn commit(&mut self, flush: &Flush) {
        if let Some(entry) = &flush.entry {
            self.log.insert(
                (flush.group_key.clone(), flush.receiver.clone()),
                entry.clone(),
            );
        }
        if let Some(group) = self.groups.get_mut(&flush.group_key) {
            for (fp, alert) in &flush.resolved {
                if group.alerts.get(fp) == Some(alert) {
                    group.alerts.remove(fp);
                }
            }
            if group.alerts.is_empty() {
                self.groups.remove(&flush.group_key);
            }
        }
    }

    /// Log entries older than `cutoff_ms` are forgotten.
    pub fn forget_log_before(&mut self, cutoff_ms: i64) {
        self.log.retain(|_, e| e.sent_at_ms >= cutoff_ms);
    }
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Alertmanager's group key: the route's id and the group labels.
pub fn group_key(route: &Route, group_labels: &LabelSet) -> String {
    let labels: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{}:{{{}}}", route.id, labels.join(","))
}

/// Alertmanager's dedup decision (with `send_resolved`: the receiver
/// decides whether to deliver resolved alerts).
pub fn needs_update(
    last: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    repeat_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(last) = last else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&last.firing) {
        return true;
    }
    if firing.is_empty() {
        // Everything resolved: tell the receiver if it knew of firing ones.
        return !last.firing.is_empty();
    }
    if !resolved.is_subset(&last.resolved) {
        return true;
    }
    last.sent_at_ms.saturating_add(repeat_ms) <= now_ms
}

/// The notification for a group's kept alerts (firing first).
fn notification(key: &str, group: &Group, mut alerts: Vec<(u64, Alert)>, seq: i64) -> Notification {
    alerts
        .sort_by(|(_, a), (_, b)| (a.is_resolved(), &a.labels).cmp(&(b.is_resolved(), &b.labels)));
    // FNV-1a over the state: firing (fingerprint, start), then resolved.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (fp, a) in &alerts {
        let words = [*fp, a.starts_at_ms as u64, u64::from(a.is_resolved())];
        for b in words.iter().flat_map(|w| w.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let alerts: Vec<Alert> = alerts.into_iter().map(|(_, a)| a).collect();
    Notification {
        dedup_key: format!("{}|{key}|{h:016x}|{seq}", group.receiver),
        receiver: group.receiver.clone(),
        group_key: key.to_string(),
        group_labels: group.group_labels.clone(),
        common_labels: common(alerts.iter().map(|a| &a.labels)),
        common_annotations: common(alerts.iter().map(|a| &a.annotations)),
        alerts,
        truncated_alerts: 0,
        escalation: false,
    }
}

/// The pairs every set has.
pub fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
