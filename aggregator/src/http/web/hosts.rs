//! `/hosts`: every host with its roles, status, last report and key
//! figures; `/hosts/{id}`: one host's CPU, memory, disk and network (and its
//! database or cache panels by role) over a chosen time range.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::super::AppState;
use super::super::ops::{now_ms, parse_time};
use super::super::resources;
use super::super::session::WebUser;
use super::format::{self, Unit};
use super::{Dashboard, PageError, page_context, panels, render};

/// A host is up when it reported within this long.
pub const SILENT_AFTER_MS: i64 = 5 * 60 * 1000;

/// `GET /hosts`.
pub async fn list(user: WebUser, State(state): State<AppState>) -> Result<Response, PageError> {
    let now = now_ms();
    let hosts = state.store.hosts().await?;
    let figures = resources::collect(&state, None, now).await?;
    let rows: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| {
            let r = figures.iter().find(|r| r.host == h.hostname);
            let up = now - h.last_seen_ms <= SILENT_AFTER_MS;
            let disk = r.and_then(|r| {
                r.filesystems
                    .iter()
                    .filter_map(|f| f.used_ratio)
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            });
            serde_json::json!({
                "id": h.agent_id,
                "href": format!("/hosts/{}", format::path_segment(&h.agent_id)),
                "name": h.hostname,
                "roles": h.roles.join(", "),
                "badge": if up { format::badge("ok") } else { format::badge("crit") },
                "status": if up { "up" } else { "silent" },
                "last_seen": format::ago(h.last_seen_ms, now),
                "last_seen_at": format::time(h.last_seen_ms),
                "cpu": format::value(r.and_then(|r| r.cpu.usage_ratio), Unit::Percent),
                "memory": format::value(r.and_then(|r| r.memory.used_ratio), Unit::Percent),
                "disk": format::value(disk, Unit::Percent),
                "load1": format::value(r.and_then(|r| r.cpu.load1), Unit::Plain),
            })
        })
        .collect();
    let mut c = page_context(&state, &user, "hosts", "Hosts");
    c.insert("hosts", &rows);
    Ok(render("hosts.html", &c))
}

/// The range picker's choices.
pub const RANGES: &[(&str, i64)] = &[
    ("15m", 15 * 60_000),
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("24h", 24 * 3_600_000),
    ("7d", 7 * 24 * 3_600_000),
];

/// Longest custom range.
const MAX_RANGE_MS: i64 = 31 * 24 * 3_600_000;
/// Points per chart.
const POINTS: i64 = 240;

#[derive(Debug, Default, Deserialize)]
pub struct RangeParams {
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A `datetime-local` value (`2024-01-02T15:04`, taken as UTC) or what the
/// API accepts (RFC 3339, unix seconds).
fn parse_local(name: &str, raw: &str) -> Result<i64, PageError> {
    let raw = raw.trim();
    let with_zone = if raw.len() == 16 && raw.as_bytes().get(10) == Some(&b'T') {
        format!("{raw}:00Z")
    } else if raw.len() == 19 && raw.as_bytes().get(10) == Some(&b'T') {
        format!("{raw}Z")
    } else {
        raw.to_string()
    };
    Ok(parse_time(name, &with_zone)?)
}

/// The chosen range: (label, from, to).
pub fn range(p: &RangeParams, now: i64) -> Result<(String, i64, i64), PageError> {
    let from = p.from.as_deref().filter(|s| !s.trim().is_empty());
    let to = p.to.as_deref().filter(|s| !s.trim().is_empty());
    if p.range.as_deref() == Some("custom") || from.is_some() || to.is_some() {
        let from = from
            .ok_or_else(|| PageError::BadRequest("from: a custom range needs a start".into()))
            .and_then(|f| parse_local("from", f))?;
        let to = match to {
            Some(t) => parse_local("to", t)?,
            None => now,
        };
        if from >= to {
            return Err(PageError::BadRequest("from must be before to".into()));
        }
        if to - from > MAX_RANGE_MS {
            return Err(PageError::BadRequest(
                "a custom range is at most 31 days".into(),
            ));
        }
        return Ok(("custom".into(), from, to));
    }
    let label = p.range.as_deref().unwrap_or("1h");
    let span = RANGES
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            PageError::BadRequest(format!(
                "range: expected one of 15m, 1h, 6h, 24h, 7d or custom, got {label:?}"
            ))
        })?;
    Ok((label.to_string(), now - span, now))
}

