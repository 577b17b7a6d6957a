//! The replay budget: a token bucket that paces backlog batches to
//! `spool.replay_batches_per_second`. Fresh batches never wait for it (see
//! the spool's module docs for the lanes).
//!
//! The bucket holds at most one second's worth of tokens (at least one), so a
//! sender that was idle may replay that many batches at once, then settles to
//! the rate.

use std::time::{Duration, Instant};

/// Paces backlog batches.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    /// A full bucket refilling at `per_second` tokens per second (> 0).
    pub fn new(per_second: f64, now: Instant) -> Pacer {
        let rate = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        let burst = rate.max(1.0);
        Pacer {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Whether a backlog batch may be sent now.
    pub fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Spends one token (the caller sends a backlog batch).
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// When the next token will be there.
    pub fn next_ready(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(4.0, t0);
        for _ in 0..4 {
            assert!(p.ready(t0));
            p.take(t0);
        }
        assert!(!p.ready(t0), "a second's worth spent");
        assert_eq!(p.next_ready(t0), t0 + ms(250));
        assert!(!p.ready(t0 + ms(249)));
        assert!(p.ready(t0 + ms(250)));
        p.take(t0 + ms(250));
        // Idle for a long time: the bucket is full again, but not fuller.
        let later = t0 + Duration::from_secs(60);
        let mut sent = 0;
        while p.ready(later) {
            p.take(later);
            sent += 1;
        }
        assert_eq!(sent, 4);
    }

    #[test]
    fn slow_rates_allow_one_at_a_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0.5, t0);
        assert!(p.ready(t0));
        p.take(t0);
        assert_eq!(p.next_ready(t0), t0 + Duration::from_secs(2));
        assert!(!p.ready(t0 + ms(1999)));
        assert!(p.ready(t0 + Duration::from_secs(2)));
        // A nonsensical rate (validation forbids it) still paces.
        let mut bad = Pacer::new(f64::NAN, t0);
        bad.take(t0);
        assert!(!bad.ready(t0));
    }
}
