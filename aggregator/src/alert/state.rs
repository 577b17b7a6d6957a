//! Alert state and history in the database (migration `0005_alerts.sql`),
//! through [`Store::db`](crate::store::Store::db), the same SQL on both
//! backends:
//!
//! - `alert_state`: one row per pending, firing or recently resolved alert,
//!   keyed by (rule name, fingerprint): its labels, annotations, times
//!   (`active_at` keeps a pending alert's `for` timer across a restart,
//!   `fired_at` is the `starts_at` the notifier saw), last value, flap
//!   history, acknowledgement and escalation. Written when something
//!   changed, never per alert per round otherwise.
//! - `alert_history`: every transition (`pending`, `firing`, `resolved`,
//!   `inactive`, `acknowledged`, `escalated`, `flapping_start`,
//!   `flapping_stop`) with its time, value and labels; `rule`, `host`,
//!   `severity` and `team` are indexed columns for the history API.
//!
//! Values: NaN is stored as NULL (SQLite cannot keep it) and read back as NaN.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::LabelSet;
use super::eval::machine::{Ack, Entry, Flap, Phase, Transition};
use crate::store::{Db, StoreError};

/// What one round (or one acknowledgement) writes, in one transaction.
#[derive(Debug, Default)]
pub struct Changes {
    pub upserts: Vec<Entry>,
    /// (rule, fingerprint) rows to delete.
    pub deletes: Vec<(String, u64)>,
    pub history: Vec<Transition>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty() && self.history.is_empty()
    }

    pub fn len(&self) -> usize {
        self.upserts.len() + self.deletes.len() + self.history.len()
    }

    /// Adds `later` after these changes (a failed write retried with the
    /// next). A row's last change wins: [`write`] runs deletes before
    /// upserts, so an earlier upsert of a row `later` deletes is dropped,
    /// and so is an earlier delete of a row `later` upserts.
    pub fn append(&mut self, later: Changes) {
        let deleted: std::collections::HashSet<(String, u64)> =
            later.deletes.iter().cloned().collect();
        let upserted: std::collections::HashSet<(String, u64)> = later
            .upserts
            .iter()
            .map(|e| (e.rule.clone(), e.fingerprint()))
            .collect();
        self.upserts
            .retain(|e| !deleted.contains(&(e.rule.clone(), e.fingerprint())));
        self.deletes.retain(|d| !upserted.contains(d));
        self.upserts.extend(later.upserts);
        self.deletes.extend(later.deletes);
        self.history.extend(later.history);
    }
}

/// A fingerprint as stored and shown: 16 hex digits.
pub fn fp_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// The reverse of [`fp_hex`].
pub fn parse_fp(s: &str) -> Option<u64> {
    (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?
}

#[derive(Serialize, Deserialize)]
struct FlapJson {
    history: String,
    flapping: bool,
    starts_at_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct AckJson {
    by: String,
    at_ms: i64,
    comment: String,
}

fn nan_to_null(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("alert_state.{what}: {e}"))
}

const UPSERT: &str = "INSERT INTO alert_state (rule, fingerprint, group_name, labels, annotations,
        state, active_at_ms, fired_at_ms, resolved_at_ms, keep_firing_since_ms, value,
        series_fp, flap, ack, escalated_at_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
     ON CONFLICT (rule, fingerprint) DO UPDATE SET group_name = excluded.group_name,
        labels = excluded.labels, annotations = excluded.annotations, state = excluded.state,
        active_at_ms = excluded.active_at_ms, fired_at_ms = excluded.fired_at_ms,
        resolved_at_ms = excluded.resolved_at_ms,
        keep_firing_since_ms = excluded.keep_firing_since_ms, value = excluded.value,
        series_fp = excluded.series_fp, flap = excluded.flap, ack = excluded.ack,
        escalated_at_ms = excluded.escalated_at_ms";
const DELETE: &str = "DELETE FROM alert_state WHERE rule = $1 AND fingerprint = $2";
const INSERT_HISTORY: &str = "INSERT INTO alert_history (ts_ms, event, rule, fingerprint, host,
        severity, team, value, labels, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const SELECT_STATE: &str = "SELECT rule, fingerprint, group_name, labels, annotations, state,
        active_at_ms, fired_at_ms, resolved_at_ms, keep_firing_since_ms, value, series_fp, flap,
        ack, escalated_at_ms FROM alert_state";
/// Newest first; every filter optional (NULL), `$8` is the cursor (ids below it).
const SELECT_HISTORY: &str = "SELECT id, ts_ms, event, rule, fingerprint, host, severity, team,
        value, labels, detail FROM alert_history
     WHERE ts_ms >= $1 AND ts_ms <= $2
       AND ($3 IS NULL OR rule = $3) AND ($4 IS NULL OR host = $4)
       AND ($5 IS NULL OR severity = $5) AND ($6 IS NULL OR team = $6)
       AND ($7 IS NULL OR event = $7) AND id < $8
     ORDER BY id DESC LIMIT $9";

type StateRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    String,
    String,
    Option<String>,
    Option<i64>,
);