/// `GET /hosts/{id}` (agent id or hostname).
pub async fn detail(
    user: WebUser,
    State(state): State<AppState>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
    Path(id): Path<String>,
    Query(p): Query<RangeParams>,
) -> Result<Response, PageError> {
    let now = now_ms();
    if state.database_down() {
        return Err(PageError::Unavailable("host rows: database down".into()));
    }
    let host = state
        .store
        .hosts()
        .await?
        .into_iter()
        .find(|h| h.agent_id == id || h.hostname == id)
        .ok_or_else(|| PageError::NotFound(format!("no host with agent id or hostname {id:?}")))?;
    let (label, from, to) = range(&p, now)?;
    let step = ((to - from) / POINTS).max(1000);
    let host_panels = panels::host_panels(&host.hostname, &host.roles);
    let figures = panels::figures(&state, &host_panels, now).await?;
    let history = panels::history(&state, &host_panels, from, to, step).await?;
    let up = now - host.last_seen_ms <= SILENT_AFTER_MS;
    let mut c = page_context(&state, &user, "hosts", &host.hostname);
    c.insert(
        "host",
        &serde_json::json!({
            "id": host.agent_id,
            "name": host.hostname,
            "roles": host.roles.join(", "),
            "badge": if up { format::badge("ok") } else { format::badge("crit") },
            "status": if up { "up" } else { "silent" },
            "last_seen": format::ago(host.last_seen_ms, now),
            "first_seen_at": format::time(host.first_seen_ms),
            "samples": host.samples_stored,
        }),
    );
    c.insert("clock", &clock_context(&state, &host.agent_id));
    c.insert("figures", &figures);
    c.insert(
        "ranges",
        &RANGES.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
    );
    c.insert("range", &label);
    c.insert(
        "from_input",
        &format::time(from)
            .replace(' ', "T")
            .get(..16)
            .unwrap_or_default(),
    );
    c.insert(
        "to_input",
        &format::time(to)
            .replace(' ', "T")
            .get(..16)
            .unwrap_or_default(),
    );
    c.insert(
        "charts",
        &serde_json::json!({
            "history": history,
            "units": host_panels.iter().map(|(p, _)| (p.id, p.unit)).collect::<std::collections::BTreeMap<_, _>>(),
        })
        .to_string(),
    );
    c.insert(
        "live",
        &serde_json::json!({
            "set": "host",
            "host": host.hostname,
            "interval_ms": dashboard.config.live_interval.as_millis() as u64,
        })
        .to_string(),
    );
    Ok(render("host.html", &c))
}

/// The agent's clock skew as the host page shows it; null before its first
/// batch to this process.
fn clock_context(state: &AppState, agent_id: &str) -> Option<serde_json::Value> {
    use crate::ingest::clock::{WARN_ABOVE_MS, describe};
    let skew = state.metrics.clock.get(agent_id)?;
    let off = skew.skew_ms.abs() > WARN_ABOVE_MS;
    Some(serde_json::json!({
        "text": describe(skew.skew_ms).trim_start_matches(['+', '-']),
        "seconds": skew.skew_ms as f64 / 1000.0,
        "relation": if skew.skew_ms >= 0 { "ahead of" } else { "behind" },
        "off": off,
        "badge": if off { format::badge("warn") } else { format::badge("ok") },
    }))
}
