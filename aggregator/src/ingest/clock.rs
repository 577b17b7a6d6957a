//! Agent clock skew, measured from the batches themselves.
//!
//! The rule for an agent's timestamps (docs/ARCHITECTURE.md, "Clock skew"):
//! the aggregator never rewrites them. A point is stored when its timestamp
//! lies in `[now - ingest.max_sample_age, now + ingest.max_future_skew]`
//! (30 days and 10 minutes by default); outside it, it is dropped and counted
//! (`vigil_aggregator_samples_rejected_total{reason="too_old"|"too_new"}`)
//! and the batch is still acked, so the agent does not retry it. An agent an
//! hour *ahead* therefore has its samples refused (counted, and in the ack's
//! `samples_rejected`); one an hour *behind* has them stored at its own
//! (wrong) times. Either way the skew is measured and shown, so the operator
//! can fix the clock.
//!
//! Measurement: each batch header carries `created_at_ms`, the agent's
//! clock when it built the batch. At receipt, `created_at_ms - now` is the
//! skew minus the batch's age (transit, queueing, or a whole outage for a
//! batch replayed from the spool), so the largest value seen recently is
//! the best estimate: a new value replaces the estimate when it is larger,
//! or when the estimate is older than [`FRESH_FOR`] (so a clock that is
//! corrected backwards is followed within a minute). Fresh batches overtake
//! a replay (`agent/src/spool`), so an outage's backlog never hides the
//! skew for longer than one collection interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// How long an estimate stands against smaller (older-looking) values.
pub const FRESH_FOR_MS: i64 = 60_000;

/// Above this skew (either way) the host page flags the agent's clock.
pub const WARN_ABOVE_MS: i64 = 10_000;

/// An `agent` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    pub agent: String,
}

/// One agent's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skew {
    /// Agent clock minus aggregator clock, in ms (positive: the agent is ahead).
    pub skew_ms: i64,
    /// Aggregator time of the measurement.
    pub measured_at_ms: i64,
}

/// Every agent's clock skew; cheap to share (`Arc` it).
#[derive(Default)]
pub struct ClockSkew {
    agents: Mutex<HashMap<String, Skew>>,
    /// `vigil_aggregator_agent_clock_skew_seconds{agent}`.
    pub gauge: Family<AgentLabel, Gauge<f64, AtomicU64>>,
}

impl ClockSkew {
    /// Takes a batch built at `created_at_ms` (agent clock) and received at
    /// `now_ms` into `agent`'s estimate.
    pub fn observe(&self, agent: &str, created_at_ms: i64, now_ms: i64) {
        let seen = created_at_ms.saturating_sub(now_ms);
        let Ok(mut agents) = self.agents.lock() else {
            return;
        };
        let update = match agents.get(agent) {
            Some(s) => seen >= s.skew_ms || now_ms - s.measured_at_ms > FRESH_FOR_MS,
            None => true,
        };
        if update {
            agents.insert(
                agent.to_string(),
                Skew {
                    skew_ms: seen,
                    measured_at_ms: now_ms,
                },
            );
            drop(agents);
            self.gauge
                .get_or_create(&AgentLabel {
                    agent: agent.to_string(),
                })
                .set(seen as f64 / 1000.0);
        }
    }

    /// `agent`'s estimate, if it sent a batch since this process started.
    pub fn get(&self, agent: &str) -> Option<Skew> {
        self.agents.lock().ok()?.get(agent).copied()
    }
}

/// "+1h 0m 5s", "-3.2s": a skew for people.
pub fn describe(skew_ms: i64) -> String {
    let sign = if skew_ms < 0 { "-" } else { "+" };
    let ms = skew_ms.unsigned_abs();
    if ms < 60_000 {
        return format!("{sign}{:.1}s", ms as f64 / 1000.0);
    }
    // To the nearest second: an agent an hour ahead is measured a few ms
    // short of it (the batch's transit), and reads "1h 0m 0s", not "59m 59s".
    let s = (ms + 500) / 1000;
    match s {
        0..3600 => format!("{sign}{}m {}s", s / 60, s % 60),
        _ => format!("{sign}{}h {}m {}s", s / 3600, s % 3600 / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_batch_sets_the_estimate_and_a_replay_does_not() {
        let c = ClockSkew::default();
        let now = 1_000_000;
        // An agent one hour ahead: a fresh batch, then an outage's old batch.
        c.observe("a", now + 3_600_000 - 20, now);
        c.observe("a", now + 3_600_000 - 30_000, now + 10);
        assert_eq!(c.get("a").map(|s| s.skew_ms), Some(3_600_000 - 20));
        // A slightly fresher measurement wins.
        c.observe("a", now + 100 + 3_600_000 - 5, now + 100);
        assert_eq!(c.get("a").map(|s| s.skew_ms), Some(3_599_995));
        assert!(c.get("b").is_none());
    }

    #[test]
    fn a_clock_corrected_backwards_is_followed_once_the_estimate_is_stale() {
        let c = ClockSkew::default();
        let now = 5_000_000;
        c.observe("a", now + 3_600_000, now);
        c.observe("a", now + 1_000, now + 1_000);
        assert_eq!(c.get("a").map(|s| s.skew_ms), Some(3_600_000));
        let later = now + FRESH_FOR_MS + 1;
        c.observe("a", later - 40, later);
        assert_eq!(c.get("a").map(|s| s.skew_ms), Some(-40));
        let gauge = c
            .gauge
            .get_or_create(&AgentLabel { agent: "a".into() })
            .get();
        assert_eq!(gauge, -0.04);
    }

    #[test]
    fn skews_read_like_durations() {
        assert_eq!(describe(0), "+0.0s");
        assert_eq!(describe(-3_240), "-3.2s");
        assert_eq!(describe(3_600_000), "+1h 0m 0s");
        assert_eq!(describe(-3_605_000), "-1h 0m 5s");
        assert_eq!(describe(125_000), "+2m 5s");
        assert_eq!(describe(3_599_990), "+1h 0m 0s", "rounded, not cut");
        assert_eq!(describe(-3_599_400), "-59m 59s");
    }
}
