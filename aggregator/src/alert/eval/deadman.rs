//! The built-in dead-man alert: `VigilAgentDown` fires for every known host
//! (`Store::hosts`) whose agent has been silent for longer than
//! `alerting.agent_down_after` times its collection interval (the latest
//! `vigil_agent_interval_seconds{host}` the agent reported in the last hour,
//! else `alerting.default_agent_interval`), and at least
//! `alerting.agent_down_min`. It runs every `evaluation_interval` through
//! the same state machine as rule alerts (no `for`: the threshold is the
//! delay) and resolves as soon as the host sends again. Silence is counted
//! from the evaluator's first round at the earliest, so restarting an
//! aggregator that was down does not page for every agent at once.

use std::collections::HashMap;
use std::time::Duration;

use vigil_common::Label;

use super::Evaluator;
use super::machine::duration_ms;
use crate::alert::rules::{AlertingRule, VigilExtensions};
use crate::query::{Sample, Value};

pub const ALERT_NAME: &str = "VigilAgentDown";
/// The group its alerts belong to (not a rule file group).
pub const GROUP: &str = "vigil-builtin";
/// Where each agent reports its collection interval.
const INTERVAL_QUERY: &str = "last_over_time(vigil_agent_interval_seconds[1h])";

/// The rule the dead-man alerts are made by.
pub fn rule() -> AlertingRule {
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    AlertingRule {
        name: ALERT_NAME.into(),
        expr: "(built in: host silent for longer than agent_down_after x its interval)".into(),
        for_: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        labels: [kv("severity", "critical"), kv("team", "platform")].into(),
        annotations: [
            kv("summary", "Vigil agent on {{ $labels.host }} is down"),
            kv(
                "description",
                "No data from the Vigil agent on {{ $labels.host }} for {{ $value }} seconds. \
                 Its other alerts cannot fire while it is silent.",
            ),
            kv("runbook_url", "docs/runbooks/VigilAgentDown.md"),
        ]
        .into(),
        vigil: VigilExtensions::default(),
    }
}

/// The silence threshold for an agent collecting every `interval_s` seconds.
pub fn threshold_ms(after: u32, interval_s: f64, min: Duration, default: Duration) -> i64 {
    let interval_ms = if interval_s.is_finite() && interval_s > 0.0 {
        (interval_s * 1000.0) as i64
    } else {
        duration_ms(default)
    };
    interval_ms
        .saturating_mul(i64::from(after))
        .max(duration_ms(min))
}

/// One sample per silent host: labels `{host}`, value the silence in seconds.
pub async fn silent_hosts(ev: &Evaluator, now: i64) -> Result<Vec<Sample>, String> {
    let hosts = ev.store.hosts().await.map_err(|e| e.to_string())?;
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let intervals: HashMap<String, f64> = match ev
        .engine
        .instant(ev.source.as_ref(), INTERVAL_QUERY, now)
        .await
    {
        Ok(Value::Vector(v)) => v
            .into_iter()
            .filter_map(|s| {
                let host = s.labels.iter().find(|l| l.name == "host")?;
                Some((host.value.clone(), s.value))
            })
            .collect(),
        Ok(_) => HashMap::new(),
        Err(e) => return Err(e.to_string()),
    };
    let cfg = &ev.config;
    let (since, down): (i64, std::collections::HashSet<String>) = {
        let inner = ev.lock();
        let down = inner
            .deadman
            .alerts
            .values()
            .filter(|e| e.phase != super::machine::Phase::Inactive)
            .map(|e| e.label("host").to_string())
            .collect();
        (inner.started_ms.unwrap_or(now), down)
    };
    let mut out = Vec::new();
    for h in hosts {
        let interval = intervals.get(&h.hostname).copied().unwrap_or(f64::NAN);
        let threshold = threshold_ms(
            cfg.agent_down_after,
            interval,
            cfg.agent_down_min,
            cfg.default_agent_interval,
        );
        // A host already down (restored alert) stays down without a grace.
        let from = if down.contains(&h.hostname) {
            h.last_seen_ms
        } else {
            h.last_seen_ms.max(since)
        };
        let silent = now - from;
        if silent > threshold {
            out.push(Sample {
                labels: vec![Label::new("host", h.hostname)],
                timestamp_ms: now,
                value: (silent / 1000) as f64,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_a_multiple_of_the_interval_with_a_floor() {
        let s = Duration::from_secs;
        assert_eq!(threshold_ms(3, 10.0, s(30), s(10)), 30_000);
        assert_eq!(threshold_ms(3, 60.0, s(30), s(10)), 180_000);
        assert_eq!(threshold_ms(3, 1.0, s(30), s(10)), 30_000);
        // Unknown interval: the default.
        assert_eq!(threshold_ms(4, f64::NAN, s(1), s(15)), 60_000);
        assert_eq!(threshold_ms(4, -1.0, s(1), s(15)), 60_000);
    }
}
