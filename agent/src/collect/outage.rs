//! Logging for a monitored service that is down (`pg_up 0`, `redis_up 0`).
//!
//! A database that stays down for an hour must not write a warning every
//! second: the first failure is logged, then at most one reminder per
//! [`REMINDER`] (with the latest error), and one line when it is back.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Least time between two warnings about the same outage.
pub const REMINDER: Duration = Duration::from_secs(300);

/// Whether the service is down, and when we last said so.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
    last_warned: Option<Instant>,
    suppressed: u64,
}

impl Outage {
    /// Records a failed attempt; logs it unless a warning went out within
    /// [`REMINDER`]. Returns whether it logged.
    pub fn failed(&mut self, collector: &str, target: &str, error: impl Display) -> bool {
        self.failed_at(Instant::now(), collector, target, error)
    }

    fn failed_at(
        &mut self,
        now: Instant,
        collector: &str,
        target: &str,
        error: impl Display,
    ) -> bool {
        let since = *self.since.get_or_insert(now);
        let due = self
            .last_warned
            .is_none_or(|t| now.saturating_duration_since(t) >= REMINDER);
        if !due {
            self.suppressed += 1;
            return false;
        }
        tracing::warn!(
            collector,
            target,
            error = %error,
            down_for = ?now.saturating_duration_since(since),
            failures_not_logged = self.suppressed,
            "monitored service unreachable; reporting it as down"
        );
        self.last_warned = Some(now);
        self.suppressed = 0;
        true
    }

    /// Records a successful attempt; logs the recovery if it was down.
    pub fn recovered(&mut self, collector: &str, target: &str) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                collector,
                target,
                down_for = ?since.elapsed(),
                "monitored service reachable again"
            );
        }
        self.last_warned = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited_per_outage() {
        let mut o = Outage::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(o.failed_at(at(0), "pg", "t", "refused"));
        assert!(!o.failed_at(at(1), "pg", "t", "refused"));
        assert!(!o.failed_at(at(299), "pg", "t", "refused"));
        assert!(o.failed_at(at(300), "pg", "t", "refused"));
        assert!(!o.failed_at(at(301), "pg", "t", "refused"));
        o.recovered("pg", "t");
        assert!(
            o.failed_at(at(302), "pg", "t", "refused"),
            "a new outage warns at once"
        );
    }
}