type HistoryTuple = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<f64>,
    String,
    String,
);

fn entry_from_row(r: StateRow) -> Result<Entry, StoreError> {
    let (rule, fp, group, labels, annotations, state, active, fired, resolved, keep, value) =
        (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10);
    let (series_fp, flap, ack, escalated) = (r.11, r.12, r.13, r.14);
    let labels: LabelSet = serde_json::from_str(&labels).map_err(|e| corrupt("labels", e))?;
    if parse_fp(&fp) != Some(super::fingerprint(&labels)) {
        return Err(corrupt(
            "fingerprint",
            format!("{fp} does not match its labels"),
        ));
    }
    let flap: FlapJson = serde_json::from_str(&flap).map_err(|e| corrupt("flap", e))?;
    let ack = ack
        .map(|a| serde_json::from_str::<AckJson>(&a))
        .transpose()
        .map_err(|e| corrupt("ack", e))?;
    Ok(Entry {
        rule,
        group,
        annotations: serde_json::from_str(&annotations).map_err(|e| corrupt("annotations", e))?,
        labels,
        phase: Phase::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        active_at_ms: active,
        fired_at_ms: fired,
        resolved_at_ms: resolved,
        keep_firing_since_ms: keep,
        value: value.unwrap_or(f64::NAN),
        series_fp: parse_fp(&series_fp).ok_or_else(|| corrupt("series_fp", &series_fp))?,
        flap: Flap {
            history: flap
                .history
                .chars()
                .map(|c| c == '1')
                .collect::<VecDeque<_>>(),
            flapping: flap.flapping,
            starts_at_ms: flap.starts_at_ms,
        },
        ack: ack.map(|a| Ack {
            by: a.by,
            at_ms: a.at_ms,
            comment: a.comment,
        }),
        escalated_at_ms: escalated,
        last_sent_ms: None,
        sent_flapping: flap.flapping,
        dirty: false,
    })
}

/// Every `event` an `alert_history` row may have (the history filters
/// accept these).
pub const HISTORY_EVENTS: &[&str] = &[
    "pending",
    "firing",
    "resolved",
    "inactive",
    "acknowledged",
    "escalated",
    "flapping_start",
    "flapping_stop",
];

/// One row of `alert_history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub ts_ms: i64,
    pub event: String,
    pub rule: String,
    /// The alert's id (its fingerprint, hex).
    pub fingerprint: String,
    pub host: String,
    pub severity: String,
    pub team: String,
    pub value: Option<f64>,
    pub labels: LabelSet,
    /// Event details (`acknowledged`: by, comment; `escalated`: receiver).
    pub detail: serde_json::Value,
}

fn history_from_row(r: HistoryTuple) -> HistoryRow {
    HistoryRow {
        id: r.0,
        ts_ms: r.1,
        event: r.2,
        rule: r.3,
        fingerprint: r.4,
        host: r.5,
        severity: r.6,
        team: r.7,
        value: r.8,
        labels: serde_json::from_str(&r.9).unwrap_or_default(),
        detail: serde_json::from_str(&r.10).unwrap_or(serde_json::Value::Null),
    }
}

