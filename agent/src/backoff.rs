//! Capped exponential backoff with "equal jitter".
//!
//! The delay before retry `attempt` is `d = min(max, base * 2^attempt)`, of which
//! half is fixed and half is random: `d/2 + unit_random * d/2`. Equal jitter (rather
//! than full jitter) keeps a floor under the delay, so a fleet of agents that lost
//! the aggregator at the same moment spreads out without any of them hammering it
//! with near-zero delays. Randomness is passed in, so the function is pure and tested.

use std::time::Duration;

/// First retry delay bound (before jitter halves its lower end).
pub const DEFAULT_BASE: Duration = Duration::from_millis(200);
/// Upper bound on any delay.
pub const DEFAULT_MAX: Duration = Duration::from_secs(30);

/// The delay before retry number `attempt` (0-based). `unit_random` is a uniform
/// sample in `[0, 1]`; values outside (or NaN) are clamped. Never exceeds `max`,
/// never panics, whatever `attempt` is.
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit_random: f64) -> Duration {
    let ceiling = base
        .checked_mul(2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let r = if unit_random.is_nan() {
        0.0
    } else {
        unit_random.clamp(0.0, 1.0)
    };
    let half = ceiling / 2;
    let upper = ceiling - half;
    // r <= 1, so the product fits; the fallback only guards float rounding.
    let jitter = Duration::try_from_secs_f64(upper.as_secs_f64() * r).unwrap_or(upper);
    half.saturating_add(jitter.min(upper)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration = DEFAULT_BASE;
    const M: Duration = DEFAULT_MAX;

    #[test]
    fn grows_exponentially_then_caps() {
        assert_eq!(backoff(0, B, M, 1.0), B);
        assert_eq!(backoff(1, B, M, 1.0), B * 2);
        assert_eq!(backoff(3, B, M, 1.0), B * 8);
        assert_eq!(backoff(20, B, M, 1.0), M);
        // Equal jitter: the lower end is half the ceiling.
        assert_eq!(backoff(3, B, M, 0.0), B * 4);
        assert_eq!(backoff(20, B, M, 0.0), M / 2);
    }

    #[test]
    fn bounds_are_monotone_and_never_exceed_max() {
        let mut previous = (Duration::ZERO, Duration::ZERO);
        for attempt in 0..200 {
            let low = backoff(attempt, B, M, 0.0);
            let high = backoff(attempt, B, M, 1.0);
            assert!(low <= high, "attempt {attempt}");
            assert!(high <= M, "attempt {attempt}: {high:?}");
            assert!(low >= previous.0 && high >= previous.1, "attempt {attempt}");
            for r in [0.1, 0.5, 0.9] {
                let d = backoff(attempt, B, M, r);
                assert!(low <= d && d <= high);
            }
            previous = (low, high);
        }
    }

    #[test]
    fn extreme_inputs_are_safe() {
        assert_eq!(backoff(u32::MAX, B, M, 1.0), M);
        assert_eq!(
            backoff(u32::MAX, Duration::MAX, Duration::MAX, 1.0),
            Duration::MAX
        );
        assert_eq!(backoff(5, B, M, f64::NAN), backoff(5, B, M, 0.0));
        assert_eq!(backoff(5, B, M, 7.0), backoff(5, B, M, 1.0));
        assert_eq!(backoff(5, B, M, -3.0), backoff(5, B, M, 0.0));
        assert_eq!(backoff(4, Duration::ZERO, M, 0.7), Duration::ZERO);
        // A base above the cap is capped.
        assert_eq!(backoff(0, Duration::from_secs(60), M, 1.0), M);
    }
}
