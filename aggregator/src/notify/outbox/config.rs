//! `[notify.outbox]`: how the outbox delivers and retries, and the
//! backoff between attempts.

use std::time::Duration;

use serde::Deserialize;

/// Delivery settings (`[notify.outbox]` once wired into the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Sends in flight at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// First retry delay; doubles per attempt.
    #[serde(default = "default_min_backoff", with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Longest retry delay.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A notification not delivered this long after it was enqueued is given up.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// How often the table is checked for due rows (an enqueue wakes the
    /// task at once).
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Finished rows are kept this long for `GET /api/v1/notifications`.
    #[serde(default = "default_keep_finished", with = "humantime_serde")]
    pub keep_finished: Duration,
}

fn default_max_concurrency() -> usize {
    8
}
fn default_min_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_keep_finished() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_concurrency: default_max_concurrency(),
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
            max_age: default_max_age(),
            poll_interval: default_poll_interval(),
            keep_finished: default_keep_finished(),
        }
    }
}

impl OutboxConfig {
    /// Every problem at once.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.max_concurrency == 0 || self.max_concurrency > 256 {
            errors.push("notify.outbox.max_concurrency must be 1..=256".to_string());
        }
        if self.min_backoff.is_zero() || self.min_backoff > self.max_backoff {
            errors.push(
                "notify.outbox.min_backoff must be above 0 and at most max_backoff".to_string(),
            );
        }
        if self.max_age < self.max_backoff {
            errors.push("notify.outbox.max_age must be at least max_backoff".to_string());
        }
        if self.poll_interval.is_zero() {
            errors.push("notify.outbox.poll_interval must be above 0".to_string());
        }
        errors
    }
}

/// The delay before retry number `attempt` (1 = after the first failure):
/// `min * 2^(attempt-1)` capped at `max`, then "equal jitter": a uniform
/// draw in [d/2, d] (`jitter` in [0, 1)), so retries of many rows spread out
/// but never come sooner than half the nominal delay.
pub fn backoff(attempt: i64, min: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
    let nominal = min.saturating_mul(1u32 << exp).min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    nominal.mul_f64(0.5 + 0.5 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        assert_eq!(backoff(1, min, max, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, min, max, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(5, min, max, 1.0), Duration::from_secs(16));
        assert_eq!(backoff(9, min, max, 1.0), Duration::from_secs(256));
        assert_eq!(backoff(10, min, max, 1.0), max);
        assert_eq!(backoff(1_000, min, max, 1.0), max);
        // Jitter never goes below half the nominal delay.
        assert_eq!(backoff(3, min, max, 0.0), Duration::from_secs(2));
        let d = backoff(3, min, max, 0.5);
        assert!(
            d > Duration::from_secs(2) && d < Duration::from_secs(4),
            "{d:?}"
        );
        // Odd inputs stay sane.
        assert_eq!(backoff(0, min, max, 1.0), min);
        assert_eq!(backoff(-3, min, max, 7.0), min);
    }

    #[test]
    fn config_validation_reports_every_problem() {
        let bad = OutboxConfig {
            max_concurrency: 0,
            min_backoff: Duration::ZERO,
            max_backoff: Duration::from_secs(10),
            max_age: Duration::from_secs(1),
            poll_interval: Duration::ZERO,
            keep_finished: Duration::from_secs(1),
        };
        assert_eq!(bad.validate().len(), 4, "{:?}", bad.validate());
        assert!(OutboxConfig::default().validate().is_empty());
    }
}