/// A history query: every filter optional; `before_id` pages.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub rule: Option<String>,
    pub host: Option<String>,
    pub severity: Option<String>,
    pub team: Option<String>,
    pub event: Option<String>,
    /// Only rows with a smaller id (the cursor); `None`: from the newest.
    pub before_id: Option<i64>,
    pub limit: usize,
}

macro_rules! write_impl {
    ($pool:expr, $changes:expr) => {{
        let mut tx = $pool.begin().await?;
        for (rule, fp) in &$changes.deletes {
            sqlx::query(DELETE)
                .bind(rule)
                .bind(fp_hex(*fp))
                .execute(&mut *tx)
                .await?;
        }
        for e in &$changes.upserts {
            let flap = FlapJson {
                history: e
                    .flap
                    .history
                    .iter()
                    .map(|&f| if f { '1' } else { '0' })
                    .collect(),
                flapping: e.flap.flapping,
                starts_at_ms: e.flap.starts_at_ms,
            };
            let ack = e.ack.as_ref().map(|a| {
                json(&AckJson {
                    by: a.by.clone(),
                    at_ms: a.at_ms,
                    comment: a.comment.clone(),
                })
            });
            sqlx::query(UPSERT)
                .bind(&e.rule)
                .bind(fp_hex(e.fingerprint()))
                .bind(&e.group)
                .bind(json(&e.labels))
                .bind(json(&e.annotations))
                .bind(e.phase.as_str())
                .bind(e.active_at_ms)
                .bind(e.fired_at_ms)
                .bind(e.resolved_at_ms)
                .bind(e.keep_firing_since_ms)
                .bind(nan_to_null(e.value))
                .bind(fp_hex(e.series_fp))
                .bind(json(&flap))
                .bind(ack)
                .bind(e.escalated_at_ms)
                .execute(&mut *tx)
                .await?;
        }
        for t in &$changes.history {
            let get = |k: &str| t.labels.get(k).cloned().unwrap_or_default();
            let detail = if t.detail.is_empty() {
                "{}".to_string()
            } else {
                t.detail.clone()
            };
            sqlx::query(INSERT_HISTORY)
                .bind(t.at_ms)
                .bind(t.event.as_str())
                .bind(&t.rule)
                .bind(fp_hex(super::fingerprint(&t.labels)))
                .bind(get("host"))
                .bind(get("severity"))
                .bind(get("team"))
                .bind(nan_to_null(t.value))
                .bind(json(&t.labels))
                .bind(detail)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }};
}

macro_rules! history_impl {
    ($pool:expr, $q:expr) => {{
        let rows: Vec<HistoryTuple> = sqlx::query_as(SELECT_HISTORY)
            .bind($q.from_ms)
            .bind($q.to_ms)
            .bind($q.rule.as_deref())
            .bind($q.host.as_deref())
            .bind($q.severity.as_deref())
            .bind($q.team.as_deref())
            .bind($q.event.as_deref())
            .bind($q.before_id.unwrap_or(i64::MAX))
            .bind(i64::try_from($q.limit).unwrap_or(i64::MAX))
            .fetch_all($pool)
            .await?;
        Ok(rows.into_iter().map(history_from_row).collect())
    }};
}

/// Writes `changes` in one transaction (nothing when empty).
pub async fn write(db: &Db, changes: &Changes) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    match db {
        Db::Postgres(pool) => write_impl!(pool, changes),
        Db::Sqlite { writer, .. } => write_impl!(writer, changes),
    }
}

/// Deletes history rows older than `before_ms`; how many went.
pub async fn prune_history(db: &Db, before_ms: i64) -> Result<u64, StoreError> {
    let done = match db {
        Db::Postgres(pool) => sqlx::query("DELETE FROM alert_history WHERE ts_ms < $1")
            .bind(before_ms)
            .execute(pool)
            .await?
            .rows_affected(),
        Db::Sqlite { writer, .. } => sqlx::query("DELETE FROM alert_history WHERE ts_ms < ?")
            .bind(before_ms)
            .execute(writer)
            .await?
            .rows_affected(),
    };
    Ok(done)
}

