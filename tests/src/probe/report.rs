//! What a probe run measured: per path, how many samples (or crossings)
//! were measured, how many were seen, and latency percentiles; plus the
//! problems counted on the way.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::Plan;
use super::agent::Ledger;

/// One path's latencies.
#[derive(Debug, Clone, Default)]
pub struct PathStats {
    /// Samples (crossings) measured on this path.
    pub expected: usize,
    /// Latency of each one seen, sorted.
    pub latencies: Vec<Duration>,
}

impl PathStats {
    fn new(expected: usize, mut latencies: Vec<Duration>) -> PathStats {
        latencies.sort_unstable();
        PathStats {
            expected,
            latencies,
        }
    }

    pub fn seen(&self) -> usize {
        self.latencies.len()
    }

    /// Measured but never seen.
    pub fn missed(&self) -> usize {
        self.expected - self.seen()
    }

    /// The `q` quantile (0..=1, nearest rank); zero when nothing was seen.
    pub fn quantile(&self, q: f64) -> Duration {
        let l = &self.latencies;
        if l.is_empty() {
            return Duration::ZERO;
        }
        let i = ((l.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        l[i.min(l.len() - 1)]
    }
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub interval: Duration,
    pub poll: Duration,
    pub lanes: usize,
    /// How long batches were sent.
    pub sent_for: Duration,
    /// Created -> acked.
    pub ack: PathStats,
    /// Created -> first returned by `/prometheus/api/v1/query`.
    pub query: PathStats,
    /// Created -> first pushed on `/ws/live`.
    pub live: PathStats,
    /// Crossing created -> firing webhook received.
    pub alert: PathStats,
    /// Crossing created -> the alert's `startsAt` (the evaluation that saw
    /// it; wall clock, ms): the part of `alert` before notification.
    pub alert_eval: PathStats,
    /// Crossings whose resolved notification arrived too.
    pub resolved: usize,
    pub errors: BTreeMap<String, u64>,
}

fn since(from: Instant, to: Option<Instant>) -> Option<Duration> {
    to.map(|t| t.saturating_duration_since(from))
}

impl Report {
    pub fn from_ledger(l: &Ledger, plan: &Plan, sent_for: Duration) -> Report {
        let m = l.measured();
        let path = |f: fn(&super::agent::Sample) -> Option<Instant>| {
            PathStats::new(
                m.len(),
                m.iter().filter_map(|s| since(s.created, f(s))).collect(),
            )
        };
        let crossings = &l.crossings;
        Report {
            interval: plan.interval,
            poll: plan.poll,
            lanes: plan.lanes,
            sent_for,
            ack: path(|s| s.acked),
            query: path(|s| s.query),
            live: path(|s| s.live),
            alert: PathStats::new(
                crossings.len(),
                crossings
                    .iter()
                    .filter_map(|c| since(c.created, c.notified))
                    .collect(),
            ),
            alert_eval: PathStats::new(
                crossings.len(),
                crossings
                    .iter()
                    .filter_map(|c| {
                        let d = c.starts_at_ms? - c.created_ms;
                        Some(Duration::from_millis(u64::try_from(d).ok()?))
                    })
                    .collect(),
            ),
            resolved: crossings.iter().filter(|c| c.resolved.is_some()).count(),
            errors: l.errors.clone(),
        }
    }

    /// Every measured sample was seen on every path and every crossing
    /// notified (with at least one of each measured).
    pub fn complete(&self) -> bool {
        let full = |p: &PathStats| p.expected > 0 && p.missed() == 0;
        full(&self.ack)
            && full(&self.query)
            && full(&self.live)
            && (self.lanes == 0 || full(&self.alert))
    }

    /// One machine-readable line (`RESULT key=value ...`, ms).
    pub fn result_line(&self) -> String {
        let mut out = format!("RESULT samples={}", self.query.expected);
        for (name, p) in self.paths() {
            out.push_str(&format!(
                " {name}_seen={} {name}_p50_ms={:.1} {name}_p99_ms={:.1} {name}_max_ms={:.1}",
                p.seen(),
                ms(p.quantile(0.5)),
                ms(p.quantile(0.99)),
                ms(p.quantile(1.0)),
            ));
        }
        out.push_str(&format!(
            " crossings={} errors={} complete={}",
            self.alert.expected,
            self.errors.values().sum::<u64>(),
            self.complete()
        ));
        out
    }

    fn paths(&self) -> [(&'static str, &PathStats); 5] {
        [
            ("ack", &self.ack),
            ("query", &self.query),
            ("live", &self.live),
            ("alert", &self.alert),
            ("alert_eval", &self.alert_eval),
        ]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "probe: one batch every {:?} for {:.1} s, query polled every {:?}, {} alert lanes",
            self.interval,
            self.sent_for.as_secs_f64(),
            self.poll,
            self.lanes
        )?;
        writeln!(
            f,
            "{:<44} {:>8} {:>6} {:>9} {:>9} {:>9}",
            "path", "measured", "seen", "p50 ms", "p99 ms", "max ms"
        )?;
        let what = [
            "sample created -> batch acked",
            "sample created -> /prometheus/api/v1/query",
            "sample created -> /ws/live frame",
            "crossing created -> webhook received",
            "  of which: created -> rule fired (startsAt)",
        ];
        for ((_, p), what) in self.paths().into_iter().zip(what) {
            writeln!(
                f,
                "{:<44} {:>8} {:>6} {:>9.1} {:>9.1} {:>9.1}",
                what,
                p.expected,
                p.seen(),
                ms(p.quantile(0.5)),
                ms(p.quantile(0.99)),
                ms(p.quantile(1.0))
            )?;
        }
        writeln!(
            f,
            "crossings resolved (resolved webhook received): {} of {}",
            self.resolved, self.alert.expected
        )?;
        if self.errors.is_empty() {
            writeln!(f, "errors: none")?;
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            writeln!(f, "errors: {}", list.join(" "))?;
        }
        writeln!(
            f,
            "{}",
            if self.complete() {
                "every measured sample and crossing was seen"
            } else {
                "INCOMPLETE: some samples or crossings were never seen (or none was measured)"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_of_sorted_latencies() {
        let p = PathStats::new(101, (0..100u64).rev().map(Duration::from_millis).collect());
        assert_eq!(p.quantile(0.5), Duration::from_millis(50));
        assert_eq!(p.quantile(0.99), Duration::from_millis(98));
        assert_eq!(p.quantile(1.0), Duration::from_millis(99));
        assert_eq!(p.missed(), 1);
        assert_eq!(PathStats::default().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn complete_needs_every_path_seen_in_full() {
        let full = PathStats::new(2, vec![Duration::from_millis(1); 2]);
        let mut r = Report {
            lanes: 1,
            ack: full.clone(),
            query: full.clone(),
            live: full.clone(),
            alert: full.clone(),
            ..Report::default()
        };
        assert!(r.complete());
        assert!(r.result_line().contains("query_seen=2"));
        r.live = PathStats::new(2, vec![Duration::from_millis(1)]);
        assert!(!r.complete());
        r.live = full;
        r.alert = PathStats::default();
        assert!(!r.complete(), "no crossing measured");
        r.lanes = 0;
        assert!(r.complete(), "alerts not measured");
    }
}
