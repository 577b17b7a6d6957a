//! The timestamps of one agent's backfill ([`super::Backfill`]): a walk from
//! `start - span` (plus a random phase inside one step) to the present in
//! steps of `step`, handed out a batch's worth at a time.

use super::Backfill;

/// Where one agent's backfill has got to.
#[derive(Debug)]
pub struct Walk {
    next_ms: i64,
    step_ms: i64,
    points: usize,
}

impl Walk {
    /// The walk of `plan` for an agent starting at `start_ms`; `phase` in
    /// `[0, 1)` places its first point within the first step (or within the
    /// span, if that is shorter than a step).
    pub fn new(plan: &Backfill, start_ms: i64, phase: f64) -> Walk {
        let span_ms = i64::try_from(plan.span.as_millis()).unwrap_or(i64::MAX / 4);
        let step_ms = i64::try_from(plan.step.as_millis())
            .unwrap_or(i64::MAX / 4)
            .max(1);
        let offset = (step_ms.min(span_ms) as f64 * phase.clamp(0.0, 1.0)) as i64;
        Walk {
            next_ms: start_ms
                .saturating_sub(span_ms)
                .saturating_add(offset.min(span_ms)),
            step_ms,
            points: plan.points_per_batch.max(1),
        }
    }

    /// The stamps of the next batch: up to `points_per_batch` of them, none
    /// later than `now_ms`; `None` once the walk has reached the present.
    pub fn next_batch(&mut self, now_ms: i64) -> Option<Vec<i64>> {
        let mut stamps = Vec::with_capacity(self.points);
        while stamps.len() < self.points && self.next_ms <= now_ms {
            stamps.push(self.next_ms);
            self.next_ms = self.next_ms.saturating_add(self.step_ms);
        }
        (!stamps.is_empty()).then_some(stamps)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn plan(span_s: u64, step_s: u64, points: usize) -> Backfill {
        Backfill {
            span: Duration::from_secs(span_s),
            step: Duration::from_secs(step_s),
            points_per_batch: points,
        }
    }

    #[test]
    fn walks_from_span_ago_to_now_in_steps_and_batches() {
        let now = 10_000_000;
        let mut w = Walk::new(&plan(120, 15, 3), now, 0.0);
        let mut all = Vec::new();
        let mut batches = 0;
        while let Some(b) = w.next_batch(now) {
            assert!(b.len() <= 3);
            all.extend(b);
            batches += 1;
        }
        // 120 s at 15 s: now-120s, now-105s, ..., now: 9 points in 3 batches.
        assert_eq!(all.len(), 9);
        assert_eq!(batches, 3);
        assert_eq!(all[0], now - 120_000);
        assert_eq!(*all.last().expect("points"), now);
        assert!(all.windows(2).all(|p| p[1] - p[0] == 15_000));
        // The present moves on: the walk follows it.
        assert_eq!(w.next_batch(now + 20_000), Some(vec![now + 15_000]));
        assert_eq!(w.next_batch(now + 20_000), None);
    }

    #[test]
    fn the_phase_stays_inside_one_step_and_the_span() {
        let now = 10_000_000;
        let mut w = Walk::new(&plan(120, 15, 100), now, 0.5);
        let b = w.next_batch(now).expect("points");
        assert_eq!(b[0], now - 120_000 + 7_500);
        assert_eq!(b.len(), 8);
        // A span shorter than a step: one point, within the span.
        let mut w = Walk::new(&plan(1, 15, 100), now, 0.99);
        let b = w.next_batch(now).expect("points");
        assert_eq!(b.len(), 1);
        assert!(b[0] > now - 1_000 && b[0] <= now, "{b:?}");
        assert_eq!(w.next_batch(now), None);
    }
}