/// Every stored alert. A row that does not decode is skipped with a
/// warning (its alert starts afresh), so one bad row cannot stop alerting.
pub async fn load(db: &Db) -> Result<Vec<Entry>, StoreError> {
    let rows: Vec<StateRow> = match db {
        Db::Postgres(pool) => sqlx::query_as(SELECT_STATE).fetch_all(pool).await?,
        Db::Sqlite { reader, .. } => sqlx::query_as(SELECT_STATE).fetch_all(reader).await?,
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        match entry_from_row(r) {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable alert_state row"),
        }
    }
    Ok(out)
}

/// History rows matching `q`, newest first.
pub async fn history(db: &Db, q: &HistoryQuery) -> Result<Vec<HistoryRow>, StoreError> {
    match db {
        Db::Postgres(pool) => history_impl!(pool, q),
        Db::Sqlite { reader, .. } => history_impl!(reader, q),
    }
}

const SELECT_EPISODES: &str = "SELECT id, ts_ms, event, rule, fingerprint, host, severity, team,
        value, labels, detail FROM alert_history
     WHERE ts_ms >= $1 AND ts_ms <= $2 AND event IN ('firing', 'acknowledged', 'resolved')
     ORDER BY id LIMIT $3";

macro_rules! episodes_impl {
    ($pool:expr, $from:expr, $to:expr, $limit:expr) => {{
        let rows: Vec<HistoryTuple> = sqlx::query_as(SELECT_EPISODES)
            .bind($from)
            .bind($to)
            .bind(i64::try_from($limit).unwrap_or(i64::MAX))
            .fetch_all($pool)
            .await?;
        Ok(rows.into_iter().map(history_from_row).collect())
    }};
}

/// The `firing`, `acknowledged` and `resolved` rows in `[from, to]`, oldest
/// first, at most `limit` (for reports).
pub async fn episode_events(
    db: &Db,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<Vec<HistoryRow>, StoreError> {
    match db {
        Db::Postgres(pool) => episodes_impl!(pool, from_ms, to_ms, limit),
        Db::Sqlite { reader, .. } => episodes_impl!(reader, from_ms, to_ms, limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str) -> Entry {
        Entry {
            rule: "R".into(),
            group: "g".into(),
            labels: [
                ("alertname".to_string(), "R".to_string()),
                ("host".into(), host.into()),
            ]
            .into(),
            annotations: LabelSet::new(),
            phase: Phase::Firing,
            active_at_ms: 1,
            fired_at_ms: Some(2),
            resolved_at_ms: None,
            keep_firing_since_ms: None,
            value: 1.5,
            series_fp: 7,
            flap: Flap::default(),
            ack: None,
            escalated_at_ms: None,
            last_sent_ms: None,
            sent_flapping: false,
            dirty: true,
        }
    }

    #[test]
    fn a_rows_last_change_wins_when_changes_are_merged() {
        let (a, b) = (entry("a"), entry("b"));
        let mut earlier = Changes {
            upserts: vec![a.clone()],
            deletes: vec![("R".into(), b.fingerprint())],
            history: vec![],
        };
        earlier.append(Changes {
            upserts: vec![b.clone()],
            deletes: vec![("R".into(), a.fingerprint())],
            history: vec![],
        });
        assert_eq!(earlier.upserts, vec![b]);
        assert_eq!(earlier.deletes, vec![("R".to_string(), a.fingerprint())]);
    }

    #[test]
    fn fingerprints_round_trip_as_16_hex_digits() {
        for fp in [0, 1, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(parse_fp(&fp_hex(fp)), Some(fp));
        }
        assert_eq!(parse_fp("xyz"), None);
        assert_eq!(parse_fp("123"), None);
    }
}
