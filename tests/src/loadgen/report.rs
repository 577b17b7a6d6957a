//! What a run measured: per-agent counters merged into one [`Report`]
//! (samples/s acked, ack latency percentiles, errors by kind), and the check
//! that the database holds exactly the samples the aggregator acked.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One agent's counters; merged into a [`Report`] at the end.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub batches_acked: u64,
    pub batches_duplicate: u64,
    /// Samples the aggregator said it newly stored.
    pub samples_acked: u64,
    /// Samples of every batch acked, once per batch: newly stored ones, plus
    /// the samples of batches acked as duplicates (an earlier attempt whose
    /// ack was lost, e.g. to a timeout, stored them). What must be stored.
    pub samples_delivered: u64,
    /// Samples refused inside accepted batches.
    pub samples_rejected: u64,
    /// Samples in batches refused for good (never stored).
    pub samples_refused: u64,
    /// Samples in batches neither acked nor refused when the run ended.
    pub samples_unconfirmed: u64,
    /// Batches built (the last sequence number).
    pub sent_batches: u64,
    /// Fixed rate only: ticks that found the previous batch still in flight.
    pub late_ticks: u64,
    pub errors: BTreeMap<String, u64>,
    /// Time from opening the stream to reading the ack, per acked attempt
    /// sent after the warm-up.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl AgentStats {
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// An ack for a batch of `samples` samples.
    pub fn acked(
        &mut self,
        latency: Duration,
        samples: u64,
        stored: u64,
        duplicate: bool,
        rejected: u64,
        measured: bool,
    ) {
        self.batches_acked += 1;
        self.batches_duplicate += u64::from(duplicate);
        self.samples_acked += stored;
        self.samples_delivered += if duplicate { samples } else { stored };
        self.samples_rejected += rejected;
        if measured {
            self.latencies.push(latency);
        }
    }
}

/// The whole run.
#[derive(Debug, Default)]
pub struct Report {
    pub agents: usize,
    pub totals: AgentStats,
    /// Wall time of the run (longest agent).
    pub elapsed: Duration,
    /// Set by [`Report::set_stored`] after counting the database.
    pub stored: Option<u64>,
}

impl Report {
    pub fn merge(agents: Vec<AgentStats>) -> Report {
        let mut r = Report {
            agents: agents.len(),
            ..Report::default()
        };
        for a in agents {
            let t = &mut r.totals;
            t.batches_acked += a.batches_acked;
            t.batches_duplicate += a.batches_duplicate;
            t.samples_acked += a.samples_acked;
            t.samples_delivered += a.samples_delivered;
            t.samples_rejected += a.samples_rejected;
            t.samples_refused += a.samples_refused;
            t.samples_unconfirmed += a.samples_unconfirmed;
            t.sent_batches += a.sent_batches;
            t.late_ticks += a.late_ticks;
            for (k, v) in a.errors {
                *t.errors.entry(k).or_default() += v;
            }
            t.latencies.extend(a.latencies);
            r.elapsed = r.elapsed.max(a.elapsed);
        }
        r.totals.latencies.sort_unstable();
        r
    }

    /// Delivered (acked) samples per second of wall time.
    pub fn samples_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.totals.samples_delivered as f64 / secs
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..=1) of ack latency; zero without acks.
    pub fn latency(&self, q: f64) -> Duration {
        let l = &self.totals.latencies;
        if l.is_empty() {
            return Duration::ZERO;
        }
        let i = ((l.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        l[i.min(l.len() - 1)]
    }

    /// Errors of every kind, summed.
    pub fn error_count(&self) -> u64 {
        self.totals.errors.values().sum()
    }

    /// Records how many samples the run added to the database.
    pub fn set_stored(&mut self, stored: u64) {
        self.stored = Some(stored);
    }

    /// True when the database was counted and holds exactly the samples of
    /// the acked batches (each batch once, however often it was sent).
    pub fn verified(&self) -> bool {
        self.stored == Some(self.totals.samples_delivered)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(
            f,
            "agents {}  elapsed {:.1} s  batches acked {} (duplicates {})  built {}",
            self.agents,
            self.elapsed.as_secs_f64(),
            t.batches_acked,
            t.batches_duplicate,
            t.sent_batches
        )?;
        writeln!(
            f,
            "samples acked {} (newly stored {})  {:.0} samples/s  rejected in batch {}  refused {}  unconfirmed {}  late ticks {}",
            t.samples_delivered,
            t.samples_acked,
            self.samples_per_second(),
            t.samples_rejected,
            t.samples_refused,
            t.samples_unconfirmed,
            t.late_ticks
        )?;
        writeln!(
            f,
            "ack latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
            ms(self.latency(0.5)),
            ms(self.latency(0.99)),
            ms(self.latency(1.0))
        )?;
        if t.errors.is_empty() {
            writeln!(f, "errors: none")?;
        } else {
            let list: Vec<String> = t.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "errors: {}", list.join(" "))?;
        }
        match self.stored {
            Some(stored) => writeln!(
                f,
                "stored {} vs acked {}: {}",
                stored,
                t.samples_delivered,
                if self.verified() { "OK" } else { "MISMATCH" }
            ),
            None => writeln!(f, "stored: not verified"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_and_quantiles_come_from_sorted_latencies() {
        let mut a = AgentStats::default();
        let mut b = AgentStats::default();
        for i in 1..=50u64 {
            a.acked(Duration::from_millis(i), 300, 300, false, 0, true);
            // The first is a duplicate: stored by a lost earlier attempt.
            let dup = i == 1;
            b.acked(
                Duration::from_millis(50 + i),
                300,
                if dup { 0 } else { 300 },
                dup,
                0,
                true,
            );
        }
        a.error("timeout");
        b.error("timeout");
        b.error("bad_signature");
        a.elapsed = Duration::from_secs(2);
        b.elapsed = Duration::from_secs(4);
        let mut r = Report::merge(vec![a, b]);
        assert_eq!(r.totals.samples_acked, 29_700);
        assert_eq!(r.totals.samples_delivered, 30_000);
        assert_eq!(r.totals.batches_duplicate, 1);
        assert_eq!(r.totals.errors["timeout"], 2);
        assert_eq!(r.error_count(), 3);
        assert_eq!(r.samples_per_second(), 7_500.0);
        assert_eq!(r.latency(0.5), Duration::from_millis(51));
        assert_eq!(r.latency(0.99), Duration::from_millis(99));
        assert_eq!(r.latency(1.0), Duration::from_millis(100));
        assert!(!r.verified());
        r.set_stored(29_999);
        assert!(!r.verified());
        r.set_stored(30_000);
        assert!(r.verified());
        assert!(r.to_string().contains("OK"));
    }

    #[test]
    fn a_batch_sent_in_the_warm_up_counts_but_its_latency_does_not() {
        let mut a = AgentStats::default();
        a.acked(Duration::from_secs(9), 300, 300, false, 0, false);
        a.acked(Duration::from_millis(5), 300, 300, false, 0, true);
        a.elapsed = Duration::from_secs(1);
        let r = Report::merge(vec![a]);
        assert_eq!(r.totals.samples_acked, 600);
        assert_eq!(r.totals.batches_acked, 2);
        assert_eq!(r.latency(1.0), Duration::from_millis(5));
    }
}
